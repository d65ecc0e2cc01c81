"""Asymmetric (partial) echoes: the symmetric, fully sampled part of the readout.

Many protocols sample the readout asymmetrically (the 7 T phantom: 428 of 512 samples, the echo at sample 172).
The readers put the echo at the grid centre (``H // 2``) and mark the samples that were never acquired, whole
readout rows at one end of the grid, in ``acquired_mask``; such a scan is not fully sampled, so a retrospective
experiment on it has no reference image to be scored against. :func:`symmetric_echo` (``open_scan``'s option
``symmetric_echo=true``, for every Cartesian format) keeps the band of readout rows acquired on both sides of the
echo, the largest even band centred on it: the same field of view at the readout resolution of the acquired short
side, fully sampled where every line was measured, with its own reference (the RSS of its coil images).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench.errors import ScanError
from workbench.scan import Scan

__all__ = ["symmetric_echo", "symmetric_rows"]


def symmetric_rows(acquired_mask: np.ndarray | None, height: int) -> tuple[int, int] | None:
    """``(first, stop)``: the readout rows of the largest even band centred on the echo row ``height // 2`` (its
    row ``(stop - first) // 2``, the FFT's centre) in which every row holds samples, when the samples that were
    not acquired are whole readout rows at one end of the grid and every measured line holds all the others (an
    asymmetric echo); None when every row holds samples or the gaps are of another kind (rows missing beside
    the echo or at both ends, a 2D pattern such as a Poisson disc)."""
    if acquired_mask is None:
        return None
    mask = np.asarray(acquired_mask, dtype=bool)
    held = mask.any(axis=1)
    if held.all() or not held.any():
        return None
    rows = np.flatnonzero(held)
    first, stop = int(rows[0]), int(rows[-1]) + 1
    centre = height // 2
    if not held[first:stop].all() or not first <= centre < stop or (first > 0 and stop < height):
        # rows missing in the middle, at both ends (e.g. the rows two half echoes share), or the echo outside what
        # was acquired: an asymmetric echo misses one block at one end, the echo and the far side acquired
        return None
    if not mask[first:stop][:, mask.any(axis=0)].all():
        return None  # a measured line is not a whole readout of those rows: a 2D pattern (Poisson disc, ...)
    half = min(centre - first, stop - centre)
    return (centre - half, centre + half) if half >= 2 else None


def symmetric_echo(scan: Scan) -> Scan:
    """``scan`` with its readout cut to :func:`symmetric_rows` (module docstring). ``recon_shape``'s readout
    shrinks in proportion (the oversampling factor kept); a stored reference image, made at the full readout
    resolution, is dropped; ``attrs["symmetric_echo"]`` and a note say what was cut. A fully acquired readout
    is returned as it is (with a note); a non-Cartesian scan, or one whose missing samples are not an asymmetric
    echo, is refused with a ``ScanError`` naming the file."""
    path = scan.path
    if not scan.is_cartesian:
        raise ScanError(path, "symmetric_echo: the scan is non-Cartesian; the option cuts a Cartesian readout")
    height, width = (int(n) for n in scan.grid_shape)
    band = symmetric_rows(scan.acquired_mask, height)
    if band is None:
        held = None if scan.acquired_mask is None else np.asarray(scan.acquired_mask, dtype=bool).any(axis=1)
        if held is None or held.all():
            return scan.with_note("symmetric_echo: every readout sample was acquired; nothing cut")
        raise ScanError(path, "symmetric_echo: the samples that were not acquired are not an asymmetric echo "
                              f"(readout rows without samples: {int((~held).sum())} of {height}; an asymmetric "
                              "echo misses one block at an end of the readout and keeps at least 2 rows on each "
                              f"side of the echo at row {height // 2})")
    first, stop = band
    kept = stop - first
    recon_h = max(1, min(kept, int(round(scan.recon_shape[0] * kept / height))))
    load = scan.load_slice

    def load_slice(i: int) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(load(i))[..., first:stop, :])

    acquired = np.asarray(scan.acquired_mask, dtype=bool)[first:stop]
    encoded = None if scan.encoded_mask is None else np.asarray(scan.encoded_mask, dtype=bool)[first:stop]
    note = (f"symmetric_echo: readout rows {first}..{stop - 1} kept ({kept} of {height}, the band centred on the "
            f"echo), image {recon_h}x{scan.recon_shape[1]}")
    if scan.load_reference is not None:
        note += "; the file's reference image (full readout resolution) is not used"
    cut = dataclasses.replace(
        scan, kspace_shape=(scan.kspace_shape[0], kept, width), load_slice=load_slice, grid_shape=(kept, width),
        recon_shape=(recon_h, scan.recon_shape[1]), acquired_mask=None if acquired.all() else acquired,
        encoded_mask=encoded, load_reference=None, reference_kind=None,
        pixel_aspect=scan.pixel_aspect * height / kept,  # the same field of view in fewer readout pixels
        # the file's volume maximum ("max", fastMRI's data range) is that of the full-resolution images
        attrs={**{k: v for k, v in scan.attrs.items() if k != "max"},
               "symmetric_echo": {"rows": [first, stop], "grid_before": [height, width]}})
    return cut.with_note(note)
