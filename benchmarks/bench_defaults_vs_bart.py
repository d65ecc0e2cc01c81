"""Defaults as a user gets them against BART: the whole ``workbench recon`` command against ``bart ecalib`` +
``bart pics`` at the same weight, on the demo slice and the real sets, quiet and beside a busy process.

    python -m benchmarks.bench_defaults_vs_bart [--datasets demo,head,phantom,gre,dhe,bodycoil,7t] [--methods cg-sense,l1-wavelet,tv,fused-lasso]
                                                [--repeats 3] [--busy 0,1] [--name defaults_vs_bart]

Both sides get the same undersampled data: the slice's k-space under the CLI's default random line mask at 4x
(saved once as ``mask.npy`` for ``--mask-file``, and as the masked k-space ``.cfl`` for BART, dimensions
``[x, y, 1, coil]`` = ``[H, W, 1, C]``, the demo's whole 512x256 grid included). Ours runs with its defaults:
ESPIRiT maps, the automatic weight, its default iterations, the thread count and wait policy of
``workbench.threads``. BART runs ``ecalib -m1`` then ``pics`` with the weight ours chose (``lam_absolute``;
``-w 1`` keeps it in data units, ``-S``), the iterations ours uses (``-l2 -i 30``, ``-l1 -i 100``,
``-R T:3:0:lam -i 100``, fused lasso ``-R W:3:0:lam -R T:3:0:lam -i 100``), ``OMP_NUM_THREADS`` = the cores and ``OMP_WAIT_POLICY=passive``.

Timing: whole processes (start-up, reading, maps, weight, solve, writing), ours and BART's in turn, ``--repeats``
rounds after one untimed round. Ours three times per round: *again* (the resident command server of
``workbench.command_server`` and a private ``workbench.weight_store``, both started by the untimed round: the
command repeated on the same scan and mask), *first* (served, ``WORKBENCH_WEIGHT_STORE=0``: the first command
on that scan and mask, which searches the weight) and *in-process* (``WORKBENCH_SERVER=0`` too: the first
command of all, which pays Python's and torch's start-up); medians and the ratio of each to BART's, the load
average before and after. ``--busy 1``
runs one busy Python loop beside both (the shared-machine case). Timings never enter the test suite.

The workbench's and plugins' bytecode is compiled first (``compileall``): any first run writes it, as does a
``pip install``, but a machine that sets ``PYTHONDONTWRITEBYTECODE`` after an edit would make every client
compile ``command_server.py`` from source (10 ms of a 0.12 s command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.harness import DATASETS, RESULTS_DIR, load_average, realdata_dir

BART_FLAGS = {"cg-sense": lambda lam: ["-l2", "-r", f"{lam:.8g}", "-i", "30"],
              "l1-wavelet": lambda lam: ["-l1", "-r", f"{lam:.8g}", "-i", "100"],
              "tv": lambda lam: ["-R", f"T:3:0:{lam:.8g}", "-i", "100"],
              # the fused lasso's default tv_ratio is 1: the same weight on both terms (BART: ADMM)
              "fused-lasso": lambda lam: ["-R", f"W:3:0:{lam:.8g}", "-R", f"T:3:0:{lam:.8g}", "-i", "100"]}


def prepare(name: str, folder: Path) -> dict:
    """Write ``mask.npy`` and the masked k-space ``ksp.cfl`` of the dataset's middle slice; the recon arguments."""
    import torch

    from workbench.io import open_scan
    from workbench.io.bart import write_cfl
    from workbench.sampling import make_sampling

    d, index = _dataset(name)
    path = d.resolve(realdata_dir())
    if path is None:
        raise FileNotFoundError(f"{name}: not available")
    scan = open_scan(str(path), **d.options)
    index = (scan.n_slices // 2 if d.slice_index is None else d.slice_index) if index is None else index
    mask = make_sampling("random", scan.grid_shape, 4.0, seed=0).mask
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
    np.save(folder / f"{name}_mask.npy", mask)
    k = scan.kspace(index, "cpu").numpy() * mask
    write_cfl(str(folder / f"{name}_ksp"), np.transpose(k, (1, 2, 0))[:, :, None, :])
    options = [a for key, value in d.options.items() for a in ("--option", f"{key}={str(value).lower()}")]
    return {"file": str(path), "slice": index, "options": options, "mask": str(folder / f"{name}_mask.npy"),
            "ksp": str(folder / f"{name}_ksp")}


def _dataset(name: str):
    """``(Dataset, slice index or None)``: a set of :data:`DATASETS`, or one of the other fully sampled real
    Cartesian sets of :data:`benchmarks.bench_realdata_deep.REAL_SETS` (DHE, body coil, 7 T), opened with its
    options there (the 7 T scan's ``symmetric_echo``: its fully sampled band) as the CLI opens it."""
    if name in DATASETS:
        return DATASETS[name], None
    from benchmarks.bench_realdata_deep import REAL_SETS

    if name not in REAL_SETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join([*DATASETS, *REAL_SETS])}")
    return REAL_SETS[name].dataset, REAL_SETS[name].slice_index


