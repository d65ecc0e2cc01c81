"""A newcomer's first hour (issue 17): the window fits the screen, nothing is clipped or hidden, and the small
things a new user trips over (stale hover text, the slider's R on a hand-drawn mask, dialogs' folders, Page Up on
the slider) behave. Offscreen, at the first-window size of a 1366x768 screen unless said otherwise."""

from __future__ import annotations

import math
import os
import types

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6 import QtCore, QtGui, QtTest, QtWidgets  # noqa: E402

from test_gui import kspace, scan_file, wait_done  # noqa: E402,F401 - fixtures

Qt = QtCore.Qt
#: the window the app opens on a 1366x768 screen (first_window_size)
LAPTOP = (1280, 720)


def shown_whole(widget: QtWidgets.QWidget) -> bool:
    """The widget is visible and no parent (scroll area, splitter, window) clips it."""
    if not widget.isVisible() or widget.width() < 10 or widget.height() < 10:
        return False
    win = widget.window()

    def rect(w):
        return QtCore.QRect(w.mapTo(win, QtCore.QPoint(0, 0)), w.size()) if w is not win else win.rect()

    r = rect(widget)
    parent = widget.parentWidget()
    while parent is not None:
        if not rect(parent).contains(r):
            return False
        parent = parent.parentWidget() if parent is not win else None
    return True


def item_inside(view: QtWidgets.QGraphicsView, item) -> bool:
    """A graphics item lies wholly inside the view's visible area."""
    return view.viewport().rect().contains(view.mapFromScene(item.sceneBoundingRect()).boundingRect())


def at_size(window, qtbot, size=LAPTOP):
    window.resize(*size)
    window.fit_docks()
    qtbot.wait(50)
    assert (window.width(), window.height()) == size  # the minimum size allows it


def run_all(window, qtbot, names):
    entries = [window.session.run(window.registry.methods[n]) for n in names]
    wait_done(qtbot, *entries)
    return entries


# ----------------------------------------------------------------------------------------------------------------
# 3. the window and the compare grid fit the screen
def test_first_window_size_follows_the_screen():
    from workbench.gui.main_window import first_window_size

    def size(w, h):
        s = first_window_size(QtCore.QRect(0, 0, w, h))
        return s.width(), s.height()

    assert size(1366, 768) == LAPTOP
    assert size(1920, 1080) == (1728, 972)
    assert size(1024, 600) == (1008, 552)  # smaller than the usual minimum: the whole area less the frame


def test_the_window_sizes_itself_to_the_screen_and_restores_a_geometry_only_if_it_fits(
        qtbot, settings, registry, plugin_dir, messages):
    from workbench.gui.main_window import MainWindow, first_window_size

    def new_window():
        win = MainWindow(plugin_dirs=[str(plugin_dir)], settings=settings, registry=registry)
        qtbot.addWidget(win)
        return win

    win = new_window()
    available = win.available_geometry()
    assert win.size() == first_window_size(available)
    assert available.contains(win.frameGeometry())
    # a geometry saved on a larger screen is not restored
    win.setGeometry(0, 0, available.width() + 900, available.height() + 500)
    win.close()
    win = new_window()
    assert win.size() == first_window_size(available)
    # one that fits is
    win.setGeometry(available.x() + 20, available.y() + 30, 700, 520)
    win.close()
    win = new_window()
    assert (win.width(), win.height()) == (700, 520)
    win.close()


