"""Small building blocks shared by the networks: complex <-> channel views, padding to a multiple, the robust
intensity scale, and the training losses.

Shapes: complex images ``[B, N, H, W]`` (N complex channels) <-> real ``[B, 2N, H, W]`` with the real parts in the
first N channels and the imaginary parts in the last N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, H, W]`` complex -> ``[B, 2N, H, W]`` real (real parts, then imaginary parts)."""
    return torch.cat([x.real, x.imag], dim=1)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``[B, 2N, H, W]`` real -> ``[B, N, H, W]`` complex (inverse of :func:`complex_to_channels`)."""
    n = x.shape[1] // 2
    return torch.complex(x[:, :n].float(), x[:, n:].float())


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two axes of ``x`` up to a multiple of ``multiple`` (split evenly, the extra sample at the
    end). Returns the padded tensor and the ``(left, right, top, bottom)`` amounts for :func:`unpad`.
    Reflection needs the pad to be smaller than the side; it falls back to zeros otherwise."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pads
    if mode == "reflect" and (max(pads[0], pads[1]) >= w or max(pads[2], pads[3]) >= h):
        mode = "constant"
    return F.pad(x, pads, mode=mode), pads


def unpad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def robust_scale(magnitude: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """Per item intensity scale ``[B]`` of ``[B, H, W]`` magnitudes: their ``quantile`` (99th percentile, as
    :attr:`workbench.problem.Problem.scale`), so that the networks see data in units of their own bright tissue
    whatever the scanner's units. Falls back to the maximum for (nearly) empty images."""
    flat = magnitude.detach().flatten(1).float()
    step = max(1, flat.shape[1] // 200_000)
    q = torch.quantile(flat[:, ::step], quantile, dim=1)
    peak = flat.amax(1)
    q = torch.where(q > 0, q, peak)
    return q.clamp_min(torch.finfo(torch.float32).tiny)


# ----------------------------------------------------------------------------------------------------------
# Losses


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor, win_size: int = 7,
             k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM map of ``[B, H, W]`` images (uniform ``win_size`` window, sample covariance: the definition of
    scikit-image and fastMRI's SSIMLoss) on the valid region ``[B, H-6, W-6]``; ``data_range`` is ``[B]``."""
    x = x[:, None].float()
    y = y[:, None].float()
    w = torch.ones(1, 1, win_size, win_size, device=x.device) / win_size**2
    n = win_size**2
    cov_norm = n / (n - 1)
    ux, uy = F.conv2d(x, w), F.conv2d(y, w)
    uxx, uyy, uxy = F.conv2d(x * x, w), F.conv2d(y * y, w), F.conv2d(x * y, w)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    dr = data_range.reshape(-1, 1, 1, 1).float()
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s[:, 0]


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor,
                        ssim_weight: float = 0.84) -> torch.Tensor:
    """Per item loss ``[B]``: ``(1 - w) L1 / data_range + w (1 - SSIM)`` on magnitudes ``[B, h, w]`` (the mixed
    loss of Zhao et al. 2017 that Ramzi et al. train with, SSIM in place of MS-SSIM for small images)."""
    dr = data_range.reshape(-1).float()
    l1 = (pred - target).abs().flatten(1).mean(1) / dr
    if ssim_weight <= 0 or min(pred.shape[-2:]) < 7:
        return l1
    ssim = ssim_map(pred, target, dr).flatten(1).mean(1)
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim)


def n_parameters(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def size_mb(module: torch.nn.Module) -> float:
    """Size of the parameters and buffers in MB (float32 on disk)."""
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    n += sum(b.numel() * b.element_size() for b in module.buffers())
    return n / 2**20
