"""Iterative solvers, proximal operators and classical reconstructions, built on :class:`Linop`.

An app is a few lines combining an operator and a solver. With ``A`` the forward operator of a problem
(``Problem.A``: CartesianSense or NufftSense) and ``y`` its measured data::

    from workbench.solvers import conjugate_gradient, fista, least_squares_gradient, power_iteration
    from workbench.solvers import soft_threshold
    from workbench.physics.wavelet import Wavelet2D

    # CG-SENSE with a little Tikhonov damping: (A^H A + lam I) x = A^H y
    x = conjugate_gradient(A.normal, A.H(y), n_iter=30, lam=1e-3).x

    # l1-wavelet: min 0.5 ||A x - y||^2 + lam ||W x||_1 by FISTA, prox = W^H soft(W x)
    W = Wavelet2D(A.ishape, "db4")
    step = 1 / power_iteration(A.normal)
    prox = lambda v, t: W.H(soft_threshold(W(v), lam * t))
    x = fista(least_squares_gradient(A.normal, A.H(y)), prox, A.H(y), step=step, n_iter=100).x

The same, with cycle spinning, objective tracking and a callback for progress / cancellation, is one call in
:mod:`workbench.solvers.recon`::

    res = l1_wavelet(A, y, lam, n_iter=100, callback=lambda it, x, info: ctx.cancelled())
    res.x, res.history   # image [H, W], objective per iteration

Regularised least squares with l1 / TV penalties goes through one dispatch (PDHG, the linearised PDHG with the
normal operator, or ADMM)::

    D = FiniteDifference2D(A.ishape)
    res = regularised_least_squares(A, y, [wavelet_penalty(W, lam), tv_penalty(D, lam)], solver="pdhg")

and the weight can be chosen automatically (:mod:`workbench.solvers.regularisation`)::

    search = discrepancy_principle(partial(l1_wavelet, n_iter=30), A, y, noise_std=problem.noise_std)
    res = l1_wavelet(A, y, search.lam, x0=search.x)

Every solver works on complex (or real) tensors with leading batch dimensions (per-item step sizes, inner
products and stopping), follows the device of its inputs, calls ``callback(it, x, info)`` after each
iteration (returning True stops) and returns a :class:`SolverResult` (``x``, ``history``, ``n_iter``, ...).
"""

from workbench.solvers.admm import admm
from workbench.solvers.base import IterationLog, SolverResult
from workbench.solvers.cg import conjugate_gradient, shifted_conjugate_gradient
from workbench.solvers.fista import fista, least_squares_gradient
from workbench.solvers.pdhg import linearized_theta, pdhg, pdhg_ratio, pdhg_steps, regularised_pdhg
from workbench.solvers.power import lipschitz, power_iteration
from workbench.solvers.prox import (
    group_soft_threshold, l1_norm, l21_norm, project_l2_ball, prox_dual_least_squares, soft_threshold,
)
from workbench.solvers.recon import (
    ADMM_RHO, GRADIENT_NORM2, SOLVERS, Penalty, cg_sense, data_fidelity, fused_lasso, l1_wavelet, normal_objective,
    regularised_least_squares, total_variation, tv_norm, tv_penalty, wavelet_penalty,
)
from workbench.solvers.regularisation import LambdaSearch, discrepancy_principle, holdout_validation

__all__ = [
    "ADMM_RHO", "GRADIENT_NORM2", "IterationLog", "LambdaSearch", "Penalty", "SOLVERS", "SolverResult", "admm",
    "cg_sense", "conjugate_gradient", "data_fidelity", "discrepancy_principle", "fista", "fused_lasso",
    "group_soft_threshold", "holdout_validation", "l1_norm", "l1_wavelet", "l21_norm", "least_squares_gradient",
    "linearized_theta", "lipschitz", "normal_objective", "pdhg", "pdhg_ratio", "pdhg_steps",
    "power_iteration", "project_l2_ball", "prox_dual_least_squares", "regularised_least_squares",
    "regularised_pdhg", "shifted_conjugate_gradient", "soft_threshold", "total_variation", "tv_norm", "tv_penalty",
    "wavelet_penalty",
]
