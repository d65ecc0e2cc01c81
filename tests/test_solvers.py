"""Solvers against independent references: direct dense solves, PyWavelets, ISTA / dual problems in numpy+scipy."""

import contextlib
import functools

import numpy as np
import pytest
import pywt
import scipy.optimize
import torch

from workbench.physics.fft import fft2c, ifft2c
from workbench.physics.linop import Identity, Linop
from workbench.solvers import (
    cg_sense,
    conjugate_gradient,
    fista,
    fused_lasso,
    group_soft_threshold,
    l1_wavelet,
    least_squares_gradient,
    power_iteration,
    project_l2_ball,
    shifted_conjugate_gradient,
    soft_threshold,
    total_variation,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny problems: on a busy 2-core machine, handing work to a second thread (torch's pool, or the BLAS
    # behind numpy's small matrix products) costs far more than it saves
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only makes the numpy references faster
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        yield
    torch.set_num_threads(n)


# --- small operators made here, independent of the physics helpers --------------------------------------
class Dense(Linop):
    """``vec(x) -> M vec(x)`` for images ``[..., h, w]`` flattened row-major."""

    def __init__(self, M: torch.Tensor, ishape):
        super().__init__(ishape, (M.shape[0],))
        self.Mt = M.T.contiguous()  # contiguous factors keep tiny products on a fast BLAS path
        self.Mc = M.conj().contiguous()

    def _forward(self, x):
        return x.reshape(*x.shape[: x.dim() - 2], -1) @ self.Mt

    def _adjoint(self, y):
        return (y @ self.Mc).reshape(*y.shape[:-1], *self.ishape)


class MaskedFFT(Linop):
    """Multi-coil masked centred FFT ``x -> mask * F(S_c x)``."""

    def __init__(self, maps, mask):
        super().__init__(maps.shape[-2:], maps.shape)
        self.maps, self.mask = maps, mask

    def _forward(self, x):
        return fft2c(self.maps * x.unsqueeze(-3)) * self.mask

    def _adjoint(self, y):
        return (self.maps.conj() * ifft2c(y * self.mask)).sum(-3)


def centred_dft(n):
    idx = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(idx, idx) / n) / np.sqrt(n)


def crandn(*shape, gen, dtype=torch.complex128):
    return torch.complex(torch.randn(*shape, generator=gen, dtype=torch.float64),
                         torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)


def neumann_diff_matrix(n):
    d = -np.eye(n) + np.eye(n, k=1)
    d[-1] = 0
    return d


def tv_matrix(h, w):
    """Explicit forward differences (Neumann), rows: all H-differences then all W-differences."""
    return np.vstack([np.kron(neumann_diff_matrix(h), np.eye(w)), np.kron(np.eye(h), neumann_diff_matrix(w))])


def wavelet_matrix(h, w, wavelet, levels):
    """Orthonormal periodized DWT as a dense matrix, column j = PyWavelets' transform of basis image j."""
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1
        cols.append(pywt.coeffs_to_array(pywt.wavedec2(e.reshape(h, w), wavelet, mode="periodization", level=levels))[0].ravel())
    return np.ascontiguousarray(np.stack(cols, axis=1))


# --- conjugate gradient ------------------------------------------------------------------------------------
def _sense_problem(dtype):
    gen = torch.Generator().manual_seed(0)
    n, coils = 6, 3
    maps = crandn(coils, n, n, gen=gen)
    maps = maps / (maps.abs() ** 2).sum(0).sqrt()
    mask = torch.rand(n, n, generator=gen) < 0.5
    x_true = crandn(n, n, gen=gen)
    op = MaskedFFT(maps.to(dtype), mask)
    y = op(x_true.to(dtype))
    # dense reference: A_c = diag(mask) (F_h kron F_w) diag(S_c), from the explicit DFT matrix
    F2 = np.kron(centred_dft(n), centred_dft(n))
    m = mask.numpy().ravel().astype(float)
    A = np.vstack([m[:, None] * F2 * maps[c].numpy().ravel()[None, :] for c in range(coils)])
    return op, y, A


@pytest.mark.parametrize("dtype, tol", [(torch.complex128, 1e-8), (torch.complex64, 1e-4)])
def test_cg_sense_tikhonov_matches_direct_solve(dtype, tol):
    op, y, A = _sense_problem(dtype)
    lam = 0.05
    yv = y.to(torch.complex128).numpy().ravel()
    expected = np.linalg.solve(A.conj().T @ A + lam * np.eye(A.shape[1]), A.conj().T @ yv).reshape(6, 6)
    res = conjugate_gradient(op.normal, op.H(y), n_iter=200, tol=1e-12, lam=lam)
    err = np.linalg.norm(res.x.to(torch.complex128).numpy() - expected) / np.linalg.norm(expected)
    assert err < tol
    assert res.history_name == "residual" and len(res.history) == res.n_iter
    res2 = cg_sense(op, y, lam, n_iter=200, tol=1e-12)
    torch.testing.assert_close(res2.x, res.x)


def test_shifted_cg_solves_every_shift_as_separate_cg_does():
    """One multi-shift run: each shift's iterate is plain CG's with lam = shift after as many iterations, and at
    convergence the direct solution of (A^H A + s I) x = A^H y."""
    op, y, A = _sense_problem(torch.complex128)
    shifts = [0.3, 0.01, 2.0, 0.05]
    rhs = op.H(y)
    for n_iter in (2, 7):
        xs = shifted_conjugate_gradient(op.normal, rhs, shifts, n_iter=n_iter)
        for s in shifts:
            ref = conjugate_gradient(op.normal, rhs, n_iter=n_iter, tol=0.0, lam=s).x
            torch.testing.assert_close(xs[s], ref, atol=1e-10 * float(ref.abs().max()), rtol=0)
    yv = y.numpy().ravel()
    xs = shifted_conjugate_gradient(op.normal, rhs, shifts, n_iter=200)
    for s in shifts:
        expected = np.linalg.solve(A.conj().T @ A + s * np.eye(A.shape[1]), A.conj().T @ yv).reshape(6, 6)
        assert np.linalg.norm(xs[s].numpy() - expected) / np.linalg.norm(expected) < 1e-8
    with pytest.raises(ValueError):
        shifted_conjugate_gradient(op.normal, rhs, [-0.1])


def test_cg_batched_items_have_their_own_lambda_and_warm_start():
    gen = torch.Generator().manual_seed(1)
    B = crandn(12, 8, gen=gen)
    N = B.conj().T @ B  # Hermitian positive semi-definite, rank 8 of 8
    rhs = crandn(2, 8, gen=gen)
    lam = torch.tensor([0.1, 2.0], dtype=torch.float64)
    res = conjugate_gradient(lambda v: v @ N.T, rhs, n_iter=50, tol=1e-12, lam=lam, item_ndim=1)
    for i in range(2):
        expected = torch.linalg.solve(N + lam[i] * torch.eye(8, dtype=N.dtype), rhs[i])
        torch.testing.assert_close(res.x[i], expected, rtol=1e-9, atol=1e-9)
    assert res.converged
    # warm start from the solution: converged immediately
    again = conjugate_gradient(lambda v: v @ N.T, rhs, res.x, n_iter=50, tol=1e-6, lam=lam, item_ndim=1)
    assert again.n_iter <= 1


def test_cg_callback_stops_and_sees_every_iteration():
    op, y, _ = _sense_problem(torch.complex64)
    seen = []

    def callback(it, x, info):
        seen.append((it, info["residual"]))
        return it == 2

    res = conjugate_gradient(op.normal, op.H(y), n_iter=50, callback=callback)
    assert res.stopped and res.n_iter == 3 and [s[0] for s in seen] == [0, 1, 2]
    assert [s[1] for s in seen] == pytest.approx(res.history)


def test_cg_is_differentiable():
    gen = torch.Generator().manual_seed(2)
    B = crandn(10, 6, gen=gen)
    N = B.conj().T @ B + torch.eye(6, dtype=torch.complex128)
    b = crandn(6, gen=gen).requires_grad_(True)
    c = crandn(6, gen=gen)
    x = conjugate_gradient(lambda v: N @ v, b, n_iter=30, tol=0).x
    torch.vdot(c, x).real.backward()
    # d Re<c, N^-1 b> / d b  (PyTorch's conjugate convention) = N^-H c
    torch.testing.assert_close(b.grad, torch.linalg.solve(N.conj().T, c), rtol=1e-8, atol=1e-8)


def test_power_iteration_matches_eigvalsh():
    gen = torch.Generator().manual_seed(3)
    mats = [crandn(9, 7, gen=gen), 3 * crandn(9, 7, gen=gen)]
    Ns = torch.stack([m.conj().T @ m for m in mats])
    est = power_iteration(lambda v: torch.einsum("bij,bj->bi", Ns, v), (2, 7), item_ndim=1, n_iter=500, tol=1e-9,
                          dtype=torch.complex128)
    expected = torch.linalg.eigvalsh(Ns)[:, -1]
    torch.testing.assert_close(est, expected, rtol=1e-4, atol=0)


# --- proximal operators ------------------------------------------------------------------------------------
def test_soft_threshold_minimises_the_prox_objective():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(6) + 1j * rng.standard_normal(6)
    t = 0.8
    out = soft_threshold(torch.from_numpy(v), t).numpy()
    for vi, oi in zip(v, out):
        obj = lambda z: t * np.hypot(z[0], z[1]) + 0.5 * abs(z[0] + 1j * z[1] - vi) ** 2  # noqa: E731
        ref = scipy.optimize.minimize(obj, [vi.real, vi.imag], method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000}).x
        assert abs(oi - (ref[0] + 1j * ref[1])) < 1e-5
    # explicit: magnitude shrinks by t, phase kept
    big = np.abs(v) > t
    np.testing.assert_allclose(np.abs(out[big]), np.abs(v[big]) - t, atol=1e-12)
    np.testing.assert_allclose(np.angle(out[big]), np.angle(v[big]), atol=1e-12)
    assert np.all(out[~big] == 0)


