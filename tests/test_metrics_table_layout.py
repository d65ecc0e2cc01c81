"""The metrics table on a laptop screen: the columns that rank the rows (label, the scores with their mode, the
hold-out score) and the start of the parameters (where the weight a method chose is) fit without scrolling."""

from __future__ import annotations

import pytest
from gui_helpers import shown_compare_view

pytest.importorskip("pytestqt")


def _row(key, label, params, holdout=None, note=""):
    return {"key": key, "label": label, "method": label, "slice": 0, "psnr": 28.0812, "ssim": 0.53321,
            "nmse": 0.0290123, "score_mode": "as-acquired", "score_error": None, "holdout": holdout,
            "holdout_note": note, "time_s": 3.21, "device": "cpu", "params": params, "chosen": "",
            "sampling": "random R=4 seed=0 (R_eff 3.76)", "acceleration": 3.76}


def test_scores_and_holdout_fit_the_compare_tab_of_a_1280_pixel_screen(qtbot):
    from workbench.gui.compare.metrics_table import HOLDOUT_COLUMN, PARAMETERS_COLUMN, MetricsTable

    table = MetricsTable()
    qtbot.addWidget(table)
    table.resize(760, 160)  # the compare tab's width beside the scan and methods docks on a 1280x720 screen
    table.show()
    long = ("lam=auto 0.004716 (discrepancy), n_iter=100, wavelet=db4, levels=4, tol=1e-05, "
            "density_weighting=True, step=None")
    table.setData([_row("zero-filled", "zero-filled (live)", "", 0.1343),
                   _row(1, "l1-wavelet", long, None, "running 40%"),
                   _row(2, "fused-lasso #2", long, 0.0812)], 0, {})
    qtbot.wait(50)
    t = table.table
    visible = t.viewport().width()
    right = [t.columnViewportPosition(c) + t.columnWidth(c) for c in range(PARAMETERS_COLUMN)]
    assert right[HOLDOUT_COLUMN] <= visible and right[-1] <= visible
    # the parameters start in view, with room for the chosen weight ("lam=auto 0.004716"); whole in the tooltip
    assert t.columnViewportPosition(PARAMETERS_COLUMN) + t.fontMetrics().horizontalAdvance("lam=auto 0.004716") \
        <= visible
    assert t.item(1, PARAMETERS_COLUMN).toolTip() == long
    # every score header names the mode; the hold-out cell of a running validation says so
    assert all(t.horizontalHeaderItem(c).text().endswith("as-acquired") for c in (2, 3, 4))
    assert table.holdout_text(1) == "running 40%" and table.holdout_text(2) == "0.0812"


def test_rows_without_scores_hide_the_score_columns(qtbot):
    from workbench.gui.compare.metrics_table import HOLDOUT_COLUMN, MetricsTable

    table = MetricsTable()
    qtbot.addWidget(table)
    unscored = [dict(_row(k, label, "", h), psnr=None, ssim=None, nmse=None)
                for k, label, h in (("zero-filled", "zero-filled (live)", 0.432), (1, "cg-sense", 0.3521))]
    table.setData(unscored, 0, {})
    assert all(table.table.isColumnHidden(c) for c in (2, 3, 4)) and not table.table.isColumnHidden(HOLDOUT_COLUMN)
    # a row that has scores, or says why it has none in this mode, brings them back
    table.setData(unscored + [_row(2, "tv", "", 0.35)], 0, {})
    assert not any(table.table.isColumnHidden(c) for c in (2, 3, 4))
    table.setData([dict(unscored[1], score_error="the object mask is empty")], 0, {})
    assert not table.table.isColumnHidden(2)


def test_images_without_error_maps_leave_their_unused_height_to_the_table(qtbot):
    import numpy as np

    from workbench.gui.common import Dispatcher
    from workbench.methods import discover_methods
    from workbench.scan import scan_from_arrays
    from workbench.session import Session
    from workbench.simulate import generate_slice

    k = generate_slice(3, shape=(64, 64), n_coils=4)["kspace"]
    mask = np.zeros((64, 64), bool)
    mask[:, ::2] = mask[:, 26:38] = True  # measured on lines, no reference: a prospective scan
    session = Session(device="cpu", dispatch=Dispatcher())
    try:
        session.set_scan(scan_from_arrays((k * mask)[None].astype(np.complex64)))
        view = shown_compare_view(qtbot, session, (1100, 700), rebuild=False)  # first two bands of panels (3 + 2) ...
        zf = discover_methods().get("zero-filled")
        entries = [session.run(zf, {}) for _ in range(4)]
        qtbot.waitUntil(lambda: all(e.state == "done" for e in entries), timeout=60000)
        view.rebuild(force=True)
        qtbot.waitUntil(lambda: view.grid.per_band < 5, timeout=5000)
        view.resize(760, 450)  # ... then one: the rows of the band that went take no height
        qtbot.waitUntil(lambda: view.grid.per_band == 5, timeout=5000)
        total = sum(view.splitter.sizes())
        # five square images side by side need about a third of the height the default share (3/4) gives them
        qtbot.waitUntil(lambda: view.splitter.sizes()[1] > total // 4 + 40, timeout=5000)
        assert view.grid.slack() < 24
        qtbot.wait(100)
        panel = view.grid.columns[1].image
        assert panel.height() > 0.9 * panel.width()  # square images as wide as their panels
        # a divider the user moved stays where it is
        view.splitter.splitterMoved.emit(100, 1)
        view.splitter.setSizes([total - 80, 80])
        moved = view.splitter.sizes()
        view.shown[entries[0].id] = False  # another layout of the panels
        view.rebuild(force=True)
        qtbot.wait(200)
        assert view.splitter.sizes() == moved
    finally:
        session.shutdown()
