"""workbench.simulate: determinism, physics of the simulated acquisition, and the cached demo file.

References are computed independently here with numpy's FFT (not the project's fft2c), explicit RSS, empirical
noise statistics, and the ISMRMRD schema classes."""

import json
import os

import h5py
import numpy as np
import pytest
from scipy import ndimage

from workbench import simulate
from numpy_reference import np_fft2c, np_ifft2c  # noqa: E402
from numpy_reference import np_crop as crop  # noqa: E402

AX = (-2, -1)


def laplacian(x):
    return np.roll(x, 1, -1) + np.roll(x, -1, -1) + np.roll(x, 1, -2) + np.roll(x, -1, -2) - 4 * x


ARRAYS = ("kspace", "image", "maps", "reference", "target", "head_mask", "wm_mask")


def test_same_seed_identical_other_seed_different():
    kw = dict(shape=(64, 64), n_coils=None, contrast="random", snr=None, noise_correlation=None,
              rotation_deg=None, scale=None, shift_mm=None, readout_oversampling=2)
    a = simulate.generate_slice(123, **kw)
    b = simulate.generate_slice(np.random.default_rng(123), **kw)
    c = simulate.generate_slice(124, **kw)
    for key in ARRAYS:
        assert np.array_equal(a[key], b[key]), key
    assert a["params"].to_dict() == b["params"].to_dict()
    assert a["slice_position"] == b["slice_position"]
    assert not np.array_equal(a["kspace"], c["kspace"]) if a["kspace"].shape == c["kspace"].shape else True
    assert a["params"].to_dict() != c["params"].to_dict()


def test_shapes_coils_and_bad_parameters():
    s = simulate.generate_slice(0, shape=(96, 80), n_coils=9, readout_oversampling=2, slice_position=30.0)
    assert s["kspace"].shape == (9, 192, 80) and s["kspace"].dtype == np.complex64
    assert s["maps"].shape == (9, 192, 80) and s["maps"].dtype == np.complex64
    assert s["image"].shape == (192, 80)
    assert s["reference"].shape == (96, 80) and s["reference"].dtype == np.float32
    assert s["slice_position"] == 30.0
    s1 = simulate.generate_slice(0, shape=(64, 48), n_coils=16, readout_oversampling=1)
    assert s1["kspace"].shape == (16, 64, 48)
    for bad in (dict(readout_oversampling=3), dict(contrast="flair"), dict(slice_position=500.0),
                dict(shape=(8, 8)), dict(n_coils=0)):
        with pytest.raises(ValueError):
            simulate.generate_slice(0, **{"shape": (64, 64), **bad})
    # random coil count lies in the documented 8..16
    counts = {simulate.generate_slice(seed, shape=(32, 32), n_coils=None)["kspace"].shape[0] for seed in range(6)}
    assert counts <= set(range(8, 17)) and len(counts) > 1


def test_kspace_is_fft_of_coil_images_plus_correlated_noise():
    s = simulate.generate_slice(7, shape=(128, 128), n_coils=8, noise_correlation=0.4, snr=25.0)
    maps, image, k = s["maps"].astype(np.complex128), s["image"].astype(np.complex128), s["kspace"]
    # maps are normalised: sum_c |S_c|^2 = 1
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, atol=1e-5)
    residual = (k - np_fft2c(maps * image[None])).reshape(8, -1)
    emp = residual @ residual.conj().T / residual.shape[1]
    cov = s["noise_cov"].astype(np.complex128)
    assert np.linalg.norm(emp - cov) / np.linalg.norm(cov) < 0.05
    offdiag = np.abs(cov - np.diag(np.diag(cov))).max() / np.real(np.diag(cov)).mean()
    assert offdiag > 0.05  # the requested correlation is really there
    # noise is circular complex Gaussian: real and imaginary parts have equal variance, ~no pseudo-covariance
    pseudo = residual @ residual.T / residual.shape[1]
    assert np.abs(pseudo).max() < 0.05 * np.real(np.diag(cov)).mean()