def test_group_soft_threshold_minimises_the_prox_objective():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))  # 3 groups of 2 components
    t = 0.9
    out = group_soft_threshold(torch.from_numpy(v), t, dim=0).numpy()
    for j in range(3):
        def obj(z):
            zc = z[:2] + 1j * z[2:]
            return t * np.linalg.norm(zc) + 0.5 * np.linalg.norm(zc - v[:, j]) ** 2
        ref = scipy.optimize.minimize(obj, np.r_[v[:, j].real, v[:, j].imag], method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 8000}).x
        np.testing.assert_allclose(out[:, j], ref[:2] + 1j * ref[2:], atol=1e-4)


@pytest.mark.parametrize("dim", [None, 0])
def test_projection_onto_dual_ball(dim):
    gen = torch.Generator().manual_seed(5)
    z = 2 * crandn(2, 50, gen=gen)
    r = 1.3
    p = project_l2_ball(z, r, dim=dim)
    norms = p.abs() if dim is None else torch.linalg.vector_norm(p, dim=0)
    assert float(norms.max()) <= r + 1e-12
    inside = (z.abs() if dim is None else torch.linalg.vector_norm(z, dim=0)) <= r
    assert torch.equal(p[..., inside] if dim == 0 else p[inside], z[..., inside] if dim == 0 else z[inside])
    # projection characterisation: Re<z - p, w - p> <= 0 for every w in the (convex) set
    for _ in range(20):
        w = project_l2_ball(2 * crandn(2, 50, gen=gen), r, dim=dim)
        assert float(torch.vdot((z - p).reshape(-1), (w - p).reshape(-1)).real) <= 1e-10


