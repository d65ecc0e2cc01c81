"""Training of the score network by denoising score matching (model ``dsm``), on the training stack of
:mod:`workbench.nn.train`: the same config file format, seeds, single process or ``torchrun`` (DDP, gloo on CPU),
checkpoint / resume, progress display, and safetensors weights with their sidecar.

    python -m workbench.nn.train_dsm --config configs/dsm_cpu.json --out runs/dsm --time-limit 20

A config has the entries of :mod:`workbench.nn.train` that apply (``model`` = "dsm", ``architecture`` =
:class:`~workbench.nn.score_net.ScoreNetConfig` fields, ``data``, ``steps``, ``batch_size``, ``seed``,
``optim``, ``validation``, ``checkpoint_every``, ``weights_dtype``) and ``ema`` (the decay of the exponential
moving average of the weights that is shipped). ``data`` is the synthetic generator's config
(:class:`workbench.nn.data.SyntheticData`) plus:

- ``crop`` ``[h, w]``: training patches cut at random from the simulated slice's full grid (the network is
  convolutional; it runs on whole slices afterwards),
- ``crops_per_image``: patches per simulated slice (a step simulates ``batch_size / crops_per_image`` slices),
- ``scale_jitter`` ``[lo, hi]``: the image is divided by its 99th percentile magnitude times ``u ~ U[lo, hi]``,
  because a reconstruction normalises by :attr:`Problem.scale <workbench.problem.Problem.scale>`, the 99th
  percentile of the *zero-filled* image, which is 0.8-1.0 times the true one at 4x-8x,
- ``augment``: random global phase, flips and transposes (the prior should not care).

The training items are the generator's noise-free complex images (``image``: coil-combined, receive bias
included), i.e. the prior of ``x`` in ``y = A x + n``. Validation: the denoising PSNR per noise level of the
held-out slices (generator seeds below :data:`~workbench.nn.data.TRAIN_SEED_OFFSET`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.nn.data import DataConfigError, SyntheticData
from workbench.nn.train import (
    TrainingError,
    _Dist,
    _pick_device,
    _Progress,
    device_description,
    learning_rate,
    load_config,
)

DEFAULT_DSM_CONFIG: dict[str, Any] = {
    "model": "dsm",
    "architecture": {},
    "data": {"kind": "synthetic"},
    "steps": 1000,
    "batch_size": 8,
    "seed": 0,
    "optim": {"lr": 1e-3, "warmup_steps": 50, "final_lr_fraction": 0.05, "grad_clip": 1.0, "weight_decay": 0.0},
    "ema": 0.995,
    "validation": {"n": 8, "every": 0, "sigmas": [0.01, 0.03, 0.1, 0.3, 1.0], "max_size": 256},
    "checkpoint_every": 50,
    "weights_dtype": "float32",
}
_SECTIONS = ("optim", "validation")
DSM_DATA_OPTIONS: dict[str, Any] = {"crop": [128, 128], "crops_per_image": 2, "scale_jitter": [0.8, 1.0],
                                    "augment": True}


def resolve_dsm_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in; checks the entries."""
    unknown = set(config) - set(DEFAULT_DSM_CONFIG) - {"description", "sampling", "loss"}
    if unknown:
        raise TrainingError(f"dsm training config: unknown entries {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(DEFAULT_DSM_CONFIG)}")
    if config.get("model", "dsm") != "dsm":
        raise TrainingError(f"the config is for model {config['model']!r}, not 'dsm'")
    cfg = copy.deepcopy(DEFAULT_DSM_CONFIG)
    for k, v in config.items():
        if k in _SECTIONS and isinstance(v, dict):
            cfg[k] = {**cfg[k], **v}
        elif k in DEFAULT_DSM_CONFIG:
            cfg[k] = copy.deepcopy(v)
    for key in ("steps", "batch_size", "checkpoint_every"):
        if not isinstance(cfg[key], int) or cfg[key] < (0 if key == "checkpoint_every" else 1):
            raise TrainingError(f"dsm training config: {key} must be a positive integer, got {cfg[key]!r}")
    if not 0.0 <= float(cfg["ema"]) < 1.0:
        raise TrainingError(f"dsm training config: ema must be in [0, 1), got {cfg['ema']!r}")
    return cfg


# ------------------------------------------------------------------------------------------------------------
# Data


