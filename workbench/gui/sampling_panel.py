"""The sampling tab: choose a mask family or trajectory, its parameters and acceleration (live zero-filled image
and metrics), draw masks by hand, preview trajectories with their density compensation, see the PSF."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.errors import WorkbenchError
from workbench.gui.common import (DialogFolder, ImagePanel, Qt, colormap, error_box, fit_title, keep_page_keys,
                                  push_button, single_shot_timer, title_font)
from workbench.gui.param_form import ParamForm
from workbench.methods import ParamSpec
from workbench.session import ACQUIRED, USER, Session

#: slider ticks per unit of acceleration (R from 1 to 16 in steps of 0.25)
R_STEPS = 4
R_MIN, R_MAX = 1.0, 16.0

FAMILY_LABELS = {
    "random": "random lines (fastMRI)", "equispaced": "equispaced lines (fastMRI)",
    "poisson": "Poisson disc (2D)", "gaussian": "Gaussian density (2D)", "radial": "radial",
    "golden-radial": "golden-angle radial", "spiral": "spiral", USER: "hand-drawn mask", ACQUIRED: "as acquired",
}
FAMILY_TIPS = {
    "random": "fastMRI RandomMaskFunc: a fully sampled centre block + random phase-encode lines",
    "equispaced": "fastMRI EquispacedMaskFunc: a centre block + equally spaced phase-encode lines",
    "poisson": "variable-density Poisson-disc 2D mask with a calibration box",
    "gaussian": "2D Gaussian variable-density random mask with a calibration box",
    "radial": "radial spokes, uniform angles (retrospectively sampled through the NUFFT)",
    "golden-radial": "radial spokes at the golden angle",
    "spiral": "variable-density spiral interleaves",
    USER: "draw the mask yourself: click/drag toggles lines, the brush paints 2D regions",
    ACQUIRED: "the data exactly as stored in the file (no retrospective undersampling)",
}
CARTESIAN_1D = ("random", "equispaced")
CARTESIAN_2D = ("poisson", "gaussian")


def _spec(name: str, type_: type, default: Any, **kw: Any) -> ParamSpec:
    return ParamSpec(name=name, type=type_, default=default, label=kw.pop("label", name.replace("_", " ")), **kw)


#: Extra parameters each family's form shows (acceleration, seed and centre fraction have their own controls).
FAMILY_PARAMS: dict[str, list[ParamSpec]] = {
    "poisson": [_spec("calib", int, 24, min=0, max=128, unit="px", help="fully sampled calibration box side"),
                _spec("crop_corner", bool, True, help="leave the k-space corners beyond the inscribed ellipse empty")],
    "gaussian": [_spec("calib", int, 24, min=0, max=128, unit="px", help="fully sampled calibration box side"),
                 _spec("sigma", float, 0.5, min=0.05, max=5.0, help="density width (fraction of the k-space half-width)")],
}

#: density compensation choices per trajectory family (workbench.sampling.dcf_methods_for, kept here so that
#: the panel does not import the sampling library at start-up); the first is the default
DCF_CHOICES = {"radial": ("pipe-menon", "voronoi", "ramp"), "golden-radial": ("pipe-menon", "voronoi", "ramp"),
               "spiral": ("pipe-menon", "voronoi")}
DCF_HELP = ("density compensation of the gridded (DCF adjoint) image: pipe-menon (iterative, the default; the "
            "trained NC-PDNet weights use it; flattens beyond |k| ~ 0.5 rad when spokes are sparse), voronoi (the "
            "k-space area of each sample's Voronoi cell), ramp (radial only: the analytic |k| ramp)")
#: density compensation choices for a non-Cartesian scan used as acquired ("file": its own weights, offered when
#: it has them); the ramp is refused by the session (with a message) for trajectories that are not radial
ACQUIRED_DCF_CHOICES = ("pipe-menon", "voronoi", "ramp")
ACQUIRED_DCF_HELP = ("density compensation of the acquired trajectory: file (the weights stored in the file), "
                     "pipe-menon (iterative; the default without file weights), voronoi (the k-space area of each "
                     "sample's Voronoi cell), ramp (radial trajectories only: the analytic |k| ramp)")
for _kind, _choices in DCF_CHOICES.items():
    FAMILY_PARAMS[_kind] = [_spec("dcf_method", str, _choices[0], choices=_choices, label="density comp.",
                                  help=DCF_HELP)]


class MaskEditorItem(pg.ImageItem):
    """The mask as an image that edits the session on click/drag: in "lines" mode a click toggles a
    phase-encode line and a drag sets the lines it crosses to that state; in "brush" mode it paints discs."""

    def __init__(self, panel: "SamplingPanel"):
        super().__init__()
        self.panel = panel
        self._last_col: int | None = None
        self._value = True

    def _pos(self, ev: Any) -> tuple[float, float]:
        p = ev.pos()
        return float(p.y()), float(p.x())

    def mouseClickEvent(self, ev: Any) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() != Qt.MouseButton.LeftButton or not self.panel.editable():
            ev.ignore()
            return
        ev.accept()
        row, col = self._pos(ev)
        s = self.panel.session
        s.editor.begin_stroke()
        if self.panel.tool() == "lines":
            s.editor.toggle_line(int(col))
        else:
            s.editor.paint(row, col, self.panel.radius(), not self.panel.erasing())
        s.editor.end_stroke()

    def mouseDragEvent(self, ev: Any) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or not self.panel.editable():
            ev.ignore()
            return
        ev.accept()
        s = self.panel.session
        row, col = self._pos(ev)
        h, w = s.grid_shape
        c = int(np.clip(col, 0, w - 1))
        if ev.isStart():
            s.editor.begin_stroke()
            p0 = self.mapFromScene(ev.buttonDownScenePos())
            c0 = int(np.clip(p0.x(), 0, w - 1))
            if self.panel.tool() == "lines":
                mask = s.mask()
                self._value = not bool(mask[:, c0].all())
                s.editor.set_lines([c0], self._value)
            self._last_col = c0
        if self.panel.tool() == "lines":
            lo, hi = sorted((self._last_col if self._last_col is not None else c, c))
            s.editor.set_lines(range(lo, hi + 1), self._value)
        else:
            s.editor.paint(row, col, self.panel.radius(), not self.panel.erasing())
        self._last_col = c
        if ev.isFinish():
            s.editor.end_stroke()
            self._last_col = None


#: |PSF| (normalised to its peak) below which a row counts as empty: a line mask's PSF is one row
PSF_EMPTY = 1e-4
#: the log10 |PSF| range shown
PSF_FLOOR = -4.0


def psf_row(psf: np.ndarray) -> np.ndarray | None:
    """The one row ``[W]`` that holds a PSF ``[H, W]`` (a mask of whole phase-encode lines is the same in every
    row, so its PSF is zero off the centre row), or None for a PSF spread over rows (a 2D mask, a trajectory)."""
    rows = np.flatnonzero(psf.max(axis=1) > PSF_EMPTY)
    return psf[rows[0]] if rows.size == 1 else None


class TrajectoryPlot(pg.GraphicsLayoutWidget):
    """The k-space samples coloured by their density compensation weight, with its colour bar; the title is
    wrapped to the widget's width (a long title would widen the plot beyond the widget and clip it)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.title_text = ""
        self.plot = self.addPlot(row=0, col=0)
        self.plot.setAspectLocked(True)
        self.plot.setLabel("bottom", "kx (rad)")
        self.plot.setLabel("left", "ky (rad)")
        self.scatter = pg.ScatterPlotItem(pen=None, size=2)
        self.plot.addItem(self.scatter)
        self.dcf_bar = pg.ColorBarItem(values=(0, 1), colorMap=colormap("viridis"), interactive=False, width=10,
                                       orientation="horizontal", label="density compensation weight")
        self.dcf_bar.axis.enableAutoSIPrefix(False)
        self.addItem(self.dcf_bar, row=1, col=0)
        self.setToolTip("k-space samples (subsampled for display), coloured by their density compensation weight")

    def set_title(self, text: str) -> None:
        self.title_text = text
        self._fit_title()

    def _fit_title(self) -> None:
        # the title spans the plot less its left axis
        metrics = QtGui.QFontMetrics(title_font())
        text = fit_title(self.title_text, max(self.width() - 70, 60), metrics)
        self.plot.setTitle(text, size="9pt")
        # PlotItem gives its title one 30 px row; a wrapped title needs its lines
        height = max(30, (text.count("<br>") + 1) * metrics.lineSpacing() + 10)
        self.plot.titleLabel.setMaximumHeight(height)
        self.plot.layout.setRowFixedHeight(0, height)

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt override
        if hasattr(self, "plot"):  # pyqtgraph calls it during construction
            self._fit_title()  # first: the layout is never made narrower than the previous title
        super().resizeEvent(ev)


