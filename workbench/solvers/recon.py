"""Classical reconstructions as a few lines each: CG-SENSE, l1-wavelet, total variation, fused lasso, and the
regularised least squares they share with the built-in methods.

All take a forward operator ``A`` (any :class:`~workbench.physics.linop.Linop` image ``[H, W]`` -> data, with
``forward``/``adjoint``/``normal``), the measured data ``y [*batch, *A.oshape]`` and a regularisation weight
``lam`` in the units of the data (the objective is ``||A x - y||^2 / 2 + lam * R(x)``), and return a
:class:`~workbench.solvers.base.SolverResult` whose ``x`` is ``[*batch, H, W]``. They run without autograd,
on ``y``'s device, and share the callback protocol of the solvers (``callback(it, x, info)``, True stops).
The signature ``f(A, y, lam, x0=...)`` is the solver closure that :mod:`workbench.solvers.regularisation`
expects.

:func:`regularised_least_squares` is the one place that picks the solver for
``min_x 0.5 ||A x - y||^2 + sum_j lam_j R_j(K_j x)`` with l1 / l2,1 penalties (:class:`Penalty`):
PDHG with the data term in the dual, the linearised PDHG with the data term through the normal operator, or
ADMM with a CG x-update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.linop import Linop
from workbench.physics.wavelet import DEFAULT_WAVELET, Wavelet2D
from workbench.solvers.admm import admm
from workbench.solvers.base import Callback, SolverResult, real_dot, sq_norm
from workbench.solvers.cg import conjugate_gradient
from workbench.solvers.fista import fista, least_squares_gradient
from workbench.solvers.pdhg import linearized_theta, pdhg_ratio, regularised_pdhg
from workbench.solvers.power import lipschitz
from workbench.solvers.prox import group_soft_threshold, l1_norm, l21_norm, project_l2_ball, soft_threshold

__all__ = [
    "ADMM_RHO",
    "GRADIENT_NORM2",
    "SOLVERS",
    "Penalty",
    "WaveletThreshold",
    "cg_sense",
    "data_fidelity",
    "fused_lasso",
    "l1_wavelet",
    "lipschitz",
    "normal_objective",
    "regularised_least_squares",
    "total_variation",
    "tv_norm",
    "tv_penalty",
    "wavelet_penalty",
]

SOLVERS = ("pdhg", "admm")
GRADIENT_NORM2 = 8.0  # ||D||^2 <= 8 for forward differences in 2D
ADMM_RHO = 0.3  # ADMM's rho in units of ||A||^2 (~1): fastest of 0.3 / 1 / 3 on brain slices


def data_fidelity(A: Linop, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``||A x - y||^2 / 2`` per item (shape ``batch``)."""
    return 0.5 * sq_norm(A.forward(x) - y, len(A.oshape))


