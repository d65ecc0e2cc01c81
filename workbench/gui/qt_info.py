"""What Qt says about its own installation, for ``workbench doctor`` (which lives outside this Qt-only package and
imports this module only to ask)."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph
from PyQt6 import QtCore


def qt_installation() -> dict[str, object]:
    """PyQt6's, Qt's and pyqtgraph's versions and the folder of Qt's platform plugins (``libqxcb.so`` ...)."""
    plugins = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath))
    return {"pyqt": QtCore.PYQT_VERSION_STR, "qt": QtCore.QT_VERSION_STR, "pyqtgraph": pyqtgraph.__version__,
            "platform_plugins": plugins / "platforms"}
