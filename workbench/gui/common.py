"""Shared Qt pieces: pyqtgraph configuration, the image panel, the thread bridge, small helpers.

Arrays are shown row-major: an image ``[H, W]`` appears with H vertical (row 0 at the top) and W horizontal,
so the phase-encode axis of fastMRI data (W) runs left to right.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="k", foreground="#ddd")

Qt = QtCore.Qt

COLORMAPS = ("gray", "viridis", "inferno", "magma", "plasma", "cividis", "turbo")
DISPLAY_MODES = ("magnitude", "phase", "real", "imaginary")
#: the file dialogs' filter for raw scans (File > Open and File > Open with options…)
SCAN_FILTER = ("Raw scans (*.h5 *.hdf5 *.mrd *.ismrmrd *.dat *.cfl *.hdr *.mat *.npy *.npz);;"
               "All files (*)")


def colormap(name: str) -> pg.ColorMap:
    if name == "gray":
        return pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)], name="gray")
    try:
        return pg.colormap.get(name)
    except Exception:  # pragma: no cover - colour maps shipped with pyqtgraph
        return pg.colormap.get("viridis")


def display_component(image: np.ndarray, mode: str) -> np.ndarray:
    """The real-valued component of a (complex) image to display: magnitude, phase (radians), real, imaginary."""
    a = np.asarray(image)
    if mode == "magnitude":
        return np.abs(a).astype(np.float32)
    if not np.iscomplexobj(a):
        a = a.astype(np.complex64)
    if mode == "phase":
        return np.angle(a).astype(np.float32)
    if mode == "real":
        return a.real.astype(np.float32)
    if mode == "imaginary":
        return a.imag.astype(np.float32)
    raise ValueError(f"unknown display mode {mode!r}")


def robust_levels(a: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """Window/level from percentiles (one bright pixel should not darken the whole image)."""
    a = np.asarray(a)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    if a.size > 200_000:
        a = a[:: a.size // 200_000 + 1]
    vmin, vmax = (float(v) for v in np.percentile(a, [lo, hi]))
    if vmax <= vmin:
        vmax = vmin + (abs(vmin) or 1.0)
    return vmin, vmax


class Dispatcher(QtCore.QObject):
    """Runs callables on the GUI thread: ``dispatcher(fn)`` from any thread queues ``fn()`` on the thread this
    object lives in. The session uses it for job callbacks that arrive on worker threads."""

    _call = QtCore.pyqtSignal(object)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def __call__(self, fn: Callable[[], None]) -> None:
        if QtCore.QThread.currentThread() is self.thread():
            fn()
        else:
            self._call.emit(fn)

    @QtCore.pyqtSlot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        fn()


class ImagePanel(pg.GraphicsLayoutWidget):
    """One image with a title, aspect-locked pan/zoom, optional colour bar, hover reporting.

    Signals:
        hovered(row, col, value, name): the mouse is over pixel (row, col) of this panel's data.
    """

    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, title: str = "", parent: QtWidgets.QWidget | None = None, *, colorbar: bool = False,
                 cmap: str = "gray"):
        super().__init__(parent)
        self.setMinimumSize(120, 120)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.ci.setSpacing(1)
        self.title_label = self.addLabel(title, row=0, col=0, colspan=2, size="9pt")
        self.view: pg.ViewBox = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.0)
        self.image_item = pg.ImageItem()
        self.view.addItem(self.image_item)
        self.data: np.ndarray | None = None
        self.name = title
        self.cmap_name = cmap
        self.image_item.setColorMap(colormap(cmap))
        self.colorbar: pg.ColorBarItem | None = None
        if colorbar:
            self.enable_colorbar(True)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._first = True
        self.follow_bounds = True  # False for views linked to another one (that one follows the bounds)

    def enable_colorbar(self, on: bool) -> None:
        """Show an interactive colour bar (drag its ends to change this panel's window/level)."""
        if on and self.colorbar is None:
            levels = self.levels()
            self.colorbar = pg.ColorBarItem(colorMap=colormap(self.cmap_name), interactive=True, width=12)
            self.colorbar.setImageItem(self.image_item)
            self.addItem(self.colorbar, row=1, col=1)
            if levels is not None:
                self.colorbar.setLevels(levels)
        elif not on and self.colorbar is not None:
            try:
                self.image_item.sigLevelsChanged.disconnect(self.colorbar._levelsChangedHandler)
            except (TypeError, RuntimeError):
                pass
            self.removeItem(self.colorbar)
            self.colorbar = None

    def set_title(self, text: str) -> None:
        self.name = text.split("<")[0] if text else self.name
        self.title_label.setText(text, size="9pt")

    def set_colormap(self, name: str) -> None:
        self.cmap_name = name
        cm = colormap(name)
        if self.colorbar is not None:
            self.colorbar.setColorMap(cm)
        else:
            self.image_item.setColorMap(cm)

    def set_image(self, data: np.ndarray | None, levels: tuple[float, float] | None = None,
                  autorange: bool = False) -> None:
        """Show ``data`` (``[H, W]`` real); ``levels`` default to robust percentiles of the data."""
        self.data = None if data is None else np.asarray(data)
        if data is None:
            self.image_item.clear()
            return
        if levels is None:
            levels = robust_levels(self.data)
        self.image_item.setImage(self.data, levels=levels, autoLevels=False)
        if self.colorbar is not None:
            self.colorbar.setLevels(levels)
        if (self._first or autorange) and self.follow_bounds:
            # follow the image bounds (also on resize) until the user zooms or pans
            self.view.enableAutoRange(enable=True)
        self._first = False

    def set_levels(self, levels: tuple[float, float]) -> None:
        if self.colorbar is not None:
            self.colorbar.setLevels(levels)
        else:
            self.image_item.setLevels(levels)

    def levels(self) -> tuple[float, float] | None:
        lv = self.image_item.getLevels()
        return None if lv is None else (float(lv[0]), float(lv[1]))

    def _on_mouse_moved(self, pos: QtCore.QPointF) -> None:
        if self.data is None or not self.view.sceneBoundingRect().contains(pos):
            return
        p = self.image_item.mapFromScene(pos)
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        h, w = self.data.shape[:2]
        if 0 <= row < h and 0 <= col < w:
            self.hovered.emit(row, col, float(self.data[row, col]), self.name)


def error_box(parent: QtWidgets.QWidget | None, title: str, message: str, details: str | None = None) -> None:
    """A warning dialog for a user error (the app keeps working). Tests monkeypatch QMessageBox.critical /
    .warning, so the static function is used when there are no details."""
    if not details:
        QtWidgets.QMessageBox.warning(parent, title, message)
        return
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, message,
                                QtWidgets.QMessageBox.StandardButton.Ok, parent)
    box.setDetailedText(details)
    box.exec()


