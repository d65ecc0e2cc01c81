"""Typed errors a user sees. Every message names the file (when there is one) and what is wrong."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLI's client imports this module)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "WorkbenchError",
    "ScanError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "InvalidDataError",
    "UnsafeFileError",
    "TooLargeError",
    "SamplingError",
    "int_pair",
]


class WorkbenchError(Exception):
    """Base class for errors meant for the user (CLI message or app dialog), not a traceback."""


class ScanError(WorkbenchError):
    """A scan file could not be opened or its content is not usable."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")


class UnsupportedFormatError(ScanError):
    """No reader recognises the file."""


class CorruptFileError(ScanError):
    """The file is of a known kind but truncated, empty or damaged."""


class InvalidDataError(ScanError):
    """The file reads, but its k-space is unusable (NaN/Inf, inconsistent shapes, no k-space array)."""


class UnsafeFileError(ScanError):
    """The file points outside itself (HDF5 external storage, external links, virtual datasets): it is refused
    before any byte elsewhere is read."""


class TooLargeError(ScanError):
    """Reading the file would allocate more than the memory budget (``workbench.limits``), or more than its
    stored bytes can hold (a forged size or a decompression bomb)."""


class SamplingError(WorkbenchError):
    """A mask or trajectory does not fit the scan or has invalid parameters."""


def int_pair(value: Any, complaint: str, error: type[WorkbenchError] = SamplingError) -> tuple[int, int]:
    """``value`` (two numbers: a shape, a calibration size) as ``(int, int)``; raises ``error(complaint)`` if it is
    not two numbers. The caller checks the range, whose message depends on what the pair is."""
    try:
        a, b = (int(x) for x in value)
    except (TypeError, ValueError):
        raise error(complaint) from None
    return a, b
