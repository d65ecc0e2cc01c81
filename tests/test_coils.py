"""Coil sensitivity estimation against known simulated maps, and on real data (skipped when absent)."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from workbench.errors import SamplingError
from workbench.physics.coils import (
    calibration_region,
    estimate_acs_maps,
    estimate_espirit_maps,
    maps_from_noncartesian,
)
from workbench.physics.fft import fft2c, ifft2c

N, C = 96, 8


def true_maps(c: int, n: int) -> torch.Tensor:
    """Gaussian-profile coils around the field of view, each with its own linear phase; sum |S|^2 = 1."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    g = np.random.default_rng(0)
    maps = []
    for i in range(c):
        a = 2 * np.pi * i / c
        mag = np.exp(-((yy - 1.3 * np.sin(a)) ** 2 + (xx - 1.3 * np.cos(a)) ** 2) / (2 * 0.8**2))
        py, px = g.uniform(-1.5, 1.5, 2)
        maps.append(mag * np.exp(1j * (py * yy + px * xx + a)))
    m = np.stack(maps)
    m /= np.sqrt((np.abs(m) ** 2).sum(0))
    return torch.from_numpy(m.astype(np.complex64))


@pytest.fixture(scope="module")
def simulated():
    img = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True).astype(np.float32)
    yy = np.linspace(-1, 1, N)[None, :]
    x = torch.from_numpy((img * np.exp(1j * 0.7 * yy)).astype(np.complex64))  # smooth object phase
    maps = true_maps(C, N)
    k = fft2c(maps * x)
    g = torch.Generator().manual_seed(1)
    noise = 2e-3 * float(k.abs().max()) * torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g))
    obj = torch.from_numpy(ndimage.binary_erosion(img > 0.05, iterations=1))
    return x, maps, k + noise, obj


