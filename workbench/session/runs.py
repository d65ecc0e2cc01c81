"""Reconstruction runs of the app: result entries, sweeps, and following their jobs (no Qt, no session).

A run is a job of :class:`workbench.jobs.JobQueue` whose problem is a zero-argument factory (the queue's own
problem factory: the problem is built on the worker thread, and a failure to build it fails the job). A
:class:`JobFollower` turns the job's worker-thread callbacks into :class:`ResultEntry` updates handed to
``dispatch`` (the observers' thread) and then to ``notify``.
"""

from __future__ import annotations

import csv
import math
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from workbench import scoring
from workbench.arrays import fit_shape, jsonable
from workbench.atomic import atomic_open
from workbench.errors import WorkbenchError
from workbench.session.sampling_state import recipe_text, to_numpy

#: How the live zero-filled image of the current sampling is labelled (results of a "zero-filled" plugin are
#: snapshots; this one follows the mask).
ZERO_FILLED_LABEL = "zero-filled (live)"


@dataclass
class ResultEntry:
    """One reconstruction run: which method with which parameters on which slice and sampling, its job state,
    and (when done) the image cropped to ``recon_shape`` with its metrics against the reference.

    ``image`` is complex64 ``[h, w]``; ``std`` float32 ``[h, w]`` or None; ``metrics`` has ``psnr``, ``ssim``,
    ``nmse`` when a reference exists, in the session's scoring mode: ``scores`` holds them for every mode of
    :data:`workbench.scoring.SCORE_MODES` (``score_errors``: why a mode has none), ``as_acquired`` the image as
    a fully sampled scan of it (:func:`workbench.scoring.as_acquired`) and ``holdout`` the hold-out validation
    (:mod:`workbench.holdout`) once asked for. ``state`` is one of queued / running / done / failed / cancelled."""

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
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    score_errors: dict[str, str] = field(default_factory=dict)
    as_acquired: np.ndarray | None = None
    holdout: dict[str, Any] | None = None
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
        """``k=v, ...``; a weight left automatic shows what the method chose and the rule (``lam=auto 0.00556
        (discrepancy)``, from ``Result.chosen``; ``consistency_lam=auto none (hold-out)`` when the rule chose no
        weight; ``adapt=auto on (2 coils; on for at most 2)`` for a switch) rather than ``lam=None``."""
        chosen = getattr(self.result, "chosen", None) or {}

        def text(k: str, v: Any) -> str:
            picked, rule = chosen.get(k), chosen.get(f"{k}_rule")
            if v is None and isinstance(picked, (int, float)) and not isinstance(picked, bool):
                return f"{k}=auto {picked:.4g}" + (f" ({rule})" if rule else "")
            if v is None and k in chosen and picked is None and rule:  # the rule chose not to use it
                return f"{k}=auto none ({rule})"
            if v is None and isinstance(picked, bool):  # an automatic switch (xpdnet's adapt)
                return f"{k}=auto {'on' if picked else 'off'}" + (f" ({rule})" if rule else "")
            return f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"

        return ", ".join(text(k, v) for k, v in self.params.items())

    def chosen_text(self) -> str:
        """What the method chose itself: the automatic weights and the rules that chose them (``Result.chosen``'s
        ``lam...`` and ``..._lam`` entries with their ``..._rule``), e.g. ``lam=0.00556 (discrepancy)`` or
        ``consistency_lam=none (hold-out)``, and automatic switches with a rule (``adapt=on (2 coils; on for at
        most 2)``); "" when it chose none."""
        chosen = getattr(self.result, "chosen", None) or {}
        parts = []
        for k, v in chosen.items():
            rule = chosen.get(f"{k}_rule")
            weight = (k.lower().startswith("lam") or k.lower().endswith("_lam")) and k != "lam_absolute"
            if weight and isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{k}={v:.4g}" + (f" ({rule})" if rule else ""))
            elif weight and v is None and rule:  # the rule chose no weight
                parts.append(f"{k}=none ({rule})")
            elif isinstance(v, bool) and rule:  # an automatic switch and its rule
                parts.append(f"{k}={'on' if v else 'off'} ({rule})")
        return " ".join(parts)

    def use_score_mode(self, mode: str) -> None:
        """``metrics`` := the scores of ``mode`` ({} when that mode could not score it; scores made before modes
        existed, e.g. of a loaded project, count as the ``"fastmri"`` ones)."""
        if not self.scores and self.metrics:
            self.scores = {scoring.DEFAULT_SCORE_MODE: dict(self.metrics)}
        if self.scores:
            self.metrics = dict(self.scores.get(mode, {}))


