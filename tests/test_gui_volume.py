"""The app's "Run on volume": one background job over every slice, its progress and slices in the Volume dock,
Cancel, one result file."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from workbench.io.fastmri import write_fastmri  # noqa: E402
from workbench.volume import load_volume  # noqa: E402

N_SLICES = 3


@pytest.fixture()
def volume_file(tmp_path):
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((N_SLICES, 2, 32, 32)) + 1j * rng.standard_normal((N_SLICES, 2, 32, 32)))
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    path = tmp_path / "vol.h5"
    write_fastmri(path, k.astype(np.complex64), np.sqrt((np.abs(image) ** 2).sum(1)).astype(np.float32))
    return str(path)


def test_run_on_volume_shows_every_slice_and_saves_one_file(window, volume_file, tmp_path, qtbot):
    window.open_path(volume_file)
    assert window.methods_panel.select("test-zf")
    out = str(tmp_path / "result.h5")
    run = window.run_volume(path=out)
    assert run is not None and window.volume_dock.isVisible()
    qtbot.waitUntil(lambda: run.state == "done", timeout=30000)
    panel = window.volume_panel
    qtbot.waitUntil(lambda: "done" in panel.state.text())
    assert panel.current_run() is run and panel.slider.maximum() == N_SLICES - 1
    assert not panel.cancel_button.isEnabled() and panel.bar.value() == 1000
    for k in range(N_SLICES):  # every slice is viewable, one at a time
        panel.slider.setValue(k)
        assert panel.slice_label.text().startswith(f"slice {k} ({k + 1} of {N_SLICES})")
        np.testing.assert_allclose(panel.image.data, np.abs(run.image(k)))
    vol = load_volume(out)
    assert vol["slices"] == list(range(N_SLICES)) and vol["meta"]["method"] == "test-zf"
    assert window.session.results == []  # one volume job, not one result per slice


def test_cancel_a_volume_run_leaves_no_file(window, volume_file, tmp_path, qtbot):
    window.open_path(volume_file)
    assert window.methods_panel.select("test-slow")
    run = window.run_volume(path=str(tmp_path / "never.h5"))
    qtbot.waitUntil(lambda: run.state == "running" and window.volume_panel.cancel_button.isEnabled(), timeout=30000)
    window.volume_panel.cancel_button.click()
    qtbot.waitUntil(lambda: run.state == "cancelled", timeout=30000)
    qtbot.waitUntil(lambda: "cancelled" in window.volume_panel.state.text())
    assert sorted(os.listdir(tmp_path)) == ["settings.ini", "vol.h5"]
