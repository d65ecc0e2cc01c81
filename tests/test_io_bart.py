"""BART .cfl/.hdr reader and writer, checked against explicit index formulas and a direct (slow) NDFT."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from workbench.errors import CorruptFileError, InvalidDataError, ScanError
from workbench.io import open_scan
from workbench.io.bart import read_cfl, write_cfl, wrap_radians


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def fingerprint(*paths):
    return [(open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in paths]


def ndft(image: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Slow reference: k_j = sum_{h,w} x[h,w] exp(-i (omega0_j (h - H/2) + omega1_j (w - W/2)))."""
    H, W = image.shape[-2:]
    h = np.arange(H) - H // 2
    w = np.arange(W) - W // 2
    eh = np.exp(-1j * omega[0][:, None] * h[None, :])            # [K, H]
    ew = np.exp(-1j * omega[1][:, None] * w[None, :])            # [K, W]
    return np.einsum("...hw,kh,kw->...k", image, eh, ew)


# ---------------------------------------------------------------------------------------------- files
def test_write_cfl_is_fortran_order_complex64(tmp_path, rng):
    a = crandn(rng, 5, 4, 3)
    write_cfl(tmp_path / "arr", a)
    lines = (tmp_path / "arr.hdr").read_text().splitlines()
    assert lines[0] == "# Dimensions"
    assert [int(v) for v in lines[1].split()] == [5, 4, 3] + [1] * 13
    raw = np.fromfile(tmp_path / "arr.cfl", dtype=np.complex64)
    assert raw.size == a.size
    np.testing.assert_array_equal(raw.reshape(5, 4, 3, order="F"), a)
    # element (i, j, k) sits at i + 5 j + 20 k
    assert raw[2 + 5 * 3 + 20 * 1] == a[2, 3, 1]


def test_read_cfl_memmap_readonly(tmp_path, rng):
    a = crandn(rng, 6, 7, 1, 2)
    write_cfl(tmp_path / "k", a)
    m = read_cfl(tmp_path / "k.hdr")
    assert isinstance(m, np.memmap) and not m.flags.writeable
    assert m.shape == (6, 7, 1, 2) + (1,) * 12
    np.testing.assert_array_equal(np.asarray(m).reshape(a.shape), a)


# ------------------------------------------------------------------------------------------ Cartesian
def test_cartesian_readout_along_h(tmp_path, rng):
    a = crandn(rng, 12, 10, 1, 3)                 # [x, y, z, coil]
    a[:, 1::2] = 0                                # every other phase-encode line missing
    write_cfl(tmp_path / "ksp", a)
    paths = [tmp_path / "ksp.cfl", tmp_path / "ksp.hdr"]
    before = fingerprint(*paths)
    scan = open_scan(tmp_path / "ksp.cfl")
    assert scan.format == "bart" and scan.is_cartesian
    assert scan.kspace_shape == (3, 12, 10) and scan.n_slices == 1 and scan.n_coils == 3
    k = scan.kspace(0).numpy()
    for c, h, w in [(0, 0, 0), (2, 11, 8), (1, 5, 4)]:
        assert k[c, h, w] == a[h, w, 0, c]
    assert scan.acquired_mask is not None and scan.acquired_mask.shape == (12, 10)
    assert scan.acquired_mask[:, 0].all() and not scan.acquired_mask[:, 1].any()
    assert scan.sampled_fraction == pytest.approx(0.5)
    assert fingerprint(*paths) == before                 # opened read-only, nothing written
    scan2 = open_scan(tmp_path / "ksp.hdr", readout_oversampling=2)
    assert scan2.grid_shape == (12, 10) and scan2.recon_shape == (6, 10)


