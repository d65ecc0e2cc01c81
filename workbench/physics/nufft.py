"""Non-Cartesian SENSE forward model on top of torchkbnufft: ``A = F_nu S``.

Convention: the trajectory is ``[2, K]`` in radians in [-pi, pi) (first row along H, second along W), the image
centre is index ``(H//2, W//2)``, and the operator is scaled to match the project's centred orthonormal DFT::

    (A x)_c[k] = 1/sqrt(H W) * sum_n S_c[n] x[n] exp(-i (w0_k (n0 - H//2) + w1_k (n1 - W//2)))

so that on the Cartesian grid points ``w = 2 pi (m - N//2) / N`` the NUFFT equals :func:`fft2c`
(torchkbnufft's ``norm="ortho"`` divides by the oversampled grid size instead; we rescale).

Shapes (one item; leading batch dimensions pass through): image ``[H, W]`` -> k-space ``[C, K]``.

torchkbnufft is imported when an operator is built, not when this module is imported (app start-up stays light).
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch

from workbench.errors import SamplingError, WorkbenchError
from workbench.physics.sense import CoilSense, _check_maps


def as_trajectory(trajectory, device=None) -> torch.Tensor:
    """A k-space trajectory as float32 ``[2, K]`` radians; raises :class:`SamplingError` if it is not one."""
    t = torch.as_tensor(trajectory, device=device)
    if t.is_complex():
        raise SamplingError("trajectory must be real [2, K] radians, got a complex array")
    t = t.to(torch.float32)
    if t.dim() != 2 or t.shape[0] != 2:
        raise SamplingError(f"trajectory has shape {tuple(t.shape)}, expected [2, K] (radians)")
    if t.shape[1] == 0:
        raise SamplingError("trajectory has no samples")
    if not torch.isfinite(t).all():
        raise SamplingError("trajectory contains NaN or Inf")
    # A little slack: readers convert from other units and may land a rounding error past +pi.
    if float(t.abs().max()) > math.pi * 1.001:
        raise SamplingError(
            f"trajectory reaches {float(t.abs().max()):.3f} rad; expected radians in [-pi, pi) "
            "(a trajectory in cycles/FOV or 1/m must be converted by the reader)"
        )
    return t.contiguous()


def _as_dcf(dcf, n_samples: int, device) -> torch.Tensor:
    d = torch.as_tensor(dcf, device=device)
    if d.is_complex():
        d = d.real
    d = d.to(torch.float32).reshape(-1)
    if d.numel() != n_samples:
        raise SamplingError(f"density compensation has {d.numel()} values, the trajectory has {n_samples} samples")
    if not torch.isfinite(d).all() or bool((d < 0).any()):
        raise SamplingError("density compensation must be finite and non-negative")
    return d


class NufftSense(CoilSense):
    """Multi-coil non-Cartesian SENSE operator ``A = F_nu S`` (Kaiser-Bessel NUFFT, torchkbnufft).

    Args:
        maps: coil sensitivities ``[C, H, W]`` (or ``[..., C, H, W]`` per batch item), or None for one coil
            without maps (a per-coil NUFFT when the coil axis is treated as a batch axis).
        trajectory: ``[2, K]`` radians in [-pi, pi).
        grid_shape: ``(H, W)``; taken from the maps when omitted.
        dcf: density compensation weights ``[K]`` (optional), used by :meth:`dc_adjoint`,
            :meth:`weighted_normal` and :meth:`density_weighted`; the operator itself stays ``F_nu S``.
        oversampling: NUFFT grid oversampling factor (grid = ceil(oversampling * N)).
        toeplitz: compute normal operators with the Toeplitz embedding (one FFT pair on the 2x grid per coil,
            no interpolation); kernels are computed on first use and cached.
        numpoints: Kaiser-Bessel kernel width in grid points.
        interp: "table" (torchkbnufft's table interpolation), "sparse" (precomputed sparse interpolation
            CSR matrices: ~5x faster on CPU, built on the first forward/adjoint call and cached) or "auto"
            (sparse on CPU up to ~110k samples, table elsewhere). Use "table" for one-off transforms.

    ``forward``: ``[..., H, W] -> [..., C, K]``; ``adjoint`` (and ``.H``): the plain NUFFT adjoint ``A^H``;
    ``normal``: ``A^H A`` (consistent with forward/adjoint, so generic solvers pair it with ``A.H(y)``);
    :meth:`weighted_normal`: ``A^H D A``; :meth:`dc_adjoint`: the density-compensated adjoint ``A^H D y``;
    :meth:`density_weighted`: the operator ``D^1/2 A`` (its normal is ``A^H D A``) for density-weighted least
    squares with any solver.
    """

    def __init__(
        self,
        maps: torch.Tensor | None,
        trajectory,
        grid_shape: Sequence[int] | None = None,
        dcf=None,
        oversampling: float = 2.0,
        toeplitz: bool = True,
        numpoints: int = 6,
        interp: str = "auto",
    ):
        if maps is not None:
            maps = _check_maps(maps)
            grid = tuple(int(s) for s in maps.shape[-2:])
            if grid_shape is not None and tuple(int(s) for s in grid_shape) != grid:
                raise WorkbenchError(f"coil maps are {grid[0]}x{grid[1]}, the NUFFT grid is {tuple(grid_shape)}")
            device = maps.device
            n_coils = int(maps.shape[-3])
        else:
            if grid_shape is None:
                raise WorkbenchError("NufftSense without maps needs grid_shape")
            grid = tuple(int(s) for s in grid_shape)
            device = torch.as_tensor(trajectory).device
            n_coils = 1
        if len(grid) != 2 or min(grid) < 2:
            raise WorkbenchError(f"NUFFT grid must be 2D with at least 2 points per axis, got {grid}")
        if oversampling < 1.0:
            raise WorkbenchError(f"NUFFT oversampling must be >= 1, got {oversampling}")
        if interp not in ("auto", "table", "sparse"):
            raise WorkbenchError(f"interp must be 'auto', 'table' or 'sparse', got {interp!r}")
        traj = as_trajectory(trajectory, device=device)
        n_samples = int(traj.shape[1])
        super().__init__(grid, (n_coils, n_samples))

        import torchkbnufft as tkbn  # heavy import, only when an operator is built

        self.maps = maps
        self.trajectory = traj
        self.grid_shape = grid
        self.device = torch.device(device)
        self.dcf = None if dcf is None else _as_dcf(dcf, n_samples, device)
        self.toeplitz = bool(toeplitz)
        self.oversampling = float(oversampling)
        self.numpoints = int(numpoints)
        self.interp = interp
        self.nufft_grid = tuple(int(math.ceil(oversampling * n)) for n in grid)
        # torchkbnufft's "ortho" divides by sqrt(prod(nufft_grid)); ours by sqrt(H W).
        self._scale = math.sqrt(math.prod(self.nufft_grid) / math.prod(grid))
        kw = dict(im_size=grid, grid_size=self.nufft_grid, numpoints=self.numpoints, device=self.device)
        self._nufft = tkbn.KbNufft(**kw)
        self._nufft_adjoint = tkbn.KbNufftAdjoint(**kw)
        # The CSR matrices cost ~32 bytes per non-zero (K * numpoints^2): auto keeps them under ~130 MB.
        small = n_samples * self.numpoints**2 <= 4_000_000
        self._use_sparse = interp == "sparse" or (interp == "auto" and self.device.type == "cpu" and small)
        # Shared with the density-weighted view: interpolation matrices and Toeplitz kernels.
        self._cache: dict = {}
        self._sqrt_weights: torch.Tensor | None = None  # set on the density-weighted view only

    @property
    def n_coils(self) -> int:
        return self.oshape[0]

    @property
    def n_samples(self) -> int:
        return self.oshape[1]

    # --- cached precomputations ---------------------------------------------------------------------------
    def _interp(self) -> "_SparseInterp | None":
        if not self._use_sparse:
            return None
        if "interp" not in self._cache:
            self._cache["interp"] = _SparseInterp(self.trajectory, self.grid_shape, self.nufft_grid, self.numpoints)
        return self._cache["interp"]

    def toeplitz_kernel(self, weighted: bool = False) -> torch.Tensor:
        """Real FFT-domain kernel ``[2H, 2W]`` with ``A^H W A = crop F^-1 diag(kernel) F pad`` (cached);
        ``W = D`` (the dcf) when ``weighted``, else the identity.

        The point-spread function ``h[d] = 1/(H W) sum_k w_k exp(i w_k . d)`` for ``d`` in ``[-N, N)`` is one
        centred adjoint NUFFT onto a ``2H x 2W`` image. It uses exact Kaiser-Bessel interpolation weights
        (sparse matrices): torchkbnufft's table lookup (and its ``calc_toeplitz_kernel``) leaves a ~5e-4
        relative error in ``A^H A`` because the table errors add up coherently over all samples.
        """
        if weighted and self.dcf is None:
            weighted = False
        key = "kernel_dcf" if weighted else "kernel"
        if key not in self._cache:
            self._cache[key] = _toeplitz_kernel(
                self.trajectory, self.grid_shape, self.dcf if weighted else None, self.oversampling,
                self.numpoints,
            )
        return self._cache[key]

    # --- per-coil NUFFT on [..., H, W] / [..., K] with all leading dims folded into torchkbnufft's coil axis --
    def _nufft_images(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-2]
        flat = z.reshape(1, -1, *self.grid_shape).to(torch.complex64)
        interp = self._interp()
        if interp is None:
            k = self._nufft(flat, self.trajectory, norm="ortho")
        else:  # same scaling + oversampled FFT as torchkbnufft, then CSR interpolation
            grid = torch.fft.fft2(flat[0] * self._nufft.scaling_coef, s=self.nufft_grid, norm="ortho")
            k = interp.forward(grid.reshape(grid.shape[0], -1))
        return (k * self._scale).reshape(*lead, self.n_samples)

    def _nufft_adjoint_data(self, y: torch.Tensor) -> torch.Tensor:
        lead = y.shape[:-1]
        flat = y.reshape(1, -1, self.n_samples).to(torch.complex64)
        interp = self._interp()
        if interp is None:
            z = self._nufft_adjoint(flat, self.trajectory, norm="ortho")
        else:
            h, w = self.grid_shape
            grid = interp.adjoint(flat[0]).reshape(-1, *self.nufft_grid)
            z = torch.fft.ifft2(grid, norm="ortho")[..., :h, :w] * self._nufft_adjoint.scaling_coef.conj()
        return (z * self._scale).reshape(*lead, *self.grid_shape)

    def _toeplitz_apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        kernel = self.toeplitz_kernel(weighted)
        h, w = self.grid_shape
        z = torch.fft.fft2(self._coil_images(x), s=tuple(kernel.shape), norm="ortho") * kernel
        z = torch.fft.ifft2(z, norm="ortho")[..., :h, :w]
        return self._combine(z)

    def _dcf_weighted(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.dcf is None else y * self.dcf

    # --- the operator -------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self._nufft_images(self._coil_images(x))
        return k if self._sqrt_weights is None else k * self._sqrt_weights

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self._sqrt_weights is not None:
            y = y * self._sqrt_weights
        return self._combine(self._nufft_adjoint_data(y))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        weighted = self._sqrt_weights is not None
        if self.toeplitz:
            return self._toeplitz_apply(x, weighted)
        return self._adjoint(self._forward(x))

    # --- density compensation -----------------------------------------------------------------------------
    def weighted_normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H D A x`` (Toeplitz when enabled); ``A^H A x`` without a dcf. Pair with :meth:`dc_adjoint`."""
        self._check(x, self.ishape, "input")
        if self.toeplitz:
            return self._toeplitz_apply(x, True)
        base = self._base()
        return base._adjoint(base._dcf_weighted(base._forward(x)))

    def dc_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Density-compensated adjoint ``A^H D y`` of data ``[..., C, K]`` (the gridding reconstruction);
        the plain adjoint without a dcf."""
        self._check(y, self.oshape, "output")
        base = self._base()
        return base._adjoint(base._dcf_weighted(y))

    def density_weighted(self) -> "NufftSense":
        """The operator ``D^1/2 A`` (same maps, trajectory and caches): its ``normal`` is ``A^H D A`` and its
        adjoint ``A^H D^1/2``, so any solver run on ``(A.density_weighted(), A.weigh(y))`` solves the
        density-weighted least-squares problem consistently. Needs a dcf."""
        if self.dcf is None:
            raise WorkbenchError("density_weighted() needs a density compensation (dcf)")
        if self._sqrt_weights is not None:
            return self
        view = copy.copy(self)  # shares the torchkbnufft modules and the cache dict
        view._sqrt_weights = self.dcf.sqrt()
        view._base_op = self
        return view

    def weigh(self, y: torch.Tensor) -> torch.Tensor:
        """``D^1/2 y``: measured data for :meth:`density_weighted`."""
        if self.dcf is None:
            raise WorkbenchError("weigh() needs a density compensation (dcf)")
        return y * self.dcf.sqrt()

    def _base(self) -> "NufftSense":
        return getattr(self, "_base_op", self)

    def coil_images(self, y: torch.Tensor, density_compensate: bool = True) -> torch.Tensor:
        """Per-coil gridded images ``F_nu^H D y_c``: ``[..., C, K] -> [..., C, H, W]``."""
        self._check(y, self.oshape, "output")
        base = self._base()
        return base._nufft_adjoint_data(base._dcf_weighted(y) if density_compensate else y)

    def with_maps(self, maps: torch.Tensor | None) -> "NufftSense":
        """The same trajectory / dcf / caches with other coil maps (e.g. re-estimated ones)."""
        base = self._base()
        op = copy.copy(base)
        if maps is not None:
            maps = _check_maps(maps).to(self.device)
            if tuple(maps.shape[-2:]) != self.grid_shape:
                raise WorkbenchError(f"coil maps are {tuple(maps.shape[-2:])}, the NUFFT grid is {self.grid_shape}")
        op.maps = maps
        op.oshape = (1 if maps is None else int(maps.shape[-3]), self.n_samples)
        return op

    def __repr__(self) -> str:
        h, w = self.grid_shape
        kind = "D^1/2 " if self._sqrt_weights is not None else ""
        return f"<{kind}NufftSense {self.n_coils} coils {h}x{w} K={self.n_samples} dcf={self.dcf is not None}>"


class _SparseInterp:
    """Kaiser-Bessel interpolation between the oversampled grid and the samples as CSR sparse matrices.

    The coefficients are torchkbnufft's (``calc_tensor_spmatrix``: exact KB weights, not the table), stored as
    CSR for ``R + iI`` ``[K, G]`` and for its transpose ``[G, K]``: CSR products are ~8x faster on CPU than the
    COO products torchkbnufft's sparse path uses. Real and imaginary parts of all images ride as interleaved
    columns of one real product.
    """

    def __init__(self, trajectory: torch.Tensor, im_size, grid_size, numpoints: int, adjoint_only: bool = False):
        import warnings

        import torchkbnufft as tkbn

        device = trajectory.device
        with warnings.catch_warnings():  # torch's notes about sparse invariant checks and CSR being "beta"
            warnings.simplefilter("ignore", UserWarning)
            re, im = tkbn.calc_tensor_spmatrix(trajectory.cpu(), im_size=im_size, grid_size=grid_size,
                                               numpoints=numpoints)
            self.n_samples, self.n_grid = re.shape
            self.fwd = None if adjoint_only else tuple(_csr(m, device, transpose=False) for m in (re, im))
            self.adj = tuple(_csr(m, device, transpose=True) for m in (re, im))

    @staticmethod
    def _apply(mats, x: torch.Tensor, conj: bool) -> torch.Tensor:
        # x: [N, P] complex -> [N, Q] complex with (R + iI) x (or (R - iI) x when conj)
        n, p = x.shape
        cols = torch.view_as_real(x.contiguous()).permute(1, 0, 2).reshape(p, 2 * n)
        a = torch.mm(mats[0], cols).reshape(-1, n, 2)
        b = torch.mm(mats[1], cols).reshape(-1, n, 2)
        if conj:
            out = torch.complex(a[..., 0] + b[..., 1], a[..., 1] - b[..., 0])
        else:
            out = torch.complex(a[..., 0] - b[..., 1], a[..., 1] + b[..., 0])
        return out.T

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """``[N, G]`` oversampled-grid values -> ``[N, K]`` samples."""
        return self._apply(self.fwd, grid, conj=False)

    def adjoint(self, data: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` samples -> ``[N, G]`` gridded values (the conjugate transpose)."""
        return self._apply(self.adj, data, conj=True)


