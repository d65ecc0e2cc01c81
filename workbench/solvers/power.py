"""Power iteration: the largest eigenvalue of a Hermitian positive semi-definite operator (step sizes)."""

from __future__ import annotations

from typing import Sequence

import torch

from workbench.physics.linop import Linop
from workbench.solvers.base import NormalOp, infer_item_ndim, per_item, real_dot, sq_norm


def power_iteration(
    normal_op: NormalOp,
    shape: Sequence[int] | None = None,
    *,
    n_iter: int = 50,
    tol: float = 1e-4,
    item_ndim: int | None = None,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str = "cpu",
    x0: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Largest eigenvalue of ``N`` (e.g. ``||A||^2`` for ``N = A^H A``), per item.

    Args:
        normal_op: callable ``x -> N x`` (``A.normal``, a square Linop, or a function).
        shape: full shape ``[*batch, *item]`` of the vectors; defaults to the Linop's ``ishape``.
        n_iter: maximum iterations; stops earlier once every item's estimate changes by less than ``tol``
            (relative).
        item_ndim: trailing dims of one item (inferred from a Linop, else the whole shape).
        dtype, device: of the random start vector (ignored when ``x0`` is given).
        x0: start vector (its dtype and device are used).

    Returns:
        real tensor of shape ``batch`` (0-d without batch dims). The estimate approaches the eigenvalue from
        below; solvers multiply it by a small safety factor.
    """
    if x0 is None:
        if shape is None:
            owner = normal_op if isinstance(normal_op, Linop) else getattr(normal_op, "__self__", None)
            if not isinstance(owner, Linop):
                raise ValueError("power_iteration: give `shape` (or pass a Linop / A.normal)")
            shape = owner.ishape
        g = torch.Generator().manual_seed(seed)
        real = torch.randn(*shape, generator=g, dtype=torch.float64)
        if dtype.is_complex:
            x = torch.complex(real, torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)
        else:
            x = real.to(dtype)
        x = x.to(device)
    else:
        x = x0
    nd = item_ndim if item_ndim is not None else infer_item_ndim(normal_op, x.dim())
    tiny = torch.finfo(x.real.dtype if x.is_complex() else x.dtype).tiny
    x = x / per_item(sq_norm(x, nd).sqrt().clamp_min(tiny), nd)
    est = None
    for _ in range(n_iter):
        y = normal_op(x)
        norm_y = sq_norm(y, nd).sqrt()
        new = norm_y
        x = y / per_item(norm_y.clamp_min(tiny), nd)
        if est is not None and bool(((new - est).abs() <= tol * new.abs().clamp_min(tiny)).all()):
            est = new
            break
        est = new
    # Rayleigh quotient of the last unit vector: a slightly sharper estimate than ||N x||, still <= lambda_max
    rq = real_dot(x, normal_op(x), nd)
    return torch.maximum(est, rq)


def lipschitz(A: Linop, y: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """``||A||^2`` per item of ``y [*batch, *A.oshape]`` (power iteration on ``A.normal``; shape ``batch``) with a
    2% safety margin (the estimate approaches from below)."""
    batch = y.shape[: y.dim() - len(A.oshape)]
    return 1.02 * power_iteration(A.normal, (*batch, *A.ishape), item_ndim=len(A.ishape), dtype=y.dtype,
                                  device=y.device, n_iter=n_iter)
