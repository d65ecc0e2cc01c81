"""Training loop for the deep reconstruction models: single process or ``torchrun`` (DistributedDataParallel;
gloo on CPU, NCCL on CUDA), seeded, checkpointed and resumable, with validation on held-out slices.

    summary = train(load_config("configs/xpdnet_cpu.json"), "runs/xpdnet", steps=500)

A config (JSON or YAML; see ``configs/``) has the entries::

    model         "xpdnet" | "ncpdnet" | "unet"
    architecture  the model's config (PrimalNetConfig / UnetReconConfig fields)
    data          {"kind": "synthetic", ...} or {"kind": "fastmri", "path": ...} (workbench.nn.data)
    sampling      {"kinds": [...], "accelerations": [...], "center_fractions": [...]}
    steps, batch_size (per process), seed
    optim         {"lr", "warmup_steps", "final_lr_fraction", "grad_clip", "weight_decay"}
    loss          {"ssim_weight"}
    validation    {"n": held-out slices, "every": steps between validations (0: at the end only)}
    checkpoint_every, weights_dtype ("float32", or "float16" for half-size shipped weights)

Determinism: the data of step ``s`` on rank ``r`` depend only on ``(seed, s, r)``, the model initialisation on
``seed``, and the checkpoint holds the optimiser and RNG state, so a run resumed from a checkpoint ends with
the same weights as an uninterrupted one. Every rank computes its own items; DDP averages the gradients.

One loop serves every model: what a model adds (its model, data, loss, validation, sidecar entries) is a
:class:`TrainingHooks` object (the default: the reconstruction models above; :mod:`workbench.nn.train_dsm`: the
score network).

Output folder: ``checkpoint.safetensors`` + ``.json`` (resume), ``history.jsonl`` (one line per step),
``validation.json``, and at the end of a run ``<model>.safetensors`` + ``<model>.json`` (the shippable weights
with their sidecar: architecture, data, sampling, steps, command, validation metrics, wall time, device).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from workbench.atomic import atomic_write_bytes
from workbench.errors import WorkbenchError

DEFAULT_CONFIG: dict[str, Any] = {
    "model": "xpdnet",
    "architecture": {},
    "data": {"kind": "synthetic"},
    "sampling": {"kinds": ["random", "equispaced"], "accelerations": [4, 8], "center_fractions": [0.08, 0.04]},
    "steps": 1000,
    "batch_size": 2,
    "seed": 0,
    "optim": {"lr": 1e-3, "warmup_steps": 20, "final_lr_fraction": 0.05, "grad_clip": 1.0, "weight_decay": 0.0},
    "loss": {"ssim_weight": 0.84},
    "validation": {"n": 16, "every": 0},
    "checkpoint_every": 50,
    "weights_dtype": "float32",
}
_SECTIONS = ("optim", "loss", "validation")


class TrainingError(WorkbenchError):
    """The training cannot start or continue (bad config, diverged loss, unusable checkpoint)."""


# ------------------------------------------------------------------------------------------------------------
# Config


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training config (``.json``, or ``.yaml``/``.yml``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: training config not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text)
        else:
            cfg = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise TrainingError(f"{path}: not a valid {path.suffix.lstrip('.').upper() or 'JSON'} config ({exc})") from exc
    if not isinstance(cfg, dict):
        raise TrainingError(f"{path}: a training config is a mapping of settings, got {type(cfg).__name__}")
    return cfg


def merge_config(config: dict[str, Any], defaults: dict[str, Any], sections: tuple[str, ...], *,
                 what: str = "training config", ignored: tuple[str, ...] = (), keep_extra: bool = True
                 ) -> dict[str, Any]:
    """``defaults`` updated by ``config`` (the ``sections`` merged key by key); refuses entries other than the
    defaults', ``description`` and the ``ignored`` ones (kept in the result when ``keep_extra``). ``what`` names
    the config in the messages."""
    unknown = set(config) - set(defaults) - {"description"} - set(ignored)
    if unknown:
        raise TrainingError(f"{what}: unknown entries {', '.join(sorted(unknown))}; known: {', '.join(defaults)}")
    cfg = copy.deepcopy(defaults)
    for k, v in config.items():
        if k in sections and isinstance(v, dict):
            cfg[k] = {**cfg[k], **v}
        elif keep_extra or k in defaults:
            cfg[k] = copy.deepcopy(v)
    return cfg


def check_counts(cfg: dict[str, Any], what: str = "training config") -> None:
    """``steps`` and ``batch_size`` are positive integers, ``checkpoint_every`` a non-negative one."""
    for key in ("steps", "batch_size", "checkpoint_every"):
        if not isinstance(cfg[key], int) or cfg[key] < (0 if key == "checkpoint_every" else 1):
            raise TrainingError(f"{what}: {key} must be a positive integer, got {cfg[key]!r}")


def resolve_config(config: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The config with defaults filled in (sections merged key by key); checks the known entries."""
    cfg = merge_config(config, DEFAULT_CONFIG, _SECTIONS)
    if model is not None:
        if "model" in config and config["model"] != model:
            raise TrainingError(f"the config is for model {config['model']!r}, not {model!r}")
        cfg["model"] = model
    check_counts(cfg)
    return cfg


