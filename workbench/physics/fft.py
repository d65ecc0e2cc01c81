"""Centred orthonormal 2D FFT (the project's one Fourier convention) and coil combination."""

from __future__ import annotations

import torch

from workbench.arrays import center_crop, center_pad  # noqa: F401  (re-exported: torch callers find them here)

__all__ = [
    "center_crop",
    "center_pad",
    "expected_scan_rss",
    "fft2c",
    "ifft2c",
    "rss",
    "unmeasured_noise_energy",
]

_DIMS = (-2, -1)


_CHECKERBOARDS: dict[tuple, torch.Tensor] = {}


def _checkerboard(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``s * (-1)^(i+j)`` with ``s = (-1)^(h/2 + w/2)``: for even sizes the centring shifts of the FFT are
    this modulation before and after the transform, which is cheaper than the four copies the rolls make."""
    key = (h, w, device, dtype)
    c = _CHECKERBOARDS.get(key)
    if c is None:
        i = torch.arange(h, device=device)[:, None] + torch.arange(w, device=device)[None, :]
        c = (1 - 2 * (i % 2)).to(dtype)
        if len(_CHECKERBOARDS) > 32:
            _CHECKERBOARDS.clear()
        _CHECKERBOARDS[key] = c
    return c


def _centred(x: torch.Tensor, transform) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or not x.is_complex():
        return torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)
    c = _checkerboard(h, w, x.device, x.real.dtype)
    y = transform(x * c, norm="ortho")
    return y.mul_(c if (h // 2 + w // 2) % 2 == 0 else -c)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal forward FFT over the last two axes: ``fftshift(fft2(ifftshift(x)))``."""
    return _centred(x, torch.fft.fft2)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse FFT over the last two axes (exact inverse of :func:`fft2c`)."""
    return _centred(k, torch.fft.ifft2)


def rss(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root sum of squares over the coil axis (default: ``[..., C, H, W] -> [..., H, W]``)."""
    return torch.sqrt((x.real**2 + x.imag**2).sum(dim) if x.is_complex() else (x**2).sum(dim))


def unmeasured_noise_energy(mask: torch.Tensor, n_coils: int, noise_std: float) -> float:
    """The noise energy per pixel that a fully sampled scan's root-sum-of-squares image carries from the k-space
    samples a data-consistent estimate leaves noise-free: ``n_coils (1 - f) noise_std^2`` with ``f`` the
    measured fraction of the grid (orthonormal FFT: white k-space noise of variance ``noise_std^2`` per sample
    puts ``noise_std^2`` per pixel and coil, in proportion to the samples it sits on)."""
    measured = float(mask.float().mean())
    return float(n_coils) * (1.0 - measured) * float(noise_std) ** 2


def expected_scan_rss(magnitude: torch.Tensor, mask: torch.Tensor, n_coils: int, noise_std: float) -> torch.Tensor:
    """``sqrt(|x|^2 + unmeasured_noise_energy)``: the expected RSS magnitude of the fully sampled scan, given
    the RSS ``magnitude`` of data-consistent coil images (``E|a + n|^2 = |a|^2 + E|n|^2``): what a fastMRI-style
    reference is, background noise floor included."""
    return torch.sqrt(magnitude**2 + unmeasured_noise_energy(mask, n_coils, noise_std))
