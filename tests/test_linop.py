import torch

from workbench.physics.fft import center_crop, center_pad, fft2c, ifft2c
from workbench.physics.linop import Identity, Multiply, adjointness_error


def test_fft2c_matches_explicit_dft_and_is_unitary():
    torch.manual_seed(0)
    n = 6
    x = torch.randn(n, n, dtype=torch.complex64)
    # Independent definition: centred DFT matrix with the k-space centre at index n//2.
    idx = torch.arange(n) - n // 2
    F = torch.exp(-2j * torch.pi * torch.outer(idx, idx).double() / n) / n**0.5
    expected = (F @ x.to(torch.complex128) @ F.T).to(torch.complex64)
    assert torch.allclose(fft2c(x), expected, atol=1e-5)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)
    assert abs(torch.linalg.norm(fft2c(x)) - torch.linalg.norm(x)) < 1e-4


def test_fft2c_of_centred_delta_is_flat():
    x = torch.zeros(8, 10, dtype=torch.complex64)
    x[4, 5] = 1
    k = fft2c(x)
    assert torch.allclose(k.abs(), torch.full_like(k.abs(), 1 / (80**0.5)), atol=1e-6)


def test_crop_pad_keep_centre():
    x = torch.zeros(7, 8)
    x[3, 4] = 1
    y = center_pad(x, (12, 15))
    assert y[6, 7] == 1
    assert torch.equal(center_crop(y, (7, 8)), x)


def test_multiply_and_compositions_pass_dot_test():
    maps = torch.randn(4, 5, 6, dtype=torch.complex64)
    S = Multiply((5, 6), maps)
    assert S.oshape == (4, 5, 6)
    assert adjointness_error(S) < 1e-5
    assert adjointness_error(S * Identity((5, 6)), batch=(2,)) < 1e-5
    assert adjointness_error(2.0 * S + S) < 1e-5
    assert adjointness_error(S.H) < 1e-5


def test_fft2c_matches_the_roll_definition_for_even_odd_and_mixed_sizes():
    torch.manual_seed(1)
    for shape in [(3, 8, 10), (2, 7, 9), (6, 5), (4, 9, 12)]:
        x = torch.randn(*shape, dtype=torch.complex64)
        d = (-2, -1)
        ref_f = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=d), norm="ortho"), dim=d)
        ref_i = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(x, dim=d), norm="ortho"), dim=d)
        assert torch.allclose(fft2c(x), ref_f, atol=1e-5)
        assert torch.allclose(ifft2c(x), ref_i, atol=1e-5)
