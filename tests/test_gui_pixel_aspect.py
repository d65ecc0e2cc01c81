"""Non-square pixels (``Scan.pixel_aspect``): an asymmetric echo's band (``symmetric_echo=true``) has the same
field of view in fewer readout pixels, and the image views draw each pixel that much taller, so the object keeps
its shape; the metrics are those of the band's own reference."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import shown_compare_view

pytest.importorskip("pytestqt")

H, W, C, FRONT = 48, 20, 3, 12  # 12 readout rows never acquired: the band is rows 12..35, 24 of 48


@pytest.fixture()
def asymmetric_file(tmp_path):
    y, x = np.mgrid[:H, :W]
    disc = (((y - H / 2) / (0.35 * H)) ** 2 + ((x - W / 2) / (0.35 * W)) ** 2 < 1).astype(np.float32)
    coils = np.stack([disc * np.exp(1j * (c + 1) * x / W) for c in range(C)])
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coils, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    k[:, :FRONT] = 0
    path = tmp_path / "asym.npy"
    np.save(path, k.astype(np.complex64))
    return path


def drawn_height_over_width(panel) -> float:
    rect = panel.image_item.mapRectToScene(panel.image_item.boundingRect())
    return rect.height() / rect.width()


def test_views_draw_the_band_with_the_full_readouts_proportions(qtbot, asymmetric_file, tmp_path):
    from workbench.gui.common import Dispatcher
    from workbench.gui.scan_view import ScanView
    from workbench.session import Session

    shapes = {}
    for option in (False, True):
        # as the app does: the session's events (background results) reach the views on the GUI thread
        session = Session(device="cpu", dispatch=Dispatcher())
        try:
            session.open(asymmetric_file, symmetric_echo=option)
            assert session.pixel_aspect == (2.0 if option else 1.0)  # 48 rows -> 24 over the same field of view
            view = ScanView(session)
            qtbot.addWidget(view)
            view.resize(700, 500)
            view.show()
            view.image_choice.setCurrentText("fully sampled")  # the image of every acquired sample: both scans
            view.refresh()
            panel = view.image_panel
            qtbot.waitUntil(lambda: panel.data is not None, timeout=20000)
            assert panel.view.state["aspectLocked"] == pytest.approx(1.0 / session.pixel_aspect)
            qtbot.wait(300)  # the layout settles and the view fits the image
            shapes[option] = (panel.data.shape, drawn_height_over_width(panel))
            if option:
                session.set_sampling("random", acceleration=2, seed=0, center_fraction=0.2)
                compare = shown_compare_view(qtbot, session)
                grid = compare.grid
                assert grid.columns and all(c.image.pixel_aspect == 2.0 for c in grid.columns)
                assert all(c.error.pixel_aspect == 2.0 for c in grid.columns if c.error is not None)
                assert grid._aspect() == pytest.approx(24 / W * 2.0)  # the layout plans for the drawn height
                rows = {r["label"]: r for r in session.comparison_rows()}
                assert rows["zero-filled (live)"]["psnr"] is not None  # the band has its own reference
                # the exported figure draws the tiles as the views do: twice as tall as the pixel count says
                from PyQt6 import QtGui

                compare.export_figure(str(tmp_path / "figure.png"))
                drawn = QtGui.QImage(str(tmp_path / "figure.png")).height()
                from workbench.gui.figure import render_figure

                square = render_figure(grid.figure_columns(), caption=compare.figure_caption()).height()
                n_rows = 1 + any(c.error is not None for c in grid.columns)
                tile = round(256 * 24 / W)  # a 24 x 20 tile 256 pixels wide, with square pixels
                assert drawn - square == n_rows * (round(256 * 24 / W * 2.0) - tile)
                compare.close()
            view.close()  # hidden before its session shuts down: a view left painting over a shut-down session and
            # a rendered figure crashed in QPainter::drawImage (offscreen, in pytest only, not found in the app)
        finally:
            session.shutdown()
    (full_shape, full_ratio), (band_shape, band_ratio) = shapes[False], shapes[True]
    assert full_shape == (H, W) and band_shape == (24, W)
    # the same field of view: drawn in the same proportions although the band has half the readout pixels
    assert band_ratio == pytest.approx(full_ratio, rel=0.02) and full_ratio == pytest.approx(H / W, rel=0.02)
