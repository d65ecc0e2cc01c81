"""File > Open with options…: a scan file, an optional reader (``format``) and reader options as ``key=value``
words, exactly what ``workbench info FILE --format NAME --option key=value`` takes (docs/formats.md lists them)."""

from __future__ import annotations

import os
import shlex
from typing import Any

from PyQt6 import QtWidgets

from workbench.errors import WorkbenchError
from workbench.gui.common import SCAN_FILTER
from workbench.io.options import parse_value

AUTO = "auto (detect)"
EXAMPLES = ("kspace_var=fwd", "coil_axis=-1", "image_domain=true", "readout_oversampling=2",
            "trajectory=traj_MB1.cfl", "grid_shape=256,256")


def parse_options(text: str) -> dict[str, Any]:
    """``"coil_axis=-1 image_domain=true grid_shape=256,256"`` -> typed options (values as the command line's
    ``--option``: integers, floats, true/false, none, ``a,b`` tuples, else text; quote a value with spaces).
    Words may also be separated by ``;``. Raises ``WorkbenchError`` naming the bad word."""
    try:
        words = shlex.split(text.replace(";", " "))
    except ValueError as exc:  # an unbalanced quote
        raise WorkbenchError(f"reader options: {exc}") from exc
    out: dict[str, Any] = {}
    for w in words:
        key, sep, raw = w.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WorkbenchError(f"reader option {w!r}: expected key=value (e.g. {EXAMPLES[1]})")
        if not key.isidentifier():
            raise WorkbenchError(f"reader option {w!r}: {key!r} is not an option name")
        out[key] = parse_value(raw.strip())
    return out


def format_options(options: dict[str, Any]) -> str:
    """The inverse of :func:`parse_options` for showing remembered options."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "none"
        if isinstance(v, (list, tuple)):
            return ",".join(value(x) for x in v)
        text = str(v)
        return shlex.quote(text) if any(c.isspace() for c in text) else text

    return " ".join(f"{k}={value(v)}" for k, v in options.items())


def reader_names() -> list[str]:
    try:
        from workbench.io import readers

        return [r.name for r in readers()]
    except Exception:  # the dialog still works with automatic detection
        return []


class OpenOptionsDialog(QtWidgets.QDialog):
    """Path, reader and options for :meth:`workbench.session.Session.open`. ``result_values()`` -> (path,
    options with ``format`` when one was chosen)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, path: str = "", options: str = "",
                 start_dir: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Open scan with options")
        self.setMinimumWidth(560)
        self.start_dir = start_dir
        lay = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        row = QtWidgets.QHBoxLayout()
        self.path_edit = QtWidgets.QLineEdit(path)
        self.path_edit.setPlaceholderText("scan file")
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        self.format_combo = QtWidgets.QComboBox()
        self.format_combo.addItem(AUTO)
        self.format_combo.addItems(reader_names())
        self.format_combo.setToolTip("force a reader instead of detecting the format from the content")
        form.addRow("Reader", self.format_combo)
        self.options_edit = QtWidgets.QLineEdit(options)
        self.options_edit.setPlaceholderText(" ".join(EXAMPLES[:3]))
        self.options_edit.setToolTip("reader options as key=value words separated by spaces (see docs/formats.md);"
                                     "\nvalues: integers, floats, true/false, none, a,b tuples, text")
        form.addRow("Options", self.options_edit)
        lay.addLayout(form)
        hint = QtWidgets.QLabel("Options go to the reader; an option it does not know is an error. Examples: "
                                + ", ".join(EXAMPLES) + ".")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.error_label = QtWidgets.QLabel("")
        self.error_label.setStyleSheet("QLabel { color: #e0605a; }")
        self.error_label.setWordWrap(True)
        lay.addWidget(self.error_label)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Open
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        start = self.path_edit.text() or self.start_dir
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open scan", start, SCAN_FILTER)
        if path:
            self.path_edit.setText(path)

    def result_values(self) -> tuple[str, dict[str, Any]]:
        """(path, options); raises ``WorkbenchError`` for unparsable options or an empty path."""
        path = self.path_edit.text().strip()
        if not path:
            raise WorkbenchError("choose a scan file")
        options = parse_options(self.options_edit.text())
        if self.format_combo.currentText() != AUTO:
            options["format"] = self.format_combo.currentText()
        return os.path.expanduser(path), options

    def _accept(self) -> None:
        try:
            self.result_values()
        except WorkbenchError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()
