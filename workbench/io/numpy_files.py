"""NumPy ``.npy`` / ``.npz`` k-space (``np.load`` with ``allow_pickle=False``; ``.npy`` is memory-mapped).

Options (the same names as the MATLAB reader's; see docs/formats.md):
- ``kspace_var``: the k-space array of an ``.npz`` (default: the one complex array, or one named ``kspace``,
  ``ksp``, ``k_space``, ``kdata`` or ``raw``).
- ``coil_axis``: the coil axis of that array (int, negative allowed; ``None`` = single coil). Default: 0 for
  3 dims (``[C, H, W]``), 1 for 4 dims (``[S, C, H, W]``), none for 2 dims (``[H, W]``).
- ``slice_axis``: the slice axis of a 4-dim array (default: the first axis that is not the coil axis).
  The last two remaining axes are ``H, W`` (readout along H when there is one).
- ``image_domain`` (bool): the array holds coil IMAGES; k-space is their centred orthonormal FFT.
- ``readout_oversampling`` (float, default 1): ``recon_shape`` = grid with H divided by it (Cartesian) or both
  axes divided by it (non-Cartesian, where the readout turns).
- ``reference_var``: a stored magnitude reference ``[h, w]`` or ``[S, h, w]`` (complex: its magnitude).
- ``trajectory_var``: a trajectory makes the scan non-Cartesian. Accepted layouts: ``[2, ...]``, ``[..., 2]``
  (real; a 3rd coordinate must be all zero) or complex ``kx + i*ky`` of any shape; its sample axes are
  flattened in C order to ``K``, as are the k-space's (whose sample axes must be its leading or trailing axes,
  product ``K``; the remaining axes are coil, or slice and coil).
- ``trajectory_units``: ``auto`` (max |k| <= 0.5: cycles/sample; <= pi: radians; else 1/FOV units),
  ``cycles``, ``radians`` or ``fov`` (``rad = 2*pi*k/N``).
- ``grid_shape``: the NUFFT grid ``(H, W)`` (non-Cartesian). Default: ``2*ceil(max|k|)`` for 1/FOV units, else the
  readout length when the trajectory has a ``[readout, spokes]`` shape.
- ``dcf_var``: stored density compensation (``[K]`` after flattening).
For a ``.npy`` file (one array), ``trajectory_var``, ``reference_var`` and ``dcf_var`` name sibling ``.npy``
files in the same folder (``"coord"`` or ``"coord.npy"``).
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import tokenize
import zipfile
import zlib
from typing import Any

import numpy as np

from workbench.arrays import fft2c_np
from workbench.errors import CorruptFileError, InvalidDataError, ScanError, TooLargeError
from workbench.io import acquired_samples, check_finite, check_options, describe_content, register_reader
from workbench.io.bart import option_shape
from workbench.io.mrd import trajectory_to_radians
from workbench.limits import check_bytes
from workbench.scan import Scan

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_KSPACE_NAMES = ("kspace", "ksp", "k_space", "kdata", "raw")
_TRAJ_NAMES = ("traj", "trajectory", "ktraj", "coord", "coords")
_REF_NAMES = ("reference", "ref", "rss", "target")
_AUTO = "auto"

OPTIONS = ("kspace_var", "coil_axis", "slice_axis", "trajectory_var", "reference_var", "dcf_var", "image_domain",
           "readout_oversampling", "grid_shape", "trajectory_units")


def _as_bool(path: str, name: str, v: Any) -> bool:
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ScanError(path, f"option {name}={v!r} is not true/false")
    return bool(v)


def _as_axis(path: str, name: str, v: Any) -> int | None | str:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "")):
        return None
    if isinstance(v, str) and v.strip().lower() == _AUTO:
        return _AUTO
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ScanError(path, f"option {name}={v!r} is not an axis number") from None


def _as_float(path: str, name: str, v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ScanError(path, f"option {name}={v!r} is not a number") from None


def _describe(arrays: dict[str, Any]) -> str:
    return ", ".join(f"{n} {tuple(a.shape)} {a.dtype}" for n, a in arrays.items()) or "no arrays"


def _to_complex(path: str, name: str, a: np.ndarray) -> np.ndarray:
    """Complex view of an array stored as complex, as [..., 2] real/imag, or with real/imag fields."""
    if np.iscomplexobj(a):
        return a
    if a.dtype.names and len(a.dtype.names) == 2:
        re, im = a.dtype.names
        return np.asarray(a[re], np.float32) + 1j * np.asarray(a[im], np.float32)
    if a.dtype.kind in "fiu" and a.ndim >= 2 and a.shape[-1] == 2:
        return np.asarray(a[..., 0], np.float32) + 1j * np.asarray(a[..., 1], np.float32)
    raise InvalidDataError(path, f"array {name!r} {a.shape} {a.dtype} is not complex k-space (no imaginary part; "
                           "use image_domain=true for real coil images)")


_NPY_ERRORS = (OSError, EOFError, pickle.UnpicklingError, SyntaxError, TypeError, OverflowError, KeyError,
               tokenize.TokenError, UnicodeDecodeError, struct.error, zlib.error)


def _check_npy_header_length(path: str) -> None:
    """NumPy reads a .npy header of the length the file states before checking it: a damaged version byte
    makes that a 4-byte length of up to 4 GiB. The version and length are checked first."""
    with open(path, "rb") as f:
        head = f.read(12)
    version = tuple(head[6:8])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise CorruptFileError(path, f"NumPy file format version {version[0]}.{version[1]} is unknown (damaged?)")
    length = int.from_bytes(head[8:10], "little") if version == (1, 0) else int.from_bytes(head[8:12], "little")
    if length > 100_000 or length > os.path.getsize(path):
        raise CorruptFileError(path, f"NumPy file states a header of {length} bytes (damaged)")


def _check_npz_member(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """An .npz member must be a plain .npy whose header's shape x itemsize fits the member's declared
    (uncompressed) size and the memory budget; only its first bytes are inflated."""
    name = info.filename
    if not name.endswith(".npy"):
        raise InvalidDataError(path, f"archive member {name!r} is not a .npy array; an .npz holds only arrays")
    check_bytes(path, info.file_size, f"archive member {name!r}", stored=info.compress_size)
    with zf.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:  # 2.0 (and 3.0: the same layout, UTF-8 field names) have a 4-byte header length
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        except (ValueError, *_NPY_ERRORS) as exc:
            raise CorruptFileError(path, f"archive member {name!r} is not a valid .npy ({exc})") from exc
        header_end = member.tell()
    if dtype.hasobject:
        raise InvalidDataError(path, f"archive member {name!r} holds Python objects (pickled data); only plain "
                                     "numeric arrays are read")
    if any(int(n) < 0 for n in shape):
        raise CorruptFileError(path, f"archive member {name!r} declares a negative shape {shape}")
    need = math.prod(int(n) for n in shape) * dtype.itemsize
    if header_end + need != info.file_size:
        raise CorruptFileError(path, f"archive member {name!r} declares {shape} {dtype} ({need} bytes) but holds "
                                     f"{info.file_size - header_end} bytes")


class NumpyReader:
    name = "npy"
    extensions = (".npy", ".npz")
    options = OPTIONS

    def probe(self, path: str, head: bytes) -> int:
        if head.startswith(NPY_MAGIC):
            return 100
        if head.startswith(ZIP_MAGIC):
            if path.lower().endswith(".npz"):
                return 90
            try:
                with zipfile.ZipFile(path) as z:
                    names = z.namelist()
                return 60 if names and all(n.endswith(".npy") for n in names) else 0
            except (zipfile.BadZipFile, OSError):
                return 0
        return 0

    # -----------------------------------------------------------------------------------------------------
    def open(self, path: str, **options: Any) -> Scan:
        path = os.fspath(path)
        check_options(path, self.name, options, self.options)
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head.startswith(NPY_MAGIC):
            if options.get("kspace_var") not in (None, "", os.path.splitext(os.path.basename(path))[0]):
                raise ScanError(path, "kspace_var applies to .npz files; a .npy file holds one array")
            arrays = {os.path.splitext(os.path.basename(path))[0]: self._load_npy(path)}
            kname = next(iter(arrays))
            sibling = lambda name: self._sibling(path, name)  # noqa: E731
        elif head.startswith(ZIP_MAGIC):
            arrays = self._load_npz(path)
            kname = self._pick_kspace(path, arrays, options.get("kspace_var"))
            sibling = lambda name: self._named(path, arrays, name)  # noqa: E731
        else:
            raise CorruptFileError(path, f"not a NumPy .npy/.npz file (content: {describe_content(head)})")

        def optional(opt: str, names: tuple[str, ...]) -> tuple[str | None, np.ndarray | None]:
            name = options.get(opt)
            if name is None and head.startswith(ZIP_MAGIC):
                name = next((n for n in names if n in arrays and n != kname), None)
            return (None, None) if not name else (str(name), sibling(str(name)))

        traj_name, traj = optional("trajectory_var", _TRAJ_NAMES)
        ref_name, ref = optional("reference_var", _REF_NAMES)
        dcf_name, dcf = optional("dcf_var", ())
        return build_scan_from_array(
            path, arrays[kname], name=kname, fmt=self.name, trajectory=traj, reference=ref, dcf=dcf,
            coil_axis=_as_axis(path, "coil_axis", options.get("coil_axis", _AUTO)),
            slice_axis=_as_axis(path, "slice_axis", options.get("slice_axis", _AUTO)),
            image_domain=_as_bool(path, "image_domain", options.get("image_domain", False)),
            readout_oversampling=_as_float(path, "readout_oversampling", options.get("readout_oversampling", 1.0)),
            grid_shape=option_shape(path, "grid_shape", options.get("grid_shape")),
            trajectory_units=str(options.get("trajectory_units", "auto")).lower(),
            attrs={"arrays": {n: [list(a.shape), str(a.dtype)] for n, a in arrays.items()},
                   "kspace_var": kname, "trajectory_var": traj_name, "reference_var": ref_name, "dcf_var": dcf_name},
        )

    # -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _load_npy(path: str) -> np.ndarray:
        _check_npy_header_length(path)
        try:
            # Memory-mapped, read-only: a slice read touches only that slice's pages, and np.load checks that
            # the file holds the bytes its header declares.
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            msg = str(exc)
            if "pickle" in msg.lower() or "object" in msg.lower():
                raise InvalidDataError(path, "holds Python objects (pickled data); only plain numeric arrays "
                                       "are read") from exc
            raise CorruptFileError(path, f"NumPy file is truncated or damaged ({msg})") from exc
        except _NPY_ERRORS as exc:  # a damaged header fails in its parser (TokenError, SyntaxError, ...)
            raise CorruptFileError(path, f"NumPy file is truncated or damaged ({type(exc).__name__}: {exc})") \
                from exc

    @staticmethod
    def _load_npz(path: str) -> dict[str, np.ndarray]:
        """All arrays of an .npz, after checking each member's .npy header against its zip entry and the
        memory budget (a zip bomb or a forged shape is refused before anything is inflated)."""
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                total = 0
                for info in infos:
                    _check_npz_member(path, zf, info)
                    total += info.file_size
                check_bytes(path, total, "the arrays of the .npz archive", stored=os.path.getsize(path))
            with np.load(path, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (CorruptFileError, InvalidDataError, TooLargeError):
            raise
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                raise InvalidDataError(path, "holds Python objects (pickled data); only plain numeric arrays "
                                       "are read") from exc
            raise CorruptFileError(path, f".npz archive is damaged ({exc})") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, *_NPY_ERRORS) as exc:
            raise CorruptFileError(path, f".npz archive is truncated or damaged ({type(exc).__name__}: {exc})") \
                from exc

    @staticmethod
    def _pick_kspace(path: str, arrays: dict[str, np.ndarray], var: Any) -> str:
        if var:
            if var not in arrays:
                raise InvalidDataError(path, f"kspace_var={var!r} not found; arrays: {_describe(arrays)}")
            return str(var)
        named = [n for n in _KSPACE_NAMES if n in arrays]
        if named:
            return named[0]
        cplx = [n for n, a in arrays.items() if np.iscomplexobj(a) and 2 <= a.ndim <= 4]
        if len(cplx) == 1:
            return cplx[0]
        if not arrays:
            raise InvalidDataError(path, "the .npz archive holds no arrays")
        why = "no complex array" if not cplx else f"{len(cplx)} complex arrays"
        raise InvalidDataError(path, f"cannot tell which array is k-space ({why}; arrays: {_describe(arrays)}); "
                               "name it with the option kspace_var=NAME")

    @staticmethod
    def _named(path: str, arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
        if name not in arrays:
            raise InvalidDataError(path, f"array {name!r} not found; arrays: {_describe(arrays)}")
        return arrays[name]

    def _sibling(self, path: str, name: str) -> np.ndarray:
        other = os.path.join(os.path.dirname(path), name if name.endswith(".npy") else name + ".npy")
        if not os.path.isfile(other):
            raise ScanError(path, f"{os.path.basename(other)} (named by an option) is not beside the file")
        arr = self._load_npy(other)
        check_bytes(other, arr.nbytes, f"array {os.path.basename(other)}")
        return np.asarray(arr)


register_reader(NumpyReader())


# ---------------------------------------------------------------------------------------------------------
# Interpretation of an in-memory (or memory-mapped) array; shared by readers of array containers.


def build_scan_from_array(
    path: str,
    data: np.ndarray,
    *,
    name: str = "kspace",
    fmt: str = "npy",
    trajectory: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    dcf: np.ndarray | None = None,
    coil_axis: int | None | str = _AUTO,
    slice_axis: int | None | str = _AUTO,
    image_domain: bool = False,
    readout_oversampling: float = 1.0,
    grid_shape: tuple[int, int] | None = None,
    trajectory_units: str = "auto",
    attrs: dict[str, Any] | None = None,
) -> Scan:
    """A Scan from one k-space (or coil-image) array and the options above (see the module docstring)."""
    attrs = dict(attrs or {})
    if readout_oversampling is None or not readout_oversampling >= 1:
        raise ScanError(path, f"option readout_oversampling={readout_oversampling!r} must be >= 1")
    if data.size == 0:
        raise InvalidDataError(path, f"array {name!r} is empty (shape {data.shape})")
    if image_domain:
        if not (np.iscomplexobj(data) or data.dtype.kind in "fiu"):
            raise InvalidDataError(path, f"array {name!r} {data.dtype} is not numeric")
    else:
        if not np.iscomplexobj(data):
            # the conversion reads the whole array into a complex64 copy
            check_bytes(path, data.size * 8 + data.nbytes, f"array {name!r} as complex k-space")
            data = _to_complex(path, name, np.asarray(data))
    if trajectory is None:
        scan = _cartesian(path, data, name, fmt, coil_axis, slice_axis, image_domain, readout_oversampling,
                          grid_shape, attrs)
    else:
        if image_domain:
            raise ScanError(path, "image_domain=true and a trajectory contradict each other")
        scan = _noncartesian(path, data, name, fmt, trajectory, coil_axis, slice_axis, readout_oversampling,
                             grid_shape, trajectory_units, dcf, attrs)
    if reference is not None:
        _attach_reference(path, scan, np.asarray(reference))
    check_finite(path, scan.load_slice(0), 0)
    return scan


def _norm_axis(path: str, axis: int, ndim: int, opt: str) -> int:
    if not -ndim <= axis < ndim:
        raise ScanError(path, f"option {opt}={axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _cartesian(path, data, name, fmt, coil_axis, slice_axis, image_domain, os_factor, grid_shape, attrs) -> Scan:
    nd = data.ndim
    if nd < 2 or nd > 4:
        raise InvalidDataError(path, f"array {name!r} has {nd} dimensions {data.shape}; expected [H, W], [C, H, W] "
                               "or [S, C, H, W] (set coil_axis / slice_axis, or reshape)")
    if coil_axis == _AUTO:
        coil_axis = {2: None, 3: 0, 4: 1}[nd]
    c_ax = None if coil_axis is None else _norm_axis(path, int(coil_axis), nd, "coil_axis")
    rest = [a for a in range(nd) if a != c_ax]
    if len(rest) > 3:
        raise InvalidDataError(path, f"array {name!r} {data.shape}: 4 dimensions besides the coils; set coil_axis")
    s_ax = None
    if len(rest) == 3:
        if slice_axis in (_AUTO, None):
            s_ax = rest[0]
        else:
            s_ax = _norm_axis(path, int(slice_axis), nd, "slice_axis")
            if s_ax == c_ax or s_ax not in rest:
                raise ScanError(path, f"slice_axis={slice_axis} is the coil axis")
        rest = [a for a in rest if a != s_ax]
    elif slice_axis not in (_AUTO, None):
        raise ScanError(path, f"array {name!r} {data.shape} has no axis left for slice_axis={slice_axis}")
    h_ax, w_ax = rest
    S = 1 if s_ax is None else data.shape[s_ax]
    C = 1 if c_ax is None else data.shape[c_ax]
    H, W = data.shape[h_ax], data.shape[w_ax]
    check_bytes(path, C * H * W * 16, f"one slice of array {name!r}")  # the slice read and its complex64 copy
    if grid_shape is not None and tuple(grid_shape) != (H, W):
        raise ScanError(path, f"grid_shape={tuple(grid_shape)} does not match the Cartesian array's {(H, W)}")
    order = [a for a in (s_ax, c_ax) if a is not None] + [h_ax, w_ax]

    def load_slice(i: int) -> np.ndarray:
        # Index the slice first (a memory-mapped file reads only that slice), then order [C, H, W].
        x = np.moveaxis(data, order, range(len(order)))
        x = x[i] if s_ax is not None else x
        x = np.asarray(x)
        x = x.reshape(C, H, W)
        if image_domain:
            x = fft2c_np(x.astype(np.complex64))
        return x.astype(np.complex64)

    acquired = None
    if not image_domain:
        present, differ = acquired_samples(load_slice(0))
        acquired = None if present.all() else present
        if differ is not None:
            attrs.setdefault("notes", []).append(differ)
    attrs.update(layout=_layout(data.shape, s_ax, c_ax, h_ax, w_ax), image_domain=image_domain)
    recon = (max(1, int(round(H / os_factor))), W)
    return Scan(path=path, format=fmt, n_slices=S, n_coils=C, kspace_shape=(C, H, W), load_slice=load_slice,
                grid_shape=(H, W), recon_shape=recon, acquired_mask=acquired, attrs=attrs)


def _layout(shape, s_ax, c_ax, h_ax, w_ax) -> str:
    names = {s_ax: "S", c_ax: "C", h_ax: "H", w_ax: "W"}
    return "[" + ", ".join(f"{names.get(a, '?')}={n}" for a, n in enumerate(shape)) + "]"


def _trajectory_2k(path: str, traj: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``[2, K]`` float and the sample shape (trajectory shape without its coordinate axis)."""
    t = np.asarray(traj)
    if np.iscomplexobj(t):
        return np.stack([t.real.reshape(-1), t.imag.reshape(-1)]).astype(np.float64), t.shape
    if t.dtype.kind not in "fiu":
        raise InvalidDataError(path, f"trajectory has dtype {t.dtype}; expected real coordinates")
    if t.ndim >= 2 and t.shape[0] in (2, 3) and not (t.shape[-1] in (2, 3) and t.ndim == 2 and t.shape[0] > t.shape[1]):
        coords, sample_shape = t.reshape(t.shape[0], -1), t.shape[1:]
    elif t.ndim >= 2 and t.shape[-1] in (2, 3):
        coords, sample_shape = np.moveaxis(t, -1, 0).reshape(t.shape[-1], -1), t.shape[:-1]
    else:
        raise InvalidDataError(path, f"trajectory has shape {t.shape}; expected [2, ...], [..., 2] or complex kx+i*ky")
    if coords.shape[0] == 3:
        if np.abs(coords[2]).max() > 0:
            raise InvalidDataError(path, "3D trajectories (non-zero third coordinate) are not supported")
        coords = coords[:2]
    return coords.astype(np.float64), tuple(sample_shape)


