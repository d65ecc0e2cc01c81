"""benchmarks/bench_scoring.py's sets: --defaults covers the demo and every fully sampled real Cartesian set, and a
set whose file is absent is skipped with a line, not an error."""

from __future__ import annotations

import pytest

from benchmarks import bench_scoring
from benchmarks.bench_realdata_deep import REAL_SETS
from benchmarks.harness import DATASETS


def test_defaults_cover_the_demo_and_every_real_cartesian_set():
    assert set(bench_scoring.DEFAULTS_SETS) == {"demo"} | set(REAL_SETS)
    assert set(DATASETS) <= set(bench_scoring.DEFAULTS_SETS)


def test_absent_sets_are_skipped_with_a_line(tmp_path):
    lines: list[str] = []
    found = list(bench_scoring.scoring_sets(["head", "dhe", "bodycoil", "7t"], tmp_path, lines.append))
    assert found == []
    assert [line.split(":")[0] for line in lines] == ["head", "dhe", "bodycoil", "7t"]
    assert all("skipped" in line for line in lines)
    assert bench_scoring.open_set("demo", tmp_path) is not None  # built in: never skipped
    with pytest.raises(ValueError, match="unknown dataset"):
        bench_scoring.open_set("nonesuch", tmp_path)


def test_a_real_set_opens_as_a_fully_sampled_slice(realdata):
    path = REAL_SETS["bodycoil"].dataset.resolve(realdata)
    if path is None:
        pytest.skip("the body-coil scan is not available")
    scan, index = bench_scoring.open_set("bodycoil", realdata)
    problem, maps = bench_scoring.problem_with_maps(scan, index, 8)
    assert problem.grid_shape == (128, 128) and problem.n_coils == 2
    assert maps == "acs"  # 5 centre lines at R = 8: too few for ESPIRiT's 6x6 kernel
    problem4, maps4 = bench_scoring.problem_with_maps(scan, index, 4)
    assert maps4 == "espirit"
