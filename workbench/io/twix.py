"""Siemens raw data (twix ``.dat``, VB and VD/VE multi-raid) through the ``twixtools`` package.

The image data of the last measurement in the file (earlier ones are adjustment scans) is read with readout
oversampling kept (``remove_os=False``): the grid keeps all columns and ``recon_shape`` crops the oversampled
half. Orientation: ``(Cha, Lin, Col)`` becomes ``[C, H = Col (readout), W = Lin (phase encode)]``.

- Averages (``Ave``) and EPI segments (``Seg``) are averaged (twixtools' default); every other loop counter
  (``Set``, ``Rep``, ``Phs``, ``Eco``, ``Sli``, 3D ``Par``) is enumerated as slices, C order with ``Sli``
  fastest. So repetitions become separate slices. 3D data (``Par`` > 1, ``ucDimension`` 3D) get a centred
  inverse FFT along the partitions: each slice is then one partition.
- Asymmetric echo (the echo is not in the middle of the readout, e.g. 428 of 512 samples with the echo at
  column ~170): the readout is zero-padded to the full symmetric length so that the echo sits at the centre,
  and the padded samples are marked as not acquired (``acquired_mask``).
- EPI: the raw lines are returned, twixtools reverses the ``REFLECT`` lines and (when the protocol used
  ramp sampling) regrids them; NO Nyquist-ghost (odd/even phase) correction is applied.
- Header highlights from ``MeasYaps``: B0, TR, TE, flip angle, FOV, base resolution, sequence and protocol.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import os
import re
import sys
import threading
import types
from typing import Any

import numpy as np

from workbench.errors import CorruptFileError, InvalidDataError, ScanError, UnsupportedFormatError
from workbench.io import acquired_samples, describe_content, register_reader
from workbench.io.twix_header import parse_header
from workbench.limits import check_bytes
from workbench.scan import Scan

_LOOP_DIMS = ("Ide", "Idd", "Idc", "Idb", "Ida", "Seg", "Set", "Rep", "Phs", "Eco", "Par", "Sli", "Ave")
_RAID_HEADER_BYTES = 10240  # VD/VE multi-raid file header (64 entries of 152 bytes, 512-byte aligned)


def twix_signature(path: str, head: bytes) -> str | None:
    """"VD" (multi-raid VD/VE file), "VB", or None when the bytes are not a Siemens raw data file."""
    if len(head) < 16:
        return None
    first, second = np.frombuffer(head[:8], dtype="<u4")
    if first == 0 and 1 <= second <= 64:
        off = int(np.frombuffer(head[16:24], dtype="<u8")[0])
        if off < _RAID_HEADER_BYTES or off % 512:
            return None
        try:
            with open(path, "rb") as f:
                f.seek(off + 8)
                return "VD" if f.read(6) == b"Config" else None
        except OSError:
            return None
    if head[8:14] == b"Config" and 0 < first < os.path.getsize(path):
        return "VB"
    return None


def _check_lengths(path: str) -> None:
    """Truncated multi-raid files: a measurement that claims more bytes than the file has."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8 + 64 * 152)
    n = int(np.frombuffer(head[4:8], dtype="<u4")[0])
    entries = np.frombuffer(head[8:8 + n * 152], dtype=[("id", "<u4"), ("file", "<u4"), ("off", "<u8"),
                                                        ("len", "<u8"), ("pat", "S64"), ("prot", "S64")])
    for i, e in enumerate(entries):
        end = int(e["off"]) + int(e["len"])
        if int(e["off"]) >= size or end > size:
            raise CorruptFileError(path, f"truncated: measurement {i + 1} of {n} "
                                         f"({e['prot'].decode(errors='replace')}) needs {end} bytes, the file has {size}")


_MAX_PROTOCOL_INDEX = 100_000
_ASCCONV = re.compile(rb"### ASCCONV BEGIN(.*?)(?:### ASCCONV END|\Z)", re.DOTALL)
_BIG_INDEX = re.compile(rb"\[([0-9]{%d,})\]" % len(str(_MAX_PROTOCOL_INDEX)))


