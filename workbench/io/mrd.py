"""ISMRMRD / MRD HDF5 raw data (``dataset/xml`` + ``dataset/data`` acquisitions), read with the ``ismrmrd`` package.

What the reader does with an MRD file:
- The XML header is parsed with ElementTree (the values the package's schema parser ``ismrmrd.xsd`` gives,
  without its import cost; vendor extensions are ignored); its highlights go to ``Scan.header``, the raw XML
  to ``Scan.header_xml``.
- Acquisitions flagged as noise, phase correction, navigator, dummy scan, feedback, surface-coil correction,
  phase stabilisation or calibration-only (``ACQ_IS_PARALLEL_CALIBRATION`` without ``..._AND_IMAGING``) are
  skipped; their counts are in ``Scan.attrs["skipped_acquisitions"]``. Acquisitions of another encoding space
  than ``encoding`` (default 0) are skipped too.
- A Scan slice is one combination of (slice, contrast, phase, repetition, set) counters; averages are averaged.
- Cartesian (header trajectory ``cartesian``/``epi``): each readout goes to column
  ``kspace_encode_step_1 - center + W//2`` (``center`` from ``encodingLimits``, fastMRI's padding rule) of a
  ``[C, H, W]`` grid with ``H, W`` = ``encodedSpace`` matrix ``x, y``; the readout sample ``center_sample`` lands at
  row ``H//2`` (rows a shorter readout leaves empty, an asymmetric echo's, are marked as not acquired);
  ``ACQ_IS_REVERSE`` readouts are flipped. ``recon_shape`` removes readout oversampling: the grid
  scaled by ``reconSpace`` FOV / ``encodedSpace`` FOV (e.g. 2x oversampling: 256 -> 128), falling back to the
  ``reconSpace`` matrix.
- Non-Cartesian: samples of all imaging acquisitions of a slice are concatenated to ``[C, K]``, their
  ``traj`` (first two dimensions) to ``[2, K]`` in radians: ISMRMRD trajectories are in k-space units of 1/FOV
  (cycles per encoded FOV), so ``rad = 2*pi*k/N`` with ``N`` the ``encodedSpace`` matrix size of that axis; a
  trajectory whose largest |k| is <= 0.5 is taken as normalised (cycles per sample, ``rad = 2*pi*k``). Force
  with ``trajectory_units="fov"|"cycles"|"radians"``. Values are wrapped to [-pi, pi).
- 3D encodings (``kspace_encode_step_2``) are not read (error).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zlib
from enum import Enum
from typing import Any

import h5py
import numpy as np
from h5py import h5t, h5z

from workbench.errors import CorruptFileError, InvalidDataError, ScanError
from workbench.io import check_finite, check_options, hdf5, register_reader
from workbench.io.hdf5 import HDF5_SIGNATURE
from workbench.limits import check_bytes
from workbench.scan import Scan

# ---------------------------------------------------------------------------------------------------------
# ISMRMRD XML header (shared with the fastMRI reader, whose files carry the same header)


class _XsdView:
    """Path lookup on the header parsed by ``ismrmrd.xsd`` (lists: first element; enums: their value)."""

    def __init__(self, root: Any):
        self.root = root

    def get(self, *path: str) -> Any:
        node = self.root
        for name in path:
            if isinstance(node, list):
                node = node[0] if node else None
            if node is None:
                return None
            node = getattr(node, name, None)
        if isinstance(node, Enum):
            node = node.value
        return node


class _EtreeView:
    """The same lookups on a plain ElementTree (namespace-agnostic); repeated elements give lists."""

    def __init__(self, root: ET.Element):
        self.root = root

    def get(self, *path: str) -> Any:
        nodes = [self.root]
        for name in path[:-1]:
            nxt = nodes[0].find(f"{{*}}{name}")
            if nxt is None:
                nxt = nodes[0].find(name)
            if nxt is None:
                return None
            nodes = [nxt]
        found = nodes[0].findall(f"{{*}}{path[-1]}") or nodes[0].findall(path[-1])
        if not found:
            return None
        values = [_number((e.text or "").strip()) for e in found]
        return values if len(values) > 1 or path[-1] in _LIST_FIELDS else values[0]


# Fields that the schema declares as repeated (xsd gives lists for them).
_LIST_FIELDS = {"TR", "TE", "TI", "flipAngle_deg", "echo_spacing"}


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _scalar_or_list(v: Any) -> Any:
    if isinstance(v, list):
        v = [float(x) if isinstance(x, (int, float)) else x for x in v]
        return None if not v else (v[0] if len(v) == 1 else v)
    return v


def parse_ismrmrd_header(xml: str | bytes, parser: str = "ElementTree"
                         ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Parse an ISMRMRD XML header.

    Returns ``(highlights, geometry, parser)``: ``highlights`` a flat dict for display (field strength, TR/TE/TI in
    ms, flip angle, encoded/recon matrix and FOV, vendor/model, protocol, sequence, trajectory);
    ``geometry`` the numbers readers need: ``encoded_matrix``/``recon_matrix`` ``(x, y, z)``,
    ``encoded_fov``/``recon_fov`` mm ``(x, y, z)``, ``limits`` ``{name: (minimum, maximum, center)}``,
    ``trajectory``; ``parser`` is the one that read it. The readers use ElementTree: the package's schema parser
    (``parser="ismrmrd.xsd"``, falling back to ElementTree where vendor elements fail the strict schema) gives
    the same values (tested) but costs a tenth of a second of imports at every start.
    Raises ValueError when the XML does not parse at all.
    """
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", errors="replace")
    xml = xml.strip().rstrip("\x00")
    view: _XsdView | _EtreeView | None = None
    if parser == "ismrmrd.xsd":
        try:
            import ismrmrd.xsd

            view = _XsdView(ismrmrd.xsd.CreateFromDocument(xml))
        except Exception:  # noqa: BLE001  (unknown vendor elements fail the strict schema parser)
            view = None
    if view is None:
        try:
            view, parser = _EtreeView(ET.fromstring(xml)), "ElementTree"
        except ET.ParseError as exc:
            raise ValueError(f"ISMRMRD header is not valid XML ({exc})") from exc

    def triple(*path: str) -> tuple | None:
        vals = tuple(view.get(*path, ax) for ax in "xyz")
        return None if any(v is None for v in vals[:2]) else tuple(v if v is not None else 1 for v in vals)

    geometry: dict[str, Any] = {
        "encoded_matrix": triple("encoding", "encodedSpace", "matrixSize"),
        "recon_matrix": triple("encoding", "reconSpace", "matrixSize"),
        "encoded_fov": triple("encoding", "encodedSpace", "fieldOfView_mm"),
        "recon_fov": triple("encoding", "reconSpace", "fieldOfView_mm"),
        "trajectory": view.get("encoding", "trajectory"),
        "limits": {},
    }
    if geometry["encoded_matrix"]:
        geometry["encoded_matrix"] = tuple(int(v) for v in geometry["encoded_matrix"])
    if geometry["recon_matrix"]:
        geometry["recon_matrix"] = tuple(int(v) for v in geometry["recon_matrix"])
    for lim in ("kspace_encoding_step_0", "kspace_encoding_step_1", "kspace_encoding_step_2", "slice",
                "contrast", "phase", "repetition", "set", "average", "segment"):
        vals = tuple(view.get("encoding", "encodingLimits", lim, k) for k in ("minimum", "maximum", "center"))
        if vals[1] is not None:
            geometry["limits"][lim] = tuple(int(v) if v is not None else None for v in vals)

    h: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        value = _scalar_or_list(value)
        if value is not None and value != "":
            h[key] = value

    put("vendor", view.get("acquisitionSystemInformation", "systemVendor"))
    put("model", view.get("acquisitionSystemInformation", "systemModel"))
    b0 = view.get("acquisitionSystemInformation", "systemFieldStrength_T")
    if b0 is None:
        # Derive it from the proton resonance frequency (gamma/2pi = 42.577 MHz/T).
        f0 = view.get("experimentalConditions", "H1resonanceFrequency_Hz")
        b0 = round(float(f0) / 42.577478e6, 3) if isinstance(f0, (int, float)) and f0 > 0 else None
    put("field_strength_T", float(b0) if isinstance(b0, (int, float)) else b0)
    put("institution", view.get("acquisitionSystemInformation", "institutionName"))
    put("receiver_channels", view.get("acquisitionSystemInformation", "receiverChannels"))
    put("protocol", view.get("measurementInformation", "protocolName"))
    put("sequence", view.get("sequenceParameters", "sequence_type"))
    put("TR_ms", view.get("sequenceParameters", "TR"))
    put("TE_ms", view.get("sequenceParameters", "TE"))
    put("TI_ms", view.get("sequenceParameters", "TI"))
    put("flip_angle_deg", view.get("sequenceParameters", "flipAngle_deg"))
    put("trajectory_header", geometry["trajectory"])

    def fmt(t: tuple | None) -> str | None:
        if not t:
            return None
        return "x".join(f"{float(v):g}" for v in t)

    put("encoded_matrix", fmt(geometry["encoded_matrix"]))
    put("encoded_fov_mm", fmt(geometry["encoded_fov"]))
    put("recon_matrix", fmt(geometry["recon_matrix"]))
    put("recon_fov_mm", fmt(geometry["recon_fov"]))
    acc = (view.get("encoding", "parallelImaging", "accelerationFactor", "kspace_encoding_step_1"),
           view.get("encoding", "parallelImaging", "accelerationFactor", "kspace_encoding_step_2"))
    if acc[0] is not None and (acc[0] > 1 or (acc[1] or 1) > 1):
        put("parallel_imaging_factor", f"{acc[0]}x{acc[1] or 1}")
    return h, geometry, parser


