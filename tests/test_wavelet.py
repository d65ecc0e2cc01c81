import numpy as np
import pytest
import pywt
import torch

from workbench.physics.linop import adjointness_error
from workbench.physics.wavelet import DEFAULT_WAVELET, Wavelet2D


def _pywt_mosaic(x: np.ndarray, wavelet: str, levels: int) -> np.ndarray:
    """Independent reference: PyWavelets' periodized DWT laid out by coeffs_to_array."""
    coeffs = pywt.wavedec2(x, wavelet, mode="periodization", level=levels)
    return pywt.coeffs_to_array(coeffs)[0]


@pytest.mark.filterwarnings("ignore:Level value")
@pytest.mark.parametrize("wavelet", ["haar", "db4", "sym8", "coif2"])
@pytest.mark.parametrize("levels", [1, 3])
def test_matches_pywavelets_periodization(wavelet, levels):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 48)) + 1j * rng.standard_normal((32, 48))
    c = Wavelet2D((32, 48), wavelet, levels)(torch.from_numpy(x)).numpy()
    expected = _pywt_mosaic(x.real, wavelet, levels) + 1j * _pywt_mosaic(x.imag, wavelet, levels)
    np.testing.assert_allclose(c, expected, atol=1e-10)


def test_haar_level1_explicit_formula():
    x = torch.randn(6, 8, dtype=torch.float64)
    c = Wavelet2D((6, 8), "haar", levels=1)(x)
    a, b = x[0::2, 0::2], x[0::2, 1::2]  # a b
    d, e = x[1::2, 0::2], x[1::2, 1::2]  # d e  (2x2 block)
    # PyWavelets' Haar convention: low = (x0 + x1) / sqrt(2), high = (x0 - x1) / sqrt(2)
    torch.testing.assert_close(c[:3, :4], (a + b + d + e) / 2)  # approximation
    torch.testing.assert_close(c[:3, 4:], (a - b + d - e) / 2)  # detail along W (low along H)
    torch.testing.assert_close(c[3:, :4], (a + b - d - e) / 2)  # detail along H
    torch.testing.assert_close(c[3:, 4:], (a - b - d + e) / 2)  # diagonal


@pytest.mark.parametrize("shape", [(32, 32), (230, 180), (255, 131), (7, 9)])
@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
def test_dot_product_test(shape, wavelet):
    W = Wavelet2D(shape, wavelet)
    # complex64 dot products over up to 33k entries: rounding alone reaches ~1e-5
    assert adjointness_error(W) < 1e-4
    assert adjointness_error(W, batch=(2, 1)) < 1e-4
    assert adjointness_error(W.shifted((3, 5))) < 1e-4


@pytest.mark.parametrize("shape", [(64, 48), (230, 180), (255, 131)])
def test_orthonormal_and_perfect_reconstruction(shape):
    torch.manual_seed(0)
    x = torch.randn(2, *shape, dtype=torch.complex128)
    for W in (Wavelet2D(shape), Wavelet2D(shape, "db4"), Wavelet2D(shape, "sym8", levels=3, shift=(5, 2))):
        c = W(x)
        assert c.shape == (2, *W.oshape)
        assert all(s % 2**W.levels == 0 for s in W.oshape)
        torch.testing.assert_close(W.H(c), x)  # W^H W = I
        torch.testing.assert_close(torch.linalg.vector_norm(c), torch.linalg.vector_norm(x))
        # the explicit normal form must agree with adjoint(forward)
        torch.testing.assert_close(W.normal(x), W.adjoint(W.forward(x)))
    # without padding the transform is unitary: W W^H = I on coefficients too
    if shape == (64, 48):
        coeffs = torch.randn(*W.oshape, dtype=torch.complex128)
        torch.testing.assert_close(W(W.H(coeffs)), coeffs)


def test_complex64_orthonormal_to_rounding():
    x = torch.randn(3, 100, 90, dtype=torch.complex64)
    W = Wavelet2D((100, 90))
    assert W.H(W(x)).dtype == torch.complex64
    assert float((W.H(W(x)) - x).abs().max()) < 1e-5


