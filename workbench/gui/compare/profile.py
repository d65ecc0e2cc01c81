"""The line profile tab: the values of every shown image along the line drawn on the compare grid."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

#: one colour per curve, in the order of the grid's columns (the calibration plot uses them too)
CURVE_COLOURS = ("#ffffff", "#ffb000", "#4fc3f7", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac")

Ends = tuple[tuple[float, float], tuple[float, float]]


def line_profiles(images: list[tuple[Any, str, np.ndarray]], ends: Ends) -> dict[str, np.ndarray]:
    """label -> the values of its image ``[H, W]`` along the line ``(x0, y0), (x1, y1)`` (x = column, y = row),
    sampled at unit spacing with linear interpolation."""
    from scipy.ndimage import map_coordinates

    (x0, y0), (x1, y1) = ends
    n = max(2, int(math.hypot(x1 - x0, y1 - y0)) + 1)
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    return {label: map_coordinates(image.astype(np.float64), [ys, xs], order=1, mode="nearest")
            for _, label, image in images}


class ProfilePlot(QtWidgets.QWidget):
    """The profiles as curves, with their legend above the plot: a line of coloured entries that wraps (a legend
    inside the short plot would cover the curves and lose the entries that do not fit its height)."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.legend = QtWidgets.QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("QLabel { background: black; color: #ddd; padding: 1px 4px; }")
        lay.addWidget(self.legend)
        self.plot = pg.PlotWidget()
        self.plot.setToolTip("values of each shown image along the line drawn on the first panel; x: position "
                             "along the line (pixels)")
        lay.addWidget(self.plot, 1)
        #: label -> values, as drawn
        self.profiles: dict[str, np.ndarray] = {}

    def setData(self, images: list[tuple[Any, str, np.ndarray]], ends: Ends) -> None:  # noqa: N802
        """Draw the profiles of ``images`` (key, label, displayed image ``[H, W]``) along ``ends``."""
        self.profiles = line_profiles(images, ends)
        self.plot.clear()
        entries = []
        for i, (label, values) in enumerate(self.profiles.items()):
            colour = CURVE_COLOURS[i % len(CURVE_COLOURS)]
            self.plot.plot(values, pen=pg.mkPen(colour, width=1.5), name=label)
            # non-breaking spaces: the legend wraps between entries, not inside one
            text = html.escape(label).replace(" ", "&nbsp;")
            entries.append(f"<span style='color:{colour}'>&#9473;&#9473;</span>&nbsp;{text}")
        self.legend.setText(" &nbsp; ".join(entries))
