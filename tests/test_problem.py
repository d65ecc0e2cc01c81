"""Problem.from_scan and the Problem helpers, checked against numpy recomputations and explicit formulas."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench.arrays import center_crop
from workbench.errors import SamplingError, WorkbenchError
from workbench.physics.nufft import NufftSense
from workbench.physics.sense import CartesianSense
from workbench.problem import Problem
from workbench.scan import scan_from_arrays
from numpy_reference import np_fft2c, np_ifft2c  # noqa: E402

H, W, C = 48, 40, 4


def phantom_and_maps(h=H, w=W, c=C):
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    obj = ((yy / 0.8) ** 2 + (xx / 0.7) ** 2 < 1).astype(np.float64)
    obj -= 0.4 * (((yy - 0.2) / 0.3) ** 2 + ((xx + 0.1) / 0.25) ** 2 < 1)
    obj = obj * np.exp(1j * 0.6 * xx)
    maps = np.stack([np.exp(-((yy - 1.2 * np.sin(a)) ** 2 + (xx - 1.2 * np.cos(a)) ** 2) / 1.2) * np.exp(1j * a * yy)
                     for a in np.linspace(0, 2 * np.pi, c, endpoint=False)])
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0))
    return obj.astype(np.complex64), maps.astype(np.complex64)


def cartesian_scan(noise=0.0, recon_shape=(32, 32), slices=2, smooth=False):
    obj, maps = phantom_and_maps()
    k = np_fft2c(maps * obj)
    if smooth:  # a spectrum that decays like a real object's (no signal left in the k-space corners)
        ky, kx = np.meshgrid(np.arange(H) - H // 2, np.arange(W) - W // 2, indexing="ij")
        k = k * np.exp(-((ky / (0.2 * H)) ** 2 + (kx / (0.2 * W)) ** 2))
    rng = np.random.default_rng(0)
    k = np.stack([k * (s + 1) for s in range(slices)])
    k = k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / math.sqrt(2)
    return scan_from_arrays(k.astype(np.complex64), recon_shape=recon_shape), obj, maps


def line_mask(w=W, every=3, acs=10):
    cols = np.zeros(w, bool)
    cols[::every] = True
    cols[w // 2 - acs // 2 : w // 2 + acs // 2] = True
    return np.broadcast_to(cols, (H, w)).copy()


def radial(n_spokes, n_read):
    ang = np.pi * np.arange(n_spokes) / n_spokes
    r = (np.arange(n_read) - n_read // 2) * 2 * np.pi / n_read
    return torch.tensor(np.stack([(r[None] * np.sin(ang[:, None])).ravel(), (r[None] * np.cos(ang[:, None])).ravel()]),
                        dtype=torch.float32)


def test_cartesian_from_scan_with_mask_sampling():
    scan, obj, maps = cartesian_scan()
    mask = line_mask()
    sampling = SimpleNamespace(kind="user", params={}, mask=torch.from_numpy(mask), trajectory=None, dcf=None,
                               is_cartesian=True)
    p = Problem.from_scan(scan, 1, sampling=sampling, maps=torch.from_numpy(maps), remove_oversampling=False)
    k = scan.kspace(1).numpy()
    np.testing.assert_array_equal(p.y.numpy(), k * mask)
    assert p.mask.dtype == torch.bool and torch.equal(p.mask, torch.from_numpy(mask))
    assert isinstance(p.A, CartesianSense) and p.is_cartesian and p.n_coils == C
    assert p.grid_shape == (H, W) and p.recon_shape == (32, 32)
    # reference: RSS of the fully sampled coil images, centre-cropped (numpy recomputation)
    ref = np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(0))[H // 2 - 16 : H // 2 + 16, W // 2 - 16 : W // 2 + 16]
    np.testing.assert_allclose(p.reference.numpy(), ref, rtol=1e-4, atol=1e-5)
    # zero-filled SENSE image: sum_c conj(S_c) F^-1 (M k_c)
    zf = (np.conj(maps) * np_ifft2c(k * mask)).sum(0)
    np.testing.assert_allclose(p.zero_filled().numpy(), zf, atol=1e-4)
    np.testing.assert_allclose(p.zero_filled("rss").numpy(), np.sqrt((np.abs(np_ifft2c(k * mask)) ** 2).sum(0)),
                               atol=1e-4)
    assert p.crop(p.zero_filled()).shape == (32, 32)
    # the true image (slice 1 is 2x the object) explains the data through A
    assert torch.allclose(p.A(torch.from_numpy(2 * obj)), p.y, atol=1e-4)
    assert p.acceleration == pytest.approx(mask.size / mask.sum())
    assert p.provenance["slice"] == 1


def test_oversampling_is_removed_where_the_mask_samples_the_readout_fully():
    scan, obj, maps = cartesian_scan(noise=0.01)
    mask = line_mask()  # the same columns in every row: the readout (H = 48 > 32) is fully sampled
    sampling = SimpleNamespace(kind="user", params={}, mask=torch.from_numpy(mask), is_cartesian=True)
    full = Problem.from_scan(scan, 1, sampling=sampling, maps=torch.from_numpy(maps), remove_oversampling=False)
    p = Problem.from_scan(scan, 1, sampling=sampling, maps=torch.from_numpy(maps))
    # only the readout is cropped (the phase-encode axis W = 40 > 32 is undersampled: kept whole)
    assert p.grid_shape == (32, W) and p.recon_shape == (32, 32) and p.provenance["oversampling_removed"] == [H, W]
    assert torch.equal(p.mask, torch.from_numpy(mask[:32])) and torch.equal(p.reference, full.reference)
    assert p.data_range == full.data_range
    # the hybrid-space crop: the zero-filled images are the centre crop of the full grid's, exactly
    torch.testing.assert_close(p.zero_filled("rss"), center_crop(full.zero_filled("rss"), (32, W)), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(p.zero_filled(), center_crop(full.zero_filled(), (32, W)), atol=1e-5, rtol=1e-5)
    assert torch.equal(p.maps, center_crop(torch.from_numpy(maps), (32, W)))
    torch.testing.assert_close(p.crop(p.zero_filled()), full.crop(full.zero_filled()), atol=1e-5, rtol=1e-5)
    # a mask that varies along both axes (2D random) samples no axis fully: nothing is cropped
    rng = np.random.default_rng(0)
    random_2d = SimpleNamespace(kind="user", params={}, mask=torch.from_numpy(rng.random((H, W)) < 0.5),
                                is_cartesian=True)
    assert Problem.from_scan(scan, 1, sampling=random_2d).grid_shape == (H, W)


def test_real_sampling_module_masks_work_with_from_scan():
    from workbench.sampling import make_sampling

    scan, _, _ = cartesian_scan()
    s = make_sampling("equispaced", (H, W), 4, seed=0, center_fraction=0.2)
    p = Problem.from_scan(scan, 0, sampling=s, remove_oversampling=False)
    assert torch.equal(p.mask, s.mask)
    assert p.provenance["sampling"]["kind"] == "equispaced"


def test_maps_are_estimated_lazily_cached_and_accurate():
    scan, obj, maps = cartesian_scan()
    p = Problem.from_scan(scan, 0, sampling=SimpleNamespace(mask=torch.from_numpy(line_mask(every=2, acs=16)),
                                                            is_cartesian=True, kind="user", params={}),
                          remove_oversampling=False)
    assert not p.has_maps
    est = p.maps
    assert p.has_maps and p.maps is est
    inside = torch.from_numpy(np.abs(obj) > 0.3)
    agree = (torch.from_numpy(maps).conj() * est).sum(0).abs()[inside]
    assert float(agree.median()) > 0.95
    acs = Problem.from_scan(scan, 0, maps_method="acs", remove_oversampling=False).maps
    assert float((torch.from_numpy(maps).conj() * acs).sum(0).abs()[inside].median()) > 0.95
    # replacing the maps rebuilds the operator
    A0 = p.A
    p.maps = torch.from_numpy(maps)
    assert p.A is not A0 and torch.equal(p.A.maps, torch.from_numpy(maps))


def test_undersampled_scan_without_sampling_uses_its_acquired_mask():
    scan, _, _ = cartesian_scan()
    mask = line_mask()
    k = scan.kspace(0).numpy() * mask
    under = scan_from_arrays(k[None])
    assert not under.fully_sampled
    p = Problem.from_scan(under, 0)
    assert torch.equal(p.mask, torch.from_numpy(mask)) and p.reference is None


def test_noise_std_and_scale_estimates():
    sigma = 0.05  # std of the complex noise per sample: E|n|^2 = sigma^2
    scan, _, _ = cartesian_scan(noise=sigma, smooth=True)
    p = Problem.from_scan(scan, 0, maps=torch.ones(C, H, W, dtype=torch.complex64) / 2)
    assert p.noise_std == pytest.approx(sigma, rel=0.2)
    zf_rss = np.sqrt((np.abs(np_ifft2c(scan.kspace(0).numpy())) ** 2).sum(0))
    crop = zf_rss[H // 2 - 16 : H // 2 + 16, W // 2 - 16 : W // 2 + 16]
    assert p.scale == pytest.approx(np.quantile(crop, 0.99), rel=1e-3)


def test_noncartesian_retrospective_from_fully_sampled_cartesian_scan():
    scan, obj, maps = cartesian_scan(recon_shape=None, slices=1)
    traj = radial(64, 2 * H)
    sampling = SimpleNamespace(kind="radial", params={}, mask=None, trajectory=traj, dcf=None, is_cartesian=False,
                               shape=(H, W))
    p = Problem.from_scan(scan, 0, sampling=sampling, maps=torch.from_numpy(maps))
    assert not p.is_cartesian and p.y.shape == (C, traj.shape[1]) and p.dcf is not None
    assert isinstance(p.A, NufftSense)
    # y is the NUDFT of the coil images (direct sum on a few samples)
    idx = torch.arange(0, traj.shape[1], 97)
    n0 = np.arange(H) - H // 2
    n1 = np.arange(W) - W // 2
    t = traj[:, idx].double().numpy()
    E = np.exp(-1j * (t[0][:, None, None] * n0[None, :, None] + t[1][:, None, None] * n1[None, None, :]))
    direct = np.einsum("khw,chw->ck", E, maps * obj) / math.sqrt(H * W)
    np.testing.assert_allclose(p.y[:, idx].numpy(), direct, rtol=0, atol=1e-3 * np.abs(direct).max())
    # the density-compensated adjoint approximates the image (radial covers the inscribed disc of k-space)
    zf = p.zero_filled().numpy()
    assert np.linalg.norm(zf - obj) / np.linalg.norm(obj) < 0.15
    assert p.zero_filled("rss").shape == (H, W)


def test_noncartesian_scan_uses_its_trajectory_and_computes_a_dcf():
    obj, maps = phantom_and_maps()
    traj = radial(48, 2 * H)
    y = NufftSense(torch.from_numpy(maps), traj, interp="table")(torch.from_numpy(obj))
    scan = scan_from_arrays(y.numpy(), trajectory=traj.numpy(), grid_shape=(H, W))
    p = Problem.from_scan(scan, 0, maps_method="acs")
    assert torch.equal(p.trajectory, traj) and p.dcf.shape == (traj.shape[1],)
    est = p.maps
    inside = torch.from_numpy(np.abs(obj) > 0.3)
    assert float((torch.from_numpy(maps).conj() * est).sum(0).abs()[inside].median()) > 0.9
    with pytest.raises(SamplingError, match="non-Cartesian"):
        Problem.from_scan(scan, 0, sampling=SimpleNamespace(is_cartesian=True, mask=torch.ones(H, W, dtype=torch.bool)))


def test_single_coil_problem():
    obj, _ = phantom_and_maps()
    k = np_fft2c(obj)[None]
    mask = line_mask()
    p = Problem(torch.from_numpy(k * mask), mask=torch.from_numpy(mask))
    assert torch.equal(p.maps, torch.ones(1, H, W, dtype=torch.complex64))
    np.testing.assert_allclose(p.zero_filled().numpy(), np_ifft2c(k * mask)[0], atol=1e-5)


def test_bad_inputs_are_typed_errors():
    scan, _, _ = cartesian_scan()
    with pytest.raises(SamplingError):
        Problem.from_scan(scan, 0, sampling=SimpleNamespace(is_cartesian=True, mask=torch.ones(H, W + 1, dtype=torch.bool)))
    under = scan_from_arrays(scan.kspace(0).numpy() * line_mask())
    with pytest.raises(SamplingError, match="fully sampled"):
        Problem.from_scan(under, 0, sampling=SimpleNamespace(is_cartesian=False, trajectory=radial(8, 2 * H), mask=None))
    with pytest.raises(WorkbenchError, match="coil maps"):
        Problem.from_scan(scan, 0, maps=torch.ones(C + 1, H, W))
    with pytest.raises(WorkbenchError, match="maps method|coil map method"):
        Problem.from_scan(scan, 0, maps_method="magic")


def test_to_same_device_is_identity_and_copy_keeps_maps():
    scan, _, maps = cartesian_scan()
    p = Problem.from_scan(scan, 0, maps=torch.from_numpy(maps))
    assert p.to("cpu") is p


def test_real_sampling_module_radial_with_from_scan():
    from workbench.sampling import make_sampling

    scan, obj, maps = cartesian_scan(recon_shape=None, slices=1)
    s = make_sampling("golden-radial", (H, W), 1.5, seed=0)
    p = Problem.from_scan(scan, 0, sampling=s, maps=torch.from_numpy(maps))
    assert torch.equal(p.trajectory, s.trajectory) and torch.allclose(p.dcf, s.dcf)
    zf = p.zero_filled().numpy()
    assert np.linalg.norm(zf - obj) / np.linalg.norm(obj) < 0.2
