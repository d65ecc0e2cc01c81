"""What the networks take: a :class:`Batch` of measured slices and its encoding operator.

The unrolled network is written once against the small :class:`Encoding` interface; the operator decides what
"data consistency" means:

- :class:`CartesianEncoding` (XPDNet): masked multi-coil Cartesian SENSE, ``A = M F S``; the residual term is
  ``A^H (A x - y) = A^H A x - A^H y`` with the library's :class:`~workbench.physics.sense.CartesianSense` normal.
- :class:`NonCartesianEncoding` (NC-PDNet): NUFFT SENSE with density compensation ``D``; the residual term is
  ``A^H D (A x - y) = (A^H D A) x - A^H D y``, the first part by the Toeplitz-embedded weighted normal of
  :class:`~workbench.physics.nufft.NufftSense` (one FFT pair on the 2x grid per coil, no interpolation).

Both give the per-coil zero-filled (density compensated) images ``[B, C, H, W]``, the initial coil maps from the
k-space centre (ACS / trajectory centre, :mod:`workbench.physics.coils`) and ``normal(x, maps)``.

Shapes: Cartesian ``kspace [B, C, H, W]`` (zeros where not sampled) with ``mask [B, H, W]`` bool; non-Cartesian
``kspace [B, C, K]`` with one ``trajectory [2, K]`` (radians) and ``dcf [K]`` for the whole batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from workbench.arrays import LRUCache
from workbench.errors import SamplingError
from workbench.physics.coils import (acs_maps_from_calibration, calibration_from_noncartesian, calibration_region,
                                     estimate_espirit_maps)
from workbench.physics.fft import fft2c, ifft2c

__all__ = [
    "ACS_THRESHOLD",
    "MAPS_METHODS",
    "Batch",
    "CartesianEncoding",
    "Encoding",
    "NonCartesianEncoding",
    "collate",
]

# Default: maps are zero where the low-resolution coil energy is below this fraction of its 99th percentile.
ACS_THRESHOLD = 0.05
# How a network's initial coil maps are made (Cartesian): "acs" = low-resolution ACS coil images over their RSS;
# "espirit" = the maps given with the batch (the problem's own, which the classical methods use) or ESPIRiT.
MAPS_METHODS = ("acs", "espirit")


class Encoding:
    """The operator interface of the unrolled network (see the module docstring)."""

    grid_shape: tuple[int, int]

    def coil_images(self) -> torch.Tensor:
        """Zero-filled per-coil images ``[B, C, H, W]`` (``F^H M y``, or ``F_nu^H D y``)."""
        raise NotImplementedError

    def initial_maps(self) -> torch.Tensor:
        """Coil maps ``[B, C, H, W]`` from the k-space centre, ``sum_c |S_c|^2 = 1`` inside the object."""
        raise NotImplementedError

    def normal(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (non-Cartesian: ``A^H D A x``) for images ``[B, H, W]`` and maps ``[B, C, H, W]``."""
        raise NotImplementedError

    def consistent_coil_images(self, coils: torch.Tensor) -> torch.Tensor | None:
        """Coil images ``[B, C, H, W]`` whose k-space is the measured data wherever it was measured and that of
        ``coils`` elsewhere (the projection onto the data), or ``None`` where the operator has no such
        projection (non-Cartesian samples are off the grid)."""
        return None


