"""Safe HDF5 access shared by the fastMRI, ISMRMRD and MATLAB v7.3 readers.

An HDF5 file can point outside itself: datasets with external raw storage (``dataset.external``), external
links to other files and virtual datasets mapping other files. :func:`open_hdf5` opens a file read-only and
walks its links (without following any) BEFORE a reader touches an object, and refuses such a file with an
:class:`~workbench.errors.UnsafeFileError` naming the object, so that no byte of another file is read. Soft-link
loops and dangling links give a CorruptFileError (:func:`get`); :func:`read` checks the bytes a selection
allocates against the memory budget and against what the file stores for the dataset (``workbench.limits``)
before reading. :func:`check_global_heaps` refuses a damaged global heap that would make the HDF5 library
itself loop forever.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from typing import Any, Iterator

import h5py
import numpy as np
from h5py import h5d, h5l, h5o, h5t

from workbench.errors import CorruptFileError, UnsafeFileError
from workbench.limits import check_bytes

__all__ = ["HDF5_SIGNATURE", "H5_ERRORS", "open_hdf5", "audit", "check_global_heaps", "get", "read", "reason",
           "selection_bytes", "selection_chunks", "check_dataset", "check_type", "check_chunks", "attributes"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_LINKS = 200_000  # a scan file has a handful; MATLAB cell arrays a few thousand
# Errors h5py raises on damaged files (bit flips give KeyError for unreadable names, RuntimeError for bad links).
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError)


def reason(exc: BaseException) -> str:
    """h5py's messages are long ("Unable to synchronously open file (...)"); keep the part in brackets."""
    msg = str(exc)
    return msg[msg.find("(") + 1: msg.rfind(")")] if "(" in msg and ")" in msg else msg


def _name(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _link_problem(f: h5py.File, name: bytes, info: Any) -> tuple[type, str] | None:
    """What is unsafe about one link (error class, message), or None."""
    where = _name(name)
    if info.type == h5l.TYPE_EXTERNAL:
        target_file, target = f.id.links.get_val(name)
        return UnsafeFileError, (f"HDF5 external link '{where}' points to {_name(target_file)}:{_name(target)}; "
                                 "links to other files are not followed")
    if info.type not in (h5l.TYPE_HARD, h5l.TYPE_SOFT):
        return UnsafeFileError, f"HDF5 link '{where}' is of a user-defined kind ({info.type}); not followed"
    if info.type == h5l.TYPE_HARD:
        obj = h5o.open(f.id, name)
        if isinstance(obj, h5d.DatasetID):
            plist = obj.get_create_plist()
            if plist.get_layout() == h5d.VIRTUAL:
                sources = sorted({_name(plist.get_virtual_filename(i)) for i in range(plist.get_virtual_count())})
                return UnsafeFileError, (f"HDF5 dataset '{where}' is a virtual dataset mapping "
                                         f"{', '.join(sources[:3]) or 'nothing'}; virtual datasets are not read")
            if plist.get_external_count() > 0:
                target = _name(plist.get_external(0)[0])
                return UnsafeFileError, (f"HDF5 dataset '{where}' keeps its data in the external file {target}; "
                                         "external raw storage is not read")
    return None


def audit(f: h5py.File, path: str) -> None:
    """Refuse a file with external links, user-defined links, external raw storage or virtual datasets anywhere
    (links are listed without being followed; only hard-linked objects are opened, to read their layout)."""
    seen = 0

    def visit(name: bytes, info: Any) -> Any:
        # An exception must not leave this callback (h5py's iteration would turn it into a SystemError):
        # a non-None return value stops the iteration and is raised below.
        nonlocal seen
        seen += 1
        if seen > MAX_LINKS:
            return CorruptFileError, f"HDF5 file has more than {MAX_LINKS} links; not a scan file"
        try:
            return _link_problem(f, name, info)
        except H5_ERRORS as exc:
            return CorruptFileError, f"HDF5 object '{_name(name)}' is damaged ({reason(exc)})"

    try:
        problem = f.id.links.visit(visit, info=True)
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"HDF5 file structure is damaged ({reason(exc)})") from exc
    if problem is not None:
        error, message = problem
        raise error(path, message)


