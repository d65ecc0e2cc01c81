"""The scan tab and the scan dock: k-space in log magnitude, the image (reference / zero-filled / fully sampled
coil image), slice and coil browsing, and the header / attributes panel."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from workbench.gui.common import ImagePanel, Qt, colormap, combo_box
from workbench.session import Session

IMAGE_CHOICES = ("reference", "zero-filled", "fully sampled")


class ScanView(QtWidgets.QWidget):
    """k-space (left) and image (right) of the current slice and coil."""

    hovered = QtCore.pyqtSignal(int, int, float, str)

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("Image:"))
        self.image_choice = combo_box(IMAGE_CHOICES, "reference: the file's stored reconstruction (or RSS of the "
                                      "full data); zero-filled: the current sampling; fully sampled: the selected "
                                      "coil", self.refresh_image)
        bar.addWidget(self.image_choice)
        bar.addStretch(1)
        self.caption = QtWidgets.QLabel("")
        bar.addWidget(self.caption)
        lay.addLayout(bar)
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        self.kspace_panel = ImagePanel("k-space (log magnitude)", cmap="inferno")
        self.kspace_panel.setToolTip("log(1 + |k|) of the selected coil, or root-sum-of-squares over coils")
        self.traj_plot = pg.PlotWidget(title="k-space samples (log magnitude)")
        self.traj_plot.setAspectLocked(True)
        self.traj_plot.setLabel("bottom", "kx (rad)")
        self.traj_plot.setLabel("left", "ky (rad)")
        self.traj_scatter = pg.ScatterPlotItem(pen=None, size=2)
        self.traj_plot.addItem(self.traj_scatter)
        self.kstack = QtWidgets.QStackedWidget()
        self.kstack.addWidget(self.kspace_panel)
        self.kstack.addWidget(self.traj_plot)
        self.image_panel = ImagePanel("image")
        split.addWidget(self.kstack)
        split.addWidget(self.image_panel)
        lay.addWidget(split, 1)
        for p in (self.kspace_panel, self.image_panel):
            p.hovered.connect(self.hovered)
        self._brushes: list[Any] | None = None
        session.subscribe("scan", lambda *_: self._on_scan())
        session.subscribe("slice", lambda *_: self.refresh())
        session.subscribe("sampling", lambda *_: self._sampling_changed())

    def _on_scan(self) -> None:
        # an undersampled scan has no reference: show what was acquired (zero-filled / gridded) instead of an
        # empty panel; a scan with a reference starts on it
        s = self.session
        want = "reference" if s.scan is not None and s.reference() is not None else "zero-filled"
        if self.image_choice.currentText() != want:
            self.image_choice.blockSignals(True)
            self.image_choice.setCurrentText(want)
            self.image_choice.blockSignals(False)
        self.refresh()

    def _sampling_changed(self) -> None:
        if self.image_choice.currentText() == "zero-filled" and self.isVisible():
            self.refresh_image()

    def _lut_brushes(self) -> list[Any]:
        # 256 shared brushes: one QBrush per sample would cost ~0.1 s for 20000 samples
        if self._brushes is None:
            lut = colormap("inferno").getLookupTable(nPts=256)
            self._brushes = [pg.mkBrush(*c) for c in lut]
        return self._brushes

    def showEvent(self, ev):  # noqa: N802 - Qt override
        super().showEvent(ev)
        self.refresh_image()

    def refresh(self) -> None:
        s = self.session
        if s.scan is None:
            return
        if s.scan.is_cartesian:
            self.kstack.setCurrentIndex(0)
            self.kspace_panel.set_image(s.kspace_log_magnitude(), autorange=True)
        else:
            self.kstack.setCurrentIndex(1)
            k = s.kspace()
            mag = (k[s.coil_index].abs() if s.coil_index is not None else k.abs().pow(2).sum(0).sqrt()).numpy()
            traj = s.scan.trajectory
            step = max(1, traj.shape[-1] // 20000)
            v = np.log1p(mag[::step] / (mag.max() or 1) * 1e3)
            lut = self._lut_brushes()
            idx = np.clip((v / (v.max() or 1) * 255).astype(int), 0, 255)
            # draw the brightest (k-space centre) samples last so that they stay visible
            order = np.argsort(idx, kind="stable")
            self.traj_scatter.setData(x=traj[0, ::step][order], y=traj[1, ::step][order],
                                      brush=[lut[i] for i in idx[order]])
            self.traj_plot.setRange(xRange=(-np.pi, np.pi), yRange=(-np.pi, np.pi), padding=0.02)
        where = "coil-combined" if s.coil_index is None else f"coil {s.coil_index + 1}"
        self.caption.setText(f"slice {s.slice_index + 1}/{s.scan.n_slices}, {where}")
        self.refresh_image(autorange=True)

    def refresh_image(self, *_: Any, autorange: bool = False) -> None:
        s = self.session
        if s.scan is None:
            return
        choice = self.image_choice.currentText()
        img = None
        if choice == "reference":
            img = s.reference()
            title = "reference" if img is not None else "reference (none: the scan is undersampled)"
        elif choice == "zero-filled":
            img = s.zero_filled()
            m = s.zero_filled_metrics()
            what = "zero-filled" if s.scan.is_cartesian else "gridded (DCF adjoint)"
            title = f"{what}, {s.sampling_state.describe()}" + (
                f"  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}" if "psnr" in m else "")
            if img is None:
                title += "  (computing…)" if s.derived_pending else f"  ({s.derived_error() or 'not available'})"
        else:
            img = s.full_image()
            title = ("fully sampled, " + ("RSS" if s.coil_index is None else f"coil {s.coil_index + 1}")
                     if img is not None else "fully sampled (not available for this scan)")
        self.image_panel.set_title(title)
        self.image_panel.set_pixel_aspect(s.pixel_aspect)
        self.image_panel.set_image(img, autorange=autorange)


class ScanDock(QtWidgets.QWidget):
    """Slice / coil browsing and the header / attributes of the open scan."""

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.name_label = QtWidgets.QLabel("No scan open. File > Open, drop a file here, or File > Open demo scan.")
        self.name_label.setWordWrap(True)
        lay.addWidget(self.name_label)
        form = QtWidgets.QFormLayout()
        row = QtWidgets.QHBoxLayout()
        self.slice_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slice_slider.setToolTip("slice (Page Up / Page Down)")
        self.slice_spin = QtWidgets.QSpinBox()
        self.slice_spin.setToolTip("slice number (1-based)")
        row.addWidget(self.slice_slider, 1)
        row.addWidget(self.slice_spin)
        form.addRow("Slice", row)
        self.coil_combo = QtWidgets.QComboBox()
        self.coil_combo.setToolTip("coil shown in the k-space and fully sampled views (combined = RSS)")
        form.addRow("Coil", self.coil_combo)
        lay.addLayout(form)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["field", "value"])
        self.tree.setRootIsDecorated(True)
        self.tree.setAlternatingRowColors(True)
        lay.addWidget(self.tree, 1)
        self.slice_slider.valueChanged.connect(lambda v: self._set_slice(v))
        self.slice_spin.valueChanged.connect(lambda v: self._set_slice(v - 1))
        self.coil_combo.currentIndexChanged.connect(self._set_coil)
        session.subscribe("scan", lambda *_: self.refresh())
        session.subscribe("slice", lambda *_: self._sync())
        self.setEnabled(False)

    def _set_slice(self, index: int) -> None:
        if self.session.scan is not None and index != self.session.slice_index:
            self.session.set_slice(index)

    def _set_coil(self, combo_index: int) -> None:
        if self.session.scan is None or combo_index < 0:
            return
        self.session.set_coil(None if combo_index == 0 else combo_index - 1)

    def _sync(self) -> None:
        s = self.session
        for w, v in ((self.slice_slider, s.slice_index), (self.slice_spin, s.slice_index + 1),
                     (self.coil_combo, 0 if s.coil_index is None else s.coil_index + 1)):
            w.blockSignals(True)
            w.setValue(v) if not isinstance(w, QtWidgets.QComboBox) else w.setCurrentIndex(v)
            w.blockSignals(False)

    def refresh(self) -> None:
        s = self.session
        scan = s.scan
        if scan is None:
            return
        self.setEnabled(True)
        self.name_label.setText(f"<b>{scan.name}</b> ({scan.format})")
        self.name_label.setToolTip(scan.path or "")
        for w in (self.slice_slider, self.slice_spin):
            w.blockSignals(True)
        self.slice_slider.setRange(0, scan.n_slices - 1)
        self.slice_spin.setRange(1, scan.n_slices)
        for w in (self.slice_slider, self.slice_spin):
            w.blockSignals(False)
        self.coil_combo.blockSignals(True)
        self.coil_combo.clear()
        self.coil_combo.addItem("combined (RSS)")
        self.coil_combo.addItems([f"coil {c + 1}" for c in range(scan.n_coils)])
        self.coil_combo.blockSignals(False)
        self._sync()
        self.tree.clear()
        summary = QtWidgets.QTreeWidgetItem(self.tree, ["scan", ""])
        for k, v in scan.summary().items():
            QtWidgets.QTreeWidgetItem(summary, [str(k), _short(v)])
        summary.setExpanded(True)
        if scan.attrs:
            attrs = QtWidgets.QTreeWidgetItem(self.tree, ["attributes", ""])
            for k, v in scan.attrs.items():
                QtWidgets.QTreeWidgetItem(attrs, [str(k), _short(v)])
            attrs.setExpanded(True)
        if scan.header_xml:
            xml = QtWidgets.QTreeWidgetItem(self.tree, ["ISMRMRD header", f"{len(scan.header_xml)} characters"])
            for line in scan.header_xml.splitlines()[:400]:
                if line.strip():
                    QtWidgets.QTreeWidgetItem(xml, ["", line.rstrip()])
        self.tree.resizeColumnToContents(0)


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array {v.shape} {v.dtype}" if v.size > 8 else np.array2string(v, precision=4)
    if isinstance(v, (dict, list, tuple)):
        try:
            text = json.dumps(v, default=str)
        except (TypeError, ValueError):
            text = str(v)
    else:
        text = str(v)
    return text if len(text) < 200 else text[:197] + "..."
