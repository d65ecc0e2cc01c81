"""Cartesian undersampling masks: boolean ``[H, W]`` tensors, fastMRI orientation.

As in fastMRI, the readout runs along H and is never undersampled; 1D masks select phase-encode *columns*
(a 1D mask ``[W]`` is broadcast along H). 2D masks (Poisson disc, Gaussian) undersample both axes, for 2D
slices of 3D acquisitions.

Every mask class is small and fastMRI-like: parameters in the constructor, ``mask = m(shape, seed)`` to draw a
mask. A draw is fully determined by ``(parameters, shape, seed)``; :meth:`params` returns them as a JSON-able
dict and :func:`mask_from_params` redraws the identical mask. A call without a seed draws one from the
object's own generator (seeded by the constructor's ``seed``) and records it, so every mask can be recreated.

Reported figures (:func:`effective_acceleration`, :func:`acs_shape`) are computed from the mask itself.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Sequence

import numpy as np
import torch

from workbench.errors import SamplingError, int_pair

MIN_SIZE = 8  # smallest grid side accepted (smaller grids are not MRI images)

Seed = int | Sequence[int]


# ----------------------------------------------------------------------------------------------------------
# helpers
def _as_numpy_bool(mask: Any) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool, copy=False)


def _check_shape(shape: Sequence[int], what: str = "mask", name: str = "shape") -> tuple[int, int]:
    h, w = int_pair(shape, f"{what}: {name} must be (H, W), got {shape!r}")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise SamplingError(f"{what}: grid {h}x{w} is too small (each side must be at least {MIN_SIZE})")
    return h, w


def _check_acceleration(acceleration: float, what: str) -> float:
    try:
        acc = float(acceleration)
    except (TypeError, ValueError):
        raise SamplingError(f"{what}: acceleration must be a number, got {acceleration!r}") from None
    if not math.isfinite(acc) or acc < 1:
        raise SamplingError(f"{what}: acceleration must be >= 1, got {acceleration!r}")
    return acc


def _check_center_fraction(cf: float, what: str) -> float:
    try:
        f = float(cf)
    except (TypeError, ValueError):
        raise SamplingError(f"{what}: center fraction must be a number, got {cf!r}") from None
    if not 0 <= f < 1:
        raise SamplingError(f"{what}: center fraction must be in [0, 1), got {cf!r}")
    return f


def _check_seed(seed: Any, what: str) -> int | tuple[int, ...] | None:
    """Seeds are ints or tuples of ints (fastMRI seeds with ``tuple(map(ord, filename))``)."""
    if seed is None:
        return None
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2**32:
        return int(seed)
    if isinstance(seed, (list, tuple)) and seed and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seed
    ):
        return tuple(int(s) for s in seed)
    raise SamplingError(f"{what}: seed must be an int in [0, 2**32) or a tuple of them, got {seed!r}")


def _check_calib(calib: Any, what: str) -> tuple[int, int]:
    ch, cw = int_pair(calib, f"{what}: calib must be (rows, cols), got {calib!r}")
    if ch < 0 or cw < 0:
        raise SamplingError(f"{what}: calib must be non-negative, got {calib!r}")
    return ch, cw


def _centered_slice(n: int, size: int) -> slice:
    """The ``size`` indices centred on ``n // 2`` (the k-space centre), as in ``center_crop``."""
    start = n // 2 - size // 2
    return slice(start, start + size)


def _calib_box(shape: tuple[int, int], calib: tuple[int, int], what: str) -> np.ndarray:
    h, w = shape
    ch, cw = calib
    if ch > h or cw > w:
        raise SamplingError(f"{what}: calibration region {ch}x{cw} does not fit the {h}x{w} grid")
    box = np.zeros((h, w), dtype=bool)
    box[_centered_slice(h, ch), _centered_slice(w, cw)] = True
    return box


