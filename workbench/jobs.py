"""Background reconstruction jobs, without Qt.

A :class:`JobQueue` runs jobs one at a time per device, in submission order, on one worker thread per device
(created on first use; torch releases the GIL while it computes, so a GPU job and a CPU job run side by side).
The default device is ``"cuda"`` when ``torch.cuda.is_available()`` else ``"cpu"``; each job may choose its own.

Every job goes through :func:`workbench.methods.safe_run`, so a failing plugin produces a job in state
``failed`` with the error message and traceback text, and the queue keeps working. Cancellation is
cooperative: :meth:`Job.cancel` sets a flag that the method sees through ``ctx.cancelled()`` /
``ctx.check_cancelled()`` (at least once per iteration); a job cancelled while queued never runs.

Callbacks are plain callables, called **on the worker thread** (on the caller's thread for :meth:`run_sync`,
and for ``on_done`` of a job cancelled while still queued: on the thread that called ``cancel``). The GUI
adapts them to Qt signals (queued connections deliver them on the GUI thread). An exception in a callback is
logged and otherwise ignored; it never fails the job.

A running job that does not answer Cancel within ``JobQueue.cancel_grace`` seconds (a plugin that hangs or
never checks ``ctx.cancelled()``) is marked unresponsive: it ends as ``failed`` with a message saying so, its
``on_done`` is called, and a fresh worker thread takes over the device's queue, so later jobs run. Python cannot
stop a thread: the stuck one is a daemon thread left running until the plugin returns (then it exits and its
result is discarded); it never blocks the queue, :meth:`JobQueue.shutdown` or the interpreter's exit.

Before each CPU job the intra-op thread count is set (every usable core by default;
:func:`workbench.threads.threads_for_job`); CPU jobs share torch's process-wide thread pool, which is why one
CPU worker runs one job at a time.
"""

from __future__ import annotations

import enum
import itertools
import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from workbench.errors import WorkbenchError
from workbench.methods import JobCancelled, Method, MethodError, RunContext, safe_run
from workbench.result import Result
from workbench.threads import use_threads_for_job

if TYPE_CHECKING:  # pragma: no cover
    from workbench.problem import Problem

