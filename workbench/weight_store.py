"""Automatic weights remembered across commands: the same scan, mask and settings skip the weight search.

:func:`workbench.toolkit.solve_with_weight` keeps the weights it chose in memory (the app's Run again, a sweep
of ``n_iter``). A command of the CLI is a fresh process (a fresh child of the resident command server), so that
memory dies with it; this store keeps the same entry on disk, so a user re-running a command on a scan and mask
(another score mode, ``--out``, another ``n_iter``) gets the weight and the search's image that the first run
chose, and the same image as a run that had searched. On the real 1-coil phantom that is 0.5 s of a 1.1 s
l1-wavelet command.

One entry per key (a digest of the data, coil maps, mask or trajectory, density compensation, the method's
settings and the code of the workbench: any edit or upgrade starts afresh): ``<key>.json`` (the weight, the
search trace, the ``chosen`` record) and ``<key>.npy`` (the search's image, complex64, when it is at most
:data:`MAX_IMAGE_BYTES`). They live in ``<cache>/weights`` (:func:`workbench.paths.cache_dir`; the folder is
private to the user: the images derive from the user's scans), at most :data:`MAX_ENTRIES` entries, the least
recently used removed first. Entries are written atomically and read defensively: a file that is not what this
module wrote (wrong type, shape, size) is ignored, never trusted; the store never fails a run.

``WORKBENCH_WEIGHT_STORE=0`` turns it off (the test suite does); ``WORKBENCH_WEIGHT_STORE=/a/folder`` moves it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_ENTRIES", "MAX_IMAGE_BYTES", "WeightStore", "default_store"]

MAX_ENTRIES = 32
MAX_IMAGE_BYTES = 16 << 20
MAX_JSON_BYTES = 1 << 20
_FORMAT = "mri-workbench-weight/1"


class WeightStore:
    """Chosen weights on disk, keyed by a hex digest (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, max_entries: int = MAX_ENTRIES):
        self.folder = Path(folder)
        self.max_entries = max_entries

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not key.isalnum():  # a digest; never a path
            raise ValueError(f"weight store key {key!r} is not a hex digest")
        return self.folder / f"{key}.json", self.folder / f"{key}.npy"

    def get(self, key: str, image_shape: tuple[int, ...]) -> tuple[float, list, dict, np.ndarray | None] | None:
        """``(lam, search trace, chosen, search image or None)`` stored under ``key``, or None (also for an entry
        that is damaged or whose image is not complex64 of ``image_shape``)."""
        meta_path, image_path = self._paths(key)
        try:
            if meta_path.stat().st_size > MAX_JSON_BYTES:
                return None
            meta = json.loads(meta_path.read_text())
            lam, trace, chosen = float(meta["lam"]), meta["trace"], meta["chosen"]
            if meta.get("format") != _FORMAT or not math.isfinite(lam) or not isinstance(trace, list) \
                    or not isinstance(chosen, dict):
                return None
            image = None
            if meta.get("image"):
                if image_path.stat().st_size > MAX_IMAGE_BYTES + 4096:
                    return None
                image = np.load(image_path, allow_pickle=False)
                if image.dtype != np.complex64 or tuple(image.shape) != tuple(image_shape) \
                        or not np.isfinite(image).all():
                    return None
            os.utime(meta_path)  # recently used
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            return None
        return lam, trace, chosen, image

    def put(self, key: str, lam: float, trace: list, chosen: dict, image: np.ndarray | None) -> None:
        """Store an entry (atomically: the image first, then the record that points at it); errors are ignored."""
        meta_path, image_path = self._paths(key)
        keep_image = image is not None and image.nbytes <= MAX_IMAGE_BYTES
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if keep_image:
                self._write(image_path, lambda fh: np.save(fh, np.ascontiguousarray(image, np.complex64)))
            record = {"format": _FORMAT, "lam": float(lam), "trace": trace, "chosen": chosen, "image": keep_image}
            text = json.dumps(record, default=_plain).encode()
            self._write(meta_path, lambda fh: fh.write(text))
            self._evict()
        except (OSError, TypeError, ValueError):
            pass

    def _write(self, path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=path.suffix)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _evict(self) -> None:
        records = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in records[: max(0, len(records) - self.max_entries)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".npy").unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """JSON for the numbers of a ``chosen`` record (numpy and torch scalars)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def default_store() -> WeightStore | None:
    """The user's store (``WORKBENCH_WEIGHT_STORE``: ``0`` = none, a folder, else ``<cache>/weights``), or None
    when it is turned off."""
    setting = os.environ.get("WORKBENCH_WEIGHT_STORE", "").strip()
    if setting.lower() in ("0", "off", "no", "false"):
        return None
    if setting:
        return WeightStore(Path(setting).expanduser())
    from workbench.paths import cache_dir

    return WeightStore(cache_dir(create=False) / "weights")  # made by the first put