@dataclass
class Sweep:
    """An acceleration sweep: for each method (with parameters) and acceleration, one background job
    (:mod:`workbench.session.sweeps`); with ``holdout``, each finished point is also scored by the hold-out
    (:meth:`Runs.validate`). ``cancelled``: :meth:`Runs.cancel_sweep` stopped it."""

    id: int
    kind: str
    accelerations: list[float]
    methods: list[str]
    entries: list[ResultEntry] = field(default_factory=list)
    holdout: bool = False
    cancelled: bool = False

    def points(self, method_label: str, metric: str = "psnr") -> tuple[list[float], list[float]]:
        """(accelerations, values) of ``method_label``'s finished points, by acceleration: ``metric`` one of the
        entries' ``metrics`` (PSNR, SSIM, NMSE in the scoring mode), ``"holdout"`` (the hold-out NMSE) or
        ``"holdout_se"`` (its standard error: 0 where the score has none; the points of ``"holdout"``)."""
        xs, ys = [], []
        for e in self.entries:
            held = e.holdout or {}
            if metric == "holdout":
                value = held.get("holdout_nmse")
            elif metric == "holdout_se":
                value = None if held.get("holdout_nmse") is None else held.get("holdout_nmse_se") or 0.0
            else:
                value = e.metrics.get(metric)
            if e.label == method_label and e.state == "done" and value is not None:
                xs.append(float(e.acceleration))
                ys.append(float(value))
        order = np.argsort(xs)
        return [xs[i] for i in order], [ys[i] for i in order]

    def holdout_progress(self) -> tuple[int, int, float]:
        """(points with their hold-out score or its failure, points to score, fraction of the work done):
        the finished points are scored; 0 to score when the sweep has no hold-out."""
        if not self.holdout:
            return 0, 0, 1.0
        todo = [e for e in self.entries if e.state == "done"]
        scored = [e for e in todo if e.holdout and e.holdout.get("holdout_message") != "running"]
        work = sum(1.0 if e in scored else float((e.holdout or {}).get("holdout_progress") or 0.0) for e in todo)
        return len(scored), len(todo), work / len(todo) if todo else 0.0


