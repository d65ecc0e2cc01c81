"""End-to-end tests of the desktop app (pytest-qt, offscreen) on a small fastMRI file and test plugins."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore, QtGui, QtTest, QtWidgets  # noqa: E402

from workbench.io.fastmri import write_fastmri  # noqa: E402
from numpy_reference import np_crop, np_fft2c, np_ifft2c  # noqa: E402

Qt = QtCore.Qt
H, W, C, S = 64, 48, 4, 2
RECON = (32, 48)


def make_kspace(seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for s in range(S):
        img = ((yy - 32) ** 2 / 14**2 + (xx - 24) ** 2 / 17**2 < 1) * (1.0 + 0.4 * np.sin(xx / 2.5 + s))
        maps = np.stack([np.exp(-((yy - a) ** 2 + (xx - b) ** 2) / 900) for a, b in
                         [(0, 0), (0, 47), (63, 0), (63, 47)]])
        k = np_fft2c(img * maps) + 0.002 * (rng.standard_normal((C, H, W)) + 1j * rng.standard_normal((C, H, W)))
        out.append(k.astype(np.complex64))
    return np.stack(out)


# the test plugins, `plugin_dir` and `registry` are in conftest.py


@pytest.fixture(scope="module")
def kspace():
    return make_kspace()


@pytest.fixture()
def scan_file(tmp_path, kspace):
    ref = np_crop(np.sqrt((np.abs(np_ifft2c(kspace)) ** 2).sum(1)), RECON).astype(np.float32)
    path = tmp_path / "small.h5"
    write_fastmri(path, kspace, ref)
    return str(path)


# `settings`, `messages` and `window` are in conftest.py


def wait_done(qtbot, *entries, timeout=15000):
    qtbot.waitUntil(lambda: all(not e.active for e in entries), timeout=timeout)


def zero_filled_in_compare_tab(window, scan_file, qtbot):
    """Open ``scan_file``, run test-zf, show the compare tab and wait for its column. Returns the entry."""
    window.open_path(scan_file)
    e = window.session.run(window.registry.methods["test-zf"])
    wait_done(qtbot, e)
    window.tabs.setCurrentWidget(window.compare_view)
    qtbot.waitUntil(lambda: e.id in [c.key for c in window.compare_view.grid.columns])
    return e


class FakeDrag:
    """The part of pyqtgraph's MouseDragEvent the mask editor uses."""

    def __init__(self, item, down, pos, start=False, finish=False):
        self.item, self.down, self.p, self.start, self.finish = item, down, pos, start, finish

    def button(self):
        return Qt.MouseButton.LeftButton

    def isStart(self):  # noqa: N802
        return self.start

    def isFinish(self):  # noqa: N802
        return self.finish

    def pos(self):
        return self.p

    def buttonDownScenePos(self):  # noqa: N802
        return self.item.mapToScene(self.down)

    def accept(self):
        pass

    def ignore(self):
        raise AssertionError("the mask editor ignored a left-button drag")


def click(qtbot, panel, row, col):
    vp = panel.viewport()
    pos = widget_pos(panel, row, col)
    QtTest.QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.wait(10)
    QtTest.QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos, 20)


def widget_pos(panel, row, col):
    """Viewport position of pixel (row, col) of an ImagePanel's image."""
    scene = panel.image_item.mapToScene(QtCore.QPointF(col + 0.5, row + 0.5))
    return panel.mapFromScene(scene)