# ------------------------------------------------------------------------------------------------------------
# Distributed helpers


class _Dist:
    """Rank / world size and the collective operations (no-ops in a single process)."""

    def __init__(self, device: torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.owns_group = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True
        self.active = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None and str(device) != "auto":
        d = torch.device(device)
        if d.type == "cuda" and d.index is None and "LOCAL_RANK" in os.environ:
            d = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return d
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.machine()})"


# ------------------------------------------------------------------------------------------------------------
# Steps


def learning_rate(step: int, total: int, optim: dict[str, Any]) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_lr_fraction * lr`` at ``total``."""
    lr = float(optim["lr"])
    warm = int(optim.get("warmup_steps", 0))
    if step < warm:
        return lr * (step + 1) / warm
    frac = float(optim.get("final_lr_fraction", 0.0))
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr * (frac + (1 - frac) * 0.5 * (1 + math.cos(math.pi * t)))


def _loss(model, batch, ssim_weight: float) -> torch.Tensor:
    from workbench.nn.common import reconstruction_loss

    pred, scale = model(batch)
    target = batch.target / scale[:, None, None]
    data_range = batch.data_range.to(pred.device) / scale
    return reconstruction_loss(pred, target, data_range, ssim_weight).sum()


@torch.no_grad()
def evaluate_model(model, items: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """PSNR / SSIM / NMSE (:mod:`workbench.metrics`) of the model and of the zero-filled RSS on ``items``, per
    sampling (kind, acceleration) and overall."""
    from workbench.metrics import evaluate
    from workbench.nn.batch import collate
    from workbench.arrays import fit_shape
    from workbench.physics.fft import rss

    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    rows = []
    for it in items:
        (batch,) = collate([it])
        batch = batch.to(device)
        rec = model.reconstruct(batch)
        image = fit_shape(rec.abs() if rec.is_complex() else rec, batch.recon_shape)[0].cpu()
        zf = fit_shape(rss(batch.encoding().coil_images()), batch.recon_shape)[0].cpu()
        target = batch.target[0].cpu()
        dr = float(batch.data_range[0])
        m = evaluate(target.numpy(), image.numpy(), data_range=dr)
        z = evaluate(target.numpy(), zf.numpy(), data_range=dr)
        s = it["meta"].get("sampling", {})
        rows.append({"kind": s.get("kind"), "acceleration": s.get("acceleration"), **m,
                     **{f"zero_filled_{k}": v for k, v in z.items()}})
    model.train(was_training)
    return summarise_metrics(rows)


def summarise_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if k not in ("kind", "acceleration")] if rows else []

    def mean(rs):
        return {k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys} | {"n": len(rs)}

    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(f"{r['kind']} R={r['acceleration']:g}", []).append(r)
    return {"all": mean(rows) if rows else {}, "by_sampling": {k: mean(v) for k, v in sorted(groups.items())}}


class _Progress:
    def __init__(self, enabled: bool, start: int, total: int, log: Callable[[str], None]):
        self.enabled, self.total, self.log = enabled, total, log
        self.tty = enabled and sys.stdout.isatty()
        self.t0 = time.perf_counter()
        self.first_step = start
        self.ema: float | None = None

    def update(self, step: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        done = step + 1 - self.first_step
        rate = (time.perf_counter() - self.t0) / max(done, 1)
        eta = rate * (self.total - step - 1)
        line = (f"step {step + 1}/{self.total}  loss {loss:.4f} (avg {self.ema:.4f})  lr {lr:.2e}  "
                f"{rate:.2f} s/step  eta {int(eta // 60)}:{int(eta % 60):02d}")
        if self.tty:
            print("\r" + line, end="", flush=True)
        elif done == 1 or (step + 1) % 10 == 0 or step + 1 == self.total:
            self.log(line)

    def close(self) -> None:
        if self.tty:
            print(flush=True)


# ------------------------------------------------------------------------------------------------------------
# What a model adds to the loop


class TrainingHooks:
    """What one model's training adds to the loop of :func:`train`: its config, its model, its data and loss,
    what is validated and shipped, and what the sidecar says of it. The loop owns the rest: seeds, DDP, the
    optimiser and learning-rate schedule, checkpoint / resume, progress, history, the time limit and the weights.

    These defaults train the reconstruction models (:func:`workbench.nn.build_model`, reconstruction loss,
    PSNR / SSIM validation); :class:`workbench.nn.train_dsm.DSMTraining` trains the score network. An object
    serves one run (:meth:`setup` starts it)."""

    def resolve_config(self, config: dict[str, Any], model: str | None) -> dict[str, Any]:
        """The config with its defaults filled in (``model``: the name the caller asked for, or None)."""
        return resolve_config(config, model)

    def build_model(self, cfg: dict[str, Any]) -> torch.nn.Module:
        """The model to train (under the seeded global RNG: the same initial weights on every rank)."""
        from workbench.nn import build_model

        return build_model(cfg["model"], cfg["architecture"])

    def setup(self, net: torch.nn.Module, cfg: dict[str, Any], device: torch.device) -> None:
        """The model (on ``device``) and its optimiser exist; before a resume restores them."""
        self.cfg, self.device = cfg, device

    def load_state(self, out: Path, device: torch.device) -> None:
        """Resume: restore what :meth:`save_state` wrote beside the checkpoint."""

    def save_state(self, out: Path, record: dict[str, Any]) -> None:
        """Checkpoint (main rank): write what the model's training keeps beside ``checkpoint.safetensors``."""

    def make_data(self, cfg: dict[str, Any]):
        """The data source: ``describe()``, and what :meth:`batches` and :meth:`validation_items` use."""
        from workbench.nn.data import make_data

        return make_data(cfg["data"], cfg["sampling"], seed=int(cfg["seed"]))

    def batches(self, data, step: int, rank: int, world_size: int, batch_size: int) -> list:
        """The sub-batches of ``rank`` at ``step`` (each with ``.to(device)``; made in a background thread, so
        they depend on the arguments only)."""
        from workbench.nn.batch import collate

        return collate(data.batch(step, rank, world_size, batch_size))

    def loss(self, model, batch, batches: list, step: int, rank: int) -> torch.Tensor:
        """The loss of ``batch``, one of the step's ``batches``: the gradients of the step's losses add up to the
        step's gradient."""
        ssim_weight = float(self.cfg["loss"].get("ssim_weight", 0.84))
        return _loss(model, batch, ssim_weight) / sum(b.size for b in batches)

    def after_step(self, net: torch.nn.Module) -> None:
        """After each optimiser step."""

    def shipped(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module that is validated, written as the weights and returned."""
        return net

    def training_record(self, data, run: dict[str, Any]) -> dict[str, Any]:
        """The sidecar's ``training`` entry; ``run`` holds the loop's entries (steps, batch size, optimiser ...)."""
        return {"data": data.describe(), "sampling": data.plan.to_dict(), **run, "loss": self.cfg["loss"],
                "seed": self.cfg["seed"]}

    def validation_items(self, data, val_cfg: dict[str, Any]) -> list:
        """The held-out items (made once, on the main rank, when ``validation.n`` > 0)."""
        return data.validation_items(int(val_cfg["n"]))

    def evaluate(self, model: torch.nn.Module, items: list, device: torch.device) -> dict[str, Any]:
        """The validation metrics of ``model`` on ``items`` (``validation.json`` adds ``step`` and ``seconds``)."""
        return evaluate_model(model, items, device)

    def validation_message(self, validation: dict[str, Any]) -> str:
        a = validation["all"]
        return (f"PSNR {a['psnr']:.2f} dB, SSIM {a['ssim']:.4f} "
                f"(zero-filled {a['zero_filled_psnr']:.2f} dB, {a['zero_filled_ssim']:.4f}) on {a['n']} slices")


# ------------------------------------------------------------------------------------------------------------
# The loop


def _initialise(net: torch.nn.Module, path: str | os.PathLike, model: str) -> dict[str, Any]:
    """Load the weight file ``path`` into ``net`` (same model and architecture); what the sidecar should say."""
    from workbench.nn.weights import WeightsError, load_weights, misfit

    tensors, side = load_weights(path)
    if side.get("model") != model:
        raise TrainingError(f"{path}: holds {side.get('model')} weights; cannot initialise a {model} model")
    own = net.state_dict()
    if hasattr(net, "initial_tensors"):  # what of another configuration's weights the model can start from
        try:
            tensors = net.initial_tensors(tensors)
        except ValueError as exc:
            raise WeightsError(path, f"the weights do not fit the config's {model} architecture ({exc})") from exc
    why = misfit({k: v.shape for k, v in tensors.items()}, {k: v.shape for k, v in own.items()}, "the config")
    if why:
        raise WeightsError(path, f"the weights do not fit the config's {model} architecture ({why})")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)  # names, shapes: checked
    training = side.get("training", {})
    return {"file": Path(path).name, "sha256": side.get("sha256"), "steps": training.get("steps"),
            "commands": side.get("commands") or [side.get("command")],
            **({"initialised_from": training["initialised_from"]} if training.get("initialised_from") else {})}


def average(config: dict[str, Any], paths: list[str | os.PathLike], out_dir: str | os.PathLike, *,
            model: str | None = None, command: str | None = None, threads: int | None = None,
            log: Callable[[str], None] = print, hooks: TrainingHooks | None = None) -> dict[str, Any]:
    """The uniform average of the weight files ``paths`` (two or more runs of the config's model and
    architecture, e.g. fine-tunings of one start on other item seeds: a "model soup", Wortsman et al., ICML 2022),
    validated and written as the weights of ``out_dir`` (``<model>.safetensors`` + sidecar). Each file is loaded
    as :func:`train`'s ``init_from`` loads it (model, hash and architecture checked); floating tensors are
    averaged in float64, integer ones (counters) must agree. The sidecar's ``training`` is the first file's, with
    ``averaged_from`` naming every file (name, sha256, steps, seed, commands); ``validation`` is the average's
    on the config's validation items. Returns ``weights`` (path), ``validation`` and ``model``."""
    from workbench.nn.weights import read_sidecar, save_weights

    hooks = TrainingHooks() if hooks is None else hooks
    cfg = hooks.resolve_config(config, model)
    if len(paths) < 2:
        raise TrainingError(f"averaging needs two or more weight files, got {len(paths)}")
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    started = time.perf_counter()
    device = torch.device("cpu")
    net = hooks.build_model(cfg)
    sums: dict[str, torch.Tensor] = {}
    sources = []
    first_training: dict[str, Any] = {}
    own_architecture = json.loads(json.dumps(net.config.to_dict()))
    for path in paths:
        record = _initialise(net, path, cfg["model"])  # model, hash and architecture checked; loaded into net
        side = read_sidecar(path)
        if side.get("architecture") != own_architecture:  # not another configuration's weights, converted
            raise TrainingError(f"{path}: its architecture is not the config's; only runs of one architecture "
                                "can be averaged")
        side_training = side["training"] if isinstance(side.get("training"), dict) else {}
        first_training = first_training or side_training
        sources.append({**record, "seed": side_training.get("seed")})
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                sums[name] = sums.get(name, 0) + tensor.double()
            elif name in sums and not torch.equal(sums[name], tensor):
                raise TrainingError(f"{path}: its {name} ({tensor.tolist()}) differs from the first file's; "
                                    "these weights cannot be averaged")
            else:
                sums[name] = tensor.clone()
    state = net.state_dict()
    net.load_state_dict({k: (v / len(paths)).to(state[k].dtype) if state[k].is_floating_point() else v
                         for k, v in sums.items()}, strict=True)
    hooks.setup(net, cfg, device)
    validation: dict[str, Any] = {}
    if int(cfg["validation"].get("n", 0)) > 0:
        items = hooks.validation_items(hooks.make_data(cfg), cfg["validation"])
        if items:
            t = time.perf_counter()
            validation = {"step": first_training.get("steps"), **hooks.evaluate(net, items, device),
                          "seconds": round(time.perf_counter() - t, 1)}
            log("validation of the average: " + hooks.validation_message(validation))
    this_command = command if command is not None else " ".join(sys.argv)
    record = {"config": cfg, "training": {**first_training, "averaged_from": sources},
              "command": this_command, "commands": [this_command], "validation": validation,
              "wall_time_s": round(time.perf_counter() - started, 1), "device": device_description(device)}
    weights, _ = save_weights(Path(out_dir) / f"{cfg['model']}.safetensors", net, record,
                              dtype=str(cfg["weights_dtype"]))
    log(f"weights: {weights} (the average of {len(paths)} files)")
    return {"weights": str(weights), "validation": validation, "model": net}


_WORKER_STATE: tuple | None = None  # (hooks, data, rank, world_size, batch_size) in a data worker process


def _data_worker_start(state: tuple) -> None:
    global _WORKER_STATE
    _WORKER_STATE = state
    torch.set_num_threads(1)  # the workers share the machine with the training process


def _data_worker_step(step: int) -> list:
    hooks, data, rank, world_size, batch_size = _WORKER_STATE
    return hooks.batches(data, step, rank, world_size, batch_size)


class StepData:
    """The training data of the coming steps, made ahead of the step that needs them: in one background thread
    (``workers=0``), or in ``workers`` processes (``workers`` steps in flight ahead of the one training, each made
    whole by one process). The data of a step are a function of the step (``hooks.batches``), so both give the
    same batches in the same order and a run trains to the same weights either way. Processes pay where making
    a step's data is a large part of the step: the synthetic slices take 0.2-0.4 s per batch of two on one CPU
    core, most of a GPU step's time."""

    def __init__(self, hooks: Any, data: Any, rank: int, world_size: int, batch_size: int, workers: int = 0):
        state = (hooks, data, int(rank), int(world_size), int(batch_size))
        self.workers = int(workers)
        self.pending: dict[int, Any] = {}
        if self.workers:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            if "fork" not in multiprocessing.get_all_start_methods():  # the data objects hold locks: not picklable
                raise TrainingError("data worker processes need the 'fork' start method (Linux, macOS); "
                                    "train without --data-workers here")
            self.pool: Any = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                                 initializer=_data_worker_start, initargs=(state,))
            self.fetch: Callable[[int], list] = _data_worker_step
        else:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="train-data")
            self.fetch = lambda step: hooks.batches(data, step, *state[2:])

    def _submit(self, step: int) -> None:
        if step not in self.pending:
            self.pending[step] = self.pool.submit(self.fetch, step)

    def take(self, step: int, total: int) -> list:
        """The batches of ``step``; the following steps (up to ``total``) are started first."""
        self._submit(step)
        for ahead in range(step + 1, min(total, step + 1 + max(1, self.workers))):
            self._submit(ahead)
        return self.pending.pop(step).result()

    def close(self, wait: bool = True) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=wait, cancel_futures=True)