class Background:
    """One helper thread for work that is not a reconstruction job (method checks, slow derived images), started
    on first use; one thread keeps submission order."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, fn: Callable[[], None]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-prepare")
        self._pool.submit(fn)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def result_arrays(result: Any, recon_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """(complex64 image, float32 std or None) of a Result, cropped to ``recon_shape``."""
    image = to_numpy(getattr(result, "image", None))
    if image is None:
        raise ValueError("the result has no image")
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"the result image has shape {image.shape}, expected [H, W]")
    image = fit_shape(image.astype(np.complex64), recon_shape)
    std = to_numpy(getattr(result, "std", None))
    if std is not None:
        while std.ndim > 2 and std.shape[0] == 1:
            std = std[0]
        std = fit_shape(np.abs(std).astype(np.float32), recon_shape)
    return image, std


def _out_of_memory(message: str, details: str | None) -> bool:
    text = f"{message}\n{details or ''}"
    return ("OutOfMemoryError" in text or "out of memory" in text.lower() or message.startswith("MemoryError")
            or "\nMemoryError" in text)


def mark_failed(e: ResultEntry, message: str, details: str | None, finished: float | None = None,
                started: float | None = None) -> None:
    if _out_of_memory(message, details) and not message.startswith("out of memory"):
        # MemoryError() carries no text and CUDA's message is long: say what happened and what to try
        where = "the GPU" if str(e.device).startswith("cuda") else "this machine"
        message = (f"out of memory on {where} ({e.device}): the method needs more memory than is free; try fewer "
                   f"iterations or samples, a smaller problem, or another device ({message})")
    e.state, e.error, e.error_details = "failed", message, details
    _stopped(e, finished, started)


def mark_cancelled(e: ResultEntry, finished: float | None = None, started: float | None = None) -> None:
    e.state = "cancelled"
    _stopped(e, finished, started)


def _stopped(e: ResultEntry, finished: float | None, started: float | None) -> None:
    e.finished = finished or time.time()
    e.started = e.started or started
    e.preview = None
    e.job = None


def score_all_modes(reference: np.ndarray | None, image: np.ndarray, data_range: float | None, scale_free: bool,
                    problem: Any, image_is: str | None = None
                    ) -> tuple[dict[str, dict[str, float]], dict[str, str], np.ndarray | None]:
    """``(scores, errors, as_acquired)``: :func:`workbench.scoring.score` of ``image`` in every scoring mode
    (a mode that cannot score it, :class:`~workbench.scoring.ScoreError`, gives its message in ``errors``), and
    the image as a fully sampled scan of it (for the as-acquired error map; None without a problem)."""
    scores: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    acquired = None
    if reference is None:
        return scores, errors, acquired
    for mode in scoring.SCORE_MODES:
        try:
            if mode == "as-acquired":
                if problem is None:
                    raise scoring.ScoreError("as-acquired scoring needs the problem the image was reconstructed from")
                acquired = scoring.as_acquired(problem, image, image_is)
                scores[mode] = scoring.score(reference, acquired, "fastmri", data_range=data_range,
                                             scale_free=scale_free)
            else:
                scores[mode] = scoring.score(reference, image, mode, data_range=data_range, scale_free=scale_free)
        except scoring.ScoreError as exc:
            errors[mode] = str(exc)
    return scores, errors, acquired


class JobFollower:
    """Follows the job of one ResultEntry: builds its problem (on the job's worker thread, through the queue's
    problem factory) and turns the worker-thread callbacks into entry updates, scored against ``reference``
    with ``data_range`` (taken from the problem when the reference is not known yet: a run on another slice)."""

    def __init__(self, entry: ResultEntry, reference: np.ndarray | None, data_range: float | None,
                 recon_shape: tuple[int, int], scale_free: bool, dispatch: Callable[[Callable[[], None]], None],
                 notify: Callable[[ResultEntry], None]):
        self.entry, self.reference, self.data_range = entry, reference, data_range
        self.recon_shape, self.scale_free = recon_shape, scale_free
        self._dispatch, self._notify = dispatch, notify
        self.problem: Any = None  # built on the worker thread; the as-acquired mode needs it
        self.method: Any = None  # what runs (the hold-out validation runs it again)
        self.score_mode = lambda: scoring.DEFAULT_SCORE_MODE  # the session's mode when the job ends

    def submit(self, job_queue: Any, method: Any, params: Any, build_problem: Callable[[], Any]) -> None:
        def problem():
            built = self.problem = build_problem()
            if self.reference is None and getattr(built, "reference", None) is not None:
                self.reference = fit_shape(np.asarray(to_numpy(built.reference), np.float32), self.recon_shape)
                self.data_range = built.data_range
            return built

        job = job_queue.submit(method, problem, params, on_progress=self.on_progress, on_done=self.on_done,
                               on_iterate=self.on_iterate)
        if self.entry.active:  # (a job that failed at once has already been reported)
            self.entry.job = job

    def post(self, fn: Callable[[ResultEntry], None]) -> None:
        entry = self.entry

        def apply():
            fn(entry)
            self._notify(entry)

        self._dispatch(apply)

    # --- worker thread --------------------------------------------------------------------------------------
    def on_progress(self, job: Any) -> None:
        fraction, text, started = float(job.progress), str(job.progress_text or ""), job.started

        def apply(e: ResultEntry) -> None:
            if e.active:
                e.state = "running"
                e.started = e.started or started or time.time()
                e.progress, e.progress_text = fraction, text

        self.post(apply)

    def on_iterate(self, job: Any, image: Any) -> None:
        preview = np.abs(to_numpy(image)).astype(np.float32)
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
            # metrics here, on the worker thread: the observers' thread only swaps arrays in
            try:
                image, std = result_arrays(result, self.recon_shape)
                scores, errors, acquired = score_all_modes(self.reference, image, self.data_range, self.scale_free,
                                                           self.problem, (result.extras or {}).get("image_is"))
            except Exception as exc:  # a malformed Result is reported like a failed run
                message, details = f"the result could not be read ({exc})", traceback.format_exc()
                self.post(lambda e: mark_failed(e, message, details, finished))
                return

            def apply(e: ResultEntry) -> None:
                e.state, e.progress, e.finished = "done", 1.0, finished
                e.started = e.started or started
                e.result, e.image, e.std = result, image, std
                e.scores, e.score_errors, e.as_acquired = scores, errors, acquired
                e.use_score_mode(self.score_mode())
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
            self.post(lambda e: mark_failed(e, message, details, finished, started))
        else:
            self.post(lambda e: mark_cancelled(e, finished, started))


class Runs:
    """The reconstruction runs of one session: ``results`` (single runs, in order) and ``sweeps``, numbered from
    1, each following its job. ``emit(event, arg)`` announces ``"results"``, ``"result"`` and ``"sweep"``;
    ``dispatch(fn)`` runs ``fn`` on the observers' thread."""

    def __init__(self, dispatch: Callable[[Callable[[], None]], None], emit: Callable[[str, Any], None]):
        self._dispatch, self._emit = dispatch, emit
        self.results: list[ResultEntry] = []
        self.sweeps: list[Sweep] = []
        self._next_id = 1
        self.score_mode = scoring.DEFAULT_SCORE_MODE  # the mode of every entry's ``metrics``
        self._followers: dict[int, JobFollower] = {}  # runs' problems, for the hold-out runs
        self._holdout_jobs: dict[int, list[Any]] = {}  # entry id -> its hold-out jobs (cancelled with it)
        #: single runs that finish without a reference (prospective scans) are validated by the hold-out at once
        self.auto_validate = True

    def set_score_mode(self, mode: str) -> None:
        """Score every entry (single runs and sweeps) in ``mode`` from now on; when it changes, ``"score_mode"``,
        ``"results"`` and a ``"sweep"`` per sweep are announced."""
        if scoring.check_score_mode(mode) == self.score_mode:
            return
        self.score_mode = mode
        for e in self.results + [e for sw in self.sweeps for e in sw.entries]:
            e.use_score_mode(mode)
        self._emit("score_mode", mode)
        self._emit("results", self.results)
        for sw in self.sweeps:
            self._emit("sweep", sw)

    def entry(self, entry_id: Any) -> ResultEntry | None:
        return next((e for e in self.results if e.id == entry_id), None)

    def start(self, job_queue: Any, method: Any, params: Any, build_problem: Callable[[], Any], *,
              reference: np.ndarray | None, data_range: float | None, recon_shape: tuple[int, int],
              scale_free: bool, sweep: Sweep | None = None, label: str | None = None,
              **fields: Any) -> ResultEntry:
        """A new entry (``fields``: slice_index, sampling, device, acceleration, ...) for ``method`` with the
        validated ``params`` on the problem ``build_problem()`` builds, its job submitted to ``job_queue``."""
        from workbench.methods import params_to_dict

        name = getattr(method, "name", type(method).__name__)
        entry = ResultEntry(id=self._next_id, method=name, params=jsonable(params_to_dict(params)),
                            label=label or next_label(self.results, name), version=str(getattr(method, "version", "")),
                            sweep_id=None if sweep is None else sweep.id, **fields)
        self._next_id += 1
        follower = JobFollower(entry, reference, data_range, recon_shape, scale_free,
                               lambda fn: self._dispatch(fn), lambda e: self._finished(job_queue, follower, e))
        follower.score_mode = lambda: self.score_mode
        follower.method = method
        if sweep is None or sweep.holdout:  # (a follower keeps its problem: only for the hold-out runs)
            self._followers[entry.id] = follower
        (sweep.entries if sweep is not None else self.results).append(entry)
        if sweep is None:
            self._emit("results", self.results)
        follower.submit(job_queue, method, params, build_problem)
        return entry

    def validate(self, job_queue: Any, method: Any, entry: ResultEntry | None) -> None:
        """Hold-out validation of a finished single run (:mod:`workbench.holdout`): ``method`` (None: the one
        the run used) runs again, as jobs of ``job_queue`` with the parameters it ended with
        (:func:`workbench.holdout.params_as_run`: the weight it chose kept),
        on each of its problem's hold-out folds (:func:`workbench.holdout.folds`). Meanwhile ``entry.holdout``
        says ``holdout_message`` "running" with ``holdout_progress`` (0-1, over the folds); then it holds the
        pooled summary (``holdout_nmse`` None and ``holdout_message`` when it could not be computed). Each
        change is announced as a ``"result"`` event."""
        from workbench import holdout

        follower = None if entry is None else self._followers.get(entry.id)
        if entry is None or entry.state != "done" or follower is None or follower.problem is None:
            raise WorkbenchError("only a finished run of this session can be validated")
        method = method or follower.method
        try:
            holdouts = holdout.folds(follower.problem)
            scored = holdout.scored_part(follower.problem, entry.result.image,
                                         (entry.result.extras or {}).get("image_is"))
        except WorkbenchError as exc:
            entry.holdout = {"holdout_nmse": None, "holdout_message": str(exc)}
            self._notify(entry)
            return
        n = len(holdouts)
        progress = [0.0] * n
        parts: list[Any] = [None] * n  # per fold: its residuals, or the message why it has none
        entry.holdout = {"holdout_nmse": None, "holdout_message": "running", "holdout_progress": 0.0}

        def update(apply_to: Callable[[], None]) -> None:
            def apply() -> None:
                if entry.holdout is None or entry.holdout.get("holdout_message") != "running":
                    return  # finished, or another validation took over
                apply_to()
                self._notify(entry)

            self._dispatch(apply)

        def on_progress(job: Any, i: int) -> None:
            fraction = float(job.progress)

            def apply() -> None:
                progress[i] = fraction
                entry.holdout["holdout_progress"] = sum(progress) / n

            update(apply)

        def on_done(job: Any, i: int) -> None:
            state = getattr(job.state, "value", str(job.state))
            if state == "done":  # the residuals here, on the worker thread (a NUFFT for radial data)
                try:
                    value: Any = holdout.residuals(holdouts[i], job.result.image,
                                                   (job.result.extras or {}).get("image_is"))
                except WorkbenchError as exc:
                    value = str(exc)
            else:
                value = f"the hold-out run did not finish: {getattr(job.error, 'message', None) or state}"

            def apply() -> None:
                parts[i], progress[i] = value, 1.0
                entry.holdout["holdout_progress"] = sum(progress) / n
                if any(p is None for p in parts):
                    return
                self._holdout_jobs.pop(entry.id, None)  # nothing left to cancel: their problems may be freed
                failed = next((p for p in parts if isinstance(p, str)), None)
                if failed is not None:
                    entry.holdout = {"holdout_nmse": None, "holdout_message": failed}
                    return
                entry.holdout = holdout.pooled_summary(holdouts, parts, scored)

            update(apply)

        params = holdout.params_as_run(method, entry.params, getattr(entry.result, "chosen", None))
        jobs = self._holdout_jobs[entry.id] = []  # in place before the first job: the last fold's end drops it
        for i, held in enumerate(holdouts):
            jobs.append(job_queue.submit(method, lambda h=held: h.train, params,
                                         on_progress=lambda job, i=i: on_progress(job, i),
                                         on_done=lambda job, i=i: on_done(job, i)))
        self._notify(entry)

    def _finished(self, job_queue: Any, follower: JobFollower, entry: ResultEntry) -> None:
        """A run's update: announced; a single run that just finished without a reference (a prospective scan)
        is validated at once (:attr:`auto_validate`), so that the table ranks it by the hold-out score, and so
        is a point of a sweep that asks for it (``Sweep.holdout``) unless the sweep was cancelled."""
        self._notify(entry)
        sweep = next((sw for sw in self.sweeps if sw.id == entry.sweep_id), None)
        wanted = (sweep.holdout and not sweep.cancelled) if sweep is not None else (
            self.auto_validate and follower.reference is None)
        if entry.state == "done" and entry.holdout is None and wanted and not entry.cancel_requested \
                and entry.id in self._followers:
            try:
                self.validate(job_queue, None, entry)
            except (WorkbenchError, RuntimeError) as exc:  # e.g. the queue shut down meanwhile (app exit)
                entry.holdout = {"holdout_nmse": None, "holdout_message": f"not validated: {exc}"}

    def validate_slice(self, job_queue: Any, zero_filled: Any, slice_index: int) -> list[ResultEntry]:
        """Hold-out validation of the live zero-filled image (``zero_filled``: the
        :class:`~workbench.session.views.DerivedImages` of the sampling; it needs no run) and of every finished
        single run of ``slice_index`` not validated yet (:meth:`validate`); returns those runs."""
        if zero_filled is not None:
            zero_filled.want_holdout()
        todo = [e for e in self.results if e.slice_index == slice_index and e.state == "done"
                and e.id in self._followers and (e.holdout is None or (e.holdout.get("holdout_nmse") is None
                                                                      and e.holdout.get("holdout_message") != "running"))]
        for e in todo:
            self.validate(job_queue, None, e)
        if zero_filled is not None:
            self._emit("results", self.results)
        return todo

    def new_sweep(self, kind: str, accelerations: list[float], methods: list[str]) -> Sweep:
        sweep = Sweep(id=len(self.sweeps) + 1, kind=kind, accelerations=accelerations, methods=methods)
        self.sweeps.append(sweep)
        return sweep

    def _notify(self, entry: ResultEntry) -> None:
        self._emit("result", entry)
        for sw in self.sweeps if entry.sweep_id is not None else ():
            if sw.id == entry.sweep_id:
                self._emit("sweep", sw)

    def cancel(self, entry: ResultEntry) -> None:
        """Ask the entry's job and its hold-out jobs to stop (cooperative: at the method's next iteration; a
        queued job never starts; a hold-out score cut short says so)."""
        if entry.active:
            entry.cancel_requested = True
            if entry.job is not None:
                entry.job.cancel()
        for job in self._holdout_jobs.pop(entry.id, ()):
            job.cancel()

    def cancel_sweep(self, sweep: Sweep) -> None:
        """Stop ``sweep``: its queued and running points and their hold-out runs; no point is validated later."""
        sweep.cancelled = True
        for e in sweep.entries:
            self.cancel(e)
        self._emit("sweep", sweep)

    def cancel_all(self) -> bool:
        """Cancel every run; True if there were any."""
        runs = self.results + [e for sw in self.sweeps for e in sw.entries]
        for e in runs:
            self.cancel(e)
        return bool(runs)

    def remove(self, entry: ResultEntry) -> None:
        self.cancel(entry)
        self._followers.pop(entry.id, None)
        if entry in self.results:
            self.results.remove(entry)
            self._emit("results", self.results)

    def replace(self, results: list[ResultEntry]) -> bool:
        """Drop the runs and sweeps (their jobs cancelled) for ``results`` (e.g. a project's), numbered on; True
        if there were runs."""
        had_runs = self.cancel_all()
        self._followers.clear()
        for e in results:
            e.id, self._next_id = self._next_id, self._next_id + 1
        self.results, self.sweeps = list(results), []
        return had_runs