class DSMImageData:
    """Normalised complex image patches from the synthetic generator (see the module docstring)."""

    kind = "synthetic"

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0):
        cfg = dict(config or {})
        kind = cfg.pop("kind", "synthetic")
        if kind != "synthetic":
            raise DataConfigError(f"dsm training data: kind {kind!r} is not supported yet; use 'synthetic'")
        self.options = {k: copy.deepcopy(cfg.pop(k, v)) for k, v in DSM_DATA_OPTIONS.items()}
        self.synthetic = SyntheticData(cfg, None, seed)
        self.seed = int(seed)
        self.crop = tuple(int(v) for v in self.options["crop"])
        self.crops_per_image = int(self.options["crops_per_image"])
        lo, hi = (float(v) for v in self.options["scale_jitter"])
        if len(self.crop) != 2 or min(self.crop) < 8:
            raise DataConfigError(f"dsm training data: crop must be [h, w] >= 8, got {self.options['crop']}")
        if self.crops_per_image < 1:
            raise DataConfigError("dsm training data: crops_per_image must be >= 1")
        if not 0 < lo <= hi:
            raise DataConfigError(f"dsm training data: scale_jitter must be 0 < lo <= hi, got {[lo, hi]}")
        self.jitter = (lo, hi)
        small = [s for s in self.synthetic.shapes if s[0] < self.crop[0] or s[1] < self.crop[1]]
        if small:
            raise DataConfigError(f"dsm training data: shapes {small} are smaller than the crop {list(self.crop)}")

    def describe(self) -> dict[str, Any]:
        return {**self.synthetic.describe(), **self.options, "items": "noise-free complex images (generator 'image')"}

    def image(self, seed: int, setting: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any], np.random.Generator]:
        """The normalised noise-free complex image on the full grid of generator seed ``seed``."""
        from workbench.nn.common import center_crop_to, robust_scale

        sim, meta, rng = self.synthetic.simulate(seed, setting)
        image = torch.from_numpy(sim["image"])
        recon = tuple(sim["target"].shape)
        scale = float(robust_scale(center_crop_to(image.abs(), recon)[None])[0])
        u = float(rng.uniform(*self.jitter))
        meta = {**meta, "scale_factor": u}
        return (image / (scale * u)).to(torch.complex64), meta, rng

    def _augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if not self.options["augment"]:
            return x
        x = x * complex(np.exp(1j * rng.uniform(0, 2 * np.pi)))
        if rng.random() < 0.5:
            x = x.flip(-1)
        if rng.random() < 0.5:
            x = x.flip(-2)
        if rng.random() < 0.5 and x.shape[-1] == x.shape[-2]:
            x = x.transpose(-1, -2)
        return x

    def _patches(self, x: torch.Tensor, n: int, rng: np.random.Generator) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        ch, cw = self.crop
        out = []
        for _ in range(n):
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            out.append(self._augment(x[top : top + ch, left : left + cw], rng).contiguous())
        return out

    def batch(self, step: int, rank: int = 0, world_size: int = 1, batch_size: int = 1) -> torch.Tensor:
        """``[batch_size, h, w]`` complex patches of ``rank`` at step ``step`` (deterministic)."""
        setting = self.synthetic.draw_setting(np.random.default_rng([self.seed, int(step), 104729]))
        n_images = math.ceil(batch_size / self.crops_per_image)
        first = (int(step) * world_size + int(rank)) * n_images
        patches: list[torch.Tensor] = []
        for j in range(n_images):
            x, _, rng = self.image(self.synthetic.train_seed(first + j), setting)
            patches += self._patches(x, min(self.crops_per_image, batch_size - len(patches)), rng)
        return torch.stack(patches)

    def validation_images(self, n: int, max_size: int | None = 256) -> list[torch.Tensor]:
        """Held-out normalised images (generator seeds ``0..n-1``), centre-cropped to at most ``max_size``."""
        from workbench.nn.common import center_crop_to

        out = []
        for i in range(int(n)):
            seed = self.synthetic.validation_seed(i)
            x, _, _ = self.image(seed, self.synthetic.held_out_setting(seed))
            if max_size:
                x = center_crop_to(x, (min(x.shape[-2], max_size), min(x.shape[-1], max_size)))
            out.append(x.contiguous())
        return out


# ------------------------------------------------------------------------------------------------------------
# The loop


