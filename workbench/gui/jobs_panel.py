"""The jobs dock: every reconstruction job with its method, parameters, device, progress, elapsed time, a cancel
button, and the error (details on double-click). Rows are one text line high, so that a short dock lists several
jobs; the table follows new jobs; the progress column widens to show the method's progress text whole."""

from __future__ import annotations

import time

from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.gui.common import push_button
from workbench.session import ResultEntry, Session
from workbench.session.sampling_state import recipe_text

COLUMNS = ("#", "method", "parameters", "device", "progress", "elapsed", "state", "")
PROGRESS_COLUMN = 4
#: the progress column's width at least (it widens for longer progress texts)
PROGRESS_WIDTH = 130
STATE_COLOURS = {"failed": "#e0605a", "cancelled": "#b0a060", "done": "#70c070", "running": "#60a0e0",
                 "queued": "#a0a0a0"}


class JobsPanel(QtWidgets.QWidget):
    """A table of :class:`ResultEntry` jobs (results and sweep points), newest last."""

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.rows: dict[int, int] = {}  # entry id -> row
        self.entries: list[ResultEntry] = []
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        # one line of text per job (parameters elided, whole in the tooltip)
        self.row_height = self.fontMetrics().height() + 6
        self.table.verticalHeader().setMinimumSectionSize(self.row_height)
        self.table.verticalHeader().setDefaultSectionSize(self.row_height)
        self.table.setWordWrap(False)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for c, w in ((0, 36), (1, 130), (3, 60), (PROGRESS_COLUMN, PROGRESS_WIDTH), (5, 64), (6, 200), (7, 64)):
            self.table.setColumnWidth(c, w)
        self.table.cellDoubleClicked.connect(self._details)
        self.table.setToolTip("double-click a row for the job's details (errors with their traceback)")
        lay.addWidget(self.table, 1)
        # the summary and buttons beside the table: its height is all rows
        side = QtWidgets.QVBoxLayout()
        self.summary = QtWidgets.QLabel("no jobs")
        self.summary.setWordWrap(True)
        self.cancel_all_button = push_button("Cancel all", "cancel every queued and running job", self.cancel_all)
        self.clear_button = push_button("Clear finished", "remove failed and cancelled jobs from this list (results "
                                        "stay)", self.clear_finished)
        side.addWidget(self.cancel_all_button)
        side.addWidget(self.clear_button)
        side.addWidget(self.summary)
        side.addStretch(1)
        lay.addLayout(side)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(self._tick)
        session.subscribe("results", lambda *_: self._sync_entries())
        session.subscribe("sweep", lambda *_: self._sync_entries())
        session.subscribe("result", self.update_entry)
        session.subscribe("scan", lambda *_: self._sync_entries())
        self._summarise()

    # ----------------------------------------------------------------------------------------------------------
    def _all_entries(self) -> list[ResultEntry]:
        s = self.session
        out = list(s.results) + [e for sw in s.sweeps for e in sw.entries]
        keep = {e.id for e in out}
        # jobs removed from the results list stay while they run, so they can still be cancelled
        out += [e for e in self.entries if e.id not in keep and e.active]
        return sorted(out, key=lambda e: e.id)

    def _sync_entries(self) -> None:
        entries = self._all_entries()
        if [e.id for e in entries] != [e.id for e in self.entries]:
            new = {e.id for e in entries} - {e.id for e in self.entries}
            self.entries = entries
            self.rebuild()
            if new:
                self.follow(max(new))
        else:
            for e in entries:
                self.update_entry(e)

    def follow(self, entry_id: int) -> None:
        """Scroll to the job ``entry_id`` (a new job shows without scrolling by hand)."""
        r = self.rows.get(entry_id)
        if r is not None:
            self.table.scrollToItem(self.table.item(r, 0), QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible)

    def rebuild(self) -> None:
        self.table.setRowCount(0)
        self.rows.clear()
        for e in self.entries:
            self._add_row(e)
        self._summarise()

    def _add_row(self, e: ResultEntry) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.rows[e.id] = r
        for c in range(len(COLUMNS)):
            if c not in (4, 7):
                self.table.setItem(r, c, QtWidgets.QTableWidgetItem(""))
        bar = QtWidgets.QProgressBar()
        bar.setRange(0, 1000)
        bar.setTextVisible(True)
        self.table.setCellWidget(r, 4, bar)
        btn = QtWidgets.QToolButton()  # a tool button fits a one-line row
        btn.setText("Cancel")
        btn.setToolTip("stop this job (at the method's next iteration)")
        btn.clicked.connect(lambda _=False, entry=e: self.session.cancel(entry))
        self.table.setCellWidget(r, 7, btn)
        self.update_entry(e)

    def update_entry(self, e: ResultEntry) -> None:
        r = self.rows.get(e.id)
        if r is None:
            if e not in self.entries:
                self.entries = self._all_entries()
                self.rebuild()
            return
        self.table.item(r, 0).setText(str(e.id))
        self.table.item(r, 1).setText(e.label)
        params = e.params_text()
        self.table.item(r, 2).setText(params)
        self.table.item(r, 2).setToolTip(params + f"\nslice {e.slice_index + 1}, sampling "
                                         + ", ".join(f"{k}={v}" for k, v in e.sampling.items() if k != "params"))
        self.table.item(r, 3).setText(e.device)
        bar: QtWidgets.QProgressBar = self.table.cellWidget(r, 4)
        bar.setValue(int(round(1000 * (e.progress if e.state != "done" else 1.0))))
        bar.setFormat(f"{100 * e.progress:.0f}%" + (f" {e.progress_text}" if e.progress_text and e.active else ""))
        bar.setToolTip(bar.text())
        need = bar.fontMetrics().horizontalAdvance(bar.text()) + 24
        if need > self.table.columnWidth(PROGRESS_COLUMN):  # "iteration 33/100" whole, not "iteration 33/10..."
            self.table.setColumnWidth(PROGRESS_COLUMN, need)
        self.table.item(r, 5).setText(_elapsed(e))
        state_item = self.table.item(r, 6)
        text = e.state if e.state != "failed" else f"failed: {e.error}"
        if e.state == "done" and e.metrics.get("psnr") is not None:
            text = f"done  PSNR {e.metrics['psnr']:.2f} dB"
        state_item.setText(text)
        state_item.setForeground(QtGui.QBrush(QtGui.QColor(STATE_COLOURS.get(e.state, "#ddd"))))
        state_item.setToolTip((e.error or "") + ("\n\n(double-click for details)" if e.error_details else ""))
        btn: QtWidgets.QToolButton = self.table.cellWidget(r, 7)
        btn.setEnabled(e.active)
        if e.active and not self.timer.isActive():
            self.timer.start()
        self._summarise()

    def _tick(self) -> None:
        active = False
        for e in self.entries:
            r = self.rows.get(e.id)
            if r is not None and e.active:
                active = True
                self.table.item(r, 5).setText(_elapsed(e))
        if not active:
            self.timer.stop()

    def _summarise(self) -> None:
        n = {s: 0 for s in STATE_COLOURS}
        for e in self.entries:
            n[e.state] = n.get(e.state, 0) + 1
        parts = [f"{v} {k}" for k, v in n.items() if v]
        self.summary.setText(", ".join(parts) if parts else "no jobs")
        self.cancel_all_button.setEnabled(bool(n["running"] or n["queued"]))

    def _details(self, row: int, _col: int) -> None:
        e = next((x for x in self.entries if self.rows.get(x.id) == row), None)
        if e is None:
            return
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle(f"Job {e.id}: {e.label}")
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning if e.state == "failed" else
                    QtWidgets.QMessageBox.Icon.Information)
        lines = [f"method: {e.method} {e.version}", f"state: {e.state}", f"parameters: {e.params_text() or '-'}",
                 f"slice: {e.slice_index + 1}", f"device: {e.device}", f"elapsed: {_elapsed(e)}"]
        lines.append(f"sampling: {recipe_text(e.sampling, e.acceleration)}")
        if e.metrics:
            lines.append(f"metrics ({self.session.score_mode}): " + ", ".join(f"{k} {v:.4g}"
                                                                         for k, v in e.metrics.items()))
        if e.holdout:  # the score without a reference
            from workbench.holdout import score_text

            v = e.holdout.get("holdout_nmse")
            lines.append("hold-out NMSE: " + (f"{score_text(v, e.holdout.get('holdout_nmse_se'))} "
                                              f"({e.holdout.get('holdout_folds')} folds)" if v is not None
                                              else str(e.holdout.get("holdout_message"))))
        if e.error:
            lines.append(f"error: {e.error}")
        box.setText("\n".join(lines))
        if e.error_details:
            box.setDetailedText(e.error_details)
        box.exec()

    def cancel_all(self) -> None:
        for e in self.entries:
            if e.active:
                self.session.cancel(e)

    def clear_finished(self) -> None:
        for e in list(self.session.results):
            if e.state in ("failed", "cancelled"):
                self.session.remove_result(e)
        self.entries = [e for e in self._all_entries() if e.state not in ("failed", "cancelled")]
        self.rebuild()


def _elapsed(e: ResultEntry) -> str:
    if e.state == "done" and e.elapsed is not None:
        return f"{e.elapsed:.1f} s"
    t = e.wall_time()
    if t is None:
        return "" if e.state != "queued" else f"waiting {time.time() - e.submitted:.0f} s"
    return f"{t:.1f} s"
