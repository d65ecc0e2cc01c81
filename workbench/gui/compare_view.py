"""The compare tab: reference and chosen results side by side with linked zoom/pan, one shared window/level
(per-panel override), magnitude / phase / real / imaginary, colour maps; error maps under each image with one
shared colour bar; std maps for methods that give them, with a calibration plot (does the std predict the error?);
a sortable metrics table with CSV export; a line profile mirrored across panels; ROI statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.gui.common import (COLORMAPS, DISPLAY_MODES, ImagePanel, Qt, colormap, display_component,
                                  error_box, robust_levels, sortable_number)
from workbench.session import ZERO_FILLED_LABEL, Session, region_stats

METRIC_COLUMNS = ("show", "label", "PSNR (dB)", "SSIM", "NMSE", "time (s)", "device", "slice", "parameters",
                  "sampling")
#: width of the shared colour bars: room for tick labels such as "3e-05" (raw scanner units)
COLORBAR_WIDTH = 92
PROFILE_COLOURS = ("#ffffff", "#ffb000", "#4fc3f7", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac")


@dataclass
class Column:
    """One compared image: its key ("reference", "zero-filled" or a result id) and its panels."""

    key: Any
    label: str
    image: ImagePanel
    error: ImagePanel | None = None
    std: ImagePanel | None = None
    override: QtWidgets.QCheckBox | None = None
    mirrors: list[Any] = field(default_factory=list)


class CompareView(QtWidgets.QWidget):
    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.columns: list[Column] = []
        self.shown: dict[Any, bool] = {"zero-filled": True}  # key -> shown in the grid
        self.shared_levels: tuple[float, float] | None = None
        self._levels_user = False  # True once the user set the shared window/level (kept across rebuilds)
        self._levels_mode: str | None = None
        self._table_keys: list[Any] = []
        self._rebuild_pending = False
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)

        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("Show"))
        self.mode_combo = QtWidgets.QComboBox()
        self.mode_combo.addItems(DISPLAY_MODES)
        self.mode_combo.setToolTip("component of the complex images (the reference is a magnitude image)")
        self.mode_combo.currentIndexChanged.connect(lambda *_: self._mode_changed())
        bar.addWidget(self.mode_combo)
        bar.addWidget(QtWidgets.QLabel("Colours"))
        self.cmap_combo = QtWidgets.QComboBox()
        self.cmap_combo.addItems(COLORMAPS)
        self.cmap_combo.setToolTip("colour map of the images (error maps use inferno)")
        self.cmap_combo.currentIndexChanged.connect(lambda *_: self.render())
        bar.addWidget(self.cmap_combo)
        bar.addWidget(QtWidgets.QLabel("Error"))
        self.error_combo = QtWidgets.QComboBox()
        self.error_combo.addItems(["absolute", "relative", "none"])
        self.error_combo.setToolTip("error maps under each image: |(|x|) - reference|, or divided by the data "
                                    "range (0.1 = 10 % of the peak)")
        self.error_combo.currentIndexChanged.connect(lambda *_: self.rebuild())
        bar.addWidget(self.error_combo)
        self.auto_button = QtWidgets.QPushButton("Auto W/L")
        self.auto_button.setToolTip("reset the shared window/level to the reference's range")
        self.auto_button.clicked.connect(self.auto_levels)
        bar.addWidget(self.auto_button)
        bar.addWidget(QtWidgets.QLabel("Tool"))
        self.tool_combo = QtWidgets.QComboBox()
        self.tool_combo.addItems(["none", "line profile", "ROI statistics"])
        self.tool_combo.setToolTip("line profile / ROI drawn on the first panel, mirrored on the others")
        self.tool_combo.currentIndexChanged.connect(lambda *_: self._tool_changed())
        bar.addWidget(self.tool_combo)
        bar.addStretch(1)
        lay.addLayout(bar)

        split = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        self.grid_host = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.grid.setSpacing(2)
        self.grid.setContentsMargins(0, 0, 0, 0)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        self.scroll = scroll
        split.addWidget(scroll)

        self.tabs = QtWidgets.QTabWidget()
        table_page = QtWidgets.QWidget()
        tl = QtWidgets.QVBoxLayout(table_page)
        tl.setContentsMargins(0, 0, 0, 0)
        self.table = QtWidgets.QTableWidget(0, len(METRIC_COLUMNS))
        self.table.setHorizontalHeaderLabels(METRIC_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(8, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("click a header to sort; tick 'show' to put a result in the grid")
        self.table.itemChanged.connect(self._on_table_item)
        tl.addWidget(self.table)
        trow = QtWidgets.QHBoxLayout()
        self.all_slices_box = QtWidgets.QCheckBox("all slices")
        self.all_slices_box.setToolTip("list the results of every slice (the grid shows the current slice)")
        self.all_slices_box.toggled.connect(lambda *_: self.refresh_table())
        trow.addWidget(self.all_slices_box)
        trow.addStretch(1)
        self.csv_button = QtWidgets.QPushButton("Export CSV…")
        self.csv_button.setToolTip("save this table as CSV")
        self.csv_button.clicked.connect(self.export_csv_dialog)
        trow.addWidget(self.csv_button)
        tl.addLayout(trow)
        self.tabs.addTab(table_page, "Metrics")
        self.profile_plot = pg.PlotWidget()
        self.profile_plot.setLabel("bottom", "position along the line (pixels)")
        self.profile_plot.addLegend(offset=(-10, 10))
        self.tabs.addTab(self.profile_plot, "Line profile")
        self.roi_table = QtWidgets.QTableWidget(0, 7)
        self.roi_table.setHorizontalHeaderLabels(["image", "mean", "std", "min", "max", "RMSE vs ref", "pixels"])
        self.roi_table.verticalHeader().setVisible(False)
        self.roi_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tabs.addTab(self.roi_table, "ROI statistics")
        # calibration: does a std map predict the error? The numbers are the session's (Session.calibration),
        # asked for only while this tab is shown. A title line, the plot, and beside it the legend with each
        # result's Spearman correlation and coverage (inside the plot, these lines would hide the points)
        self.calibration_widget = pg.GraphicsLayoutWidget()
        self.calibration_widget.setToolTip("results with a std map: object pixels binned by deciles of std; a "
                                           "calibrated Gaussian posterior lies on the dashed line")
        self.calibration_title = pg.LabelItem("", size="11pt")
        self.calibration_widget.addItem(self.calibration_title, row=0, col=0, colspan=2)
        self.calibration_plot = pg.PlotItem()
        self.calibration_plot.setLabel("bottom", "mean std (image units)")
        self.calibration_plot.setLabel("left", "mean |error| (image units)")
        for side in ("bottom", "left"):
            self.calibration_plot.getAxis(side).enableAutoSIPrefix(False)  # tick values as the images have them
        self.calibration_plot.showGrid(x=True, y=True, alpha=0.25)
        self.calibration_widget.addItem(self.calibration_plot, row=1, col=0)
        self.calibration_legend = pg.LegendItem()
        self.calibration_widget.addItem(self.calibration_legend, row=1, col=1)
        self.tabs.addTab(self.calibration_widget, "Calibration")
        #: what the calibration plot says above its axes (its title)
        self.calibration_status = ""
        #: result id -> its points in the calibration plot
        self.calibration_items: dict[Any, pg.PlotDataItem] = {}
        self._calibration_stale = True
        self.tabs.currentChanged.connect(lambda *_: self._tab_changed())
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([700, 200])
        self.splitter = split
        lay.addWidget(split, 1)

        self.line_roi: pg.LineSegmentROI | None = None
        self.rect_roi: pg.RectROI | None = None
        self.image_bar: pg.ColorBarItem | None = None
        self.error_bar: pg.ColorBarItem | None = None
        self.std_bar: pg.ColorBarItem | None = None
        self._rebuild_timer = QtCore.QTimer(self)
        self._rebuild_timer.setSingleShot(True)
        self._rebuild_timer.setInterval(30)
        self._rebuild_timer.timeout.connect(self.rebuild)
        session.subscribe("scan", lambda *_: self._on_scan())
        session.subscribe("slice", lambda *_: self._schedule())
        session.subscribe("sampling", lambda *_: self._on_sampling())
        session.subscribe("results", lambda *_: self._schedule())
        session.subscribe("result", self._on_result)

    # ----------------------------------------------------------------------------------------------------------
    # events
    def _schedule(self) -> None:
        self._rebuild_timer.start()

    def _on_scan(self) -> None:
        self.shown = {"zero-filled": True}
        self.shared_levels = None
        self._levels_user = False
        self._schedule()

    def _on_sampling(self) -> None:
        if not self.isVisible():
            self._rebuild_pending = True
            return
        col = next((c for c in self.columns if c.key == "zero-filled"), None)
        if col is not None:
            if not self._levels_user:
                self.shared_levels = None
            self.render()
        self.refresh_table()

    def _on_result(self, entry: Any) -> None:
        known = any(c.key == entry.id for c in self.columns)
        if entry.state == "done" or (entry.state in ("failed", "cancelled") and known):
            self.shown.setdefault(entry.id, True)
            self._schedule()
        elif entry.state == "running" and entry.preview is not None and entry.slice_index == \
                self.session.slice_index and entry.sweep_id is None:
            self.shown.setdefault(entry.id, True)
            if known and self.isVisible():
                self._render_column(next(c for c in self.columns if c.key == entry.id))
            elif not known:
                self._schedule()

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(ev)
        if self._rebuild_pending:
            self._rebuild_pending = False
            self.rebuild()

    def _mode_changed(self) -> None:
        self.shared_levels = None
        self._levels_user = False
        self.render()

    # ----------------------------------------------------------------------------------------------------------
    # grid
    def keys(self) -> list[Any]:
        """What the grid shows: the reference (when there is one), then every shown image of this slice."""
        s = self.session
        if s.scan is None:
            return []
        keys: list[Any] = []
        if s.reference() is not None:
            keys.append("reference")
        if self.shown.get("zero-filled", True):
            keys.append("zero-filled")
        for e in s.results:
            if e.slice_index != s.slice_index or e.sweep_id is not None:
                continue
            if (e.state == "done" and e.image is not None) or (e.state == "running" and e.preview is not None):
                if self.shown.get(e.id, True):
                    keys.append(e.id)
        return keys

    def _label(self, key: Any) -> str:
        if key == "zero-filled":
            return ZERO_FILLED_LABEL
        if key == "reference":
            return key
        e = self.session.entry(key)
        return e.label if e is not None else str(key)

    def rebuild(self, force: bool = False) -> None:
        """Recreate the panels for :meth:`keys` (after results or the slice changed); deferred while the tab is
        hidden unless ``force``."""
        self._rebuild_pending = False
        if not self.isVisible() and not force:
            self._rebuild_pending = True
            self._calibration_stale = True
            self.refresh_table()
            return
        self._clear_grid()
        if not self._levels_user:  # the default window follows what is shown
            self.shared_levels = None
        s = self.session
        keys = self.keys()
        show_err = self.error_combo.currentText() != "none" and s.scan is not None and s.reference() is not None
        any_std = any(s.entry(k) is not None and s.entry(k).std is not None for k in keys)
        first_view = None
        for ci, key in enumerate(keys):
            panel = ImagePanel(self._label(key))
            panel.hovered.connect(self.hovered)
            col = Column(key=key, label=self._label(key), image=panel)
            box = QtWidgets.QCheckBox("own W/L")
            box.setToolTip("give this panel its own window/level (drag the ends of its colour bar)")
            box.toggled.connect(lambda on, c=col: self._override(c, on))
            col.override = box
            self.grid.addWidget(panel, 0, ci)
            self.grid.addWidget(box, 1, ci, alignment=Qt.AlignmentFlag.AlignHCenter)
            if show_err and key != "reference":
                col.error = ImagePanel(f"error: {col.label}", cmap="inferno")
                col.error.hovered.connect(self.hovered)
                self.grid.addWidget(col.error, 2, ci)
            if any_std and s.entry(key) is not None and s.entry(key).std is not None:
                col.std = ImagePanel(f"std: {col.label}", cmap="viridis")
                col.std.hovered.connect(self.hovered)
                self.grid.addWidget(col.std, 3, ci)
            for p in (col.image, col.error, col.std):
                if p is None:
                    continue
                # small enough that five results, the reference and the colour bar fit a 1400 px window
                p.setMinimumSize(150, 150)
                if first_view is None:
                    first_view = p.view
                else:
                    # only the first view follows the image bounds; the others copy its range
                    p.follow_bounds = False
                    p.view.setXLink(first_view)
                    p.view.setYLink(first_view)
            self.columns.append(col)
        n = len(keys)
        if n:
            self.bar_widget = pg.GraphicsLayoutWidget()
            self.bar_widget.setFixedWidth(COLORBAR_WIDTH)
            self.image_bar = pg.ColorBarItem(colorMap=colormap(self.cmap_combo.currentText()), interactive=True,
                                             width=12, label="image")
            self.image_bar.sigLevelsChanged.connect(self._on_shared_bar)
            self.bar_widget.addItem(self.image_bar, row=0, col=0)
            self.grid.addWidget(self.bar_widget, 0, n)
            if show_err:
                self.err_bar_widget = pg.GraphicsLayoutWidget()
                self.err_bar_widget.setFixedWidth(COLORBAR_WIDTH)
                self.error_bar = pg.ColorBarItem(colorMap=colormap("inferno"), interactive=True, width=12,
                                                 label="error")
                self.err_bar_widget.addItem(self.error_bar, row=0, col=0)
                self.error_bar.setImageItem([c.error.image_item for c in self.columns if c.error is not None])
                self.grid.addWidget(self.err_bar_widget, 2, n)
            if any_std:
                self.std_bar_widget = pg.GraphicsLayoutWidget()
                self.std_bar_widget.setFixedWidth(COLORBAR_WIDTH)
                self.std_bar = pg.ColorBarItem(colorMap=colormap("viridis"), interactive=True, width=12, label="std")
                self.std_bar_widget.addItem(self.std_bar, row=0, col=0)
                self.std_bar.setImageItem([c.std.image_item for c in self.columns if c.std is not None])
                self.grid.addWidget(self.std_bar_widget, 3, n)
        else:
            msg = QtWidgets.QLabel("Open a scan, then run methods (Methods panel) to compare them here.")
            msg.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.grid.addWidget(msg, 0, 0)
        # only rows that hold panels take the height (without error / std maps the images fill the grid)
        used = {0, 2 if show_err and any(c.error is not None for c in self.columns) else None,
                3 if any_std else None}
        for r in range(4):
            self.grid.setRowStretch(r, 1 if r in used else 0)
        self.render(autorange=True)
        self._tool_changed()
        self.refresh_table()
        self._update_calibration()
        if first_view is not None:
            # fit once the new panels have their sizes
            QtCore.QTimer.singleShot(0, lambda v=first_view: _fit(v))

    def _clear_grid(self) -> None:
        self.line_roi = None
        self.rect_roi = None
        self.image_bar = self.error_bar = self.std_bar = None
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.columns = []

    # ----------------------------------------------------------------------------------------------------------
    # rendering
    def _data(self, key: Any) -> np.ndarray | None:
        img = self.session.image_for(key)
        if img is None:
            return None
        if key != "reference":
            # a reference valid up to a global scale: show every image scaled to it, as its metrics are
            a = self.session.fit_scale(img)
            if a != 1.0:
                img = img * np.float32(a)
        mode = self.mode_combo.currentText()
        if key == "reference" or not np.iscomplexobj(img):
            return display_component(img, "magnitude") if mode == "magnitude" or key == "reference" else \
                display_component(img, mode)
        return display_component(img, mode)

    def _default_levels(self) -> tuple[float, float]:
        mode = self.mode_combo.currentText()
        if mode == "phase":
            return (-math.pi, math.pi)
        if not self.columns:
            return (0.0, 1.0)
        if self.columns[0].key == "reference":
            data = [self._data("reference")]
        else:
            # no reference: methods scale their images differently (an undersampled zero-filled image is darker
            # than a SENSE reconstruction), so take the window that leaves none of them saturated
            data = [self._data(c.key) for c in self.columns]
        data = [d for d in data if d is not None]
        if not data:
            return (0.0, 1.0)
        # robust percentiles: one bright pixel (a vessel, a fat spot, a spike) must not darken the images
        levels = [robust_levels(d, 0.5, 99.5) for d in data]
        lo, hi = min(lv[0] for lv in levels), max(lv[1] for lv in levels)
        if mode in ("real", "imaginary"):
            m = max(abs(lo), abs(hi))
            return (-m, m)
        return (0.0, hi)

    def render(self, autorange: bool = False) -> None:
        """Redraw every panel with the current mode, colour map and levels."""
        if not self.columns:
            return
        if self.shared_levels is None:
            self.shared_levels = self._default_levels()
        cmap = colormap(self.cmap_combo.currentText())
        if self.image_bar is not None:
            self.image_bar.setColorMap(cmap)
        for col in self.columns:
            self._render_column(col, autorange=autorange)
        shared = [c.image.image_item for c in self.columns if not (c.override and c.override.isChecked())]
        if self.image_bar is not None:
            self.image_bar.blockSignals(True)
            self.image_bar.setImageItem(shared)
            self.image_bar.setLevels(self.shared_levels)
            self.image_bar.blockSignals(False)
        if self.error_bar is not None:
            dr = self.session.data_range() or 1.0
            rel = self.error_combo.currentText() == "relative"
            self.error_bar.setLevels((0.0, 0.2 if rel else 0.2 * dr))
        if self.std_bar is not None:
            stds = [c.std.data for c in self.columns if c.std is not None and c.std.data is not None]
            if stds:
                self.std_bar.setLevels((0.0, max(robust_levels(s, 0, 99.5)[1] for s in stds)))
        self._update_profile()
        self._update_roi()

    def _render_column(self, col: Column, autorange: bool = False) -> None:
        s = self.session
        data = self._data(col.key)
        entry = s.entry(col.key)
        title = col.label
        if entry is not None:
            if entry.state == "running":
                title += f" (running {100 * entry.progress:.0f}%)"
            elif entry.metrics.get("psnr") is not None:
                title += f"<br>PSNR {entry.metrics['psnr']:.2f} dB, SSIM {entry.metrics['ssim']:.3f}"
        elif col.key == "zero-filled":
            m = s.zero_filled_metrics()
            if m:
                title += f"<br>PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"
        elif col.key == "reference":
            if self.mode_combo.currentText() != "magnitude":
                title += " (magnitude)"
            if s.reference_scale_free():
                title += "<br>(up to a scale: images fitted)"
        if col.key == "zero-filled" and s.image_for(col.key) is None:
            title += " (computing…)" if s.derived_pending else f" ({s.derived_error() or 'not available'})"
        col.image.set_title(title)
        own = col.override is not None and col.override.isChecked()
        if not own:
            col.image.set_colormap(self.cmap_combo.currentText())
        levels = (col.image.levels() if own else self.shared_levels) or self.shared_levels
        col.image.set_image(data, levels=levels, autorange=autorange)
        if col.error is not None:
            img = s.image_for(col.key)
            rel = self.error_combo.currentText() == "relative"
            err = s.error_map(img, relative=rel) if img is not None else None
            lv = self.error_bar.levels() if self.error_bar is not None else None
            col.error.set_image(err, levels=tuple(lv) if lv is not None else None, autorange=autorange)
        if col.std is not None and entry is not None and entry.std is not None:
            lv = self.std_bar.levels() if self.std_bar is not None else None
            col.std.set_image(entry.std, levels=tuple(lv) if lv is not None else None, autorange=autorange)

    def _on_shared_bar(self, bar: Any) -> None:
        self.shared_levels = tuple(float(v) for v in bar.levels())
        self._levels_user = True

    def set_shared_levels(self, levels: tuple[float, float]) -> None:
        """Window/level of every panel without its own override."""
        self.shared_levels = (float(levels[0]), float(levels[1]))
        self._levels_user = True
        self.render()

    def auto_levels(self) -> None:
        self.shared_levels = None
        self._levels_user = False
        for c in self.columns:
            if c.override is not None:
                c.override.setChecked(False)
        self.render()

    def _override(self, col: Column, on: bool) -> None:
        col.image.enable_colorbar(on)
        if on:
            col.image.set_colormap(self.cmap_combo.currentText())
            if col.image.data is not None:
                lv = robust_levels(col.image.data)
                col.image.set_levels(lv)
        self.render()

    # ----------------------------------------------------------------------------------------------------------
    # figure export
    def figure_columns(self) -> list[Any]:
        """What :func:`workbench.gui.figure.render_figure` draws: the panels as shown (levels, colour maps)."""
        from workbench.gui.figure import FigureColumn, Tile

        out = []
        s = self.session
        for c in self.columns:
            if c.image.data is None:
                continue
            own = c.override is not None and c.override.isChecked()
            lv = (c.image.levels() if own else self.shared_levels) or robust_levels(c.image.data)
            entry = s.entry(c.key)
            m = entry.metrics if entry is not None else (s.zero_filled_metrics() if c.key == "zero-filled" else {})
            sub = []
            if m.get("psnr") is not None:
                sub.append(f"PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}")
            if entry is not None and entry.elapsed is not None:
                sub.append(f"{entry.elapsed:.1f} s")
            col = FigureColumn(title=c.label, subtitle="  ".join(sub),
                               image=Tile(c.image.data, lv, c.image._cmap_name))
            if c.error is not None and c.error.data is not None and self.error_bar is not None:
                col.error = Tile(c.error.data, tuple(self.error_bar.levels()), "inferno")
            if c.std is not None and c.std.data is not None and self.std_bar is not None:
                col.std = Tile(c.std.data, tuple(self.std_bar.levels()), "viridis")
            out.append(col)
        return out

    def export_figure(self, path: str, title: str = "") -> None:
        """Save the comparison as a labelled PNG figure."""
        from workbench.gui.figure import render_figure

        if self._rebuild_pending or not self.columns:
            self.rebuild(force=True)  # the tab may be hidden (export from the menu)
        cols = self.figure_columns()
        img = render_figure(cols, title=title)
        if not img.save(path):
            raise OSError(f"{path}: could not write the PNG file")

    # ----------------------------------------------------------------------------------------------------------
    # metrics table
    def refresh_table(self) -> None:
        s = self.session
        rows = s.comparison_rows(slice_only=not self.all_slices_box.isChecked())
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        self._table_keys = []
        for r in rows:
            i = self.table.rowCount()
            self.table.insertRow(i)
            show = QtWidgets.QTableWidgetItem()
            show.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            current_slice = r["slice"] == s.slice_index
            show.setCheckState(Qt.CheckState.Checked if self.shown.get(r["key"], True) and current_slice
                               else Qt.CheckState.Unchecked)
            if not current_slice:
                show.setFlags(Qt.ItemFlag.ItemIsEnabled)
            show.setData(Qt.ItemDataRole.UserRole + 1, r["key"])
            self.table.setItem(i, 0, show)
            self.table.setItem(i, 1, _text(r["label"]))
            self.table.setItem(i, 2, sortable_number(r["psnr"], "{:.2f}"))
            self.table.setItem(i, 3, sortable_number(r["ssim"], "{:.4f}"))
            self.table.setItem(i, 4, sortable_number(r["nmse"], "{:.4g}"))
            self.table.setItem(i, 5, sortable_number(r["time_s"], "{:.2f}"))
            self.table.setItem(i, 6, _text(r["device"]))
            self.table.setItem(i, 7, sortable_number(r["slice"] + 1, "{:.0f}"))
            self.table.setItem(i, 8, _text(r["params"]))
            self.table.setItem(i, 9, _text(r["sampling"]))
            self._table_keys.append(r["key"])
        self.table.setSortingEnabled(True)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(8, QtWidgets.QHeaderView.ResizeMode.Stretch)

    def _on_table_item(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        key = item.data(Qt.ItemDataRole.UserRole + 1)
        on = item.checkState() == Qt.CheckState.Checked
        if self.shown.get(key, True) != on:
            self.shown[key] = on
            self._schedule()

    def set_shown(self, key: Any, on: bool) -> None:
        self.shown[key] = bool(on)
        self.rebuild()

    def export_csv(self, path: str) -> None:
        self.session.export_metrics_csv(path, slice_only=not self.all_slices_box.isChecked())

    def export_csv_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export metrics", "metrics.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_csv(path)
            except OSError as exc:
                error_box(self, "Export metrics", f"{path}: {exc.strerror or exc}")

    # ----------------------------------------------------------------------------------------------------------
    # calibration of the std maps
    def calibration_keys(self) -> list[Any]:
        """The shown results that have a std map: those the calibration plot draws."""
        s = self.session
        return [c.key for c in self.columns
                if (e := s.entry(c.key)) is not None and e.state == "done" and e.std is not None]

    def show_calibration(self) -> None:
        """Bring the calibration plot to the front (it is drawn then)."""
        self.tabs.setCurrentWidget(self.calibration_widget)

    def _tab_changed(self) -> None:
        if self.tabs.currentWidget() is self.calibration_widget and self._calibration_stale:
            self._update_calibration()

    def _update_calibration(self) -> None:
        if self.tabs.currentWidget() is not self.calibration_widget:
            self._calibration_stale = True  # drawn when the tab is shown: no cost while nobody looks
            return
        self._calibration_stale = False
        plot, legend = self.calibration_plot, self.calibration_legend
        plot.clear()
        legend.clear()
        self.calibration_items = {}
        s = self.session
        keys = self.calibration_keys()
        if not keys:
            self._set_calibration_status("No std map: none of the shown results gives an uncertainty map")
            return
        if s.reference() is None:
            self._set_calibration_status("No reference: the error of the std maps cannot be measured")
            return
        curves = [(key, s.calibration(key)) for key in keys]
        curves = [(key, cal) for key, cal in curves if cal is not None and cal["std"]]
        if not curves:
            self._set_calibration_status("No pixels to calibrate on (empty object mask)")
            return
        for i, (key, cal) in enumerate(curves):
            colour = PROFILE_COLOURS[(i + 1) % len(PROFILE_COLOURS)]  # not white: the guide is light grey
            lines = [self._label(key),
                     f"Spearman {cal['spearman']:.3f} ({cal['spearman_if_calibrated']:.2f} if calibrated)",
                     f"error's own neighbours {cal['spearman_oracle']:.2f}, edge map {cal['spearman_edges']:.2f}",
                     f"{100 * cal['level']:.0f}% interval coverage {cal['coverage']:.3f}",
                     f"({cal['interval']})"]
            if cal.get("coverage_predictive") is not None:
                lines.append(f"{cal['coverage_predictive']:.3f} with the reference's noise")
            item = plot.plot(cal["std"], cal["abs_error"], pen=pg.mkPen(colour, width=2), symbol="o",
                             symbolSize=9, symbolBrush=colour, symbolPen=pg.mkPen("#000000"),
                             name="<br>".join(lines))
            legend.addItem(item, item.name())
            self.calibration_items[key] = item
        slope = curves[0][1]["guide_slope"]
        x_max = 1.05 * max(max(cal["std"]) for _, cal in curves) or 1.0
        y_max = 1.05 * max(max(max(cal["abs_error"]) for _, cal in curves), slope * x_max) or 1.0
        guide = plot.plot([0.0, x_max], [0.0, slope * x_max],
                          pen=pg.mkPen("#cccccc", width=1.5, style=Qt.PenStyle.DashLine),
                          name=f"calibrated Gaussian:<br>|error| = \u221a(2/\u03c0) std \u2248 {slope:.2f} std")
        legend.addItem(guide, guide.name())
        plot.setXRange(0.0, x_max, padding=0.02)
        plot.setYRange(0.0, y_max, padding=0.02)
        self._set_calibration_status("Mean |error| against mean std in each decile of std (object pixels)")

    def _set_calibration_status(self, text: str) -> None:
        self.calibration_status = text
        self.calibration_title.setText(text)

    # ----------------------------------------------------------------------------------------------------------
    # line profile and ROI
    def _tool_changed(self) -> None:
        for c in self.columns:
            for m in c.mirrors:
                try:
                    c.image.view.removeItem(m)
                except Exception:
                    pass
            c.mirrors = []
        if self.line_roi is not None and self.columns:
            self.columns[0].image.view.removeItem(self.line_roi)
        if self.rect_roi is not None and self.columns:
            self.columns[0].image.view.removeItem(self.rect_roi)
        self.line_roi = self.rect_roi = None
        tool = self.tool_combo.currentText()
        if not self.columns or self.columns[0].image.data is None:
            return
        h, w = self.columns[0].image.data.shape
        first = self.columns[0].image
        if tool == "line profile":
            self.line_roi = pg.LineSegmentROI([(w * 0.2, h * 0.5), (w * 0.8, h * 0.5)], pen=pg.mkPen("#ffb000", width=2))
            first.view.addItem(self.line_roi)
            self.line_roi.sigRegionChanged.connect(self._update_profile)
            for c in self.columns[1:]:
                m = pg.PlotCurveItem(pen=pg.mkPen("#ffb000", width=1, style=Qt.PenStyle.DashLine))
                c.image.view.addItem(m)
                c.mirrors.append(m)
            self.tabs.setCurrentWidget(self.profile_plot)
        elif tool == "ROI statistics":
            self.rect_roi = pg.RectROI([w * 0.4, h * 0.4], [w * 0.2, h * 0.2], pen=pg.mkPen("#4fc3f7", width=2))
            first.view.addItem(self.rect_roi)
            self.rect_roi.sigRegionChanged.connect(self._update_roi)
            for c in self.columns[1:]:
                m = QtWidgets.QGraphicsRectItem()
                m.setPen(pg.mkPen("#4fc3f7", width=1, style=Qt.PenStyle.DashLine))
                c.image.view.addItem(m)
                c.mirrors.append(m)
            self.tabs.setCurrentWidget(self.roi_table)
        self._update_profile()
        self._update_roi()

    def line_endpoints(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """(x0, y0), (x1, y1) of the profile line in pixel coordinates (x = column, y = row)."""
        if self.line_roi is None:
            return None
        handles = self.line_roi.getSceneHandlePositions()
        item = self.columns[0].image.image_item
        pts = [item.mapFromScene(p) for _, p in handles]
        return (pts[0].x(), pts[0].y()), (pts[1].x(), pts[1].y())

    def profiles(self) -> dict[str, np.ndarray]:
        """The profile along the line for every panel (label -> values), sampled at unit spacing."""
        ends = self.line_endpoints()
        out: dict[str, np.ndarray] = {}
        if ends is None:
            return out
        (x0, y0), (x1, y1) = ends
        n = max(2, int(math.hypot(x1 - x0, y1 - y0)) + 1)
        xs = np.linspace(x0, x1, n)
        ys = np.linspace(y0, y1, n)
        from scipy.ndimage import map_coordinates

        for c in self.columns:
            if c.image.data is not None:
                out[c.label] = map_coordinates(c.image.data.astype(np.float64), [ys, xs], order=1, mode="nearest")
        return out

    def _update_profile(self) -> None:
        if self.line_roi is None:
            return
        ends = self.line_endpoints()
        if ends is None:
            return
        (x0, y0), (x1, y1) = ends
        for c in self.columns[1:]:
            for m in c.mirrors:
                if isinstance(m, pg.PlotCurveItem):
                    m.setData([x0, x1], [y0, y1])
        self.profile_plot.clear()
        for i, (label, values) in enumerate(self.profiles().items()):
            self.profile_plot.plot(values, pen=pg.mkPen(PROFILE_COLOURS[i % len(PROFILE_COLOURS)], width=1.5),
                                   name=label)

    def roi_bounds(self) -> tuple[slice, slice] | None:
        if self.rect_roi is None or not self.columns or self.columns[0].image.data is None:
            return None
        x, y = self.rect_roi.pos()
        w, h = self.rect_roi.size()
        H, W = self.columns[0].image.data.shape
        r0, r1 = int(np.clip(round(y), 0, H)), int(np.clip(round(y + h), 0, H))
        c0, c1 = int(np.clip(round(x), 0, W)), int(np.clip(round(x + w), 0, W))
        return slice(r0, r1), slice(c0, c1)

    def roi_statistics(self) -> dict[str, dict[str, float]]:
        b = self.roi_bounds()
        if b is None:
            return {}
        ref = self.session.reference()
        out = {}
        for c in self.columns:
            if c.image.data is not None:
                use_ref = ref if self.mode_combo.currentText() == "magnitude" and c.key != "reference" else None
                out[c.label] = region_stats(c.image.data, use_ref, *b)
        return out

    def _update_roi(self) -> None:
        if self.rect_roi is None:
            return
        x, y = self.rect_roi.pos()
        w, h = self.rect_roi.size()
        for c in self.columns[1:]:
            for m in c.mirrors:
                if isinstance(m, QtWidgets.QGraphicsRectItem):
                    m.setRect(QtCore.QRectF(x, y, w, h))
        stats = self.roi_statistics()
        self.roi_table.setRowCount(0)
        for label, st in stats.items():
            i = self.roi_table.rowCount()
            self.roi_table.insertRow(i)
            self.roi_table.setItem(i, 0, _text(label))
            for j, k in enumerate(("mean", "std", "min", "max", "rmse", "pixels"), start=1):
                v = st.get(k)
                self.roi_table.setItem(i, j, _text("" if v is None else f"{v:.4g}"))


def _fit(view: pg.ViewBox) -> None:
    try:
        view.enableAutoRange(enable=True)
        view.autoRange(padding=0.0)
    except RuntimeError:  # the panel was deleted in the meantime
        pass


def _text(v: Any) -> QtWidgets.QTableWidgetItem:
    it = QtWidgets.QTableWidgetItem("" if v is None else str(v))
    it.setToolTip("" if v is None else str(v))
    return it
