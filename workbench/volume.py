"""Whole volumes: one method over a range of a scan's slices, in one process, into one result file.

``workbench recon FILE --slice all`` (or ``3:10``, ``0,5,9``) and the app's "Run on volume" call
:func:`reconstruct_volume`. Each slice runs through the job engine's synchronous path (the same code path as a
single-slice ``recon``). On the CPU, as many slices run at once as a job may use cores
(:func:`default_workers`), each on one intra-op thread: a solver's own parallelism is partial (a 16-coil
320x368 CG-SENSE slice: 1.1 s with two threads, 1.3 s with one), two slices side by side share nothing. The
k-space, coil maps and solver state of the slices in flight are in memory at a time, so the peak memory is
that of ``workers`` slices, not the volume's; the process, FFT plans and weight caches serve every slice. Each
finished slice goes into the result file in slice order, which is written atomically (:mod:`workbench.atomic`):
a run that fails or is cancelled part-way leaves no file (and any previous file with that name as it was).

Slice specifications (:func:`parse_slices`): ``all``; ``N``; ``A:B`` (slices A to B-1, as Python slices;
``A:`` and ``:B`` too, and an optional ``:STEP``); ``A,B,C``. A specification outside the scan is a
:class:`SliceRangeError` naming the file.

Result files (by the name's ending):

- ``.nii`` / ``.nii.gz``: the magnitude stack ``[S, h, w]`` as NIfTI (:func:`workbench.io.writers.write_nifti`);
- ``.npy``: the complex64 stack ``[S, h, w]``;
- anything else: an HDF5 volume result (:func:`load_volume` reads it)::

    /image    complex64 [S, h, w]   (one chunk per slice, written as each slice finishes)
    /slices   int32 [S]             (the scan's slice index of each image)
    /mask     uint8 [H, W]          (a Cartesian sampling, the same for every slice)
    /meta     JSON text: format, method, version, params, per-slice records (time, chosen weights,
              iterations, metrics), the volume's metrics, provenance (scan, sampling, command)
    attributes  format = "mri-workbench-volume", format_version, method, version
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from workbench.errors import CorruptFileError, ScanError, WorkbenchError

__all__ = ["VOLUME_FORMAT", "SliceRangeError", "VolumeCancelled", "SliceRecord", "VolumeResult", "parse_slices",
           "is_volume_spec", "default_workers", "reconstruct_volume", "load_volume"]

VOLUME_FORMAT = "mri-workbench-volume"
VOLUME_FORMAT_VERSION = 1


class SliceRangeError(ScanError):
    """A slice specification that does not fit the scan (names the file)."""


class VolumeCancelled(WorkbenchError):
    """The volume run was cancelled; no result file was written."""


def is_volume_spec(spec: str | int | None) -> bool:
    """Whether ``spec`` asks for several slices (``all``, a range or a list) rather than one index."""
    return isinstance(spec, str) and (spec.strip().lower() == "all" or ":" in spec or "," in spec)


def parse_slices(spec: str | int, n_slices: int, path: str | os.PathLike | None = None) -> list[int]:
    """The slice indices ``spec`` names in a scan of ``n_slices`` slices (see the module docstring)."""
    text = str(spec).strip().lower()
    span = f"the scan has {n_slices} slice{'s' if n_slices != 1 else ''}: 0..{n_slices - 1}"

    def index(part: str, default: int | None = None) -> int:
        part = part.strip()
        if not part and default is not None:
            return default
        try:
            return int(part)
        except ValueError:
            raise SliceRangeError(path, f"slice specification {spec!r}: {part!r} is not a slice number (use "
                                        f"all, N, A:B or A,B,C; {span})") from None

    if text == "all":
        return list(range(n_slices))
    if ":" in text:
        parts = text.split(":")
        if len(parts) > 3:
            raise SliceRangeError(path, f"slice specification {spec!r}: expected A:B or A:B:STEP ({span})")
        start, stop = index(parts[0], 0), index(parts[1], n_slices)
        step = index(parts[2], 1) if len(parts) == 3 else 1
        if step < 1:
            raise SliceRangeError(path, f"slice specification {spec!r}: the step must be at least 1")
        if not 0 <= start < stop <= n_slices:
            raise SliceRangeError(path, f"slice range {spec!r} is empty or out of range ({span}; A:B means A "
                                        f"to B-1)")
        return list(range(start, stop, step))
    chosen = [index(p) for p in text.split(",")]
    bad = [i for i in chosen if not 0 <= i < n_slices]
    if bad:
        raise SliceRangeError(path, f"slice {bad[0]} is out of range ({span})")
    if len(set(chosen)) != len(chosen):
        raise SliceRangeError(path, f"slice specification {spec!r} names a slice twice")
    return chosen


@dataclass
class SliceRecord:
    """What one slice of a volume run gave: its index in the scan, the method's time and chosen weights, the
    iterations it ran and its metrics against the slice's reference (None without one)."""

    slice: int
    time_s: float
    chosen: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0
    metrics: dict[str, float] | None = None


