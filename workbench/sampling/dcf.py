"""Density compensation for non-Cartesian trajectories (Pipe & Menon, MRM 1999).

The iteration ``w <- w / (C C^T w)`` uses the gridding interpolation matrix ``C`` (``[K, G]``: samples x
oversampled grid points, a separable Kaiser-Bessel kernel as in torchkbnufft), built once as a sparse CSR
matrix; each iteration is one gridding (``C^T w``) and one interpolation. Its fixed point makes the
kernel-smoothed weighted sample density flat.

Normalisation (what the numbers mean): the weights are the k-space area each sample stands for, in units of
one Cartesian grid cell ``(2 pi / H) (2 pi / W)``. A fully sampled Cartesian grid gets weights 1, and with a
NUFFT scaled like the project's orthonormal FFT (``y_j = sum_n x_n exp(-i k_j . n) / sqrt(H W)``, which is
what ``fft2c`` gives on a Cartesian trajectory), ``A^H D A x ~ x`` for images whose spectrum lies inside the
sampled region: ``A^H D y`` is an unbiased image estimate. torchkbnufft's ``norm="ortho"`` divides by
``sqrt(prod(grid_size))`` instead (``grid_size = 2 * im_size`` by default), so with its operators use
``adjoint(D y) * prod(grid_size) / prod(im_size)`` (4 for the default grid), or scale ``D`` by that factor.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from workbench.errors import SamplingError


def _kaiser_bessel(d: np.ndarray, width: int, beta: float) -> np.ndarray:
    """KB kernel on ``|d| <= width/2`` (grid units), normalised to unit integral (a partition of unity)."""
    import scipy.special  # lazily: scipy is slow to import and only needed here

    arg = np.sqrt(np.clip(1.0 - (2.0 * d / width) ** 2, 0.0, None))
    # integral of I0(beta sqrt(1 - (2d/J)^2)) over |d| <= J/2 is J sinh(beta) / beta
    return scipy.special.i0(beta * arg) * (beta / (width * math.sinh(beta)))


_TABLE_POINTS = 8192  # kernel table over |d| in [0, width/2]; linear interpolation error < 1e-7 relative


def _kernel_table(width: int, beta: float) -> np.ndarray:
    return _kaiser_bessel(np.linspace(0.0, width / 2, _TABLE_POINTS + 1), width, beta)


def _interp_entries(traj: np.ndarray, grid_size: tuple[int, int], width: int, beta: float):
    """Column indices and values of the interpolation matrix, both ``[K, width * width]`` (row-major)."""
    table = _kernel_table(width, beta)
    idx, val = [], []
    for d in range(2):
        g = grid_size[d]
        u = traj[d] * (g / (2 * math.pi))  # position in oversampled grid units
        first = np.floor(u - width / 2).astype(np.int64) + 1
        nodes = first[:, None] + np.arange(width)[None, :]
        # |distance| to each node, looked up in the kernel table (as torchkbnufft does)
        pos = np.minimum(np.abs(u[:, None] - nodes) * (2 * _TABLE_POINTS / width), _TABLE_POINTS)
        cell = np.minimum(pos.astype(np.int64), _TABLE_POINTS - 1)
        frac = pos - cell
        val.append((table[cell] * (1 - frac) + table[cell + 1] * frac).astype(np.float32))
        idx.append(np.mod(nodes + g // 2, g).astype(np.int32))  # periodic grid, k = 0 at index g // 2
    k = traj.shape[1]
    cols = (idx[0][:, :, None] * np.int32(grid_size[1]) + idx[1][:, None, :]).reshape(k, width * width)
    vals = (val[0][:, :, None] * val[1][:, None, :]).reshape(k, width * width)
    return cols, vals


def interpolation_matrix(
    traj: Any, grid_shape: Sequence[int], oversampling: float = 2.0, kernel_width: int = 6
) -> "scipy.sparse.csr_matrix":
    """The gridding interpolation matrix ``C`` (scipy CSR, float32, ``[K, Gh * Gw]``) used by the DCF."""
    import scipy.sparse  # lazily: scipy is slow to import

    t, grid_size, _ = _check(traj, grid_shape, oversampling, kernel_width)
    cols, vals = _interp_entries(t, grid_size, kernel_width, 2.34 * kernel_width)
    k = t.shape[1]
    nnz_row = kernel_width * kernel_width
    indptr = np.arange(0, (k + 1) * nnz_row, nnz_row, dtype=np.int64)
    if k * nnz_row >= 2**31 or grid_size[0] * grid_size[1] >= 2**31:
        raise SamplingError(f"density compensation: {k} samples on a {grid_size} grid is too large")
    return scipy.sparse.csr_matrix(
        (vals.ravel(), cols.ravel(), indptr.astype(np.int32)), shape=(k, grid_size[0] * grid_size[1])
    )


def _check(traj: Any, grid_shape: Sequence[int], oversampling: float, kernel_width: int):
    what = "density compensation"
    if isinstance(traj, torch.Tensor):
        t = traj.detach().to("cpu", torch.float64).numpy()
    else:
        t = np.asarray(traj, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != 2 or t.shape[1] < 1:
        raise SamplingError(f"{what}: trajectory must be [2, K], got shape {tuple(t.shape)}")
    if not np.isfinite(t).all():
        raise SamplingError(f"{what}: trajectory has NaN/Inf values")
    if np.abs(t).max() > math.pi * (1 + 1e-5):
        raise SamplingError(
            f"{what}: trajectory must be in radians in [-pi, pi), found |k| up to {np.abs(t).max():.3f}"
        )
    try:
        h, w = (int(s) for s in grid_shape)
    except (TypeError, ValueError):
        raise SamplingError(f"{what}: grid_shape must be (H, W), got {grid_shape!r}") from None
    if h < 2 or w < 2:
        raise SamplingError(f"{what}: grid {h}x{w} is too small")
    if not (isinstance(oversampling, (int, float)) and 1.0 <= oversampling <= 4.0):
        raise SamplingError(f"{what}: oversampling must be in [1, 4], got {oversampling!r}")
    if isinstance(kernel_width, bool) or not isinstance(kernel_width, (int, np.integer)) or not 2 <= kernel_width <= 12:
        raise SamplingError(f"{what}: kernel_width must be an integer in [2, 12], got {kernel_width!r}")
    grid_size = (int(round(oversampling * h)), int(round(oversampling * w)))
    if min(grid_size) < kernel_width:
        raise SamplingError(f"{what}: oversampled grid {grid_size} is smaller than the kernel width")
    return t, grid_size, (h, w)


def pipe_menon_dcf(
    traj: Any,
    grid_shape: Sequence[int],
    n_iter: int = 10,
    oversampling: float = 2.0,
    kernel_width: int = 6,
    device: str | torch.device | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Pipe-Menon density compensation weights, float32 ``[K]``.

    Args:
        traj: ``[2, K]`` radians in [-pi, pi) (torch or numpy), rows in image-axis order (H, W).
        grid_shape: the image grid (H, W).
        n_iter: iterations (torchkbnufft's default is 10).
        oversampling: grid oversampling of the gridding kernel (torchkbnufft: 2).
        kernel_width: Kaiser-Bessel width in oversampled grid points (torchkbnufft: 6; beta = 2.34 * width).
        device: where to compute and return; default the trajectory's device (CPU for numpy). On CPU the
            matrix is a scipy CSR matrix; elsewhere the same entries drive torch gather/scatter-add.
        backend: force ``"scipy"`` (CPU only) or ``"torch"``; default by device.

    Returns:
        weights in units of the Cartesian k-space cell (see the module docstring), on ``device``.
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or not 0 <= n_iter <= 1000:
        raise SamplingError(f"density compensation: n_iter must be an integer in [0, 1000], got {n_iter!r}")
    if device is None:
        device = traj.device if isinstance(traj, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    t, grid_size, (h, w) = _check(traj, grid_shape, oversampling, kernel_width)
    # the fixed point has unit weighted density per oversampled cell; report it per Cartesian cell
    to_cartesian_cells = (h * w) / (grid_size[0] * grid_size[1])
    if backend not in (None, "scipy", "torch"):
        raise SamplingError(f"density compensation: backend must be 'scipy' or 'torch', got {backend!r}")
    if backend == "scipy" and device.type != "cpu":
        raise SamplingError("density compensation: the scipy backend runs on the CPU only")
    if backend == "scipy" or (backend is None and device.type == "cpu"):
        c = interpolation_matrix(t, (h, w), oversampling, kernel_width)
        ct = c.T  # CSC view, no copy
        weights = np.ones(t.shape[1], dtype=np.float32)
        for _ in range(int(n_iter)):
            weights /= c @ (ct @ weights)
        return torch.from_numpy(weights * np.float32(to_cartesian_cells))
    return _pipe_menon_torch(t, grid_size, int(n_iter), kernel_width, device) * to_cartesian_cells


def _pipe_menon_torch(t: np.ndarray, grid_size: tuple[int, int], n_iter: int, width: int, device: torch.device):
    """The same iteration with torch gather / index_add_ (for GPUs)."""
    cols, vals = _interp_entries(t, grid_size, width, 2.34 * width)
    cols_t = torch.from_numpy(cols.reshape(-1).astype(np.int64)).to(device)
    vals_t = torch.from_numpy(vals).to(device)
    k = t.shape[1]
    weights = torch.ones(k, dtype=torch.float32, device=device)
    grid = torch.empty(grid_size[0] * grid_size[1], dtype=torch.float32, device=device)
    for _ in range(n_iter):
        grid.zero_().index_add_(0, cols_t, (vals_t * weights[:, None]).reshape(-1))
        weights = weights / (vals_t * grid[cols_t].reshape(k, -1)).sum(1)
    return weights
