"""NumPy .npy/.npz reader: default layouts, the documented options, and the real sigpy Poisson-disc scan."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import InvalidDataError, ScanError
from workbench.io import open_scan
from workbench.physics.fft import ifft2c, rss


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_default_layouts_2d_3d_4d(tmp_path, rng):
    k2, k3, k4 = crandn(rng, 10, 12), crandn(rng, 4, 10, 12), crandn(rng, 3, 4, 10, 12)
    for name, k in (("a", k2), ("b", k3), ("c", k4)):
        np.save(tmp_path / f"{name}.npy", k)
    s2, s3, s4 = (open_scan(tmp_path / f"{n}.npy") for n in "abc")
    assert (s2.n_slices, s2.n_coils, s2.kspace_shape) == (1, 1, (1, 10, 12))
    assert (s3.n_slices, s3.n_coils, s3.kspace_shape) == (1, 4, (4, 10, 12))
    assert (s4.n_slices, s4.n_coils, s4.kspace_shape) == (3, 4, (4, 10, 12))
    np.testing.assert_array_equal(s2.kspace(0).numpy()[0], k2)
    np.testing.assert_array_equal(s3.kspace(0).numpy(), k3)
    np.testing.assert_array_equal(s4.kspace(2).numpy(), k4[2])
    assert s4.format == "npy" and s4.is_cartesian and s4.fully_sampled and s4.recon_shape == (10, 12)


def test_coil_and_slice_axes_options(tmp_path, rng):
    k = crandn(rng, 10, 12, 4)  # [H, W, C]
    np.save(tmp_path / "hwc.npy", k)
    s = open_scan(tmp_path / "hwc.npy", coil_axis=-1)
    np.testing.assert_array_equal(s.kspace(0).numpy(), np.transpose(k, (2, 0, 1)))
    # No coil axis: a 3D array is [S, H, W] single-coil.
    s = open_scan(tmp_path / "hwc.npy", coil_axis=None)
    assert (s.n_slices, s.n_coils, s.kspace_shape) == (10, 1, (1, 12, 4))
    np.testing.assert_array_equal(s.kspace(3).numpy()[0], k[3])
    # [H, W, S, C] (BART-like order) with both axes given; strings as the CLI passes them.
    k4 = crandn(rng, 10, 12, 3, 4)
    np.save(tmp_path / "hwsc.npy", k4)
    s = open_scan(tmp_path / "hwsc.npy", coil_axis="3", slice_axis="2")
    assert (s.n_slices, s.n_coils) == (3, 4)
    np.testing.assert_array_equal(s.kspace(1).numpy(), np.transpose(k4[:, :, 1, :], (2, 0, 1)))
    with pytest.raises(ScanError, match="coil_axis=5 is out of range"):
        open_scan(tmp_path / "hwc.npy", coil_axis=5)


def test_image_domain_and_readout_oversampling(tmp_path, rng):
    imgs = crandn(rng, 2, 16, 8)
    np.save(tmp_path / "imgs.npy", imgs)
    s = open_scan(tmp_path / "imgs.npy", image_domain=True, readout_oversampling=2)
    # Explicit centred DFT (k-space centre at N//2), independent of the library's FFT helpers.
    def dft(n):
        i = np.arange(n) - n // 2
        return np.exp(-2j * np.pi * np.outer(i, i) / n) / np.sqrt(n)
    expected = np.einsum("hy,cyx,wx->chw", dft(16), imgs.astype(np.complex128), dft(8))
    np.testing.assert_allclose(s.kspace(0).numpy(), expected, atol=1e-5)
    assert s.recon_shape == (8, 8) and s.grid_shape == (16, 8)
    assert s.acquired_mask is None


def test_npz_picks_kspace_reference_and_reports_ambiguity(tmp_path, rng):
    k = crandn(rng, 4, 16, 12)
    ref = np.abs(rng.standard_normal((8, 12))).astype(np.float32)
    np.savez(tmp_path / "named.npz", ksp=k, reference=ref, notes=np.arange(3))
    s = open_scan(tmp_path / "named.npz")
    np.testing.assert_array_equal(s.kspace(0).numpy(), k)
    np.testing.assert_array_equal(s.reference(0), ref)
    assert s.recon_shape == (8, 12) and s.reference_kind == "stored"
    np.savez(tmp_path / "two.npz", a=k, b=k[:2])
    with pytest.raises(InvalidDataError) as e:
        open_scan(tmp_path / "two.npz")
    msg = str(e.value)
    assert "two.npz" in msg and "a (4, 16, 12)" in msg and "b (2, 16, 12)" in msg and "kspace_var" in msg
    s = open_scan(tmp_path / "two.npz", kspace_var="b")
    assert s.n_coils == 2
    with pytest.raises(InvalidDataError, match="kspace_var='c' not found"):
        open_scan(tmp_path / "two.npz", kspace_var="c")
    np.savez(tmp_path / "badref.npz", ksp=k, reference=np.ones((3, 8, 12)))
    with pytest.raises(InvalidDataError, match="reference has shape"):
        open_scan(tmp_path / "badref.npz")


def test_real_imag_last_axis_and_undersampling_mask(tmp_path, rng):
    k = crandn(rng, 2, 8, 10)
    k[..., ::3] = 0
    np.save(tmp_path / "ri.npy", np.stack([k.real, k.imag], axis=-1))
    s = open_scan(tmp_path / "ri.npy")
    np.testing.assert_array_equal(s.kspace(0).numpy(), k)
    cols = np.arange(10) % 3 != 0
    np.testing.assert_array_equal(s.acquired_mask, np.broadcast_to(cols, (8, 10)))
    assert s.sampled_fraction == pytest.approx(cols.mean())


def test_noncartesian_npz_with_trajectory(tmp_path, rng):
    n_read, n_spokes, c = 32, 10, 3
    r = (np.arange(n_read) - n_read // 2) / n_read  # cycles/sample in [-0.5, 0.5)
    ang = np.pi * np.arange(n_spokes) / n_spokes
    traj = np.stack([np.outer(r, np.cos(ang)), np.outer(r, np.sin(ang))], axis=-1)  # [read, spokes, 2]
    data = crandn(rng, n_read, n_spokes, c)  # [read, spokes, coils] (MATLAB-like)
    dcf = np.abs(r)[:, None].repeat(n_spokes, 1)
    np.savez(tmp_path / "radial.npz", kdata=data, traj=traj, dens=dcf)
    s = open_scan(tmp_path / "radial.npz", dcf_var="dens", readout_oversampling=2)
    K = n_read * n_spokes
    assert not s.is_cartesian and s.kspace_shape == (c, K) and s.n_coils == c
    assert s.grid_shape == (n_read, n_read) and s.recon_shape == (n_read // 2, n_read // 2)
    np.testing.assert_array_equal(s.kspace(0).numpy(), data.reshape(K, c).T)
    expected = 2 * np.pi * traj.reshape(K, 2).T
    np.testing.assert_allclose(s.trajectory, np.where(expected >= np.pi, expected - 2 * np.pi, expected), atol=1e-6)
    np.testing.assert_allclose(s.dcf, dcf.reshape(-1))
    assert s.attrs["trajectory_units"] == "cycles"
    # A flat trajectory in radians needs grid_shape.
    np.savez(tmp_path / "flat.npz", kdata=data.reshape(K, c).T, traj=expected)
    with pytest.raises(ScanError, match="grid_shape"):
        open_scan(tmp_path / "flat.npz")
    s = open_scan(tmp_path / "flat.npz", grid_shape="32,32")
    assert s.grid_shape == (32, 32) and s.attrs["trajectory_units"] == "radians"


def test_npy_with_sibling_trajectory_file(tmp_path, rng):
    k = crandn(rng, 2, 50)
    coord = rng.uniform(-20, 20, size=(50, 2))  # 1/FOV units for a 40-grid
    np.save(tmp_path / "ksp.npy", k)
    np.save(tmp_path / "coord.npy", coord)
    s = open_scan(tmp_path / "ksp.npy", trajectory_var="coord")
    assert s.grid_shape == (40, 40) and s.attrs["trajectory_units"] == "fov"
    np.testing.assert_allclose(s.trajectory, 2 * np.pi * coord.T / 40, atol=1e-6)


def test_pickled_object_array_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidDataError, match="obj.npy.*pickled"):
        open_scan(tmp_path / "obj.npy")


def test_real_array_is_not_kspace(tmp_path):
    np.save(tmp_path / "real.npy", np.ones((4, 8, 8), np.float32))
    with pytest.raises(InvalidDataError, match="not complex k-space"):
        open_scan(tmp_path / "real.npy")


# --------------------------------------------------------------------------------------------------------
# Real data: sigpy's 8-channel brain, 2D Poisson-disc (both axes phase encodes), R ~ 8.


def test_sigpy_brain_poisson_npy(realdata):
    path = realdata / "sigpy_brain8ch_poisson" / "cartesian_ksp.npy"
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = np.load(path, allow_pickle=False)
    scan = open_scan(path)
    assert scan.format == "npy" and scan.is_cartesian
    assert (scan.n_slices, scan.n_coils, scan.kspace_shape) == (1, 8, (8, 230, 180))
    k = scan.kspace(0).numpy()
    np.testing.assert_array_equal(k, raw)  # orientation: [C, H, W] exactly as stored
    # 2D mask from the non-zero samples, ~12.4 % of the grid, with a fully sampled calibration square.
    mask = scan.acquired_mask
    assert mask.shape == (230, 180)
    assert scan.sampled_fraction == pytest.approx(0.124, abs=0.002)
    assert not (mask == mask[0]).all(), "Poisson-disc is 2D, not a line mask"
    assert mask[115 - 8 : 115 + 8, 90 - 8 : 90 + 8].all()
    # Zero-filled RSS: energy concentrated in the object, centred in the image. The head nearly fills this FOV
    # (rows 6..228 of 230 are above 10 % of the maximum), so the box is the central 80 % (70 % holds 79 %).
    img = rss(ifft2c(scan.kspace(0))).numpy().astype(np.float64)

    def box_fraction(image, frac=0.8):
        e = image**2
        h, w = e.shape
        bh, bw = int(frac * h), int(frac * w)
        return e[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw].sum() / e.sum()

    assert box_fraction(img) > 0.9
    e = img**2
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (e * yy).sum() / e.sum(), (e * xx).sum() / e.sum()
    assert abs(cy - h / 2) < 0.1 * h and abs(cx - w / 2) < 0.1 * w  # measured: (95.7, 96.2) of (230, 180)
    # A plain (unshifted) inverse FFT puts the head in the corners (56 % in the box): the centring matters.
    wrong = np.sqrt((np.abs(np.fft.ifft2(raw)) ** 2).sum(0))
    assert box_fraction(wrong) < 0.7


def test_channels_holding_different_samples_give_their_common_mask(tmp_path, rng):
    # two "coils" that each hold one half of the readout (plus 4 common rows): not coils of one acquisition
    k = crandn(rng, 2, 32, 16)
    k[0, :14] = 0
    k[1, 18:] = 0
    np.save(tmp_path / "halves.npy", k)
    scan = open_scan(tmp_path / "halves.npy")
    expected = np.zeros((32, 16), dtype=bool)
    expected[14:18] = True
    np.testing.assert_array_equal(scan.acquired_mask, expected)
    assert any("different k-space samples" in n for n in scan.attrs["notes"])
