"""Fair scores: the scoring modes and the hold-out score on the demo and the fully sampled real sets.

For each dataset of :data:`benchmarks.harness.DATASETS` (the demo and the real head, phantom and GRE sets), a
random fastMRI line mask at R = 4 and 8 (seed 0) and the methods zero-filled, cg-sense, l1-wavelet and tv (the
regularised ones at their automatic weight, 40 iterations), this script records

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

from benchmarks.harness import DATASETS, RESULTS_DIR, available_datasets, make_problem, open_dataset, realdata_dir

METHODS = ("zero-filled", "cg-sense", "l1-wavelet", "tv")
# automatic weight; iterations cut from 100 (30 per weight search solve) to 40 (15) so that the whole table runs
# on a shared 2-core CPU in under an hour (the ranking questions asked here do not hinge on the last dB)
FAST = {"lam": None, "n_iter": 40, "search_iter": 15}
AUTO = {"l1-wavelet": FAST, "tv": FAST}
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
    for name, scan, index in available_datasets(names, realdata, log):
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
                    + (f", hold-out NMSE {rec['holdout_nmse']:.4f} (error {rec['holdout_error']:.4f})"
                       if "holdout_nmse" in rec else ""))
    return done


def mask_rows(names) -> list[dict]:
    """The object mask's rule on each dataset's reference: the share of the image it covers, its connected
    parts, the share of the reference's energy inside, the mean inside over the mean outside."""
    import numpy as np
    from scipy import ndimage

    from workbench.problem import Problem
    from workbench.scoring import reference_region

    rows = []
    for name in names:
        opened = open_dataset(name, realdata_dir())
        if opened is None:
            continue
        ref = Problem.from_scan(*opened).reference.numpy().astype(np.float64)
        m = reference_region(ref)
        rows.append({"dataset": name, "shape": "x".join(map(str, ref.shape)), "area": float(m.mean()),
                     "parts": int(ndimage.label(m)[1]), "energy": float((ref[m] ** 2).sum() / (ref**2).sum()),
                     "contrast": float(ref[m].mean() / ref[~m].mean())})
    return rows