def recon_shape_from_header(grid: tuple[int, int], geometry: dict[str, Any]) -> tuple[int, int]:
    """The image size users look at: the grid cropped by reconSpace/encodedSpace FOV (removes readout
    oversampling), else the reconSpace matrix; never larger than the grid."""
    enc_fov, rec_fov, rec_mat = geometry.get("encoded_fov"), geometry.get("recon_fov"), geometry.get("recon_matrix")
    out = []
    for ax in range(2):
        n = grid[ax]
        if enc_fov and rec_fov and enc_fov[ax] and rec_fov[ax] and float(enc_fov[ax]) > 0:
            n = int(round(grid[ax] * float(rec_fov[ax]) / float(enc_fov[ax])))
        elif rec_mat and rec_mat[ax]:
            n = int(rec_mat[ax])
        out.append(max(1, min(n, grid[ax])))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------------
# Trajectory units


def trajectory_to_radians(
    traj: np.ndarray, matrix: tuple[int, int], units: str = "auto", *, path: str | None = None
) -> tuple[np.ndarray, str]:
    """Convert a ``[2, K]`` trajectory to radians in [-pi, pi).

    ``units``: ``"fov"`` (k-space units of 1/FOV, i.e. cycles per FOV, ISMRMRD's convention:
    ``rad = 2*pi*k/N`` for the matrix size ``N`` of that axis), ``"cycles"`` (cycles per sample, range
    [-0.5, 0.5): ``rad = 2*pi*k``), ``"radians"``, or ``"auto"``: max |k| <= 0.5 -> cycles, <= pi -> radians,
    else fov. Returns the trajectory and the units used.
    """
    t = np.asarray(traj, dtype=np.float64)
    if not np.isfinite(t).all():
        raise InvalidDataError(path, f"trajectory has {int((~np.isfinite(t)).sum())} NaN/Inf values")
    kmax = float(np.abs(t).max()) if t.size else 0.0
    if units == "auto":
        units = "cycles" if kmax <= 0.5 + 1e-4 else ("radians" if kmax <= np.pi * (1 + 1e-4) else "fov")
    if units == "fov":
        n = np.asarray(matrix, dtype=np.float64).reshape(2, 1)
        rad = 2 * np.pi * t / n
    elif units == "cycles":
        rad = 2 * np.pi * t
    elif units == "radians":
        rad = t
    else:
        raise ScanError(path, f"trajectory_units must be auto, fov, cycles or radians, not {units!r}")
    if rad.size and np.abs(rad).max() > np.pi * (1 + 1e-3):
        raise InvalidDataError(
            path,
            f"trajectory reaches {np.abs(rad).max():.3f} rad, beyond the grid {tuple(matrix)} (units {units!r}); "
            "set grid_shape or trajectory_units",
        )
    # +pi and -pi are the same frequency; the convention is [-pi, pi).
    rad = np.mod(rad + np.pi, 2 * np.pi) - np.pi
    return rad.astype(np.float32), units