@dataclass
class VolumeResult:
    """A finished volume run: the slices, one :class:`SliceRecord` each, the fastMRI volume metrics (PSNR over
    the volume with its data range, SSIM averaged over slices) when every slice has a reference, the file
    written (None without ``out``) and, with ``keep_images``, the images ``[S, h, w]`` complex64."""

    method: str
    version: str
    params: dict[str, Any]
    slices: list[int]
    records: list[SliceRecord]
    metrics: dict[str, float] | None
    time_s: float
    path: str | None = None
    images: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json_summary(self) -> dict[str, Any]:
        return {"method": self.method, "version": self.version, "params": self.params, "slices": self.slices,
                "time_s": round(self.time_s, 3), "metrics": self.metrics, "out": self.path,
                "per_slice": [asdict(r) for r in self.records], "provenance": self.provenance}


# ---------------------------------------------------------------------------------------------------------
# the result file
class _VolumeFile:
    """The result file, written as slices finish: HDF5 rows one at a time; NIfTI / .npy stacks at the end."""

    def __init__(self, path: str, n: int, shape: tuple[int, int], inputs: Iterable[Any]):
        self.path, self.n, self.shape, self.inputs = path, n, shape, tuple(inputs)
        name = path.lower()
        self.kind = "nifti" if name.endswith((".nii", ".nii.gz")) else "npy" if name.endswith(".npy") else "hdf5"
        self._stack: np.ndarray | None = None
        self._h5: Any = None
        self._open = contextlib.ExitStack()

    def __enter__(self) -> "_VolumeFile":
        from workbench.atomic import atomic_path, refuse_overwrite

        refuse_overwrite(self.path, self.inputs)
        if self.kind != "hdf5":
            self._stack = np.zeros((self.n, *self.shape), np.complex64)
            return self
        import h5py

        with contextlib.ExitStack() as opening:
            tmp = opening.enter_context(atomic_path(self.path, inputs=self.inputs))
            self._h5 = opening.enter_context(h5py.File(tmp, "w"))  # closed before the rename (last in, first out)
            self._h5.create_dataset("image", shape=(self.n, *self.shape), dtype=np.complex64, chunks=(1, *self.shape))
            self._open = opening.pop_all()
        return self

    def write(self, k: int, image: np.ndarray) -> None:
        if self._h5 is not None:
            self._h5["image"][k] = image
        else:
            self._stack[k] = image

    def finish(self, slices: Sequence[int], meta: dict[str, Any], mask: np.ndarray | None) -> None:
        """Complete the file (called once every slice is written; leaving the block then renames it)."""
        if self.kind == "hdf5":
            f = self._h5
            f.attrs["format"], f.attrs["format_version"] = VOLUME_FORMAT, VOLUME_FORMAT_VERSION
            f.attrs["method"], f.attrs["version"] = meta["method"], meta["version"]
            f.create_dataset("slices", data=np.asarray(slices, np.int32))
            if mask is not None:
                f.create_dataset("mask", data=np.asarray(mask, np.uint8), compression="gzip")
            f.create_dataset("meta", data=json.dumps(meta, default=str))
        elif self.kind == "nifti":
            from workbench.io.writers import write_nifti

            write_nifti(self.path, self._stack, description=f"{meta['method']} slices {slices[0]}..{slices[-1]}",
                        inputs=self.inputs)
        else:
            from workbench.atomic import atomic_path

            with atomic_path(self.path, inputs=self.inputs) as tmp, open(tmp, "wb") as fh:
                np.save(fh, self._stack)

    def __exit__(self, *exc: Any) -> Any:
        # renames the finished file, or removes it when the run failed or was cancelled
        return self._open.__exit__(*exc)


