"""BART ``.cfl``/``.hdr`` files (https://mrirecon.github.io/bart/).

A BART array is two files: ``name.hdr`` (text: ``# Dimensions`` then the sizes of up to 16 dimensions) and
``name.cfl`` (raw complex64, Fortran order). BART's dimension meanings: 0 READ (x), 1 PHS1 (y), 2 PHS2 (z),
3 COIL, 4 MAPS, 5 TE, 10 TIME, 13 SLICE, ... The reader memory-maps the ``.cfl`` read-only and reads one slice
at a time.

Cartesian k-space ``[x, y, z, coil, 1, ...]`` becomes ``[S, C, H, W]``:
- ``x`` and one of ``y``/``z`` in-plane: H = x (the readout), W = the other;
- ``x`` singleton (a slice of a 3D scan whose readout was transformed away): H = z, W = y (both phase encodes),
  which is the orientation of the same data in sigpy's ``.npy`` files;
- ``x``, ``y`` and ``z`` all > 1 (3D k-space): a centred inverse FFT along x makes one (z, y) slice per x.
Every further non-singleton dimension (5..15) is enumerated as slices, the lower BART dimension fastest.

Non-Cartesian k-space ``[readout, spokes, 1, coil, ...]`` (or BART's nufft layout ``[1, readout, spokes, coil]``)
comes with a trajectory ``[3, readout, spokes]`` in BART pixel units for a grid of N: taken from the option
``trajectory=PATH``, or found automatically when exactly one ``traj*.cfl`` in the same folder has matching
dimensions. It becomes ``[2, K]`` radians (2*pi*k/N wrapped into [-pi, pi)), row 0 from BART x (image axis H),
row 1 from BART y (axis W); K enumerates spoke after spoke (readout fastest), as the ``[C, K]`` k-space does.
Radial readouts are taken as 2x oversampled (``readout_oversampling=2``, BART's ``traj -x 2N`` convention):
grid (N, N), recon (N/2, N/2).

A stored reference: option ``reference=PATH`` or the companion of ``...ksp...`` named ``...img...``
(e.g. ``img.cfl`` next to ``ksp.cfl``): magnitude of map 0, oriented like the k-space.
"""

from __future__ import annotations

import glob
import math
import os
import re
from typing import Any

import numpy as np

from workbench.errors import CorruptFileError, InvalidDataError, ScanError
from workbench.io import check_finite, check_options, register_reader
from workbench.limits import check_bytes
from workbench.scan import Scan

N_DIMS = 16
READ, PHS1, PHS2, COIL, MAPS, TE, TIME, SLICE = 0, 1, 2, 3, 4, 5, 10, 13
_DIM_NAMES = ["READ", "PHS1", "PHS2", "COIL", "MAPS", "TE", "COEFF", "COEFF2", "ITER", "CSHIFT", "TIME",
              "TIME2", "LEVEL", "SLICE", "AVG", "BATCH"]

_OPTIONS = {"trajectory", "reference", "readout_oversampling", "grid_shape"}


# ------------------------------------------------------------------------------------------------ files
def cfl_base(path: str | os.PathLike) -> str:
    """The BART name without extension (``a/ksp.cfl`` and ``a/ksp.hdr`` -> ``a/ksp``)."""
    p = os.fspath(path)
    root, ext = os.path.splitext(p)
    return root if ext.lower() in (".cfl", ".hdr") else p


