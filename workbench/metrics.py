"""Image quality metrics, defined as in the fastMRI evaluation (``fastmri/evaluate.py``).

All metrics compare magnitude images: complex input is turned into its magnitude, the reconstruction is
centre-cropped to the reference's size, then

- NMSE = ||ref - rec||^2 / ||ref||^2 over everything given (a slice or a whole volume);
- PSNR = ``skimage.metrics.peak_signal_noise_ratio(ref, rec, data_range)`` = 10 log10(data_range^2 / MSE),
  MSE over everything given;
- SSIM = ``skimage.metrics.structural_similarity(ref_s, rec_s, data_range)`` with its defaults (7x7 uniform
  window, K1 = 0.01, K2 = 0.03, sample covariance), averaged over the slices of a volume.

``data_range`` defaults to ``ref.max()`` of what is passed: for a volume ``[S, h, w]`` that is the volume's
maximum, as fastMRI uses. To score one slice the way it would be scored inside its volume, pass the volume's
maximum as ``data_range`` (fastMRI files store it as the ``max`` attribute).

Inputs may be numpy arrays or torch tensors, ``[h, w]`` or ``[S, h, w]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_WIN_SIZE = 7


def _magnitude(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if np.iscomplexobj(x):
        x = np.abs(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _center_crop(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = x.shape[-2:]
    ch, cw = shape
    top, left = h // 2 - ch // 2, w // 2 - cw // 2
    return x[..., top : top + ch, left : left + cw]


def prepare(ref: Any, rec: Any) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes of ``ref`` and ``rec``, with ``rec`` centre-cropped to ``ref``'s ``[h, w]``."""
    ref_m, rec_m = _magnitude(ref), _magnitude(rec)
    if ref_m.ndim not in (2, 3) or rec_m.ndim != ref_m.ndim:
        raise ValueError(f"expected matching [h, w] or [S, h, w] images, got reference {ref_m.shape} and "
                         f"reconstruction {rec_m.shape}")
    if ref_m.ndim == 3 and ref_m.shape[0] != rec_m.shape[0]:
        raise ValueError(f"reference has {ref_m.shape[0]} slices, reconstruction {rec_m.shape[0]}")
    if rec_m.shape[-2] < ref_m.shape[-2] or rec_m.shape[-1] < ref_m.shape[-1]:
        raise ValueError(f"reconstruction {rec_m.shape[-2:]} is smaller than the reference {ref_m.shape[-2:]}")
    return ref_m, _center_crop(rec_m, ref_m.shape[-2:])


def _data_range(ref: np.ndarray, data_range: float | None) -> float:
    dr = float(ref.max()) if data_range is None else float(data_range)
    if not dr > 0 or not math.isfinite(dr):
        raise ValueError(f"data range must be positive and finite, got {dr} (is the reference all zero?)")
    return dr


def nmse(ref: Any, rec: Any) -> float:
    """Normalised mean squared error ||ref - rec||^2 / ||ref||^2 (magnitudes, rec cropped to ref)."""
    r, x = prepare(ref, rec)
    den = float(np.linalg.norm(r)) ** 2
    if den == 0:
        raise ValueError("NMSE is undefined for an all-zero reference")
    return float(np.linalg.norm(r - x)) ** 2 / den


def psnr(ref: Any, rec: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); ``inf`` for identical images."""
    r, x = prepare(ref, rec)
    dr = _data_range(r, data_range)
    if np.array_equal(r, x):
        return math.inf
    return float(peak_signal_noise_ratio(r, x, data_range=dr))


def ssim(ref: Any, rec: Any, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image, 7x7 window), averaged over slices for ``[S, h, w]`` input."""
    r, x = prepare(ref, rec)
    dr = _data_range(r, data_range)
    if min(r.shape[-2:]) < SSIM_WIN_SIZE:
        raise ValueError(f"images of {r.shape[-2:]} are smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window")
    r3, x3 = (r[None], x[None]) if r.ndim == 2 else (r, x)
    total = 0.0
    for a, b in zip(r3, x3):
        total += float(structural_similarity(a, b, win_size=SSIM_WIN_SIZE, data_range=dr))
    return total / r3.shape[0]


def error_map(ref: Any, rec: Any, relative: bool = False, data_range: float | None = None) -> np.ndarray:
    """Absolute error |(|rec|) - (|ref|)| on the reference grid; ``relative=True`` divides it by the data
    range (default ``ref.max()``), so that 0.1 means 10 % of the peak signal."""
    r, x = prepare(ref, rec)
    err = np.abs(x - r)
    if relative:
        err = err / _data_range(r, data_range)
    return err


def evaluate(ref: Any, rec: Any, data_range: float | None = None) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` of ``rec`` against ``ref`` (see the module docstring for definitions)."""
    return {
        "psnr": psnr(ref, rec, data_range),
        "ssim": ssim(ref, rec, data_range),
        "nmse": nmse(ref, rec),
    }