def _noncartesian(path, data, name, fmt, traj, coil_axis, slice_axis, os_factor, grid_shape, units, dcf, attrs):
    coords, sample_shape = _trajectory_2k(path, traj)
    K = coords.shape[1]
    shape = data.shape
    nd = data.ndim
    # The k-space's sample axes: a leading or trailing run whose sizes multiply to K (trailing preferred, so that
    # [C, K] and [S, C, K] read naturally; [readout, spokes, coils] matches by its leading run).
    sample_axes = None
    c_fixed = None if coil_axis in (_AUTO, None) else _norm_axis(path, int(coil_axis), nd, "coil_axis")
    for start in range(nd):
        axes = list(range(start, nd))
        if math.prod(shape[a] for a in axes) == K and c_fixed not in axes:
            sample_axes = axes
            break
    if sample_axes is None:
        for stop in range(nd, 0, -1):
            axes = list(range(0, stop))
            if math.prod(shape[a] for a in axes) == K and c_fixed not in axes:
                sample_axes = axes
                break
    if sample_axes is None:
        raise InvalidDataError(path, f"k-space {name!r} {shape} has no axes holding the trajectory's {K} samples "
                               f"(trajectory samples {sample_shape})")
    rest = [a for a in range(nd) if a not in sample_axes]
    if len(rest) > 2:
        raise InvalidDataError(path, f"k-space {name!r} {shape}: more than slice and coil axes besides the samples")
    if c_fixed is not None:
        c_ax = c_fixed
    elif coil_axis is None or not rest:
        c_ax = None
    else:
        # [S, C, K...] when the samples trail, [K..., C, S] when they lead (MATLAB/BART order).
        c_ax = rest[-1] if sample_axes[-1] == nd - 1 else rest[0]
    others = [a for a in rest if a != c_ax]
    if len(others) > 1:
        raise InvalidDataError(path, f"k-space {name!r} {shape}: cannot tell the slice axis; set coil_axis")
    s_ax = others[0] if others else None
    if slice_axis not in (_AUTO, None) and s_ax is not None and _norm_axis(path, int(slice_axis), nd, "slice_axis") != s_ax:
        raise ScanError(path, f"slice_axis={slice_axis} does not fit k-space {shape}")
    S = 1 if s_ax is None else shape[s_ax]
    C = 1 if c_ax is None else shape[c_ax]
    check_bytes(path, C * K * 16, f"one slice of array {name!r}")

    if grid_shape is None:
        kmax = float(np.abs(coords).max())
        if units == "fov" or (units == "auto" and kmax > np.pi * (1 + 1e-4)):
            n = 2 * math.ceil(kmax - 1e-6)
            grid_shape = (n, n)
        elif len(sample_shape) >= 2:
            grid_shape = (sample_shape[0], sample_shape[0])  # readout length of [readout, spokes]
        else:
            raise ScanError(path, "grid_shape is needed for a trajectory in radians or cycles/sample given as a "
                            "flat list; set the option grid_shape=H,W")
    rad, used = trajectory_to_radians(coords, grid_shape, units, path=path)
    order = [a for a in (s_ax, c_ax) if a is not None] + sample_axes

    def load_slice(i: int) -> np.ndarray:
        x = np.moveaxis(data, order, range(len(order)))
        x = x[i] if s_ax is not None else x
        return np.asarray(x).reshape(C, K).astype(np.complex64)

    w = None
    if dcf is not None:
        w = np.asarray(dcf, dtype=np.float32).reshape(-1)
        if w.size != K:
            raise InvalidDataError(path, f"dcf has {w.size} values for {K} samples")
    attrs.update(trajectory_units=used, trajectory_kind=_guess_kind(sample_shape))
    recon = tuple(max(1, int(round(n / os_factor))) for n in grid_shape)
    return Scan(path=path, format=fmt, n_slices=S, n_coils=C, kspace_shape=(C, K), load_slice=load_slice,
                grid_shape=tuple(grid_shape), recon_shape=recon, trajectory=rad, dcf=w, attrs=attrs)  # type: ignore


def _guess_kind(sample_shape: tuple[int, ...]) -> str:
    return "non-cartesian" if len(sample_shape) < 2 else f"non-cartesian ({sample_shape[-1]} interleaves of " \
        f"{sample_shape[0]} samples)"


def _attach_reference(path: str, scan: Scan, ref: np.ndarray) -> None:
    r = np.abs(ref) if np.iscomplexobj(ref) else ref
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or r.shape[0] != scan.n_slices:
        raise InvalidDataError(path, f"reference has shape {ref.shape}; expected [h, w] or [{scan.n_slices}, h, w] "
                               f"for {scan.n_slices} k-space slice(s)")
    h, w = r.shape[-2:]
    gh, gw = scan.grid_shape
    if h > gh or w > gw:
        raise InvalidDataError(path, f"reference {h}x{w} is larger than the k-space grid {gh}x{gw}")
    scan.recon_shape = (h, w)
    scan.load_reference = lambda i: np.asarray(r[i], dtype=np.float32)
    scan.reference_kind = "stored"
