"""The compare grid: one column of panels per :class:`ColumnData` (image, its error map, its std map) with
linked zoom/pan, one shared window/level and colour bar per row (a panel may take its own window/level), the
display component (magnitude / phase / real / imaginary) and colour map; its ``overlay`` draws the line /
rectangle that the profile and ROI tabs read.

The panels fit the space: the columns wrap into bands (a second band of image / error / std rows below the first)
when that shows the images larger than one band of narrow panels would; nothing scrolls sideways."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.gui.common import (ImagePanel, Qt, colormap, display_component, fit_title, robust_levels,
                                  set_axis_scale, single_shot_timer, title_font)
from workbench.gui.compare.columns import REFERENCE, ColumnData
from workbench.gui.compare.overlay import ToolOverlay

#: width of the shared colour bars: room for tick labels such as "3e-05" (raw scanner units)
COLORBAR_WIDTH = 92
#: the grid's rows (of each band): images, their "own W/L" boxes, error maps, std maps
IMAGE_ROW, OVERRIDE_ROW, ERROR_ROW, STD_ROW = range(4)
ROWS_PER_BAND = 4
#: the smallest panel: the layout wraps the columns into bands rather than make panels narrower
PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT = 90, 70
#: height of the "own W/L" row, spacing between panels, height of one title line, of the other rows' titles
BOX_HEIGHT, SPACING, TITLE_LINE, SHORT_TITLE = 22, 2, 15, 17
#: the object outline's pen: a thin cyan line, seen on grey images and on every colour map's middle
OUTLINE_PEN = pg.mkPen((0, 230, 255), width=1.5, cosmetic=True)
#: the image titles (label, PSNR, SSIM) take at most this many lines in narrow panels (elided beyond, whole in the
#: tooltip): the images keep the height
TITLE_MAX_LINES = 3


def panel_width(width: int, per_band: int) -> int:
    """The width of a panel when ``per_band`` columns and the colour bars share ``width`` pixels."""
    return int((width - COLORBAR_WIDTH - SPACING * per_band) / per_band)


def columns_per_band(n: int, width: int, height: int, panel_rows: int, aspect: float,
                     title_lines: Any = lambda panel_width: 2) -> int:
    """How many of ``n`` columns one band holds so that the images (height/width ``aspect``) are shown largest
    in ``width`` x ``height`` pixels, each band having ``panel_rows`` rows of panels and a row of boxes;
    ``title_lines(panel_width)``: the lines the image titles take. Every panel at least
    :data:`PANEL_MIN_WIDTH` wide (fewer columns per band otherwise)."""
    best, best_scale = 1, -1.0
    for k in range(1, max(n, 1) + 1):
        bands = math.ceil(n / k)
        pw = panel_width(width, k)
        if k > 1 and pw < PANEL_MIN_WIDTH:
            break
        titles = title_lines(pw) * TITLE_LINE + (panel_rows - 1) * SHORT_TITLE
        image_h = (height - bands * (BOX_HEIGHT + titles + SPACING * (panel_rows + 1))) / (bands * panel_rows)
        scale = min(pw - 4, image_h / aspect)
        if scale >= best_scale - 1e-9:  # a tie: fewer bands
            best, best_scale = k, scale
    return best


@dataclass
class PanelColumn:
    """The panels of one column and the data they show."""

    data: ColumnData
    image: ImagePanel
    override: QtWidgets.QCheckBox
    error: ImagePanel | None = None
    std: ImagePanel | None = None

    @property
    def key(self) -> Any:
        return self.data.key

    @property
    def label(self) -> str:
        return self.data.label


class CompareGrid(QtWidgets.QScrollArea):
    """Signals:
        hovered(row, col, value, name): the mouse is over a pixel of a panel.
        rendered(): every panel was redrawn (mode, levels or data changed).
        toolMoved(): the user dragged the line or the rectangle.
    """

    hovered = QtCore.pyqtSignal(int, int, float, str)
    rendered = QtCore.pyqtSignal()
    toolMoved = QtCore.pyqtSignal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        #: columns per band of the current arrangement
        self.per_band = 0
        self._bar_hosts: dict[int, pg.GraphicsLayoutWidget] = {}  # grid row -> the host of its colour bar
        # the images fit their panels whenever these change size (the layout settles, the window is resized),
        # until the user zooms or pans
        self._fit_timer = single_shot_timer(self, 20, self._fit_views)
        self._zoomed = False
        host = QtWidgets.QWidget()
        self.panel_layout = QtWidgets.QGridLayout(host)
        self.panel_layout.setSpacing(2)
        self.panel_layout.setContentsMargins(0, 0, 0, 0)
        self.setWidget(host)
        self.columns: list[PanelColumn] = []
        self.mode = "magnitude"
        self.cmap = "gray"
        self.error_levels: tuple[float, float] | None = None
        self.pixel_aspect = 1.0  # height / width of an image pixel as drawn (setData)
        self.shared_levels: tuple[float, float] | None = None
        self._levels_user = False  # True once the user set the shared window/level (kept across setData)
        self.overlay = ToolOverlay(self)
        self.overlay.moved.connect(self.toolMoved)
        self.image_bar: pg.ColorBarItem | None = None
        self.error_bar: pg.ColorBarItem | None = None
        self.std_bar: pg.ColorBarItem | None = None

    # ----------------------------------------------------------------------------------------------------------
    # data
    def keys(self) -> list[Any]:
        return [c.key for c in self.columns]

    def setData(self, columns: list[ColumnData], error_levels: tuple[float, float] | None = None,  # noqa: N802
                pixel_aspect: float = 1.0) -> None:
        """Recreate the panels for ``columns``; ``error_levels``: the error row's window (None: no error row);
        ``pixel_aspect``: height / width of an image pixel as drawn (``Scan.pixel_aspect``)."""
        self._clear()
        self.pixel_aspect = float(pixel_aspect)
        self.error_levels = error_levels
        if not self._levels_user:  # the default window follows what is shown
            self.shared_levels = None
        show_err = error_levels is not None
        any_std = any(c.std is not None for c in columns)
        first_view = None
        self._zoomed = False
        for data in columns:
            panel = self._panel(data.label)
            box = QtWidgets.QCheckBox("own W/L")
            box.setToolTip("give this panel its own window/level (drag the ends of its colour bar)")
            col = PanelColumn(data=data, image=panel, override=box)
            box.toggled.connect(lambda on, c=col: self._override(c, on))
            # the column says whose maps they are: short titles (the hover text keeps the name)
            if show_err and data.key != REFERENCE:
                col.error = self._panel("error", cmap="inferno")
                col.error.name = f"error: {data.label}"
            if data.std is not None:
                col.std = self._panel("std", cmap="viridis")
                col.std.name = f"std: {data.label}"
            for p in (col.image, col.error, col.std):
                if p is None:
                    continue
                p.view.sigResized.connect(self._refit)
                p.view.sigRangeChangedManually.connect(self._on_zoomed)
                if first_view is None:
                    first_view = p.view
                else:
                    # only the first view follows the image bounds; the others copy its range
                    p.follow_bounds = False
                    p.view.setXLink(first_view)
                    p.view.setYLink(first_view)
            self.columns.append(col)
        if columns:
            self.image_bar = self._colorbar("image", self.cmap, IMAGE_ROW)
            self.image_bar.sigLevelsChanged.connect(self._on_shared_bar)
            if show_err:
                self.error_bar = self._colorbar("error", "inferno", ERROR_ROW,
                                                [c.error.image_item for c in self.columns if c.error is not None])
            if any_std:
                self.std_bar = self._colorbar("std", "viridis", STD_ROW,
                                              [c.std.image_item for c in self.columns if c.std is not None])
        else:
            msg = QtWidgets.QLabel("Open a scan, then run methods (Methods panel) to compare them here.")
            msg.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.panel_layout.addWidget(msg, IMAGE_ROW, 0)
        self.per_band = 0
        self.arrange()
        self.render(autorange=True)
        self._fit_timer.start()  # once the new panels have their sizes

    def _refit(self, *_: Any) -> None:
        if not self._zoomed:
            self._fit_timer.start()

    def _on_zoomed(self, *_: Any) -> None:
        self._zoomed = True

    def _fit_views(self) -> None:
        if self.columns:
            _fit(self.columns[0].image.view)

    def update_data(self, columns: list[ColumnData], error_levels: tuple[float, float] | None = None) -> None:
        """New images for the columns shown (the same keys, e.g. after the sampling changed): redraw them."""
        by_key = {c.key: c for c in columns}
        for col in self.columns:
            col.data = by_key.get(col.key, col.data)
        self.error_levels = error_levels
        if not self._levels_user:
            self.shared_levels = None
        self.render()

    def update_column(self, data: ColumnData) -> None:
        """Redraw one column with new data (a running result's preview)."""
        col = next((c for c in self.columns if c.key == data.key), None)
        if col is not None:
            col.data = data
            self._render_column(col)

    def _panel(self, title: str, cmap: str = "gray") -> ImagePanel:
        panel = ImagePanel(title, cmap=cmap)
        panel.set_pixel_aspect(self.pixel_aspect)
        panel.hovered.connect(self.hovered)
        panel.setMinimumWidth(PANEL_MIN_WIDTH)
        panel.base_min_height = PANEL_MIN_HEIGHT
        panel.title_max_lines = TITLE_MAX_LINES
        return panel

    def _colorbar(self, label: str, cmap: str, row: int, items: list[Any] | None = None) -> pg.ColorBarItem:
        host = pg.GraphicsLayoutWidget()
        host.setFixedWidth(COLORBAR_WIDTH)
        host.setMinimumHeight(PANEL_MIN_HEIGHT)
        bar = pg.ColorBarItem(colorMap=colormap(cmap), interactive=True, width=12, label=label)
        bar.label_text = label
        host.addItem(bar, row=0, col=0)
        if items is not None:
            bar.setImageItem(items)
        self._bar_hosts[row] = host
        return bar

    # ----------------------------------------------------------------------------------------------------------
    # arrangement
    def _panel_rows(self) -> list[int]:
        """The rows of panels each band has (images, and error / std maps when some column has them)."""
        rows = [IMAGE_ROW]
        if any(c.error is not None for c in self.columns):
            rows.append(ERROR_ROW)
        if any(c.std is not None for c in self.columns):
            rows.append(STD_ROW)
        return rows

    def arrange(self) -> None:
        """Place the panels in bands of :func:`columns_per_band` columns for the space the grid has; the colour
        bars stand right of the first band. Nothing is moved when the number per band stays the same."""
        n = len(self.columns)
        if not n:
            return
        vp = self.viewport().size()
        rows = self._panel_rows()
        k = columns_per_band(n, vp.width(), vp.height(), len(rows), self._aspect(), self._title_lines)
        if k == self.per_band:
            self._level_titles(panel_width(vp.width(), k))
            return
        self.per_band = k
        lay = self.panel_layout
        for c in self.columns:
            for w in (c.image, c.override, c.error, c.std):
                if w is not None:
                    lay.removeWidget(w)
        for host in self._bar_hosts.values():
            lay.removeWidget(host)
        for ci, c in enumerate(self.columns):
            band, col = divmod(ci, k)
            top = band * ROWS_PER_BAND
            lay.addWidget(c.image, top + IMAGE_ROW, col)
            lay.addWidget(c.override, top + OVERRIDE_ROW, col, alignment=Qt.AlignmentFlag.AlignHCenter)
            if c.error is not None:
                lay.addWidget(c.error, top + ERROR_ROW, col)
            if c.std is not None:
                lay.addWidget(c.std, top + STD_ROW, col)
        for row, host in self._bar_hosts.items():
            lay.addWidget(host, row, k)
        # a widget added while the grid is hidden (a rebuild in another tab) would stay hidden
        for c in self.columns:
            for w in (c.image, c.override, c.error, c.std):
                if w is not None:
                    w.show()
        for host in self._bar_hosts.values():
            host.show()
        self._level_titles(panel_width(vp.width(), k))
        for c in range(max(lay.columnCount(), k + 1)):
            lay.setColumnStretch(c, 1 if c < k else 0)

    def _aspect(self) -> float:
        first = next((c.data.image for c in self.columns if c.data.image is not None), None)
        shape = first.shape[0] / first.shape[1] if first is not None and first.ndim == 2 else 1.0
        return shape * self.pixel_aspect  # the drawn height / width

    def slack(self) -> int:
        """The height (pixels) the panels leave unused: images as wide as their panels and no taller need less
        than the grid has when they are few rows (no error maps: a scan without a reference)."""
        n = len(self.columns)
        if not n or not self.per_band:
            return 0
        rows = len(self._panel_rows())
        pw = panel_width(self.viewport().width(), self.per_band)
        titles = self._title_lines(pw) * TITLE_LINE + (rows - 1) * SHORT_TITLE
        band = BOX_HEIGHT + titles + SPACING * (rows + 1) + rows * (pw - 4) * self._aspect()
        return max(int(self.viewport().height() - math.ceil(n / self.per_band) * band), 0)

    def _title_lines(self, width: int) -> int:
        """The lines the longest image title takes in panels ``width`` pixels wide."""
        metrics = QtGui.QFontMetrics(title_font())
        return max((fit_title(c.image.title_text, c.image.title_width(width) - 4, metrics,
                              TITLE_MAX_LINES).count("<br>") + 1 for c in self.columns), default=1)

    def _level_titles(self, width: int) -> None:
        # panels side by side are aligned by pyqtgraph's linked views through their screen positions: the
        # titles of a row take the same number of lines, so that the images start at the same height
        lines = self._title_lines(width)
        for c in self.columns:
            c.image.set_title_lines(lines)
        # only rows that hold panels take the height (without error / std maps the images fill the grid), the
        # image row its title's more: the images of all rows get the same height
        rows = self._panel_rows()
        bands = math.ceil(len(self.columns) / max(self.per_band, 1))
        band_height = self.viewport().height() / bands
        titles = lines * TITLE_LINE + (len(rows) - 1) * SHORT_TITLE
        image = max((band_height - BOX_HEIGHT - titles) / len(rows), 1.0)
        stretch = {IMAGE_ROW: image + lines * TITLE_LINE, ERROR_ROW: image + SHORT_TITLE, STD_ROW: image + SHORT_TITLE}
        lay = self.panel_layout
        for r in range(lay.rowCount()):  # (the layout keeps the rows of bands it had before: they take none)
            used = r % ROWS_PER_BAND in rows and r // ROWS_PER_BAND < bands
            lay.setRowStretch(r, int(stretch[r % ROWS_PER_BAND]) if used else 0)

    def resizeEvent(self, ev: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(ev)
        self.arrange()

    def _clear(self) -> None:
        self.overlay.forget()
        self.image_bar = self.error_bar = self.std_bar = None
        self._bar_hosts = {}
        while self.panel_layout.count():
            item = self.panel_layout.takeAt(0)
            w = item.widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.columns = []

    # ----------------------------------------------------------------------------------------------------------
    # rendering
    def _display(self, data: ColumnData) -> np.ndarray | None:
        """The real image a panel shows: the chosen component (the reference is always its magnitude)."""
        if data.image is None:
            return None
        return display_component(data.image, "magnitude" if data.key == REFERENCE else self.mode)

    def _default_levels(self) -> tuple[float, float]:
        if self.mode == "phase":
            return (-math.pi, math.pi)
        if not self.columns:
            return (0.0, 1.0)
        if self.columns[0].key == REFERENCE:
            data = [self._display(self.columns[0].data)]
        else:
            # no reference: methods scale their images differently (an undersampled zero-filled image is darker
            # than a SENSE reconstruction), so take the window that leaves none of them saturated
            data = [self._display(c.data) for c in self.columns]
        data = [d for d in data if d is not None]
        if not data:
            return (0.0, 1.0)
        # robust percentiles: one bright pixel (a vessel, a fat spot, a spike) must not darken the images
        levels = [robust_levels(d, 0.5, 99.5) for d in data]
        lo, hi = min(lv[0] for lv in levels), max(lv[1] for lv in levels)
        if self.mode in ("real", "imaginary"):
            m = max(abs(lo), abs(hi))
            return (-m, m)
        return (0.0, hi)

    def set_mode(self, mode: str) -> None:
        """Show ``mode`` of the complex images (one of ``DISPLAY_MODES``); the window starts over."""
        self.mode = mode
        self.shared_levels = None
        self._levels_user = False
        self.render()

    def set_colormap(self, name: str) -> None:
        self.cmap = name
        self.render()

    def render(self, autorange: bool = False) -> None:
        """Redraw every panel with the current mode, colour map and levels."""
        if not self.columns:
            return
        if self.shared_levels is None:
            self.shared_levels = self._default_levels()
        if self.image_bar is not None:
            self.image_bar.setColorMap(colormap(self.cmap))
        for col in self.columns:
            self._render_column(col, autorange=autorange)
        if self.per_band:
            self._level_titles(panel_width(self.viewport().width(), self.per_band))
        shared = [c.image.image_item for c in self.columns if not c.override.isChecked()]
        if self.image_bar is not None:
            self.image_bar.blockSignals(True)
            self.image_bar.setImageItem(shared)
            self.image_bar.setLevels(self.shared_levels)
            self.image_bar.blockSignals(False)
        if self.error_bar is not None and self.error_levels is not None:
            self.error_bar.setLevels(self.error_levels)
        if self.std_bar is not None:
            stds = [c.std.data for c in self.columns if c.std is not None and c.std.data is not None]
            if stds:
                self.std_bar.setLevels((0.0, max(robust_levels(s, 0, 99.5)[1] for s in stds)))
        for bar in (self.image_bar, self.error_bar, self.std_bar):
            if bar is not None:
                set_axis_scale(bar, bar.label_text, bar.levels())
        self.overlay.move_mirrors()
        self.rendered.emit()

    def _render_column(self, col: PanelColumn, autorange: bool = False) -> None:
        data = col.data
        title = data.label
        if data.key == REFERENCE and self.mode != "magnitude":
            title += " (magnitude)"
        col.image.set_title(title + data.note)
        own = col.override.isChecked()
        if not own:
            col.image.set_colormap(self.cmap)
        levels = (col.image.levels() if own else self.shared_levels) or self.shared_levels
        col.image.set_image(self._display(data), levels=levels, autorange=autorange)
        _draw_outline(col.image, data.outline)
        if col.error is not None:
            lv = self.error_bar.levels() if self.error_bar is not None else None
            col.error.set_image(data.error, levels=tuple(lv) if lv is not None else None, autorange=autorange)
        if col.std is not None and data.std is not None:
            lv = self.std_bar.levels() if self.std_bar is not None else None
            col.std.set_image(data.std, levels=tuple(lv) if lv is not None else None, autorange=autorange)

    # ----------------------------------------------------------------------------------------------------------
    # window / level
    def _on_shared_bar(self, bar: Any) -> None:
        self.shared_levels = tuple(float(v) for v in bar.levels())
        self._levels_user = True

    def set_shared_levels(self, levels: tuple[float, float]) -> None:
        """Window/level of every panel without its own override."""
        self.shared_levels = (float(levels[0]), float(levels[1]))
        self._levels_user = True
        self.render()

    def reset_levels(self) -> None:
        """Forget the user's window/level (a new scan); the next drawing takes the default one."""
        self.shared_levels = None
        self._levels_user = False

    def auto_levels(self) -> None:
        self.reset_levels()
        for c in self.columns:
            c.override.setChecked(False)
        self.render()

    def _override(self, col: PanelColumn, on: bool) -> None:
        col.image.enable_colorbar(on)
        if on:
            col.image.set_colormap(self.cmap)
            if col.image.data is not None:
                col.image.set_levels(robust_levels(col.image.data))
        self.render()

    # ----------------------------------------------------------------------------------------------------------
    # what the other tabs read
    def set_tool(self, tool: str) -> None:
        """Draw the line or rectangle (one of ``overlay.TOOLS``) on the image panels."""
        self.overlay.set_tool(tool, [c.image for c in self.columns])

    def shown_images(self) -> list[tuple[Any, str, np.ndarray]]:
        """(key, label, displayed image ``[H, W]``) of every panel column that has an image."""
        return [(c.key, c.label, c.image.data) for c in self.columns if c.image.data is not None]

    def reference_image(self) -> np.ndarray | None:
        """The reference's magnitude ``[H, W]`` when it is shown."""
        return next((c.data.image for c in self.columns if c.key == REFERENCE), None)

    def figure_columns(self) -> list[Any]:
        """What :func:`workbench.gui.figure.render_figure` draws: the panels as shown (levels, colour maps)."""
        from workbench.gui.figure import FigureColumn, Tile

        out = []
        for c in self.columns:
            if c.image.data is None:
                continue
            own = c.override.isChecked()
            lv = (c.image.levels() if own else self.shared_levels) or robust_levels(c.image.data)
            m, sub = c.data.metrics, []
            if m.get("psnr") is not None:
                sub.append(f"PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}")
            if c.data.elapsed is not None:
                sub.append(f"{c.data.elapsed:.1f} s")
            if c.data.chosen:
                sub.append(c.data.chosen)  # the automatic weight and the rule that chose it
            col = FigureColumn(title=c.label, subtitle="  ".join(sub), image=Tile(c.image.data, lv, c.image.cmap_name),
                               outline=list(c.data.outline))
            if c.error is not None and c.error.data is not None and self.error_bar is not None:
                col.error = Tile(c.error.data, tuple(self.error_bar.levels()), "inferno")
            if c.std is not None and c.std.data is not None and self.std_bar is not None:
                col.std = Tile(c.std.data, tuple(self.std_bar.levels()), "viridis")
            out.append(col)
        return out


def outline_path(polylines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``polylines`` (``[n, 2]`` row, column at pixel centres) in image-item coordinates (pixel
    ``(r, c)`` covers ``[c, c + 1] x [r, r + 1]``), the polylines separated by NaN (drawn unconnected)."""
    if not polylines:
        return np.zeros(0), np.zeros(0)
    gap = np.full((1, 2), np.nan)
    pts = np.concatenate([p for c in polylines for p in (np.asarray(c, np.float64) + 0.5, gap)])
    return pts[:, 1], pts[:, 0]


def _draw_outline(panel: ImagePanel, polylines: list[np.ndarray]) -> None:
    """Draw ``polylines`` over ``panel``'s image (one curve item per panel, created on first use)."""
    item = getattr(panel, "outline_item", None)
    if not polylines:
        if item is not None:
            item.setData([], [])
            item.hide()
        return
    if item is None:
        item = panel.outline_item = pg.PlotCurveItem(pen=OUTLINE_PEN, connect="finite")
        item.setZValue(5)
        panel.view.addItem(item)
    x, y = outline_path(polylines)
    item.setData(x, y, connect="finite")
    item.show()


def _fit(view: pg.ViewBox) -> None:
    try:
        view.enableAutoRange(enable=True)
        view.autoRange(padding=0.0)
    except RuntimeError:  # the panel was deleted in the meantime
        pass
