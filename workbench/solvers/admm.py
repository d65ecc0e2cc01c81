"""ADMM for ``min_x ||A x - y||^2 / 2 + sum_j g_j(L_j x)`` with a conjugate-gradient x-update, batched."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from workbench.physics.linop import Linop
from workbench.solvers.base import Callback, IterationLog, NormalOp, SolverResult
from workbench.solvers.cg import conjugate_gradient

Prox = Callable[[torch.Tensor, float], torch.Tensor]


def admm(
    normal_op: NormalOp,
    adjoint_y: torch.Tensor,
    ops: Sequence[Linop],
    proxes: Sequence[Prox],
    *,
    rho: float = 1.0,
    x0: torch.Tensor | None = None,
    n_iter: int = 50,
    cg_iter: int = 5,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> SolverResult:
    """Scaled-form ADMM with splittings ``z_j = L_j x``.

    ``x <- argmin ||A x - y||^2/2 + rho/2 sum_j ||L_j x - z_j + u_j||^2`` (CG on
    ``(A^H A + rho sum_j L_j^H L_j) x = A^H y + rho sum_j L_j^H (z_j - u_j)``, warm-started, ``cg_iter``
    steps); ``z_j <- prox_{g_j / rho}(L_j x + u_j)``; ``u_j <- u_j + L_j x - z_j``.

    Args:
        normal_op: ``x -> A^H A x`` (``A.normal``).
        adjoint_y: ``A^H y`` ``[*batch, *item]``.
        ops: the ``L_j`` (Linops whose ``ishape`` is the image's).
        proxes: ``(v, t) -> prox_{t g_j}(v)`` per block (called with ``t = 1 / rho``).
        rho: penalty parameter (in the units of ``A^H A``; about ``||A||^2`` is a good start).
        x0: start (default ``A^H y``).
        n_iter, cg_iter: outer iterations and CG steps per x-update.
        objective: ``x -> F(x)`` per item, recorded in the history.
        tol: stop when every item's relative primal change is below ``tol``.
        callback: ``callback(it, x, info)``; info has ``"objective"`` (when given), ``"change"`` and
            ``"primal_residual"`` (``sqrt(sum_j ||L_j x - z_j||^2)`` over the batch).
    """
    if len(ops) != len(proxes):
        raise ValueError("admm: one prox per operator block is needed")
    nd = len(ops[0].ishape)
    x = adjoint_y if x0 is None else x0
    lx = [op.forward(x) for op in ops]
    zs = [prox(v, 1.0 / rho) for prox, v in zip(proxes, lx)]
    us = [torch.zeros_like(v) for v in lx]

    def system(v: torch.Tensor) -> torch.Tensor:
        out = normal_op(v)
        for op in ops:
            out = out + rho * op.normal(v)
        return out

    log = IterationLog(adjoint_y, nd, objective, tol, callback)
    for it in range(n_iter):
        rhs = adjoint_y
        for op, z, u in zip(ops, zs, us):
            rhs = rhs + rho * op.adjoint(z - u)
        x_new = conjugate_gradient(system, rhs, x, n_iter=cg_iter, tol=0.0, item_ndim=nd).x
        lx = [op.forward(x_new) for op in ops]
        zs = [prox(v + u, 1.0 / rho) for prox, v, u in zip(proxes, lx, us)]
        us = [u + v - z for u, v, z in zip(us, lx, zs)]
        diff = x_new - x
        x = x_new
        residual = float(sum(float(torch.linalg.vector_norm(v - z)) ** 2 for v, z in zip(lx, zs)) ** 0.5)
        if log.record(it, x, diff, primal_residual=residual):
            break
    return log.result(x, {"rho": rho, "splits": zs, "duals": us})
