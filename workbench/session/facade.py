"""The :class:`Session` facade: the open scan, the slice and coil looked at, and events; the computations are
the headless parts' of this package (:mod:`workbench.session`), which are given values and never import this."""

from __future__ import annotations

import collections
import os
from typing import Any, Callable, Iterable

import numpy as np
import torch

from workbench.errors import SamplingError, WorkbenchError
from workbench.scan import Scan
from workbench.session import sweeps
from workbench.session.project import Project, SessionFileError, check_project_fits, load_project, save_project
from workbench.session.runs import (Background, MethodChecks, ResultEntry, Runs, Sweep, comparison_rows,
                                    write_metrics_csv)
from workbench.session.sampling_state import ACQUIRED, SamplingModel, SamplingState, recipe_of
from workbench.session.views import DerivedImages, SliceViews

EVENTS = ("scan", "slice", "sampling", "results", "result", "sweep", "score_mode")


class Session:
    """The app's state and every computation it shows (events and threading: :mod:`workbench.session`).

    Args:
        device: compute device for jobs: "auto" (a CUDA GPU when there is one, else the CPU), "cpu", "cuda:1".
        dispatch: ``fn(callable)`` that runs ``callable`` on the observers' thread; default calls it at once.
        job_queue: a ``workbench.jobs.JobQueue`` (created on first use when None).
    """

    def __init__(self, *, device: str = "auto", dispatch: Callable[[Callable[[], None]], None] | None = None,
                 job_queue: Any = None):
        self.device = str(device)
        self.dispatch = dispatch or (lambda fn: fn())
        self._observers: dict[str, list[Callable[..., None]]] = collections.defaultdict(list)
        self._job_queue = job_queue
        self._compute_device: str | None = None  # ``device`` resolved, once
        self._background = Background()
        self.scan: Scan | None = None
        self.scan_options: dict[str, Any] = {}
        self.slice_index = 0
        self.coil_index: int | None = None
        self._symmetric = False
        # every helper thread reaches the observers through _post, which reads ``dispatch`` at call time: after
        # shutdown() nothing is dispatched to a window that may be gone
        self._post: Callable[[Callable[[], None]], None] = lambda fn: self.dispatch(fn)
        self._runs = Runs(self._post, self.emit)
        #: compute the non-Cartesian zero-filled image and PSF on a helper thread (``zero_filled()`` / ``psf()``
        #: are None meanwhile; a ``"sampling"`` event follows): opening a radial scan never freezes the window.
        self.background_derived = False
        self._model: SamplingModel | None = None
        self._views: SliceViews | None = None
        self._derived: DerivedImages | None = None
        self._checks = MethodChecks()

    # --- events -----------------------------------------------------------------------------------------------
    def subscribe(self, event: str, fn: Callable[..., None]) -> Callable[[], None]:
        """Call ``fn(*args)`` on every ``event``; returns a function that unsubscribes."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._observers[event].append(fn)
        return lambda: self._observers[event].remove(fn) if fn in self._observers[event] else None

    def emit(self, event: str, *args: Any) -> None:
        for fn in list(self._observers[event]):
            fn(*args)

    # --- scan, slice, coil ------------------------------------------------------------------------------------
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
        """Show ``scan``: middle slice, coil-combined, its default sampling (equispaced R=4 for fully sampled
        Cartesian data, the acquired samples otherwise); the previous scan's results go (jobs cancelled)."""
        had_runs = self._runs.replace([])
        self.scan = scan
        self._model = SamplingModel(scan, self._sampling_changed)
        self._model.symmetric = self._symmetric
        self._views = self._derived = None
        self._checks = MethodChecks()
        self.slice_index = scan.n_slices // 2 if slice_index is None else int(slice_index)
        self.coil_index = None
        self.emit("scan", scan)
        if had_runs:
            self.emit("results", self.results)
        self.emit("slice", self.slice_index, self.coil_index)
        self.emit("sampling", self.sampling_state)

    def _require_scan(self) -> Scan:
        if self.scan is None:
            raise WorkbenchError("no scan is open")
        return self.scan

    def set_slice(self, index: int) -> None:
        index = int(min(max(index, 0), self._require_scan().n_slices - 1))
        if index != self.slice_index:
            self.slice_index = index
            self._views = self._derived = None
            self.emit("slice", self.slice_index, self.coil_index)
            self.emit("sampling", self.sampling_state)

    def set_coil(self, coil: int | None) -> None:
        """``None`` = coil-combined (RSS) views; an integer shows that coil's k-space and image."""
        coil = None if coil is None else int(min(max(coil, 0), self._require_scan().n_coils - 1))
        if coil != self.coil_index:
            self.coil_index = coil
            self.emit("slice", self.slice_index, self.coil_index)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return tuple(self._require_scan().grid_shape)  # type: ignore[return-value]

    @property
    def recon_shape(self) -> tuple[int, int]:
        return tuple(self._require_scan().recon_shape)  # type: ignore[return-value]

    @property
    def pixel_aspect(self) -> float:  # Scan.pixel_aspect (1 without a scan): how tall views draw an image pixel
        return 1.0 if self.scan is None else float(self.scan.pixel_aspect)

    # --- the slice's images and scores: views.SliceViews ------------------------------------------------------
    @property
    def views(self) -> SliceViews:
        if self._views is None:
            self._views = SliceViews(self._require_scan(), self.slice_index)
        return self._views

    def kspace(self) -> torch.Tensor:
        return self.views.kspace()

    def kspace_log_magnitude(self) -> np.ndarray | None:
        return self.views.kspace_log_magnitude(self.coil_index)

    def full_image(self) -> np.ndarray | None:
        return self.views.full_image(self.coil_index)

    def reference(self) -> np.ndarray | None:
        return self.views.reference()

    def data_range(self) -> float | None:
        return self.views.data_range()

    def reference_scale_free(self) -> bool:
        return self.views.reference_scale_free()

    def fit_scale(self, image: np.ndarray | None) -> float:
        return 1.0 if self.scan is None else self.views.fit_scale(image)

    # --- scoring modes (workbench.scoring): every metric and error map follows score_mode -----------------------
    @property
    def score_mode(self) -> str:
        """One of :data:`workbench.scoring.SCORE_MODES`; setting it emits ``"score_mode"``, ``"results"``."""
        return self._runs.score_mode

    @score_mode.setter
    def score_mode(self, mode: str) -> None:
        self._runs.set_score_mode(mode)  # ScoreError for an unknown mode

    def error_map(self, image: np.ndarray | None, relative: bool = False, key: Any = None) -> np.ndarray | None:
        """The error map of ``image`` (of comparison ``key``, "zero-filled" or a result id) in the scoring mode."""
        zf = key == "zero-filled" and self.scan is not None and self.score_mode == "as-acquired"
        acquired = self._derived_images().as_acquired() if zf else getattr(self.entry(key), "as_acquired", None)
        return self.views.error_map(image, relative, self.score_mode, acquired)

    def validate(self, entry_id: Any = None, method: Any = None) -> None:
        """Hold-out validation (a score without a reference) of a finished run (:meth:`Runs.validate`), or (None)
        of the live zero-filled image and every run of this slice not validated yet (:meth:`Runs.validate_slice`)."""
        self._runs.validate(self.job_queue, method, self.entry(entry_id)) if entry_id is not None else \
            self._runs.validate_slice(self.job_queue, self._derived_images(), self.slice_index)

    def calibration(self, entry_id: Any) -> dict[str, Any] | None:
        return None if self.scan is None else self.views.calibration(self.entry(entry_id))

    # --- sampling and hand-drawn masks: sampling_state.SamplingModel ------------------------------------------
    def _sampling_changed(self, state: SamplingState) -> None:
        self._derived = None
        self.emit("sampling", state)

    @property
    def sampling_model(self) -> SamplingModel:
        if self._model is None:
            raise WorkbenchError("no scan is open")
        return self._model

    @property
    def sampling_state(self) -> SamplingState | None:
        return None if self._model is None else self._model.state

    @property
    def sampling(self):
        return None if self._model is None else self._model.state.sampling

    def mask(self) -> np.ndarray | None:
        return None if self._model is None else self._model.state.mask

    @property
    def sampling_version(self) -> int:
        return 0 if self._model is None else self._model.version

    def set_sampling(self, kind: str | None = None, *, acceleration: float | None = None, seed: int | None = None,
                     center_fraction: float | None | str = "keep", **params: Any) -> SamplingState:
        return self.sampling_model.set(kind, acceleration, seed, center_fraction, params)

    def set_acceleration(self, acceleration: float) -> SamplingState:
        return self.sampling_model.set_acceleration(acceleration)

    @property
    def acquired_dcf_method(self) -> str | None:
        return None if self._model is None else self._model.acquired_dcf_method

    @property
    def acquired_dcf_label(self) -> str | None:
        return None if self._model is None else self._model.acquired_dcf_label

    def set_acquired_dcf_method(self, method: str | None) -> SamplingState:
        return self.sampling_model.set_acquired_dcf_method(method)

    @property
    def editor(self) -> SamplingModel:
        """Hand-drawn masks: ``begin_user_mask``, ``begin_stroke`` / ``end_stroke``, ``paint``, ``set_lines``,
        ``toggle_line``, ``clear_mask``, ``undo`` / ``redo``, ``save`` / ``load`` of the scan's sampling model."""
        return self.sampling_model

    @property
    def symmetric(self) -> bool:
        """Hand-drawn edits are mirrored through the k-space centre (kept across scans)."""
        return self._symmetric

    @symmetric.setter
    def symmetric(self, value: bool) -> None:
        self._symmetric = bool(value)
        if self._model is not None:
            self._model.symmetric = self._symmetric

    @property
    def can_undo(self) -> bool:
        return self._model is not None and self._model.can_undo

    @property
    def can_redo(self) -> bool:
        return self._model is not None and self._model.can_redo

    def undo(self) -> bool:
        return self._model is not None and self._model.undo()

    def redo(self) -> bool:
        return self._model is not None and self._model.redo()

    # --- the slice under the sampling: views.DerivedImages ----------------------------------------------------
    def _derived_images(self) -> DerivedImages | None:
        if self._derived is None and self.scan is not None:
            idx = self.slice_index
            self._derived = DerivedImages(self.views, self.sampling_state, lambda sampling: self.problem(sampling, idx),
                                          self._background if self.background_derived else None,
                                          self._post, self._derived_ready)
        return self._derived

    def _derived_ready(self, derived: DerivedImages) -> None:
        if derived is self._derived:  # else the slice or sampling changed: the new one computes its own
            self.emit("sampling", self.sampling_state)

    def zero_filled(self) -> np.ndarray | None:
        return None if self.scan is None else self._derived_images().get("zero_filled")

    def psf(self) -> np.ndarray | None:
        return None if self.scan is None else self._derived_images().get("psf")

    def zero_filled_metrics(self) -> dict[str, float]:
        """The live zero-filled image's scores in the current scoring mode."""
        return {} if self.scan is None else self._derived_images().metrics(self.score_mode)

    @property
    def derived_pending(self) -> bool:
        return self._derived is not None and self._derived.pending

    def derived_error(self) -> str | None:
        return None if self._derived is None else self._derived.values.get("error")

    def trajectory_view(self, max_points: int = 20000) -> tuple[np.ndarray, np.ndarray] | None:
        st = self.sampling_state
        if st is None or st.is_cartesian:
            return None
        return self.views.trajectory_view(st, max_points, wait=not self.background_derived)

    # --- comparison: runs -------------------------------------------------------------------------------------
    def comparison_rows(self, slice_only: bool = True) -> list[dict[str, Any]]:
        """The compare view's rows: the live zero-filled image, then the finished results (of this slice)."""
        if self.scan is None:
            return []
        return comparison_rows(self.sampling_state, self.zero_filled_metrics(), self.results, self.slice_index,
                               slice_only, self.score_mode, self._derived)

    def export_metrics_csv(self, path: str | os.PathLike, slice_only: bool = True) -> None:
        write_metrics_csv(path, self.comparison_rows(slice_only), inputs=(self.scan.path if self.scan else None,))

    def image_for(self, key: Any) -> np.ndarray | None:
        """The image behind a comparison key: "reference", "zero-filled" or a result id (complex or real)."""
        if key in ("reference", "zero-filled"):
            return self.reference() if key == "reference" else self.zero_filled()
        e = self.entry(key)
        return None if e is None else (e.image if e.image is not None else e.preview)

    @property
    def results(self) -> list[ResultEntry]:
        return self._runs.results

    @property
    def sweeps(self) -> list[Sweep]:
        return self._runs.sweeps

    def entry(self, entry_id: Any) -> ResultEntry | None:
        return self._runs.entry(entry_id)

    # --- problems and runs: runs, workbench.jobs --------------------------------------------------------------
    def problem(self, sampling: Any = "current", slice_index: int | None = None, device: str | None = None,
                dcf_method: str | None = "current"):
        """A ``workbench.problem.Problem`` of the current slice and sampling (or those given); ``dcf_method``:
        of a non-Cartesian scan used as acquired (``"current"``: :attr:`acquired_dcf_method`)."""
        from workbench.problem import Problem

        scan = self._require_scan()
        if isinstance(sampling, str) and sampling == "current":
            st = self.sampling_state
            if st.kind != ACQUIRED and st.sampling is None:
                raise SamplingError("the mask is empty: draw or choose a sampling first")
            sampling = st.sampling
        if isinstance(sampling, sweeps.AcquiredSubset):  # a sweep point of a prospective scan: part of its data
            return sampling.problem_of(self.problem(None, slice_index, device, dcf_method))
        method = self.acquired_dcf_method if dcf_method == "current" else dcf_method
        return Problem.from_scan(scan, self.slice_index if slice_index is None else slice_index, sampling=sampling,
                                 device=device or "cpu", dcf_method=None if scan.is_cartesian else method)

    @property
    def job_queue(self):
        """The ``workbench.jobs.JobQueue`` (one worker per device), created on first use."""
        if self._job_queue is None:
            from workbench.jobs import JobQueue

            self._job_queue = JobQueue(self.compute_device)
        return self._job_queue

    @property
    def compute_device(self) -> str:
        """The device jobs run on (``device`` resolved once: ``"auto"`` is a CUDA GPU when there is one)."""
        if self._compute_device is None:
            from workbench.jobs import resolve_device

            queue = self._job_queue
            self._compute_device = queue.device if queue is not None else resolve_device(self.device)
        return self._compute_device

    def run(self, method: Any, params: Any = None, *, label: str | None = None, sampling: Any = "current",
            slice_index: int | None = None, acceleration: float | None = None,
            sweep: Sweep | None = None) -> ResultEntry:
        """Run ``method`` with ``params`` (validated now: ``ParamError``) on the current slice and sampling as a
        background job; returns the :class:`ResultEntry` that follows it (``"result"`` events)."""
        scan, st = self._require_scan(), self.sampling_state
        current = isinstance(sampling, str) and sampling == "current"
        if current and st.kind != ACQUIRED and st.sampling is None:
            raise SamplingError("the mask is empty: draw or choose a sampling first")
        idx = self.slice_index if slice_index is None else int(slice_index)
        p = method.make_params(params)
        recipe, sampling = (st.recipe(), st.sampling) if current else (recipe_of(sampling), sampling)
        # the acquired data's density compensation as chosen now (the entry's sampling recipe records it)
        dcf_method = st.params.get("dcf_method") if current and st.kind == ACQUIRED else "current"
        device = self.compute_device
        here = idx == self.slice_index  # another slice (a volume run): the reference comes with its problem
        return self._runs.start(
            self.job_queue, method, p, lambda: self.problem(sampling, idx, device, dcf_method),
            reference=self.reference() if here else None, data_range=self.data_range() if here else None,
            recon_shape=self.recon_shape, sweep=sweep, label=label,
            scale_free=self.reference_scale_free() if here else scan.reference_kind == "sense",
            slice_index=idx, sampling=recipe, device=device,
            acceleration=acceleration if acceleration is not None else st.acceleration)

    def check_methods(self, methods: Iterable[Any], callback: Callable[[dict[str, list[str]]], None] | None = None
                      ) -> dict[str, list[str]] | None:
        """For each method, why it cannot run on the current slice and sampling ([]: it can); with ``callback``,
        computed on a helper thread and dispatched (returns None). Cached (:class:`runs.MethodChecks`)."""
        key = (id(self._require_scan()), self.slice_index, self.sampling_version)
        sampling, idx = self.sampling_state.sampling, self.slice_index
        build = None if self.sampling_state.kind != ACQUIRED and sampling is None else (
            lambda: self.problem(sampling, idx))
        return self._checks.check(list(methods), key, build, callback, self._background, self._post)

    def cancel(self, entry: ResultEntry) -> None:
        """Ask the entry's job to stop (cooperative: at the method's next iteration; a queued job never starts)."""
        self._runs.cancel(entry)

    def remove_result(self, entry: ResultEntry) -> None:
        if self._views is not None:
            self._views.forget(entry.id)
        self._runs.remove(entry)

    def sweep(self, methods: list[tuple[Any, dict[str, Any]]], accelerations: Iterable[float], *,
              kind: str | None = None, holdout: bool | None = None) -> Sweep:
        """For each (method, params) and acceleration, a background job on the current slice with the family
        ``kind`` (default: the current one; a scan not fully sampled: part of its acquired readouts) at that
        acceleration, each point scored by the hold-out when ``holdout`` (None: when the slice has no
        reference; :func:`sweeps.start`). Points and hold-out scores arrive as ``"sweep"`` events."""
        return sweeps.start(self, self._runs, methods, accelerations, kind, holdout)

    def cancel_sweep(self, sweep: Sweep) -> None:
        """Stop a sweep: its queued and running points and their hold-out runs (:meth:`Runs.cancel_sweep`)."""
        self._runs.cancel_sweep(sweep)

    def zero_filled_sweep(self, kind: str, accelerations: Iterable[float]) -> dict[float, dict[str, float]]:
        """Zero-filled metrics of the current slice for ``kind`` at each acceleration, in the scoring mode."""
        return sweeps.zero_filled_points(self, kind, accelerations)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel queued and running jobs and stop the worker threads (app exit). Afterwards the session is inert:
        what a job reports later (an abandoned plugin's thread, a Cancel watchdog) is dropped, never dispatched
        to observers that may be gone (a deleted window's dispatcher aborts the process)."""
        self._runs.cancel_all()
        self.dispatch = lambda fn: None
        self._background.shutdown()
        if self._job_queue is not None:
            self._job_queue.shutdown(wait=True, timeout=timeout)
            self._job_queue = None

    # --- project files: project -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Save the session as a project (:mod:`workbench.session.project`); returns the sidecar path."""
        scan = self._require_scan()
        return save_project(path, Project(scan.path or "", self.scan_options, self.slice_index, self.coil_index,
                                          self.symmetric, self.sampling_model.saved(), list(self.results)), scan)

    def load(self, path: str | os.PathLike) -> None:
        """Open a project saved by :meth:`save`: reopens the scan, restores slice, sampling and the results. A
        malformed project raises :class:`~workbench.session.project.SessionFileError` (a WorkbenchError); its
        types, sidecar and image shapes are checked before the scan is shown."""
        from workbench.io import open_scan

        project = load_project(path)
        scan = open_scan(project.scan_path, **project.scan_options)
        check_project_fits(path, project, scan.n_slices, scan.recon_shape)  # before anything is shown
        self.scan_options = dict(project.scan_options)
        self.set_scan(scan)
        try:
            if project.slice_index is not None:
                self.set_slice(int(project.slice_index))
            self.set_coil(project.coil_index)
            self.symmetric = project.symmetric
            self.sampling_model.restore(project.sampling)
        except (TypeError, ValueError, KeyError, IndexError, WorkbenchError) as exc:
            raise SessionFileError(path, f"its slice, coil or sampling cannot be restored ({exc})") from exc
        self._runs.replace(project.results)
        self.emit("results", self.results)
