"""Every real data set in ../shared/realdata opens through open_scan (with the one-line adapter of
docs/formats.md where one is needed) with the right shapes, orientation and an image where the object is.

Images are formed here independently of the library: a numpy centred inverse FFT + RSS for Cartesian data, and
torchkbnufft's adjoint NUFFT with a ramp DCF for radial data. Skipped when the data folder is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_reference import np_crop as crop, np_ifft2c as ifft2c

from workbench.io import open_scan

pytestmark = pytest.mark.realdata


def zero_filled(scan, i: int = 0) -> np.ndarray:
    """RSS of the centred inverse FFT on the full grid."""
    return np.sqrt((np.abs(ifft2c(scan.kspace(i).numpy())) ** 2).sum(0))


def box_fraction(img: np.ndarray, frac: float) -> float:
    e = img**2
    return float(crop(e, (int(e.shape[0] * frac), int(e.shape[1] * frac))).sum() / e.sum())


def disc_fraction(img: np.ndarray, radius: float) -> float:
    e = img**2
    H, W = e.shape
    y, x = np.mgrid[:H, :W]
    inside = ((y - H / 2) / H) ** 2 + ((x - W / 2) / W) ** 2 < radius**2
    return float(e[inside].sum() / e.sum())


def com_offset(img: np.ndarray) -> tuple[float, float]:
    """Centre of mass of the energy relative to the image centre, as a fraction of the size."""
    e = img**2
    H, W = e.shape
    y, x = np.mgrid[:H, :W]
    return float((e * y).sum() / e.sum() / H - 0.5), float((e * x).sum() / e.sum() / W - 0.5)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def max_shifted_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation maximised over circular shifts (same slice at another position)."""
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    return float(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real.max() / a.size)


# (file, adapter options, kspace_shape, slices, recon_shape, sampled fraction, box, min energy in box)
CARTESIAN = [
    ("sigpy_brain8ch_poisson/cartesian_ksp.npy", {}, (8, 230, 180), 1, (230, 180), 0.124, 0.8, 0.9),
    ("bartws_brain8ch_poisson_ref/ksp.cfl", {}, (8, 230, 180), 1, (230, 180), 0.127, 0.8, 0.9),
    ("imagiology_phantom_1ch/rawdata.mat", {}, (1, 256, 256), 1, (256, 256), 1.0, 0.8, 0.85),
    ("marcsous_head8ch_dhe/head.mat", {"image_domain": True, "coil_axis": -1}, (8, 256, 256), 1, (256, 256), 1.0,
     0.8, 0.85),
    # double half echo, one coil: "channel" 0 holds readout rows 184..383, channel 1 rows 0..199 (16 in common)
    ("marcsous_head8ch_dhe/meas_MID00382_FID42164_clean_fl2_m400.mat", {}, (2, 384, 192), 1, (192, 192), 16 / 384,
     0.8, 0.9),
    ("marcsous_head8ch_dhe/meas_MID00382_FID42164_clean_fl2_m400.mat", {"merge_channels": True}, (1, 384, 192), 1,
     (192, 192), 1.0, 0.8, 0.9),
    # partial (half) echo + partial Fourier: the zero-filled image is blurred along the readout
    ("marcsous_head8ch_dhe/partial_echo.mat", {"kspace_var": "fwd"}, (2, 192, 192), 1, (192, 192), 0.172, 0.9, 0.9),
    ("marcsous_head8ch_dhe/partial_echo.mat", {"kspace_var": "rev"}, (2, 192, 192), 1, (192, 192), 0.174, 0.9, 0.9),
    ("twix_phantom/gre.dat", {}, (2, 320, 160), 1, (160, 160), 1.0, 0.8, 0.85),
    ("twix_phantom/epi.dat", {}, (2, 160, 80), 1, (80, 80), 1.0, 0.8, 0.85),
    ("twix_phantom/singlechannel_7T.dat", {}, (1, 512, 256), 1, (256, 256), 428 / 512, 0.8, 0.85),
    ("twix_phantom/meas_MID00273_FID117236_gre_bodycoil.dat", {}, (2, 256, 128), 2, (128, 128), 1.0, 0.8, 0.85),
]


@pytest.mark.parametrize("name, options, kshape, slices, recon, sampled, box, min_energy", CARTESIAN,
                         ids=[f"{c[0].split('/')[-1]}{'-' + c[1].get('kspace_var', 'merged') if c[1] else ''}"
                              for c in CARTESIAN])
