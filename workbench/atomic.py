"""Atomic writes of user files: a write that fails part-way (full disk, a writer's exception, Ctrl-C) leaves the
previous file as it was, and no write ever replaces one of the inputs it was made from.

Every writer of the workbench writes into a temporary file in the target's own folder (so that the final
``os.replace`` is a rename on the same file system), flushes and fsyncs it, and only then renames it over the
target. The temporary name ends with the target's name, so writers that choose their format by the extension
(nibabel's ``.nii.gz``, Qt's ``.png``) see the same extension.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterable, Iterator

from workbench.errors import WorkbenchError

__all__ = ["WriteError", "atomic_open", "atomic_path", "atomic_write_bytes", "refuse_overwrite", "same_file"]

_TMP_PREFIX = ".tmp-"


class WriteError(WorkbenchError):
    """A file could not be written (disk full, no permission) or the write would replace an input file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (through links and relative paths; False when ``a`` does not
    exist yet and resolves elsewhere)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwrite(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "input"
                     ) -> None:
    """Raise :class:`WriteError` when ``path`` is one of ``inputs`` (None entries are skipped)."""
    for p in inputs:
        if p is not None and os.fspath(p) and same_file(path, p):
            raise WriteError(path, f"refusing to overwrite the {what} file {os.fspath(p)}; choose another name")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    try:  # makes the rename itself durable; not possible on every platform (Windows), so best effort
        _fsync(folder)
    except OSError:
        pass


def _new_file_mode(target: str) -> int:
    try:
        return os.stat(target).st_mode & 0o7777  # keep the mode of the file being replaced
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask  # what open(target, "w") would have given (mkstemp makes 0600)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[str]:
    """A temporary path in ``path``'s folder for a writer to write to; when the block ends without an error the
    file is fsynced and renamed to ``path``. On any error (or BaseException) the temporary file is removed and
    ``path`` is untouched; an OSError becomes a :class:`WriteError` naming ``path``. ``inputs`` are files the
    write must never replace (the scan it was made from)."""
    path = os.fspath(path)
    refuse_overwrite(path, inputs)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix="-" + os.path.basename(path), dir=folder)
    except OSError as exc:
        raise WriteError(path, f"cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(path, f"could not write the file ({exc.strerror or exc}); the previous file, if any, "
                               "is unchanged") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_folder(folder)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, inputs: Iterable[str | os.PathLike | None] = (),
                **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` (``"w"`` or ``"wb"``, with open's keyword arguments) through :func:`atomic_path`."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes whole files (mode 'w' or 'wb'), got {mode!r}")
    with atomic_path(path, inputs=inputs) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *,
                       inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb", inputs=inputs) as f:
        f.write(data)