# ----------------------------------------------------------------------------------------------------------------
def test_open_browse_and_status(window, scan_file, qtbot):
    assert window.open_path(scan_file)
    s = window.session
    assert s.scan.n_slices == S and window.scan_dock_widget.slice_spin.maximum() == S
    assert "small.h5" in window.windowTitle()
    assert window.scan_view.kspace_panel.data.shape == (H, W)
    np.testing.assert_allclose(window.scan_view.image_panel.data, s.reference())
    window.scan_dock_widget.slice_spin.setValue(1)
    assert s.slice_index == 0
    window.scan_dock_widget.coil_combo.setCurrentIndex(3)  # coil 3
    assert s.coil_index == 2
    window.scan_view.image_choice.setCurrentText("fully sampled")
    k = s.kspace().numpy()
    np.testing.assert_allclose(window.scan_view.image_panel.data, np_crop(np.abs(np_ifft2c(k[2])), RECON),
                               rtol=1e-4, atol=1e-5)
    # header panel lists the scan summary
    top = window.scan_dock_widget.tree.topLevelItem(0)
    fields = {top.child(i).text(0): top.child(i).text(1) for i in range(top.childCount())}
    assert fields["coils"] == str(C) and fields["format"] == "fastmri"
    # status bar: pixel coordinates and value under the mouse
    panel = window.scan_view.image_panel
    window.tabs.setCurrentWidget(window.scan_view)
    qtbot.waitUntil(lambda: panel.isVisible())
    panel.hovered.emit(3, 4, 1.5, "reference")
    assert "row 3, col 4" in window.hover_label.text() and "1.5" in window.hover_label.text()
    window._step_slice(+1)
    assert s.slice_index == 1


