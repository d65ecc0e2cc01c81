"""A form generated from a method's parameter declarations (``workbench.methods.ParamSpec``)."""

from __future__ import annotations

import math
from typing import Any

from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.methods import ParamSpec


class LogSpinBox(QtWidgets.QDoubleSpinBox):
    """A spin box whose arrows multiply / divide (for regularisation weights spanning decades)."""

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        v = self.value()
        if v <= 0:
            v = max(self.minimum(), 1e-6)
        self.setValue(v * 10 ** (steps / 4))

    def textFromValue(self, v: float) -> str:  # noqa: N802
        return f"{v:.4g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # accept scientific notation ("1e-05")
        try:
            float(text)
            return QtGui.QValidator.State.Acceptable, text, pos
        except ValueError:
            return QtGui.QValidator.State.Intermediate, text, pos


class ParamForm(QtWidgets.QWidget):
    """Editors for a list of :class:`ParamSpec`; :meth:`values` returns ``{name: value}`` (None = automatic).

    Signals:
        changed(): any value changed.
    """

    changed = QtCore.pyqtSignal()

    def __init__(self, specs: list[ParamSpec] | None = None, parent: QtWidgets.QWidget | None = None,
                 empty_text: str = "(no parameters)"):
        super().__init__(parent)
        self.empty_text = empty_text
        self.form = QtWidgets.QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.specs: list[ParamSpec] = []
        self.editors: dict[str, QtWidgets.QWidget] = {}
        self.auto_boxes: dict[str, QtWidgets.QCheckBox] = {}
        self.set_specs(specs or [])

    def set_specs(self, specs: list[ParamSpec]) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.specs = list(specs)
        self.editors.clear()
        self.auto_boxes.clear()
        if not specs and self.empty_text:
            self.form.addRow(QtWidgets.QLabel(self.empty_text))
        for spec in specs:
            editor = self._editor(spec)
            tip = _tooltip(spec)
            editor.setToolTip(tip)
            self.editors[spec.name] = editor
            field: QtWidgets.QWidget = editor
            if spec.optional:
                box = QtWidgets.QCheckBox("auto")
                box.setToolTip("let the method choose this value (reported with the result)")
                box.toggled.connect(lambda on, e=editor: (e.setEnabled(not on), self.changed.emit()))
                box.setChecked(spec.default is None)
                editor.setEnabled(spec.default is not None)
                self.auto_boxes[spec.name] = box
                field = QtWidgets.QWidget()
                h = QtWidgets.QHBoxLayout(field)
                h.setContentsMargins(0, 0, 0, 0)
                h.addWidget(editor, 1)
                h.addWidget(box)
            label = QtWidgets.QLabel(spec.label + (f" ({spec.unit})" if spec.unit else ""))
            label.setToolTip(tip)
            self.form.addRow(label, field)

    def _editor(self, spec: ParamSpec) -> QtWidgets.QWidget:
        default = spec.default
        if spec.choices is not None:
            w = QtWidgets.QComboBox()
            for c in spec.choices:
                w.addItem(str(c), c)
            if default is not None and default in spec.choices:
                w.setCurrentIndex(list(spec.choices).index(default))
            w.currentIndexChanged.connect(self.changed)
            return w
        if spec.type is bool:
            w = QtWidgets.QCheckBox()
            w.setChecked(bool(default))
            w.toggled.connect(self.changed)
            return w
        if spec.type is int:
            w = QtWidgets.QSpinBox()
            w.setRange(int(spec.min) if spec.min is not None else -(2**31) + 1,
                       int(spec.max) if spec.max is not None else 2**31 - 1)
            if default is not None:
                w.setValue(int(default))
            w.valueChanged.connect(self.changed)
            return w
        if spec.type is float:
            w = LogSpinBox() if spec.log_scale else QtWidgets.QDoubleSpinBox()
            lo = spec.min if spec.min is not None else -1e12
            hi = spec.max if spec.max is not None else 1e12
            w.setDecimals(8 if spec.log_scale else _decimals(spec))
            w.setRange(lo, hi)
            if not spec.log_scale:
                span = (hi - lo) if spec.min is not None and spec.max is not None else abs(default or 1.0)
                w.setSingleStep(_nice_step(span))
            if default is not None:
                w.setValue(float(default))
            elif spec.min is not None and spec.max is not None and spec.log_scale:
                w.setValue(math.sqrt(max(spec.min, 1e-12) * spec.max))
            w.valueChanged.connect(self.changed)
            return w
        w = QtWidgets.QLineEdit("" if default is None else str(default))
        w.textChanged.connect(self.changed)
        return w

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self.specs:
            if spec.name in self.auto_boxes and self.auto_boxes[spec.name].isChecked():
                out[spec.name] = None
                continue
            w = self.editors[spec.name]
            if isinstance(w, QtWidgets.QComboBox):
                out[spec.name] = w.currentData()
            elif isinstance(w, QtWidgets.QCheckBox):
                out[spec.name] = w.isChecked()
            elif isinstance(w, QtWidgets.QSpinBox):
                out[spec.name] = int(w.value())
            elif isinstance(w, QtWidgets.QDoubleSpinBox):
                out[spec.name] = float(w.value())
            else:
                out[spec.name] = w.text()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for spec in self.specs:
            if spec.name not in values:
                continue
            v = values[spec.name]
            if spec.name in self.auto_boxes:
                self.auto_boxes[spec.name].setChecked(v is None)
                if v is None:
                    continue
            w = self.editors[spec.name]
            if isinstance(w, QtWidgets.QComboBox):
                i = w.findData(v)
                if i >= 0:
                    w.setCurrentIndex(i)
            elif isinstance(w, QtWidgets.QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
                w.setValue(v)
            else:
                w.setText(str(v))


def _tooltip(spec: ParamSpec) -> str:
    parts = [spec.help or spec.label]
    rng = []
    if spec.min is not None:
        rng.append(f"min {spec.min:g}")
    if spec.max is not None:
        rng.append(f"max {spec.max:g}")
    if rng:
        parts.append(", ".join(rng) + (f" {spec.unit}" if spec.unit else ""))
    parts.append(f"default: {spec.default!r}" + ("; empty/auto: chosen by the method" if spec.optional else ""))
    return "\n".join(parts)


def _decimals(spec: ParamSpec) -> int:
    vals = [abs(v) for v in (spec.default, spec.min, spec.max) if isinstance(v, (int, float)) and v]
    smallest = min(vals) if vals else 1.0
    return int(min(8, max(2, 3 - math.floor(math.log10(smallest)))))


def _nice_step(span: float) -> float:
    if not math.isfinite(span) or span <= 0:
        return 0.1
    return 10 ** math.floor(math.log10(span / 20)) if span > 0 else 0.1
