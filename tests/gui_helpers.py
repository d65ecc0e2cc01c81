"""Helpers the pytest-qt tests share."""

from __future__ import annotations


def shown_compare_view(qtbot, session, size: tuple[int, int] = (900, 700), rebuild: bool = True):
    """A CompareView of ``session``, owned by ``qtbot``, resized to ``size`` and shown (and rebuilt at once)."""
    from workbench.gui.compare_view import CompareView

    view = CompareView(session)
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    if rebuild:
        view.rebuild(force=True)
    return view
