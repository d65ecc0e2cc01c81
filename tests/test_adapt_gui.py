"""Scan-specific adaptation in the app: the xpdnet form offers it, the job row shows each adaptation step's
progress text, Cancel stops it, and a finished run records what adaptation did."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from test_gui import kspace, scan_file, wait_done  # noqa: E402,F401 - fixtures
from test_gui_realdata import registry, window  # noqa: E402,F401 - the window on the built-in plugins


def test_adaptation_progress_shows_in_the_job_row_and_cancels(window, scan_file, qtbot, messages):
    from workbench.nn.weights import shipped_weights

    if not shipped_weights("xpdnet").is_file():
        pytest.skip("no shipped xpdnet weights")
    window.open_path(scan_file)
    s = window.session
    s.set_sampling("random", acceleration=3.0, seed=0)
    mp, jp = window.methods_panel, window.jobs_panel
    assert mp.select("xpdnet")
    values = mp.form.values()
    # automatic by default (on for 1-2 coils): the form's "auto" box is ticked
    assert values["adapt"] is None and mp.form.auto_boxes["adapt"].isChecked()
    assert {"adapt_steps", "adapt_seconds", "adapt_lr", "adapt_trainable"} <= set(values)
    qtbot.waitUntil(lambda: mp.run_button.isEnabled(), timeout=10000)

    mp.form.set_values({**values, "adapt": True, "adapt_steps": 100000, "adapt_seconds": 600.0})
    entry = mp.run_current()
    assert entry is not None
    bar = lambda: jp.table.cellWidget(jp.rows[entry.id], 4)  # noqa: E731
    qtbot.waitUntil(lambda: entry.id in jp.rows and "adapting: step" in bar().text(), timeout=20000)
    assert "held-out error" in bar().text()
    s.cancel(entry)
    wait_done(qtbot, entry)
    assert entry.state == "cancelled"

    mp.form.set_values({**values, "adapt": True, "adapt_steps": 2})
    done = mp.run_current()
    wait_done(qtbot, done, timeout=30000)
    assert done.state == "done", done.error
    extras = done.result.extras
    assert extras["adapt_steps"] == 2 and isinstance(extras["adapt_kept"], bool)
    assert messages == []