def test_reference_is_cropped_rss_of_kspace():
    s = simulate.generate_slice(3, shape=(96, 96), n_coils=10, readout_oversampling=2)
    rss = np.sqrt((np.abs(np_ifft2c(s["kspace"].astype(np.complex128))) ** 2).sum(0))
    np.testing.assert_allclose(s["reference"], crop(rss, (96, 96)), rtol=1e-4, atol=1e-6 * rss.max())
    np.testing.assert_allclose(s["target"], crop(np.abs(s["image"]), (96, 96)), rtol=1e-6)
    # background-free object: zero outside the head, and the whole head inside the reconstructed FOV
    assert np.all(s["image"][~s["head_mask"]] == 0)
    outside_fov = s["head_mask"].copy()
    outside_fov[48:48 + 96] = False
    assert not outside_fov.any()


@pytest.mark.parametrize("snr,corr", [(25.0, 0.0), (35.0, 0.4)])
def test_measured_snr_in_rss_matches_request(snr, corr):
    s = simulate.generate_slice(11, shape=(160, 160), n_coils=12, snr=snr, noise_correlation=corr,
                                slice_position=30.0)
    rss = np.sqrt((np.abs(np_ifft2c(s["kspace"].astype(np.complex128))) ** 2).sum(0))
    wm = s["wm_mask"]
    assert wm.sum() > 500
    truth = np.abs(s["image"])[wm]
    measured = truth.mean() / np.std(rss[wm] - truth)
    assert measured == pytest.approx(snr, rel=0.1)


def test_random_snr_in_default_range():
    for seed in (1, 2):
        s = simulate.generate_slice(seed, shape=(128, 128), snr=None, slice_position=20.0)
        rss = np.sqrt((np.abs(np_ifft2c(s["kspace"].astype(np.complex128))) ** 2).sum(0))
        wm = s["wm_mask"]
        truth = np.abs(s["image"])[wm]
        measured = truth.mean() / np.std(rss[wm] - truth)
        assert 20 * 0.9 <= measured <= 40 * 1.1