class SamplingPanel(QtWidgets.QWidget):
    """Controls (left) and views (right: mask editor or trajectory, PSF, zero-filled image, error map)."""

    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.dialogs = DialogFolder()  # the main window gives its own (the settings' last folder)
        self._updating = False
        self._pending_r: float | None = None
        outer = QtWidgets.QHBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        controls = QtWidgets.QWidget()
        controls.setMaximumWidth(330)
        controls.setMinimumWidth(260)
        cl = QtWidgets.QVBoxLayout(controls)
        cl.setContentsMargins(2, 2, 2, 2)

        cl.addWidget(QtWidgets.QLabel("<b>Sampling family</b>"))
        self.family_list = QtWidgets.QListWidget()
        self.family_list.setMaximumHeight(170)
        self.family_list.currentItemChanged.connect(self._on_family)
        cl.addWidget(self.family_list)

        form = QtWidgets.QFormLayout()
        rrow = QtWidgets.QHBoxLayout()
        self.r_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.r_slider.setRange(int(R_MIN * R_STEPS), int(R_MAX * R_STEPS))
        self.r_slider.setValue(4 * R_STEPS)
        self.r_slider.setToolTip("acceleration R: the mask, the zero-filled image and its metrics follow live")
        self.r_slider.valueChanged.connect(self._on_slider)
        keep_page_keys(self.r_slider)  # Page Up / Down move the slider, not the slice
        self.r_label = QtWidgets.QLabel("4.00")
        self.r_label.setMinimumWidth(40)
        rrow.addWidget(self.r_slider, 1)
        rrow.addWidget(self.r_label)
        form.addRow("Acceleration", rrow)
        self.cf_spin = QtWidgets.QDoubleSpinBox()
        self.cf_spin.setRange(0.0, 0.5)
        self.cf_spin.setDecimals(3)
        self.cf_spin.setSingleStep(0.01)
        self.cf_spin.setSpecialValueText("auto")
        self.cf_spin.setToolTip("fraction of fully sampled centre columns (fastMRI center_fraction); "
                                "auto: 0.08 at R=4, 0.04 at R=8 (scaled as 0.32/R)")
        self.cf_spin.valueChanged.connect(self._on_params)
        form.addRow("Centre fraction", self.cf_spin)
        self.seed_spin = QtWidgets.QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("random seed: the same seed gives the same mask")
        self.seed_spin.valueChanged.connect(self._on_params)
        form.addRow("Seed", self.seed_spin)
        cl.addLayout(form)
        self.extra_form = ParamForm(empty_text="")
        self.extra_form.changed.connect(self._on_params)
        cl.addWidget(self.extra_form)
        # the density compensation of a non-Cartesian scan used as acquired (hidden otherwise)
        self.acq_dcf_row = QtWidgets.QWidget()
        dl = QtWidgets.QHBoxLayout(self.acq_dcf_row)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(QtWidgets.QLabel("Density comp."))
        self.acq_dcf_combo = QtWidgets.QComboBox()
        self.acq_dcf_combo.setToolTip(ACQUIRED_DCF_HELP)
        self.acq_dcf_combo.currentIndexChanged.connect(self._on_acquired_dcf)
        dl.addWidget(self.acq_dcf_combo, 1)
        self.acq_dcf_row.setVisible(False)
        cl.addWidget(self.acq_dcf_row)

        self.stats = QtWidgets.QLabel("")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats.setStyleSheet("QLabel { font-family: monospace; }")
        cl.addWidget(self.stats)

        edit = QtWidgets.QGroupBox("Mask editor")
        el = QtWidgets.QGridLayout(edit)
        self.tool_lines = QtWidgets.QRadioButton("Lines")
        self.tool_lines.setToolTip("click toggles a phase-encode line; drag sets the lines it crosses")
        self.tool_brush = QtWidgets.QRadioButton("Brush")
        self.tool_brush.setToolTip("paint 2D regions (hold 'Erase' to remove)")
        self.tool_lines.setChecked(True)
        el.addWidget(self.tool_lines, 0, 0)
        el.addWidget(self.tool_brush, 0, 1)
        self.radius_spin = QtWidgets.QSpinBox()
        self.radius_spin.setRange(1, 100)
        self.radius_spin.setValue(6)
        self.radius_spin.setPrefix("r ")
        self.radius_spin.setToolTip("brush radius in pixels")
        el.addWidget(self.radius_spin, 0, 2)
        self.erase_box = QtWidgets.QCheckBox("Erase")
        self.erase_box.setToolTip("the brush removes samples")
        self.symmetric_box = QtWidgets.QCheckBox("Symmetric")
        self.symmetric_box.setToolTip("mirror every edit through the k-space centre")
        self.symmetric_box.toggled.connect(lambda on: setattr(self.session, "symmetric", bool(on)))
        el.addWidget(self.erase_box, 1, 0)
        el.addWidget(self.symmetric_box, 1, 1)
        self.undo_button = push_button("Undo", "undo the last mask edit (Ctrl+Z)", self.session.undo)
        self.redo_button = push_button("Redo", "redo (Ctrl+Shift+Z)", self.session.redo)
        self.clear_button = push_button("Clear", "empty the mask (undoable)", self._clear)
        el.addWidget(self.undo_button, 2, 0)
        el.addWidget(self.redo_button, 2, 1)
        el.addWidget(self.clear_button, 2, 2)
        self.save_button = push_button("Save mask…", "save the mask or trajectory with its parameters (.npz or "
                                       ".json)", self.save_mask_dialog)
        self.load_button = push_button("Load mask…", "load a saved mask (becomes an editable hand-drawn mask) or "
                                       "trajectory", self.load_mask_dialog)
        el.addWidget(self.save_button, 3, 0, 1, 2)
        el.addWidget(self.load_button, 3, 2)
        cl.addWidget(edit)
        cl.addStretch(1)
        outer.addWidget(controls)

        grid = QtWidgets.QGridLayout()
        grid.setSpacing(2)
        self.mask_panel = ImagePanel("mask (click or drag to edit)")
        self.mask_panel.view.removeItem(self.mask_panel.image_item)
        self.mask_item = MaskEditorItem(self)
        self.mask_panel.image_item = self.mask_item
        self.mask_panel.view.addItem(self.mask_item)
        self.mask_item.setLookupTable(np.array([[20, 20, 30], [240, 240, 240]], dtype=np.ubyte))
        self.mask_panel.setToolTip("sampled k-space positions (white). Lines: click/drag; Brush: paint")
        self.traj_widget = TrajectoryPlot()
        self.traj_widget.set_title("trajectory")
        self.traj_plot, self.traj_scatter, self.dcf_bar = (self.traj_widget.plot, self.traj_widget.scatter,
                                                           self.traj_widget.dcf_bar)
        self.left_stack = QtWidgets.QStackedWidget()
        self.left_stack.addWidget(self.mask_panel)
        self.left_stack.addWidget(self.traj_widget)
        self.psf_panel = ImagePanel("point-spread function (log10 |PSF|)", cmap="inferno", colorbar=True)
        self.psf_panel.setToolTip("|PSF| of the sampling, normalised to its peak, in log10 (aliasing pattern)")
        # a line mask's PSF is one row: drawn as a curve, since a one-pixel row is lost when the image is shrunk
        self.psf_plot = pg.PlotWidget()
        self.psf_plot.setTitle("PSF of the lines (log10 |PSF|)", size="9pt")
        self.psf_plot.setLabel("bottom", "offset (pixels)")
        self.psf_plot.setYRange(PSF_FLOOR, 0.1, padding=0)
        self.psf_curve = self.psf_plot.plot(pen=pg.mkPen("#ffb000", width=1.5))
        self.psf_plot.setToolTip("|PSF| of the line mask (the same in every row), normalised to its peak, in "
                                 "log10: the peaks beside the centre are the aliases")
        self.psf_stack = QtWidgets.QStackedWidget()
        self.psf_stack.addWidget(self.psf_panel)
        self.psf_stack.addWidget(self.psf_plot)
        self.zf_panel = ImagePanel("zero-filled")
        self.err_panel = ImagePanel("|error| vs reference", cmap="inferno", colorbar=True)
        grid.addWidget(self.left_stack, 0, 0)
        grid.addWidget(self.psf_stack, 0, 1)
        grid.addWidget(self.zf_panel, 1, 0)
        grid.addWidget(self.err_panel, 1, 1)
        views = QtWidgets.QWidget()
        views.setLayout(grid)
        outer.addWidget(views, 1)
        for p in (self.mask_panel, self.psf_panel, self.zf_panel, self.err_panel):
            p.hovered.connect(self.hovered)

        self._apply_timer = single_shot_timer(self, 0, self._apply_pending_r)
        session.subscribe("scan", lambda *_: self.reset_for_scan())
        session.subscribe("sampling", lambda *_: self.refresh())
        session.subscribe("slice", lambda *_: self.refresh())
        self.setEnabled(False)

    def _lut_brushes(self) -> list[Any]:
        # 256 shared brushes instead of one QBrush per displayed sample
        if getattr(self, "_brushes", None) is None:
            self._brushes = [pg.mkBrush(*c) for c in colormap("viridis").getLookupTable(nPts=256)]
        return self._brushes

    # ----------------------------------------------------------------------------------------------------------
    # queries used by the mask editor
    def editable(self) -> bool:
        st = self.session.sampling_state
        return st is not None and st.is_cartesian

    def tool(self) -> str:
        return "lines" if self.tool_lines.isChecked() else "brush"

    def radius(self) -> float:
        return float(self.radius_spin.value())

    def erasing(self) -> bool:
        return self.erase_box.isChecked()

    # ----------------------------------------------------------------------------------------------------------
    def reset_for_scan(self) -> None:
        s = self.session
        if s.scan is None:
            return
        self.setEnabled(True)
        self._updating = True
        self.family_list.clear()
        kinds: list[str] = []
        if s.scan.is_cartesian and s.scan.fully_sampled:
            try:
                from workbench.sampling import sampling_kinds

                kinds = list(sampling_kinds())
            except ImportError:
                kinds = list(CARTESIAN_1D + CARTESIAN_2D)
        if s.scan.is_cartesian:
            kinds.append(USER)
        kinds.append(ACQUIRED)
        for k in kinds:
            it = QtWidgets.QListWidgetItem(FAMILY_LABELS.get(k, k))
            it.setData(Qt.ItemDataRole.UserRole, k)
            it.setToolTip(FAMILY_TIPS.get(k, k))
            self.family_list.addItem(it)
        self.acq_dcf_combo.clear()
        if not s.scan.is_cartesian:
            choices = (("file",) if s.scan.dcf is not None else ()) + ACQUIRED_DCF_CHOICES
            for name in choices:
                self.acq_dcf_combo.addItem(name, name)
        self._updating = False
        self.refresh(autorange=True)

    def _select_family(self, kind: str) -> None:
        for i in range(self.family_list.count()):
            it = self.family_list.item(i)
            if it.data(Qt.ItemDataRole.UserRole) == kind:
                if self.family_list.currentItem() is not it:
                    self.family_list.setCurrentItem(it)
                return

    def _on_family(self, item: QtWidgets.QListWidgetItem | None, _prev: Any = None) -> None:
        if self._updating or item is None:
            return
        kind = item.data(Qt.ItemDataRole.UserRole)
        s = self.session
        try:
            if kind == USER:
                s.editor.begin_user_mask()
            elif kind == ACQUIRED:
                s.set_sampling(ACQUIRED)
            else:
                params = self._extra_params({sp.name: sp.default for sp in FAMILY_PARAMS.get(kind, [])})
                s.set_sampling(kind, acceleration=self.r_slider.value() / R_STEPS,
                               center_fraction=self._cf(), seed=self.seed_spin.value(), **params)
        except WorkbenchError as exc:  # e.g. a calibration box larger than the samples R allows
            self.refresh()
            self.stats.setText(f"<span style='color:#e0605a'>{exc}</span>")

    def _on_acquired_dcf(self, index: int) -> None:
        if self._updating or index < 0:
            return
        name = self.acq_dcf_combo.itemData(index)
        try:
            self.session.set_acquired_dcf_method(None if name == "file" else name)
        except WorkbenchError as exc:  # e.g. the ramp on a trajectory that is not radial: the setting stays
            self.refresh()
            self.stats.setText(f"<span style='color:#e0605a'>{exc}</span>")

    def _cf(self) -> float | None:
        v = self.cf_spin.value()
        return None if v <= 0 else float(v)

    def _extra_params(self, values: dict[str, Any]) -> dict[str, Any]:
        """Form values as ``make_sampling`` keywords (a square calibration box side -> (rows, cols))."""
        values = dict(values)
        if "calib" in values and values["calib"] is not None:
            values["calib"] = (int(values["calib"]), int(values["calib"]))
        return values

    def _on_params(self, *_: Any) -> None:
        if self._updating:
            return
        s = self.session
        kind = s.sampling_state.kind if s.sampling_state else None
        if kind in (None, USER, ACQUIRED):
            return
        try:
            s.set_sampling(kind, acceleration=self.r_slider.value() / R_STEPS, center_fraction=self._cf(),
                           seed=self.seed_spin.value(), **self._extra_params(self.extra_form.values()))
        except WorkbenchError as exc:
            self.stats.setText(f"<span style='color:#e0605a'>{exc}</span>")

    def _on_slider(self, value: int) -> None:
        self.r_label.setText(f"{value / R_STEPS:.2f}")
        if self._updating:
            return
        # coalesce a burst of slider moves: only the latest value is computed once the event queue drains
        self._pending_r = value / R_STEPS
        self._apply_timer.start()

    def _apply_pending_r(self) -> None:
        r, self._pending_r = self._pending_r, None
        if r is None:
            return
        s = self.session
        st = s.sampling_state
        try:
            if st.kind in (USER, ACQUIRED):
                # moving the slider from a hand-drawn mask returns to the last generated family
                kind = next((self.family_list.item(i).data(Qt.ItemDataRole.UserRole)
                             for i in range(self.family_list.count())
                             if self.family_list.item(i).data(Qt.ItemDataRole.UserRole) not in (USER, ACQUIRED)),
                            None)
                if kind is None:
                    return
                s.set_sampling(kind, acceleration=r, seed=self.seed_spin.value(), center_fraction=self._cf())
            else:
                s.set_acceleration(r)
        except WorkbenchError as exc:
            self.stats.setText(f"<span style='color:#e0605a'>{exc}</span>")

    def _clear(self) -> None:
        if self.editable():
            self.session.editor.clear_mask()

    # ----------------------------------------------------------------------------------------------------------
    def refresh(self, autorange: bool = False) -> None:
        s = self.session
        st = s.sampling_state
        if st is None:
            return
        self._updating = True
        try:
            self._select_family(st.kind)
            if st.kind not in (USER, ACQUIRED):
                self.r_slider.setValue(int(round(st.requested_acceleration * R_STEPS)))
                self.r_label.setText(f"{st.requested_acceleration:.2f}")
                self.seed_spin.setValue(int(st.seed))
                self.cf_spin.setValue(st.center_fraction or 0.0)
                specs = FAMILY_PARAMS.get(st.kind, [])
                if [(sp.name, sp.choices) for sp in specs] != [(sp.name, sp.choices) for sp in self.extra_form.specs]:
                    self.extra_form.set_specs(specs)
                if specs:
                    vals = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in st.params.items()}
                    method = getattr(st.sampling, "dcf_method", None)  # e.g. a loaded trajectory's
                    if method and "dcf_method" not in vals:
                        vals["dcf_method"] = method
                    self.extra_form.set_values(vals)
            else:
                if self.extra_form.specs:
                    self.extra_form.set_specs([])
                # a hand-drawn (or acquired) mask: the slider shows its effective acceleration
                self.r_slider.setValue(int(round(min(max(st.acceleration, R_MIN), R_MAX) * R_STEPS)))
                self.r_label.setText(f"{st.acceleration:.2f}")
            generated = st.kind not in (USER, ACQUIRED)
            has_family = any(self.family_list.item(i).data(Qt.ItemDataRole.UserRole) not in (USER, ACQUIRED)
                             for i in range(self.family_list.count()))
            self.r_slider.setEnabled(has_family)
            if not has_family:  # acquired data only (undersampled or non-Cartesian): no acceleration to choose
                self.r_label.setText("—")
            self.cf_spin.setEnabled(generated and st.kind in CARTESIAN_1D)
            self.seed_spin.setEnabled(generated)
            cart = st.is_cartesian
            for w in (self.undo_button, self.redo_button):
                w.setEnabled(False)
            self.undo_button.setEnabled(s.can_undo)
            self.redo_button.setEnabled(s.can_redo)
            self.clear_button.setEnabled(cart)
            dcf_label = s.acquired_dcf_label  # non-Cartesian data used as acquired
            self.acq_dcf_row.setVisible(dcf_label is not None)
            if dcf_label is not None:
                self.acq_dcf_combo.setCurrentIndex(self.acq_dcf_combo.findData(dcf_label))
        finally:
            self._updating = False
        self._refresh_views(autorange)

    def _refresh_views(self, autorange: bool = False) -> None:
        s = self.session
        st = s.sampling_state
        if st.is_cartesian:
            self.left_stack.setCurrentIndex(0)
            self.mask_panel.set_image(st.mask.astype(np.uint8), levels=(0, 1), autorange=autorange)
            self.mask_panel.set_title(f"mask: {st.describe()} (click or drag to edit)")
        else:
            self.left_stack.setCurrentIndex(1)
            view = s.trajectory_view(max_points=12000)
            if view is not None:
                pts, w = view
                lo, hi = (float(v) for v in np.percentile(w, [1, 99]))
                if hi <= lo:
                    hi = lo + (abs(lo) or 1.0)
                lut = self._lut_brushes()
                idx = np.clip(((w - lo) / (hi - lo) * 255).astype(int), 0, 255)
                self.traj_scatter.setData(x=pts[0], y=pts[1], brush=[lut[i] for i in idx])
                self.traj_plot.setRange(xRange=(-np.pi, np.pi), yRange=(-np.pi, np.pi), padding=0.02)
                self.dcf_bar.setLevels((lo, hi))
                method = getattr(st.sampling, "dcf_method", None) or s.acquired_dcf_label
                # the number of samples is in the statistics beside the plot: a short title leaves it the height
                self.traj_widget.set_title(f"{st.kind}, R={st.acceleration:.2f}"
                                           + (f", DCF {method}" if method else ""))
        for panel in (self.psf_panel, self.zf_panel, self.err_panel):  # image-space pictures (not the mask)
            panel.set_pixel_aspect(s.pixel_aspect)
        psf = s.psf()
        self.psf_panel.set_image(None if psf is None else np.log10(np.maximum(psf, 1e-6)), levels=(PSF_FLOOR, 0.0),
                                 autorange=autorange)
        row = None if psf is None else psf_row(psf)
        self.psf_stack.setCurrentWidget(self.psf_panel if row is None else self.psf_plot)
        if row is not None:
            offsets = np.arange(row.size) - row.size // 2
            self.psf_curve.setData(offsets, np.log10(np.maximum(row, 10.0 ** PSF_FLOOR)))
            self.psf_plot.setXRange(float(offsets[0]), float(offsets[-1]), padding=0.01)
        zf = s.zero_filled()
        self.zf_panel.set_image(zf, autorange=autorange)
        m = s.zero_filled_metrics()
        ref = s.reference()
        title = "zero-filled" if st.is_cartesian else "gridded (DCF adjoint)"
        if zf is None:
            title += "  (computing…)" if s.derived_pending else f"  ({s.derived_error() or 'not available'})"
        if m:
            title += f"   PSNR {m['psnr']:.2f} dB   SSIM {m['ssim']:.3f}"
        self.zf_panel.set_title(title)
        err = s.error_map(zf) if ref is not None and zf is not None else None
        if err is not None:
            dr = s.data_range() or float(ref.max()) or 1.0
            self.err_panel.set_image(err, levels=(0.0, 0.25 * dr), autorange=autorange)
            self.err_panel.set_title("|reference - zero-filled|" + (" (scale fitted)" if s.reference_scale_free()
                                                                     else ""))
        else:
            self.err_panel.set_image(None)
            self.err_panel.set_levels((0.0, 1.0))  # not the previous scan's scale
            self.err_panel.set_title("|error| (no reference)" if ref is None else "|error|")
        lines = [f"R (effective)  {st.acceleration:.2f}"]
        if st.acs_shape:
            lines.append(f"ACS            {st.acs_shape[0]} x {st.acs_shape[1]}")
        if st.mask is not None:
            lines.append(f"samples        {int(st.mask.sum())} / {st.mask.size}")
        else:
            lines.append(f"samples        {st.trajectory.shape[-1]}")
        if m:
            lines += [f"PSNR           {m['psnr']:.2f} dB", f"SSIM           {m['ssim']:.4f}",
                      f"NMSE           {m['nmse']:.4g}"]
        self.stats.setText("<pre style='margin:0'>" + "\n".join(lines) + "</pre>")

    # ----------------------------------------------------------------------------------------------------------
    def save_mask_dialog(self) -> None:
        path = self.dialogs.save_file(self, "Save mask", "mask.npz", "Sampling (*.npz *.json)")
        if path:
            try:
                self.session.editor.save(path)
            except (WorkbenchError, OSError) as exc:
                error_box(self, "Save mask", str(exc))

    def load_mask_dialog(self) -> None:
        path = self.dialogs.open_file(self, "Load mask", "Sampling (*.npz *.json)")
        if path:
            try:
                self.session.editor.load(path)
            except (WorkbenchError, OSError, ValueError, KeyError) as exc:
                error_box(self, "Load mask", f"{path}: {exc}" if path not in str(exc) else str(exc))
