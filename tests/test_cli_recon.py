"""``workbench recon``: end to end on small fastMRI files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy_reference import np_ifft2c

from workbench.cli import main
from workbench.io.fastmri import write_fastmri
from workbench.metrics import evaluate
from workbench.result import Result
from workbench.sampling import make_sampling
from workbench.simulate import generate_volume


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """Two 64x64 slices, 6 coils, written as a fastMRI multi-coil file (reference = RSS, attrs max)."""
    folder = tmp_path_factory.mktemp("recon")
    vol = generate_volume(0, slice_positions=[12.0, 22.0], shape=(64, 64), n_coils=6)
    path = folder / "small.h5"
    write_fastmri(path, vol["kspace"], vol["reference"])
    np.save(folder / "maps.npy", vol["maps"])
    return path, vol


def run_json(capsys, *argv):
    code = main(["recon", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one machine-readable line
    return json.loads(lines[0]), err


def test_json_line_with_metrics_and_parameters(volume, capsys):
    path, vol = volume
    d, err = run_json(capsys, path, "--slice", 1, "--mask", "random", "--accel", 4, "--center-fraction", 0.25,
                      "--maps", "acs", "--method", "l1-wavelet", "--param", "n_iter=20", "--param", "search_iter=10")
    assert d["maps"] == "acs" and d["provenance"]["maps_method"] == "acs"
    assert err == ""  # no progress line with --json
    assert d["method"] == "l1-wavelet" and d["slice"] == 1 and d["params"]["n_iter"] == 20
    assert d["params"]["lam"] is None and d["chosen"]["lam"] > 0  # the auto-chosen weight is reported
    assert d["sampling"]["kind"] == "random" and 3.0 < d["acceleration"] < 4.5
    assert d["metrics"]["psnr"] > d["zero_filled"]["psnr"]
    assert d["data_range"] == pytest.approx(float(vol["reference"].max()))  # the volume's maximum
    # the metrics are fastMRI's against the stored reference: recompute the zero-filled one independently
    mask = make_sampling("random", (64, 64), 4, seed=0, center_fraction=0.25).mask.numpy()
    coil = np_ifft2c(vol["kspace"][1] * mask)
    zf = np.sqrt((np.abs(coil) ** 2).sum(0))
    expected = evaluate(vol["reference"][1], zf, data_range=float(vol["reference"].max()))
    assert d["zero_filled"]["psnr"] == pytest.approx(expected["psnr"], abs=1e-3)
    assert d["time_s"] > 0 and d["iterations"] == 20


def test_out_saves_a_reproducible_result(volume, capsys, tmp_path):
    path, _ = volume
    out = tmp_path / "result.h5"
    code = main(["recon", str(path), "--mask", "equispaced", "--accel", "2", "--center-fraction", "0.2",
                 "--maps", "acs", "--method", "cg-sense", "--param", "n_iter=8", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "PSNR" in stdout and "zero-filled" in stdout and "saved" in stdout
    assert "cg-sense:" in stderr  # the progress line
    result = Result.load(out)
    expected_mask = make_sampling("equispaced", (64, 64), 2, seed=0, center_fraction=0.2).mask
    assert np.array_equal(result.mask.numpy(), expected_mask.numpy())
    assert result.method == "cg-sense" and result.params["n_iter"] == 8 and result.params["lam"] == 0.01
    assert result.provenance["slice"] == 1 and result.provenance["sampling"]["kind"] == "equispaced"
    assert "--mask equispaced" in result.provenance["command"] and "--param n_iter=8" in result.provenance["command"]
    assert result.extras["metrics"]["psnr"] > result.extras["zero_filled_metrics"]["psnr"]
    # re-running the saved command gives the same image
    again = tmp_path / "again.h5"
    argv = result.provenance["command"].split()[1:] + ["--out", str(again)]
    assert main(argv) == 0
    capsys.readouterr()
    np.testing.assert_allclose(Result.load(again).image.numpy(), result.image.numpy(), rtol=0, atol=1e-5)


def test_mask_file_and_maps_file(volume, capsys, tmp_path):
    path, vol = volume
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, ::3] = True
    mask[:, 26:38] = True
    mask_path = tmp_path / "mask.npy"
    np.save(mask_path, mask)
    d, _ = run_json(capsys, path, "--mask-file", mask_path, "--maps-file", volume[0].parent / "maps.npy",
                    "--method", "zero-filled", "--param", "combine=sense")
    assert d["acceleration"] == pytest.approx(mask.size / mask.sum())
    assert d["maps"].endswith("maps.npy")
    # SENSE combination with the given maps, computed here independently
    k = vol["kspace"][1] * mask
    coil = np_ifft2c(k)
    sense = np.abs((coil * vol["maps"].conj()).sum(0))
    expected = evaluate(vol["reference"][1], sense, data_range=float(vol["reference"].max()))
    assert d["metrics"]["psnr"] == pytest.approx(expected["psnr"], abs=1e-3)
    # the drawn mask's sampling is printed once, at the top level, not again under provenance
    assert "sampling" not in d["provenance"] and d["sampling"]
    assert json.dumps(d).count(json.dumps(d["sampling"])) == 1


def test_trajectory_and_own_sampling(volume, capsys):
    path, _ = volume
    d, _ = run_json(capsys, path, "--trajectory", "radial", "--accel", 3, "--maps", "acs", "--method", "cg-sense",
                    "--param", "n_iter=10")
    assert d["sampling"]["kind"] == "radial" and d["metrics"]["psnr"] > d["zero_filled"]["psnr"]
    d, _ = run_json(capsys, path, "--slice", 0, "--method", "zero-filled")  # fully sampled: the reference itself
    assert d["acceleration"] == 1.0 and d["metrics"]["psnr"] > 60


def test_trajectory_with_a_chosen_density_compensation(volume, capsys, tmp_path):
    path, _ = volume
    d, _ = run_json(capsys, path, "--trajectory", "golden-radial", "--accel", 3, "--dcf", "voronoi",
                    "--method", "zero-filled", "--out", tmp_path / "voronoi.h5")
    assert d["sampling"]["params"]["dcf_method"] == "voronoi" and d["dcf_method"] == "voronoi"
    default, _ = run_json(capsys, path, "--trajectory", "golden-radial", "--accel", 3, "--method", "zero-filled")
    assert default["sampling"]["params"]["dcf_method"] == "pipe-menon" == default["dcf_method"]
    # a saved (Pipe-Menon) trajectory is recomputed with the asked-for weights: the same image as above, and
    # the command line that reproduces it says so
    make_sampling("golden-radial", (64, 64), 3).save(tmp_path / "traj.npz")
    out = tmp_path / "from_file.h5"
    d, _ = run_json(capsys, path, "--mask-file", tmp_path / "traj.npz", "--dcf", "voronoi", "--method",
                    "zero-filled", "--out", out)
    assert d["dcf_method"] == "voronoi"
    result = Result.load(out)
    assert "--dcf voronoi" in result.provenance["command"]
    assert result.provenance["sampling"]["params"]["dcf_method"] == "voronoi"
    np.testing.assert_allclose(result.image.numpy(), Result.load(tmp_path / "voronoi.h5").image.numpy(),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--method", "tv", "--param", "lam=5"], "parameter 'lam' of tv: 5.0 is above the maximum"),
    (["--method", "tv", "--param", "lam"], "expected KEY=VALUE"),
    (["--method", "cg-sense", "--param", "n_iters=3"], "unknown parameter 'n_iters'"),
    (["--method", "no-such-method"], "no method named 'no-such-method'; available: cg-sense"),
    (["--method", "grappa", "--trajectory", "radial"], "grappa: cannot run on this data"),
    (["--method", "zero-filled", "--slice", "7"], "slice 7 is out of range"),
    (["--method", "zero-filled", "--accel", "4"], "--accel and --center-fraction need --mask or --trajectory"),
    (["--method", "zero-filled", "--mask-file", "missing.npy"], "missing.npy: no such mask file"),
    (["--method", "zero-filled", "--mask", "random", "--dcf", "voronoi"], "--dcf applies to non-Cartesian data"),
    (["--method", "zero-filled", "--dcf", "ramp"], "--dcf applies to non-Cartesian data"),
    (["--method", "zero-filled", "--trajectory", "spiral", "--dcf", "ramp"], "ramp density compensation is for radial"),
])
def test_errors_exit_1_with_a_clear_message(volume, capsys, argv, message):
    path, _ = volume
    assert main(["recon", str(path), *argv]) == 1
    _, err = capsys.readouterr()
    assert message in err


def test_bad_file_exits_1(tmp_path, capsys):
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    assert main(["recon", str(bad), "--method", "zero-filled"]) == 1
    assert str(bad) in capsys.readouterr().err


def test_plugin_dir_and_a_crashing_plugin(volume, capsys, tmp_path):
    path, _ = volume
    (tmp_path / "crasher.py").write_text(
        "from workbench.methods import Method\n"
        "class Crasher(Method):\n"
        "    name = 'crasher'\n"
        "    def run(self, problem, params, ctx):\n"
        "        raise RuntimeError('boom in the plugin')\n"
    )
    assert main(["recon", str(path), "--plugin-dir", str(tmp_path), "--method", "crasher", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "crasher: RuntimeError: boom in the plugin" in err and "Traceback" in err and "crasher.py" in err
