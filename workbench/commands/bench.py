"""``workbench bench [options]``: the reconstruction benchmark (methods x samplings x datasets).

Runs :mod:`benchmarks.harness` (see its docstring for the options and what is measured) and writes
``benchmarks/results/classical.md`` / ``.json`` (``--out``, ``--name``, ``--no-write``). ``--peers`` runs the
BART / sigpy comparison (:mod:`benchmarks.peers`) afterwards with its defaults.

The benchmarks live in the source checkout (``benchmarks/`` beside ``workbench/``), not in the installed
package: this command finds them there, and says so when it cannot.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from workbench.errors import WorkbenchError


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", name):
            raise
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks" / "harness.py").is_file():
        sys.path.insert(0, str(checkout))
        return importlib.import_module(name)
    raise WorkbenchError("the benchmarks are not installed with the package; run `workbench bench` from a source "
                         "checkout (they live in its benchmarks/ folder)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        harness = _import("benchmarks.harness")
    except WorkbenchError:
        return  # run() reports it
    harness.add_arguments(parser)
    parser.add_argument("--peers", action="store_true", help="also run the BART / sigpy comparison")


def run(args: argparse.Namespace) -> int:
    harness = _import("benchmarks.harness")
    rc = harness.run_from_args(args)
    if getattr(args, "peers", False):
        peers = _import("benchmarks.peers")
        rc = max(rc, peers.main(["--out", args.out] + (["--no-write"] if args.no_write else [])))
    return rc
