"""Memory limits for reading files: sizes declared by a file are checked against them BEFORE allocating.

- :func:`memory_budget`: the most bytes one array read from a file may take: ``$WORKBENCH_MEMORY_BUDGET``
  (bytes, or with a unit: ``512M``, ``2G``, ``1.5GiB``), else min(4 GiB, half of the machine's memory).
- :func:`check_bytes`: refuses (``TooLargeError`` naming the file and what) an allocation above the budget, or
  one that expands the bytes the file stores for it by more than ``MAX_EXPANSION`` (decompression bombs, forged
  shapes, sparse files); allocations below ``SMALL_BYTES`` are always allowed.
"""

from __future__ import annotations

import os
import re

from workbench.errors import TooLargeError, WorkbenchError

__all__ = ["memory_budget", "check_bytes", "format_bytes", "MAX_EXPANSION", "SMALL_BYTES"]

DEFAULT_CAP = 4 << 30
# Real k-space compresses at most a few times (zero-filled, undersampled data ~10x); a larger ratio between what
# a file declares and what it stores is a forged size or a bomb.
MAX_EXPANSION = 32
SMALL_BYTES = 4 << 20

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def parse_bytes(text: str) -> int:
    """``"512M"`` -> 536870912; units K, M, G, T (powers of 1024, optional ``B``/``iB``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise WorkbenchError(f"WORKBENCH_MEMORY_BUDGET={text!r}: expected a size such as 2G, 512M or 1000000")
    value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise WorkbenchError(f"WORKBENCH_MEMORY_BUDGET={text!r}: must be positive")
    return value


def memory_budget() -> int:
    """The largest array (bytes) a reader may allocate (see the module docstring); read on every call so that
    tests and users can change the environment variable."""
    env = os.environ.get("WORKBENCH_MEMORY_BUDGET")
    if env:
        return parse_bytes(env)
    ram = _physical_memory()
    return min(DEFAULT_CAP, ram // 2) if ram else DEFAULT_CAP


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def check_bytes(path: str | os.PathLike | None, nbytes: int, what: str, *, stored: int | None = None) -> None:
    """Raise TooLargeError when allocating ``nbytes`` for ``what`` exceeds the memory budget, or (``stored`` =
    the bytes the file holds for it) exceeds ``max(MAX_EXPANSION * stored, SMALL_BYTES)``."""
    nbytes = int(nbytes)
    budget = memory_budget()
    if nbytes > budget:
        raise TooLargeError(path, f"{what} would need {format_bytes(nbytes)}, more than the memory budget of "
                                  f"{format_bytes(budget)} (set WORKBENCH_MEMORY_BUDGET to allow more)")
    if stored is not None and nbytes > max(MAX_EXPANSION * int(stored), SMALL_BYTES):
        raise TooLargeError(path, f"{what} declares {format_bytes(nbytes)} but the file stores only "
                                  f"{format_bytes(stored)} for it: a forged size or a decompression bomb")
