"""The default wavelet: l1-wavelet and fused lasso with each candidate wavelet, on real scans.

For each set of :data:`benchmarks.bench_scoring.DEFAULTS_SETS` (the demo and the six fully sampled real sets;
a set whose file is absent is skipped with a line in the log), a random fastMRI line mask at R = 4 and 8 (seed
0, the maps of :func:`benchmarks.bench_scoring.problem_with_maps`), l1-wavelet and fused lasso run with their
defaults (automatic weight, 100 iterations: what a user gets) once per wavelet of ``--wavelets`` (default
``db2,db4``: today's default, BART's ``dau2``, and the earlier one, sigpy's). Every result is scored in each
mode of :mod:`workbench.scoring`. Written to ``results/wavelet_default.md|json``: per run PSNR / SSIM per mode,
the chosen weight and the time, and per mode the mean difference of each wavelet against the first.

CPU: the 28 runs per wavelet took 4 min on one core (2026-12-07). Usage:
``python -m benchmarks.bench_wavelet [--datasets head,gre] [--wavelets db2,db4,sym4] [--no-write]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.bench_scoring import ACCELERATIONS, DEFAULTS_SETS, problem_with_maps, scoring_sets
from benchmarks.harness import RESULTS_DIR, machine_description, machine_line, realdata_dir

METHODS = ("l1-wavelet", "fused-lasso")


def run(sets, wavelets, log=print) -> list[dict]:
    """One record per set, R, method and wavelet."""
    from workbench.methods import discover_methods, safe_run
    from workbench.scoring import SCORE_MODES, score_result

    registry = discover_methods()
    records = []
    for name, scan, index in scoring_sets(sets, realdata_dir(), log):
        for accel in ACCELERATIONS:
            problem, maps = problem_with_maps(scan, index, accel)
            for method in METHODS:
                for wavelet in wavelets:
                    t0 = time.perf_counter()
                    result = safe_run(registry.get(method), problem, {"wavelet": wavelet})
                    rec = {"dataset": name, "R": accel, "method": method, "wavelet": wavelet, "maps": maps,
                           "time_s": round(time.perf_counter() - t0, 2), "lam": result.chosen.get("lam"),
                           "scores": {mode: score_result(problem, result, mode) for mode in SCORE_MODES}}
                    records.append(rec)
                    log(f"{name} R={accel} {method} {wavelet}: {rec['time_s']} s, "
                        + ", ".join(f"{m} {v['psnr']:.2f}/{v['ssim']:.3f}" for m, v in rec["scores"].items()))
    return records


def differences(records: list[dict], wavelets) -> list[dict]:
    """Per mode and wavelet after the first: the mean and worst PSNR / SSIM difference against the first
    wavelet over the runs both have, and in how many runs it is higher."""
    from workbench.scoring import SCORE_MODES

    by_run = {}
    for r in records:
        by_run.setdefault((r["dataset"], r["R"], r["method"]), {})[r["wavelet"]] = r
    out = []
    for other in wavelets[1:]:
        pairs = [(v[wavelets[0]], v[other]) for v in by_run.values() if wavelets[0] in v and other in v]
        for mode in SCORE_MODES:
            for metric in ("psnr", "ssim"):
                # first minus other: positive where the first wavelet scores higher
                d = [a["scores"][mode][metric] - b["scores"][mode][metric] for a, b in pairs]
                if d:
                    out.append({"first": wavelets[0], "other": other, "mode": mode, "metric": metric,
                                "runs": len(d), "mean": sum(d) / len(d), "worst": min(d),
                                "higher": sum(x > 0 for x in d)})
    return out


def to_markdown(records: list[dict], summary: list[dict], wavelets, meta: dict) -> str:
    from workbench.scoring import SCORE_MODES

    lines = ["# The default wavelet on real scans", "", machine_line(meta), "",
             "Written by `python -m benchmarks.bench_wavelet` (random line mask, seed 0; l1-wavelet and fused lasso "
             "with their defaults, automatic weight, 100 iterations; only the wavelet changes). PSNR dB / SSIM in "
             "each scoring mode of `workbench.scoring`.", "",
             f"## {wavelets[0]} minus each other wavelet (mean over the runs; worst; runs where {wavelets[0]} "
             "is higher)", "", "| other | mode | metric | runs | mean | worst | higher |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        digits = 3 if s["metric"] == "psnr" else 4
        lines.append(f"| {s['other']} | {s['mode']} | {s['metric'].upper()} | {s['runs']} | {s['mean']:+.{digits}f} "
                     f"| {s['worst']:+.{digits}f} | {s['higher']} |")
    lines += ["", "## Runs", "", "| dataset | R | method | wavelet | lam (x scale) | time s | "
              + " | ".join(f"{m} PSNR / SSIM" for m in SCORE_MODES) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(SCORE_MODES)]
    for r in records:
        lam = "" if r["lam"] is None else f"{r['lam']:.4g}"
        lines.append(f"| {r['dataset']} | {r['R']} | {r['method']} | {r['wavelet']} | {lam} | {r['time_s']} | "
                     + " | ".join(f"{r['scores'][m]['psnr']:.2f} / {r['scores'][m]['ssim']:.3f}" for m in SCORE_MODES)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    csv = lambda s: [v.strip() for v in s.split(",") if v.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_wavelet", description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=csv, default=list(DEFAULTS_SETS))
    ap.add_argument("--wavelets", type=csv, default=["db2", "db4"], help="the first is compared with the others")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    meta = machine_description()
    records = run(args.datasets, args.wavelets)
    summary = differences(records, args.wavelets)
    text = to_markdown(records, summary, args.wavelets, meta)
    print(text)
    if not args.no_write:
        out = Path(args.out)
        (out / "wavelet_default.json").write_text(json.dumps({"meta": meta, "records": records, "summary": summary},
                                                             indent=1))
        (out / "wavelet_default.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