log = logging.getLogger(__name__)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a one-line ``message`` for the user, the ``traceback`` text for the details view, and
    the exception class name (``kind``)."""

    message: str
    traceback: str = ""
    kind: str = ""


_ids = itertools.count(1)


class Job:
    """One reconstruction run. Read its attributes from any thread; only the engine changes them.

    Attributes:
        id: increasing integer.
        method, problem, params, device: what runs where (``params`` is the validated Params instance).
        state: a :class:`JobState`.
        progress, progress_text: the latest progress the method reported (``progress`` in [0, 1]).
        submitted, started, finished: ``time.time()`` timestamps (None until they happen).
        result: the :class:`~workbench.result.Result` when ``state`` is done.
        error: a :class:`JobError` when ``state`` is failed.
        log: lines the method logged with ``ctx.log`` (plus callback errors).
        unresponsive: True when the job did not answer Cancel within ``cancel_grace`` seconds and was abandoned.
    """

    def __init__(self, method: Method, problem: "Problem", params: Any, device: str,
                 on_progress: Callable[["Job"], None] | None = None,
                 on_done: Callable[["Job"], None] | None = None,
                 on_iterate: Callable[["Job", torch.Tensor], None] | None = None, *,
                 cancel_grace: float | None = None,
                 on_unresponsive: Callable[["Job"], None] | None = None,
                 cpu_threads: int | None = None):
        self.id = next(_ids)
        self.method = method
        self.problem = problem
        self.params = params
        self.device = device
        self.state = JobState.QUEUED
        self.progress = 0.0
        self.progress_text = ""
        self.submitted = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.result: Result | None = None
        self.error: JobError | None = None
        self.log: list[str] = []
        self.unresponsive = False
        self._cancel_grace = cancel_grace
        self._on_unresponsive = on_unresponsive
        self._cpu_threads = cpu_threads
        self._on_progress = on_progress
        self._on_done = on_done
        self._on_iterate = on_iterate
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = threading.Event()

    # --- public ------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.method.name

    @property
    def done(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.state.finished

    @property
    def elapsed(self) -> float:
        """Seconds spent running (so far, while running; 0 before it starts)."""
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else time.time()) - self.started

    def cancel(self) -> bool:
        """Ask the job to stop. A queued job is cancelled at once and never runs; a running job stops at the
        method's next cancellation check. Returns False when the job had already finished."""
        with self._lock:
            if self.state.finished:
                return False
            self._cancel.set()
            if self.state is not JobState.QUEUED:
                if self._cancel_grace is not None:
                    watchdog = threading.Timer(self._cancel_grace, self._abandon_if_running)
                    watchdog.daemon = True
                    watchdog.start()
                return True
            self.state = JobState.CANCELLED
            self.finished = time.time()
        self._finished.set()
        self._call(self._on_done, self)
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finished (any final state) or ``timeout`` seconds passed; True if finished."""
        return self._finished.wait(timeout)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.method.name} on {self.device}: {self.state.value} {self.progress:.0%}>"

    # --- engine side -------------------------------------------------------------------------------------
    def _call(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # an observer's bug must not fail the reconstruction
            text = traceback.format_exc()
            self.log.append(f"callback error: {text.strip().splitlines()[-1]}")
            log.exception("job %s: callback %r raised", self.id, callback)

    def _ctx_progress(self, fraction: float, text: str) -> None:
        self.progress, self.progress_text = fraction, text
        self._call(self._on_progress, self)

    def _ctx_iterate(self, image: torch.Tensor) -> None:
        self._call(self._on_iterate, self, image)

    def _ctx_log(self, text: str) -> None:
        self.log.append(text)

    def _execute(self, progress_interval: float, iterate_interval: float) -> None:
        """Run the job in the calling thread (the worker, or the caller for run_sync)."""
        with self._lock:
            if self.state is not JobState.QUEUED:  # cancelled while queued
                return
            self.state = JobState.RUNNING
            self.started = time.time()
        self._call(self._on_progress, self)
        ctx = RunContext(
            self.device, cancel_event=self._cancel, on_progress=self._ctx_progress,
            on_iterate=self._ctx_iterate if self._on_iterate is not None else None, on_log=self._ctx_log,
            progress_interval=progress_interval, iterate_interval=iterate_interval,
        )
        state, result, error = JobState.FAILED, None, None
        try:
            problem = self.problem
            if _is_problem_factory(problem):
                ctx.progress(0.0, "preparing the data")
                try:
                    problem = problem()
                except Exception as exc:
                    raise _PrepareError(f"could not prepare the data: {type(exc).__name__}: {exc}") from exc
                self.problem = problem
                ctx.check_cancelled()
            problem = _problem_on_device(problem, self.device)
            if torch.device(self.device).type == "cpu":
                if self._cpu_threads:  # fixed by the queue (whole volumes: one thread per slice in flight)
                    torch.set_num_threads(self._cpu_threads)
                else:  # intra-op threads: every usable core, one for a small problem (workbench.threads)
                    use_threads_for_job(_work(problem))
            result = safe_run(self.method, problem, self.params, ctx)
            state = JobState.CANCELLED if self._cancel.is_set() else JobState.DONE
        except JobCancelled:
            state = JobState.CANCELLED
        except MethodError as exc:
            error = JobError(exc.message, exc.traceback or traceback.format_exc(), type(exc).__name__)
        except Exception as exc:  # WorkbenchError (bad params, device) or a bug outside the plugin
            error = JobError(str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}",
                             traceback.format_exc(), type(exc).__name__)
        except BaseException:  # KeyboardInterrupt in run_sync: leave a consistent job behind, then re-raise
            self._finish(JobState.CANCELLED, None, None)
            raise
        if error is not None and self._cancel.is_set():
            state, error = JobState.CANCELLED, None
        self._finish(state, result if state is JobState.DONE else None, error)

    def _abandon_if_running(self) -> None:
        """The Cancel watchdog: a job still running ``cancel_grace`` seconds after Cancel is marked unresponsive
        and failed; its worker is replaced (``on_unresponsive``) and whatever it returns later is discarded."""
        with self._lock:
            if self.state.finished:
                return
            self.unresponsive = True
            self.state = JobState.FAILED
            self.finished = time.time()
            self.error = JobError(
                f"{self.method.name} did not stop within {self._cancel_grace:g} s of Cancel and was abandoned as "
                "unresponsive (its thread runs on in the background until the plugin returns; the result is "
                "discarded)", kind="Unresponsive")
        self.log.append("unresponsive to Cancel: abandoned; a fresh worker runs the next jobs")
        log.warning("job %s (%s): no answer to Cancel within %g s; abandoned", self.id, self.method.name,
                    self._cancel_grace)
        self._finished.set()
        self._call(self._on_unresponsive, self)
        self._call(self._on_done, self)

    def _finish(self, state: JobState, result: Result | None, error: JobError | None) -> None:
        with self._lock:
            if self.unresponsive:  # abandoned after Cancel: already reported as failed
                return
            self.result, self.error = result, error
            self.finished = time.time()
            if state is JobState.DONE:
                self.progress = 1.0
            self.state = state
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()  # give the memory of a finished/failed job back to other processes
        self._finished.set()
        self._call(self._on_done, self)


class _PrepareError(WorkbenchError):
    """Building the problem of a job failed (maps estimation, reading the slice, ...)."""


def _is_problem_factory(problem: Any) -> bool:
    # A Problem has measured data `y`; anything else callable is a zero-argument function that builds one.
    return callable(problem) and not hasattr(problem, "y")


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda" and (a.index is None or b.index is None):  # "cuda" means the current GPU
        current = torch.cuda.current_device()
        return (current if a.index is None else a.index) == (current if b.index is None else b.index)
    return a.index == b.index


def _problem_on_device(problem: Any, device: str) -> Any:
    """The problem with its tensors on ``device`` (moved with ``problem.to(device)`` when it lives elsewhere)."""
    current = getattr(problem, "device", None)
    if current is None or _same_device(torch.device(current), torch.device(device)):
        return problem
    mover = getattr(problem, "to", None)
    if not callable(mover):
        raise WorkbenchError(f"the problem is on {current} and cannot be moved to {device}")
    return mover(device)


def resolve_device(device: str | torch.device | None = "auto") -> str:
    """``"auto"``/None -> ``"cuda:0"`` when CUDA is available else ``"cpu"``; ``"cuda"`` -> ``"cuda:<current>"``.
    Raises WorkbenchError for a device this machine does not have."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise WorkbenchError(f"unknown device {device!r} ({exc})") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise WorkbenchError(f"device {device!r} requested, but no CUDA GPU is available")
        index = torch.cuda.current_device() if d.index is None else d.index
        if index >= torch.cuda.device_count():
            raise WorkbenchError(f"device {device!r} requested, but only {torch.cuda.device_count()} GPU(s) exist")
        return f"cuda:{index}"
    if d.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise WorkbenchError(f"device {device!r} requested, but MPS is not available")
    return str(d)


