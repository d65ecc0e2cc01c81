"""Retrospective undersampling of fully sampled Cartesian data.

- :func:`apply_mask`: Cartesian, ``k * mask``.
- :func:`sample_noncartesian`: the k-space of coil images on a non-Cartesian trajectory, by the NUFFT (the
  same operator and scaling as :class:`workbench.physics.NufftSense`, so that its density-compensated adjoint
  returns the images).
"""

from __future__ import annotations

import torch

from workbench.errors import SamplingError


def apply_mask(kspace: torch.Tensor, mask) -> torch.Tensor:
    """Cartesian retrospective undersampling: ``kspace [..., C, H, W]`` times ``mask`` (bool ``[H, W]`` or a
    1D column mask ``[W]``); unsampled positions become exactly zero."""
    from workbench.physics.sense import as_mask

    k = torch.as_tensor(kspace)
    if k.dim() < 2:
        raise SamplingError(f"k-space has shape {tuple(k.shape)}; expected [..., H, W]")
    m = as_mask(mask, k.shape[-2:], device=k.device)
    return torch.where(m, k, torch.zeros((), dtype=k.dtype, device=k.device))


def sample_noncartesian(coil_images: torch.Tensor, trajectory, *, oversampling: float = 2.0,
                        numpoints: int = 6) -> torch.Tensor:
    """k-space of coil images ``[..., C, H, W]`` (complex) on the trajectory ``[2, K]`` (radians in
    [-pi, pi)): ``[..., C, K]``, on the centred orthonormal DFT scale of :func:`workbench.physics.fft.fft2c`.

    To undersample a fully sampled Cartesian scan onto a trajectory: ``sample_noncartesian(ifft2c(k), traj)``.
    """
    from workbench.physics.nufft import NufftSense

    x = torch.as_tensor(coil_images)
    if x.dim() < 2:
        raise SamplingError(f"coil images have shape {tuple(x.shape)}; expected [..., C, H, W]")
    traj = torch.as_tensor(trajectory, device=x.device)
    # One image per coil (and batch item): maps-free NUFFT with the coil axis as a batch axis. Table
    # interpolation: this is a one-off, not worth building sparse interpolation matrices.
    op = NufftSense(None, traj, tuple(x.shape[-2:]), oversampling=oversampling, numpoints=numpoints,
                    interp="table", toeplitz=False)
    return op.forward(x.to(torch.complex64))[..., 0, :]