# ---------------------------------------------------------------------------------------------------------
# The reader


def _skip_flags() -> dict[str, int]:
    import ismrmrd

    return {
        "noise": ismrmrd.ACQ_IS_NOISE_MEASUREMENT,
        "calibration": ismrmrd.ACQ_IS_PARALLEL_CALIBRATION,
        "phase_correction": ismrmrd.ACQ_IS_PHASECORR_DATA,
        "navigator": ismrmrd.ACQ_IS_NAVIGATION_DATA,
        "dummy": ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
        "feedback": ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
        "hp_feedback": ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
        "surface_coil_correction": ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
        "phase_stabilisation": ismrmrd.ACQ_IS_PHASE_STABILIZATION,
        "phase_stabilisation_reference": ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    }


def _bit(flags: np.ndarray, flag: int) -> np.ndarray:
    return (flags >> np.uint64(flag - 1)) & np.uint64(1) == 1


def _open_mrd(path: str):
    import ismrmrd

    with hdf5.open_hdf5(path):  # refuses links and storage outside the file before ismrmrd opens anything
        pass
    try:
        return ismrmrd.File(path, mode="r")
    except hdf5.H5_ERRORS as exc:
        raise CorruptFileError(path, f"HDF5 file cannot be opened; truncated or damaged? ({hdf5.reason(exc)})") \
            from exc


