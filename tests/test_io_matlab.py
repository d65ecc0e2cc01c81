"""MATLAB .mat reader (v5 through scipy, v7.3 through h5py) against explicit index formulas."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.io
from numpy_reference import np_fft2c as fft2c, np_ifft2c as ifft2c

from workbench.errors import CorruptFileError, InvalidDataError, ScanError, UnsupportedFormatError
from workbench.io import open_scan
from workbench.io.matlab import detect_image_domain, detect_readout_axis


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(2)


def write_mat73(path, variables: dict) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte text user block, dims reversed, complex
    numbers as a compound (real, imag) type, MATLAB_class attributes; dicts become struct groups."""
    with h5py.File(path, "w", userblock_size=512) as f:
        def put(group, name, value):
            if isinstance(value, dict):
                g = group.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_(b"struct")
                for k, v in value.items():
                    put(g, k, v)
                return
            a = np.asarray(value)
            if a.ndim < 2:
                a = a.reshape(1, -1)
            t = a.T                                             # MATLAB column-major -> reversed dims
            if np.iscomplexobj(t):
                dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
                data = np.empty(t.shape, dtype=dt)
                data["real"], data["imag"] = t.real, t.imag
                ds = group.create_dataset(name, data=data)
                ds.attrs["MATLAB_class"] = np.bytes_(b"single")
            else:
                ds = group.create_dataset(name, data=t)
                ds.attrs["MATLAB_class"] = np.bytes_(b"double")
        for k, v in variables.items():
            put(f, k, v)
    with open(path, "r+b") as f:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        f.write(text.ljust(116, b" ") + bytes(8) + b"\x00\x02IM")


def disc_coil_images(n_coils: int, H: int, W: int, radius: float = 0.35, radius_w: float | None = None) -> np.ndarray:
    """Coil images of a uniform ellipse (semi-axes ``radius`` x ``radius_w`` of the FOV) with smooth coil
    sensitivities: an object the detectors can recognise."""
    y, x = np.mgrid[:H, :W]
    yy, xx = (y - H / 2) / H, (x - W / 2) / W
    obj = ((yy / radius) ** 2 + (xx / (radius_w or radius)) ** 2 < 1).astype(np.float64)
    out = []
    for c in range(n_coils):
        a = 2 * np.pi * c / max(n_coils, 1)
        sens = np.exp(-((yy - 0.3 * np.cos(a)) ** 2 + (xx - 0.3 * np.sin(a)) ** 2) / 0.2) * np.exp(1j * (2 * xx + a))
        out.append(obj * sens)
    return np.array(out, dtype=np.complex64)


def fingerprint(p):
    return open(p, "rb").read(), os.stat(p).st_mtime_ns


# ---------------------------------------------------------------------------------------------- v5
def test_v5_largest_complex_array_x_y_coils(tmp_path, rng):
    k = fft2c(disc_coil_images(3, 20, 16)).transpose(1, 2, 0)     # MATLAB [x, y, coils]
    path = tmp_path / "scan.mat"
    scipy.io.savemat(path, {"kdata": k, "noise": crandn(rng, 50, 3), "TE": 4.5, "seq": "gre"})
    before = fingerprint(path)
    scan = open_scan(path)
    assert scan.format == "mat" and scan.attrs["kspace_var"] == "kdata"
    assert "largest complex array" in scan.attrs["kspace_choice"] and "noise" in scan.attrs["kspace_choice"]
    assert scan.kspace_shape == (3, 20, 16)
    got = scan.kspace(0).numpy()
    for c, h, w in [(0, 0, 0), (2, 19, 15), (1, 7, 3)]:
        assert got[c, h, w] == k[h, w, c]
    assert scan.header["TE"] == 4.5 and scan.header["seq"] == "gre"
    assert fingerprint(path) == before


