"""Pipe-Menon density compensation against independent references: the Cartesian grid (weight 1 per cell),
the radial Voronoi area (ramp), torchkbnufft's own estimate, and torchkbnufft's NUFFT (unbiased A^H D A)."""

import math

import numpy as np
import pytest
import torch
import torchkbnufft as tkbn

from workbench.errors import SamplingError
from workbench.sampling.dcf import interpolation_matrix, pipe_menon_dcf
from workbench.sampling.trajectories import radial_trajectory, spiral_trajectory


def cartesian_trajectory(h, w):
    ky = (np.arange(h) - h // 2) * 2 * math.pi / h
    kx = (np.arange(w) - w // 2) * 2 * math.pi / w
    gy, gx = np.meshgrid(ky, kx, indexing="ij")
    return torch.from_numpy(np.stack([gy.ravel(), gx.ravel()]).astype(np.float32))


def test_cartesian_grid_gets_unit_weights():
    for h, w in [(32, 32), (40, 24)]:
        dcf = pipe_menon_dcf(cartesian_trajectory(h, w), (h, w))
        assert dcf.dtype == torch.float32 and dcf.shape == (h * w,)
        # one Cartesian cell per sample: weight 1 (the normalisation; the kernel's side lobe at the lattice
        # frequency costs ~1%), the same everywhere
        assert dcf.std() / dcf.mean() < 1e-3
        assert abs(dcf.mean().item() - 1) < 0.02


def test_radial_weights_are_the_voronoi_ramp():
    h = w = 128
    n_spokes, n_readout = 208, 256  # angularly Nyquist-sampled (pi/2 * 128 spokes): spokes closer than a cell
    traj = radial_trajectory(n_spokes, n_readout)
    dcf = pipe_menon_dcf(traj, (h, w)).double()
    k = traj.double().norm(dim=0)
    middle = (k > 0.2 * math.pi) & (k < 0.8 * math.pi)
    corr = np.corrcoef(dcf[middle].numpy(), k[middle].numpy())[0, 1]
    assert corr > 0.95
    # the area each sample stands for: |k| * (pi / n_spokes) * (2 pi / n_readout), per Cartesian cell
    voronoi = k * (math.pi / n_spokes) * (2 * math.pi / n_readout) / ((2 * math.pi / h) * (2 * math.pi / w))
    rel = ((dcf - voronoi).abs() / voronoi)[middle]
    assert rel.median() < 0.02 and rel.max() < 0.1


def _scale_fit_error(ours, ref):
    ref = ref.reshape(-1).abs().double()
    ours = ours.double()
    scale = (ours * ref).sum() / (ref * ref).sum()
    return ((ours - scale * ref).norm() / ours.norm()).item(), np.corrcoef(ours.numpy(), ref.numpy())[0, 1]


@pytest.mark.parametrize(
    "name,traj",
    [
        ("golden-radial", radial_trajectory(40, 128, golden=True)),
        ("spiral-vd", spiral_trajectory(6, 700, (64, 64), alpha=1.5)),
    ],
)
def test_matches_torchkbnufft_up_to_scale(name, traj):
    ours = pipe_menon_dcf(traj, (64, 64))
    ref = tkbn.calc_density_compensation_function(traj, (64, 64))
    err, corr = _scale_fit_error(ours, ref)
    assert corr > 0.95 and err < 0.10, (name, err, corr)


def _smooth_image(h, w, sigma):
    y, x = np.mgrid[:h, :w]
    img = np.exp(-(((y - h // 2) / sigma[0]) ** 2 + ((x - w // 2) / sigma[1]) ** 2) / 2)
    img = img * (1 + 0.5 * np.cos(2 * math.pi * x / w * 3))  # some structure, still band-limited
    return torch.from_numpy(img.astype(np.complex64))


@pytest.mark.parametrize(
    "traj",
    [radial_trajectory(120, 128), radial_trajectory(60, 128, golden=True), spiral_trajectory(8, 1200, (64, 64))],
)
def test_adjoint_with_dcf_is_an_unbiased_image_estimate(traj):
    h = w = 64
    x = _smooth_image(h, w, (7.0, 9.0))
    nufft, adjoint = tkbn.KbNufft(im_size=(h, w)), tkbn.KbNufftAdjoint(im_size=(h, w))
    y = nufft(x[None, None], traj, norm="ortho")
    dcf = pipe_menon_dcf(traj, (h, w))
    # torchkbnufft's "ortho" divides by sqrt(prod(grid_size)) (grid = 2x image); the project's orthonormal
    # scaling divides by sqrt(prod(im_size)): the documented factor prod(grid) / prod(im) = 4 converts
    estimate = adjoint(y * dcf, traj, norm="ortho")[0, 0] * 4
    centre = (slice(h // 2 - 16, h // 2 + 16), slice(w // 2 - 16, w // 2 + 16))
    rel = ((estimate - x)[centre].norm() / x[centre].norm()).item()
    assert rel < 0.02  # measured ~0.1-0.2%; a wrong normalisation is off by a factor


def test_torch_backend_matches_scipy_backend():
    traj = spiral_trajectory(4, 800, (48, 48), alpha=2.0)
    a = pipe_menon_dcf(traj, (48, 48), backend="scipy")
    b = pipe_menon_dcf(traj, (48, 48), backend="torch")
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_interpolation_matrix_rows_are_a_partition_of_unity():
    # each sample spreads unit mass onto the oversampled grid (the kernel is normalised to integral 1)
    traj = torch.rand(2, 500) * 2 * math.pi - math.pi
    c = interpolation_matrix(traj, (32, 40))
    assert c.shape == (500, 64 * 80) and c.nnz == 500 * 36
    np.testing.assert_allclose(np.asarray(c.sum(axis=1)).ravel(), 1.0, atol=1e-4)


def test_dcf_errors():
    with pytest.raises(SamplingError, match=r"\[2, K\]"):
        pipe_menon_dcf(torch.zeros(3, 10), (32, 32))
    with pytest.raises(SamplingError, match="radians"):
        pipe_menon_dcf(torch.full((2, 10), 5.0), (32, 32))
    with pytest.raises(SamplingError, match="NaN"):
        pipe_menon_dcf(torch.full((2, 10), float("nan")), (32, 32))
    with pytest.raises(SamplingError, match="backend"):
        pipe_menon_dcf(torch.zeros(2, 10), (32, 32), backend="cuda-magic")
