"""The line and the rectangle of the compare grid: drawn on the first panel, where the user drags them, and
mirrored (dashed) on the other panels. The profile and ROI tabs read their position."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from workbench.gui.common import ImagePanel, Qt

LINE_PEN = "#ffb000"
RECT_PEN = "#4fc3f7"
TOOLS = ("none", "line profile", "ROI statistics")


class ToolOverlay(QtCore.QObject):
    """Signals:
        moved(): the user dragged the line or the rectangle.
    """

    moved = QtCore.pyqtSignal()

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.panels: list[ImagePanel] = []
        self.line_roi: pg.LineSegmentROI | None = None
        self.rect_roi: pg.RectROI | None = None
        self._mirrors: list[tuple[ImagePanel, Any]] = []

    def forget(self) -> None:
        """The panels are gone (the grid was rebuilt): drop the items without touching them."""
        self.panels, self._mirrors = [], []
        self.line_roi = self.rect_roi = None

    def set_tool(self, tool: str, panels: list[ImagePanel]) -> None:
        """Draw ``tool`` (one of :data:`TOOLS`) on ``panels``; the first one holds the handles."""
        for panel, item in self._mirrors:
            try:
                panel.view.removeItem(item)
            except Exception:
                pass
        for roi in (self.line_roi, self.rect_roi):
            if roi is not None and self.panels:
                self.panels[0].view.removeItem(roi)
        self.forget()
        if not panels or panels[0].data is None:
            return
        self.panels = list(panels)
        h, w = panels[0].data.shape
        dashed = Qt.PenStyle.DashLine
        if tool == "line profile":
            self.line_roi = pg.LineSegmentROI([(w * 0.2, h * 0.5), (w * 0.8, h * 0.5)], pen=pg.mkPen(LINE_PEN, width=2))
            roi, mirror = self.line_roi, lambda: pg.PlotCurveItem(pen=pg.mkPen(LINE_PEN, width=1, style=dashed))
        elif tool == "ROI statistics":
            self.rect_roi = pg.RectROI([w * 0.4, h * 0.4], [w * 0.2, h * 0.2], pen=pg.mkPen(RECT_PEN, width=2))

            def mirror() -> QtWidgets.QGraphicsRectItem:
                item = QtWidgets.QGraphicsRectItem()
                item.setPen(pg.mkPen(RECT_PEN, width=1, style=dashed))
                return item

            roi = self.rect_roi
        else:
            return
        panels[0].view.addItem(roi)
        roi.sigRegionChanged.connect(self._moved)
        for panel in panels[1:]:
            item = mirror()
            panel.view.addItem(item)
            self._mirrors.append((panel, item))
        self.move_mirrors()

    def _moved(self) -> None:
        self.move_mirrors()
        self.moved.emit()

    def move_mirrors(self) -> None:
        """Put the dashed copies where the line or rectangle is."""
        ends = self.line_endpoints()
        for _, item in self._mirrors:
            if ends is not None and isinstance(item, pg.PlotCurveItem):
                (x0, y0), (x1, y1) = ends
                item.setData([x0, x1], [y0, y1])
            elif self.rect_roi is not None and isinstance(item, QtWidgets.QGraphicsRectItem):
                x, y = self.rect_roi.pos()
                w, h = self.rect_roi.size()
                item.setRect(QtCore.QRectF(x, y, w, h))

    def line_endpoints(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """(x0, y0), (x1, y1) of the profile line in pixel coordinates (x = column, y = row)."""
        if self.line_roi is None:
            return None
        handles = self.line_roi.getSceneHandlePositions()
        item = self.panels[0].image_item
        pts = [item.mapFromScene(p) for _, p in handles]
        return (pts[0].x(), pts[0].y()), (pts[1].x(), pts[1].y())

    def roi_bounds(self) -> tuple[slice, slice] | None:
        """(rows, columns) of the rectangle, clipped to the first panel's image."""
        if self.rect_roi is None or not self.panels or self.panels[0].data is None:
            return None
        x, y = self.rect_roi.pos()
        w, h = self.rect_roi.size()
        H, W = self.panels[0].data.shape
        r0, r1 = int(np.clip(round(y), 0, H)), int(np.clip(round(y + h), 0, H))
        c0, c1 = int(np.clip(round(x), 0, W)), int(np.clip(round(x + w), 0, W))
        return slice(r0, r1), slice(c0, c1)