def map_agreement(est: torch.Tensor, truth: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """|<S_true, S_est>| per pixel inside the object (1 = same up to a per-pixel phase)."""
    return (truth.conj() * est).sum(0).abs()[obj]


def check_maps(est, x, maps, k, obj):
    assert est.shape == maps.shape and est.dtype == torch.complex64
    agree = map_agreement(est, maps, obj)
    assert float(agree.median()) > 0.95
    assert float(agree.quantile(0.05)) > 0.9
    norm2 = est.abs().pow(2).sum(0)
    assert torch.allclose(norm2[obj], torch.ones(()), atol=1e-3)
    # SENSE combination of fully sampled data with the estimated maps reproduces the image magnitude
    sense = (est.conj() * ifft2c(k)).sum(0)
    err = float((sense.abs() - x.abs()).norm() / x.abs().norm())
    assert err < 0.05


def test_espirit_recovers_known_maps(simulated):
    x, maps, k, obj = simulated
    check_maps(estimate_espirit_maps(k, calib=(24, 24)), x, maps, k, obj)


def test_espirit_from_undersampled_kspace_with_acs(simulated):
    x, maps, k, obj = simulated
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(N, N, generator=g) < 0.25
    mask[N // 2 - 10 : N // 2 + 10, N // 2 - 8 : N // 2 + 8] = True  # 20x16 ACS
    ku = k * mask
    rows, cols = calibration_region(ku, (24, 24))
    assert (rows.stop - rows.start, cols.stop - cols.start) == (20, 16)
    est = estimate_espirit_maps(ku, calib=(24, 24))
    check_maps(est, x, maps, k, obj)  # SENSE check with the fully sampled data


def test_calibration_region_is_the_largest_centred_fully_sampled_box():
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[:, ::2] = True  # every other column: holes inside any wider box
    mask[:, N // 2 - 8 : N // 2 + 8] = True  # 16 ACS columns (40..55); column 56 is even, so sampled too
    rows, cols = calibration_region(mask, (24, 24))
    assert (rows.stop - rows.start, cols.start, cols.stop) == (24, 40, 57)
    assert bool(mask[rows, cols].all())
    rows, cols = calibration_region(torch.ones(10, 7), (24, 24))  # capped at the grid
    assert (rows, cols) == (slice(0, 10), slice(0, 7))


def test_espirit_full_resolution_path_agrees_with_low_resolution_path(simulated):
    x, maps, k, obj = simulated
    full = estimate_espirit_maps(k, lowres=(N, N))  # per-pixel eigenproblems on the full grid (exact)
    low = estimate_espirit_maps(k, lowres=(32, 32))
    assert float(map_agreement(low, full, obj).min()) > 0.99


def test_acs_maps_recover_known_maps(simulated):
    x, maps, k, obj = simulated
    check_maps(estimate_acs_maps(k, calib=(24, 24)), x, maps, k, obj)


def radial(n_spokes: int, n_read: int) -> torch.Tensor:
    ang = np.pi * np.arange(n_spokes) / n_spokes
    r = (np.arange(n_read) - n_read // 2) * 2 * np.pi / n_read
    return torch.tensor(np.stack([(r[None] * np.sin(ang[:, None])).ravel(), (r[None] * np.cos(ang[:, None])).ravel()]),
                        dtype=torch.float32)


@pytest.mark.parametrize("method", ["espirit", "acs"])
def test_maps_from_noncartesian_data(simulated, method):
    from workbench.physics.nufft import NufftSense

    x, maps, k, obj = simulated
    n_spokes, n_read = 96, 2 * N
    traj = radial(n_spokes, n_read)
    y = NufftSense(maps, traj, interp="table")(x)  # radial k-space of the simulated object
    r = traj.pow(2).sum(0).sqrt() * N / (2 * np.pi)
    dcf = torch.clamp(r, min=0.25 * N / n_read) * (np.pi / n_spokes) * (N / n_read)
    est = maps_from_noncartesian(y, traj, (N, N), dcf=dcf, calib=(24, 24), method=method)
    agree = map_agreement(est, maps, obj)
    assert float(agree.median()) > 0.95
    assert torch.allclose(est.abs().pow(2).sum(0)[obj], torch.ones(()), atol=1e-3)


def test_too_small_calibration_region_is_a_sampling_error(simulated):
    _, _, k, _ = simulated
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[:, ::4] = True  # no fully sampled centre
    with pytest.raises(SamplingError, match="calibration|fully sampled"):
        estimate_espirit_maps(k * mask)


def test_single_coil_maps_are_ones():
    k = fft2c(torch.rand(1, 16, 16, dtype=torch.complex64))
    assert torch.allclose(estimate_espirit_maps(k), torch.ones(1, 16, 16, dtype=torch.complex64))


@pytest.mark.realdata
def test_espirit_on_real_brain_data(realdata):
    path = realdata / "sigpy_brain8ch_poisson" / "cartesian_ksp.npy"
    if not path.exists():
        pytest.skip(f"{path} not present")
    k = torch.from_numpy(np.load(path))  # (8, 230, 180), Poisson-disc R~8, ~23x23 ACS
    rows, cols = calibration_region(k, (24, 24))
    assert 20 <= rows.stop - rows.start <= 24 and 20 <= cols.stop - cols.start <= 24
    maps = estimate_espirit_maps(k)
    zf = ifft2c(k).abs().pow(2).sum(0).sqrt().numpy()
    brain = ndimage.binary_fill_holes(zf > 0.2 * np.quantile(zf, 0.99))
    brain = torch.from_numpy(ndimage.binary_erosion(brain, iterations=3))
    assert int(brain.sum()) > 10_000
    norm2 = maps.abs().pow(2).sum(0)[brain]
    assert float((norm2 - 1).abs().max()) < 1e-3
    # maps vanish well outside the head (the crop), and match the ACS estimate in the brain
    assert float((maps.abs().pow(2).sum(0)[:5, :5]).max()) == 0.0
    acs = estimate_acs_maps(k)
    assert float(map_agreement(acs, maps, brain).median()) > 0.95


def test_espirit_with_narrow_acs_still_covers_the_object():
    # 8x line masks keep only ~10 ACS lines: the calibration box and kernel adapt so that the maps do not
    # vanish inside the head (independent reference: the simulator's head mask and true maps).
    from workbench.simulate import generate_slice

    d = generate_slice(0, shape=(160, 160), n_coils=12, snr=30.0)
    k = torch.as_tensor(d["kspace"])
    mask = torch.zeros(160, dtype=torch.bool)
    mask[::8] = True
    mask[75:85] = True  # 10 ACS lines
    est = estimate_espirit_maps(k * mask)
    head = torch.as_tensor(d["head_mask"]).bool()
    coverage = ((est.abs() ** 2).sum(0) > 0.5)[head].float().mean()
    assert coverage > 0.99
    agreement = map_agreement(est, torch.as_tensor(d["maps"]), head)
    assert float(agreement.median()) > 0.95