def test_coil_maps_are_smooth_and_localised():
    s = simulate.generate_slice(5, shape=(128, 128), n_coils=12, readout_oversampling=2)
    head = ndimage.binary_erosion(s["head_mask"], iterations=2)
    maps, image = s["maps"], s["image"]
    rough_maps = max(np.linalg.norm(laplacian(m)[head]) / np.linalg.norm(m[head]) for m in maps)
    rough_image = np.linalg.norm(laplacian(image)[head]) / np.linalg.norm(image[head])
    assert rough_image > 0.1  # the measure does see anatomy-scale structure
    assert rough_maps < 0.02
    # each coil is most sensitive near its own position (outside the head), not uniformly
    p = s["params"]
    rows = (np.arange(maps.shape[1]) - maps.shape[1] // 2) * s["pixel_mm"]
    cols = (np.arange(maps.shape[2]) - maps.shape[2] // 2) * s["pixel_mm"]
    for c in range(p.n_coils):
        mag = np.where(head, np.abs(maps[c]), 0)
        i, j = np.unravel_index(np.argmax(mag), mag.shape)
        nearest = np.hypot(rows[i] - p.coil_positions_mm[:, 0], cols[j] - p.coil_positions_mm[:, 1]).argmin()
        assert nearest == c


def test_contrasts_follow_the_spin_echo_equation():
    for contrast, (tr, te) in simulate.SEQUENCES.items():
        s = simulate.generate_slice(2, shape=(128, 128), contrast=contrast, slice_position=18.0, bias=0.0)
        mag = np.abs(s["image"])
        assert s["csf_mask"].sum() > 20
        wm, csf = mag[s["wm_mask"]].mean(), mag[s["csf_mask"]].mean()
        sig = {t: pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)
               for t, (pd, t1, t2) in simulate.TISSUE_PROPERTIES.items()}
        # pure-tissue regions keep the signal equation's ratio (up to the smooth receive bias and texture)
        assert csf / wm == pytest.approx(sig["csf"] / sig["wm"], rel=0.2), contrast
    t1 = simulate.spin_echo_intensities(*simulate.SEQUENCES["t1"])
    t2 = simulate.spin_echo_intensities(*simulate.SEQUENCES["t2"])
    assert t1["wm"] > t1["gm"] > t1["csf"]  # T1-weighted: white matter bright, CSF dark
    assert t2["csf"] > t2["gm"] > t2["wm"]  # T2-weighted: CSF bright


def test_volume_shares_coils_and_noise_level():
    v = simulate.generate_volume(4, slice_positions=[0.0, 20.0, 40.0], shape=(64, 64), n_coils=8)
    assert v["kspace"].shape == (3, 8, 64, 64) and v["reference"].shape == (3, 64, 64)
    assert v["maps"].shape == (8, 64, 64)  # one coil array for the volume
    assert not np.array_equal(v["image"][0], v["image"][2])


# ----------------------------------------------------------------------------------------------- demo file


def test_demo_file_is_valid_fastmri(tmp_path):
    import ismrmrd.xsd

    path = simulate.demo_scan_path()
    assert str(path).startswith(os.environ["WORKBENCH_CACHE"])
    with h5py.File(path, "r") as f:
        k = f["kspace"][()]
        ref = f["reconstruction_rss"][()]
        attrs = dict(f.attrs)
        header = ismrmrd.xsd.CreateFromDocument(f["ismrmrd_header"][()].decode())
    assert k.shape == (6, 12, 512, 256) and k.dtype == np.complex64
    assert ref.shape == (6, 256, 256)
    # reference = fastMRI's rss(ifft2c(k)) centre-cropped (checked on the first and the middle slice)
    for i in (0, 3):
        rss = np.sqrt((np.abs(np_ifft2c(k[i].astype(np.complex128))) ** 2).sum(0))
        np.testing.assert_allclose(ref[i], crop(rss, (256, 256)), rtol=1e-4, atol=1e-6 * ref.max())
    assert attrs["acquisition"] == "AXT1" and attrs["patient_id"] == "demo"
    assert attrs["max"] == pytest.approx(ref.max()) and attrs["norm"] == pytest.approx(np.linalg.norm(ref), rel=1e-5)
    assert json.loads(attrs["simulation"])["settings"]["n_coils"] == 12
    enc = header.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (512, 256)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (256, 256)
    assert enc.encodedSpace.fieldOfView_mm.x == 2 * enc.reconSpace.fieldOfView_mm.x
    assert enc.trajectory.value == "cartesian"
    assert enc.encodingLimits.kspace_encoding_step_1.maximum == 255
    assert enc.encodingLimits.kspace_encoding_step_1.center == 128
    assert header.acquisitionSystemInformation.systemFieldStrength_T == 3.0
    assert header.acquisitionSystemInformation.receiverChannels == 12
    assert header.sequenceParameters.TR and header.sequenceParameters.TE


def test_demo_file_opens_with_the_reader():
    from workbench.io import open_scan

    scan = open_scan(simulate.demo_scan_path())
    assert scan.n_slices == 6 and scan.n_coils == 12
    assert tuple(scan.kspace_shape) == (12, 512, 256)
    assert tuple(scan.recon_shape) == (256, 256)
    assert scan.fully_sampled
    k = scan.kspace(3).numpy()
    rss = np.sqrt((np.abs(np_ifft2c(k.astype(np.complex128))) ** 2).sum(0))
    np.testing.assert_allclose(scan.reference(3), crop(rss, (256, 256)), rtol=1e-4, atol=1e-3)


def _tiny_volume(**_):
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 2, 16, 8)) + 1j * rng.standard_normal((2, 2, 16, 8))).astype(np.complex64)
    rss = np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(1))
    return {"kspace": k, "reference": crop(rss, (8, 8)).astype(np.float32),
            "params": simulate.draw_params(0, n_coils=2), "noise_std": 1.0}


