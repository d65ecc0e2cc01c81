"""The Scan: what was acquired, independent of the file format it came from.

A reader (``workbench.io``) builds a Scan; nothing downstream knows the format. k-space is read lazily, one
slice at a time, so a 35-slice 16-coil fastMRI volume is never loaded whole to show one slice.

Shapes (per slice, see DESIGN.md):
- Cartesian: k-space ``[C, H, W]`` complex64, the k-space centre at index (H//2, W//2). As in fastMRI, the
  readout (frequency encoding, never undersampled) runs along H and the phase encode along W, so 1D line masks
  select columns; readers orient the data that way where the file says which axis is the readout. 2D
  (3D-acquisition) slices have phase encodes on both axes and take 2D masks.
- Non-Cartesian: k-space ``[C, K]`` with ``trajectory`` ``[2, K]`` in radians in [-pi, pi) for the grid
  ``grid_shape``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # torch is imported when a tensor is asked for: `workbench info` never needs it
    import torch

from workbench.errors import CorruptFileError, InvalidDataError, TooLargeError, WorkbenchError


def read_guarded(path: str | None, what: str, read: Callable[[], Any]) -> Any:
    """``read()`` with any failure but a WorkbenchError turned into a typed error naming the file and ``what``
    (a damaged file fails deep inside h5py, scipy, zipfile or numpy with their own exception types)."""
    try:
        return read()
    except WorkbenchError:
        raise
    except MemoryError as exc:
        raise TooLargeError(path, f"{what}: out of memory") from exc
    except Exception as exc:  # noqa: BLE001  (the cause stays chained for debugging)
        raise CorruptFileError(path, f"{what} cannot be read; damaged? ({type(exc).__name__}: {exc})") from exc


@dataclass
class Scan:
    """One raw scan (one file or one dataset within it).

    Attributes:
        path: the file it came from (None for in-memory scans).
        format: a short name of the reader ("fastmri", "ismrmrd", "bart", "mat", "npy", "twix", ...).
        n_slices: number of 2D slices.
        n_coils: number of receive coils.
        kspace_shape: per-slice k-space shape, ``(C, H, W)`` Cartesian or ``(C, K)`` non-Cartesian.
        load_slice: callable ``i -> np.ndarray`` complex64 of shape ``kspace_shape``; reads only that slice.
        grid_shape: the Cartesian grid ``(H, W)`` on which images are formed (for non-Cartesian: the NUFFT grid).
        recon_shape: the image size users look at and metrics are computed on: readout oversampling removed,
            fastMRI's reference crop (e.g. 320x320). Images on ``grid_shape`` are centre-cropped to it.
        trajectory: ``[2, K]`` float32 radians for non-Cartesian scans, else None.
        dcf: optional stored density compensation ``[K]``.
        acquired_mask: ``[H, W]`` bool of the Cartesian samples present in the file (None = all present).
        encoded_mask: ``[H, W]`` bool of the part of the grid the protocol encodes at all (zero-padded
            phase-encode edges excluded); used so that padding does not count as undersampling.
        load_reference: callable ``i -> np.ndarray`` float32 ``recon_shape`` of a stored reference image
            (fastMRI ``reconstruction_rss``/``_esc``, BART ``img``), or None.
        reference_kind: "rss", "esc", "sense", ... describing the stored reference.
        header: flat dict of header highlights for display (field strength, TE, TR, FOV, ...).
        header_xml: the raw ISMRMRD XML header when the file has one.
        attrs: format-specific attributes (fastMRI file attrs, MATLAB variable names, ...).
        pixel_aspect: height / width of an image pixel of ``recon_shape`` (1: square; an asymmetric echo's
            band, :mod:`workbench.io.readout`, keeps the field of view with fewer readout pixels). Views draw
            pixels this tall; metrics do not use it.
    """

    path: str | None
    format: str
    n_slices: int
    n_coils: int
    kspace_shape: tuple[int, ...]
    load_slice: Callable[[int], np.ndarray]
    grid_shape: tuple[int, int]
    recon_shape: tuple[int, int]
    trajectory: np.ndarray | None = None
    dcf: np.ndarray | None = None
    acquired_mask: np.ndarray | None = None
    encoded_mask: np.ndarray | None = None
    load_reference: Callable[[int], np.ndarray] | None = None
    reference_kind: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    header_xml: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    pixel_aspect: float = 1.0
    # readers keep one open file handle (h5py, seek + read): reads from several threads (the slices of a volume
    # run, a job's data preparation beside the app's viewer) take turns
    _read_lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)

    # ---------------------------------------------------------------------------------------------------
    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    @property
    def name(self) -> str:
        return os.path.basename(self.path) if self.path else "<memory>"

    @property
    def sampled_fraction(self) -> float:
        """Fraction of the encoded Cartesian grid present in the file (1.0 = fully sampled)."""
        if not self.is_cartesian:
            return float("nan")
        if self.acquired_mask is None:
            return 1.0
        enc = self.encoded_mask if self.encoded_mask is not None else np.ones_like(self.acquired_mask)
        return float((self.acquired_mask & enc).sum() / max(enc.sum(), 1))

    @property
    def fully_sampled(self) -> bool:
        return self.is_cartesian and self.sampled_fraction >= 0.999

    def kspace(self, index: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
        """k-space of one slice as complex64 tensor, ``kspace_shape``; raises InvalidDataError on NaN/Inf."""
        if not 0 <= index < self.n_slices:
            raise IndexError(f"{self.name}: slice {index} out of range (0..{self.n_slices - 1})")
        with self._read_lock:
            k = np.asarray(read_guarded(self.path, f"slice {index} k-space", lambda: self.load_slice(index)))
        if k.shape != tuple(self.kspace_shape):
            raise InvalidDataError(self.path, f"slice {index} has shape {k.shape}, expected {self.kspace_shape}")
        if not np.isfinite(k).all():
            bad = int((~np.isfinite(k)).sum())
            raise InvalidDataError(self.path, f"slice {index} k-space has {bad} NaN/Inf values")
        import torch

        return torch.from_numpy(np.ascontiguousarray(k, dtype=np.complex64)).to(device)

    def reference(self, index: int = 0) -> np.ndarray | None:
        """The stored reference image of a slice (float32, ``recon_shape``), or None."""
        if self.load_reference is None:
            return None
        load = self.load_reference
        with self._read_lock:
            ref = np.asarray(read_guarded(self.path, f"slice {index} reference image", lambda: load(index)),
                             dtype=np.float32)
        if not np.isfinite(ref).all():
            # a NaN/Inf reference would make every data range and metric NaN
            raise InvalidDataError(self.path, f"slice {index} reference image has "
                                              f"{int((~np.isfinite(ref)).sum())} NaN/Inf values")
        return ref

    def with_note(self, note: str) -> Scan:
        """A copy with ``note`` appended to ``header["note"]`` (what ``workbench info`` and the app show) and to
        ``attrs["notes"]``."""
        header = dict(self.header)
        header["note"] = f"{header['note']}; {note}" if header.get("note") else note
        attrs = {**self.attrs, "notes": [*self.attrs.get("notes", []), note]}
        return replace(self, header=header, attrs=attrs)

    def no_reference_reason(self) -> str | None:
        """Why this scan has no reference image to score against (None when it has one: a stored reference, or a
        fully sampled Cartesian grid), with what the user can do instead."""
        if self.load_reference is not None or self.fully_sampled:
            return None
        validate = "--validate (the app: Validate) scores a run by held-out samples instead"
        if not self.is_cartesian:
            return f"non-Cartesian data has no fully sampled reference; {validate}"
        text = f"{100 * self.sampled_fraction:.1f} % of the grid was acquired, not all of it"
        from workbench.io.readout import symmetric_rows

        band = symmetric_rows(self.acquired_mask, int(self.grid_shape[0]))
        if band is not None:
            text += (f"; the rest is an asymmetric echo: the option symmetric_echo=true keeps the {band[1] - band[0]} "
                     "readout rows around the echo, fully sampled where every line is, with their own reference")
        return f"{text}; {validate}"

    def trajectory_tensor(self, device: str | torch.device = "cpu") -> torch.Tensor | None:
        if self.trajectory is None:
            return None
        import torch

        return torch.as_tensor(self.trajectory, dtype=torch.float32, device=device)

    def summary(self) -> dict[str, Any]:
        """What `workbench info` prints: format, geometry, sampling and header highlights."""
        d: dict[str, Any] = {
            "file": self.path,
            "format": self.format,
            "slices": self.n_slices,
            "coils": self.n_coils,
            "kspace_shape": list(self.kspace_shape),
            "grid": list(self.grid_shape),
            "recon_shape": list(self.recon_shape),
            "trajectory": self.attrs.get("trajectory_kind", "cartesian" if self.is_cartesian else "non-cartesian"),
        }
        if self.is_cartesian:
            d["sampled_fraction"] = round(self.sampled_fraction, 4)
            d["fully_sampled"] = self.fully_sampled
        else:
            d["samples_per_coil"] = int(self.kspace_shape[-1])
        d["reference"] = self.reference_kind
        why = self.no_reference_reason() if self.is_cartesian else None
        if why is not None:  # an undersampled Cartesian scan: why, and what to do
            d["no_reference"] = why
        d.update({k: v for k, v in self.header.items()})
        return d


def scan_from_arrays(
    kspace: np.ndarray,
    *,
    trajectory: np.ndarray | None = None,
    grid_shape: tuple[int, int] | None = None,
    recon_shape: tuple[int, int] | None = None,
    reference: np.ndarray | None = None,
    path: str | None = None,
    format: str = "memory",
    **kw: Any,
) -> Scan:
    """An in-memory Scan from k-space ``[S, C, H, W]``/``[C, H, W]`` (Cartesian) or ``[S, C, K]``/``[C, K]``
    with ``trajectory`` ``[2, K]`` (radians). Used by readers of small files, tests and the simulator."""
    k = np.asarray(kspace)
    cart = trajectory is None
    if k.ndim == (3 if cart else 2):
        k = k[None]
    if k.ndim != (4 if cart else 3):
        raise InvalidDataError(path, f"k-space has shape {k.shape}; expected [slices, coils, H, W]" if cart
                               else f"k-space has shape {k.shape}; expected [slices, coils, samples]")
    k = k.astype(np.complex64, copy=False)
    if cart:
        grid = tuple(k.shape[-2:])
    else:
        if grid_shape is None:
            raise ValueError("grid_shape is required for non-Cartesian k-space")
        grid = tuple(grid_shape)
        traj = np.asarray(trajectory, dtype=np.float32)
        if traj.shape != (2, k.shape[-1]):
            raise InvalidDataError(path, f"trajectory has shape {traj.shape}, expected (2, {k.shape[-1]})")
        trajectory = traj
    ref = None if reference is None else np.asarray(reference, dtype=np.float32)
    if ref is not None and ref.ndim == 2:
        ref = ref[None]
    rshape = tuple(recon_shape) if recon_shape is not None else (tuple(ref.shape[-2:]) if ref is not None else grid)
    acquired = kw.pop("acquired_mask", None)
    if cart and acquired is None:
        nz = np.abs(k).sum(axis=(0, 1)) > 0
        acquired = None if nz.all() else nz
    return Scan(
        path=path,
        format=format,
        n_slices=k.shape[0],
        n_coils=k.shape[1],
        kspace_shape=tuple(k.shape[1:]),
        load_slice=lambda i: k[i],
        grid_shape=grid,  # type: ignore[arg-type]
        recon_shape=rshape,  # type: ignore[arg-type]
        trajectory=trajectory,
        acquired_mask=acquired,
        load_reference=None if ref is None else (lambda i: ref[i]),
        **kw,
    )
