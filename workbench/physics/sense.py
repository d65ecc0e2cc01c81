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

    def line_form(self, y: torch.Tensor) -> "tuple[CartesianLineSense, torch.Tensor] | None":
        """``(A_h, y_h)``: the same least-squares problem in hybrid space when the mask samples whole lines (see
        :class:`CartesianLineSense`; ``y`` ``[..., C, H, W]`` k-space, ``y_h`` its sampled lines after the inverse
        FFT along the fully sampled axis); None for other masks, no mask, or per-item maps or masks."""
        if self.mask is None or self.mask.dim() != 2 or (self.maps is not None and self.maps.dim() != 3):
            return None
        axis = line_axis(self.mask)
        if axis is None:
            return None
        lines = torch.nonzero(self.mask.any(dim=-2 if axis == -1 else -1)).reshape(-1)
        other = -2 if axis == -1 else -1
        hybrid = torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(y, dim=other), dim=other, norm="ortho"),
                                    dim=other)
        op = CartesianLineSense(self.maps, lines.to(self.device), axis, self.grid_shape)
        return op, torch.index_select(hybrid, axis, lines.to(y.device))

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


def line_axis(mask: torch.Tensor) -> int | None:
    """``-1`` when every column of a 2D mask ``[H, W]`` is sampled whole or not at all (lines along the readout H
    at the sampled phase encodes W), ``-2`` for whole rows, None otherwise (or when nothing is sampled)."""
    if mask.dim() != 2 or not bool(mask.any()):
        return None
    if bool((mask.all(0) == mask.any(0)).all()):
        return -1
    if bool((mask.all(1) == mask.any(1)).all()):
        return -2
    return None


class CartesianLineSense(CoilSense):
    """The SENSE operator of a line mask in hybrid space: ``A_h = P_K F_a S``, image ``[..., H, W]`` ->
    ``[..., C, H, K]`` (columns, ``axis=-1``) or ``[..., C, K, W]`` (rows, ``axis=-2``).

    ``F_a`` is the centred orthonormal FFT along the sampled axis ``a`` only and ``P_K`` keeps the ``K`` sampled
    lines. For a mask that samples whole lines, ``M F S = M F_b F_a S = F_b M F_a S`` with ``F_b`` the (unitary)
    FFT along the fully sampled axis, so ``||M F S x - y|| = ||A_h x - F_b^H y||`` on the sampled lines: the same
    least-squares problem (same residuals, normal operator, norms) with one 1D FFT per coil instead of a 2D one
    (the contiguous axis: about 2.7x cheaper at 256x256) and data, duals and residuals on the sampled lines only.
    :meth:`CartesianSense.line_form` builds it with the data in this space.

    The centring shifts are folded into a phase per kept line (for any length ``n``,
    ``fftc(z)[k] = exp(2 pi i u s / n) fft(z)[u]`` with ``u = (k - n//2) mod n``, ``s = n//2``), so the loop runs
    plain unshifted FFTs.
    """

    def __init__(self, maps: torch.Tensor | None, lines: torch.Tensor, axis: int, grid_shape: Sequence[int]):
        grid = tuple(int(s) for s in grid_shape)
        n = grid[axis]
        lines = torch.as_tensor(lines).reshape(-1).to(torch.long)
        n_coils = 1 if maps is None else maps.shape[-3]
        out = (n_coils, grid[0], len(lines)) if axis == -1 else (n_coils, len(lines), grid[1])
        super().__init__(grid, out)
        self.maps = None if maps is None else _check_maps(maps)
        self.axis, self.grid_shape = axis, grid
        self.device = lines.device if maps is None else self.maps.device
        unshifted = (lines - n // 2) % n
        self._index = unshifted.to(self.device)
        phase = torch.exp(2j * torch.pi * unshifted.to(torch.float64) * (n // 2) / n).to(torch.complex64)
        self._phase = (phase if axis == -1 else phase[:, None]).to(self.device)
        weights = torch.zeros(n, dtype=torch.float32)
        weights[unshifted] = 1.0
        self._weights = (weights if axis == -1 else weights[:, None]).to(self.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fft(self._coil_images(x), dim=self.axis, norm="ortho")
        lines = k[..., self._index] if self.axis == -1 else k[..., self._index, :]  # 2x index_select's speed
        return lines * self._phase

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        shape = list(y.shape)
        shape[self.axis] = self.grid_shape[self.axis]
        k = y.new_zeros(shape).index_copy_(self.axis, self._index, y * self._phase.conj())
        return self._combine(torch.fft.ifft(k, dim=self.axis, norm="ortho"))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fft(self._coil_images(x), dim=self.axis, norm="ortho") * self._weights
        return self._combine(torch.fft.ifft(k, dim=self.axis, norm="ortho"))

    def __repr__(self) -> str:
        return (f"<CartesianLineSense {self.oshape[0]} coils {self.grid_shape[0]}x{self.grid_shape[1]}, "
                f"{self.oshape[self.axis]} lines along axis {self.axis}>")