def test_demo_cache_reuse_regenerate_and_atomic_write(tmp_path, monkeypatch):
    import workbench.io.fastmri as fm

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(simulate, "generate_volume", lambda *a, **kw: calls.append(1) or _tiny_volume())
    monkeypatch.setattr(simulate, "DEMO_SETTINGS", {**simulate.DEMO_SETTINGS, "shape": [8, 8]})

    real_write = fm.write_fastmri

    def crashing_write(path, *a, **kw):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n half a file")
        raise OSError("disk full")

    monkeypatch.setattr(fm, "write_fastmri", crashing_write)
    with pytest.raises(OSError):
        simulate.demo_scan_path()
    assert list(tmp_path.iterdir()) == []  # neither the final file nor a temporary one is left

    monkeypatch.setattr(fm, "write_fastmri", real_write)
    stale = tmp_path / "demo_axt1_v0_000000000000.h5"
    stale.write_bytes(b"old")
    path = simulate.demo_scan_path()
    assert path.exists() and len(calls) == 2 and not stale.exists()
    mtime = path.stat().st_mtime_ns
    assert simulate.demo_scan_path() == path and len(calls) == 2  # reused, not regenerated
    assert path.stat().st_mtime_ns == mtime
    simulate.demo_scan_path(regenerate=True)
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_cache_dir_precedence_and_resources(monkeypatch, tmp_path):
    from pathlib import Path

    from workbench import paths

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "explicit" and (tmp_path / "explicit").is_dir()
    monkeypatch.delenv("WORKBENCH_CACHE")
    assert paths.cache_dir(create=False) == tmp_path / "xdg" / "mri-workbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_dir(create=False) == tmp_path / "home" / ".cache" / "mri-workbench"
    # from a checkout, the resources are the repository's top-level folder
    repo = Path(__file__).resolve().parents[1]
    assert paths.resources_dir() == repo / "resources"
    assert paths.resource_path("anatomy", "NOTICE.md").is_file()
    anatomy = simulate.load_anatomy()
    assert anatomy.gm.shape == anatomy.wm.shape == anatomy.csf.shape and anatomy.gm.shape[0] >= 24
    assert anatomy.z_range[0] < 0 < anatomy.z_range[1]


def test_phantom_subject_is_a_container_with_inserts_and_no_rim():
    kw = dict(shape=(128, 128), n_coils=4, snr=30.0, subject="phantom", slice_position=20.0)
    a, b = simulate.generate_slice(5, **kw), simulate.generate_slice(5, **kw)
    assert all(np.array_equal(a[k], b[k]) for k in ARRAYS)
    assert not np.array_equal(a["image"], simulate.generate_slice(6, **kw)["image"])
    # nothing outside the container; the k-space is the FFT of the coil images plus noise, as for heads
    assert np.abs(a["image"][~a["head_mask"]]).max() == 0
    coil_images = a["maps"] * a["image"][None]
    noise = np_ifft2c(a["kspace"].astype(np.complex128)) - coil_images
    assert np.std(noise) == pytest.approx(a["noise_std"], rel=0.05)
    # the SNR is defined over the uniform liquid, as over white matter for heads
    rss = np.sqrt((np.abs(np_ifft2c(a["kspace"].astype(np.complex128))) ** 2).sum(0))
    wm = a["wm_mask"]
    truth = np.abs(a["image"])[wm]
    assert wm.sum() > 500 and truth.mean() / np.std(rss[wm] - truth) == pytest.approx(30.0, rel=0.15)
    # no skull-like shell: in every phantom the 3-6 mm band inside the border is as bright as the liquid further
    # in (heads' scalp and skull put that ratio anywhere from 0.4 to 1.7)
    ratios = []
    for seed in range(8):
        s = simulate.generate_slice(seed, **kw)
        inside = ndimage.distance_transform_edt(s["head_mask"]) * s["pixel_mm"]
        mag = np.abs(s["image"]) / np.maximum(np.abs(s["image"]).max(), 1e-12)
        band, core = (inside > 3) & (inside < 6), inside > 12
        ratios.append(np.median(mag[band]) / np.median(mag[core & s["wm_mask"]]))
    assert all(0.85 < r < 1.2 for r in ratios), ratios
    with pytest.raises(ValueError, match="subject"):
        simulate.generate_slice(5, shape=(64, 64), subject="knee")