def _check_protocol(path: str, sig: str) -> None:
    """twixtools builds a Python list as long as each array index of the text protocol (``alTE[N]``): one
    damaged digit run would make it allocate GBs. Refuse indices that no protocol uses before it parses."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if sig == "VB":
            regions = [(0, int(np.frombuffer(f.read(4), "<u4")[0]))]
        else:
            head = f.read(8 + 64 * 152)
            n = int(np.frombuffer(head[4:8], dtype="<u4")[0])
            offsets = np.frombuffer(head[8:8 + n * 152], dtype=[("id", "<u4"), ("file", "<u4"), ("off", "<u8"),
                                                                 ("len", "<u8"), ("pat", "S64"), ("prot", "S64")])
            regions = []
            for off in offsets["off"]:
                f.seek(int(off))
                regions.append((int(off), int(np.frombuffer(f.read(4).ljust(4, b"\0"), "<u4")[0])))
        for start, length in regions:
            f.seek(start)
            text = f.read(min(length, size))
            for block in _ASCCONV.finditer(text):
                m = _BIG_INDEX.search(block.group(1))
                if m:
                    raise CorruptFileError(path, f"damaged protocol: array index {m.group(1)[:20].decode()} in the "
                                                 "measurement header (no protocol has arrays that long)")


class _BoundedReader(io.BufferedReader):
    """A binary file whose ``read(n)`` never asks for more than the rest of the file: CPython allocates ``n``
    bytes up front, and twixtools reads sizes taken from each readout's header (``UsedChannels x samples``,
    the DMA length), which a damaged file turns into GB requests."""

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > 0:
            n = max(0, min(n, os.fstat(self.fileno()).st_size - self.tell()))
            if n == 0:
                return b""
        return super().read(n)


def _bounded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    if mode == "rb" and not args and not kwargs:
        return _BoundedReader(io.FileIO(file, "rb"))
    return open(file, mode, *args, **kwargs)


class _OnFirstCall(types.ModuleType):
    """Stands in for module ``target`` while twixtools is imported: an attribute taken from it is a function that
    imports the real module when called (``children``: stand-ins for its submodules)."""

    def __init__(self, target: str, children: dict[str, types.ModuleType] | None = None):
        super().__init__(target)
        self.__dict__.update(children or {})

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        target = self.__name__

        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(target), attr)(*args, **kwargs)

        return call


# twixtools imports these at module level for what the reader never calls (PMU plots; regridding of ramp-sampled
# EPI, which does call cumulative_trapezoid): half a second of `workbench info` on a twix file.
_STAND_IN_LOCK = threading.Lock()  # one thread at a time replaces builtins.__import__
_stand_ins_of_thread = threading.local()


@contextlib.contextmanager
def _import_with_stand_ins(stand_ins: dict[str, types.ModuleType]) -> Any:
    """Within the block, this thread's ``import`` statements get ``stand_ins`` (module name -> module) for those
    names; other threads' imports pass through unchanged."""
    previous = builtins.__import__

    def import_(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        mine = getattr(_stand_ins_of_thread, "modules", None)
        if mine and level == 0 and name in mine:
            if fromlist:  # from NAME import ...
                return mine[name]
            top = name.partition(".")[0]  # import NAME binds the top-level package
            return mine[top] if top in mine else previous(top, globals, locals, (), 0)
        return previous(name, globals, locals, fromlist, level)

    _stand_ins_of_thread.modules = stand_ins
    builtins.__import__ = import_
    try:
        yield
    finally:
        _stand_ins_of_thread.modules = None
        if builtins.__import__ is import_:
            builtins.__import__ = previous


def _import_twixtools() -> Any:
    """twixtools, with its modules' file opening bounded (see _BoundedReader) and its plotting / integration
    imports deferred to their first use (_OnFirstCall). The stand-ins are given to this thread's imports only
    (_import_with_stand_ins), never put in ``sys.modules``: no other thread sees them, and no import lock is held
    that another thread's import could be waiting for."""
    if "twixtools" not in sys.modules:
        with _STAND_IN_LOCK:
            stand_ins: dict[str, types.ModuleType] = {}
            if "matplotlib" not in sys.modules and "matplotlib.pyplot" not in sys.modules:
                pyplot = _OnFirstCall("matplotlib.pyplot")
                stand_ins = {"matplotlib": _OnFirstCall("matplotlib", {"pyplot": pyplot}), "matplotlib.pyplot": pyplot}
            if "scipy.integrate" not in sys.modules:
                stand_ins["scipy.integrate"] = _OnFirstCall("scipy.integrate")
            with _import_with_stand_ins(stand_ins):
                import twixtools  # noqa: F401
    import twixtools
    import twixtools.mdb
    import twixtools.twixtools

    for module in (twixtools.twixtools, twixtools.mdb):
        module.open = _bounded_open  # type: ignore[attr-defined]
    return twixtools


def _get(d: Any, *keys: Any, default: Any = None) -> Any:
    for k in keys:
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return default
    return d


def header_highlights(hdr: dict) -> dict[str, Any]:
    """B0, TR, TE, flip angle, FOV, resolution, sequence... from a twixtools header (``MeasYaps``, ``Dicom``)."""
    yaps, dicom, meas = hdr.get("MeasYaps", {}), hdr.get("Dicom", {}), hdr.get("Meas", {})
    out: dict[str, Any] = {}
    b0 = _get(yaps, "sProtConsistencyInfo", "flNominalB0") or _get(dicom, "flMagneticFieldStrength")
    if b0:
        out["field_strength_T"] = round(float(b0), 3)
    n_contrasts = int(_get(yaps, "lContrasts", default=1) or 1)
    tr = _get(yaps, "alTR", 0)
    if tr:
        out["TR_ms"] = float(tr) / 1000
    te = _get(yaps, "alTE", default=[])
    if te:
        te_ms = [float(v) / 1000 for v in list(te)[:n_contrasts]]
        out["TE_ms"] = te_ms[0] if len(te_ms) == 1 else te_ms
    fa = _get(yaps, "adFlipAngleDegree", 0)
    if fa:
        out["flip_angle_deg"] = float(fa)
    sl = _get(yaps, "sSliceArray", "asSlice", 0, default={})
    if sl:
        out["FOV_mm"] = [float(sl.get("dReadoutFOV", 0)), float(sl.get("dPhaseFOV", 0))]
        if "dThickness" in sl:
            out["slice_thickness_mm"] = float(sl["dThickness"])
    for key, name in (("lBaseResolution", "base_resolution"), ("lPhaseEncodingLines", "phase_encoding_lines")):
        v = _get(yaps, "sKSpace", key)
        if v:
            out[name] = int(v)
    seq = _get(yaps, "tSequenceFileName")
    if seq:
        out["sequence"] = str(seq).replace("%SiemensSeq%\\", "").replace("%CustomerSeq%\\", "")
    for key, name in (("tProtocolName", "protocol"),):
        v = _get(yaps, key) or _get(dicom, key)
        if v:
            out[name] = str(v)
    model = _get(dicom, "ManufacturersModelName")
    if model:
        out["scanner"] = f"Siemens {model}"
    sw = _get(dicom, "SoftwareVersions")
    if sw:
        out["software"] = str(sw)
    os_factor = _get(meas, "flReadoutOSFactor") or _get(dicom, "flReadoutOSFactor")
    if os_factor:
        out["readout_oversampling"] = float(os_factor)
    return out


def arrange_lines(lines: np.ndarray, center_col: int) -> tuple[np.ndarray, int]:
    """Twix lines ``[Lin, Cha, Col]`` -> k-space ``[Cha, H, W]`` with H = readout (Col), W = Lin; an
    asymmetric echo (``center_col`` != Col//2) is zero-padded so the echo lands at H//2.
    Returns (k-space, number of zero rows added in front of the readout)."""
    n_col = lines.shape[-1]
    k = np.transpose(lines, (1, 2, 0))
    if center_col == n_col // 2:
        return k, 0
    full = max(n_col, 2 * max(center_col, n_col - center_col))
    front = full // 2 - center_col
    out = np.zeros((k.shape[0], full, k.shape[2]), dtype=k.dtype)
    out[:, front: front + n_col] = k
    return out, front


def _plain_flags(im: Any) -> bool:
    """Whether ``im`` reads with no per-line processing beyond REFLECT and averaging: what
    :func:`assemble_lines` does. Ramp-sampling regridding, oversampling removal, FFT scaling, raw-data
    correction, user functions or squeezed / skipped dimensions go through twixtools' own indexing."""
    f = im.flags
    return (not (f["regrid"] and im.rs_traj is not None) and not f["remove_os"] and not f["apply_fftscale"]
            and not f["apply_rawdatacorr"] and not f["skip_empty_lead"] and not f["user_func"]
            and not f["squeeze_singletons"] and not f["squeeze_ave_dims"]
            and not f["average"]["Cha"] and not f["average"]["Col"])


def assemble_lines(im: Any, index: tuple) -> np.ndarray:
    """``np.asarray(im[index])`` for a twixtools ``twix_array`` with plain flags (:func:`_plain_flags`) and an
    index of ints and full slices: the same sums and averages of the lines in one pass over the headers.

    twixtools' own ``__getitem__`` deep-copies every line's counters and recomputes block offsets per line (30-40
    ms for a 160-line slice, most of a small command's reading; for a multi-slice file it does so for every line
    of the file at each slice). Lines whose counters fall outside the array are skipped and lines that share an
    index (averaged dimensions: ``Seg``, ``Ave``) are averaged, as there.
    """
    dims = list(im.dims)
    shape = list(im.shape)
    mdh_dims = dims[:-2]
    averaged = im.flags["average"]
    fixed = {}  # dim -> required counter value
    free = []  # dims kept in the output (full slices), in order
    for d, item in zip(dims, index):
        if isinstance(item, slice):
            if item != slice(None):
                raise ValueError("only full slices")
            if d in mdh_dims and not averaged[d]:
                free.append(d)
        elif d in mdh_dims and not averaged[d]:
            fixed[d] = int(item)
        elif d not in mdh_dims:
            raise ValueError("channels and columns are read whole")
    free_shape = [shape[dims.index(d)] for d in free]
    n_cha, n_col = shape[-2], shape[-1]
    out = np.zeros((int(np.prod(free_shape, dtype=np.int64)), n_cha, n_col), dtype=np.complex64)
    count = np.zeros(out.shape[0], dtype=np.int64)
    lin_off, par_off = int(im.lin_offset), int(im.par_offset)
    lin_sz, par_sz = int(im.size["Lin"]), int(im.size["Par"])
    key_map = im.key_map
    strides = [int(np.prod(free_shape[i + 1:], dtype=np.int64)) for i in range(len(free))]
    offsets = {"Lin": lin_off, "Par": par_off}  # twixtools' shifts of a partial-Fourier line / partition counter
    files: dict[str, Any] = {}  # one open file per data file: twixtools opens and closes it for every line
    with contextlib.ExitStack() as stack:
        for mdb in im.mdb_list:
            counter = mdb.mdh.Counter
            if int(counter.Lin) + lin_off >= lin_sz or int(counter.Par) + par_off >= par_sz:
                continue
            values = {d: int(getattr(counter, key_map[d])) + offsets.get(d, 0) for d in (*fixed, *free)}
            if any(values[d] != v for d, v in fixed.items()):
                continue
            position = sum(values[d] * s for d, s in zip(free, strides))
            if mdb.fid.closed:  # twixtools reopens a closed file by its name and mode (still ours afterwards)
                if mdb.fid.name not in files:
                    files[mdb.fid.name] = stack.enter_context(_bounded_open(mdb.fid.name, "rb"))
                mdb.fid = files[mdb.fid.name]
            data = mdb.data
            if mdb.is_flag_set("REFLECT"):
                data = data[..., ::-1]
            out[position] += data
            count[position] += 1
    out /= np.maximum(count, 1)[:, None, None]
    return out.reshape(*free_shape, n_cha, n_col)


class TwixReader:
    """Reader for Siemens twix ``.dat`` raw data files."""

    name = "twix"
    extensions = (".dat",)

    def probe(self, path: str, head: bytes) -> int:
        if twix_signature(path, head):
            return 95
        return 20 if path.lower().endswith(".dat") else 0  # a .dat that is not twix gets a specific error

    def open(self, path: str, **options: Any) -> Scan:
        if options:
            raise ScanError(path, f"unknown option(s) {sorted(options)} for Siemens twix files (none are needed)")
        with open(path, "rb") as f:
            head = f.read(512)
        sig = twix_signature(path, head)
        if sig is None:
            raise UnsupportedFormatError(path, "not a Siemens twix raw data file (no VB or VD/VE measurement header; "
                                               f"the content is {describe_content(head)})")
        if sig == "VD":
            _check_lengths(path)
        _check_protocol(path, sig)

        twixtools = _import_twixtools()
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                # the headers without twixtools' full protocol parse (workbench.io.twix_header: 7-10 ms of
                # its 45-50 ms); no PMU or geometry, which the reader never uses
                scans = twixtools.read_twix(path, verbose=False, parse_prot=False, parse_pmu=False,
                                            parse_geometry=False)
                for scan in scans:
                    scan["hdr"] = parse_header(np.asarray(scan["hdr_str"]).tobytes(), twixtools.twixprot)
                measurements = twixtools.map_twix(scans, verbose=False)
        except Exception as e:  # twixtools raises assorted errors on damaged files
            raise CorruptFileError(path, f"twixtools cannot parse the file ({type(e).__name__}: {e})") from None
        if "error" in log.getvalue().lower():
            raise CorruptFileError(path, "damaged raw data: " + log.getvalue().strip().splitlines()[-1])
        with_image = [i for i, m in enumerate(measurements) if isinstance(m, dict) and "image" in m]
        if not with_image:
            raise InvalidDataError(path, f"no imaging data in any of its {len(measurements)} measurement(s)")
        index = with_image[-1]
        meas = measurements[index]
        im = meas["image"]
        hdr = meas["hdr"]
        im.flags["remove_os"] = False
        im.flags["zf_missing_lines"] = True
        im.flags["squeeze_singletons"] = False
        regridded = im.rs_traj is not None
        im.flags["regrid"] = regridded
        lock = threading.Lock()  # twixtools reads through one shared file handle

        names = list(im.dims)
        shape = list(im.shape)
        loop = {d: shape[names.index(d)] for d in _LOOP_DIMS}
        is_3d = loop["Par"] > 1 and int(_get(hdr, "MeasYaps", "sKSpace", "ucDimension", default=2) or 2) == 4
        loop_dims = [d for d in _LOOP_DIMS if loop[d] > 1 and not (is_3d and d == "Par")]
        loop_sizes = [loop[d] for d in loop_dims]
        n_par = loop["Par"] if is_3d else 1
        n_slices = int(np.prod(loop_sizes)) * n_par if loop_dims else n_par
        n_coils = shape[names.index("Cha")]
        center_col = int(im.kspace_center_col)
        # One read holds [Par,] Lin, Cha, Col (the loop counters in the file's headers say how large): bounded by
        # the budget and by the samples the file can hold (an asymmetric echo pads the readout to at most 2x).
        n_lin, n_col = shape[names.index("Lin")], shape[names.index("Col")]
        check_bytes(path, n_par * n_lin * n_coils * n_col * 8 * (4 if is_3d else 2),
                    f"one slice of {n_coils} coils x {n_lin} lines x {n_col} samples", stored=os.path.getsize(path))
        cache: dict[tuple, np.ndarray] = {}
        plain = _plain_flags(im)

        def read_lines(i: int) -> np.ndarray:
            """[Lin, Cha, Col] of slice i."""
            outer, par = divmod(i, n_par)
            sub = np.unravel_index(outer, loop_sizes) if loop_dims else ()
            idx = []
            for d in names:
                if d in loop_dims:
                    idx.append(int(sub[loop_dims.index(d)]))
                elif d == "Par" and is_3d:
                    idx.append(slice(None))
                elif d in ("Lin", "Cha", "Col"):
                    idx.append(slice(None))
                else:
                    idx.append(0)
            key = tuple(x if isinstance(x, int) else -1 for x in idx)
            with lock:
                if key not in cache:
                    data = assemble_lines(im, tuple(idx)) if plain else np.asarray(im[tuple(idx)])
                    if is_3d:   # [Par, Lin, Cha, Col]: centred inverse FFT along the partitions
                        data = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(data, axes=0), axis=0, norm="ortho"), axes=0)
                    cache.clear()
                    cache[key] = data
                data = cache[key]
            return data[par] if is_3d else data

        try:
            lines0 = read_lines(0)
        except Exception as e:
            raise CorruptFileError(path, f"cannot read the image data ({type(e).__name__}: {e})") from None
        k0, front = arrange_lines(lines0, center_col)
        grid = (int(k0.shape[1]), int(k0.shape[2]))
        mask, differ = acquired_samples(k0)
        if front or k0.shape[1] != lines0.shape[-1]:
            rows = np.zeros(grid[0], dtype=bool)
            rows[front: front + lines0.shape[-1]] = True
            mask &= rows[:, None]
        acquired = None if mask.all() else mask

        def load_slice(i: int) -> np.ndarray:
            k, _ = arrange_lines(read_lines(i), center_col)
            return np.array(k, dtype=np.complex64, order="C")

        header = header_highlights(hdr)
        os_factor = float(header.get("readout_oversampling", 2.0))
        header["readout_oversampling"] = os_factor
        recon = (int(round(grid[0] / os_factor)), grid[1])
        notes = [] if differ is None else [differ]
        if front or k0.shape[1] != lines0.shape[-1]:
            notes.append(f"asymmetric echo: {lines0.shape[-1]} of {grid[0]} readout samples acquired (echo at column "
                         f"{center_col}); zero-padded {front} samples before the echo, marked as not acquired "
                         "(option symmetric_echo=true: the fully sampled band around the echo)")
        epi = any(m.is_flag_set("REFLECT") for m in im.mdb_list)
        if epi:
            notes.append("EPI: raw lines, REFLECT lines reversed by twixtools"
                         + (", ramp sampling regridded" if regridded else "")
                         + "; no Nyquist-ghost (odd/even phase) correction applied, expect N/2 ghosts")
        if loop_dims:
            notes.append(f"slices enumerate {' x '.join(f'{d} {loop[d]}' for d in loop_dims)} (C order)"
                         + (f" x Par {n_par} (after an inverse FFT along partitions)" if is_3d else ""))
        elif is_3d:
            notes.append(f"3D: {n_par} partitions, inverse FFT along partitions; each slice is one partition")
        if notes:
            header["note"] = "; ".join(notes)
        attrs = {
            "twix_version": sig,
            "measurement": f"{index + 1} of {len(measurements)} (the last with image data)",
            "twix_dims": dict(zip(names, shape)),
            "center_col": center_col,
            "center_lin": int(im.kspace_center_lin),
            "slice_dims": loop_dims + (["Par"] if is_3d else []),
            "epi": epi,
            "ramp_regridded": regridded,
            "readout_padding": front,
            "notes": notes,
        }
        return Scan(
            path=path, format="twix", n_slices=n_slices, n_coils=n_coils, kspace_shape=(n_coils, *grid),
            load_slice=load_slice, grid_shape=grid, recon_shape=recon, acquired_mask=acquired,
            header=header, attrs=attrs,
        )


register_reader(TwixReader())