def comparison_rows(state: Any, zero_filled_metrics: dict[str, float], results: list[ResultEntry],
                    slice_index: int, slice_only: bool = True, score_mode: str = scoring.DEFAULT_SCORE_MODE,
                    zero_filled: Any = None) -> list[dict[str, Any]]:
    """The compare view's rows: the live zero-filled image of sampling ``state`` (``zero_filled``: its
    :class:`~workbench.session.views.DerivedImages`, for why it has no metrics in the mode and its hold-out
    score), then every finished result of ``slice_index`` (or of all slices): label, method, metrics (in
    ``score_mode``, named in each row), the hold-out score (``holdout``, when validated; ``holdout_note``: "running
    40%" or why there is none), why a row has no metrics in that mode (``score_error``), time, device,
    parameters with the weight the method chose, sampling."""
    m = zero_filled_metrics
    zf_holdout = None if zero_filled is None else zero_filled.holdout()
    rows = [{"key": "zero-filled", "label": ZERO_FILLED_LABEL, "method": "zero-filled", "slice": slice_index,
             "psnr": m.get("psnr"), "ssim": m.get("ssim"), "nmse": m.get("nmse"), "score_mode": score_mode,
             "score_error": None if zero_filled is None else zero_filled.score_error(score_mode),
             **holdout_cells(zf_holdout), "time_s": None, "device": "", "params": "", "chosen": "",
             "sampling": recipe_text(state.recipe(), state.acceleration), "acceleration": state.acceleration}]
    for e in results:
        if e.state != "done" or (slice_only and e.slice_index != slice_index):
            continue
        rows.append({"key": e.id, "label": e.label, "method": e.method, "slice": e.slice_index,
                     "psnr": e.metrics.get("psnr"), "ssim": e.metrics.get("ssim"), "nmse": e.metrics.get("nmse"),
                     "score_mode": score_mode, "score_error": e.score_errors.get(score_mode),
                     **holdout_cells(e.holdout), "time_s": e.elapsed, "device": e.device,
                     "params": e.params_text(), "chosen": e.chosen_text(),
                     "sampling": recipe_text(e.sampling, e.acceleration), "acceleration": e.acceleration})
    return rows


