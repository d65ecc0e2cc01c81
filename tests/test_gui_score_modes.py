"""The Compare tab's scoring-mode combo: switching it changes the session's mode, the metrics table's numbers and
headers, and the error maps (object: zero outside the object mask; as-acquired: of the image as a scan)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.io.fastmri import write_fastmri
from workbench.simulate import generate_slice

pytest.importorskip("pytestqt")


@pytest.fixture()
def compare(qtbot, tmp_path):
    from workbench.gui.compare.columns import ZERO_FILLED
    from workbench.gui.compare_view import CompareView
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
    view = CompareView(session)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    view.rebuild(force=True)
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