def test_x_singleton_slice_is_z_by_y(tmp_path, rng):
    a = crandn(rng, 1, 9, 14, 4)                  # [1, y, z, coil]: a slice of a 3D scan
    write_cfl(tmp_path / "ksp", a)
    scan = open_scan(tmp_path / "ksp.cfl")
    assert scan.kspace_shape == (4, 14, 9)
    k = scan.kspace(0).numpy()
    for c, h, w in [(0, 0, 0), (3, 13, 8), (2, 6, 2)]:
        assert k[c, h, w] == a[0, w, h, c]


def test_3d_volume_gives_one_slice_per_x_after_readout_ifft(tmp_path, rng):
    a = crandn(rng, 6, 5, 4, 2)
    write_cfl(tmp_path / "vol", a)
    scan = open_scan(tmp_path / "vol.cfl")
    assert scan.n_slices == 6 and scan.kspace_shape == (2, 4, 5)
    hybrid = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(a, axes=0), axis=0, norm="ortho"), axes=0)
    for x in (0, 3, 5):
        np.testing.assert_allclose(scan.kspace(x).numpy(), np.transpose(hybrid[x], (2, 1, 0)), rtol=1e-5, atol=1e-5)


def test_extra_dims_are_slices_lowest_dim_fastest(tmp_path, rng):
    a = crandn(rng, 8, 6, 1, 2, 1, 2, 1, 1, 1, 1, 3)    # TE (dim 5) = 2, TIME (dim 10) = 3
    write_cfl(tmp_path / "ksp", a)
    scan = open_scan(tmp_path / "ksp.cfl")
    assert scan.n_slices == 6
    for te, t in [(0, 0), (1, 0), (0, 2), (1, 1)]:
        expect = np.transpose(a[:, :, 0, :, 0, te, 0, 0, 0, 0, t], (2, 0, 1))
        np.testing.assert_array_equal(scan.kspace(te + 2 * t).numpy(), expect)


def test_companion_reference_img(tmp_path, rng):
    k = crandn(rng, 1, 9, 14, 4)
    img = crandn(rng, 1, 9, 14, 1, 2)
    write_cfl(tmp_path / "ksp", k)
    write_cfl(tmp_path / "img", img, command="pics ksp2 maps img")
    scan = open_scan(tmp_path / "ksp.cfl")
    assert scan.reference_kind == "sense"
    np.testing.assert_allclose(scan.reference(0), np.abs(img[0, :, :, 0, 0]).T, rtol=1e-6)
    assert scan.recon_shape == (14, 9)
    # an explicit reference of the wrong size is an error naming the file
    write_cfl(tmp_path / "small", crandn(rng, 1, 5, 5))
    with pytest.raises(InvalidDataError, match="small.cfl"):
        open_scan(tmp_path / "ksp.cfl", reference=str(tmp_path / "small"))


# ------------------------------------------------------------------------------------- non-Cartesian
def _radial_bart(n_read: int, n_spokes: int) -> np.ndarray:
    """BART-style radial trajectory [3, readout, spokes] in pixel units of an n_read grid."""
    r = np.arange(n_read) - n_read // 2
    ang = np.pi * np.arange(n_spokes) / n_spokes
    t = np.zeros((3, n_read, n_spokes))
    t[0] = r[:, None] * np.cos(ang)[None]
    t[1] = r[:, None] * np.sin(ang)[None]
    return t