def test_v5_coils_first_and_explicit_coil_axis(tmp_path, rng):
    k = fft2c(disc_coil_images(4, 24, 24))                        # [coils, x, y]
    path = tmp_path / "c.mat"
    scipy.io.savemat(path, {"k": k})
    scan = open_scan(path)
    np.testing.assert_array_equal(scan.kspace(0).numpy(), k)
    # [x, y, coils, slices] needs coil_axis; then the 4th dim is enumerated as slices
    k4 = np.stack([k.transpose(1, 2, 0), 2 * k.transpose(1, 2, 0)], axis=-1)   # [24, 24, 4, 2]
    scipy.io.savemat(tmp_path / "k4.mat", {"k": k4})
    with pytest.raises(InvalidDataError, match=r"k4.mat: .*coil_axis=N"):
        open_scan(tmp_path / "k4.mat")
    scan4 = open_scan(tmp_path / "k4.mat", coil_axis=2)
    assert scan4.n_slices == 2 and scan4.n_coils == 4
    np.testing.assert_array_equal(scan4.kspace(1).numpy(), 2 * k)


def test_v7_3_matches_v5_and_struct_fields(tmp_path, rng):
    k = fft2c(disc_coil_images(2, 16, 12)).transpose(1, 2, 0)     # [x, y, coils]
    scipy.io.savemat(tmp_path / "a5.mat", {"data": k})
    write_mat73(tmp_path / "a73.mat", {"data": k, "hdr": {"Tesla": 2.89, "te": 0.00077}})
    s5, s73 = open_scan(tmp_path / "a5.mat"), open_scan(tmp_path / "a73.mat")
    assert s73.attrs["mat_version"] == "v7.3" and s5.attrs["mat_version"] == "v5"
    assert s73.attrs["variables"]["data"] == [16, 12, 2]         # MATLAB order, not HDF5's
    np.testing.assert_array_equal(s73.kspace(0).numpy(), s5.kspace(0).numpy())
    np.testing.assert_array_equal(s73.kspace(0).numpy(), k.transpose(2, 0, 1))
    assert s73.header["hdr.Tesla"] == pytest.approx(2.89)


def test_ambiguous_and_missing_kspace(tmp_path, rng):
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"fwd": crandn(rng, 8, 8, 2), "rev": crandn(rng, 8, 8, 2)})
    with pytest.raises(InvalidDataError) as e:
        open_scan(path)
    msg = str(e.value)
    assert "two.mat" in msg and "fwd (8, 8, 2)" in msg and "rev (8, 8, 2)" in msg and "kspace_var" in msg
    assert open_scan(path, kspace_var="rev").attrs["kspace_var"] == "rev"
    with pytest.raises(InvalidDataError, match="kspace_var='nope': no such numeric variable"):
        open_scan(path, kspace_var="nope")
    scipy.io.savemat(tmp_path / "real.mat", {"img": rng.standard_normal((8, 8)), "n": 3.0})
    with pytest.raises(InvalidDataError, match=r"real.mat: no complex array.*img \(8, 8\).*kspace_var=NAME"):
        open_scan(tmp_path / "real.mat")


def test_v4_file_and_renamed_non_mat(tmp_path, rng):
    k = crandn(rng, 12, 10).astype(np.complex128)
    scipy.io.savemat(tmp_path / "old.mat", {"k": k}, format="4")
    np.testing.assert_allclose(open_scan(tmp_path / "old.mat").kspace(0).numpy()[0], k, rtol=1e-6)
    (tmp_path / "picture.mat").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    with pytest.raises(UnsupportedFormatError, match="picture.mat.*PNG image"):
        open_scan(tmp_path / "picture.mat")


def test_truncated_mat_files(tmp_path, rng):
    scipy.io.savemat(tmp_path / "full5.mat", {"k": crandn(rng, 64, 64)})
    write_mat73(tmp_path / "full73.mat", {"k": crandn(rng, 64, 64)})
    for name in ("full5.mat", "full73.mat"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / ("cut_" + name)
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptFileError, match="cut_" + name):
            scan = open_scan(cut)
            scan.kspace(0)


# ------------------------------------------------------------------------------------- content kinds
def test_image_domain_explicit_and_detected(tmp_path):
    imgs = disc_coil_images(4, 32, 32)
    scipy.io.savemat(tmp_path / "imgs.mat", {"data": imgs.transpose(1, 2, 0)})
    auto = open_scan(tmp_path / "imgs.mat")
    assert auto.attrs["image_domain"].startswith("coil images (detected")
    np.testing.assert_allclose(auto.kspace(0).numpy(), fft2c(imgs), atol=1e-5)
    forced = open_scan(tmp_path / "imgs.mat", image_domain=False)
    np.testing.assert_allclose(forced.kspace(0).numpy(), imgs, atol=1e-6)
    assert detect_image_domain(fft2c(imgs))[0] is False
    assert detect_image_domain(imgs)[0] is True


