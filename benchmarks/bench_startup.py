"""How fast the commands start: ``workbench info FILE`` and ``workbench recon`` as whole processes, warm cache.

    python -m benchmarks.bench_startup [--repeats 5] [--tree before=/tmp/before --tree after=.] [--name startup]

Each command runs ``--repeats`` times after one untimed run (so the page cache is warm) and the median wall time
is kept, with the interpreter's own start (``python -c pass``) and ``import torch`` alone as floors. ``recon``
start-up is the whole ``recon --method zero-filled --json`` command on the demo slice (reading, the trivial
method, scoring: what remains is start-up), in-process (``WORKBENCH_SERVER=0``: what a user's first command
costs) and through the resident command server (:mod:`workbench.command_server`: every later command), and,
separately, the wall time of importing the modules the command
needs. ``-X importtime`` lists the largest top-level imports of that recon command. ``--tree LABEL=PATH``
(repeatable) times other checkouts (e.g. ``git worktree add /tmp/before REV``) with their runs interleaved with
this one's, and each label becomes a column of ``results/<name>.md`` (kept in ``<name>.json``). Timings never
enter the test suite.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PY = sys.executable

# (row name, path relative to the real-data folder or None for the demo, extra info arguments)
INFO_FILES = (
    ("demo fastMRI .h5 (12 coils, 7 slices)", None, ()),
    ("BART .cfl (bartws brain, 8 coils)", "bartws_brain8ch_poisson_ref/ksp.cfl", ()),
    ("NumPy .npy (sigpy brain, 8 coils)", "sigpy_brain8ch_poisson/cartesian_ksp.npy", ()),
    ("MATLAB v5 .mat (8-coil head)", "marcsous_head8ch_dhe/head.mat", ("--option", "image_domain=true",
                                                                        "--option", "coil_axis=-1")),
    ("Siemens twix .dat (GRE, 2 coils)", "twix_phantom/gre.dat", ()),
)
# What `recon` imports before its method runs (workbench/commands/recon.py's run()).
RECON_ROW = "recon --method zero-filled --json, demo slice (whole command, in-process: a first command)"
SERVED_ROW = ("recon --method zero-filled --json, demo slice (whole command through the resident command server: "
              "every later command; CPU: the client's only)")
RECON_IMPORTS = ("import workbench.commands.recon, workbench.atomic, workbench.io, workbench.jobs, "
                 "workbench.methods, workbench.problem, workbench.scoring")


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wall(cmd: Sequence[str], repeats: int, trees: dict[str, Path], server: bool = False) -> dict[str, dict]:
    """{tree label: median, min and max wall seconds and the median CPU seconds (user + system) of ``cmd`` run
    with that tree's ``workbench``}: one untimed run per tree, then ``repeats`` rounds that run every tree in turn
    (so that a change of load hits all alike). ``server``: served commands go through the resident command server
    (the untimed run starts it; the CPU time is then the client's only); else every command runs in-process."""
    envs = {label: dict(os.environ, PYTHONPATH=str(tree), WORKBENCH_SERVER="1" if server else "0")
            for label, tree in trees.items()}
    for label, tree in trees.items():
        subprocess.run(cmd, capture_output=True, env=envs[label], cwd=tree, check=True)
    times: dict[str, list[float]] = {label: [] for label in trees}
    cpu: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeats):
        for label, tree in trees.items():
            t0, c0 = time.perf_counter(), _child_cpu()
            subprocess.run(cmd, capture_output=True, env=envs[label], cwd=tree, check=True)
            times[label].append(time.perf_counter() - t0)
            cpu[label].append(_child_cpu() - c0)
    return {label: {"median": round(statistics.median(t), 3), "min": round(min(t), 3), "max": round(max(t), 3),
                    "cpu": round(statistics.median(cpu[label]), 3)} for label, t in times.items()}


def top_imports(cmd: Sequence[str], tree: Path, n: int = 8) -> list[tuple[str, float]]:
    """The ``n`` largest top-level imports (cumulative seconds) of ``python -X importtime`` running ``cmd``."""
    out = subprocess.run([PY, "-X", "importtime", *cmd], capture_output=True, text=True, check=True, cwd=tree,
                         env=dict(os.environ, PYTHONPATH=str(tree), WORKBENCH_SERVER="0")).stderr
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( ?)(\S+)$", line)
        if m and not m.group(2):  # top level: no indent
            rows.append((m.group(3), int(m.group(1)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def measure(repeats: int, realdata: Path, trees: dict[str, Path]) -> dict[str, dict]:
    from workbench.simulate import demo_scan_path

    demo = str(demo_scan_path())
    rows: dict[str, dict[str, dict]] = {}
    rows["python -c pass (interpreter floor)"] = wall([PY, "-c", "pass"], repeats, trees)
    rows["python -c 'import torch' (torch floor)"] = wall([PY, "-c", "import torch"], repeats, trees)
    for name, rel, extra in INFO_FILES:
        path = demo if rel is None else realdata / rel
        if not Path(path).is_file():
            print(f"{name}: skipped ({path} not found)", file=sys.stderr)
            continue
        rows[f"info: {name}"] = wall([PY, "-m", "workbench", "info", str(path), *extra], repeats, trees)
    recon = ["-m", "workbench", "recon", demo, "--method", "zero-filled", "--json"]
    rows["recon: imports before the method runs"] = wall([PY, "-c", RECON_IMPORTS], repeats, trees)
    rows[RECON_ROW] = wall([PY, *recon], repeats, trees)
    rows[SERVED_ROW] = wall([PY, *recon], repeats, trees, server=True)
    for key, value in rows.items():
        print("  ".join(f"{label} {v['median']:6.3f} s" for label, v in value.items()) + f"  {key}",
              file=sys.stderr)
    return {label: {"rows": {key: value[label] for key, value in rows.items()},
                    "recon_top_imports": top_imports(recon, tree)} for label, tree in trees.items()}


def command_server_idle() -> float:
    from workbench.command_server import IDLE_S

    return float(os.environ.get("WORKBENCH_SERVER_IDLE", IDLE_S))


def to_markdown(runs: dict) -> str:
    labels = list(runs)
    keys: list[str] = []
    for label in labels:
        keys += [k for k in runs[label]["rows"] if k not in keys]
    lines = ["# Start-up time of the commands", "",
             "Whole processes, warm page cache, median wall seconds of 5 runs after one untimed run "
             "(min-max in brackets), and the median CPU time (user + system, which a busy machine inflates less); "
             "the trees' runs interleaved; made by `python -m benchmarks.bench_startup --tree LABEL=PATH ...`.", ""]
    for label in labels:
        r = runs[label]
        lines.append(f"- **{label}**: {r['date']}, tree {r['commit']}, load average before/after "
                     f"{r['load_before']} / {r['load_after']}; {r['cpu']}, {r['cores']} cores")
    lines += ["", "| command | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key in keys:
        cells = []
        for label in labels:
            v = runs[label]["rows"].get(key)
            cells.append("" if v is None else f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f}); CPU {v['cpu']:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    rows = runs[labels[-1]]["rows"]
    floor = rows.get("python -c pass (interpreter floor)")
    torch_row = rows.get("python -c 'import torch' (torch floor)")
    recon = rows.get(RECON_ROW)
    if floor and torch_row and recon and floor["cpu"] > 0:
        share = floor["median"] / floor["cpu"]
        lines += ["", f"Reading it ({labels[-1]}): the interpreter's own start took {share:.1f}x its "
                  f"CPU time in wall time (each process got about 1/{share:.0f} of a core beside the other work on the "
                  "machine); on a quiet machine a single-threaded start's wall time is about its CPU time. `import "
                  f"torch` alone took {torch_row['cpu']:.2f} s of CPU, {100 * torch_row['cpu'] / recon['cpu']:.0f}% of "
                  f"the whole zero-filled recon command's {recon['cpu']:.2f} s: the floor of `recon`'s start-up "
                  "in-process."]
    served = rows.get(SERVED_ROW)
    if recon and served:
        lines += ["", f"Through the resident command server (started by a user's first served command, kept "
                  f"{command_server_idle():.0f} s after the last) the same command took {served['median']:.2f} s "
                  f"against {recon['median']:.2f} s in-process ({served['median'] / recon['median']:.2f}x): torch, "
                  "numpy, scipy, h5py and the workbench are imported once, in the server."]
    for label in labels:
        tops = runs[label]["recon_top_imports"]
        lines += ["", f"Largest top-level imports of the recon command ({label}, `-X importtime`, one run): "
                  + ", ".join(f"{name} {sec:.2f} s" for name, sec in tops)]
    return "\n".join(lines) + "\n"


def _commit(tree: Path) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=tree).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "workbench", "plugins"], capture_output=True, text=True,
                           cwd=tree).stdout.strip()
    return commit + (" + uncommitted changes" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                   help="a checkout to time, under a column LABEL (repeatable; runs interleave); default: "
                        "this checkout as 'now'")
    p.add_argument("--name", default="startup", help="results file stem")
    p.add_argument("--realdata", default=None, help="real-data folder (default: workbench.paths.realdata_dir())")
    args = p.parse_args(argv)
    from workbench import paths

    here = Path(__file__).resolve().parent.parent
    trees = dict((t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree) or {"now": here}
    realdata = Path(args.realdata) if args.realdata else paths.realdata_dir()
    out_json = RESULTS_DIR / f"{args.name}.json"
    runs = json.loads(out_json.read_text()) if out_json.is_file() else {}
    load_before = [round(v, 2) for v in os.getloadavg()]
    records = measure(args.repeats, realdata, trees)
    load_after = [round(v, 2) for v in os.getloadavg()]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "")
    for label, record in records.items():
        record.update(date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                      commit=_commit(trees[label]), load_before=load_before, load_after=load_after,
                      cores=os.cpu_count(), cpu=cpu)
        runs[label] = record
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(runs, indent=1) + "\n")
    (RESULTS_DIR / f"{args.name}.md").write_text(to_markdown(runs))
    print(to_markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
