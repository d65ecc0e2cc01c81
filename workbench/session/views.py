"""What the app shows of one slice, computed from the scan it is given (no Qt, no session).

:class:`SliceViews` caches the per-slice data: k-space, the readout-transformed "hybrid" data, coil images, the
fully sampled image, the reference with its data range, and scores images against it
(:mod:`workbench.scoring`). :class:`DerivedImages` caches what one sampling adds: the zero-filled image, its
metrics and the point-spread function, optionally computed on a background thread for non-Cartesian samplings.

The fast path for the acceleration slider: for a Cartesian column mask the zero-filled RSS image is
``crop(rss(ifft2c(mask * k)))``. The inverse FFT along the readout (H) does not mix columns, so it is done once
per slice and cropped to the reconstruction rows (``hybrid = crop_H(ifft_H(k))``); a mask change then costs only
the inverse FFT along the phase encode of the cropped hybrid data plus the metrics.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from workbench import scoring
from workbench.arrays import fit_shape, ifft2c_np, rss_np
from workbench.errors import WorkbenchError
from workbench.session.sampling_state import ACQUIRED, SamplingState, acquired_mask, to_numpy

_WORKERS = max(1, min(4, os.cpu_count() or 1))


class SliceViews:
    """The images of slice ``slice_index`` of ``scan`` (cached; a new slice gets a new instance)."""

    def __init__(self, scan: Any, slice_index: int):
        self.scan = scan
        self.slice_index = slice_index
        self.grid_shape: tuple[int, int] = tuple(scan.grid_shape)  # type: ignore[assignment]
        self.recon_shape: tuple[int, int] = tuple(scan.recon_shape)  # type: ignore[assignment]
        self._cache: dict[Any, Any] = {}
        # result id -> (reference, std, image it was computed from, calibration): recomputed when any changed
        self._calibration: dict[Any, tuple[Any, Any, Any, dict[str, Any]]] = {}

    def _cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def kspace(self) -> torch.Tensor:
        """k-space of the slice: complex64 ``[C, H, W]`` or ``[C, K]``."""
        return self._cached("kspace", lambda: self.scan.kspace(self.slice_index))

    def _hybrid(self) -> np.ndarray:
        """``ifftshift_W(crop_H(ifft1c_H(k)))``: k-space inverse-transformed along the readout, cropped to the
        reconstruction rows and stored ifftshifted along W, ``[C, h, W]`` complex64. A column mask then costs
        one plain inverse FFT along W (the centring shifts commute with the coil RSS and move to the small
        real image)."""
        if "hybrid" not in self._cache:
            import scipy.fft as sfft

            k = self.kspace().numpy()
            x = sfft.ifft(np.fft.ifftshift(k, axes=-2), axis=-2, norm="ortho", workers=_WORKERS)
            x = fit_shape(np.fft.fftshift(x, axes=-2), (self.recon_shape[0], k.shape[-1]))
            hy = np.ascontiguousarray(np.fft.ifftshift(x, axes=-1), dtype=np.complex64)
            self._cache["hybrid"], self._cache["hybrid_buffer"] = hy, np.empty_like(hy)
        return self._cache["hybrid"]

    def _kspace_shifted(self) -> np.ndarray:
        """k-space ifftshifted on both axes (for 2D masks: one plain 2D inverse FFT per mask)."""
        return self._cached("kspace_shifted", lambda: np.ascontiguousarray(
            np.fft.ifftshift(self.kspace().numpy(), axes=(-2, -1))))

    def _coil_images(self) -> np.ndarray:
        """``ifft2c`` of the slice's k-space, ``[C, H, W]`` complex64."""
        return self._cached("coil_images", lambda: ifft2c_np(self.kspace().numpy(), workers=_WORKERS).astype(
            np.complex64, copy=False))

    def _coil_or_rss(self, x: np.ndarray, coil: int | None) -> np.ndarray:
        return np.abs(x[coil]) if coil is not None else rss_np(x)

    def kspace_log_magnitude(self, coil: int | None) -> np.ndarray | None:
        """``log(1 + |k|)`` of ``coil`` (None: root-sum-of-squares over coils), float32 ``[H, W]``; None for
        non-Cartesian scans."""
        if not self.scan.is_cartesian:
            return None

        def compute() -> np.ndarray:
            mag = self._coil_or_rss(self.kspace().numpy(), coil)
            return np.log1p(mag * (1e3 / (float(mag.max()) or 1.0))).astype(np.float32)

        return self._cached(("klog", coil), compute)

    def full_image(self, coil: int | None) -> np.ndarray | None:
        """Magnitude of the fully sampled data of ``coil`` (None: RSS), ``recon_shape``; None when the scan is
        not Cartesian."""
        if not self.scan.is_cartesian:
            return None
        return self._cached(("full", coil), lambda: fit_shape(
            self._coil_or_rss(self._coil_images(), coil), self.recon_shape).astype(np.float32))

    def reference(self) -> np.ndarray | None:
        """The reference magnitude image (``recon_shape`` float32): the one stored in the file, else the RSS of
        the fully sampled data; None when neither exists (then no metrics)."""
        def compute() -> np.ndarray | None:
            scan = self.scan
            ref = scan.reference(self.slice_index)
            if ref is None and scan.is_cartesian and scan.fully_sampled:
                ref = rss_np(self._coil_images())
            return None if ref is None else fit_shape(np.asarray(ref, dtype=np.float32), self.recon_shape)

        return self._cached("reference", compute)

    def data_range(self) -> float | None:
        """PSNR/SSIM data range of the reference (:func:`workbench.scoring.volume_data_range`)."""
        ref = self.reference()
        return None if ref is None else scoring.volume_data_range(self.scan, ref)[0]

    def reference_scale_free(self) -> bool:
        """True when the reference is valid only up to a global scale: a parallel-imaging reconstruction stored
        beside the k-space (``reference_kind == "sense"``), or a stored reference whose scale is unrelated to
        the data's (the zero-filled image of the acquired samples differs from it by more than 100x)."""
        def compute() -> bool:
            scan, ref = self.scan, self.reference()
            if ref is not None and scan.reference_kind == "sense":
                return True
            if ref is not None and scan.is_cartesian and not (scan.fully_sampled and scan.load_reference is None):
                acq = acquired_mask(scan)
                zf = self.zero_filled_cartesian(acq if acq is not None else np.ones(self.grid_shape, dtype=bool))
                a = scoring.least_squares_scale(ref, zf)
                return bool(a > 0 and not 1e-2 <= a <= 1e2)
            return False

        return self._cached("scale_free", compute)

    def fit_scale(self, image: np.ndarray | None) -> float:
        """The least-squares factor from ``|image|`` to a scale-free reference, else 1."""
        if image is None or not self.reference_scale_free():
            return 1.0
        return scoring.least_squares_scale(self.reference(), image)

    def evaluate(self, image: np.ndarray | None, mode: str = scoring.DEFAULT_SCORE_MODE, problem: Any = None,
                 image_is: str | None = None) -> dict[str, float]:
        """PSNR / SSIM / NMSE of ``image`` against the reference in scoring ``mode`` ({} without one;
        ``"as-acquired"`` needs the image's ``problem``): :func:`workbench.scoring.score`."""
        return scoring.score(self.reference(), image, mode, data_range=self.data_range(), problem=problem,
                             image_is=image_is, scale_free=self.reference_scale_free())

    def region(self) -> np.ndarray | None:
        """The object mask of the reference (:func:`workbench.scoring.reference_region`), None without a
        reference or when none can be derived."""
        ref = self.reference()
        if ref is None:
            return None
        try:
            return scoring.reference_region(ref)
        except scoring.ScoreError:
            return None

    def region_outline(self) -> list[np.ndarray]:
        """The object mask's boundary (:func:`workbench.scoring.object_outline`: closed ``[n, 2]`` (row, column)
        polylines on ``recon_shape``), for drawing it on the images; [] without a mask."""
        def compute() -> list[np.ndarray]:
            region = self.region()
            return [] if region is None else scoring.object_outline(region)

        return self._cached("region_outline", compute)

    def error_map(self, image: np.ndarray | None, relative: bool = False, mode: str = scoring.DEFAULT_SCORE_MODE,
                  acquired: np.ndarray | None = None) -> np.ndarray | None:
        """``| |image| - reference |`` (after the scale fit); ``relative``: divided by the data range. The error
        follows the scoring ``mode``: ``"object"``: zero outside the object mask; ``"as-acquired"``: of
        ``acquired`` (the image as a fully sampled scan of it) when given."""
        ref = self.reference()
        if ref is None or image is None:
            return None
        if mode == "as-acquired" and acquired is not None:
            image = acquired
        rec = fit_shape(np.abs(np.asarray(image)).astype(np.float32), ref.shape)
        rec = rec * np.float32(self.fit_scale(rec))
        err = np.asarray(scoring.error_map(ref, rec, relative=relative, data_range=self.data_range()),
                         dtype=np.float32)
        region = self.region() if mode == "object" else None
        return err * region if region is not None else err

    def calibration(self, entry: Any) -> dict[str, Any] | None:
        """:func:`workbench.scoring.std_map_calibration` of a finished result of this slice with a std map
        (after the scale fit of a scale-free reference); None otherwise. Cached until its arrays change."""
        if entry is None or entry.state != "done" or entry.std is None or entry.image is None \
                or entry.slice_index != self.slice_index:
            return None
        ref = self.reference()
        if ref is None:
            return None
        hit = self._calibration.get(entry.id)
        if hit is not None and hit[0] is ref and hit[1] is entry.std and hit[2] is entry.image:
            return hit[3]
        samples = getattr(entry.result, "samples", None)
        reported = (getattr(entry.result, "extras", None) or {}).get("calibration") or {}
        value = scoring.std_map_calibration(
            entry.image, entry.std, ref, self.fit_scale(entry.image),
            n_samples=int(samples.shape[0]) if samples is not None and len(samples.shape) == 3 else None,
            reference_noise=reported.get("reference_noise"))
        self._calibration[entry.id] = (ref, entry.std, entry.image, value)
        return value

    def forget(self, entry_id: Any) -> None:
        self._calibration.pop(entry_id, None)

    def zero_filled_cartesian(self, mask: np.ndarray) -> np.ndarray:
        """``crop(rss(ifft2c(mask * k)))`` (numpy/pocketfft: on a busy CPU it is several times faster here than
        torch's threaded FFT for this size)."""
        import scipy.fft as sfft

        cols = mask.any(axis=0)
        if np.array_equal(mask, np.broadcast_to(cols[None, :], mask.shape)):
            # column mask: fast path on the cached hybrid data (readout transform done, rows cropped)
            hy = self._hybrid()
            buf = self._cache["hybrid_buffer"]
            np.multiply(hy, np.fft.ifftshift(cols), out=buf)
            y = sfft.ifft(buf, axis=-1, norm="ortho", workers=_WORKERS, overwrite_x=True)
            img = np.fft.fftshift(rss_np(y), axes=-1)
        else:
            y = sfft.ifft2(self._kspace_shifted() * np.fft.ifftshift(mask), axes=(-2, -1), norm="ortho",
                           workers=_WORKERS, overwrite_x=True)
            img = np.fft.fftshift(rss_np(y), axes=(-2, -1))
        return fit_shape(img, self.recon_shape).astype(np.float32, copy=False)

    def dcf_of(self, state: SamplingState, wait: bool = True) -> np.ndarray | None:
        """Density compensation of a non-Cartesian sampling: its own, or for acquired data the chosen method's,
        the file's or Pipe-Menon (:func:`workbench.problem.acquired_dcf`); with ``wait=False`` None while not
        computed."""
        if state.dcf is not None:
            return state.dcf
        if state.kind != ACQUIRED:
            return None
        from workbench.problem import acquired_dcf

        dcf = acquired_dcf(self.scan, state.params.get("dcf_method"), compute=wait)
        return None if dcf is None else dcf.numpy()

    def trajectory_view(self, state: SamplingState, max_points: int = 20000,
                        wait: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(points ``[2, n]`` in radians, DCF weights ``[n]``) of a non-Cartesian sampling, subsampled to at most
        ``max_points`` for display (weights 1 while the acquired data's are computed, ``wait=False``)."""
        w = self.dcf_of(state, wait)
        if w is None:
            w = np.ones(state.trajectory.shape[-1], np.float32)
        step = max(1, state.trajectory.shape[-1] // max_points)
        return state.trajectory[:, ::step], w[::step]

    def psf_noncartesian(self, state: SamplingState) -> np.ndarray:
        """``|sum_k w_k exp(i k.x)|`` on the grid with the DCF weights ``w``."""
        import torchkbnufft as tkbn

        traj = torch.from_numpy(state.trajectory)
        dcf = self.dcf_of(state)
        w = torch.from_numpy(dcf) if dcf is not None else torch.ones(traj.shape[-1])
        img = tkbn.KbNufftAdjoint(im_size=self.grid_shape)(w.to(torch.complex64)[None, None], traj)
        return img[0, 0].abs().numpy()


def psf_cartesian(mask: np.ndarray) -> np.ndarray:
    """``|ifft2c(mask)|`` on the grid (the centring shifts only move the magnitude around)."""
    import scipy.fft as sfft

    return np.abs(np.fft.fftshift(sfft.ifft2(np.fft.ifftshift(mask).astype(np.complex64), workers=_WORKERS)))


def _normalised(p: np.ndarray) -> np.ndarray:
    return (p / max(float(p.max()), 1e-12)).astype(np.float32)


class DerivedImages:
    """The zero-filled image (magnitude, ``recon_shape`` float32), its metrics and the PSF (``|PSF| / max`` on
    the grid) of one slice under one sampling state. ``problem_of(sampling)`` builds the slice's Problem: the
    non-Cartesian zero-filled image is the RSS of its density-compensated gridded coil images (no coil maps).

    With ``background`` (``background(fn)`` runs ``fn`` on a helper thread), the non-Cartesian images are
    computed there: meanwhile (and after a failure, see ``values["error"]``) they are None, and once they arrive
    ``on_ready(self)`` is called through ``dispatch`` (on the observers' thread)."""

    def __init__(self, views: SliceViews, state: SamplingState, problem_of: Callable[[Any], Any],
                 background: Callable[[Callable[[], None]], None] | None = None,
                 dispatch: Callable[[Callable[[], None]], None] | None = None,
                 on_ready: Callable[["DerivedImages"], None] | None = None):
        self.views, self.state = views, state
        self._problem_of = problem_of
        self._background, self._dispatch, self._on_ready = background, dispatch, on_ready
        self.values: dict[str, Any] = {}
        self.pending = False  # the non-Cartesian images are being computed in the background

    def get(self, name: str) -> Any:
        """``"zero_filled"`` or ``"psf"``."""
        if name in self.values:
            return self.values[name]
        st = self.state
        if st.is_cartesian:
            v = self.views.zero_filled_cartesian(st.mask) if name == "zero_filled" else _normalised(
                psf_cartesian(st.mask))
        elif self._background is not None:
            if "error" not in self.values and not self.pending:
                self.pending = True
                self._background(self._compute_in_background)
            return None
        else:
            v = self._zero_filled_noncartesian() if name == "zero_filled" else _normalised(
                self.views.psf_noncartesian(st))
        self.values[name] = v
        return v

    def _compute_in_background(self) -> None:
        self._deliver(self._noncartesian(), pending=False)

    def _deliver(self, out: dict[str, Any], pending: bool | None = None) -> None:
        """Hand ``out`` (values computed on a helper thread) to the observers' thread, then ``on_ready``."""
        def deliver() -> None:
            if pending is not None:
                self.pending = pending
            self.values.update(out)
            self._on_ready(self)

        self._dispatch(deliver)

    def _zero_filled_noncartesian(self) -> np.ndarray:
        problem = self._problem_of(self.state.sampling)
        img = problem.crop(problem.zero_filled("rss"))
        return fit_shape(np.abs(to_numpy(img)).astype(np.float32), self.views.recon_shape)

    def _noncartesian(self) -> dict[str, Any]:
        try:
            return {"zero_filled": self._zero_filled_noncartesian(),
                    "psf": _normalised(self.views.psf_noncartesian(self.state))}
        except Exception as exc:  # shown in the views; the app keeps working
            why = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            return {"error": f"the zero-filled image could not be computed: {why}"}

    def metrics(self, mode: str = scoring.DEFAULT_SCORE_MODE) -> dict[str, float]:
        """PSNR / SSIM / NMSE of the zero-filled image in scoring ``mode`` ({} while it is computed, without a
        reference, or when the mode cannot score it: :meth:`score_error` says why)."""
        key = ("zero_filled_metrics", mode)
        if key not in self.values:
            zf = self.get("zero_filled")
            if zf is None:
                return {}
            try:
                problem = self.problem() if mode == "as-acquired" else None
                image_is = scoring.zero_filled_image_is(problem) if problem is not None else None
                self.values[key] = self.views.evaluate(zf, mode, problem, image_is)
            except scoring.ScoreError as exc:
                self.values[key], self.values[("score_error", mode)] = {}, str(exc)
        return self.values[key]

    def score_error(self, mode: str) -> str | None:
        """Why the zero-filled image has no metrics in ``mode`` (None: it has, or it is not computed yet)."""
        return self.values.get(("score_error", mode))

    def want_holdout(self) -> None:
        """Ask for :meth:`holdout` (the compare table shows it from now on, for this sampling)."""
        self.values["holdout_wanted"] = True

    def holdout(self) -> dict[str, Any] | None:
        """The hold-out score of the zero-filled image (:func:`workbench.holdout.summary` over the sampling's
        folds, scored as the zero-filled method's run is: on a Cartesian grid no fold image is needed, zero
        filling the kept samples predicts zero at every held-out one; off the grid each fold's density-compensated
        adjoint predicts them, a few NUFFTs: in the background when there is one, ``holdout_message`` "running"
        meanwhile), once asked for (:meth:`want_holdout`) or when the slice has no reference; None otherwise and
        while the zero-filled image is computed. ``holdout_nmse`` None with ``holdout_message`` when it cannot be
        computed."""
        if "holdout" not in self.values:
            zero_filled = self.get("zero_filled")
            if not (self.values.get("holdout_wanted") or self.views.reference() is None) or zero_filled is None:
                return None
            if self.state.is_cartesian or self._background is None:
                self.values["holdout"] = self._holdout(zero_filled)
            else:
                if not self.values.get("holdout_pending"):
                    self.values["holdout_pending"] = True
                    self._background(lambda: self._deliver({"holdout": self._holdout(zero_filled)}))
                return {"holdout_nmse": None, "holdout_message": "running", "holdout_progress": 0.0}
        return self.values["holdout"]

    def _holdout(self, zero_filled: np.ndarray) -> dict[str, Any]:
        from workbench import holdout

        try:
            problem = self.problem()
            holdouts = holdout.folds(problem)
            image_is = scoring.zero_filled_image_is(problem)
            if image_is is not None:
                return holdout.summary(holdouts, [None] * len(holdouts), image_is)
            folds = [h.train.crop(h.train.zero_filled("rss")) for h in holdouts]
            return holdout.summary(holdouts, folds, None, zero_filled)
        except WorkbenchError as exc:
            return {"holdout_nmse": None, "holdout_message": str(exc)}

    def problem(self) -> Any:
        """The slice's Problem under this sampling (built once)."""
        if "problem" not in self.values:
            self.values["problem"] = self._problem_of(self.state.sampling)
        return self.values["problem"]

    def as_acquired(self) -> np.ndarray | None:
        """The zero-filled image as a fully sampled scan of it (:func:`workbench.scoring.as_acquired`)."""
        if "as_acquired" not in self.values:
            zf = self.get("zero_filled")
            if zf is None:
                return None
            try:
                problem = self.problem()
                self.values["as_acquired"] = scoring.as_acquired(problem, zf, scoring.zero_filled_image_is(problem))
            except WorkbenchError:
                self.values["as_acquired"] = None
        return self.values["as_acquired"]
