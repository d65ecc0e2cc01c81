"""MATLAB ``.mat`` files: v4/v5/v7 through ``scipy.io.loadmat``, v7.3 (HDF5) through ``h5py``.

Shapes and axes are always given in MATLAB's order (v7.3 files store them reversed; the reader undoes that, and
joins the compound ``real``/``imag`` fields into complex numbers), so options mean the same for both kinds.
Variables inside structs are named ``struct.field``.

Which array is the k-space: the option ``kspace_var``, else the largest complex array (ties are an error that
lists the variables). Its layout (MATLAB order, singleton dims ignored):
- Cartesian ``[x, y]``, ``[x, y, coils]`` (or ``[coils, x, y]``), ``[x, y, coils, more...]`` with ``coil_axis``;
  dims after the in-plane pair and the coils are enumerated as slices (first dim fastest).
- Non-Cartesian when a trajectory is given (``trajectory_var``) or found: an array shaped like the k-space's
  (readout, spokes) dims, complex ``kx + i*ky`` or real with a coordinate axis of 2 (or 3).
Orientation: H = the first in-plane dim, W = the second, unless the data say which one is the readout (see
:func:`detect_readout_axis`); the readout is then put on H. ``image_domain`` (auto-detected when unambiguous,
:func:`detect_image_domain`) marks arrays of coil images: k-space = fft2c of them.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from workbench.arrays import fft2c_np, ifft2c_np
from workbench.errors import CorruptFileError, InvalidDataError, ScanError, TooLargeError
from workbench.io import acquired_samples, check_finite, check_options, hdf5, register_reader
from workbench.io.bart import option_bool, option_float, option_shape, radial_spokes, wrap_radians
from workbench.limits import MAX_EXPANSION, SMALL_BYTES, check_bytes, memory_budget
from workbench.scan import Scan

_OPTIONS = {"kspace_var", "coil_axis", "trajectory_var", "reference_var", "image_domain", "readout_oversampling",
            "grid_shape", "trajectory_units", "merge_channels"}
_UNITS = ("auto", "cycles", "radians", "fov")
_TRAJ_NAMES = ("k", "kt", "kxy", "om", "omega", "traj", "trajectory", "coord", "coords", "ktraj", "kloc")
_MAX_COILS = 128


# ------------------------------------------------------------------------------------- array heuristics
def _central_energy(x: np.ndarray, fraction: int = 8) -> float:
    """Share of the energy of ``x`` ``[..., H, W]`` in the central (H/fraction x W/fraction) block."""
    e = (np.abs(x) ** 2).reshape(-1, *x.shape[-2:]).sum(0)
    h, w = e.shape
    bh, bw = max(h // fraction, 1), max(w // fraction, 1)
    total = e.sum()
    if total == 0:
        return 0.0
    return float(e[h // 2 - bh // 2: h // 2 - bh // 2 + bh, w // 2 - bw // 2: w // 2 - bw // 2 + bw].sum() / total)


def detect_image_domain(x: np.ndarray) -> tuple[bool | None, str]:
    """Does ``x`` ``[C, H, W]`` hold coil images rather than k-space?

    k-space has most of its energy near the centre (low frequencies); coil images spread it over the object.
    Returns (True, why) for images, (False, why) for k-space, (None, why) when the two tests disagree."""
    as_is = _central_energy(x)
    transformed = _central_energy(fft2c_np(x))
    why = f"central 1/8 block holds {as_is:.0%} of the energy as stored, {transformed:.0%} after fft2c"
    if as_is > 0.5 and transformed < 0.2:
        return False, why
    if as_is < 0.2 and transformed > 0.5:
        return True, why
    return None, why


def _index_gaps(present: np.ndarray) -> bool:
    idx = np.flatnonzero(present)
    return idx.size > 1 and int(np.diff(idx).max()) > 1


def detect_readout_axis(k: np.ndarray) -> tuple[int | None, bool, str]:
    """Which in-plane axis of Cartesian k-space ``[C, H, W]`` is the readout: (axis 0 = H / 1 = W / None,
    readout 2x oversampled?, why).

    Partially sampled line-by-line data: the phase-encode axis is the one whose acquired lines have gaps, the
    readout the one without. Fully sampled data: a 2x oversampled readout leaves the outer half of the image
    empty along that axis only (>= 98 % of the energy in the central half there, <= 90 % along the other)."""
    mask = np.abs(k).sum(0) > 0
    if not mask.all():
        rows, cols = mask.any(1), mask.any(0)
        if not np.array_equal(mask, np.outer(rows, cols)):
            return None, False, "2D sampling pattern (no readout axis)"
        gh, gw = _index_gaps(rows), _index_gaps(cols)
        if gh != gw:
            return (1 if gh else 0), False, "acquired lines have gaps along the phase-encode axis only"
        return None, False, "line pattern does not tell the readout axis"
    e = (np.abs(ifft2c_np(k)) ** 2).sum(0)
    h, w = e.shape
    total = e.sum() or 1.0
    fh = float(e[h // 4: h // 4 + h // 2].sum() / total)
    fw = float(e[:, w // 4: w // 4 + w // 2].sum() / total)
    why = f"central half holds {fh:.1%} of the image energy along H, {fw:.1%} along W"
    if fh >= 0.98 and fw <= 0.9:
        return 0, True, why
    if fw >= 0.98 and fh <= 0.9:
        return 1, True, why
    return None, False, why


def merge_channels(k: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """One coil ``[1, H, W]`` from channels ``[C, H, W]`` (readout along H) that hold different parts of one
    k-space, e.g. the forward and reverse half echoes of a double-half-echo scan (exact zeros = not held).

    Channel c > 0 is aligned to the channels before it by the phase ``a + b * kx`` (``kx`` = readout index - H//2;
    a constant phase and an image shift along the readout, which off-resonance gives the two readout polarities
    with opposite signs), fitted on the samples both hold (the phase of each readout row's sum over the phase
    encodes, weighted by its magnitude); then every sample is the mean of the channels that hold it. Returns the
    merged k-space and ``(a, b)`` of each channel after the first."""
    held = np.abs(k) > 0
    kx = np.arange(k.shape[-2]) - k.shape[-2] // 2
    acc = k[0].astype(np.complex128)
    count = held[0].astype(np.float64)
    fits = []
    for c in range(1, len(k)):
        both = held[c] & (count > 0)
        z = np.where(both, acc * np.conj(k[c]), 0).sum(-1)  # per readout row: the merged phase minus channel c's
        rows = np.flatnonzero(np.abs(z) > 0)
        a = b = 0.0
        if rows.size:
            a = float(np.angle(z[rows].sum()))
            if rows.size >= 2:  # the slope on what is left after the mean phase (no wrapping)
                b, a1 = np.polyfit(kx[rows], np.angle(z[rows] * np.exp(-1j * a)), 1, w=np.sqrt(np.abs(z[rows])))
                a, b = a + float(a1), float(b)
        acc += np.where(held[c], k[c] * np.exp(1j * (a + b * kx))[:, None], 0)
        count += held[c]
        fits.append((a, b))
    return (acc / np.maximum(count, 1))[None].astype(np.complex64), fits


def trajectory_radians(coords: np.ndarray, grid_shape: tuple[int, int] | None, n_readout: int, units: str = "auto"
                       ) -> tuple[np.ndarray, tuple[int, int] | None, str]:
    """Convert a 2D trajectory ``[2, ...]`` to radians in [-pi, pi).

    ``units`` "auto" decides by the extent: <= 0.5 cycles/pixel ("cycles", x 2*pi); <= pi "radians"; else pixel
    units of a grid N ("fov", i.e. cycles per FOV: x 2*pi/N, N = ``grid_shape`` or the readout length when the
    samples fit it, else the smallest even grid that holds them). Returns (radians float32, grid or None when
    the units do not fix it, units)."""
    c = np.asarray(coords, dtype=np.float64)
    extent = float(np.abs(c).max()) if c.size else 0.0
    if units == "auto":
        units = "cycles" if extent <= 0.5 + 1e-6 else ("radians" if extent <= np.pi + 1e-4 else "fov")
    if units == "cycles":
        return wrap_radians(2 * np.pi * c), grid_shape, "cycles/pixel ([-0.5, 0.5])"
    if units == "radians":
        return wrap_radians(c), grid_shape, "radians"
    if grid_shape is None:
        n = n_readout if extent <= n_readout / 2 + 1 else 2 * math.ceil(extent)
        grid_shape = (n, n)
    scale = np.array([2 * np.pi / grid_shape[0], 2 * np.pi / grid_shape[1]]).reshape(2, *([1] * (c.ndim - 1)))
    return wrap_radians(c * scale), grid_shape, f"pixels (1/FOV) of a {grid_shape[0]}x{grid_shape[1]} grid"


# ------------------------------------------------------------------------------------------- variables
@dataclass
class MatVariable:
    """One numeric array of a MAT file, shape in MATLAB order; ``read(index)`` returns it (or a part, index
    in MATLAB order) as a NumPy array in MATLAB order, complex when the variable is complex."""

    name: str
    shape: tuple[int, ...]
    is_complex: bool
    dtype: str
    read: Callable[[tuple | None], np.ndarray] = field(repr=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def squeezed(self) -> tuple[int, ...]:
        return tuple(d for d in self.shape if d != 1)

    def describe(self) -> str:
        return f"{self.name} {self.shape} {'complex' if self.is_complex else self.dtype}"


def _read_slice(var: MatVariable, plane: tuple[int, int], coil: int | None, slice_axes: list[int],
                i: int) -> np.ndarray:
    """Slice ``i`` of ``var`` (counted over ``slice_axes`` in MATLAB's column-major order; any other axis at 0)
    as ``[C, n(plane[0]), n(plane[1])]`` (``C = 1`` without a ``coil`` axis). Axes in MATLAB order."""
    slice_sizes = [var.shape[a] for a in slice_axes]
    sub = np.unravel_index(i, slice_sizes, order="F") if slice_axes else ()
    index = []
    for a in range(len(var.shape)):
        if a in plane or a == coil:
            index.append(slice(None))
        elif a in slice_axes:
            index.append(int(sub[slice_axes.index(a)]))
        else:
            index.append(0)
    arr = np.asarray(var.read(tuple(index)))
    kept = sorted([*plane] + ([coil] if coil is not None else []))
    order = ([kept.index(coil)] if coil is not None else []) + [kept.index(plane[0]), kept.index(plane[1])]
    arr = np.transpose(arr, order)
    return arr if coil is not None else arr[None]


# ------------------------------------------------------------------------------- MATLAB v5 pre-check
# scipy.io.loadmat trusts declared sizes: it inflates each compressed variable whole and allocates a cell or
# struct array of the declared dims before reading its elements. The file is walked first (tags only).
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MX_CELL, _MX_STRUCT, _MX_OBJECT = 1, 2, 3
_MX_CHAR, _MX_SPARSE = 4, 5
_MX_NUMERIC = {_MX_SPARSE, *range(6, 16)}
_MI_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18}
_MI_DATA_TYPES = _MI_TYPES - {_MI_MATRIX, _MI_COMPRESSED}
_MAX_ELEMENTS = 1_000_000


class _V5Walk:
    """Checks the declared sizes of a v5 file's variables against their bytes and the memory budget."""

    def __init__(self, path: str, endian: str):
        self.path, self.endian, self.elements = path, endian, 0

    def tag(self, buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
        """(type, nbytes, data start, next element) of the element at ``pos``."""
        if pos + 8 > end:
            raise CorruptFileError(self.path, "MATLAB file is truncated inside a data element tag")
        word, nbytes = struct.unpack_from(self.endian + "II", buf, pos)
        small = word >> 16  # small data element: 2-byte size, 2-byte type, data in the tag
        typ = word & 0xFFFF if small else word
        if typ not in _MI_TYPES:  # scipy's C reader indexes a table with it (an unknown type crashes it)
            raise CorruptFileError(self.path, f"MATLAB data element of unknown type {typ} (damaged file)")
        if small:
            if small > 4:
                raise CorruptFileError(self.path, f"MATLAB small data element of {small} bytes (damaged file)")
            return typ, small, pos + 4, pos + 8
        if pos + 8 + nbytes > end:
            raise CorruptFileError(self.path, f"MATLAB data element of {nbytes} bytes runs past the end of its "
                                              "container (truncated or damaged)")
        return word, nbytes, pos + 8, pos + 8 + nbytes + (-nbytes % 8)

    def matrix(self, buf: bytes, start: int, end: int, depth: int) -> None:
        """Check one miMATRIX payload ``buf[start:end]`` (and the cells/fields in it)."""
        self.elements += 1
        if depth > 32 or self.elements > _MAX_ELEMENTS:
            raise CorruptFileError(self.path, "MATLAB variables nest too deep or hold too many elements")
        if start == end:
            return  # an empty matrix
        typ, _, fpos, pos = self.tag(buf, start, end)
        if typ != _MI_UINT32:
            raise CorruptFileError(self.path, f"MATLAB variable's array flags have type {typ}, not miUINT32")
        flags = struct.unpack_from(self.endian + "I", buf, fpos)[0]
        cls, is_complex = flags & 0xFF, bool(flags & 0x0800)
        typ, nbytes, dpos, pos = self.tag(buf, pos, end)
        if typ != _MI_INT32 or nbytes % 4:
            raise CorruptFileError(self.path, "MATLAB variable has malformed dimensions")
        dims = struct.unpack_from(self.endian + f"{nbytes // 4}i", buf, dpos)
        if any(d < 0 for d in dims):
            raise CorruptFileError(self.path, f"MATLAB variable has negative dimensions {dims}")
        count = math.prod(dims)
        typ, _, _, pos = self.tag(buf, pos, end)  # array name
        if typ != _MI_INT8:
            raise CorruptFileError(self.path, f"MATLAB variable's name has type {typ}, not miINT8")
        if cls not in (_MX_CELL, _MX_STRUCT, _MX_OBJECT):
            # numeric, char, sparse: scipy reads their data by the tags' byte counts, but trusts the complex flag
            # (a missing imaginary part crashes it)
            parts = 0
            while pos < end:
                typ, _, _, pos = self.tag(buf, pos, end)
                if typ not in _MI_DATA_TYPES:  # a matrix or compressed element here crashes scipy
                    raise CorruptFileError(self.path, f"MATLAB variable holds a data part of type {typ}")
                parts += 1
            need = {_MX_SPARSE: 3}.get(cls, 1) + (is_complex if cls in _MX_NUMERIC else 0)
            if cls in _MX_NUMERIC | {_MX_CHAR} and parts < need:
                raise CorruptFileError(self.path, f"MATLAB variable has {parts} data parts; its flags need {need}")
            return
        if cls == _MX_OBJECT:
            _, _, _, pos = self.tag(buf, pos, end)  # class name
        n_fields = 1
        if cls != _MX_CELL:
            _, _, lpos, pos = self.tag(buf, pos, end)
            name_len = struct.unpack_from(self.endian + "i", buf, lpos)[0]
            _, names_bytes, _, pos = self.tag(buf, pos, end)
            n_fields = names_bytes // name_len if name_len > 0 else 0
        # every cell / field value is an element of at least 8 bytes
        if count * n_fields * 8 > end - pos:
            raise TooLargeError(self.path, f"MATLAB {'cell' if cls == _MX_CELL else 'struct'} array declares "
                                           f"{count} x {n_fields} elements, more than its {end - pos} bytes hold")
        for _ in range(count * n_fields):
            typ, _, dpos, pos = self.tag(buf, pos, end)
            if typ != _MI_MATRIX:
                raise CorruptFileError(self.path, "MATLAB cell or struct element is not a matrix")
            self.matrix(buf, dpos, pos if pos <= end else end, depth + 1)

    def inflate(self, data: bytes, start: int, nbytes: int, limit: int) -> bytes:
        """The inflated bytes of a compressed element, after a first pass that only counts them in small pieces
        (a bomb is refused with little memory)."""
        compressed = memoryview(data)[start: start + nbytes]
        counter, total, head = zlib.decompressobj(), 0, b""
        try:
            piece = counter.decompress(compressed, 1 << 20)
            while piece:
                head = head or piece[:8]
                total += len(piece)
                if total > limit:
                    declared = struct.unpack_from(self.endian + "I", head, 4)[0] + 8 if len(head) == 8 else total
                    check_bytes(self.path, max(declared, total), "a compressed MATLAB variable", stored=nbytes)
                    raise TooLargeError(self.path, f"a compressed MATLAB variable inflates to more than {limit} "
                                                   f"bytes from {nbytes}: a decompression bomb")
                piece = counter.decompress(counter.unconsumed_tail, 1 << 20)
            return zlib.decompressobj().decompress(compressed, limit + 1)
        except zlib.error as exc:
            raise CorruptFileError(self.path, f"compressed MATLAB variable is damaged ({exc})") from None

    def file(self, data: bytes) -> None:
        pos, end = 128, len(data)
        budget = memory_budget()
        total = 0  # scipy loads every variable: together they must fit the budget
        while pos + 8 <= end:
            typ, nbytes, dpos, _ = self.tag(data, pos, end)
            total += nbytes
            if typ == _MI_COMPRESSED:
                raw = self.inflate(data, dpos, nbytes, min(budget, max(MAX_EXPANSION * nbytes, SMALL_BYTES)))
                total += len(raw) - nbytes
                check_bytes(self.path, total, "the variables of the MATLAB file")
                if raw:
                    ityp, inb, idpos, _ = self.tag(raw, 0, len(raw))
                    if ityp == _MI_MATRIX:
                        self.matrix(raw, idpos, idpos + inb, 0)
                del raw
            elif typ == _MI_MATRIX:
                self.matrix(data, dpos, dpos + nbytes, 0)
            pos = dpos + nbytes  # top-level elements are not padded (as scipy reads them)


def _check_v5(path: str) -> None:
    """Walk a v5 file's tags (see :class:`_V5Walk`); v4 files (no text header) need no check: scipy reads
    their data by byte counts bounded by the file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return
    _V5Walk(path, "<" if data[126:128] == b"IM" else ">").file(data)


def _v5_variables(path: str) -> tuple[list[MatVariable], dict[str, Any]]:
    import scipy.io

    _check_v5(path)
    try:
        data = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise CorruptFileError(path, "MATLAB file says v7.3 but is not readable as HDF5") from None
    except Exception as e:  # scipy raises ValueError/OSError/TypeError/MatReadError on damaged files
        raise CorruptFileError(path, f"cannot read MATLAB file ({type(e).__name__}: {e}); truncated or damaged?") from None
    variables: list[MatVariable] = []
    scalars: dict[str, Any] = {}

    def walk(name: str, v: Any, depth: int = 0) -> None:
        if not isinstance(v, np.ndarray) or depth > 4:
            return
        if v.dtype.names:
            if v.size == 1:
                for f in v.dtype.names:
                    walk(f"{name}.{f}", v[f].flat[0], depth + 1)
            return
        if v.dtype.kind == "U":
            text = "".join(v.ravel().tolist())
            if len(text) <= 80:
                scalars[name] = text
            return
        if v.dtype.kind not in "biufc":
            return
        if v.size == 1:
            scalars[name] = v.item()
        arr = v
        variables.append(MatVariable(name, tuple(arr.shape), arr.dtype.kind == "c", str(arr.dtype),
                                     lambda index=None, a=arr: a if index is None else a[index]))

    for key, value in data.items():
        if not key.startswith("__"):
            walk(key, value)
    return variables, scalars


def _h5_variables(path: str) -> tuple[list[MatVariable], dict[str, Any]]:
    import h5py

    variables: list[MatVariable] = []
    scalars: dict[str, Any] = {}
    with hdf5.open_hdf5(path) as f:  # refuses links and storage outside the file
        def visit(name: str, obj: Any) -> None:
            if name.startswith("#") or not isinstance(obj, h5py.Dataset):
                return
            attrs = hdf5.attributes(obj, path)
            cls = attrs.get("MATLAB_class", b"")
            cls = cls.decode(errors="replace") if isinstance(cls, bytes) else str(cls)
            if np.any(attrs.get("MATLAB_empty", 0)):
                return
            mname = name.replace("/", ".")
            dt = obj.dtype
            if cls == "char":
                if obj.size <= 80 and obj.dtype.kind in "iu":
                    text = np.asarray(hdf5.read(path, obj, (), f"variable {mname}")).T.ravel()
                    scalars[mname] = "".join(chr(c) for c in text if 0 <= c < 0x110000)
                return
            is_complex = dt.names is not None and {"real", "imag"} <= set(dt.names)
            if not is_complex and (dt.names is not None or dt.kind not in "biuf"):
                return  # cell arrays (object references), sparse, function handles
            if obj.shape is None:
                return  # a null dataspace holds no values
            shape = tuple(reversed(obj.shape))

            def read(index: tuple | None = None, _name: str = name) -> np.ndarray:
                with hdf5.open_hdf5(path) as g:
                    ds = hdf5.get(g, _name, path)
                    raw = hdf5.read(path, ds, () if index is None else tuple(reversed(index)),
                                    f"variable {mname}")
                a = raw["real"] + 1j * raw["imag"] if raw.dtype.names else np.asarray(raw)
                return np.asarray(a).T

            variables.append(MatVariable(mname, shape, is_complex,
                                         f"complex({dt['real']})" if is_complex else str(dt), read))
            if obj.size == 1 and not is_complex:
                scalars[mname] = np.asarray(hdf5.read(path, obj, (), f"variable {mname}")).item()

        try:
            f.visititems(visit)
        except hdf5.H5_ERRORS as e:
            raise CorruptFileError(path, f"damaged MATLAB v7.3 file: {hdf5.reason(e)}") from None
    return variables, scalars


def list_variables(path: str) -> tuple[str, list[MatVariable], dict[str, Any]]:
    """(version "v5"/"v7.3", numeric variables, scalar/short-string values for the header)."""
    import h5py

    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB 7.3") or h5py.is_hdf5(path):
        return ("v7.3", *_h5_variables(path))
    return ("v5", *_v5_variables(path))


# ------------------------------------------------------------------------------------------------ reader
class MatlabReader:
    """Reader for MATLAB ``.mat`` files holding k-space (or coil images) arrays."""

    name = "mat"
    extensions = (".mat",)

    def probe(self, path: str, head: bytes) -> int:
        if head.startswith(b"MATLAB"):
            return 80
        if not path.lower().endswith(".mat"):
            return 0
        import scipy.io

        try:  # MATLAB v4 files have no text header; scipy recognises them by their first bytes
            return 40 if scipy.io.matlab.matfile_version(path)[0] == 0 else 0
        except (ValueError, OSError):
            return 0

    def open(self, path: str, **options: Any) -> Scan:
        check_options(path, "MATLAB", options, _OPTIONS)
        units = str(options.get("trajectory_units") or "auto").lower()
        if units not in _UNITS:
            raise ScanError(path, f"option trajectory_units={units!r}: use one of {', '.join(_UNITS)}")
        options = dict(options, trajectory_units=units,
                       image_domain=option_bool(path, "image_domain", options.get("image_domain")),
                       readout_oversampling=option_float(path, "readout_oversampling",
                                                         options.get("readout_oversampling")),
                       grid_shape=option_shape(path, "grid_shape", options.get("grid_shape")))
        version, variables, scalars = list_variables(path)
        by_name = {v.name: v for v in variables}
        listing = "; ".join(v.describe() for v in sorted(variables, key=lambda v: -v.size)) or "none"
        attrs: dict[str, Any] = {"mat_version": version, "variables": {v.name: list(v.shape) for v in variables},
                                 "notes": []}

        def lookup(option: str) -> MatVariable | None:
            name = options.get(option)
            if name is None:
                return None
            v = by_name.get(str(name).replace("/", "."))
            if v is None:
                raise InvalidDataError(path, f"{option}={name!r}: no such numeric variable; variables: {listing}")
            return v

        kvar = lookup("kspace_var")
        if kvar is None:
            complex_vars = sorted((v for v in variables if v.is_complex), key=lambda v: -v.size)
            if not complex_vars:
                raise InvalidDataError(path, f"no complex array (k-space) in this MATLAB file; variables: {listing}. "
                                             "Name the k-space with the option kspace_var=NAME")
            tied = [v for v in complex_vars if v.size == complex_vars[0].size]
            if len(tied) > 1:
                raise InvalidDataError(
                    path, "ambiguous: several complex arrays of the same size ("
                    + ", ".join(v.describe() for v in tied) + f"); all variables: {listing}. Choose with the options "
                    "kspace_var=NAME (and trajectory_var, reference_var, coil_axis, image_domain as needed)")
            kvar = complex_vars[0]
            attrs["kspace_choice"] = (f"took {kvar.name} {kvar.shape}: the largest complex array"
                                      + (f" (others: {', '.join(v.describe() for v in complex_vars[1:])})"
                                         if len(complex_vars) > 1 else ""))
        else:
            attrs["kspace_choice"] = f"took {kvar.name} {kvar.shape} (option kspace_var)"
        attrs["kspace_var"] = kvar.name
        if kvar.size == 0 or len(kvar.squeezed) < 2:
            raise InvalidDataError(path, f"variable {kvar.describe()} is not a 2D (or larger) array")

        tvar = lookup("trajectory_var")
        if tvar is None and options.get("trajectory_var") is None:
            tvar = self._find_trajectory(path, kvar, variables, listing)
        rvar = lookup("reference_var")

        header: dict[str, Any] = {"mat_version": version, "kspace_var": kvar.name}
        for k, v in list(scalars.items())[:16]:
            header[k] = v
        if tvar is not None:
            scan = self._open_noncartesian(path, kvar, tvar, rvar, options, header, attrs)
        else:
            scan = self._open_cartesian(path, kvar, rvar, options, header, attrs, listing)
        check_finite(path, scan.load_slice(0))
        return scan

    # -------------------------------------------------------------------------------------------------
    @staticmethod
    def _sample_axes(kvar: MatVariable, tshape: tuple[int, ...]) -> tuple[int, int] | None:
        """MATLAB axes (a, b) of the k-space whose sizes are (readout, spokes) of a trajectory of shape tshape."""
        ns = [i for i, d in enumerate(kvar.shape) if d != 1]
        for j in range(len(ns) - 1):
            if (kvar.shape[ns[j]], kvar.shape[ns[j + 1]]) == tuple(tshape):
                return ns[j], ns[j + 1]
        return None

    @staticmethod
    def _traj_sample_shape(tvar: MatVariable) -> tuple[int, ...] | None:
        """(readout, spokes) of a trajectory variable: complex [R, S] or real [R, S, 2|3] / [2|3, R, S]."""
        sq = tvar.squeezed
        if tvar.is_complex:
            return sq if len(sq) == 2 else None
        if len(sq) == 3 and sq[-1] in (2, 3):
            return sq[:2]
        if len(sq) == 3 and sq[0] in (2, 3):
            return sq[1:]
        return None

    @staticmethod
    def _trajectory_coords(tvar: MatVariable, n_read: int, n_spokes: int) -> np.ndarray:
        """``[2, readout, spokes]`` float64 coordinates: x = real part / first coordinate, y = imaginary / second."""
        t = np.asarray(tvar.read(None))
        t = t.reshape([d for d in t.shape if d != 1])
        if tvar.is_complex:
            coords = np.stack([t.real, t.imag])
        elif t.ndim == 3 and t.shape[-1] in (2, 3) and t.shape[:2] == (n_read, n_spokes):
            coords = np.moveaxis(t[..., :2], -1, 0)
        else:
            coords = t[:2]
        return coords.astype(np.float64)

    def _find_trajectory(self, path, kvar, variables, listing) -> MatVariable | None:
        """The one array that looks like this k-space's trajectory: shaped like two adjacent k-space dims
        (readout, spokes), smaller than the k-space, and either named like one (k, traj*, coord*, ...) or
        radial (so that a complex image stored beside Cartesian k-space is not mistaken for a trajectory)."""
        found = []
        for v in variables:
            if v is kvar or v.size < 4 or v.size >= kvar.size:
                continue
            ts = self._traj_sample_shape(v)
            if ts is None or self._sample_axes(kvar, ts) is None:
                continue
            leaf = v.name.split(".")[-1].lower()
            named = leaf in _TRAJ_NAMES or leaf.startswith(("traj", "coord", "kloc", "ktraj"))
            coords = self._trajectory_coords(v, *ts)
            if np.isfinite(coords).all() and (named or radial_spokes(coords)):
                found.append(v)
        if len(found) > 1:
            raise InvalidDataError(path, "ambiguous: several arrays look like a trajectory for "
                                         f"{kvar.describe()} ({', '.join(v.describe() for v in found)}); all variables: "
                                         f"{listing}. Choose with trajectory_var=NAME")
        return found[0] if found else None

    @staticmethod
    def _coil_option(path: str, kvar: MatVariable, options: dict) -> int | None | str:
        """The coil_axis option: "auto" (absent or "auto"), None (given as None/"none": single coil) or an axis."""
        if "coil_axis" not in options:
            return "auto"
        v = options["coil_axis"]
        if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "")):
            return None
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        return MatlabReader._axis(path, kvar, v)

    @staticmethod
    def _axis(path: str, kvar: MatVariable, value: Any) -> int:
        nd = len(kvar.shape)
        try:
            a = int(value)
        except (TypeError, ValueError):
            raise ScanError(path, f"coil_axis={value!r} is not an integer") from None
        if not -nd <= a < nd:
            raise ScanError(path, f"coil_axis={a} is out of range for {kvar.describe()} ({nd} dims, MATLAB order)")
        return a % nd

    # -------------------------------------------------------------------------------------------------
    def _open_cartesian(self, path, kvar, rvar, options, header, attrs, listing) -> Scan:
        if options["grid_shape"] is not None:
            raise ScanError(path, "grid_shape applies to non-Cartesian data (with a trajectory)")
        shape = kvar.shape
        ns = [i for i, d in enumerate(shape) if d != 1]
        coil_opt = self._coil_option(path, kvar, options)
        if coil_opt != "auto":
            coil, why_coil = coil_opt, "option coil_axis"
        elif len(ns) == 2:
            coil, why_coil = None, "2D array: single coil"
        elif len(ns) == 3:
            inplane_min = min(shape[i] for i in ns)
            last_ok = shape[ns[-1]] <= _MAX_COILS and shape[ns[-1]] <= inplane_min
            first_ok = shape[ns[0]] <= _MAX_COILS and shape[ns[0]] <= inplane_min
            if last_ok:
                coil, why_coil = ns[-1], "coils = last non-singleton dim (MATLAB [x, y, coils])"
            elif first_ok:
                coil, why_coil = ns[0], "coils = first non-singleton dim ([coils, x, y])"
            else:
                raise InvalidDataError(path, f"cannot tell the coil axis of {kvar.describe()}; give coil_axis=N "
                                             f"(MATLAB dim order, 0-based); variables: {listing}")
        else:
            raise InvalidDataError(path, f"{kvar.describe()} has {len(ns)} non-singleton dims: give coil_axis=N "
                                         "(MATLAB dim order, 0-based); the first two other dims are the image plane, "
                                         f"the rest are enumerated as slices. Variables: {listing}")
        rest = [i for i in ns if i != coil]
        if len(rest) < 2:
            raise InvalidDataError(path, f"{kvar.describe()} has no 2D image plane besides the coil axis {coil}")
        ax_h, ax_w = rest[0], rest[1]
        slice_axes = rest[2:]
        slice_sizes = [shape[a] for a in slice_axes]
        n_slices = int(np.prod(slice_sizes)) if slice_axes else 1
        n_coils = shape[coil] if coil is not None else 1

        def read_plane(i: int) -> np.ndarray:
            """Slice i as stored: [C, first in-plane dim, second in-plane dim]."""
            return _read_slice(kvar, (ax_h, ax_w), coil, slice_axes, i)

        first = read_plane(0)
        check_finite(path, first)
        image_domain = options["image_domain"]
        if image_domain is None:
            detected, why = detect_image_domain(first)
            image_domain = bool(detected)
            attrs["image_domain"] = (("coil images (detected: " if detected else "k-space (detected: ") + why + ")"
                                     if detected is not None else f"k-space (assumed; detection ambiguous: {why})")
        else:
            image_domain = bool(image_domain)
            attrs["image_domain"] = f"{'coil images' if image_domain else 'k-space'} (option image_domain)"
        header["content"] = attrs["image_domain"].split(" (")[0]

        def kspace_plane(i: int) -> np.ndarray:
            x = read_plane(i)
            return fft2c_np(x) if image_domain else x

        k0 = fft2c_np(first) if image_domain else first
        os_opt = options["readout_oversampling"]
        axis, oversampled, why = detect_readout_axis(k0)
        swap = False
        if os_opt == 1.0:
            os_factor, attrs["readout"] = 1.0, "readout_oversampling=1 (option): H = first in-plane dim"
        else:
            if axis is not None:
                swap = axis == 1
            os_factor = os_opt if os_opt is not None else (2.0 if oversampled else 1.0)
            attrs["readout"] = (f"readout along {'W -> moved to H' if swap else 'H'} ({why})" if axis is not None
                                else f"readout not detected, H = first in-plane dim ({why})")
        if swap:
            attrs["notes"].append("in-plane axes transposed so that the readout runs along H")

        merge = option_bool(path, "merge_channels", options.get("merge_channels")) or False

        def load_slice(i: int) -> np.ndarray:
            k = kspace_plane(i)
            if swap:
                k = np.swapaxes(k, -1, -2)
            if merge:
                k = merge_channels(k)[0]
            return np.array(k, dtype=np.complex64, order="C")

        kk = np.swapaxes(k0, -1, -2) if swap else k0
        grid = tuple(int(v) for v in kk.shape[-2:])
        mask, differ = acquired_samples(kk)
        n_coils_stored = n_coils
        if merge:
            if differ is None:
                raise ScanError(path, "merge_channels: the channels hold the same k-space samples (coils of one "
                                      "acquisition); there is nothing to merge")
            kk, fits = merge_channels(kk)
            mask, n_coils = np.abs(kk[0]) > 0, 1
            aligned = ", ".join(f"a={a:.2f} rad b={b:.4f} rad/sample" for a, b in fits)
            attrs["notes"].append(f"{n_coils_stored} channels holding different k-space samples merged into one coil "
                                  f"(option merge_channels; slice 0 aligned by {aligned})")
        elif differ is not None:
            attrs["notes"].append(differ + " (merge_channels=true merges them into one coil)")
        acquired = None if mask.all() else mask
        recon = (int(round(grid[0] / os_factor)), grid[1])
        attrs["readout_oversampling"] = os_factor
        attrs["layout"] = (f"MATLAB dims: coils {coil} ({why_coil}), image plane ({ax_h}, {ax_w}), "
                           f"slices {slice_axes or 'none'}")

        ref_loader = None
        if rvar is not None:
            ref_loader = self._reference(path, rvar, grid, recon, n_slices, swap)
            attrs["reference_var"] = rvar.name
        return Scan(
            path=path, format="mat", n_slices=n_slices, n_coils=n_coils, kspace_shape=(n_coils, *grid),
            load_slice=load_slice, grid_shape=grid, recon_shape=recon, acquired_mask=acquired,
            load_reference=ref_loader, reference_kind="stored" if ref_loader else None, header=header, attrs=attrs,
        )

    @staticmethod
    def _reference(path, rvar, grid, recon, n_slices, swap) -> Callable[[int], np.ndarray]:
        r = np.abs(np.asarray(rvar.read(None))).astype(np.float32)
        r = r.reshape([d for d in r.shape if d != 1] or [1])
        if r.ndim == 2:
            r = r[..., None]
        if r.ndim != 3 or r.shape[-1] not in (1, n_slices):
            raise InvalidDataError(path, f"reference_var {rvar.describe()} is not [h, w] or [h, w, {n_slices} slices]")
        r = np.moveaxis(r, -1, 0)
        if swap:
            r = np.swapaxes(r, -1, -2)
        if tuple(r.shape[-2:]) not in (tuple(recon), tuple(grid)):
            raise InvalidDataError(path, f"reference_var {rvar.describe()} does not fit the image size {recon} "
                                         f"(or the grid {grid})")

        def load(i: int) -> np.ndarray:
            img = r[i if r.shape[0] > 1 else 0]
            h, w = img.shape
            top, left = h // 2 - recon[0] // 2, w // 2 - recon[1] // 2
            return np.array(img[top: top + recon[0], left: left + recon[1]], dtype=np.float32)

        return load

    # -------------------------------------------------------------------------------------------------
    def _open_noncartesian(self, path, kvar, tvar, rvar, options, header, attrs) -> Scan:
        ts = self._traj_sample_shape(tvar)
        axes = self._sample_axes(kvar, ts) if ts is not None else None
        if axes is None:
            raise InvalidDataError(path, f"trajectory {tvar.describe()} does not match two adjacent dims of the "
                                         f"k-space {kvar.describe()} (expected complex [readout, spokes] or real "
                                         "[readout, spokes, 2])")
        a_r, a_s = axes
        shape = kvar.shape
        rest = [i for i, d in enumerate(shape) if d != 1 and i not in axes]
        coil_opt = self._coil_option(path, kvar, options)
        if coil_opt != "auto":
            coil = coil_opt
        elif len(rest) <= 1:
            coil = rest[0] if rest else None
        else:
            raise InvalidDataError(path, f"{kvar.describe()}: give coil_axis=N (MATLAB dim order, 0-based) for the "
                                         "dims besides (readout, spokes)")
        slice_axes = [i for i in rest if i != coil]
        slice_sizes = [shape[a] for a in slice_axes]
        n_slices = int(np.prod(slice_sizes)) if slice_axes else 1
        n_coils = shape[coil] if coil is not None else 1
        n_read, n_spokes = shape[a_r], shape[a_s]

        coords = self._trajectory_coords(tvar, n_read, n_spokes)     # x -> row 0 (H), y -> row 1 (W)
        if not np.isfinite(coords).all():
            raise InvalidDataError(path, f"trajectory {tvar.name} has NaN/Inf values")
        radial = radial_spokes(coords)
        grid_opt = options["grid_shape"]
        if grid_opt is None and radial:
            grid_opt = (n_read, n_read)
        # [2, readout, spokes] -> [2, K], spoke after spoke, like the k-space below
        flat = np.transpose(coords, (0, 2, 1)).reshape(2, -1)
        rad, grid, units = trajectory_radians(flat, grid_opt, n_read, options["trajectory_units"])
        if grid is None:
            raise InvalidDataError(path, f"trajectory {tvar.name} in {units} does not fix the image grid; give "
                                         "grid_shape=(N, N)")
        os_opt = options["readout_oversampling"]
        os_factor = os_opt if os_opt is not None else (2.0 if radial else 1.0)
        recon = (int(round(grid[0] / os_factor)), int(round(grid[1] / os_factor)))

        def load_slice(i: int) -> np.ndarray:
            arr = _read_slice(kvar, (a_s, a_r), coil, slice_axes, i)  # [C, spokes, readout]
            return np.array(arr.reshape(arr.shape[0], -1), dtype=np.complex64, order="C")

        kind = "radial" if radial else "non-cartesian"
        attrs.update({"trajectory_var": tvar.name, "trajectory_kind": kind, "trajectory_units": units,
                      "readout_oversampling": os_factor,
                      "layout": f"MATLAB dims: readout {a_r}, spokes {a_s}, coils {coil}, slices {slice_axes or 'none'};"
                                f" K = spoke * {n_read} + sample; trajectory x (real) -> H, y (imag) -> W"})
        header["trajectory_var"] = tvar.name
        header["spokes"] = f"{n_spokes} x {n_read} samples"
        ref_loader = self._reference(path, rvar, grid, recon, n_slices, False) if rvar is not None else None
        return Scan(
            path=path, format="mat", n_slices=n_slices, n_coils=n_coils, kspace_shape=(n_coils, n_read * n_spokes),
            load_slice=load_slice, grid_shape=grid, recon_shape=recon, trajectory=rad,
            load_reference=ref_loader, reference_kind="stored" if ref_loader else None, header=header, attrs=attrs,
        )


register_reader(MatlabReader())
