"""workbench.metrics against explicit formulas and scikit-image's own functions (fastMRI's definitions)."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from workbench import metrics


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:48, :40]
    base = np.exp(-((y - 24) ** 2 + (x - 20) ** 2) / 200.0)
    ref = np.stack([base * (1 + 0.5 * s) + 0.05 * rng.random((48, 40)) for s in range(3)]).astype(np.float64)
    rec = ref + 0.03 * rng.standard_normal(ref.shape)
    return ref, rec


def test_psnr_of_constant_offset_is_explicit():
    ref = np.zeros((32, 32))
    ref[8:24, 8:24] = 2.0
    offset = 0.05
    # MSE = offset^2 everywhere -> PSNR = 20 log10(max / offset)
    assert metrics.psnr(ref, ref + offset) == pytest.approx(20 * math.log10(2.0 / offset), abs=1e-9)
    assert metrics.psnr(ref, ref + offset, data_range=4.0) == pytest.approx(20 * math.log10(4.0 / offset), abs=1e-9)


def test_nmse_explicit_and_scale():
    ref = np.arange(1.0, 17.0).reshape(4, 4)
    rec = 0.9 * ref
    assert metrics.nmse(ref, rec) == pytest.approx(0.01, rel=1e-12)  # ||0.1 ref||^2 / ||ref||^2
    assert metrics.nmse(ref, ref) == 0.0


def test_volume_metrics_match_fastmri_definitions(volume):
    ref, rec = volume
    m = metrics.evaluate(ref, rec)
    # fastMRI evaluate.py: PSNR over the whole volume with the volume max, SSIM averaged over slices.
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, rec, data_range=ref.max()), abs=1e-10)
    ssim_ref = np.mean([structural_similarity(ref[s], rec[s], data_range=ref.max(), win_size=7) for s in range(3)])
    assert m["ssim"] == pytest.approx(ssim_ref, abs=1e-12)
    assert m["nmse"] == pytest.approx(np.sum((ref - rec) ** 2) / np.sum(ref**2), rel=1e-12)
    # explicit PSNR formula
    mse = np.mean((ref - rec) ** 2)
    assert m["psnr"] == pytest.approx(10 * np.log10(ref.max() ** 2 / mse), abs=1e-9)


def test_slice_uses_given_volume_data_range(volume):
    ref, rec = volume
    vmax = ref.max()
    s0 = metrics.ssim(ref[0], rec[0], data_range=vmax)
    assert s0 == pytest.approx(structural_similarity(ref[0], rec[0], data_range=vmax), abs=1e-12)
    # the slice's own max (default) is smaller than the volume's, so the same errors score lower
    assert ref[0].max() < vmax
    assert metrics.psnr(ref[0], rec[0]) < metrics.psnr(ref[0], rec[0], data_range=vmax)


def test_ssim_hand_computed_on_constant_images():
    # Constant images: means a, b, zero variances -> SSIM = (2ab + C1) / (a^2 + b^2 + C1) (sample-cov form).
    a, b, L = 0.5, 0.6, 1.0
    c1 = (0.01 * L) ** 2
    expect = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim(np.full((16, 16), a), np.full((16, 16), b), data_range=L) == pytest.approx(expect, rel=1e-9)


def test_complex_torch_and_crop(volume):
    ref, rec = volume
    rec = np.abs(rec)  # magnitudes: a complex input is scored by its magnitude
    rng = np.random.default_rng(1)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, rec.shape))
    big = np.zeros((3, 64, 56), dtype=np.complex128)
    big[:, 64 // 2 - 24 : 64 // 2 + 24, 56 // 2 - 20 : 56 // 2 + 20] = rec * phase  # centred like center_crop
    m_big = metrics.evaluate(torch.from_numpy(ref), torch.from_numpy(big))
    m = metrics.evaluate(ref, rec)
    for k in m:
        assert m_big[k] == pytest.approx(m[k], rel=1e-9)


def test_error_map(volume):
    ref, rec = volume
    err = metrics.error_map(ref[1], rec[1])
    np.testing.assert_allclose(err, np.abs(rec[1] - ref[1]))
    rel = metrics.error_map(ref[1], rec[1], relative=True)
    np.testing.assert_allclose(rel, np.abs(rec[1] - ref[1]) / ref[1].max())


def test_identical_and_bad_input():
    ref = np.random.default_rng(2).random((20, 20))
    assert metrics.psnr(ref, ref) == math.inf
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.nmse(np.zeros((8, 8)), np.ones((8, 8)))
    with pytest.raises(ValueError):
        metrics.psnr(np.ones((20, 20)), np.ones((10, 10)))  # reconstruction smaller than the reference
    with pytest.raises(ValueError):
        metrics.ssim(np.ones((2, 20, 20)), np.ones((3, 20, 20)))