class _Worker(threading.Thread):
    def __init__(self, device: str, owner: "JobQueue"):
        super().__init__(name=f"workbench-jobs-{device}", daemon=True)
        self.device = device
        self.inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.current: Job | None = None
        self.retired = False  # its job was abandoned: a fresh worker took its inbox; exit after the job
        self._owner = owner

    def run(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            self.current = job
            try:
                job._execute(self._owner.progress_interval, self._owner.iterate_interval)
            except BaseException:  # never let one job end the worker
                log.exception("job %s: engine error", job.id)
            self.current = None
            if self.retired:
                return


def _work(problem: Any) -> int | None:
    """Coil-image elements of a problem (coils x grid), or None when it does not say."""
    try:
        h, w = problem.grid_shape
        return int(problem.n_coils) * int(h) * int(w)
    except (AttributeError, TypeError, ValueError):
        return None


class JobQueue:
    """Runs reconstruction jobs in the background, one at a time per device.

    Args:
        device: the default device of jobs: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda:1"``.
        progress_interval: least seconds between two ``on_progress`` calls of a job (not counting start/end).
        iterate_interval: least seconds between two ``on_iterate`` calls of a job.
        cancel_grace: seconds a running job has to answer Cancel before it is abandoned as unresponsive (see
            the module docstring; jobs of :meth:`run_sync` run on the caller's thread and are never abandoned).
        cpu_threads: intra-op threads of every CPU job (None: chosen per job, :func:`use_threads_for_job`);
            :func:`workbench.volume.reconstruct_volume` runs several slices at once with one thread each.
    """

    def __init__(self, device: str = "auto", *, progress_interval: float = 0.05, iterate_interval: float = 0.25,
                 cancel_grace: float = 5.0, cpu_threads: int | None = None):
        self.device = resolve_device(device)
        self.progress_interval = progress_interval
        self.iterate_interval = iterate_interval
        self.cancel_grace = cancel_grace
        self.cpu_threads = cpu_threads
        self.jobs: list[Job] = []
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _make_job(self, method: Method, problem: "Problem", params: Any, device: str | None,
                  on_progress, on_done, on_iterate) -> Job:
        dev = self.device if device is None else resolve_device(device)
        p = method.make_params(params)  # bad parameters fail here, in the caller, not later in a worker
        return Job(method, problem, p, dev, on_progress=on_progress, on_done=on_done, on_iterate=on_iterate,
                   cpu_threads=self.cpu_threads)

    def submit(
        self,
        method: Method,
        problem: "Problem",
        params: Any = None,
        device: str | None = None,
        on_progress: Callable[[Job], None] | None = None,
        on_done: Callable[[Job], None] | None = None,
        on_iterate: Callable[[Job, torch.Tensor], None] | None = None,
    ) -> Job:
        """Queue ``method`` on ``problem`` with ``params`` (None, a Params instance or a dict of values/strings)
        on ``device`` (default: the queue's). ``problem`` may also be a zero-argument function returning the
        Problem; it is then built on the worker thread (map estimation takes seconds), and a failure to build
        it fails the job. Raises ParamError for invalid parameters and WorkbenchError for
        an unavailable device; everything that goes wrong later is reported through the job.

        Callbacks, called on the worker thread: ``on_progress(job)`` when it starts and as it progresses,
        ``on_iterate(job, image)`` with intermediate CPU images, ``on_done(job)`` once in its final state.
        """
        job = self._make_job(method, problem, params, device, on_progress, on_done, on_iterate)
        job._cancel_grace, job._on_unresponsive = self.cancel_grace, self._replace_worker
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue has been shut down")
            worker = self._workers.get(job.device)
            if worker is None:
                worker = self._workers[job.device] = _Worker(job.device, self)
                worker.start()
            self.jobs.append(job)
            worker.inbox.put(job)
        return job

    def _replace_worker(self, job: Job) -> None:
        """``job`` was abandoned: retire its worker and hand the jobs queued behind it to a fresh one."""
        with self._lock:
            old = self._workers.get(job.device)
            if old is None or old.current is not job:
                return
            old.retired = True
            fresh = _Worker(job.device, self)
            while True:
                try:
                    fresh.inbox.put(old.inbox.get_nowait())
                except queue.Empty:
                    break
            if self._closed:
                del self._workers[job.device]
                return
            self._workers[job.device] = fresh
            fresh.start()

    def run_sync(self, method: Method, problem: "Problem", params: Any = None, device: str | None = None, *,
                 on_progress: Callable[[Job], None] | None = None,
                 on_iterate: Callable[[Job, torch.Tensor], None] | None = None) -> Job:
        """Run a job in the calling thread (the CLI) through the same code path as :meth:`submit` (arguments as
        there; no ``on_done``: the call returns the finished job: look at ``job.state``, ``job.result``,
        ``job.error``). Ctrl-C cancels it and re-raises."""
        job = self._make_job(method, problem, params, device, on_progress, None, on_iterate)
        with self._lock:  # clear_finished may rebuild the list on another thread (a volume's slices)
            self.jobs.append(job)
        job._execute(self.progress_interval, self.iterate_interval)
        return job

    def clear_finished(self) -> None:
        """Forget finished jobs (their results stay wherever the caller keeps them)."""
        with self._lock:
            self.jobs = [j for j in self.jobs if not j.done]

    def pending(self) -> list[Job]:
        """Jobs queued or running."""
        return [j for j in self.jobs if not j.done]

    def cancel_all(self) -> None:
        for job in list(self.jobs):
            job.cancel()

    def shutdown(self, wait: bool = True, *, cancel: bool = True, timeout: float | None = None) -> None:
        """Stop accepting jobs; cancel queued and running ones (``cancel``) and, with ``wait``, wait for the
        workers to finish (at most ``timeout`` seconds in all; a job ignoring Cancel is abandoned after
        ``cancel_grace`` seconds, so ``timeout=None`` returns too)."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        if cancel:
            self.cancel_all()
        for w in workers:
            w.inbox.put(None)
        if wait:  # a retired worker (its job abandoned) is not waited for: it may never return
            deadline = None if timeout is None else time.monotonic() + timeout
            for w in workers:
                while w.is_alive() and not w.retired:
                    left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                    if left <= 0:
                        break
                    w.join(left)

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