def test_a_phantom_that_fills_the_field_of_view_reaches_the_readout_crop_and_keeps_its_coils_outside():
    # fill_fov: as the real twix phantoms once the readout oversampling is cropped: the container spans 88-98 %
    # of the columns and reaches (or passes) the crop along the rows; the coils stay outside it
    for seed in range(6):
        s = simulate.generate_slice(seed, shape=(96, 96), readout_oversampling=2, n_coils=4, subject="phantom",
                                    fill_fov=True, fov_mm=220.0, coil_model="loop", slice_position=20.0)
        support = s["head_mask"][48:144]  # the reconstructed rows of the 192-row grid
        cols = np.flatnonzero(support.any(0))
        assert 0.85 <= (cols[-1] - cols[0] + 1) / 96 <= 1.0 and not support[:, 0].any() and not support[:, -1].any()
        assert support[0].any() or support[-1].any() or support.any(1).sum() >= 90
        rr, cc = np.nonzero(s["head_mask"])
        reach = np.hypot((rr - 96) * s["pixel_mm"], (cc - 48) * s["pixel_mm"]).max()
        assert np.hypot(*np.asarray(s["params"].coil_positions_mm).T).min() > reach
    # without fill_fov the container keeps its margin (65-170 mm in a 220 mm field of view)
    plain = simulate.generate_slice(0, shape=(96, 96), readout_oversampling=2, n_coils=4, subject="phantom",
                                    fov_mm=220.0, slice_position=20.0)
    assert not plain["head_mask"][48:144][[0, -1]].any()


REAL_KW = dict(shape=(128, 128), n_coils=8, snr=30.0, noise_correlation=0.3, subject="real",
               rotation_deg=None, flip_lr=None, scale=None, shift_mm=None)


def test_real_subject_is_deterministic_and_acquired_like_the_others():
    a, b = simulate.generate_slice(5, **REAL_KW), simulate.generate_slice(5, **REAL_KW)
    assert all(np.array_equal(a[k], b[k]) for k in ARRAYS)
    assert not np.array_equal(a["image"], simulate.generate_slice(6, **REAL_KW)["image"])
    head, wm = a["head_mask"], a["wm_mask"]
    assert np.abs(a["image"][~head]).max() == 0 and head.sum() > 2000 and np.abs(a["image"][head]).min() > 0
    # k-space = FFT of the coil images plus noise of the reported covariance
    maps, image, k = a["maps"].astype(np.complex128), a["image"].astype(np.complex128), a["kspace"]
    residual = (k - np_fft2c(maps * image[None])).reshape(8, -1)
    emp = residual @ residual.conj().T / residual.shape[1]
    cov = a["noise_cov"].astype(np.complex128)
    assert np.linalg.norm(emp - cov) / np.linalg.norm(cov) < 0.05
    # the requested SNR, measured on the RSS over the SNR region: the brighter half of the support
    rss = np.sqrt((np.abs(np_ifft2c(k.astype(np.complex128))) ** 2).sum(0))
    truth = np.abs(a["image"])[wm]
    assert wm.sum() > 500 and truth.mean() / np.std(rss[wm] - truth) == pytest.approx(30.0, rel=0.15)
    mag = np.abs(a["image"])
    assert wm.sum() < 0.6 * head.sum() and mag[wm].mean() > 1.5 * mag[head & ~wm].mean()