def load_volume(path: str | os.PathLike) -> dict[str, Any]:
    """Read an HDF5 volume result: ``{"image": complex64 [S, h, w], "slices": [S], "mask": [H, W] bool or None,
    "meta": dict}``. Raises CorruptFileError when the file is not one."""
    import h5py

    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(path, f"cannot open as HDF5 ({exc})") from exc
    with f:
        if f.attrs.get("format") != VOLUME_FORMAT or not {"image", "slices", "meta"} <= set(f.keys()):
            raise CorruptFileError(path, "not a workbench volume result (no 'image'/'slices'/'meta' or wrong "
                                         "format tag)")
        if int(f.attrs.get("format_version", 0)) > VOLUME_FORMAT_VERSION:
            raise CorruptFileError(path, "volume result format is newer than this workbench supports")
        raw = f["meta"][()]
        return {"image": np.asarray(f["image"][()]), "slices": [int(s) for s in f["slices"][()]],
                "mask": np.asarray(f["mask"][()], bool) if "mask" in f else None,
                "meta": json.loads(raw.decode() if isinstance(raw, bytes) else raw)}


# ---------------------------------------------------------------------------------------------------------
def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def default_workers(device: str, n_slices: int) -> int:
    """Slices a volume run solves at once: on the CPU one per core a job may use now
    (:func:`workbench.threads.cores_for_job`: ``WORKBENCH_THREADS``, the affinity set, a probe for a core held by
    another process), each with one intra-op thread; on a GPU one. Never more than the slices.

    Why: a solver's intra-op parallelism is partial (a 16-coil 320x368 CG-SENSE slice takes 1.1 s with two
    threads against 1.3 s with one on 2 cores: every small elementwise pass and the Python between the
    operations run serially), while two slices side by side share nothing."""
    import torch

    if n_slices < 2 or torch.device(device).type != "cpu":
        return 1
    from workbench.threads import cores_for_job

    return max(1, min(cores_for_job(), n_slices))


@dataclass
class _Solved:
    record: SliceRecord
    image: np.ndarray
    scored: tuple[np.ndarray, np.ndarray, float] | None  # magnitude, reference, data range
    params: dict[str, Any]  # the params the method reports (the volume's are the last slice's)


