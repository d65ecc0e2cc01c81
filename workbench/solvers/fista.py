"""FISTA (accelerated proximal gradient) with adaptive restart, batched over leading dimensions."""

from __future__ import annotations

from typing import Callable

import torch

from workbench.solvers.base import (
    Callback,
    NormalOp,
    SolverResult,
    call_callback,
    per_item,
    real_dot,
    sq_norm,
)

Prox = Callable[[torch.Tensor, "float | torch.Tensor"], torch.Tensor]
RESTARTS = (None, "gradient", "function")


def least_squares_gradient(normal_op: NormalOp, adjoint_y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Gradient of ``||A x - y||^2 / 2``: ``x -> A^H A x - A^H y`` from ``A.normal`` and ``A^H y``."""
    return lambda x: normal_op(x) - adjoint_y


def fista(
    grad: Callable[[torch.Tensor], torch.Tensor],
    prox: Prox,
    x0: torch.Tensor,
    *,
    step: float | torch.Tensor,
    n_iter: int = 100,
    restart: str | None = "gradient",
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tol: float = 0.0,
    item_ndim: int | None = None,
    callback: Callback | None = None,
) -> SolverResult:
    """Minimise ``f(x) + g(x)`` with ``f`` smooth (gradient ``grad``) and ``g`` simple (``prox``).

    Args:
        grad: ``x -> grad f(x)``, e.g. :func:`least_squares_gradient` (``A^H A x - A^H y``).
        prox: ``(v, step) -> prox_{step g}(v)``; ``step`` is a float or a tensor broadcasting against ``v``.
            It is called exactly once per iteration, so a stateful prox may change between iterations (cycle
            spinning draws a new wavelet shift each call).
        x0: starting point ``[*batch, *item]``.
        step: ``<= 1 / L`` with ``L`` the Lipschitz constant of ``grad f`` (``||A||^2``: see
            :func:`~workbench.solvers.power.power_iteration`); a float or a per-item tensor of shape ``batch``.
        restart: ``"gradient"`` (O'Donoghue & Candes: restart the momentum of an item when it points against
            the proximal-gradient step; keeps FISTA's speed without its oscillations), ``"function"`` (monotone
            FISTA: a step that would increase the objective is rejected and the momentum restarted, so the
            objective never increases; needs ``objective``), or None (plain FISTA).
        objective: ``x -> F(x)`` per item (shape ``batch``); recorded in the history and the callback info.
        tol: stop when every item's relative change ``||x_k+1 - x_k|| / ||x_k+1||`` is below ``tol``.
        item_ndim: trailing dims of one item (default: all dims of ``x0``).
        callback: ``callback(it, x, info)``, info has ``"objective"`` (when given) and ``"change"``.

    Returns:
        :class:`SolverResult`; ``history`` is the objective (summed over the batch) after every iteration, or
        the relative change when no objective is given.
    """
    if restart not in RESTARTS:
        raise ValueError(f"fista: restart must be one of {RESTARTS}, got {restart!r}")
    if restart == "function" and objective is None:
        raise ValueError("fista: restart='function' needs an objective")
    nd = item_ndim if item_ndim is not None else x0.dim()
    step_b = per_item(step, nd) if isinstance(step, torch.Tensor) else float(step)
    batch_shape = x0.shape[: x0.dim() - nd]
    real_dtype = x0.real.dtype if x0.is_complex() else x0.dtype
    t = torch.ones(batch_shape, dtype=real_dtype, device=x0.device)
    x = z = x0
    f_old = objective(x0) if restart == "function" else None
    history: list[float] = []
    converged = stopped = False
    done = 0
    tiny = torch.finfo(real_dtype).tiny
    for it in range(n_iter):
        x_new = prox(z - step_b * grad(z), step_b)
        diff = x_new - x
        info: dict = {}
        f_new = objective(x_new) if objective is not None else None
        if restart == "gradient":
            reset = real_dot(z - x_new, diff, nd) > 0
        elif restart == "function":
            reset = f_new > f_old
        else:
            reset = torch.zeros_like(t, dtype=torch.bool)
        if restart == "function":
            # monotone variant: an item whose objective went up keeps its previous iterate and restarts from
            # it with a plain proximal-gradient step, which cannot increase the objective
            keep = per_item(reset, nd)
            x_new = torch.where(keep, x, x_new)
            f_new = torch.where(reset, f_old, f_new)
            diff = x_new - x
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        momentum = torch.where(reset, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(reset, torch.ones_like(t), t_new)
        z = x_new + per_item(momentum, nd) * diff
        change = sq_norm(diff, nd).sqrt() / sq_norm(x_new, nd).sqrt().clamp_min(tiny)
        x, f_old = x_new, f_new
        done = it + 1
        info["change"] = float(change.max())
        if f_new is not None:
            info["objective"] = float(f_new.sum())
        history.append(info["objective"] if f_new is not None else info["change"])
        info["restarts"] = int(reset.sum())
        small = change < tol
        if restart == "function":
            small = small & ~reset  # a rejected step is no sign of convergence
        if tol > 0 and bool(small.all()):
            converged = True
        stopped = call_callback(callback, it, x, info)
        if converged or stopped:
            break
    name = "objective" if objective is not None else "change"
    return SolverResult(x, history, name, done, converged, stopped, {"step": step})
