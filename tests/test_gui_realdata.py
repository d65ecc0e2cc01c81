"""The desktop app on real scans from ../shared/realdata (skipped when the folder is absent): the same code path as
File > Open, the views against independent numpy formulas, a reconstruction of a real radial scan through the
jobs machinery into the compare grid and the metrics table, reader options, and input files left untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from numpy_reference import np_fft2c, np_ifft2c  # noqa: E402

pytestmark = pytest.mark.realdata

SIGPY = "sigpy_brain8ch_poisson/cartesian_ksp.npy"
CARDIAC = "gpunufft_radial_cardiac12ch/radial_cardiac_25_projections.mat"
HEAD = "marcsous_head8ch_dhe/head.mat"


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def registry():
    from workbench.methods import discover_methods

    return discover_methods([], entry_points=False, builtin=True, user_dirs=False)


@pytest.fixture()
def window(qtbot, settings, registry, messages):
    """The main window on the built-in plugins (conftest's ``window`` uses the test plugins)."""
    from workbench.gui.main_window import MainWindow

    win = MainWindow(settings=settings, registry=registry)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    yield win
    win.close()


def test_real_cartesian_and_radial_scans_reconstruct_into_the_compare_grid(window, realdata, qtbot, messages):
    sigpy, cardiac = realdata / SIGPY, realdata / CARDIAC
    before = {p: sha256(p) for p in (sigpy, cardiac)}
    s = window.session

    # Cartesian, undersampled (Poisson disc), no reference: the scan view shows what was acquired, not an empty
    # reference panel: RSS of the centred inverse FFT of the file's k-space (numpy, independent of the app)
    assert window.open_path(str(sigpy))
    k = np.load(sigpy)
    assert window.scan_view.image_choice.currentText() == "zero-filled"
    expected = np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(0))
    np.testing.assert_allclose(window.scan_view.image_panel.data, expected, rtol=1e-3,
                               atol=1e-4 * expected.max())
    assert window.scan_view.kspace_panel.data.shape == (230, 180)

    # radial: opening returns at once, the gridded image and PSF arrive from the background
    assert window.open_path(str(cardiac))
    assert s.scan.trajectory is not None and window.scan_view.kstack.currentIndex() == 1
    sp = window.sampling_panel
    qtbot.waitUntil(lambda: s.zero_filled() is not None and sp.psf_panel.data is not None, timeout=20000)
    gridded = s.zero_filled()
    assert gridded.shape == (128, 128) and np.isfinite(gridded).all() and gridded.max() > 0
    # the trajectory view colours the acquired spokes by their density compensation (not all ones): small
    # weights at the densely sampled centre
    traj, w = s.trajectory_view()
    r = np.hypot(*traj)
    assert w[r > 2.5].mean() > 3 * w[r < 0.05].mean()

    # zero-filled (adjoint + DCF) through the methods panel and the jobs machinery
    mp = window.methods_panel
    assert mp.select("zero-filled")
    entry = mp.run_current()
    assert entry is not None
    qtbot.waitUntil(lambda: not entry.active, timeout=20000)
    assert entry.state == "done", entry.error
    assert entry.sampling["kind"] == "acquired" and entry.image.shape == (128, 128)
    # the plugin's RSS adjoint and the live gridded image are the same physics
    a, b = np.abs(entry.image).ravel(), gridded.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.99
    jp = window.jobs_panel
    assert jp.table.item(jp.rows[entry.id], 6).text().startswith("done")

    window.tabs.setCurrentWidget(window.compare_view)
    cv = window.compare_view
    qtbot.waitUntil(lambda: entry.id in [c.key for c in cv.grid.columns], timeout=5000)
    col = next(c for c in cv.grid.columns if c.key == entry.id)
    np.testing.assert_allclose(col.image.data, np.abs(entry.image), rtol=1e-6)
    labels = [cv.metrics.table.item(i, 1).text() for i in range(cv.metrics.table.rowCount())]
    assert entry.label in labels and "zero-filled (live)" in labels
    # the shared window comes from robust percentiles: neither all black nor all saturated
    lo, hi = cv.grid.shared_levels
    d = col.image.data
    assert lo == 0 and hi < d.max() and float((d > hi).mean()) < 0.02 and float((d > 0.2 * hi).mean()) > 0.2
    assert messages == []
    assert {p: sha256(p) for p in before} == before  # input files are never modified


def test_reader_options_and_a_bad_option(window, realdata, qtbot, messages):
    """File > Open with options passes key=value options to the reader (the head coil images, opened with the
    documented adapter, give k-space = fft2c of the MATLAB array); an unknown option is a message naming the
    file, and the app keeps the scan it had."""
    from scipy.io import loadmat

    from workbench.gui.open_dialog import OpenOptionsDialog

    head = realdata / HEAD
    before = sha256(head)
    dlg = OpenOptionsDialog(window, path=str(head), options="image_domain=true coil_axis=-1")
    path, options = dlg.result_values()
    assert options == {"image_domain": True, "coil_axis": -1}
    assert window.open_path(path, **options)
    s = window.session
    assert s.scan_options == options
    coils = np.moveaxis(loadmat(head)["data"], -1, 0)
    np.testing.assert_allclose(s.kspace().numpy(), np_fft2c(coils), rtol=1e-4, atol=1e-4 * np.abs(coils).max())
    assert not window.open_path(str(head), no_such_option=1)
    assert messages and "head.mat" in messages[-1][2] and "no_such_option" in messages[-1][2]
    assert s.scan is not None and s.scan_options == options
    # File > Open recent reopens the file with the options it was opened with
    s.scan_options = {}
    assert window._open_recent(str(head)) and s.scan_options == options
    assert sha256(head) == before