def ours_command(data: dict, method: str) -> list[str]:
    return [sys.executable, "-m", "workbench", "recon", data["file"], *data["options"], "--slice",
            str(data["slice"]), "--mask-file", data["mask"], "--method", method, "--json"]


def bart_command(data: dict, method: str, lam: float, folder: Path) -> list[str]:
    bart = shutil.which("bart")
    sens, out = folder / "sens", folder / "out"
    script = (f"{bart} ecalib -m1 {data['ksp']} {sens} >/dev/null && "
              f"{bart} pics -d1 {' '.join(BART_FLAGS[method](lam))} -w 1 -S {data['ksp']} {sens} {out} >/dev/null")
    return ["sh", "-c", script]


def timed(cmd: Sequence[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-800:]}")
    return wall, out.stdout


def compile_bytecode() -> None:
    """Write the bytecode of the workbench and its built-in plugins (see the module docstring)."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for folder in ("workbench", "plugins"):
        compileall.compile_dir(str(root / folder), quiet=1)


def run(datasets: Sequence[str], methods: Sequence[str], repeats: int, busy_modes: Sequence[int]) -> list[dict]:
    compile_bytecode()
    cores = len(os.sched_getaffinity(0))
    bart_env = dict(os.environ, OMP_NUM_THREADS=str(cores), OMP_WAIT_POLICY="passive")
    served_env = dict(os.environ)
    served_env.pop("WORKBENCH_SERVER", None)
    first_env = dict(served_env, WORKBENCH_WEIGHT_STORE="0")  # nothing remembered: the weight is searched
    in_process_env = dict(first_env, WORKBENCH_SERVER="0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="defaults-vs-bart-") as tmp:
        folder = Path(tmp)
        ours_env = dict(served_env, WORKBENCH_WEIGHT_STORE=str(folder / "weights"))  # again: the weight kept
        for name in datasets:
            try:
                data = prepare(name, folder)
            except FileNotFoundError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            for method in methods:
                _, text = timed(ours_command(data, method), ours_env)  # untimed: also gives the chosen weight
                summary = json.loads(text.strip().splitlines()[-1])
                lam = float(summary["chosen"].get("lam_absolute", summary["params"].get("lam")))
                bart = bart_command(data, method, lam, folder)
                timed(bart, bart_env)
                for busy in busy_modes:
                    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                    try:
                        time.sleep(1.0 if busy else 0.0)
                        load0 = load_average()
                        ours_t, first_t, own_t, bart_t = [], [], [], []
                        for _ in range(repeats):
                            ours_t.append(timed(ours_command(data, method), ours_env)[0])
                            first_t.append(timed(ours_command(data, method), first_env)[0])
                            own_t.append(timed(ours_command(data, method), in_process_env)[0])
                            bart_t.append(timed(bart, bart_env)[0])
                        load1 = load_average()
                    finally:
                        if loop is not None:
                            loop.kill()
                            loop.wait()
                    row = {"dataset": name, "method": method, "busy": busy, "lam_absolute": lam,
                           "psnr": (summary.get("metrics") or {}).get("psnr"), "ours_s": ours_t,
                           "ours_first_s": first_t, "ours_in_process_s": own_t, "bart_s": bart_t,
                           "ratio_median": statistics.median(o / b for o, b in zip(ours_t, bart_t)),
                           "ratio_first_median": statistics.median(o / b for o, b in zip(first_t, bart_t)),
                           "ratio_in_process_median": statistics.median(o / b for o, b in zip(own_t, bart_t)),
                           "load": [load0, load1]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["# Defaults against BART: whole commands", "",
             "`workbench recon FILE --mask-file M --method X` with its defaults (ESPIRiT, automatic weight) against "
             "`bart ecalib -m1` + `bart pics` at the weight ours chose; random 4x line mask; medians of interleaved "
             "runs (`python -m benchmarks.bench_defaults_vs_bart`). busy = one busy Python loop beside both. "
             "Ours three ways: *again*, the command run again on the same scan and mask (the resident command "
             "server; the automatic weight remembered by `workbench.weight_store`, so no search); *first*, the first "
             "command on that scan and mask (served, `WORKBENCH_WEIGHT_STORE=0`: the weight is searched); "
             "*in-process*, the first command of all (`WORKBENCH_SERVER=0` too: Python's and torch's start-up). "
             "CG-SENSE has a fixed weight: again = first.", "",
             "| dataset | method | busy | lam (abs) | PSNR ours | again s | first s | in-process s | BART s | "
             "again / BART | first / BART | in-process / BART | load before, after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load = ", ".join(f"{v[0]:.1f}" for v in r["load"] if v)
        psnr = "-" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['busy']} | {r['lam_absolute']:.3g} | {psnr} | "
                     f"{statistics.median(r['ours_s']):.2f} | {_median(r, 'ours_first_s')} | "
                     f"{_median(r, 'ours_in_process_s')} | {statistics.median(r['bart_s']):.2f} | "
                     f"{r['ratio_median']:.2f} | {_fmt(r.get('ratio_first_median'))} | "
                     f"{_fmt(r.get('ratio_in_process_median'))} | {load} |")
    busy = {(r["dataset"], r["method"]): r for r in rows if r["busy"]}
    quiet = {(r["dataset"], r["method"]): r for r in rows if not r["busy"]}
    both = sorted(set(busy) & set(quiet))
    if both:
        lines += ["", "Slow-down beside a busy process (busy median / quiet median):", "",
                  "| dataset | method | again | first | in-process | BART |", "|---|---|---|---|---|---|"]
        for key in both:
            q, b = quiet[key], busy[key]
            ratios = [_slowdown(q, b, name) for name in ("ours_s", "ours_first_s", "ours_in_process_s", "bart_s")]
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(ratios) + " |")
    return "\n".join(lines) + "\n"


def _slowdown(quiet: dict, busy: dict, key: str) -> str:
    if not quiet.get(key) or not busy.get(key):
        return "-"
    return f"{statistics.median(busy[key]) / statistics.median(quiet[key]):.2f}"


def _median(row: dict, key: str) -> str:
    return f"{statistics.median(row[key]):.2f}" if row.get(key) else "-"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="demo,head")
    p.add_argument("--methods", default="cg-sense,l1-wavelet,tv,fused-lasso")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--busy", default="0,1", help="0 quiet, 1 beside one busy process (comma-separated)")
    p.add_argument("--out", default=str(RESULTS_DIR))
    p.add_argument("--name", default="defaults_vs_bart")
    args = p.parse_args(argv)
    if shutil.which("bart") is None:
        print("the `bart` command is not installed (Debian/Ubuntu: apt install bart)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the runs: a missing folder must not cost them
    rows = run(args.datasets.split(","), args.methods.split(","), args.repeats,
               [int(v) for v in args.busy.split(",")])
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    (out / f"{args.name}.md").write_text(to_markdown(rows))
    print((out / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