def test_recent_files_drag_and_drop(window, scan_file, tmp_path, kspace):
    assert window.open_path(scan_file)
    assert window.recent_files()[0] == os.path.abspath(scan_file)
    assert any(a.text() == "small.h5" for a in window.recent_menu.actions())
    other = tmp_path / "other.h5"
    write_fastmri(other, kspace[:1])
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(other))])
    drop = QtGui.QDropEvent(QtCore.QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.session.scan.path == str(other)
    assert window.recent_files()[:2] == [str(other), os.path.abspath(scan_file)]


def test_bad_file_shows_error_and_app_keeps_working(window, scan_file, tmp_path, messages):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a scan" * 50)
    assert not window.open_path(str(junk))
    assert messages and messages[-1][0] == "warning" and "junk.h5" in messages[-1][2]
    assert window.session.scan is None
    assert not window.open_path(str(tmp_path / "missing.h5"))
    assert "missing.h5" in messages[-1][2] and "does not exist" in messages[-1][2]
    assert window.open_path(scan_file)  # still works
    assert window.session.scan is not None


def test_acceleration_slider_updates_mask_image_and_psnr(window, scan_file, qtbot):
    from workbench.gui.sampling_panel import R_STEPS

    window.open_path(scan_file)
    window.tabs.setCurrentWidget(window.sampling_panel)
    sp = window.sampling_panel
    s = window.session
    assert s.sampling_state.kind == "equispaced"
    sp.r_slider.setValue(2 * R_STEPS)
    qtbot.waitUntil(lambda: s.sampling_state.requested_acceleration == 2.0)
    psnr2 = s.zero_filled_metrics()["psnr"]
    mask2 = sp.mask_panel.data.copy()
    sp.r_slider.setValue(8 * R_STEPS)
    qtbot.waitUntil(lambda: s.sampling_state.requested_acceleration == 8.0)
    psnr8 = s.zero_filled_metrics()["psnr"]
    assert psnr8 < psnr2 - 1.0
    assert sp.mask_panel.data.sum() < mask2.sum()
    # the views show the session's state: mask, zero-filled image, metrics text
    np.testing.assert_array_equal(sp.mask_panel.data, s.mask().astype(np.uint8))
    np.testing.assert_allclose(sp.zf_panel.data, s.zero_filled())
    assert f"{psnr8:.2f}" in sp.stats.text()
    # a family with parameters: the form appears and drives the sampling. At R=8 a 24x24 calibration box
    # does not fit this small grid: the error is shown inline and the previous sampling stays
    sp.family_list.setCurrentRow(2)  # poisson
    assert s.sampling_state.kind == "equispaced" and "poisson" in sp.stats.text()
    sp.r_slider.setValue(3 * R_STEPS)
    qtbot.waitUntil(lambda: s.sampling_state.requested_acceleration == 3.0)
    sp.family_list.setCurrentRow(2)
    assert s.sampling_state.kind == "poisson"
    assert "calib" in sp.extra_form.editors
    sp.extra_form.editors["calib"].setValue(10)
    assert s.sampling_state.params["calib"] == (10, 10)


def test_trajectory_families_offer_the_density_compensation(window, scan_file, qtbot, tmp_path):
    from workbench.gui.sampling_panel import R_STEPS
    from workbench.sampling.dcf import voronoi_dcf

    window.open_path(scan_file)
    window.tabs.setCurrentWidget(window.sampling_panel)
    sp = window.sampling_panel
    s = window.session
    sp._select_family("golden-radial")
    assert s.sampling_state.kind == "golden-radial"
    combo = sp.extra_form.editors["dcf_method"]
    assert [combo.itemData(i) for i in range(combo.count())] == ["pipe-menon", "voronoi", "ramp"]
    assert combo.currentData() == "pipe-menon" and s.sampling.dcf_method == "pipe-menon"  # the default
    combo.setCurrentIndex(combo.findData("voronoi"))
    assert s.sampling_state.params["dcf_method"] == "voronoi" and s.sampling.dcf_method == "voronoi"
    np.testing.assert_allclose(s.sampling_state.dcf, voronoi_dcf(s.sampling.trajectory, (H, W)).numpy())
    assert "DCF voronoi" in sp.traj_plot.titleLabel.text
    # the acceleration slider regenerates the trajectory with the same choice
    sp.r_slider.setValue(3 * R_STEPS)
    qtbot.waitUntil(lambda: s.sampling_state.requested_acceleration == 3.0)
    assert s.sampling.dcf_method == "voronoi" and combo.currentData() == "voronoi"
    # a saved trajectory comes back with its method, and the form shows it
    s.editor.save(tmp_path / "traj.json")
    combo.setCurrentIndex(combo.findData("ramp"))
    assert s.sampling.dcf_method == "ramp"
    s.editor.load(tmp_path / "traj.json")
    assert s.sampling.dcf_method == "voronoi" and combo.currentData() == "voronoi"
    # ... and the slider regenerates the loaded family with it (not with the default)
    sp.r_slider.setValue(5 * R_STEPS)
    qtbot.waitUntil(lambda: s.sampling_state.requested_acceleration == 5.0)
    assert s.sampling.dcf_method == "voronoi" and combo.currentData() == "voronoi"
    sp._select_family("spiral")  # no ramp for spirals
    combo = sp.extra_form.editors["dcf_method"]
    assert [combo.itemData(i) for i in range(combo.count())] == ["pipe-menon", "voronoi"]
    assert s.sampling.dcf_method == "pipe-menon"


def test_draw_mask_with_the_mouse_and_undo(window, scan_file, qtbot):
    window.open_path(scan_file)
    window.tabs.setCurrentWidget(window.sampling_panel)
    sp = window.sampling_panel
    s = window.session
    s.editor.begin_user_mask(np.zeros((H, W), bool))
    qtbot.waitUntil(lambda: sp.mask_panel.isVisible())
    qtbot.wait(50)  # let the view range settle
    panel = sp.mask_panel
    col = 7
    click(qtbot, panel, 20, col)
    qtbot.waitUntil(lambda: s.mask()[:, col].all())
    assert s.mask().sum() == H
    # drag across columns 20..25 sets them all (pyqtgraph drag events, as the scene delivers them)
    item = sp.mask_item
    points = [QtCore.QPointF(c + 0.5, 30.5) for c in range(20, 26)]
    for i, p in enumerate(points):
        item.mouseDragEvent(FakeDrag(item, points[0], p, start=i == 0, finish=i == len(points) - 1))
    qtbot.waitUntil(lambda: s.mask()[0, 20:26].all())
    assert s.mask()[0].sum() == 7, np.flatnonzero(s.mask()[0])
    assert sp.family_list.currentItem().text() == "hand-drawn mask"
    window.undo_action.trigger()  # the drag is one undo step
    assert s.mask()[0].sum() == 1
    window.redo_action.trigger()
    assert s.mask()[0].sum() == 7
    # brush with symmetry paints a disc and its point mirror
    sp.tool_brush.setChecked(True)
    sp.symmetric_box.setChecked(True)
    sp.radius_spin.setValue(2)
    click(qtbot, panel, 10, 40)
    qtbot.waitUntil(lambda: bool(s.mask()[10, 40]))
    assert s.mask()[2 * (H // 2) - 10, 2 * (W // 2) - 40]
    sp.clear_button.click()
    assert s.mask().sum() == 0
    assert sp.undo_button.isEnabled()


def test_save_and_load_mask_files(window, scan_file, tmp_path):
    window.open_path(scan_file)
    s = window.session
    s.set_sampling("random", acceleration=3.0, seed=5)
    mask = s.mask().copy()
    path = str(tmp_path / "mask.npz")
    s.editor.save(path)
    s.set_sampling("equispaced", acceleration=6.0)
    s.editor.load(path)
    assert s.sampling_state.kind == "user" and np.array_equal(s.mask(), mask)


def test_methods_listed_greyed_and_broken_plugin_reported(window, scan_file, qtbot):
    mp = window.methods_panel
    assert any("broken.py" in t and "this_module_does_not_exist_anywhere" in t for t in mp.plugin_errors_shown())
    window.open_path(scan_file)
    qtbot.waitUntil(lambda: "test-noncart-only" in mp.reasons, timeout=10000)
    assert mp.reasons["test-landweber"] == []
    assert mp.select("test-noncart-only")
    assert not mp.run_button.isEnabled()
    assert "Cannot run here" in mp.info.text() and "Cartesian" in mp.info.text()
    assert mp.select("test-landweber")
    assert mp.run_button.isEnabled()
    assert set(mp.form.editors) == {"n_iter", "step"}
    assert mp.form.values() == {"n_iter": 10, "step": 0.5}


def test_run_two_methods_compare_export(window, scan_file, qtbot, tmp_path):
    window.open_path(scan_file)
    s = window.session
    s.set_sampling("equispaced", acceleration=3.0)
    mp = window.methods_panel
    mp.select("test-landweber")
    mp.form.editors["n_iter"].setValue(25)
    mp.run_button.click()
    mp.select("test-zf")
    mp.run_button.click()
    assert len(s.results) == 2
    wait_done(qtbot, *s.results)
    lw, zf = s.results
    assert lw.state == "done" and zf.state == "done" and lw.params["n_iter"] == 25
    window.tabs.setCurrentWidget(window.compare_view)
    cv = window.compare_view
    qtbot.waitUntil(lambda: len(cv.grid.columns) == 4)  # reference, zero-filled, both results
    assert [c.key for c in cv.grid.columns] == ["reference", "zero-filled", lw.id, zf.id]
    # error maps under every image but the reference, std map only for the method that gives one
    assert cv.grid.columns[0].error is None and all(c.error is not None for c in cv.grid.columns[1:])
    assert cv.grid.columns[3].std is not None and cv.grid.columns[2].std is None
    np.testing.assert_allclose(cv.grid.columns[3].error.data, np.abs(np.abs(zf.image) - s.reference()), atol=1e-5)
    # metrics table: sortable, one row per image
    table = cv.metrics.table
    labels = {table.item(r, 1).text() for r in range(table.rowCount())}
    assert labels == {"zero-filled (live)", lw.label, zf.label}
    table.sortItems(2, Qt.SortOrder.DescendingOrder)
    psnrs = [float(table.item(r, 2).text()) for r in range(table.rowCount())]
    assert psnrs == sorted(psnrs, reverse=True)
    csv_path = tmp_path / "m.csv"
    cv.export_csv(str(csv_path))
    assert len(csv_path.read_text().splitlines()) == 4
    # hide a result with the table's check box
    row = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == lw.label)
    table.item(row, 0).setCheckState(Qt.CheckState.Unchecked)
    qtbot.waitUntil(lambda: len(cv.grid.columns) == 3)
    # labelled figure
    png = tmp_path / "fig.png"
    assert window.export_figure(str(png))
    img = QtGui.QImage(str(png))
    assert not img.isNull() and img.width() > 3 * 200 and img.height() > 2 * 200


def test_compare_view_modes_levels_profile_roi(window, scan_file, qtbot):
    e = zero_filled_in_compare_tab(window, scan_file, qtbot)
    s = window.session
    cv = window.compare_view
    assert len(cv.grid.columns) == 3
    cv.grid.set_shared_levels((0.1, 0.7))
    assert all(c.image.levels() == pytest.approx((0.1, 0.7)) for c in cv.grid.columns)
    cv.grid.columns[2].override.setChecked(True)  # per-panel window/level
    assert cv.grid.columns[2].image.colorbar is not None
    cv.grid.set_shared_levels((0.0, 0.5))
    assert cv.grid.columns[0].image.levels() == pytest.approx((0.0, 0.5))
    assert cv.grid.columns[2].image.levels() != pytest.approx((0.0, 0.5))
    cv.mode_combo.setCurrentText("phase")
    ph = cv.grid.columns[2].image.data
    np.testing.assert_allclose(ph, np.angle(e.image), atol=1e-6)
    cv.mode_combo.setCurrentText("magnitude")
    cv.cmap_combo.setCurrentText("viridis")
    # line profile mirrored over every panel
    cv.tool_combo.setCurrentText("line profile")
    prof = cv.profile.profiles
    assert set(prof) == {"reference", "zero-filled (live)", e.label}
    (x0, y0), (x1, y1) = cv.grid.overlay.line_endpoints()
    assert y0 == pytest.approx(y1) and x1 > x0
    np.testing.assert_allclose(prof["zero-filled (live)"], prof[e.label], rtol=1e-4, atol=1e-5)
    # ROI statistics
    cv.tool_combo.setCurrentText("ROI statistics")
    rows, cols = cv.grid.overlay.roi_bounds()
    stats = cv.roi.statistics
    ref = s.reference()
    assert stats["reference"]["mean"] == pytest.approx(float(ref[rows, cols].mean()), rel=1e-5)
    assert cv.roi.rowCount() == 3


def test_cancel_running_job_and_failures_in_jobs_panel(window, scan_file, qtbot, messages):
    window.open_path(scan_file)
    s = window.session
    slow = s.run(window.registry.methods["test-slow"])
    qtbot.waitUntil(lambda: slow.state == "running", timeout=10000)
    jp = window.jobs_panel
    r = jp.rows[slow.id]
    btn = jp.table.cellWidget(r, 7)
    assert btn.isEnabled()
    btn.click()
    wait_done(qtbot, slow, timeout=5000)
    assert slow.state == "cancelled" and jp.table.item(r, 6).text() == "cancelled"
    bad = s.run(window.registry.methods["test-failing"])
    wait_done(qtbot, bad)
    rb = jp.rows[bad.id]
    assert "deliberate failure" in jp.table.item(rb, 6).text()
    jp._details(rb, 0)
    assert messages[-1][0] == "exec" and "deliberate failure" in messages[-1][2]
    # the app keeps working
    ok = s.run(window.registry.methods["test-zf"])
    wait_done(qtbot, ok)
    assert ok.state == "done" and "done" in jp.table.item(jp.rows[ok.id], 6).text()


def test_session_save_and_reopen(window, scan_file, qtbot, tmp_path, settings, registry, plugin_dir):
    from workbench.gui.main_window import MainWindow

    window.open_path(scan_file)
    s = window.session
    s.editor.begin_user_mask(np.broadcast_to(np.arange(W) % 2 == 0, (H, W)).copy())
    e = s.run(registry.methods["test-landweber"], {"n_iter": 3})
    wait_done(qtbot, e)
    path = str(tmp_path / "proj.wbs.json")
    assert window.save_session(path)
    other = MainWindow(plugin_dirs=[str(plugin_dir)], settings=settings, registry=registry)
    qtbot.addWidget(other)
    other.show()
    assert other.open_path(path)  # recognised as a session file
    t = other.session
    assert t.scan.path == scan_file and np.array_equal(t.mask(), s.mask())
    assert len(t.results) == 1 and t.results[0].params == {"n_iter": 3, "step": 0.5}
    np.testing.assert_array_equal(t.results[0].image, e.image)
    other.tabs.setCurrentWidget(other.compare_view)
    qtbot.waitUntil(lambda: len(other.compare_view.grid.columns) == 3)
    other.close()


def test_export_nifti_dicom_hdf5(window, scan_file, qtbot, tmp_path):
    import nibabel as nib
    import pydicom

    from workbench.result import Result

    e = zero_filled_in_compare_tab(window, scan_file, qtbot)
    s = window.session
    assert len(window.compare_view.grid.columns) == 3
    nii = window.export_images(str(tmp_path / "nii"), "nifti")
    assert len(nii) == 3
    data = np.asarray(nib.load(next(p for p in nii if "reference" in p)).dataobj)
    # voxel axes (i = column, j = row from the bottom, k = slice)
    np.testing.assert_allclose(data[:, ::-1, 0].T, s.reference(), rtol=1e-6)
    dcm = window.export_images(str(tmp_path / "dcm"), "dicom")
    ds = pydicom.dcmread(next(p for p in dcm if e.label in p))
    values = ds.pixel_array * float(ds.RescaleSlope)
    np.testing.assert_allclose(values, np.abs(e.image), atol=float(ds.RescaleSlope))
    assert ds.SeriesDescription.endswith(e.label) and ds.Modality == "MR"
    h5 = window.export_results(str(tmp_path / "h5"))
    assert len(h5) == 1
    r = Result.load(h5[0])
    np.testing.assert_array_equal(r.image.numpy(), e.image)
    assert r.method == "test-zf" and r.std is not None


def test_sweep_fills_the_plot(window, scan_file, qtbot):
    window.open_path(scan_file)
    sv = window.sweep_view
    window.tabs.setCurrentWidget(sv)
    sv.set_checked(["test-zf"])
    sv.family_combo.setCurrentText("equispaced")
    sv.acc_edit.setText("2, 4")
    sweep = sv.run_sweep()
    wait_done(qtbot, *sweep.entries)
    xs, ys = sweep.points("test-zf", "psnr")
    assert len(xs) == 2 and ys[0] > ys[1]
    zf = sv.zero_filled_points
    # the method returns the zero-filled image: same metrics as the sweep's zero-filled curve
    assert sorted(zf) == pytest.approx(xs)
    assert [zf[x]["psnr"] for x in sorted(zf)] == pytest.approx(ys, abs=1e-3)
    qtbot.waitUntil(lambda: "2/2" in sv.status.text())
    assert len(sv.psnr_plot.listDataItems()) == 2


def test_about_shortcuts_and_plugin_reload(window, messages):
    text = window.about_text()
    assert "PyTorch" in text and "Compute device" in text and "failed to load" in text
    window.show_shortcuts()
    assert "Ctrl+O" in messages[-1][2] and "Ctrl+R" in messages[-1][2]
    assert window.open_action.toolTip()


def test_run_app_opens_a_file(qtbot, scan_file, monkeypatch, tmp_path):
    from workbench.gui import app as app_mod
    from workbench.gui.main_window import MainWindow

    # keep the app's default QSettings away from the user's real settings
    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(tmp_path))
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
    request_cleanup = lambda: QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.NativeFormat)  # noqa: E731
    opened = []
    instance = QtWidgets.QApplication.instance()
    monkeypatch.setattr(type(instance), "exec", lambda self: (qtbot.waitUntil(lambda: opened or _opened(opened)),
                                                               0)[1])

    def _opened(acc):
        for w in QtWidgets.QApplication.topLevelWidgets():
            if isinstance(w, MainWindow) and w.isVisible() and w.session.scan is not None:
                acc.append(w)
        return bool(acc)

    try:
        assert app_mod.run_app(file=scan_file, plugin_dirs=[]) == 0
        win = opened[0]
        assert win.session.scan.path == scan_file
        win.close()
    finally:
        request_cleanup()


