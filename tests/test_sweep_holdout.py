"""The acceleration sweep on scans without a reference: points kept from the acquired data, each scored by the
hold-out (workbench.holdout) in background jobs, cancellable, exported; the Sweep tab's hold-out curve."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from workbench import holdout
from workbench.methods import Capabilities, Method, discover_methods
from workbench.problem import Problem
from workbench.result import Result
from workbench.simulate import generate_slice


def _measured(kind: str, acceleration: float):
    """The 4-coil 64x64 test slice with a little noise, measured on a ``kind`` mask (no reference stored): a
    prospective scan."""
    from workbench.sampling import make_sampling
    from workbench.scan import scan_from_arrays

    k = generate_slice(3, shape=(64, 64), n_coils=4)["kspace"]
    noise = np.random.default_rng(1).standard_normal((2, *k.shape))
    k = k + 0.005 * np.abs(k).max() * (noise[0] + 1j * noise[1])
    mask = make_sampling(kind, (64, 64), acceleration, seed=1, center_fraction=0.16).mask.numpy()
    return scan_from_arrays((k * mask)[None].astype(np.complex64))


def _radial_scan(n_spokes: int = 24, n_readout: int = 64):
    """4 coils on a 64x64 grid, golden-angle radial spokes, readout after readout; no reference."""
    from workbench.physics.fft import ifft2c
    from workbench.sampling import radial_trajectory
    from workbench.sampling.retrospective import sample_noncartesian
    from workbench.scan import scan_from_arrays

    s = generate_slice(3, shape=(64, 64), n_coils=4)
    traj = radial_trajectory(n_spokes, n_readout, golden=True)
    y = sample_noncartesian(ifft2c(torch.as_tensor(s["kspace"]).to(torch.complex64)), traj)
    return scan_from_arrays(y[None].numpy().astype(np.complex64), trajectory=traj.numpy(), grid_shape=(64, 64))


def _settled(sweep) -> bool:
    return not any(e.active for e in sweep.entries) and not any(
        (e.holdout or {}).get("holdout_message") == "running" for e in sweep.entries)


def _wait(sweep, timeout: float = 240.0) -> None:
    t0 = time.time()
    while not _settled(sweep):
        assert time.time() - t0 < timeout, [(e.label, e.state, e.holdout) for e in sweep.entries]
        time.sleep(0.05)


@pytest.fixture()
def session():
    from workbench.session import Session

    s = Session(device="cpu")
    yield s
    s.shutdown()


def test_sweep_holdout_equals_the_holdout_computed_directly_on_each_point(session):
    from workbench.session.sweeps import ACQUIRED_SUBSET, acquired_subset

    scan = _measured("random", 3)
    session.set_scan(scan)
    assert session.reference() is None
    methods = discover_methods()
    chosen = [(methods.get("cg-sense"), {"n_iter": 8}), (methods.get("l1-wavelet"), {"n_iter": 10,
                                                                                      "search_iter": 5})]
    sweep = session.sweep(chosen, [1, 2])
    # no reference: the family is part of the acquired data, and every point is scored by the hold-out
    assert sweep.kind == ACQUIRED_SUBSET and sweep.holdout
    _wait(sweep)
    assert all(e.state == "done" and e.holdout["holdout_nmse"] is not None for e in sweep.entries)
    acquired = scan.acquired_mask.astype(bool)
    for factor in (1, 2):
        if factor == 1:  # all of it: the scan as acquired, built here without the session
            problem = Problem.from_scan(scan, 0)
        else:
            problem = session.problem(acquired_subset(session.sampling_model.build(
                {"kind": "acquired", "acceleration": 1.0, "seed": 0, "center_fraction": None, "params": {}}), 2))
            cols, acq_cols = problem.mask.numpy().any(0), acquired.any(0)
            assert not (cols & ~acq_cols).any()  # only what was acquired
            assert (cols == acq_cols)[29:36].all()  # the fully sampled centre lines: all kept
            assert cols.sum() < acq_cols.sum() and problem.mask.sum() == cols.sum() * 64
        points = [e for e in sweep.entries if e.sampling["params"]["of_acquired"] == f"1/{factor}"]
        assert len(points) == 2
        for e in points:
            assert e.acceleration == pytest.approx(64 * 64 / problem.mask.sum().item())
            method = methods.get(e.method)
            direct = holdout.holdout_score(method, problem, e.params, chosen=e.result.chosen)
            assert e.holdout["holdout_nmse"] == pytest.approx(direct["holdout_nmse"], rel=1e-4)
            assert e.holdout["holdout_folds"] == direct["holdout_folds"]
    # the points' x: the effective R grows with the factor; the curve has both points
    xs, ys = sweep.points("cg-sense", "holdout")
    assert len(xs) == 2 and xs[0] < xs[1]


def test_radial_prospective_sweep_keeps_whole_spokes_and_scores_every_point(session, tmp_path):
    from workbench.session import sweeps

    scan = _radial_scan()
    session.set_scan(scan)
    methods = discover_methods()
    sweep = session.sweep([(methods.get("zero-filled"), {}), (methods.get("cg-sense"), {"n_iter": 6})], [1, 2, 3])
    assert sweep.holdout and sweep.kind == sweeps.ACQUIRED_SUBSET
    _wait(sweep)
    kept = {round(e.acceleration, 6): e.sampling["params"]["kept"] for e in sweep.entries}
    # 24 spokes of 64 samples on a 64x64 grid: R = 4096 / samples kept
    assert kept == {round(64 / n, 6): f"{n} of 24 readouts" for n in (24, 12, 8)}
    for name in ("zero-filled", "cg-sense"):
        xs, ys = sweep.points(name, "holdout")
        assert len(xs) == 3 and all(np.isfinite(ys))
    # fewer spokes, worse prediction of the held-out samples
    _, cg = sweep.points("cg-sense", "holdout")
    assert cg[0] < cg[-1]
    # the subset problem: whole spokes, its own density compensation
    state = session.sampling_model.build({"kind": "acquired", "acceleration": 1.0, "seed": 0,
                                          "center_fraction": None, "params": {}})
    sub = sweeps.acquired_subset(state, 3)
    problem = session.problem(sub)
    assert problem.y.shape[-1] == 8 * 64 and problem.dcf.shape == (8 * 64,)
    traj = problem.trajectory.numpy().reshape(2, 8, 64)
    angles = np.arctan2(traj[0, :, -1] - traj[0, :, 1], traj[1, :, -1] - traj[1, :, 1])
    assert len(np.unique(np.round(angles, 4))) == 8  # eight different spokes, each whole
    # exported: JSON names the mode and the hold-out score of each point; CSV has a row per point
    sweeps.write_sweep(tmp_path / "s.json", sweep, session.score_mode)
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["holdout"] and data["family"] == sweeps.ACQUIRED_SUBSET and data["score_mode"] == "fastmri"
    # what was asked for: fractions of the acquired spokes, not accelerations (the points have those)
    assert data["of_acquired"] == [1, 2, 3] and "accelerations" not in data
    by = {(p["label"], round(p["acceleration"], 3)): p for p in data["points"]}
    for e in sweep.entries:
        assert by[(e.label, round(e.acceleration, 3))]["holdout"] == pytest.approx(e.holdout["holdout_nmse"])
        assert by[(e.label, round(e.acceleration, 3))]["psnr"] is None
    sweeps.write_sweep(tmp_path / "s.csv", sweep, session.score_mode)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 1 + len(sweep.entries) and "holdout" in lines[0].split(",")


def test_a_2d_mask_keeps_its_calibration_box_and_a_share_of_the_other_samples(session):
    from workbench.session.sweeps import acquired_subset

    session.set_scan(_measured("poisson", 3))
    state = session.sampling_model.build({"kind": "acquired", "acceleration": 1.0, "seed": 0,
                                          "center_fraction": None, "params": {}})
    box = np.zeros((64, 64), bool)
    box[20:44, 20:44] = True  # the default 24x24 calibration region
    for factor in (2, 4):
        keep = acquired_subset(state, factor).keep
        assert not (keep & ~state.mask).any() and (keep[box] == state.mask[box]).all()
        others = (state.mask & ~box).sum()
        assert (keep & ~box).sum() == int(np.ceil(others / factor))
    problem = session.problem(acquired_subset(state, 2))
    assert problem.mask.numpy().sum() == acquired_subset(state, 2).keep.sum()


class _HeldOutWaits(Method):
    """Returns the zero-filled image at once, except on a hold-out fold, where it runs until cancelled."""

    name = "test-held-out-waits"
    capabilities = Capabilities(cartesian=True, noncartesian=True)

    def run(self, problem, params, ctx):
        while "holdout" in problem.provenance:
            ctx.check_cancelled()
            time.sleep(0.01)
        return Result(image=problem.crop(problem.zero_filled("rss")).to(torch.complex64))


def test_cancelling_a_sweep_stops_its_holdout_runs_and_says_so(session):
    session.set_scan(_measured("random", 3))
    sweep = session.sweep([(_HeldOutWaits(), {})], [1, 2])
    t0 = time.time()
    while not all(e.state == "done" and e.holdout for e in sweep.entries):
        assert time.time() - t0 < 60
        time.sleep(0.02)
    assert all(e.holdout["holdout_message"] == "running" for e in sweep.entries)
    session.cancel_sweep(sweep)
    _wait(sweep, 30)
    assert sweep.cancelled
    for e in sweep.entries:
        assert e.holdout["holdout_nmse"] is None and "did not finish" in e.holdout["holdout_message"]
    assert not any(j.state.value in ("queued", "running") for j in session.job_queue.jobs)


def test_a_sweep_with_a_reference_is_not_scored_by_the_holdout_unless_asked(session):
    from workbench.session import sweeps

    s = generate_slice(3, shape=(64, 64), n_coils=4)
    from workbench.scan import scan_from_arrays

    session.set_scan(scan_from_arrays(s["kspace"][None].astype(np.complex64)))
    assert session.reference() is not None and sweeps.families(session.scan)[0] != sweeps.ACQUIRED_SUBSET
    zf = discover_methods().get("zero-filled")
    plain = session.sweep([(zf, {})], [2, 4], kind="equispaced")
    asked = session.sweep([(zf, {})], [2, 4], kind="equispaced", holdout=True)
    _wait(plain)
    _wait(asked)
    assert not plain.holdout and all(e.holdout is None for e in plain.entries)
    assert all(e.holdout["holdout_nmse"] > 0 for e in asked.entries)
    # with a reference, the points have metrics (in the scoring mode) and, when asked, hold-out scores too
    assert len(asked.points("zero-filled", "psnr")[0]) == 2 == len(asked.points("zero-filled", "holdout")[0])
    with pytest.raises(Exception, match="fully sampled"):
        session.sweep([(zf, {})], [2], kind=sweeps.ACQUIRED_SUBSET)


def test_sweep_tab_shows_the_holdout_curve_of_a_scan_without_reference(window, qtbot, registry, messages):
    from workbench.gui.sweep_view import HOLDOUT_AXIS
    from workbench.session.sweeps import ACQUIRED_SUBSET

    window.session.set_scan(_radial_scan())
    sv = window.sweep_view
    window.tabs.setCurrentWidget(sv)
    assert sv.family_combo.currentText() == ACQUIRED_SUBSET and sv.holdout_box.isChecked()
    assert sv.acc_label.text().startswith("Keep 1/f")
    sv.set_checked(["test-zf"])
    sv.acc_edit.setText("1, 2")
    sweep = sv.run_sweep()
    assert sweep is not None and not messages
    qtbot.waitUntil(lambda: _settled(sweep), timeout=120000)
    qtbot.waitUntil(lambda: "hold-out 2/2 scored" in sv.status.text(), timeout=5000)
    # one plot: the hold-out NMSE against R (PSNR / SSIM need a reference), its axis says what it is
    assert sv._laid_out == (sv.holdout_plot,)
    assert sv.holdout_plot.getAxis("left").labelText == HOLDOUT_AXIS
    curves = sv.holdout_plot.listDataItems()
    assert len(curves) == 1
    xs, ys = curves[0].getData()
    want_x, want_y = sweep.points("test-zf", "holdout")
    np.testing.assert_allclose(xs, want_x)
    np.testing.assert_allclose(10 ** np.asarray(ys), want_y, rtol=1e-6)  # (a log axis holds log10)
    # each point's standard error over the folds as a bar (in log10 units, as the axis)
    import pyqtgraph as pg

    _, want_se = sweep.points("test-zf", "holdout_se")
    assert len(want_se) == len(want_y) and all(e > 0 for e in want_se)
    bars = [i for i in sv.holdout_plot.items if isinstance(i, pg.ErrorBarItem)]
    assert len(bars) == 1
    opts = bars[0].opts
    np.testing.assert_allclose(opts["y"], np.log10(want_y), rtol=1e-6)
    np.testing.assert_allclose(opts["top"], np.log10(np.add(want_y, want_se)) - np.log10(want_y), rtol=1e-5)
    qtbot.wait(100)
    (x0, x1), (y0, y1) = sv.holdout_plot.viewRange()  # the points are in view (not ranged by a hidden plot)
    assert x0 <= min(want_x) and max(want_x) <= x1 and y0 <= min(ys) and max(ys) <= y1
    assert not sv.cancel_button.isEnabled() and sv.export_button.isEnabled()
    # a point's job details name its sampling (the part of the acquisition kept) and its hold-out score
    jp = window.jobs_panel
    point = sweep.entries[-1]
    jp._details(jp.rows[point.id], 0)
    text = messages[-1][2]
    assert "acquired subset" in text and f"hold-out NMSE: {point.holdout['holdout_nmse']:.4g}" in text


@pytest.mark.parametrize("n_spokes", [24, 25, 64])
@pytest.mark.parametrize("order", ["linear", "golden", "golden, edge sample wrapped"])
def test_readouts_are_the_spokes_of_linear_and_golden_radial_trajectories(n_spokes, order):
    """Each readout found is one whole spoke (spoke i's samples, in order). Spokes of a linear order meet their neighbour across the grid's edge (the end of the spoke at
    90 - d degrees and the start of the one at 90 + d are a period apart), which a step measured modulo the
    period alone does not see; a spoke whose end sample is stored wrapped to the other edge is still one."""
    from workbench.session.sweeps import readouts

    n_read = 64
    step = np.pi / n_spokes if order == "linear" else np.pi * (3 - np.sqrt(5)) / 2
    angles = np.arange(n_spokes) * step
    r = np.linspace(-np.pi, np.pi, n_read, endpoint=False)
    if order.endswith("wrapped"):
        r = r + 2 * np.pi / n_read  # the spokes end at +pi ...
    traj = np.concatenate([np.stack([r * np.cos(a), r * np.sin(a)]) for a in angles], axis=1)
    if order.endswith("wrapped"):
        traj = (traj + np.pi) % (2 * np.pi) - np.pi  # ... stored at -pi
    parts = readouts(traj)
    assert [len(p) for p in parts] == [n_read] * n_spokes
    for spoke, part in enumerate(parts):
        assert list(part) == list(range(spoke * n_read, (spoke + 1) * n_read))


def test_finished_holdout_runs_are_freed_with_the_queues_finished_jobs(session):
    """A validated point keeps its hold-out score, not its hold-out jobs: once the job queue forgets its
    finished jobs (the Jobs panel's Clear), their problems and images are freed."""
    import gc
    import weakref

    session.set_scan(_measured("random", 3))
    sweep = session.sweep([(discover_methods().get("zero-filled"), {})], [1, 2])
    _wait(sweep)
    assert all(e.holdout["holdout_nmse"] is not None for e in sweep.entries)
    queue = session.job_queue
    points = {id(e.job) for e in sweep.entries}
    folds = [weakref.ref(j) for j in queue.jobs if id(j) not in points]
    assert len(folds) >= 4  # two points, two folds or more each
    queue.clear_finished()
    gc.collect()
    assert len([f for f in folds if f() is not None]) <= 1  # the job a worker ran last (a local until the next)
