"""The unrolled networks' consistency solve on the real rows: its weight fixed, off, and chosen by hold-out.

For XPDNet on the Cartesian rows and NC-PDNet on the radial rows of :mod:`benchmarks.bench_realdata_deep` (the
same problems, classical columns from a baseline table), the plugin is run with ``consistency=false`` (the
network's image), each fixed ``consistency_lam`` of :data:`workbench.nn.consistency.LAMS`, and its default (the
weight chosen per scan by hold-out). Per set: the mean change against the network's image, the mean margin
against the issue's reference (XPDNet: the best classical method at its best weight; NC-PDNet: TV at its best
weight) and the rows that lose more than 0.1 dB against the network's image; plus the per-row oracle (the best of
the fixed weights and off), the ceiling of any rule that picks one of them::

    python -m benchmarks.bench_consistency_weights [--models xpdnet,ncpdnet] [--threads 1]

Writes ``benchmarks/results/consistency_weights.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.bench_realdata_deep import RESULTS_DIR, best_classical
from benchmarks.bench_realdata_deep import main as realdata_main

SETTINGS = {"xpdnet": ("random,equispaced", "realdata_deep_current.json"),
            "ncpdnet": ("golden-radial", "realdata_deep_current_radial.json")}


def _settings() -> list[tuple[str, str]]:
    from workbench.nn.consistency import LAMS

    return [("off", "consistency=false"), *((f"lam {v:g}", f"consistency_lam={v:g}") for v in LAMS),
            ("hold-out (default)", "")]


def _reference(row: dict, model: str) -> float:
    if model == "xpdnet":
        return best_classical(row)[1]
    return row["methods"]["tv"]["psnr"]


def run_model(model: str, out_dir: Path, threads: int | None) -> dict[str, dict[str, Any]]:
    """``{setting: {row id: row}}`` of one model's rows under every setting (the bench's rows)."""
    kinds, baseline = SETTINGS[model]
    rows: dict[str, dict[str, Any]] = {}
    for i, (label, param) in enumerate(_settings()):
        name = f"consistency_{model}_{i}"
        argv = ["--methods", model, "--kinds", kinds, "--baseline", str(RESULTS_DIR / baseline), "--out",
                str(out_dir), "--name", name]
        if param:
            argv += ["--plugin-params", f"{model}:{param}"]
        if threads:
            argv += ["--threads", str(threads)]
        realdata_main(argv)
        table = out_dir / f"{name}.json"  # not written when there was no row (no real data)
        data = json.loads(table.read_text()) if table.is_file() else {"rows": []}
        rows[label] = {r["id"]: r for r in data["rows"]}
    return rows


def summarise(model: str, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    off = rows["off"]
    sets = list(dict.fromkeys(r["dataset"] for r in off.values()))

    def psnr(row):
        return row["methods"][model]["psnr"]

    out: dict[str, Any] = {}
    fixed = [label for label in rows if label.startswith("lam") or label == "off"]
    oracle = {rid: max(psnr(rows[label][rid]) for label in fixed) for rid in off}
    for label, by_id in [*rows.items(), ("per-row oracle", None)]:
        value = (lambda rid: oracle[rid]) if by_id is None else (lambda rid, b=by_id: psnr(b[rid]))
        per_set = {}
        for s in [*sets, "all"]:
            ids = [rid for rid in off if s == "all" or off[rid]["dataset"] == s]
            change = [value(rid) - psnr(off[rid]) for rid in ids]
            margin = [value(rid) - _reference(off[rid], model) for rid in ids]
            per_set[s] = {"rows": len(ids), "change": statistics.mean(change), "worst": min(change),
                          "losing": sum(c < -0.1 for c in change), "margin": statistics.mean(margin)}
        out[label] = per_set
    return {"sets": sets, "table": out}


def to_markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# The networks' consistency solve: fixed weights, off, and the hold-out choice", "",
             f"Made {meta['date']} in {meta['minutes']:.0f} min ({meta['machine']}); `python -m "
             f"benchmarks.bench_consistency_weights {' '.join(meta['argv'])}`. See the module docstring of "
             "`workbench/nn/consistency.py` for the solve and the rule.", "",
             "Per set: mean change (dB) against the network's image (`consistency=false`), worst row, rows losing "
             "more than 0.1 dB, and the mean margin against the issue's reference (XPDNet: the best classical method "
             "at its best weight; NC-PDNet: TV at its best weight). 'per-row oracle': the best of off and the fixed "
             "weights on each row, which no rule without the reference can beat."]
    for model, res in results.items():
        ref = "best classical" if model == "xpdnet" else "TV"
        lines += ["", f"## {model}", "", "| setting | " + " | ".join(f"{s} change / worst / losing / minus {ref}"
                                                               for s in [*res["sets"], "all"]) + " |",
                  "|---|" + "---|" * (len(res["sets"]) + 1)]
        for label, per_set in res["table"].items():
            cells = [f"{v['change']:+.2f} / {v['worst']:+.2f} / {v['losing']} / {v['margin']:+.2f}"
                     for v in per_set.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import platform

    import torch

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_consistency_weights",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="xpdnet,ncpdnet")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bench_consistency_weights", help="folder of the per-setting tables")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs = {m: run_model(m, work, args.threads) for m in args.models.split(",")}
    if not all(rows["off"] for rows in runs.values()):
        print("no real-data rows (the real data folder is absent): nothing to summarise")
        return 0
    results = {m: summarise(m, rows) for m, rows in runs.items()}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "minutes": (time.time() - t0) / 60,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                       f"{args.threads} thread(s)", "argv": list(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    (out / "consistency_weights.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "consistency_weights.md").write_text(to_markdown(results, meta))
    print(f"wrote {out / 'consistency_weights.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
