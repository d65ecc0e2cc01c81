"""Cartesian SENSE forward model ``A = M F S`` (coil maps, centred orthonormal FFT, sampling mask).

Shapes (one item; leading batch dimensions pass through, see :mod:`workbench.physics.linop`):
    image ``[H, W]`` -> masked multi-coil k-space ``[C, H, W]``.

``maps`` may carry its own leading batch dimensions ``[..., C, H, W]`` (one set of maps per batch item, as in
training batches); they broadcast against the batch dimensions of the input. ``mask`` is a boolean ``[H, W]``
(or ``[..., H, W]`` per batch item), or ``[W]`` for a 1D line mask (phase-encode columns, broadcast along the
readout H).
"""

from __future__ import annotations

from typing import Sequence

import torch

from workbench.errors import SamplingError, WorkbenchError
from workbench.physics.fft import fft2c, ifft2c
from workbench.physics.linop import Linop

_DIMS = (-2, -1)


def as_mask(mask, grid_shape: Sequence[int], device=None) -> torch.Tensor:
    """A Cartesian sampling mask as a boolean tensor ``[..., H, W]`` on ``device``.

    Accepts ``[H, W]`` (or with leading batch dimensions) and ``[W]`` (1D line mask selecting phase-encode
    columns, broadcast along the readout). Raises :class:`SamplingError` when it does not fit ``grid_shape``.
    """
    h, w = (int(s) for s in grid_shape)
    m = torch.as_tensor(mask, device=device)
    if m.is_complex():
        raise SamplingError(f"sampling mask must be real or boolean, got {m.dtype}")
    m = m != 0
    if m.dim() == 1:
        if m.shape[0] != w:
            raise SamplingError(f"1D line mask has {m.shape[0]} columns, the k-space grid has {w} (shape {h}x{w})")
        m = m.expand(h, w)
    if m.dim() < 2 or tuple(m.shape[-2:]) != (h, w):
        raise SamplingError(f"sampling mask has shape {tuple(m.shape)}, the k-space grid is {h}x{w}")
    return m


def _check_maps(maps: torch.Tensor) -> torch.Tensor:
    maps = torch.as_tensor(maps)
    if maps.dim() < 3:
        raise WorkbenchError(f"coil maps must be [C, H, W] (or [..., C, H, W]); got shape {tuple(maps.shape)}")
    if not torch.isfinite(torch.view_as_real(maps.to(torch.complex64))).all():
        raise WorkbenchError("coil maps contain NaN or Inf values")
    return maps.to(torch.complex64)


class CoilSense(Linop):
    """Base of the SENSE operators: coil maps ``maps`` ``[C, H, W]`` (None: one coil, no maps) weight an image
    ``[..., H, W]`` into coil images ``[..., C, H, W]``, and their conjugates combine coil images back (the
    adjoint of the weighting)."""

    maps: torch.Tensor | None

    def _coil_images(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-3)
        return x if self.maps is None else x * self.maps

    def _combine(self, coil_images: torch.Tensor) -> torch.Tensor:
        if self.maps is None:
            return coil_images.squeeze(-3)
        return (coil_images * self.maps.conj()).sum(-3)


