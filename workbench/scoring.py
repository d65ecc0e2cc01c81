"""Scoring: image quality against a reference, and how well a std map predicts the error.

Image metrics follow the fastMRI evaluation (``fastmri/evaluate.py``). Magnitudes are compared: complex input
becomes its magnitude, the reconstruction is centre-cropped to the reference's size, then

- NMSE = ||ref - rec||^2 / ||ref||^2 over everything given (a slice or a whole volume);
- PSNR = ``skimage.metrics.peak_signal_noise_ratio(ref, rec, data_range)`` = 10 log10(data_range^2 / MSE);
- SSIM = ``skimage.metrics.structural_similarity(ref_s, rec_s, data_range)`` with its defaults (7x7 uniform
  window, K1 = 0.01, K2 = 0.03, sample covariance), averaged over the slices of a volume.
  Both are computed by :mod:`workbench.fastmri_metrics` (scikit-image's numbers, numpy alone: importing
  ``skimage.metrics`` pulls in ``scipy.stats``, most of a second at every ``workbench recon``).

The data range (one rule, used by the library, ``workbench recon``, the app and the benchmarks;
:func:`volume_data_range`): the file's ``max`` attribute (fastMRI), else the maximum over the stored reference
volume, else (a reference computed from the k-space) the slice's own maximum. ``Problem.from_scan`` applies it
(``problem.data_range``); :func:`evaluate` given no ``data_range`` uses ``ref.max()`` of what it is passed.

Scoring modes (:data:`SCORE_MODES`; :func:`score`, :func:`score_result`), applied to every result in the same way
here, never inside a plugin:

- ``"fastmri"``: the full field of view against the stored reference (the published convention);
- ``"object"``: the same metrics inside :func:`reference_region`, the object mask derived once from the reference
  (:func:`object_mask`: Otsu's threshold of the lightly smoothed reference, opened, specks dropped, holes filled);
  PSNR and NMSE over its pixels, SSIM the mean of the SSIM map over them;
- ``"as-acquired"``: each image turned into what a fully sampled scan of it would look like before scoring
  (:func:`as_acquired`: coil images from the image and the coil maps, the measured k-space samples kept, the
  unmeasured samples' scanner noise added in quadrature): the root-sum-of-squares reference of a fully sampled
  scan carries a noise floor in the background that a SENSE-combined or regularised image does not.

Degenerate inputs (NaN or infinite values, images smaller than the SSIM window, a constant reference, an empty
object region) raise :class:`ScoreError`, a :class:`~workbench.errors.WorkbenchError` that says what is wrong.

Uncertainty statistics (:func:`spearman`, :func:`calibrated_spearman`, :func:`error_predictability`,
:func:`edge_spearman`, :func:`spearman_figures`, :func:`interval_coverage`, :func:`gaussian_coverage`,
:func:`object_mask`, :func:`calibration_curve`, :func:`std_map_calibration`): does a std map predict the error?

Inputs may be numpy arrays or torch tensors, ``[h, w]`` or ``[S, h, w]``. scipy and scikit-image are imported
when a function needs them.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any, Callable

import numpy as np

from workbench.arrays import LRUCache, center_crop, fit_shape
from workbench.errors import WorkbenchError

__all__ = [
    "SCORE_MODES", "DEFAULT_SCORE_MODE", "SCORE_MODE_TEXT", "IMAGE_IS_RSS", "IMAGE_IS_CONSISTENT_RSS", "IMAGE_IS_SCAN",
    "ScoreError", "zero_filled_image_is",
    "check_score_mode", "reference_region", "calibration_phase", "complex_on_grid", "as_acquired", "score", "score_result",
    "SSIM_WIN_SIZE", "CALIBRATED_ERROR_PER_STD", "CALIBRATION_LEVEL",
    "prepare", "nmse", "psnr", "ssim", "error_map", "evaluate",
    "volume_data_range", "data_range", "least_squares_scale", "score_image", "region_stats",
    "spearman", "calibrated_spearman", "error_predictability", "edge_spearman", "spearman_figures",
    "interval_coverage", "gaussian_coverage", "object_mask", "object_outline", "calibration_curve", "std_map_calibration",
]

SSIM_WIN_SIZE = 7
SCORE_MODES = ("fastmri", "object", "as-acquired")
DEFAULT_SCORE_MODE = "fastmri"
#: What each scoring mode compares (for tables, figures and ``--help``).
SCORE_MODE_TEXT = {
    "fastmri": "full field of view against the stored reference (fastMRI convention)",
    "object": "inside the object mask of the reference (background excluded)",
    "as-acquired": "each image as a fully sampled scan of it (measured samples kept, unmeasured samples' noise "
                   "in quadrature)",
}
#: ``Result.extras["image_is"]`` values a method may declare. ``IMAGE_IS_RSS``: the image is the root sum of
#: squares of coil images that hold the measured samples (zero-filled RSS, XPDNet's data consistency), so
#: :func:`as_acquired` only adds the unmeasured samples' noise; ``IMAGE_IS_SCAN``: it already is the expected RSS
#: of a fully sampled scan (noise floor included), left as it is.
IMAGE_IS_RSS = "rss-of-measured"
#: ``IMAGE_IS_CONSISTENT_RSS``: the RSS of coil images that hold the measured samples and the method's own
#: prediction elsewhere (XPDNet's final data consistency): :func:`as_acquired` treats it as ``IMAGE_IS_RSS``, while
#: the hold-out score (:mod:`workbench.holdout`) scores its prediction like any image's, where an ``IMAGE_IS_RSS``
#: image (zero filling) predicts nothing.
IMAGE_IS_CONSISTENT_RSS = "rss-of-consistent"
IMAGE_IS_SCAN = "expected-scan-rss"


def zero_filled_image_is(problem: Any, combine: str = "rss") -> str | None:
    """What a zero-filled image of ``problem`` is to the scoring (``Result.extras["image_is"]``): on a Cartesian
    grid its RSS is the measured data's own coil images (:data:`IMAGE_IS_RSS`: the as-acquired score only adds
    noise, the hold-out predicts nothing with it); off the grid the density-compensated adjoint, and any SENSE
    combination, is an image like any other (None). The zero-filled method and the app's live zero-filled row
    both ask here, so that they score alike."""
    return IMAGE_IS_RSS if combine == "rss" and problem.is_cartesian else None


class ScoreError(WorkbenchError, ValueError):
    """Metrics cannot be computed for these images (NaN or infinite values, too small for SSIM, a constant
    reference, an empty object region, an unknown scoring mode): the message says which."""


def check_score_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`SCORE_MODES`, else :class:`ScoreError`."""
    if mode not in SCORE_MODES:
        raise ScoreError(f"unknown scoring mode {mode!r}; choose one of {', '.join(SCORE_MODES)}")
    return mode
