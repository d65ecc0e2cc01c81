"""``symmetric_echo``: an asymmetric echo's fully sampled band, for every Cartesian format (workbench.io.readout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy_reference import np_ifft2c

from workbench.cli import main
from workbench.errors import ScanError
from workbench.io import open_scan
from workbench.io.readout import symmetric_echo, symmetric_rows
from workbench.problem import Problem
from workbench.scan import scan_from_arrays

H, W, C = 48, 20, 3


def asymmetric_kspace(missing_front: int = 12, seed: int = 0) -> np.ndarray:
    """``[C, H, W]`` with the first ``missing_front`` readout rows never acquired (zeros), the echo at H//2."""
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((C, H, W)) + 1j * rng.standard_normal((C, H, W))).astype(np.complex64)
    k[:, :missing_front] = 0
    return k


def test_symmetric_rows_finds_the_band_around_the_echo():
    mask = np.ones((H, W), bool)
    assert symmetric_rows(None, H) is None and symmetric_rows(mask, H) is None  # nothing missing
    mask[:12] = False
    assert symmetric_rows(mask, H) == (12, 36)  # 12 rows short of the echo at 24: 24 - 12 on each side
    late = np.ones((H, W), bool)
    late[40:] = False  # samples after the echo missing: the band ends there
    assert symmetric_rows(late, H) == (8, 40)
    gap = np.ones((H, W), bool)
    gap[20:22] = False  # rows missing beside the echo, not at an end: not an asymmetric echo
    assert symmetric_rows(gap, H) is None
    past = np.zeros((H, W), bool)
    past[30:] = True  # the echo row itself was not acquired
    assert symmetric_rows(past, H) is None
    lines = np.ones((H, W), bool)
    lines[:, ::2] = False  # undersampled lines, full readout: no row is missing
    assert symmetric_rows(lines, H) is None
    lines[:12] = False  # ... and an asymmetric echo: the measured lines are whole readouts of rows 12..47
    assert symmetric_rows(lines, H) == (12, 36)
    both = np.zeros((H, W), bool)
    both[20:28] = True  # the rows two half echoes share: missing at both ends, not an asymmetric echo
    assert symmetric_rows(both, H) is None
    disc = np.hypot(*np.mgrid[-H // 2:H // 2, -W // 2:W // 2] / np.array([H / 2, W / 2])[:, None, None]) < 1
    disc[:1] = False  # a 2D pattern (Poisson-disc like) whose first row is empty: its lines are not whole readouts
    assert disc[1:].any(axis=1).all()
    assert symmetric_rows(disc, H) is None


def test_symmetric_echo_cuts_the_readout_and_gives_a_reference(tmp_path):
    k = asymmetric_kspace()
    path = tmp_path / "asym.npy"
    np.save(path, k)
    scan = open_scan(path)
    assert not scan.fully_sampled and scan.no_reference_reason() is not None
    assert "symmetric_echo=true keeps the 24 readout rows" in scan.no_reference_reason()
    cut = open_scan(path, symmetric_echo="true")
    assert cut.grid_shape == (24, W) and cut.kspace_shape == (C, 24, W) and cut.recon_shape == (24, W)
    assert cut.fully_sampled and cut.acquired_mask is None and cut.no_reference_reason() is None
    assert scan.pixel_aspect == 1.0 and cut.pixel_aspect == 2.0  # the same field of view in half the rows
    assert "symmetric_echo=true" in scan.summary()["no_reference"] and "no_reference" not in cut.summary()
    np.testing.assert_array_equal(cut.kspace(0).numpy(), k[:, 12:36])
    assert cut.attrs["symmetric_echo"] == {"rows": [12, 36], "grid_before": [H, W]}
    assert "symmetric_echo: readout rows 12..35 kept" in cut.header["note"]
    # the reference a retrospective experiment is scored against: the RSS of the band's coil images (numpy)
    problem = Problem.from_scan(cut, 0)
    want = np.sqrt((np.abs(np_ifft2c(k[:, 12:36])) ** 2).sum(0))
    np.testing.assert_allclose(problem.reference.numpy(), want, rtol=1e-5, atol=1e-6 * want.max())
    assert open_scan(path, symmetric_echo=False).grid_shape == (H, W)  # false: the option does nothing


def test_symmetric_echo_keeps_the_oversampling_ratio_and_drops_a_stored_reference():
    k = asymmetric_kspace()
    scan = scan_from_arrays(k, recon_shape=(H // 2, W), reference=np.ones((1, H // 2, W), np.float32))
    scan.attrs["max"] = 7.0  # a file's volume maximum: of the full-resolution images, not the band's
    mask = np.ones((H, W), bool)
    mask[:12] = False
    mask[:, 3] = False  # one phase line not measured either: cut, but still not fully sampled
    scan.acquired_mask = mask
    scan.encoded_mask = np.ones((H, W), bool)
    cut = symmetric_echo(scan)
    assert cut.grid_shape == (24, W) and cut.recon_shape == (12, W)  # 2x readout oversampling kept
    assert cut.load_reference is None and "reference image (full readout resolution) is not used" in cut.header["note"]
    np.testing.assert_array_equal(cut.acquired_mask, mask[12:36])
    assert not cut.fully_sampled
    assert cut.encoded_mask.shape == (24, W)
    assert "max" not in cut.attrs
    assert scan.grid_shape == (H, W) and scan.load_reference is not None  # the original is left as it was
    assert scan.attrs["max"] == 7.0


def test_symmetric_echo_refuses_what_it_cannot_cut(tmp_path):
    gap = np.ones((C, H, W), np.complex64)
    gap[:, 20:22] = 0
    np.save(tmp_path / "gap.npy", gap)
    with pytest.raises(ScanError, match=r"gap.npy: symmetric_echo: .*not an asymmetric echo"):
        open_scan(tmp_path / "gap.npy", symmetric_echo=True)
    with pytest.raises(ScanError, match="symmetric_echo=.maybe. is not true/false"):
        open_scan(tmp_path / "gap.npy", symmetric_echo="maybe")
    radial = scan_from_arrays(np.ones((C, 40), np.complex64), trajectory=np.zeros((2, 40), np.float32),
                              grid_shape=(16, 16), path="radial.h5")
    with pytest.raises(ScanError, match="radial.h5: symmetric_echo: the scan is non-Cartesian"):
        symmetric_echo(radial)
    assert "non-Cartesian data has no fully sampled reference" in radial.no_reference_reason()
    full = np.ones((C, H, W), np.complex64)
    np.save(tmp_path / "full.npy", full)
    same = open_scan(tmp_path / "full.npy", symmetric_echo=True)
    assert same.grid_shape == (H, W) and "nothing cut" in same.header["note"]


def test_recon_says_why_there_is_no_reference_and_scores_the_band(tmp_path, capsys):
    k = asymmetric_kspace()
    path = tmp_path / "asym.npy"
    np.save(path, k)
    common = ["recon", str(path), "--method", "zero-filled", "--mask", "equispaced", "--accel", "2"]
    assert main([*common, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["metrics"] is None and "asymmetric echo" in out["no_reference"]
    assert main(common) == 0
    assert "metrics   no reference image for this scan: 75.0 % of the grid" in capsys.readouterr().out
    assert main([*common, "--option", "symmetric_echo=true", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["no_reference"] is None and out["metrics"]["psnr"] > 0 and out["grid"] == [24, W]


@pytest.mark.realdata
def test_real_7t_asymmetric_echo_band_is_the_benchmarks(realdata):
    """The real 7 T phantom (428 of 512 readout samples, echo at 172): the band is rows 84..427 (the echo at
    grid row 256 after the reader's padding), and the cut scan is fully sampled with a 172x256 image."""

    path = realdata / "twix_phantom" / "singlechannel_7T.dat"
    full = open_scan(path)
    assert "symmetric_echo=true" in full.header["note"] and "asymmetric echo" in full.no_reference_reason()
    cut = open_scan(path, symmetric_echo=True)
    assert tuple(cut.attrs["symmetric_echo"]["rows"]) == (84, 428)
    assert cut.fully_sampled and cut.grid_shape == (344, 256) and cut.recon_shape == (172, 256)
    assert cut.pixel_aspect == pytest.approx(512 / 344)
    np.testing.assert_array_equal(cut.kspace(0).numpy(), full.kspace(0).numpy()[:, 84:428])