def test_cycle_spinning_shift_is_circular_shift_of_image():
    x = torch.randn(32, 32, dtype=torch.float64)
    W = Wavelet2D((32, 32), "db4", levels=2)
    torch.testing.assert_close(W.shifted((3, 6))(x), W(torch.roll(x, (3, 6), dims=(-2, -1))))
    torch.testing.assert_close(W.shifted((3, 6)).H(W.shifted((3, 6))(x)), x)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    shifts = [W.random_shift(g1).shift for _ in range(20)]
    assert shifts == [W.random_shift(g2).shift for _ in range(20)]
    assert len(set(shifts)) > 5 and all(0 <= s < 4 for sh in shifts for s in sh)


def test_gradients_flow_through_the_transform():
    x = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    W = Wavelet2D((16, 16), "db4", levels=2)
    (W(x) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())  # d/dx ||W x||^2 = 2 W^T W x = 2 x
    c = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    (W.H(c) ** 2).sum().backward()
    torch.testing.assert_close(c.grad, 2 * c.detach())  # unpadded: W W^T = I as well


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not orthogonal"):
        Wavelet2D((32, 32), "bior2.2")
    with pytest.raises(ValueError, match="unknown wavelet"):
        Wavelet2D((32, 32), "nope")
    with pytest.raises(ValueError, match="levels"):
        Wavelet2D((32, 32), "db4", levels=9)


@pytest.mark.parametrize("shape, wavelet, levels, shift", [
    ((64, 48), "db4", None, (0, 0)), ((45, 38), "sym8", 2, (3, 1)), ((96, 96), "haar", None, (5, 7))])
def test_torch_filter_bank_equals_the_pywavelets_path(shape, wavelet, levels, shift):
    # CPU without autograd runs PyWavelets; with autograd (and on a GPU) the torch filter bank: the same
    # coefficients and adjoint to float32 rounding, batched complex64 input, padding and shift included
    W = Wavelet2D(shape, wavelet, levels, shift)
    x = torch.randn(3, *shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    c = W.forward(x)
    x_back = W.adjoint(c)
    assert not c.requires_grad and c.dtype == torch.complex64 and x_back.dtype == torch.complex64
    c_torch = W.forward(x.clone().requires_grad_(True)).detach()
    x_torch = W.adjoint(c.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(c, c_torch, rtol=0, atol=2e-6)
    torch.testing.assert_close(x_back, x_torch, rtol=0, atol=2e-6)
    torch.testing.assert_close(x_back, x, rtol=0, atol=2e-6)


def test_the_default_wavelet_is_daubechies_four_tap_as_in_bart():
    """The default (every method's) is Daubechies' orthonormal 4-tap wavelet, BART's ``dau2``: one level of the
    transform of an image constant along H is sqrt(2) times the periodic filtering of a row by the closed-form
    coefficients (1 + sqrt 3, 3 + sqrt 3, 3 - sqrt 3, 1 - sqrt 3) / (4 sqrt 2) and their quadrature mirror, at
    one alignment (conventions differ in the shift and the filters' direction, not in the values)."""
    assert DEFAULT_WAVELET == "db2"
    r3 = np.sqrt(3.0)
    low_pass = np.array([1 + r3, 3 + r3, 3 - r3, 1 - r3]) / (4 * np.sqrt(2.0))
    high_pass = low_pass[::-1] * np.array([1, -1, 1, -1])
    n = 32
    row = np.random.default_rng(3).standard_normal(n)
    c = Wavelet2D((8, n), levels=1)(torch.tensor(np.tile(row, (8, 1)))).numpy()
    low, high = c[0, : n // 2] / np.sqrt(2.0), c[0, n // 2 :] / np.sqrt(2.0)
    assert np.abs(c[4:]).max() < 1e-12  # nothing varies along H

    def filtered(taps, shift):
        return np.array([sum(taps[t] * row[(2 * k + shift - t) % n] for t in range(4)) for k in range(n // 2)])

    matches = [(shift, flip) for shift in range(n) for flip in (1, -1)
               if np.allclose(low, filtered(low_pass[::flip], shift), atol=1e-9)
               and (np.allclose(high, filtered(high_pass[::flip], shift), atol=1e-9)
                    or np.allclose(high, -filtered(high_pass[::flip], shift), atol=1e-9))]
    assert matches
