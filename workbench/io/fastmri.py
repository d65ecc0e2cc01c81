"""fastMRI HDF5 files (single- and multi-coil, knee and brain).

Layout written and read (as in the fastMRI data release):
- ``kspace``: ``[S, C, H, W]`` complex64 (multi-coil) or ``[S, H, W]`` (single-coil); H = readout with 2x
  oversampling (e.g. 640), W = phase encode (e.g. 368, zero-padded edges allowed).
- ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil): ``[S, h, w]`` float32, the
  magnitude image cropped to ``(h, w)`` (320x320 for knee).
- ``ismrmrd_header``: ISMRMRD XML as bytes.
- ``mask``: ``[W]`` (test/challenge files only), with attrs ``acceleration`` and ``num_low_frequency``.
- file attrs: ``acquisition``, ``max``, ``norm``, ``patient_id``.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np


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
    with h5py.File(path, "w") as f:
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
