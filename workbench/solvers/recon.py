"""Classical reconstructions as a few lines each: CG-SENSE, l1-wavelet, total variation, fused lasso.

All take a forward operator ``A`` (any :class:`~workbench.physics.linop.Linop` image ``[H, W]`` -> data, with
``forward``/``adjoint``/``normal``), the measured data ``y [*batch, *A.oshape]`` and a regularisation weight
``lam`` in the units of the data (the objective is ``||A x - y||^2 / 2 + lam * R(x)``), and return a
:class:`~workbench.solvers.base.SolverResult` whose ``x`` is ``[*batch, H, W]``. They run without autograd,
on ``y``'s device, and share the callback protocol of the solvers (``callback(it, x, info)``, True stops).
The signature ``f(A, y, lam, x0=...)`` is the solver closure that :mod:`workbench.solvers.regularisation`
expects.
"""

from __future__ import annotations

import torch

from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.linop import Linop
from workbench.physics.wavelet import Wavelet2D
from workbench.solvers.admm import admm
from workbench.solvers.base import Callback, SolverResult, sq_norm
from workbench.solvers.cg import conjugate_gradient
from workbench.solvers.fista import fista, least_squares_gradient
from workbench.solvers.pdhg import pdhg, pdhg_steps
from workbench.solvers.power import power_iteration
from workbench.solvers.prox import (
    group_soft_threshold,
    l1_norm,
    l21_norm,
    project_l2_ball,
    prox_dual_least_squares,
    soft_threshold,
)

SOLVERS = ("pdhg", "admm")


