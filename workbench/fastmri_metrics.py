"""PSNR and SSIM as scikit-image computes them for the fastMRI evaluation, in numpy alone.

``skimage.metrics`` imports ``scipy.stats`` (about 0.8 s on a 2-core machine) at the first score of every
``workbench recon``; these two functions give its numbers without that import (checked against scikit-image in
``tests/test_fastmri_metrics.py``, float32 and float64).

- :func:`peak_signal_noise_ratio`: ``10 log10(data_range^2 / MSE)``, the MSE accumulated in float64.
- :func:`structural_similarity`: scikit-image's defaults (a ``win_size`` x ``win_size`` uniform window,
  K1 = 0.01, K2 = 0.03, sample covariance), computed in float32 when both images are float32 (as scikit-image
  does), else float64. The window means are scipy's ``uniform_filter``: each axis in turn (rows first) summed
  in float64 and rounded to the working type, the border mirrored ("reflect"). The mean SSIM leaves out the
  window's half-width at the border, as scikit-image does.

Images are 2D ``[h, w]`` arrays of the same shape.
"""

from __future__ import annotations

import numpy as np

__all__ = ["peak_signal_noise_ratio", "structural_similarity"]

K1, K2 = 0.01, 0.03


def _float_type(a: np.ndarray, b: np.ndarray) -> type:
    # scikit-image's rule (_supported_float_type): float32 stays float32, anything else works in float64
    return np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")


def peak_signal_noise_ratio(image_true: np.ndarray, image_test: np.ndarray, *, data_range: float) -> float:
    """``10 log10(data_range^2 / MSE)`` in dB (``inf`` for identical images)."""
    a, b = np.asarray(image_true), np.asarray(image_test)
    _check(a, b)
    ft = _float_type(a, b)
    a, b = a.astype(ft, copy=False), b.astype(ft, copy=False)
    err = float(np.mean((a - b) ** 2, dtype=np.float64))
    data_range = float(data_range)
    return float("inf") if err == 0 else float(10 * np.log10(data_range ** 2 / err))


def _window_means(x: np.ndarray, size: int, dtype: type, border: bool) -> np.ndarray:
    """scipy.ndimage.uniform_filter(x[i], size) (mode "reflect") of each image of ``x`` ``[n, h, w]``, rounded to
    ``dtype``: ``[n, h, w]`` with ``border``, else only the windows inside the image ``[n, h - size + 1, ...]``
    (the values there do not depend on the border rule)."""
    if border:
        pad = size // 2
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")  # scipy's "reflect": edge repeated
    for axis in (1, 2):  # rows first, as scipy; each window summed in float64, as scipy's filter sums
        wide = x.astype(np.float64)
        n = wide.shape[axis] - size + 1
        shifted = [wide[(slice(None),) * axis + (slice(k, k + n),)] for k in range(size)]  # views, no copies
        total = shifted[0] + shifted[1]
        for view in shifted[2:]:  # one shifted copy at a time: vectorised, exact to float64 rounding
            total += view
        x = (total / size).astype(dtype)
    return x


def structural_similarity(im1: np.ndarray, im2: np.ndarray, *, data_range: float, win_size: int = 7,
                          full: bool = False) -> float | tuple[float, np.ndarray]:
    """Mean SSIM of two ``[h, w]`` images; with ``full``, also the SSIM map ``[h, w]`` (its border, within the
    window's half-width, left out of the mean)."""
    a, b = np.asarray(im1), np.asarray(im2)
    _check(a, b)
    if a.ndim != 2:
        raise ValueError(f"structural_similarity takes 2D images, got shape {a.shape}")
    if win_size % 2 != 1 or win_size > min(a.shape):
        raise ValueError(f"win_size must be odd and at most the smaller side ({min(a.shape)}), got {win_size}")
    ft = _float_type(a, b)
    a, b = a.astype(ft, copy=False), b.astype(ft, copy=False)
    n = win_size ** 2
    cov_norm = n / (n - 1)  # sample covariance
    ux, uy, uxx, uyy, uxy = _window_means(np.stack([a, b, a * a, b * b, a * b]), win_size, ft, full)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (K1 * float(data_range)) ** 2, (K2 * float(data_range)) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    if not full:
        return float(s.mean(dtype=np.float64))
    pad = (win_size - 1) // 2
    return float(s[pad:s.shape[0] - pad, pad:s.shape[1] - pad].mean(dtype=np.float64)), s