def holdout_cells(summary: dict[str, Any] | None) -> dict[str, Any]:
    """A row's ``holdout`` (the hold-out NMSE or None), ``holdout_se`` (its standard error, or None) and
    ``holdout_note`` ("" when it has the number; "running 40%" while its runs go on; else why there is none) from
    a hold-out summary (None: not asked for)."""
    if not summary:
        return {"holdout": None, "holdout_se": None, "holdout_note": ""}
    value = summary.get("holdout_nmse")
    note = "" if value is not None else str(summary.get("holdout_message") or "")
    if note == "running":
        note = f"running {100 * float(summary.get('holdout_progress') or 0.0):.0f}%"
    return {"holdout": value, "holdout_se": summary.get("holdout_nmse_se") if value is not None else None,
            "holdout_note": note}


def write_metrics_csv(path: str | os.PathLike, rows: list[dict[str, Any]], inputs: tuple = ()) -> None:
    """The metrics table as CSV: label, method, slice (1-based), PSNR, SSIM, NMSE, the scoring mode that gave
    them, the hold-out error and its standard error, time, device, parameters, the chosen weight, sampling,
    acceleration. Written atomically, never over one of ``inputs``."""
    cols = ["label", "method", "slice", "psnr", "ssim", "nmse", "score_mode", "holdout", "holdout_se", "time_s",
            "device", "params", "chosen", "sampling", "acceleration"]
    with atomic_open(path, "w", inputs=inputs, newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            row = dict(r, slice=r["slice"] + 1)
            w.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                        for c in cols])