def test_noncartesian_scan_views(window, qtbot):
    from workbench.sampling import radial_trajectory
    from workbench.scan import scan_from_arrays

    traj = radial_trajectory(24, 64).numpy()
    k = (np.random.default_rng(0).standard_normal((1, 3, traj.shape[1])) * (1 + 0j)).astype(np.complex64)
    window.session.set_scan(scan_from_arrays(k, trajectory=traj, grid_shape=(32, 32)))
    assert window.scan_view.kstack.currentIndex() == 1
    window.tabs.setCurrentWidget(window.sampling_panel)
    sp = window.sampling_panel
    assert sp.left_stack.currentIndex() == 1
    kinds = [sp.family_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(sp.family_list.count())]
    assert kinds == ["acquired"] and not sp.r_slider.isEnabled()
    assert len(sp.traj_scatter.data) == traj.shape[1]
    # the gridded image and the PSF are computed off the GUI thread and arrive with a "sampling" event
    qtbot.waitUntil(lambda: sp.zf_panel.data is not None and sp.psf_panel.data is not None, timeout=20000)
    assert sp.zf_panel.data.shape == (32, 32) and "computing" not in sp.zf_panel.title_label.text
    # the acquired samples are coloured by their density compensation: along a radial spoke the weights
    # grow with |k| (the centre is sampled densely), so the colours are not all the same
    colours = {b.color().name() for b in sp.traj_scatter.data["brush"]}
    assert len(colours) > 10


