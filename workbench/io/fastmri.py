"""fastMRI HDF5 files (single- and multi-coil, knee and brain).

Layout written and read (as in the fastMRI data release):
- ``kspace``: ``[S, C, H, W]`` complex64 (multi-coil) or ``[S, H, W]`` (single-coil); H = readout with 2x
  oversampling (e.g. 640), W = phase encode (e.g. 368, zero-padded edges allowed).
- ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil): ``[S, h, w]`` float32, the
  magnitude image cropped to ``(h, w)`` (320x320 for knee).
- ``ismrmrd_header``: ISMRMRD XML as bytes.
- ``mask``: ``[W]`` (test/challenge files only), with attrs ``acceleration`` and ``num_low_frequency``.
- file attrs: ``acquisition``, ``max``, ``norm``, ``patient_id``.

Reading: k-space is read one slice at a time from the HDF5 dataset (never the whole volume), the reference
lazily per slice. ``recon_shape`` is the stored reconstruction's shape (else the header's reconSpace matrix), so
``center_crop(rss(ifft2c(kspace)), recon_shape)`` of a fully sampled slice is ``reconstruction_rss`` (readout
oversampling and the fastMRI crop removed). The zero-padded phase-encode edges (columns outside
``encodingLimits.kspace_encoding_step_1``, fastMRI's rule ``left = W//2 - center``, ``right = left + maximum + 1``)
are left out of ``encoded_mask`` so that padding does not count as undersampling; test/challenge files' ``mask``
gives ``acquired_mask``.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from workbench.arrays import center_crop
from workbench.errors import InvalidDataError, ScanError
from workbench.io import check_finite, check_options, hdf5, register_reader
from workbench.io.hdf5 import HDF5_SIGNATURE, open_hdf5
from workbench.io.mrd import parse_ismrmrd_header
from workbench.scan import Scan


def write_fastmri(
    path: str | os.PathLike,
    kspace: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    header_xml: str | None = None,
    attrs: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
) -> None:
    """Write a fastMRI-format file. ``kspace`` is ``[S, C, H, W]`` (multi-coil) or ``[S, H, W]`` (single-coil);
    ``reference`` ``[S, h, w]`` is stored as ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc``."""
    kspace = np.asarray(kspace, dtype=np.complex64)
    multicoil = kspace.ndim == 4
    from workbench.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:  # a failed write leaves the previous file
        f.create_dataset("kspace", data=kspace, chunks=(1, *kspace.shape[1:]))
        if reference is not None:
            ref = np.asarray(reference, dtype=np.float32)
            f.create_dataset("reconstruction_rss" if multicoil else "reconstruction_esc", data=ref)
            f.attrs["max"] = float(ref.max())
            f.attrs["norm"] = float(np.linalg.norm(ref))
        if header_xml is not None:
            f.create_dataset("ismrmrd_header", data=np.bytes_(header_xml.encode()))
        if mask is not None:
            f.create_dataset("mask", data=np.asarray(mask, dtype=bool))
        f.attrs["acquisition"] = "AXT1" if multicoil else "CORPD_FBK"
        f.attrs["patient_id"] = "synthetic"
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


# ---------------------------------------------------------------------------------------------------------
# Reader

def _read(path: str, ds: h5py.Dataset, sel: Any, what: str) -> np.ndarray:
    return hdf5.read(path, ds, sel, what)


def _py(value: Any) -> Any:
    """HDF5 attribute values as plain Python (bytes -> str, numpy scalars -> numbers)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class FastMriReader:
    """fastMRI HDF5 (see the module docstring for the layout). Option: ``reference`` ("rss" or "esc") picks the
    stored reconstruction when a file has both."""

    name = "fastmri"
    extensions = (".h5",)
    options = ("reference",)

    def probe(self, path: str, head: bytes) -> int:
        if not head.startswith(HDF5_SIGNATURE):
            return 0
        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())  # names only: no link is followed
        except Exception:  # noqa: BLE001
            return 5  # a damaged HDF5 file: claim it weakly so that open() reports the damage
        if "kspace" in keys:
            return 100
        if keys & {"reconstruction_rss", "reconstruction_esc", "ismrmrd_header", "mask"}:
            return 60
        return 5  # some other HDF5 file: open() says that it holds no k-space

    def open(self, path: str, **options: Any) -> Scan:
        path = os.fspath(path)
        check_options(path, self.name, options, self.options)
        with open_hdf5(path) as f:
            ds = hdf5.get(f, "kspace", path)
            if not isinstance(ds, h5py.Dataset):
                found = ", ".join(sorted(f.keys())) or "nothing"
                raise InvalidDataError(
                    path, f"HDF5 file has no 'kspace' dataset (it holds: {found}); expected a fastMRI file "
                    "('kspace') or an ISMRMRD file (a 'dataset' group with 'xml' and 'data')"
                )
            if not np.issubdtype(ds.dtype, np.complexfloating):
                raise InvalidDataError(path, f"'kspace' has dtype {ds.dtype}, expected complex")
            if ds.ndim == 4:
                S, C, H, W = ds.shape
            elif ds.ndim == 3:
                (S, H, W), C = ds.shape, 1
            else:
                raise InvalidDataError(path, f"'kspace' has shape {ds.shape}; expected [slices, coils, H, W] "
                                       "(multi-coil) or [slices, H, W] (single-coil)")
            if min(S, C, H, W) == 0:
                raise InvalidDataError(path, f"'kspace' is empty (shape {ds.shape})")
            multicoil = ds.ndim == 4
            attrs = {k: _py(v) for k, v in hdf5.attributes(f, path).items()}

            xml = None
            header: dict[str, Any] = {}
            geometry: dict[str, Any] = {"limits": {}}
            hds = hdf5.get(f, "ismrmrd_header", path)
            if hds is not None:
                if not isinstance(hds, h5py.Dataset) or hds.dtype.kind not in "SOU" or hds.size != 1:
                    what = "a group" if not isinstance(hds, h5py.Dataset) else f"{hds.dtype} {hds.shape}"
                    raise InvalidDataError(path, f"'ismrmrd_header' is {what}, not one XML text")
                raw = _read(path, hds, (), "'ismrmrd_header'")
                raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) else raw
                xml = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
                try:
                    header, geometry, attrs["header_parser"] = parse_ismrmrd_header(xml)
                except ValueError as exc:
                    raise InvalidDataError(path, f"'ismrmrd_header': {exc}") from exc

            ref_name = self._reference_name(path, f, multicoil, options.get("reference"))
            ref_shape = None
            if ref_name:
                rds = hdf5.get(f, ref_name, path)
                if not isinstance(rds, h5py.Dataset) or rds.dtype.kind not in "biufc":
                    raise InvalidDataError(path, f"'{ref_name}' is not a numeric dataset")
                if rds.ndim != 3 or rds.shape[0] != S:
                    raise InvalidDataError(
                        path, f"'{ref_name}' has shape {rds.shape} but 'kspace' has {S} slices; expected [{S}, h, w]"
                    )
                ref_shape = tuple(int(n) for n in rds.shape[1:])

            mask = None
            mds = hdf5.get(f, "mask", path)
            if mds is not None:
                if not isinstance(mds, h5py.Dataset) or mds.dtype.kind not in "biuf":
                    raise InvalidDataError(path, "'mask' is not a numeric dataset")
                mask = np.asarray(_read(path, mds, (), "'mask'")).astype(bool).reshape(-1)
                if mask.shape != (W,):
                    raise InvalidDataError(path, f"'mask' has length {mask.size} but k-space width (phase "
                                           f"encode) is {W}")
            first = _read(path, ds, 0, "'kspace' slice 0")

        check_finite(path, first, 0)
        grid = (int(H), int(W))
        # recon_shape: the stored reconstruction's size (fastMRI crops 640x368 -> 320x320), else the header's
        # reconSpace matrix; never larger than the grid (a few fastMRI brain files store a larger reference:
        # it is centre-cropped to the grid when read).
        if ref_shape is not None:
            target = ref_shape
        elif geometry.get("recon_matrix"):
            target = tuple(int(n) for n in geometry["recon_matrix"][:2])
        else:
            target = grid
        recon_shape = (min(target[0], H), min(target[1], W))

        # Phase-encode columns the protocol encodes (fastMRI's padding rule from encodingLimits); the zero
        # columns outside are padding, not undersampling.
        present = np.abs(first.reshape(-1, H, W)).sum(axis=(0, 1)) > 0
        encoded_cols = None
        lim = geometry["limits"].get("kspace_encoding_step_1")
        enc_mat = geometry.get("encoded_matrix")
        if lim and lim[2] is not None and lim[1] is not None:
            enc_w = int(enc_mat[1]) if enc_mat else W
            left = enc_w // 2 - lim[2] + (W - enc_w) // 2
            right = left + lim[1] + 1
            if 0 <= left < right <= W:
                encoded_cols = np.zeros(W, bool)
                encoded_cols[left:right] = True
                attrs["encoded_from"] = "header encodingLimits"
        if encoded_cols is None and present.any() and not present.all():
            # No usable header: a contiguous block of non-zero columns is taken as zero-padded edges.
            nz = np.flatnonzero(present)
            if nz[-1] - nz[0] + 1 == nz.size:
                encoded_cols = np.zeros(W, bool)
                encoded_cols[nz[0] : nz[-1] + 1] = True
                attrs["encoded_from"] = "zero columns"
        acquired_cols = mask if mask is not None else present
        if encoded_cols is not None and not encoded_cols.all():
            encoded = np.broadcast_to(encoded_cols[None], (H, W)).copy()
            covered = acquired_cols | ~encoded_cols
        else:
            encoded = None
            covered = acquired_cols
        acquired = None if covered.all() and mask is None else np.broadcast_to(acquired_cols[None], (H, W)).copy()
        if mask is not None:
            for key in ("acceleration", "num_low_frequency"):
                if key in attrs:
                    header[key] = attrs[key]
        if "acquisition" in attrs:
            header.setdefault("acquisition", attrs["acquisition"])

        def load_slice(i: int) -> np.ndarray:
            with open_hdf5(path) as fh:
                k = _read(path, hdf5.get(fh, "kspace", path), i, f"'kspace' slice {i}")
            return k if multicoil else k[None]

        load_reference = None
        if ref_name:
            def load_reference(i: int) -> np.ndarray:
                with open_hdf5(path) as fh:
                    r = _read(path, hdf5.get(fh, ref_name, path), i, f"'{ref_name}' slice {i}")
                if r.shape != recon_shape:
                    r = center_crop(r, (min(recon_shape[0], r.shape[-2]), min(recon_shape[1], r.shape[-1])))
                return r.astype(np.float32)

        return Scan(
            path=path,
            format="fastmri",
            n_slices=int(S),
            n_coils=int(C),
            kspace_shape=(int(C), int(H), int(W)),
            load_slice=load_slice,
            grid_shape=grid,
            recon_shape=recon_shape,
            acquired_mask=acquired,
            encoded_mask=encoded,
            load_reference=load_reference,
            reference_kind=None if ref_name is None else ref_name.removeprefix("reconstruction_"),
            header=header,
            header_xml=xml,
            attrs=attrs,
        )

    @staticmethod
    def _reference_name(path: str, f: h5py.File, multicoil: bool, choice: str | None) -> str | None:
        if choice is not None:
            name = f"reconstruction_{str(choice).lower()}"
            if hdf5.get(f, name, path) is None:
                raise ScanError(path, f"option reference={choice!r}: the file has no '{name}'")
            return name
        order = ("reconstruction_rss", "reconstruction_esc") if multicoil else ("reconstruction_esc",
                                                                                  "reconstruction_rss")
        return next((n for n in order if isinstance(hdf5.get(f, n, path), h5py.Dataset)), None)


register_reader(FastMriReader())