@pytest.mark.parametrize("dim", [None, 0])
def test_projection_matches_its_definition_in_float32_at_any_radius(dim):
    """The in-place rsqrt form against ``z * min(1, r / |z|)`` in float64 (including zero entries, a zero and
    an infinite radius, radii far from the data's scale), and the autograd path gives the definition's gradient."""
    gen = torch.Generator().manual_seed(11)
    z = (2 * crandn(2, 40, gen=gen)).to(torch.complex64)
    z[:, :3] = 0
    for r in (0.0, 1e-6, 0.3, 1.3, 4.0, 1e12, float("inf")):
        got = project_l2_ball(z, r, dim=dim)
        z64 = z.to(torch.complex128)
        norm = z64.abs() if dim is None else torch.linalg.vector_norm(z64, dim=0, keepdim=True)
        want = z64 * torch.clamp(r / norm.clamp_min(1e-300), max=1)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-6, atol=1e-7 * max(min(r, 1.0), 1e-6))
        inside = (norm < 0.999 * r).expand_as(z)
        assert torch.equal(got[inside], z[inside])  # strictly inside the ball: untouched
    w = z[:, 3:].clone().requires_grad_(True)  # |z| has no derivative at 0
    project_l2_ball(w, 1.3, dim=dim).abs().sum().backward()
    v = z[:, 3:].clone().requires_grad_(True)
    norm = v.abs() if dim is None else (v.real.square() + v.imag.square()).sum(0, keepdim=True).sqrt()
    (v * torch.clamp(1.3 / norm.clamp_min(1e-30), max=1)).abs().sum().backward()
    torch.testing.assert_close(w.grad, v.grad)


