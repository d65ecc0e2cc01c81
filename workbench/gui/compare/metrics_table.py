"""The metrics tab: one sortable row per image (the session's ``comparison_rows``) with a "show" box that puts
it in the grid or takes it out, its hold-out score (a score without a reference; "running 40%" while its runs go
on), a "Validate" button that asks for the hold-out score of every row, an "all slices" switch and CSV export."""

from __future__ import annotations

from typing import Any

from PyQt6 import QtCore, QtWidgets

from workbench.gui.common import Qt, push_button, sortable_number, table_text

# two-line headers keep the columns that rank the rows (label, scores, hold-out, parameters with the weight a
# method chose) inside the table on a 1280-pixel screen; the metric headers' second line is the scoring mode
METRIC_COLUMNS = ("show", "label", "PSNR (dB)", "SSIM", "NMSE", "hold-out\nNMSE", "parameters", "time\n(s)",
                  "device", "slice", "sampling")
PARAMETERS_COLUMN = METRIC_COLUMNS.index("parameters")
HOLDOUT_COLUMN = METRIC_COLUMNS.index("hold-out\nNMSE")
TIME_COLUMN = METRIC_COLUMNS.index("time\n(s)")
#: pixels: the chosen weight (first in the parameters of a method that chooses one) and a little more
PARAMETERS_WIDTH = 240
HOLDOUT_TIP = ("hold-out NMSE: each method runs again with some measured lines (or samples) held out, in 4 folds; "
               "the scan's k-space error predicted from how well it predicts them (lower is better; needs no "
               "reference, so it ranks methods on prospective scans). ± its standard error over the folds (how much "
               "the draw of the held-out lines moves it, not how far the estimate itself may be off): rows less "
               "than about twice their combined error apart are not told apart by it")
KEY_ROLE = Qt.ItemDataRole.UserRole + 1


