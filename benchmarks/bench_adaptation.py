"""Scan-specific self-supervised adaptation (``adapt=True`` of the xpdnet / unet plugins) on real scans.

    nice -n 10 python -m benchmarks.bench_adaptation [--datasets head,phantom] [--accelerations 4,8]
                                                     [--seconds 60] [--threads 2] [--name adaptation]

For each real data set of :data:`benchmarks.harness.DATASETS` (the 8-coil head, the single-coil phantom) under a
fastMRI random line mask (``make_problem``, seed 0: the masks of ``benchmarks/results/deep.md``) at each
acceleration: zero-filled (RSS), l1-wavelet at its best weight of ``bench_deep.L1_GRID`` (FISTA, 100
iterations, ESPIRiT or ACS maps as in ``bench_deep``; taken from ``deep.json`` when it has the same problem,
``--l1 run`` recomputes it), and the U-net and XPDNet plugins with the shipped
weights, each without and with adaptation (plugin defaults, time budget ``--seconds`` for adaptation and
reconstruction together). PSNR / SSIM: :func:`workbench.scoring.score`, fastMRI mode, against the fully sampled
RSS. Wall times are this machine's, with ``--threads`` torch threads (the machine's load is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import workbench  # noqa: F401 - before torch: idle OpenMP threads sleep instead of spinning (workbench.threads)
import torch

from benchmarks.harness import (RESULTS_DIR, available_datasets, load_average, machine_description, machine_line,
                                make_problem, realdata_dir)


def _score(problem, image) -> dict[str, float]:
    from workbench.scoring import score

    return score(problem.reference, problem.crop(image).abs() if torch.is_tensor(image) else image, "fastmri",
                 data_range=problem.data_range)


def run_method(method, problem, **values) -> dict[str, Any]:
    """Metrics, wall time and the adaptation extras of one plugin run (as the app runs it)."""
    from workbench.methods import RunContext

    params = method.make_params(values)
    reasons = method.check(problem, params)
    if reasons:
        return {"error": "; ".join(reasons)}
    t, cpu = time.perf_counter(), time.process_time()
    result = method.run(problem, params, RunContext("cpu"))
    out = {**_score(problem, result.image), "time_s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu}
    out.update({k: v for k, v in (result.extras or {}).items() if k.startswith("adapt_")})
    return out


def best_l1_wavelet(problem, n_iter: int = 100) -> dict[str, Any]:
    """l1-wavelet at its best weight and coil maps, the real-data table's oracle
    (:func:`benchmarks.bench_realdata_deep.classical_at_best`: ``bench_deep.L1_GRID`` x the zero-filled image's
    99th percentile, extended past an edge; ESPIRiT or ACS maps). The problem's maps are left as found, so the
    networks run with their default maps, as in the app."""
    from benchmarks.bench_realdata_deep import classical_at_best

    best = classical_at_best(problem, ("l1-wavelet",), n_iter, radial=False)["l1-wavelet"]
    return {**best, "f": best["lam_factor"]}


def deep_l1_wavelet(label: str) -> dict[str, Any] | None:
    """The l1-wavelet row of ``benchmarks/results/deep.json`` for the same problem (same data, mask and seed:
    ``bench_deep`` makes its real problems with ``make_problem(..., seed=0)`` too) at its best weight."""
    path = RESULTS_DIR / "deep.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    for r in rows:
        if r["label"] == label:
            runs = r["classical"]["l1-wavelet"]
            f = max(runs, key=lambda k: runs[k]["psnr"])
            return {**runs[f], "f": float(f), "from": "deep.json"}
    return None


def run(args) -> dict[str, Any]:
    from workbench_builtin_methods.unet import UnetBaseline
    from workbench_builtin_methods.xpdnet import XPDNet

    torch.set_num_threads(args.threads)
    meta = machine_description()
    meta.update(threads=args.threads, seconds=args.seconds, steps=args.steps, load_before=load_average(),
                command="python -m benchmarks.bench_adaptation " + " ".join(sys.argv[1:]))
    rows = []
    for name, scan, index in available_datasets(args.datasets, realdata_dir(args.realdata), print):
        for acc in args.accelerations:
            p, _ = make_problem(scan, index, "random", acc, seed=0)
            row: dict[str, Any] = {"label": f"{name} random {acc}x ({p.n_coils} coils)",
                                   "zero_filled": _score(p, p.zero_filled("rss")), "load": load_average()}
            for key, method in (("unet", UnetBaseline()), ("xpdnet", XPDNet())):
                row[key] = run_method(method, p)
                if args.seconds:
                    row[key + "_adapted"] = run_method(method, p, adapt=True, adapt_seconds=args.seconds)
                for n in args.steps:  # fixed step counts: what a machine without other load fits in the budget
                    row[f"{key}_steps{n}"] = run_method(method, p, adapt=True, adapt_steps=n, adapt_seconds=3600.0)
            row["l1_wavelet"] = (args.l1 == "deep" and deep_l1_wavelet(row["label"])) or best_l1_wavelet(p)
            print(json.dumps({k: v for k, v in row.items()}, default=str), flush=True)
            rows.append(row)
    meta["load_after"] = load_average()
    return {"meta": meta, "rows": rows}


def _cell(r: dict[str, Any]) -> str:
    return "error" if "psnr" not in r else f"{r['psnr']:.2f} / {r['ssim']:.3f}"


def _adapted(r: dict[str, Any] | None, plain: dict[str, Any]) -> str:
    if not r:
        return "-"
    if "psnr" not in r:
        return "error"
    kept = "kept" if r.get("adapt_kept") else "not kept"
    return (f"{r['psnr']:.2f} / {r['ssim']:.3f} ({r['psnr'] - plain['psnr']:+.2f} dB; {r['adapt_steps']} steps, "
            f"{r['time_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU; held-out {r['adapt_held_error_before']:.3f} -> "
            f"{r['adapt_held_error_after']:.3f}, {kept}, stopped by {r['adapt_stopped']})")


def to_markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    steps = m.get("steps") or []
    columns = ([("adapted, budget", "_adapted")] if m.get("seconds") else []) + [
        (f"adapted, {n} steps", f"_steps{n}") for n in steps]
    budget = (f"'budget': the plugin with `adapt_seconds={m['seconds']:.0f}` (adaptation and reconstruction "
              "together, wall clock on this shared machine); " if m.get("seconds") else "")
    counts = " / ".join(str(n) for n in steps)
    lines = ["# Scan-specific self-supervised adaptation", "",
             f"Machine: {machine_line(m)}.", "",
             f"Command: `nice -n 10 {m['command']}`. Plugin defaults (workbench/nn/inference.py `AdaptParams`: "
             "XPDNet trains its last iteration's image network at lr 1e-3 for at most 100 steps, the U-net all "
             "of it at lr 1e-4 for at most 30; Theta/Lambda redrawn every step, Gamma 10 % of the measured samples, checks every 3 steps, patience "
             f"3), {m['threads']} torch threads. {budget}'N steps': `adapt_steps=N` ({counts}) without a time "
             "limit; 'CPU' is the process time of the whole run (adaptation and final reconstruction), about its "
             "wall time on one free core. PSNR (dB) / SSIM, fastMRI mode, against the fully sampled RSS; the change "
             "against the same network without adaptation; the relative k-space error on the held-out set Gamma "
             "before -> after. l1-wavelet: FISTA, 100 iterations, best weight of 0.001-0.03 x the zero-filled "
             "99th percentile (`deep.json`'s figure for the same problem unless `--l1 run`).", "",
             "| data | zero-filled | l1-wavelet (best f) | network | trained weights | "
             + " | ".join(c for c, _ in columns) + " |", "|---" * (5 + len(columns)) + "|"]
    for r in res["rows"]:
        l1 = r["l1_wavelet"]
        for key, name in (("unet", "U-net"), ("xpdnet", "XPDNet")):
            lines.append(f"| {r['label']} | {_cell(r['zero_filled'])} | {_cell(l1)} ({l1['f']}) | {name} | "
                         f"{_cell(r[key])} | " + " | ".join(_adapted(r.get(key + k), r[key]) for _, k in columns)
                         + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="head,phantom", type=lambda s: [v for v in s.split(",") if v])
    ap.add_argument("--accelerations", default="4,8", type=lambda s: [int(v) for v in s.split(",") if v])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget of the adapted runs (0: no such runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--l1", choices=("deep", "run"), default="deep",
                    help="l1-wavelet from benchmarks/results/deep.json when it has the row (same problem), or run it")
    ap.add_argument("--steps", default="30,100", type=lambda s: [int(v) for v in s.split(",") if v],
                    help="also adapt with each of these step counts and no time limit")
    ap.add_argument("--realdata", default=None)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--name", default="adaptation")
    args = ap.parse_args(argv)
    os.environ.setdefault("WORKBENCH_THREADS", str(args.threads))
    res = run(args)
    text = to_markdown(res)
    for suffix, content in ((".json", json.dumps(res, indent=1, default=str) + "\n"), (".md", text)):
        (Path(args.out) / (args.name + suffix)).write_text(content)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