# ----------------------------------------------------------------------------------------------------------
# reported figures
def effective_acceleration(mask: Any, encoded: Any = None) -> float:
    """Samples on the full grid / samples acquired (``inf`` when nothing is acquired).

    Args:
        mask: bool ``[H, W]`` (or ``[W]`` for a line mask), torch or numpy.
        encoded: optional bool mask of the part of the grid the protocol encodes at all (e.g. zero-padded
            phase-encode edges excluded); then R = encoded samples / acquired encoded samples.
    """
    m = _as_numpy_bool(mask)
    if encoded is not None:
        try:
            m, e = np.broadcast_arrays(m, _as_numpy_bool(encoded))
        except ValueError:
            raise SamplingError(f"mask {m.shape} and encoded region {np.shape(encoded)} do not match") from None
        total, acquired = int(e.sum()), int((m & e).sum())
    else:
        total, acquired = m.size, int(m.sum())
    return float(total / acquired) if acquired else math.inf


def _centred_run(full: np.ndarray) -> int:
    """Largest n such that the n entries centred on len//2 (``_centered_slice``) are all True."""
    n_all = full.shape[0]
    c = n_all // 2
    if not full[c]:
        return 0
    # contiguous True run left of the centre (excluding it) and right of it (including it)
    left = np.flatnonzero(~full[:c][::-1])
    right = np.flatnonzero(~full[c:])
    n_left = int(left[0]) if left.size else c
    n_right = int(right[0]) if right.size else n_all - c
    # _centered_slice(n) covers n//2 entries left of c, and c with n - n//2 - 1 entries right of it
    return max(2 * min(n_left, n_right), min(2 * n_left + 1, 2 * n_right - 1))


