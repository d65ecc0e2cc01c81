"""benchmarks/bench_scoring.py's hold-out table: it covers the demo and every fully sampled real Cartesian set, a
run whose chosen weight the fold runs cannot take is listed as not validated and left out of its scan's tau, and
the tau it reports is Kendall's tau-b of the hold-out score against the reference NMSE."""

from __future__ import annotations

import itertools

import pytest

from benchmarks import bench_scoring
from benchmarks.bench_realdata_deep import REAL_SETS


def _record(method: str, accel: int, nmse: float, score: float, **extra) -> dict:
    modes = {m: {"psnr": -10 * __import__("math").log10(nmse), "ssim": 1 - nmse, "nmse": nmse}
             for m in ("fastmri", "object", "as-acquired")}
    rec = {"dataset": "gre", "R": accel, "method": method, "scores": modes, "lam": 0.01, "kspace_nmse": nmse}
    if "holdout_failed" not in extra:
        rec.update(holdout_nmse=score, holdout_error=1.0, holdout_correlation=0.0, holdout_folds=4,
                   previous={"holdout_nmse": score}, before={"holdout_nmse": score}, holdout_time_s=0.1)
    rec.update(extra)
    return rec


def _tau_b(x, y) -> float:
    """Kendall's tau-b from its definition (no ties here): (concordant - discordant) / pairs."""
    signs = [(a - b) * (c - d) for (a, c), (b, d) in itertools.combinations(zip(x, y), 2)]
    return (sum(s > 0 for s in signs) - sum(s < 0 for s in signs)) / len(signs)


def test_the_holdout_table_covers_the_demo_and_every_real_cartesian_set():
    assert set(bench_scoring.HOLDOUT_SETS) == {"demo"} | set(REAL_SETS)


def test_a_run_not_validated_is_listed_and_left_out_of_the_tau():
    nmse = [0.05, 0.06, 0.07, 0.08, 0.10, 0.12, 0.14]
    score = [0.05, 0.07, 0.06, 0.08, 0.10, 0.12, 0.14]  # one pair swapped
    names = [(m, r) for r in (4, 8) for m in bench_scoring.METHODS]
    records = [_record(m, r, n, s) for (m, r), n, s in zip(names, nmse, score)]
    records.append(_record("tv", 8, 0.2, 0.0, holdout_failed="parameter 'lam' of tv: 803.5 is above the maximum 1.0"))
    text = bench_scoring.holdout_markdown(records)
    failed = [line for line in text.splitlines() if line.startswith("| gre | 8 | tv |")]
    assert len(failed) == 1 and "not validated" in failed[0] and "803.5" in failed[0]
    assert failed[0].count("|") == text.splitlines()[4].count("|")  # as many cells as the header
    summary = next(line for line in text.splitlines() if line.startswith("| gre | 7 |"))  # 7 items, not 8
    expected = _tau_b(score, nmse)
    assert expected == pytest.approx(19 / 21)
    assert summary.split("|")[4].strip().split(" / ")[0] == f"{expected:.3f}"
    assert "cg-sense R4 / l1-wavelet R4" in summary  # the swapped pair named


def test_the_pairs_the_holdout_separates_and_those_it_ranks_wrongly():
    """Two runs are separated when their hold-out NMSEs are 2 combined standard errors apart; of the separated
    pairs the table counts those ranked against the reference NMSE."""
    # (reference NMSE, score, standard error): zero-filled / CG-SENSE 0.02 apart with errors 0.003 / 0.004 (2 x
    # 0.005 needed): separated, ranked against the reference; CG-SENSE / l1-wavelet 0.005 apart (0.008 needed): not
    # separated; zero-filled / l1-wavelet 0.015 apart (0.006 needed): separated, ranked against it
    runs = {"zero-filled": (0.10, 0.10, 0.003), "cg-sense": (0.08, 0.12, 0.004), "l1-wavelet": (0.05, 0.115, 0.0)}
    records = [_record(m, 4, n, s, holdout_nmse_se=e) for m, (n, s, e) in runs.items()]
    assert bench_scoring.separated_pairs(records) == (2, 2)
    text = bench_scoring.holdout_markdown(records)
    summary = next(line for line in text.splitlines() if line.startswith("| gre | 3 |"))
    assert "| 2 of 3, 2 |" in summary
    assert "0.1200 ± 0.0040" in text
    assert bench_scoring.separated_pairs([_record("tv", 4, 0.1, 0.1)] + records) == ("-", "-")
