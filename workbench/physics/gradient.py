"""Finite-difference image gradient (for total variation) as a :class:`~workbench.physics.linop.Linop`."""

from __future__ import annotations

from typing import Sequence

import torch

from workbench.physics.linop import Linop

__all__ = [
    "BOUNDARIES",
    "FiniteDifference2D",
]

BOUNDARIES = ("neumann", "periodic")


class FiniteDifference2D(Linop):
    """Forward differences along H and W: image ``[..., H, W]`` -> gradient ``[..., 2, H, W]``.

    ``out[..., 0, i, j] = x[i+1, j] - x[i, j]`` and ``out[..., 1, i, j] = x[i, j+1] - x[i, j]``.

    Args:
        shape: image shape ``(H, W)``.
        boundary: ``"neumann"`` (the difference across the last row / column is 0, i.e. the image is extended
            by repeating its edge) or ``"periodic"`` (wraps around, so ``D`` commutes with circular shifts).

    The adjoint is the negative divergence; ``||D|| <= sqrt(8)`` for both boundaries.
    """

    def __init__(self, shape: Sequence[int], boundary: str = "neumann"):
        if len(shape) != 2:
            raise ValueError(f"FiniteDifference2D: image shape must be (H, W), got {tuple(shape)}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"FiniteDifference2D: boundary must be one of {BOUNDARIES}, got {boundary!r}")
        h, w = (int(s) for s in shape)
        super().__init__((h, w), (2, h, w))
        self.boundary = boundary

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.boundary == "periodic":
            dh = torch.roll(x, -1, dims=-2) - x
            dw = torch.roll(x, -1, dims=-1) - x
        else:
            dh = torch.zeros_like(x)
            dw = torch.zeros_like(x)
            dh[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
            dw[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        return torch.stack([dh, dw], dim=-3)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        ph, pw = y[..., 0, :, :], y[..., 1, :, :]
        if self.boundary == "periodic":
            return (torch.roll(ph, 1, dims=-2) - ph) + (torch.roll(pw, 1, dims=-1) - pw)
        # -div with the Neumann convention: the last row / column of p never entered the forward operator
        out = torch.zeros_like(ph)
        out[..., 1:, :] += ph[..., :-1, :]
        out[..., :-1, :] -= ph[..., :-1, :]
        out[..., :, 1:] += pw[..., :, :-1]
        out[..., :, :-1] -= pw[..., :, :-1]
        return out

    def __repr__(self) -> str:
        return f"<FiniteDifference2D {self.boundary} {self.ishape} -> {self.oshape}>"
