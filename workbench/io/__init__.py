"""Reading raw scans. ``open_scan(path)`` probes the content and picks a reader; readers are pluggable.

A reader is an object with ``name``, ``probe(path, head) -> int`` (a confidence score, 0 = not mine; ``head``
holds the file's first 512 bytes) and ``open(path, **options) -> Scan``. Register new ones with
:func:`register_reader`. Files are always opened read-only.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Protocol

from workbench.errors import CorruptFileError, InvalidDataError, ScanError, UnsupportedFormatError
from workbench.scan import Scan, read_guarded


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


# Signatures of common files that are not raw k-space, so that a renamed file gets a useful message.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"PK\x03\x04", "a zip archive (.npz, .zip, ...)"),
    (b"MATLAB", "a MATLAB .mat file"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"DICM", "a DICOM file"),
    (b"\x7fELF", "an executable"),
]


def describe_content(head: bytes) -> str:
    """A few words on what a file's first bytes look like (for error messages)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "unrecognised binary data"


def check_options(path: str, reader: str, options: dict[str, Any], known: Iterable[str]) -> None:
    """Reject options a reader does not understand (a misspelt option must not be silently ignored)."""
    known = sorted(known)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ScanError(
            path,
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for the {reader} reader"
            f" (it accepts: {', '.join(known) if known else 'no options'})",
        )


def check_finite(path: str | None, kspace: Any, index: int = 0) -> None:
    """Raise InvalidDataError when a slice's k-space holds NaN/Inf (readers call it on slice 0 at open time,
    so that a broken file is reported when it is opened rather than when a slice is shown)."""
    import numpy as np

    k = np.asarray(kspace)
    finite = np.isfinite(k)
    if not finite.all():
        raise InvalidDataError(path, f"slice {index} k-space has {int(k.size - finite.sum())} NaN/Inf values")


CHANNELS_DIFFER_FRACTION = 0.01  # of the samples some channel holds: more missing in some channel = not coils


def acquired_samples(kspace: Any) -> tuple[Any, str | None]:
    """The acquired mask ``[H, W]`` of one slice's coil k-space ``[C, H, W]`` as stored (exact zeros = not
    acquired) and a note, None unless the channels hold different samples.

    Coils of one acquisition are sampled together: a k-space sample is in every channel or in none. When more
    than :data:`CHANNELS_DIFFER_FRACTION` of the samples some channel holds are missing from another (a channel
    that holds none, a dead one, does not count), the channels are not coils of one acquisition (e.g. the
    forward and reverse half echoes of a double-half-echo scan, stored as two "coils" that each hold about half
    of the readout): the mask is then the samples every channel holds, since one mask for all coils is what a
    SENSE model can use, and the note says so. A few scattered zeros in one channel (quantised data) keep the
    union."""
    import numpy as np

    held = np.abs(np.asarray(kspace)) > 0
    live = held.reshape(len(held), -1).any(1)
    union = held.any(0)
    if live.sum() < 2:
        return union, None
    common = held[live].all(0)
    n_union = int(union.sum())
    if n_union - int(common.sum()) <= CHANNELS_DIFFER_FRACTION * n_union:
        return union, None
    shares = ", ".join(f"{100 * float(h.mean()):.0f}%" for h in held[live])
    return common, (f"the channels hold different k-space samples (each holds {shares} of the grid, all of them "
                    f"{100 * float(common.mean()):.1f}%): not coils of one acquisition (e.g. forward and reverse "
                    "half echoes); the acquired mask is the samples every channel holds")


def _probe(reader: Reader, path: str, head: bytes) -> int:
    # A third-party reader whose probe crashes must not stop the others from being asked.
    try:
        return int(reader.probe(path, head))
    except Exception:  # noqa: BLE001
        return 0


def open_scan(path: str | os.PathLike, *, format: str | None = None, **options: Any) -> Scan:
    """Open a raw scan file. ``format`` forces a reader by name; ``options`` go to the reader (see
    docs/formats.md, e.g. ``kspace_var``, ``coil_axis``, ``trajectory_var``), except ``symmetric_echo=true``,
    which every Cartesian scan takes: the readout cut to the fully sampled band around an asymmetric echo
    (:func:`workbench.io.readout.symmetric_echo`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ScanError(path, "file does not exist")
    if os.path.isdir(path):
        raise ScanError(path, "is a folder, not a scan file")
    try:
        if os.path.getsize(path) == 0:
            raise CorruptFileError(path, "file is empty")
        with open(path, "rb") as f:
            head = f.read(512)
    except PermissionError as exc:
        raise ScanError(path, f"cannot read the file ({exc.strerror})") from exc
    # an option of every Cartesian format, applied after the reader (workbench.io.readout); the rest are the reader's
    symmetric = options.pop("symmetric_echo", None)
    candidates = readers()
    if format is not None:
        chosen = [r for r in candidates if r.name == format]
        if not chosen:
            raise UnsupportedFormatError(path, f"unknown format {format!r}; known: {', '.join(r.name for r in candidates)}")
        reader = chosen[0]
    else:
        scored = sorted(((_probe(r, path, head), i, r) for i, r in enumerate(candidates)), key=lambda t: (-t[0], t[1]))
        if not scored or scored[0][0] <= 0:
            ext = os.path.splitext(path)[1].lower()
            by_ext = [r.name for r in candidates if ext and ext in getattr(r, "extensions", ())]
            what = describe_content(head)
            if by_ext:
                raise UnsupportedFormatError(
                    path, f"the name ends in {ext} ({', '.join(by_ext)}) but the content is {what}, not that format"
                )
            raise UnsupportedFormatError(
                path,
                f"not a recognised raw k-space file (content: {what}; known formats: "
                + ", ".join(r.name for r in candidates) + ")",
            )
        reader = scored[0][2]
    try:
        scan = read_guarded(path, f"{reader.name} file", lambda: reader.open(path, **options))
    except CorruptFileError as exc:
        if isinstance(exc.__cause__, PermissionError):
            raise ScanError(path, f"cannot read the file ({exc.__cause__.strerror})") from exc.__cause__
        raise
    check_scan_size(scan)
    from workbench.io.bart import option_bool

    if option_bool(path, "symmetric_echo", symmetric):
        from workbench.io.readout import symmetric_echo

        scan = symmetric_echo(scan)
    return scan


def check_scan_size(scan: Scan) -> None:
    """Refuse a scan whose declared geometry would make later steps (a slice read, coil images on the grid)
    allocate more than the memory budget or far more than the file holds (``workbench.limits``): a forged
    header, or a trajectory whose extent asks for a huge grid."""
    from math import prod

    from workbench.limits import check_bytes

    path = scan.path
    stored = os.path.getsize(path) if path and os.path.isfile(path) else None
    check_bytes(path, prod(int(n) for n in scan.kspace_shape) * 8, f"one k-space slice {tuple(scan.kspace_shape)}")
    h, w = (int(n) for n in scan.grid_shape)
    check_bytes(path, scan.n_coils * h * w * 8, f"{scan.n_coils}-coil images on the {h}x{w} grid", stored=stored)
