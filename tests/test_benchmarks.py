"""Smoke test of the benchmark harness on a tiny configuration (no peers): a 4-coil 96x96 fastMRI file, two
masks, two methods, plus drop-in plugins that cannot run or fail. The zero-filled PSNR in the table is checked
against an independent NumPy / scikit-image computation of the same thing (mask, inverse FFT, RSS, PSNR)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from benchmarks import harness
from workbench.io.fastmri import write_fastmri
from workbench.sampling import make_sampling
from workbench.simulate import generate_slice
from numpy_reference import np_ifft2c  # noqa: E402

BROKEN_PLUGINS = '''
from dataclasses import dataclass
from workbench.methods import Method, param


class NeverApplies(Method):
    name = "never-applies"
    version = "1"

    def check(self, problem):
        return ["needs a unicorn"]

    def run(self, problem, params, ctx):
        raise AssertionError("not reached")


class Crashes(Method):
    name = "crashes"
    version = "1"

    def run(self, problem, params, ctx):
        raise RuntimeError("boom")


@dataclass
class LamParams:
    lam: float | None = param(0.01, min=0.0, max=1.0, help="weight; None = automatic")


class FixedLamByDefault(Method):
    name = "fixed-lam"
    version = "1"
    Params = LamParams

    def run(self, problem, params, ctx):
        raise RuntimeError("only declared")
'''


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    s = generate_slice(3, shape=(96, 96), n_coils=4)
    path = folder / "tiny.h5"
    write_fastmri(path, s["kspace"][None], s["reference"][None])
    return harness.Dataset("tiny", "simulated 96x96, 4 coils", str(path)), s


def test_harness_tiny_run(tiny_dataset, tmp_path):
    dataset, sim = tiny_dataset
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(textwrap.dedent(BROKEN_PLUGINS))
    cfg = harness.BenchConfig(datasets=[dataset], methods=["zero-filled", "cg-sense", "never-applies", "crashes"],
                              masks=["random", "equispaced"], accelerations=[4], plugin_dirs=[str(plugins)],
                              warmup=False)
    out = harness.run_benchmark(cfg, log=lambda text: None)

    recs = {(r["sampling"], r["method"]): r for r in out["records"]}
    assert len(out["records"]) == 2 * 4 and len(out["problems"]) == 2
    assert recs[("random", "never-applies")]["status"] == "n/a"
    assert "unicorn" in recs[("random", "never-applies")]["message"]
    assert recs[("random", "crashes")]["status"] == "error" and "boom" in recs[("random", "crashes")]["message"]
    for kind in ("random", "equispaced"):
        zf, cg = recs[(kind, "zero-filled")], recs[(kind, "cg-sense")]
        assert zf["status"] == cg["status"] == "ok"
        assert cg["time_s"] > 0 and cg["lam"] == {"lam": 0.01}
        # independent zero-filled RSS PSNR: same fastMRI mask, NumPy inverse FFT, scikit-image PSNR
        mask = make_sampling(kind, (96, 96), 4, seed=0, center_fraction=0.08).mask.numpy()
        image = np.sqrt((np.abs(np_ifft2c(sim["kspace"] * mask)) ** 2).sum(0))
        ref = sim["reference"]
        expected = peak_signal_noise_ratio(ref, image.astype(ref.dtype), data_range=float(ref.max()))
        assert zf["psnr"] == pytest.approx(expected, abs=1e-3)
        assert cg["psnr"] > zf["psnr"] + 1.0  # parallel imaging beats zero filling at R = 4 with 4 coils

    md, js = harness.write_results(out, tmp_path, "tiny")
    text = md.read_text()
    assert "| zero-filled | default |" in text and "n/a" in text and "Machine:" in text
    assert json.loads(js.read_text())["records"][0]["dataset"] == "tiny"


def test_variants_follow_the_declared_weights(tmp_path):
    from workbench.methods import discover_methods

    (tmp_path / "broken.py").write_text(textwrap.dedent(BROKEN_PLUGINS))
    registry = discover_methods([tmp_path], entry_points=False, user_dirs=False)
    fixed = registry.get("fixed-lam")
    assert harness.method_variants(fixed, ("default", "auto", "fixed")) == [("default", {}), ("auto", {"lam": None})]
    assert harness.method_variants(registry.get("crashes"), ("default", "auto", "fixed")) == [("default", {})]
    if "tv" in registry:  # automatic weight by default: "fixed" gives it a number, "auto" adds nothing
        assert harness.method_variants(registry.get("tv"), ("default", "auto", "fixed"), 0.002) == [
            ("default", {}), ("fixed", {"lam": 0.002})]


def test_workbench_bench_command_runs_the_harness(tmp_path, capsys):
    from workbench.cli import main

    # the real-data set is absent from an empty folder: the run lists it as skipped and writes both files
    rc = main(["bench", "--datasets", "phantom", "--realdata", str(tmp_path), "--methods", "zero-filled",
               "--no-warmup", "--out", str(tmp_path), "--name", "smoke"])
    assert rc == 0
    assert "`phantom` skipped" in (tmp_path / "smoke.md").read_text()
    assert json.loads((tmp_path / "smoke.json").read_text())["skipped"][0]["dataset"] == "phantom"
    assert "wrote" in capsys.readouterr().out
