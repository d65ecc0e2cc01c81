"""The acceleration sweep tab: for chosen methods and a range of accelerations, background jobs fill plots
against acceleration that update as results arrive: PSNR and SSIM (in the session's scoring mode, named in the
titles) when the scan has a reference, and the hold-out NMSE (:mod:`workbench.holdout`, a score without a
reference) when the sweep scores its points by the hold-out (on by default for a scan without a reference).

A fully sampled Cartesian scan is swept over a generated family, which follows the Sampling tab's (until one is
chosen here); a prospective scan over part of its acquired readouts (:mod:`workbench.session.sweeps`). The
methods listed are those whose capabilities fit the data (Cartesian masks or trajectories); the zero-filled curve
is the "include zero-filled" box, not a method to tick (computed at once, or run as jobs when the points are
scored by the hold-out). The sweep can be cancelled and exported as JSON or CSV."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from workbench.errors import WorkbenchError
from workbench.gui.common import DialogFolder, Qt, error_box, push_button
from workbench.session import ACQUIRED, USER, Session
from workbench.session.sweeps import ACQUIRED_SUBSET, families, write_sweep

COLOURS = ("#ffb000", "#4fc3f7", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#ffffff")
#: the built-in zero-filled method: its curve is the "include zero-filled" box (computed at once, no jobs)
ZERO_FILLED_METHOD = "zero-filled"
#: trajectory families (the others are Cartesian masks)
NONCARTESIAN_KINDS = ("radial", "golden-radial", "spiral")
#: the accelerations offered first: of a generated family, and factors of a prospective scan's acquisition
DEFAULT_ACCELERATIONS = {"generated": "2, 4, 6, 8, 10, 12", ACQUIRED_SUBSET: "1, 1.5, 2, 3, 4"}
HOLDOUT_AXIS = "hold-out NMSE (lower is better)"
HOLDOUT_TIP = ("score each point by the hold-out: each method runs again with part of its measured lines (or "
               "samples) held out, in 4 folds, and the k-space NMSE of the scan is estimated from how well it "
               "predicts them (workbench.holdout). Needs no reference; about 5x the sweep's work")


def fits_family(capabilities: Any, kind: str, cartesian_scan: bool = True) -> bool:
    """Whether a method with ``capabilities`` reconstructs the data of sampling family ``kind`` (the acquired
    subset of a scan: its own data, Cartesian when ``cartesian_scan``)."""
    noncartesian = kind in NONCARTESIAN_KINDS or (kind == ACQUIRED_SUBSET and not cartesian_scan)
    return bool(capabilities.noncartesian if noncartesian else capabilities.cartesian)


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
        self.dialogs = DialogFolder()  # the main window gives its own (the settings' last folder)
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
                                     "you choose one here); a scan not fully sampled: part of its acquired "
                                     "readouts")
        self._family_chosen = False  # the user picked a family here: it no longer follows the Sampling tab
        self.family_combo.activated.connect(lambda *_: self._family_activated())
        self.family_combo.currentIndexChanged.connect(lambda *_: self._family_changed())
        form.addRow("Family", self.family_combo)
        self.acc_edit = QtWidgets.QLineEdit(DEFAULT_ACCELERATIONS["generated"])
        self.acc_label = QtWidgets.QLabel("Accelerations")
        form.addRow(self.acc_label, self.acc_edit)
        sl.addLayout(form)
        self.include_zf = QtWidgets.QCheckBox("include zero-filled")
        self.include_zf.setChecked(True)
        self.include_zf.setToolTip("also plot the zero-filled reconstruction (computed at once; run as jobs when "
                                   "the points are scored by the hold-out)")
        sl.addWidget(self.include_zf)
        self.holdout_box = QtWidgets.QCheckBox("score by hold-out (no reference needed)")
        self.holdout_box.setToolTip(HOLDOUT_TIP + "; on by default for a scan without a reference")
        sl.addWidget(self.holdout_box)
        buttons = QtWidgets.QHBoxLayout()
        self.run_button = push_button("Run sweep", "queue one job per method and acceleration on the current slice",
                                      self.run_sweep)
        self.cancel_button = push_button("Cancel", "stop the sweep: its queued and running jobs and hold-out runs",
                                         self.cancel_sweep)
        self.export_button = push_button("Export…", "save the sweep's points (metrics with their scoring mode, "
                                         "hold-out scores, chosen weights) as JSON or CSV", self.export_dialog)
        for b in (self.run_button, self.cancel_button, self.export_button):
            buttons.addWidget(b)
        sl.addLayout(buttons)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        sl.addWidget(self.status)
        lay.addWidget(side)
        self.plots = pg.GraphicsLayoutWidget()
        self.psnr_plot = self._plot("PSNR", "dB")
        self.psnr_plot.addLegend(offset=(-10, 10))
        self.ssim_plot = self._plot("SSIM")
        self.holdout_plot = self._plot(HOLDOUT_AXIS)
        self.holdout_plot.addLegend(offset=(10, 10))  # top left: the curves rise with R
        self.holdout_plot.setLogMode(y=True)
        self.ssim_plot.setXLink(self.psnr_plot)  # (the hold-out plot ranges by itself: it may be shown alone)
        self._laid_out: tuple[Any, ...] = ()
        lay.addWidget(self.plots, 1)
        self.zero_filled_points: dict[float, dict[str, float]] = {}
        self._zero_filled_args: tuple[str, list[float]] | None = None  # to score them again in another mode
        session.subscribe("sweep", lambda sw: self._on_sweep(sw))
        session.subscribe("scan", lambda *_: self._on_scan())
        session.subscribe("sampling", lambda *_: self._follow_sampling())
        session.subscribe("score_mode", lambda *_: self._on_score_mode())
        self.redraw()

    def _plot(self, name: str, units: str | None = None) -> Any:
        plot = pg.PlotItem()
        plot.setLabel("left", name, units=units)
        plot.getAxis("left").enableAutoSIPrefix(False)
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        plot.setLabel("bottom", "acceleration R")
        plot.showGrid(x=True, y=True, alpha=0.3)
        return plot

    def _layout(self, plots: tuple[Any, ...]) -> None:
        """Show ``plots`` one above the other (only those with something to say)."""
        if plots == self._laid_out:
            return
        for p in self._laid_out:
            self.plots.ci.removeItem(p)
        for row, p in enumerate(plots):
            self.plots.ci.addItem(p, row=row, col=0)
        self._laid_out = plots

    def _on_scan(self) -> None:
        # the previous scan's sweep and zero-filled curve do not describe this one
        self.sweep = None
        self.zero_filled_points = {}
        self._zero_filled_args = None
        self.status.setText("")
        self._family_chosen = False
        # points of a scan without a reference can only be scored by the hold-out
        self.holdout_box.setChecked(self.session.scan is not None and self.session.reference() is None)
        self.refresh_methods()
        self.redraw()

    def _on_score_mode(self) -> None:
        if self._zero_filled_args is not None:  # computed at once: again, in the new mode
            try:
                self.zero_filled_points = self.session.zero_filled_sweep(*self._zero_filled_args)
            except WorkbenchError:
                self.zero_filled_points = {}
        self.redraw()

    def _family_activated(self) -> None:
        self._family_chosen = True

    def _family_changed(self) -> None:
        subset = self.family_combo.currentText() == ACQUIRED_SUBSET
        was_subset = self.acc_label.text() != "Accelerations"
        self.acc_label.setText("Keep 1/f, f =" if subset else "Accelerations")
        self.acc_edit.setToolTip(
            "factors f: each point keeps an evenly spread 1/f of the acquired readouts (lines, spokes or samples; "
            "the calibration region always), f = 1 being the scan as acquired; the plots show the effective R"
            if subset else "accelerations: a list (2, 4, 8) or start:stop:step (2:12:2)")
        if subset != was_subset:
            self.acc_edit.setText(DEFAULT_ACCELERATIONS[ACQUIRED_SUBSET if subset else "generated"])
        self._list_methods()

    def _follow_sampling(self) -> None:
        st = self.session.sampling_state
        if self._family_chosen or st is None or st.kind in (USER, ACQUIRED):
            return
        if self.family_combo.findText(st.kind) >= 0:
            self.family_combo.setCurrentText(st.kind)

    def refresh_methods(self) -> None:
        """The families of this scan (the Sampling tab's chosen) and the methods that fit the family."""
        chosen = self.family_combo.currentText() if self._family_chosen else ""
        self.family_combo.blockSignals(True)
        self.family_combo.clear()
        kinds = families(self.session.scan)
        self.family_combo.addItems(kinds)
        st = self.session.sampling_state
        if chosen in kinds:
            self.family_combo.setCurrentText(chosen)
        elif st is not None and st.kind in kinds:
            self.family_combo.setCurrentText(st.kind)
        self.family_combo.blockSignals(False)
        self.run_button.setEnabled(self.family_combo.count() > 0)
        self._family_changed()

    def _list_methods(self) -> None:
        reg = self.methods_panel.registry
        checked = {self.method_list.item(i).text() for i in range(self.method_list.count())
                   if self.method_list.item(i).checkState() == Qt.CheckState.Checked}
        kind = self.family_combo.currentText()
        scan = self.session.scan
        cartesian = scan is None or scan.is_cartesian
        self.method_list.clear()
        for name, method in reg.methods.items():
            if name == ZERO_FILLED_METHOD or (kind and not fits_family(method.capabilities, kind, cartesian)):
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
        holdout = self.holdout_box.isChecked()
        # zero filling is scored by the hold-out through its jobs like the methods (its curve then comes from them)
        zf_jobs = self.include_zf.isChecked() and (holdout or kind == ACQUIRED_SUBSET) and ZERO_FILLED_METHOD in \
            reg.methods
        if zf_jobs:
            methods.insert(0, (reg.methods[ZERO_FILLED_METHOD], {}))
        try:
            self.zero_filled_points, self._zero_filled_args = {}, None
            if self.include_zf.isChecked() and not zf_jobs:
                self.zero_filled_points = s.zero_filled_sweep(kind, accs)
                self._zero_filled_args = (kind, accs)
            self.sweep = s.sweep(methods, accs, kind=kind, holdout=holdout)
        except WorkbenchError as exc:
            error_box(self, "Sweep", str(exc))
            return None
        self.redraw()
        return self.sweep

    def cancel_sweep(self) -> None:
        if self.sweep is not None:
            self.session.cancel_sweep(self.sweep)

    def export(self, path: str) -> None:
        """The sweep's points as JSON (``.json``) or CSV (:func:`workbench.session.sweeps.write_sweep`)."""
        if self.sweep is None:
            raise WorkbenchError("run a sweep first")
        scan = self.session.scan
        write_sweep(path, self.sweep, self.session.score_mode, self.zero_filled_points,
                    inputs=(scan.path if scan is not None else None,))

    def export_dialog(self) -> None:
        if self.sweep is None:
            error_box(self, "Export sweep", "run a sweep first")
            return
        path = self.dialogs.save_file(self, "Export sweep", "sweep.json", "JSON (*.json);;CSV (*.csv)")
        if path:
            try:
                self.export(path)
            except (OSError, WorkbenchError) as exc:
                error_box(self, "Export sweep", f"{path}: {getattr(exc, 'strerror', None) or exc}")

    def _on_sweep(self, sw: Any) -> None:
        if sw is self.sweep:
            self.redraw()

    def series(self) -> list[tuple[str, list[float], list[float], list[float], list[tuple[float, float, float]]]]:
        """(name, accelerations, PSNR, SSIM, hold-out points (acceleration, NMSE, standard error)) of each curve:
        zero-filled first."""
        out = []
        if self.zero_filled_points:
            xs = sorted(self.zero_filled_points)
            out.append(("zero-filled", xs, [self.zero_filled_points[x].get("psnr", np.nan) for x in xs],
                        [self.zero_filled_points[x].get("ssim", np.nan) for x in xs], []))
        sw = self.sweep
        for name in sw.methods if sw is not None else ():
            xs, ps = sw.points(name, "psnr")
            _, ss = sw.points(name, "ssim")
            hx, hs = sw.points(name, "holdout")
            _, he = sw.points(name, "holdout_se")
            out.append((name, xs, ps, ss, list(zip(hx, hs, he))))
        return out

    def redraw(self) -> None:
        mode = self.session.score_mode
        self.psnr_plot.setTitle(f"PSNR vs acceleration ({mode})")
        self.ssim_plot.setTitle(f"SSIM vs acceleration ({mode})")
        self.holdout_plot.setTitle("Hold-out NMSE vs acceleration (no reference)")
        for p in (self.psnr_plot, self.ssim_plot, self.holdout_plot):
            p.clear()
        series = self.series()
        sw = self.sweep
        with_metrics = any(ps for _, _, ps, _, _ in series) or (sw is None and self.session.scan is not None
                                                               and self.session.reference() is not None)
        with_holdout = sw is not None and sw.holdout
        self._layout(((self.psnr_plot, self.ssim_plot) if with_metrics or not with_holdout else ())
                     + ((self.holdout_plot,) if with_holdout else ()))
        self.cancel_button.setEnabled(sw is not None and not sw.cancelled and self._busy(sw))
        self.export_button.setEnabled(sw is not None)
        if sw is not None:
            self.status.setText(self.status_text(sw))
        for i, (name, xs, ps, ss, hold) in enumerate(series):
            colour = COLOURS[i % len(COLOURS)]
            kw = dict(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=7, symbolBrush=colour, name=name)
            if xs and any(np.isfinite(ps)):
                self.psnr_plot.plot(xs, ps, **kw)
                self.ssim_plot.plot(xs, ss, **{k: v for k, v in kw.items() if k != "name"})
            if hold:
                hx = np.array([x for x, _, _ in hold])
                hv = np.array([max(v, 1e-12) for _, v, _ in hold])
                self.holdout_plot.plot(hx, hv, **kw)
                se = np.array([e for _, _, e in hold])
                if se.any():  # +- the standard error over the folds; the axis is log10, which the bars do not follow
                    y = np.log10(hv)
                    self.holdout_plot.addItem(pg.ErrorBarItem(
                        x=hx, y=y, top=np.log10(hv + se) - y, bottom=y - np.log10(np.maximum(hv - se, 1e-3 * hv)),
                        beam=0.15, pen=pg.mkPen(colour, width=1)))

    @staticmethod
    def _busy(sw: Any) -> bool:
        return any(e.active for e in sw.entries) or any(
            (e.holdout or {}).get("holdout_message") == "running" for e in sw.entries)

    @staticmethod
    def status_text(sw: Any) -> str:
        """``"6/8 jobs finished; hold-out 3/6 scored (55%)"``, the first failure, "cancelled"."""
        done = sum(1 for e in sw.entries if not e.active)
        failed = [e for e in sw.entries if e.state == "failed"]
        text = f"{done}/{len(sw.entries)} jobs finished"
        if failed:
            text += f"; {len(failed)} failed: {failed[0].error}"
        if sw.holdout:
            scored, todo, fraction = sw.holdout_progress()
            text += f"; hold-out {scored}/{todo} scored" + (f" ({100 * fraction:.0f}%)" if scored < todo else "")
            missing = next((e.holdout["holdout_message"] for e in sw.entries if e.holdout and e.holdout.get(
                "holdout_nmse") is None and e.holdout.get("holdout_message") not in (None, "running")), None)
            if missing:
                text += f"; no hold-out score: {missing}"
        if sw.cancelled:
            text += "; cancelled"
        return text