def score_modes_markdown(records: list[dict], masks: list[dict] = ()) -> str:
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
    lines += ["", "Why (measured 2026-12-06): the phantom has one coil, so CG-SENSE is zero filling with a small Tikhonov "
              "weight (ties to 0.06 dB); the GRE phantom has two coils on a 160-line grid, which cannot unfold R = 4 "
              "or 8 (CG-SENSE amplifies noise, and TV's automatic weight, the discrepancy rule at 40 iterations, "
              "leaves it: 16.3 dB at R = 4), so zero-filled's blur is the better image there in SSIM; on the demo "
              "at R = 8 (12 coils, 10 centre lines of 256) CG-SENSE keeps residual aliasing and noise (SSIM 0.713 "
              "against 0.719 as acquired). Every other row (15: the head and the demo with all three methods except "
              "that one, the phantom with l1-wavelet and TV) ranks above zero-filled in PSNR and SSIM in both fair "
              "modes, where the fastMRI mode puts 13 of those 15 below it in SSIM."]
    if masks:
        lines += ["", "## The object mask on each reference", "",
                  "`workbench.scoring.object_mask`: Otsu's threshold of the reference smoothed by a Gaussian (1.5 px), "
                  "opened (3x3), parts under a tenth of the largest dropped, holes filled; derived once per reference.",
                  "", "| dataset | reference | area share | parts | energy inside | mean inside / outside |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['dataset']} | {m['shape']} | {m['area']:.2f} | {m['parts']} | {m['energy']:.3f} | "
                  f"{m['contrast']:.1f} |" for m in masks]
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
             "samples outside the calibration box held out (seed 0). `error`: `||y_h - P_h F S x||^2 / ||y_h||^2` on "
             "the held-out samples; `hold-out NMSE` (the score, `workbench.holdout.estimated_nmse`): the scan's "
             "k-space NMSE it predicts (kept-sample residual + held-out error for every unmeasured point). Kendall's "
             "tau (tau-b) between the hold-out NMSE and the reference's figures over methods x accelerations (4 x 2) "
             "per scan: NMSE (= the PSNR ranking) and 1 - SSIM in each scoring mode. The hold-out predicts the error "
             "of the unmeasured k-space, which is exactly what the as-acquired NMSE measures (the measured samples "
             "are put back there). Goal: tau >= 0.8.",
             "", "| dataset | R | method | hold-out NMSE | error | NMSE (fastmri) | PSNR fastmri / object / "
             "as-acquired | SSIM fastmri / object / as-acquired |", "|---|---|---|---|---|---|---|---|"]
    taus = []
    modes = ("fastmri", "object", "as-acquired")
    for ds in HOLDOUT_SETS:
        recs = [r for r in records if r["dataset"] == ds and "holdout_nmse" in r]
        if not recs:
            continue
        for r in recs:
            s = r["scores"]
            lines.append(f"| {ds} | {r['R']} | {r['method']} | {r['holdout_nmse']:.4f} | {r['holdout_error']:.4f} | "
                         f"{s['fastmri']['nmse']:.4f} | " + " / ".join(f"{s[m]['psnr']:.2f}" for m in modes) + " | "
                         + " / ".join(f"{s[m]['ssim']:.3f}" for m in modes) + " |")
        h = [r["holdout_nmse"] for r in recs]
        row = {"dataset": ds, "n": len(recs),
               "raw": kendalltau([r["holdout_error"] for r in recs], [r["scores"]["fastmri"]["nmse"] for r in recs])[0]}
        for mode in modes:
            row["nmse " + mode] = kendalltau(h, [r["scores"][mode]["nmse"] for r in recs])[0]
            row["ssim " + mode] = kendalltau(h, [1 - r["scores"][mode]["ssim"] for r in recs])[0]
        taus.append(row)
    lines += ["", "| scan | items | tau: hold-out NMSE vs NMSE (= PSNR) fastmri / object / as-acquired | vs SSIM "
                  "fastmri / object / as-acquired | raw held-out error vs NMSE fastmri |", "|---|---|---|---|---|"]
    for t in taus:
        lines.append(f"| {t['dataset']} | {t['n']} | " + " / ".join(f"{t['nmse ' + m]:.3f}" for m in modes) + " | "
                     + " / ".join(f"{t['ssim ' + m]:.3f}" for m in modes) + f" | {t['raw']:.3f} |")
    lines += ["", "Notes (measured 2026-12-06 on these sets): the discordant pairs are l1-wavelet against TV at the same "
              "R (0.1-0.5 dB apart), and on the head zero-filled at R=4 against the R=8 methods: held-out samples "
              "on measured lines are easier to predict than whole unmeasured lines, so the hold-out underestimates "
              "every interpolating method's error against zero-filled's (whose relative error is 1 everywhere). "
              "Holding out whole lines instead (tried: tau vs NMSE 0.643 / 1.000 / 0.786 for head / phantom / gre, "
              "0.786 / 0.929 / 0.929 vs as-acquired SSIM) trades that bias for the variance of 2-4 lines; the "
              "sample hold-out (SSDU-style) is kept. The phantom has one coil: CG-SENSE there is zero filling (tie)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    p.add_argument("--redo", default="", help="comma-separated datasets to recompute (the others are reused)")
    p.add_argument("--fresh", action="store_true",
                   help="recompute every run (default: reuse results/scoring_runs.json)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    if args.redo and RUNS.exists():
        redo = set(args.redo.split(","))
        RUNS.write_text(json.dumps([r for r in json.loads(RUNS.read_text()) if r["dataset"] not in redo], indent=1))
    records = run_all([d for d in args.datasets.split(",") if d], args.fresh)
    names = [d for d in args.datasets.split(",") if d]
    Path(RESULTS_DIR / "score_modes.md").write_text(score_modes_markdown(records, mask_rows(names)))
    Path(RESULTS_DIR / "holdout.md").write_text(holdout_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