def test_readout_oversampling_detected_and_put_on_h(tmp_path):
    # the object fills the central half of the second MATLAB dim only: that dim is a 2x oversampled readout
    imgs = disc_coil_images(2, 64, 32, radius=0.22, radius_w=0.45)    # [C, 64, 32] in (readout, pe)
    k_ro_first = fft2c(imgs)
    assert detect_readout_axis(k_ro_first)[:2] == (0, True)
    stored = k_ro_first.transpose(2, 1, 0)                              # MATLAB [pe=32, ro=64, coils]
    scipy.io.savemat(tmp_path / "os.mat", {"data": stored})
    scan = open_scan(tmp_path / "os.mat")
    assert scan.grid_shape == (64, 32) and scan.recon_shape == (32, 32)
    np.testing.assert_array_equal(scan.kspace(0).numpy(), k_ro_first)
    assert "moved to H" in scan.attrs["readout"]
    plain = open_scan(tmp_path / "os.mat", readout_oversampling=1)
    assert plain.grid_shape == (32, 64) and plain.recon_shape == (32, 64)


def test_partial_lines_tell_the_readout_axis(tmp_path, rng):
    k = fft2c(disc_coil_images(2, 24, 24))
    k[:, ::3, :] = 0                       # phase-encode lines skipped along the first image axis
    k[:, :, :6] = 0                        # partial echo: contiguous readout samples missing
    scipy.io.savemat(tmp_path / "pe.mat", {"k": k.transpose(1, 2, 0)})
    scan = open_scan(tmp_path / "pe.mat")
    np.testing.assert_array_equal(scan.kspace(0).numpy(), np.swapaxes(k, 1, 2))
    mask = scan.acquired_mask
    assert mask.shape == (24, 24) and not mask[:6].any() and not mask[:, ::3].any() and mask[6:, 1].all()


