"""Radial and spiral trajectories (geometry from their definitions) and the non-Cartesian Sampling kinds."""

import math

import numpy as np
import pytest
import torch

from workbench.errors import SamplingError
from workbench.sampling import Sampling, make_sampling
from workbench.sampling.trajectories import radial_trajectory, spiral_trajectory


def _in_range(traj):
    t = traj.double().numpy()
    return t.min() >= -math.pi and t.max() < math.pi


@pytest.mark.parametrize("n_readout", [64, 65])
def test_radial_uniform_geometry(n_readout):
    n_spokes = 12
    traj = radial_trajectory(n_spokes, n_readout)
    assert traj.dtype == torch.float32 and traj.shape == (2, n_spokes * n_readout)
    assert _in_range(traj)
    spokes = traj.double().numpy().reshape(2, n_spokes, n_readout)
    dk = 2 * math.pi / n_readout
    for i in range(n_spokes):
        ky, kx = spokes[0, i], spokes[1, i]
        # the centre is sampled, at index n_readout // 2
        assert abs(ky[n_readout // 2]) < 1e-7 and abs(kx[n_readout // 2]) < 1e-7
        # a straight line through the origin at angle pi*i/n (row 0 = H axis = sin, row 1 = W axis = cos)
        angle = math.pi * i / n_spokes
        signed = kx * math.cos(angle) + ky * math.sin(angle)
        np.testing.assert_allclose(-kx * math.sin(angle) + ky * math.cos(angle), 0, atol=1e-6)
        # equally spaced by 2 pi / n_readout, spanning [-pi, pi)
        np.testing.assert_allclose(np.diff(signed), dk, atol=1e-5)
        np.testing.assert_allclose(signed[0], -(n_readout // 2) * dk, atol=1e-5)


def test_golden_angle_increment():
    traj = radial_trajectory(40, 32, golden=True).double().numpy().reshape(2, 40, 32)
    last = traj[:, :, -1]  # the sample at +k_max of each spoke points along its direction
    angles = np.mod(np.arctan2(last[0], last[1]), math.pi)
    steps = np.mod(np.diff(angles), math.pi)
    golden_deg = 180 / ((1 + math.sqrt(5)) / 2)  # 111.246 deg
    np.testing.assert_allclose(np.degrees(steps), golden_deg, atol=1e-3)
    assert _in_range(torch.from_numpy(traj.reshape(2, -1)).float())


def test_radial_every_sample_inside_even_at_the_edges():
    # angles near pi put the -pi readout end at +pi*|cos|; float32(pi) > pi must never appear
    for n in [1, 2, 3, 7, 100, 1001]:
        for golden in (False, True):
            assert _in_range(radial_trajectory(n, 16, golden=golden))


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_spiral_geometry(alpha):
    n_il, n_s = 8, 600
    traj = spiral_trajectory(n_il, n_s, (128, 128), alpha=alpha)
    assert traj.dtype == torch.float32 and traj.shape == (2, n_il * n_s)
    assert _in_range(traj)
    z = (traj[1].double() + 1j * traj[0].double()).numpy().reshape(n_il, n_s)
    radius = np.abs(z[0])
    assert radius[0] < 1e-9 and abs(radius[-1] - math.pi) < 1e-5  # centre to k_max = pi
    assert (np.diff(radius) >= -1e-9).all()
    # uniform arc-length sampling (constant readout speed): equal chords where the curve is not tightly
    # curled (near the centre a chord is shorter than its arc)
    steps = np.abs(np.diff(z[0]))[radius[1:] > math.pi / 4]
    assert steps.std() / steps.mean() < 0.01
    # interleaves are rotations of the first one by 2 pi i / n
    for i in range(1, n_il):
        np.testing.assert_allclose(z[i], z[0] * np.exp(2j * math.pi * i / n_il), atol=1e-5)
    # k(tau) = pi tau^alpha exp(i 2 pi n_turns tau): radius^(1/alpha) is linear in the unwrapped angle
    phase = np.unwrap(np.angle(z[0][1:]))
    tau = (radius[1:] / math.pi) ** (1 / alpha)
    n_turns = 128 / (2 * n_il)  # default: Nyquist at the edge for alpha = 1
    np.testing.assert_allclose(phase - phase[0], 2 * math.pi * n_turns * (tau - tau[0]), atol=1e-3)


def test_spiral_variable_density_samples_the_centre_more():
    uniform = spiral_trajectory(8, 2000, (128, 128), alpha=1.0).norm(dim=0)
    dense = spiral_trajectory(8, 2000, (128, 128), alpha=2.0).norm(dim=0)
    assert (dense < math.pi / 4).sum() > 1.5 * (uniform < math.pi / 4).sum()


def test_spiral_default_turns_give_nyquist_arm_spacing_at_the_edge():
    n = 96
    traj = spiral_trajectory(4, 4000, (n, n))
    z = (traj[1].double() + 1j * traj[0].double()).numpy().reshape(4, -1)
    # along a ray near the edge, the arms cross every 2 pi / n (Cartesian spacing) in k
    angle = np.angle(z)
    ray = np.abs(np.angle(np.exp(1j * (angle - 0.3)))) < 0.01
    radii = np.sort(np.abs(z[ray]))
    radii = radii[radii > 0.7 * math.pi]
    gaps = np.diff(radii)
    gaps = gaps[gaps > 0.5 * (2 * math.pi / n)]  # merge samples of the same crossing
    np.testing.assert_allclose(np.median(gaps), 2 * math.pi / n, rtol=0.05)


def test_trajectory_errors():
    with pytest.raises(SamplingError, match="n_spokes"):
        radial_trajectory(0, 64)
    with pytest.raises(SamplingError, match="n_readout or grid_shape"):
        radial_trajectory(10)
    with pytest.raises(SamplingError, match="alpha"):
        spiral_trajectory(4, 100, (64, 64), alpha=-1)
    with pytest.raises(SamplingError, match="too small"):
        spiral_trajectory(4, 100, (4, 64))


@pytest.mark.parametrize("kind", ["radial", "golden-radial", "spiral"])
@pytest.mark.parametrize("acc", [2, 5.5])
def test_make_sampling_noncartesian(kind, acc, tmp_path):
    h, w = 96, 80
    s = make_sampling(kind, (h, w), acc, seed=1)
    assert not s.is_cartesian and s.mask is None and s.acs_shape is None
    k = s.trajectory.shape[1]
    assert abs(k - h * w / acc) / (h * w / acc) < 0.05  # n_samples ~ H*W/R
    assert s.acceleration == pytest.approx(h * w / k)
    assert _in_range(s.trajectory)
    if kind != "spiral":
        assert s.params["n_readout"] == 2 * max(h, w)
    dcf = s.dcf
    assert dcf.shape == (k,) and dcf.dtype == torch.float32 and (dcf > 0).all()
    assert s.dcf is dcf  # cached
    for name in ("t.npz", "t.json"):
        s.save(tmp_path / name)
        loaded = Sampling.load(tmp_path / name)
        assert loaded.kind == kind
        assert torch.equal(loaded.trajectory, s.trajectory)
        torch.testing.assert_close(loaded.dcf, s.dcf)
