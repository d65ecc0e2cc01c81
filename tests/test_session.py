"""The session model (no Qt): derived images against explicit numpy formulas, mask editing, events, jobs through
test plugins, project files."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from workbench.errors import CorruptFileError, ScanError, SamplingError
from workbench.io.fastmri import write_fastmri
from workbench.scan import scan_from_arrays
from workbench.session import ACQUIRED, USER, Session, fit_shape, region_stats
from numpy_reference import np_crop, np_fft2c, np_ifft2c  # noqa: E402

H, W, C = 64, 48, 4  # readout oversampled 2x: recon 32 x 48
RECON = (32, 48)


def phantom_kspace(n_slices: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for s in range(n_slices):
        img = ((yy - 32) ** 2 / 14**2 + (xx - 24) ** 2 / 17**2 < 1) * (1.0 + 0.4 * np.sin(xx / 2.5 + s))
        img = img + 0.5 * ((yy - 30) ** 2 + (xx - 20) ** 2 < 16)
        maps = np.stack([np.exp(-((yy - a) ** 2 + (xx - b) ** 2) / 900) * np.exp(1j * (xx - yy) / 40 * c)
                         for c, (a, b) in enumerate([(0, 0), (0, 47), (63, 0), (63, 47)])])
        k = np_fft2c(img * np.exp(0.3j * yy / H) * maps)
        k = k + 0.002 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        out.append(k.astype(np.complex64))
    return np.stack(out)


@pytest.fixture()
def kspace() -> np.ndarray:
    return phantom_kspace()


@pytest.fixture()
def session(kspace) -> Session:
    s = Session(device="cpu")
    s.set_scan(scan_from_arrays(kspace, recon_shape=RECON))
    yield s
    s.shutdown()


def reference_of(k: np.ndarray) -> np.ndarray:
    return np_crop(np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(0)), RECON).astype(np.float32)


def zero_filled_of(k: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np_crop(np.sqrt((np.abs(np_ifft2c(k * mask)) ** 2).sum(0)), RECON).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
def test_fit_shape_crops_and_pads_around_the_centre():
    x = np.arange(5 * 6).reshape(5, 6)
    assert np.array_equal(fit_shape(x, (3, 4)), x[1:4, 1:5])
    p = fit_shape(x, (7, 8))
    assert p.shape == (7, 8) and np.array_equal(p[1:6, 1:7], x) and p.sum() == x.sum()


def test_reference_is_rss_of_full_data_cropped(session, kspace):
    i = session.slice_index
    np.testing.assert_allclose(session.reference(), reference_of(kspace[i]), rtol=1e-4, atol=1e-6)
    assert session.reference().shape == RECON


def test_stored_reference_wins(kspace):
    ref = np.full((2, *RECON), 3.0, np.float32)
    s = Session(device="cpu")
    s.set_scan(scan_from_arrays(kspace, reference=ref))
    assert np.all(s.reference() == 3.0)


def test_zero_filled_fast_path_matches_explicit_formula_for_line_masks(session, kspace):
    rng = np.random.default_rng(1)
    cols = rng.random(W) < 0.3
    cols[W // 2 - 3:W // 2 + 3] = True
    mask = np.broadcast_to(cols, (H, W)).copy()
    session.editor.begin_user_mask(mask)
    expected = zero_filled_of(kspace[session.slice_index], mask)
    np.testing.assert_allclose(session.zero_filled(), expected, rtol=1e-4, atol=1e-5)


def test_zero_filled_general_path_matches_formula_for_2d_masks(session, kspace):
    rng = np.random.default_rng(2)
    mask = rng.random((H, W)) < 0.4
    session.editor.begin_user_mask(mask)
    expected = zero_filled_of(kspace[session.slice_index], mask)
    np.testing.assert_allclose(session.zero_filled(), expected, rtol=1e-4, atol=1e-5)


def test_zero_filled_metrics_follow_skimage(session, kspace):
    mask = np.zeros((H, W), bool)
    mask[:, ::3] = True
    mask[:, W // 2 - 4:W // 2 + 4] = True
    session.editor.begin_user_mask(mask)
    ref = reference_of(kspace[session.slice_index])
    zf = zero_filled_of(kspace[session.slice_index], mask)
    m = session.zero_filled_metrics()
    dr = float(ref.max())
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, zf, data_range=dr), abs=1e-3)
    assert m["ssim"] == pytest.approx(structural_similarity(ref, zf, data_range=dr, win_size=7), abs=1e-4)
    assert m["nmse"] == pytest.approx(float(np.sum((ref - zf) ** 2) / np.sum(ref**2)), rel=1e-3)


def test_fully_sampled_zero_filled_equals_reference(session):
    session.editor.begin_user_mask(np.ones((H, W), bool))
    np.testing.assert_allclose(session.zero_filled(), session.reference(), rtol=1e-4, atol=1e-5)
    assert session.zero_filled_metrics()["nmse"] < 1e-8


def test_slice_change_invalidates_caches(session, kspace):
    session.editor.begin_user_mask(np.ones((H, W), bool))
    a = session.zero_filled().copy()
    session.set_slice(0 if session.slice_index else 1)
    b = session.zero_filled()
    np.testing.assert_allclose(b, reference_of(kspace[session.slice_index]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(a, b)


def test_kspace_log_magnitude_and_coil_views(session, kspace):
    k = kspace[session.slice_index]
    v = session.kspace_log_magnitude()
    mag = np.sqrt((np.abs(k) ** 2).sum(0))
    np.testing.assert_allclose(v, np.log1p(mag * 1e3 / mag.max()), rtol=1e-4, atol=1e-4)
    session.set_coil(2)
    np.testing.assert_allclose(session.kspace_log_magnitude(), np.log1p(np.abs(k[2]) * 1e3 / np.abs(k[2]).max()),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(session.full_image(), np_crop(np.abs(np_ifft2c(k[2])), RECON), rtol=1e-4, atol=1e-5)


def test_psf_of_equispaced_lines_has_aliases_at_w_over_r(session):
    mask = np.zeros((H, W), bool)
    mask[:, ::4] = True
    session.editor.begin_user_mask(mask)
    psf = session.psf()
    # |ifft(comb with period 4)| has equal peaks every W/4 columns on the centre row, and nothing between
    row = psf[H // 2]
    peaks = np.flatnonzero(row > 0.5)
    assert list(np.diff(peaks)) == [W // 4] * (len(peaks) - 1) and len(peaks) == 4
    assert psf.max() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------------------
# hand-drawn masks
def test_toggle_and_drag_lines_with_undo_redo(session):
    session.editor.begin_user_mask(np.zeros((H, W), bool))
    events = []
    unsubscribe = session.subscribe("sampling", lambda st: events.append(st.mask.copy()))
    assert session.editor.toggle_line(10) is True
    assert session.mask()[:, 10].all() and session.mask().sum() == H
    session.editor.begin_stroke()
    session.editor.set_lines(range(20, 25), True)
    session.editor.set_lines(range(25, 27), True)
    session.editor.end_stroke()
    assert session.mask()[0].sum() == 1 + 7
    assert len(events) == 3
    assert session.undo()  # the whole stroke is one step
    assert session.mask()[0].sum() == 1
    assert session.undo()
    assert session.mask().sum() == 0
    assert not session.can_undo
    assert session.redo() and session.mask()[0].sum() == 1
    assert session.redo() and session.mask()[0].sum() == 8
    assert not session.can_redo
    unsubscribe()
    session.editor.toggle_line(10)
    assert len(events) == 7  # no more events after unsubscribing (3 edits + 2 undo + 2 redo)
    assert not session.mask()[:, 10].any()


def test_symmetric_lines_and_brush(session):
    session.editor.begin_user_mask(np.zeros((H, W), bool))
    session.symmetric = True
    session.editor.set_lines([W // 2 + 5], True)
    on = np.flatnonzero(session.mask()[0])
    assert list(on) == [W // 2 - 5, W // 2 + 5]
    session.editor.clear_mask()
    assert session.mask().sum() == 0
    session.editor.paint(10, 12, 3, True)
    m = session.mask()
    rr, cc = np.mgrid[:H, :W]
    disc = (rr - 10) ** 2 + (cc - 12) ** 2 <= 9
    mirror = (rr - (2 * (H // 2) - 10)) ** 2 + (cc - (2 * (W // 2) - 12)) ** 2 <= 9
    assert np.array_equal(m, disc | mirror)
    session.editor.paint(10, 12, 1.5, False)  # erase a smaller disc (and its mirror)
    small = (rr - 10) ** 2 + (cc - 12) ** 2 <= 2.25
    assert not session.mask()[small].any() and session.mask()[disc & ~small].all()


def test_editing_a_generated_sampling_switches_to_hand_drawn(session):
    session.editor.begin_user_mask(np.ones((H, W), bool))
    assert session.sampling_state.kind == USER
    assert session.sampling_state.acceleration == pytest.approx(1.0)
    session.editor.set_lines(range(0, W, 2), False)
    assert session.sampling_state.acceleration == pytest.approx(2.0)


def test_mask_must_fit_the_grid(session):
    with pytest.raises(SamplingError):
        session.editor.begin_user_mask(np.ones((H, W + 1), bool))


def test_undersampled_scan_defaults_to_acquired(kspace):
    k = kspace.copy()
    k[..., 1::2] = 0
    s = Session(device="cpu")
    s.set_scan(scan_from_arrays(k, recon_shape=RECON))
    st = s.sampling_state
    assert st.kind == ACQUIRED and st.acceleration == pytest.approx(2.0)
    assert s.reference() is None and s.zero_filled_metrics() == {}
    np.testing.assert_allclose(s.zero_filled(), zero_filled_of(k[s.slice_index], np.ones((H, W))),
                               rtol=1e-4, atol=1e-5)


def test_radial_sampling_of_a_cartesian_scan(session):
    st = session.set_sampling("golden-radial", acceleration=2.0)
    assert not st.is_cartesian and st.trajectory.shape[0] == 2
    assert st.acceleration == pytest.approx(H * W / st.trajectory.shape[1])
    zf = session.zero_filled()
    m = session.zero_filled_metrics()
    assert zf.shape == RECON and np.isfinite(zf).all()
    # a density-compensated radial zero-filled image at R=2 resembles the reference (a wrong DCF or scaling
    # would not), but is worse than fully sampled
    assert 0.5 < m["ssim"] < 1.0 and m["nmse"] < 0.2
    psf = session.psf()
    assert np.unravel_index(np.argmax(psf), psf.shape) == (H // 2, W // 2)
    pts, w = session.trajectory_view(max_points=500)
    assert pts.shape[0] == 2 and pts.shape[1] == w.shape[0] <= 1000


def test_noncartesian_scan_is_used_as_acquired(session):
    from workbench.sampling import radial_trajectory

    traj = radial_trajectory(24, 64).numpy()
    k = (np.random.default_rng(0).standard_normal((2, 3, traj.shape[1])) * (1 + 0j)).astype(np.complex64)
    s = Session(device="cpu")
    s.set_scan(scan_from_arrays(k, trajectory=traj, grid_shape=(32, 32)))
    st = s.sampling_state
    assert st.kind == ACQUIRED and not st.is_cartesian and s.kspace_log_magnitude() is None
    assert s.zero_filled().shape == (32, 32) and s.reference() is None and s.zero_filled_metrics() == {}
    with pytest.raises(SamplingError):
        s.set_sampling("random", acceleration=4.0)
    assert s.sampling_state.kind == ACQUIRED


def test_region_stats():
    a = np.arange(100, dtype=float).reshape(10, 10)
    ref = np.zeros((10, 10))
    st = region_stats(a, ref, slice(2, 4), slice(3, 6))
    block = a[2:4, 3:6]
    assert st["mean"] == pytest.approx(block.mean()) and st["max"] == 35 and st["pixels"] == 6
    assert st["rmse"] == pytest.approx(np.sqrt((block**2).mean()))


# ----------------------------------------------------------------------------------------------------------------
# jobs through test plugins
# the test plugins and the `registry` fixture are in conftest.py; Landweber with a unit step here (it converges in
# one step to the zero-filled image)
LANDWEBER_DEFAULTS = {"n_iter": 20, "step": 1.0}


def wait_for(entry, timeout=20.0):
    t0 = time.time()
    while entry.active and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert not entry.active, f"job still {entry.state} after {timeout} s"


def test_registry_reports_the_broken_plugin(registry):
    assert {"test-landweber", "test-zf", "test-failing", "test-slow"} <= set(registry.methods)
    assert any("broken.py" in e.source and "this_module_does_not_exist_anywhere" in e.message
               for e in registry.errors)


def test_run_results_and_metrics(session, registry, kspace):
    cols = np.zeros(W, bool)
    cols[::2] = True
    cols[W // 2 - 4:W // 2 + 4] = True
    session.editor.begin_user_mask(np.broadcast_to(cols, (H, W)).copy())
    seen = []
    session.subscribe("result", lambda e: seen.append(e.state))
    zf = session.run(registry.methods["test-zf"])
    lw = session.run(registry.methods["test-landweber"], {"n_iter": 30})
    lw2 = session.run(registry.methods["test-landweber"], {"n_iter": 2})
    for e in (zf, lw, lw2):
        wait_for(e)
    assert [e.state for e in (zf, lw, lw2)] == ["done"] * 3
    assert "running" in seen and seen[-1] == "done"
    assert lw2.label != lw.label and len(session.results) == 3  # separate results per run
    # the Problem-based zero-filled image equals the session's explicit fast-path zero-filled image
    np.testing.assert_allclose(np.abs(zf.image), session.zero_filled(), rtol=1e-4, atol=1e-5)
    assert zf.metrics["psnr"] == pytest.approx(session.zero_filled_metrics()["psnr"], abs=1e-3)
    assert zf.std is not None and zf.std.shape == RECON
    # Landweber with unit step on an orthonormal masked FFT converges in one step to the zero-filled solution
    # (x = F^H M y); more iterations must not change it, and its metrics follow skimage
    np.testing.assert_allclose(np.abs(lw.image), session.zero_filled(), rtol=1e-3, atol=1e-4)
    ref = session.reference()
    assert lw.metrics["psnr"] == pytest.approx(
        peak_signal_noise_ratio(ref, np.abs(lw.image), data_range=float(ref.max())), abs=1e-3)
    assert lw.params == {"n_iter": 30, "step": 1.0} and lw.elapsed is not None


def test_failing_plugin_and_bad_params(session, registry):
    from workbench.methods import ParamError

    e = session.run(registry.methods["test-failing"])
    wait_for(e)
    assert e.state == "failed" and "deliberate failure" in e.error
    assert "RuntimeError" in (e.error_details or "")
    with pytest.raises(ParamError):
        session.run(registry.methods["test-landweber"], {"n_iter": 0})
    # the session keeps working
    ok = session.run(registry.methods["test-zf"])
    wait_for(ok)
    assert ok.state == "done"


def test_cancel_running_and_queued_jobs(session, registry):
    slow = session.run(registry.methods["test-slow"])
    queued = session.run(registry.methods["test-zf"])
    t0 = time.time()
    while slow.state != "running" and time.time() - t0 < 10:
        time.sleep(0.01)
    assert slow.state == "running"
    session.cancel(queued)
    session.cancel(slow)
    wait_for(slow, 5)
    wait_for(queued, 5)
    assert slow.state == "cancelled" and queued.state == "cancelled"
    assert time.time() - t0 < 10  # cancelled long before its 30 s


def test_run_on_another_slice_scores_against_that_slice(session, registry, kspace):
    other = 0 if session.slice_index else 1
    e = session.run(registry.methods["test-zf"], slice_index=other)
    wait_for(e)
    ref = reference_of(kspace[other])
    zf = zero_filled_of(kspace[other], np.broadcast_to(session.mask().any(0), (H, W)))
    np.testing.assert_allclose(np.abs(e.image), zf, rtol=1e-4, atol=1e-5)
    assert e.slice_index == other
    assert e.metrics["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, zf, data_range=float(ref.max())), abs=1e-3)


def test_check_methods_reports_reasons(session, registry):
    reasons = session.check_methods(registry.methods.values())
    assert reasons["test-zf"] == [] and reasons["test-landweber"] == []
    assert any("Cartesian" in r for r in reasons["test-noncart-only"])
    got = {}
    done = threading.Event()
    session.check_methods(registry.methods.values(), callback=lambda r: (got.update(r), done.set()))
    assert done.wait(5) and got == reasons


def test_results_only_of_current_slice_in_comparison(session, registry):
    e = session.run(registry.methods["test-zf"])
    wait_for(e)
    keys = [r["key"] for r in session.comparison_rows()]
    assert keys == ["zero-filled", e.id]
    session.set_slice(0 if session.slice_index else 1)
    assert [r["key"] for r in session.comparison_rows()] == ["zero-filled"]
    assert len(session.comparison_rows(slice_only=False)) == 2


# ----------------------------------------------------------------------------------------------------------------
# project files
def test_save_and_load_project(tmp_path, kspace, registry):
    path = tmp_path / "scan.h5"
    write_fastmri(path, kspace)
    s = Session(device="cpu")
    s.open(path)
    mask = np.zeros((H, W), bool)
    mask[:, ::3] = True
    s.editor.begin_user_mask(mask)
    s.set_slice(0)
    e = s.run(registry.methods["test-zf"])
    wait_for(e)
    s.export_metrics_csv(tmp_path / "metrics.csv")
    proj = tmp_path / "project" / "session.wbs.json"
    proj.parent.mkdir()
    sidecar = s.save(proj)
    doc = json.loads(proj.read_text())
    assert doc["scan"]["path"] == str(path) and doc["sampling"]["kind"] == USER
    assert doc["results"][0]["method"] == "test-zf" and doc["results"][0]["params"] == {}
    s.shutdown()

    t = Session(device="cpu")
    t.load(proj)
    assert t.scan.path == str(path) and t.slice_index == 0
    assert np.array_equal(t.mask(), mask) and t.sampling_state.kind == USER
    assert len(t.results) == 1
    r = t.results[0]
    assert r.state == "done" and r.method == "test-zf"
    np.testing.assert_array_equal(r.image, e.image)
    np.testing.assert_array_equal(r.std, e.std)
    assert r.metrics == pytest.approx(e.metrics)
    assert sidecar.endswith("session.wbs.npz")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("label,method,slice,psnr") and len(lines) == 3
    assert lines[2].split(",")[1] == "test-zf"


def test_project_finds_a_moved_scan_relative_to_it(tmp_path, kspace):
    folder = tmp_path / "a"
    folder.mkdir()
    write_fastmri(folder / "scan.h5", kspace)
    s = Session(device="cpu")
    s.open(folder / "scan.h5")
    s.editor.begin_user_mask(np.ones((H, W), bool))
    s.save(folder / "p.json")
    moved = tmp_path / "b"
    folder.rename(moved)
    t = Session(device="cpu")
    t.load(moved / "p.json")
    assert t.scan.path == str(moved / "scan.h5")


def test_bad_project_files_raise_typed_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CorruptFileError, match="bad.json"):
        Session().load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CorruptFileError, match="not a workbench session"):
        Session().load(other)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"format": "workbench-session", "scan": {"path": str(tmp_path / "gone.h5")}}))
    with pytest.raises(ScanError, match="gone.h5"):
        Session().load(missing)


def test_open_bad_file_leaves_session_unchanged(session, tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not HDF5 at all" * 10)
    before = session.scan
    with pytest.raises(ScanError, match="junk.h5"):
        session.open(junk)
    assert session.scan is before


def test_out_of_memory_is_reported_clearly_and_the_session_keeps_working(session, registry):
    for name, raw in (("test-oom", "MemoryError"), ("test-cuda-oom", "Tried to allocate 20.00 GiB")):
        e = session.run(registry.methods[name])
        wait_for(e)
        assert e.state == "failed"
        assert e.error.startswith("out of memory") and raw in e.error, e.error
        assert "OutOfMemoryError" in (e.error_details or "") or "MemoryError" in (e.error_details or "")
    ok = session.run(registry.methods["test-zf"])
    wait_for(ok)
    assert ok.state == "done"


def test_a_new_scan_starts_an_empty_comparison(session, registry, kspace):
    e = session.run(registry.methods["test-zf"])
    slow = session.run(registry.methods["test-slow"])
    wait_for(e)
    seen = []
    session.subscribe("results", lambda r: seen.append(list(r)))
    session.set_scan(scan_from_arrays(kspace[:1], recon_shape=RECON))
    assert session.results == [] and seen and seen[-1] == []
    assert [r["key"] for r in session.comparison_rows()] == ["zero-filled"]
    wait_for(slow)
    assert slow.state == "cancelled"  # the previous scan's running job was stopped
    again = session.run(registry.methods["test-zf"])
    assert again.label == "test-zf"  # numbering restarts with the scan
    wait_for(again)


def test_scale_free_reference_is_fitted_before_metrics(kspace, registry):
    """A reference valid up to a global scale (BART pics): metrics and error maps of the scaled image, with the
    least-squares scale a = <ref, |x|> / <|x|, |x|>, computed here independently."""
    i = 1
    true_ref = reference_of(kspace[i])
    stored = (true_ref * 1e-6).astype(np.float32)  # raw units against a normalised image
    mask = np.zeros((H, W), bool)
    mask[:, ::2] = True
    mask[:, W // 2 - 4:W // 2 + 4] = True
    s = Session(device="cpu")
    try:
        s.set_scan(scan_from_arrays(kspace * mask, recon_shape=RECON, reference=np.stack([stored, stored]),
                                    reference_kind="sense"))
        s.set_slice(i)
        assert s.reference_scale_free()
        zf = zero_filled_of(kspace[i], mask)
        a = float((stored.astype(np.float64) * zf).sum() / (zf.astype(np.float64) ** 2).sum())
        assert s.fit_scale(zf) == pytest.approx(a, rel=1e-5)
        m = s.zero_filled_metrics()
        dr = float(stored.max())
        assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(stored, (a * zf).astype(np.float32),
                                                                  data_range=dr), abs=1e-3)
        assert 0.3 < m["ssim"] <= 1.0 and m["nmse"] < 0.5
        np.testing.assert_allclose(s.error_map(zf), np.abs(a * zf - stored), rtol=1e-3, atol=1e-9)
        e = s.run(registry.methods["test-zf"])
        wait_for(e)
        assert e.metrics["psnr"] == pytest.approx(m["psnr"], abs=1e-2)
        # a reference on the data's own scale is left alone
        s.set_scan(scan_from_arrays(kspace * mask, recon_shape=RECON,
                                    reference=np.stack([reference_of(kspace[0]), true_ref])))
        assert not s.reference_scale_free() and s.fit_scale(zf) == 1.0
    finally:
        s.shutdown()


def test_background_derived_images_arrive_with_a_sampling_event():
    """With ``background_derived`` (the GUI), a radial scan's gridded image and PSF are computed off the calling
    thread: None at first, then a "sampling" event, then equal to the synchronous computation."""
    from workbench.sampling import radial_trajectory

    traj = radial_trajectory(16, 32).numpy()
    rng = np.random.default_rng(3)
    k = (rng.standard_normal((2, traj.shape[1])) + 1j * rng.standard_normal((2, traj.shape[1]))).astype(np.complex64)
    scan = scan_from_arrays(k, trajectory=traj, grid_shape=(32, 32))
    sync = Session(device="cpu")
    sync.set_scan(scan)
    want_zf, want_psf = sync.zero_filled(), sync.psf()
    sync.shutdown()
    s = Session(device="cpu")
    s.background_derived = True
    events = threading.Event()
    s.subscribe("sampling", lambda *_: events.set())
    try:
        s.set_scan(scan)
        events.clear()
        assert s.zero_filled() is None and s.derived_pending and s.zero_filled_metrics() == {}
        assert events.wait(30)
        np.testing.assert_allclose(s.zero_filled(), want_zf, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s.psf(), want_psf, rtol=1e-5, atol=1e-7)
        assert not s.derived_pending and s.derived_error() is None
    finally:
        s.shutdown()



def _radial_scan(file_dcf: bool):
    from workbench.sampling import radial_trajectory

    traj = radial_trajectory(24, 64).numpy()
    rng = np.random.default_rng(5)
    k = (rng.standard_normal((2, 3, traj.shape[1])) + 1j * rng.standard_normal((2, 3, traj.shape[1])))
    # file weights: a plain |k| ramp plus a constant (not what any of the methods computes)
    dcf = (np.hypot(traj[0], traj[1]) + 0.01).astype(np.float32) if file_dcf else None
    return scan_from_arrays(k.astype(np.complex64), trajectory=traj, grid_shape=(32, 32), dcf=dcf), traj, dcf


def test_acquired_noncartesian_data_takes_the_chosen_density_compensation(registry):
    from workbench.sampling.dcf import compute_dcf

    scan, traj, file_dcf = _radial_scan(file_dcf=True)
    s = Session(device="cpu")
    try:
        s.set_scan(scan)
        assert s.acquired_dcf_method is None and s.acquired_dcf_label == "file"
        p = s.problem()
        np.testing.assert_array_equal(p.dcf.numpy(), file_dcf)
        assert p.provenance["dcf_method"] == "file"
        zf_file = s.zero_filled().copy()
        version = s.sampling_version
        events = []
        s.subscribe("sampling", events.append)
        st = s.set_acquired_dcf_method("voronoi")
        assert st.kind == ACQUIRED and st.params == {"dcf_method": "voronoi"} and s.acquired_dcf_label == "voronoi"
        assert events and s.sampling_version > version
        want = compute_dcf(traj, (32, 32), "voronoi").numpy()  # an independent computation
        p = s.problem()
        np.testing.assert_allclose(p.dcf.numpy(), want, rtol=1e-6)
        assert p.provenance["dcf_method"] == "voronoi"
        zf_voronoi = s.zero_filled()
        assert not np.allclose(zf_voronoi, zf_file, rtol=1e-2)  # the preview follows the choice
        np.testing.assert_allclose(s.trajectory_view()[1], want, rtol=1e-6)
        assert "dcf_method=voronoi" in s.comparison_rows()[0]["sampling"]
        # a result is marked as made with it, and its problem used it (test-zf returns the gridded RSS image)
        e = s.run(registry.methods["test-zf"])
        wait_for(e)
        assert e.state == "done", e.error
        assert e.sampling["kind"] == ACQUIRED and e.sampling["params"] == {"dcf_method": "voronoi"}
        np.testing.assert_allclose(np.abs(e.image), zf_voronoi, rtol=1e-4, atol=1e-6)
        # the ramp works for radial spokes; "file" (or None) returns to the file's weights
        s.set_acquired_dcf_method("ramp")
        np.testing.assert_allclose(s.problem().dcf.numpy(), compute_dcf(traj, (32, 32), "ramp").numpy(), rtol=1e-6)
        s.set_acquired_dcf_method("file")
        assert s.acquired_dcf_method is None and s.sampling_state.params == {}
        p = s.problem()
        np.testing.assert_array_equal(p.dcf.numpy(), file_dcf)
        assert p.provenance["dcf_method"] == "file"
        np.testing.assert_allclose(s.zero_filled(), zf_file, rtol=1e-5, atol=1e-7)
        with pytest.raises(SamplingError):
            s.set_acquired_dcf_method("gridding")
        assert s.acquired_dcf_method is None
    finally:
        s.shutdown()


def test_acquired_dcf_without_file_weights_and_the_ramp_refused_for_a_spiral():
    from workbench.sampling import spiral_trajectory
    from workbench.sampling.dcf import compute_dcf

    scan, traj, _ = _radial_scan(file_dcf=False)
    s = Session(device="cpu")
    try:
        s.set_scan(scan)
        assert s.acquired_dcf_label == "pipe-menon"
        p = s.problem()
        np.testing.assert_allclose(p.dcf.numpy(), compute_dcf(traj, (32, 32), "pipe-menon").numpy(), rtol=1e-5)
        assert p.provenance["dcf_method"] == "pipe-menon"
        s.set_acquired_dcf_method("voronoi")
        np.testing.assert_allclose(s.problem().dcf.numpy(), compute_dcf(traj, (32, 32), "voronoi").numpy(),
                                   rtol=1e-6)
        # a new scan starts from its own default
        spiral = spiral_trajectory(4, 64, (32, 32)).numpy()
        k = np.ones((1, 2, spiral.shape[1]), np.complex64)
        s.set_scan(scan_from_arrays(k, trajectory=spiral, grid_shape=(32, 32)))
        assert s.acquired_dcf_method is None
        s.set_acquired_dcf_method("voronoi")
        version = s.sampling_version
        # a spiral is not radial: the ramp is refused with a clear message and nothing changes
        with pytest.raises(SamplingError, match="radial"):
            s.set_acquired_dcf_method("ramp")
        assert s.acquired_dcf_method == "voronoi" and s.sampling_version == version
    finally:
        s.shutdown()
    # Cartesian data has no density compensation
    c = Session(device="cpu")
    c.set_scan(scan_from_arrays(np.ones((1, 2, 8, 8), np.complex64)))
    with pytest.raises(SamplingError, match="Cartesian"):
        c.set_acquired_dcf_method("voronoi")


def test_loaded_trajectory_keeps_its_density_compensation_on_the_slider(session, tmp_path):
    session.set_sampling("golden-radial", acceleration=4.0, dcf_method="voronoi")
    session.editor.save(tmp_path / "traj.json")
    session.set_sampling("equispaced", acceleration=4.0)
    session.editor.load(tmp_path / "traj.json")
    assert session.sampling.dcf_method == "voronoi"
    session.set_acceleration(6.0)
    assert session.sampling_state.requested_acceleration == 6.0
    assert session.sampling.kind == "golden-radial" and session.sampling.dcf_method == "voronoi"


def test_parts_never_import_the_session():
    """The headless parts of workbench/session/ are given values: none imports the facade or the package."""
    import ast
    import pathlib

    import workbench.session as package

    folder = pathlib.Path(package.__file__).parent
    for path in folder.glob("*.py"):
        if path.name in ("__init__.py", "facade.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name not in ("workbench.session", "workbench.session.facade"), (path.name, name)
                assert not (isinstance(node, ast.ImportFrom) and node.level), (path.name, "relative import")


def test_acquired_dcf_is_computed_once_by_the_problem_and_shared_with_the_session(monkeypatch):
    """The DCF of an acquired trajectory has one owner (workbench.problem.acquired_dcf): the session's PSF,
    trajectory view and problems reuse one computation per scan and method."""
    import workbench.sampling.dcf as dcf_module

    calls = []
    original = dcf_module.compute_dcf
    monkeypatch.setattr(dcf_module, "compute_dcf", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    s = Session(device="cpu")
    try:
        s.set_scan(_radial_scan(file_dcf=False)[0])
        psf, (_, weights) = s.psf(), s.trajectory_view()
        problem = s.problem()
        np.testing.assert_allclose(problem.dcf.numpy(), weights, rtol=0, atol=0)
        assert psf.max() == pytest.approx(1.0) and calls == ["pipe-menon"]
        s.set_acquired_dcf_method("voronoi")
        s.psf(), s.problem(), s.problem()
        assert calls == ["pipe-menon", "voronoi"] and s.problem().provenance["dcf_method"] == "voronoi"
    finally:
        s.shutdown()


def test_params_text_shows_what_an_automatic_weight_became():
    from types import SimpleNamespace

    from workbench.session.runs import ResultEntry

    def entry(params, chosen):
        e = ResultEntry(id=1, method="xpdnet", params=params, slice_index=0, sampling={})
        e.result = SimpleNamespace(chosen=chosen)
        return e

    picked = entry({"consistency_lam": None, "adapt": False},
                   {"consistency_lam": 0.03, "consistency_lam_rule": "hold-out"})
    assert picked.params_text() == "consistency_lam=auto 0.03 (hold-out), adapt=False"
    kept = entry({"consistency_lam": None}, {"consistency_lam": None, "consistency_lam_rule": "hold-out"})
    assert kept.params_text() == "consistency_lam=auto none (hold-out)"
    fixed = entry({"consistency_lam": 0.1}, {"consistency_lam": 0.1})
    assert fixed.params_text() == "consistency_lam=0.1"
    assert fixed.chosen_text() == "consistency_lam=0.1"
    assert picked.chosen_text() == "consistency_lam=0.03 (hold-out)"
    assert kept.chosen_text() == "consistency_lam=none (hold-out)"
    l1 = entry({"lam": None}, {"lam": 0.00556, "lam_rule": "discrepancy", "lam_absolute": 3.2, "n_iter": 100})
    assert l1.chosen_text() == "lam=0.00556 (discrepancy)"
    # an automatic switch (xpdnet's adapt) says what it became and why
    auto = entry({"adapt": None}, {"adapt": True, "adapt_rule": "2 coils; on for at most 2", "consistency": False})
    assert auto.params_text() == "adapt=auto on (2 coils; on for at most 2)"
    assert auto.chosen_text() == "adapt=on (2 coils; on for at most 2)"
    off = entry({"adapt": None}, {"adapt": False, "adapt_rule": "8 coils; on for at most 2"})
    assert off.params_text() == "adapt=auto off (8 coils; on for at most 2)"
