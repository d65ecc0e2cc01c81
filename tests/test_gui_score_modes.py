"""The Compare tab's scoring-mode combo: switching it changes the session's mode, the metrics table's numbers and
headers, and the error maps (object: zero outside the object mask; as-acquired: of the image as a scan)."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import shown_compare_view

from workbench.io.fastmri import write_fastmri
from workbench.simulate import generate_slice

pytest.importorskip("pytestqt")


@pytest.fixture()
def compare(qtbot, tmp_path):
    from workbench.gui.compare.columns import ZERO_FILLED
    from workbench.session import Session

    s = generate_slice(4, shape=(64, 64), n_coils=4)
    rng = np.random.default_rng(0)
    k = s["kspace"] + 0.01 * np.abs(s["kspace"]).max() * (rng.standard_normal(s["kspace"].shape)
                                                           + 1j * rng.standard_normal(s["kspace"].shape))
    ref = np.sqrt((np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                                          axes=(-2, -1))) ** 2).sum(0)).astype(np.float32)
    path = tmp_path / "slice.h5"
    write_fastmri(path, k[None].astype(np.complex64), ref[None])
    session = Session(device="cpu")
    session.open(path)
    session.set_sampling("random", acceleration=4, seed=0, center_fraction=0.16)
    view = shown_compare_view(qtbot, session)
    yield view, session, ZERO_FILLED
    session.shutdown()


def test_score_mode_combo_switches_table_and_error_maps(compare, qtbot):
    view, session, zero_filled = compare
    table = view.metrics.table

    def zero_filled_row():
        row = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == "zero-filled (live)")
        return float(table.item(row, 2).text()), float(table.item(row, 3).text())

    def error():
        col = next(c for c in view.column_data([zero_filled]) if c.key == zero_filled)
        return col.error

    seen = {}
    for mode in ("fastmri", "object", "as-acquired"):
        view.score_combo.setCurrentText(mode)
        qtbot.waitUntil(lambda: session.score_mode == mode, timeout=2000)
        view.rebuild(force=True)
        assert table.horizontalHeaderItem(2).text().endswith(mode)
        seen[mode] = (zero_filled_row(), error())
    (f_row, f_err), (o_row, o_err), (a_row, a_err) = seen["fastmri"], seen["object"], seen["as-acquired"]
    assert len({f_row, o_row, a_row}) == 3  # every mode gives other numbers
    region = session.views.region()
    assert not o_err[~region].any() and np.array_equal(o_err[region], f_err[region])  # object: inside only
    assert not np.allclose(a_err, f_err)  # as-acquired: the image as a scan, noise floor added
    # the session's mode shows in the combo when set elsewhere
    session.score_mode = "object"
    assert view.score_combo.currentText() == "object"


def test_object_outline_toggle_draws_the_mask_boundary_and_the_figure_names_the_mode(compare, qtbot, tmp_path):
    from PyQt6 import QtGui

    from workbench.gui.compare.grid import outline_path
    from workbench.scoring import object_outline

    view, session, _ = compare
    region = session.views.region()
    panel = view.grid.columns[0].image
    assert getattr(panel, "outline_item", None) is None or not panel.outline_item.isVisible()
    view.outline_box.setChecked(True)
    panel = view.grid.columns[0].image  # the grid was rebuilt
    assert panel.outline_item.isVisible()
    x, y = panel.outline_item.getData()
    # the drawn path runs between the pixels inside the mask and those outside: every vertex of it has a
    # pixel of the mask and a pixel outside it among the (up to) four pixels around it
    pts = np.stack([y, x], 1)[np.isfinite(x)]
    h, w = region.shape
    for r, c in pts[:: max(1, len(pts) // 200)]:
        rows = {int(np.floor(r - 0.5)), int(np.ceil(r - 0.5))}
        cols = {int(np.floor(c - 0.5)), int(np.ceil(c - 0.5))}
        around = [region[i, j] if 0 <= i < h and 0 <= j < w else False for i in rows for j in cols]
        assert any(around) and not all(around), (r, c)
    assert np.isnan(outline_path(object_outline(region))[0]).sum() == len(object_outline(region))
    # the exported figure names the scoring mode and draws the outline over its images
    session.score_mode = "object"
    assert view.figure_caption().startswith("Scores: object mode") and "outline" in view.figure_caption()
    assert "PSNR" in view.grid.figure_columns()[1].subtitle
    view.export_figure(str(tmp_path / "with.png"), "title")
    view.outline_box.setChecked(False)
    assert "outline" not in view.figure_caption()
    view.export_figure(str(tmp_path / "without.png"), "title")
    a = QtGui.QImage(str(tmp_path / "with.png"))
    b = QtGui.QImage(str(tmp_path / "without.png"))

    def cyan(img):
        arr = np.frombuffer(img.convertToFormat(QtGui.QImage.Format.Format_RGB888).constBits().asstring(
            img.width() * img.height() * 3), np.uint8).reshape(img.height(), img.width(), 3).astype(int)
        return int(((arr[..., 2] > 200) & (arr[..., 1] > 150) & (arr[..., 0] < 90)).sum())

    assert cyan(a) > cyan(b) + 300  # the outline: about its length in cyan pixels per image


def _prospective_scan():
    """A 4-coil 64x64 slice measured on a random line mask (R about 3, no reference stored): a prospective scan."""
    from workbench.sampling import make_sampling
    from workbench.scan import scan_from_arrays

    s = generate_slice(3, shape=(64, 64), n_coils=4)
    mask = make_sampling("random", (64, 64), 3, seed=1, center_fraction=0.16).mask.numpy()
    rng = np.random.default_rng(1)
    k = s["kspace"] + 0.005 * np.abs(s["kspace"]).max() * (rng.standard_normal(s["kspace"].shape)
                                                            + 1j * rng.standard_normal(s["kspace"].shape))
    return scan_from_arrays((k * mask)[None].astype(np.complex64))


FAST = {"cg-sense": None, "l1-wavelet": {"lam": None, "n_iter": 10, "search_iter": 5}}


def test_every_run_of_a_scan_without_reference_gets_its_holdout_score_in_the_table(qtbot):
    from workbench.gui.common import Dispatcher
    from workbench.gui.compare.metrics_table import HOLDOUT_COLUMN
    from workbench.methods import discover_methods
    from workbench.session import ACQUIRED, Session

    session = Session(device="cpu", dispatch=Dispatcher())
    try:
        session.set_scan(_prospective_scan())
        assert session.sampling_state.kind == ACQUIRED and session.reference() is None
        view = shown_compare_view(qtbot, session, rebuild=False)
        methods = discover_methods()
        entries = [session.run(methods.get(m), p) for m, p in FAST.items()]
        # nobody asks: without a reference each finished run is validated at once (background jobs)
        qtbot.waitUntil(lambda: all(e.holdout and e.holdout.get("holdout_nmse") is not None for e in entries),
                        timeout=120000)
        view.refresh_table()
        rows = {r["label"]: r for r in session.comparison_rows()}
        assert set(rows) == {"zero-filled (live)", "cg-sense", "l1-wavelet"}
        assert all(r["holdout"] is not None and r["psnr"] is None for r in rows.values())
        # it ranks the regularised reconstruction above zero filling; the table shows the numbers
        assert rows["l1-wavelet"]["holdout"] < rows["zero-filled (live)"]["holdout"]
        for key in ("zero-filled", entries[0].id, entries[1].id):
            assert view.metrics.holdout_text(key) not in ("", "n/a")
        assert all(e.holdout["holdout_folds"] >= 2 and e.holdout["holdout_lines"] for e in entries)
        assert "hold-out" in view.metrics.table.horizontalHeaderItem(HOLDOUT_COLUMN).text()
    finally:
        session.shutdown()


def test_validate_button_scores_every_row_in_the_background_with_progress(compare, qtbot):
    from workbench.gui.common import Dispatcher
    from workbench.methods import discover_methods

    view, session, zero_filled = compare
    session.dispatch = Dispatcher()
    methods = discover_methods()
    entries = [session.run(methods.get(m), p) for m, p in FAST.items()]
    qtbot.waitUntil(lambda: all(e.state == "done" for e in entries), timeout=120000)
    view.rebuild(force=True)
    # the exported figure names the weight l1-wavelet chose and the rule (as the table and job details do)
    l1 = next(c for c in view.grid.figure_columns() if c.title == "l1-wavelet")
    assert entries[1].chosen_text() and entries[1].chosen_text() in l1.subtitle and "discrepancy" in l1.subtitle
    # with a reference nothing is validated unless asked
    assert all(e.holdout is None for e in entries) and view.metrics.holdout_text(zero_filled) == ""
    view.metrics.validate_button.click()
    # the runs go on in the background; their rows say so meanwhile
    assert all(view.metrics.holdout_text(e.id).startswith("running") for e in entries)
    qtbot.waitUntil(lambda: all(e.holdout.get("holdout_nmse") is not None for e in entries), timeout=120000)
    view.refresh_table()
    texts = {k: view.metrics.holdout_text(k) for k in (zero_filled, entries[0].id, entries[1].id)}
    numbers = {k: float(t.split(" ± ")[0]) for k, t in texts.items()}
    # the runs' scores carry their standard error over the folds; zero filling's, which no fold changes, none
    assert "±" not in texts[zero_filled]
    for e in entries:
        assert float(texts[e.id].split(" ± ")[1]) == pytest.approx(e.holdout["holdout_nmse_se"], rel=0.05)
    # here (a reference exists) it ranks the three rows as the reference's NMSE does
    nmse = {r["key"]: r["nmse"] for r in session.comparison_rows()}
    assert sorted(numbers, key=numbers.get) == sorted(numbers, key=nmse.get)
    for e in entries:
        assert numbers[e.id] == pytest.approx(e.holdout["holdout_nmse"], rel=1e-3) and 0 < numbers[e.id] < 2
