"""One data-range rule: the library (``workbench.scoring`` as the README calls it), the CLI (``workbench recon
--json``) and the app's session report the same PSNR / SSIM / NMSE for the same zero-filled reconstruction, for
a fastMRI file with a ``max`` attribute, one with a stored reference but no ``max`` attribute (scored against the
reference volume's maximum, not the slice's), and one whose reference is computed from the k-space."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from workbench.cli import main
from workbench.io import open_scan
from workbench.io.fastmri import write_fastmri
from workbench.methods import discover_methods
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scoring import evaluate, volume_data_range
from workbench.session import Session
from workbench.simulate import generate_volume

SAMPLING = dict(kind="random", acceleration=4.0, seed=0, center_fraction=0.08)


@pytest.fixture(scope="module")
def volume():
    vol = generate_volume(0, slice_positions=[12.0, 22.0, 32.0], shape=(64, 64), n_coils=4)
    maxima = vol["reference"].reshape(len(vol["reference"]), -1).max(1)
    return vol, int(np.argmin(maxima))  # the slice whose own maximum is furthest below the volume's


def write_case(folder, vol, case: str):
    path = folder / f"{case}.h5"
    if case == "max attribute":  # a stored max that differs from the reference's maximum, so the source shows
        write_fastmri(path, vol["kspace"], vol["reference"], attrs={"max": 1.25 * float(vol["reference"].max())})
        return path, 1.25 * float(vol["reference"].max()), "file max attribute"
    if case == "stored reference, no max":
        write_fastmri(path, vol["kspace"], vol["reference"])
        with h5py.File(path, "a") as f:
            del f.attrs["max"]
        return path, float(vol["reference"].max()), "reference volume maximum"
    write_fastmri(path, vol["kspace"])  # no reference: the RSS of the fully sampled slice
    return path, None, "slice maximum"


def cli_scores(capsys, path, index):
    code = main(["recon", str(path), "--method", "zero-filled", "--mask", SAMPLING["kind"], "--accel",
                 str(SAMPLING["acceleration"]), "--center-fraction", str(SAMPLING["center_fraction"]), "--seed",
                 str(SAMPLING["seed"]), "--slice", str(index), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip())


def session_run(path, index, sampling, method_name, params=None):
    """A Session on slice ``index`` of ``path`` with ``sampling``, and its finished run of ``method_name``."""
    s = Session(device="cpu")
    s.open(path)
    s.set_slice(index)
    s.set_sampling(sampling["kind"], acceleration=sampling["acceleration"], seed=sampling["seed"],
                   center_fraction=sampling["center_fraction"])
    entry = s.run(discover_methods().get(method_name), params)
    t0 = time.time()
    while entry.active and time.time() - t0 < 60:
        time.sleep(0.01)
    assert entry.state == "done", entry.error
    return s, entry


def session_scores(path, index):
    s, entry = session_run(path, index, SAMPLING, "zero-filled")
    try:
        return entry.metrics, s.data_range(), s.zero_filled_metrics()
    finally:
        s.shutdown()


def library_scores(path, index):
    """The README's library call (with the zero-filled plugin's RSS combination)."""
    scan = open_scan(str(path))
    sampling = make_sampling(SAMPLING["kind"], scan.grid_shape, acceleration=SAMPLING["acceleration"],
                             seed=SAMPLING["seed"], center_fraction=SAMPLING["center_fraction"])
    problem = Problem.from_scan(scan, slice_index=index, sampling=sampling)
    x = problem.crop(problem.zero_filled("rss"))
    return evaluate(problem.reference, x.abs(), data_range=problem.data_range), problem, scan


@pytest.mark.parametrize("case", ["max attribute", "stored reference, no max", "reference from k-space"])
def test_library_cli_and_session_report_the_same_scores(case, volume, tmp_path, capsys):
    vol, index = volume
    path, expected_range, expected_source = write_case(tmp_path, vol, case)
    library, problem, scan = library_scores(path, index)
    slice_max = float(problem.reference.max())
    if expected_range is None:
        expected_range = slice_max
    else:  # the rule picks something other than the slice's own maximum (the app used that before)
        assert expected_range > 1.01 * slice_max
    assert volume_data_range(scan, problem.reference) == (pytest.approx(expected_range, rel=1e-6), expected_source)
    assert problem.data_range == pytest.approx(expected_range, rel=1e-6)

    cli = cli_scores(capsys, path, index)
    assert cli["data_range_source"] == expected_source
    assert cli["data_range"] == pytest.approx(expected_range, rel=1e-6)

    app, app_range, app_live = session_scores(path, index)
    assert app_range == pytest.approx(expected_range, rel=1e-6)
    for name in ("psnr", "ssim"):
        assert cli["metrics"][name] == pytest.approx(library[name], abs=1e-6), name
        assert app[name] == pytest.approx(library[name], abs=1e-6), name
    assert cli["metrics"]["nmse"] == pytest.approx(library["nmse"], rel=1e-6)
    assert app["nmse"] == pytest.approx(library["nmse"], rel=1e-6)
    # the app's live zero-filled image (numpy FFT of the cached slice, not the problem's torch FFT) agrees too
    assert app_live["psnr"] == pytest.approx(cli["zero_filled"]["psnr"], abs=1e-4)
    assert app_live["ssim"] == pytest.approx(cli["zero_filled"]["ssim"], abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# scoring modes: the same numbers from the library, the CLI and the session, for a SENSE method (coil maps, the
# as-acquired projection) and the zero-filled RSS image (the session's live one and the CLI's baseline)
MODE_METHOD, MODE_PARAMS = "cg-sense", {"n_iter": 5}
MODE_SAMPLING = dict(SAMPLING, center_fraction=0.16)  # 10 calibration lines: coil maps can be estimated


def _cli_mode(capsys, path, index, mode):
    code = main(["recon", str(path), "--method", MODE_METHOD, "--param", "n_iter=5", "--mask", MODE_SAMPLING["kind"],
                 "--accel", str(MODE_SAMPLING["acceleration"]),
                 "--center-fraction", str(MODE_SAMPLING["center_fraction"]),
                 "--seed", str(MODE_SAMPLING["seed"]), "--slice", str(index), "--score-mode", mode, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip())


def test_library_cli_and_session_agree_in_every_scoring_mode(volume, tmp_path, capsys):
    from workbench.methods import safe_run
    from workbench.scoring import IMAGE_IS_RSS, SCORE_MODES, score, score_result

    vol, index = volume
    path, _, _ = write_case(tmp_path, vol, "stored reference, no max")
    scan = open_scan(str(path))
    sampling = make_sampling(MODE_SAMPLING["kind"], scan.grid_shape, acceleration=MODE_SAMPLING["acceleration"],
                             seed=MODE_SAMPLING["seed"], center_fraction=MODE_SAMPLING["center_fraction"])
    problem = Problem.from_scan(scan, slice_index=index, sampling=sampling)
    result = safe_run(discover_methods().get(MODE_METHOD), problem, MODE_PARAMS)
    zf = problem.crop(problem.zero_filled("rss"))

    s, entry = session_run(path, index, MODE_SAMPLING, MODE_METHOD, MODE_PARAMS)
    try:
        seen = []
        s.subscribe("score_mode", seen.append)
        by_mode = {}
        for mode in SCORE_MODES:
            library = score_result(problem, result, mode)
            library_zf = score(problem.reference, zf, mode, data_range=problem.data_range, problem=problem,
                               image_is=IMAGE_IS_RSS)
            cli = _cli_mode(capsys, path, index, mode)
            s.score_mode = mode
            rows = s.comparison_rows()
            assert cli["score_mode"] == mode and cli["metrics"]["mode"] == mode and cli["zero_filled"]["mode"] == mode
            assert {r["score_mode"] for r in rows} == {mode}
            for name in ("psnr", "ssim", "nmse"):
                assert cli["metrics"][name] == pytest.approx(library[name], abs=1e-6), (mode, name)
                assert entry.metrics[name] == pytest.approx(library[name], abs=1e-6), (mode, name)
                assert rows[1][name] == entry.metrics[name]
                assert cli["zero_filled"][name] == pytest.approx(library_zf[name], abs=1e-6), (mode, name)
                assert rows[0][name] == pytest.approx(library_zf[name], abs=1e-5), (mode, name)
            by_mode[mode] = library
        assert seen == [m for m in SCORE_MODES if m != "fastmri"]
    finally:
        s.shutdown()
    # the modes differ: the background's noise floor counts in "fastmri" only
    assert len({round(v["ssim"], 4) for v in by_mode.values()}) == 3