#: Mean |error| per unit of std of a calibrated, unbiased Gaussian posterior: E|N(0, s^2)| = sqrt(2/pi) s, the
#: guide line of the calibration plot.
CALIBRATED_ERROR_PER_STD = math.sqrt(2.0 / math.pi)
#: Nominal level of the pixel-wise intervals whose coverage the calibration reports.
CALIBRATION_LEVEL = 0.9


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _magnitude(x: Any) -> np.ndarray:
    x = _numpy(x)
    if np.iscomplexobj(x):
        x = np.abs(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


# --------------------------------------------------------------------------------------------------------------
# image metrics
def prepare(ref: Any, rec: Any) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes of ``ref`` and ``rec``, with ``rec`` centre-cropped to ``ref``'s ``[h, w]``."""
    ref_m, rec_m = _magnitude(ref), _magnitude(rec)
    if ref_m.ndim not in (2, 3) or rec_m.ndim != ref_m.ndim:
        raise ScoreError(f"expected matching [h, w] or [S, h, w] images, got reference {ref_m.shape} and "
                         f"reconstruction {rec_m.shape}")
    if ref_m.ndim == 3 and ref_m.shape[0] != rec_m.shape[0]:
        raise ScoreError(f"reference has {ref_m.shape[0]} slices, reconstruction {rec_m.shape[0]}")
    if rec_m.shape[-2] < ref_m.shape[-2] or rec_m.shape[-1] < ref_m.shape[-1]:
        raise ScoreError(f"reconstruction {rec_m.shape[-2:]} is smaller than the reference {ref_m.shape[-2:]}")
    rec_m = center_crop(rec_m, ref_m.shape[-2:])
    for name, a in (("reference", ref_m), ("reconstruction", rec_m)):
        bad = a.size - int(np.isfinite(a).sum())
        if bad:
            raise ScoreError(f"the {name} has {bad} NaN or infinite pixel(s) of {a.size}: no metric is defined "
                             f"(check the data or the method's parameters)")
    return ref_m, rec_m


def _data_range(ref: np.ndarray, data_range: float | None) -> float:
    dr = float(ref.max()) if data_range is None else float(data_range)
    if not dr > 0 or not math.isfinite(dr):
        raise ScoreError(f"data range must be positive and finite, got {dr} (is the reference all zero?)")
    return dr


def nmse(ref: Any, rec: Any) -> float:
    """Normalised mean squared error ||ref - rec||^2 / ||ref||^2 (magnitudes, rec cropped to ref)."""
    r, x = prepare(ref, rec)
    den = float(np.linalg.norm(r)) ** 2
    if den == 0:
        raise ScoreError("NMSE is undefined for an all-zero reference")
    return float(np.linalg.norm(r - x)) ** 2 / den


def psnr(ref: Any, rec: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); ``inf`` for identical images."""
    from workbench.fastmri_metrics import peak_signal_noise_ratio

    r, x = prepare(ref, rec)
    dr = _data_range(r, data_range)
    if np.array_equal(r, x):
        return math.inf
    return float(peak_signal_noise_ratio(r, x, data_range=dr))


def ssim(ref: Any, rec: Any, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image's, 7x7 window), averaged over slices for ``[S, h, w]`` input."""
    from workbench.fastmri_metrics import structural_similarity

    r, x = prepare(ref, rec)
    dr = _data_range(r, data_range)
    if min(r.shape[-2:]) < SSIM_WIN_SIZE:
        raise ScoreError(f"images of {r.shape[-2:]} are smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window")
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


def evaluate(ref: Any, rec: Any, data_range: float | None = None, region: Any = None) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` of ``rec`` against ``ref`` (see the module docstring for definitions).

    ``region`` (bool, the reference's ``[h, w]`` or its whole shape): the metrics over its pixels only (the
    ``"object"`` mode): NMSE and the MSE of the PSNR summed over them, SSIM the mean of scikit-image's SSIM map
    over them (away from the image border, as its mean SSIM)."""
    r, x = prepare(ref, rec)
    if float(np.ptp(r)) == 0:
        raise ScoreError(f"the reference is constant ({float(r.flat[0]):.4g} everywhere): it has no structure to "
                         f"compare with (is it an empty slice?)")
    if region is None:
        return {"psnr": psnr(r, x, data_range), "ssim": ssim(r, x, data_range), "nmse": nmse(r, x)}
    from workbench.fastmri_metrics import structural_similarity

    m = np.broadcast_to(_numpy(region).astype(bool), r.shape)
    if not m.any():
        raise ScoreError("the object region is empty: the reference has no object to score inside")
    dr = _data_range(r, data_range)
    if min(r.shape[-2:]) < SSIM_WIN_SIZE:
        raise ScoreError(f"images of {r.shape[-2:]} are smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window")
    diff2 = (r.astype(np.float64) - x) ** 2
    mse = float(diff2[m].mean())
    den = float((r.astype(np.float64) ** 2)[m].sum())
    if den == 0:
        raise ScoreError("NMSE is undefined: the reference is zero inside the object region")
    pad = (SSIM_WIN_SIZE - 1) // 2
    r3, x3, m3 = (r[None], x[None], m[None]) if r.ndim == 2 else (r, x, m)
    total, count = 0.0, 0
    for a, b, mm in zip(r3, x3, m3):
        smap = structural_similarity(a, b, win_size=SSIM_WIN_SIZE, data_range=dr, full=True)[1]
        inner = np.zeros_like(mm)
        inner[pad:-pad, pad:-pad] = mm[pad:-pad, pad:-pad]
        if inner.any():
            total, count = total + float(smap[inner].mean()), count + 1
    if count == 0:
        raise ScoreError("the object region lies within the SSIM window's border: no SSIM inside it")
    return {"psnr": math.inf if mse == 0 else 10.0 * math.log10(dr * dr / mse), "ssim": total / count,
            "nmse": float(diff2[m].sum()) / den}


# --------------------------------------------------------------------------------------------------------------
# the data range rule
_volume_max_lock = threading.Lock()
# id(scan) -> (weak reference to the scan, maximum over its stored reference volume): read once per scan
_volume_max: dict[int, tuple[Any, float]] = {}


def _file_max(scan: Any) -> float | None:
    attrs = getattr(scan, "attrs", None)
    value = attrs.get("max") if isinstance(attrs, dict) else None
    try:
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _stored_volume_max(scan: Any) -> float:
    with _volume_max_lock:
        hit = _volume_max.get(id(scan))
        if hit is not None and hit[0]() is scan:
            return hit[1]
        value = max(float(np.max(scan.reference(i))) for i in range(scan.n_slices))
        for key in [k for k, (ref, _) in _volume_max.items() if ref() is None]:
            del _volume_max[key]
        _volume_max[id(scan)] = (weakref.ref(scan), value)
        return value


def volume_data_range(scan: Any, reference: Any) -> tuple[float, str]:
    """fastMRI's data range for one slice of ``scan`` whose reference image is ``reference``, and which rule
    gave it: the file's ``max`` attribute (``"file max attribute"``; ignored when below the slice's own
    maximum, as it then describes another image), else the maximum over the stored reference volume
    (``"reference volume maximum"``, read once per scan), else, for a reference computed from the k-space, the
    slice's own maximum (``"slice maximum"``)."""
    slice_max = float(np.max(_numpy(reference)))
    value = _file_max(scan)
    if value is not None and value >= slice_max * 0.999:
        return value, "file max attribute"
    if scan is not None and getattr(scan, "load_reference", None) is not None:
        return max(_stored_volume_max(scan), slice_max), "reference volume maximum"
    return slice_max, "slice maximum"


def data_range(scan: Any, reference: Any) -> float:
    """The data range of :func:`volume_data_range` alone."""
    return volume_data_range(scan, reference)[0]


# --------------------------------------------------------------------------------------------------------------
# scoring one image of the app
def least_squares_scale(reference: np.ndarray, image: Any) -> float:
    """``a`` minimising ``|| reference - a |image| ||^2`` (``image`` centre-cropped/padded to the reference); 1
    when the image is all zero (the scale fit of a reference valid only up to a global scale)."""
    m = fit_shape(np.abs(np.asarray(image)).astype(np.float64), reference.shape)
    den = float(np.vdot(m, m).real)
    if not den > 0 or not math.isfinite(den):
        return 1.0
    a = float(np.vdot(m, reference.astype(np.float64)).real) / den
    return a if math.isfinite(a) and a > 0 else 1.0


def score_image(reference: np.ndarray | None, image: Any, data_range: float | None,
                scale_free: bool = False) -> dict[str, float]:
    """:func:`score` in the ``"fastmri"`` mode: :func:`evaluate` of ``|image|`` (cropped/padded to the
    reference's shape; scaled to it by :func:`least_squares_scale` when ``scale_free``) against ``reference``;
    {} without either."""
    return score(reference, image, "fastmri", data_range=data_range, scale_free=scale_free)


# --------------------------------------------------------------------------------------------------------------
# scoring modes
_REGIONS = LRUCache(8)


def reference_region(reference: Any) -> np.ndarray:
    """The ``"object"`` mode's pixels: :func:`object_mask` of the reference, derived once per reference (cached
    by content, so every result of a slice is scored inside the same mask). :class:`ScoreError` when the
    reference is not finite or the mask comes out empty."""
    import hashlib

    ref = np.ascontiguousarray(np.abs(_numpy(reference)))
    if not np.isfinite(ref).all():
        raise ScoreError("the reference has NaN or infinite pixels: no object mask can be derived from it")
    key = (ref.shape, ref.dtype.str, hashlib.blake2b(ref.tobytes(), digest_size=16).hexdigest())

    def create() -> np.ndarray:
        m = np.stack([object_mask(r) for r in ref]) if ref.ndim == 3 else object_mask(ref)
        if not m.any():
            raise ScoreError("the object mask of the reference is empty (a constant or empty reference)")
        m.setflags(write=False)
        return m

    return _REGIONS.get_or_create(key, create)


def calibration_phase(problem: Any, maps: Any) -> Any:
    """The phase of the low-resolution SENSE image of the calibration box (Cartesian; non-Cartesian: of the
    density-compensated SENSE zero-filled image): the phase given to a magnitude-only image."""
    from workbench.physics.fft import ifft2c

    if not problem.is_cartesian:
        return problem.zero_filled("sense").angle()
    (h, w), (ch, cw) = problem.grid_shape, problem.calib
    rows, cols = slice(h // 2 - ch // 2, h // 2 - ch // 2 + ch), slice(w // 2 - cw // 2, w // 2 - cw // 2 + cw)
    low = problem.y.new_zeros(problem.y.shape)
    low[:, rows, cols] = problem.y[:, rows, cols]
    return (maps.conj() * ifft2c(low)).sum(0).angle()


def complex_on_grid(image: Any, grid_shape: Any, device: Any, phase: Callable[[], Any]) -> Any:
    """``image`` ``[h, w]`` (NumPy or torch, complex or magnitude) as complex64 ``[H, W]`` on ``grid_shape``
    (centre padded / cropped) on ``device``; a magnitude-only image (real, or complex with no imaginary part) gets
    the phase ``phase()`` (called only then: the calibration phase, :func:`calibration_phase`). The one rule by
    which a magnitude becomes an image the encoding can take: the as-acquired score, the hold-out's predictions and
    the networks' consistency solve all use it."""
    import torch

    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    x = torch.from_numpy(fit_shape(img.astype(np.complex64), tuple(grid_shape))).to(device)
    if not np.iscomplexobj(img) or not np.any(np.imag(img)):
        x = x.abs() * torch.exp(1j * phase().to(x.device))
    return x


def as_acquired(problem: Any, image: Any, image_is: str | None = None) -> np.ndarray:
    """What a fully sampled scan of ``image`` would look like, as its expected root-sum-of-squares magnitude
    (float32, ``image``'s ``[h, w]``): the ``"as-acquired"`` scoring mode.

    The coil images ``S_c x`` (``x`` padded to the grid; a magnitude-only image gets the phase of the
    calibration data), on a Cartesian grid the measured samples put back in their k-space, RSS, cropped, and the
    scanner noise of the unmeasured samples added in quadrature: ``sqrt(rss^2 + C (1 - f) noise_std^2)``
    (:func:`workbench.physics.fft.expected_scan_rss`; ``f`` the measured fraction, 0 off the grid). A fully
    sampled RSS reference is one draw of that scan. ``image_is`` (``Result.extras["image_is"]``):
    :data:`IMAGE_IS_RSS` or :data:`IMAGE_IS_CONSISTENT_RSS` (already the RSS of coil images holding the measured
    samples: only the noise is added), :data:`IMAGE_IS_SCAN` (already this: unchanged), None (a combined image)."""
    import torch

    from workbench.physics.fft import fft2c, ifft2c, rss, unmeasured_noise_energy

    img = _numpy(image)
    if img.ndim != 2:
        raise ScoreError(f"as-acquired scoring takes one [h, w] image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ScoreError("the reconstruction has NaN or infinite pixels: no metric is defined")
    if image_is == IMAGE_IS_SCAN:
        return np.abs(img).astype(np.float32)
    sigma = float(problem.noise_std)
    if problem.is_cartesian:
        energy = unmeasured_noise_energy(problem.mask, problem.n_coils, sigma)
    else:  # no sample of the Cartesian scan is measured
        energy = float(problem.n_coils) * sigma**2
    if image_is in (IMAGE_IS_RSS, IMAGE_IS_CONSISTENT_RSS):
        magnitude = np.abs(img).astype(np.float64)
    else:
        try:
            maps = problem.maps
        except WorkbenchError as exc:
            raise ScoreError(f"as-acquired scoring needs coil maps, and they could not be estimated: {exc}") from None
        coils = maps * complex_on_grid(img, problem.grid_shape, maps.device, lambda: calibration_phase(problem, maps))
        if problem.is_cartesian:
            coils = ifft2c(torch.where(problem.mask, problem.y, fft2c(coils)))
        magnitude = fit_shape(problem.crop(rss(coils)).cpu().numpy().astype(np.float64), img.shape)
    return np.sqrt(magnitude**2 + energy).astype(np.float32)


def score(reference: Any, image: Any, mode: str = DEFAULT_SCORE_MODE, *, data_range: float | None = None,
          problem: Any = None, image_is: str | None = None, scale_free: bool = False) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}`` of ``image`` against ``reference`` in scoring ``mode`` (:data:`SCORE_MODES`),
    the one call behind the library, ``workbench recon``, the app and the benchmarks. ``|image|`` is
    cropped/padded to the reference (scaled to it by :func:`least_squares_scale` when ``scale_free``);
    ``"as-acquired"`` needs the ``problem`` the image was reconstructed from (:func:`as_acquired`). {} without
    a reference or an image."""
    check_score_mode(mode)
    if reference is None or image is None:
        return {}
    ref = np.asarray(_numpy(reference))
    if mode == "as-acquired":
        if problem is None:
            raise ScoreError("as-acquired scoring needs the problem the image was reconstructed from (its k-space, "
                             "sampling and coil maps)")
        image = as_acquired(problem, image, image_is)
    rec = fit_shape(np.abs(_numpy(image)).astype(np.float32), ref.shape)
    if scale_free:
        rec = rec * np.float32(least_squares_scale(ref, rec))
    region = reference_region(ref) if mode == "object" else None
    return {k: float(v) for k, v in evaluate(ref, rec, data_range=data_range, region=region).items()}


def score_result(problem: Any, result: Any, mode: str = DEFAULT_SCORE_MODE) -> dict[str, float]:
    """:func:`score` of a Result (or an image) of ``problem`` against ``problem.reference`` with its data range
    (the library's call: ``score_result(problem, safe_run(method, problem), "object")``); {} without a
    reference."""
    image = getattr(result, "image", result)
    extras = getattr(result, "extras", None) or {}
    return score(problem.reference, image, mode, data_range=problem.data_range, problem=problem,
                 image_is=extras.get("image_is"))


def region_stats(image: np.ndarray, reference: np.ndarray | None, rows: slice, cols: slice) -> dict[str, float]:
    """Mean, standard deviation, min, max of ``image`` in a rectangle, and the RMS error against ``reference``
    there (when given): the compare view's ROI statistics."""
    a = np.asarray(image)[rows, cols].astype(np.float64)
    if a.size == 0:
        return {}
    out = {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
           "pixels": int(a.size)}
    if reference is not None:
        r = np.asarray(reference)[rows, cols].astype(np.float64)
        out["rmse"] = float(np.sqrt(np.mean((np.abs(a) - r) ** 2)))
    return out


# --------------------------------------------------------------------------------------------------------------
# uncertainty statistics
def spearman(a: Any, b: Any, mask: Any = None) -> float:
    """Spearman rank correlation of ``a`` and ``b`` (over ``mask`` when given): Pearson's correlation of the
    ranks (ties averaged). NaN when either is constant."""
    from scipy.stats import rankdata

    a, b = _numpy(a).astype(np.float64), _numpy(b).astype(np.float64)
    if mask is not None:
        m = _numpy(mask).astype(bool)
        a, b = a[m], b[m]
    a, b = a.ravel(), b.ravel()
    if a.size != b.size:
        raise ValueError(f"spearman: {a.size} values against {b.size}")
    if a.size < 2:
        return float("nan")
    ra, rb = rankdata(a) - (a.size + 1) / 2.0, rankdata(b) - (b.size + 1) / 2.0
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def interval_coverage(samples: Any, reference: Any, mask: Any = None, level: float = 0.9) -> float:
    """Fraction of pixels (in ``mask``) whose ``reference`` lies in the central ``level`` interval of the
    samples: between the ``(1-level)/2`` and ``(1+level)/2`` quantiles over the sample axis (``samples``
    ``[N, ...]``, linear interpolation as ``numpy.quantile``).

    With ``N`` samples the interval between the extreme samples only covers ``(N-1)/(N+1)`` of new draws, so a
    90% interval needs ``N >= 19``; use :func:`gaussian_coverage` for fewer samples."""
    s, ref = _numpy(samples).astype(np.float64), _numpy(reference).astype(np.float64)
    if s.shape[1:] != ref.shape:
        raise ValueError(f"interval_coverage: samples {s.shape} do not match the reference {ref.shape}")
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2], axis=0)
    inside = (ref >= lo) & (ref <= hi)
    if mask is not None:
        inside = inside[_numpy(mask).astype(bool)]
    return float(inside.mean()) if inside.size else float("nan")


def gaussian_coverage(mean: Any, std: Any, reference: Any, n_samples: int | None, mask: Any = None,
                      level: float = 0.9) -> float:
    """Fraction of pixels (in ``mask``) whose ``reference`` lies in the Gaussian prediction interval
    ``mean +- t std sqrt(1 + 1/N)`` (``t``: the Student-t quantile with ``N - 1`` degrees of freedom), the
    ``level`` interval for a new draw when ``std`` is estimated from ``N`` samples; ``n_samples=None``: ``std``
    is taken as exact (the normal quantile, ``mean +- 1.645 std`` at 90 %)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    m, s, ref = (_numpy(v).astype(np.float64) for v in (mean, std, reference))
    if n_samples is None:
        half = float(norm.ppf((1 + level) / 2)) * s
    elif int(n_samples) < 2:
        return float("nan")
    else:
        n = int(n_samples)
        half = float(student_t.ppf((1 + level) / 2, n - 1)) * math.sqrt(1 + 1 / n) * s
    inside = np.abs(ref - m) <= half
    if mask is not None:
        inside = inside[_numpy(mask).astype(bool)]
    return float(inside.mean()) if inside.size else float("nan")


def calibrated_spearman(std: Any, mask: Any = None, draws: int = 3, seed: int = 0) -> float:
    """What :func:`spearman` of ``std`` and the absolute error would be for a perfectly calibrated Gaussian
    posterior with this std map (errors drawn as ``|N(0, std^2)|``; the median of ``draws``): pixel-wise errors
    are noisy, so a nearly uniform std map cannot correlate much with them even when it is right."""
    s = _numpy(std).astype(np.float64)
    rng = np.random.default_rng(seed)
    return float(np.median([spearman(s, np.abs(s * rng.standard_normal(s.shape)), mask) for _ in range(draws)]))


def error_predictability(abs_error: Any, mask: Any = None, window: int = 3) -> float:
    """The :func:`spearman` correlation of ``|error|`` with its own leave-one-out local RMS (the
    ``window x window`` neighbours, the pixel itself left out): what an uncertainty map that knew the error's
    local energy, but not the pixel's own draw, would reach. An upper reference for any locally smooth std map:
    errors made of pixel-independent noise (the noise of a fully sampled reference) give about 0 however good
    the std map is, errors with spatial structure (residual aliasing at edges) give high values."""
    from scipy import ndimage

    if window < 3 or window % 2 == 0:
        raise ValueError(f"error_predictability: window must be odd and at least 3, got {window}")
    e = _numpy(abs_error).astype(np.float64)
    kernel = np.ones((window, window))
    kernel[window // 2, window // 2] = 0.0
    local = np.sqrt(ndimage.convolve(e * e, kernel / kernel.sum(), mode="nearest"))
    return spearman(local, e, mask)


def edge_spearman(estimate: Any, abs_error: Any, mask: Any = None, sigma: float = 1.0) -> float:
    """The :func:`spearman` correlation of ``|error|`` with the gradient magnitude of ``|estimate|`` (Gaussian
    derivatives at scale ``sigma`` pixels): the uncertainty map an edge detector gives for free, a baseline a
    std map should beat, since reconstruction errors gather at edges."""
    from scipy import ndimage

    est = np.abs(_numpy(estimate)).astype(np.float64)
    return spearman(ndimage.gaussian_gradient_magnitude(est, sigma), abs_error, mask)


def spearman_figures(std: Any, abs_error: Any, estimate: Any, mask: Any = None) -> dict[str, float]:
    """The rank-correlation figures of a std map against an error map, over ``mask``: ``spearman`` (std vs
    |error|), ``spearman_if_calibrated`` (:func:`calibrated_spearman`), ``spearman_oracle``
    (:func:`error_predictability`) and ``spearman_edges`` (:func:`edge_spearman` of ``estimate``). One place
    for what the plugin's calibration and the app's calibration plot both report."""
    return {
        "spearman": spearman(std, abs_error, mask),
        "spearman_if_calibrated": calibrated_spearman(std, mask),
        "spearman_oracle": error_predictability(abs_error, mask),
        "spearman_edges": edge_spearman(estimate, abs_error, mask),
    }


def object_mask(reference: Any, threshold: float | None = None) -> np.ndarray:
    """Where the object is, from a (noisy) magnitude reference: the lightly smoothed reference above Otsu's
    threshold (or above ``threshold`` times its 99th percentile), its connected regions of at least a tenth of
    the largest one, holes filled (bool, the reference's shape). Otsu's threshold separates the tissue from the
    noise floor of a root sum of squares even at low SNR, where a fixed fraction of the maximum would take noise
    for object."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    ref = _numpy(reference).astype(np.float64)
    smooth = ndimage.gaussian_filter(ref, 1.5)
    if threshold is None:
        t = threshold_otsu(smooth) if np.ptp(smooth) > 0 else np.inf
    else:
        t = threshold * np.percentile(ref, 99)
    m = ndimage.binary_opening(smooth > t, structure=np.ones((3, 3)))
    labels, n = ndimage.label(m)
    if n > 1:
        sizes = np.asarray(ndimage.sum(m, labels, index=np.arange(1, n + 1)))
        m = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))  # drop specks, keep e.g. the scalp
    return ndimage.binary_fill_holes(m)


def object_outline(mask: Any) -> list[np.ndarray]:
    """The boundary of a bool ``mask`` ``[H, W]`` (e.g. :func:`reference_region`) as closed polylines, each
    ``[n, 2]`` float (row, column) in pixel-centre coordinates: the 0.5 level between the pixels inside and those
    outside, so a pixel is inside the mask exactly when it is inside the outline. For drawing the ``"object"``
    mode's mask on the images."""
    from skimage.measure import find_contours

    m = np.asarray(_numpy(mask), dtype=bool)
    if m.ndim != 2:
        raise ScoreError(f"an object outline needs a 2D mask, got shape {m.shape}")
    # padded by one pixel: a mask touching the border gets closed polylines too
    return [c - 1.0 for c in find_contours(np.pad(m, 1).astype(np.float32), 0.5)]


def calibration_curve(std: Any, abs_error: Any, mask: Any = None, n_bins: int = 10) -> dict[str, list[float]]:
    """Mean ``|error|`` against mean ``std`` in ``n_bins`` quantile bins of ``std`` (what a calibration plot
    draws: a well calibrated, unbiased Gaussian posterior gives ``|error| ~ 0.8 std``)."""
    s, e = _numpy(std).astype(np.float64), _numpy(abs_error).astype(np.float64)
    if mask is not None:
        m = _numpy(mask).astype(bool)
        s, e = s[m], e[m]
    s, e = s.ravel(), e.ravel()
    if s.size == 0:
        return {"std": [], "abs_error": [], "count": []}
    edges = np.quantile(s, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)
    out: dict[str, list[float]] = {"std": [], "abs_error": [], "count": []}
    for i in range(n_bins):
        sel = idx == i
        if sel.any():
            out["std"].append(float(s[sel].mean()))
            out["abs_error"].append(float(e[sel].mean()))
            out["count"].append(int(sel.sum()))
    return out


def std_map_calibration(image: Any, std: Any, reference: np.ndarray, scale: float = 1.0,
                        n_samples: int | None = None, reference_noise: float | None = None) -> dict[str, Any]:
    """Does a std map predict the error of its image? What the app's calibration plot draws.

    ``image`` (complex or magnitude) and ``std`` are cropped/padded to the reference and multiplied by ``scale``
    (the fit of a scale-free reference); pixels: :func:`object_mask` of the reference. Returns (image units)
    ``std``, ``abs_error``, ``count`` (:func:`calibration_curve`), the :func:`spearman_figures`, ``coverage``:
    the fraction of pixels whose reference lies in the ``level`` (90 %) interval, Student-t of ``n_samples``
    samples when known (>= 2), else Gaussian (``interval`` says which); ``coverage_predictive``: that interval
    widened by ``reference_noise`` (relative to the reference's 99th percentile, as plugins report it), else
    None; ``level``, ``n_samples``, ``n_pixels``, ``guide_slope`` (:data:`CALIBRATED_ERROR_PER_STD`)."""
    magnitude = fit_shape(np.abs(np.asarray(image)).astype(np.float64), reference.shape)
    estimate = magnitude * scale
    std = fit_shape(np.asarray(std, dtype=np.float64), reference.shape) * scale
    ref = reference.astype(np.float64)
    abs_error = np.abs(estimate - ref)
    mask = object_mask(ref)
    curve = calibration_curve(std, abs_error, mask)
    level = CALIBRATION_LEVEL
    if n_samples is not None and n_samples >= 2:
        interval = f"Student-t interval of {n_samples} samples"
    else:  # the number of samples behind the std map is unknown: the Gaussian interval of an exact std
        n_samples, interval = None, "Gaussian interval"
    coverage = gaussian_coverage(estimate, std, ref, n_samples, mask, level)
    predictive = None
    if reference_noise is not None and n_samples is not None:
        noise = float(reference_noise) * float(np.percentile(ref, 99))
        predictive = gaussian_coverage(estimate, np.sqrt(std**2 + noise**2), ref, n_samples, mask, level)
    return {
        "std": curve["std"], "abs_error": curve["abs_error"], "count": curve["count"],
        **spearman_figures(std, abs_error, estimate, mask),
        "coverage": coverage, "interval": interval,
        "coverage_predictive": predictive, "level": level, "n_samples": n_samples,
        "n_pixels": int(mask.sum()), "guide_slope": CALIBRATED_ERROR_PER_STD,
    }
