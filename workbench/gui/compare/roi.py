"""The ROI statistics tab: mean, std, min, max and RMS error against the reference of every shown image in the
rectangle drawn on the compare grid."""

from __future__ import annotations

from typing import Any

import numpy as np
from PyQt6 import QtWidgets

from workbench.gui.common import table_text
from workbench.gui.compare.columns import REFERENCE
from workbench.scoring import region_stats

STATISTICS = ("mean", "std", "min", "max", "rmse", "pixels")


class RoiTable(QtWidgets.QTableWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(0, 1 + len(STATISTICS), parent)
        self.setHorizontalHeaderLabels(["image", "mean", "std", "min", "max", "RMSE vs ref", "pixels"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        #: label -> statistics, as listed
        self.statistics: dict[str, dict[str, float]] = {}

    def setData(self, images: list[tuple[Any, str, np.ndarray]], bounds: tuple[slice, slice] | None,  # noqa: N802
                reference: np.ndarray | None = None) -> None:
        """List the statistics of ``images`` (key, label, displayed image ``[H, W]``) in ``bounds`` (rows,
        columns); the RMS error is against ``reference`` ``[H, W]`` (give it only when the images are
        magnitudes)."""
        self.statistics = {} if bounds is None else {
            label: region_stats(image, reference if key != REFERENCE else None, *bounds)
            for key, label, image in images}
        self.setRowCount(0)
        for label, st in self.statistics.items():
            i = self.rowCount()
            self.insertRow(i)
            self.setItem(i, 0, table_text(label))
            for j, k in enumerate(STATISTICS, start=1):
                v = st.get(k)
                self.setItem(i, j, table_text("" if v is None else f"{v:.4g}"))
