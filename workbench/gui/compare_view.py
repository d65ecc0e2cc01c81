"""The compare tab: reference and chosen results side by side with linked zoom/pan, one shared window/level
(per-panel override), magnitude / phase / real / imaginary, colour maps; error maps under each image with one
shared colour bar; std maps for methods that give them, with a calibration plot (does the std predict the error?);
a sortable metrics table with CSV export; a line profile mirrored across panels; ROI statistics.

The parts live in ``workbench/gui/compare/`` and are given their data; :class:`CompareView` is the adapter that
reads the session (once per update) into :class:`ColumnData` and hands it to them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.gui.common import (COLORMAPS, DISPLAY_MODES, DialogFolder, Qt, combo_box, error_box,
                                  single_shot_timer)
from workbench.gui.compare.calibration import CalibrationPlot
from workbench.gui.compare.columns import REFERENCE, ZERO_FILLED, ColumnData
from workbench.gui.compare.grid import CompareGrid
from workbench.gui.compare.overlay import TOOLS
from workbench.gui.compare.metrics_table import MetricsTable
from workbench.gui.compare.profile import ProfilePlot
from workbench.gui.compare.roi import RoiTable
from workbench.scoring import SCORE_MODE_TEXT, SCORE_MODES
from workbench.session import ZERO_FILLED_LABEL, Session


class CompareView(QtWidgets.QWidget):
    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.dialogs = DialogFolder()  # the main window gives its own (the settings' last folder)
        self.shown: dict[Any, bool] = {ZERO_FILLED: True}  # key -> shown in the grid
        self._rebuild_pending = False
        self._calibration_stale = True
        self._drawn_done: set[Any] = set()  # ids of finished results whose final image the grid shows
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)

        self.grid = CompareGrid()
        self.grid.hovered.connect(self.hovered)
        self.grid.rendered.connect(self._update_tools)
        self.grid.toolMoved.connect(self._update_tools)
        bar = QtWidgets.QHBoxLayout()
        bar.setSpacing(4)
        self.mode_combo = combo_box(DISPLAY_MODES, "component of the complex images (the reference is a magnitude "
                                    "image)", lambda: self.grid.set_mode(self.mode_combo.currentText()))
        self.cmap_combo = combo_box(COLORMAPS, "colour map of the images (error maps use inferno)",
                                    lambda: self.grid.set_colormap(self.cmap_combo.currentText()))
        self.error_combo = combo_box(("absolute", "relative", "none"), "error maps under each image: "
                                     "|(|x|) - reference|, or divided by the data range (0.1 = 10 % of the peak)",
                                     self.rebuild)
        self.score_combo = combo_box(SCORE_MODES, "how every image is scored (table, error maps): " + "; ".join(
            f"{m}: {t}" for m, t in SCORE_MODE_TEXT.items()), self._score_mode_chosen)
        # a small checkable ring after the Score combo: the bar must fit a 1366-pixel screen beside the docks
        self.outline_box = QtWidgets.QToolButton()
        self.outline_box.setCheckable(True)
        self.outline_box.setAutoRaise(True)
        self.outline_box.setIcon(_ring_icon())
        self.outline_box.setText("Outline")
        self.outline_box.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        self.outline_box.setIconSize(QtCore.QSize(14, 14))  # no taller than the combos: the docks keep their rows
        self.outline_box.setToolTip("Outline: draw the object mask (the \"object\" scoring mode's pixels, derived "
                                    "from the reference) as a cyan line on the images and in exported figures")
        self.outline_box.toggled.connect(lambda *_: self.rebuild())
        # a tool button (no push button's minimum width): the bar fits beside the docks at 1280 pixels, where
        # narrower docks would wrap their text and take the jobs dock's rows
        self.auto_button = QtWidgets.QToolButton()
        self.auto_button.setText("Auto W/L")
        self.auto_button.setToolTip("reset the shared window/level to the reference's range")
        self.auto_button.clicked.connect(lambda *_: self.grid.auto_levels())
        self.tool_combo = combo_box(TOOLS, "line profile / ROI drawn on the first panel, mirrored on the others",
                                    self._tool_changed)
        for label, widget in (("Show", self.mode_combo), ("Colours", self.cmap_combo), ("Error", self.error_combo),
                              ("Score", self.score_combo), (None, self.outline_box),
                              (None, self.auto_button), ("Tool", self.tool_combo)):
            if label:
                bar.addWidget(QtWidgets.QLabel(label))
            bar.addWidget(widget)
        bar.addStretch(1)
        lay.addLayout(bar)

        split = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.grid)
        self.tabs = QtWidgets.QTabWidget()
        self.metrics = MetricsTable()
        self.metrics.shownChanged.connect(self._on_shown_changed)
        self.metrics.allSlicesChanged.connect(lambda *_: self.refresh_table())
        self.metrics.exportRequested.connect(self.export_csv_dialog)
        self.metrics.validateRequested.connect(self.validate_all)
        self.tabs.addTab(self.metrics, "Metrics")
        self.profile = ProfilePlot()
        self.tabs.addTab(self.profile, "Line profile")
        self.roi = RoiTable()
        self.tabs.addTab(self.roi, "ROI statistics")
        # the session's calibration numbers are asked for only while this tab is shown
        self.calibration = CalibrationPlot()
        self.tabs.addTab(self.calibration, "Calibration")
        self.tabs.currentChanged.connect(lambda *_: self._tab_changed())
        self.tabs.setCornerWidget(self.metrics.controls, Qt.Corner.TopRightCorner)  # the table's buttons
        split.addWidget(self.tabs)
        # the tabs keep room for a few table rows, and for the line profile below its legend
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([720, 240])
        self.splitter = split
        self._split_by_user = False  # the user moved the divider: it stays where they put it
        self._split_key: Any = None  # the layout the divider was last placed for
        split.splitterMoved.connect(lambda *_: setattr(self, "_split_by_user", True))
        self._slack_timer = single_shot_timer(self, 50, self._give_slack_to_tabs)
        lay.addWidget(split, 1)

        self._rebuild_timer = single_shot_timer(self, 30, self.rebuild)
        session.subscribe("scan", lambda *_: self._on_scan())
        session.subscribe("slice", lambda *_: self._schedule())
        session.subscribe("sampling", lambda *_: self._on_sampling())
        session.subscribe("results", lambda *_: self._schedule())
        session.subscribe("result", self._on_result)
        session.subscribe("score_mode", self._on_score_mode)

    # ----------------------------------------------------------------------------------------------------------
    # events
    def _schedule(self) -> None:
        self._rebuild_timer.start()

    def _score_mode_chosen(self) -> None:
        self.session.score_mode = self.score_combo.currentText()  # its "results" event rebuilds the view

    def _on_score_mode(self, mode: str) -> None:
        if self.score_combo.currentText() != mode:
            self.score_combo.blockSignals(True)
            self.score_combo.setCurrentText(mode)
            self.score_combo.blockSignals(False)

    def _on_scan(self) -> None:
        self.shown = {ZERO_FILLED: True}
        self.grid.reset_levels()
        self._schedule()

    def _on_sampling(self) -> None:
        if not self.isVisible():
            self._rebuild_pending = True
            return
        if ZERO_FILLED in self.grid.keys():
            self.grid.update_data(self.column_data(self.grid.keys()), self.error_levels())
        self.refresh_table()

    def _on_result(self, entry: Any) -> None:
        known = entry.id in self.grid.keys()
        if entry.state == "done" and entry.id in self._drawn_done and known:
            self.refresh_table()  # drawn already: what changed is its row (its hold-out score)
        elif entry.state == "done" or (entry.state in ("failed", "cancelled") and known):
            self.shown.setdefault(entry.id, True)
            self._schedule()
        elif entry.state == "running" and entry.preview is not None and entry.slice_index == \
                self.session.slice_index and entry.sweep_id is None:
            self.shown.setdefault(entry.id, True)
            if known and self.isVisible():
                self.grid.update_column(self.column_data([entry.id])[0])
            elif not known:
                self._schedule()

    def _on_shown_changed(self, key: Any, on: bool) -> None:
        if self.shown.get(key, True) != on:
            self.shown[key] = on
            self._schedule()

    def _give_slack_to_tabs(self) -> None:
        """The height the images leave unused (no error maps: a scan without a reference; few results on a wide
        screen) goes to the table below, which then lists more rows."""
        slack = self.grid.slack()
        if self._split_by_user or not self.isVisible() or slack < 24:
            return
        grid, tabs = self.splitter.sizes()
        self.splitter.setSizes([grid - slack, tabs + slack])

    def _fit_split(self) -> None:
        """The default share (3:1), then what the images leave to the tabs (after the layout settled); again
        only when the panels' layout or the view's size changed."""
        key = (len(self.grid.columns), self._errors_shown(), any(c.data.std is not None for c in self.grid.columns),
               self.width(), self.height())
        if not self._split_by_user and key != self._split_key:
            self._split_key = key
            total = sum(self.splitter.sizes())
            self.splitter.setSizes([3 * total // 4, total - 3 * total // 4])
            self._slack_timer.start()

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._fit_split()

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(ev)
        if self._rebuild_pending:
            self._rebuild_pending = False
            self.rebuild()

    # ----------------------------------------------------------------------------------------------------------
    # what the session says, as column data
    def keys(self) -> list[Any]:
        """What the grid shows: the reference (when there is one), then every shown image of this slice."""
        s = self.session
        if s.scan is None:
            return []
        keys: list[Any] = []
        if s.reference() is not None:
            keys.append(REFERENCE)
        if self.shown.get(ZERO_FILLED, True):
            keys.append(ZERO_FILLED)
        for e in s.results:
            if e.slice_index != s.slice_index or e.sweep_id is not None:
                continue
            if (e.state == "done" and e.image is not None) or (e.state == "running" and e.preview is not None):
                if self.shown.get(e.id, True):
                    keys.append(e.id)
        return keys

    def _errors_shown(self) -> bool:
        s = self.session
        return self.error_combo.currentText() != "none" and s.scan is not None and s.reference() is not None

    def error_levels(self) -> tuple[float, float] | None:
        """The error row's window: 20 % of the data range (None: no error row)."""
        if not self._errors_shown():
            return None
        if self.error_combo.currentText() == "relative":
            return (0.0, 0.2)
        return (0.0, 0.2 * (self.session.data_range() or 1.0))

    def column_data(self, keys: list[Any]) -> list[ColumnData]:
        """The images, error and std maps, metrics and title notes of ``keys``, read from the session."""
        s = self.session
        errors = self._errors_shown()
        relative = self.error_combo.currentText() == "relative"
        outline = s.views.region_outline() if self.outline_box.isChecked() and s.scan is not None else []
        out = []
        for key in keys:
            entry = s.entry(key)
            raw = s.image_for(key)
            image = raw
            if raw is not None and key != REFERENCE:
                # a reference valid up to a global scale: show every image scaled to it, as its metrics are
                a = s.fit_scale(raw)
                if a != 1.0:
                    image = raw * np.float32(a)
            col = ColumnData(key=key, label=str(key), image=image, outline=outline)
            if entry is not None:
                col.label, col.metrics, col.std, col.elapsed = entry.label, entry.metrics, entry.std, entry.elapsed
                col.chosen = entry.chosen_text()
                if entry.state == "running":
                    col.note = f" (running {100 * entry.progress:.0f}%)"
                elif entry.metrics.get("psnr") is not None:
                    col.note = f"<br>PSNR {entry.metrics['psnr']:.2f} dB, SSIM {entry.metrics['ssim']:.3f}"
            elif key == ZERO_FILLED:
                col.label, col.metrics = ZERO_FILLED_LABEL, s.zero_filled_metrics()
                if col.metrics:
                    col.note = f"<br>PSNR {col.metrics['psnr']:.2f} dB, SSIM {col.metrics['ssim']:.3f}"
                if raw is None:
                    col.note += " (computing…)" if s.derived_pending else f" ({s.derived_error() or 'not available'})"
            elif key == REFERENCE and s.reference_scale_free():
                col.note = "<br>(up to a scale: images fitted)"
            if errors and key != REFERENCE and raw is not None:
                col.error = s.error_map(raw, relative=relative, key=key)
            out.append(col)
        return out

    # ----------------------------------------------------------------------------------------------------------
    # updates
    def rebuild(self, force: bool = False) -> None:
        """Recreate the panels for :meth:`keys` (after results or the slice changed); deferred while the tab is
        hidden unless ``force``."""
        self._rebuild_pending = False
        if not self.isVisible() and not force:
            self._rebuild_pending = True
            self._calibration_stale = True
            self.refresh_table()
            return
        self.outline_box.setEnabled(self.session.scan is not None and self.session.reference() is not None)
        self.grid.setData(self.column_data(self.keys()), self.error_levels(), self.session.pixel_aspect)
        self._fit_split()
        self._drawn_done = {k for k in self.grid.keys()
                            if (e := self.session.entry(k)) is not None and e.state == "done"}
        self._tool_changed()
        self.refresh_table()
        self._update_calibration()

    def refresh_table(self) -> None:
        s = self.session
        self.metrics.setData(s.comparison_rows(slice_only=not self.metrics.all_slices), s.slice_index, self.shown)

    def set_shown(self, key: Any, on: bool) -> None:
        self.shown[key] = bool(on)
        self.rebuild()

    def _tool_changed(self) -> None:
        tool = self.tool_combo.currentText()
        self.grid.set_tool(tool)
        if self.grid.overlay.line_roi is not None:
            self.tabs.setCurrentWidget(self.profile)
        elif self.grid.overlay.rect_roi is not None:
            self.tabs.setCurrentWidget(self.roi)
        self._update_tools()

    def _update_tools(self) -> None:
        images = self.grid.shown_images()
        overlay = self.grid.overlay
        ends = overlay.line_endpoints()
        if ends is not None:
            self.profile.setData(images, ends)
        if overlay.rect_roi is not None:
            # RMS errors against the reference only between magnitudes
            ref = self.grid.reference_image() if self.grid.mode == "magnitude" else None
            self.roi.setData(images, overlay.roi_bounds(), ref)

    def show_calibration(self) -> None:
        """Bring the calibration plot to the front (it is drawn then)."""
        self.tabs.setCurrentWidget(self.calibration)

    def _tab_changed(self) -> None:
        self.metrics.controls.setVisible(self.tabs.currentWidget() is self.metrics)
        if self.tabs.currentWidget() is self.calibration and self._calibration_stale:
            self._update_calibration()

    def _update_calibration(self) -> None:
        if self.tabs.currentWidget() is not self.calibration:
            self._calibration_stale = True  # drawn when the tab is shown: no cost while nobody looks
            return
        self._calibration_stale = False
        s = self.session
        reference = s.reference() is not None
        # the shown finished results with a std map
        columns = [c.data for c in self.grid.columns
                   if (e := s.entry(c.key)) is not None and e.state == "done" and e.std is not None]
        if reference:
            columns = [replace(c, calibration=s.calibration(c.key)) for c in columns]
        self.calibration.setData(columns, reference)

    # ----------------------------------------------------------------------------------------------------------
    # export
    def export_figure(self, path: str, title: str = "") -> None:
        """Save the comparison as a labelled PNG figure."""
        from workbench.gui.figure import render_figure

        if self._rebuild_pending or self._rebuild_timer.isActive() or not self.grid.columns:
            self._rebuild_timer.stop()
            self.rebuild(force=True)  # the tab may be hidden (export from the menu), or a change not drawn yet
        from workbench.atomic import atomic_path

        img = render_figure(self.grid.figure_columns(), title=title, caption=self.figure_caption(),
                            pixel_aspect=self.grid.pixel_aspect)
        scan = self.session.scan
        with atomic_path(path, inputs=(scan.path if scan is not None else None,)) as tmp:
            if not img.save(tmp):  # the temporary name keeps the suffix that picks the format
                raise OSError(f"{path}: could not write the image file")

    def figure_caption(self) -> str:
        """The exported figure's caption: which scoring mode gave its numbers (and what the outline is)."""
        mode = self.session.score_mode
        text = f"Scores: {mode} mode, {SCORE_MODE_TEXT[mode]}."
        if self.outline_box.isChecked() and self.session.scan is not None and self.session.views.region_outline():
            text += " Cyan outline: the object mask."
        return text

    def validate_all(self) -> None:
        """The hold-out score of the live zero-filled image and of every run of this slice (background jobs)."""
        if self.session.scan is not None:
            self.session.validate()

    def export_csv(self, path: str) -> None:
        self.session.export_metrics_csv(path, slice_only=not self.metrics.all_slices)

    def export_csv_dialog(self) -> None:
        path = self.dialogs.save_file(self, "Export metrics", "metrics.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as exc:
                error_box(self, "Export metrics", f"{path}: {exc.strerror or exc}")


def _ring_icon() -> QtGui.QIcon:
    """A cyan ring (the outline's colour): the Outline toggle's icon."""
    pix = QtGui.QPixmap(16, 16)
    pix.fill(QtGui.QColor(0, 0, 0, 0))
    p = QtGui.QPainter(pix)
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
    p.setPen(QtGui.QPen(QtGui.QColor(0, 230, 255), 2.0))
    p.drawEllipse(QtCore.QRectF(2.5, 3.5, 11, 9))
    p.end()
    return QtGui.QIcon(pix)
