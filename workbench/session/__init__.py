"""The session: the state the desktop app shows and edits, as plain Python (no Qt).

A :class:`Session` holds the open :class:`~workbench.scan.Scan`, the slice and coil being looked at, the current
sampling (:class:`SamplingState`: a generated mask / trajectory with its recipe, or a hand-drawn mask with its
undo/redo history), the derived zero-filled image and its metrics against the reference, and the list of
reconstruction results (:class:`ResultEntry`). Views observe it with :meth:`Session.subscribe` and change it only
through its methods, so every computation the app shows happens here and is testable headless.

The facade (:mod:`.facade`) delegates to headless parts that are given values and never import it:

- :mod:`.views`: the slice's k-space, hybrid and coil images, full image, reference and its scores; the
  zero-filled image, metrics and PSF of a sampling (:mod:`workbench.scoring` computes the scores);
- :mod:`.sampling_state`: recipes, the :class:`SamplingState` built from one, the current one;
- :mod:`.mask_editor`: hand-drawn mask edits with undo / redo;
- :mod:`.runs`: result entries and sweeps, following their jobs on :class:`workbench.jobs.JobQueue`;
- :mod:`.project`: project files (JSON + ``.npz`` sidecar).

Events (``session.subscribe(name, fn)``; ``fn`` receives the arguments listed):

- ``"scan"`` ``(scan)``: a new scan was opened (everything changed).
- ``"slice"`` ``(slice_index, coil_index)``: the slice or coil changed.
- ``"sampling"`` ``(sampling_state)``: the mask / trajectory changed (zero-filled image and metrics too).
- ``"results"`` ``(results)``: results were added or removed.
- ``"result"`` ``(entry)``: one result changed (state, progress, image arrived).
- ``"sweep"`` ``(sweep)``: a point of an acceleration sweep arrived.

Job callbacks arrive on worker threads; the session hands them to ``dispatch`` (default: call at once), which a
GUI replaces with a function that queues the call on its own thread, so observers always run on one thread.
"""

from workbench.arrays import fit_shape
from workbench.scoring import CALIBRATED_ERROR_PER_STD, CALIBRATION_LEVEL, region_stats
from workbench.session.facade import EVENTS, Session
from workbench.session.project import PROJECT_FORMAT, PROJECT_VERSION
from workbench.session.runs import ZERO_FILLED_LABEL, ResultEntry, Sweep
from workbench.session.sampling_state import ACQUIRED, USER, SamplingState

__all__ = [
    "Session", "SamplingState", "ResultEntry", "Sweep", "EVENTS", "ACQUIRED", "USER", "ZERO_FILLED_LABEL",
    "PROJECT_FORMAT", "PROJECT_VERSION", "CALIBRATED_ERROR_PER_STD", "CALIBRATION_LEVEL", "fit_shape",
    "region_stats",
]