# --- l1-wavelet (FISTA) ------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Level value")
def test_l1_wavelet_with_identity_is_wavelet_soft_thresholding():
    gen = torch.Generator().manual_seed(6)
    y = crandn(32, 24, gen=gen)
    lam = 0.7
    res = l1_wavelet(Identity((32, 24)), y, lam, wavelet="db4", levels=2, cycle_spinning=False, n_iter=60)
    coeffs = pywt.wavedec2(y.numpy(), "db4", mode="periodization", level=2)
    arr, slices = pywt.coeffs_to_array(coeffs)
    expected = pywt.waverec2(pywt.array_to_coeffs(pywt.threshold(arr, lam, "soft"), slices, output_format="wavedec2"),
                             "db4", mode="periodization")
    np.testing.assert_allclose(res.x.numpy(), expected, atol=1e-6)


def _tiny_sparse_problem(seed=7, m=40, shape=(8, 8)):
    gen = torch.Generator().manual_seed(seed)
    n = shape[0] * shape[1]
    M = crandn(m, n, gen=gen) / np.sqrt(m)
    Wm = wavelet_matrix(*shape, "haar", 2)
    c = torch.zeros(n, dtype=torch.complex128)
    c[torch.randperm(n, generator=gen)[:6]] = crandn(6, gen=gen) * 3
    x_true = torch.from_numpy(Wm.T).to(torch.complex128) @ c
    y = M @ x_true + 0.05 * crandn(m, gen=gen)
    return Dense(M, shape), M.numpy(), Wm, y


def _ista_reference(M, Wm, y, lam, n_iter=4000):
    """Plain ISTA in numpy on the explicit matrices."""
    L = np.linalg.norm(M, 2) ** 2
    # contiguous complex copies: other layouts / real @ complex products take a very slow threaded BLAS path
    Wm = np.ascontiguousarray(Wm, dtype=complex)
    x = np.zeros(M.shape[1], dtype=complex)
    Mh, Wt = M.conj().T.copy(), Wm.T.copy()
    for _ in range(n_iter):
        v = x - Mh @ (M @ x - y) / L
        x = Wt @ pywt.threshold(Wm @ v, lam / L, "soft")
    return x


@functools.lru_cache(maxsize=None)
def _sparse_case(seed, lam):
    """The tiny l1 problem and its ISTA reference solution (computed once per session)."""
    A, M, Wm, y = _tiny_sparse_problem(seed)
    return A, M, Wm, y, _ista_reference(M, Wm, y.numpy(), lam)


def _l1_objective(M, Wm, y, lam, x):
    return 0.5 * np.linalg.norm(M @ x - y) ** 2 + lam * np.abs(Wm @ x).sum()


def test_l1_wavelet_matches_ista_reference():
    lam = 0.05
    A, M, Wm, y, ref = _sparse_case(7, lam)
    res = l1_wavelet(A, y, lam, wavelet="haar", levels=2, cycle_spinning=False, n_iter=600)
    x = res.x.numpy().ravel()
    f_ref = _l1_objective(M, Wm, y.numpy(), lam, ref)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-4
    assert res.history[-1] == pytest.approx(f_ref, rel=1e-7)
    assert _l1_objective(M, Wm, y.numpy(), lam, x) == pytest.approx(f_ref, rel=1e-7)