def test_real_slices_are_placed_at_their_pixel_size_and_pose():
    real = simulate.load_real_slices()
    j = int(np.flatnonzero(real.source == 0)[3])
    one = simulate.RealSlices(mag=real.mag[j:j + 1], pixel_mm=real.pixel_mm[j:j + 1], source=np.zeros(1, int),
                              sources=("one",), path="")
    src, mm = one.mag[0], float(one.pixel_mm[0])
    n = src.shape[0]

    def place(**pose):
        p = simulate.draw_params(0, bias=0.0, **pose)
        return simulate.make_real(np.random.default_rng(0), p, (n, n), mm, 0.0, one)

    plain = place()
    expect_head = ndimage.binary_fill_holes(src > simulate.REAL_SUPPORT_LEVEL)
    assert np.array_equal(plain["head_mask"], expect_head)
    # at the source's own pixel size, centred and unrotated: the stored magnitude pixel for pixel
    np.testing.assert_allclose(np.abs(plain["image"]), np.where(expect_head, src, 0), rtol=1e-5, atol=1e-6)
    # a left-right flip mirrors the columns about the grid centre (column c <- n - c)
    flipped = np.abs(place(flip_lr=True)["image"])
    np.testing.assert_allclose(flipped[:, 1:], np.where(expect_head, src, 0)[:, :0:-1], rtol=1e-5, atol=1e-6)
    # twice the scale on a grid twice as large: four times the head's area
    p2 = simulate.draw_params(0, bias=0.0, scale=2.0)
    big = simulate.make_real(np.random.default_rng(0), p2, (2 * n, 2 * n), mm, 0.0, one)
    assert big["head_mask"].sum() / expect_head.sum() == pytest.approx(4.0, rel=0.03)
    # each source is equally likely whatever its slice count; then each of its slices
    disc = np.zeros((6, 16, 16), np.float32)
    disc[:, 4:12, 4:12] = np.arange(1, 7)[:, None, None]  # slice j has the value j + 1
    fake = simulate.RealSlices(mag=disc, pixel_mm=np.ones(6), source=np.array([0, 1, 2, 2, 2, 2]),
                               sources=("a", "b", "c"), path="")
    rng, p = np.random.default_rng(1), simulate.draw_params(0, bias=0.0)
    drawn = [int(round(np.abs(simulate.make_real(rng, p, (16, 16), 1.0, 0.0, fake)["image"]).max())) - 1
             for _ in range(600)]
    counts = np.bincount(drawn, minlength=6)
    assert np.allclose(counts[:2] / 600, 1 / 3, atol=0.06) and np.allclose(counts[2:] / 600, 1 / 12, atol=0.04)


