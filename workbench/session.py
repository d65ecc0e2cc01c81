"""The session: the state the desktop app shows and edits, as plain Python (no Qt).

A :class:`Session` holds the open :class:`~workbench.scan.Scan`, the slice and coil being looked at, the current
:class:`~workbench.sampling.Sampling` (a generated mask / trajectory with its parameters, or a hand-drawn mask
with its undo/redo history), the derived zero-filled image and its metrics against the reference, and the list of
reconstruction results (:class:`ResultEntry`). Views observe it with :meth:`Session.subscribe` and change it only
through its methods, so every computation the app shows happens here and is testable headless.

Events (``session.subscribe(name, fn)``; ``fn`` receives the arguments listed):

- ``"scan"`` ``(scan)``: a new scan was opened (everything changed).
- ``"slice"`` ``(slice_index, coil_index)``: the slice or coil changed.
- ``"sampling"`` ``(sampling_state)``: the mask / trajectory changed (zero-filled image and metrics too).
- ``"results"`` ``(results)``: results were added or removed.
- ``"result"`` ``(entry)``: one result changed (state, progress, image arrived).
- ``"sweep"`` ``(sweep)``: a point of an acceleration sweep arrived.

Job callbacks arrive on worker threads; the session hands them to ``dispatch`` (default: call at once), which a
GUI replaces with a function that queues the call on its own thread, so observers always run on one thread.

The fast path for the acceleration slider: for a Cartesian column mask the zero-filled RSS image is
``crop(rss(ifft2c(mask * k)))``. The inverse FFT along the readout (H) does not mix columns, so it is done once
per slice and cropped to the reconstruction rows (``hybrid = crop_H(ifft_H(k))``); a mask change then costs only
the inverse FFT along the phase encode of the cropped hybrid data plus the metrics.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from workbench.errors import SamplingError, WorkbenchError
from workbench.scan import Scan

EVENTS = ("scan", "slice", "sampling", "results", "result", "sweep")

#: Sampling kind meaning "the data exactly as acquired in the file" (no retrospective undersampling).
ACQUIRED = "acquired"
#: Sampling kind of a hand-drawn mask.
USER = "user"
#: How the live zero-filled image of the current sampling is labelled (results of a "zero-filled" plugin are
#: snapshots; this one follows the mask).
ZERO_FILLED_LABEL = "zero-filled (live)"

#: Mean |error| per unit of std of a calibrated, unbiased Gaussian posterior: E|N(0, s^2)| = sqrt(2/pi) s, the
#: guide line of the calibration plot.
CALIBRATED_ERROR_PER_STD = math.sqrt(2.0 / math.pi)
#: Nominal level of the pixel-wise intervals whose coverage the calibration reports.
CALIBRATION_LEVEL = 0.9

PROJECT_FORMAT = "workbench-session"
PROJECT_VERSION = 1

_JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


# --------------------------------------------------------------------------------------------------------------
# small array helpers
def fit_shape(x: torch.Tensor | np.ndarray, shape: tuple[int, int]):
    """Centre-crop or zero-pad the last two axes to ``shape`` (index N//2 stays the centre)."""
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(x) if is_np else x
    for axis, n in ((-2, shape[0]), (-1, shape[1])):
        m = t.shape[axis]
        if m > n:
            start = m // 2 - n // 2
            t = t.narrow(axis, start, n)
        elif m < n:
            pad_shape = list(t.shape)
            pad_shape[axis] = n
            out = t.new_zeros(pad_shape)
            start = n // 2 - m // 2
            out.narrow(axis, start, m).copy_(t)
            t = out
    return t.numpy() if is_np else t


_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _rss_np(y: np.ndarray) -> np.ndarray:
    """Root sum of squares over axis 0 of a complex array, without a full-size temporary per component."""
    acc = np.zeros(y.shape[1:], dtype=np.float32)
    for c in range(y.shape[0]):
        yc = y[c]
        acc += yc.real * yc.real
        acc += yc.imag * yc.imag
    return np.sqrt(acc)


def _to_numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _jsonable(x: Any) -> Any:
    """Parameters and metrics as plain JSON values (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


# --------------------------------------------------------------------------------------------------------------
@dataclass
class SamplingState:
    """What the sampling panel shows: the recipe (kind + parameters) and the resulting mask / trajectory.

    ``mask`` is bool ``[H, W]`` (numpy) for Cartesian kinds, ``trajectory`` ``[2, K]`` radians and ``dcf``
    ``[K]`` for non-Cartesian ones. ``acceleration`` is the effective R measured on the encoded grid
    (``requested_acceleration`` is the slider's value)."""

    kind: str
    requested_acceleration: float
    seed: int
    center_fraction: float | None
    params: dict[str, Any]
    mask: np.ndarray | None = None
    trajectory: np.ndarray | None = None
    dcf: np.ndarray | None = None
    acceleration: float = float("nan")
    acs_shape: tuple[int, int] | None = None
    sampling: Any = None  # the workbench.sampling.Sampling object (None for "acquired")

    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    def recipe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "acceleration": self.requested_acceleration,
            "seed": self.seed,
            "center_fraction": self.center_fraction,
            "params": _jsonable(self.params),
        }

    def describe(self) -> str:
        if self.kind == ACQUIRED:
            return f"as acquired (R={self.acceleration:.2f})"
        if self.kind == USER:
            return f"hand-drawn mask (R={self.acceleration:.2f})"
        return f"{self.kind} R={self.acceleration:.2f}"


@dataclass
class ResultEntry:
    """One reconstruction run: which method with which parameters on which slice and sampling, its job state,
    and (when done) the image cropped to ``recon_shape`` with its metrics against the reference.

    ``image`` is complex64 ``[h, w]``; ``std`` float32 ``[h, w]`` or None; ``metrics`` has ``psnr``, ``ssim``,
    ``nmse`` when a reference exists. ``state`` is one of queued / running / done / failed / cancelled."""

    id: int
    method: str
    params: dict[str, Any]
    slice_index: int
    sampling: dict[str, Any]
    label: str = ""
    version: str = ""
    device: str = "cpu"
    state: str = "queued"
    progress: float = 0.0
    progress_text: str = ""
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    elapsed: float | None = None  # the method's own run time when reported, else wall time
    image: np.ndarray | None = None
    std: np.ndarray | None = None
    preview: np.ndarray | None = None  # latest streamed iterate (magnitude), while running
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per iteration
    error: str | None = None
    error_details: str | None = None
    sweep_id: int | None = None
    acceleration: float | None = None
    result: Any = None  # the workbench.result.Result object
    job: Any = None  # the workbench.jobs Job while it runs
    cancel_requested: bool = False

    @property
    def finished_ok(self) -> bool:
        return self.state == "done" and self.image is not None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def wall_time(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def params_text(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass
class Sweep:
    """An acceleration sweep: for each method (with parameters) and acceleration, one background job."""

    id: int
    kind: str
    accelerations: list[float]
    methods: list[str]
    entries: list[ResultEntry] = field(default_factory=list)

    def points(self, method_label: str, metric: str = "psnr") -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for e in self.entries:
            if e.label == method_label and e.state == "done" and metric in e.metrics:
                xs.append(float(e.acceleration))
                ys.append(float(e.metrics[metric]))
        order = np.argsort(xs)
        return [xs[i] for i in order], [ys[i] for i in order]


# --------------------------------------------------------------------------------------------------------------
class Session:
    """The app's state and every computation it shows (see the module docstring for events and threading).

    Args:
        device: compute device for jobs: "auto" (a CUDA GPU when there is one, else the CPU), "cpu", "cuda:1".
        dispatch: ``fn(callable)`` that runs ``callable`` on the observers' thread; default calls it at once.
        job_queue: a ``workbench.jobs.JobQueue`` (created on first use when None).
    """

    MAX_UNDO = 200

    def __init__(self, *, device: str = "auto", dispatch: Callable[[Callable[[], None]], None] | None = None,
                 job_queue: Any = None):
        self.device = str(device)
        self.dispatch = dispatch or (lambda fn: fn())
        self._observers: dict[str, list[Callable[..., None]]] = collections.defaultdict(list)
        self._lock = threading.RLock()
        self._job_queue = job_queue
        self._prep = None
        self.scan: Scan | None = None
        self.scan_options: dict[str, Any] = {}
        self.slice_index = 0
        self.coil_index: int | None = None
        self.symmetric = False
        self.results: list[ResultEntry] = []
        self.sweeps: list[Sweep] = []
        self._next_id = 1
        #: compute the slow derived images (non-Cartesian zero-filled image and PSF) on the prepare thread:
        #: while they are computed ``zero_filled()`` / ``psf()`` return None and a ``"sampling"`` event follows
        #: when they arrive. The GUI turns this on so that opening a radial scan never freezes the window.
        self.background_derived = False
        self._derived_token: Any = None
        self._dcf_lock = threading.Lock()
        # (scan, {dcf method: weights}) of the acquired non-Cartesian trajectory, computed once per scan and method
        self._acquired_dcf_cache: tuple[Any, dict[str, np.ndarray]] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._slice_cache: dict[str, Any] = {}
        self._sampling: SamplingState | None = None
        self._sampling_cache: collections.OrderedDict = collections.OrderedDict()
        self._acs_cache: dict[int, tuple[Any, Any]] = {}
        self._derived: dict[str, Any] = {}
        # result id -> (reference, std, image it was computed from, calibration): recomputed when any changed
        self._calibration: dict[Any, tuple[Any, Any, Any, dict[str, Any]]] = {}
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []
        self._stroke_open = False
        self.sampling_version = 0
        self._applicability: tuple[Any, dict[str, list[str]]] | None = None
        self._recipe = {"kind": "equispaced", "acceleration": 4.0, "seed": 0, "center_fraction": None,
                        "params": {}}

    # ----------------------------------------------------------------------------------------------------------
    # observers
    def subscribe(self, event: str, fn: Callable[..., None]) -> Callable[[], None]:
        """Call ``fn(*args)`` on every ``event``; returns a function that unsubscribes."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._observers[event].append(fn)
        return lambda: self._observers[event].remove(fn) if fn in self._observers[event] else None

    def emit(self, event: str, *args: Any) -> None:
        for fn in list(self._observers[event]):
            fn(*args)

    # ----------------------------------------------------------------------------------------------------------
    # scan, slice, coil
    def open(self, path: str | os.PathLike, **options: Any) -> Scan:
        """Open a scan file (raises a typed ``workbench.errors`` error; the session is unchanged then)."""
        from workbench.io import open_scan

        scan = open_scan(os.fspath(path), **options)
        self.scan_options = dict(options)
        self.set_scan(scan)
        return scan

    def open_demo(self) -> Scan:
        """Open the built-in demo scan (generated once into the cache)."""
        from workbench.simulate import demo_scan_path

        return self.open(demo_scan_path())

    def set_scan(self, scan: Scan, *, slice_index: int | None = None) -> None:
        """Show ``scan``: middle slice, coil-combined, default sampling for it (equispaced R=4 for fully
        sampled Cartesian data, the acquired mask for undersampled data, golden-angle radial for a
        fully sampled scan being explored non-Cartesian is chosen by the user)."""
        # results belong to the scan they were computed on: a new scan starts an empty comparison (running jobs
        # of the previous scan are cancelled; the jobs panel keeps them until they stop)
        old = self.results + [e for sw in self.sweeps for e in sw.entries]
        for e in old:
            self.cancel(e)
        self.results = []
        self.sweeps = []
        self.scan = scan
        self._reset_state()
        self._acquired_dcf_cache = None
        self._derived_token = None
        self.slice_index = scan.n_slices // 2 if slice_index is None else int(slice_index)
        self.coil_index = None
        if not scan.is_cartesian or not scan.fully_sampled:
            self._recipe = {"kind": ACQUIRED, "acceleration": 1.0, "seed": 0, "center_fraction": None, "params": {}}
        self.emit("scan", scan)
        if old:
            self.emit("results", self.results)
        self.emit("slice", self.slice_index, self.coil_index)
        self.emit("sampling", self.sampling_state)

    def _require_scan(self) -> Scan:
        if self.scan is None:
            raise WorkbenchError("no scan is open")
        return self.scan

    def set_slice(self, index: int) -> None:
        scan = self._require_scan()
        index = int(min(max(index, 0), scan.n_slices - 1))
        if index == self.slice_index:
            return
        self.slice_index = index
        self._slice_cache = {}
        self._derived = {}
        self.emit("slice", self.slice_index, self.coil_index)
        self.emit("sampling", self.sampling_state)

    def set_coil(self, coil: int | None) -> None:
        """``None`` = coil-combined (RSS) views; an integer shows that coil's k-space and image."""
        scan = self._require_scan()
        if coil is not None:
            coil = int(min(max(coil, 0), scan.n_coils - 1))
        if coil == self.coil_index:
            return
        self.coil_index = coil
        self.emit("slice", self.slice_index, self.coil_index)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return tuple(self._require_scan().grid_shape)  # type: ignore[return-value]

    @property
    def recon_shape(self) -> tuple[int, int]:
        return tuple(self._require_scan().recon_shape)  # type: ignore[return-value]

    # --- per-slice data (cached) --------------------------------------------------------------------------------
    def kspace(self) -> torch.Tensor:
        """k-space of the current slice: complex64 ``[C, H, W]`` or ``[C, K]`` (cached on the slice)."""
        k = self._slice_cache.get("kspace")
        if k is None:
            k = self._require_scan().kspace(self.slice_index)
            self._slice_cache["kspace"] = k
        return k

    def _hybrid(self) -> np.ndarray:
        """``ifftshift_W(crop_H(ifft1c_H(k)))``: k-space inverse-transformed along the readout, cropped to the
        reconstruction rows and stored ifftshifted along W, ``[C, h, W]`` complex64. A column mask then costs
        one plain inverse FFT along W (the centring shifts commute with the coil RSS and move to the small
        real image)."""
        hy = self._slice_cache.get("hybrid")
        if hy is None:
            import scipy.fft as sfft

            k = self.kspace().numpy()
            h = self.recon_shape[0]
            x = sfft.ifft(np.fft.ifftshift(k, axes=-2), axis=-2, norm="ortho", workers=_WORKERS)
            x = fit_shape(np.fft.fftshift(x, axes=-2), (h, k.shape[-1]))
            hy = np.ascontiguousarray(np.fft.ifftshift(x, axes=-1), dtype=np.complex64)
            self._slice_cache["hybrid"] = hy
            self._slice_cache["hybrid_buffer"] = np.empty_like(hy)
        return hy

    def _kspace_shifted(self) -> np.ndarray:
        """k-space ifftshifted on both axes (for 2D masks: one plain 2D inverse FFT per mask)."""
        ks = self._slice_cache.get("kspace_shifted")
        if ks is None:
            ks = np.ascontiguousarray(np.fft.ifftshift(self.kspace().numpy(), axes=(-2, -1)))
            self._slice_cache["kspace_shifted"] = ks
        return ks

    def kspace_log_magnitude(self) -> np.ndarray | None:
        """``log(1 + |k|)`` of the current coil (or root-sum-of-squares over coils), float32 ``[H, W]``;
        None for non-Cartesian scans (see :meth:`trajectory_view`)."""
        scan = self._require_scan()
        if not scan.is_cartesian:
            return None
        key = ("klog", self.coil_index)
        v = self._slice_cache.get(key)
        if v is None:
            k = self.kspace().numpy()
            mag = np.abs(k[self.coil_index]) if self.coil_index is not None else _rss_np(k)
            scale = float(mag.max()) or 1.0
            v = np.log1p(mag * (1e3 / scale)).astype(np.float32)
            self._slice_cache[key] = v
        return v

    def _coil_images(self) -> np.ndarray:
        """``ifft2c`` of the slice's k-space, ``[C, H, W]`` complex64 (cached on the slice)."""
        v = self._slice_cache.get("coil_images")
        if v is None:
            import scipy.fft as sfft

            k = self.kspace().numpy()
            v = np.fft.fftshift(sfft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho", workers=_WORKERS),
                                axes=(-2, -1)).astype(np.complex64, copy=False)
            self._slice_cache["coil_images"] = v
        return v

    def full_image(self) -> np.ndarray | None:
        """Magnitude of the fully sampled data of the current coil (or RSS), ``recon_shape``; None when the
        scan is not fully sampled Cartesian."""
        scan = self._require_scan()
        if not scan.is_cartesian:
            return None
        key = ("full", self.coil_index)
        v = self._slice_cache.get(key)
        if v is None:
            coils = self._coil_images()
            img = np.abs(coils[self.coil_index]) if self.coil_index is not None else _rss_np(coils)
            v = fit_shape(img, self.recon_shape).astype(np.float32)
            self._slice_cache[key] = v
        return v

    def reference(self) -> np.ndarray | None:
        """The reference magnitude image of the slice (``recon_shape`` float32): the one stored in the file,
        else the RSS of the fully sampled data; None when neither exists (then no metrics)."""
        if "reference" in self._slice_cache:
            return self._slice_cache["reference"]
        scan = self._require_scan()
        ref = scan.reference(self.slice_index)
        if ref is None and scan.is_cartesian and scan.fully_sampled:
            ref = fit_shape(_rss_np(self._coil_images()), self.recon_shape)
        if ref is not None:
            ref = fit_shape(np.asarray(ref, dtype=np.float32), self.recon_shape)
        self._slice_cache["reference"] = ref
        return ref

    def data_range(self) -> float | None:
        """PSNR/SSIM data range: the volume maximum stored in the file (fastMRI ``max``), else the slice's."""
        v = _volume_max(self._require_scan())
        ref = self.reference()
        if ref is None:
            return None
        if v is None or not math.isfinite(v) or v < float(ref.max()) * 0.999:
            v = float(ref.max())
        return v

    def reference_scale_free(self) -> bool:
        """True when the reference is valid only up to a global scale, so that every image is scaled to it by
        least squares (:meth:`fit_scale`) before metrics, error maps and side-by-side display: a parallel-imaging
        reconstruction stored beside the k-space (BART ``pics``, ``reference_kind == "sense"``), or a stored
        reference whose scale is unrelated to the data's (the zero-filled image of the acquired samples differs
        from it by more than 100x, e.g. raw scanner units against a normalised image)."""
        v = self._slice_cache.get("scale_free")
        if v is None:
            scan = self._require_scan()
            ref = self.reference()
            v = False
            if ref is not None and scan.reference_kind == "sense":
                v = True
            elif ref is not None and scan.is_cartesian and not (scan.fully_sampled and scan.load_reference is None):
                acq = self._acquired()
                zf = self._zero_filled_cartesian(acq if acq is not None else np.ones(self.grid_shape, dtype=bool))
                a = _ls_scale(ref, zf)
                v = bool(a > 0 and not 1e-2 <= a <= 1e2)
            self._slice_cache["scale_free"] = v
        return v

    def fit_scale(self, image: np.ndarray | None) -> float:
        """The factor that scales ``|image|`` to the reference (least squares) when the reference is scale-free
        (:meth:`reference_scale_free`), else 1."""
        if image is None or self.scan is None or not self.reference_scale_free():
            return 1.0
        return _ls_scale(self.reference(), image)

    # ----------------------------------------------------------------------------------------------------------
    # sampling
    @property
    def sampling_state(self) -> SamplingState | None:
        if self.scan is None:
            return None
        if self._sampling is None:
            self._sampling = self._build_sampling(self._recipe)
        return self._sampling

    @property
    def sampling(self):
        """The current ``workbench.sampling.Sampling`` (None when the data is used as acquired)."""
        st = self.sampling_state
        return None if st is None else st.sampling

    def mask(self) -> np.ndarray | None:
        """Effective Cartesian mask ``[H, W]`` bool: the sampling mask AND what the file holds."""
        st = self.sampling_state
        return None if st is None else st.mask

    def set_sampling(self, kind: str | None = None, *, acceleration: float | None = None, seed: int | None = None,
                     center_fraction: float | None | str = "keep", **params: Any) -> SamplingState:
        """Change the sampling recipe (any subset of fields); ``params`` replace the family's extra parameters
        when ``kind`` changes and update them otherwise. Raises ``SamplingError`` for invalid parameters (the
        previous sampling stays)."""
        self._require_scan()
        recipe = copy.deepcopy(self._recipe)
        if kind is not None and kind != recipe["kind"]:
            recipe["kind"] = kind
            recipe["params"] = {}
        if kind == USER and self._sampling is not None:
            return self.begin_user_mask()
        if acceleration is not None:
            recipe["acceleration"] = float(acceleration)
        if seed is not None:
            recipe["seed"] = int(seed)
        if center_fraction != "keep":
            recipe["center_fraction"] = None if center_fraction is None else float(center_fraction)
        recipe["params"].update(params)
        state = self._build_sampling(recipe)
        self._recipe = recipe
        self._set_state(state, keep_history=False)
        return state

    def set_acceleration(self, acceleration: float) -> SamplingState:
        """The slider: regenerate the current family's mask / trajectory at ``acceleration``."""
        if self._recipe["kind"] in (USER, ACQUIRED):
            raise SamplingError(f"the {self._recipe['kind']} sampling has no acceleration setting; pick a family")
        return self.set_sampling(acceleration=acceleration)

    @property
    def acquired_dcf_method(self) -> str | None:
        """The density compensation chosen for a non-Cartesian scan used as acquired (one of
        ``workbench.sampling.dcf.DCF_METHODS``), or None: the file's own weights when it has them, else
        Pipe-Menon. Stored in the acquired recipe's ``params["dcf_method"]`` (so results and saved projects
        record it)."""
        if self._recipe["kind"] != ACQUIRED:
            return None
        return self._recipe["params"].get("dcf_method")

    @property
    def acquired_dcf_label(self) -> str | None:
        """What the acquired non-Cartesian data is density-compensated with: ``"file"`` (the file's weights) or
        a method name; None for Cartesian data or another sampling."""
        scan = self.scan
        if scan is None or scan.is_cartesian or self._recipe["kind"] != ACQUIRED:
            return None
        method = self.acquired_dcf_method
        return method or ("file" if scan.dcf is not None else "pipe-menon")

    def set_acquired_dcf_method(self, method: str | None) -> SamplingState:
        """Density-compensate the acquired non-Cartesian trajectory with ``method`` (``"pipe-menon"``,
        ``"voronoi"``, ``"ramp"``; :mod:`workbench.sampling.dcf`) instead of the default (None or ``"file"``:
        the file's own weights when it has them, else Pipe-Menon). The zero-filled image, PSF and later problems
        and results use it. Raises ``SamplingError`` (the setting stays) for a Cartesian scan, an unknown method,
        or the ramp on a trajectory that is not radial."""
        scan = self._require_scan()
        if scan.is_cartesian:
            raise SamplingError("density compensation applies to non-Cartesian data; this scan is Cartesian")
        if self._recipe["kind"] != ACQUIRED:
            raise SamplingError("the density compensation of the acquired trajectory applies when the data is "
                                "used as acquired")
        if isinstance(method, str) and method.strip().lower() == "file":
            method = None
        recipe = copy.deepcopy(self._recipe)
        if method is None:
            recipe["params"].pop("dcf_method", None)
        else:
            from workbench.sampling.dcf import check_dcf_method

            recipe["params"]["dcf_method"] = check_dcf_method(method)
        if recipe == self._recipe and self._sampling is not None:
            return self._sampling
        state = self._build_sampling(recipe)
        self._recipe = recipe
        self._set_state(state, keep_history=False)
        return state

    def _set_state(self, state: SamplingState, *, keep_history: bool) -> None:
        self._sampling = state
        self.sampling_version += 1
        self._derived = {}
        if not keep_history:
            self._undo.clear()
            self._redo.clear()
        self.emit("sampling", state)

    def _acquired(self) -> np.ndarray | None:
        scan = self._require_scan()
        if not scan.is_cartesian or scan.acquired_mask is None:
            return None
        return np.asarray(scan.acquired_mask, dtype=bool)

    def _encoded(self) -> np.ndarray:
        scan = self._require_scan()
        if scan.encoded_mask is not None:
            return np.asarray(scan.encoded_mask, dtype=bool)
        return np.ones(self.grid_shape, dtype=bool)

    def _effective_r(self, mask: np.ndarray) -> float:
        enc = self._encoded()
        n = int((mask & enc).sum())
        return float(enc.sum()) / n if n else float("inf")

    def _build_sampling(self, recipe: dict[str, Any]) -> SamplingState:
        scan = self._require_scan()
        kind = recipe["kind"]
        base = dict(kind=kind, requested_acceleration=float(recipe["acceleration"]), seed=int(recipe["seed"]),
                    center_fraction=recipe["center_fraction"], params=dict(recipe["params"]))
        if kind == ACQUIRED:
            method = base["params"].pop("dcf_method", None)
            if not scan.is_cartesian:
                if method is not None:
                    from workbench.sampling.dcf import check_dcf_method

                    method = base["params"]["dcf_method"] = check_dcf_method(method)
                    if method == "ramp":  # cheap; refuses a trajectory that is not radial before anything changes
                        self._acquired_dcf(method=method)
                return SamplingState(**base, trajectory=np.asarray(scan.trajectory, np.float32),
                                     dcf=None if scan.dcf is None or method is not None
                                     else np.asarray(scan.dcf, np.float32),
                                     acceleration=float(np.prod(self.grid_shape)) / scan.kspace_shape[-1])
            if method is not None:
                raise SamplingError("density compensation applies to non-Cartesian data; this scan is Cartesian")
            acq = self._acquired()
            mask = acq if acq is not None else np.ones(self.grid_shape, dtype=bool)
            return SamplingState(**base, mask=mask, acceleration=self._effective_r(mask))
        if kind == USER:
            mask = np.asarray(recipe["mask"], dtype=bool)
            if mask.shape != self.grid_shape:
                raise SamplingError(f"mask has shape {mask.shape}, this scan's grid is {self.grid_shape}")
            return self._cartesian_state(base, self._make_user_sampling(mask), mask)
        key = self._recipe_key(recipe)
        sampling = self._sampling_cache.get(key)
        if sampling is None:
            from workbench.sampling import make_sampling

            if not scan.is_cartesian:
                raise SamplingError("this scan is non-Cartesian: it can only be used as acquired")
            kwargs = dict(recipe["params"])
            if recipe["center_fraction"] is not None:
                kwargs["center_fraction"] = recipe["center_fraction"]
            try:
                sampling = make_sampling(kind, self.grid_shape, float(recipe["acceleration"]),
                                         seed=int(recipe["seed"]), **kwargs)
            except SamplingError:
                raise
            except (TypeError, ValueError) as exc:
                raise SamplingError(f"{kind}: {exc}") from exc
            self._sampling_cache[key] = sampling
            while len(self._sampling_cache) > 64:
                self._sampling_cache.popitem(last=False)
        else:
            self._sampling_cache.move_to_end(key)
        if getattr(sampling, "trajectory", None) is not None:
            traj = _to_numpy(sampling.trajectory).astype(np.float32)
            dcf = _to_numpy(getattr(sampling, "dcf", None))
            return SamplingState(**base, trajectory=traj, dcf=None if dcf is None else dcf.astype(np.float32),
                                 acceleration=float(np.prod(self.grid_shape)) / traj.shape[-1], sampling=sampling)
        mask = _to_numpy(sampling.mask).astype(bool)
        return self._cartesian_state(base, sampling, mask)

    def _acs_of(self, sampling: Any) -> tuple[int, int] | None:
        # the ACS search scans the whole mask: once per (cached) sampling, not on every slider return
        hit = self._acs_cache.get(id(sampling))
        if hit is not None and hit[0] is sampling:
            return hit[1]
        acs = getattr(sampling, "acs_shape", None)
        if len(self._acs_cache) > 128:
            self._acs_cache.clear()
        self._acs_cache[id(sampling)] = (sampling, acs)
        return acs

    def _recipe_key(self, recipe: dict[str, Any]) -> str:
        return json.dumps({k: _jsonable(v) for k, v in recipe.items() if k != "mask"}, sort_keys=True) + str(
            self.grid_shape)

    def _cartesian_state(self, base: dict[str, Any], sampling: Any, mask: np.ndarray) -> SamplingState:
        acq = self._acquired()
        eff = mask & acq if acq is not None else mask
        acs = self._acs_of(sampling) if sampling is not None else None
        return SamplingState(**base, mask=eff, acceleration=self._effective_r(eff), sampling=sampling,
                             acs_shape=None if acs is None else tuple(int(a) for a in acs))

    def _make_user_sampling(self, mask: np.ndarray):
        """A Sampling for a hand-drawn mask; None while the mask is empty (a valid state while drawing, but
        nothing can be reconstructed from it)."""
        from workbench.sampling import Sampling

        return Sampling.from_mask(mask.copy()) if mask.any() else None

    # --- hand-drawn masks ---------------------------------------------------------------------------------------
    @property
    def editing_mask(self) -> bool:
        return self._recipe["kind"] == USER

    def begin_user_mask(self, mask: np.ndarray | None = None) -> SamplingState:
        """Switch to hand-drawn mode starting from ``mask`` (default: the current Cartesian mask)."""
        self._require_scan()
        if mask is None:
            st = self.sampling_state
            if st is None or st.mask is None:
                raise SamplingError("hand-drawn masks need a Cartesian scan")
            mask = st.mask
        mask = np.array(mask, dtype=bool)
        recipe = copy.deepcopy(self._recipe)
        recipe.update(kind=USER, params={}, mask=mask)
        state = self._build_sampling(recipe)
        self._recipe = recipe
        self._set_state(state, keep_history=False)
        return state

    def _edit(self, new_mask: np.ndarray) -> None:
        if not self.editing_mask:
            self.begin_user_mask()
        old = self._recipe["mask"]
        if not self._stroke_open or not self._undo:
            self._push_undo(old)
        if self._stroke_open:
            self._stroke_open = "dirty"  # type: ignore[assignment]
        self._redo.clear()
        self._apply_user_mask(new_mask)

    def _push_undo(self, mask: np.ndarray) -> None:
        self._undo.append(mask.copy())
        if len(self._undo) > self.MAX_UNDO:
            del self._undo[0]

    def _apply_user_mask(self, mask: np.ndarray) -> None:
        self._recipe["mask"] = mask
        self._set_state(self._build_sampling(self._recipe), keep_history=True)

    def begin_stroke(self) -> None:
        """Start a mouse stroke: every edit until :meth:`end_stroke` is one undo step."""
        if not self.editing_mask:
            self.begin_user_mask()
        self._push_undo(self._recipe["mask"])
        self._redo.clear()
        self._stroke_open = True

    def end_stroke(self) -> None:
        if self._stroke_open is True and self._undo:
            # nothing changed during the stroke: drop its snapshot
            if np.array_equal(self._undo[-1], self._recipe["mask"]):
                self._undo.pop()
        self._stroke_open = False

    def _mirror_cols(self, cols: np.ndarray) -> np.ndarray:
        w = self.grid_shape[1]
        mirrored = 2 * (w // 2) - cols
        return np.concatenate([cols, mirrored[(mirrored >= 0) & (mirrored < w)]])

    def set_lines(self, columns: Iterable[int], value: bool) -> None:
        """Set whole phase-encode lines (columns) on or off (and their mirror images when ``symmetric``)."""
        mask = self._current_user_mask().copy()
        cols = np.asarray(list(columns), dtype=int)
        cols = cols[(cols >= 0) & (cols < mask.shape[1])]
        if self.symmetric:
            cols = self._mirror_cols(cols)
        mask[:, cols] = bool(value)
        self._edit(mask)

    def toggle_line(self, column: int) -> bool:
        """Flip one phase-encode line; returns its new state (a drag then sets the others to that state)."""
        mask = self._current_user_mask()
        new = not bool(mask[:, int(column)].all())
        self.set_lines([column], new)
        return new

    def paint(self, row: float, col: float, radius: float, value: bool) -> None:
        """Paint a disc of ``radius`` pixels at (row, col) on or off (point-mirrored when ``symmetric``)."""
        mask = self._current_user_mask().copy()
        h, w = mask.shape
        rr, cc = np.ogrid[:h, :w]
        disc = (rr - row) ** 2 + (cc - col) ** 2 <= radius**2
        if self.symmetric:
            disc |= (rr - (2 * (h // 2) - row)) ** 2 + (cc - (2 * (w // 2) - col)) ** 2 <= radius**2
        mask[disc] = bool(value)
        self._edit(mask)

    def clear_mask(self) -> None:
        """Empty the hand-drawn mask (one undo step)."""
        self._edit(np.zeros(self.grid_shape, dtype=bool))

    def _current_user_mask(self) -> np.ndarray:
        if not self.editing_mask:
            self.begin_user_mask()
        return self._recipe["mask"]

    @property
    def can_undo(self) -> bool:
        return self.editing_mask and bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return self.editing_mask and bool(self._redo)

    def undo(self) -> bool:
        if not self.can_undo:
            return False
        self._redo.append(self._recipe["mask"].copy())
        self._apply_user_mask(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self.can_redo:
            return False
        self._push_undo(self._recipe["mask"])
        self._apply_user_mask(self._redo.pop())
        return True

    def save_mask(self, path: str | os.PathLike) -> None:
        """Save the current sampling (mask or trajectory with its recipe) as ``.npz`` or ``.json``."""
        st = self.sampling_state
        if st is None:
            raise SamplingError("no sampling to save")
        sampling = st.sampling
        if sampling is None:  # as acquired: save it as an explicit mask
            sampling = self._make_user_sampling(st.mask) if st.mask is not None else None
        if sampling is None:
            raise SamplingError("the acquired non-Cartesian trajectory belongs to the scan; nothing to save")
        sampling.save(os.fspath(path))

    def load_mask(self, path: str | os.PathLike) -> SamplingState:
        """Load a sampling saved by :meth:`save_mask` (or any ``Sampling.save`` file); a Cartesian mask becomes
        an editable hand-drawn mask, a generated family restores its recipe."""
        from workbench.sampling import Sampling

        self._require_scan()
        sampling = Sampling.load(os.fspath(path))
        mask = _to_numpy(getattr(sampling, "mask", None))
        if getattr(sampling, "trajectory", None) is None and mask is not None:
            mask = mask.astype(bool)
            if mask.ndim == 1:  # a 1D column mask
                mask = np.broadcast_to(mask[None, :], self.grid_shape).copy()
            if mask.shape != self.grid_shape:
                raise SamplingError(f"{os.fspath(path)}: mask has shape {mask.shape}, this scan's grid is "
                                    f"{self.grid_shape}")
            return self.begin_user_mask(mask)
        # a trajectory: use it as saved (its recipe is kept so that the slider regenerates the same family)
        if tuple(sampling.shape) != self.grid_shape:
            raise SamplingError(f"{os.fspath(path)}: the trajectory is for a {sampling.shape[0]}x{sampling.shape[1]} "
                                f"grid, this scan's grid is {self.grid_shape[0]}x{self.grid_shape[1]}")
        params = dict(getattr(sampling, "params", {}) or {})
        recipe = {"kind": sampling.kind, "acceleration": float(params.get("acceleration") or sampling.acceleration),
                  "seed": 0, "center_fraction": None, "params": {}}
        # the slider regenerates the family with the loaded trajectory's density compensation
        from workbench.sampling import dcf_methods_for

        method = getattr(sampling, "dcf_method", None)
        if method is not None and method in dcf_methods_for(sampling.kind):
            recipe["params"]["dcf_method"] = method
        key = self._recipe_key(recipe)
        self._sampling_cache[key] = sampling
        state = self._build_sampling(recipe)
        self._recipe = recipe
        self._set_state(state, keep_history=False)
        return state

    # ----------------------------------------------------------------------------------------------------------
    # derived images (cached per slice + sampling)
    def zero_filled(self) -> np.ndarray | None:
        """Magnitude of the zero-filled reconstruction with the current sampling, ``recon_shape`` float32:
        RSS of the masked k-space (Cartesian) or the density-compensated adjoint NUFFT (non-Cartesian)."""
        if self.scan is None:
            return None
        v = self._derived.get("zero_filled")
        if v is None:
            st = self.sampling_state
            if st.is_cartesian:
                v = self._zero_filled_cartesian(st.mask)
            elif self.background_derived:
                self._start_noncartesian_derived()
                return None
            else:
                v = self._zero_filled_noncartesian(st.sampling, self.slice_index)
            self._derived["zero_filled"] = v
        return v

    @property
    def derived_pending(self) -> bool:
        """True while the zero-filled image and PSF of a non-Cartesian sampling are computed in the background
        (``background_derived``)."""
        return self._derived_token is not None and self._derived_token == self._derived_key()

    def derived_error(self) -> str | None:
        """Why the zero-filled image / PSF of the current sampling could not be computed (None: no error)."""
        return self._derived.get("error")

    def _derived_key(self) -> tuple[Any, ...]:
        return (id(self.scan), self.slice_index, self.sampling_version)

    def _start_noncartesian_derived(self) -> None:
        """Compute the non-Cartesian zero-filled image and PSF on the prepare thread; a ``"sampling"`` event
        announces them (nothing happens when the slice or sampling changed in the meantime)."""
        if "error" in self._derived:
            return
        key = self._derived_key()
        if self._derived_token == key:
            return  # already under way
        self._derived_token = key
        st, idx = self.sampling_state, self.slice_index

        def work() -> None:
            try:
                zf = self._zero_filled_noncartesian(st.sampling, idx)
                psf = self._psf_normalised(self._psf_noncartesian(st).numpy())
                out: dict[str, Any] = {"zero_filled": zf, "psf": psf}
            except Exception as exc:  # shown in the views; the app keeps working
                why = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
                out = {"error": f"the zero-filled image could not be computed: {why}"}

            def deliver() -> None:
                if self._derived_token == key:
                    self._derived_token = None
                if self._derived_key() != key:
                    return  # the slice or sampling changed: the new one computes its own
                self._derived.update(out)
                self.emit("sampling", self.sampling_state)

            self.dispatch(deliver)

        self._prep_pool().submit(work)

    def _zero_filled_cartesian(self, mask: np.ndarray) -> np.ndarray:
        """``crop(rss(ifft2c(mask * k)))`` (numpy/pocketfft: on a busy CPU it is several times faster here than
        torch's threaded FFT for this size)."""
        import scipy.fft as sfft

        h, w = self.recon_shape
        cols = mask.any(axis=0)
        if np.array_equal(mask, np.broadcast_to(cols[None, :], mask.shape)):
            # column mask: fast path on the cached hybrid data (readout transform done, rows cropped)
            hy = self._hybrid()
            buf = self._slice_cache["hybrid_buffer"]
            np.multiply(hy, np.fft.ifftshift(cols), out=buf)
            y = sfft.ifft(buf, axis=-1, norm="ortho", workers=_WORKERS, overwrite_x=True)
            img = np.fft.fftshift(_rss_np(y), axes=-1)
        else:
            ks = self._kspace_shifted()
            y = sfft.ifft2(ks * np.fft.ifftshift(mask), axes=(-2, -1), norm="ortho", workers=_WORKERS,
                           overwrite_x=True)
            img = np.fft.fftshift(_rss_np(y), axes=(-2, -1))
        return fit_shape(img, (h, w)).astype(np.float32, copy=False)

    def _zero_filled_noncartesian(self, sampling: Any, slice_index: int) -> np.ndarray:
        # RSS of the density-compensated gridded coil images: no coil maps needed, comparable with an RSS reference
        problem = self.problem(sampling, slice_index)
        img = problem.crop(problem.zero_filled("rss"))
        return fit_shape(np.abs(_to_numpy(img)).astype(np.float32), self.recon_shape)

    def zero_filled_metrics(self) -> dict[str, float]:
        """PSNR / SSIM / NMSE of the zero-filled image against the reference ({} without a reference)."""
        if self.scan is None:
            return {}
        v = self._derived.get("zero_filled_metrics")
        if v is None:
            zf = self.zero_filled()
            if zf is None:  # being computed in the background
                return {}
            v = self.evaluate(zf)
            self._derived["zero_filled_metrics"] = v
        return v

    def evaluate(self, image: np.ndarray | None) -> dict[str, float]:
        """Metrics of a magnitude (or complex) ``recon_shape`` image against this slice's reference."""
        ref = self.reference()
        if ref is None or image is None:
            return {}
        from workbench.metrics import evaluate

        rec = np.abs(np.asarray(image)).astype(np.float32)
        rec = fit_shape(rec, ref.shape) * np.float32(self.fit_scale(rec))
        out = evaluate(ref, rec, data_range=self.data_range()) if _accepts(evaluate, "data_range") else evaluate(
            ref, rec)
        return {k: float(v) for k, v in dict(out).items()}

    def error_map(self, image: np.ndarray | None, relative: bool = False) -> np.ndarray | None:
        """``| |image| - reference |`` on ``recon_shape`` (``relative``: divided by the data range, so 0.1 means
        10 % of the peak signal); None without a reference."""
        ref = self.reference()
        if ref is None or image is None:
            return None
        from workbench.metrics import error_map

        rec = fit_shape(np.abs(np.asarray(image)).astype(np.float32), ref.shape)
        rec = rec * np.float32(self.fit_scale(rec))
        return np.asarray(error_map(ref, rec, relative=relative, data_range=self.data_range()), dtype=np.float32)

    def calibration(self, entry_id: Any) -> dict[str, Any] | None:
        """Does a result's std map predict its actual error? What the compare view's calibration plot draws.

        Computed from what the compare view shows: the std map against the absolute error map
        (:meth:`error_map`, after the scale fit of a scale-free reference, which scales the std map too), over the
        object (:func:`workbench.nn.dsm.object_mask` of the reference), so that any plugin's std map is judged the
        same way, as are results reopened from a project (their Result, and so its extras, is not saved). The
        dsm-posterior plugin's ``extras["calibration"]`` uses the same functions on the same pixels (there in
        units of the reference's 99th percentile): the numbers agree.

        Returns None when the result is not finished, has no std map, belongs to another slice, or there is no
        reference; else (image units, as the images) ``std``, ``abs_error``, ``count``: mean std, mean |error| and
        pixel count in each decile of std (:func:`workbench.nn.dsm.calibration_curve`); ``spearman``: rank
        correlation of std and |error|; ``spearman_if_calibrated``: what a perfectly calibrated Gaussian posterior
        with this std map would reach (errors drawn as ``|N(0, std^2)|``: a nearly uniform std map cannot
        correlate much even when it is right); ``spearman_oracle``: what a map that knew the error's local energy
        would reach (:func:`workbench.nn.dsm.error_predictability`; near 0 when the reference's noise dominates the
        error); ``spearman_edges``: the edge-detector baseline (:func:`workbench.nn.dsm.edge_spearman`);
        ``coverage``: the fraction of object pixels whose reference lies in
        the ``level`` (90 %) interval, the Student-t interval of ``n_samples`` samples when the Result keeps its
        samples, else the Gaussian one ``|error| <= 1.645 std``; ``interval``: which one, in words;
        ``coverage_predictive``: the same interval widened by the reference's own noise when the plugin reported
        it (``extras["calibration"]["reference_noise"]``), else None; ``n_pixels``; ``guide_slope``
        (:data:`CALIBRATED_ERROR_PER_STD`). Cached per result until the reference, std map or image change.
        """
        e = self.entry(entry_id)
        if e is None or e.state != "done" or e.std is None or e.image is None or self.scan is None \
                or e.slice_index != self.slice_index:
            return None
        ref = self.reference()
        if ref is None:
            return None
        hit = self._calibration.get(e.id)
        if hit is not None and hit[0] is ref and hit[1] is e.std and hit[2] is e.image:
            return hit[3]
        value = self._compute_calibration(e, ref)
        self._calibration[e.id] = (ref, e.std, e.image, value)
        return value

    def _compute_calibration(self, e: ResultEntry, ref: np.ndarray) -> dict[str, Any]:
        # scipy and scikit-image (object mask) are imported once a calibration is asked for, not at start-up
        from workbench.nn.dsm import calibration_curve, gaussian_coverage, object_mask, spearman_figures

        magnitude = fit_shape(np.abs(np.asarray(e.image)).astype(np.float64), ref.shape)
        scale = self.fit_scale(magnitude.astype(np.float32))
        estimate = magnitude * scale
        std = fit_shape(np.asarray(e.std, dtype=np.float64), ref.shape) * scale
        reference = ref.astype(np.float64)
        abs_error = np.abs(estimate - reference)
        mask = object_mask(reference)
        curve = calibration_curve(std, abs_error, mask)
        samples = getattr(e.result, "samples", None)
        n_samples = int(samples.shape[0]) if samples is not None and len(samples.shape) == 3 else None
        level = CALIBRATION_LEVEL
        if n_samples is not None and n_samples >= 2:
            interval = f"Student-t interval of {n_samples} samples"
        else:  # the number of samples behind the std map is unknown: the Gaussian interval of an exact std
            n_samples, interval = None, "Gaussian interval"
        coverage = gaussian_coverage(estimate, std, reference, n_samples, mask, level)
        predictive = None
        reported = ((getattr(e.result, "extras", None) or {}).get("calibration") or {})
        if reported.get("reference_noise") is not None and n_samples is not None:
            # the plugin reports the reference's noise relative to the reference's 99th percentile
            noise = float(reported["reference_noise"]) * float(np.percentile(reference, 99))
            predictive = gaussian_coverage(estimate, np.sqrt(std**2 + noise**2), reference, n_samples, mask, level)
        return {
            "std": curve["std"], "abs_error": curve["abs_error"], "count": curve["count"],
            **spearman_figures(std, abs_error, estimate, mask),
            "coverage": coverage, "interval": interval,
            "coverage_predictive": predictive, "level": level, "n_samples": n_samples,
            "n_pixels": int(mask.sum()), "guide_slope": CALIBRATED_ERROR_PER_STD,
        }

    def comparison_rows(self, slice_only: bool = True) -> list[dict[str, Any]]:
        """One row per image the compare view can show (zero-filled, then every finished result of the current
        slice, or of all slices): label, method, metrics, time, device, parameters, sampling."""
        rows: list[dict[str, Any]] = []
        if self.scan is None:
            return rows
        st = self.sampling_state
        m = self.zero_filled_metrics()
        rows.append({"key": "zero-filled", "label": ZERO_FILLED_LABEL, "method": "zero-filled", "slice": self.slice_index,
                     "psnr": m.get("psnr"), "ssim": m.get("ssim"), "nmse": m.get("nmse"), "time_s": None,
                     "device": "", "params": "", "sampling": _recipe_text(st.recipe(), st.acceleration),
                     "acceleration": st.acceleration})
        for e in self.results:
            if e.state != "done" or (slice_only and e.slice_index != self.slice_index):
                continue
            rows.append({"key": e.id, "label": e.label, "method": e.method, "slice": e.slice_index,
                         "psnr": e.metrics.get("psnr"), "ssim": e.metrics.get("ssim"), "nmse": e.metrics.get("nmse"),
                         "time_s": e.elapsed, "device": e.device, "params": e.params_text(),
                         "sampling": _recipe_text(e.sampling, e.acceleration), "acceleration": e.acceleration})
        return rows

    def export_metrics_csv(self, path: str | os.PathLike, slice_only: bool = True) -> None:
        """The metrics table as CSV: label, method, slice (1-based), PSNR, SSIM, NMSE, time, device, parameters,
        sampling, acceleration."""
        import csv

        cols = ["label", "method", "slice", "psnr", "ssim", "nmse", "time_s", "device", "params", "sampling",
                "acceleration"]
        with open(os.fspath(path), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in self.comparison_rows(slice_only):
                row = dict(r, slice=r["slice"] + 1)
                w.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                            for c in cols])

    def image_for(self, key: Any) -> np.ndarray | None:
        """The image behind a comparison key: "reference", "zero-filled" or a result id (complex or real)."""
        if key == "reference":
            return self.reference()
        if key == "zero-filled":
            return self.zero_filled()
        e = self.entry(key)
        if e is None:
            return None
        return e.image if e.image is not None else e.preview

    def entry(self, entry_id: Any) -> ResultEntry | None:
        for e in self.results:
            if e.id == entry_id:
                return e
        return None

    def psf(self) -> np.ndarray | None:
        """Point-spread function of the current sampling, ``|PSF| / max`` on the grid (float32 ``[H, W]``).
        Cartesian: ``|ifft2c(mask)|``; non-Cartesian: ``|sum_k w_k exp(i k.x)|`` with DCF weights ``w``."""
        if self.scan is None:
            return None
        v = self._derived.get("psf")
        if v is None:
            st = self.sampling_state
            if st.is_cartesian:
                import scipy.fft as sfft

                # |ifft2c(mask)|; the centring shifts only move the magnitude around
                p = np.abs(np.fft.fftshift(sfft.ifft2(np.fft.ifftshift(st.mask).astype(np.complex64),
                                                       workers=_WORKERS)))
            elif self.background_derived:
                self._start_noncartesian_derived()
                return None
            else:
                p = self._psf_noncartesian(st).numpy()
            v = self._psf_normalised(p)
            self._derived["psf"] = v
        return v

    @staticmethod
    def _psf_normalised(p: np.ndarray) -> np.ndarray:
        return (p / max(float(p.max()), 1e-12)).astype(np.float32)

    def _dcf_of(self, st: SamplingState, wait: bool = True) -> np.ndarray | None:
        """Density compensation of a non-Cartesian sampling: the sampling's own, or for acquired data the
        chosen method's (:meth:`set_acquired_dcf_method`), the file's, or Pipe-Menon weights, computed once per
        scan and method; with ``wait=False`` None while not computed."""
        if st.dcf is not None:
            return st.dcf
        if st.kind != ACQUIRED:
            return None
        return self._acquired_dcf(wait, method=st.params.get("dcf_method"))

    def _acquired_dcf(self, wait: bool = True, method: str | None = None) -> np.ndarray | None:
        """Weights of the acquired trajectory by ``method`` (None: the file's, else Pipe-Menon)."""
        scan = self._require_scan()
        if method is None and scan.dcf is not None:
            return np.asarray(scan.dcf, np.float32)
        method = method or "pipe-menon"
        hit = self._acquired_dcf_cache
        if hit is not None and hit[0] is scan and method in hit[1]:
            return hit[1][method]
        if not wait:
            return None
        with self._dcf_lock:  # the prepare thread and a job may ask at once: compute it once
            hit = self._acquired_dcf_cache
            if hit is not None and hit[0] is scan and method in hit[1]:
                return hit[1][method]
            from workbench.sampling.dcf import compute_dcf

            dcf = _to_numpy(compute_dcf(scan.trajectory_tensor(), tuple(scan.grid_shape), method))
            dcf = dcf.astype(np.float32).reshape(-1)
            if self.scan is scan:
                if hit is None or hit[0] is not scan:
                    self._acquired_dcf_cache = hit = (scan, {})
                hit[1][method] = dcf
            return dcf

    def _psf_noncartesian(self, st: SamplingState) -> torch.Tensor:
        import torchkbnufft as tkbn

        grid = self.grid_shape
        traj = torch.from_numpy(st.trajectory)
        dcf = self._dcf_of(st)
        w = torch.from_numpy(dcf) if dcf is not None else torch.ones(traj.shape[-1])
        adj = tkbn.KbNufftAdjoint(im_size=grid)
        img = adj(w.to(torch.complex64)[None, None], traj)
        return img[0, 0].abs()

    def trajectory_view(self, max_points: int = 20000) -> tuple[np.ndarray, np.ndarray] | None:
        """(points ``[2, n]`` in radians, DCF weights ``[n]``) of the non-Cartesian sampling, subsampled to at
        most ``max_points`` for display; None for Cartesian sampling."""
        st = self.sampling_state
        if st is None or st.is_cartesian:
            return None
        traj = st.trajectory
        w = self._dcf_of(st, wait=not self.background_derived)
        if w is None:  # acquired data whose weights are still being computed
            w = np.ones(traj.shape[-1], np.float32)
        step = max(1, traj.shape[-1] // max_points)
        return traj[:, ::step], w[::step]

    # ----------------------------------------------------------------------------------------------------------
    # problems, methods, jobs
    def problem(self, sampling: Any = "current", slice_index: int | None = None, device: str | None = None,
                dcf_method: str | None = "current"):
        """A ``workbench.problem.Problem`` for the current slice and sampling (or those given). For a
        non-Cartesian scan used as acquired, ``dcf_method`` is its density compensation (``"current"``: the
        session's :attr:`acquired_dcf_method`; None: the file's weights, else Pipe-Menon); recorded in
        ``problem.provenance["dcf_method"]``."""
        from workbench.problem import Problem

        scan = self._require_scan()
        if isinstance(sampling, str) and sampling == "current":
            st = self.sampling_state
            if st.kind != ACQUIRED and st.sampling is None:
                raise SamplingError("the mask is empty: draw or choose a sampling first")
            sampling = st.sampling
        idx = self.slice_index if slice_index is None else slice_index
        method = self.acquired_dcf_method if dcf_method == "current" else dcf_method
        if scan.is_cartesian or (method is None and scan.dcf is not None):
            return Problem.from_scan(scan, idx, sampling=sampling, device=device or "cpu")
        # the acquired trajectory's density compensation (what Problem.from_scan(dcf_method=...) computes),
        # computed once per scan and method instead of once per problem
        from workbench.sampling.dcf import check_dcf_method

        method = check_dcf_method(method or "pipe-menon")
        scan = dataclasses.replace(scan, dcf=self._acquired_dcf(method=method).copy())
        problem = Problem.from_scan(scan, idx, sampling=sampling, device=device or "cpu")
        problem.provenance["dcf_method"] = method
        return problem

    @property
    def job_queue(self):
        """The ``workbench.jobs.JobQueue`` (one worker per device), created on first use."""
        if self._job_queue is None:
            from workbench.jobs import JobQueue

            self._job_queue = JobQueue(self.device)
        return self._job_queue

    @property
    def compute_device(self) -> str:
        """The device jobs run on (``"auto"`` resolved: a CUDA GPU when there is one, else the CPU)."""
        if self._job_queue is not None:
            return self._job_queue.device
        from workbench.jobs import resolve_device

        return resolve_device(self.device)

    def _prep_pool(self):
        # Problems are built off the GUI thread (loading a slice, retrospective NUFFT sampling) by one helper
        # thread, then handed to the job queue; one thread keeps submission order.
        if self._prep is None:
            from concurrent.futures import ThreadPoolExecutor

            self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-prepare")
        return self._prep

    def run(self, method: Any, params: Any = None, *, label: str | None = None, sampling: Any = "current",
            slice_index: int | None = None, acceleration: float | None = None,
            sweep: Sweep | None = None) -> ResultEntry:
        """Run ``method`` (a ``workbench.methods.Method``) with ``params`` (dict or Params; validated now, raising
        ``ParamError``) on the current slice and sampling as a background job. Returns the :class:`ResultEntry`
        that follows the job; ``"result"`` events report its progress and outcome. Several runs of one method
        are separate entries."""
        scan = self._require_scan()
        st = self.sampling_state
        if isinstance(sampling, str) and sampling == "current" and st.kind != ACQUIRED and st.sampling is None:
            raise SamplingError("the mask is empty: draw or choose a sampling first")
        idx = self.slice_index if slice_index is None else int(slice_index)
        p = method.make_params(params)
        from workbench.methods import params_to_dict

        pdict = params_to_dict(p)
        name = getattr(method, "name", type(method).__name__)
        current = isinstance(sampling, str) and sampling == "current"
        entry = ResultEntry(
            id=self._next_id, method=name, params=_jsonable(pdict), slice_index=idx,
            sampling=st.recipe() if current else _sampling_recipe(sampling),
            label=label or self._label_for(name), version=str(getattr(method, "version", "")),
            device=self.compute_device, sweep_id=None if sweep is None else sweep.id,
            acceleration=acceleration if acceleration is not None else st.acceleration,
        )
        self._next_id += 1
        if current:
            sampling = st.sampling
        if idx == self.slice_index:
            reference, data_range = self.reference(), self.data_range()
        else:  # another slice (a volume run): its reference is read on the prepare thread
            reference, data_range = None, None
        recon_shape = self.recon_shape
        if sweep is not None:
            sweep.entries.append(entry)
        else:
            self.results.append(entry)
            self.emit("results", self.results)
        scale_free = self.reference_scale_free() if idx == self.slice_index else scan.reference_kind == "sense"
        ctx = _JobContext(self, entry, method, p, reference, data_range, recon_shape, scale_free=scale_free)
        device = self.compute_device
        # the acquired data's density compensation as chosen now (the entry's sampling recipe records it)
        dcf_method = st.params.get("dcf_method") if current and st.kind == ACQUIRED else "current"
        self._prep_pool().submit(ctx.prepare_and_submit, lambda: self.problem(sampling, idx, device, dcf_method))
        return entry

    def check_methods(self, methods: Iterable[Any], callback: Callable[[dict[str, list[str]]], None] | None = None
                      ) -> dict[str, list[str]] | None:
        """For each method, the reasons (from ``Method.check``) it cannot run on the current slice and sampling
        (empty list: it can). With ``callback``, the problem is built on the prepare thread and
        ``callback(reasons)`` is dispatched when ready (returns None); without, computed here. Cached per
        slice and sampling."""
        self._require_scan()
        methods = list(methods)
        key = (id(self.scan), self.slice_index, self.sampling_version, tuple(m.name for m in methods))
        if self._applicability is not None and self._applicability[0] == key:
            if callback is None:
                return self._applicability[1]
            callback(self._applicability[1])
            return None
        sampling, idx = self.sampling_state.sampling, self.slice_index
        empty = self.sampling_state.kind != ACQUIRED and sampling is None

        def compute() -> dict[str, list[str]]:
            if empty:
                return {m.name: ["the mask is empty"] for m in methods}
            try:
                problem = self.problem(sampling, idx)
            except Exception as exc:
                why = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
                return {m.name: [f"the problem cannot be built: {why}"] for m in methods}
            out = {}
            for m in methods:
                try:
                    out[m.name] = [str(r) for r in m.check(problem)]
                except Exception as exc:  # a broken check must not hide the other methods
                    out[m.name] = [f"check() failed: {type(exc).__name__}: {exc}"]
            return out

        if callback is None:
            reasons = compute()
            self._applicability = (key, reasons)
            return reasons

        def work() -> None:
            reasons = compute()

            def deliver() -> None:
                self._applicability = (key, reasons)
                callback(reasons)

            self.dispatch(deliver)

        self._prep_pool().submit(work)
        return None

    def _label_for(self, name: str) -> str:
        n = sum(1 for e in self.results if e.method == name)
        return name if n == 0 else f"{name} #{n + 1}"

    def _notify(self, entry: ResultEntry) -> None:
        self.emit("result", entry)
        if entry.sweep_id is not None:
            for sw in self.sweeps:
                if sw.id == entry.sweep_id:
                    self.emit("sweep", sw)

    def cancel(self, entry: ResultEntry) -> None:
        """Ask the entry's job to stop (cooperative: the method stops at its next iteration; a queued job never
        starts)."""
        if not entry.active:
            return
        entry.cancel_requested = True
        job = entry.job
        if job is not None:
            job.cancel()

    def remove_result(self, entry: ResultEntry) -> None:
        self.cancel(entry)
        self._calibration.pop(entry.id, None)
        if entry in self.results:
            self.results.remove(entry)
            self.emit("results", self.results)

    def sweep(self, methods: list[tuple[Any, dict[str, Any]]], accelerations: Iterable[float], *,
              kind: str | None = None) -> Sweep:
        """For each (method, params) and acceleration, a background job on the current slice with the current
        Cartesian family (or ``kind``) regenerated at that acceleration. Points arrive as ``"sweep"`` events."""
        self._require_scan()
        kind = kind or self._recipe["kind"]
        if kind in (USER, ACQUIRED):
            kind = "equispaced"
        accs = [float(a) for a in accelerations]
        sw = Sweep(id=len(self.sweeps) + 1, kind=kind, accelerations=accs,
                   methods=[getattr(m, "name", str(m)) for m, _ in methods])
        self.sweeps.append(sw)
        for r in accs:
            recipe = dict(copy.deepcopy(self._recipe), kind=kind, acceleration=r)
            recipe.pop("mask", None)
            if kind != self._recipe["kind"]:
                recipe["params"] = {}
            st = self._build_sampling(recipe)
            for method, params in methods:
                self.run(method, params, label=getattr(method, "name", str(method)), sampling=st.sampling,
                         acceleration=st.acceleration, sweep=sw)
        self.emit("sweep", sw)
        return sw

    def zero_filled_sweep(self, kind: str, accelerations: Iterable[float]) -> dict[float, dict[str, float]]:
        """Zero-filled metrics of the current slice for ``kind`` at each acceleration: {effective R: metrics}
        (the reference curve of an acceleration sweep; Cartesian families only, computed here at once)."""
        self._require_scan()
        out: dict[float, dict[str, float]] = {}
        for r in accelerations:
            recipe = dict(copy.deepcopy(self._recipe), kind=kind, acceleration=float(r))
            recipe.pop("mask", None)
            if kind != self._recipe["kind"]:
                recipe["params"] = {}
            st = self._build_sampling(recipe)
            if not st.is_cartesian:
                continue
            out[float(st.acceleration)] = self.evaluate(self._zero_filled_cartesian(st.mask))
        return out

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel queued and running jobs and stop the worker threads (app exit)."""
        for e in self.results + [e for s in self.sweeps for e in s.entries]:
            self.cancel(e)
        if self._prep is not None:
            self._prep.shutdown(wait=True, cancel_futures=True)
            self._prep = None
        if self._job_queue is not None:
            self._job_queue.shutdown(wait=True, timeout=timeout)
            self._job_queue = None

    # ----------------------------------------------------------------------------------------------------------
    # project files
    def save(self, path: str | os.PathLike) -> str:
        """Save the session as a project: ``path`` (JSON: scan path, slice, sampling recipe, results with their
        parameters and metrics) and a ``.npz`` sidecar beside it (hand-drawn mask, result images and std maps).
        Returns the sidecar path."""
        scan = self._require_scan()
        path = os.fspath(path)
        base = os.path.dirname(os.path.abspath(path))
        sidecar = os.path.splitext(path)[0] + ".npz"
        arrays: dict[str, np.ndarray] = {}
        sampling = self.sampling_state.recipe()
        if self.editing_mask:
            arrays["mask"] = self._recipe["mask"]
            sampling["mask"] = "mask"
        results = []
        for n, e in enumerate(self.results):
            d = {"id": e.id, "method": e.method, "label": e.label, "version": e.version, "params": e.params,
                 "slice": e.slice_index, "sampling": e.sampling, "device": e.device, "state": e.state,
                 "elapsed": e.elapsed, "metrics": _jsonable(e.metrics), "error": e.error,
                 "error_details": e.error_details, "acceleration": _jsonable(e.acceleration),
                 "history": _jsonable(e.history)}
            if e.state == "done" and e.image is not None:
                arrays[f"result{n}_image"] = np.asarray(e.image, np.complex64)
                d["image"] = f"result{n}_image"
                if e.std is not None:
                    arrays[f"result{n}_std"] = np.asarray(e.std, np.float32)
                    d["std"] = f"result{n}_std"
            elif e.active:
                d["state"] = "cancelled"
                d["error"] = "the session was saved while this job ran"
            results.append(d)
        scan_path = None if scan.path is None else os.path.abspath(scan.path)
        doc = {
            "format": PROJECT_FORMAT, "version": PROJECT_VERSION,
            "scan": {"path": scan_path,
                     "relpath": None if scan_path is None else os.path.relpath(scan_path, base),
                     "format": scan.format, "options": _jsonable(self.scan_options)},
            "slice": self.slice_index, "coil": self.coil_index, "symmetric": self.symmetric,
            "sampling": sampling, "results": results,
            "sidecar": os.path.basename(sidecar),
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        with open(sidecar, "wb") as f:
            np.savez_compressed(f, **arrays)
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
        return sidecar

    def load(self, path: str | os.PathLike) -> None:
        """Open a project saved by :meth:`save`: reopens the scan (by absolute path, else relative to the
        project file), restores slice, sampling and the finished results."""
        from workbench.errors import CorruptFileError, ScanError

        path = os.fspath(path)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptFileError(path, f"not a readable session file ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != PROJECT_FORMAT:
            raise CorruptFileError(path, "not a workbench session file")
        base = os.path.dirname(os.path.abspath(path))
        sidecar = os.path.join(base, doc.get("sidecar") or os.path.basename(os.path.splitext(path)[0] + ".npz"))
        arrays: dict[str, np.ndarray] = {}
        if os.path.exists(sidecar):
            with np.load(sidecar, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        sd = doc.get("scan") or {}
        candidates = [p for p in (sd.get("path"), sd.get("relpath") and os.path.join(base, sd["relpath"])) if p]
        scan_path = next((p for p in candidates if os.path.exists(p)), None)
        if scan_path is None:
            raise ScanError(candidates[0] if candidates else path,
                            f"the scan of session {os.path.basename(path)} is missing")
        self.open(scan_path, **(sd.get("options") or {}))
        self.set_slice(int(doc.get("slice", self.slice_index)))
        self.set_coil(doc.get("coil"))
        self.symmetric = bool(doc.get("symmetric", False))
        samp = doc.get("sampling") or {}
        if samp.get("kind") == USER:
            if "mask" not in arrays:
                raise CorruptFileError(sidecar, "the hand-drawn mask is missing from the sidecar")
            self._recipe.update(seed=int(samp.get("seed", 0)), center_fraction=samp.get("center_fraction"),
                                acceleration=float(samp.get("acceleration", 4.0)))
            self.begin_user_mask(arrays["mask"])
        elif samp.get("kind"):
            self.set_sampling(samp["kind"], acceleration=float(samp.get("acceleration", 4.0)),
                              seed=int(samp.get("seed", 0)), center_fraction=samp.get("center_fraction"),
                              **(samp.get("params") or {}))
        self.results = []
        for d in doc.get("results", []):
            e = ResultEntry(id=self._next_id, method=d.get("method", "?"), params=d.get("params") or {},
                            slice_index=int(d.get("slice", 0)), sampling=d.get("sampling") or {},
                            label=d.get("label") or d.get("method", "?"), version=d.get("version") or "",
                            device=d.get("device") or "cpu", state=d.get("state", "done"),
                            elapsed=d.get("elapsed"), metrics=d.get("metrics") or {}, error=d.get("error"),
                            error_details=d.get("error_details"), acceleration=d.get("acceleration"),
                            history=d.get("history") or [])
            self._next_id += 1
            e.progress = 1.0 if e.state == "done" else 0.0
            if d.get("image") in arrays:
                e.image = arrays[d["image"]]
            elif e.state == "done":
                e.state, e.error = "failed", "image missing from the session sidecar"
            if d.get("std") in arrays:
                e.std = arrays[d["std"]]
            self.results.append(e)
        self.emit("results", self.results)


# --------------------------------------------------------------------------------------------------------------
# adapters to the job engine (kept here so that the GUI and headless users share them)
def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _sampling_recipe(sampling: Any) -> dict[str, Any]:
    if sampling is None:
        return {"kind": ACQUIRED}
    d = {"kind": getattr(sampling, "kind", "?"), "params": _jsonable(getattr(sampling, "params", {}) or {})}
    try:
        d["acceleration"] = float(sampling.acceleration)
    except Exception:
        pass
    return d


def _volume_max(scan: Scan | None) -> float | None:
    """The reference volume's maximum stored in the file (fastMRI ``max`` attribute), or None."""
    v = (scan.attrs or {}).get("max") if scan is not None else None
    try:
        v = float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def _recipe_text(recipe: dict[str, Any], effective_r: float | None = None) -> str:
    """``"random R=4 cf=0.08 seed=0 (R_eff 3.76)"``: the recipe of a sampling and its effective acceleration."""
    kind = recipe.get("kind", "?")
    eff = f" (R_eff {effective_r:.2f})" if effective_r is not None and math.isfinite(effective_r) else ""
    if kind in (ACQUIRED, USER):
        extra = "".join(f" {k}={v}" for k, v in (recipe.get("params") or {}).items())
        return kind + extra + eff
    parts = [kind]
    if recipe.get("acceleration") is not None:
        parts.append(f"R={float(recipe['acceleration']):g}")
    if recipe.get("center_fraction") is not None:
        parts.append(f"cf={recipe['center_fraction']:g}")
    if recipe.get("seed") is not None:
        parts.append(f"seed={recipe['seed']}")
    parts += [f"{k}={v}" for k, v in (recipe.get("params") or {}).items()]
    return " ".join(parts) + eff


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


def _ls_scale(reference: np.ndarray, image: np.ndarray) -> float:
    """``a`` minimising ``|| reference - a |image| ||^2`` (``image`` centre-cropped/padded to the reference); 1 when
    the image is all zero."""
    m = fit_shape(np.abs(np.asarray(image)).astype(np.float64), reference.shape)
    den = float(np.vdot(m, m).real)
    if not den > 0 or not math.isfinite(den):
        return 1.0
    a = float(np.vdot(m, reference.astype(np.float64)).real) / den
    return a if math.isfinite(a) and a > 0 else 1.0


def _evaluate(reference: np.ndarray | None, image: np.ndarray | None, data_range: float | None,
              scale_free: bool = False) -> dict[str, float]:
    if reference is None or image is None:
        return {}
    from workbench.metrics import evaluate

    rec = fit_shape(np.abs(image).astype(np.float32), reference.shape)
    if scale_free:
        rec = rec * np.float32(_ls_scale(reference, rec))
    out = evaluate(reference, rec, data_range=data_range) if _accepts(evaluate, "data_range") else evaluate(
        reference, rec)
    return {k: float(v) for k, v in dict(out).items()}


def _result_arrays(result: Any, recon_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """(complex64 image, float32 std or None) of a Result, cropped to ``recon_shape``."""
    image = _to_numpy(getattr(result, "image", None))
    if image is None:
        raise ValueError("the result has no image")
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"the result image has shape {image.shape}, expected [H, W]")
    image = fit_shape(image.astype(np.complex64), recon_shape)
    std = _to_numpy(getattr(result, "std", None))
    if std is not None:
        std = np.asarray(std)
        while std.ndim > 2 and std.shape[0] == 1:
            std = std[0]
        std = fit_shape(np.abs(std).astype(np.float32), recon_shape)
    return image, std


class _JobContext:
    """Follows one job for one ResultEntry: builds the problem (prepare thread), submits it, and turns the job
    engine's worker-thread callbacks into entry updates dispatched to the observers' thread."""

    def __init__(self, session: Session, entry: ResultEntry, method: Any, params: Any,
                 reference: np.ndarray | None, data_range: float | None, recon_shape: tuple[int, int],
                 scale_free: bool = False):
        self.session = session
        self.scale_free = scale_free
        self.entry = entry
        self.method = method
        self.params = params
        self.reference = reference
        self.data_range = data_range
        self.recon_shape = recon_shape

    def post(self, fn: Callable[[ResultEntry], None]) -> None:
        entry = self.entry

        def apply():
            fn(entry)
            self.session._notify(entry)

        self.session.dispatch(apply)

    def prepare_and_submit(self, build_problem: Callable[[], Any]) -> None:
        entry = self.entry
        if entry.cancel_requested:
            self.post(_mark_cancelled)
            return
        try:
            problem = build_problem()
            if self.reference is None and getattr(problem, "reference", None) is not None:
                ref = problem.reference
                ref = np.asarray(ref.detach().cpu().numpy() if isinstance(ref, torch.Tensor) else ref, np.float32)
                self.reference = fit_shape(ref, self.recon_shape)
                self.data_range = _volume_max(self.session.scan) or float(self.reference.max())
            job = self.session.job_queue.submit(self.method, problem, self.params, on_progress=self.on_progress,
                                                on_done=self.on_done, on_iterate=self.on_iterate)
        except Exception as exc:  # bad data for this method, device missing, out of memory while preparing
            message = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            details = traceback.format_exc()
            self.post(lambda e: _mark_failed(e, f"preparing the problem failed: {message}", details))
            return
        entry.job = job
        if entry.cancel_requested:
            job.cancel()

    # --- worker thread --------------------------------------------------------------------------------------
    def on_progress(self, job: Any) -> None:
        fraction, text, started = float(job.progress), str(job.progress_text or ""), job.started

        def apply(e: ResultEntry) -> None:
            if e.active:
                e.state = "running"
                e.started = e.started or started or time.time()
                e.progress, e.progress_text = fraction, text

        self.post(apply)

    def on_iterate(self, job: Any, image: torch.Tensor) -> None:
        preview = np.abs(_to_numpy(image)).astype(np.float32)
        while preview.ndim > 2:
            preview = preview[0]
        try:
            preview = fit_shape(preview, self.recon_shape)
        except Exception:
            return

        def apply(e: ResultEntry) -> None:
            if e.active:
                e.preview = preview

        self.post(apply)

    def on_done(self, job: Any) -> None:
        state = getattr(job.state, "value", str(job.state))
        finished, started = job.finished or time.time(), job.started
        if state == "done":
            result = job.result
            # metrics here, on the worker thread: the GUI thread only swaps arrays in
            try:
                image, std = _result_arrays(result, self.recon_shape)
                metrics = _evaluate(self.reference, image, self.data_range, self.scale_free)
            except Exception as exc:  # a malformed Result is reported like a failed run
                message, details = f"the result could not be read ({exc})", traceback.format_exc()
                self.post(lambda e: _mark_failed(e, message, details, finished))
                return

            def apply(e: ResultEntry) -> None:
                e.state, e.progress, e.finished = "done", 1.0, finished
                e.started = e.started or started
                e.result, e.image, e.std, e.metrics = result, image, std, metrics
                e.history = list(getattr(result, "history", None) or [])
                rt = getattr(result, "time_s", None)
                e.elapsed = float(rt) if rt is not None and math.isfinite(rt) else e.wall_time()
                if getattr(result, "device", None):
                    e.device = str(result.device)
                e.preview = None
                e.job = None

            self.post(apply)
        elif state == "failed":
            err = job.error
            message = getattr(err, "message", None) or str(err) or "the job failed"
            details = getattr(err, "traceback", None) or ""
            if job.log:
                details = details + "\n--- log ---\n" + "\n".join(job.log)
            self.post(lambda e: _mark_failed(e, message, details, finished, started))
        else:
            self.post(lambda e: _mark_cancelled(e, finished, started))


def _out_of_memory(message: str, details: str | None) -> bool:
    text = f"{message}\n{details or ''}"
    return ("OutOfMemoryError" in text or "out of memory" in text.lower() or message.startswith("MemoryError")
            or "\nMemoryError" in text)


def _mark_failed(e: ResultEntry, message: str, details: str | None, finished: float | None = None,
                 started: float | None = None) -> None:
    if _out_of_memory(message, details) and not message.startswith("out of memory"):
        # MemoryError() carries no text and CUDA's message is long: say what happened and what to try
        where = "the GPU" if str(e.device).startswith("cuda") else "this machine"
        message = (f"out of memory on {where} ({e.device}): the method needs more memory than is free; try fewer "
                   f"iterations or samples, a smaller problem, or another device ({message})")
    e.state, e.error, e.error_details = "failed", message, details
    e.finished = finished or time.time()
    e.started = e.started or started
    e.preview = None
    e.job = None


def _mark_cancelled(e: ResultEntry, finished: float | None = None, started: float | None = None) -> None:
    e.state = "cancelled"
    e.finished = finished or time.time()
    e.started = e.started or started
    e.preview = None
    e.job = None