def test_fista_monotone_restart_never_increases_the_objective():
    lam = 0.05
    A, M, Wm, y, ref = _sparse_case(7, lam)
    res = l1_wavelet(A, y, lam, wavelet="haar", levels=2, cycle_spinning=False, n_iter=150, restart="function")
    assert all(b <= a for a, b in zip(res.history, res.history[1:]))
    f_ref = _l1_objective(M, Wm, y.numpy(), lam, ref)
    assert res.history[-1] == pytest.approx(f_ref, rel=1e-5)
    # gradient restart: after the first iterations the objective is non-increasing up to rounding
    res = l1_wavelet(A, y, lam, wavelet="haar", levels=2, cycle_spinning=False, n_iter=150, restart="gradient")
    assert res.history[-1] == pytest.approx(f_ref, rel=1e-5)


def test_fista_batch_equals_items_and_callback_stops():
    gen = torch.Generator().manual_seed(9)
    shape = (16, 16)
    maps = torch.ones(1, *shape, dtype=torch.complex64)
    mask = torch.rand(shape, generator=gen) < 0.4
    A = MaskedFFT(maps, mask)
    ys = A(crandn(2, *shape, gen=gen, dtype=torch.complex64))
    ys[1] *= 10  # different scale per item: per-item step and momentum must not mix items
    batch = l1_wavelet(A, ys, 0.05, n_iter=40, seed=3)
    for i in range(2):
        single = l1_wavelet(A, ys[i], 0.05, n_iter=40, seed=3)
        torch.testing.assert_close(batch.x[i], single.x, rtol=1e-4, atol=1e-4 * float(single.x.abs().max()))
    res = l1_wavelet(A, ys, 0.05, n_iter=40, callback=lambda it, x, info: it == 4)
    assert res.stopped and res.n_iter == 5 and len(res.history) == 5


def test_l1_wavelet_with_cycle_spinning_denoises_a_phantom():
    gen = torch.Generator().manual_seed(10)
    shape = (32, 32)
    img = torch.zeros(shape, dtype=torch.complex64)
    img[6:26, 8:22] = 1
    img[12:18, 12:16] = 2
    mask = torch.rand(shape, generator=gen) < 0.4
    mask[:, 12:20] = True
    A = MaskedFFT(torch.ones(1, *shape, dtype=torch.complex64), mask)
    y = A(img) + 0.1 * A(crandn(*shape, gen=gen, dtype=torch.complex64))
    res = l1_wavelet(A, y, 0.1, wavelet="haar", n_iter=60, cycle_spinning=True)
    assert res.info["cycle_spinning"]
    assert res.history[-1] < 0.5 * 0.5 * float(torch.linalg.vector_norm(y) ** 2)  # objective at x = 0
    err = float(torch.linalg.vector_norm(res.x - img))
    assert err < 0.5 * float(torch.linalg.vector_norm(A.H(y) - img))  # well below the zero-filled error


def test_fista_generic_form_on_pixel_lasso():
    # min ||x - y||^2/2 + lam ||x||_1 has the closed form soft(y, lam)
    gen = torch.Generator().manual_seed(12)
    y = crandn(5, 7, gen=gen)
    grad = least_squares_gradient(lambda x: x, y)  # A = I
    res = fista(grad, lambda v, t: soft_threshold(v, 0.6 * t), torch.zeros_like(y), step=1.0, n_iter=3,
                objective=lambda x: 0.5 * (x - y).abs().pow(2).sum() + 0.6 * x.abs().sum())
    mag = y.abs()
    torch.testing.assert_close(res.x, y * torch.clamp(1 - 0.6 / mag, min=0))
    assert res.history_name == "objective" and len(res.history) == 3
    res = fista(grad, lambda v, t: soft_threshold(v, 0.6 * t), torch.zeros_like(y), step=1.0, n_iter=50,
                tol=1e-9)
    assert res.converged and res.n_iter < 50


