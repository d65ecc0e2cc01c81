"""Application entry point: ``workbench`` / ``workbench FILE`` / ``workbench --demo`` call :func:`run_app`."""

from __future__ import annotations

import os
import sys
from typing import Iterable

from PyQt6 import QtCore, QtWidgets

ORGANISATION = "mri-workbench"
APPLICATION = "workbench"


def make_application(argv: list[str] | None = None) -> QtWidgets.QApplication:
    """The QApplication (created once; reused when it exists, e.g. under pytest-qt)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(argv if argv is not None else [sys.argv[0]])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("MRI Workbench")
    return app  # type: ignore[return-value]


def run_app(file: str | None = None, demo: bool = False, plugin_dirs: Iterable[str] = ()) -> int:
    """Open the main window (on ``file``, or on the demo scan with ``demo``) and run the event loop; returns the
    exit status."""
    app = make_application()
    from workbench.gui.main_window import MainWindow

    win = MainWindow(plugin_dirs=plugin_dirs)
    win.show()
    if file:
        QtCore.QTimer.singleShot(0, lambda: win.open_path(os.fspath(file)))
    elif demo:
        QtCore.QTimer.singleShot(0, win.open_demo)
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_app(*(sys.argv[1:2] or [None])))