def read_cfl_header(name: str | os.PathLike) -> tuple[list[int], dict[str, str]]:
    """Parse ``name.hdr``: the 16 dimensions (padded with 1) and the other ``# Section`` texts
    (``command``, ``files``, ``creator``). Raises CorruptFileError on a missing or malformed header."""
    base = cfl_base(name)
    hdr = base + ".hdr"
    if not os.path.isfile(hdr):
        raise CorruptFileError(base + ".cfl", f"no BART header {os.path.basename(hdr)} next to it")
    try:
        with open(hdr, "rb") as f:
            text = f.read(1 << 16).decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError(hdr, "is not a BART header (not text)") from None
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#"):
            current = line[1:].strip().lower()
            sections.setdefault(current, [])
        elif current is not None and line.strip():
            sections[current].append(line.strip())
    if not sections.get("dimensions"):
        raise CorruptFileError(hdr, "malformed BART header: no '# Dimensions' line followed by the sizes")
    try:
        dims = [int(v) for v in sections["dimensions"][0].split()[:64]]
    except ValueError:
        raise CorruptFileError(hdr, f"malformed BART header: dimensions {sections['dimensions'][0]!r} are not integers") from None
    if not dims or any(d < 1 for d in dims):
        raise CorruptFileError(hdr, f"malformed BART header: dimensions {dims} must all be >= 1")
    if len(dims) > N_DIMS and any(d != 1 for d in dims[N_DIMS:]):
        raise CorruptFileError(hdr, f"BART header has {len(dims)} dimensions; only {N_DIMS} are supported")
    dims = (dims + [1] * N_DIMS)[:N_DIMS]
    info = {k: " ".join(v) for k, v in sections.items() if k != "dimensions"}
    return dims, info


def read_cfl(name: str | os.PathLike) -> np.ndarray:
    """Memory-map ``name.cfl`` read-only as a complex64 array of the header's 16 dims (Fortran order).
    Raises CorruptFileError when the header is missing/malformed or the data size does not match."""
    base = cfl_base(name)
    dims, _ = read_cfl_header(base)
    cfl = base + ".cfl"
    if not os.path.isfile(cfl):
        raise CorruptFileError(base + ".hdr", f"BART data file {os.path.basename(cfl)} is missing")
    need = math.prod(dims) * 8  # Python ints: a forged header cannot overflow into a matching size
    have = os.path.getsize(cfl)
    if have != need:
        raise CorruptFileError(
            cfl, f"has {have} bytes but its header dimensions {_short_dims(dims)} need {need} bytes (complex64)"
        )
    return np.memmap(cfl, dtype=np.complex64, mode="r", shape=tuple(dims), order="F")


def write_cfl(name: str | os.PathLike, array: np.ndarray, *, command: str | None = None) -> None:
    """Write ``array`` (any numeric dtype, up to 16 dims, BART dimension order) as ``name.cfl``/``name.hdr``."""
    base = cfl_base(name)
    a = np.asarray(array)
    if a.ndim > N_DIMS:
        raise ValueError(f"BART arrays have at most {N_DIMS} dimensions, got {a.ndim}")
    dims = list(a.shape) + [1] * (N_DIMS - a.ndim)
    from workbench.atomic import atomic_open, atomic_path

    # each file is replaced whole (a failed write leaves the previous one); the data first, so that a header
    # never describes a .cfl it is not the header of
    with atomic_path(base + ".cfl") as tmp:
        np.asfortranarray(a.astype(np.complex64, copy=False)).ravel(order="F").tofile(tmp)
    with atomic_open(base + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(str(d) for d in dims) + " \n")
        if command:
            f.write(f"# Command\n{command} \n")
        f.write("# Creator\nworkbench\n")


def _short_dims(dims: list[int]) -> list[int]:
    last = max([i for i, d in enumerate(dims) if d > 1], default=0)
    return dims[: max(last + 1, 4)]


# ------------------------------------------------------------------------------ option values (CLI or API)
def option_float(path: str, name: str, v: Any, minimum: float = 1.0) -> float | None:
    """A float option (None stays None); values below ``minimum`` are an error."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ScanError(path, f"option {name}={v!r} is not a number") from None
    if not f >= minimum:
        raise ScanError(path, f"option {name}={v!r} must be >= {minimum:g}")
    return f


def option_shape(path: str, name: str, v: Any) -> tuple[int, int] | None:
    """``(H, W)`` from a pair, ``"H,W"`` or ``"HxW"``; None stays None."""
    if v is None:
        return None
    if isinstance(v, str):
        v = [p for p in v.lower().replace("x", ",").split(",") if p.strip()]
    try:
        t = tuple(int(n) for n in v)
    except (TypeError, ValueError):
        raise ScanError(path, f"option {name}={v!r} is not two integers") from None
    if len(t) != 2 or min(t) <= 0:
        raise ScanError(path, f"option {name}={v!r} is not two positive integers")
    return t  # type: ignore[return-value]


def option_bool(path: str, name: str, v: Any) -> bool | None:
    """True/False from bools or ``"true"/"false"/"1"/"0"/"yes"/"no"``; None (= auto) stays None."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(v, str) and v.strip().lower() == "auto":
        return None
    raise ScanError(path, f"option {name}={v!r} is not true/false")


