"""Training of the score network by denoising score matching (model ``dsm``) in the one loop of
:func:`workbench.nn.train.train` (configured by :class:`DSMTraining`): the same config file format, seeds, single
process or ``torchrun`` (DDP, gloo on CPU), checkpoint / resume, progress display, and safetensors weights with
their sidecar.

    workbench train dsm --config configs/dsm_cpu.json --out runs/dsm --threads 1

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

import copy
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.nn.data import DataConfigError, SyntheticData
from workbench.nn.train import TrainingError, TrainingHooks, check_counts, merge_config, train

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
    what = "dsm training config"
    cfg = merge_config(config, DEFAULT_DSM_CONFIG, _SECTIONS, what=what, ignored=("sampling", "loss"),
                       keep_extra=False)
    if config.get("model", "dsm") != "dsm":
        raise TrainingError(f"the config is for model {config['model']!r}, not 'dsm'")
    check_counts(cfg, what)
    if not 0.0 <= float(cfg["ema"]) < 1.0:
        raise TrainingError(f"{what}: ema must be in [0, 1), got {cfg['ema']!r}")
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
        from workbench.arrays import fit_shape
        from workbench.nn.common import robust_scale

        sim, meta, rng = self.synthetic.simulate(seed, setting)
        image = torch.from_numpy(sim["image"])
        recon = tuple(sim["target"].shape)
        scale = float(robust_scale(fit_shape(image.abs(), recon)[None])[0])
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
        from workbench.arrays import fit_shape

        out = []
        for i in range(int(n)):
            seed = self.synthetic.validation_seed(i)
            x, _, _ = self.image(seed, self.synthetic.held_out_setting(seed))
            if max_size:
                x = fit_shape(x, (min(x.shape[-2], max_size), min(x.shape[-1], max_size)))
            out.append(x.contiguous())
        return out


# ------------------------------------------------------------------------------------------------------------
# The score network's part of the training loop


class _EMA:
    """Exponential moving average of a model's parameters (the weights that sample best)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()  # updated under no_grad; requires_grad kept for n_parameters

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)


EMA_CHECKPOINT = "ema_checkpoint.safetensors"
DSM_LOSS_RECORD = {"kind": "denoising score matching", "weighting": "sigma^2",
                   "sigma": "log-uniform in [sigma_min, sigma_max] per item"}


class DSMTraining(TrainingHooks):
    """The score network's part of the loop of :func:`workbench.nn.train.train`: the DSM loss on the patches of
    :class:`DSMImageData`, the EMA of the weights (checkpointed in ``ema_checkpoint.safetensors``, validated by
    its denoising PSNR and shipped)."""

    def resolve_config(self, config: dict[str, Any], model: str | None) -> dict[str, Any]:
        if model not in (None, "dsm"):
            raise TrainingError(f"train_dsm trains the 'dsm' score network, not {model!r}")
        return resolve_dsm_config(config)

    def build_model(self, cfg: dict[str, Any]) -> torch.nn.Module:
        from workbench.nn.score_net import ScoreNet, ScoreNetConfig

        try:
            self.arch = ScoreNetConfig(**cfg["architecture"])
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"dsm architecture: {exc}") from exc
        return ScoreNet(self.arch)

    def setup(self, net: torch.nn.Module, cfg: dict[str, Any], device: torch.device) -> None:
        super().setup(net, cfg, device)
        self.ema = _EMA(net, float(cfg["ema"]))

    def load_state(self, out: Path, device: torch.device) -> None:
        from workbench.nn.weights import load_weights

        tensors, _ = load_weights(out / EMA_CHECKPOINT, device)
        self.ema.model.load_state_dict(tensors, strict=True)

    def save_state(self, out: Path, record: dict[str, Any]) -> None:
        from workbench.nn.weights import save_weights

        save_weights(out / EMA_CHECKPOINT, self.ema.model, record)

    def make_data(self, cfg: dict[str, Any]) -> DSMImageData:
        return DSMImageData(cfg["data"], seed=int(cfg["seed"]))

    def batches(self, data, step: int, rank: int, world_size: int, batch_size: int) -> list:
        return [data.batch(step, rank, world_size, batch_size)]

    def loss(self, model, batch, batches: list, step: int, rank: int) -> torch.Tensor:
        from workbench.nn.dsm import dsm_loss

        gen = torch.Generator(device=self.device).manual_seed(int(self.cfg["seed"]) * 1_000_003 + step * 4099 + rank)
        return dsm_loss(model, batch, self.arch.sigma_min, self.arch.sigma_max, generator=gen)

    def after_step(self, net: torch.nn.Module) -> None:
        self.ema.update(net)

    def shipped(self, net: torch.nn.Module) -> torch.nn.Module:
        return self.ema.model

    def training_record(self, data, run: dict[str, Any]) -> dict[str, Any]:
        return {"data": data.describe(), **run, "ema": self.cfg["ema"], "seed": self.cfg["seed"],
                "loss": dict(DSM_LOSS_RECORD)}

    def validation_items(self, data, val_cfg: dict[str, Any]) -> list:
        return data.validation_images(int(val_cfg["n"]), val_cfg.get("max_size", 256))

    def evaluate(self, model: torch.nn.Module, items: list, device: torch.device) -> dict[str, Any]:
        from workbench.nn.dsm import denoising_psnr

        sig = [s for s in self.cfg["validation"]["sigmas"] if self.arch.sigma_min <= s <= self.arch.sigma_max]
        rows = denoising_psnr(model, items, sig, seed=int(self.cfg["seed"]), device=device)
        return {"n": len(items), "denoising": rows,
                "metric": "complex PSNR (peak = max |x|) of x + sigma z and of the EMA model's "
                          "denoiser x + sigma^2 score, normalised held-out slices"}

    def validation_message(self, validation: dict[str, Any]) -> str:
        return ", ".join(f"sigma {r['sigma']:g}: {r['noisy_psnr']:.1f} -> {r['denoised_psnr']:.1f} dB"
                         for r in validation["denoising"])


def train_dsm(config: dict[str, Any], out_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Train the score network into ``out_dir``: :func:`workbench.nn.train.train` with :class:`DSMTraining`; the
    keyword arguments (``steps``, ``resume``, ``device``, ``time_limit_s``, ``stop_after``, ``command``,
    ``threads``, ``progress``, ``log``, ``model``) and the summary are those of ``train``. Writes
    ``checkpoint.safetensors`` (+ ``ema_checkpoint.safetensors``), ``history.jsonl``, ``validation.json`` and
    ``dsm.safetensors`` + ``dsm.json`` (the EMA weights)."""
    return train(config, out_dir, hooks=DSMTraining(), **options)