def normal_objective(A: Linop, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> 0.5 ||A x - y||^2`` per item computed with the normal operator, ``0.5 <x, A^H A x> - Re <x, A^H y>
    + 0.5 ||y||^2`` (for non-Cartesian data the Toeplitz normal is cheaper than a NUFFT)."""
    aty = A.adjoint(y)
    yy = float(y.abs().pow(2).sum())

    def data_term(x: torch.Tensor) -> torch.Tensor:
        nx = A.normal(x)
        return (0.5 * real_dot(x, nx, 2) - real_dot(x, aty, 2) + 0.5 * yy).clamp_min(0)

    return data_term


def tv_norm(D: FiniteDifference2D, x: torch.Tensor, isotropic: bool = True) -> torch.Tensor:
    """Total variation per item: ``sum_pixels ||(D x)_pixel||_2`` (isotropic) or ``sum |D x|`` (anisotropic)."""
    g = D.forward(x)
    return l21_norm(g, dim=-3, item_ndim=3) if isotropic else l1_norm(g, item_ndim=3)


@dataclass
class Penalty:
    """One term ``weight * ||K x||_1`` (``group_dim`` None) or ``weight * ||K x||_{2,1}`` (groups along
    ``group_dim`` of ``K x``) of a regularised least-squares objective.

    Attributes:
        op: ``K``, image ``[H, W]`` -> coefficients ``K.oshape``.
        norm2: ``||K||^2`` (1 for an orthonormal wavelet, :data:`GRADIENT_NORM2` for finite differences).
        weight: the penalty weight in data units (0 switches the term off).
        group_dim: the dimension of ``K x`` whose entries are grouped (``-3``: the two gradient components).
    """

    op: Linop
    norm2: float
    weight: float
    group_dim: int | None = None

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``weight * R(K x)`` per item (shape ``batch``)."""
        k = self.op.forward(x)
        nd = len(self.op.oshape)
        norm = l1_norm(k, item_ndim=nd) if self.group_dim is None else l21_norm(k, dim=self.group_dim, item_ndim=nd)
        return self.weight * norm

    def prox(self, v: torch.Tensor, t: float) -> torch.Tensor:
        """``prox_{t weight R}(v)`` on the coefficients: (group) soft thresholding."""
        if self.group_dim is None:
            return soft_threshold(v, self.weight * t)
        return group_soft_threshold(v, self.weight * t, dim=self.group_dim)

    def dual_prox(self, u: torch.Tensor, s: float) -> torch.Tensor:
        """``prox_{s (weight R)*}(u)``: the projection onto the dual ball of radius ``weight``."""
        return project_l2_ball(u, self.weight, dim=self.group_dim)


def wavelet_penalty(W: Wavelet2D, weight: float) -> Penalty:
    """``weight * ||W x||_1`` for an orthonormal wavelet transform ``W`` (``||W||^2 = 1``)."""
    return Penalty(W, 1.0, weight)


def tv_penalty(D: FiniteDifference2D, weight: float, isotropic: bool = True) -> Penalty:
    """``weight * TV(x)`` with ``TV = ||D x||_{2,1}`` (isotropic) or ``||D x||_1`` (anisotropic)."""
    return Penalty(D, GRADIENT_NORM2, weight, -3 if isotropic else None)


@torch.no_grad()
def regularised_least_squares(
    A: Linop,
    y: torch.Tensor,
    penalties: list[Penalty],
    *,
    solver: str = "pdhg",
    linearized: bool = False,
    lam_relative: float | None = None,
    n_iter: int = 100,
    x0: torch.Tensor | None = None,
    lipschitz_A: float | None = None,
    rho: float | None = None,
    cg_iter: int = 5,
    track_objective: bool = True,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """``min_x 0.5 ||A x - y||^2 + sum_j penalty_j(x)``: the one solver dispatch of the regularised methods.

    Args:
        A, y: operator (image ``[H, W]`` -> data) and data ``[*batch, *A.oshape]``.
        penalties: the :class:`Penalty` terms.
        solver: ``"pdhg"``: :func:`~workbench.solvers.pdhg.regularised_pdhg` (data term in the dual: no inner
            solves; penalties of weight 0 are left out, their dual would stay 0 and only shrink the other
            steps), with ``linearized`` its Condat-Vu form (the data term through ``A.normal``: no NUFFT in
            the loop for non-Cartesian data, whose normal is the Toeplitz embedding; the objective then uses
            the normal operator too). ``"admm"``: splittings ``z_j = K_j x``
            and ``cg_iter`` CG steps on ``A^H A + rho sum_j K_j^H K_j`` per x-update.
        lam_relative: the weight relative to the image intensity scale; it sets the PDHG primal/dual balance
            (:func:`~workbench.solvers.pdhg.pdhg_ratio`, :func:`~workbench.solvers.pdhg.linearized_theta`).
            None: balance 1.
        n_iter, x0: iterations and start ``[*batch, H, W]`` (zeros; ADMM: ``A^H y``).
        lipschitz_A: ``||A||^2`` (power iteration when None).
        rho: ADMM penalty (default ``ADMM_RHO * ||A||^2``).
        track_objective: record the objective (history, callback info); tol, callback: as for every solver.

    Returns:
        :class:`SolverResult`, ``x`` ``[*batch, H, W]``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if len(A.ishape) != 2:
        raise ValueError(f"operator {A} must map 2D images [H, W]; its ishape is {A.ishape}")
    objective = None
    if track_objective:
        data_term = normal_objective(A, y) if linearized and solver == "pdhg" else (lambda v: data_fidelity(A, y, v))

        def objective(v: torch.Tensor) -> torch.Tensor:
            out = data_term(v)
            for penalty in penalties:
                out = out + penalty.value(v)
            return out

    if solver == "admm":
        if rho is None:
            rho = ADMM_RHO * (lipschitz_A if lipschitz_A is not None else float(lipschitz(A, y).max()))
        return admm(A.normal, A.adjoint(y), [p.op for p in penalties], [p.prox for p in penalties], rho=rho, x0=x0,
                    n_iter=n_iter, cg_iter=cg_iter, objective=objective, tol=tol, callback=callback)
    blocks = [(p.op, p.norm2, p.dual_prox) for p in penalties if p.weight > 0]
    balance = 1.0 if lam_relative is None else (linearized_theta if linearized else pdhg_ratio)(lam_relative)
    return regularised_pdhg(A, y, blocks, linearized=linearized, balance=balance, n_iter=n_iter, x0=x0,
                            lipschitz_A=lipschitz_A, objective=objective, tol=tol, callback=callback)


def _start(A: Linop, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    if x0 is not None:
        return x0
    batch = y.shape[: y.dim() - len(A.oshape)]
    return torch.zeros(*batch, *A.ishape, dtype=y.dtype, device=y.device)


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
    wavelet: str = DEFAULT_WAVELET,
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


def total_variation(A: Linop, y: torch.Tensor, lam: float, *, isotropic: bool = True, boundary: str = "neumann",
                    n_iter: int = 200, rho: float = 1.0, **options) -> SolverResult:
    """Total variation: ``min_x ||A x - y||^2 / 2 + lam TV(x)`` with ``TV = ||D x||_{2,1}`` (isotropic) or
    ``||D x||_1`` (anisotropic), ``D`` forward differences with ``boundary`` conditions; by
    :func:`regularised_least_squares` (``options``: ``solver``, ``linearized``, ``lam_relative``, ``x0``,
    ``cg_iter``, ``track_objective``, ``tol``, ``callback`` as there)."""
    D = FiniteDifference2D(A.ishape, boundary)
    result = regularised_least_squares(A, y, [tv_penalty(D, lam, isotropic)], n_iter=n_iter, rho=rho, **options)
    result.info.update(lam=lam, isotropic=isotropic, boundary=boundary, solver=options.get("solver", "pdhg"))
    return result


def fused_lasso(A: Linop, y: torch.Tensor, lam_wavelet: float, lam_tv: float, *, wavelet: str = DEFAULT_WAVELET,
                levels: int | None = None, isotropic: bool = True, boundary: str = "neumann", n_iter: int = 200,
                rho: float = 1.0, **options) -> SolverResult:
    """Wavelet sparsity plus total variation:
    ``min_x ||A x - y||^2 / 2 + lam_wavelet ||W x||_1 + lam_tv TV(x)``, by :func:`regularised_least_squares`
    (``options`` as for :func:`total_variation`)."""
    W = Wavelet2D(A.ishape, wavelet, levels)
    D = FiniteDifference2D(A.ishape, boundary)
    penalties = [wavelet_penalty(W, lam_wavelet), tv_penalty(D, lam_tv, isotropic)]
    result = regularised_least_squares(A, y, penalties, n_iter=n_iter, rho=rho, **options)
    result.info.update(lam_wavelet=lam_wavelet, lam_tv=lam_tv, isotropic=isotropic, boundary=boundary,
                       solver=options.get("solver", "pdhg"))
    return result
