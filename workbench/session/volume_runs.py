"""The app's "Run on volume": one method over the open scan's slices as ONE background job, headless.

A :class:`VolumeRun` follows :func:`workbench.volume.reconstruct_volume` on its own thread: state, progress
(which slice, the method's progress within it), the finished slices' images (viewable slice by slice while the
rest run), per-slice scores, the result file (optional, written atomically: a cancelled or failed run leaves
none) and Cancel. :class:`VolumeRuns` starts them and tells observers (``on_change(run)``, through ``post`` so
that a GUI gets the calls on its own thread). Nothing here imports Qt or the session facade: the app's window
gives the values (scan, method, parameters, sampling, device).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from workbench.volume import VolumeCancelled, reconstruct_volume

__all__ = ["VolumeRun", "VolumeRuns"]


class VolumeRun:
    """One volume job. Read its attributes from any thread; only its worker thread changes them.

    Attributes: ``id``, ``label``, ``method`` (name), ``slices`` (scan indices, in order), ``state`` ("queued",
    "running", "done", "failed", "cancelled"), ``progress`` in [0, 1] over the whole volume, ``progress_text``,
    ``current`` (the slice running, or None), ``records`` (one :class:`workbench.volume.SliceRecord` per finished
    slice), ``metrics`` (the volume's, when done), ``error``, ``path`` (the result file, None for none),
    ``started`` / ``finished`` (``time.time()``), ``pixel_aspect`` (the scan's: how tall a view draws a pixel)."""

    def __init__(self, run_id: int, method: Any, slices: Sequence[int], path: str | None):
        self.id = run_id
        self.method = method.name
        self.label = f"{method.name} on {len(slices)} slice{'s' if len(slices) != 1 else ''}"
        self.slices = [int(s) for s in slices]
        self.state = "queued"
        self.progress = 0.0
        self.progress_text = ""
        self.current: int | None = None
        self.records: list[Any] = []
        self.metrics: dict[str, float] | None = None
        self.error: str | None = None
        self.path = path
        self.pixel_aspect = 1.0
        self.started: float | None = None
        self.finished: float | None = None
        self._images: dict[int, np.ndarray] = {}
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def done_slices(self) -> list[int]:
        """The scan indices of the slices finished so far."""
        return [r.slice for r in self.records]

    def image(self, slice_index: int) -> np.ndarray | None:
        """The complex64 ``[h, w]`` image of a finished slice (None while it is not done)."""
        return self._images.get(int(slice_index))

    def cancel(self) -> None:
        """Stop at the method's next progress report; the result file is not written."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has finished (True) or ``timeout`` seconds passed."""
        if self._thread is None:
            return not self.active
        self._thread.join(timeout)
        return not self._thread.is_alive()


class VolumeRuns:
    """Starts volume runs on their own threads and reports their changes.

    Args:
        post: ``fn(callable)`` that runs ``callable`` on the observers' thread (a GUI queues it); default: calls it.
        on_change: ``fn(run)`` after every change of a run (start, progress, a finished slice, the end).
    """

    def __init__(self, post: Callable[[Callable[[], None]], None] | None = None,
                 on_change: Callable[[VolumeRun], None] | None = None):
        self.post = post or (lambda fn: fn())
        self.on_change = on_change
        self.runs: list[VolumeRun] = []
        self._next = 1
        self._closed = False

    def _changed(self, run: VolumeRun) -> None:
        if self.on_change is not None and not self._closed:
            self.post(lambda: self.on_change(run) if not self._closed else None)

    def start(self, scan: Any, method: Any, params: Any = None, slices: Sequence[int] | None = None, *,
              sampling: Any = None, device: str = "cpu", path: str | None = None, dcf_method: str | None = None,
              score_mode: str = "fastmri") -> VolumeRun:
        """Run ``method`` with ``params`` (validated now: ``ParamError``) on ``slices`` (default: all) of ``scan``
        with the same ``sampling`` (None: the scan's own) in the background; returns the run at once."""
        method.make_params(params)  # bad parameters fail here, in the caller
        slices = list(range(scan.n_slices)) if slices is None else [int(s) for s in slices]
        run = VolumeRun(self._next, method, slices, path)
        run.pixel_aspect = float(getattr(scan, "pixel_aspect", 1.0))
        self._next += 1
        self.runs.append(run)
        n = len(slices)

        in_flight: dict[int, float] = {}  # k -> its method's progress (several slices run at once on a CPU)
        # progress comes from the slices' worker threads, finished slices on the run's thread: one at a time, so
        # that the progress never moves back (a stale maximum written after a newer one) and the observers see
        # the changes in the order they were made
        changing = threading.Lock()

        def overall() -> float:  # never moves back: a slice may start after another slice's progress was shown
            return max(run.progress, (len(run.records) + sum(in_flight.values())) / n)

        def progress(k: int, index: int, job: Any) -> None:
            fraction = min(float(job.progress), 1.0)
            with changing:
                in_flight[k] = fraction
                run.current = index
                run.progress = overall()
                run.progress_text = f"slice {index} ({k + 1}/{n}) {100 * fraction:.0f}%"
                self._changed(run)

        def slice_done(k: int, record: Any, image: np.ndarray) -> None:
            with changing:
                run._images[record.slice] = image
                run.records.append(record)
                in_flight.pop(k, None)
                run.progress = overall()
                self._changed(run)

        def work() -> None:
            run.state, run.started = "running", time.time()
            self._changed(run)
            try:
                volume = reconstruct_volume(scan, slices, method, params, sampling=sampling, device=device,
                                            dcf_method=dcf_method, score_mode=score_mode, out=path,
                                            inputs=(getattr(scan, "path", None),), cancel=run._cancel,
                                            on_progress=progress, on_slice=slice_done,
                                            provenance={"scan": getattr(scan, "path", None), "slices": slices,
                                                        "app": "Run on volume"})
                run.metrics, run.state = volume.metrics, "done"
            except VolumeCancelled:
                run.state = "cancelled"
            except Exception as exc:  # noqa: BLE001  (a failed run is reported, never raised into the GUI)
                run.state, run.error = "failed", str(exc)
            run.current, run.finished = None, time.time()
            run.progress_text = "" if run.state != "done" else f"{n} slices"
            self._changed(run)

        run._thread = threading.Thread(target=work, name=f"workbench-volume-{run.id}", daemon=True)
        run._thread.start()
        return run

    def cancel_all(self) -> None:
        for run in self.runs:
            if run.active:
                run.cancel()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every run and wait up to ``timeout`` seconds in all; later changes are not reported."""
        self.cancel_all()
        self._closed = True
        deadline = time.monotonic() + timeout
        for run in self.runs:
            run.wait(max(0.0, deadline - time.monotonic()))