class CartesianSense(CoilSense):
    """Multi-coil Cartesian SENSE operator ``A = M F S``.

    Args:
        maps: coil sensitivities ``[C, H, W]`` complex (``[..., C, H, W]`` for per-item maps), or None for
            single-coil data (C = 1, S = 1).
        mask: boolean sampling mask ``[H, W]`` / ``[..., H, W]`` or a 1D column mask ``[W]``; None = fully
            sampled.
        grid_shape: ``(H, W)``; only needed when neither maps nor a 2D mask give it.

    ``forward``: image ``[..., H, W]`` -> k-space ``[..., C, H, W]`` (zero where not sampled).
    ``adjoint``: ``sum_c conj(S_c) F^-1 (M y_c)``.
    ``normal``: ``S^H F^H M F S x`` with one FFT pair per coil. Since ``F^H M F`` is a circular convolution it
    commutes with the FFT shifts, so the normal form skips them and applies the mask in unshifted order.
    """

    def __init__(self, maps: torch.Tensor | None, mask=None, grid_shape: Sequence[int] | None = None):
        if maps is not None:
            maps = _check_maps(maps)
            grid = tuple(maps.shape[-2:])
            if grid_shape is not None and tuple(grid_shape) != grid:
                raise WorkbenchError(f"coil maps are {grid[0]}x{grid[1]}, the k-space grid is {tuple(grid_shape)}")
            n_coils = maps.shape[-3]
            device = maps.device
        else:
            if grid_shape is None:
                m = torch.as_tensor(mask) if mask is not None else None
                if m is None or m.dim() < 2:
                    raise WorkbenchError("CartesianSense without maps needs grid_shape or a 2D mask")
                grid_shape = tuple(m.shape[-2:])
            grid = tuple(int(s) for s in grid_shape)
            n_coils = 1
            device = mask.device if isinstance(mask, torch.Tensor) else torch.device("cpu")
        super().__init__(grid, (n_coils, *grid))
        self.maps = maps
        self.grid_shape = grid
        self.device = device
        if mask is None:
            self.mask = None
            self._weights = None
            self._weights_unshifted = None
        else:
            self.mask = as_mask(mask, grid, device=device)
            # Real-valued 0/1 weights broadcast over the coil axis: [..., 1, H, W].
            self._weights = self.mask.to(torch.float32).unsqueeze(-3)
            self._weights_unshifted = torch.fft.ifftshift(self._weights, dim=_DIMS).contiguous()
        # Even grids: the centring shifts are a checkerboard modulation, fft2c(z) = s c * fft2(c * z) with
        # c = (-1)^(m + n) and s = (-1)^(H/2 + W/2). Folding c into the maps and s c into the mask weights makes
        # forward / adjoint one plain FFT per coil, with no shift copies.
        self._even = grid[0] % 2 == 0 and grid[1] % 2 == 0
        if self._even:
            h, w = grid
            checker = 1.0 - 2.0 * ((torch.arange(h, device=device)[:, None] + torch.arange(w, device=device)[None, :]) % 2)
            checker = checker.to(torch.float32)
            sign = -1.0 if (h // 2 + w // 2) % 2 else 1.0
            self._maps_mod = checker.to(torch.complex64) if maps is None else (maps * checker).contiguous()
            out = sign * checker
            self._weights_mod = (out if self._weights is None else out * self._weights).contiguous()

    @property
    def n_coils(self) -> int:
        return self.oshape[0]

    # --- the operator -------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._even:
            return torch.fft.fft2(x.unsqueeze(-3) * self._maps_mod, norm="ortho") * self._weights_mod
        k = fft2c(self._coil_images(x))
        return k if self._weights is None else k * self._weights

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self._even:
            z = torch.fft.ifft2(y * self._weights_mod, norm="ortho")
            return (z * self._maps_mod.conj()).sum(-3)
        if self._weights is not None:
            y = y * self._weights
        return self._combine(ifft2c(y))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        z = self._coil_images(x)
        if self._weights is None:  # F^H F = I
            return self._combine(z)
        k = torch.fft.fft2(z, norm="ortho") * self._weights_unshifted
        return self._combine(torch.fft.ifft2(k, norm="ortho"))

    def normal_rhs(self, y: torch.Tensor) -> torch.Tensor:
        """``A^H y``: the right-hand side that pairs with :meth:`normal` in the normal equations."""
        return self.adjoint(y)

    def coil_images(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-filled coil images ``F^-1 M y``: ``[..., C, H, W]``."""
        self._check(y, self.oshape, "output")
        return ifft2c(y if self._weights is None else y * self._weights)

    def to(self, device) -> "CartesianSense":
        """The same operator with its maps and mask on ``device``."""
        maps = None if self.maps is None else self.maps.to(device)
        mask = None if self.mask is None else self.mask.to(device)
        op = CartesianSense(maps, mask, grid_shape=self.grid_shape)
        op.device = torch.device(device)
        return op

    def __repr__(self) -> str:
        r = "full" if self.mask is None else f"R={self.mask.numel() / max(int(self.mask.sum()), 1):.2f}"
        return f"<CartesianSense {self.n_coils} coils {self.grid_shape[0]}x{self.grid_shape[1]} {r}>"