def _acquisition_groups(f: Any) -> list[str]:
    """Names of the top-level groups that hold acquisitions (ISMRMRD's default is ``dataset``)."""
    names = []
    for key in f:
        try:
            c = f[key]
            if c.has_acquisitions() or c.has_header():
                names.append(key)
        except Exception:  # noqa: BLE001
            continue
    names.sort(key=lambda n: (n != "dataset", n))
    return names


class MrdReader:
    name = "ismrmrd"
    extensions = (".h5", ".mrd", ".hdf5", ".ismrmrd")
    options = ("dataset", "encoding", "trajectory_units")

    def probe(self, path: str, head: bytes) -> int:
        if not head.startswith(HDF5_SIGNATURE):
            return 0
        try:
            with hdf5.open_hdf5(path) as f:
                for key in f.keys():
                    item = hdf5.get(f, key, path)
                    if isinstance(item, h5py.Group):
                        data = hdf5.get(item, "data", path)
                        if hdf5.get(item, "xml", path) is not None or (
                                isinstance(data, h5py.Dataset) and data.dtype.names and "head" in data.dtype.names):
                            return 100
        except Exception:  # noqa: BLE001  (an unsafe or damaged file: the fastMRI reader's open() reports it)
            return 0
        return 0

    def open(self, path: str, **options: Any) -> Scan:
        path = os.fspath(path)
        check_options(path, self.name, options, self.options)
        try:
            encoding = int(options.get("encoding", 0))
        except (TypeError, ValueError):
            raise ScanError(path, f"option encoding={options.get('encoding')!r} is not an integer") from None
        units = str(options.get("trajectory_units", "auto")).lower()
        f = _open_mrd(path)
        try:
            groups = _acquisition_groups(f)
            group = options.get("dataset") or (groups[0] if groups else None)
            if group is None or group not in f.keys():
                raise InvalidDataError(
                    path, f"no ISMRMRD dataset group {group!r} in the file (groups: {', '.join(f.keys()) or 'none'})"
                    if group else "no ISMRMRD dataset (a group with 'xml' and 'data') in the file"
                )
            container = f[group]
            if not container.has_acquisitions():
                raise InvalidDataError(path, f"ISMRMRD dataset {group!r} holds no acquisitions (raw k-space)")
            dset = container.acquisitions.data  # the h5py dataset behind ismrmrd's Acquisitions wrapper
            xml = None
            if container.has_header():
                xml = _read_xml(path, dset.parent["xml"])
            if not dset.dtype.names or "head" not in dset.dtype.names or "data" not in dset.dtype.names:
                raise InvalidDataError(path, f"ISMRMRD 'data' has dtype {dset.dtype}; expected acquisitions "
                                             "(head, traj, data)")
            hdf5.check_type(path, dset.id.get_type(), "ISMRMRD acquisitions")
            hdf5.check_chunks(path, dset, "ISMRMRD acquisitions")
            _check_sequence_lengths(path, dset)
            head_bytes = len(dset) * dset.dtype["head"].itemsize
            check_bytes(path, head_bytes, "the acquisition headers", stored=dset.id.get_storage_size())
            try:
                heads = dset.fields("head")[:] if len(dset) else np.zeros(0)
            except hdf5.H5_ERRORS as exc:
                raise CorruptFileError(path, f"acquisition headers cannot be read; truncated? ({hdf5.reason(exc)})") \
                    from exc
        finally:
            f.close()
        if len(heads) == 0:
            raise InvalidDataError(path, f"ISMRMRD dataset {group!r} holds no acquisitions")
        return _build_scan(path, group, heads, xml, encoding, units)