def reconstruct_volume(
    scan: Any,
    slices: Sequence[int],
    method: Any,
    params: Any = None,
    *,
    sampling: Any = None,
    device: str = "cpu",
    maps_method: str = "espirit",
    dcf_method: str | None = None,
    remove_oversampling: bool = True,
    score_mode: str = "fastmri",
    out: str | os.PathLike | None = None,
    inputs: Iterable[Any] = (),
    provenance: dict[str, Any] | None = None,
    keep_images: bool = False,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int, Any], None] | None = None,
    on_slice: Callable[[int, SliceRecord, np.ndarray], None] | None = None,
    jobs: Any = None,
    workers: int | None = None,
) -> VolumeResult:
    """Run ``method`` with ``params`` on each of ``slices`` of ``scan`` (the same ``sampling`` for every slice:
    None = the scan's own), ``workers`` slices at a time (None: :func:`default_workers`), and write the images
    to ``out`` in slice order as they finish.

    ``on_progress(k, slice, job)``: the method's progress on the k-th slice (job: a :class:`workbench.jobs.Job`;
    with several workers the calls of slices in flight interleave, one call at a time); ``on_slice(k, record,
    image)``: the k-th slice is done (``image`` complex64 ``[h, w]``; called in order, on the calling thread,
    never during an ``on_progress`` call).
    ``cancel`` (a ``threading.Event``) stops the run at the method's next cancellation check:
    :class:`VolumeCancelled` is raised and no file is written. A slice that fails raises WorkbenchError naming
    it (no file either). Coil maps are estimated per slice (``maps_method``); ``device``, ``dcf_method`` and
    ``remove_oversampling`` as for :meth:`workbench.problem.Problem.from_scan`. Peak memory: ``workers``
    slices' data, maps and solver state (plus up to ``workers`` finished images waiting for their turn).
    ``jobs``: the :class:`workbench.jobs.JobQueue` whose synchronous path runs each slice (default: one of the
    run's own, ``cpu_threads=1`` with several workers; a queue given with ``cpu_threads=None`` lets each slice
    take every core, ``workers`` times over). ``params`` of the result: those the last slice's method reports.
    With several workers a slice that fails stops the slices in flight beside it, and the run raises that
    slice's error (not the "cancelled" of the slices it stopped)."""
    from workbench.jobs import JobQueue

    slices = [int(s) for s in slices]
    if not slices:
        raise WorkbenchError("no slices to reconstruct")
    cancel = cancel or threading.Event()
    workers = default_workers(device, len(slices)) if workers is None else max(1, min(int(workers), len(slices)))
    parallel = workers > 1
    if jobs is None:  # several slices at once: one intra-op thread each (jobs.JobQueue cpu_threads)
        jobs = JobQueue(device, progress_interval=0.1, cpu_threads=1 if parallel else None)
    p = method.make_params(params)
    halt = threading.Event()  # a slice failed: the others stop at their next progress report
    report = threading.RLock()  # on_progress and on_slice one call at a time

    def progress(k: int, index: int, job: Any) -> None:
        if cancel.is_set() or halt.is_set():  # the job engine reports progress at least every iteration
            job.cancel()
        if on_progress is not None:
            with report:
                on_progress(k, index, job)

    solve = _SliceSolver(scan, method, p, jobs, progress, cancel, halt, device=device, sampling=sampling,
                         maps_method=maps_method, dcf_method=dcf_method, remove_oversampling=remove_oversampling,
                         score_mode=score_mode)
    records: list[SliceRecord] = []
    mags, refs = [], []
    kept = mask = None
    t0 = time.perf_counter()
    threads_before = None
    try:
        with contextlib.ExitStack() as stack:
            sink = None
            if cancel.is_set():
                raise VolumeCancelled(f"{method.name}: cancelled before slice {slices[0]}")
            first = solve.prepare(slices[0])
            # the file is opened (and its name checked) before the first solve
            shape = tuple(int(n) for n in first.recon_shape)
            if out is not None:
                sink = stack.enter_context(_VolumeFile(os.fspath(out), len(slices), shape, inputs))
            if keep_images:
                kept = np.zeros((len(slices), *shape), np.complex64)
            if first.is_cartesian and getattr(first, "mask", None) is not None:
                mask = _numpy(first.mask).astype(bool)
            if parallel:  # each slice thread sets one thread, which also becomes torch's default: restored below
                import torch

                threads_before = torch.get_num_threads()
            started: list[threading.Thread] = []
            stack.callback(_join, started)  # the slices in flight end (stopped by halt) before the run returns
            stack.callback(halt.set)  # runs first: a failure, Cancel or Ctrl-C stops the others
            queued = deque()

            def submit(k: int) -> None:
                if parallel:
                    running = _SliceThread(solve, k, slices[k])
                    started[:] = [t for t in started if t.is_alive()] + [running.thread]
                    queued.append(running)
                else:
                    queued.append(_Ready(solve, k, slices[k]))

            solve.prepared[0], first = first, None  # handed over: the solver drops it once solved
            for k in range(min(workers, len(slices))):
                submit(k)
            for k in range(len(slices)):
                try:
                    done: _Solved = queued.popleft().result()
                except VolumeCancelled:
                    # a slice stopped because another one failed (halt): the run fails with that slice's error
                    if solve.failure is not None and not cancel.is_set():
                        raise solve.failure from None
                    raise
                if k + workers < len(slices):
                    submit(k + workers)
                records.append(done.record)
                if done.scored is not None:
                    mags.append(done.scored[0])
                    refs.append(done.scored[1:])
                if sink is not None:
                    sink.write(k, done.image)
                if kept is not None:
                    kept[k] = done.image
                if on_slice is not None:
                    with report:  # not in the middle of an on_progress call (both may write one terminal line)
                        on_slice(k, done.record, done.image)
                used_params = done.params
            volume = VolumeResult(method.name, method.version, used_params, slices, records,
                                  _volume_metrics(mags, refs, len(slices), score_mode), time.perf_counter() - t0,
                                  os.fspath(out) if out is not None else None, kept, dict(provenance or {}))
            if sink is not None:
                sink.finish(slices, dict(volume.to_json_summary(), format=VOLUME_FORMAT, score_mode=score_mode,
                                         format_version=VOLUME_FORMAT_VERSION, workbench_version=_version(),
                                         workers=workers), mask)
    except KeyboardInterrupt:
        raise VolumeCancelled(f"{method.name}: interrupted") from None
    finally:
        if threads_before is not None:
            import torch

            torch.set_num_threads(threads_before)
    return volume


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


class _SliceThread:
    """A slice solved on a thread of its own, with one intra-op thread. A daemon thread, as the job engine's
    workers: a method that ignores Cancel keeps neither the app from quitting nor a second Ctrl-C from ending
    the command (a ThreadPoolExecutor's threads are joined when the interpreter exits)."""

    def __init__(self, fn: Callable[..., _Solved], *args: Any):
        self._done = threading.Event()
        self._value: _Solved | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), name="workbench-volume-slice",
                                       daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., _Solved], *args: Any) -> None:
        import torch

        try:
            torch.set_num_threads(1)
            self._value = fn(*args)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> _Solved:
        self._done.wait()
        if self._error is not None:
            raise self._error
        value, self._value = self._value, None
        return value