# Per file version (path, size, mtime): its global heaps, found by one pass over the file; and the versions whose
# references were checked too. A reader opens a file several times (probe, open, a slice read): one pass, not four.
_HEAPS: dict[tuple[str, int, int], dict[int, dict[int, int]]] = {}
_REFERENCES_CHECKED: set[tuple[str, int, int]] = set()


def check_global_heaps(path: str, references: bool = False) -> None:
    """Refuse a file whose global heap (where variable-length strings and arrays live) would make the HDF5
    library loop forever or allocate GBs: its parser steps from object to object by their sizes, and a
    free-space object of size 0 (one damaged byte) never advances. With ``references`` (once the file is known
    to hold no virtual dataset, whose mappings are heap references of another layout), also: HDF5 allocates a
    variable-length value by the length its reference states before comparing it with the heap object, so
    references are looked up by their heap's address (in files with a few heaps: fastMRI attributes, headers;
    the acquisitions of ISMRMRD files are checked from their chunks). Checked once per file version."""
    st = os.stat(path)
    version = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if st.st_size < 16 or (version in _HEAPS and (not references or version in _REFERENCES_CHECKED)):
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        heaps = _HEAPS.get(version)
        if heaps is None:
            heaps = _global_heaps(path, fh.fileno(), mm)
        if references and 0 < len(heaps) <= 16:
            base = next((b for b in (0, 512, 1024, 2048, 4096) if mm[b: b + 8] == HDF5_SIGNATURE), 0)
            for at, objects in heaps.items():
                # a reference: length (4 bytes), the heap's address (relative to the HDF5 base), object index
                for q in _signatures(fh.fileno(), mm, (at - base).to_bytes(8, "little")):
                    if q < 4 or q + 12 > len(mm):
                        continue
                    index = int.from_bytes(mm[q + 8: q + 12], "little")
                    length = int.from_bytes(mm[q - 4: q], "little")
                    if index in objects and length > objects[index]:
                        raise CorruptFileError(path, f"HDF5 variable-length value at byte {q - 4} states {length} "
                                                     f"elements but its heap object holds {objects[index]} bytes")
    _HEAPS[version] = heaps
    if references:
        _REFERENCES_CHECKED.add(version)


def _global_heaps(path: str, fd: int, mm: mmap.mmap) -> dict[int, dict[int, int]]:
    """{collection offset: {object index: object size}}; raises CorruptFileError on a heap HDF5 would loop on."""
    heaps: dict[int, dict[int, int]] = {}
    for at in _signatures(fd, mm, b"GCOL\x01\0\0\0"):  # with the version bytes: a rarer, faster needle
        size = int.from_bytes(mm[at + 8: at + 16], "little") if at + 16 <= len(mm) else 0
        # a collection header: signature, version 1, 3 reserved zero bytes, its size (>= 4 KiB, in the file)
        if mm[at + 4: at + 8] != b"\x01\0\0\0" or not 4096 <= size <= len(mm) - at:
            continue
        objects = heaps.setdefault(at, {})
        p, end = at + 16, at + size
        while p + 16 <= end:
            index = int.from_bytes(mm[p: p + 2], "little")
            length = int.from_bytes(mm[p + 8: p + 16], "little")
            need = 16 + (length + 7) // 8 * 8 if index else length
            if need == 0:
                raise CorruptFileError(path, f"HDF5 global heap at byte {at} is damaged (an object of size 0 would "
                                             "make the HDF5 library loop forever)")
            if index:
                objects[index] = length
            p += need
    return heaps


def _signatures(fd: int, mm: mmap.mmap, signature: bytes) -> Iterator[int]:
    """Offsets of ``signature`` in the file's data regions (the holes of a sparse file are skipped, not read)."""
    start, size = 0, len(mm)
    while start < size:
        if hasattr(os, "SEEK_DATA"):
            try:
                start = os.lseek(fd, start, os.SEEK_DATA)
            except OSError:  # only a hole is left
                return
            stop = os.lseek(fd, start, os.SEEK_HOLE)
        else:
            stop = size
        at = mm.find(signature, start, stop)
        while at >= 0:
            yield at
            at = mm.find(signature, at + len(signature), stop)
        start = stop