def train(
    config: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    model: str | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    time_limit_s: float | None = None,
    stop_after: int | None = None,
    command: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    hooks: TrainingHooks | None = None,
    init_from: str | os.PathLike | None = None,
    data_workers: int = 0,
) -> dict[str, Any]:
    """Train the configured model into ``out_dir`` (see the module docstring).

    Args:
        config: the training config (file contents; defaults fill the gaps).
        model: the model name; must agree with ``config["model"]`` when both are given.
        steps: total optimiser steps (overrides the config; the learning-rate schedule spans them).
        resume: continue from ``out_dir/checkpoint.safetensors`` (error if there is none).
        device: "cpu", "cuda", "cuda:1" or None/"auto" (under torchrun: the local rank's GPU).
        time_limit_s: stop (checkpointed, with weights) when a step would end past this wall time.
        stop_after: stop after this many steps in this run (checkpointed; continue with ``resume``).
        command: the command line recorded in the sidecar (default: ``sys.argv``).
        threads: CPU threads per process (``torch.set_num_threads``); 1 is fastest on a busy machine.
        hooks: what the model adds to the loop (default: the reconstruction models; see :class:`TrainingHooks`).
        init_from: start from these weights instead of a random initialisation (fine-tuning, e.g. the shipped
            weights on a folder of the user's fastMRI files); the architecture must be the config's. The
            sidecar records the file, its hash and its own training (``training.initialised_from``).
        data_workers: processes that make the coming steps' data (:class:`StepData`; 0: one background
            thread). The weights do not depend on it.

    Returns a summary: ``steps_done``, ``finished``, ``losses`` (this run), ``validation``, ``weights`` (path),
    ``model`` (the trained module), ``wall_time_s``, ``rank``, ``world_size``.
    """
    from torch.nn.parallel import DistributedDataParallel

    from workbench.nn.weights import load_checkpoint, save_checkpoint, save_weights

    hooks = TrainingHooks() if hooks is None else hooks
    cfg = hooks.resolve_config(config, model)
    if steps is not None:
        if int(steps) < 1:
            raise TrainingError(f"steps must be >= 1, got {steps}")
        cfg["steps"] = int(steps)
    total = int(cfg["steps"])
    if int(data_workers) < 0:
        raise TrainingError(f"data_workers must be >= 0, got {data_workers}")
    out = Path(out_dir)
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    device = _pick_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    group = _Dist(device)
    started = time.perf_counter()
    prefetch: StepData | None = None
    try:
        if group.is_main:
            out.mkdir(parents=True, exist_ok=True)
        group.barrier()
        torch.manual_seed(int(cfg["seed"]))  # the same initial weights on every rank
        net = hooks.build_model(cfg).to(device)
        initialised_from = None
        if init_from is not None and not resume:  # a resume restores the weights, and the record, below
            initialised_from = _initialise(net, init_from, cfg["model"])
            if group.is_main:
                log(f"initialised from {init_from} ({initialised_from['steps']} steps)")
        opt_cfg = cfg["optim"]
        optimizer = torch.optim.Adam(net.parameters(), lr=float(opt_cfg["lr"]),
                                     weight_decay=float(opt_cfg.get("weight_decay", 0.0)))
        hooks.setup(net, cfg, device)
        start, wall_before = 0, 0.0
        earlier_commands: list[str] = []
        ckpt = out / "checkpoint.safetensors"
        if resume:
            if not ckpt.is_file():
                raise TrainingError(f"{ckpt}: no checkpoint to resume from")
            side = load_checkpoint(ckpt, net, optimizer, device=device)
            if side.get("model") != cfg["model"]:
                raise TrainingError(f"{ckpt}: the checkpoint is a {side.get('model')} model, not {cfg['model']}")
            hooks.load_state(out, device)
            start = int(side["step"])
            wall_before = float(side.get("wall_time_s", 0.0))
            earlier_commands = list(side.get("commands") or [c for c in [side.get("command")] if c])
            initialised_from = side.get("training", {}).get("initialised_from")
            if group.is_main:
                log(f"resuming from step {start} ({ckpt})")
        data = hooks.make_data(cfg)
        ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
            if group.active else net
        bs = int(cfg["batch_size"])
        val_cfg = cfg["validation"]
        val_items: list | None = None
        validation: dict[str, Any] = {}
        losses: list[float] = []
        bar = _Progress(progress and group.is_main, start, total, log)
        history = open(out / "history.jsonl", "a", encoding="utf-8") if group.is_main else None

        this_command = command if command is not None else " ".join(sys.argv)

        def record(step_done: int, finished: bool) -> dict[str, Any]:
            return {
                "config": cfg,
                "training": hooks.training_record(data, {
                    "steps": step_done, "planned_steps": total, "finished": finished, "batch_size_per_process": bs,
                    "world_size": group.world_size, "optimizer": {"name": "Adam", **opt_cfg},
                    **({"initialised_from": initialised_from} if initialised_from else {}),
                }),
                "command": this_command,
                "commands": earlier_commands + [this_command],  # every run that led here (resumes)
                "validation": validation,
                "wall_time_s": round(wall_before + time.perf_counter() - started, 1),
                "device": device_description(device),
            }

        def validate(step_done: int) -> None:
            nonlocal val_items, validation
            if group.is_main and int(val_cfg.get("n", 0)) > 0:
                if val_items is None:
                    val_items = hooks.validation_items(data, val_cfg)
                if val_items:
                    t = time.perf_counter()
                    validation = {"step": step_done, **hooks.evaluate(hooks.shipped(net), val_items, device),
                                  "seconds": round(time.perf_counter() - t, 1)}
                    atomic_write_bytes(out / "validation.json", (json.dumps(validation, indent=2) + "\n").encode())
                    log(f"validation at step {step_done}: " + hooks.validation_message(validation))
            group.barrier()

        prefetch = StepData(hooks, data, group.rank, group.world_size, bs, data_workers)
        net.train()
        step = start
        stopped_early = False
        while step < total:
            t_step = time.perf_counter()
            lr = learning_rate(step, total, opt_cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batches = [b.to(device) for b in prefetch.take(step, total)]  # the next steps' data are being made
            optimizer.zero_grad(set_to_none=True)
            loss_value = 0.0
            for i, batch in enumerate(batches):
                # gradients are averaged across ranks once, on the last sub-batch
                sync = contextlib.nullcontext() if (i == len(batches) - 1 or not group.active) else ddp.no_sync()
                with sync:
                    loss = hooks.loss(ddp, batch, batches, step, group.rank)
                    loss.backward()
                loss_value += float(loss.detach())
            if opt_cfg.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(opt_cfg["grad_clip"]))
            optimizer.step()
            hooks.after_step(net)
            loss_value = group.mean(loss_value)
            if not math.isfinite(loss_value):
                raise TrainingError(f"the training loss became {loss_value} at step {step + 1}; lower optim.lr")
            step += 1
            losses.append(loss_value)
            bar.update(step - 1, loss_value, lr)
            if history is not None:
                history.write(json.dumps({"step": step, "loss": round(loss_value, 6), "lr": lr,
                                          "seconds": round(time.perf_counter() - t_step, 3)}) + "\n")
                history.flush()
            every = int(val_cfg.get("every", 0))
            if every and step % every == 0 and step < total:
                validate(step)
            # stop when the next step would end past the time limit
            now = time.perf_counter()
            out_of_time = time_limit_s is not None and (now - started) + (now - t_step) > time_limit_s
            stop = group.any(out_of_time or (stop_after is not None and step - start >= stop_after))
            if (cfg["checkpoint_every"] and step % cfg["checkpoint_every"] == 0) or stop or step == total:
                if group.is_main:
                    rec = record(step, step == total)
                    save_checkpoint(ckpt, net, optimizer, step, rec)
                    hooks.save_state(out, rec)
                group.barrier()
            if stop and step < total:
                stopped_early = True
                if group.is_main:
                    log(f"stopping after step {step} ({'time limit' if out_of_time else 'stop_after'}); "
                        f"continue with --resume")
                break
        bar.close()
        prefetch.close()
        if history is not None:
            history.close()
        validate(step)
        weights = None
        shipped = hooks.shipped(net)
        if group.is_main:
            weights, _ = save_weights(out / f"{cfg['model']}.safetensors", shipped, record(step, step == total),
                                      dtype=str(cfg["weights_dtype"]))
            log(f"weights: {weights}")
        group.barrier()
        return {"steps_done": step, "finished": step == total and not stopped_early, "losses": losses,
                "validation": validation, "weights": None if weights is None else str(weights), "model": shipped,
                "wall_time_s": wall_before + time.perf_counter() - started, "rank": group.rank,
                "world_size": group.world_size}
    finally:
        if prefetch is not None:
            prefetch.close(wait=False)
        group.close()
