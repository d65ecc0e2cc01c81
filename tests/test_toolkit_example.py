"""The toolkit example of docs/plugins.md (examples/plugins/wavelet_tv.py), installed as a drop-in folder and run
through the CLI and the app's session; its objective against an independent definition, its progress and
Cancel."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import toolkit
from workbench.cli import main
from workbench.io.fastmri import write_fastmri
from workbench.methods import JobCancelled, RunContext, discover_methods, safe_run
from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.wavelet import Wavelet2D
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scan import scan_from_arrays
from workbench.session import Session
from workbench.simulate import generate_slice

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "wavelet_tv.py"
# 30 iterations; the weight search keeps its default 30 per solve: at 10 its floor solve stops far above the
# unregularised residual (89 against 44 here) and every weight it then finds over-smooths
FAST = {"n_iter": 30}


@pytest.fixture(scope="module")
def drop_in(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dropin")
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    return folder


@pytest.fixture(scope="module")
def volume():
    """A 96x96 brain slice, 8 coils, as a one-slice volume (at 96 columns a centre fraction of 0.16 keeps 15
    ACS lines, enough for ESPIRiT)."""
    s = generate_slice(0, shape=(96, 96), n_coils=8)
    return {"kspace": s["kspace"][None], "reference": s["reference"][None]}


def test_the_example_is_short_and_public():
    assert len(EXAMPLE.read_text().splitlines()) < 60
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```" in guide


def test_run_defaults_are_the_declared_defaults():
    @dataclass
    class Settings:
        lam_rule: str = toolkit.lam_rule_param()
        kappa: float = toolkit.kappa_param()
        search_iter: int = toolkit.search_iter_param()
        dcf_weighting: bool = toolkit.dcf_weighting_param()
        record_objective: bool = toolkit.record_objective_param()

    assert {f.name: f.default for f in fields(Settings)} == toolkit.RUN_DEFAULTS


def test_cli_runs_the_drop_in(drop_in, volume, tmp_path, capsys):
    path = tmp_path / "small.h5"
    write_fastmri(path, volume["kspace"], volume["reference"])
    argv = ["recon", str(path), "--mask", "random", "--accel", "4", "--center-fraction", "0.16",
            "--method", "wavelet-tv", "--plugin-dir", str(drop_in), "--json"]
    assert main(argv + [f"--param={k}={v}" for k, v in FAST.items()]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["method"] == "wavelet-tv" and d["chosen"]["lam"] > 0  # the weight was chosen automatically
    assert np.isfinite(d["metrics"]["psnr"]) and d["metrics"]["psnr"] > d["zero_filled"]["psnr"] + 0.3


def test_session_runs_the_drop_in(drop_in, volume):
    registry = discover_methods([drop_in], entry_points=False, builtin=False, user_dirs=False)
    assert registry.names() == ["wavelet-tv"], registry.errors
    session = Session(device="cpu")
    try:
        session.set_scan(scan_from_arrays(volume["kspace"], reference=volume["reference"]))
        session.set_sampling("random", acceleration=4, seed=0, center_fraction=0.16)
        entry = session.run(registry.get("wavelet-tv"), FAST)
        t0 = time.time()
        while entry.active and time.time() - t0 < 60:
            time.sleep(0.02)
        assert entry.state == "done", entry.error
        assert np.isfinite(np.asarray(entry.image)).all()
        assert entry.metrics["psnr"] > session.zero_filled_metrics()["psnr"] + 0.3
    finally:
        session.shutdown()


@pytest.fixture(scope="module")
def problem(volume):
    scan = scan_from_arrays(volume["kspace"], reference=volume["reference"])
    return Problem.from_scan(scan, 0, make_sampling("random", (96, 96), 4, seed=0, center_fraction=0.16))


def test_objective_matches_an_independent_definition_and_decreases(drop_in, problem):
    method = discover_methods([drop_in], entry_points=False, builtin=False, user_dirs=False).get("wavelet-tv")
    lam_rel, share = 0.005, 0.5
    result = safe_run(method, problem, {"lam": lam_rel, "tv_share": share, "n_iter": 60, "record_objective": True},
                      RunContext("cpu"))
    lam = lam_rel * float(problem.scale)
    W, D = Wavelet2D(problem.grid_shape, "db4"), FiniteDifference2D(problem.grid_shape)

    def objective(x):  # 0.5 ||A x - y||^2 + lam ||W x||_1 + share lam sum_pixels |grad x|
        x = x.to(torch.complex64)
        data = 0.5 * float((problem.A.forward(x) - problem.y).abs().pow(2).sum())
        tv = float(D.forward(x).abs().pow(2).sum(0).sqrt().sum())
        return data + lam * float(W.forward(x).abs().sum()) + share * lam * tv

    history = [h["objective"] for h in result.history]
    assert objective(result.image) == pytest.approx(history[-1], rel=1e-4)  # Cartesian: image = grid
    assert history[-1] < 0.5 * history[0]
    zero_filled = problem.zero_filled("sense")
    assert objective(result.image) < objective(zero_filled)


def test_progress_and_cancel(drop_in, problem):
    method = discover_methods([drop_in], entry_points=False, builtin=False, user_dirs=False).get("wavelet-tv")
    seen = []

    def on_progress(fraction, text):
        seen.append(text)
        if len(seen) == 3:
            ctx.cancel()

    ctx = RunContext("cpu", on_progress=on_progress)
    with pytest.raises(JobCancelled):
        toolkit._chosen_weights.clear()  # as a fresh process: an earlier test's weight for this problem is not reused
        safe_run(method, problem, {"n_iter": 500}, ctx)  # cancelled during the weight search
    assert any("choosing the weight" in t for t in seen) and len(seen) <= 4