@contextlib.contextmanager
def open_hdf5(path: str) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only and :func:`audit` it; h5py's errors become CorruptFileError naming the file."""
    check_global_heaps(path)
    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"HDF5 file cannot be opened; truncated or damaged? ({reason(exc)})") from exc
    try:
        audit(f, path)
        check_global_heaps(path, references=True)
        yield f
    finally:
        f.close()


def get(f: h5py.Group, name: str, path: str) -> Any:
    """The object ``name`` (one level below ``f``) or None when there is no such link; a dangling link or a
    soft-link loop is a CorruptFileError. (``name in f`` would follow the link before saying.)"""
    try:
        if not f.id.links.exists(name.encode()):
            return None
        return f[name]
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"HDF5 object '{name}' cannot be opened: a broken or looping link, or "
                                     f"damage ({reason(exc)})") from exc


# HDF5 keeps a few KiB of bookkeeping per chunk a read touches (measured: ~6 KiB per unallocated chunk), so a
# dataset forged with millions of one-element chunks costs GBs to read even when its values are few.
CHUNK_OVERHEAD = 8 << 10


def _axis_selections(shape: tuple[int, ...], sel: Any) -> list[Any]:
    """Per axis: an int, a range, or an array of indices (fancy indexing along axis 0)."""
    if sel is Ellipsis or (isinstance(sel, tuple) and len(sel) == 0):
        sel = ()
    elif isinstance(sel, (list, np.ndarray)):
        sel = (np.asarray(sel, dtype=np.int64),)
    elif not isinstance(sel, tuple):
        sel = (sel,)
    out: list[Any] = []
    for axis, n in enumerate(shape):
        s = sel[axis] if axis < len(sel) else slice(None)
        if isinstance(s, slice) or s is Ellipsis:
            out.append(range(*(s if isinstance(s, slice) else slice(None)).indices(n)))
        elif isinstance(s, np.ndarray):
            out.append(s)
        else:
            out.append(int(s))
    return out


def selection_bytes(shape: tuple[int, ...], itemsize: int, sel: Any) -> int:
    """Bytes of ``ds[sel]`` for a dataset of ``shape``, without allocating: ``sel`` is ``()``, ``Ellipsis``, an
    int, a slice, a 1D integer array (along axis 0) or a tuple of ints/slices."""
    count = 1
    for s in _axis_selections(shape, sel):
        count *= 1 if isinstance(s, int) else len(s)
    return count * itemsize


