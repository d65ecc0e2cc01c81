"""Scoring modes (workbench.scoring): the object mask's rule on every real data set, the as-acquired projection,
degenerate inputs as typed messages, and the k-space hold-out score (workbench.holdout)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from workbench.cli import main
from workbench.holdout import estimated_nmse, folds, holdout_score, prediction_error, split, summary
from workbench.io import open_scan
from workbench.io.fastmri import write_fastmri
from workbench.physics.fft import expected_scan_rss, ifft2c, rss
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scoring import (IMAGE_IS_RSS, SCORE_MODES, ScoreError, as_acquired, evaluate, reference_region, score,
                               ssim)
from workbench.simulate import generate_slice

# fully sampled real sets (the GRE twix phantom, slower to read, is checked by benchmarks/bench_scoring.py's
# mask table, with the same criteria)
REAL_SETS = {
    "head": ("marcsous_head8ch_dhe/head.mat", {"image_domain": True, "coil_axis": -1}),
    "phantom": ("imagiology_phantom_1ch/rawdata.mat", {}),
}


@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_object_mask_rule_is_sane_on_the_real_sets(name, realdata):
    path, options = REAL_SETS[name]
    if not (realdata / path).is_file():
        pytest.skip(f"{path} not available")
    scan = open_scan(str(realdata / path), **options)
    ref = Problem.from_scan(scan, scan.n_slices // 2).reference.numpy()
    m = reference_region(ref)
    assert m.shape == ref.shape and m is reference_region(ref.copy())  # derived once per reference
    assert ndimage.label(m)[1] == 1 and np.array_equal(m, ndimage.binary_fill_holes(m))  # one solid object
    assert 0.2 < m.mean() < 0.8
    energy = ref.astype(np.float64) ** 2
    assert energy[m].sum() > 0.95 * energy.sum()  # the object's signal is inside
    assert ref[m].mean() > 5 * ref[~m].mean()  # the noise floor is outside


@pytest.fixture(scope="module")
def simulated():
    s = generate_slice(3, shape=(64, 64), n_coils=4)
    sampling = make_sampling("random", (64, 64), 4, seed=0, center_fraction=0.16)
    k = torch.from_numpy(s["kspace"])
    noise = 0.02 * float(k.abs().max()) * torch.randn(k.shape, dtype=torch.complex64,
                                                      generator=torch.Generator().manual_seed(0))
    full = k + noise
    problem = Problem(full * sampling.mask, mask=sampling.mask, maps=torch.from_numpy(s["maps"]),
                      reference=rss(ifft2c(full)))
    return problem, full, k


def test_as_acquired_keeps_the_measured_samples_and_adds_the_unmeasured_noise(simulated):
    problem, full, _ = simulated
    # a fully sampled problem: the scan of any image is the data's own RSS (nothing unmeasured)
    fully = Problem(full, maps=problem.maps)
    anything = torch.randn(64, 64, dtype=torch.complex64)
    np.testing.assert_allclose(as_acquired(fully, anything), rss(ifft2c(full)).numpy(), rtol=1e-4, atol=1e-4)
    # the RSS of the measured data's coil images: only the noise of the unmeasured samples is added
    zf = problem.zero_filled("rss")
    expected = expected_scan_rss(zf, problem.mask, problem.n_coils, problem.noise_std).numpy()
    np.testing.assert_allclose(as_acquired(problem, zf, IMAGE_IS_RSS), expected, rtol=1e-6)
    # a SENSE image: coil images through the maps, measured samples put back (the zero-filled SENSE image then
    # reproduces the zero-filled RSS up to the maps' fit) -> closer to the noisy reference than the image itself
    sense = problem.zero_filled("sense")
    ref = problem.reference
    plain, scanned = (evaluate(ref, x)["nmse"] for x in (sense, as_acquired(problem, sense)))
    assert scanned < plain
    with pytest.raises(ScoreError, match="needs the problem"):
        score(ref, sense, "as-acquired")


def test_every_mode_scores_and_object_excludes_the_background(simulated):
    problem, _, _ = simulated
    ref, img = problem.reference, problem.zero_filled("sense")
    scores = {mode: score(ref, img, mode, problem=problem) for mode in SCORE_MODES}
    assert len({round(s["ssim"], 5) for s in scores.values()}) == 3
    # inside the object, a background change does not count
    region = reference_region(ref.numpy())
    moved = img.abs().numpy().copy()
    moved[~region] += 1.0
    assert score(ref, moved, "object")["psnr"] == pytest.approx(score(ref, img, "object")["psnr"], abs=1e-6)
    assert score(ref, moved, "fastmri")["psnr"] < score(ref, img, "fastmri")["psnr"] - 1


@pytest.mark.parametrize("case, message", [
    ("nan reference", "reference has 1 NaN or infinite"),
    ("inf reconstruction", "reconstruction has 1 NaN or infinite"),
    ("smaller than the window", "smaller than the 7x7 SSIM window"),
    ("constant reference", "reference is constant"),
    ("zero reference", "reference is constant \\(0 everywhere"),
    ("unknown mode", "unknown scoring mode"),
])
def test_degenerate_inputs_give_a_typed_message(case, message):
    rng = np.random.default_rng(0)
    ref, rec, mode = rng.random((16, 16)), rng.random((16, 16)), "fastmri"
    if case == "nan reference":
        ref[3, 4] = np.nan
    elif case == "inf reconstruction":
        rec[0, 0] = np.inf
    elif case == "smaller than the window":
        ref, rec = ref[:5, :5], rec[:5, :5]
    elif case == "constant reference":
        ref = np.full((16, 16), 2.0)
    elif case == "zero reference":
        ref = np.zeros((16, 16))
    else:
        mode = "best"
    with pytest.raises(ScoreError, match=message):
        score(ref, rec, mode)
    if case == "smaller than the window":
        with pytest.raises(ScoreError, match=message):
            ssim(ref, rec)


def test_cli_reports_a_degenerate_reference_instead_of_a_traceback(tmp_path, capsys):
    s = generate_slice(1, shape=(32, 32), n_coils=2)
    path = tmp_path / "flat.h5"
    write_fastmri(path, s["kspace"][None], np.full((1, 32, 32), 1.0, np.float32))
    code = main(["recon", str(path), "--method", "zero-filled", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["metrics"] is None and "reference is constant" in summary["score_error"]


def test_holdout_split_and_its_error(simulated):
    problem, full, clean = simulated
    a, b = split(problem, 0.07, seed=1), split(problem, 0.07, seed=1)
    assert torch.equal(a.held, b.held) and not torch.equal(a.held, split(problem, 0.07, seed=2).held)
    assert 0.05 <= a.fraction <= 0.08
    assert not bool((a.held & ~problem.mask).any())  # measured samples only
    acs = problem.mask.any(0).clone()
    acs[:27], acs[37:] = False, False  # the 10 fully sampled centre lines (center_fraction 0.16)
    assert bool(problem.mask.any(0)[27:37].all()) and not bool(a.held[:, acs].any())  # never the centre lines
    assert torch.equal(a.train.mask, problem.mask & ~a.held) and a.train.maps is problem.maps
    # the noise-free truth predicts the held-out samples up to their noise; nothing predicts nothing (error 1)
    truth = (problem.maps.conj() * ifft2c(clean)).sum(0)
    y_held = full[:, a.held]
    noise_share = float((y_held - clean[:, a.held]).abs().pow(2).sum() / y_held.abs().pow(2).sum())
    assert prediction_error(a, truth) == pytest.approx(noise_share, rel=0.1)
    assert prediction_error(a, truth) < prediction_error(a, a.train.zero_filled("sense"))
    assert prediction_error(a, torch.zeros(64, 64)) == pytest.approx(1.0)
    assert math.isfinite(prediction_error(a, a.train.zero_filled("rss")))
    # the scan-wide estimate ranks the truth above zero filling
    zf_rss = a.train.zero_filled("rss")
    assert prediction_error(a, zf_rss, IMAGE_IS_RSS) == 1.0
    assert estimated_nmse(a, truth, scored_image=truth) < estimated_nmse(a, zf_rss, IMAGE_IS_RSS)


def test_holdout_folds_hold_out_whole_lines_and_pool_their_errors(simulated):
    problem, full, clean = simulated
    parts = folds(problem, 3, 0.07, seed=0)
    cols = problem.mask.any(0)
    centre = torch.zeros_like(cols)
    centre[27:37] = True  # the fully sampled centre lines (center_fraction 0.16) are never held out
    seen = torch.zeros_like(cols)
    for h in parts:
        held_cols = h.held.any(0)
        assert torch.equal(h.held, problem.mask & held_cols[None, :])  # whole measured lines
        assert not bool((held_cols & centre).any()) and not bool((held_cols & seen).any())  # disjoint folds
        assert torch.equal(h.train.mask, problem.mask & ~h.held)
        seen |= held_cols
    assert [h.held.any(0).sum() for h in parts] == [1, 1, 1]  # round(0.07 x 16 lines)
    assert len(folds(problem, 8, 0.07)) == 3  # at most half of the 6 measured lines off the centre
    # the pooled summary: the held-out energy-weighted mean of the folds' relative errors
    truth = (problem.maps.conj() * ifft2c(clean)).sum(0)
    errors = [prediction_error(h, truth) for h in parts]
    energies = [float(full[:, h.held].abs().pow(2).sum()) for h in parts]
    pooled = summary(parts, [truth] * 3, scored_image=truth)
    assert pooled["holdout_error"] == pytest.approx(np.dot(errors, energies) / sum(energies), rel=1e-6)
    assert pooled["holdout_folds"] == 3 and pooled["holdout_lines"] and pooled["holdout_samples"] == 3 * 64
    assert pooled["holdout_nmse"] == pytest.approx(estimated_nmse(parts, [truth] * 3, scored_image=truth), rel=1e-9)
    zf = summary(parts, [None] * 3, IMAGE_IS_RSS)
    assert zf["holdout_error"] == 1.0 and pooled["holdout_nmse"] < zf["holdout_nmse"]


def test_holdout_reruns_keep_the_weight_the_run_chose():
    from workbench.holdout import params_as_run
    from workbench.methods import discover_methods

    l1 = discover_methods().get("l1-wavelet")
    chosen = {"lam": 0.003, "lam_absolute": 7.0, "lam_rule": "discrepancy", "search_solves": 4}
    as_run = params_as_run(l1, {"lam": None, "n_iter": 5}, chosen)
    assert as_run["lam"] == 0.003 and as_run["n_iter"] == 5 and "lam_absolute" not in as_run
    assert params_as_run(l1, {"lam": 0.01}, chosen)["lam"] == 0.01  # a weight the user gave stays
    assert params_as_run(l1, None, {})["lam"] is None  # nothing chosen: still automatic
    assert l1.make_params(as_run).lam == 0.003  # valid parameters of the method
    # a network whose hold-out kept its own image reruns without the consistency solve; one that chose a weight
    # reruns with it
    xpdnet = discover_methods().get("xpdnet")
    kept = params_as_run(xpdnet, None, {"consistency_lam": None, "consistency_lam_rule": "hold-out",
                                        "consistency": False, "n_iter": 6})
    assert kept["consistency"] is False and kept["consistency_lam"] is None
    solved = params_as_run(xpdnet, None, {"consistency_lam": 0.03, "consistency_lam_rule": "hold-out"})
    assert solved["consistency"] is True and solved["consistency_lam"] == 0.03


def test_cli_validate_gives_the_library_holdout_score(tmp_path, capsys):
    from workbench.methods import discover_methods

    s = generate_slice(2, shape=(64, 64), n_coils=4)
    path = tmp_path / "slice.h5"
    write_fastmri(path, s["kspace"][None], s["reference"][None].astype(np.float32))
    code = main(["recon", str(path), "--method", "cg-sense", "--mask", "random", "--accel", "4", "--seed", "0",
                 "--center-fraction", "0.16", "--validate", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    cli = json.loads(out)["holdout"]
    problem = Problem.from_scan(open_scan(str(path)), 0, make_sampling("random", (64, 64), 4, seed=0,
                                                                         center_fraction=0.16))
    lib = holdout_score(discover_methods().get("cg-sense"), problem)
    assert cli["holdout_folds"] == lib["holdout_folds"] >= 2
    assert cli["holdout_nmse"] == pytest.approx(lib["holdout_nmse"], rel=1e-5)


def test_session_shows_the_chosen_weight_and_the_holdout_score(tmp_path):
    from workbench.methods import discover_methods

    session = _session_on_a_slice(tmp_path)
    try:
        session.set_sampling("random", acceleration=4, seed=0, center_fraction=0.16)
        entry = session.run(discover_methods().get("l1-wavelet"), {"lam": None, "n_iter": 5, "search_iter": 5})
        _wait(lambda: not entry.active)
        assert entry.state == "done", entry.error
        row = session.comparison_rows()[1]
        # the automatic weight and its rule, not "lam=None", in the table and the job details
        assert "lam=None" not in row["params"]
        assert f"lam=auto {entry.result.chosen['lam']:.4g} (discrepancy)" in row["params"]
        assert row["chosen"].startswith("lam=") and row["holdout"] is None
        session.validate(entry.id)
        _wait(lambda: entry.holdout and entry.holdout.get("holdout_message") != "running")
        assert 0 < session.comparison_rows()[1]["holdout"] < 1, entry.holdout
    finally:
        session.shutdown()


def _session_on_a_slice(tmp_path):
    """A Session on a 4-coil 64x64 synthetic slice saved with its reference."""
    from workbench.session import Session

    s = generate_slice(2, shape=(64, 64), n_coils=4)
    path = tmp_path / "slice.h5"
    write_fastmri(path, s["kspace"][None], s["reference"][None].astype(np.float32))
    session = Session(device="cpu")
    session.open(path)
    return session


def _wait(done, timeout=60.0):
    import time

    t0 = time.time()
    while not done() and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert done()


def test_complex_on_grid_pads_and_gives_a_magnitude_the_phase_asked_for():
    """The one rule by which a magnitude becomes an image on the grid: centre padded, a magnitude (real, or complex
    with no imaginary part) takes the given phase, a complex image keeps its own, and the phase is only computed
    when needed."""
    from workbench.scoring import complex_on_grid

    rng = np.random.default_rng(0)
    mag = rng.random((4, 6)).astype(np.float32) + 0.5
    phase = torch.from_numpy(rng.uniform(-np.pi, np.pi, (8, 10)).astype(np.float32))
    calls = []

    def given():
        calls.append(1)
        return phase

    for image in (mag, torch.from_numpy(mag), mag.astype(np.complex64)):
        x = complex_on_grid(image, (8, 10), "cpu", given)
        assert x.shape == (8, 10) and x.dtype == torch.complex64
        np.testing.assert_allclose(x.abs()[2:6, 2:8].numpy(), mag, rtol=1e-6)
        assert not x.abs()[:2].any() and not x.abs()[:, :2].any()                # zeros around the centred image
        np.testing.assert_allclose(torch.angle(x)[2:6, 2:8].numpy(), phase[2:6, 2:8].numpy(), atol=1e-5)
    assert len(calls) == 3
    own = (mag * np.exp(1j * 0.7)).astype(np.complex64)
    x = complex_on_grid(own, (8, 10), "cpu", given)
    assert len(calls) == 3                                                       # a complex image: no phase asked
    np.testing.assert_allclose(x[2:6, 2:8].numpy(), own, rtol=1e-6)


def test_the_live_zero_filled_row_scores_as_the_zero_filled_run_off_the_grid(tmp_path):
    """Radial sampling of a scan with a reference: the app's live zero-filled row (the density-compensated adjoint)
    and a run of the zero-filled method give the same metrics in every scoring mode and the same hold-out score
    (both ask workbench.scoring.zero_filled_image_is: off the grid the adjoint is scored as any image; the live
    row took it for the measured data's own coil images before, which only a Cartesian RSS is)."""
    from workbench.methods import discover_methods
    from workbench.scoring import SCORE_MODES

    session = _session_on_a_slice(tmp_path)
    try:
        session.set_sampling("golden-radial", acceleration=4, seed=0)
        entry = session.run(discover_methods().get("zero-filled"), {"combine": "rss"})
        _wait(lambda: not entry.active)
        assert entry.state == "done", entry.error
        assert "image_is" not in (entry.result.extras or {})
        for mode in SCORE_MODES:
            session.score_mode = mode
            _wait(lambda: session.comparison_rows()[0]["psnr"] is not None)
            live, run = session.comparison_rows()[:2]
            for name in ("psnr", "ssim", "nmse"):
                assert live[name] == pytest.approx(run[name], rel=1e-4, abs=1e-5), (mode, name)
        session.validate()
        _wait(lambda: entry.holdout and entry.holdout.get("holdout_message") != "running"
              and session.comparison_rows()[0]["holdout"] is not None)
        live, run = session.comparison_rows()[:2]
        assert run["holdout"] is not None and live["holdout"] == pytest.approx(run["holdout"], rel=1e-4)
        assert live["holdout_se"] == pytest.approx(run["holdout_se"], rel=1e-3)
    finally:
        session.shutdown()


def test_off_the_grid_the_live_zero_filled_holdout_runs_in_the_background(tmp_path):
    """The live row's hold-out off the grid needs a NUFFT per fold: with a background (the app's), asking for it
    returns "running" at once, the folds run on the helper, and the delivered score is the synchronous one."""
    from workbench.session.views import DerivedImages

    session = _session_on_a_slice(tmp_path)
    try:
        session.set_sampling("golden-radial", acceleration=4, seed=0)
        jobs, posted, ready = [], [], []

        def make():
            return DerivedImages(session.views, session.sampling_state,
                                 lambda sampling: session.problem(sampling, session.slice_index),
                                 jobs.append, posted.append, ready.append)

        derived = make()
        assert derived.get("zero_filled") is None and len(jobs) == 1  # the gridded image: in the background
        jobs.pop()()
        posted.pop()()
        derived.want_holdout()
        first = derived.holdout()
        assert first["holdout_nmse"] is None and first["holdout_message"] == "running"
        assert len(jobs) == 1 and "holdout" not in derived.values
        assert derived.holdout()["holdout_message"] == "running" and len(jobs) == 1  # asked again: not twice
        jobs.pop()()
        posted.pop()()
        assert ready == [derived, derived]
        synchronous = DerivedImages(session.views, session.sampling_state,
                                    lambda sampling: session.problem(sampling, session.slice_index))
        synchronous.want_holdout()
        expected = synchronous.holdout()
        assert expected["holdout_nmse"] is not None
        assert derived.holdout()["holdout_nmse"] == pytest.approx(expected["holdout_nmse"], rel=1e-6)
    finally:
        session.shutdown()