def half_echo_channels(rng, overlap=8):
    """A single-coil k-space [64, 32] (readout along the first dim) stored as a double-half-echo scan: channel 0
    holds the readout samples from the centre - overlap/2 up, channel 1 those up to the centre + overlap/2, the
    latter with a phase 0.7 + 0.01 * kx of its own (what the two readout polarities give). Returns the
    single-coil k-space and the two channels [2, 64, 32]."""
    img = disc_coil_images(1, 64, 32, radius=0.22, radius_w=0.45)[0] * np.exp(1j * rng.uniform(-0.3, 0.3))
    k = fft2c(img)
    kx = np.arange(64) - 32
    fwd, rev = np.zeros_like(k), np.zeros_like(k)
    fwd[32 - overlap // 2:] = k[32 - overlap // 2:]
    rev[:32 + overlap // 2] = (k * np.exp(1j * (0.7 + 0.01 * kx))[:, None])[:32 + overlap // 2]
    return k, np.stack([fwd, rev]).astype(np.complex64)


def test_channels_holding_different_samples_are_not_coils(tmp_path, rng):
    k, ch = half_echo_channels(rng)
    write_mat73(tmp_path / "dhe.mat", {"data": ch.transpose(1, 2, 0)})      # MATLAB [ro, pe, 2]
    scan = open_scan(tmp_path / "dhe.mat", readout_oversampling=1)
    assert scan.kspace_shape == (2, 64, 32)
    np.testing.assert_array_equal(scan.kspace(0).numpy(), ch)               # the data as stored
    # the acquired mask is the samples both channels hold (the 8 common readout rows), not their union
    expected = np.zeros((64, 32), dtype=bool)
    expected[28:36] = True
    np.testing.assert_array_equal(scan.acquired_mask, expected)
    assert not scan.fully_sampled
    assert any("different k-space samples" in n and "merge_channels" in n for n in scan.attrs["notes"])
    # merged: one coil, each channel's samples where it alone holds them; the second channel's phase undone
    merged = open_scan(tmp_path / "dhe.mat", readout_oversampling=1, merge_channels=True)
    assert merged.kspace_shape == (1, 64, 32) and merged.n_coils == 1 and merged.fully_sampled
    np.testing.assert_allclose(merged.kspace(0).numpy()[0], k, atol=1e-5 * np.abs(k).max())
    assert any("merged into one coil" in n and "a=-0.70 rad b=-0.0100" in n for n in merged.attrs["notes"])


def test_merge_channels_refuses_coils_and_scattered_zeros_keep_the_union(tmp_path, rng):
    k = fft2c(disc_coil_images(3, 32, 32))
    k[1, 5, 7] = 0                                                          # one quantised zero in one coil
    scipy.io.savemat(tmp_path / "coils.mat", {"k": k.transpose(1, 2, 0)})
    scan = open_scan(tmp_path / "coils.mat", readout_oversampling=1)
    assert scan.fully_sampled and not any("different" in n for n in scan.attrs["notes"])
    with pytest.raises(ScanError, match="nothing to merge"):
        open_scan(tmp_path / "coils.mat", readout_oversampling=1, merge_channels=True)


# -------------------------------------------------------------------------------------- non-Cartesian
def test_radial_trajectory_var_detected(tmp_path, rng):
    R, S, C = 32, 5, 3
    ang = np.pi * np.arange(S) / S
    r = np.linspace(-0.5, 0.5, R)
    ktraj = r[:, None] * np.exp(1j * ang)[None]                  # complex kx + i ky, [R, S]
    raw = crandn(rng, R, S, C)
    scipy.io.savemat(tmp_path / "rad.mat", {"rawdata": raw, "k": ktraj})
    scan = open_scan(tmp_path / "rad.mat")
    assert scan.attrs["trajectory_var"] == "k" and scan.attrs["trajectory_kind"] == "radial"
    assert scan.kspace_shape == (C, R * S) and scan.grid_shape == (R, R) and scan.recon_shape == (R // 2, R // 2)
    traj, k = scan.trajectory, scan.kspace(0).numpy()
    assert traj.min() >= -np.pi and traj.astype(np.float64).max() < np.pi
    for rr, ss in [(0, 0), (31, 4), (10, 2)]:
        j = ss * R + rr
        np.testing.assert_array_equal(k[:, j], raw[rr, ss, :])
        expect = np.angle(np.exp(2j * np.pi * np.array([ktraj[rr, ss].real, ktraj[rr, ss].imag])))
        np.testing.assert_allclose(traj[:, j], expect, atol=1e-5)
    # a complex image shaped like (readout, spokes) beside Cartesian k-space is not taken for a trajectory
    scipy.io.savemat(tmp_path / "cart.mat", {"kspace": crandn(rng, 32, 32, 4), "img": crandn(rng, 32, 32)})
    assert open_scan(tmp_path / "cart.mat", image_domain=False).is_cartesian
    # explicit grid / oversampling options and an unusable trajectory_var
    s2 = open_scan(tmp_path / "rad.mat", grid_shape="64,64", readout_oversampling=1)
    assert s2.grid_shape == (64, 64) and s2.recon_shape == (64, 64)
    scipy.io.savemat(tmp_path / "bad.mat", {"rawdata": raw, "w": rng.standard_normal((7, 7))})
    with pytest.raises(InvalidDataError, match="bad.mat: trajectory w"):
        open_scan(tmp_path / "bad.mat", trajectory_var="w")


def test_reference_var_and_options(tmp_path, rng):
    imgs = disc_coil_images(2, 16, 16)
    ref = np.abs(imgs).sum(0)
    scipy.io.savemat(tmp_path / "r.mat", {"k": fft2c(imgs).transpose(1, 2, 0), "gt": ref})
    scan = open_scan(tmp_path / "r.mat", reference_var="gt")
    assert scan.reference_kind == "stored"
    np.testing.assert_allclose(scan.reference(0), ref, rtol=1e-6)
    with pytest.raises(ScanError, match="unknown option"):
        open_scan(tmp_path / "r.mat", kspace="k")
    with pytest.raises(ScanError, match="readout_oversampling"):
        open_scan(tmp_path / "r.mat", readout_oversampling=0.5)
    with pytest.raises(ScanError, match="image_domain"):
        open_scan(tmp_path / "r.mat", image_domain="maybe")
