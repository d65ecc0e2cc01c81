"""The acceleration sweep tab: for chosen methods and a range of accelerations, background jobs fill a PSNR and
an SSIM vs acceleration plot that updates as results arrive.

The family follows the Sampling tab's (until one is chosen here); the methods listed are those whose capabilities
fit the family's data (Cartesian masks or trajectories); the zero-filled curve is the "include zero-filled" box,
not a method to tick."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from workbench.errors import WorkbenchError
from workbench.gui.common import Qt, error_box, push_button
from workbench.session import ACQUIRED, USER, Session

COLOURS = ("#ffb000", "#4fc3f7", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#ffffff")
#: the built-in zero-filled method: its curve is the "include zero-filled" box (computed at once, no jobs)
ZERO_FILLED_METHOD = "zero-filled"
#: trajectory families (the others are Cartesian masks)
NONCARTESIAN_KINDS = ("radial", "golden-radial", "spiral")


def fits_family(capabilities: Any, kind: str) -> bool:
    """Whether a method with ``capabilities`` reconstructs the data of sampling family ``kind``."""
    return bool(capabilities.noncartesian if kind in NONCARTESIAN_KINDS else capabilities.cartesian)


def parse_accelerations(text: str) -> list[float]:
    """``"2, 4, 6"`` or ``"2:12:2"`` (start:stop:step, stop included) -> accelerations; ValueError otherwise."""
    text = text.strip()
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        if len(parts) != 3 or parts[2] <= 0:
            raise ValueError("use start:stop:step with a positive step, e.g. 2:12:2")
        vals = list(np.arange(parts[0], parts[1] + 1e-9, parts[2]))
    else:
        vals = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    if not vals or any(v < 1 for v in vals):
        raise ValueError("accelerations must be numbers >= 1")
    return [float(v) for v in vals]


class SweepView(QtWidgets.QWidget):
    def __init__(self, session: Session, methods_panel: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.methods_panel = methods_panel
        self.sweep = None
        lay = QtWidgets.QHBoxLayout(self)
        side = QtWidgets.QWidget()
        side.setMaximumWidth(300)
        sl = QtWidgets.QVBoxLayout(side)
        heading = QtWidgets.QLabel("<b>Methods</b> (parameters from the Methods panel)")
        heading.setWordWrap(True)
        sl.addWidget(heading)
        self.method_list = QtWidgets.QListWidget()
        self.method_list.setToolTip("tick the methods to sweep; each runs with the parameters currently set for "
                                    "it in the Methods panel")
        sl.addWidget(self.method_list, 1)
        form = QtWidgets.QFormLayout()
        self.family_combo = QtWidgets.QComboBox()
        self.family_combo.setToolTip("sampling family regenerated at every acceleration (the Sampling tab's until "
                                     "you choose one here)")
        self._family_chosen = False  # the user picked a family here: it no longer follows the Sampling tab
        self.family_combo.activated.connect(lambda *_: self._family_activated())
        self.family_combo.currentIndexChanged.connect(lambda *_: self._list_methods())
        form.addRow("Family", self.family_combo)
        self.acc_edit = QtWidgets.QLineEdit("2, 4, 6, 8, 10, 12")
        self.acc_edit.setToolTip("accelerations: a list (2, 4, 8) or start:stop:step (2:12:2)")
        form.addRow("Accelerations", self.acc_edit)
        sl.addLayout(form)
        self.include_zf = QtWidgets.QCheckBox("include zero-filled")
        self.include_zf.setChecked(True)
        self.include_zf.setToolTip("also plot the zero-filled reconstruction (computed at once)")
        sl.addWidget(self.include_zf)
        self.run_button = push_button("Run sweep", "queue one job per method and acceleration on the current slice",
                                      self.run_sweep)
        sl.addWidget(self.run_button)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        sl.addWidget(self.status)
        lay.addWidget(side)
        plots = pg.GraphicsLayoutWidget()
        self.psnr_plot = plots.addPlot(row=0, col=0, title="PSNR vs acceleration")
        self.psnr_plot.setLabel("left", "PSNR", units="dB")
        self.psnr_plot.setLabel("bottom", "acceleration R")
        self.psnr_plot.showGrid(x=True, y=True, alpha=0.3)
        self.psnr_plot.addLegend(offset=(-10, 10))
        self.ssim_plot = plots.addPlot(row=1, col=0, title="SSIM vs acceleration")
        self.ssim_plot.setLabel("left", "SSIM")
        self.ssim_plot.getAxis("left").enableAutoSIPrefix(False)
        self.ssim_plot.setLabel("bottom", "acceleration R")
        self.ssim_plot.showGrid(x=True, y=True, alpha=0.3)
        self.ssim_plot.setXLink(self.psnr_plot)
        lay.addWidget(plots, 1)
        self.zero_filled_points: dict[float, dict[str, float]] = {}
        session.subscribe("sweep", lambda sw: self._on_sweep(sw))
        session.subscribe("scan", lambda *_: self._on_scan())
        session.subscribe("sampling", lambda *_: self._follow_sampling())

    def _on_scan(self) -> None:
        # the previous scan's sweep and zero-filled curve do not describe this one
        self.sweep = None
        self.zero_filled_points = {}
        self.status.setText("")
        self._family_chosen = False
        self.redraw()
        self.refresh_methods()

    def _family_activated(self) -> None:
        self._family_chosen = True

    def _follow_sampling(self) -> None:
        st = self.session.sampling_state
        if self._family_chosen or st is None or st.kind in (USER, ACQUIRED):
            return
        if self.family_combo.findText(st.kind) >= 0:
            self.family_combo.setCurrentText(st.kind)

    def refresh_methods(self) -> None:
        """The families of this scan (the Sampling tab's chosen) and the methods that fit the family."""
        chosen = self.family_combo.currentText() if self._family_chosen else ""
        self.family_combo.clear()
        s = self.session
        if s.scan is not None and s.scan.is_cartesian and s.scan.fully_sampled:
            try:
                from workbench.sampling import sampling_kinds

                kinds = list(sampling_kinds())
            except ImportError:
                kinds = ["random", "equispaced"]
            self.family_combo.addItems(kinds)
            st = s.sampling_state
            if chosen in kinds:
                self.family_combo.setCurrentText(chosen)
            elif st is not None and st.kind in kinds:
                self.family_combo.setCurrentText(st.kind)
        self.run_button.setEnabled(self.family_combo.count() > 0)
        self._list_methods()

    def _list_methods(self) -> None:
        reg = self.methods_panel.registry
        checked = {self.method_list.item(i).text() for i in range(self.method_list.count())
                   if self.method_list.item(i).checkState() == Qt.CheckState.Checked}
        kind = self.family_combo.currentText()
        self.method_list.clear()
        for name, method in reg.methods.items():
            if name == ZERO_FILLED_METHOD or (kind and not fits_family(method.capabilities, kind)):
                continue
            it = QtWidgets.QListWidgetItem(name)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
            self.method_list.addItem(it)

    def set_checked(self, names: list[str]) -> None:
        for i in range(self.method_list.count()):
            it = self.method_list.item(i)
            it.setCheckState(Qt.CheckState.Checked if it.text() in names else Qt.CheckState.Unchecked)

    def run_sweep(self) -> Any:
        s = self.session
        names = [self.method_list.item(i).text() for i in range(self.method_list.count())
                 if self.method_list.item(i).checkState() == Qt.CheckState.Checked]
        try:
            accs = parse_accelerations(self.acc_edit.text())
        except ValueError as exc:
            error_box(self, "Sweep", f"accelerations: {exc}")
            return None
        if not names and not self.include_zf.isChecked():
            error_box(self, "Sweep", "tick at least one method")
            return None
        reg = self.methods_panel.registry
        methods = [(reg.methods[n], self.methods_panel.params_for(n)) for n in names]
        kind = self.family_combo.currentText()
        try:
            if self.include_zf.isChecked():
                self.zero_filled_points = s.zero_filled_sweep(kind, accs)
            self.sweep = s.sweep(methods, accs, kind=kind)
        except WorkbenchError as exc:
            error_box(self, "Sweep", str(exc))
            return None
        self.redraw()
        return self.sweep

    def _on_sweep(self, sw: Any) -> None:
        if sw is self.sweep:
            self.redraw()

    def redraw(self) -> None:
        self.psnr_plot.clear()
        self.ssim_plot.clear()
        series = []
        if self.zero_filled_points:
            xs = sorted(self.zero_filled_points)
            series.append(("zero-filled", xs, [self.zero_filled_points[x].get("psnr", np.nan) for x in xs],
                           [self.zero_filled_points[x].get("ssim", np.nan) for x in xs]))
        sw = self.sweep
        done = total = 0
        if sw is not None:
            for name in sw.methods:
                xs, ps = sw.points(name, "psnr")
                _, ss = sw.points(name, "ssim")
                series.append((name, xs, ps, ss))
            total = len(sw.entries)
            done = sum(1 for e in sw.entries if not e.active)
            failed = [e for e in sw.entries if e.state == "failed"]
            text = f"{done}/{total} jobs finished"
            if failed:
                text += f"; {len(failed)} failed: {failed[0].error}"
            self.status.setText(text)
        for i, (name, xs, ps, ss) in enumerate(series):
            pen = pg.mkPen(COLOURS[i % len(COLOURS)], width=2)
            kw = dict(pen=pen, symbol="o", symbolSize=7, symbolBrush=COLOURS[i % len(COLOURS)], name=name)
            if xs:
                self.psnr_plot.plot(xs, ps, **kw)
                self.ssim_plot.plot(xs, ss, **{k: v for k, v in kw.items() if k != "name"})