def test_at_1366x768_every_dock_the_status_bar_and_the_whole_compare_grid_are_visible(window, scan_file, qtbot):
    window.open_path(scan_file)
    at_size(window, qtbot)
    # the reference, the zero-filled image and five results, the last with a std map: 7 columns, 3 rows
    run_all(window, qtbot, ["test-landweber", "test-landweber", "test-zf", "test-landweber", "test-zf"])
    window.tabs.setCurrentWidget(window.compare_view)
    grid = window.compare_view.grid
    qtbot.waitUntil(lambda: len(grid.columns) == 7)

    def all_panels():  # (a late rebuild of the grid makes new ones)
        return [p for c in grid.columns for p in (c.image, c.error, c.std) if p is not None]

    qtbot.waitUntil(lambda: grid.per_band == 7 and all(shown_whole(p) for p in all_panels()), timeout=3000)
    panels = all_panels()
    for dock in (window.scan_dock, window.methods_dock, window.jobs_dock):
        assert shown_whole(dock) and window.rect().contains(dock.geometry()), dock.windowTitle()
        assert dock.width() >= 150 and dock.height() >= 100
    assert shown_whole(window.statusBar()) and window.rect().contains(window.statusBar().geometry())
    # every panel, box and colour bar whole (no sideways scrolling), titles wrapped rather than cut
    assert grid.horizontalScrollBar().maximum() == 0 and grid.verticalScrollBar().maximum() == 0
    assert len(panels) == 7 + 6 + 2
    for p in panels:
        assert shown_whole(p), p.title_text
        assert titles_fit(p)
    assert all(shown_whole(c.override) for c in grid.columns)
    for bar in (grid.image_bar, grid.error_bar, grid.std_bar):
        assert shown_whole(bar.scene().views()[0])
    assert grid.per_band == 7
    qtbot.waitUntil(lambda: fills_its_panel(grid.columns[0].image), timeout=3000)
    # the titles of these ~95 px wide panels take three lines at most (label, PSNR, SSIM; the tooltip has them
    # whole); on a 1920x1080 screen they are whole
    window.resize(1728, 972)
    qtbot.waitUntil(lambda: all(shown_whole(p) and titles_fit(p) and "…" not in p.title_label.text
                                for p in all_panels()), timeout=3000)
    qtbot.waitUntil(lambda: fills_its_panel(grid.columns[0].image), timeout=3000)



def test_the_grid_wraps_its_columns_into_bands_when_that_shows_the_images_larger():
    from workbench.gui.compare.grid import PANEL_MIN_WIDTH, columns_per_band, panel_width

    # a short wide grid: one band; a tall narrow one: bands of fewer, larger panels
    assert columns_per_band(7, 1400, 400, 2, 1.0) == 7
    k = columns_per_band(7, 700, 1000, 2, 1.0)
    assert 1 < k < 7 and panel_width(700, k) >= PANEL_MIN_WIDTH
    # never a panel narrower than the minimum (the grid does not scroll sideways)
    assert panel_width(500, columns_per_band(7, 500, 200, 3, 1.0)) >= PANEL_MIN_WIDTH
    # titles that take more lines at narrow widths count against the narrow panels
    assert columns_per_band(4, 900, 500, 1, 1.0, lambda w: 6 if w < 250 else 1) < 4


def fills_its_panel(panel) -> bool:
    """The image spans its view in one direction (it was fitted once the panel had its size)."""
    (x0, x1), (y0, y1) = panel.view.viewRange()
    h, w = panel.data.shape
    return min((x1 - x0) / w, (y1 - y0) / h) == pytest.approx(1.0, abs=0.03)


def titles_fit(panel) -> bool:
    """Every line of the panel's title is narrower than the panel, and the title leaves room for the image."""
    from workbench.gui.common import title_font

    metrics = QtGui.QFontMetrics(title_font())
    lines = panel.title_label.text.split("<br>")
    return all(metrics.horizontalAdvance(line) < panel.width() for line in lines) and \
        panel.title_label.sceneBoundingRect().bottom() < panel.view.sceneBoundingRect().bottom() - 20


# ----------------------------------------------------------------------------------------------------------------
# 4. the trajectory preview is whole
@pytest.mark.parametrize("size", [LAPTOP, (1400, 900)])
def test_trajectory_preview_shows_the_whole_k_space_its_title_and_colour_bar(window, scan_file, qtbot, size):
    window.open_path(scan_file)
    at_size(window, qtbot, size)
    sp = window.sampling_panel
    window.tabs.setCurrentWidget(sp)
    s = window.session
    for kind in ("radial", "golden-radial", "spiral"):
        s.set_sampling(kind, acceleration=2.0)
        qtbot.waitUntil(lambda: sp.traj_scatter.data.size > 0 and not s.derived_pending, timeout=20000)
        tw = sp.traj_widget
        items = (tw.plot, tw.plot.titleLabel, tw.plot.titleLabel.item, tw.dcf_bar)
        qtbot.waitUntil(lambda: kind in tw.plot.titleLabel.text and all(item_inside(tw, it) for it in items),
                        timeout=3000)
        assert sp.left_stack.currentWidget() is tw and shown_whole(tw)
        # the title's text stays above the plot
        assert tw.plot.titleLabel.item.sceneBoundingRect().bottom() <= tw.plot.vb.sceneBoundingRect().top() + 2
        (x0, x1), (y0, y1) = tw.plot.vb.viewRange()
        assert x0 <= -math.pi and x1 >= math.pi and y0 <= -math.pi and y1 >= math.pi


