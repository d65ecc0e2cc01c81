"""Automatic weights remembered across commands: the same scan, mask and settings skip the weight search.

:func:`workbench.toolkit.solve_with_weight` keeps the weights it chose in memory (the app's Run again, a sweep
of ``n_iter``). A command of the CLI is a fresh process (a fresh child of the resident command server), so that
memory dies with it; this store keeps the same entry on disk, so a user re-running a command on a scan and mask
(another score mode, ``--out``, another ``n_iter``) gets the weight and the search's image that the first run
chose, and the same image as a run that had searched. On the real 1-coil phantom that is 0.5 s of a 1.1 s
l1-wavelet command.

One entry per key (a digest of the data, coil maps, mask or trajectory, density compensation, the method's
settings and the code of the workbench, :func:`workbench.command_server.code_key`: an edit or upgrade of its
package or built-in plugins starts afresh, one of a plugin installed from another package does not):
``<key>.json`` (the weight, the search trace, the ``chosen`` record) and ``<key>.npy`` (the search's image,
complex64, when the search left one; a weight whose image is larger than :data:`MAX_IMAGE_BYTES` is not kept, as
the run that reused it would start from zero and give another image). They live in ``<cache>/weights``
(:func:`workbench.paths.cache_dir`; the folder is private to the user: the images derive from the user's scans),
at most :data:`MAX_ENTRIES` entries, the least recently used removed first. Entries are written atomically and
read defensively: a file that is not what this module wrote (wrong type, shape, size; not a plain file of the
user's, a link; a record whose image another command wrote: the record holds its image's digest) is ignored,
never trusted, and so is a folder that is not the user's or that every user may write into; temporary files
left by a killed command, and images whose record was never written, are removed after :data:`STALE_TEMP_S`
seconds. The store never fails a run: a folder that cannot be written (read-only, full) only means that nothing
is kept.

``WORKBENCH_WEIGHT_STORE=0`` turns it off (the test suite does); ``WORKBENCH_WEIGHT_STORE=/a/folder`` moves it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_ENTRIES", "MAX_IMAGE_BYTES", "WeightStore", "default_store", "suspend_writes", "writes_suspended"]

MAX_ENTRIES = 32
MAX_IMAGE_BYTES = 16 << 20
MAX_JSON_BYTES = 1 << 20
STALE_TEMP_S = 3600.0  # a temporary file this old belongs to a command that was killed while it wrote
_FORMAT = "mri-workbench-weight/1"
_TEMP = ".tmp-"


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
        that is damaged, whose image is not complex64 of ``image_shape`` or not the one its record was written
        with, and for a folder that is not the user's or that every user may write into)."""
        meta_path, image_path = self._paths(key)
        try:
            if not _private(self.folder):
                return None
            text = _read_own_file(meta_path, MAX_JSON_BYTES)
            if text is None:
                return None
            meta = json.loads(text)
            lam, trace, chosen = meta["lam"], meta["trace"], meta["chosen"]
            if meta.get("format") != _FORMAT or not _number(lam) or not lam > 0 or not math.isfinite(lam) \
                    or not isinstance(trace, list) or not all(isinstance(t, list) and len(t) == 2
                                                              and all(_number(v) for v in t) for t in trace) \
                    or not isinstance(chosen, dict):
                return None
            image = None
            if meta.get("image"):
                data = _read_own_file(image_path, MAX_IMAGE_BYTES + 4096)
                if data is None or hashlib.blake2b(data, digest_size=16).hexdigest() != meta.get("image_digest"):
                    return None  # gone, or written by another command than this record (two writers at once)
                image = np.load(io.BytesIO(data), allow_pickle=False)
                if image.dtype != np.complex64 or tuple(image.shape) != tuple(image_shape) \
                        or not np.isfinite(image).all():
                    return None
        except Exception:  # noqa: BLE001  (whatever a damaged or foreign file raises: no entry)
            return None
        try:
            os.utime(meta_path)  # recently used (a read-only store still answers)
        except OSError:
            pass
        return float(lam), trace, chosen, image

    def put(self, key: str, lam: float, trace: list, chosen: dict, image: np.ndarray | None) -> None:
        """Store an entry (atomically: the image first, then the record that points at it); errors are ignored."""
        meta_path, image_path = self._paths(key)
        if image is not None and image.nbytes > MAX_IMAGE_BYTES:
            return  # kept without its image, the entry would start the final solve from zero: another image
        keep_image = image is not None
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not _private(self.folder):
                return
            record = {"format": _FORMAT, "lam": float(lam), "trace": trace, "chosen": chosen, "image": keep_image}
            if keep_image:
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(image, np.complex64))
                data = buffer.getvalue()
                record["image_digest"] = hashlib.blake2b(data, digest_size=16).hexdigest()
                self._write(image_path, lambda fh: fh.write(data))
            text = json.dumps(record, default=_plain).encode()
            self._write(meta_path, lambda fh: fh.write(text))
            self._evict()
        except Exception:  # noqa: BLE001  (a full or read-only disk, a value JSON cannot hold: nothing kept)
            pass

    def _write(self, path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=_TEMP, suffix=path.suffix)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _evict(self) -> None:
        records, now = [], time.time_ns()
        for path in self.folder.iterdir():
            try:
                mtime = path.lstat().st_mtime_ns
            except OSError:  # removed meanwhile by another command
                continue
            # another command's write in progress, or a killed one's; an image whose record was never written
            # (a full disk, a command killed in between)
            if path.name.startswith(_TEMP) or (path.suffix == ".npy" and not path.with_suffix(".json").exists()):
                if now - mtime > STALE_TEMP_S * 1e9:
                    path.unlink(missing_ok=True)
            elif path.suffix == ".json":
                records.append((mtime, path))
        records.sort()
        for _, old in records[: max(0, len(records) - self.max_entries)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".npy").unlink(missing_ok=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _private(folder: Path) -> bool:
    """Whether only this user may put files into ``folder`` (it is theirs and not writable by everyone)."""
    if os.name != "posix":
        return True
    st = os.stat(folder)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & stat.S_IWOTH


def _read_own_file(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` when it is a plain file of this user's (not a link, a FIFO or a device) of at most
    ``limit`` bytes, else None."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit \
                or (os.name == "posix" and st.st_uid != os.getuid()):
            return None
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def _plain(value: Any) -> Any:
    """JSON for the numbers of a ``chosen`` record (numpy and torch scalars)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


_WRITES_SUSPENDED = contextvars.ContextVar("weight_store_writes_suspended", default=False)


@contextlib.contextmanager
def suspend_writes():
    """In this block (this thread, this context) weights are read from the store but not written to it: a volume
    run's slices would each write one and push out every other entry."""
    token = _WRITES_SUSPENDED.set(True)
    try:
        yield
    finally:
        _WRITES_SUSPENDED.reset(token)


def writes_suspended() -> bool:
    return _WRITES_SUSPENDED.get()


def default_store() -> WeightStore | None:
    """The user's store (``WORKBENCH_WEIGHT_STORE``: ``0`` = none, a folder, else ``<cache>/weights``), or None
    when it is turned off."""
    setting = os.environ.get("WORKBENCH_WEIGHT_STORE", "").strip()
    if setting.lower() in ("0", "off", "no", "false"):
        return None
    try:
        if setting:
            return WeightStore(Path(setting).expanduser())
        from workbench import paths

        return WeightStore(paths.cache_dir(create=False) / "weights")  # made by the first put
    except Exception:  # noqa: BLE001  (no home folder to hold a cache: no store)
        return None
