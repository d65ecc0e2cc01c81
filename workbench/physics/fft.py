"""Centred orthonormal 2D FFT (the project's one Fourier convention) and coil combination."""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal forward FFT over the last two axes: ``fftshift(fft2(ifftshift(x)))``."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse FFT over the last two axes (exact inverse of :func:`fft2c`)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


def rss(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root sum of squares over the coil axis (default: ``[..., C, H, W] -> [..., H, W]``)."""
    return torch.sqrt((x.real**2 + x.imag**2).sum(dim) if x.is_complex() else (x**2).sum(dim))


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes to ``shape`` around the centre (index N//2 stays the centre)."""
    h, w = x.shape[-2:]
    ch, cw = shape
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to larger {tuple(shape)}")
    top = h // 2 - ch // 2
    left = w // 2 - cw // 2
    return x[..., top : top + ch, left : left + cw]


def center_pad(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two axes to ``shape`` so that index N//2 stays the centre (inverse of center_crop)."""
    h, w = x.shape[-2:]
    ph, pw = shape
    if ph < h or pw < w:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} to smaller {tuple(shape)}")
    out = x.new_zeros(*x.shape[:-2], ph, pw)
    top = ph // 2 - h // 2
    left = pw // 2 - w // 2
    out[..., top : top + h, left : left + w] = x
    return out
