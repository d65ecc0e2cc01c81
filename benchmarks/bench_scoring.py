"""Fair scores: the scoring modes and the hold-out score on the demo and the fully sampled real sets.

For each dataset of :data:`benchmarks.harness.DATASETS` (the demo and the real head, phantom and GRE sets), a
random fastMRI line mask at R = 4 and 8 (seed 0) and the methods zero-filled, cg-sense, l1-wavelet and tv (the
regularised ones at their automatic weight), this script records

- PSNR / SSIM / NMSE in each scoring mode of :mod:`workbench.scoring` ("fastmri", "object", "as-acquired"),
  written to ``results/score_modes.md`` with, per mode, whether each method ranks above zero-filled;
- on the real sets, the k-space hold-out error (:mod:`workbench.holdout`, 7 % of the measured samples outside
  the calibration box, seed 0) and, per scan, Kendall's tau between the hold-out ranking and the reference
  ranking over methods x accelerations (``results/holdout.md``).

Runs are cached in ``results/scoring_runs.json`` (``--fresh`` recomputes). CPU: about 15-30 minutes on 2 cores.
Usage: ``python -m benchmarks.bench_scoring [--datasets demo,head] [--fresh]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.harness import DATASETS, RESULTS_DIR, make_problem, open_dataset, realdata_dir

METHODS = ("zero-filled", "cg-sense", "l1-wavelet", "tv")
AUTO = {"l1-wavelet": {"lam": None}, "tv": {"lam": None}}
ACCELERATIONS = (4, 8)
HOLDOUT_SETS = ("head", "phantom", "gre")  # the fully sampled real scans
RUNS = RESULTS_DIR / "scoring_runs.json"


def run_all(names, fresh: bool = False, log=print) -> list[dict]:
    from workbench.holdout import holdout_score
    from workbench.methods import discover_methods, safe_run
    from workbench.scoring import SCORE_MODES, score_result

    done = [] if fresh or not RUNS.exists() else json.loads(RUNS.read_text())
    have = {(r["dataset"], r["R"], r["method"]) for r in done}
    registry = discover_methods()
    realdata = realdata_dir()
    for name in names:
        opened = open_dataset(name, realdata)
        if opened is None:
            log(f"{name}: not found, skipped")
            continue
        scan, index = opened
        for accel in ACCELERATIONS:
            if all((name, accel, m) in have for m in METHODS):
                continue
            problem, _ = make_problem(scan, index, "random", accel)
            _ = problem.maps
            for m in METHODS:
                if (name, accel, m) in have:
                    continue
                method, params = registry.get(m), AUTO.get(m)
                t0 = time.perf_counter()
                result = safe_run(method, problem, params)
                rec = {"dataset": name, "R": accel, "method": m, "time_s": round(time.perf_counter() - t0, 2),
                       "lam": result.chosen.get("lam"), "lam_rule": result.chosen.get("lam_rule"),
                       "scores": {mode: score_result(problem, result, mode) for mode in SCORE_MODES}}
                if name in HOLDOUT_SETS:
                    rec.update(holdout_score(method, problem, params))
                done.append(rec)
                RUNS.write_text(json.dumps(done, indent=1))
                log(f"{name} R={accel} {m}: {rec['time_s']} s, "
                    + ", ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in rec["scores"].items())
                    + (f", hold-out {rec['holdout_error']:.4f}" if "holdout_error" in rec else ""))
    return done


def score_modes_markdown(records: list[dict]) -> str:
    lines = ["# Scoring modes: do the reconstructions rank above zero-filled?", "",
             "Written by `python -m benchmarks.bench_scoring` (random line mask, seed 0; l1-wavelet and TV at their "
             "automatic weight; PSNR dB / SSIM). A mark `<` after a number: that method scores below zero-filled "
             "in that metric and mode.", ""]
    modes = ("fastmri", "object", "as-acquired")
    lines.append("| dataset | R | method | " + " | ".join(f"{m} PSNR / SSIM" for m in modes) + " |")
    lines.append("|---|---|---|" + "---|" * len(modes))
    below: list[str] = []
    for (ds, accel), group in _groups(records).items():
        zf = group.get("zero-filled")
        for m in METHODS:
            r = group.get(m)
            if r is None:
                continue
            cells = []
            for mode in modes:
                s, z = r["scores"][mode], zf["scores"][mode]
                mark_p = " <" if m != "zero-filled" and s["psnr"] <= z["psnr"] else ""
                mark_s = " <" if m != "zero-filled" and s["ssim"] <= z["ssim"] else ""
                cells.append(f"{s['psnr']:.2f}{mark_p} / {s['ssim']:.3f}{mark_s}")
                if (mark_p or mark_s) and mode != "fastmri":
                    below.append(f"{ds} R={accel} {m} ({mode}: PSNR {s['psnr']:.2f} vs {z['psnr']:.2f}, SSIM "
                                 f"{s['ssim']:.3f} vs {z['ssim']:.3f})")
            lines.append(f"| {ds} | {accel} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "Rows below zero-filled in the object or as-acquired mode: " + ("none." if not below else "")]
    lines += [f"- {b}" for b in below]
    return "\n".join(lines) + "\n"


def _groups(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault((r["dataset"], r["R"]), {})[r["method"]] = r
    return out


def holdout_markdown(records: list[dict]) -> str:
    from scipy.stats import kendalltau

    lines = ["# Hold-out validation against the reference ranking", "",
             "Written by `python -m benchmarks.bench_scoring`. Each method runs again with 7 % of its measured "
             "samples outside the calibration box held out (seed 0); the hold-out error is "
             "`||y_h - P_h F S x||^2 / ||y_h||^2` (lower is better). Kendall's tau (tau-b) between the hold-out "
             "error and the reference NMSE (= the PSNR ranking) over methods x accelerations (4 x 2) per scan; "
             "also against the SSIM ranking (1 - SSIM) of each scoring mode. Goal: tau >= 0.8.", "",
             "| dataset | R | method | hold-out error | NMSE (fastmri) | PSNR fastmri / object / as-acquired | "
             "SSIM fastmri / object / as-acquired |", "|---|---|---|---|---|---|---|"]
    taus = []
    for ds in HOLDOUT_SETS:
        recs = [r for r in records if r["dataset"] == ds and "holdout_error" in r]
        if not recs:
            continue
        for r in recs:
            s = r["scores"]
            lines.append(f"| {ds} | {r['R']} | {r['method']} | {r['holdout_error']:.4f} | {s['fastmri']['nmse']:.4f} | "
                         + " / ".join(f"{s[m]['psnr']:.2f}" for m in ("fastmri", "object", "as-acquired")) + " | "
                         + " / ".join(f"{s[m]['ssim']:.3f}" for m in ("fastmri", "object", "as-acquired")) + " |")
        h = [r["holdout_error"] for r in recs]
        row = {"dataset": ds, "n": len(recs), "nmse": kendalltau(h, [r["scores"]["fastmri"]["nmse"] for r in recs])[0]}
        for mode in ("fastmri", "object", "as-acquired"):
            row[mode] = kendalltau(h, [1 - r["scores"][mode]["ssim"] for r in recs])[0]
        taus.append(row)
    lines += ["", "| scan | items | tau vs NMSE/PSNR | tau vs SSIM fastmri | tau vs SSIM object | "
                  "tau vs SSIM as-acquired |", "|---|---|---|---|---|---|"]
    for t in taus:
        lines.append(f"| {t['dataset']} | {t['n']} | {t['nmse']:.3f} | {t['fastmri']:.3f} | {t['object']:.3f} | "
                     f"{t['as-acquired']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    p.add_argument("--fresh", action="store_true", help="recompute every run (default: reuse results/scoring_runs.json)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    records = run_all([d for d in args.datasets.split(",") if d], args.fresh)
    Path(RESULTS_DIR / "score_modes.md").write_text(score_modes_markdown(records))
    Path(RESULTS_DIR / "holdout.md").write_text(holdout_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