class _Ready:
    """A slice solved when its result is asked for (the one-worker path: no thread)."""

    def __init__(self, fn: Callable[..., _Solved], *args: Any):
        self.fn, self.args = fn, args

    def result(self) -> _Solved:
        return self.fn(*self.args)


class _SliceSolver:
    """One slice of a volume run from the scan to a scored image; called on a worker thread of the run."""

    def __init__(self, scan: Any, method: Any, params: Any, jobs: Any, progress: Callable[[int, int, Any], None],
                 cancel: threading.Event, halt: threading.Event, *, device: str, sampling: Any, maps_method: str,
                 dcf_method: str | None, remove_oversampling: bool, score_mode: str):
        self.scan, self.method, self.params, self.jobs, self.progress = scan, method, params, jobs, progress
        self.cancel, self.halt, self.device, self.sampling = cancel, halt, device, sampling
        self.maps_method, self.dcf_method, self.remove_oversampling = maps_method, dcf_method, remove_oversampling
        self.score_mode = score_mode
        self.prepared: dict[int, Any] = {}  # k -> a Problem made before the run started (the first slice's)
        self.failure: BaseException | None = None  # the first slice that failed (not one stopped by it)
        self._failure_lock = threading.Lock()

    def prepare(self, index: int) -> Any:
        from workbench.problem import Problem

        return Problem.from_scan(self.scan, index, self.sampling, device=self.device, maps_method=self.maps_method,
                                 dcf_method=self.dcf_method, remove_oversampling=self.remove_oversampling)

    def __call__(self, k: int, index: int) -> _Solved:
        try:
            return self._solve(k, index)
        except VolumeCancelled:
            raise
        except BaseException as exc:  # the slices in flight beside this one stop at their next progress report
            with self._failure_lock:
                if self.failure is None:
                    self.failure = exc
            self.halt.set()
            raise

    def _solve(self, k: int, index: int) -> _Solved:
        from workbench.jobs import JobState
        from workbench.scoring import ScoreError, score, volume_data_range
        from workbench.weight_store import suspend_writes

        name = self.method.name
        problem = self.prepared.pop(k, None)
        if self.cancel.is_set() or self.halt.is_set():
            raise VolumeCancelled(f"{name}: cancelled before slice {index}")
        if problem is None:
            problem = self.prepare(index)
        with suspend_writes():  # a weight per slice would push every other entry out of the store
            job = self.jobs.run_sync(self.method, problem, self.params, device=self.device,
                                     on_progress=lambda j: self.progress(k, index, j))
        if job.state is JobState.CANCELLED or self.cancel.is_set():
            raise VolumeCancelled(f"{name}: cancelled at slice {index}")
        if job.state is not JobState.DONE:
            raise WorkbenchError(f"{name}: slice {index}: {job.error.message if job.error else 'failed'}")
        result = job.result
        used_params = dict(result.params)
        image = _numpy(result.image).astype(np.complex64)
        metrics = scored = None
        if problem.reference is not None:
            reference = _numpy(problem.reference)
            data_range, _ = volume_data_range(self.scan, reference)
            try:
                metrics = dict(score(reference, image, self.score_mode, data_range=data_range, problem=problem,
                                     image_is=(result.extras or {}).get("image_is")))
                scored = (np.abs(image), reference, data_range)
            except ScoreError:
                metrics = None
        record = SliceRecord(index, round(float(result.time_s), 4), dict(result.chosen), len(result.history),
                             metrics)
        del problem, job, result  # one slice's data at a time per worker: the queue forgets the finished job (it
        self.jobs.clear_finished()  # holds its Problem), and the collector frees what cycles kept
        gc.collect()
        return _Solved(record, image, scored, used_params)


def _version() -> str:
    from workbench import __version__

    return __version__


def _volume_metrics(mags: list[np.ndarray], refs: list[tuple[np.ndarray, float]], n: int, mode: str
                    ) -> dict[str, float] | None:
    """fastMRI's volume figures (PSNR and NMSE over the stack, SSIM averaged over slices) in the fastmri mode,
    when every slice was scored (None otherwise: the per-slice records hold each slice's)."""
    if len(mags) != n or mode != "fastmri":
        return None
    from workbench.scoring import evaluate

    data_range = max(dr for _, dr in refs)
    ref = np.stack([r for r, _ in refs]).astype(np.float32)
    m = evaluate(ref, np.stack(mags), data_range=data_range)
    return {k: float(v) if math.isfinite(v) else v for k, v in m.items()}
