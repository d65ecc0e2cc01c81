"""Whole volumes: one method over a range of a scan's slices, in one process, into one result file.

``workbench recon FILE --slice all`` (or ``3:10``, ``0,5,9``) and the app's "Run on volume" call
:func:`reconstruct_volume`. The slices run one after the other through the job engine's synchronous path (the
same code path as a single-slice ``recon``): one slice's k-space, coil maps and solver state are in memory at a
time, so the peak memory is one slice's, not the volume's; the process, its thread pool, FFT plans and weight
caches serve every slice. Each finished slice goes straight into the result file, which is written atomically
(:mod:`workbench.atomic`): a run that fails or is cancelled part-way leaves no file (and any previous file
with that name as it was).

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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from workbench.errors import CorruptFileError, ScanError, WorkbenchError

__all__ = ["VOLUME_FORMAT", "SliceRangeError", "VolumeCancelled", "SliceRecord", "VolumeResult", "parse_slices",
           "is_volume_spec", "reconstruct_volume", "load_volume"]

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
) -> VolumeResult:
    """Run ``method`` with ``params`` on each of ``slices`` of ``scan`` (the same ``sampling`` for every slice:
    None = the scan's own), one slice at a time, and write the images to ``out`` as they finish.

    ``on_progress(k, slice, job)``: the method's progress on the k-th slice (job: a :class:`workbench.jobs.Job`);
    ``on_slice(k, record, image)``: the k-th slice is done (``image`` complex64 ``[h, w]``). ``cancel`` (a
    ``threading.Event``) stops the run at the method's next cancellation check: :class:`VolumeCancelled` is
    raised and no file is written. A slice that fails raises WorkbenchError naming it (no file either).
    Coil maps are estimated per slice (``maps_method``); ``device``, ``dcf_method`` and
    ``remove_oversampling`` as for :meth:`workbench.problem.Problem.from_scan`."""
    from workbench.jobs import JobQueue, JobState
    from workbench.problem import Problem
    from workbench.scoring import ScoreError, score, volume_data_range

    slices = [int(s) for s in slices]
    if not slices:
        raise WorkbenchError("no slices to reconstruct")
    cancel = cancel or threading.Event()
    jobs = jobs or JobQueue(device, progress_interval=0.1)
    p = method.make_params(params)

    def progress(k: int, index: int, job: Any) -> None:
        if cancel.is_set():  # the job engine reports progress at least every iteration: Cancel lands there
            job.cancel()
        if on_progress is not None:
            on_progress(k, index, job)

    records: list[SliceRecord] = []
    mags, refs = [], []
    kept = mask = None
    used_params: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            sink = None
            for k, index in enumerate(slices):
                if cancel.is_set():
                    raise VolumeCancelled(f"{method.name}: cancelled before slice {index}")
                problem = Problem.from_scan(scan, index, sampling, device=device, maps_method=maps_method,
                                            dcf_method=dcf_method, remove_oversampling=remove_oversampling)
                if k == 0:  # the file is opened (and its name checked) before the first solve
                    shape = tuple(int(n) for n in problem.recon_shape)
                    if out is not None:
                        sink = stack.enter_context(_VolumeFile(os.fspath(out), len(slices), shape, inputs))
                    if keep_images:
                        kept = np.zeros((len(slices), *shape), np.complex64)
                    if problem.is_cartesian and getattr(problem, "mask", None) is not None:
                        mask = _numpy(problem.mask).astype(bool)
                job = jobs.run_sync(method, problem, p, device=device,
                                    on_progress=lambda j, k=k, index=index: progress(k, index, j))
                if job.state is JobState.CANCELLED or cancel.is_set():
                    raise VolumeCancelled(f"{method.name}: cancelled at slice {index}")
                if job.state is not JobState.DONE:
                    raise WorkbenchError(f"{method.name}: slice {index}: "
                                         f"{job.error.message if job.error else 'failed'}")
                result = job.result
                used_params = dict(result.params)
                image = _numpy(result.image).astype(np.complex64)
                metrics = None
                if problem.reference is not None:
                    reference = _numpy(problem.reference)
                    data_range, _ = volume_data_range(scan, reference)
                    try:
                        metrics = dict(score(reference, image, score_mode, data_range=data_range, problem=problem,
                                             image_is=(result.extras or {}).get("image_is")))
                        mags.append(np.abs(image))
                        refs.append((reference, data_range))
                    except ScoreError:
                        metrics = None
                record = SliceRecord(index, round(float(result.time_s), 4), dict(result.chosen),
                                     len(result.history), metrics)
                records.append(record)
                if sink is not None:
                    sink.write(k, image)
                if kept is not None:
                    kept[k] = image
                del problem, job, result  # one slice's data at a time: the queue forgets the finished job (it
                jobs.clear_finished()     # holds its Problem), and the collector frees what cycles kept
                gc.collect()
                if on_slice is not None:
                    on_slice(k, record, image)
            volume = VolumeResult(method.name, method.version, used_params, slices, records,
                                  _volume_metrics(mags, refs, len(slices), score_mode), time.perf_counter() - t0,
                                  os.fspath(out) if out is not None else None, kept, dict(provenance or {}))
            if sink is not None:
                sink.finish(slices, dict(volume.to_json_summary(), format=VOLUME_FORMAT, score_mode=score_mode,
                                         format_version=VOLUME_FORMAT_VERSION, workbench_version=_version()), mask)
    except KeyboardInterrupt:
        raise VolumeCancelled(f"{method.name}: interrupted") from None
    return volume


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
