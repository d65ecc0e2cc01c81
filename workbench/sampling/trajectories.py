"""Non-Cartesian k-space trajectories, torchkbnufft's convention.

A trajectory is a float32 tensor ``[2, K]`` in radians per pixel, every sample in ``[-pi, pi)``; row 0 is the
k-coordinate along the image H axis (rows, "ky") and row 1 along W (columns, "kx"), following the image dims
order as torchkbnufft's ``ktraj`` does. k = pi is the Nyquist edge of the grid on that axis, so the same
trajectory in radians fits any grid; ``grid_shape`` only sets defaults (readout length, number of turns).

Samples are ordered readout by readout: sample ``i * n_readout + j`` is point j of spoke / interleave i.
The outermost samples are pulled in by at most one float32 step so that they stay strictly inside
``[-pi, pi)`` in float32 (float32(pi) is larger than pi).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from workbench.errors import SamplingError
from workbench.sampling.masks import _check_shape

GOLDEN_ANGLE_RADIAL = math.pi / ((1.0 + math.sqrt(5.0)) / 2.0)  # pi/phi = 111.246... deg (radial spokes)

# largest float32 strictly below pi; the smallest allowed is -_PI_IN (also strictly inside)
_PI_IN = float(np.nextafter(np.float32(np.pi), np.float32(0.0)))


def _to_tensor(k_h: np.ndarray, k_w: np.ndarray) -> torch.Tensor:
    traj = np.stack([k_h.ravel(), k_w.ravel()]).astype(np.float64)
    traj = np.clip(traj, -_PI_IN, _PI_IN).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(traj))


def _positive_int(value, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SamplingError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _grid(grid_shape: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    return None if grid_shape is None else _check_shape(grid_shape, what, "grid_shape")


def radial_angles(n_spokes: int, golden: bool = False) -> np.ndarray:
    """Spoke angles in radians: uniform ``pi * i / n`` on [0, pi), or golden-angle ``i * 111.246 deg``."""
    i = np.arange(n_spokes, dtype=np.float64)
    if golden:
        return np.mod(i * GOLDEN_ANGLE_RADIAL, math.pi)
    return math.pi * i / n_spokes


def radial_trajectory(
    n_spokes: int,
    n_readout: int | None = None,
    golden: bool = False,
    grid_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """Radial (projection) trajectory, float32 ``[2, n_spokes * n_readout]``.

    Each spoke samples ``k_j = (j - n_readout // 2) * 2 pi / n_readout`` along its direction
    ``(k_H, k_W) = k (sin a, cos a)``, so the centre k = 0 is sample ``n_readout // 2`` of every spoke and
    the readout spans [-pi, pi). ``n_readout = 2 * max(H, W)`` (the default with ``grid_shape``) is the usual
    2x oversampled readout.

    Args:
        n_spokes: number of spokes.
        n_readout: samples per spoke (default ``2 * max(grid_shape)``).
        golden: golden-angle ordering (increment pi/phi = 111.246 deg, angles mod pi), else uniform pi*i/n.
        grid_shape: (H, W), used for the default ``n_readout``.
    """
    what = "radial trajectory"
    grid = _grid(grid_shape, what)
    if n_readout is None:
        if grid is None:
            raise SamplingError(f"{what}: give n_readout or grid_shape")
        n_readout = 2 * max(grid)
    n_spokes = _positive_int(n_spokes, "n_spokes", what)
    n_readout = _positive_int(n_readout, "n_readout", what, minimum=2)
    angles = radial_angles(n_spokes, golden)
    k = (np.arange(n_readout) - n_readout // 2) * (2 * math.pi / n_readout)
    return _to_tensor(np.outer(np.sin(angles), k), np.outer(np.cos(angles), k))


def spiral_trajectory(
    n_interleaves: int,
    n_samples: int,
    grid_shape: Sequence[int] | None = None,
    alpha: float = 1.0,
    n_turns: float | None = None,
) -> torch.Tensor:
    """Variable-density Archimedean-type spiral, float32 ``[2, n_interleaves * n_samples]``.

    One interleave is ``k(tau) = pi * tau^alpha * exp(i 2 pi n_turns tau)``, tau in [0, 1], from the centre to
    k_max = pi; ``alpha = 1`` is the Archimedean spiral (uniform density), ``alpha > 1`` samples the centre
    more densely and the edge less (Kim et al., MRM 2003). Samples are spaced uniformly in arc length
    (constant readout speed, no slew-rate model). Interleaves are rotated by ``2 pi / n_interleaves``.

    Args:
        n_interleaves: number of interleaves (shots).
        n_samples: samples per interleave.
        grid_shape: (H, W); sets the default ``n_turns``.
        alpha: variable-density exponent (>= 1 sensible; > 0 accepted).
        n_turns: turns per interleave. Default ``max(H, W) / (2 n_interleaves)``: Nyquist spacing at the edge
            for alpha = 1 (adjacent arms pi * alpha / (n_turns * n_interleaves) apart in k at the edge).
    """
    what = "spiral trajectory"
    grid = _grid(grid_shape, what)
    n_interleaves = _positive_int(n_interleaves, "n_interleaves", what)
    n_samples = _positive_int(n_samples, "n_samples", what, minimum=2)
    if not (isinstance(alpha, (int, float)) and 0 < alpha <= 16):
        raise SamplingError(f"{what}: alpha must be in (0, 16], got {alpha!r}")
    if n_turns is None:
        if grid is None:
            raise SamplingError(f"{what}: give n_turns or grid_shape")
        n_turns = max(grid) / (2.0 * n_interleaves)
    if not (isinstance(n_turns, (int, float)) and 0 < n_turns <= 10000):
        raise SamplingError(f"{what}: n_turns must be a positive number, got {n_turns!r}")

    # arc length of one interleave on a fine tau grid, then samples at equal arc-length steps
    n_fine = max(8 * n_samples, 4096)
    tau = np.linspace(0.0, 1.0, n_fine)
    radius = math.pi * tau**alpha
    phase = 2 * math.pi * n_turns * tau
    z = radius * np.exp(1j * phase)
    arc = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(z)))])
    tau_s = np.interp(np.linspace(0.0, arc[-1], n_samples), arc, tau)
    z_s = math.pi * tau_s**alpha * np.exp(1j * 2 * math.pi * n_turns * tau_s)

    rot = np.exp(1j * 2 * math.pi * np.arange(n_interleaves) / n_interleaves)
    z_all = rot[:, None] * z_s[None, :]
    return _to_tensor(z_all.imag, z_all.real)


def spiral_for_acceleration(
    grid_shape: Sequence[int], acceleration: float, n_interleaves: int = 16, alpha: float = 1.0
) -> torch.Tensor:
    """Spiral with about H*W/R samples: ``n_turns = max(H, W) / (2 R n_interleaves)`` (the arms R times
    further apart than Nyquist at the edge for alpha = 1) and ``round(H*W / (R n_interleaves))`` samples
    per interleave (about 1.3x finer than the grid along the readout)."""
    h, w = _grid(grid_shape, "spiral trajectory")
    n_samples = max(2, round(h * w / (acceleration * n_interleaves)))
    n_turns = max(h, w) / (2.0 * acceleration * n_interleaves)
    return spiral_trajectory(n_interleaves, n_samples, (h, w), alpha=alpha, n_turns=n_turns)


def radial_for_acceleration(grid_shape: Sequence[int], acceleration: float, golden: bool = False,
                            n_readout: int | None = None) -> torch.Tensor:
    """Radial trajectory with about H*W/R samples: ``n_readout = 2 max(H, W)`` (2x oversampled readout) and
    ``n_spokes = max(1, round(H*W / (R n_readout)))``. R counts samples, as for the Cartesian masks: R = 1 gives
    max(H, W) / 2 spokes, pi times fewer than angular Nyquist (pi/2 max(H, W) spokes) needs."""
    h, w = _grid(grid_shape, "radial trajectory")
    n_readout = 2 * max(h, w) if n_readout is None else n_readout
    n_spokes = max(1, round(h * w / (acceleration * n_readout)))
    return radial_trajectory(n_spokes, n_readout, golden=golden)


# The API contract lists the density compensation beside the trajectories; it lives in dcf.py.
from workbench.sampling.dcf import compute_dcf, pipe_menon_dcf, ramp_dcf, voronoi_dcf  # noqa: E402,F401