class _EMA:
    """Exponential moving average of a model's parameters (the weights that sample best)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()  # updated under no_grad; requires_grad kept for n_parameters

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)


def train_dsm(
    config: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    steps: int | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    time_limit_s: float | None = None,
    stop_after: int | None = None,
    command: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    model: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train the score network into ``out_dir``; the arguments and the summary are those of
    :func:`workbench.nn.train.train`. Writes ``checkpoint.safetensors`` (+ ``ema_checkpoint.safetensors``),
    ``history.jsonl``, ``validation.json`` and ``dsm.safetensors`` + ``dsm.json`` (the EMA weights)."""
    from torch.nn.parallel import DistributedDataParallel

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))

    from workbench.nn.dsm import denoising_psnr, dsm_loss
    from workbench.nn.score_net import ScoreNet, ScoreNetConfig
    from workbench.nn.weights import load_checkpoint, load_weights, save_checkpoint, save_weights

    if model not in (None, "dsm"):
        raise TrainingError(f"train_dsm trains the 'dsm' score network, not {model!r}")
    cfg = resolve_dsm_config(config)
    if steps is not None:
        if int(steps) < 1:
            raise TrainingError(f"steps must be >= 1, got {steps}")
        cfg["steps"] = int(steps)
    total = int(cfg["steps"])
    out = Path(out_dir)
    device = _pick_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    group = _Dist(device)
    started = time.perf_counter()
    try:
        if group.is_main:
            out.mkdir(parents=True, exist_ok=True)
        group.barrier()
        torch.manual_seed(int(cfg["seed"]))
        try:
            arch = ScoreNetConfig(**cfg["architecture"])
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"dsm architecture: {exc}") from exc
        net = ScoreNet(arch).to(device)
        opt_cfg = cfg["optim"]
        optimizer = torch.optim.Adam(net.parameters(), lr=float(opt_cfg["lr"]),
                                     weight_decay=float(opt_cfg.get("weight_decay", 0.0)))
        ema = _EMA(net, float(cfg["ema"]))
        start, wall_before = 0, 0.0
        earlier_commands: list[str] = []
        ckpt = out / "checkpoint.safetensors"
        ema_ckpt = out / "ema_checkpoint.safetensors"
        if resume:
            if not ckpt.is_file():
                raise TrainingError(f"{ckpt}: no checkpoint to resume from")
            side = load_checkpoint(ckpt, net, optimizer, device=device)
            if side.get("model") != "dsm":
                raise TrainingError(f"{ckpt}: the checkpoint is a {side.get('model')} model, not dsm")
            tensors, _ = load_weights(ema_ckpt, device)
            ema.model.load_state_dict(tensors, strict=True)
            start = int(side["step"])
            wall_before = float(side.get("wall_time_s", 0.0))
            earlier_commands = list(side.get("commands") or [c for c in [side.get("command")] if c])
            if group.is_main:
                log(f"resuming from step {start} ({ckpt})")
        data = DSMImageData(cfg["data"], seed=int(cfg["seed"]))
        ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
            if group.active else net
        bs = int(cfg["batch_size"])
        val_cfg = cfg["validation"]
        val_images: list | None = None
        validation: dict[str, Any] = {}
        losses: list[float] = []
        bar = _Progress(progress and group.is_main, start, total, log)
        history = open(out / "history.jsonl", "a", encoding="utf-8") if group.is_main else None
        this_command = command if command is not None else " ".join(sys.argv)

        def record(step_done: int, finished: bool) -> dict[str, Any]:
            return {
                "config": cfg,
                "training": {
                    "data": data.describe(), "steps": step_done, "planned_steps": total, "finished": finished,
                    "batch_size_per_process": bs, "world_size": group.world_size,
                    "optimizer": {"name": "Adam", **opt_cfg}, "ema": cfg["ema"], "seed": cfg["seed"],
                    "loss": {"kind": "denoising score matching", "weighting": "sigma^2",
                             "sigma": "log-uniform in [sigma_min, sigma_max] per item"},
                },
                "command": this_command,
                "commands": earlier_commands + [this_command],
                "validation": validation,
                "wall_time_s": round(wall_before + time.perf_counter() - started, 1),
                "device": device_description(device),
            }

        def validate(step_done: int) -> None:
            nonlocal val_images, validation
            if group.is_main and int(val_cfg.get("n", 0)) > 0:
                if val_images is None:
                    val_images = data.validation_images(int(val_cfg["n"]), val_cfg.get("max_size", 256))
                t = time.perf_counter()
                sig = [s for s in val_cfg["sigmas"] if arch.sigma_min <= s <= arch.sigma_max]
                rows = denoising_psnr(ema.model, val_images, sig, seed=int(cfg["seed"]), device=device)
                validation = {"step": step_done, "n": len(val_images), "denoising": rows,
                              "metric": "complex PSNR (peak = max |x|) of x + sigma z and of the EMA model's "
                                        "denoiser x + sigma^2 score, normalised held-out slices",
                              "seconds": round(time.perf_counter() - t, 1)}
                (out / "validation.json").write_text(json.dumps(validation, indent=2) + "\n")
                log(f"validation at step {step_done}: " + ", ".join(
                    f"sigma {r['sigma']:g}: {r['noisy_psnr']:.1f} -> {r['denoised_psnr']:.1f} dB" for r in rows))
            group.barrier()

        net.train()
        step = start
        stopped_early = False
        while step < total:
            t_step = time.perf_counter()
            lr = learning_rate(step, total, opt_cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x = data.batch(step, group.rank, group.world_size, bs).to(device)
            gen = torch.Generator(device=device).manual_seed(int(cfg["seed"]) * 1_000_003 + step * 4099 + group.rank)
            optimizer.zero_grad(set_to_none=True)
            loss = dsm_loss(ddp, x, arch.sigma_min, arch.sigma_max, generator=gen)
            loss.backward()
            if opt_cfg.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(opt_cfg["grad_clip"]))
            optimizer.step()
            ema.update(net)
            loss_value = group.mean(float(loss.detach()))
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
            now = time.perf_counter()
            out_of_time = time_limit_s is not None and (now - started) + (now - t_step) > time_limit_s
            stop = group.any(out_of_time or (stop_after is not None and step - start >= stop_after))
            if (cfg["checkpoint_every"] and step % cfg["checkpoint_every"] == 0) or stop or step == total:
                if group.is_main:
                    rec = record(step, step == total)
                    save_checkpoint(ckpt, net, optimizer, step, rec)
                    save_weights(ema_ckpt, ema.model, rec)
                group.barrier()
            if stop and step < total:
                stopped_early = True
                if group.is_main:
                    log(f"stopping after step {step} ({'time limit' if out_of_time else 'stop_after'}); "
                        f"continue with --resume")
                break
        bar.close()
        if history is not None:
            history.close()
        validate(step)
        weights = None
        if group.is_main:
            weights, _ = save_weights(out / "dsm.safetensors", ema.model, record(step, step == total),
                                      dtype=str(cfg["weights_dtype"]))
            log(f"weights: {weights}")
        group.barrier()
        return {"steps_done": step, "finished": step == total and not stopped_early, "losses": losses,
                "validation": validation, "weights": None if weights is None else str(weights),
                "model": ema.model, "wall_time_s": wall_before + time.perf_counter() - started,
                "rank": group.rank, "world_size": group.world_size}
    finally:
        group.close()


# ------------------------------------------------------------------------------------------------------------
# Command line (until `workbench train dsm` dispatches here)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.nn.train_dsm",
                                description="Train the DSM score network (same options as `workbench train`).")
    p.add_argument("--config", required=True, metavar="CFG", help="training config (.json or .yaml)")
    p.add_argument("--out", default="runs/dsm", metavar="DIR", help="output folder (default: runs/dsm)")
    p.add_argument("--steps", type=int, default=None, metavar="N")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN")
    p.add_argument("--stop-after", type=int, default=None, metavar="N")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    command = "python -m workbench.nn.train_dsm " + " ".join(shlex.quote(a) for a in raw)
    summary = train_dsm(load_config(args.config), args.out, steps=args.steps, resume=args.resume,
                        device=args.device, stop_after=args.stop_after, command=command, progress=not args.quiet,
                        time_limit_s=None if args.time_limit is None else 60.0 * args.time_limit)
    if summary["rank"] == 0:
        state = "finished" if summary["finished"] else "stopped (resume with --resume)"
        print(f"dsm: {summary['steps_done']} steps, {state}, {summary['wall_time_s']:.0f} s; "
              f"weights {summary['weights']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