def test_acquired_noncartesian_scan_offers_the_density_compensation(window, qtbot):
    from workbench.sampling import radial_trajectory, spiral_trajectory
    from workbench.sampling.dcf import compute_dcf
    from workbench.scan import scan_from_arrays

    traj = radial_trajectory(24, 64).numpy()
    file_dcf = (np.hypot(traj[0], traj[1]) + 0.01).astype(np.float32)
    k = (np.random.default_rng(0).standard_normal((1, 3, traj.shape[1])) * (1 + 0j)).astype(np.complex64)
    s = window.session
    s.set_scan(scan_from_arrays(k, trajectory=traj, grid_shape=(32, 32), dcf=file_dcf))
    window.tabs.setCurrentWidget(window.sampling_panel)
    sp = window.sampling_panel
    combo = sp.acq_dcf_combo
    assert sp.acq_dcf_row.isVisibleTo(sp)
    assert [combo.itemData(i) for i in range(combo.count())] == ["file", "pipe-menon", "voronoi", "ramp"]
    assert combo.currentData() == "file"
    qtbot.waitUntil(lambda: sp.zf_panel.data is not None, timeout=20000)
    zf_file = sp.zf_panel.data.copy()
    combo.setCurrentIndex(combo.findData("voronoi"))
    assert s.acquired_dcf_method == "voronoi"
    # the gridded image is recomputed (off the GUI thread) with the Voronoi weights
    qtbot.waitUntil(lambda: sp.zf_panel.data is not None and not s.derived_pending, timeout=20000)
    assert not np.allclose(sp.zf_panel.data, zf_file, rtol=1e-2)
    np.testing.assert_allclose(s.problem().dcf.numpy(), compute_dcf(traj, (32, 32), "voronoi").numpy(), rtol=1e-6)
    assert "DCF voronoi" in sp.traj_plot.titleLabel.text
    combo.setCurrentIndex(combo.findData("file"))
    assert s.acquired_dcf_method is None
    # a spiral has no file weights (pipe-menon is the default) and refuses the ramp with a message, no crash
    spiral = spiral_trajectory(4, 64, (32, 32)).numpy()
    s.set_scan(scan_from_arrays(np.ones((1, 2, spiral.shape[1]), np.complex64), trajectory=spiral,
                                grid_shape=(32, 32)))
    assert [combo.itemData(i) for i in range(combo.count())] == ["pipe-menon", "voronoi", "ramp"]
    assert combo.currentData() == "pipe-menon"
    combo.setCurrentIndex(combo.findData("ramp"))
    assert s.acquired_dcf_method is None and combo.currentData() == "pipe-menon"
    assert "radial" in sp.stats.text()