# ----------------------------------------------------------------------------------------------------------------
# 5. colour bars
def test_error_and_std_colour_bars_stay_when_the_std_row_appears(window, scan_file, qtbot):
    window.open_path(scan_file)
    at_size(window, qtbot)
    window.tabs.setCurrentWidget(window.compare_view)
    grid = window.compare_view.grid
    qtbot.waitUntil(lambda: grid.error_bar is not None)
    assert grid.std_bar is None
    e = run_all(window, qtbot, ["test-zf"])[0]
    qtbot.waitUntil(lambda: e.id in grid.keys() and grid.std_bar is not None)

    def whole(bar):
        host = bar.scene().views()[0]
        return shown_whole(host) and item_inside(host, bar) and bar.sceneBoundingRect().height() > 60

    qtbot.waitUntil(lambda: all(whole(bar) for bar in (grid.image_bar, grid.error_bar, grid.std_bar)),
                    timeout=3000)


def drawn_tick_labels(bar) -> list[str]:
    """The tick labels the colour bar's axis draws (pyqtgraph leaves out those that do not fit)."""
    img = QtGui.QImage(10, 10, QtGui.QImage.Format.Format_RGB32)
    p = QtGui.QPainter(img)
    try:
        specs = bar.axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [text for _rect, _flags, text in specs[2]]


def test_image_colour_bar_has_readable_ticks_for_raw_scanner_values(window, qtbot):
    from workbench.gui.compare.columns import REFERENCE, ColumnData

    rng = np.random.default_rng(0)
    images = [3.2e-4 * rng.random((40, 40)).astype(np.float32) for _ in range(3)]
    grid = window.compare_view.grid
    window.tabs.setCurrentWidget(window.compare_view)
    grid.setData([ColumnData(key=REFERENCE, label="reference", image=images[0])]
                 + [ColumnData(key=i, label=f"result {i}", image=im) for i, im in enumerate(images[1:])])
    qtbot.waitUntil(lambda: len(set(drawn_tick_labels(grid.image_bar))) >= 3, timeout=3000)
    labels = drawn_tick_labels(grid.image_bar)
    assert "1e-4" in grid.image_bar.getAxis("left").labelText
    values = sorted(float(t) for t in labels)
    assert values[-1] == pytest.approx(3.0, abs=0.5)  # mantissas of the ×1e-4 label