def test_radial_with_companion_trajectory(tmp_path, rng):
    n, spokes, coils = 16, 6, 2
    t = _radial_bart(n, spokes)
    t[0] -= 0.25                      # off-grid (a gradient delay); spoke 0 starts at x = -8.25: wraps to +pi side
    imgs = crandn(rng, coils, n, n)
    # k-space sample (r, s) of coil c: NDFT at BART coordinates (x = image dim 0, y = image dim 1)
    omega = 2 * np.pi * t[:2].reshape(2, -1) / n
    ksp = ndft(imgs, omega).reshape(coils, n, spokes).transpose(1, 2, 0)[:, :, None, :]  # [R, S, 1, C]
    write_cfl(tmp_path / "ksp", ksp)
    write_cfl(tmp_path / "traj_radial", t)
    write_cfl(tmp_path / "traj_other", _radial_bart(n, spokes + 1))   # another scan's: does not match

    scan = open_scan(tmp_path / "ksp.cfl")
    assert not scan.is_cartesian and scan.attrs["trajectory_kind"] == "radial"
    assert scan.attrs["trajectory_file"].endswith("traj_radial.cfl")
    assert scan.kspace_shape == (coils, n * spokes)
    assert scan.grid_shape == (n, n) and scan.recon_shape == (n // 2, n // 2)
    traj = scan.trajectory
    assert traj.dtype == np.float32 and traj.shape == (2, n * spokes)
    assert traj.min() >= -np.pi and traj.max() < np.pi
    assert traj[0, 0] > 3.0                        # x = -8.25 px = -3.24 rad, wrapped to +3.04
    # K enumerates spoke after spoke; radians = 2 pi k / N wrapped into [-pi, pi)
    r, s = 3, 4
    j = s * n + r
    expect = np.angle(np.exp(1j * 2 * np.pi * t[:2, r, s] / n))
    np.testing.assert_allclose(traj[:, j], expect, atol=1e-5)
    # every sample pairs with its trajectory point: row 0 indexes H, row 1 indexes W
    k = scan.kspace(0).numpy()
    np.testing.assert_allclose(k, ndft(imgs, traj.astype(np.float64)), rtol=2e-4, atol=2e-3)
    # and torchkbnufft agrees with that pairing (its row 0 is the H axis too)
    import torchkbnufft as tkbn

    nufft = tkbn.KbNufft(im_size=(n, n), grid_size=(2 * n, 2 * n))
    k_kb = nufft(torch.from_numpy(imgs)[None], torch.from_numpy(traj))[0].numpy()
    assert np.linalg.norm(k_kb - k) / np.linalg.norm(k) < 0.02


def test_bart_nufft_layout_and_explicit_trajectory(tmp_path, rng):
    n, spokes = 8, 4
    t = _radial_bart(n, spokes)
    ksp = crandn(rng, 1, n, spokes, 3)          # BART nufft layout [1, readout, spokes, coils]
    write_cfl(tmp_path / "data", ksp)
    write_cfl(tmp_path / "mytraj", t)
    assert open_scan(tmp_path / "data.cfl").is_cartesian          # no traj*.cfl beside it: Cartesian
    scan = open_scan(tmp_path / "data.cfl", trajectory=str(tmp_path / "mytraj.cfl"), readout_oversampling=1)
    assert scan.kspace_shape == (3, n * spokes) and scan.recon_shape == (n, n)
    np.testing.assert_array_equal(scan.kspace(0).numpy()[:, 2 * n + 5], ksp[0, 5, 2, :])
    write_cfl(tmp_path / "badtraj", _radial_bart(n, spokes + 2))
    with pytest.raises(InvalidDataError, match="badtraj.cfl.*do not fit"):
        open_scan(tmp_path / "data.cfl", trajectory=str(tmp_path / "badtraj"))


def test_two_matching_trajectories_are_ambiguous(tmp_path, rng):
    write_cfl(tmp_path / "ksp", crandn(rng, 8, 4, 1, 2))
    write_cfl(tmp_path / "traj_a", _radial_bart(8, 4))
    write_cfl(tmp_path / "traj_b", _radial_bart(8, 4))
    with pytest.raises(InvalidDataError, match=r"traj_a.cfl, traj_b.cfl.*trajectory=PATH"):
        open_scan(tmp_path / "ksp.cfl")


def test_sms_slices_with_note(tmp_path, rng):
    shape = [16, 4, 1, 2] + [1] * 9 + [2]        # dim 13 = 2 partitions
    write_cfl(tmp_path / "kMB2", crandn(rng, *shape))
    t = _radial_bart(16, 4).reshape(3, 16, 4, *([1] * 10), 1)
    write_cfl(tmp_path / "traj_mb2", np.concatenate([t, t], axis=13), command="traj -x 16 -y 4 -m 2 -l traj_mb2")
    scan = open_scan(tmp_path / "kMB2.cfl")
    assert scan.n_slices == 2 and not scan.is_cartesian
    assert scan.header["sms_multiband"] == 2 and "SMS model" in scan.header["note"]


def test_wrap_radians_range():
    x = np.array([-np.pi, np.pi, 3 * np.pi, -3.2, 3.1415926, 0.0])
    w = wrap_radians(x)
    assert w.dtype == np.float32 and (w >= -np.pi).all() and (w.astype(np.float64) < np.pi).all()
    np.testing.assert_allclose(np.exp(1j * w.astype(np.float64)), np.exp(1j * x), atol=1e-6)


# ------------------------------------------------------------------------------------------ bad input
def test_hdr_without_cfl(tmp_path, rng):
    write_cfl(tmp_path / "ksp", crandn(rng, 4, 4, 1, 1))
    os.remove(tmp_path / "ksp.cfl")
    with pytest.raises(CorruptFileError, match=r"ksp.hdr: BART data file ksp.cfl is missing"):
        open_scan(tmp_path / "ksp.hdr")


def test_cfl_without_hdr(tmp_path, rng):
    write_cfl(tmp_path / "ksp", crandn(rng, 4, 4, 1, 1))
    os.remove(tmp_path / "ksp.hdr")
    with pytest.raises(CorruptFileError, match=r"ksp.cfl: no BART header ksp.hdr"):
        open_scan(tmp_path / "ksp.cfl")


def test_cfl_of_wrong_size(tmp_path, rng):
    write_cfl(tmp_path / "ksp", crandn(rng, 4, 4, 1, 2))
    data = (tmp_path / "ksp.cfl").read_bytes()
    (tmp_path / "ksp.cfl").write_bytes(data[:-8])
    with pytest.raises(CorruptFileError, match=r"ksp.cfl: has 248 bytes but its header dimensions \[4, 4, 1, 2\] "
                                               r"need 256 bytes"):
        open_scan(tmp_path / "ksp.hdr")


@pytest.mark.parametrize("text, what", [
    ("# Dimensions\n4 four 1 1\n", "not integers"),
    ("# Dimensions\n4 0 1 1\n", ">= 1"),
    ("# Dimensions\n\n# Command\nx\n", "no '# Dimensions' line"),
])
def test_malformed_hdr(tmp_path, text, what):
    (tmp_path / "ksp.hdr").write_text(text)
    (tmp_path / "ksp.cfl").write_bytes(bytes(128))
    for opened in ("ksp.cfl", "ksp.hdr"):
        with pytest.raises(CorruptFileError, match=f"ksp.hdr: malformed BART header.*{what}"):
            open_scan(tmp_path / opened)


def test_trajectory_file_opened_as_kspace_and_unknown_option(tmp_path, rng):
    write_cfl(tmp_path / "traj", _radial_bart(8, 4))
    with pytest.raises(InvalidDataError, match="traj.cfl: looks like a BART trajectory"):
        open_scan(tmp_path / "traj.cfl")
    write_cfl(tmp_path / "ksp", crandn(rng, 4, 4, 1, 1))
    with pytest.raises(ScanError, match="kspace_vr"):
        open_scan(tmp_path / "ksp.cfl", kspace_vr="x")


def test_nan_kspace_is_reported_at_open(tmp_path, rng):
    a = crandn(rng, 4, 4, 1, 1)
    a[1, 2] = np.nan
    write_cfl(tmp_path / "ksp", a)
    with pytest.raises(InvalidDataError, match="ksp.cfl.*NaN"):
        open_scan(tmp_path / "ksp.cfl")