class NumericSortItem(QtWidgets.QTableWidgetItem):
    def __lt__(self, other: Any) -> bool:  # sort by the number kept in UserRole
        a = self.data(Qt.ItemDataRole.UserRole)
        b = other.data(Qt.ItemDataRole.UserRole)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        return super().__lt__(other)


def sortable_number(value: float | None, fmt: str = "{:.4g}") -> QtWidgets.QTableWidgetItem:
    item = NumericSortItem()
    if value is None or not np.isfinite(value):
        item.setText("")
        item.setData(Qt.ItemDataRole.UserRole, float("-inf"))
    else:
        item.setText(fmt.format(value))
        item.setData(Qt.ItemDataRole.UserRole, float(value))
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


def table_text(value: Any) -> QtWidgets.QTableWidgetItem:
    """A table cell showing ``value`` as text (empty for None), with the same text as its tooltip (for cells
    too narrow to show it whole)."""
    text = "" if value is None else str(value)
    item = QtWidgets.QTableWidgetItem(text)
    item.setToolTip(text)
    return item


def push_button(text: str, tip: str, slot: Callable[..., Any]) -> QtWidgets.QPushButton:
    """A push button with its tooltip, calling ``slot`` when clicked."""
    button = QtWidgets.QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def combo_box(items: Iterable[str], tip: str, slot: Callable[[], Any]) -> QtWidgets.QComboBox:
    """A combo box of ``items`` with its tooltip, calling ``slot()`` when the choice changes."""
    combo = QtWidgets.QComboBox()
    combo.addItems(list(items))
    combo.setToolTip(tip)
    combo.currentIndexChanged.connect(lambda *_: slot())
    return combo


def single_shot_timer(parent: QtCore.QObject, interval_ms: int, slot: Callable[[], Any]) -> QtCore.QTimer:
    """A timer that calls ``slot`` once, ``interval_ms`` after its last ``start()`` (restarting it defers the
    call: many events in a row do the work once)."""
    timer = QtCore.QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval_ms)
    timer.timeout.connect(slot)
    return timer


def hline() -> QtWidgets.QFrame:
    f = QtWidgets.QFrame()
    f.setFrameShape(QtWidgets.QFrame.Shape.HLine)
    f.setFrameShadow(QtWidgets.QFrame.Shadow.Sunken)
    return f