def acs_shape(mask: Any) -> tuple[int, int]:
    """Size ``(rows, cols)`` of the largest fully sampled box centred on the k-space centre (H//2, W//2).

    For a 1D line mask (every column fully sampled or empty) this is ``(H, number of centre lines)``, the
    symmetric count fastMRI's VarNet uses; a ``[W]`` mask gives ``(1, lines)``. For 2D masks it is the box of
    largest area (ties: the squarer one). ``(0, 0)`` when the centre itself is not sampled.
    """
    m = _as_numpy_bool(mask)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2:
        raise SamplingError(f"mask must be [H, W] or [W], got shape {m.shape}")
    h, w = m.shape
    if not m[h // 2, w // 2]:
        return (0, 0)
    # Line masks (every column, or every row, sampled whole or not at all): the box spans the whole lines and
    # the centred run of them; the row-by-row search below gives the same in O(H) numpy calls (3 ms at 320 rows).
    cols_full, rows_full = m.all(0), m.all(1)
    if (cols_full | ~m.any(0)).all():
        return (h, _centred_run(cols_full))
    if (rows_full | ~m.any(1)).all():
        return (_centred_run(rows_full), w)
    best = (0, 0)
    full_cols = np.ones(w, dtype=bool)
    for rows in range(1, h + 1):
        # grow the centred row range by one row (the row a _centered_slice of this size adds)
        sl = _centered_slice(h, rows)
        full_cols &= m[sl.start if rows % 2 == 0 else sl.stop - 1]
        cols = _centred_run(full_cols)
        if cols == 0:
            break
        area, best_area = rows * cols, best[0] * best[1]
        if area > best_area or (area == best_area and abs(rows - cols) < abs(best[0] - best[1])):
            best = (rows, cols)
    return best


# ----------------------------------------------------------------------------------------------------------
class MaskFunc:
    """Base class: ``mask = m(shape=(H, W), seed=None)`` -> torch.bool ``[H, W]``."""

    kind: str = ""

    def __init__(self, seed: Seed | None = None):
        self.seed = _check_seed(seed, self.kind)
        # draws seeds for calls without one, so that every drawn mask is recorded by its seed
        self._seed_source = np.random.RandomState(self.seed)
        self.last_shape: tuple[int, int] | None = None
        self.last_seed: int | tuple[int, ...] | None = None

    def __call__(self, shape: Sequence[int] = None, seed: Seed | None = None) -> torch.Tensor:
        if shape is None:
            raise SamplingError(f"{self.kind} mask: a grid shape (H, W) is needed")
        hw = _check_shape(shape, f"{self.kind} mask")
        seed = _check_seed(seed, f"{self.kind} mask")
        if seed is None:
            seed = int(self._seed_source.randint(0, 2**31 - 1))
        mask = self._sample(hw, seed)
        self.last_shape, self.last_seed = hw, seed
        return torch.from_numpy(np.broadcast_to(mask, hw).copy())

    def _sample(self, shape: tuple[int, int], seed: int | tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def _ctor_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """``kind``, the constructor parameters, and the ``shape`` and ``seed`` of the last draw."""
        seed = self.last_seed if self.last_seed is not None else self.seed
        return {
            "kind": self.kind,
            **self._ctor_params(),
            "shape": None if self.last_shape is None else list(self.last_shape),
            "seed": list(seed) if isinstance(seed, tuple) else seed,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._ctor_params().items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------------------------------------
class _LineMask(MaskFunc):
    """fastMRI's MaskFunc: a centre block of ``round(W * center_fraction)`` columns + an acceleration part.

    Draws follow fastMRI exactly: a ``numpy.random.RandomState`` seeded with the seed, then the
    (center_fraction, acceleration) choice, then the acceleration lines, so a seed gives fastMRI's mask.
    """

    def __init__(
        self,
        center_fractions: Sequence[float] | float,
        accelerations: Sequence[float] | float,
        allow_any_combination: bool = False,
        seed: Seed | None = None,
    ):
        what = f"{self.kind} mask"
        cfs = [center_fractions] if np.isscalar(center_fractions) else list(center_fractions)
        accs = [accelerations] if np.isscalar(accelerations) else list(accelerations)
        if not cfs or not accs:
            raise SamplingError(f"{what}: center_fractions and accelerations must not be empty")
        if len(cfs) != len(accs) and not allow_any_combination:
            raise SamplingError(
                f"{what}: {len(cfs)} center fractions but {len(accs)} accelerations "
                "(give as many of each, or allow_any_combination=True)"
            )
        self.center_fractions = [_check_center_fraction(c, what) for c in cfs]
        self.accelerations = [_check_acceleration(a, what) for a in accs]
        # integer accelerations stay ints (as fastMRI is given them, and in params())
        self.accelerations = [int(a) if float(a).is_integer() else a for a in self.accelerations]
        self.allow_any_combination = bool(allow_any_combination)
        super().__init__(seed)
        self.rng = np.random.RandomState()

    def _choose(self) -> tuple[float, float]:
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        choice = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[choice], self.accelerations[choice]

    def _sample(self, shape: tuple[int, int], seed: int | tuple[int, ...]) -> np.ndarray:
        num_cols = shape[1]
        self.rng.seed(seed)
        center_fraction, acceleration = self._choose()
        num_low = round(num_cols * center_fraction)
        mask = np.zeros(num_cols, dtype=bool)
        pad = (num_cols - num_low + 1) // 2
        mask[pad : pad + num_low] = True
        if num_low < num_cols:  # otherwise the centre block is the whole grid
            mask |= self._acceleration_lines(num_cols, float(acceleration), num_low)
        return mask[None, :]

    def _acceleration_lines(self, num_cols: int, acceleration: float, num_low: int) -> np.ndarray:
        raise NotImplementedError

    def _ctor_params(self) -> dict[str, Any]:
        return {
            "center_fractions": list(self.center_fractions),
            "accelerations": list(self.accelerations),
            "allow_any_combination": self.allow_any_combination,
        }


class RandomLineMask(_LineMask):
    """fastMRI's RandomMaskFunc: centre lines + each column kept independently with probability
    ``(W / acceleration - num_low) / (W - num_low)``, so that the expected number of columns is W / R."""

    kind = "random"

    def _acceleration_lines(self, num_cols: int, acceleration: float, num_low: int) -> np.ndarray:
        if num_low > num_cols / acceleration:
            raise SamplingError(
                f"random mask: {num_low} centre lines already exceed W/R = {num_cols / acceleration:.1f} "
                f"columns for acceleration {acceleration:g}; lower the center fraction"
            )
        prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
        return self.rng.uniform(size=num_cols) < prob


class EquispacedLineMask(_LineMask):
    """fastMRI's EquispacedMaskFractionFunc: centre lines + equispaced columns whose spacing is adjusted for the
    centre so that the overall acceleration is the nominal one (as in the public fastMRI multicoil data;
    the rounded positions are not always exactly equispaced, fastMRI issue #54).

    ``offset``: first equispaced column; None draws it in ``[0, round(adjusted spacing))``.
    """

    kind = "equispaced"

    def __init__(self, center_fractions: Sequence[float] | float, accelerations: Sequence[float] | float,
                 allow_any_combination: bool = False, seed: Seed | None = None, offset: int | None = None):
        if offset is not None and (not isinstance(offset, (int, np.integer)) or offset < 0):
            raise SamplingError(f"equispaced mask: offset must be a non-negative int, got {offset!r}")
        self.offset = None if offset is None else int(offset)
        super().__init__(center_fractions, accelerations, allow_any_combination, seed)

    def _acceleration_lines(self, num_cols: int, acceleration: float, num_low: int) -> np.ndarray:
        if num_low * acceleration >= num_cols and acceleration > 1:
            raise SamplingError(
                f"equispaced mask: {num_low} centre lines already reach W/R = {num_cols / acceleration:.1f} "
                f"columns for acceleration {acceleration:g}; lower the center fraction"
            )
        mask = np.zeros(num_cols, dtype=bool)
        if acceleration == 1:
            mask[:] = True
            return mask
        adjusted = (acceleration * (num_low - num_cols)) / (num_low * acceleration - num_cols)
        offset = self.offset if self.offset is not None else self.rng.randint(0, high=round(adjusted))
        positions = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint)
        mask[positions[positions < num_cols]] = True
        return mask

    def _ctor_params(self) -> dict[str, Any]:
        return {**super()._ctor_params(), "offset": self.offset}


# ----------------------------------------------------------------------------------------------------------
def _normalised_radius(shape: tuple[int, int], calib: tuple[int, int]) -> np.ndarray:
    """Distance from the calibration box in k-space, normalised to 1 at the middle of the grid edges (sigpy)."""
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(np.float64)
    x = np.maximum(np.abs(x - w / 2) - calib[1] / 2, 0)
    y = np.maximum(np.abs(y - h / 2) - calib[0] / 2, 0)
    x /= max(x.max(), 1e-12)
    y /= max(y.max(), 1e-12)
    return np.sqrt(x**2 + y**2)


class _DiscStamps:
    """Pixel offsets of the exclusion ellipses, sorted by size so each point visits only its own ellipse."""

    def __init__(self, rx_max: float, ry_max: float):
        ry, rx = int(math.ceil(ry_max)), int(math.ceil(rx_max))
        oy, ox = np.mgrid[-ry : ry + 1, -rx : rx + 1]
        oy, ox = oy.ravel(), ox.ravel()
        keep = (oy != 0) | (ox != 0)
        oy, ox = oy[keep], ox[keep]
        # order by the normalised radius at which an offset enters an ellipse of radii (s*rx_max, s*ry_max)
        s = np.sqrt((ox / max(rx_max, 1e-9)) ** 2 + (oy / max(ry_max, 1e-9)) ** 2)
        order = np.argsort(s, kind="stable")
        self.oy, self.ox, self.scale = oy[order], ox[order], s[order]
        self.rx_max, self.ry_max = rx_max, ry_max

    def count(self, rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
        """Number of leading offsets that can fall inside ellipses of radii (rx, ry) (a superset)."""
        s = np.maximum(rx / max(self.rx_max, 1e-9), ry / max(self.ry_max, 1e-9))
        return np.searchsorted(self.scale, s, side="left")


def _poisson_disc_rsa(
    shape: tuple[int, int],
    candidates: np.ndarray,
    rx: np.ndarray,
    ry: np.ndarray,
    order_keys: np.ndarray,
) -> np.ndarray:
    """Random sequential adsorption on the pixel grid, vectorised.

    Candidates are visited in the order of ``order_keys``; a candidate is accepted unless it lies inside the
    exclusion ellipse ``((dx/rx)^2 + (dy/ry)^2 < 1``, radii of the earlier point) of an accepted point. This
    is sigpy's/BART's dart throwing taken to completion (a maximal Poisson-disc set), evaluated in chunks:
    within a chunk, a candidate covered by an earlier candidate of the same chunk is put back and retried, so
    the result is valid and maximal.
    """
    h, w = shape
    n = h * w
    rxf, ryf = rx.ravel(), ry.ravel()
    stamps = _DiscStamps(float(rxf[candidates].max(initial=1.0)), float(ryf[candidates].max(initial=1.0)))
    pending = candidates[np.argsort(order_keys, kind="stable")]
    blocked = np.zeros(n, dtype=bool)
    accepted_flag = np.zeros(n, dtype=bool)
    cover = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    chunk = max(128, len(candidates) // 24)
    while pending.size:
        c, rest = pending[:chunk], pending[chunk:]
        c = c[~blocked[c]]
        if c.size == 0:
            pending = rest
            continue
        # ragged expansion: point i visits the first counts[i] offsets
        crx, cry = rxf[c], ryf[c]
        counts = stamps.count(crx, cry)
        total = int(counts.sum())
        src = np.repeat(np.arange(c.size), counts)
        k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        oy, ox = stamps.oy[k], stamps.ox[k]
        cy, cx = np.divmod(c, w)
        ty, tx = cy[src] + oy, cx[src] + ox
        inside = ((ox / crx[src]) ** 2 + (oy / cry[src]) ** 2 < 1) & (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
        src, tgt = src[inside], ty[inside] * w + tx[inside]
        # the earliest candidate of this chunk whose ellipse covers each pixel
        np.minimum.at(cover, tgt, src)
        ok = cover[c] >= np.arange(c.size)
        cover[tgt] = np.iinfo(np.int64).max  # reset only what was touched
        accepted_flag[c[ok]] = True
        blocked[c[ok]] = True
        blocked[tgt[ok[src]]] = True
        retry = c[~ok]
        retry = retry[~blocked[retry]]
        pending = np.concatenate([retry, rest]) if retry.size else rest
    return accepted_flag.reshape(h, w)


# Packing of random sequential adsorption on the grid, g(n) = density * n for an exclusion region of n grid
# points (measured with _poisson_disc_rsa on a uniform radius; 2.19 is the continuous jamming limit).
_RSA_N = np.log([1, 5, 9, 13, 21, 29, 45, 69, 145, 305, 10000])
_RSA_G = np.array([1.0, 1.817, 1.686, 1.814, 1.822, 1.894, 1.934, 1.977, 2.056, 2.113, 2.19])


def _rsa_packing(n_excl: np.ndarray) -> np.ndarray:
    return np.interp(np.log(np.maximum(n_excl, 1)), _RSA_N, _RSA_G)


class _EllipseLatticeCount:
    """Number of grid points (i, j) with (i / (s*ax))^2 + (j / (s*ay))^2 < 1, as a function of s.

    Radii clipped to 1 (as the mask does) give the same count, since |i| >= 1 is never strictly inside.
    """

    LIMIT = 24.0  # beyond this many pixels on the short axis, the ellipse area is accurate enough

    def __init__(self, ax: float, ay: float):
        self.ax, self.ay = ax, ay
        self.s_max = self.LIMIT / min(ax, ay)
        ri, rj = int(math.ceil(self.s_max * ax)), int(math.ceil(self.s_max * ay))
        j, i = np.mgrid[-rj : rj + 1, -ri : ri + 1]
        self.q = np.sort(((i / ax) ** 2 + (j / ay) ** 2).ravel())

    def count(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        exact = np.searchsorted(self.q, np.minimum(s, self.s_max) ** 2, side="left").astype(np.float64)
        return np.where(s < self.s_max, exact, np.pi * self.ax * self.ay * s**2)


class _CalibratedMask(MaskFunc):
    """A 2D random mask of a target acceleration around a fully sampled calibration box (rows, cols)."""

    def __init__(self, acceleration: float, calib: Sequence[int], seed: Seed | None):
        self.acceleration = _check_acceleration(acceleration, f"{self.kind} mask")
        self.calib = _check_calib(calib, f"{self.kind} mask")
        super().__init__(seed)


class PoissonDiscMask(_CalibratedMask):
    """2D variable-density Poisson-disc mask with a fully sampled calibration box (as sigpy's / BART's
    ``poisson``).

    Points lie on the pixel grid; a pixel is excluded when it falls inside the exclusion ellipse
    ``(dx/rx)^2 + (dy/ry)^2 < 1`` of an earlier point, points being visited in random order until none can be
    added (a maximal set). The radius grows linearly with the distance ``r`` from the calibration box (sigpy's
    rule), ``radius = 1 + t * r`` pixels for the density parameter ``t > 0``, scaled per axis by
    ``W/max(H,W)``, ``H/max(H,W)`` (isotropic in k-space) and at least 1; ``r`` is normalised to 1 at the
    middle of the grid edges and ``crop_corner`` leaves ``r >= 1`` (the k-space corners) empty. On a grid a
    radius just above 1 already excludes the 4 neighbours (R about 3.3), so lower accelerations use
    ``t <= 0``: full sampling inside ``r < -t`` and nearest-neighbour exclusion outside. ``t`` is searched
    (model-guided bisection) until the effective acceleration is within ``tol`` (relative) of the target.

    Args:
        acceleration: target R = H*W / samples (calibration box included).
        calib: fully sampled centre box (rows, cols).
        crop_corner: leave the corners beyond r = 1 unsampled.
        tol: relative tolerance on the acceleration.
        seed: seeds the generator that draws per-call seeds.
    """

    kind = "poisson"

    def __init__(self, acceleration: float, calib: Sequence[int] = (24, 24), crop_corner: bool = True,
                 tol: float = 0.02, seed: Seed | None = None):
        super().__init__(acceleration, calib, seed)
        self.crop_corner = bool(crop_corner)
        if not (isinstance(tol, (int, float)) and 0 < tol < 0.5):
            raise SamplingError(f"poisson mask: tol must be in (0, 0.5), got {tol!r}")
        self.tol = float(tol)
        self.last_density_parameter: float | None = None

    def _ctor_params(self) -> dict[str, Any]:
        return {
            "acceleration": self.acceleration,
            "calib": list(self.calib),
            "crop_corner": self.crop_corner,
            "tol": self.tol,
        }

    def _base_radius(self, r: np.ndarray, t: float) -> np.ndarray:
        """Isotropic exclusion radius in pixels (before the per-axis scaling) for the density parameter t."""
        if t > 0:
            return 1 + t * r
        # t <= 0: radius 1 (no grid neighbour excluded: full sampling) inside r < -t, the t -> 0+ radius outside
        return np.where(r < -t, 1.0, 1.0 + 1e-6)

    def _sample(self, shape: tuple[int, int], seed: int | tuple[int, ...]) -> np.ndarray:
        h, w = shape
        box = _calib_box(shape, self.calib, "poisson mask")
        r = _normalised_radius(shape, self.calib)
        region = (r < 1) if self.crop_corner else np.ones(shape, dtype=bool)
        candidates = np.flatnonzero(region & ~box)
        n_box = int(box.sum())
        target = h * w / self.acceleration
        n_max = n_box + candidates.size
        if target > n_max * (1 + self.tol):
            raise SamplingError(
                f"poisson mask: acceleration {self.acceleration:g} is below the minimum "
                f"{h * w / n_max:.2f} for a {h}x{w} grid" + (" with crop_corner" if self.crop_corner else "")
            )
        if target <= n_box:
            raise SamplingError(
                f"poisson mask: the {self.calib[0]}x{self.calib[1]} calibration box alone gives R = "
                f"{h * w / max(n_box, 1):.2f} >= {self.acceleration:g}; use a smaller calib"
            )
        keys = np.random.default_rng(seed).random(candidates.size)
        r_c = r.ravel()[candidates]
        scale_x, scale_y = w / max(h, w), h / max(h, w)  # isotropic in k-space

        def rsa(t: float) -> np.ndarray:
            base = self._base_radius(r, t)
            rx, ry = np.maximum(base * scale_x, 1.0), np.maximum(base * scale_y, 1.0)
            return _poisson_disc_rsa(shape, candidates, rx, ry, keys) | box

        # Density model for choosing t: a maximal random set with an exclusion region of n grid points has
        # about g(n) / n points per pixel, g measured once (1 for n = 1, 1.82 for the 4-neighbour cross, ->
        # 2.19 = continuous random sequential adsorption); it runs on a histogram of r.
        hist, edges = np.histogram(r_c, bins=2048, range=(0.0, float(r_c.max(initial=0.0)) + 1e-9))
        r_mid = 0.5 * (edges[1:] + edges[:-1])
        lattice = _EllipseLatticeCount(scale_x, scale_y)

        def model(t: float, c: float) -> float:
            n_excl = lattice.count(self._base_radius(r_mid, t))
            density = np.where(n_excl <= 1, 1.0, c * _rsa_packing(n_excl) / n_excl)
            return n_box + float((hist * density).sum())

        def invert(points: float, c: float, lo: float, hi: float) -> float:
            """t in [lo, hi] where the model gives ``points`` (the model decreases with t)."""
            for _ in range(48):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if model(mid, c) > points else (lo, mid)
            return 0.5 * (lo + hi)

        # bracket [t_lo: too many points, t_hi: too few]; the model, with its scale c refitted to the last
        # draw, proposes the next t inside the bracket, bisection when it does not
        t_lo, t_hi = -float(r_c.max(initial=0.0)) - 1e-6, 4.0 * max(h, w)
        c = 1.0
        best: tuple[float, np.ndarray, float] | None = None
        t = invert(target, c, t_lo, t_hi)
        for _ in range(16):
            mask = rsa(t)
            n = int(mask.sum())
            err = abs(h * w / n - self.acceleration) / self.acceleration
            if best is None or err < best[0]:
                best = (err, mask, t)
            if err <= self.tol:
                break
            if n > target:
                t_lo = t
            else:
                t_hi = t
            fixed, scaled = model(t, 0.0), model(t, 1.0) - model(t, 0.0)
            if scaled > 0:
                c = min(max((n - fixed) / scaled, 0.2), 5.0)
            t_new = invert(target, c, t_lo, t_hi)
            t = t_new if t_lo < t_new < t_hi and abs(t_new - t) > 1e-9 else 0.5 * (t_lo + t_hi)
        err, mask, t = best
        if err > self.tol:
            raise SamplingError(
                f"poisson mask: could not reach acceleration {self.acceleration:g} within {self.tol:.0%} "
                f"on a {h}x{w} grid (closest {h * w / mask.sum():.2f})"
            )
        self.last_density_parameter = t
        return mask


class GaussianMask(_CalibratedMask):
    """2D Gaussian variable-density random mask with a fully sampled calibration box.

    Outside the box, ``round(H*W/R) - box`` points are drawn *without replacement* with probability
    proportional to ``exp(-(ky^2 + kx^2) / (2 sigma^2))`` (k normalised to [-1, 1) on each axis), so the
    acceleration is exact up to rounding. Sampling without replacement uses exponential keys
    (Efraimidis-Spirakis), which is exactly successive weighted draws.

    Args:
        acceleration: target R = H*W / samples.
        calib: fully sampled centre box (rows, cols).
        sigma: standard deviation of the density in units of the k-space half-width.
        seed: seeds the generator that draws per-call seeds.
    """

    kind = "gaussian"

    def __init__(self, acceleration: float, calib: Sequence[int] = (24, 24), sigma: float = 0.5,
                 seed: Seed | None = None):
        super().__init__(acceleration, calib, seed)
        if not (isinstance(sigma, (int, float)) and 0 < sigma < 100):
            raise SamplingError(f"gaussian mask: sigma must be a positive number, got {sigma!r}")
        self.sigma = float(sigma)

    def _ctor_params(self) -> dict[str, Any]:
        return {"acceleration": self.acceleration, "calib": list(self.calib), "sigma": self.sigma}

    def _sample(self, shape: tuple[int, int], seed: int | tuple[int, ...]) -> np.ndarray:
        h, w = shape
        box = _calib_box(shape, self.calib, "gaussian mask")
        n_target = max(1, round(h * w / self.acceleration))
        n_box = int(box.sum())
        if n_box > n_target:
            raise SamplingError(
                f"gaussian mask: the {self.calib[0]}x{self.calib[1]} calibration box alone gives R = "
                f"{h * w / n_box:.2f} < {self.acceleration:g}; use a smaller calib"
            )
        ky = (np.arange(h) - h // 2) / (h / 2)
        kx = (np.arange(w) - w // 2) / (w / 2)
        log_p = -(ky[:, None] ** 2 + kx[None, :] ** 2) / (2 * self.sigma**2)
        candidates = np.flatnonzero(~box)
        rng = np.random.default_rng(seed)
        # key_i = E_i / p_i with E_i ~ Exp(1); the n smallest keys are a weighted draw without replacement
        keys = np.log(rng.standard_exponential(candidates.size)) - log_p.ravel()[candidates]
        n_draw = n_target - n_box
        chosen = candidates[np.argpartition(keys, n_draw - 1)[:n_draw]] if n_draw > 0 else candidates[:0]
        mask = box.copy().ravel()
        mask[chosen] = True
        return mask.reshape(h, w)


# ----------------------------------------------------------------------------------------------------------
class UserMask(MaskFunc):
    """An arbitrary boolean mask: ``[W]`` (a line mask, broadcast along H) or ``[H, W]``."""

    kind = "user"

    def __init__(self, mask: Any):
        m = _as_numpy_bool(mask)
        if m.ndim not in (1, 2):
            raise SamplingError(f"user mask: must be [W] or [H, W], got shape {m.shape}")
        if m.ndim == 2:
            _check_shape(m.shape, "user mask")
        if not m.any():
            raise SamplingError("user mask: no sample is selected")
        self.mask = m.copy()
        super().__init__(None)

    def __call__(self, shape: Sequence[int] | None = None, seed: Seed | None = None) -> torch.Tensor:
        if shape is None:
            if self.mask.ndim == 1:
                raise SamplingError("user mask: a 1D mask needs the grid shape (H, W)")
            shape = self.mask.shape
        hw = _check_shape(shape, "user mask")
        expected = self.mask.shape[-1] if self.mask.ndim == 1 else tuple(self.mask.shape)
        if (self.mask.ndim == 1 and hw[1] != expected) or (self.mask.ndim == 2 and hw != expected):
            raise SamplingError(f"user mask: the mask is {self.mask.shape}, it does not fit a {hw} grid")
        self.last_shape = hw
        return torch.from_numpy(np.broadcast_to(self.mask, hw).copy())

    def _ctor_params(self) -> dict[str, Any]:
        bits = base64.b64encode(np.packbits(self.mask.ravel()).tobytes()).decode("ascii")
        return {"mask_shape": list(self.mask.shape), "mask_bits": bits}

    @staticmethod
    def decode(mask_shape: Sequence[int], mask_bits: str) -> np.ndarray:
        n = int(np.prod(mask_shape))
        raw = np.frombuffer(base64.b64decode(mask_bits), dtype=np.uint8)
        return np.unpackbits(raw)[:n].astype(bool).reshape(tuple(int(s) for s in mask_shape))

    def __repr__(self) -> str:
        return f"UserMask(shape={self.mask.shape}, samples={int(self.mask.sum())})"


MASK_CLASSES: dict[str, type[MaskFunc]] = {
    cls.kind: cls for cls in (RandomLineMask, EquispacedLineMask, PoissonDiscMask, GaussianMask, UserMask)
}


def mask_from_params(params: dict[str, Any]) -> torch.Tensor:
    """Redraw the exact mask described by ``params`` (as returned by ``MaskFunc.params()`` after a call)."""
    p = dict(params)
    kind = p.pop("kind", None)
    if kind not in MASK_CLASSES:
        raise SamplingError(f"unknown mask kind {kind!r}; known: {', '.join(MASK_CLASSES)}")
    shape = p.pop("shape", None)
    seed = p.pop("seed", None)
    if kind == "user":
        try:
            mask = UserMask.decode(p["mask_shape"], p["mask_bits"])
        except (KeyError, ValueError, TypeError) as exc:
            raise SamplingError(f"user mask parameters are damaged: {exc}") from None
        return UserMask(mask)(shape)
    if shape is None or seed is None:
        raise SamplingError(f"{kind} mask parameters need 'shape' and 'seed' to recreate a mask")
    try:
        func = MASK_CLASSES[kind](**p)
    except TypeError as exc:
        raise SamplingError(f"{kind} mask: bad parameters ({exc})") from None
    return func(shape, seed=tuple(seed) if isinstance(seed, list) else seed)
