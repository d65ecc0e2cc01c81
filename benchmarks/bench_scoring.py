"""Fair scores: the scoring modes and the hold-out score on the demo and the fully sampled real sets.

For each dataset of :data:`benchmarks.harness.DATASETS` (the demo and the real head, phantom and GRE sets), a
random fastMRI line mask at R = 4 and 8 (seed 0) and the methods zero-filled, cg-sense, l1-wavelet and tv (the
regularised ones at their automatic weight, 40 iterations), this script records

- PSNR / SSIM / NMSE in each scoring mode of :mod:`workbench.scoring` ("fastmri", "object", "as-acquired"),
  written to ``results/score_modes.md`` with, per mode, whether each method ranks above zero-filled;
- on the real sets and the demo, the k-space hold-out score (:mod:`workbench.holdout`: 4 folds, each holding out
  7 % of the measured lines off the fully sampled centre, seed 0) and, per scan, Kendall's tau between the
  hold-out ranking and the reference ranking over methods x accelerations (``results/holdout.md``), beside the
  tau of the previous rule (one split of 7 % of the single samples), kept in the cache as ``before``.

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
HOLDOUT_SETS = ("demo", "head", "phantom", "gre")  # the sets with a reference: the demo, the fully sampled real scans
HOLDOUT_KEYS = ("holdout_nmse", "holdout_error", "holdout_fraction", "holdout_samples", "holdout_seed")
RUNS = RESULTS_DIR / "scoring_runs.json"


def run_all(names, fresh: bool = False, log=print) -> list[dict]:
    from workbench.holdout import holdout_score
    from workbench.methods import discover_methods, safe_run
    from workbench.scoring import SCORE_MODES, score_result

    done = [] if fresh or not RUNS.exists() else json.loads(RUNS.read_text())
    for r in done:  # a score of the previous hold-out rule (one split of single samples): kept as "before"
        if "holdout_nmse" in r and "holdout_folds" not in r:
            r["before"] = {k: r.pop(k) for k in HOLDOUT_KEYS if k in r}
        if r.get("holdout_folds") and r.get("lam") is not None and not r.get("holdout_as_run"):
            for k in [k for k in r if k.startswith("holdout_")]:  # folds that searched a weight of their own
                r.pop(k)
    have = {(r["dataset"], r["R"], r["method"]) for r in done
            if r["dataset"] not in HOLDOUT_SETS or "holdout_folds" in r}
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
                rec = next((r for r in done if (r["dataset"], r["R"], r["method"]) == (name, accel, m)), None)
                if rec is None:  # (a cached run only lacks the hold-out score of the current rule)
                    t0 = time.perf_counter()
                    result = safe_run(method, problem, params)
                    rec = {"dataset": name, "R": accel, "method": m, "time_s": round(time.perf_counter() - t0, 2),
                           "lam": result.chosen.get("lam"), "lam_rule": result.chosen.get("lam_rule"),
                           "scores": {mode: score_result(problem, result, mode) for mode in SCORE_MODES}}
                    done.append(rec)
                if name in HOLDOUT_SETS:
                    t0 = time.perf_counter()
                    # with the weight the scored run chose (what the app and the CLI validate)
                    rec.update(holdout_score(method, problem, params, chosen={"lam": rec.get("lam")}))
                    rec["holdout_time_s"] = round(time.perf_counter() - t0, 2)
                    rec["holdout_as_run"] = True
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
             "Written by `python -m benchmarks.bench_scoring --datasets head,phantom,gre,demo` (random line mask, "
             "seed 0; l1-wavelet and TV at their automatic weight; the scored runs are cached in "
             "`results/scoring_runs.json`, and a run's hold-out score is recomputed when the rule changes). The score (`workbench.holdout.holdout_score`, the rule of `recon --validate` and the "
             "app's Validate): each method runs again on 4 folds, each holding out 7 % of the measured lines off the "
             "fully sampled centre (disjoint, seed 0); `error`: the pooled `||y_h - P_h F S x||^2 / ||y_h||^2` on "
             "the held-out lines; `hold-out NMSE`: the scan's k-space NMSE it predicts (residual on the measured "
             "samples + the held-out relative error times the unmeasured lines' energy, interpolated from the "
             "measured lines' profile). `before`: the previous rule, one split of 7 % of the single samples off the "
             "centre. Kendall's tau (tau-b) between the hold-out NMSE and the reference's figures over methods x "
             "accelerations (4 x 2 = 8 items, 28 pairs) per scan: NMSE (= the PSNR ranking) and 1 - SSIM in each "
             "scoring mode. Goal: tau >= 0.8 against PSNR.",
             "", "| dataset | R | method | hold-out NMSE | before | error | NMSE fastmri / as-acquired | PSNR fastmri / "
             "object / as-acquired | SSIM fastmri / object / as-acquired | hold-out runs (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    taus = []
    modes = ("fastmri", "object", "as-acquired")
    for ds in HOLDOUT_SETS:
        recs = [r for r in records if r["dataset"] == ds and "holdout_folds" in r]
        if not recs:
            continue
        for r in recs:
            s = r["scores"]
            before = r.get("before", {}).get("holdout_nmse")
            lines.append(f"| {ds} | {r['R']} | {r['method']} | {r['holdout_nmse']:.4f} | "
                         + ("" if before is None else f"{before:.4f}") + f" | {r['holdout_error']:.4f} | "
                         f"{s['fastmri']['nmse']:.4f} / {s['as-acquired']['nmse']:.4f} | "
                         + " / ".join(f"{s[m]['psnr']:.2f}" for m in modes) + " | "
                         + " / ".join(f"{s[m]['ssim']:.3f}" for m in modes) + f" | {r.get('holdout_time_s', '')} |")
        h = [r["holdout_nmse"] for r in recs]
        row = {"dataset": ds, "n": len(recs), "folds": sorted({r["holdout_folds"] for r in recs}),
               "discordant": discordant_pairs(recs)}
        for mode in modes:
            row["nmse " + mode] = kendalltau(h, [r["scores"][mode]["nmse"] for r in recs])[0]
            row["ssim " + mode] = kendalltau(h, [1 - r["scores"][mode]["ssim"] for r in recs])[0]
        row["apart"] = pairs_apart(recs, 0.5)
        row["wrong apart"] = len(discordant_pairs(recs, min_db=0.5))
        if all("before" in r for r in recs):
            row["before"] = kendalltau([r["before"]["holdout_nmse"] for r in recs],
                                       [r["scores"]["fastmri"]["nmse"] for r in recs])[0]
            row["before wrong apart"] = len(discordant_pairs(recs, lambda r: r["before"]["holdout_nmse"], 0.5))
        taus.append(row)
    lines += ["", "| scan | items | folds | tau vs PSNR (NMSE) fastmri / object / as-acquired | before (one sample "
                  "split) vs fastmri | pairs >= 0.5 dB apart: ranked wrongly now / before | vs SSIM fastmri / object "
                  "/ as-acquired | pairs ranked against fastmri PSNR |", "|---|---|---|---|---|---|---|---|"]
    for t in taus:
        lines.append(f"| {t['dataset']} | {t['n']} | {'/'.join(map(str, t['folds']))} | "
                     + " / ".join(f"{t['nmse ' + m]:.3f}" for m in modes) + " | "
                     + (f"{t['before']:.3f}" if "before" in t else "not measured") + " | "
                     + f"{t['wrong apart']} / {t.get('before wrong apart', '-')} of {t['apart']} | "
                     + " / ".join(f"{t['ssim ' + m]:.3f}" for m in modes) + " | "
                     + ("; ".join(t["discordant"]) or "none") + " |")
    lines += ["", "Notes (measured 2026-12-06 on these sets).", "",
              "- Why whole lines: a held-out single sample lies on a measured line, whose neighbours along the readout "
              "are measured, so every interpolating method predicts it far better than an unmeasured line, while zero "
              "filling's relative error is 1 anywhere. The sample hold-out thus flattered CG-SENSE, l1-wavelet and TV "
              "against zero filling (head R=8 CG-SENSE: 0.031 predicted against a k-space NMSE of 0.079, below "
              "zero-filled R=4's 0.091, 0.9 dB apart the other way). A held-out line is missing as the unmeasured "
              "lines are, in a slightly wider gap, so the estimate errs high rather than low. Head R=4 (fastMRI NMSE "
              "zero-filled / CG-SENSE / l1-wavelet 0.065 / 0.028 / 0.015): one sample split 0.091 / 0.014 / 0.011, "
              "one line split 0.091 / 0.053 / 0.022, 4 line folds 0.091 / 0.050 / 0.022, 6 line folds of 5 % "
              "0.090 / 0.045 / 0.019.",
              "- Why 4 folds: one line split holds out 1-5 lines, so its estimate follows the lines drawn; 4 disjoint "
              "folds pool 4-20.",
              "- Why the run's own weight: folds that each searched their weight (the discrepancy rule on 93 % of the "
              "data) put TV on the head at R=8 at 0.132 against l1-wavelet's 0.076 with both at 30.5 dB (head tau "
              "0.714), and cost several solves per fold.",
              "- Where the goal is missed: on the 1-coil phantom no method predicts a held-out line at R=8 (error "
              "1.00 for all four), so the four R=8 runs, 0.03-0.26 dB apart, tie in the hold-out (the one-sample "
              "rule, which flatters every interpolating method, ranked them as the reference does). On the 2-coil "
              "GRE phantom (160 lines; nothing unfolds R=4 or 8) every method predicts a held-out line worse than "
              "zeros (error 1.08-3.1; the wider gap of a held-out line amplifies their noise): the hold-out ranks "
              "l1-wavelet at R=4 below zero filling (0.55 dB above it in the reference) and TV at R=4 (16.3 dB, "
              "its weight left low by the discrepancy rule at 40 iterations) below the R=8 zero-filled and "
              "l1-wavelet runs (14.5-14.7 dB); its three other misses are R=8 pairs within 0.25 dB. Pairs at least "
              "0.5 dB apart are ranked right on the head and the phantom, and all but one of 25 on the demo "
              "(l1-wavelet put above TV at R=8, which is 0.5 dB better); the other misses there are near-ties (l1-wavelet against TV, "
              "0.01-0.25 dB; the R=8 phantom runs; zero-filled R=4 against TV R=8 on the demo, 0.2 dB).",
              "- Before/after per scan (tau against the fastMRI NMSE): head 0.786 -> 0.857, phantom 0.929 -> 0.714, "
              "GRE 0.714 -> 0.571, demo (not measured before) 0.857. The goal, tau >= 0.8 on the fully sampled "
              "real sets, is met on the head only; neither rule meets it on the 2-coil GRE phantom.",
              "- Non-line masks (2D, radial) keep single-sample folds (independent seeded splits)."]
    return "\n".join(lines) + "\n"


def discordant_pairs(recs: list[dict], score=lambda r: r["holdout_nmse"], min_db: float = 0.0) -> list[str]:
    """The pairs of runs that ``score`` (default: the hold-out NMSE) ranks against the fastMRI NMSE (ties in
    either: not counted), among the pairs at least ``min_db`` apart in fastMRI PSNR."""
    out = []
    for i, a in enumerate(recs):
        for b in recs[i + 1:]:
            if abs(a["scores"]["fastmri"]["psnr"] - b["scores"]["fastmri"]["psnr"]) < min_db:
                continue
            d_ref = a["scores"]["fastmri"]["nmse"] - b["scores"]["fastmri"]["nmse"]
            d_hold = score(a) - score(b)
            if d_ref * d_hold < 0:
                out.append(f"{a['method']} R{a['R']} / {b['method']} R{b['R']}")
    return out


def pairs_apart(recs: list[dict], min_db: float) -> int:
    return sum(abs(a["scores"]["fastmri"]["psnr"] - b["scores"]["fastmri"]["psnr"]) >= min_db
               for i, a in enumerate(recs) for b in recs[i + 1:])


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