# ---------------------------------------------------------------------------------------- trajectories
_PI32 = np.nextafter(np.float32(np.pi), np.float32(0))  # largest float32 below pi


def wrap_radians(rad: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped into [-pi, pi) as float32 (the NUFFT is periodic, so wrapping is exact)."""
    r = (np.asarray(rad, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi
    return np.clip(r.astype(np.float32), -_PI32, _PI32)


def radial_spokes(coords: np.ndarray, rtol: float = 0.05) -> bool:
    """True when every spoke of ``coords`` ``[2, readout, spokes]`` (any units) is a straight line through
    (about) the k-space origin, i.e. the trajectory is radial (full spokes or centre-out)."""
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim != 3 or c.shape[0] != 2 or c.shape[1] < 3:
        return False
    extent = np.abs(c).max()
    if extent == 0:
        return False
    first, last = c[:, 0, :], c[:, -1, :]
    d = last - first                                       # [2, spokes] spoke directions
    length = np.hypot(d[0], d[1])
    if np.any(length < 0.5 * extent):
        return False
    rel = c - first[:, None, :]
    off_line = np.abs(rel[0] * d[1][None] - rel[1] * d[0][None]) / length[None]   # distance to the spoke line
    through_origin = np.abs(first[0] * d[1] - first[1] * d[0]) / length            # origin to the spoke line
    return bool(off_line.max() < rtol * extent and through_origin.max() < rtol * extent)


# ------------------------------------------------------------------------------------------------ reader
class BartReader:
    """Reader for BART ``.cfl``/``.hdr`` pairs (probe either file)."""

    name = "bart"
    extensions = (".cfl", ".hdr")

    def probe(self, path: str, head: bytes) -> int:
        ext = os.path.splitext(path)[1].lower()
        if ext == ".hdr":
            if head.lstrip().startswith(b"# Dimensions"):
                return 90
            # a damaged header next to its .cfl: ours, so that open() says what is wrong with it
            return 40 if os.path.isfile(cfl_base(path) + ".cfl") else 0
        if ext == ".cfl":
            hdr = cfl_base(path) + ".hdr"
            if not os.path.isfile(hdr):
                return 50  # ours by extension; open() says the header is missing
            with open(hdr, "rb") as f:
                return 90 if f.read(64).lstrip().startswith(b"# Dimensions") else 50
        return 0

    # -------------------------------------------------------------------------------------------------
    def open(self, path: str, **options: Any) -> Scan:
        check_options(path, "BART", options, _OPTIONS)
        base = cfl_base(path)
        ksp = read_cfl(base)
        dims = list(ksp.shape)
        _, info = read_cfl_header(base)
        cfl_path = base + ".cfl"
        if dims[READ] == 3 and os.path.basename(base).lower().startswith("traj") and \
                not np.asarray(ksp[:, : min(dims[PHS1], 64)]).imag.any():
            raise InvalidDataError(cfl_path, f"looks like a BART trajectory {_short_dims(dims)} (real-valued, dim 0 = "
                                             "3 coordinates), not k-space; open the k-space file and pass "
                                             "trajectory=<this file>")
        if dims[MAPS] != 1:
            raise InvalidDataError(cfl_path, f"k-space has {dims[MAPS]} entries in dim 4 (MAPS); expected 1")

        header: dict[str, Any] = {"bart_dims": _short_dims(dims)}
        if info.get("command"):
            header["bart_command"] = info["command"]
        if info.get("creator"):
            header["bart_creator"] = info["creator"]
        attrs: dict[str, Any] = {"bart_dims": dims, "notes": []}

        traj_path = self._find_trajectory(base, dims, options.get("trajectory"))
        if traj_path is not None:
            scan = self._open_noncartesian(base, ksp, dims, traj_path, options, header, attrs)
        else:
            scan = self._open_cartesian(base, ksp, dims, options, header, attrs)

        if dims[SLICE] > 1:
            sms = self._sms_factor(base, traj_path)
            note = (f"BART dim 13 (SLICE) holds {dims[SLICE]} slices, opened as separate slices"
                    + (f"; simultaneous multi-slice (MB={sms}): the partitions are not separated here, "
                       "reconstructing them needs an SMS model" if sms > 1 else
                       "; if this is simultaneous multi-slice data, the slices need an SMS model"))
            attrs["notes"].append(note)
            header["note"] = note
            if sms > 1:
                header["sms_multiband"] = sms
        check_finite(cfl_path, scan.load_slice(0))
        return scan

    # -------------------------------------------------------------------------------------------------
    def _open_cartesian(self, base, ksp, dims, options, header, attrs) -> Scan:
        cfl_path = base + ".cfl"
        if options.get("grid_shape") is not None:
            raise ScanError(cfl_path, "grid_shape applies to non-Cartesian data; this BART k-space has no trajectory")
        os_factor = option_float(cfl_path, "readout_oversampling", options.get("readout_oversampling")) or 1.0
        x, y, z = dims[READ], dims[PHS1], dims[PHS2]
        n_coils = dims[COIL]
        extra = int(np.prod(dims[5:]))
        view = ksp.reshape(x, y, z, n_coils, extra, order="F")  # a view of the memmap (Fortran order)
        volume = x > 1 and y > 1 and z > 1
        if volume:
            layout, grid = "3D k-space: centred inverse FFT along x, one (z, y) slice per x", (z, y)
        elif x == 1 and y > 1 and z > 1:
            layout, grid = "x singleton: H = z, W = y (both phase encodes)", (z, y)
        elif x > 1 and y > 1:
            layout, grid = "H = x (readout), W = y", (x, y)
        elif x > 1 and z > 1:
            layout, grid = "H = x (readout), W = z", (x, z)
        else:
            raise InvalidDataError(cfl_path, f"k-space dims {_short_dims(dims)} have fewer than two spatial "
                                             "dimensions (0, 1, 2) larger than 1")
        n_slices = extra * (x if volume else 1)
        # one read: a whole (x, y, z, coils) block for 3D k-space, else one slice; each is held in memory
        check_bytes(cfl_path, x * y * z * n_coils * 8 * (2 if volume else 1), "one BART k-space slice",
                    stored=os.path.getsize(cfl_path))

        def plane(k3: np.ndarray) -> np.ndarray:
            """[x, y, z, C] (one of x/y/z singleton or reduced) -> [C, H, W]."""
            if x > 1 and y > 1 and not volume:
                return np.transpose(k3[:, :, 0, :], (2, 0, 1))
            if x > 1 and not volume:
                return np.transpose(k3[:, 0, :, :], (2, 0, 1))
            return np.transpose(k3[0], (2, 1, 0))

        if volume:
            xs = np.arange(x) - x // 2

            def load_slice(i: int) -> np.ndarray:
                e, xi = divmod(i, x)
                # one row of the centred orthonormal inverse DFT along x
                w = np.exp(2j * np.pi * (xi - x // 2) * xs / x) / math.sqrt(x)
                k3 = np.tensordot(w.astype(np.complex64), np.asarray(view[..., e]), axes=(0, 0))[None]
                return np.array(plane(k3), dtype=np.complex64, order="C")
        else:
            def load_slice(i: int) -> np.ndarray:
                return np.array(plane(np.asarray(view[..., i])), dtype=np.complex64, order="C")

        first = np.asarray(view[..., 0])
        nz = np.abs(first).sum(axis=(0, 3) if volume else 3) > 0
        mask2d = plane(nz[None, ..., None] if volume else nz[..., None])[0]
        acquired = None if mask2d.all() else mask2d

        recon = (int(round(grid[0] / os_factor)), grid[1]) if os_factor != 1 and not (x == 1 or volume) else grid
        if os_factor != 1 and (x == 1 or volume):
            attrs["notes"].append("readout_oversampling ignored: no readout axis in-plane")

        ref_loader, ref_kind, ref_path = self._reference(
            base, dims, options.get("reference"), plane_fn=lambda r3: plane(r3[..., None])[0],
            grid=grid, recon=recon, n_slices=n_slices, volume=volume,
        )
        attrs.update({"layout": layout, "reference_file": ref_path})
        header["layout"] = layout
        return Scan(
            path=cfl_path, format="bart", n_slices=n_slices, n_coils=n_coils,
            kspace_shape=(n_coils, *grid), load_slice=load_slice, grid_shape=grid, recon_shape=recon,
            acquired_mask=acquired, load_reference=ref_loader, reference_kind=ref_kind, header=header, attrs=attrs,
        )

    # -------------------------------------------------------------------------------------------------
    @staticmethod
    def _sample_dims(dims: list[int]) -> tuple[int, int] | None:
        """Which BART dims hold (readout, spokes): (0, 1) with dim 2 singleton, or (1, 2) with dim 0 singleton."""
        if dims[PHS2] == 1 and dims[READ] > 1:
            return (READ, PHS1)
        if dims[READ] == 1 and dims[PHS1] > 1:
            return (PHS1, PHS2)
        return None

    def _traj_matches(self, kdims: list[int], tdims: list[int]) -> bool:
        sd = self._sample_dims(kdims)
        if sd is None or tdims[0] != 3 or tdims[COIL] != 1 or tdims[MAPS] != 1:
            return False
        if (tdims[1], tdims[2]) != (kdims[sd[0]], kdims[sd[1]]):
            return False
        return all(tdims[i] == kdims[i] for i in range(5, N_DIMS))

    def _find_trajectory(self, base: str, dims: list[int], explicit: str | None) -> str | None:
        if explicit is not None:
            tbase = cfl_base(explicit)
            tdims, _ = read_cfl_header(tbase)
            if not os.path.isfile(tbase + ".cfl"):
                raise CorruptFileError(tbase + ".hdr", f"BART data file {os.path.basename(tbase)}.cfl is missing")
            if not self._traj_matches(dims, tdims) and not self._traj_broadcasts(dims, tdims):
                raise InvalidDataError(
                    tbase + ".cfl", f"trajectory dims {_short_dims(tdims)} do not fit the k-space dims "
                    f"{_short_dims(dims)} of {os.path.basename(base)}.cfl (expected [3, readout, spokes, ...])")
            return tbase
        folder = os.path.dirname(os.path.abspath(base))
        cands = sorted(p for p in glob.glob(os.path.join(folder, "traj*.cfl"))
                       if os.path.abspath(cfl_base(p)) != os.path.abspath(base))
        if not cands:
            return None
        matching = []
        for c in cands:
            try:
                tdims, _ = read_cfl_header(c)
            except CorruptFileError:
                continue
            if self._traj_matches(dims, tdims):
                matching.append(cfl_base(c))
        if len(matching) == 1:
            return matching[0]
        names = ", ".join(os.path.basename(c) for c in cands)
        if len(matching) > 1:
            raise InvalidDataError(base + ".cfl", f"several trajectory files fit this k-space ({names}); "
                                                  "choose one with the option trajectory=PATH")
        return None  # trajectory files of other scans: this k-space is Cartesian

    @staticmethod
    def _traj_broadcasts(kdims: list[int], tdims: list[int]) -> bool:
        sd = BartReader._sample_dims(kdims)
        return (sd is not None and tdims[0] == 3 and (tdims[1], tdims[2]) == (kdims[sd[0]], kdims[sd[1]])
                and all(tdims[i] in (1, kdims[i]) for i in range(5, N_DIMS)))

    def _open_noncartesian(self, base, ksp, dims, tbase, options, header, attrs) -> Scan:
        cfl_path = base + ".cfl"
        sd = self._sample_dims(dims)
        if sd is None:
            raise InvalidDataError(cfl_path, f"k-space dims {_short_dims(dims)} are not [readout, spokes, 1, coils] "
                                             "or [1, readout, spokes, coils] as a trajectory needs")
        n_read, n_spokes = dims[sd[0]], dims[sd[1]]
        n_coils = dims[COIL]
        extra = int(np.prod(dims[5:]))
        view = ksp.reshape(n_read, n_spokes, n_coils, extra, order="F")

        traj = read_cfl(tbase)
        tdims = list(traj.shape)
        check_bytes(tbase + ".cfl", math.prod(tdims) * 16, "the BART trajectory", stored=math.prod(tdims) * 8)
        check_bytes(cfl_path, n_read * n_spokes * n_coils * 8, "one BART k-space slice")
        t = np.asarray(traj).reshape(3, n_read, n_spokes, -1, order="F")
        if t.shape[-1] > 1 and not all(np.array_equal(t[..., 0], t[..., j]) for j in range(1, t.shape[-1])):
            raise InvalidDataError(tbase + ".cfl", "the trajectory differs between slices/frames; a scan holds one "
                                                   "trajectory: split the file per frame (bart slice)")
        t = t[..., 0]
        if np.abs(t.imag).max() > 0:
            raise InvalidDataError(tbase + ".cfl", "trajectory has non-zero imaginary parts")
        t = t.real.astype(np.float64)
        if np.abs(t[2]).max() > 1e-3 * max(np.abs(t[:2]).max(), 1):
            raise InvalidDataError(tbase + ".cfl", "trajectory has a non-zero kz coordinate (3D); only 2D "
                                                   "trajectories are supported")
        if not np.isfinite(t).all():
            raise InvalidDataError(tbase + ".cfl", "trajectory has NaN/Inf values")

        extent = float(np.abs(t[:2]).max())
        grid_opt = option_shape(cfl_path, "grid_shape", options.get("grid_shape"))
        if grid_opt is not None:
            grid = grid_opt
        else:
            n = n_read if extent <= n_read / 2 + 1 else 2 * math.ceil(extent)
            grid = (n, n)
        radial = radial_spokes(t[:2])
        os_factor = option_float(cfl_path, "readout_oversampling", options.get("readout_oversampling")) or (
            2.0 if radial else 1.0)
        recon = (int(round(grid[0] / os_factor)), int(round(grid[1] / os_factor)))

        # [2, readout, spokes] -> [2, K], spoke after spoke (readout fastest), like the k-space below
        coords = np.transpose(t[:2], (0, 2, 1)).reshape(2, -1)
        rad = np.stack([wrap_radians(2 * np.pi * coords[0] / grid[0]), wrap_radians(2 * np.pi * coords[1] / grid[1])])

        def load_slice(i: int) -> np.ndarray:
            k = np.asarray(view[..., i])                       # [readout, spokes, C]
            return np.array(np.transpose(k, (2, 1, 0)).reshape(n_coils, -1), dtype=np.complex64, order="C")

        kind = "radial" if radial else "non-cartesian"
        attrs.update({"trajectory_file": tbase + ".cfl", "trajectory_kind": kind, "trajectory_units": "BART pixels",
                      "trajectory_dims": tdims, "readout_oversampling": os_factor,
                      "layout": f"[readout, spokes] from BART dims {sd}; K = spoke * {n_read} + sample"})
        header["spokes"] = f"{n_spokes} x {n_read} samples, trajectory {os.path.basename(tbase)}.cfl"
        ref_loader, ref_kind, ref_path = self._reference(
            base, dims, options.get("reference"), plane_fn=lambda r3: r3[:, :, 0] if r3.shape[0] > 1 else r3[0],
            grid=grid, recon=recon, n_slices=extra, volume=False,
        )
        attrs["reference_file"] = ref_path
        return Scan(
            path=cfl_path, format="bart", n_slices=extra, n_coils=n_coils, kspace_shape=(n_coils, n_read * n_spokes),
            load_slice=load_slice, grid_shape=grid, recon_shape=recon, trajectory=rad,
            load_reference=ref_loader, reference_kind=ref_kind, header=header, attrs=attrs,
        )

    # -------------------------------------------------------------------------------------------------
    def _reference(self, base, kdims, explicit, *, plane_fn, grid, recon, n_slices, volume):
        """(loader, kind, path) for an explicit or companion reference image, or (None, None, None)."""
        if explicit is not None:
            rbase = cfl_base(explicit)
        else:
            name = os.path.basename(base)
            if "ksp" not in name:
                return None, None, None
            rbase = os.path.join(os.path.dirname(base), name.replace("ksp", "img"))
            if not os.path.isfile(rbase + ".hdr") or not os.path.isfile(rbase + ".cfl"):
                return None, None, None
        try:
            img = read_cfl(rbase)
        except CorruptFileError:
            if explicit is not None:
                raise
            return None, None, None
        rdims = list(img.shape)
        _, rinfo = read_cfl_header(rbase)
        fits_slices = all(rdims[i] in (1, kdims[i]) for i in range(5, N_DIMS)) and not volume
        spatial = [rdims[i] for i in (READ, PHS1, PHS2)]
        check_bytes(rbase + ".cfl", math.prod(spatial) * math.prod(rdims[5:]) * 8, "the BART reference image")
        img3 = np.asarray(img[:, :, :, :1, :1, ...]).reshape(*spatial, -1, order="F")  # coil 0, map 0
        try:
            shape2d = plane_fn(np.abs(img3[..., 0])).shape
        except (IndexError, ValueError):
            shape2d = None
        # one image per k-space slice (or one image for a single slice)
        ok = (fits_slices and rdims[COIL] == 1 and shape2d in (tuple(recon), tuple(grid))
              and img3.shape[-1] in ({1, n_slices} if n_slices == 1 else {n_slices}))
        if not ok:
            why = (f"reference {os.path.basename(rbase)}.cfl dims {_short_dims(rdims)} do not fit the k-space "
                   f"(image {recon} or {grid}, one coil, one image per slice)")
            if explicit is not None:
                raise InvalidDataError(rbase + ".cfl", why)
            return None, None, None
        per_slice = img3.shape[-1] > 1

        def load_reference(i: int) -> np.ndarray:
            r = plane_fn(np.abs(img3[..., i if per_slice else 0])).astype(np.float32)
            if r.shape != tuple(recon):
                h, w = r.shape
                top, left = h // 2 - recon[0] // 2, w // 2 - recon[1] // 2
                r = r[top: top + recon[0], left: left + recon[1]]
            return np.array(r, dtype=np.float32, order="C")

        cmd = rinfo.get("command", "").split()
        kind = {"pics": "sense", "rss": "rss"}.get(cmd[0] if cmd else "", "stored")
        return load_reference, kind, rbase + ".cfl"

    @staticmethod
    def _sms_factor(base: str, tbase: str | None) -> int:
        """The multiband factor when the files say the data are SMS (``traj -m N`` or an ``MB<N>`` name), else 1."""
        if tbase is not None:
            try:
                _, tinfo = read_cfl_header(tbase)
                m = re.search(r"(?:^|\s)-m\s*(\d+)", tinfo.get("command", ""))
                if m and int(m.group(1)) > 1:
                    return int(m.group(1))
            except CorruptFileError:
                pass
        m = re.search(r"(?i)(?:^|[^a-z])mb(\d+)", os.path.basename(base))
        return int(m.group(1)) if m and int(m.group(1)) > 1 else 1


register_reader(BartReader())
