"""Primal-dual hybrid gradient (Chambolle-Pock) for ``min_x g(x) + sum_j f_j(K_j x)``, batched."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from workbench.physics.linop import Linop
from workbench.solvers.base import Callback, SolverResult, call_callback, sq_norm
from workbench.solvers.power import power_iteration

DualProx = Callable[[torch.Tensor, float], torch.Tensor]
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
    lipschitz = float(power_iteration(normal, tuple(x.shape), item_ndim=nd, dtype=x.dtype, device=x.device, n_iter=n_iter).max())
    lipschitz *= 1.02  # power iteration approaches from below
    norm = lipschitz**0.5
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
    history: list[float] = []
    converged = stopped = False
    done = 0
    real_dtype = x0.real.dtype if x0.is_complex() else x0.dtype
    tiny = torch.finfo(real_dtype).tiny
    for it in range(n_iter):
        duals = [prox(u + s * op.forward(xbar), s) for op, prox, u, s in zip(ops, dual_proxes, duals, sigmas)]
        back = ops[0].adjoint(duals[0])
        for op, u in zip(ops[1:], duals[1:]):
            back = back + op.adjoint(u)
        x_new = x - tau * back
        if primal_prox is not None:
            x_new = primal_prox(x_new, tau)
        diff = x_new - x
        xbar = x_new + theta * diff
        change = sq_norm(diff, nd).sqrt() / sq_norm(x_new, nd).sqrt().clamp_min(tiny)
        x = x_new
        done = it + 1
        info = {"change": float(change.max())}
        if objective is not None:
            info["objective"] = float(objective(x).sum())
        history.append(info.get("objective", info["change"]))
        if tol > 0 and bool((change < tol).all()):
            converged = True
        stopped = call_callback(callback, it, x, info)
        if converged or stopped:
            break
    name = "objective" if objective is not None else "change"
    return SolverResult(x, history, name, done, converged, stopped, {"duals": duals, "tau": tau, "sigma": sigmas})
