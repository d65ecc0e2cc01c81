"""``workbench train MODEL --config CFG.json|yaml``: train a deep reconstruction model.

Runs in one process, or under ``torchrun --nproc_per_node N -m workbench train ...`` with DistributedDataParallel
(gloo on CPU, NCCL on CUDA). Writes checkpoints, ``history.jsonl``, ``validation.json`` and the weights with
their sidecar (``MODEL.safetensors`` + ``MODEL.json``) into ``--out``; ``--resume`` continues from the
checkpoint there. See :mod:`workbench.nn.train` for the config entries (``configs/`` has examples). ``--average W1 W2
...`` trains nothing and writes the uniform average of those weight files instead (:func:`workbench.nn.train.average`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from workbench.nn import MODEL_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=MODEL_NAMES, help="model to train")
    p.add_argument("--config", required=True, metavar="CFG", help="training config (.json or .yaml)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/MODEL)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="total optimiser steps (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (fine-tuning, e.g. resources/weights/xpdnet.safetensors on "
                        "--data-dir); the sidecar records them. XPDNet / NC-PDNet weights with fewer image-network "
                        "filters than the config are widened to it, and weights of fewer unrolled iterations get "
                        "identity iterations after their own: the start computes the same images")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: a GPU when there is one)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="stop (checkpointed, with weights) before this many minutes of wall time")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N steps in this run (checkpointed; continue with --resume)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="train on this folder of fastMRI files (sets data.kind=fastmri, data.path=DIR)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per process (default: torch's; 1 is fastest on a busy machine)")
    p.add_argument("--data-workers", type=int, default=0, metavar="N",
                   help="processes that make the coming steps' training data (default 0: one background thread; "
                        "a GPU wants several, a shared CPU none); the weights do not depend on it")
    p.add_argument("--average", nargs="+", default=None, metavar="WEIGHTS",
                   help="train nothing: write the uniform average of these weight files (runs of the config's "
                        "model and architecture, e.g. fine-tunings of one start on other seeds) into --out, "
                        "validated on the config's validation items")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    from workbench.nn.train import load_config, train

    if args.model == "dsm":  # same loop, checkpoints and sidecar; denoising-score-matching loss and data
        from workbench.nn.train_dsm import train_dsm as train

    config = load_config(args.config)
    if args.data_dir:
        data = dict(config.get("data") or {})
        if data.get("kind", "synthetic") != "fastmri":
            data = {"n_val": data.get("n_val", 16)}
        config["data"] = {**data, "kind": "fastmri", "path": args.data_dir}
    out = args.out or f"runs/{args.model}"
    command = "workbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else \
        f"workbench train {args.model} --config {args.config}" + \
        (f" --average {' '.join(args.average)}" if args.average else "")
    if args.average is not None:
        return _average(args, config, out, command)
    summary = train(
        config, out, model=args.model, steps=args.steps, resume=args.resume, device=args.device,
        time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit, stop_after=args.stop_after,
        command=command, threads=args.threads, progress=not args.quiet, init_from=args.init,
        data_workers=args.data_workers,
    )
    if summary["rank"] == 0:
        state = "finished" if summary["finished"] else "stopped (resume with --resume)"
        print(f"{args.model}: {summary['steps_done']} steps, {state}, {summary['wall_time_s']:.0f} s; "
              f"weights {summary['weights']}")
    return 0


def _average(args: argparse.Namespace, config: dict, out: str, command: str) -> int:
    from workbench.errors import WorkbenchError
    from workbench.nn.train import average

    if args.model == "dsm":
        raise WorkbenchError("--average is for the reconstruction models (xpdnet, ncpdnet, unet), not dsm")
    clash = [flag for flag, value in (("--resume", args.resume), ("--init", args.init), ("--steps", args.steps),
                                      ("--stop-after", args.stop_after)) if value not in (None, False)]
    if clash:
        raise WorkbenchError(f"--average trains nothing: it cannot be combined with {', '.join(clash)}")
    summary = average(config, args.average, out, model=args.model, command=command, threads=args.threads,
                      log=(lambda _: None) if args.quiet else print)
    print(f"{args.model}: the average of {len(args.average)} weight files; weights {summary['weights']}")
    return 0