def selection_chunks(shape: tuple[int, ...], chunks: tuple[int, ...], sel: Any) -> int:
    """How many chunks ``ds[sel]`` touches."""
    count = 1
    for s, c in zip(_axis_selections(shape, sel), chunks):
        if isinstance(s, int):
            continue
        if isinstance(s, np.ndarray):
            count *= len(np.unique(s // c)) if s.size else 0
        elif len(s):
            lo, hi = min(s[0], s[-1]), max(s[0], s[-1])
            count *= min(hi // c - lo // c + 1, len(s))
        else:
            return 0
    return count


# (sign, exponent position, exponent size, mantissa position, mantissa size), exponent bias, precision, offset
_IEEE = {2: [((15, 10, 5, 0, 10), 15, 16, 0)], 4: [((31, 23, 8, 0, 23), 127, 32, 0)],
         8: [((63, 52, 11, 0, 52), 1023, 64, 0)]}


def check_type(path: str, tid: Any, what: str, depth: int = 0) -> None:
    """Refuse a datatype HDF5 cannot convert safely: compound members that overlap or stick out of it, float
    formats other than IEEE half/single/double, integers whose bits do not fit (found by fuzzing: one damaged
    byte of a float's exponent bias made HDF5's conversion corrupt the process's memory)."""
    if depth > 16:
        raise CorruptFileError(path, f"{what}: datatype nests too deep")
    cls = tid.get_class()
    if cls == h5t.COMPOUND:
        size, members = tid.get_size(), []
        for i in range(tid.get_nmembers()):
            member = tid.get_member_type(i)
            members.append((tid.get_member_offset(i), member.get_size()))
            check_type(path, member, what, depth + 1)
        end = 0
        for offset, msize in sorted(members):
            if offset < end or offset + msize > size:
                raise CorruptFileError(path, f"{what}: its compound datatype is damaged (members overlap or "
                                             "exceed its size)")
            end = offset + msize
    elif cls in (h5t.ARRAY, h5t.VLEN):
        check_type(path, tid.get_super(), what, depth + 1)
    elif cls == h5t.FLOAT:
        # only IEEE formats: HDF5's conversion of a damaged float format (e.g. its exponent bias) crashed
        layout = (tid.get_fields(), tid.get_ebias(), tid.get_precision(), tid.get_offset())
        if layout not in _IEEE.get(tid.get_size(), ()):
            raise CorruptFileError(path, f"{what}: its {8 * tid.get_size()}-bit float format is damaged")
    elif cls == h5t.INTEGER:
        if tid.get_offset() + tid.get_precision() > 8 * tid.get_size() or tid.get_precision() == 0:
            raise CorruptFileError(path, f"{what}: its integer format is damaged")


def check_chunks(path: str, ds: h5py.Dataset, what: str) -> None:
    """An unfiltered chunk is stored at exactly its size: a chunk index stating another size (one damaged byte)
    made HDF5 read it past its buffer and crash the process. Checked in total (storage = chunks x size)."""
    plist = ds.id.get_create_plist()
    if ds.chunks is None or plist.get_nfilters() or plist.get_layout() != h5d.CHUNKED:
        return
    chunk_bytes = int(np.prod(ds.chunks, dtype=object)) * ds.id.get_type().get_size()
    try:
        n, stored = ds.id.get_num_chunks(), ds.id.get_storage_size()
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"{what}: its chunk index is damaged ({reason(exc)})") from exc
    if stored != n * chunk_bytes:
        raise CorruptFileError(path, f"{what}: its {n} chunks of {chunk_bytes} bytes are stored in {stored} bytes "
                                     "(a damaged chunk index)")


def attributes(obj: Any, path: str) -> dict[str, Any]:
    """The attributes of ``obj`` (each datatype checked by :func:`check_type` before it is read)."""
    out = {}
    try:
        for name in obj.attrs:
            check_type(path, obj.attrs.get_id(name).get_type(), f"attribute {name!r}")
            out[name] = obj.attrs[name]
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"attributes cannot be read ({reason(exc)})") from exc
    return out


def check_dataset(path: str, ds: h5py.Dataset, sel: Any, what: str) -> None:
    """Raise TooLargeError when reading ``ds[sel]`` would exceed the memory budget, or expand the bytes the file
    stores for it beyond ``workbench.limits.MAX_EXPANSION`` (a forged shape, a gzip bomb, a forged chunking)."""
    check_type(path, ds.id.get_type(), what)
    check_chunks(path, ds, what)
    if ds.shape is None:  # a null dataspace: nothing to read
        return
    itemsize = ds.dtype.itemsize
    total = int(np.prod(ds.shape, dtype=object)) * itemsize
    nbytes = selection_bytes(ds.shape, itemsize, sel)
    cost = nbytes
    if ds.chunks is not None:
        # a chunk is decompressed whole, however little of it is selected, and each costs bookkeeping
        chunk_bytes = min(int(np.prod(ds.chunks, dtype=object)) * itemsize, total)
        n_chunks = selection_chunks(ds.shape, ds.chunks, sel)
        cost = max(nbytes, chunk_bytes) + n_chunks * CHUNK_OVERHEAD
    try:
        stored = ds.id.get_storage_size()
    except H5_ERRORS:
        stored = 0
    share = stored * nbytes // total if total else 0
    check_bytes(path, cost, what, stored=share)


def read(path: str, ds: h5py.Dataset, sel: Any, what: str) -> Any:
    """``ds[sel]`` after :func:`check_dataset`; h5py's errors become CorruptFileError naming ``what``."""
    check_dataset(path, ds, sel, what)
    try:
        return ds[sel]
    except H5_ERRORS as exc:
        raise CorruptFileError(path, f"{what} cannot be read; truncated or damaged? ({reason(exc)})") from exc
