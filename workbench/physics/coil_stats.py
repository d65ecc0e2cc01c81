"""Scale-free statistics of a set of coil maps over an object: how smooth, how uneven, how well they unfold.

Used to check the simulator's coil model against ESPIRiT maps of real multi-coil scans
(``benchmarks/bench_coil_realism.py``). Every statistic is invariant to a global complex scale of the maps and
to the image's pixel count; all but :func:`band_limited_fraction` are also invariant to a common phase field
(which that one removes first).

- :func:`gfactor_map`: the SENSE g-factor of equispaced undersampling by ``R`` along one axis (Pruessmann et
  al., MRM 1999): per aliased pixel set ``g_i = sqrt([(S^H S)^-1]_ii [S^H S]_ii)`` with ``S`` the ``C x n`` maps
  of the set's ``n`` object pixels (identity noise covariance unless one is given). Pixels outside the object
  are known to be zero (the usual SENSE support constraint) and take no part.
- :func:`band_limited_fraction`: per coil, the fraction of the map's energy over the object that Fourier modes
  of at most ``radius`` cycles per object size explain (least squares over the object, so the object's edge adds
  no high frequencies).
- :func:`dynamic_range`: per coil, the ``hi``-th over the ``lo``-th percentile of ``|S_c|`` over the object.
- :func:`effective_coils`: participation ratio ``(sum l)^2 / sum l^2`` of the eigenvalues ``l`` of the coil
  energy covariance ``mean_r S(r) S(r)^H`` over the object (1: one coil sees everything, C: all equal and
  orthogonal).
- :func:`coil_map_stats`: all of them, summarised as plain floats.
- :func:`object_mask`: an object mask from Cartesian k-space (low-resolution image of the calibration region),
  defined the same way for real and simulated data.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from workbench.errors import WorkbenchError

__all__ = [
    "band_limited_fraction",
    "coil_map_stats",
    "dynamic_range",
    "effective_coils",
    "gfactor_map",
    "object_mask",
    "remove_common_phase",
]


def _maps_and_mask(maps, mask) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(maps)
    if s.dim() != 3:
        raise WorkbenchError(f"coil maps must be [C, H, W], got shape {tuple(s.shape)}")
    s = s.to(torch.complex128)
    if mask is None:
        m = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device)
    else:
        m = torch.as_tensor(mask, device=s.device).to(torch.bool)
        if tuple(m.shape) != tuple(s.shape[-2:]):
            raise WorkbenchError(f"mask {tuple(m.shape)} does not match the maps' image size {tuple(s.shape[-2:])}")
    if not bool(m.any()):
        raise WorkbenchError("the object mask is empty")
    return s, m


# ------------------------------------------------------------------------------------------------------------
# g-factor
# ------------------------------------------------------------------------------------------------------------
def gfactor_map(maps, acceleration: int, mask=None, axis: int = -1, noise_cov=None) -> torch.Tensor:
    """SENSE g-factor map of equispaced undersampling by ``acceleration`` along ``axis``.

    Args:
        maps: coil maps ``[C, H, W]`` (any normalisation: the g-factor is invariant to a per-pixel scale).
        acceleration: ``R``, an integer dividing the size along ``axis``; every R-th line is acquired, so pixel
            ``x`` aliases with ``x + k N / R`` (k = 1..R-1, circularly) along that axis.
        mask: object support ``[H, W]`` (bool; default everywhere). Outside it the image is known to be zero:
            those pixels are left out of the unfolding and get g = 0.
        axis: the undersampled (phase-encode) axis, -1 (W, the project's convention) or -2 (H).
        noise_cov: coil noise covariance ``[C, C]`` (default identity).

    Returns:
        ``[H, W]`` float64: ``g >= 1`` in the object (``inf`` where the unfolding is singular), 0 outside.
    """
    s, m = _maps_and_mask(maps, mask)
    r = int(acceleration)
    if axis not in (-1, -2, 1, 2):
        raise WorkbenchError(f"axis must be -1 (W) or -2 (H), got {axis}")
    if axis in (-2, 1):
        return gfactor_map(s.transpose(-2, -1), r, m.T, axis=-1, noise_cov=noise_cov).T
    c, h, w = s.shape
    if r < 1 or w % r:
        raise WorkbenchError(f"acceleration {r} must be a positive divisor of the phase-encode size {w}")
    if noise_cov is not None:
        psi = torch.as_tensor(noise_cov, device=s.device).to(torch.complex128)
        chol = torch.linalg.cholesky(psi)
        s = torch.linalg.solve_triangular(chol, s.reshape(c, -1), upper=False).reshape(c, h, w)  # whitened
    n = w // r
    # Aliased sets: columns x0 + k n (k = 0..R-1) for x0 in 0..n-1 -> [H, n, C, R] and the mask [H, n, R].
    a = s.reshape(c, h, r, n).permute(1, 3, 0, 2)
    inside = m.reshape(h, r, n).permute(0, 2, 1)
    a = a * inside[:, :, None, :]
    shs = a.mH @ a  # [H, n, R, R]
    # Outside pixels have zero columns: a unit diagonal there decouples them exactly (block-diagonal system).
    eye = torch.diag_embed((~inside).to(shs.dtype))
    shs_reg = shs + eye
    diag = torch.diagonal(shs, dim1=-2, dim2=-1).real
    singular = False
    try:
        inv_diag = torch.diagonal(torch.linalg.inv(shs_reg), dim1=-2, dim2=-1).real
    except RuntimeError:  # an exactly singular set somewhere: pseudo-inverse, and flag those sets below
        inv_diag = torch.diagonal(torch.linalg.pinv(shs_reg, hermitian=True), dim1=-2, dim2=-1).real
        singular = True
    g2 = inv_diag * diag
    g = torch.sqrt(g2.clamp_min(1.0))  # g >= 1 exactly; rounding can give 1 - 1e-16
    if singular or not bool(torch.isfinite(g2).all()):
        rank = torch.linalg.matrix_rank(shs_reg, hermitian=True)
        g = torch.where((rank < r)[..., None] | ~torch.isfinite(g), torch.full_like(g, math.inf), g)
    g = torch.where(inside, g, torch.zeros_like(g))
    return g.permute(0, 2, 1).reshape(h, w)


# ------------------------------------------------------------------------------------------------------------
# Smoothness, dynamic range, effective coils
# ------------------------------------------------------------------------------------------------------------
def remove_common_phase(maps, mask=None) -> torch.Tensor:
    """The maps ``[C, H, W]`` times ``conj(v) / |v|`` with ``v(r) = b^H S(r)`` the virtual body coil (``b``: the
    leading eigenvector of the coil energy covariance over the object), as ESPIRiT references its maps.

    A common phase field is not a property of the coils (the image can carry it instead), so smoothness
    statistics are computed after removing it; complex128."""
    s, m = _maps_and_mask(maps, mask)
    v = s[:, m]  # [C, N]
    body = torch.linalg.eigh(v @ v.mH)[1][:, -1]
    ref = torch.einsum("c,chw->hw", body.conj(), s)
    return s * (ref.conj() / ref.abs().clamp_min(1e-30))


def band_limited_fraction(maps, mask, radius: float = 1.0, max_points: int = 20_000) -> torch.Tensor:
    """Per coil, the fraction of each map's energy over the object explained by Fourier modes of at most
    ``radius`` cycles per object size: ``1 - ||S_c - P S_c||^2 / ||S_c||^2`` over the mask, with ``P`` the least
    squares projection onto ``exp(2 pi i (k_y y + k_x x))``, ``|k| <= radius / L`` (``L``: the larger side of
    the object's bounding box, in pixels; square pixels assumed; frequencies on a grid of ``1 / (2 L)``, i.e. the
    modes of a box twice the object, which represent non-periodic smooth profiles such as ramps).

    The common phase is removed first (:func:`remove_common_phase`). 1 = perfectly smooth at that scale.

    Args:
        maps: ``[C, H, W]``; mask: object ``[H, W]`` bool; radius: cycles per object size;
        max_points: the fit uses at most about this many object pixels (a regular subsampling).

    Returns:
        ``[C]`` float64 in [0, 1].
    """
    s, m = _maps_and_mask(maps, mask)
    s = remove_common_phase(s, m)
    rows, cols = torch.nonzero(m, as_tuple=True)
    step = max(1, math.ceil(math.sqrt(rows.numel() / max_points)))
    keep = (rows % step == 0) & (cols % step == 0)
    rows, cols = rows[keep], cols[keep]
    r0, r1 = int(rows.min()), int(rows.max())
    c0, c1 = int(cols.min()), int(cols.max())
    size = float(max(r1 - r0 + 1, c1 - c0 + 1))
    y = (rows.to(torch.float64) - 0.5 * (r0 + r1)) / size
    x = (cols.to(torch.float64) - 0.5 * (c0 + c1)) / size
    nmax = int(math.floor(2 * radius))
    ks = torch.arange(-nmax, nmax + 1, dtype=torch.float64) / 2
    ky, kx = torch.meshgrid(ks, ks, indexing="ij")
    sel = ky**2 + kx**2 <= radius**2 + 1e-9
    ky, kx = ky[sel], kx[sel]
    basis = torch.exp(2j * math.pi * (y[:, None] * ky[None, :] + x[:, None] * kx[None, :]))  # [N, K]
    q, _ = torch.linalg.qr(basis)  # orthonormal basis of the span (K << N, well within double precision)
    data = s[:, rows, cols].T  # [N, C]
    fitted = q @ (q.mH @ data)
    total = (data.abs() ** 2).sum(0)
    resid = ((data - fitted).abs() ** 2).sum(0)
    return (1.0 - resid / total.clamp_min(1e-300)).clamp(0.0, 1.0)


def dynamic_range(maps, mask, lo: float = 5.0, hi: float = 95.0) -> torch.Tensor:
    """Per coil, the ratio of the ``hi``-th to the ``lo``-th percentile of ``|S_c|`` over the object: ``[C]``
    float64 (``inf`` where a coil's ``lo``-th percentile is 0)."""
    s, m = _maps_and_mask(maps, mask)
    a = s[:, m].abs()  # [C, N]
    q = torch.quantile(a, torch.tensor([lo / 100.0, hi / 100.0], dtype=a.dtype, device=a.device), dim=1)
    return q[1] / q[0]


def effective_coils(maps, mask) -> float:
    """Participation ratio ``(sum l)^2 / sum l^2`` of the eigenvalues of ``mean_r S(r) S(r)^H`` over the object:
    how many coils' worth of independent spatial information the array carries (between 1 and C)."""
    s, m = _maps_and_mask(maps, mask)
    v = s[:, m]
    cov = v @ v.mH / v.shape[1]
    lam = torch.linalg.eigvalsh(cov).clamp_min(0)
    return float(lam.sum() ** 2 / (lam**2).sum())


def coil_map_stats(
    maps,
    mask,
    accelerations: Sequence[int] = (2, 4),
    axis: int = -1,
    radius: float = 1.0,
    noise_cov=None,
) -> dict[str, Any]:
    """A summary of coil maps ``[C, H, W]`` over the object ``mask`` ``[H, W]`` as plain floats:

    - ``n_coils``; ``object_fraction`` (of the image) and ``object_extent_pe`` (the object's bounding-box extent
      along the undersampled axis over that axis' size: how much aliasing overlap equispaced sampling causes);
    - ``smooth_r{radius}``: median over coils of :func:`band_limited_fraction`;
    - ``dyn_range``: median over coils of :func:`dynamic_range` (95th / 5th percentile);
    - ``n_eff``: :func:`effective_coils`;
    - ``g{R}_mean``, ``g{R}_p95``, ``g{R}_max`` for each acceleration: g-factor (:func:`gfactor_map`) mean, 95th
      percentile and maximum over the object (only accelerations that divide the size along ``axis``).
    """
    s, m = _maps_and_mask(maps, mask)
    out: dict[str, Any] = {"n_coils": int(s.shape[0]), "object_fraction": float(m.double().mean())}
    along = m.any(dim=-2 if axis in (-1, 2) else -1)
    idx = torch.nonzero(along).flatten()
    out["object_extent_pe"] = float((idx.max() - idx.min() + 1) / along.numel())
    out[f"smooth_r{radius:g}"] = float(band_limited_fraction(s, m, radius).median())
    out["dyn_range"] = float(dynamic_range(s, m).median())
    out["n_eff"] = effective_coils(s, m)
    size = s.shape[-1] if axis in (-1, 2) else s.shape[-2]
    for r in accelerations:
        if size % int(r):
            continue
        g = gfactor_map(s, int(r), m, axis=axis, noise_cov=noise_cov)[m]
        out[f"g{int(r)}_mean"] = float(g.mean())
        out[f"g{int(r)}_p95"] = float(torch.quantile(g, 0.95)) if bool(torch.isfinite(g).all()) else math.inf
        out[f"g{int(r)}_max"] = float(g.max())
    return out


# ------------------------------------------------------------------------------------------------------------
# Object mask
# ------------------------------------------------------------------------------------------------------------
def object_mask(kspace, calib=(24, 24), threshold: float = 0.1, support=None) -> torch.Tensor:
    """The object ``[H, W]`` (bool) from Cartesian multi-coil k-space ``[C, H, W]``: where the RSS of the
    low-resolution coil images (the Hann-windowed fully sampled centre, at most ``calib``) exceeds ``threshold``
    times its 99th percentile; the largest connected region, holes filled; optionally intersected with
    ``support`` (e.g. where ESPIRiT maps are non-zero).

    It uses only the calibration region, so it is defined alike for fully sampled and undersampled scans (and
    the low resolution keeps noise and aliasing out of it)."""
    from scipy import ndimage

    from workbench.physics.coils import calibration_region
    from workbench.physics.fft import center_pad, ifft2c, rss

    k = torch.as_tensor(kspace).to(torch.complex64)
    rows, cols = calibration_region(k, calib, min_shape=(4, 4))
    cal = k[:, rows, cols]
    ch, cw = cal.shape[-2:]
    # a Hann window without its zero end points (as the ACS maps of workbench.physics.coils use)
    win_h = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(1, ch + 1, dtype=torch.float32) / (ch + 1))
    win_w = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(1, cw + 1, dtype=torch.float32) / (cw + 1))
    energy = rss(ifft2c(center_pad(cal * (win_h[:, None] * win_w[None, :]), k.shape[-2:]))).numpy()
    level = np.quantile(energy, 0.99)
    obj = energy > threshold * level
    labels, n = ndimage.label(obj)
    if n > 1:
        sizes = ndimage.sum(obj, labels, index=np.arange(1, n + 1))
        obj = labels == (1 + int(np.argmax(sizes)))
    obj = ndimage.binary_fill_holes(obj)
    out = torch.from_numpy(obj)
    if support is not None:
        out = out & torch.as_tensor(support).to(torch.bool).cpu()
    return out