def test_cartesian_set(realdata, name, options, kshape, slices, recon, sampled, box, min_energy):
    scan = open_scan(realdata / name, **options)
    assert scan.is_cartesian
    assert scan.kspace_shape == kshape and scan.n_coils == kshape[0] and scan.n_slices == slices
    assert scan.grid_shape == kshape[1:] and scan.recon_shape == recon
    assert scan.sampled_fraction == pytest.approx(sampled, abs=0.01)
    k = scan.kspace(0).numpy()
    a = np.abs(k).sum(0)
    peak = np.unravel_index(a.argmax(), a.shape)
    assert abs(peak[0] - kshape[1] // 2) <= 4 and abs(peak[1] - kshape[2] // 2) <= 4   # DC at the centre
    grid_img = zero_filled(scan)
    img = crop(grid_img, recon)
    # the readout oversampling is along H: cropping it away keeps (almost) all of the object
    assert (img**2).sum() / (grid_img**2).sum() > 0.98
    assert box_fraction(img, box) > min_energy
    dy, dx = com_offset(img)
    assert abs(dy) < 0.12 and abs(dx) < 0.12


def test_dhe_channels_are_half_echoes_and_merge_into_one_coil(realdata):
    """The DHE file's two "coils" are the forward and reverse half echoes of one coil (Bydder's dhe.m reads
    ``fwd = data(:,:,1); rev = data(:,:,2)``): read here with h5py as PROVENANCE.md says, each holds 200 of the
    384 readout samples; merged, the samples one channel alone holds are its own, and in the 16 common rows the
    aligned reverse echo (2 * merged - forward) agrees in phase with the forward one."""
    import h5py

    path = realdata / "marcsous_head8ch_dhe/meas_MID00382_FID42164_clean_fl2_m400.mat"
    with h5py.File(path, "r") as f:
        raw = f["data"][()]
    ch = (raw["real"] + 1j * raw["imag"]).reshape(2, 384, 192)             # (channel, readout, phase encode)
    rows = [np.flatnonzero(np.abs(c).sum(1) > 0) for c in ch]
    assert (rows[0][0], rows[0][-1], rows[0].size) == (184, 383, 200)
    assert (rows[1][0], rows[1][-1], rows[1].size) == (0, 199, 200)
    scan = open_scan(path)
    np.testing.assert_array_equal(scan.kspace(0).numpy(), ch.astype(np.complex64))
    merged = open_scan(path, merge_channels=True).kspace(0).numpy()[0]
    np.testing.assert_allclose(np.abs(merged[200:]), np.abs(ch[0, 200:]), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(np.abs(merged[:184]), np.abs(ch[1, :184]), rtol=1e-5, atol=1e-12)
    fwd, rev_aligned = ch[0, 186:198], 2 * merged[186:198] - ch[0, 186:198]   # the first 2 ADC samples left out
    assert abs(np.angle((rev_aligned * np.conj(fwd)).sum())) < 0.05
    assert np.linalg.norm(rev_aligned - fwd) < 0.2 * np.linalg.norm(fwd)


def test_every_twix_file_opens(realdata):
    files = sorted((realdata / "twix_phantom").glob("*.dat"))
    assert len(files) >= 4
    for f in files:
        scan = open_scan(f)
        assert scan.format == "twix" and scan.header["field_strength_T"] > 2.5
        assert scan.recon_shape[0] * 2 == scan.grid_shape[0]


def test_head_mat_image_domain_detected_like_the_adapter(realdata):
    auto = open_scan(realdata / "marcsous_head8ch_dhe/head.mat")
    adapter = open_scan(realdata / "marcsous_head8ch_dhe/head.mat", image_domain=True, coil_axis=-1)
    assert auto.attrs["image_domain"].startswith("coil images (detected")
    np.testing.assert_array_equal(auto.kspace(0).numpy(), adapter.kspace(0).numpy())


def test_bart_and_sigpy_brains_line_up(realdata):
    """The BART workshop and sigpy tutorial files hold the same axial slice: opened, their grids line up
    (same shape, no transposition, calibration squares both at the grid centre (115, 90)); the images are
    mirror images along H (the BART file's z axis runs the other way), i.e. they correlate after a flip of H
    and not as they are."""
    sig = open_scan(realdata / "sigpy_brain8ch_poisson/cartesian_ksp.npy")
    bart = open_scan(realdata / "bartws_brain8ch_poisson_ref/ksp.cfl")
    assert sig.kspace_shape == bart.kspace_shape == (8, 230, 180)
    for scan, half in ((sig, 11), (bart, 9)):
        m = scan.acquired_mask
        assert m[115 - half: 115 + half + 1, 90 - half: 90 + half + 1].all()          # fully sampled centre
        assert not m[115 - half - 3: 115 + half + 4, 90 - half - 3: 90 + half + 4].all()
    a, b = zero_filled(sig), zero_filled(bart)
    assert max_shifted_ncc(a, b[::-1]) > 0.95
    assert max_shifted_ncc(a, b) < 0.85 and max_shifted_ncc(a, b[:, ::-1]) < 0.85
    # both heads are taller than wide in [H, W] (a transposed reader would swap that)
    for img in (a, b):
        e = img**2
        y, x = np.mgrid[: e.shape[0], : e.shape[1]]
        var_h = (e * (y - (e * y).sum() / e.sum()) ** 2).sum()
        var_w = (e * (x - (e * x).sum() / e.sum()) ** 2).sum()
        assert var_h > 1.2 * var_w


def test_bart_reference_matches_zero_filled(realdata):
    scan = open_scan(realdata / "bartws_brain8ch_poisson_ref/ksp.cfl")
    assert scan.reference_kind == "sense" and scan.attrs["reference_file"].endswith("img.cfl")
    ref = scan.reference(0)
    zf = crop(zero_filled(scan), scan.recon_shape)
    assert ref.shape == zf.shape == (230, 180)
    assert ncc(zf, ref) > 0.9
    assert ncc(zf, ref[::-1]) < 0.7 and ncc(zf, ref[:, ::-1]) < 0.9


# ------------------------------------------------------------------------------------------- radial
def gridded(scan, i: int = 0) -> np.ndarray:
    """RSS of the adjoint NUFFT with a ramp DCF (Hann-apodised), over the full oversampled FOV.

    To keep it fast, only the central half of k-space is gridded, on an N/2 grid (the same FOV at half the
    resolution); the apodisation keeps the streaks of the undersampled outer k-space from dominating."""
    import torchkbnufft as tkbn

    traj = scan.trajectory_tensor()
    k = scan.kspace(i)
    keep = traj.abs().max(0).values < np.pi / 2
    traj, k = 2 * traj[:, keep], k[:, keep]
    n = scan.grid_shape[0] // 2
    r = torch.sqrt((traj**2).sum(0))
    dcf = r * torch.cos(r / 2) ** 2
    adj = tkbn.KbNufftAdjoint(im_size=(n, n), numpoints=4)
    return adj((k * dcf)[None], traj)[0].abs().pow(2).sum(0).sqrt().numpy()


# (file, kspace_shape, grid, recon, disc radius the object lies in (fraction of the oversampled FOV), min energy)
RADIAL = [
    ("gpunufft_radial_cardiac12ch/radial_cardiac_25_projections.mat", (12, 256 * 25), (256, 256), (128, 128),
     0.4, 0.75),
    ("smsnlinv_radial_phantom16ch/kMB1_bottom_SP29.cfl", (16, 384 * 29), (384, 384), (192, 192), 0.35, 0.8),
    ("smsnlinv_radial_phantom16ch/kMB1_top_SP29.cfl", (16, 384 * 29), (384, 384), (192, 192), 0.35, 0.8),
]


@pytest.mark.parametrize("name, kshape, grid, recon, radius, min_energy", RADIAL,
                         ids=[r[0].split("/")[-1] for r in RADIAL])
def test_radial_set(realdata, name, kshape, grid, recon, radius, min_energy):
    scan = open_scan(realdata / name)
    assert not scan.is_cartesian and scan.attrs["trajectory_kind"] == "radial"
    assert scan.kspace_shape == kshape and scan.grid_shape == grid and scan.recon_shape == recon
    traj = scan.trajectory
    assert traj.shape == (2, kshape[1]) and traj.min() >= -np.pi and traj.astype(np.float64).max() < np.pi
    img = gridded(scan)
    # energy spread evenly would put pi*radius^2 (0.38-0.5) in the disc; the object puts much more there
    assert disc_fraction(img, radius) > min_energy
    dy, dx = com_offset(img)
    assert abs(dy) < 0.06 and abs(dx) < 0.06


def test_sms_file_opens_as_two_slices(realdata):
    scan = open_scan(realdata / "smsnlinv_radial_phantom16ch/kMB2_aligned_SP29.cfl")
    assert scan.n_slices == 2 and scan.kspace_shape == (16, 384 * 29)
    assert scan.attrs["trajectory_file"].endswith("traj_MB2_aligned.cfl")
    assert scan.header["sms_multiband"] == 2 and "SMS model" in scan.header["note"]
    mb1 = open_scan(realdata / "smsnlinv_radial_phantom16ch/kMB1_top_SP29.cfl")
    np.testing.assert_array_equal(scan.trajectory, mb1.trajectory)       # aligned partitions: same spokes
    assert not np.array_equal(scan.kspace(0).numpy(), scan.kspace(1).numpy())