def test_real_slices_are_not_upsampled_past_max_upsampling():
    """A 2 mm slice on a 1 mm grid has next to nothing in the outer half of k-space (what a network trained on it
    learns to leave empty); with ``max_upsampling`` the pixel is made coarser and the slice keeps its own detail."""
    real = simulate.load_real_slices()
    j = int(np.flatnonzero(real.pixel_mm == 2.0)[3])
    one = simulate.RealSlices(mag=real.mag[j:j + 1], pixel_mm=real.pixel_mm[j:j + 1], source=np.zeros(1, int),
                              sources=("one",), path="")
    p, n = simulate.draw_params(0, bias=0.0), 2 * one.mag.shape[1]

    def outer_energy(img):  # share of the energy beyond half the grid's Nyquist frequency (either axis)
        k = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
        c = np.abs(np.arange(n) - n // 2) > n // 4
        return k[c[:, None] | c[None, :]].sum() / k.sum()

    fine = simulate.make_real(np.random.default_rng(0), p, (n, n), 1.0, 0.0, one)
    kept = simulate.make_real(np.random.default_rng(0), p, (n, n), 1.0, 0.0, one, max_upsampling=1.25)
    assert fine["pixel_mm"] == 1.0 and kept["pixel_mm"] == pytest.approx(1.6)
    # (measured 0.004 against 0.011: what the fine grid holds there is the interpolation's and the support edge's)
    assert outer_energy(np.abs(kept["image"])) > 2 * outer_energy(np.abs(fine["image"]))
    # the subject covers (1 / 1.6)^2 of the area it has at 1 mm
    assert kept["head_mask"].sum() / fine["head_mask"].sum() == pytest.approx(1 / 1.6**2, rel=0.05)
    # a grid already coarse enough is left alone
    assert simulate.make_real(np.random.default_rng(0), p, (n, n), 1.8, 0.0, one, max_upsampling=1.25)[
        "pixel_mm"] == 1.8
    # and generate_slice simulates (and reports) the slice at its own pixel: every shipped slice is coarser than
    # the 0.94 mm of a 256-pixel, 240 mm field of view, so with no upsampling allowed the pixel is the slice's
    out = simulate.generate_slice(0, shape=(256, 256), subject="real", real_max_upsampling=1.0, n_coils=2)
    assert out["pixel_mm"] > 240.0 / 256 and np.isclose(real.pixel_mm, out["pixel_mm"]).any()
    assert simulate.generate_slice(0, shape=(256, 256), subject="real", n_coils=2)["pixel_mm"] == 240.0 / 256


def test_shipped_real_slices_match_their_notice(tmp_path):
    import hashlib

    from workbench import paths
    from workbench.errors import WorkbenchError

    path = paths.resource_path(*simulate.REAL_SLICES_FILE)
    notice = paths.resource_path("anatomy", "NOTICE.md").read_text(encoding="utf-8")
    assert f"sha256 `{hashlib.sha256(path.read_bytes()).hexdigest()}`" in notice
    assert "BSD 3-Clause" in notice and "Redistribution and use in source and binary forms" in notice
    real = simulate.load_real_slices()
    assert all(f"`{name}`" in notice for name in real.sources)
    assert set(real.source.tolist()) == set(range(len(real.sources))) and len(real.mag) >= 20
    assert real.mag.min() >= 0 and 1.0 <= real.mag.max() < 3.0 and np.all(real.pixel_mm > 0)
    bad = tmp_path / "junk.npz"
    np.savez(bad, mag=np.zeros((2, 8, 8)), pixel_mm=np.ones(3), source=np.zeros(2), sources=np.array(["a"]))
    with pytest.raises(WorkbenchError, match="junk.npz"):
        simulate.load_real_slices(bad)


@pytest.mark.parametrize("loader", ["load_real_slices", "load_anatomy"])
def test_broken_resource_files_get_a_typed_error_naming_them(tmp_path, loader):
    from workbench import paths
    from workbench.errors import WorkbenchError

    shipped = paths.resource_path(*simulate.REAL_SLICES_FILE).read_bytes()
    files = {"cut.npz": shipped[: len(shipped) // 2], "empty.npz": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    np.savez(tmp_path / "nan.npz", mag=np.full((1, 4, 4), np.nan), pixel_mm=np.ones(1), source=np.zeros(1, int),
             sources=np.array(["a"]))
    names = [*files, "plain.npy"] + (["nan.npz"] if loader == "load_real_slices" else [])
    for name in names:
        with pytest.raises(WorkbenchError, match=name.replace(".", r"\.")):
            getattr(simulate, loader)(tmp_path / name)


def test_cortical_folds_cut_csf_clefts_under_the_brains_surface_only():
    plain = simulate.generate_slice(4, shape=(128, 128), n_coils=4, contrast="t2", snr=80.0)
    again = simulate.generate_slice(4, shape=(128, 128), n_coils=4, contrast="t2", snr=80.0, folds=0.0)
    assert np.array_equal(plain["kspace"], again["kspace"]), "folds 0: the same random stream and object"
    folded = simulate.generate_slice(4, shape=(128, 128), n_coils=4, contrast="t2", snr=80.0, folds=1.0)
    # T2: CSF is bright, so clefts add signal inside the head and nothing outside it
    head = folded["head_mask"]
    assert folded["target"][head].sum() > plain["target"][head].sum()
    assert np.array_equal(folded["head_mask"], plain["head_mask"])

    rng = np.random.default_rng(0)
    # a disc of brain: white matter inside, a grey ribbon 4 mm thick at its edge (1 mm pixels)
    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80)
    brain = (r < 60).astype(float)
    gm = brain * (r >= 56)
    wm = brain - gm
    probs = np.stack([wm, gm, np.zeros_like(wm)])
    out = simulate._cortical_folds(rng, probs, (160, 160), 1.0, 1.0)
    np.testing.assert_allclose(out.sum(0), probs.sum(0), atol=1e-9)  # the shares keep their sum
    assert (out >= 0).all()
    csf = out[2]
    shell = (r < 60) & (r > 60 - 8)  # within 8 mm of the surface: every drawn depth reaches this far
    deep = r < 60 - 40  # 40 mm in: beyond any depth
    assert csf[deep].max() < 1e-6
    assert csf[shell].max() > 0.5 and 0.02 < (csf[shell] > 0.3).mean() < 0.5  # clefts, not a layer
    # clefts run inwards: along a circle under the surface the CSF comes and goes (several clefts)
    ring = (np.abs(r - 57) < 0.5)
    angles = np.arctan2(yy - 80, xx - 80)[ring]
    on = csf[ring][np.argsort(angles)] > 0.3
    assert np.count_nonzero(on[1:] != on[:-1]) >= 2 * 12
