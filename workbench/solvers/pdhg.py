"""Primal-dual hybrid gradient (Chambolle-Pock) for ``min_x g(x) + sum_j f_j(K_j x)``, batched, and its two
forms for regularised least squares ``min_x 0.5 ||A x - y||^2 + sum_j g_j(K_j x)`` with one step per block
(:func:`regularised_pdhg`: the data term in the dual, or linearised, through its gradient, one normal operator
per iteration: the Toeplitz embedding for non-Cartesian data)."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from workbench.physics.linop import Linop
from workbench.solvers.base import Callback, IterationLog, SolverResult
from workbench.solvers.power import lipschitz, power_iteration

DualProx = Callable[[torch.Tensor, float], torch.Tensor]
# (K_j, ||K_j||^2, dual prox of g_j): one block of a regularised least-squares problem
Block = tuple[Any, float, DualProx]
PrimalProx = Callable[[torch.Tensor, float], torch.Tensor]


def pdhg_steps(
    ops: Sequence[Linop], x: torch.Tensor, *, ratio: float = 1.0, safety: float = 0.99, n_iter: int = 50
) -> tuple[float, float]:
    """Step sizes ``(tau, sigma)`` with ``tau * sigma * ||K||^2 = safety**2`` for ``K = [K_1; K_2; ...]``.

    ``||K||^2`` is the largest eigenvalue of ``sum_j K_j^H K_j`` (power iteration started from a random vector
    of ``x``'s shape, dtype and device; the largest over the batch). ``ratio = tau / sigma`` trades primal
    against dual step length.
    """
    def normal(v: torch.Tensor) -> torch.Tensor:
        out = ops[0].normal(v)
        for op in ops[1:]:
            out = out + op.normal(v)
        return out

    nd = len(ops[0].ishape)
    norm2 = float(power_iteration(normal, tuple(x.shape), item_ndim=nd, dtype=x.dtype, device=x.device, n_iter=n_iter).max())
    norm2 *= 1.02  # power iteration approaches from below
    norm = norm2**0.5
    return safety * ratio**0.5 / norm, safety / (ratio**0.5 * norm)


def pdhg(
    x0: torch.Tensor,
    ops: Sequence[Linop],
    dual_proxes: Sequence[DualProx],
    *,
    tau: float,
    sigma: float | Sequence[float],
    primal_prox: PrimalProx | None = None,
    theta: float = 1.0,
    n_iter: int = 200,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    duals0: Sequence[torch.Tensor] | None = None,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """Chambolle-Pock iterations.

    ``u_j <- prox_{sigma_j f_j*}(u_j + sigma_j K_j xbar)``; ``x_new <- prox_{tau g}(x - tau sum_j K_j^H u_j)``;
    ``xbar <- x_new + theta (x_new - x)``. Converges for ``tau * sigma * ||K||^2 < 1`` (:func:`pdhg_steps`).

    Args:
        x0: primal start ``[*batch, *K_j.ishape]``.
        ops: the blocks ``K_j`` (Linops with a common ``ishape``).
        dual_proxes: ``(u, sigma) -> prox_{sigma f_j*}(u)`` per block; by Moreau,
            ``prox_{s f*}(u) = u - s prox_{f/s}(u/s)``. For ``f = lam ||.||_1`` (or the l2,1 norm) it is the
            projection onto the dual ball (:func:`~workbench.solvers.prox.project_l2_ball`); for the data term
            ``||z - y||^2/2`` it is :func:`~workbench.solvers.prox.prox_dual_least_squares`.
        tau, sigma: primal step and dual step(s) (one float, or one per block).
        primal_prox: ``(v, tau) -> prox_{tau g}(v)``; None for ``g = 0``.
        theta: over-relaxation (1 is the standard choice).
        objective: ``x -> F(x)`` per item, recorded in the history and passed to the callback.
        duals0: warm start of the dual variables (e.g. ``result.info["duals"]`` of an earlier solve).
        tol: stop when every item's relative primal change is below ``tol``.
        callback: ``callback(it, x, info)``; info has ``"objective"`` (when given) and ``"change"``.

    Returns:
        :class:`SolverResult` with the final duals in ``info["duals"]``.
    """
    if len(ops) != len(dual_proxes):
        raise ValueError("pdhg: one dual prox per operator block is needed")
    sigmas = [float(sigma)] * len(ops) if not isinstance(sigma, (list, tuple)) else [float(s) for s in sigma]
    nd = len(ops[0].ishape)
    x = xbar = x0
    if duals0 is None:
        duals = [torch.zeros(*x0.shape[: x0.dim() - nd], *op.oshape, dtype=x0.dtype, device=x0.device) for op in ops]
    else:
        duals = list(duals0)
    log = IterationLog(x0, nd, objective, tol, callback)
    for it in range(n_iter):
        # fused multiply-adds (torch.add with alpha): on small images the loop is bound by the number of
        # tensor operations, not by their size
        duals = [prox(torch.add(u, op.forward(xbar), alpha=s), s)
                 for op, prox, u, s in zip(ops, dual_proxes, duals, sigmas)]
        back = ops[0].adjoint(duals[0])
        for op, u in zip(ops[1:], duals[1:]):
            back = back + op.adjoint(u)
        x_new = torch.add(x, back, alpha=-tau)
        if primal_prox is not None:
            x_new = primal_prox(x_new, tau)
        diff = x_new - x
        xbar = torch.add(x_new, diff, alpha=theta)
        x = x_new
        if log.record(it, x, diff):
            break
    return log.result(x, {"duals": duals, "tau": tau, "sigma": sigmas})


def pdhg_ratio(lam_relative: float) -> float:
    """Primal/dual step balance for :func:`regularised_pdhg`: ``0.5 / sqrt(lam)``, clipped to [1, 30].

    PDHG's speed hinges on ``tau / sigma``; on simulated brain slices (8 coils, R = 4) the best balance grew as
    the weight shrank, from ~3 at ``lam = 0.01-0.03`` to ~10-16 at ``lam = 0.001-0.003``, which this formula
    follows (objective within 1e-3 of the optimum in 100 iterations instead of 1.5e-2 with ``tau = sigma``).
    ``lam_relative`` is the weight relative to the image intensity scale."""
    return min(max(0.5 / math.sqrt(max(lam_relative, 1e-12)), 1.0), 30.0)


def linearized_theta(lam_relative: float) -> float:
    """Dual step scale of the linearised :func:`regularised_pdhg`: ``30 * lam``, clipped to [0.03, 1] (best of
    0.03-3 on a radial brain slice at ``lam`` = 0.001 / 0.003 / 0.01: 0.03 / 0.03-0.1 / 0.1-0.3)."""
    return min(max(30.0 * lam_relative, 0.03), 1.0)


def regularised_pdhg(
    A: Linop,
    y: torch.Tensor,
    blocks: Sequence[Block],
    *,
    linearized: bool = False,
    balance: float = 1.0,
    n_iter: int,
    x0: torch.Tensor | None = None,
    lipschitz_A: float | None = None,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """``min_x 0.5 ||A x - y||^2 + sum_j g_j(K_j x)`` by a primal-dual method with one dual step per block.

    ``linearized=False``: PDHG (Chambolle-Pock) with the data term as one more dual block. ``balance`` is the
    primal/dual ratio (:func:`pdhg_ratio`): ``tau = ratio / sqrt(||A||^2 max_j ||K_j||^2)`` and
    ``sigma_j = 0.99 / (n_blocks * tau * ||K_j||^2)`` for every block, the data block included, so
    ``tau * sum_j sigma_j ||K_j||^2 < 1``: convergent for any ratio, and no block's step is dictated by another
    block's norm (the finite-difference operator's ``||D||^2 = 8`` would otherwise slow the data block down
    eightfold).

    ``linearized=True``: the method of Condat (2013) and Vu (2013), the smooth data term entering through its
    gradient ``A^H A x - A^H y``, so each iteration costs one *normal* operator (the Toeplitz embedding for
    non-Cartesian data) instead of a NUFFT and its adjoint::

        x+ = x - tau (A^H A x - A^H y + sum_j K_j^H u_j);   u_j = prox_{sigma_j g_j*}(u_j + sigma_j K_j (2 x+ - x))

    ``balance`` is ``theta`` (:func:`linearized_theta`): ``sigma_j ||K_j||^2 = theta ||A||^2 / n_blocks`` and
    ``tau = 0.99 / (||A||^2 / 2 + sum_j sigma_j ||K_j||^2)``, which satisfies the convergence condition
    ``1/tau - ||sum_j sigma_j K_j^H K_j|| > ||A||^2 / 2``. On a 512x256, 12-coil radial problem one iteration
    takes 0.28 s against 1.3 s for the plain form (NUFFT 0.33 s, adjoint 0.94 s, Toeplitz normal 0.28 s; one
    CPU thread).

    Args:
        A, y: operator (image ``[H, W]`` -> data) and data ``[*batch, *A.oshape]``.
        blocks: ``(K_j, ||K_j||^2, dual_prox_j)`` with ``dual_prox_j(u, sigma) = prox_{sigma g_j*}(u)``.
        x0: start ``[*batch, H, W]`` (zeros by default); lipschitz_A: ``||A||^2`` (power iteration if None).
        objective, tol, callback: as for :func:`pdhg`.

    Returns:
        :class:`SolverResult` (``x`` ``[*batch, H, W]``) with the steps, ``balance`` and ``lipschitz_A`` in
        ``info``.
    """
    from workbench.solvers.prox import prox_dual_least_squares

    if lipschitz_A is None:
        lipschitz_A = float(lipschitz(A, y).max())
    if x0 is None:
        batch = y.shape[: y.dim() - len(A.oshape)]
        x0 = torch.zeros(*batch, *A.ishape, dtype=y.dtype, device=y.device)
    if linearized:
        result = _linearized_pdhg(A, y, blocks, balance, lipschitz_A, x0, n_iter,
                                  IterationLog(x0, len(A.ishape), objective, tol, callback))
    else:
        norms = [lipschitz_A] + [float(n) for _, n, _ in blocks]
        tau = balance / math.sqrt(lipschitz_A * max(norms[1:]))
        sigmas = [0.99 / (len(norms) * tau * L) for L in norms]
        ops = [A] + [op for op, _, _ in blocks]
        proxes = [lambda u, s: prox_dual_least_squares(u, s, y)] + [prox for _, _, prox in blocks]
        result = pdhg(x0, ops, proxes, tau=tau, sigma=sigmas, n_iter=n_iter, objective=objective, tol=tol,
                      callback=callback)
    result.info.update(balance=balance, lipschitz_A=lipschitz_A)
    return result


def _linearized_pdhg(A: Linop, y: torch.Tensor, blocks: Sequence[Block], theta: float, lipschitz_A: float,
                     x: torch.Tensor, n_iter: int, log: IterationLog) -> SolverResult:
    aty = A.adjoint(y)
    sigmas = [theta * lipschitz_A / (len(blocks) * float(norm)) for _, norm, _ in blocks]
    tau = 0.99 / (lipschitz_A / 2 + theta * lipschitz_A)
    nd = len(A.ishape)
    duals = [torch.zeros(*x.shape[: x.dim() - nd], *op.oshape, dtype=x.dtype, device=x.device) for op, _, _ in blocks]
    for it in range(n_iter):
        step = A.normal(x) - aty
        for (op, _, _), u in zip(blocks, duals):
            step = step + op.adjoint(u)
        x_new = x - tau * step
        extrapolated = 2 * x_new - x
        duals = [prox(u + s * op.forward(extrapolated), s) for (op, _, prox), u, s in zip(blocks, duals, sigmas)]
        diff = x_new - x
        x = x_new
        if log.record(it, x, diff):
            break
    return log.result(x, {"tau": tau, "sigma": sigmas, "duals": duals})
