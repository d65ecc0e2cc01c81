"""Proximal operators and the norms they belong to. Complex-aware: shrinkage acts on magnitudes, keeps phase.

``prox_{t g}(v) = argmin_x  g(x) + ||x - v||^2 / (2 t)``. Thresholds and radii may be floats or tensors that
broadcast against the input (per-item weights).
"""

from __future__ import annotations

import torch

from workbench.solvers.base import item_dims


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """``|x|`` elementwise: ``sqrt(re^2 + im^2)`` for complex ``x`` (2-2.5x faster on the CPU than torch's
    overflow-safe ``hypot``; the values here are image intensities, far from float32's range limits)."""
    return (x.real.square() + x.imag.square()).sqrt() if x.is_complex() else x.abs()


def group_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``||x_group||_2`` over ``dim`` (kept, size 1): the squared magnitudes summed. torch's
    ``linalg.vector_norm`` of a complex tensor over a leading dimension took 23 ms for ``[2, 256, 256]`` on one
    thread (half of a TV solve); this takes 0.4 ms."""
    sq = x.real.square() + x.imag.square() if x.is_complex() else x.square()
    return sq.sum(dim, keepdim=True).sqrt()


def soft_threshold(x: torch.Tensor, thresh: float | torch.Tensor) -> torch.Tensor:
    """Prox of ``thresh * ||x||_1`` (``||x||_1 = sum |x_i|``, complex magnitudes):
    ``x * max(0, 1 - thresh / |x|)``; shrinks each magnitude by ``thresh`` and keeps the phase (sign)."""
    mag = magnitude(x)
    scale = torch.clamp(1 - thresh / mag.clamp_min(torch.finfo(mag.dtype).tiny), min=0)
    return x * scale


def group_soft_threshold(x: torch.Tensor, thresh: float | torch.Tensor, dim: int) -> torch.Tensor:
    """Prox of ``thresh * sum_groups ||x_group||_2`` where a group is all entries along ``dim`` (for example
    the 2 gradient components of a pixel: isotropic TV)."""
    norm = group_norm(x, dim)
    scale = torch.clamp(1 - thresh / norm.clamp_min(torch.finfo(norm.dtype).tiny), min=0)
    return x * scale


def project_l2_ball(z: torch.Tensor, radius: float | torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Project onto ``{z : ||z_group||_2 <= radius}`` for every group.

    ``dim=None``: every entry is its own group (``|z_i| <= radius``, complex discs): the dual ball of the l1
    norm (anisotropic TV, l1-wavelet). ``dim=d``: groups run along ``d``: the dual ball of the l2,1 norm
    (isotropic TV with ``d`` the gradient-component axis). This is ``prox_{s f*}`` for ``f = radius * norm``,
    for any step ``s``.
    """
    if not isinstance(radius, torch.Tensor) and not (z.requires_grad and torch.is_grad_enabled()):
        # min(1, r / |z|) in place on the squared norm (autograd would need the intermediate results kept):
        # four operations where the division form takes seven, and PDHG's dual step runs this on every
        # coefficient of every iteration
        sq = z.real.square().add_(z.imag.square()) if z.is_complex() else z.square()
        if dim is not None:
            sq = sq.sum(dim, keepdim=True)
        return z * sq.clamp_min_(torch.finfo(sq.dtype).tiny).rsqrt_().mul_(float(radius)).clamp_max_(1)
    norm = magnitude(z) if dim is None else group_norm(z, dim)
    scale = torch.clamp(radius / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1)
    return z * scale


def l1_norm(x: torch.Tensor, item_ndim: int) -> torch.Tensor:
    """``sum |x_i|`` per item (shape ``batch``)."""
    return magnitude(x).sum(dim=item_dims(x, item_ndim))


def l21_norm(x: torch.Tensor, dim: int, item_ndim: int) -> torch.Tensor:
    """``sum_groups ||x_group||_2`` per item, groups along ``dim`` (which is one of the item dims)."""
    return group_norm(x, dim).sum(dim=item_dims(x, item_ndim))


def prox_dual_least_squares(u: torch.Tensor, sigma: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``prox_{sigma f*}(u)`` for ``f(z) = ||z - y||^2 / 2``: ``(u - sigma y) / (1 + sigma)`` (the data term
    of PDHG when it is kept in the dual)."""
    if isinstance(sigma, torch.Tensor):
        return (u - sigma * y) / (1 + sigma)
    return torch.add(u, y, alpha=-sigma).div_(1 + sigma)
