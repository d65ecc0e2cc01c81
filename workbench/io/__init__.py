"""Reading raw scans. ``open_scan(path)`` probes the content and picks a reader; readers are pluggable.

A reader is an object with ``name``, ``probe(path, head) -> int`` (a confidence score, 0 = not mine; ``head``
holds the file's first 512 bytes) and ``open(path, **options) -> Scan``. Register new ones with
:func:`register_reader`. Files are always opened read-only.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from workbench.errors import CorruptFileError, ScanError, UnsupportedFormatError
from workbench.scan import Scan


class Reader(Protocol):
    name: str
    extensions: tuple[str, ...]

    def probe(self, path: str, head: bytes) -> int: ...

    def open(self, path: str, **options: Any) -> Scan: ...


_READERS: list[Reader] = []


def register_reader(reader: Reader) -> Reader:
    """Add a reader (third-party formats); later registrations win ties."""
    _READERS.insert(0, reader)
    return reader


def readers() -> list[Reader]:
    _load_builtin_readers()
    return list(_READERS)


_BUILTINS_LOADED = False


def _load_builtin_readers() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from workbench.io import builtin  # noqa: F401  (registers the built-in readers)


def open_scan(path: str | os.PathLike, *, format: str | None = None, **options: Any) -> Scan:
    """Open a raw scan file. ``format`` forces a reader by name; ``options`` go to the reader (see
    docs/formats.md, e.g. ``kspace_var``, ``coil_axis``, ``trajectory``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ScanError(path, "file does not exist")
    if os.path.isdir(path):
        raise ScanError(path, "is a folder, not a scan file")
    if os.path.getsize(path) == 0:
        raise CorruptFileError(path, "file is empty")
    with open(path, "rb") as f:
        head = f.read(512)
    candidates = readers()
    if format is not None:
        chosen = [r for r in candidates if r.name == format]
        if not chosen:
            raise UnsupportedFormatError(path, f"unknown format {format!r}; known: {', '.join(r.name for r in candidates)}")
        return chosen[0].open(path, **options)
    scored = sorted(((r.probe(path, head), i, r) for i, r in enumerate(candidates)), key=lambda t: (-t[0], t[1]))
    if not scored or scored[0][0] <= 0:
        raise UnsupportedFormatError(
            path, "not a recognised raw k-space file (known: " + ", ".join(r.name for r in candidates) + ")"
        )
    return scored[0][2].open(path, **options)
