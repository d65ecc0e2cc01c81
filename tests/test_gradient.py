import numpy as np
import pytest
import torch

from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.linop import adjointness_error
from workbench.solvers.power import power_iteration


def test_neumann_matches_numpy_diff():
    x = np.random.default_rng(0).standard_normal((5, 7)) + 1j * np.random.default_rng(1).standard_normal((5, 7))
    g = FiniteDifference2D((5, 7), "neumann")(torch.from_numpy(x)).numpy()
    dh = np.concatenate([np.diff(x, axis=0), np.zeros((1, 7))], axis=0)
    dw = np.concatenate([np.diff(x, axis=1), np.zeros((5, 1))], axis=1)
    np.testing.assert_allclose(g, np.stack([dh, dw]), atol=1e-12)


def test_periodic_matches_numpy_roll():
    x = np.random.default_rng(0).standard_normal((4, 6))
    g = FiniteDifference2D((4, 6), "periodic")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(g[0], np.roll(x, -1, axis=0) - x, atol=1e-12)
    np.testing.assert_allclose(g[1], np.roll(x, -1, axis=1) - x, atol=1e-12)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_adjoint_is_conjugate_transpose_of_the_dense_matrix(boundary):
    D = FiniteDifference2D((4, 5), boundary)
    eye = torch.eye(20, dtype=torch.float64).reshape(20, 4, 5)
    M = D(eye).reshape(20, -1).T  # column j = D e_j
    p = torch.randn(2, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(D.H(p).reshape(-1), M.T @ p.reshape(-1))


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_dot_product_test(boundary):
    D = FiniteDifference2D((23, 18), boundary)
    assert adjointness_error(D) < 1e-5
    assert adjointness_error(D, batch=(3,)) < 1e-5


def test_adjoint_is_negative_divergence_inside():
    # away from the borders -D^H p is the backward-difference divergence
    p = torch.randn(2, 8, 9, dtype=torch.float64)
    div = (p[0, 1:-1, 1:-1] - p[0, :-2, 1:-1]) + (p[1, 1:-1, 1:-1] - p[1, 1:-1, :-2])
    torch.testing.assert_close(-FiniteDifference2D((8, 9)).H(p)[1:-1, 1:-1], div)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_operator_norm_at_most_sqrt8(boundary):
    D = FiniteDifference2D((16, 20), boundary)
    lam_max = float(power_iteration(D.normal, n_iter=500, tol=1e-7, dtype=torch.complex128))
    assert lam_max <= 8 + 1e-9
    assert lam_max > 7.6  # the bound is nearly attained (exactly 8 for periodic, even sizes)
    if boundary == "periodic":
        assert lam_max == pytest.approx(8.0, rel=1e-3)


def test_rejects_unknown_boundary():
    with pytest.raises(ValueError, match="boundary"):
        FiniteDifference2D((4, 4), "mirror")