def test_out_of_memory_job_is_reported_and_the_app_keeps_working(window, scan_file, qtbot, messages):
    window.open_path(scan_file)
    s = window.session
    mp = window.methods_panel
    qtbot.waitUntil(lambda: "test-cuda-oom" in mp.reasons, timeout=10000)
    assert mp.select("test-cuda-oom")
    e = mp.run_current()
    wait_done(qtbot, e)
    jp = window.jobs_panel
    text = jp.table.item(jp.rows[e.id], 6).text()
    assert e.state == "failed" and text.startswith("failed: out of memory") and "20.00 GiB" in text
    assert messages == []  # reported in the jobs panel, no modal dialog
    ok = s.run(window.registry.methods["test-zf"])
    wait_done(qtbot, ok)
    assert ok.state == "done"


def test_a_new_scan_clears_the_previous_results_from_grid_table_and_sweep(window, scan_file, qtbot, tmp_path,
                                                                            kspace):
    zero_filled_in_compare_tab(window, scan_file, qtbot)
    cv = window.compare_view
    other = tmp_path / "other.h5"
    write_fastmri(other, kspace[:1] * 2)
    assert window.open_path(str(other))
    qtbot.waitUntil(lambda: [c.key for c in cv.grid.columns] == ["reference", "zero-filled"])
    assert cv.metrics.table.rowCount() == 1 and window.jobs_panel.table.rowCount() == 0
    assert window.sweep_view.sweep is None


def test_reader_options_text():
    from workbench.errors import WorkbenchError
    from workbench.gui.open_dialog import format_options, parse_options

    opts = parse_options("coil_axis=-1 image_domain=true; grid_shape=256,256 kspace_var='my k' scale=0.5 x=none")
    assert opts == {"coil_axis": -1, "image_domain": True, "grid_shape": (256, 256), "kspace_var": "my k",
                    "scale": 0.5, "x": None}
    assert parse_options(format_options(opts)) == opts
    assert parse_options("") == {}
    for bad in ("coil_axis", "=3", "a b=1", "k='unclosed"):
        with pytest.raises(WorkbenchError):
            parse_options(bad)


def test_a_deleted_dispatcher_drops_late_callbacks(qtbot):
    # A job thread reporting after its window was deleted must not reach the deleted object (that aborted the
    # process with "pure virtual method called").
    import threading

    from PyQt6 import sip

    from workbench.gui.common import Dispatcher

    d, ran = Dispatcher(), []
    sip.delete(d)
    t = threading.Thread(target=lambda: d(lambda: ran.append(1)))
    t.start()
    t.join(5)
    d(lambda: ran.append(2))
    assert ran == []