class CartesianEncoding(Encoding):
    """``maps_method`` "acs": initial maps from the ACS box (``acs_calib``, ``acs_threshold``); "espirit":
    ``given_maps`` ``[B, C, H, W]`` when not None, else ESPIRiT from each slice's calibration region. On small
    matrices and narrow ACS regions ESPIRiT's maps are far better conditioned than the low-resolution ACS maps
    (a 96x96 real 8-coil head at 4x: SENSE with them 32.4 dB against 28.2 dB)."""

    def __init__(self, kspace: torch.Tensor, mask: torch.Tensor, acs_calib: Sequence[int] = (24, 24),
                 acs_threshold: float = ACS_THRESHOLD, maps_method: str = "acs",
                 given_maps: torch.Tensor | None = None):
        if maps_method not in MAPS_METHODS:
            raise ValueError(f"maps_method must be one of {MAPS_METHODS}, got {maps_method!r}")
        self.kspace = kspace
        self.mask = mask
        self.grid_shape = tuple(int(s) for s in kspace.shape[-2:])
        self.acs_calib = tuple(int(v) for v in acs_calib)
        self.acs_threshold = float(acs_threshold)
        self.maps_method = maps_method
        self.given_maps = given_maps
        self._coil_images: torch.Tensor | None = None
        self._maps: torch.Tensor | None = None
        self._line_form: tuple[int, torch.Tensor] | None | bool = False  # False: not looked at yet
        self._line_op: tuple[torch.Tensor, Any] | None = None  # (maps, CartesianLineSense of them)

    def coil_images(self) -> torch.Tensor:
        if self._coil_images is None:
            self._coil_images = ifft2c(self.kspace * self.mask[:, None])
        return self._coil_images

    def initial_maps(self) -> torch.Tensor:
        if self._maps is None:
            # one coil: the ACS "map" is the image phase, which given (all-ones) maps would drop
            if self.maps_method == "espirit" and self.given_maps is not None and self.kspace.shape[1] > 1:
                self._maps = self.given_maps
            else:
                self._maps = torch.stack([self._slice_maps(k, m) for k, m in zip(self.kspace, self.mask)])
        return self._maps

    def _slice_maps(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.maps_method == "espirit" and kspace.shape[0] > 1:
            try:
                return estimate_espirit_maps(kspace * mask, calib=self.acs_calib)
            except SamplingError:  # a calibration box too small for ESPIRiT's kernel (4 lines at 8x on 96^2)
                pass
        rows, cols = calibration_region(mask, self.acs_calib, min_shape=(2, 2))
        return acs_maps_from_calibration(kspace[:, rows, cols], self.grid_shape, threshold=self.acs_threshold)

    def normal(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        from workbench.physics.sense import CartesianLineSense, CartesianSense

        lines = self._lines()
        if lines is None:
            return CartesianSense(maps, self.mask, grid_shape=self.grid_shape).normal(x)
        # the same normal operator with 1D FFTs, built once per maps tensor (building checks the maps: on 16 coils
        # at 320x320 that cost more than the operator)
        if self._line_op is None or self._line_op[0] is not maps:
            self._line_op = (maps, CartesianLineSense(maps, lines[1], lines[0], self.grid_shape))
        return self._line_op[1].normal(x)

    def _lines(self) -> tuple[int, torch.Tensor] | None:
        """``(axis, sampled lines)`` when every item's mask is the same line mask, else None (cached)."""
        if self._line_form is False:
            from workbench.physics.sense import line_axis

            first = self.mask[0]
            axis = line_axis(first) if bool((self.mask == first).all()) else None
            self._line_form = None if axis is None else (
                axis, torch.nonzero(first.any(dim=-2 if axis == -1 else -1)).reshape(-1))
        return self._line_form

    def consistent_coil_images(self, coils: torch.Tensor) -> torch.Tensor:
        return ifft2c(torch.where(self.mask[:, None], self.kspace, fft2c(coils)))


# NUFFT operators (interpolation matrices, Toeplitz kernels) are costly to build: one per trajectory, reused.
_NUFFT_CACHE: LRUCache[str, Any] = LRUCache(8)


def _nufft_for(trajectory: torch.Tensor, dcf: torch.Tensor | None, grid_shape: tuple[int, int]):
    from workbench.physics.nufft import NufftSense

    h = hashlib.sha1(trajectory.detach().cpu().numpy().tobytes())
    if dcf is not None:
        h.update(dcf.detach().cpu().numpy().tobytes())
    key = f"{h.hexdigest()}-{grid_shape}-{trajectory.device}"
    return _NUFFT_CACHE.get_or_create(key, lambda: NufftSense(None, trajectory, grid_shape, dcf=dcf, toeplitz=True))


class NonCartesianEncoding(Encoding):
    def __init__(self, kspace: torch.Tensor, trajectory: torch.Tensor, dcf: torch.Tensor | None,
                 grid_shape: Sequence[int], acs_calib: Sequence[int] = (24, 24), acs_threshold: float = ACS_THRESHOLD):
        self.kspace = kspace
        self.trajectory = trajectory
        self.dcf = dcf
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.acs_calib = tuple(int(v) for v in acs_calib)
        self.acs_threshold = float(acs_threshold)
        self.op = _nufft_for(trajectory, dcf, self.grid_shape)
        self._coil_images: torch.Tensor | None = None
        self._maps: torch.Tensor | None = None
        self._op_with_maps: tuple[torch.Tensor, Any] | None = None  # (maps, self.op with them)

    def coil_images(self) -> torch.Tensor:
        if self._coil_images is None:
            base = self.op.with_maps(torch.ones(self.kspace.shape[1], *self.grid_shape, dtype=torch.complex64,
                                                device=self.kspace.device))
            self._coil_images = base.coil_images(self.kspace, density_compensate=True)
        return self._coil_images

    def initial_maps(self) -> torch.Tensor:
        if self._maps is None:
            out = []
            for k in self.kspace:
                cal = calibration_from_noncartesian(k, self.trajectory, self.grid_shape, dcf=self.dcf,
                                                    calib=self.acs_calib)
                out.append(acs_maps_from_calibration(cal, self.grid_shape, threshold=self.acs_threshold))
            self._maps = torch.stack(out)
        return self._maps

    def normal(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        # one operator per maps tensor (with_maps checks the maps: as costly as an FFT per coil)
        if self._op_with_maps is None or self._op_with_maps[0] is not maps:
            self._op_with_maps = (maps, self.op.with_maps(maps))
        return self._op_with_maps[1].weighted_normal(x)


@dataclass
class Batch:
    """Measured slices of one shape (and, non-Cartesian, one trajectory), with their targets for training.

    Attributes:
        kspace: complex64 ``[B, C, H, W]`` (Cartesian, zeros where not sampled) or ``[B, C, K]``.
        grid_shape: image grid ``(H, W)``; recon_shape: ``(h, w)`` of the targets and of the output.
        mask: bool ``[B, H, W]`` (Cartesian) or None.
        trajectory: float32 ``[2, K]`` radians, dcf: float32 ``[K]`` (non-Cartesian) or None.
        target: float32 ``[B, h, w]`` magnitude reference (training / validation), or None.
        maps: complex64 ``[B, C, H, W]`` coil maps given with the data (the problem's own), or None; used by
            Cartesian networks whose initial maps are "espirit".
        data_range: float32 ``[B]`` PSNR/SSIM data range of each target (the volume maximum when known).
        meta: one dict per item (seeds, sampling, coil count, source file ...).
    """

    kspace: torch.Tensor
    grid_shape: tuple[int, int]
    recon_shape: tuple[int, int]
    mask: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    dcf: torch.Tensor | None = None
    target: torch.Tensor | None = None
    data_range: torch.Tensor | None = None
    meta: list[dict] = field(default_factory=list)
    maps: torch.Tensor | None = None

    def __post_init__(self):
        self.grid_shape = tuple(int(s) for s in self.grid_shape)
        self.recon_shape = tuple(int(s) for s in self.recon_shape)
        if self.trajectory is None:
            if self.kspace.dim() != 4:
                raise SamplingError(f"Cartesian batch k-space must be [B, C, H, W], got {tuple(self.kspace.shape)}")
            if self.mask is None:
                raise SamplingError("a Cartesian batch needs its sampling masks")
            if self.mask.dim() == 2:
                self.mask = self.mask.expand(self.kspace.shape[0], *self.mask.shape)
        elif self.kspace.dim() != 3:
            raise SamplingError(f"non-Cartesian batch k-space must be [B, C, K], got {tuple(self.kspace.shape)}")
        self._encodings: dict = {}

    @property
    def size(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    def to(self, device) -> "Batch":
        def mv(t):
            return None if t is None else t.to(device)

        return replace(self, kspace=mv(self.kspace), mask=mv(self.mask), trajectory=mv(self.trajectory),
                       dcf=mv(self.dcf), target=mv(self.target), data_range=mv(self.data_range),
                       maps=mv(self.maps))

    def encoding(self, acs_calib: Sequence[int] = (24, 24), acs_threshold: float = ACS_THRESHOLD,
                 maps_method: str = "acs") -> Encoding:
        """The batch's operator (cached per calibration setting: coil images and maps are computed once).
        ``maps_method`` (:data:`MAPS_METHODS`) applies to Cartesian batches."""
        calib = tuple(int(v) for v in acs_calib)
        key = (calib, float(acs_threshold), maps_method)
        enc = self._encodings.get(key)
        if enc is None:
            if self.is_cartesian:
                enc = CartesianEncoding(self.kspace, self.mask, calib, acs_threshold, maps_method, self.maps)
            else:
                enc = NonCartesianEncoding(self.kspace, self.trajectory, self.dcf, self.grid_shape, calib, acs_threshold)
            self._encodings[key] = enc
        return enc

    @classmethod
    def from_problem(cls, problem, with_maps: bool = False) -> "Batch":
        """A batch of one slice from a :class:`workbench.problem.Problem` (its data, mask or trajectory + dcf);
        ``with_maps``: with the problem's coil maps (Cartesian; estimated now when the problem has none)."""
        y = problem.y[None]
        if problem.is_cartesian:
            maps = None
            if with_maps:
                try:
                    maps = problem.maps[None]
                except SamplingError:  # no ACS box ESPIRiT can use: the encoding falls back to ACS maps
                    pass
            return cls(y, problem.grid_shape, problem.recon_shape, mask=problem.mask[None], maps=maps)
        return cls(y, problem.grid_shape, problem.recon_shape, trajectory=problem.trajectory, dcf=problem.dcf)


def collate(items: Sequence[dict]) -> list[Batch]:
    """Group training items (dicts with ``kspace [C, ...]``, ``mask``/``trajectory``/``dcf``, ``grid_shape``,
    ``recon_shape``, ``target``, ``data_range``, ``meta``) into batches of equal shapes and sampling."""
    groups: dict[tuple, list[dict]] = {}
    for it in items:
        traj = it.get("trajectory")
        key = (tuple(it["kspace"].shape), tuple(it["grid_shape"]), tuple(it["recon_shape"]),
               None if traj is None else id(traj))
        groups.setdefault(key, []).append(it)
    batches = []
    for group in groups.values():
        first = group[0]
        batches.append(Batch(
            kspace=torch.stack([g["kspace"] for g in group]),
            grid_shape=first["grid_shape"],
            recon_shape=first["recon_shape"],
            mask=None if first.get("mask") is None else torch.stack([g["mask"] for g in group]),
            trajectory=first.get("trajectory"),
            dcf=first.get("dcf"),
            target=None if first.get("target") is None else torch.stack([g["target"] for g in group]),
            data_range=torch.tensor([float(g.get("data_range", g["target"].max())) for g in group]),
            meta=[g.get("meta", {}) for g in group],
        ))
    return batches
