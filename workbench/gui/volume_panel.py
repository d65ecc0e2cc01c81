"""The Volume dock: the "Run on volume" jobs (:mod:`workbench.session.volume_runs`), the chosen one's progress
per slice with Cancel, and its finished slices one at a time (a slider), with their scores. It only shows the
runs' state; the runs themselves are plain Python."""

from __future__ import annotations

import numpy as np
from PyQt6 import QtCore, QtWidgets

from workbench.gui.common import ImagePanel, push_button
from workbench.session.volume_runs import VolumeRun, VolumeRuns


class VolumePanel(QtWidgets.QWidget):
    """Shows the runs of ``runs``; call :meth:`update_run` with a run whenever it changed (on the GUI thread)."""

    def __init__(self, runs: VolumeRuns, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.runs = runs
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        # three short rows beside the image: the dock stays as low as the jobs dock it shares a tab with
        side = QtWidgets.QVBoxLayout()
        side.setSpacing(2)
        self.choice = QtWidgets.QComboBox()
        self.choice.setToolTip("the volume runs of this window, newest last")
        self.choice.currentIndexChanged.connect(lambda *_: self._show_run())
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_button = push_button("Cancel", "stop this volume run (no result file is written)",
                                         self.cancel_current)
        top = QtWidgets.QHBoxLayout()
        for w, stretch in ((self.choice, 1), (self.bar, 2), (self.cancel_button, 0)):
            top.addWidget(w, stretch)
        self.state = QtWidgets.QLabel("no volume run: choose a method and Run on volume")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setToolTip("the finished slices of this run")
        self.slider.valueChanged.connect(lambda *_: self._show_slice())
        self.slice_label = QtWidgets.QLabel("")
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.slice_label, 2)
        side.addLayout(top)
        side.addWidget(self.state)
        side.addLayout(bottom)
        side.addStretch(1)
        lay.addLayout(side, 2)
        self.image = ImagePanel("")
        self.image.base_min_height = 60  # its title must not make the dock taller than the jobs dock
        self.image.setMinimumSize(80, 60)
        lay.addWidget(self.image, 1)
        self._show_run()

    # ----------------------------------------------------------------------------------------------------------
    def current_run(self) -> VolumeRun | None:
        i = self.choice.currentIndex()
        return self.runs.runs[i] if 0 <= i < len(self.runs.runs) else None

    def update_run(self, run: VolumeRun) -> None:
        """``run`` changed (started, progressed, finished a slice, ended): show it (a new run is selected)."""
        if self.choice.count() < len(self.runs.runs):
            for r in self.runs.runs[self.choice.count():]:
                self.choice.addItem(f"#{r.id} {r.label}")
            self.choice.setCurrentIndex(self.choice.count() - 1)
        if run is self.current_run():
            self._show_run()

    def cancel_current(self) -> None:
        run = self.current_run()
        if run is not None:
            run.cancel()

    def _show_run(self) -> None:
        run = self.current_run()
        self.cancel_button.setEnabled(run is not None and run.active)
        if run is None:
            self.bar.setValue(0)
            self.slider.setEnabled(False)
            return
        self.bar.setValue(int(round(1000 * run.progress)))
        self.bar.setFormat(f"{100 * run.progress:.0f}%" + (f" {run.progress_text}" if run.progress_text else ""))
        text = {"failed": f"failed: {run.error}", "done": "done"}.get(run.state, run.state)
        if run.metrics:
            text += f"; volume PSNR {run.metrics['psnr']:.2f} dB, SSIM {run.metrics['ssim']:.4f}"
        if run.path and run.state == "done":
            text += f"; saved {run.path}"
        self.state.setText(text)
        done = run.done_slices
        following = self.slider.value() >= self.slider.maximum()  # at the newest slice: keep following
        self.slider.setEnabled(bool(done))
        self.slider.setRange(0, max(len(done) - 1, 0))
        if following:
            self.slider.setValue(self.slider.maximum())
        self._show_slice()

    def _show_slice(self) -> None:
        run = self.current_run()
        records = run.records if run is not None else []
        k = self.slider.value()
        if not records or k >= len(records):
            self.image.set_image(None)
            self.slice_label.setText("")
            return
        record = records[k]
        image = run.image(record.slice)
        self.image.set_pixel_aspect(run.pixel_aspect)
        self.image.set_image(None if image is None else np.abs(image))
        self.image.set_title(f"{run.method}, slice {record.slice}")
        scores = (f", PSNR {record.metrics['psnr']:.2f} dB, SSIM {record.metrics['ssim']:.4f}"
                  if record.metrics else "")
        self.slice_label.setText(f"slice {record.slice} ({k + 1} of {len(run.slices)}): {record.time_s:.2f} s{scores}")