def data_fidelity(A: Linop, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``||A x - y||^2 / 2`` per item (shape ``batch``)."""
    return 0.5 * sq_norm(A.forward(x) - y, len(A.oshape))


def tv_norm(D: FiniteDifference2D, x: torch.Tensor, isotropic: bool = True) -> torch.Tensor:
    """Total variation per item: ``sum_pixels ||(D x)_pixel||_2`` (isotropic) or ``sum |D x|`` (anisotropic)."""
    g = D.forward(x)
    return l21_norm(g, dim=-3, item_ndim=3) if isotropic else l1_norm(g, item_ndim=3)


def _image_ndim(A: Linop) -> int:
    if len(A.ishape) != 2:
        raise ValueError(f"operator {A} must map 2D images [H, W]; its ishape is {A.ishape}")
    return 2


def _start(A: Linop, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    if x0 is not None:
        return x0
    batch = y.shape[: y.dim() - len(A.oshape)]
    return torch.zeros(*batch, *A.ishape, dtype=y.dtype, device=y.device)


def lipschitz(A: Linop, y: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """``||A||^2`` per item (power iteration on ``A.normal``; shape ``batch``) with a 2% safety margin."""
    batch = y.shape[: y.dim() - len(A.oshape)]
    return 1.02 * power_iteration(A.normal, (*batch, *A.ishape), item_ndim=len(A.ishape), dtype=y.dtype, device=y.device, n_iter=n_iter)


@torch.no_grad()
def cg_sense(
    A: Linop,
    y: torch.Tensor,
    lam: float = 0.0,
    *,
    x0: torch.Tensor | None = None,
    n_iter: int = 30,
    tol: float = 1e-6,
    callback: Callback | None = None,
) -> SolverResult:
    """CG-SENSE (CGNR): ``min_x ||A x - y||^2 + lam ||x||^2`` by conjugate gradient on the normal equations.
    ``history`` is the relative residual of the normal equations."""
    return conjugate_gradient(A.normal, A.adjoint(y), x0, n_iter=n_iter, tol=tol, lam=lam, item_ndim=len(A.ishape), callback=callback)


class WaveletThreshold:
    """``(v, step) -> W^H soft(W v, lam * step)``: the prox of ``lam ||W x||_1`` for orthonormal ``W``.

    With ``cycle_spinning`` every call uses a new random circular shift of the wavelet grid (seeded), which
    removes the blocky artefacts of a fixed decimated transform (Figueiredo & Nowak; sigpy's L1WaveletRecon).
    """

    def __init__(self, W: Wavelet2D, lam: float, cycle_spinning: bool = True, seed: int = 0):
        self.W, self.lam, self.cycle_spinning = W, lam, cycle_spinning
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, v: torch.Tensor, step) -> torch.Tensor:
        W = self.W.random_shift(self.generator) if self.cycle_spinning else self.W
        return W.adjoint(soft_threshold(W.forward(v), self.lam * step))


@torch.no_grad()
def l1_wavelet(
    A: Linop,
    y: torch.Tensor,
    lam: float,
    *,
    wavelet: str = "db4",
    levels: int | None = None,
    cycle_spinning: bool = True,
    n_iter: int = 100,
    x0: torch.Tensor | None = None,
    step: float | torch.Tensor | None = None,
    restart: str | None = "gradient",
    seed: int = 0,
    track_objective: bool = True,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """l1-wavelet: ``min_x ||A x - y||^2 / 2 + lam ||W x||_1`` by FISTA (with gradient restart).

    ``step`` defaults to ``1 / ||A||^2`` (power iteration). The objective (history, callback) is evaluated
    with the unshifted wavelet; ``track_objective=False`` saves one forward operator per iteration.
    """
    _image_ndim(A)
    W = Wavelet2D(A.ishape, wavelet, levels)
    x = _start(A, y, x0)
    if step is None:
        step = 1.0 / lipschitz(A, y)
    objective = None
    if track_objective:
        objective = lambda v: data_fidelity(A, y, v) + lam * l1_norm(W.forward(v), 2)  # noqa: E731
    prox = WaveletThreshold(W, lam, cycle_spinning, seed)
    result = fista(
        least_squares_gradient(A.normal, A.adjoint(y)), prox, x, step=step, n_iter=n_iter, restart=restart,
        objective=objective, tol=tol, item_ndim=2, callback=callback,
    )
    result.info.update(lam=lam, wavelet=wavelet, levels=W.levels, cycle_spinning=cycle_spinning)
    return result


def _tv_prox(lam: float, isotropic: bool):
    """Prox of ``t * lam * TV`` on the gradient: group (isotropic) or elementwise (anisotropic) shrinkage."""
    if isotropic:
        return lambda v, t: group_soft_threshold(v, lam * t, dim=-3)
    return lambda v, t: soft_threshold(v, lam * t)


def _tv_dual(lam: float, isotropic: bool):
    return lambda p, s: project_l2_ball(p, lam, dim=-3 if isotropic else None)


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


@torch.no_grad()
def total_variation(
    A: Linop,
    y: torch.Tensor,
    lam: float,
    *,
    isotropic: bool = True,
    boundary: str = "neumann",
    solver: str = "pdhg",
    n_iter: int = 200,
    x0: torch.Tensor | None = None,
    rho: float = 1.0,
    cg_iter: int = 5,
    track_objective: bool = True,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """Total variation: ``min_x ||A x - y||^2 / 2 + lam TV(x)`` with ``TV = ||D x||_{2,1}`` (isotropic) or
    ``||D x||_1`` (anisotropic).

    ``solver="pdhg"``: Chambolle-Pock with ``K = [A; D]`` (the data term in the dual: no inner solves).
    ``solver="admm"``: splitting ``z = D x``, x-update by ``cg_iter`` CG steps on ``A^H A + rho D^H D``.
    """
    _image_ndim(A)
    _check_solver(solver)
    D = FiniteDifference2D(A.ishape, boundary)
    x = _start(A, y, x0)
    objective = None
    if track_objective:
        objective = lambda v: data_fidelity(A, y, v) + lam * tv_norm(D, v, isotropic)  # noqa: E731
    if solver == "pdhg":
        tau, sigma = pdhg_steps([A, D], x)
        data_dual = lambda u, s: prox_dual_least_squares(u, s, y)  # noqa: E731
        result = pdhg(x, [A, D], [data_dual, _tv_dual(lam, isotropic)], tau=tau, sigma=sigma, n_iter=n_iter,
                      objective=objective, tol=tol, callback=callback)
    else:
        result = admm(A.normal, A.adjoint(y), [D], [_tv_prox(lam, isotropic)], rho=rho, x0=x0, n_iter=n_iter,
                      cg_iter=cg_iter, objective=objective, tol=tol, callback=callback)
    result.info.update(lam=lam, isotropic=isotropic, boundary=boundary, solver=solver)
    return result


@torch.no_grad()
def fused_lasso(
    A: Linop,
    y: torch.Tensor,
    lam_wavelet: float,
    lam_tv: float,
    *,
    wavelet: str = "db4",
    levels: int | None = None,
    isotropic: bool = True,
    boundary: str = "neumann",
    solver: str = "pdhg",
    n_iter: int = 200,
    x0: torch.Tensor | None = None,
    rho: float = 1.0,
    cg_iter: int = 5,
    track_objective: bool = True,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """Wavelet sparsity plus total variation:
    ``min_x ||A x - y||^2 / 2 + lam_wavelet ||W x||_1 + lam_tv TV(x)``.

    ``solver="pdhg"``: Chambolle-Pock over ``K = [A; W; D]``; ``solver="admm"``: splittings ``W x`` and
    ``D x`` with a CG x-update.
    """
    _image_ndim(A)
    _check_solver(solver)
    W = Wavelet2D(A.ishape, wavelet, levels)
    D = FiniteDifference2D(A.ishape, boundary)
    x = _start(A, y, x0)
    objective = None
    if track_objective:
        def objective(v):
            return data_fidelity(A, y, v) + lam_wavelet * l1_norm(W.forward(v), 2) + lam_tv * tv_norm(D, v, isotropic)
    if solver == "pdhg":
        tau, sigma = pdhg_steps([A, W, D], x)
        data_dual = lambda u, s: prox_dual_least_squares(u, s, y)  # noqa: E731
        wavelet_dual = lambda c, s: project_l2_ball(c, lam_wavelet)  # noqa: E731
        result = pdhg(x, [A, W, D], [data_dual, wavelet_dual, _tv_dual(lam_tv, isotropic)], tau=tau, sigma=sigma,
                      n_iter=n_iter, objective=objective, tol=tol, callback=callback)
    else:
        wavelet_prox = lambda v, t: soft_threshold(v, lam_wavelet * t)  # noqa: E731
        result = admm(A.normal, A.adjoint(y), [W, D], [wavelet_prox, _tv_prox(lam_tv, isotropic)], rho=rho, x0=x0,
                      n_iter=n_iter, cg_iter=cg_iter, objective=objective, tol=tol, callback=callback)
    result.info.update(lam_wavelet=lam_wavelet, lam_tv=lam_tv, isotropic=isotropic, boundary=boundary, solver=solver)
    return result