# ----------------------------------------------------------------------------------------------------------------
# 6. the PSF of a line mask
def test_the_psf_of_a_line_mask_is_drawn_as_a_profile(window, scan_file, qtbot):
    window.open_path(scan_file)
    at_size(window, qtbot)
    sp = window.sampling_panel
    window.tabs.setCurrentWidget(sp)
    s = window.session
    s.set_sampling("random", acceleration=4.0, seed=0)
    psf = s.psf()
    row = psf[psf.shape[0] // 2]
    assert sp.psf_stack.currentWidget() is sp.psf_plot and shown_whole(sp.psf_plot)
    xs, ys = sp.psf_curve.getData()
    np.testing.assert_allclose(ys, np.log10(np.maximum(row, 1e-4)), rtol=1e-6)
    assert ys.max() == pytest.approx(0.0) and xs[np.argmax(ys)] == 0
    # the aliases beside the peak are drawn above the floor
    assert (ys > -3).sum() > 3
    # a 2D mask spreads its PSF over rows: the image
    s.set_sampling("poisson", acceleration=3.0, seed=0, calib=(8, 8))
    assert sp.psf_stack.currentWidget() is sp.psf_panel and sp.psf_panel.data is not None


# ----------------------------------------------------------------------------------------------------------------
# 7. the jobs dock
def test_jobs_dock_shows_several_rows_follows_new_jobs_and_shows_the_progress_text(window, scan_file, qtbot):
    window.open_path(scan_file)
    at_size(window, qtbot)
    jp = window.jobs_panel
    table = jp.table
    run_all(window, qtbot, ["test-zf"] * 9)

    def visible():
        return [r for r in range(table.rowCount())
                if table.viewport().rect().contains(table.visualItemRect(table.item(r, 0)))]

    # at least five rows, the newest among them
    qtbot.waitUntil(lambda: len(visible()) >= 5 and table.rowCount() - 1 in visible(), timeout=3000)
    slow = window.session.run(window.registry.methods["test-slow"])
    qtbot.waitUntil(lambda: slow.state == "running")
    r = jp.rows[slow.id]
    assert table.viewport().rect().contains(table.visualItemRect(table.item(r, 0)))
    slow.progress_text = "iteration 333/1000, objective 1.2345e-05"
    jp.update_entry(slow)
    bar = table.cellWidget(r, 4)
    assert slow.progress_text in bar.text()
    assert bar.fontMetrics().horizontalAdvance(bar.text()) + 16 <= table.columnWidth(4)
    window.session.cancel(slow)
    wait_done(qtbot, slow)


# ----------------------------------------------------------------------------------------------------------------
# 8. the smaller things
def test_sweep_follows_the_sampling_family_and_offers_the_methods_that_fit(window, scan_file, qtbot, registry):
    window.open_path(scan_file)
    s = window.session
    sv = window.sweep_view
    assert sv.family_combo.currentText() == s.sampling_state.kind
    s.set_sampling("random", acceleration=4.0)
    assert sv.family_combo.currentText() == "random"

    def listed():
        return [sv.method_list.item(i).text() for i in range(sv.method_list.count())]

    assert "test-landweber" in listed() and "test-noncart-only" not in listed()
    # the zero-filled method is the "include zero-filled" box, not an entry
    window.methods_panel.registry = types.SimpleNamespace(
        methods={**registry.methods, "zero-filled": registry.methods["test-zf"]}, errors=[])
    sv.refresh_methods()
    assert "zero-filled" not in listed() and sv.include_zf.isChecked()
    # a family chosen here stays; a trajectory family lists the non-Cartesian methods
    sv.family_combo.setCurrentText("radial")
    sv.family_combo.activated.emit(sv.family_combo.currentIndex())
    assert "test-noncart-only" in listed() and "test-landweber" not in listed()
    s.set_sampling("equispaced", acceleration=4.0)
    assert sv.family_combo.currentText() == "radial"


def test_window_title_names_the_scan_once(window, scan_file):
    window.open_path(scan_file)
    assert window.windowTitle() == os.path.basename(scan_file).rsplit(".", 1)[0] or \
        os.path.basename(scan_file) in window.windowTitle()
    assert "MRI Workbench" not in window.windowTitle()  # Qt adds the application's display name


def test_status_bar_forgets_the_hover_text_when_the_pointer_leaves_the_image(window, scan_file, qtbot):
    window.open_path(scan_file)
    window.tabs.setCurrentWidget(window.scan_view)
    panel = window.scan_view.image_panel
    qtbot.waitUntil(panel.isVisible)
    qtbot.wait(50)
    inside = panel.image_item.mapToScene(QtCore.QPointF(5.5, 5.5))
    panel._on_mouse_moved(inside)
    assert "row 5, col 5" in window.hover_label.text()
    outside = panel.view.mapToScene(QtCore.QPointF(-1e4, -1e4))
    panel._on_mouse_moved(outside)
    assert window.hover_label.text() == ""
    panel._on_mouse_moved(inside)
    panel.leaveEvent(QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert window.hover_label.text() == ""


def test_a_hand_drawn_mask_shows_its_effective_acceleration(window, scan_file):
    from workbench.gui.sampling_panel import R_STEPS

    window.open_path(scan_file)
    sp = window.sampling_panel
    s = window.session
    s.set_sampling("equispaced", acceleration=4.0)
    s.editor.begin_user_mask()
    s.editor.begin_stroke()
    s.editor.set_lines(range(0, 10), True)
    s.editor.end_stroke()
    r = s.sampling_state.acceleration
    assert r != pytest.approx(4.0)
    assert sp.r_label.text() == f"{r:.2f}"
    assert sp.r_slider.value() == round(r * R_STEPS)
    assert f"{r:.2f}" in sp.stats.text()


def test_file_dialogs_start_in_the_last_folder(window, scan_file, tmp_path, monkeypatch, settings):
    starts = []
    answer = {"path": ""}

    def dialog(kind):
        def fn(parent, title, start="", *a, **k):
            starts.append((title, start))
            return answer["path"] if kind == "dir" else (answer["path"], "")
        return staticmethod(fn)

    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", dialog("file"))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", dialog("file"))
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", dialog("dir"))
    window.open_path(scan_file)
    assert settings.value("last_dir") == os.path.dirname(os.path.abspath(scan_file))
    folder = tmp_path / "data"
    folder.mkdir()
    settings.setValue("last_dir", str(folder))
    window.open_dialog()
    window.open_session_dialog()
    window.save_session_dialog()
    window.export_figure_dialog()
    window.export_images_dialog("nifti")
    window.export_results_dialog()
    window.compare_view.export_csv_dialog()
    window.sampling_panel.save_mask_dialog()
    window.sampling_panel.load_mask_dialog()
    assert len(starts) == 9
    assert all(start.startswith(str(folder)) for _, start in starts), starts
    # a file saved elsewhere moves the next dialog there
    other = tmp_path / "elsewhere"
    other.mkdir()
    answer["path"] = str(other / "mask.npz")
    window.sampling_panel.save_mask_dialog()
    answer["path"] = ""
    window.open_dialog()
    assert starts[-1][1] == str(other)


def test_the_line_profile_legend_shows_every_curve(window, scan_file, qtbot):
    window.open_path(scan_file)
    at_size(window, qtbot)
    run_all(window, qtbot, ["test-landweber", "test-landweber", "test-zf", "test-landweber", "test-zf"])
    cv = window.compare_view
    window.tabs.setCurrentWidget(cv)
    qtbot.waitUntil(lambda: len(cv.grid.columns) == 7)
    cv.tool_combo.setCurrentText("line profile")
    assert cv.tabs.currentWidget() is cv.profile and len(cv.profile.profiles) == 7
    legend = cv.profile.legend
    assert all(label in legend.text().replace("&nbsp;", " ") for label in cv.profile.profiles)
    # every line of entries shown
    qtbot.waitUntil(lambda: shown_whole(legend) and legend.heightForWidth(legend.width()) <= legend.height(),
                    timeout=3000)
    assert shown_whole(cv.profile.plot)
    assert cv.profile.plot.getPlotItem().vb.height() > 30


def test_page_keys_move_the_focused_slider_not_the_slice(window, scan_file, qtbot):
    window.open_path(scan_file)
    s = window.session
    s.set_slice(0)
    sp = window.sampling_panel
    window.tabs.setCurrentWidget(sp)
    window.activateWindow()
    sp.r_slider.setFocus()
    qtbot.waitUntil(sp.r_slider.hasFocus)
    before = sp.r_slider.value()
    QtTest.QTest.keyClick(sp.r_slider, Qt.Key.Key_PageUp)
    assert s.slice_index == 0 and sp.r_slider.value() != before
    # elsewhere Page Down is the next slice
    window.tabs.setFocus()
    qtbot.waitUntil(window.tabs.hasFocus)
    QtTest.QTest.keyClick(window.tabs, Qt.Key.Key_PageDown)
    assert s.slice_index == 1
    # on the slice slider it moves one slice, once
    dock = window.scan_dock_widget
    dock.slice_slider.setFocus()
    qtbot.waitUntil(dock.slice_slider.hasFocus)
    QtTest.QTest.keyClick(dock.slice_slider, Qt.Key.Key_PageUp)
    assert s.slice_index == 0
