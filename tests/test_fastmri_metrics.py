"""workbench.fastmri_metrics gives scikit-image's PSNR and SSIM (the fastMRI evaluation) without importing it."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from workbench import fastmri_metrics as fm


def _pair(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = np.abs(rng.standard_normal(shape))
    a[: shape[0] // 2] *= 5  # two intensity levels: windows of very different variance
    b = a + 0.1 * rng.standard_normal(shape)
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 9), (33, 20), (160, 96)])
def test_ssim_matches_scikit_image(shape, dtype):
    a, b = _pair(shape, dtype)
    expected, expected_map = structural_similarity(a, b, data_range=6.0, win_size=7, full=True)
    got, got_map = fm.structural_similarity(a, b, data_range=6.0, win_size=7, full=True)
    assert got == pytest.approx(expected, abs=1e-10)
    assert fm.structural_similarity(a, b, data_range=6.0) == pytest.approx(expected, abs=1e-10)
    assert got_map.dtype == expected_map.dtype and got_map.shape == expected_map.shape
    # the whole map, border included (scipy's mirrored border), to the working type's rounding
    np.testing.assert_allclose(got_map, expected_map, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_ssim_other_windows_and_ranges():
    a, b = _pair((40, 30), np.float32, seed=3)
    for win, dr in ((3, 1.0), (11, 20.0)):
        assert fm.structural_similarity(a, b, data_range=dr, win_size=win) == pytest.approx(
            structural_similarity(a, b, data_range=dr, win_size=win), abs=1e-10)
    assert fm.structural_similarity(a, a, data_range=1.0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_psnr_matches_scikit_image(dtype):
    a, b = _pair((3, 50, 40), dtype, seed=1)
    assert fm.peak_signal_noise_ratio(a, b, data_range=7.5) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=7.5), abs=1e-12)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert fm.peak_signal_noise_ratio(a, b, data_range=7.5) == pytest.approx(10 * np.log10(7.5 ** 2 / mse), abs=1e-4)
    assert fm.peak_signal_noise_ratio(a, a, data_range=1.0) == np.inf


def test_bad_inputs_are_refused():
    a, b = _pair((20, 20), np.float64)
    with pytest.raises(ValueError, match="same shape"):
        fm.structural_similarity(a, b[:10], data_range=1.0)
    with pytest.raises(ValueError, match="odd"):
        fm.structural_similarity(a, b, data_range=1.0, win_size=4)
    with pytest.raises(ValueError, match="smaller side"):
        fm.structural_similarity(a[:5], b[:5], data_range=1.0)
    with pytest.raises(ValueError, match="2D"):
        fm.structural_similarity(a[None], b[None], data_range=1.0)
    with pytest.raises(ValueError, match="same shape"):
        fm.peak_signal_noise_ratio(a, b.T[:3], data_range=1.0)