def _raw_chunk(dset: Any, start: int, nfilters: int, plist: Any) -> bytes | None:
    """The stored bytes of the chunk at row ``start`` as the file type lays them out (deflate and shuffle
    undone), or None when another filter is used."""
    mask, raw = dset.id.read_direct_chunk((start,))
    for i in reversed(range(nfilters)):
        if mask & (1 << i):
            continue  # this filter was skipped for the chunk
        code = plist.get_filter(i)[0]
        if code == h5z.FILTER_DEFLATE:
            raw = zlib.decompressobj().decompress(raw, dset.chunks[0] * dset.id.get_type().get_size() + 1)
        elif code == h5z.FILTER_SHUFFLE:
            size = dset.id.get_type().get_size()
            raw = np.frombuffer(raw, np.uint8).reshape(size, -1).T.tobytes() if len(raw) % size == 0 else raw
        else:
            return None
    return raw


def _check_sequence_lengths(path: str, dset: Any) -> None:
    """HDF5 allocates a variable-length field (``data``, ``traj``) by the length written in the acquisition's
    record before reading its values: a damaged length asks for up to 16 GiB. Every record's lengths are read
    from the stored chunks and checked against what the file can hold."""
    ftype = dset.id.get_type()
    fields = [(ftype.get_member_name(i).decode(), ftype.get_member_offset(i), ftype.get_member_type(i))
              for i in range(ftype.get_nmembers())]
    seqs = [(name, offset, mtype.get_super().get_size()) for name, offset, mtype in fields
            if mtype.get_class() == h5t.VLEN]
    if not seqs or dset.chunks is None or len(dset) == 0:
        return
    plist = dset.id.get_create_plist()
    nfilters, record, rows = plist.get_nfilters(), ftype.get_size(), dset.chunks[0]
    limit = os.path.getsize(path)
    for start in range(0, len(dset), rows):
        try:
            raw = _raw_chunk(dset, start, nfilters, plist)
        except (*hdf5.H5_ERRORS, zlib.error) as exc:
            raise CorruptFileError(path, f"acquisitions {start}.. cannot be read ({hdf5.reason(exc)})") from exc
        if raw is None:
            return  # a filter this check cannot undo: HDF5 reads the file as it is
        n = min(rows, len(dset) - start, len(raw) // record)
        table = np.frombuffer(raw, np.uint8, n * record).reshape(n, record)
        for name, offset, base in seqs:
            lengths = table[:, offset: offset + 4].copy().view("<u4").reshape(-1).astype(np.int64)
            if lengths.size and int(lengths.max()) * base > limit:
                r = int(lengths.argmax())
                raise CorruptFileError(path, f"acquisition {start + r} declares {int(lengths[r])} values of "
                                             f"'{name}', more than the file holds")


def _read_xml(path: str, ds: Any) -> str:
    """The ISMRMRD XML header text of dataset ``xml`` (one string; anything else is an InvalidDataError)."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "SOU" or ds.size < 1:
        what = "a group" if not isinstance(ds, h5py.Dataset) else f"{ds.dtype} of shape {ds.shape}"
        raise InvalidDataError(path, f"ISMRMRD header 'xml' is {what}, not XML text")
    raw = hdf5.read(path, ds, () if ds.ndim == 0 else 0, "ISMRMRD header 'xml'")
    raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) else raw
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    raise InvalidDataError(path, f"ISMRMRD header 'xml' holds {type(raw).__name__}, not XML text")


def _build_scan(path: str, group: str, heads: np.ndarray, xml: str | None, encoding: int, units: str) -> Scan:
    header: dict[str, Any] = {}
    geometry: dict[str, Any] = {"limits": {}}
    parser = None
    if xml:
        try:
            header, geometry, parser = parse_ismrmrd_header(xml)
        except ValueError as exc:
            raise InvalidDataError(path, str(exc)) from exc

    flags = heads["flags"].astype(np.uint64)
    keep = heads["encoding_space_ref"] == encoding
    skipped: dict[str, int] = {}
    import ismrmrd

    for name, flag in _skip_flags().items():
        hit = _bit(flags, flag) & keep
        if name == "calibration":
            # Lines used for both calibration and imaging stay.
            hit &= ~_bit(flags, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        if hit.any():
            skipped[name] = int(hit.sum())
        keep &= ~hit
    other_enc = int((heads["encoding_space_ref"] != encoding).sum())
    if other_enc:
        skipped["other_encoding"] = other_enc
    index = np.flatnonzero(keep)
    if index.size == 0:
        raise InvalidDataError(path, f"no imaging acquisitions (skipped: {skipped or 'none'})")
    h = heads[index]
    idx = h["idx"]
    if (idx["kspace_encode_step_2"] != idx["kspace_encode_step_2"][0]).any():
        raise InvalidDataError(path, "3D encoding (kspace_encode_step_2 varies) is not supported; "
                               "convert to 2D slices first")
    coils = np.unique(h["active_channels"])
    if coils.size != 1:
        raise InvalidDataError(path, f"imaging acquisitions have different coil counts {coils.tolist()}")
    n_coils = int(coils[0])

    # One Scan slice per (slice, contrast, phase, repetition, set); averages are averaged.
    label_fields = ("slice", "contrast", "phase", "repetition", "set")
    labels = np.stack([idx[k].astype(np.int64) for k in label_fields], axis=1)
    uniq, slice_of = np.unique(labels, axis=0, return_inverse=True)
    slice_of = slice_of.reshape(-1)
    # Positions into ``h`` of each slice's acquisitions (``index[local]`` are the numbers in the file).
    per_slice = [np.flatnonzero(slice_of == s) for s in range(len(uniq))]

    traj_name = str(geometry.get("trajectory") or "").lower()
    tdims = h["trajectory_dimensions"]
    cartesian = traj_name in ("cartesian", "epi") or (not traj_name and (tdims == 0).all())

    attrs: dict[str, Any] = {"dataset": group, "encoding": encoding, "header_parser": parser}
    if skipped:
        attrs["skipped_acquisitions"] = skipped
    if any(np.unique(uniq[:, j]).size > 1 for j in range(1, len(label_fields))):
        attrs["slice_labels"] = [dict(zip(label_fields, map(int, row))) for row in uniq]
    attrs["trajectory_kind"] = traj_name or ("cartesian" if cartesian else "non-cartesian")

    enc_mat = geometry.get("encoded_matrix")
    if cartesian:
        return _cartesian_scan(path, group, h, index, per_slice, n_coils, geometry, header, xml, attrs, enc_mat)
    return _noncartesian_scan(path, group, h, index, per_slice, n_coils, geometry, header, xml, attrs, enc_mat, units)


class _Readout:
    """One acquisition as read from the file: header fields by name, data ``[C, N]``, trajectory ``[N, D]``.

    Fields are taken by name from the HDF5 compound (not by byte layout), so files written by the C++ library
    and by the Python package read the same."""

    __slots__ = ("head", "data", "traj")

    def __init__(self, row: np.void):
        head = row["head"]
        c, n, d = int(head["active_channels"]), int(head["number_of_samples"]), int(head["trajectory_dimensions"])
        self.head = head
        self.data = np.asarray(row["data"], dtype=np.float32).view(np.complex64).reshape(c, n)
        traj = np.asarray(row["traj"], dtype=np.float32)
        self.traj = traj.reshape(n, d) if d else np.zeros((n, 0), np.float32)

    def flag(self, bit: int) -> bool:
        return bool((int(self.head["flags"]) >> (bit - 1)) & 1)


def _read_records(path: str, group: str, rows: np.ndarray) -> list[_Readout]:
    """The given (increasing) acquisition numbers, read in one HDF5 selection."""
    f = _open_mrd(path)
    try:
        dset = f[group].acquisitions.data  # the h5py dataset behind ismrmrd's Acquisitions wrapper
        rows = np.asarray(rows, dtype=np.int64)
        try:
            raw = dset[rows] if len(rows) else []
        except hdf5.H5_ERRORS as exc:
            raise CorruptFileError(path, f"acquisition data cannot be read; truncated or damaged? "
                                         f"({hdf5.reason(exc)})") from exc
    finally:
        f.close()
    try:
        return [_Readout(r) for r in raw]
    except ValueError as exc:
        raise CorruptFileError(path, f"an acquisition's data does not match its header ({exc})") from exc


def _samples(acq: _Readout, path: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Data ``[C, N]`` and trajectory ``[N, D]`` without the discarded samples, and the centre sample index."""
    data, traj = acq.data, acq.traj
    pre, post = int(acq.head["discard_pre"]), int(acq.head["discard_post"])
    n = data.shape[1]
    if pre + post >= n:
        raise InvalidDataError(path, f"acquisition {int(acq.head['scan_counter'])} discards all {n} samples")
    return data[:, pre : n - post], traj[pre : n - post], int(acq.head["center_sample"]) - pre


def _cartesian_scan(path, group, h, index, per_slice, n_coils, geometry, header, xml, attrs, enc_mat) -> Scan:
    """Readouts placed on the encoded grid ``[C, H, W]`` (see the module docstring)."""
    import ismrmrd

    idx = h["idx"]
    e1 = idx["kspace_encode_step_1"].astype(np.int64)
    nsamp = (h["number_of_samples"].astype(np.int64) - h["discard_pre"] - h["discard_post"])
    if enc_mat:
        H, W = int(enc_mat[0]), int(enc_mat[1])
    else:
        H, W = int(nsamp.max()), int(e1.max()) + 1
    if H < 1 or W < 1:
        raise InvalidDataError(path, f"the encoded matrix {H}x{W} is empty")
    # The grid is allocated per slice: bounded by the budget and by what the file's readouts can fill.
    check_bytes(path, n_coils * H * W * 8, f"a {n_coils}-coil {H}x{W} k-space grid (header encodedSpace)",
                stored=os.path.getsize(path))
    lim = geometry["limits"].get("kspace_encoding_step_1")
    offset = (W // 2 - lim[2]) if lim and lim[2] is not None else 0
    cols = e1 + offset
    if cols.min() < 0 or cols.max() >= W:
        raise InvalidDataError(path, f"kspace_encode_step_1 {e1.min()}..{e1.max()} does not fit the encoded "
                               f"matrix width {W} (centre {lim[2] if lim else 'unknown'})")
    if nsamp.max() > H:
        raise InvalidDataError(path, f"readouts of {nsamp.max()} samples are longer than the encoded matrix {H}")
    grid = (H, W)
    rev_flag = ismrmrd.ACQ_IS_REVERSE

    def load(i: int) -> np.ndarray:
        k = np.zeros((n_coils, H, W), np.complex64)
        count = np.zeros(W, np.int64)
        for acq in _read_records(path, group, index[per_slice[i]]):
            data, _, centre = _samples(acq, path)
            n = data.shape[1]
            start = H // 2 - centre if acq.head["center_sample"] > 0 else H // 2 - n // 2
            if start < 0 or start + n > H:
                raise InvalidDataError(path, f"readout of {n} samples with centre {centre} does not fit {H} rows")
            if acq.flag(rev_flag):
                data = data[:, ::-1]
            c = int(acq.head["idx"]["kspace_encode_step_1"]) + offset
            k[:, start : start + n, c] += data
            count[c] += 1
        # Averages are summed above; divide by how many readouts landed on each line.
        with np.errstate(invalid="ignore"):  # Inf samples become NaN here; check_finite names them
            k /= np.maximum(count, 1)[None, None, :].astype(np.float32)
        return k

    # Columns the protocol encodes (encodingLimits) and columns present in the first slice.
    encoded_cols = np.ones(W, bool)
    if lim:
        encoded_cols[:] = False
        encoded_cols[max(lim[0] + offset, 0) : min(lim[1] + offset, W - 1) + 1] = True
    acquired_cols = np.zeros(W, bool)
    acquired_cols[cols[per_slice[0]]] = True
    encoded_cols |= acquired_cols
    if len({tuple(np.unique(cols[rows])) for rows in per_slice}) > 1:
        attrs["mask_varies_by_slice"] = True
    # The samples of slice 0's readouts, from their headers as load() places them: a readout shorter than the
    # grid (an asymmetric echo, centre_sample off the middle) leaves rows that were never acquired
    acquired2d = np.zeros((H, W), bool)
    centre_sample = h["center_sample"].astype(np.int64)
    for r in per_slice[0]:
        n = int(nsamp[r])
        start = H // 2 - (int(centre_sample[r]) - int(h["discard_pre"][r])) if centre_sample[r] > 0 else H // 2 - n // 2
        acquired2d[max(start, 0):max(min(start + n, H), 0), cols[r]] = True
    acquired = None if acquired2d.all() else acquired2d
    encoded = None if encoded_cols.all() else np.broadcast_to(encoded_cols[None], (H, W)).copy()
    scan = Scan(
        path=path, format="ismrmrd", n_slices=len(per_slice), n_coils=n_coils, kspace_shape=(n_coils, H, W),
        load_slice=load, grid_shape=grid, recon_shape=recon_shape_from_header(grid, geometry),
        acquired_mask=acquired, encoded_mask=encoded, header=header, header_xml=xml, attrs=attrs,
    )
    if not acquired2d[:, acquired_cols].all():
        scan = scan.with_note(
            f"readouts shorter than the grid: {int(acquired2d.any(axis=1).sum())} of {H} readout rows acquired, the "
            "rest marked as not acquired (an asymmetric echo: option symmetric_echo=true keeps the fully sampled "
            "band around the echo)")
    # Bad k-space is reported when the file is opened, not only when the slice is shown.
    check_finite(path, scan.load_slice(0), 0)
    return scan


def _noncartesian_scan(path, group, h, index, per_slice, n_coils, geometry, header, xml, attrs, enc_mat, units):
    if (h["trajectory_dimensions"] < 2).any():
        raise InvalidDataError(path, f"{attrs['trajectory_kind']} acquisitions without trajectory data (traj)")
    if not enc_mat:
        raise InvalidDataError(path, "non-Cartesian data needs the header's encodedSpace matrix size")
    grid = (int(enc_mat[0]), int(enc_mat[1]))
    if min(grid) < 1:
        raise InvalidDataError(path, f"the encoded matrix {grid[0]}x{grid[1]} is empty")
    check_bytes(path, n_coils * grid[0] * grid[1] * 8, f"{n_coils}-coil images on the {grid[0]}x{grid[1]} grid "
                "(header encodedSpace)", stored=os.path.getsize(path))
    nsamp = (h["number_of_samples"].astype(np.int64) - h["discard_pre"] - h["discard_post"])
    totals = {int(nsamp[rows].sum()) for rows in per_slice}
    if len(totals) != 1:
        raise InvalidDataError(path, f"slices have different sample counts {sorted(totals)}")
    K = totals.pop()

    def read(i: int) -> tuple[np.ndarray, np.ndarray]:
        ks, ts = [], []
        for acq in _read_records(path, group, index[per_slice[i]]):
            data, traj, _ = _samples(acq, path)
            ks.append(data)
            ts.append(traj[:, :3].T)
        t = np.concatenate(ts, axis=1)
        if t.shape[0] > 2 and np.abs(t[2:]).max() > 0:
            raise InvalidDataError(path, "3D trajectories (non-zero third coordinate) are not supported")
        return np.concatenate(ks, axis=1).astype(np.complex64), t[:2]

    k0, t0 = read(0)
    traj, used = trajectory_to_radians(t0, grid, units, path=path)
    attrs["trajectory_units"] = used
    check_finite(path, k0, 0)

    def load(i: int) -> np.ndarray:
        k, t = read(i)
        if t.shape != t0.shape or not np.allclose(t, t0, atol=1e-6):
            raise InvalidDataError(path, f"slice {i} has a different trajectory from slice 0 (not supported)")
        return k

    return Scan(
        path=path, format="ismrmrd", n_slices=len(per_slice), n_coils=n_coils, kspace_shape=(n_coils, K),
        load_slice=load, grid_shape=grid, recon_shape=recon_shape_from_header(grid, geometry), trajectory=traj,
        header=header, header_xml=xml, attrs=attrs,
    )


register_reader(MrdReader())
