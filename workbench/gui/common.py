"""Shared Qt pieces: pyqtgraph configuration, the image panel, the thread bridge, small helpers.

Arrays are shown row-major: an image ``[H, W]`` appears with H vertical (row 0 at the top) and W horizontal,
so the phase-encode axis of fastMRI data (W) runs left to right.
"""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any, Callable, Iterable

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets, sip

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
        if sip.isdeleted(self):  # its window is gone: nobody left to show what a late callback reports
            return
        if QtCore.QThread.currentThread() is self.thread():
            fn()
        else:
            self._call.emit(fn)

    @QtCore.pyqtSlot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        fn()


#: point size of the panel titles
TITLE_POINT_SIZE = 9
#: an image panel keeps at least this height for its image below the title
MIN_VIEW_HEIGHT = 30


def title_font() -> QtGui.QFont:
    font = QtGui.QFont(QtWidgets.QApplication.font())
    font.setPointSize(TITLE_POINT_SIZE)
    return font


def fit_title(text: str, width: int, metrics: QtGui.QFontMetrics, max_lines: int = 0) -> str:
    """``text`` (plain text, lines separated by ``<br>``) with each line wrapped so that it fits ``width`` pixels:
    at ", " (a phrase stays whole), then after spaces and hyphens within a phrase too wide alone; a word wider
    than ``width`` is elided, and so is the last of ``max_lines`` lines (0: no limit) when more would be needed.
    Returns HTML (lines joined by ``<br>``)."""

    def fits(line: str) -> bool:  # with a margin: elidedText finds a line exactly ``width`` wide too wide
        return metrics.horizontalAdvance(line) <= width - 2

    def wrap(pieces: list[str]) -> list[str]:
        lines, current = [], ""
        for piece in pieces:
            if current and not fits(current + piece.rstrip()):
                lines.append(current.rstrip())
                current = piece
            else:
                current += piece
        return lines + [current.rstrip()]

    out: list[str] = []
    for line in re.split(r"<br\s*/?>", text):
        for phrase in wrap(re.split(r"(?<=, )", line)):
            # a phrase too wide alone breaks after spaces and hyphens ("test-" "landweber")
            out += [phrase] if fits(phrase) else wrap(re.split(r"(?<=[- ])", phrase))
    if 0 < max_lines < len(out):
        out = out[:max_lines - 1] + [" ".join(out[max_lines - 1:])]
    return "<br>".join(html.escape(metrics.elidedText(line, Qt.TextElideMode.ElideRight, width), quote=False)
                       for line in out)


def set_axis_scale(bar: pg.ColorBarItem, label: str, levels: tuple[float, float]) -> None:
    """Tick labels of a colour bar that fit its width: values far from 1 (raw scanner units such as 3e-4) are
    shown as mantissas with the power of ten in the bar's label ("image ×1e-4")."""
    peak = max(abs(float(levels[0])), abs(float(levels[1])))
    exponent = int(math.floor(math.log10(peak))) if peak > 0 and math.isfinite(peak) else 0
    if -2 <= exponent <= 3:
        exponent = 0
    bar.axis.setScale(10.0 ** -exponent)
    side = "bottom" if bar.horizontal else "left"
    bar.getAxis(side).setLabel(label + (f" ×1e{exponent}" if exponent else ""))


