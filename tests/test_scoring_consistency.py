"""One data-range rule: the library (``workbench.scoring`` as the README calls it), the CLI (``workbench recon
--json``) and the app's session report the same PSNR / SSIM / NMSE for the same zero-filled reconstruction, for
a fastMRI file with a ``max`` attribute, one with a stored reference but no ``max`` attribute (scored against the
reference volume's maximum, not the slice's), and one whose reference is computed from the k-space."""

from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from workbench.cli import main
from workbench.io import open_scan
from workbench.io.fastmri import write_fastmri
from workbench.methods import discover_methods
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scoring import evaluate, volume_data_range
from workbench.session import Session
from workbench.simulate import generate_volume

SAMPLING = dict(kind="random", acceleration=4.0, seed=0, center_fraction=0.08)


@pytest.fixture(scope="module")
def volume():
    vol = generate_volume(0, slice_positions=[12.0, 22.0, 32.0], shape=(64, 64), n_coils=4)
    maxima = vol["reference"].reshape(len(vol["reference"]), -1).max(1)
    return vol, int(np.argmin(maxima))  # the slice whose own maximum is furthest below the volume's


def write_case(folder, vol, case: str):
    path = folder / f"{case}.h5"
    if case == "max attribute":  # a stored max that differs from the reference's maximum, so the source shows
        write_fastmri(path, vol["kspace"], vol["reference"], attrs={"max": 1.25 * float(vol["reference"].max())})
        return path, 1.25 * float(vol["reference"].max()), "file max attribute"
    if case == "stored reference, no max":
        write_fastmri(path, vol["kspace"], vol["reference"])
        with h5py.File(path, "a") as f:
            del f.attrs["max"]
        return path, float(vol["reference"].max()), "reference volume maximum"
    write_fastmri(path, vol["kspace"])  # no reference: the RSS of the fully sampled slice
    return path, None, "slice maximum"


def cli_scores(capsys, path, index):
    code = main(["recon", str(path), "--method", "zero-filled", "--mask", SAMPLING["kind"], "--accel",
                 str(SAMPLING["acceleration"]), "--center-fraction", str(SAMPLING["center_fraction"]), "--seed",
                 str(SAMPLING["seed"]), "--slice", str(index), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip())


def session_scores(path, index):
    method = discover_methods().get("zero-filled")
    s = Session(device="cpu")
    try:
        s.open(path)
        s.set_slice(index)
        s.set_sampling(SAMPLING["kind"], acceleration=SAMPLING["acceleration"], seed=SAMPLING["seed"],
                       center_fraction=SAMPLING["center_fraction"])
        entry = s.run(method)
        t0 = time.time()
        while entry.active and time.time() - t0 < 60:
            time.sleep(0.01)
        assert entry.state == "done", entry.error
        return entry.metrics, s.data_range(), s.zero_filled_metrics()
    finally:
        s.shutdown()


def library_scores(path, index):
    """The README's library call (with the zero-filled plugin's RSS combination)."""
    scan = open_scan(str(path))
    sampling = make_sampling(SAMPLING["kind"], scan.grid_shape, acceleration=SAMPLING["acceleration"],
                             seed=SAMPLING["seed"], center_fraction=SAMPLING["center_fraction"])
    problem = Problem.from_scan(scan, slice_index=index, sampling=sampling)
    x = problem.crop(problem.zero_filled("rss"))
    return evaluate(problem.reference, x.abs(), data_range=problem.data_range), problem, scan


@pytest.mark.parametrize("case", ["max attribute", "stored reference, no max", "reference from k-space"])
def test_library_cli_and_session_report_the_same_scores(case, volume, tmp_path, capsys):
    vol, index = volume
    path, expected_range, expected_source = write_case(tmp_path, vol, case)
    library, problem, scan = library_scores(path, index)
    slice_max = float(problem.reference.max())
    if expected_range is None:
        expected_range = slice_max
    else:  # the rule picks something other than the slice's own maximum (the app used that before)
        assert expected_range > 1.01 * slice_max
    assert volume_data_range(scan, problem.reference) == (pytest.approx(expected_range, rel=1e-6), expected_source)
    assert problem.data_range == pytest.approx(expected_range, rel=1e-6)

    cli = cli_scores(capsys, path, index)
    assert cli["data_range_source"] == expected_source
    assert cli["data_range"] == pytest.approx(expected_range, rel=1e-6)

    app, app_range, app_live = session_scores(path, index)
    assert app_range == pytest.approx(expected_range, rel=1e-6)
    for name in ("psnr", "ssim"):
        assert cli["metrics"][name] == pytest.approx(library[name], abs=1e-6), name
        assert app[name] == pytest.approx(library[name], abs=1e-6), name
    assert cli["metrics"]["nmse"] == pytest.approx(library["nmse"], rel=1e-6)
    assert app["nmse"] == pytest.approx(library["nmse"], rel=1e-6)
    # the app's live zero-filled image (numpy FFT of the cached slice, not the problem's torch FFT) agrees too
    assert app_live["psnr"] == pytest.approx(cli["zero_filled"]["psnr"], abs=1e-4)
    assert app_live["ssim"] == pytest.approx(cli["zero_filled"]["ssim"], abs=1e-5)
