"""Pieces every solver shares: the result record, batched inner products, the iteration callback protocol.

Batching: a solver's variable is ``[*batch, *item]``; ``item_ndim`` trailing dimensions form one item (one
image) and every leading dimension is an independent problem. Inner products, step sizes, stopping tests and
momentum are per item. Scalar summaries (the history) are over the whole batch: the objective is the sum of
the items' objectives (the objective of the separable batched problem), a residual norm is the norm of the
stacked residual.

Callback protocol: ``callback(it, x, info) -> bool | None`` is called after every iteration with ``it`` the
0-based index of the iteration just completed, the current iterate ``x`` and a dict of Python floats (always
containing the key the solver's history records, e.g. ``"objective"`` or ``"residual"``). Returning ``True``
stops the solver after that iteration (cancellation, or a caller's own stopping rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from workbench.physics.linop import Linop

Callback = Callable[[int, torch.Tensor, dict], Optional[bool]]
NormalOp = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes:
        x: the final iterate ``[*batch, *item]``.
        history: one float per completed iteration (what it is depends on the solver: ``history_name``).
        history_name: ``"objective"`` or ``"residual"`` (relative residual norm for CG).
        n_iter: iterations completed.
        converged: a tolerance was met before ``n_iter``.
        stopped: the callback asked to stop.
        info: extra per-solver values (step sizes, lam, the last info dict, ...).
    """

    x: torch.Tensor
    history: list[float] = field(default_factory=list)
    history_name: str = "objective"
    n_iter: int = 0
    converged: bool = False
    stopped: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def infer_item_ndim(op: Any, default: int) -> int:
    """Number of item dimensions: from a Linop (or a bound method of one, like ``A.normal``), else ``default``."""
    if isinstance(op, Linop):
        return len(op.ishape)
    owner = getattr(op, "__self__", None)
    if isinstance(owner, Linop):
        return len(owner.ishape)
    return default


def item_dims(x: torch.Tensor, item_ndim: int) -> tuple[int, ...]:
    if item_ndim > x.dim():
        raise ValueError(f"tensor of shape {tuple(x.shape)} has fewer than item_ndim={item_ndim} dimensions")
    return tuple(range(x.dim() - item_ndim, x.dim()))


def real_dot(a: torch.Tensor, b: torch.Tensor, item_ndim: int) -> torch.Tensor:
    """``Re <a, b>`` per item: shape ``batch`` (0-d without batch dimensions), real dtype."""
    dims = item_dims(a, item_ndim)
    if a.is_complex():
        return (torch.view_as_real(a) * torch.view_as_real(b)).sum(dim=(*dims, a.dim()))
    return (a * b).sum(dim=dims)


def sq_norm(a: torch.Tensor, item_ndim: int) -> torch.Tensor:
    """``||a||^2`` per item."""
    return real_dot(a, a, item_ndim)


def per_item(v: torch.Tensor | float, item_ndim: int) -> torch.Tensor | float:
    """Reshape a per-item value ``[*batch]`` so that it broadcasts against ``[*batch, *item]``."""
    if isinstance(v, torch.Tensor) and v.dim() > 0:
        return v.reshape(*v.shape, *([1] * item_ndim))
    return v


def call_callback(callback: Callback | None, it: int, x: torch.Tensor, info: dict) -> bool:
    """Run the callback (if any); True means stop."""
    if callback is None:
        return False
    return bool(callback(it, x, info))


def as_tensor_like(v, like: torch.Tensor) -> torch.Tensor:
    """A real tensor on ``like``'s device with ``like``'s real precision."""
    real = like.real.dtype if like.is_complex() else like.dtype
    return torch.as_tensor(v, dtype=real, device=like.device)


class IterationLog:
    """The bookkeeping of one solver loop: the relative change per item, the info dict, the history, the
    tolerance test and the callback.

    ``record(it, x, diff, **extra)`` after every iteration (``x`` the new iterate, ``diff`` its step) builds
    ``info = {"change", **extra, "objective"}`` (the objective when one was given), appends the history value and
    returns True when the solver should stop (``tol`` met for every item, or the callback asked).
    """

    def __init__(self, x0: torch.Tensor, item_ndim: int,
                 objective: Callable[[torch.Tensor], torch.Tensor] | None = None, tol: float = 0.0,
                 callback: Callback | None = None):
        self.item_ndim, self.objective, self.tol, self.callback = item_ndim, objective, tol, callback
        self.tiny = torch.finfo(x0.real.dtype if x0.is_complex() else x0.dtype).tiny
        self.history: list[float] = []
        self.n_iter = 0
        self.converged = self.stopped = False

    def record(self, it: int, x: torch.Tensor, diff: torch.Tensor, **extra: float) -> bool:
        nd = self.item_ndim
        change = sq_norm(diff, nd).sqrt() / sq_norm(x, nd).sqrt().clamp_min(self.tiny)
        self.n_iter = it + 1
        info = {"change": float(change.max()), **extra}
        if self.objective is not None:
            info["objective"] = float(self.objective(x).sum())
        self.history.append(info.get("objective", info["change"]))
        if self.tol > 0 and bool((change < self.tol).all()):
            self.converged = True
        self.stopped = call_callback(self.callback, it, x, info)
        return self.converged or self.stopped

    def result(self, x: torch.Tensor, info: dict[str, Any]) -> SolverResult:
        name = "objective" if self.objective is not None else "change"
        return SolverResult(x, self.history, name, self.n_iter, self.converged, self.stopped, info)