def _csr(coo: torch.Tensor, device, transpose: bool) -> torch.Tensor:
    # scipy's COO -> CSR conversion is a linear-time bucket pass; torch's coalesce sorts (~10x slower here).
    import scipy.sparse

    rows, cols = coo._indices().numpy()
    shape = tuple(coo.shape)
    if transpose:
        rows, cols, shape = cols, rows, shape[::-1]
    m = scipy.sparse.csr_matrix((coo._values().numpy(), (rows, cols)), shape=shape)
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int32)), torch.from_numpy(m.indices.astype(np.int32)),
        torch.from_numpy(m.data.astype(np.float32)), size=shape,
    ).to(device)


def _toeplitz_kernel(trajectory: torch.Tensor, grid_shape, weights, oversampling: float, numpoints: int):
    import torchkbnufft as tkbn

    h, w = grid_shape
    big = (2 * h, 2 * w)
    big_grid = tuple(int(math.ceil(oversampling * n)) for n in big)
    interp = _SparseInterp(trajectory, big, big_grid, numpoints, adjoint_only=True)
    adjoint = tkbn.KbNufftAdjoint(im_size=big, grid_size=big_grid, numpoints=numpoints, device=trajectory.device)
    n = trajectory.shape[1]
    wk = torch.ones(n, device=trajectory.device) if weights is None else weights
    # Unnormalised adjoint NUFFT onto the 2N image: image index m in [0, 2N) is the difference d = m - N
    # (torchkbnufft centres at N).
    grid = interp.adjoint(wk.to(torch.complex64)[None]).reshape(big_grid)
    psf = torch.fft.ifft2(grid, norm="forward")[: big[0], : big[1]] * adjoint.scaling_coef.conj() / (h * w)
    psf[0, :] = 0  # d = -N is not a difference of two indices in [0, N)
    psf[:, 0] = 0
    # Circular convolution on the 2N grid: d = 0 at index 0; with ortho FFTs around it the kernel is the
    # unnormalised FFT. Real up to rounding since the operator is Hermitian.
    kernel = torch.fft.fft2(torch.fft.ifftshift(psf.to(torch.complex128))).real
    return kernel.to(torch.float32).contiguous()
