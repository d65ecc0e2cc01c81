"""The Problem: everything a reconstruction method needs, derived once from a scan and a sampling.

A method never re-derives these; it asks the Problem::

    problem = Problem.from_scan(scan, slice_index=10, sampling=make_sampling("random", scan.grid_shape, 4))
    A, y = problem.A, problem.y                # CartesianSense / NufftSense (Toeplitz normal), data
    x0 = problem.zero_filled()                 # [H, W] complex, SENSE-combined (dcf-weighted if non-Cartesian)
    x = solve(A, y) ; image = problem.crop(x)  # recon_shape, comparable with problem.reference

Shapes: Cartesian ``y`` ``[C, H, W]`` (zeros where not sampled) with ``mask`` bool ``[H, W]``; non-Cartesian
``y`` ``[C, K]`` with ``trajectory`` ``[2, K]`` radians and ``dcf`` ``[K]``. Images live on ``grid_shape``;
``recon_shape`` is what users look at and metrics use (``crop``, and ``data_range``: the PSNR/SSIM data range of
:func:`workbench.scoring.volume_data_range`). Data stay in scanner units; ``scale`` (the 99th percentile of the
zero-filled magnitude) is there for methods that normalise.

The Problem owns the density compensation of non-Cartesian data: :func:`acquired_dcf` gives the weights of a
scan's own trajectory (computed once per scan, method and device), which ``from_scan`` and the app both use.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any, Sequence

import numpy as np
import torch

from workbench.arrays import LRUCache
from workbench.errors import InvalidDataError, SamplingError, WorkbenchError
from workbench.physics.fft import center_crop, ifft2c, rss

MAPS_METHODS = ("espirit", "acs")


def _shape2(v, what: str) -> tuple[int, int]:
    try:
        a, b = (int(s) for s in v)
    except (TypeError, ValueError):
        raise WorkbenchError(f"{what} must be a pair of ints, got {v!r}") from None
    return a, b


class Problem:
    """Measured data, forward operator and what goes with them, for one 2D slice.

    Args:
        y: Cartesian k-space ``[C, H, W]`` (``[H, W]`` = one coil), zeros where not sampled; or non-Cartesian
            ``[C, K]`` (``[K]`` = one coil) with ``trajectory``.
        grid_shape: image grid ``(H, W)`` (Cartesian: from ``y``; required for non-Cartesian).
        recon_shape: displayed / evaluated image size (default ``grid_shape``).
        mask: Cartesian sampling mask, bool ``[H, W]`` or ``[W]``; default: where ``y`` is non-zero.
        trajectory: ``[2, K]`` radians in [-pi, pi) for non-Cartesian data.
        dcf: density compensation ``[K]`` (units of one Cartesian k-space cell).
        maps: coil sensitivities ``[C, H, W]``; estimated on first use when omitted.
        reference: magnitude reference image on ``recon_shape`` (float32), or None.
        data_range: the PSNR/SSIM data range of ``reference`` (default: its maximum; ``from_scan`` applies the
            fastMRI rule of :func:`workbench.scoring.volume_data_range`).
        device: where the tensors live and methods compute.
        maps_method: "espirit" (default) or "acs": how maps are estimated when not given.
        calib: the largest calibration (ACS) region used for map estimation.
        sampling: the :class:`workbench.sampling.Sampling` the data were undersampled with (for display).
        provenance: where the data came from (scan file, slice, sampling parameters, maps method).
    """

    def __init__(
        self,
        y: torch.Tensor,
        grid_shape: Sequence[int] | None = None,
        recon_shape: Sequence[int] | None = None,
        *,
        mask=None,
        trajectory=None,
        dcf=None,
        maps=None,
        reference=None,
        data_range: float | None = None,
        device: str | torch.device = "cpu",
        maps_method: str = "espirit",
        calib: Sequence[int] = (24, 24),
        sampling: Any = None,
        provenance: dict | None = None,
    ):
        self.device = torch.device(device)
        y = torch.as_tensor(y).to(self.device, torch.complex64)
        if not torch.isfinite(torch.view_as_real(y)).all():
            raise InvalidDataError(None, "measured k-space contains NaN or Inf values")
        if maps_method not in MAPS_METHODS:
            raise WorkbenchError(f"unknown coil map method {maps_method!r}; choose one of {', '.join(MAPS_METHODS)}")
        self.maps_method = maps_method
        self.calib = _shape2(calib, "calib")
        self.sampling = sampling
        self.provenance = dict(provenance or {})

        if trajectory is None:  # Cartesian
            if y.dim() == 2:
                y = y[None]
            if y.dim() != 3:
                raise InvalidDataError(None, f"Cartesian k-space has shape {tuple(y.shape)}; expected [C, H, W]")
            grid = tuple(int(s) for s in y.shape[-2:])
            if grid_shape is not None and _shape2(grid_shape, "grid_shape") != grid:
                raise InvalidDataError(None, f"k-space is {grid[0]}x{grid[1]} but grid_shape is {tuple(grid_shape)}")
            from workbench.physics.sense import as_mask

            if mask is None:
                mask = y.abs().sum(0) > 0
            self.mask = as_mask(mask, grid, device=self.device).contiguous()
            if not bool(self.mask.any()):
                raise SamplingError("the sampling mask selects no k-space samples")
            self.trajectory = None
            self.dcf = None
            y = y * self.mask  # data outside the mask are not measurements
        else:
            from workbench.physics.nufft import _as_dcf, as_trajectory

            if grid_shape is None:
                raise WorkbenchError("non-Cartesian data need grid_shape")
            grid = _shape2(grid_shape, "grid_shape")
            if y.dim() == 1:
                y = y[None]
            if y.dim() != 2:
                raise InvalidDataError(None, f"non-Cartesian k-space has shape {tuple(y.shape)}; expected [C, K]")
            self.trajectory = as_trajectory(trajectory, device=self.device)
            if self.trajectory.shape[1] != y.shape[1]:
                raise SamplingError(f"trajectory has {self.trajectory.shape[1]} samples, the k-space has {y.shape[1]}")
            self.dcf = None if dcf is None else _as_dcf(dcf, y.shape[1], self.device)
            self.mask = None
        self.y = y.contiguous()
        self.grid_shape: tuple[int, int] = grid
        self.recon_shape: tuple[int, int] = grid if recon_shape is None else _shape2(recon_shape, "recon_shape")
        # A reference wider than the grid (e.g. fastMRI's 320 columns on a narrower k-space): no crop there.
        self.recon_shape = (min(self.recon_shape[0], grid[0]), min(self.recon_shape[1], grid[1]))
        self.reference = None if reference is None else torch.as_tensor(np.asarray(reference), dtype=torch.float32)
        if data_range is None and self.reference is not None:
            data_range = float(self.reference.max())
        self.data_range: float | None = None if data_range is None else float(data_range)
        if maps is not None:
            maps = self._check_maps(maps)
        self._maps = maps
        self._lock = threading.RLock()
        self._cache: dict[str, Any] = {}

    # --- basic facts ----------------------------------------------------------------------------------------
    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    @property
    def n_coils(self) -> int:
        return int(self.y.shape[0])

    @property
    def acceleration(self) -> float:
        """Effective R: grid points / measured samples (non-Cartesian: H*W / K)."""
        n = int(self.mask.sum()) if self.is_cartesian else int(self.y.shape[-1])
        return math.prod(self.grid_shape) / max(n, 1)

    def _check_maps(self, maps) -> torch.Tensor:
        m = torch.as_tensor(maps).to(self.device, torch.complex64)
        expected = (self.n_coils, *self.grid_shape)
        if tuple(m.shape) != expected:
            raise WorkbenchError(f"coil maps have shape {tuple(m.shape)}, expected {expected} (coils, grid)")
        if not torch.isfinite(torch.view_as_real(m)).all():
            raise WorkbenchError("coil maps contain NaN or Inf values")
        return m.contiguous()

    # --- coil maps (lazy, cached) ---------------------------------------------------------------------------
    @property
    def maps(self) -> torch.Tensor:
        """Coil sensitivities ``[C, H, W]`` (given, or estimated on first use with ``maps_method`` and cached);
        ones for single-coil data."""
        if self._maps is None:
            with self._lock:
                if self._maps is None:
                    self._maps = self.estimate_maps(self.maps_method)
        return self._maps

    @maps.setter
    def maps(self, value) -> None:
        with self._lock:
            self._maps = None if value is None else self._check_maps(value)
            self._cache.pop("A", None)
            self._cache.pop("zero_filled_sense", None)

    @property
    def has_maps(self) -> bool:
        """Whether maps are available without estimating them."""
        return self._maps is not None

    def estimate_maps(self, method: str = "espirit", **options) -> torch.Tensor:
        """Estimate coil maps from the data (not cached; the ``maps`` property caches ``maps_method``'s).

        ``options`` go to :func:`~workbench.physics.coils.estimate_espirit_maps` /
        :func:`~workbench.physics.coils.estimate_acs_maps` (non-Cartesian: their calibration counterparts).
        """
        if method not in MAPS_METHODS:
            raise WorkbenchError(f"unknown coil map method {method!r}; choose one of {', '.join(MAPS_METHODS)}")
        if self.n_coils == 1:
            return torch.ones(1, *self.grid_shape, dtype=torch.complex64, device=self.device)
        from workbench.physics import coils

        calib = options.pop("calib", self.calib)
        if self.is_cartesian:
            if method == "espirit":
                return coils.estimate_espirit_maps(self.y, calib=calib, **options)
            return coils.estimate_acs_maps(self.y, calib=calib, **options)
        return coils.maps_from_noncartesian(
            self.y, self.trajectory, self.grid_shape, dcf=self.dcf, calib=calib, method=method, **options
        )

    # --- forward operator -----------------------------------------------------------------------------------
    @property
    def A(self):
        """The forward operator: :class:`CartesianSense` (``M F S``) or :class:`NufftSense` (``F_nu S`` with a
        Toeplitz ``normal``; ``dc_adjoint`` / ``density_weighted`` use ``dcf``). Built once, cached."""
        op = self._cache.get("A")
        if op is None:
            with self._lock:
                op = self._cache.get("A")
                if op is None:
                    op = self._make_operator(self.maps)
                    self._cache["A"] = op
        return op

    def _make_operator(self, maps: torch.Tensor | None):
        if self.is_cartesian:
            from workbench.physics.sense import CartesianSense

            return CartesianSense(maps, self.mask, grid_shape=self.grid_shape)
        base = self._cache.get("nufft")  # the maps-free NUFFT: its kernels and matrices are shared
        if base is None:
            from workbench.physics.nufft import NufftSense

            base = NufftSense(None, self.trajectory, self.grid_shape, dcf=self.dcf, toeplitz=True)
            self._cache["nufft"] = base
        return base.with_maps(maps)

    # --- images ---------------------------------------------------------------------------------------------
    def coil_images(self) -> torch.Tensor:
        """Zero-filled coil images ``[C, H, W]`` (non-Cartesian: density-compensated gridding, ``F_nu^H D y_c``)."""
        if self.is_cartesian:
            return ifft2c(self.y)
        with self._lock:
            self._make_operator(None)
        # [C, K] as a batch of single-coil data [C, 1, K] -> [C, 1, H, W]
        return self._cache["nufft"].coil_images(self.y[:, None, :])[:, 0]

    def zero_filled(self, combine: str = "sense") -> torch.Tensor:
        """The zero-filled image on ``grid_shape``.

        ``combine="sense"``: complex64 ``sum_c conj(S_c) F^-1 y_c`` (``A^H y``; non-Cartesian ``A^H D y``), with
        the maps (estimated if needed). ``combine="rss"``: float32 root sum of squares of the coil images (no
        maps needed).
        """
        if combine not in ("sense", "rss"):
            raise WorkbenchError(f"combine must be 'sense' or 'rss', got {combine!r}")
        key = f"zero_filled_{combine}"
        img = self._cache.get(key)
        if img is None:
            if combine == "rss":
                img = rss(self.coil_images())
            elif self.is_cartesian:
                img = self.A.adjoint(self.y)
            else:
                img = self.A.dc_adjoint(self.y)
            self._cache[key] = img
        return img

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """Centre-crop ``[..., H, W]`` to ``recon_shape`` (unchanged if it already is that size)."""
        if tuple(image.shape[-2:]) == tuple(self.recon_shape):
            return image
        return center_crop(image, self.recon_shape)

    @property
    def scale(self) -> float:
        """Intensity scale of the data: the 99th percentile of the zero-filled RSS magnitude in ``recon_shape``
        (methods that normalise divide by it and multiply back)."""
        if "scale" not in self._cache:
            mag = self.crop(self.zero_filled("rss")).flatten()
            step = max(1, mag.numel() // 200_000)
            s = float(torch.quantile(mag[::step].float().cpu(), 0.99))
            self._cache["scale"] = s if s > 0 else float(mag.max().clamp_min(1e-30))
        return self._cache["scale"]

    @property
    def noise_std(self) -> float:
        """Estimated standard deviation of the complex k-space noise per sample (``E|n|^2 = noise_std^2``),
        from the outermost measured samples (the 10% farthest from the k-space centre), where the signal is
        weakest: a robust (median absolute deviation) estimate over their real and imaginary parts."""
        if "noise_std" not in self._cache:
            self._cache["noise_std"] = _estimate_noise_std(self)
        return self._cache["noise_std"]

    # --- moving ---------------------------------------------------------------------------------------------
    def to(self, device) -> "Problem":
        """The same problem with its tensors on ``device`` (maps included when already known)."""
        device = torch.device(device)
        if device == self.device:
            return self
        p = Problem(
            self.y.to(device), self.grid_shape, self.recon_shape, mask=self.mask, trajectory=self.trajectory,
            dcf=self.dcf, maps=None if self._maps is None else self._maps.to(device), reference=self.reference,
            data_range=self.data_range, device=device, maps_method=self.maps_method, calib=self.calib,
            sampling=self.sampling, provenance=self.provenance,
        )
        for key in ("noise_std", "scale"):
            if key in self._cache:
                p._cache[key] = self._cache[key]
        return p

    def __repr__(self) -> str:
        kind = "Cartesian" if self.is_cartesian else f"non-Cartesian K={self.y.shape[-1]}"
        return (f"<Problem {kind} {self.n_coils} coils grid {self.grid_shape} recon {self.recon_shape} "
                f"R={self.acceleration:.2f} on {self.device}>")

    # --- construction from a scan ---------------------------------------------------------------------------
    @classmethod
    def from_scan(
        cls,
        scan,
        slice_index: int = 0,
        sampling=None,
        device: str | torch.device = "cpu",
        maps=None,
        maps_method: str = "espirit",
        calib: Sequence[int] = (24, 24),
        dcf_method: str | None = None,
        remove_oversampling: bool = True,
    ) -> "Problem":
        """The problem for one slice of ``scan`` under ``sampling``.

        - Cartesian scan, no sampling: its own acquired samples (mask = acquired mask, all if fully sampled).
        - Cartesian scan, Cartesian sampling: ``y = mask * k`` (intersected with the acquired samples).
        - Fully sampled Cartesian scan, non-Cartesian sampling: retrospective NUFFT of the coil images onto the
          trajectory (:func:`workbench.sampling.retrospective.sample_noncartesian`); dcf from the sampling or
          Pipe-Menon.
        - Non-Cartesian scan: its own trajectory and dcf (Pipe-Menon when the file has none).

        ``dcf_method`` (``"pipe-menon"``, ``"voronoi"``, ``"ramp"``; :mod:`workbench.sampling.dcf`): compute the
        density compensation of a non-Cartesian problem this way instead (it replaces the file's dcf, and
        a sampling's own unless the sampling already uses that method); None keeps the defaults above.
        Recorded in ``provenance["dcf_method"]``.

        ``remove_oversampling``: a Cartesian problem whose ``recon_shape`` is smaller than the grid along an axis
        the mask samples fully (the readout; the demo's 512x256 grid for a 256x256 image) is cropped once, up
        front, to the field of view (:func:`crop_fully_sampled_axes`): every method and the sampler then work on
        ``recon_shape``, 1.5-2x faster, with the image unchanged up to the reconstruction's own error
        (``provenance["oversampling_removed"]`` lists the grid before). False keeps the whole grid.

        ``reference``: the scan's stored reference for the slice, else (fully sampled Cartesian scans) the RSS
        of the fully sampled coil images cropped to ``recon_shape``; ``data_range``: its fastMRI data range
        (:func:`workbench.scoring.volume_data_range`).
        """
        device = torch.device(device)
        if dcf_method is not None:
            from workbench.sampling.dcf import check_dcf_method

            dcf_method = check_dcf_method(dcf_method)
            if getattr(sampling, "is_cartesian", False) or (sampling is None and scan.is_cartesian):
                raise SamplingError("density compensation applies to non-Cartesian sampling; this problem is "
                                    "Cartesian")
            with_method = getattr(sampling, "with_dcf_method", None)
            if callable(with_method):
                sampling = with_method(dcf_method)
        k = scan.kspace(slice_index, device)
        name = scan.path or scan.name
        provenance: dict[str, Any] = {
            "scan": scan.path, "format": scan.format, "slice": int(slice_index), "maps_method": maps_method,
        }
        if sampling is not None:
            to_dict = getattr(sampling, "to_dict", None)
            provenance["sampling"] = to_dict() if callable(to_dict) else {
                "kind": getattr(sampling, "kind", None), "params": dict(getattr(sampling, "params", {}) or {})}
        reference = scan.reference(slice_index)
        grid = tuple(scan.grid_shape)
        common = dict(recon_shape=scan.recon_shape, device=device, maps=maps, maps_method=maps_method,
                      calib=calib, sampling=sampling, provenance=provenance)

        if not scan.is_cartesian:
            if sampling is not None:
                raise SamplingError(f"{name}: the scan is non-Cartesian; it cannot be resampled with a "
                                    f"{getattr(sampling, 'kind', 'new')} sampling (use its own trajectory)")
            traj = scan.trajectory_tensor(device)
            dcf = acquired_dcf(scan, dcf_method, device)
            provenance["dcf_method"] = "file" if dcf_method is None and scan.dcf is not None else (
                dcf_method or "pipe-menon")
            return cls(k, grid, trajectory=traj, dcf=dcf, reference=reference, **common)

        acquired = None if scan.acquired_mask is None else torch.as_tensor(np.asarray(scan.acquired_mask),
                                                                            device=device)
        if reference is None and scan.fully_sampled:
            rshape = (min(scan.recon_shape[0], grid[0]), min(scan.recon_shape[1], grid[1]))
            reference = center_crop(rss(ifft2c(k)), rshape).cpu()
        if reference is not None:
            from workbench.scoring import data_range

            common["data_range"] = data_range(scan, reference)
        if sampling is None:
            mask = acquired if acquired is not None else torch.ones(grid, dtype=torch.bool)
            if remove_oversampling:
                k, mask, common["maps"] = crop_fully_sampled_axes(k, mask, maps, grid, scan.recon_shape,
                                                                  provenance)
            return cls(k, mask=mask, reference=reference, **common)
        if getattr(sampling, "is_cartesian", True):
            mask = getattr(sampling, "mask", None)
            if mask is None:
                raise SamplingError(f"{name}: the Cartesian sampling has no mask")
            from workbench.physics.sense import as_mask

            try:
                mask = as_mask(mask, grid, device=device)
            except SamplingError as exc:
                raise SamplingError(f"{name}: {exc}") from None
            if acquired is not None:
                mask = mask & as_mask(acquired, grid, device=device)
            if remove_oversampling:
                k, mask, common["maps"] = crop_fully_sampled_axes(k, mask, maps, grid, scan.recon_shape,
                                                                  provenance)
            return cls(k * mask, mask=mask, reference=reference, **common)

        # Non-Cartesian sampling of a Cartesian scan: retrospective NUFFT of the fully sampled coil images.
        if not scan.fully_sampled:
            raise SamplingError(
                f"{name}: non-Cartesian retrospective sampling needs a fully sampled Cartesian scan; this one has "
                f"{100 * scan.sampled_fraction:.1f}% of k-space (use a Cartesian mask)"
            )
        traj = getattr(sampling, "trajectory", None)
        if traj is None:
            raise SamplingError(f"{name}: the non-Cartesian sampling has no trajectory")
        shape = getattr(sampling, "shape", None)
        if shape is not None and tuple(int(v) for v in shape) != grid:
            # its density compensation is in cells of another grid
            raise SamplingError(f"{name}: the trajectory was made for a {shape[0]}x{shape[1]} grid, the scan's "
                                f"grid is {grid[0]}x{grid[1]}")
        from workbench.physics.nufft import as_trajectory
        from workbench.sampling.retrospective import sample_noncartesian

        traj = as_trajectory(traj, device=device)
        y = sample_noncartesian(ifft2c(k), traj)
        dcf = getattr(sampling, "dcf", None)
        chosen = dcf_method or getattr(sampling, "dcf_method", None) or "pipe-menon"
        if dcf is None or (dcf_method is not None and getattr(sampling, "dcf_method", None) != dcf_method):
            from workbench.sampling.dcf import compute_dcf

            dcf = compute_dcf(traj, grid, chosen, device=device)
        provenance["dcf_method"] = chosen
        return cls(y, grid, trajectory=traj, dcf=dcf, reference=reference, **common)


def crop_fully_sampled_axes(k: torch.Tensor, mask, maps, grid: Sequence[int], recon_shape: Sequence[int],
                            provenance: dict | None = None):
    """Remove oversampling: crop k-space ``[C, H, W]`` to ``recon_shape`` along each axis that ``mask`` samples
    fully (the same along that axis: a line mask's readout) and that is longer than ``recon_shape``.

    Along such an axis the data are transformed to the hybrid space (centred orthonormal inverse FFT along it),
    centre-cropped as :func:`center_crop` crops an image, and transformed back: the zero-filled image of the
    result is exactly the centre crop of the full grid's, and white noise stays white with the same variance.
    ``maps`` ``[C, H, W]`` (or None) are centre-cropped alike. Returns ``(k, mask, maps)`` on the cropped grid
    (unchanged when no axis qualifies); ``provenance["oversampling_removed"]`` records the grid before.
    """
    from workbench.physics.sense import as_mask

    grid = tuple(int(v) for v in grid)
    target = list(grid)
    m = as_mask(mask, grid, device=k.device)
    for axis in (0, 1):
        fov = min(int(recon_shape[axis]), grid[axis])
        first = m[:1] if axis == 0 else m[:, :1]
        if fov < grid[axis] and bool((m == first).all()):
            target[axis] = fov
    if tuple(target) == grid:
        return k, mask, maps
    dims = [d for d, (a, b) in zip((-2, -1), zip(grid, target)) if a != b]
    hybrid = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho"), dim=dims)
    hybrid = center_crop(hybrid, target)
    k = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(hybrid, dim=dims), dim=dims, norm="ortho"), dim=dims)
    if maps is not None:
        maps = center_crop(torch.as_tensor(maps), target).contiguous()
    if provenance is not None:
        provenance["oversampling_removed"] = list(grid)
    return k.contiguous(), center_crop(m, target).contiguous(), maps


# (id(scan), method, device) -> (weak reference to the scan, weights): the weights of a scan's own trajectory
_acquired_dcf_cache = LRUCache(16)


def acquired_dcf(scan, method: str | None = None, device: str | torch.device = "cpu", *,
                 compute: bool = True) -> torch.Tensor | None:
    """Density compensation ``[K]`` (float32, on ``device``) of a non-Cartesian scan's own trajectory: the
    file's weights when ``method`` is None and the file has them, else ``method`` (default ``"pipe-menon"``;
    :mod:`workbench.sampling.dcf`) computed once per scan, method and device. With ``compute=False``, None while
    not computed yet (a view that must not wait). Raises SamplingError for a method that does not fit the
    trajectory (the ramp on a trajectory that is not radial)."""
    device = torch.device(device)
    if method is None and scan.dcf is not None:
        return torch.from_numpy(np.real(np.asarray(scan.dcf)).astype(np.float32).reshape(-1)).to(device)
    from workbench.sampling.dcf import check_dcf_method, compute_dcf

    method = check_dcf_method(method or "pipe-menon")
    key = (id(scan), method, str(device))
    hit = _acquired_dcf_cache.get(key)
    if hit is None or hit[0]() is not scan:
        if not compute:
            return None

        def create():
            weights = compute_dcf(scan.trajectory_tensor(device), tuple(scan.grid_shape), method, device=device)
            return weakref.ref(scan), torch.as_tensor(weights, dtype=torch.float32).reshape(-1)

        _acquired_dcf_cache.discard(lambda k: k == key)
        hit = _acquired_dcf_cache.get_or_create(key, create)
    return hit[1].clone()  # a method may scale its problem's weights in place


def _estimate_noise_std(problem: Problem) -> float:
    y = problem.y
    if problem.is_cartesian:
        h, w = problem.grid_shape
        r0 = (torch.arange(h, device=y.device) - h // 2) / (h / 2)
        r1 = (torch.arange(w, device=y.device) - w // 2) / (w / 2)
        radius = (r0[:, None] ** 2 + r1[None, :] ** 2).sqrt()
        # Measured and non-zero in some coil (zero-padded, never encoded edges hold exact zeros).
        measured = problem.mask & (y.abs().sum(0) > 0)
        if not bool(measured.any()):
            return 0.0
        rad = radius[measured]
        cut = torch.quantile(rad.float().cpu()[:: max(1, rad.numel() // 100_000)], 0.9).item()
        values = y[:, measured & (radius >= cut)]
    else:
        radius = problem.trajectory.pow(2).sum(0).sqrt()
        cut = torch.quantile(radius.cpu()[:: max(1, radius.numel() // 100_000)], 0.9).item()
        values = y[:, radius >= cut]
    v = torch.view_as_real(values.reshape(-1)).reshape(-1).double().cpu()
    if v.numel() < 8:
        return 0.0
    sigma = 1.4826 * (v - v.median()).abs().median().item()  # per real component
    return float(math.sqrt(2.0) * sigma)