# --- total variation and fused lasso (PDHG, ADMM) ------------------------------------------------------------
def _dual_box_qp_reference(M, K, y, bounds):
    """``min_x ||M x - y||^2/2 + sum_i b_i |(K x)_i|`` for real data via its dual, a box-constrained QP:
    ``min_{|p_i| <= b_i} 0.5 v^T G^-1 v``, ``v = M^T y - K^T p``, ``G = M^T M``; ``x = G^-1 v``."""
    G = M.T @ M
    Gi = np.linalg.inv(G)
    Mty = M.T @ y

    def fun(p):
        v = Mty - K.T @ p
        Giv = Gi @ v
        return 0.5 * v @ Giv, -K @ Giv

    res = scipy.optimize.minimize(fun, np.zeros(K.shape[0]), jac=True, method="L-BFGS-B",
                                  bounds=list(zip(-bounds, bounds)),
                                  options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-12, "maxcor": 30})
    x = Gi @ (Mty - K.T @ res.x)
    return x, 0.5 * np.linalg.norm(M @ x - y) ** 2 + np.sum(bounds * np.abs(K @ x))


def _real_problem(seed, shape=(6, 6), m=48):
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    M = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.zeros(shape)
    x_true[1:-2, 2:-1] = 1
    x_true[shape[0] // 2 :, 3:] += 1
    y = M @ x_true.ravel() + 0.1 * rng.standard_normal(m)
    return M, y


@pytest.mark.parametrize("solver, linearized", [("pdhg", False), ("pdhg", True), ("admm", False)])
def test_anisotropic_tv_matches_dual_qp_reference(solver, linearized):
    M, y = _real_problem(0)
    lam = 0.1
    Dm = tv_matrix(6, 6)
    x_ref, f_ref = _dual_box_qp_reference(M, Dm, y, np.full(Dm.shape[0], lam))
    A = Dense(torch.from_numpy(M), (6, 6))
    res = total_variation(A, torch.from_numpy(y), lam, isotropic=False, solver=solver, linearized=linearized,
                          n_iter=400 if solver == "pdhg" else 200, rho=0.5)
    assert res.history[-1] == pytest.approx(f_ref, rel=1e-4)
    assert np.linalg.norm(res.x.numpy().ravel() - x_ref) / np.linalg.norm(x_ref) < 1e-3


def _fgp_tv_denoise_reference(y, lam, n_iter=3000):
    """Isotropic TV denoising ``min_x ||x - y||^2/2 + lam sum ||(Dx)_pixel||`` by Beck-Teboulle's fast gradient
    projection on the dual (numpy, explicit Neumann differences)."""
    def grad(x):
        gh = np.zeros_like(x)
        gw = np.zeros_like(x)
        gh[:-1] = x[1:] - x[:-1]
        gw[:, :-1] = x[:, 1:] - x[:, :-1]
        return np.stack([gh, gw])

    def div(p):  # = -D^T p
        d = np.zeros_like(p[0])
        d[:-1] += p[0, :-1]
        d[1:] -= p[0, :-1]
        d[:, :-1] += p[1, :, :-1]
        d[:, 1:] -= p[1, :, :-1]
        return d

    p = np.zeros((2, *y.shape), dtype=y.dtype)
    q, t = p.copy(), 1.0
    for _ in range(n_iter):
        p_new = q + grad(y + div(q)) / 8  # gradient step on the dual, step 1/||D||^2
        norm = np.sqrt(np.abs(p_new[0]) ** 2 + np.abs(p_new[1]) ** 2)
        p_new = p_new / np.maximum(1, norm / lam)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        q = p_new + (t - 1) / t_new * (p_new - p)
        p, t = p_new, t_new
    return y + div(p)


@pytest.mark.parametrize("solver", ["pdhg", "admm"])
def test_isotropic_complex_tv_denoising_matches_fgp_reference(solver):
    rng = np.random.default_rng(3)
    img = np.zeros((10, 12))
    img[2:8, 3:9] = 1
    img[4:6, 5:7] = 2
    y = (img + 0.3 * rng.standard_normal(img.shape)) * np.exp(1j * 0.4) + 0.1j * rng.standard_normal(img.shape)
    lam = 0.25
    ref = _fgp_tv_denoise_reference(y, lam)
    res = total_variation(Identity((10, 12)), torch.from_numpy(y), lam, solver=solver, n_iter=600 if solver == "pdhg" else 200,
                          rho=2.0)
    assert np.linalg.norm(res.x.numpy() - ref) / np.linalg.norm(ref) < 1e-3


def test_tv_of_one_dimensional_image_with_identity():
    # an image constant along H: isotropic = anisotropic TV and every row solves the same 1D problem
    rng = np.random.default_rng(4)
    row = np.r_[np.zeros(5), np.ones(6), 0.3 * np.ones(5)] + 0.2 * rng.standard_normal(16)
    y = np.tile(row, (6, 1))
    lam = 0.3
    res = total_variation(Identity((6, 16)), torch.from_numpy(y), lam, n_iter=2000)
    # 1D reference from the dual box QP on one row (rows of the 2D solution are equal, H-differences vanish)
    x_row, _ = _dual_box_qp_reference(np.eye(16), neumann_diff_matrix(16), row, np.full(16, lam))
    np.testing.assert_allclose(res.x.numpy(), np.tile(x_row, (6, 1)), atol=2e-3)


@pytest.mark.parametrize("solver, linearized", [("pdhg", False), ("pdhg", True), ("admm", False)])
def test_fused_lasso_matches_dual_qp_reference(solver, linearized):
    M, y = _real_problem(1, shape=(8, 8), m=72)
    lam_w, lam_tv = 0.05, 0.08
    Wm = wavelet_matrix(8, 8, "haar", 2)
    Dm = tv_matrix(8, 8)
    K = np.vstack([Wm, Dm])
    bounds = np.r_[np.full(Wm.shape[0], lam_w), np.full(Dm.shape[0], lam_tv)]
    x_ref, f_ref = _dual_box_qp_reference(M, K, y, bounds)
    A = Dense(torch.from_numpy(M), (8, 8))
    res = fused_lasso(A, torch.from_numpy(y), lam_w, lam_tv, wavelet="haar", levels=2, isotropic=False, solver=solver,
                      linearized=linearized, n_iter=400 if solver == "pdhg" else 200, rho=0.5)
    assert res.history[-1] == pytest.approx(f_ref, rel=1e-4)
    assert np.linalg.norm(res.x.numpy().ravel() - x_ref) / np.linalg.norm(x_ref) < 1e-3


@pytest.mark.parametrize("solve", [
    lambda A, y, cb: total_variation(A, y, 0.01, n_iter=50, callback=cb),
    lambda A, y, cb: total_variation(A, y, 0.01, n_iter=50, solver="admm", callback=cb),
    lambda A, y, cb: fused_lasso(A, y, 0.01, 0.01, n_iter=50, callback=cb),
    lambda A, y, cb: cg_sense(A, y, 1e-3, n_iter=50, tol=0, callback=cb),
    lambda A, y, cb: l1_wavelet(A, y, 0.01, n_iter=50, callback=cb),
])
def test_callbacks_stop_every_solver_and_batches_follow_input(solve):
    gen = torch.Generator().manual_seed(11)
    shape = (16, 16)
    A = MaskedFFT(torch.ones(2, *shape, dtype=torch.complex64) / np.sqrt(2), torch.rand(shape, generator=gen) < 0.5)
    y = A(crandn(3, *shape, gen=gen, dtype=torch.complex64))
    calls = []
    res = solve(A, y, lambda it, x, info: calls.append(info) or it == 3)
    assert res.stopped and res.n_iter == 4 and len(calls) == 4
    assert res.x.shape == (3, *shape) and res.x.dtype == torch.complex64 and res.x.device == y.device


def test_cg_without_tolerance_does_not_drift_after_convergence():
    # Running far past convergence with tol=0 (as unrolled networks do) must keep the solution: CG
    # otherwise loses orthogonality once the residual underflows and wanders off.
    g = torch.Generator().manual_seed(0)
    n = 120
    A = torch.randn(200, n, dtype=torch.complex128, generator=g)
    N = A.conj().T @ A
    b = torch.randn(n, dtype=torch.complex128, generator=g)
    lam = 0.05
    x_ref = torch.linalg.solve(N + lam * torch.eye(n, dtype=N.dtype), b)
    out = conjugate_gradient(lambda v: N @ v, b, n_iter=400, tol=0, lam=lam)
    assert float((out.x - x_ref).norm() / x_ref.norm()) < 1e-10
