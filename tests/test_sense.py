"""CartesianSense against an explicit dense matrix built from the DFT definition, and dot-product tests."""

import numpy as np
import pytest
import torch

from workbench.errors import SamplingError, WorkbenchError
from workbench.physics.linop import adjointness_error
from workbench.physics.sense import CartesianSense


def centred_dft(n: int) -> np.ndarray:
    """Centred orthonormal DFT matrix: k-space index k <-> frequency k - n//2, image index m <-> m - n//2."""
    idx = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(idx, idx) / n) / np.sqrt(n)


def dense_sense(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``A = blockrows_c( diag(mask) (F_H kron F_W) diag(S_c) )`` acting on the row-major vectorised image."""
    c, h, w = maps.shape
    f2 = np.kron(centred_dft(h), centred_dft(w))  # vec(F_H X F_W^T) = (F_H kron F_W) vec(X), row-major
    m = np.diag(mask.reshape(-1).astype(float))
    return np.concatenate([m @ f2 @ np.diag(maps[i].reshape(-1)) for i in range(c)], axis=0)


def rand_c(*shape, seed=0):
    g = np.random.default_rng(seed)
    return (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("shape", [(6, 5), (5, 7), (8, 6)])
def test_forward_adjoint_normal_match_dense_matrix(shape):
    h, w = shape
    maps = rand_c(2, h, w, seed=1)
    mask = np.random.default_rng(2).random((h, w)) < 0.5
    mask[h // 2, w // 2] = True
    A = CartesianSense(torch.from_numpy(maps), torch.from_numpy(mask))
    D = dense_sense(maps.astype(np.complex128), mask)

    x = rand_c(h, w, seed=3)
    y = rand_c(2, h, w, seed=4)
    fwd = A(torch.from_numpy(x)).numpy().reshape(-1)
    adj = A.adjoint(torch.from_numpy(y)).numpy().reshape(-1)
    nrm = A.normal(torch.from_numpy(x)).numpy().reshape(-1)
    np.testing.assert_allclose(fwd, D @ x.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(adj, D.conj().T @ y.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(nrm, D.conj().T @ D @ x.reshape(-1), atol=1e-5)
    # unsampled k-space is exactly zero
    assert torch.all(A(torch.from_numpy(x))[:, ~torch.from_numpy(mask)] == 0)


@pytest.mark.parametrize("shape", [(6, 5), (6, 4)])
def test_single_coil_and_line_mask_match_dense_matrix(shape):
    h, w = shape
    cols = np.array([True, False, True, True, False][:w])
    A = CartesianSense(None, torch.from_numpy(cols), grid_shape=(h, w))
    assert A.oshape == (1, h, w)
    D = dense_sense(np.ones((1, h, w), np.complex128), np.broadcast_to(cols, (h, w)))
    x = rand_c(h, w, seed=5)
    np.testing.assert_allclose(A(torch.from_numpy(x)).numpy().reshape(-1), D @ x.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(A.normal(torch.from_numpy(x)).numpy().reshape(-1), D.conj().T @ D @ x.reshape(-1),
                               atol=1e-5)
    y = rand_c(1, h, w, seed=6)
    np.testing.assert_allclose(A.adjoint(torch.from_numpy(y)).numpy().reshape(-1), D.conj().T @ y.reshape(-1),
                               atol=1e-5)


def test_fully_sampled_with_normalised_maps_is_an_isometry():
    maps = torch.from_numpy(rand_c(4, 8, 10, seed=6))
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    A = CartesianSense(maps, None)
    x = torch.from_numpy(rand_c(8, 10, seed=7))
    assert torch.allclose(A.normal(x), x, atol=1e-5)
    assert abs(float(A(x).norm() / x.norm()) - 1) < 1e-5


def test_dot_product_batched():
    torch.manual_seed(0)
    h, w = 12, 10
    maps = torch.randn(3, h, w, dtype=torch.complex64)
    mask = torch.rand(h, w) < 0.4
    A = CartesianSense(maps, mask)
    assert adjointness_error(A) < 1e-5
    assert adjointness_error(A, batch=(2, 3)) < 1e-5
    assert adjointness_error(A.H, batch=(2,)) < 1e-5
    # per-item maps and masks: [B, C, H, W] and [B, H, W]
    maps_b = torch.randn(4, 3, h, w, dtype=torch.complex64)
    mask_b = torch.rand(4, h, w) < 0.4
    Ab = CartesianSense(maps_b, mask_b)
    assert adjointness_error(Ab, batch=(4,)) < 1e-5
    x = torch.randn(4, h, w, dtype=torch.complex64)
    for i in range(4):  # item i uses its own maps and mask
        Ai = CartesianSense(maps_b[i], mask_b[i])
        assert torch.allclose(Ab(x)[i], Ai(x[i]), atol=1e-5)
        assert torch.allclose(Ab.normal(x)[i], Ai.adjoint(Ai(x[i])), atol=1e-4)


def test_bad_inputs_raise_typed_errors():
    maps = torch.ones(2, 6, 5, dtype=torch.complex64)
    with pytest.raises(SamplingError, match="6x5"):
        CartesianSense(maps, torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(SamplingError, match="columns"):
        CartesianSense(maps, torch.ones(4, dtype=torch.bool))
    with pytest.raises(WorkbenchError):
        CartesianSense(torch.ones(6, 5), None)
    bad = maps.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(WorkbenchError, match="NaN"):
        CartesianSense(bad, None)
    with pytest.raises(ValueError):
        CartesianSense(maps, None)(torch.ones(6, 6, dtype=torch.complex64))


@pytest.mark.parametrize("shape, axis", [((32, 24), -1), ((31, 17), -1), ((20, 26), -2), ((15, 9), -2)])
def test_line_form_is_the_same_least_squares_problem(shape, axis):
    # a mask of whole lines: the hybrid-space operator on the sampled lines gives the residual, the normal
    # operator and A^H y of the k-space operator M F S (checked against it, odd sizes included)
    g = torch.Generator().manual_seed(1)
    h, w = shape
    maps = torch.randn(3, h, w, dtype=torch.complex64, generator=g)
    n = w if axis == -1 else h
    lines = torch.rand(n, generator=g) < 0.4
    lines[n // 2] = True
    mask = lines.expand(h, w) if axis == -1 else lines[:, None].expand(h, w)
    A = CartesianSense(maps, mask)
    y = mask * torch.randn(3, h, w, dtype=torch.complex64, generator=g)
    Ah, yh = A.line_form(y)
    assert Ah.oshape == ((3, h, int(lines.sum())) if axis == -1 else (3, int(lines.sum()), w))
    assert adjointness_error(Ah) < 1e-5
    x = torch.randn(h, w, dtype=torch.complex64, generator=g)
    r = float((A.forward(x) - y).abs().pow(2).sum())
    assert float((Ah.forward(x) - yh).abs().pow(2).sum()) == pytest.approx(r, rel=1e-5)
    assert torch.allclose(Ah.normal(x), A.normal(x), atol=1e-4 * float(A.normal(x).abs().max()))
    assert torch.allclose(Ah.adjoint(yh), A.adjoint(y), atol=1e-4 * float(A.adjoint(y).abs().max()))
    assert int((yh != 0).sum()) == int((y != 0).sum())


def test_line_form_only_for_masks_of_whole_lines():
    maps = torch.ones(2, 8, 8, dtype=torch.complex64)
    scattered = torch.zeros(8, 8, dtype=torch.bool)
    scattered[2, 3] = scattered[5, 1] = True
    y = torch.zeros(2, 8, 8, dtype=torch.complex64)
    assert CartesianSense(maps, scattered).line_form(y) is None
    assert CartesianSense(maps, None).line_form(y) is None
    assert CartesianSense(maps, torch.zeros(8, dtype=torch.bool)).line_form(y) is None
    assert CartesianSense(maps, torch.ones(8, dtype=torch.bool)).line_form(y) is not None