class MethodChecks:
    """Why methods cannot run on a problem (``Method.check``), cached under a key (scan, slice, sampling)."""

    def __init__(self) -> None:
        self._cached: tuple[Any, dict[str, list[str]]] | None = None

    def check(self, methods: list[Any], key: Any, build_problem: Callable[[], Any] | None,
              callback: Callable[[dict[str, list[str]]], None] | None = None,
              background: Callable[[Callable[[], None]], None] | None = None,
              dispatch: Callable[[Callable[[], None]], None] | None = None) -> dict[str, list[str]] | None:
        """For each method, its reasons ([]: it can run) on ``build_problem()`` (None: the mask is empty). With
        ``callback``, computed through ``background`` and handed to ``callback`` through ``dispatch``."""
        key = (key, tuple(m.name for m in methods))
        if self._cached is not None and self._cached[0] == key:
            if callback is None:
                return self._cached[1]
            callback(self._cached[1])
            return None
        if callback is None:
            self._cached = (key, method_reasons(methods, build_problem))
            return self._cached[1]

        def work() -> None:
            reasons = method_reasons(methods, build_problem)

            def deliver() -> None:
                self._cached = (key, reasons)
                callback(reasons)

            dispatch(deliver)

        background(work)
        return None


def method_reasons(methods: list[Any], build_problem: Callable[[], Any] | None) -> dict[str, list[str]]:
    """For each method, the reasons (``Method.check``) it cannot run on the problem ``build_problem()`` builds
    ([]: it can); ``build_problem`` None: the mask is empty."""
    if build_problem is None:
        return {m.name: ["the mask is empty"] for m in methods}
    try:
        problem = build_problem()
    except Exception as exc:
        why = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        return {m.name: [f"the problem cannot be built: {why}"] for m in methods}
    out = {}
    for m in methods:
        try:
            out[m.name] = [str(r) for r in m.check(problem)]
        except BaseException as exc:  # noqa: B036 - a broken check (even sys.exit) must not hide the others
            out[m.name] = [f"check() failed: {type(exc).__name__}: {exc}"]
    return out


def next_label(results: list[ResultEntry], name: str) -> str:
    """``name``, then ``name #2``, ``name #3``... for further runs of one method."""
    n = sum(1 for e in results if e.method == name)
    return name if n == 0 else f"{name} #{n + 1}"