class MetricsTable(QtWidgets.QWidget):
    """Signals:
        shownChanged(key, on): the user ticked or unticked a row's "show" box.
        allSlicesChanged(on): list the results of every slice (on) or of the current one.
        exportRequested(): the "Export CSV…" button.
        validateRequested(): the "Validate" button (hold-out score of every row of this slice).
    """

    shownChanged = QtCore.pyqtSignal(object, bool)
    allSlicesChanged = QtCore.pyqtSignal(bool)
    exportRequested = QtCore.pyqtSignal()
    validateRequested = QtCore.pyqtSignal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QtWidgets.QTableWidget(0, len(METRIC_COLUMNS))
        self.table.setHorizontalHeaderLabels(METRIC_COLUMNS)
        tips = {2: "peak signal-to-noise ratio against the reference, in the scoring mode named below (Score)",
                3: "structural similarity against the reference, in the scoring mode named below (Score)",
                4: "normalised squared error against the reference, in the scoring mode named below (Score)",
                HOLDOUT_COLUMN: HOLDOUT_TIP, PARAMETERS_COLUMN: "the parameters of the run; a weight left automatic "
                "shows the value the method chose and the rule that chose it", TIME_COLUMN: "run time in seconds"}
        for c, tip in tips.items():
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        # one text line per row (parameters elided, whole in the tooltip): a short tab lists several
        row_height = self.fontMetrics().height() + 6
        self.table.verticalHeader().setMinimumSectionSize(row_height)
        self.table.verticalHeader().setDefaultSectionSize(row_height)
        self.table.setWordWrap(False)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self._fit_parameters()
        self.table.setToolTip("click a header to sort; tick 'show' to put a result in the grid")
        self.table.itemChanged.connect(self._on_item)
        lay.addWidget(self.table, 1)
        # the switch and the buttons in one row (``controls``), which the owner places (the compare view: beside
        # its tabs), so that the table has the tab's whole width and height
        self.all_slices_box = QtWidgets.QCheckBox("all slices")
        self.all_slices_box.setToolTip("list the results of every slice (the grid shows the current slice)")
        self.all_slices_box.toggled.connect(self.allSlicesChanged)
        self.csv_button = push_button("Export CSV…", "save this table as CSV", self.exportRequested)
        self.validate_button = push_button("Validate", "the hold-out score of every row of this slice (each method "
                                           "runs again in the background; automatic for scans without a "
                                           "reference)", self.validateRequested)
        self.controls = QtWidgets.QWidget()
        buttons = QtWidgets.QHBoxLayout(self.controls)
        buttons.setContentsMargins(0, 0, 2, 0)
        buttons.setSpacing(4)
        buttons.addWidget(self.all_slices_box)
        buttons.addWidget(self.validate_button)
        buttons.addWidget(self.csv_button)

    @property
    def all_slices(self) -> bool:
        return self.all_slices_box.isChecked()

    def _fit_parameters(self) -> None:
        """The parameters column at most :data:`PARAMETERS_WIDTH` wide (elided; whole in the tooltip), so that
        the columns after it stay in reach; the last column takes the room left."""
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(PARAMETERS_COLUMN, min(self.table.columnWidth(PARAMETERS_COLUMN), PARAMETERS_WIDTH))

    def setData(self, rows: list[dict[str, Any]], current_slice: int, shown: dict[Any, bool]) -> None:  # noqa: N802
        """``rows``: as ``Session.comparison_rows`` gives them (key, label, psnr, ssim, nmse, score_mode,
        score_error, holdout, holdout_note, time_s, device, slice, params, sampling); ``shown``: key -> in the grid (absent:
        yes). Only the rows of ``current_slice`` can be shown. The metric headers name the scoring mode."""
        t = self.table
        mode = rows[0].get("score_mode", "") if rows else ""
        # a scan without a reference (a prospective one) has no scores in any row: the hold-out column ranks them
        no_scores = bool(rows) and not any(r.get(k) is not None for r in rows for k in ("psnr", "ssim", "nmse")) \
            and not any(r.get("score_error") for r in rows)
        for c in (2, 3, 4):
            t.horizontalHeaderItem(c).setText(METRIC_COLUMNS[c] + (f"\n{mode}" if mode else ""))
            t.setColumnHidden(c, no_scores)
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(0)
        for r in rows:
            i = t.rowCount()
            t.insertRow(i)
            show = QtWidgets.QTableWidgetItem()
            show.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            here = r["slice"] == current_slice
            show.setCheckState(Qt.CheckState.Checked if shown.get(r["key"], True) and here
                               else Qt.CheckState.Unchecked)
            if not here:
                show.setFlags(Qt.ItemFlag.ItemIsEnabled)
            show.setData(KEY_ROLE, r["key"])
            t.setItem(i, 0, show)
            label = table_text(r["label"])
            if r.get("score_error"):
                label.setToolTip(f"no metrics in the {r.get('score_mode')} mode: {r['score_error']}")
            t.setItem(i, 1, label)
            t.setItem(i, 2, sortable_number(r["psnr"], "{:.2f}"))
            t.setItem(i, 3, sortable_number(r["ssim"], "{:.4f}"))
            t.setItem(i, 4, sortable_number(r["nmse"], "{:.4g}"))
            t.setItem(i, HOLDOUT_COLUMN, holdout_item(r.get("holdout"), r.get("holdout_note", ""), r.get("holdout_se")))
            t.setItem(i, PARAMETERS_COLUMN, table_text(r["params"]))
            t.setItem(i, TIME_COLUMN, sortable_number(r["time_s"], "{:.2f}"))
            t.setItem(i, TIME_COLUMN + 1, table_text(r["device"]))
            t.setItem(i, TIME_COLUMN + 2, sortable_number(r["slice"] + 1, "{:.0f}"))
            t.setItem(i, TIME_COLUMN + 3, table_text(r["sampling"]))
        t.setSortingEnabled(True)
        t.blockSignals(False)
        t.resizeColumnsToContents()
        self._fit_parameters()

    def holdout_text(self, key: Any) -> str:
        """The hold-out cell's text of the row of ``key`` ("" when there is no such row)."""
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).data(KEY_ROLE) == key:
                return self.table.item(i, HOLDOUT_COLUMN).text()
        return ""

    def _on_item(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() == 0:
            self.shownChanged.emit(item.data(KEY_ROLE), item.checkState() == Qt.CheckState.Checked)


def holdout_item(value: float | None, note: str, se: float | None = None) -> QtWidgets.QTableWidgetItem:
    """The hold-out cell: the number (sorted as one) with its standard error ``se`` when known, else the note
    ("running 40%", or why there is none, whole in the tooltip)."""
    from workbench.holdout import score_text

    item = sortable_number(value, "{:.4g}")
    if item.text():  # a finite number: with its error bar
        item.setText(score_text(value, se))
    if value is None and note:
        item.setText(note if note.startswith("running") else "n/a")
        item.setToolTip(note)
    else:
        item.setToolTip(HOLDOUT_TIP)
    return item
