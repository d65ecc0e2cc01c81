"""The metrics table on a laptop screen: the columns that rank the rows (label, the scores with their mode, the
hold-out score) and the start of the parameters (where the weight a method chose is) fit without scrolling."""

from __future__ import annotations

import pytest

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