class ImagePanel(pg.GraphicsLayoutWidget):
    """One image with a title, aspect-locked pan/zoom, optional colour bar, hover reporting.

    The title is wrapped (at ", " and spaces) to the panel's width, so that narrow panels show it whole.

    Signals:
        hovered(row, col, value, name): the mouse is over pixel (row, col) of this panel's data; row and col
            are -1 (value NaN) when it left the image.
    """

    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, title: str = "", parent: QtWidgets.QWidget | None = None, *, colorbar: bool = False,
                 cmap: str = "gray"):
        super().__init__(parent)
        self.setMinimumSize(120, 120)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.ci.setSpacing(1)
        self.title_text = title
        #: the title has at least this many lines (panels side by side keep their images level), and at most
        #: ``title_max_lines`` (0: no limit; the tooltip shows the whole title)
        self.title_lines = 1
        self.title_max_lines = 0
        #: the panel is at least this high, and high enough for its title above a small image
        self.base_min_height = 120
        self.title_label = self.addLabel(title, row=0, col=0, colspan=2, size=f"{TITLE_POINT_SIZE}pt")
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
        self._inside = False  # the pointer is over the image (a "left" report is due when it leaves)
        self._first = True
        self.follow_bounds = True  # False for views linked to another one (that one follows the bounds)
        self.pixel_aspect = 1.0  # height / width of a pixel as drawn (set_pixel_aspect)

    def set_pixel_aspect(self, aspect: float) -> None:
        """Draw each pixel ``aspect`` times as tall as it is wide (``Scan.pixel_aspect``; k-space and masks
        keep 1). Only the view's scale changes: hover, ROIs and painting still work in pixels."""
        aspect = float(aspect) if aspect and aspect > 0 else 1.0
        if aspect != self.pixel_aspect:
            self.pixel_aspect = aspect
            self.view.setAspectLocked(True, ratio=1.0 / aspect)  # pyqtgraph's ratio: x scale / y scale

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
        """``text``: plain text, lines separated by ``<br>``."""
        self.name = text.split("<")[0] if text else self.name
        self.title_text = text
        self._fit_title()

    def title_width(self, panel_width: int | None = None) -> int:
        """The width the title is wrapped to (in a panel ``panel_width`` wide; default: this panel's)."""
        return max((self.width() if panel_width is None else panel_width) - 8, 40)

    def set_title_lines(self, n: int) -> None:
        if n != self.title_lines:
            self.title_lines = n
            self._fit_title()

    def _fit_title(self) -> None:
        metrics = QtGui.QFontMetrics(title_font())
        fitted = fit_title(self.title_text, self.title_width(), metrics, self.title_max_lines)
        fitted += "<br>&nbsp;" * (self.title_lines - 1 - fitted.count("<br>"))
        self.title_label.setText(fitted, size=f"{TITLE_POINT_SIZE}pt")
        lines = fitted.count("<br>") + 1
        self.setMinimumHeight(max(self.base_min_height, lines * metrics.lineSpacing() + 12 + MIN_VIEW_HEIGHT))
        full = html.escape(self.title_text.replace("<br>", "\n"), quote=False)
        self.title_label.setToolTip(full if fitted != self.title_text else "")

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt override
        # the title first: pyqtgraph sizes the layout to the view, but never narrower than its minimum, which
        # the title's previous (wider) lines set
        # (pyqtgraph calls it with None; the title label does not exist yet during construction)
        if hasattr(self, "title_label") and (ev is None or ev.oldSize().width() != ev.size().width()):
            self._fit_title()
        super().resizeEvent(ev)

    def leaveEvent(self, ev: QtCore.QEvent) -> None:  # noqa: N802 - Qt override
        super().leaveEvent(ev)
        self._left()

    def _left(self) -> None:
        if self._inside:
            self._inside = False
            self.hovered.emit(-1, -1, math.nan, self.name)

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
            self._left()
            return
        p = self.image_item.mapFromScene(pos)
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        h, w = self.data.shape[:2]
        if 0 <= row < h and 0 <= col < w:
            self._inside = True
            self.hovered.emit(row, col, float(self.data[row, col]), self.name)
        else:
            self._left()


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


class DialogFolder:
    """Where file dialogs start: the folder of the last file opened or saved (settings key ``last_dir``; kept in
    memory without ``settings``). Its methods are QFileDialog's, returning the chosen path ("" when cancelled)."""

    KEY = "last_dir"

    def __init__(self, settings: QtCore.QSettings | None = None):
        self.settings = settings
        self._folder = ""

    @property
    def folder(self) -> str:
        return self.settings.value(self.KEY, "", type=str) if self.settings is not None else self._folder

    def remember(self, path: str) -> None:
        """Start the next dialog where ``path`` (a file or a folder) is."""
        if not path:
            return
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        if self.settings is not None:
            self.settings.setValue(self.KEY, folder)
        else:
            self._folder = folder

    def _start(self, name: str = "") -> str:
        return os.path.join(self.folder, name) if self.folder and name else self.folder or name

    def open_file(self, parent: QtWidgets.QWidget | None, title: str, filter: str) -> str:  # noqa: A002
        path, _ = QtWidgets.QFileDialog.getOpenFileName(parent, title, self._start(), filter)
        self.remember(path)
        return path

    def save_file(self, parent: QtWidgets.QWidget | None, title: str, name: str, filter: str) -> str:  # noqa: A002
        path, _ = QtWidgets.QFileDialog.getSaveFileName(parent, title, self._start(name), filter)
        self.remember(path)
        return path

    def existing_folder(self, parent: QtWidgets.QWidget | None, title: str) -> str:
        folder = QtWidgets.QFileDialog.getExistingDirectory(parent, title, self._start())
        self.remember(folder)
        return folder


class _PageKeysToWidget(QtCore.QObject):
    """Claims Page Up / Page Down for a focused widget, before the window's shortcuts (previous / next slice)
    see them: one key press changes one thing."""

    KEYS = (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown)

    def eventFilter(self, obj: QtCore.QObject, ev: QtCore.QEvent) -> bool:  # noqa: N802 - Qt override
        if ev.type() == QtCore.QEvent.Type.ShortcutOverride and ev.key() in self.KEYS:
            ev.accept()
        return False


def keep_page_keys(widget: QtWidgets.QWidget) -> None:
    """Page Up / Page Down act on ``widget`` while it has the focus (not on the window's slice shortcuts)."""
    flt = _PageKeysToWidget(widget)
    widget.installEventFilter(flt)


def hline() -> QtWidgets.QFrame:
    f = QtWidgets.QFrame()
    f.setFrameShape(QtWidgets.QFrame.Shape.HLine)
    f.setFrameShadow(QtWidgets.QFrame.Shadow.Sunken)
    return f
