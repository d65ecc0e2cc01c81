"""Synthetic multi-coil brain k-space from a real anatomy, and the built-in demo scan.

The object is an axial slice of the MNI ICBM152 2009a template (``resources/anatomy``, see its NOTICE.md):
grey matter, white matter and CSF probability maps, surrounded by synthetic CSF, skull and scalp layers, with
tissue signals from the spin-echo equation (3 T relaxation times; T1-, T2-, PD-weighted or random TR/TE), a
mild texture and transmit bias, and a smooth phase. It is seen by a ring of receive coils and measured with
complex Gaussian noise, optionally correlated between coils, on the Cartesian grid with the centred orthonormal FFT.

Coil models (``coil_model``): ``"wire"`` (the default; the shipped weights, the demo scan and the benchmarks use
it): straight wires parallel to the scanner axis, 2D Biot-Savart field, 1/r fall-off, phase rotating around the
wire. ``"loop"`` (opt-in): circular surface loops of a head array (radius 55-75 mm) facing the head, in one or
more rings along the scanner axis; the receive sensitivity is the transverse field of each loop in the imaged
slice by Biot-Savart (:func:`loop_field`). Against ESPIRiT maps of real 8-coil head arrays the loops are as
localised as the real coils (effective coil count, g-factor), where the wires are too flat, but their far side is
darker than the real maps' (``benchmarks/results/coil_realism.md``).

Geometry: images are ``[..., H, W]`` with the axial brain upright (anterior at the top) in radiological view;
the readout runs along H (fastMRI), optionally 2x oversampled, the phase encode along W.

Everything random is drawn from one ``numpy.random.Generator``, so a seed fixes every array bit for bit.

Public API:
- :func:`generate_slice` one slice (k-space, ground truth, coil maps, reference),
- :func:`generate_volume` several slices sharing the coil array, contrast, noise covariance and noise level,
- :func:`draw_params` the per-volume random parameters, :class:`SimParams`,
- :func:`demo_scan_path` the cached fastMRI-format demo file, :func:`load_anatomy`,
- :func:`load_real_slices` real MR magnitude slices from dipy's sample data (``subject="real"``; see
  ``resources/anatomy/NOTICE.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from workbench.arrays import center_crop, fft2c_np, ifft2c_np, rss_np
from workbench.errors import WorkbenchError

SIM_VERSION = "1"  # bump when the generator's output changes (it names the cached demo file)
ANATOMY_FILE = ("anatomy", "icbm152_2009a_axial.npz")
CONTRASTS = ("t1", "t2", "pd", "random")

# Tissue contrast: the spin-echo signal PD (1 - exp(-TR/T1)) exp(-TE/T2) with typical 3 T relaxation times
# (white/grey matter and CSF after Wansapura et al. JMRI 1999; fat and muscle after Gold et al. AJR 2004).
# "scalp" is a partial-volume mix of subcutaneous fat (T1 ~370 ms), skin and muscle; "skull" cortical bone
# (almost no signal); "soft" other enclosed non-brain tissue (muscle) far from the brain on low slices.
TISSUE_PROPERTIES: dict[str, tuple[float, float, float]] = {  # (relative PD, T1 ms, T2 ms)
    "wm": (0.69, 830.0, 80.0),
    "gm": (0.80, 1330.0, 110.0),
    "csf": (1.00, 4000.0, 2000.0),
    "scalp": (0.80, 600.0, 70.0),
    "skull": (0.10, 500.0, 5.0),
    "soft": (0.70, 1420.0, 40.0),
}
# (TR ms, TE ms) of the named contrasts: T1-weighted spin echo, T2-weighted and PD-weighted (turbo) spin echo.
SEQUENCES: dict[str, tuple[float, float]] = {"t1": (600.0, 10.0), "t2": (4000.0, 100.0), "pd": (3000.0, 15.0)}
# contrast="random": TR log-uniform and TE uniform in these ranges, tissue properties scaled by +-15 %.
RANDOM_TR_MS = (300.0, 5000.0)
RANDOM_TE_MS = (8.0, 120.0)


def spin_echo_intensities(tr_ms: float, te_ms: float,
                          properties: dict[str, tuple[float, float, float]] | None = None) -> dict[str, float]:
    """Tissue signals ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``, scaled so that the brightest brain tissue is 1."""
    props = TISSUE_PROPERTIES if properties is None else properties
    sig = {k: pd * (1.0 - math.exp(-tr_ms / t1)) * math.exp(-te_ms / t2) for k, (pd, t1, t2) in props.items()}
    peak = max(sig["wm"], sig["gm"], sig["csf"])
    return {k: v / peak for k, v in sig.items()}


TISSUE_SHARPENING = 2.0
DEFAULT_SNR_RANGE = (20.0, 40.0)
DEFAULT_FOV_MM = 240.0

COIL_MODELS = ("wire", "loop")
# coil_model="loop": per-volume loop radius (mm) and MNI z of the array's centre (mm), uniform in these ranges.
# Radius: eight loops overlapped at the critical distance 0.75 D (Roemer et al. 1990) on the ~700 mm ring of the
# generator's coil ellipse have a ~ 58 mm; an element elongated along z, say 9 x 17 cm, has the area of a 70 mm
# circle. Within that span, 55-75 mm gives the smoothness, effective coil count and g-factors of the real 8-coil
# brains (benchmarks/results/coil_realism.md); 40-45 mm loops are too localised (~4 effective coils, smoothness
# ~0.92), 85-90 mm ones too flat (~2.3 effective coils, R=4 g-factor 40-55 % above the head's). Centre: the
# middle of the brain, MNI z 0..30 mm, so the anatomy's slices (z -20..66 mm) lie up to ~65 mm off the loops'
# centre plane.
DEFAULT_LOOP_RADIUS_MM = (55.0, 75.0)
DEFAULT_LOOP_CENTER_Z_MM = (0.0, 30.0)
LOOP_COILS_PER_RING = 8  # loop_rings=None: ceil(n_coils / 8) rings, as in 8/16/32-channel head arrays
LOOP_RING_SPACING = 1.5  # z distance of neighbouring rings in loop radii (critical overlap 0.75 D)
WIRE_RADIUS_MM = 1.0  # conductor radius: keeps a map finite where its conductor crosses the slice

# ----------------------------------------------------------------------------------------------------------
# Anatomy


@dataclass(frozen=True)
class Anatomy:
    """The shipped anatomy slab: float32 maps ``[Z, rows, cols]`` in [0, 1] on a 1 mm in-plane grid."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    z_mm: np.ndarray  # [Z] MNI z of each slice
    spacing_mm: tuple[float, float, float]  # (dz, drow, dcol)
    center_mm: tuple[float, float]  # brain bounding-box centre (row, col) from the first pixel, in mm
    half_extent_mm: tuple[float, float]  # brain half size (rows, cols) over the slab
    source: str
    path: str

    @property
    def z_range(self) -> tuple[float, float]:
        """Slice positions (MNI z, mm) the simulator can draw."""
        return float(self.z_mm[0]), float(self.z_mm[-1])


def _resource_file(path: str | os.PathLike | None, default: tuple[str, ...]) -> str:
    """``path``, or the shipped resource ``default`` (parts under ``resources/``) when it is None."""
    if path is None:
        from workbench.paths import resource_path

        path = resource_path(*default)
    return os.fspath(path)


# what np.load raises on a file that is not a readable .npz archive (cut short, empty, not a zip)
_NPZ_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile)


def _load_npz(path: str) -> Any:
    """``np.load`` of an ``.npz`` archive (its arrays by name); ValueError for an ``.npy`` file."""
    z = np.load(path)
    if not hasattr(z, "files"):
        raise ValueError("not an .npz archive")
    return z


@functools.lru_cache(maxsize=2)
def load_anatomy(path: str | os.PathLike | None = None) -> Anatomy:
    """Load the anatomy slab (default: the shipped ``resources/anatomy/icbm152_2009a_axial.npz``)."""
    path = _resource_file(path, ANATOMY_FILE)
    try:
        with _load_npz(path) as z:
            maps = {k: z[k].astype(np.float32) / 255.0 for k in ("t1", "gm", "wm", "csf")}
            z_mm = z["z_mm"].astype(np.float64)
            spacing = tuple(float(s) for s in z["spacing_mm"])
            center = tuple(float(c) for c in z["center_mm"])
            source = str(z["source"])
    except _NPZ_ERRORS as exc:
        raise WorkbenchError(f"{path}: not a usable anatomy file ({exc}); rebuild it with "
                             "resources/anatomy/make_anatomy.py") from exc
    brain = maps["t1"] > 0
    rows = np.where(brain.any((0, 2)))[0]
    cols = np.where(brain.any((0, 1)))[0]
    half = ((rows[-1] - rows[0] + 1) * spacing[1] / 2, (cols[-1] - cols[0] + 1) * spacing[2] / 2)
    return Anatomy(t1=maps["t1"], gm=maps["gm"], wm=maps["wm"], csf=maps["csf"], z_mm=z_mm, spacing_mm=spacing,
                   center_mm=center, half_extent_mm=half,
                   source=source, path=path)


