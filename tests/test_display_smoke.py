"""The app on a real X display (``make smoke``: Xvfb, Qt's xcb platform plugin and its system libraries).

The offscreen suite never loads the xcb plugin, so a machine without Qt's X libraries passes it and still cannot
open the app; this test is what catches that in CI. It is skipped unless Qt runs on xcb.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.display


def test_the_app_opens_the_demo_on_a_real_display(qtbot, settings, messages):
    from PyQt6 import QtGui, QtWidgets

    if QtGui.QGuiApplication.platformName() != "xcb":
        pytest.skip("needs a real X display through Qt's xcb plugin: run `make smoke`")
    from workbench.gui.main_window import MainWindow

    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win, timeout=10000)
    assert win.open_demo(), messages
    qtbot.waitUntil(lambda: win.session.scan is not None, timeout=60000)
    qtbot.wait(500)
    QtWidgets.QApplication.processEvents()

    shot = win.screen().grabWindow(0).toImage().convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    assert shot.width() > 0 and shot.height() > 0
    ptr = shot.constBits()
    ptr.setsize(shot.sizeInBytes())
    pixels = np.frombuffer(ptr, np.uint8).reshape(shot.height(), shot.bytesPerLine())[:, : shot.width()]
    # A window with the demo image and its panels drawn: many grey levels, not one flat colour.
    assert len(np.unique(pixels)) > 32
    # the first window fits the screen: every dock and the status bar are on it (issue 17: a 1500x950 window
    # put the Methods and Jobs docks and the status bar off a 1366x768 screen)
    available = win.screen().availableGeometry()
    assert available.contains(win.frameGeometry()), (win.frameGeometry(), available)
    for w in (win.scan_dock, win.methods_dock, win.jobs_dock, win.statusBar()):
        assert w.isVisible() and win.rect().contains(w.geometry()), w
    out = os.environ.get("WORKBENCH_SMOKE_SCREENSHOT")
    if out:
        win.screen().grabWindow(0).save(out)
    assert messages == []
    win.close()
