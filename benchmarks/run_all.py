"""Every benchmark, one after the other (``make bench``):

    python -m benchmarks.run_all [--quick] [--skip harness,peers,bench_dcf,...]

1. :mod:`benchmarks.harness` (every dataset, random and equispaced masks at 4x and 8x) ->
   ``results/classical.md|json``;
2. :mod:`benchmarks.peers` (BART / sigpy when installed) -> ``results/peers.md|json``;
3. every other ``benchmarks/bench_*.py`` script, each in its own process with its default options (they print
   their figures).

A failing step is reported and the others still run; the exit status is 1 when any step failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[str]:
    """Module names of the ``bench_*.py`` scripts beside this file."""
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def _run(label: str, argv: list[str]) -> tuple[str, int, float]:
    print(f"\n=== {label}: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    # A separate process per step: one step's threads, caches or crash cannot affect the next one's timings.
    rc = subprocess.call([sys.executable, *argv], cwd=HERE.parent)
    return label, rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="harness smoke run and no weight sweep for the peers")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip (harness, peers, bench_*)")
    ap.add_argument("--no-write", action="store_true", help="print the tables, do not update results/")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    write = ["--no-write"] if args.no_write else []
    steps = []
    if "harness" not in skip:
        full = ["--masks", "random,equispaced"]  # the full matrix committed in results/classical.md
        steps.append(("harness", ["-m", "benchmarks.harness", *(["--quick"] if args.quick else full), *write]))
    if "peers" not in skip:
        steps.append(("peers", ["-m", "benchmarks.peers", *(["--no-sweep", "--repeats", "1"] if args.quick else []),
                                *write]))
    for name in scripts():
        if name not in skip:
            steps.append((name, ["-m", f"benchmarks.{name}"]))
    done = [_run(label, cmd) for label, cmd in steps]
    print("\n=== summary")
    for label, rc, dt in done:
        print(f"{label:<16} {'ok' if rc == 0 else f'FAILED (exit {rc})':<18} {dt:7.1f} s")
    return 0 if all(rc == 0 for _, rc, _ in done) else 1


if __name__ == "__main__":
    raise SystemExit(main())