# ----------------------------------------------------------------------------------------------------------
# Parameters


@dataclass
class SimParams:
    """The random choices shared by the slices of one simulated volume (what a seed fixes).

    Lengths are in mm, angles in radians unless named ``_deg``; coil positions are (row, col) offsets from
    the grid centre. ``noise_cov`` is the coil noise covariance with mean diagonal 1 (its scale is set by
    the SNR, or by ``noise_std``).
    """

    contrast: str
    tr_ms: float
    te_ms: float
    intensities: dict[str, float]  # relative signal per tissue (spin-echo equation at tr_ms / te_ms)
    n_coils: int
    coil_positions_mm: np.ndarray  # [C, 2]
    coil_gains: np.ndarray  # [C] complex: amplitude and cable phase
    noise_cov: np.ndarray  # [C, C] complex128, Hermitian positive definite, mean diagonal 1
    snr: float
    rotation_deg: float
    flip_lr: bool
    scale: float
    shift_mm: tuple[float, float]
    csf_mm: float
    skull_mm: float
    scalp_mm: float
    texture: float
    bias: float
    bias_coeffs: np.ndarray  # [5] low-order polynomial of the transmit bias
    phase_coeffs: np.ndarray  # [7] constant, linear, quadratic (u, v) and linear in z
    phase_random_rad: float  # amplitude of the smooth random phase field
    noise_std: float | None = None  # absolute k-space noise std per coil; None = from snr
    extra: dict[str, Any] = field(default_factory=dict)
    coil_model: str = "wire"  # "wire" or "loop" (see coil_sensitivities)
    coil_radius_mm: np.ndarray | None = None  # [C] loop radii ("loop" only)
    coil_z_mm: np.ndarray | None = None  # [C] MNI z of each loop's centre ("loop" only)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for file attributes and training logs). The wire model's record is as it always was
        (no coil-model keys)."""
        d = asdict(self)
        if self.coil_model == "wire":
            for key in ("coil_model", "coil_radius_mm", "coil_z_mm"):
                d.pop(key)
        else:
            d["coil_radius_mm"] = np.asarray(self.coil_radius_mm).round(3).tolist()
            d["coil_z_mm"] = np.asarray(self.coil_z_mm).round(3).tolist()
        d["coil_positions_mm"] = self.coil_positions_mm.round(3).tolist()
        d["coil_gains"] = [[round(float(g.real), 6), round(float(g.imag), 6)] for g in self.coil_gains]
        d["noise_cov"] = [[[round(float(c.real), 6), round(float(c.imag), 6)] for c in row] for row in self.noise_cov]
        d["bias_coeffs"] = self.bias_coeffs.round(6).tolist()
        d["phase_coeffs"] = self.phase_coeffs.round(6).tolist()
        return d


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _draw(rng: np.random.Generator, value, lo: float, hi: float) -> float:
    """``value`` if given, else uniform in [lo, hi) (always consuming one draw, so that fixing one parameter
    leaves the others' draws unchanged)."""
    u = rng.uniform(lo, hi)
    return float(u if value is None else value)


def _child(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator derived from ``rng`` without advancing it (``Generator.spawn``), so that
    optional draws leave every draw of ``rng`` as it was; a generator that cannot spawn gives one draw."""
    try:
        return rng.spawn(1)[0]
    except (TypeError, ValueError, AttributeError):
        return np.random.default_rng(int(rng.integers(0, 2**63 - 1)))


def _value_or_range(rng: np.random.Generator, value, default: tuple[float, float], name: str) -> float:
    """``value`` if a number, else uniform in ``value`` = ``(lo, hi)`` or in ``default`` if None."""
    if value is None:
        value = default
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not float(value[0]) <= float(value[1]):
            raise ValueError(f"{name} must be a number or a (lo, hi) range, got {value!r}")
        return _draw(rng, None, float(value[0]), float(value[1]))
    return float(value)


def random_noise_covariance(rng: np.random.Generator, n_coils: int, correlation: float) -> np.ndarray:
    """A random Hermitian positive-definite coil noise covariance with mean diagonal 1.

    ``correlation`` mixes a random complex matrix into the identity (``M = I + correlation * G``,
    ``G`` entries CN(0, 1/C), covariance ``D M M^H D`` with per-coil levels ``D`` in [0.8, 1.25]); 0 gives
    independent coils of slightly different noise levels, 0.5 gives typical |correlation coefficients| ~ 0.1-0.3.
    """
    shape = (n_coils, n_coils)
    g = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2 * n_coils)
    levels = rng.uniform(0.8, 1.25, n_coils)
    m = np.eye(n_coils) + correlation * g
    cov = (levels[:, None] * (m @ m.conj().T)) * levels[None, :]
    cov = 0.5 * (cov + cov.conj().T)
    return cov / np.real(np.trace(cov)) * n_coils


def draw_params(
    rng: np.random.Generator | int | None = None,
    *,
    n_coils: int | None = 12,
    contrast: str = "t1",
    snr: float | tuple[float, float] | None = None,
    noise_correlation: float | None = 0.0,
    rotation_deg: float | None = 0.0,
    flip_lr: bool | None = False,
    scale: float | None = 1.0,
    shift_mm: tuple[float, float] | None = (0.0, 0.0),
    coil_gap_mm: float | None = None,
    texture: float | None = 0.03,
    bias: float | None = 0.08,
    noise_std: float | None = None,
    anatomy: Anatomy | None = None,
    coil_model: str = "wire",
    loop_radius_mm: float | tuple[float, float] | None = None,
    loop_center_z_mm: float | tuple[float, float] | None = None,
    loop_rings: int | None = None,
) -> SimParams:
    """Draw the per-volume parameters. Any argument given as ``None`` is drawn at random (``n_coils`` in
    8..16, ``snr`` in 20..40 or in a given ``(lo, hi)`` range, ``rotation_deg`` in +-10, ``scale`` in 0.9..1.1,
    ``shift_mm`` +-8 mm, ``noise_correlation`` in 0..0.5, ``texture`` 0.01..0.05, ``bias`` 0..0.15);
    ``contrast="random"`` draws a spin-echo TR / TE and perturbed tissue properties (see :data:`SEQUENCES`).

    ``coil_model``: ``"wire"`` (default) or ``"loop"`` (see :func:`coil_sensitivities`). The loop model's own
    arguments (a number, a ``(lo, hi)`` range drawn per volume, or None for the default range): ``loop_radius_mm``
    (:data:`DEFAULT_LOOP_RADIUS_MM`), ``loop_center_z_mm`` the MNI z of the array's centre
    (:data:`DEFAULT_LOOP_CENTER_Z_MM`), ``loop_rings`` (None: ``ceil(n_coils / 8)``; coil ``i`` is in ring
    ``i % rings``, rings 1.5 radii apart along z). They are drawn from a generator spawned from ``rng``, so a
    seed gives the same head, pose, gains and noise under both models; only the coils differ."""
    rng = _rng(rng)
    anatomy = anatomy or load_anatomy()
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    if coil_model not in COIL_MODELS:
        raise ValueError(f"coil_model must be one of {COIL_MODELS}, got {coil_model!r}")
    if coil_model != "loop" and (loop_radius_mm, loop_center_z_mm, loop_rings) != (None, None, None):
        raise ValueError("loop_radius_mm, loop_center_z_mm and loop_rings need coil_model='loop'")
    # The draw order is fixed: changing one argument leaves every other draw as it was.
    nc = int(rng.integers(8, 17))
    n_coils = nc if n_coils is None else int(n_coils)
    if not 1 <= n_coils <= 64:
        raise ValueError(f"n_coils must be in 1..64, got {n_coils}")
    if isinstance(snr, (tuple, list)):
        snr = _draw(rng, None, float(snr[0]), float(snr[1]))
    else:
        snr = _draw(rng, snr, *DEFAULT_SNR_RANGE)
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    tr_te = (float(np.exp(rng.uniform(*np.log(RANDOM_TR_MS)))), float(rng.uniform(*RANDOM_TE_MS)))
    jitter = rng.uniform(0.85, 1.15, (len(TISSUE_PROPERTIES), 3))
    if contrast == "random":
        props = {k: tuple(float(v * j) for v, j in zip(vals, jit))
                 for (k, vals), jit in zip(TISSUE_PROPERTIES.items(), jitter)}
        tr_ms, te_ms = tr_te
    else:
        props = TISSUE_PROPERTIES
        tr_ms, te_ms = SEQUENCES[contrast]
    intensities = spin_echo_intensities(tr_ms, te_ms, props)
    rotation_deg = _draw(rng, rotation_deg, -10.0, 10.0)
    fl = bool(rng.integers(0, 2))
    flip_lr = fl if flip_lr is None else bool(flip_lr)
    scale = _draw(rng, scale, 0.9, 1.1)
    sh = rng.uniform(-8.0, 8.0, 2)
    shift_mm = (float(sh[0]), float(sh[1])) if shift_mm is None else (float(shift_mm[0]), float(shift_mm[1]))
    noise_correlation = _draw(rng, noise_correlation, 0.0, 0.5)
    csf_mm = float(rng.uniform(1.5, 3.0))
    skull_mm = float(rng.uniform(5.0, 8.0))
    scalp_mm = float(rng.uniform(3.0, 6.0))
    texture = _draw(rng, texture, 0.01, 0.05)
    bias = _draw(rng, bias, 0.0, 0.15)
    bias_coeffs = rng.uniform(-1.0, 1.0, 5)
    phase_coeffs = np.concatenate([[rng.uniform(-np.pi, np.pi)], rng.normal(0, 1.0, 2), rng.normal(0, 0.5, 3),
                                   [rng.normal(0, 0.5)]])
    phase_random_rad = float(rng.uniform(0.1, 0.5))

    # Coils: wires on an ellipse around the (rotated, scaled) head, a gap of 10-25 mm outside the scalp,
    # evenly spaced with a small jitter and a random start angle (a birdcage-like ring array).
    gap = _draw(rng, coil_gap_mm, 10.0, 25.0)
    th = math.radians(rotation_deg)
    hr, hc = anatomy.half_extent_mm
    half_r = (abs(math.cos(th)) * hr + abs(math.sin(th)) * hc) * scale
    half_c = (abs(math.sin(th)) * hr + abs(math.cos(th)) * hc) * scale
    head_pad = csf_mm + skull_mm + scalp_mm
    a_r = half_r + head_pad + gap + abs(shift_mm[0])
    a_c = half_c + head_pad + gap + abs(shift_mm[1])
    start = rng.uniform(0, 2 * np.pi)
    angles = start + 2 * np.pi * np.arange(n_coils) / n_coils + rng.normal(0, 0.05, n_coils)
    positions = np.stack([a_r * np.cos(angles), a_c * np.sin(angles)], 1)
    gains = rng.uniform(0.8, 1.2, n_coils) * np.exp(1j * rng.uniform(-np.pi, np.pi, n_coils))
    cov = random_noise_covariance(rng, n_coils, noise_correlation)
    loop: dict[str, Any] = {}
    if coil_model == "loop":
        # Loops centred where the wires would be (same ellipse, gap, angles), on one or more rings along z.
        geo = _child(rng)
        radius = _value_or_range(geo, loop_radius_mm, DEFAULT_LOOP_RADIUS_MM, "loop_radius_mm")
        center_z = _value_or_range(geo, loop_center_z_mm, DEFAULT_LOOP_CENTER_Z_MM, "loop_center_z_mm")
        rings = math.ceil(n_coils / LOOP_COILS_PER_RING) if loop_rings is None else int(loop_rings)
        if not radius > 0 or not 1 <= rings <= n_coils:
            raise ValueError(f"need loop_radius_mm > 0 and 1 <= loop_rings <= n_coils, got {radius}, {rings}")
        ring = np.arange(n_coils) % rings
        loop = {"coil_model": "loop", "coil_radius_mm": np.full(n_coils, radius),
                "coil_z_mm": center_z + (ring - (rings - 1) / 2) * LOOP_RING_SPACING * radius}
    return SimParams(
        contrast=contrast, tr_ms=tr_ms, te_ms=te_ms, intensities=intensities, n_coils=n_coils,
        coil_positions_mm=positions,
        coil_gains=gains, noise_cov=cov, snr=float(snr), rotation_deg=rotation_deg, flip_lr=flip_lr, scale=scale,
        shift_mm=shift_mm, csf_mm=csf_mm, skull_mm=skull_mm, scalp_mm=scalp_mm, texture=texture, bias=bias,
        bias_coeffs=bias_coeffs, phase_coeffs=phase_coeffs, phase_random_rad=phase_random_rad,
        noise_std=noise_std, extra={"noise_correlation": noise_correlation, "coil_gap_mm": gap}, **loop,
    )


# ----------------------------------------------------------------------------------------------------------
# Object, coils, acquisition


def _grid_mm(grid: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets (rows, cols) in mm from the grid centre (index N//2, the FFT centre)."""
    h, w = grid
    r = (np.arange(h) - h // 2) * pixel_mm
    c = (np.arange(w) - w // 2) * pixel_mm
    return np.meshgrid(r, c, indexing="ij")


def _posed_offsets(p: SimParams, grid: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (rows, cols) in mm from the object's centre, in the object's own frame, of the grid's pixel
    centres under the head's pose (``p.shift_mm``, ``flip_lr``, ``rotation_deg``, ``scale``)."""
    rr, cc = _grid_mm(grid, pixel_mm)
    rr = rr - p.shift_mm[0]
    cc = cc - p.shift_mm[1]
    if p.flip_lr:
        cc = -cc
    th = math.radians(p.rotation_deg)
    # Output position = scale * R(th) @ anatomy offset  ->  anatomy offset = R(-th) @ position / scale.
    ar = (math.cos(th) * rr + math.sin(th) * cc) / p.scale
    ac = (-math.sin(th) * rr + math.cos(th) * cc) / p.scale
    return ar, ac


def _resample(
    anatomy: Anatomy, p: SimParams, grid: tuple[int, int], pixel_mm: float, z_mm: float
) -> dict[str, np.ndarray]:
    """Anatomy maps on the output grid (linear interpolation in 3D; zero outside the slab)."""
    ar, ac = _posed_offsets(p, grid, pixel_mm)
    dz, drow, dcol = anatomy.spacing_mm
    zi = (z_mm - anatomy.z_mm[0]) / dz
    coords = np.stack([np.full_like(ar, zi), (ar + anatomy.center_mm[0]) / drow, (ac + anatomy.center_mm[1]) / dcol])
    out = {}
    for key in ("gm", "wm", "csf"):
        out[key] = ndimage.map_coordinates(getattr(anatomy, key), coords, order=1, mode="constant", cval=0.0,
                                           prefilter=False).astype(np.float32)
    return out


def _inside(d: np.ndarray, edge: float, width: float = 0.6) -> np.ndarray:
    """Soft indicator of ``d < edge`` (partial volume over ~``width`` mm)."""
    return 1.0 / (1.0 + np.exp(np.clip((d - edge) / width, -50, 50)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    return n / max(float(n.std()), 1e-12)


def _normalised_coords(grid: tuple[int, int], pixel_mm: float, half_mm: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    rr, cc = _grid_mm(grid, pixel_mm)
    return rr / half_mm, cc / half_mm


def _transmit_bias(p: SimParams, grid: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """The smooth transmit (B1+) bias ``[H, W]`` of the volume (``p.bias``, ``p.bias_coeffs``)."""
    u, v = _normalised_coords(grid, pixel_mm)
    b = p.bias_coeffs
    return 1.0 + p.bias * np.tanh(b[0] * u + b[1] * v + b[2] * u * u + b[3] * u * v + b[4] * v * v)


def _smooth_phase(rng: np.random.Generator, p: SimParams, grid: tuple[int, int], pixel_mm: float,
                  z_mm: float) -> np.ndarray:
    """Smooth object phase ``[H, W]``: a low-order polynomial (shared by the volume, linear drift in z) plus a
    smooth random field (drawn from ``rng``)."""
    u, v = _normalised_coords(grid, pixel_mm)
    c = p.phase_coeffs
    return (c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v + c[6] * (z_mm / 100.0)
            + p.phase_random_rad * _smooth_noise(rng, grid, 15.0 / pixel_mm))


def _cortical_folds(rng: np.random.Generator, probs: np.ndarray, grid: tuple[int, int], pixel_mm: float,
                    strength: float) -> np.ndarray:
    """Sulci the template lacks: the ICBM152 average blurs one brain's folding away, so a network trained on it
    learns that cortex is smooth and smooths a real scan's 2-10 mm structure (the real 8-coil head at 4x: XPDNet's
    error above l1-wavelet's in that band, below it elsewhere). Sulci here are CSF clefts 1.2-2.4 mm wide that run
    from the brain's surface inwards, 8-25 mm deep, about every 8-14 mm along it, bent by a smooth warp of a few
    mm: the zero lines of a band-limited random function of the angle about the brain's centre, kept to a
    shell under the surface; grey matter lines each cleft (it takes the white matter's share beside it).
    ``strength`` scales the change. ``probs`` ``[3, H, W]`` (WM, GM, CSF shares); returns new shares with the
    same sum per pixel."""
    wm, gm, csf = probs
    total = wm + gm + csf
    inside = total > 0.5
    if inside.sum() < 50:
        return probs
    rows, cols = np.nonzero(inside)
    cy, cx = rows.mean(), cols.mean()
    yy, xx = np.mgrid[: grid[0], : grid[1]].astype(np.float64)
    warp = 3.0 / pixel_mm  # pixels
    yy = yy + warp * _smooth_noise(rng, grid, 6.0 / pixel_mm)
    xx = xx + warp * _smooth_noise(rng, grid, 6.0 / pixel_mm)
    theta = np.arctan2(yy - cy, xx - cx)  # -pi..pi
    radius_mm = float(np.sqrt(inside.sum() / np.pi)) * pixel_mm
    spacing_mm = float(rng.uniform(8.0, 14.0))
    n = max(8, int(round(2 * np.pi * radius_mm / spacing_mm)))
    # a random periodic function of the angle with about n zero crossings: a few harmonics near n / 2
    k = np.arange(max(1, n // 2 - 3), n // 2 + 4)
    amp = rng.standard_normal((2, len(k))) / np.sqrt(len(k))
    f = (amp[0][:, None, None] * np.cos(k[:, None, None] * theta) + amp[1][:, None, None]
         * np.sin(k[:, None, None] * theta)).sum(0)
    gy, gx = np.gradient(f)
    dist_px = np.abs(f) / np.maximum(np.hypot(gy, gx), 1e-6)
    half_px = max(float(rng.uniform(0.6, 1.2)) / pixel_mm, 0.6)
    cleft = ndimage.gaussian_filter(np.clip(1.0 - dist_px / half_px, 0.0, 1.0), 0.5)
    depth_px = ndimage.distance_transform_edt(inside)  # from the brain's surface, pixels
    depth_mm = float(rng.uniform(8.0, 25.0)) * (1.0 + 0.4 * np.tanh(_smooth_noise(rng, grid, 10.0 / pixel_mm)))
    shell = np.clip((depth_mm / pixel_mm - depth_px) / (2.0 / pixel_mm), 0.0, 1.0)
    cleft = strength * cleft * shell * inside
    lining = strength * np.clip(ndimage.gaussian_filter(cleft, 1.5 / pixel_mm) * 3.0, 0.0, 1.0) * shell
    to_csf = cleft * (wm + gm)
    wm_share = np.where(wm + gm > 0, wm / np.maximum(wm + gm, 1e-12), 0.0)
    to_gm = lining * (1.0 - cleft) * wm * 0.8  # grey matter lines each cleft
    wm2 = np.clip(wm - to_csf * wm_share - to_gm, 0.0, None)
    gm2 = np.clip(gm - to_csf * (1.0 - wm_share) + to_gm, 0.0, None)
    out = np.stack([wm2, gm2, csf + to_csf])
    return out * (total / np.maximum(out.sum(0), 1e-12))


def make_object(
    rng: np.random.Generator,
    p: SimParams,
    grid: tuple[int, int],
    pixel_mm: float,
    z_mm: float,
    anatomy: Anatomy | None = None,
    folds: float = 0.0,
) -> dict[str, np.ndarray]:
    """The noise-free complex object on ``grid`` (before the coils' receive profile) and tissue masks.
    ``folds`` in [0, 1]: strength of the synthetic cortical folds (:func:`_cortical_folds`; 0: none, and the
    random stream and the object are as without the option)."""
    anatomy = anatomy or load_anatomy()
    m = _resample(anatomy, p, grid, pixel_mm, z_mm)
    brain = np.clip(m["gm"] + m["wm"] + m["csf"], 0.0, 1.0)
    # Distance (mm) from the brain, for the synthetic CSF / skull / scalp shells.
    d = ndimage.distance_transform_edt(brain < 0.5) * pixel_mm
    e1 = p.csf_mm * p.scale
    e2 = e1 + p.skull_mm * p.scale
    e3 = e2 + p.scalp_mm * p.scale
    outside = 1.0 - brain
    csf_rim = _inside(d, e1) * outside
    skull = (_inside(d, e2) - _inside(d, e1)) * outside
    scalp = (_inside(d, e3) - _inside(d, e2)) * outside
    head = ndimage.binary_fill_holes(d <= e3)
    soft = (head & (d > e3)).astype(np.float32)  # enclosed non-brain tissue far from the brain
    soft = ndimage.gaussian_filter(soft, 0.6 / pixel_mm)
    # The template is an average of 152 brains, blurrier than one subject: sharpen the tissue mixture
    # (p_t^g / sum p^g) so that grey/white/CSF boundaries are as crisp as in a single scan.
    probs = np.stack([m["wm"], m["gm"], m["csf"]]) ** TISSUE_SHARPENING
    probs *= brain / np.maximum(probs.sum(0), 1e-12)
    if folds > 0:
        probs = _cortical_folds(rng, probs, grid, pixel_mm, float(folds))
    I = p.intensities
    # the scalp is a mix of fat, skin and muscle: its signal varies smoothly by +-15 % around the head
    scalp = scalp * (1.0 + 0.15 * np.tanh(_smooth_noise(rng, grid, 8.0 / pixel_mm)))
    mag = (I["wm"] * probs[0] + I["gm"] * probs[1] + I["csf"] * (probs[2] + csf_rim)
           + I["skull"] * skull + I["scalp"] * scalp + I["soft"] * soft)
    # Mild tissue texture and a smooth transmit (B1+) bias.
    mag = mag * (1.0 + p.texture * _smooth_noise(rng, grid, 0.8 / pixel_mm))
    mag = np.clip(mag * _transmit_bias(p, grid, pixel_mm), 0.0, None)
    phase = _smooth_phase(rng, p, grid, pixel_mm, z_mm)
    image = (mag * np.exp(1j * phase)).astype(np.complex64)
    image[~head] = 0  # background-free: nothing but noise outside the head
    return {
        "image": image,
        "head_mask": head,
        "brain_mask": brain >= 0.5,
        "wm_mask": m["wm"] >= 0.9,
        "csf_mask": m["csf"] >= 0.9,
    }


SUBJECTS = ("brain", "phantom", "real")
REAL_SLICES_FILE = ("anatomy", "dipy_real_slices.npz")
REAL_SUPPORT_LEVEL = 0.01  # |object| above this (1 = the slice's 99.5th percentile) is the subject's support


@dataclass(frozen=True)
class RealSlices:
    """Real MR magnitude slices (``resources/anatomy/dipy_real_slices.npz``, see its NOTICE.md): ``mag``
    float32 ``[N, S, S]`` (1 = the slice's 99.5th percentile, 0 outside its support, support centred on pixel
    ``(S // 2, S // 2)``), ``pixel_mm`` ``[N]``, ``source`` ``[N]`` index into ``sources`` (file names)."""

    mag: np.ndarray
    pixel_mm: np.ndarray
    source: np.ndarray
    sources: tuple[str, ...]
    path: str


@functools.lru_cache(maxsize=2)
def load_real_slices(path: str | os.PathLike | None = None) -> RealSlices:
    """Load the real slices (default: the shipped ``resources/anatomy/dipy_real_slices.npz``)."""
    path = _resource_file(path, REAL_SLICES_FILE)
    try:
        with _load_npz(path) as z:
            mag = z["mag"].astype(np.float32)
            pixel = z["pixel_mm"].astype(np.float64)
            source = z["source"].astype(np.int64)
            sources = tuple(str(n) for n in z["sources"])
        if mag.ndim != 3 or not len(mag) == len(pixel) == len(source) or not len(sources) \
                or source.min() < 0 or source.max() >= len(sources) or not np.all(pixel > 0) \
                or not np.isfinite(mag).all():
            raise ValueError("inconsistent arrays")
    except _NPZ_ERRORS as exc:
        raise WorkbenchError(f"{path}: not a usable real-slices file ({exc}); rebuild it with "
                             "resources/anatomy/make_real_slices.py") from exc
    return RealSlices(mag=mag, pixel_mm=pixel, source=source, sources=sources, path=path)


def make_real(rng: np.random.Generator, p: SimParams, grid: tuple[int, int], pixel_mm: float, z_mm: float,
              slices: RealSlices | None = None, max_upsampling: float | None = None) -> dict[str, Any]:
    """A real scan's magnitude slice as the object (the keys of :func:`make_object`).

    A source file, then one of its slices, is drawn from ``rng`` (each source equally likely, whatever its
    slice count); it is resampled onto ``grid`` at its own pixel size with the head's pose (``p.rotation_deg``,
    ``flip_lr``, ``scale``, ``shift_mm``, as :func:`make_object` places the template), times the transmit bias,
    with the brain path's smooth phase (the files hold magnitudes only). Support (``head_mask``): where the
    magnitude exceeds :data:`REAL_SUPPORT_LEVEL`, holes filled; the SNR region (``wm_mask``): the brighter half
    of the support 2 mm in from its border (white matter on T1, CSF and grey matter on the b0 images).

    ``max_upsampling``: where the grid's pixel is finer than the slice's by more than this factor, the pixel is
    made coarser (``pixel_mm`` of the result: the field of view grows, the subject covers fewer pixels). A slice
    resampled onto a finer grid has nothing beyond its own resolution, and a network trained on it learns to
    leave a real scan's unmeasured high frequencies empty: blur (the 4 mm and 2 mm slices on a 1 mm grid).
    None: the grid's pixel whatever the slice's (the data of configurations written before the option).
    """
    slices = slices or load_real_slices()
    src = int(rng.integers(len(slices.sources)))
    choices = np.flatnonzero(slices.source == src)
    j = int(choices[int(rng.integers(len(choices)))])
    img, src_mm = slices.mag[j], float(slices.pixel_mm[j])
    if max_upsampling is not None and src_mm > pixel_mm * float(max_upsampling):
        pixel_mm = src_mm / float(max_upsampling)
    ar, ac = _posed_offsets(p, grid, pixel_mm)
    centre = img.shape[0] // 2, img.shape[1] // 2
    coords = np.stack([ar / src_mm + centre[0], ac / src_mm + centre[1]])
    mag = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=0.0, prefilter=False)
    head = ndimage.binary_fill_holes(mag > REAL_SUPPORT_LEVEL)
    mag = np.clip(mag * _transmit_bias(p, grid, pixel_mm), 0.0, None)
    phase = _smooth_phase(rng, p, grid, pixel_mm, z_mm)
    image = (mag * np.exp(1j * phase)).astype(np.complex64)
    image[~head] = 0
    core = ndimage.binary_erosion(head, iterations=max(1, int(round(2.0 / pixel_mm))))
    core = core if core.sum() >= 100 else head
    bright = core & (mag >= np.median(mag[core])) if core.any() else core
    return {"image": image, "head_mask": head, "brain_mask": head, "wm_mask": bright,
            "csf_mask": np.zeros(grid, bool), "pixel_mm": pixel_mm}


def _ellipse_distance(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance (mm) to the ellipse ``(u/a)^2 + (v/b)^2 = 1`` (negative inside)."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def _box_distance(u: np.ndarray, v: np.ndarray, a: float, b: float, corner: float) -> np.ndarray:
    """Signed distance (mm) to a ``2a x 2b`` rectangle with corners rounded by ``corner`` mm."""
    corner = min(corner, a, b)
    qu, qv = np.abs(u) - (a - corner), np.abs(v) - (b - corner)
    return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0) - corner


def _shape_distance(rng: np.random.Generator, rr: np.ndarray, cc: np.ndarray, centre: tuple[float, float],
                    a: float, b: float, kind: str, theta: float | None = None) -> np.ndarray:
    """Signed distance to an ellipse or rounded rectangle of half sizes ``a, b`` (``a`` along the rows at
    ``theta = 0``) at ``centre``, rotated by ``theta`` (None: a random angle)."""
    th = rng.uniform(0, np.pi) if theta is None else float(theta)
    u = math.cos(th) * (rr - centre[0]) + math.sin(th) * (cc - centre[1])
    v = -math.sin(th) * (rr - centre[0]) + math.cos(th) * (cc - centre[1])
    if kind == "ellipse":
        return _ellipse_distance(u, v, a, b)
    return _box_distance(u, v, a, b, rng.uniform(0.0, 0.5) * min(a, b))


def _coils_outside(p: SimParams, half_extent_mm: tuple[float, float]) -> SimParams:
    """``p`` with each coil moved out along its direction from the centre so that it keeps its gap outside the
    box of these half extents (rows, columns): a container that fills the field of view is larger than the
    heads the ring was drawn around."""
    pos = np.asarray(p.coil_positions_mm, dtype=np.float64)
    gap = float(p.extra.get("coil_gap_mm", 10.0))
    reach = math.hypot(*half_extent_mm) + gap  # the container's corners too (rounded boxes)
    dist = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-6)
    return dataclasses.replace(p, coil_positions_mm=pos * np.maximum(1.0, reach / dist)[:, None])


def make_phantom(rng: np.random.Generator, p: SimParams, grid: tuple[int, int], pixel_mm: float,
                 fill_mm: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """A test object as found on scanners (:func:`make_object`'s outputs): a liquid-filled container (ellipse or
    rounded box, 65-170 mm across) of uniform signal, sometimes with an inner compartment behind a thin wall,
    and up to eight inserts (rods, blocks, bars, rings, grids of small squares) that are dark (plastic, air) or of
    another liquid's signal, with sharp partial-volume edges; no skull or scalp: networks trained on heads alone
    learn to draw a bright rim at every object's border. Mild texture, a smooth transmit bias (sometimes the
    central brightening of high fields) and the same smooth phase as the heads.

    ``fill_mm`` (the reconstructed field of view, rows x columns, in mm): a container that fills it, as the
    real twix phantoms do once the readout oversampling is cropped: across the columns (phase encode) it ends
    just inside the edges (88-98 % of the width), along the rows (readout) it reaches or passes the crop
    (1.0-1.4 times that extent, up to what the oversampled grid holds), axis-aligned."""
    rr, cc = _grid_mm(grid, pixel_mm)
    centre = (float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5)))
    theta = None
    if fill_mm is None:
        a = float(rng.uniform(55.0, 85.0))  # inside the coils, which sit outside the head's extent
        b = a * float(rng.uniform(0.6, 1.0))
    else:
        centre = (centre[0], 0.0)
        b = 0.5 * fill_mm[1] * float(rng.uniform(0.88, 0.98))
        a = min(b * float(rng.uniform(1.0, 1.4)), 0.45 * grid[0] * pixel_mm)
        theta = 0.0
    outline = "ellipse" if rng.random() < 0.7 else "box"
    d_out = _shape_distance(rng, rr, cc, centre, a, b, outline, theta)
    liquid = _inside(d_out, 0.0)
    mag = liquid.copy()
    if rng.random() < 0.3:  # an inner compartment of another liquid behind a 1-3 mm wall
        wall = float(rng.uniform(1.0, 3.0))
        f = float(rng.uniform(0.3, 0.7))
        d_in = _shape_distance(rng, rr, cc, centre, a * f, b * f, outline)
        shell = _inside(d_in, wall) - _inside(d_in, 0.0)
        mag = mag * (1.0 - shell) + (float(rng.uniform(0.3, 1.6)) - 1.0) * _inside(d_in, 0.0) * liquid
    inserts = np.zeros(grid, np.float32)
    for _ in range(int(rng.integers(0, 9))):
        kind = str(rng.choice(["rod", "block", "bar", "ring", "squares"]))
        level = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.2, 2.0))
        size = float(rng.uniform(3.0, 25.0))
        r0, c0 = rng.uniform(-0.7, 0.7, 2) * np.array([a, b])
        at = (centre[0] + float(r0), centre[1] + float(c0))
        if kind == "rod":
            d = _shape_distance(rng, rr, cc, at, size, size, "ellipse")
        elif kind == "block":
            d = _shape_distance(rng, rr, cc, at, size, size * float(rng.uniform(0.3, 1.0)), "box")
        elif kind == "bar":
            d = _shape_distance(rng, rr, cc, at, float(rng.uniform(1.0, 4.0)), size * 3, "box")
        elif kind == "ring":
            d = np.abs(_shape_distance(rng, rr, cc, at, size, size, "ellipse")) - float(rng.uniform(1.0, 4.0))
        else:  # resolution squares: a small grid of squares 1.5-5 mm, spaced twice their size
            sq = float(rng.uniform(1.5, 5.0))
            n = int(rng.integers(2, 5))
            d = np.full(grid, np.inf, np.float32)
            for i in range(n):
                for j in range(n):
                    d = np.minimum(d, _box_distance(rr - at[0] - 2 * sq * i, cc - at[1] - 2 * sq * j, sq / 2, sq / 2, 0))
        w = _inside(d, 0.0) * liquid
        mag = mag * (1.0 - w) + level * w
        inserts = np.maximum(inserts, w)
    mag = mag * (1.0 + 0.5 * p.texture * _smooth_noise(rng, grid, 0.8 / pixel_mm))
    bias = _transmit_bias(p, grid, pixel_mm)
    if rng.random() < 0.3:  # high-field central brightening (standing waves)
        u, v = _normalised_coords(grid, pixel_mm)
        bias = bias * (1.0 + float(rng.uniform(0.1, 0.6)) * np.exp(-(u * u + v * v) / (2 * 0.45**2)))
    mag = np.clip(mag * bias, 0.0, None)
    phase = _smooth_phase(rng, p, grid, pixel_mm, 0.0)
    support = ndimage.binary_fill_holes(d_out <= 1.0)
    image = (mag * np.exp(1j * phase)).astype(np.complex64)
    image[~support] = 0
    body = (liquid >= 0.5) & (inserts < 0.5)
    uniform = ndimage.binary_erosion(body, iterations=max(1, int(round(5.0 / pixel_mm))))
    return {"image": image, "head_mask": support, "brain_mask": body,
            "wm_mask": uniform if uniform.sum() >= 50 else body, "csf_mask": np.zeros(grid, bool),
            "half_extent_mm": (abs(centre[0]) + a, abs(centre[1]) + b)}


# Quadrature of the loop integral (see loop_field): (smallest distance to the conductor in radii, nodes on the full
# circle, node clustering s). Relative error < 1e-4 against the elliptic-integral closed form in each band, down
# to 0.02 radii (tests/test_simulate_coils.py); most of the field of view needs the 12-node rule.
_LOOP_RULES = ((1.0, 12, 0.6), (0.5, 16, 0.5), (0.2, 24, 0.3), (0.05, 48, 0.2), (0.0, 96, 0.15))
_LOOP_CHUNK = 8192  # points per block (keeps the [points, nodes] temporaries in cache)


@functools.lru_cache(maxsize=None)
def _loop_rule(n: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``h = 1 - cos(phi)`` on [0, pi] and weights ``[w, w h]`` of the ``n``-node periodic trapezoid rule in
    ``theta`` with ``phi = 2 atan(s tan(theta / 2))`` (nodes clustered by 1/s near phi = 0, where the conductor is
    closest; the integrand is even in phi, so half the circle is summed with double weights)."""
    dth = 2 * np.pi / n
    th = np.arange(n // 2) * dth
    t = np.tan(th / 2)
    phi = np.append(2 * np.arctan(s * t), np.pi)
    w = np.append(s * (1 + t * t) / (1 + s * s * t * t), 1 / s) * (2 * dth)
    w[0] *= 0.5
    w[-1] *= 0.5
    h = 2 * np.sin(phi / 2) ** 2
    return h, np.stack([w, w * h], 1)


def loop_field(points_mm, centre_mm, normal, radius_mm: float, wire_radius_mm: float = 0.0) -> np.ndarray:
    """Magnetic field ``[..., 3]`` (float64) of a circular current loop at ``points_mm`` ``[..., 3]``, by
    Biot-Savart, in units of ``mu0 I / (4 pi)`` per mm.

    The loop has centre ``centre_mm``, axis ``normal`` (the current circulates counter-clockwise about it) and
    radius ``a``. In the loop's frame a point is at ``rho`` from the axis and ``zeta`` along it; summing
    ``dl x R / |R|^3`` over the loop (``R`` from the conductor at angle ``phi`` to the point, ``|R|^2 = (rho - a)^2
    + zeta^2 + 2 a rho (1 - cos phi)``) gives ``B_rho = a zeta int cos(phi) / |R|^3`` and ``B_zeta = a int (a - rho
    cos(phi)) / |R|^3``, integrated numerically over phi (trapezoid rule with nodes clustered where the conductor
    is nearest, more nodes the nearer the point: :data:`_LOOP_RULES`). ``wire_radius_mm`` adds ``eps^2`` to
    ``|R|^2`` (a conductor of finite thickness: finite on the conductor). On the axis ``|B| = 2 pi a^2 / (a^2 +
    zeta^2)^(3/2)``, i.e. ``mu0 I a^2 / (2 (a^2 + z^2)^(3/2))``; far away a dipole (``1/r^3``).
    """
    a = float(radius_mm)
    pts = np.asarray(points_mm, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    p = (pts - np.asarray(centre_mm, dtype=np.float64)).reshape(-1, 3)
    zeta = p @ n
    u = p - zeta[:, None] * n  # the point's offset from the axis
    rho = np.sqrt(np.einsum("ij,ij->i", u, u))
    base = (rho - a) ** 2 + zeta**2 + float(wire_radius_mm) ** 2
    two_a_rho = 2 * a * rho
    dist = np.sqrt(base) / a  # distance to the conductor, in radii
    sums = np.empty((rho.size, 2))  # int 1/|R|^3, int (1 - cos) / |R|^3
    upper = np.inf
    for lower, nodes, s in _LOOP_RULES:
        idx = np.flatnonzero((dist >= lower) & (dist < upper))
        upper = lower
        h, weights = _loop_rule(nodes, s)
        for i in range(0, idx.size, _LOOP_CHUNK):
            j = idx[i : i + _LOOP_CHUNK]
            r2 = np.multiply.outer(two_a_rho[j], h)
            r2 += base[j, None]
            d = np.sqrt(r2)
            d *= r2
            np.reciprocal(d, out=d)
            sums[j] = d @ weights
    s0, t = sums[:, 0], sums[:, 1]
    safe = rho > 1e-12 * a  # on the axis B_rho = 0 (and its direction is undefined)
    b_rho_over_rho = np.where(safe, a * zeta * (s0 - t) / np.where(safe, rho, 1.0), 0.0)
    b_zeta = a * ((a - rho) * s0 + rho * t)  # = a int (a - rho cos) / |R|^3, without cancellation near the axis
    b = b_rho_over_rho[:, None] * u + b_zeta[:, None] * n
    return b.reshape(pts.shape)


def coil_sensitivities(p: SimParams, grid: tuple[int, int], pixel_mm: float, z_mm: float | None = None) -> np.ndarray:
    """Physical (un-normalised) receive sensitivities ``[C, H, W]`` complex64 of the slice at MNI z ``z_mm``.

    ``p.coil_model == "wire"`` (the default): each coil is a straight wire parallel to the scanner axis at
    ``coil_positions_mm``: by Biot-Savart its in-plane field has magnitude ~ 1/r and a direction rotating around
    the wire, so the receive sensitivity ``B1- = Bx - i By`` is ``-i exp(-i angle) / r`` (times the coil's gain
    and cable phase); it does not depend on ``z_mm``.

    ``"loop"``: each coil is a flat circular loop of radius ``coil_radius_mm`` (a surface coil of a head array),
    centred at ``coil_positions_mm`` in-plane and at ``coil_z_mm - z_mm`` along the scanner axis (z, the B0
    direction), its axis in the slice plane pointing at the head centre (``shift_mm``). By reciprocity the
    receive sensitivity is the loop's transverse field per unit current at each pixel, ``B1- = Bx - i By`` with
    ``B`` from :func:`loop_field` (x = rows, y = columns, as for the wires): its magnitude falls from the loop
    roughly as ``(a^2 + d^2)^(-3/2)`` on the axis and like a dipole (1/r^3) far away, and its phase follows the
    direction of the field lines in the slice. The field along z (parallel to B0) does not receive.
    """
    rr, cc = _grid_mm(grid, pixel_mm)
    out = np.empty((p.n_coils, *grid), dtype=np.complex64)
    if p.coil_model == "loop":
        if z_mm is None:
            raise ValueError("the loop coil model needs the slice position z_mm")
        points = np.stack([rr, cc, np.zeros_like(rr)], -1)
        head = np.asarray(p.shift_mm, dtype=np.float64)
        for i, (pos, g) in enumerate(zip(p.coil_positions_mm, p.coil_gains)):
            normal = head - pos
            normal = np.append(normal / np.linalg.norm(normal), 0.0)
            centre = (pos[0], pos[1], float(p.coil_z_mm[i]) - float(z_mm))
            b = loop_field(points, centre, normal, float(p.coil_radius_mm[i]), WIRE_RADIUS_MM)
            out[i] = (g * (b[..., 0] - 1j * b[..., 1])).astype(np.complex64)
        return out
    if p.coil_model != "wire":
        raise ValueError(f"coil_model must be one of {COIL_MODELS}, got {p.coil_model!r}")
    for i, ((pr, pc), g) in enumerate(zip(p.coil_positions_mm, p.coil_gains)):
        dr = rr - pr
        dc = cc - pc
        r = np.sqrt(dr * dr + dc * dc + 1.0)  # +1 mm^2: finite wire radius, keeps the map bounded at the wire
        out[i] = (g * -1j * np.exp(-1j * np.arctan2(dc, dr)) / r).astype(np.complex64)
    return out


def _noise_std_for_snr(p: SimParams, image: np.ndarray, maps: np.ndarray, region: np.ndarray) -> float:
    """Per-coil k-space noise std giving ``p.snr`` = mean |image| / std(RSS noise) over ``region``.

    At high SNR the RSS of coil images ``S x + n`` (with sum |S|^2 = 1) deviates from |x| by
    Re(e^{-i arg x} S^H n), whose variance is sigma^2 S^H Psi S / 2 (Psi: coil noise covariance).
    """
    s = maps[:, region]  # [C, N]
    var_unit = np.real(np.einsum("cn,cd,dn->n", s.conj(), p.noise_cov, s)) / 2
    signal = float(np.abs(image[region]).mean())
    return signal / (p.snr * math.sqrt(float(var_unit.mean())))


def _acquire(
    rng: np.random.Generator, image: np.ndarray, maps: np.ndarray, cov: np.ndarray, sigma: float
) -> np.ndarray:
    """Fully sampled coil k-space ``fft2c(S x) + sigma * L w`` with ``L L^H = cov``, ``w ~ CN(0, I)``."""
    c = maps.shape[0]
    k = fft2c_np(maps * image[None], workers=-1)  # multithreaded: the simulator's k-space is large
    # (re, im) pairs of N(0, 1) viewed as complex64; the sqrt(1/2) goes into the Cholesky factor: E|w|^2 = 1
    w = rng.standard_normal((c, k[0].size, 2), dtype=np.float32).view(np.complex64)[..., 0]
    chol = (np.linalg.cholesky(cov) * math.sqrt(0.5) * sigma).astype(np.complex64)
    noise = (chol @ w).reshape(k.shape)
    return (k + noise).astype(np.complex64)


def _slice_from_object(
    rng: np.random.Generator, p: SimParams, obj: dict[str, np.ndarray], phys: np.ndarray,
    shape: tuple[int, int], sigma: float | None,
) -> dict[str, Any]:
    rss_phys = np.sqrt((np.abs(phys) ** 2).sum(0))
    maps = (phys / rss_phys[None]).astype(np.complex64)
    # The receive profile's RSS is a smooth bias the coil-combined image keeps (as real RSS/SENSE images do);
    # it is folded into the ground truth so that the maps satisfy sum |S|^2 = 1 (the project convention).
    head = obj["head_mask"]
    receive_bias = rss_phys / float(rss_phys[head].mean())
    image = (obj["image"] * receive_bias).astype(np.complex64)
    region = obj["wm_mask"] if obj["wm_mask"].sum() >= 50 else obj["brain_mask"]
    if sigma is None:
        sigma = p.noise_std if p.noise_std is not None else _noise_std_for_snr(p, image, maps, region)
    kspace = _acquire(rng, image, maps, p.noise_cov, sigma)
    reference = center_crop(rss_np(ifft2c_np(kspace, workers=-1)), shape).astype(np.float32)
    return {
        "kspace": kspace,
        "image": image,
        "maps": maps,
        "reference": reference,
        "target": center_crop(np.abs(image), shape).astype(np.float32),
        "head_mask": head,
        "wm_mask": region,
        "csf_mask": obj["csf_mask"],
        "noise_cov": (p.noise_cov * sigma**2).astype(np.complex64),
        "noise_std": float(sigma),
    }


def _check_shape(shape: Sequence[int], readout_oversampling: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if len(shape) != 2 or min(shape) < 16:
        raise ValueError(f"shape must be (H, W) with both >= 16, got {tuple(shape)}")
    if readout_oversampling not in (1, 2):
        raise ValueError(f"readout_oversampling must be 1 or 2, got {readout_oversampling}")
    shape = (int(shape[0]), int(shape[1]))
    return shape, (shape[0] * readout_oversampling, shape[1])


def generate_slice(
    rng: np.random.Generator | int | None = None,
    *,
    shape: tuple[int, int] = (256, 256),
    slice_position: float | None = None,
    readout_oversampling: int = 1,
    fov_mm: float = DEFAULT_FOV_MM,
    params: SimParams | None = None,
    coil_model: str = "wire",
    subject: str = "brain",
    fill_fov: bool = False,
    real_max_upsampling: float | None = None,
    folds: float = 0.0,
    **param_kw: Any,
) -> dict[str, Any]:
    """Simulate one fully sampled multi-coil axial brain slice (or, ``subject="phantom"``, a test object:
    :func:`make_phantom`, with ``fill_fov`` one that fills the reconstructed field of view; ``subject="real"``, a
    real scan's magnitude slice: :func:`make_real`, ``real_max_upsampling`` its ``max_upsampling``: the
    returned ``pixel_mm`` can then be coarser than ``fov_mm / W``; ``folds``: the brain's synthetic cortical
    folds, :func:`make_object`).

    Args:
        rng: a ``numpy.random.Generator`` or a seed; the same seed gives bit-identical arrays.
        shape: ``(H, W)`` of the reconstructed image (the field of view of interest).
        slice_position: MNI z in mm within :attr:`Anatomy.z_range` (None: random in it).
        readout_oversampling: 1, or 2 to double the grid along the readout (H) as scanners do.
        fov_mm: field of view along W; pixels are square (``fov_mm / W``).
        params: use these volume parameters instead of drawing them (see :func:`draw_params`).
        coil_model: "wire" (default: straight wires, 1/r) or "loop" (circular surface loops, see
            :func:`coil_sensitivities`); with ``params`` given, ``params.coil_model`` applies.
        param_kw: the volume's :func:`draw_params` arguments, with the same defaults there:
            ``n_coils``: receive coils (default 12; None: random 8..16);
            ``contrast``: "t1" (default), "t2", "pd" (spin echo, TR/TE in :data:`SEQUENCES`) or "random"
            (random TR/TE and tissue relaxation properties);
            ``snr``: mean white-matter signal over the RSS noise std (None, the default: random 20..40; or a
            ``(lo, hi)`` range); ``noise_correlation``: coil noise mixing strength (0, the default: independent
            coils; None: random 0..0.5); ``rotation_deg``, ``flip_lr``, ``scale``, ``shift_mm``: in-plane pose
            of the head (default: none; None: random); further ``texture``, ``bias``, ``coil_gap_mm``,
            ``noise_std``; with ``coil_model="loop"``: ``loop_radius_mm``, ``loop_center_z_mm``, ``loop_rings``.

    Returns a dict (numpy arrays; ``Hk = readout_oversampling * H``):
        ``kspace`` complex64 ``[C, Hk, W]``: centred orthonormal FFT of the noisy coil images, fully sampled;
        ``image`` complex64 ``[Hk, W]``: the noise-free ground truth (coil-combined, receive bias included);
        ``maps`` complex64 ``[C, Hk, W]``: coil sensitivities with sum_c |S_c|^2 = 1, so that the noise-free
        coil images are ``maps * image``;
        ``reference`` float32 ``[H, W]``: fastMRI's reference, the centre crop of rss(ifft2c(kspace));
        ``target`` float32 ``[H, W]``: the noise-free magnitude ``|image|`` cropped the same way;
        ``head_mask``, ``wm_mask`` (where the SNR is defined), ``csf_mask`` bool ``[Hk, W]``;
        ``noise_cov`` complex64 ``[C, C]`` (absolute);
        ``noise_std`` (per-coil sigma); ``slice_position`` (mm); ``params`` (:class:`SimParams`).
    """
    rng = _rng(rng)
    shape, grid = _check_shape(shape, readout_oversampling)
    anatomy = load_anatomy()
    p = params or draw_params(rng, anatomy=anatomy, coil_model=coil_model, **param_kw)
    z0, z1 = anatomy.z_range
    z = _draw(rng, slice_position, z0, z1)
    if not z0 <= z <= z1:
        raise ValueError(f"slice_position must be within {z0:g}..{z1:g} mm (MNI z), got {z:g}")
    pixel_mm = float(fov_mm) / shape[1]
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {SUBJECTS}, got {subject!r}")
    if subject == "brain":
        obj = make_object(rng, p, grid, pixel_mm, z, anatomy, folds=folds)
    elif subject == "phantom":
        obj = make_phantom(rng, p, grid, pixel_mm,
                           fill_mm=(shape[0] * pixel_mm, shape[1] * pixel_mm) if fill_fov else None)
        if fill_fov:
            p = _coils_outside(p, obj["half_extent_mm"])
    else:
        obj = make_real(rng, p, grid, pixel_mm, z, max_upsampling=real_max_upsampling)
        pixel_mm = obj.pop("pixel_mm")
    phys = coil_sensitivities(p, grid, pixel_mm, z)
    out = _slice_from_object(rng, p, obj, phys, shape, None)
    out.update(slice_position=z, params=p, pixel_mm=pixel_mm)
    return out


def generate_volume(
    rng: np.random.Generator | int | None = None,
    *,
    slice_positions: Sequence[float],
    shape: tuple[int, int] = (256, 256),
    readout_oversampling: int = 1,
    fov_mm: float = DEFAULT_FOV_MM,
    params: SimParams | None = None,
    coil_model: str = "wire",
    **param_kw: Any,
) -> dict[str, Any]:
    """Several slices of one simulated scan: same coil array, contrast, pose, noise covariance and noise level
    (set from the SNR of the middle slice). ``coil_model`` and ``param_kw`` go to :func:`draw_params`.

    Returns the :func:`generate_slice` keys stacked over slices (``kspace`` ``[S, C, Hk, W]``, ``reference``
    ``[S, H, W]``, ...), except ``maps`` and ``params``. ``maps``: ``[C, Hk, W]`` for the wire model (infinitely
    long wires: one map for all slices); ``[S, C, Hk, W]`` for the loop model (the loops' fields change along z).
    """
    rng = _rng(rng)
    shape, grid = _check_shape(shape, readout_oversampling)
    anatomy = load_anatomy()
    p = params or draw_params(rng, anatomy=anatomy, coil_model=coil_model, **param_kw)
    z0, z1 = anatomy.z_range
    for z in slice_positions:
        if not z0 <= z <= z1:
            raise ValueError(f"slice positions must be within {z0:g}..{z1:g} mm (MNI z), got {z:g}")
    pixel_mm = float(fov_mm) / shape[1]
    if p.coil_model == "wire":
        phys = coil_sensitivities(p, grid, pixel_mm)
        slice_phys = [phys] * len(slice_positions)
    else:
        slice_phys = [coil_sensitivities(p, grid, pixel_mm, float(z)) for z in slice_positions]
    objects = [make_object(rng, p, grid, pixel_mm, float(z), anatomy) for z in slice_positions]
    sigma = p.noise_std
    if sigma is None:
        mid = objects[len(objects) // 2]
        phys = slice_phys[len(objects) // 2]
        rss_phys = np.sqrt((np.abs(phys) ** 2).sum(0))
        maps = phys / rss_phys[None]
        image = mid["image"] * rss_phys / float(rss_phys[mid["head_mask"]].mean())
        region = mid["wm_mask"] if mid["wm_mask"].sum() >= 50 else mid["brain_mask"]
        sigma = _noise_std_for_snr(p, image, maps, region)
    slices = [_slice_from_object(rng, p, obj, ph, shape, sigma) for obj, ph in zip(objects, slice_phys)]
    out: dict[str, Any] = {k: np.stack([s[k] for s in slices]) for k in
                           ("kspace", "image", "reference", "target", "head_mask", "wm_mask", "csf_mask")}
    maps = slices[0]["maps"] if p.coil_model == "wire" else np.stack([s["maps"] for s in slices])
    out.update(maps=maps, noise_cov=slices[0]["noise_cov"], noise_std=float(sigma), params=p,
               pixel_mm=pixel_mm, slice_positions=[float(z) for z in slice_positions])
    return out


# ----------------------------------------------------------------------------------------------------------
# The demo scan

DEMO_SETTINGS: dict[str, Any] = {
    "seed": 20240607,
    "slice_positions": [-2.0, 8.0, 18.0, 28.0, 38.0, 48.0],  # MNI z, mm (5 mm thick slices, 10 mm apart)
    "shape": [256, 256],
    "readout_oversampling": 2,
    "fov_mm": 240.0,
    "slice_thickness_mm": 5.0,
    "n_coils": 12,
    "contrast": "t1",
    "snr": 35.0,
    "noise_correlation": 0.25,
}


def ismrmrd_header_xml(
    *,
    encoded: tuple[int, int],
    recon: tuple[int, int],
    fov_mm: tuple[float, float],
    slice_thickness_mm: float,
    n_slices: int,
    n_coils: int,
    field_strength_t: float = 3.0,
    tr_ms: float = 600.0,
    te_ms: float = 10.0,
    protocol: str = "AXT1",
) -> str:
    """A minimal valid ISMRMRD XML header for a 2D Cartesian multi-slice scan as fastMRI files carry it.

    ``encoded`` and ``recon`` are ``(readout, phase)`` matrix sizes (x = readout = H, y = phase = W);
    ``fov_mm`` is the reconstructed ``(readout, phase)`` field of view; the encoded readout FOV scales with the
    oversampling ``encoded[0] / recon[0]``.
    """
    enc_x, enc_y = encoded
    rec_x, rec_y = recon
    os_factor = enc_x / rec_x
    larmor_hz = int(round(42.577478518e6 * field_strength_t))
    lim = lambda name, mx, ctr: (f"<{name}><minimum>0</minimum><maximum>{mx}</maximum>"  # noqa: E731
                                 f"<center>{ctr}</center></{name}>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">'
        "<subjectInformation><patientID>demo</patientID></subjectInformation>"
        "<measurementInformation><patientPosition>HFS</patientPosition>"
        f"<protocolName>{protocol} (synthetic, mri-workbench)</protocolName></measurementInformation>"
        "<acquisitionSystemInformation><systemVendor>mri-workbench</systemVendor>"
        "<systemModel>simulator</systemModel>"
        f"<systemFieldStrength_T>{field_strength_t:g}</systemFieldStrength_T>"
        f"<receiverChannels>{n_coils}</receiverChannels></acquisitionSystemInformation>"
        f"<experimentalConditions><H1resonanceFrequency_Hz>{larmor_hz}</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        f"<encodedSpace><matrixSize><x>{enc_x}</x><y>{enc_y}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{fov_mm[0] * os_factor:g}</x><y>{fov_mm[1]:g}</y><z>{slice_thickness_mm:g}</z>"
        "</fieldOfView_mm></encodedSpace>"
        f"<reconSpace><matrixSize><x>{rec_x}</x><y>{rec_y}</y><z>1</z></matrixSize>"
        f"<fieldOfView_mm><x>{fov_mm[0]:g}</x><y>{fov_mm[1]:g}</y><z>{slice_thickness_mm:g}</z>"
        "</fieldOfView_mm></reconSpace>"
        "<encodingLimits>"
        + lim("kspace_encoding_step_1", enc_y - 1, enc_y // 2)
        + lim("kspace_encoding_step_2", 0, 0)
        + lim("average", 0, 0)
        + lim("slice", n_slices - 1, n_slices // 2)
        + lim("contrast", 0, 0)
        + lim("phase", 0, 0)
        + lim("repetition", 0, 0)
        + lim("set", 0, 0)
        + lim("segment", 0, 0)
        + "</encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding>"
        f"<sequenceParameters><TR>{tr_ms:g}</TR><TE>{te_ms:g}</TE><flipAngle_deg>90</flipAngle_deg>"
        "<sequence_type>SpinEcho</sequence_type></sequenceParameters>"
        "</ismrmrdHeader>\n"
    )


def _demo_key() -> str:
    """Content hash naming the demo file: the generator's source, its settings and the anatomy file's bytes
    (so an edited generator never reuses a stale cached file)."""
    from workbench.paths import resource_path

    h = hashlib.sha256()
    h.update(SIM_VERSION.encode())
    h.update(Path(__file__).read_bytes())
    h.update(json.dumps(DEMO_SETTINGS, sort_keys=True).encode())
    h.update(resource_path(*ANATOMY_FILE).read_bytes())
    return h.hexdigest()[:12]


def write_demo_scan(path: str | os.PathLike) -> dict[str, Any]:
    """Simulate the demo volume and write it as a fastMRI multi-coil file at ``path`` (atomically)."""
    from workbench.io.fastmri import write_fastmri

    s = DEMO_SETTINGS
    shape = tuple(s["shape"])
    vol = generate_volume(
        s["seed"], slice_positions=s["slice_positions"], shape=shape, readout_oversampling=s["readout_oversampling"],
        fov_mm=s["fov_mm"], n_coils=s["n_coils"], contrast=s["contrast"], snr=s["snr"],
        noise_correlation=s["noise_correlation"],
    )
    kspace = vol["kspace"]
    header = ismrmrd_header_xml(
        encoded=kspace.shape[-2:], recon=shape, fov_mm=(s["fov_mm"] * shape[0] / shape[1], s["fov_mm"]),
        slice_thickness_mm=s["slice_thickness_mm"], n_slices=kspace.shape[0], n_coils=kspace.shape[1],
        tr_ms=vol["params"].tr_ms, te_ms=vol["params"].te_ms,
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_fastmri(tmp, kspace, vol["reference"], header_xml=header,
                      attrs={"acquisition": "AXT1", "patient_id": "demo",
                             "simulation": json.dumps({"settings": s, "sim_version": SIM_VERSION,
                                                       "anatomy": load_anatomy().source,
                                                       "params": vol["params"].to_dict(),
                                                       "noise_std": vol["noise_std"]})})
        os.replace(tmp, path)  # atomic on one file system: readers never see a half-written file
    finally:
        if tmp.exists():
            tmp.unlink()
    return vol


def demo_scan_path(regenerate: bool = False) -> Path:
    """Path of the demo scan (fastMRI multi-coil HDF5 in the user cache), generating it on first use.

    The file name carries a hash of the generator version, settings and anatomy, so a changed generator
    writes a new file instead of reusing a stale one; older demo files are removed.
    """
    from workbench.paths import cache_dir

    folder = cache_dir()
    path = folder / f"demo_axt1_v{SIM_VERSION}_{_demo_key()}.h5"
    if regenerate or not path.exists():
        write_demo_scan(path)
        for old in folder.glob("demo_axt1_*.h5"):
            if old != path:
                try:
                    old.unlink()
                except OSError:
                    pass
    return path
