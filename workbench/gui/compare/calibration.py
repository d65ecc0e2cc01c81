"""The calibration tab: does a std map predict the error? Mean |error| against mean std in each decile of std
(the session's ``calibration``), one curve per result with a std map, its Spearman correlation and interval
coverage in the legend beside the plot (inside it, these lines would hide the points), and the line a
calibrated Gaussian posterior lies on."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg

from workbench.gui.common import Qt
from workbench.gui.compare.columns import ColumnData
from workbench.gui.compare.profile import CURVE_COLOURS


def legend_lines(label: str, cal: dict[str, Any]) -> list[str]:
    """What the legend says about one result's calibration."""
    lines = [label,
             f"Spearman {cal['spearman']:.3f} ({cal['spearman_if_calibrated']:.2f} if calibrated)",
             f"error's own neighbours {cal['spearman_oracle']:.2f}, edge map {cal['spearman_edges']:.2f}",
             f"{100 * cal['level']:.0f}% interval coverage {cal['coverage']:.3f}",
             f"({cal['interval']})"]
    if cal.get("coverage_predictive") is not None:
        lines.append(f"{cal['coverage_predictive']:.3f} with the reference's noise")
    return lines


class CalibrationPlot(pg.GraphicsLayoutWidget):
    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.setToolTip("results with a std map: object pixels binned by deciles of std; a calibrated Gaussian "
                        "posterior lies on the dashed line")
        self.title_label = pg.LabelItem("", size="11pt")
        self.addItem(self.title_label, row=0, col=0, colspan=2)
        self.plot_item = pg.PlotItem()
        self.plot_item.setLabel("bottom", "mean std (image units)")
        self.plot_item.setLabel("left", "mean |error| (image units)")
        for side in ("bottom", "left"):
            self.plot_item.getAxis(side).enableAutoSIPrefix(False)  # tick values as the images have them
        self.plot_item.showGrid(x=True, y=True, alpha=0.25)
        self.addItem(self.plot_item, row=1, col=0)
        self.legend = pg.LegendItem()
        self.addItem(self.legend, row=1, col=1)
        #: what the plot says above its axes (its title)
        self.status = ""
        #: result id -> its points
        self.curves: dict[Any, pg.PlotDataItem] = {}

    def setData(self, columns: list[ColumnData], reference: bool = True) -> None:  # noqa: N802
        """Draw the ``calibration`` of each column (the shown results with a std map); ``reference``: whether
        there is one to measure their error against."""
        plot, legend = self.plot_item, self.legend
        plot.clear()
        legend.clear()
        self.curves = {}
        if not columns:
            self._set_status("No std map: none of the shown results gives an uncertainty map")
            return
        if not reference:
            self._set_status("No reference: the error of the std maps cannot be measured")
            return
        drawn = [c for c in columns if c.calibration is not None and c.calibration["std"]]
        if not drawn:
            self._set_status("No pixels to calibrate on (empty object mask)")
            return
        for i, c in enumerate(drawn):
            cal = c.calibration
            colour = CURVE_COLOURS[(i + 1) % len(CURVE_COLOURS)]  # not white: the guide is light grey
            item = plot.plot(cal["std"], cal["abs_error"], pen=pg.mkPen(colour, width=2), symbol="o",
                             symbolSize=9, symbolBrush=colour, symbolPen=pg.mkPen("#000000"),
                             name="<br>".join(legend_lines(c.label, cal)))
            legend.addItem(item, item.name())
            self.curves[c.key] = item
        slope = drawn[0].calibration["guide_slope"]
        x_max = 1.05 * max(max(c.calibration["std"]) for c in drawn) or 1.0
        y_max = 1.05 * max(max(max(c.calibration["abs_error"]) for c in drawn), slope * x_max) or 1.0
        guide = plot.plot([0.0, x_max], [0.0, slope * x_max],
                          pen=pg.mkPen("#cccccc", width=1.5, style=Qt.PenStyle.DashLine),
                          name=f"calibrated Gaussian:<br>|error| = \u221a(2/\u03c0) std \u2248 {slope:.2f} std")
        legend.addItem(guide, guide.name())
        plot.setXRange(0.0, x_max, padding=0.02)
        plot.setYRange(0.0, y_max, padding=0.02)
        self._set_status("Mean |error| against mean std in each decile of std (object pixels)")

    def _set_status(self, text: str) -> None:
        self.status = text
        self.title_label.setText(text)
