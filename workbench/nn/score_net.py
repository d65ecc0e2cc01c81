"""A noise-conditional score network on complex images (real and imaginary parts as 2 channels).

The network estimates the score ``grad_x log p_sigma(x)`` of the image distribution smoothed by Gaussian noise of
standard deviation ``sigma`` **per real component** (real and imaginary parts each get ``N(0, sigma^2)``), for
every ``sigma`` in ``[sigma_min, sigma_max]``. Trained by denoising score matching (:mod:`workbench.nn.dsm`), it
is also the optimal denoiser by Tweedie's formula::

    r(x, sigma) = x + sigma^2 * score(x, sigma)

Images are in *normalised units*: the training images are divided by (a jittered) 99th percentile of their
magnitude, and a reconstruction divides the data by :attr:`workbench.problem.Problem.scale`, so the prior is the
same whatever the scanner's units.

Architecture (NCSNv2 / DDPM-like, small enough for a CPU): the input is multiplied by ``1 / sqrt(sigma_data^2 +
sigma^2)`` (unit-variance input at every noise level), optionally folded into ``patch x patch`` channels
(lossless pixel-unshuffle: a 256x256 image is processed at 128x128, 4x cheaper), then a U-net of residual blocks
(3x3 convolutions, SiLU, no normalisation layer so that absolute levels survive, FiLM scale and shift from an
embedding of ``log sigma``), average-pool down, nearest up, concatenated skips. The network predicts the noise
direction ``eps`` (unit variance) and ``score = -eps / sigma`` (the ``1/sigma`` output scaling of NCSNv2).

Shapes: :meth:`ScoreNet.forward` takes real ``[B, 2, H, W]`` and ``sigma`` ``[B]`` (or a float) and returns the
predicted ``eps`` ``[B, 2, H, W]``; :meth:`ScoreNet.score` and :meth:`ScoreNet.denoise` take and return complex
``[B, H, W]``. Any ``H, W`` (padded inside to a multiple of ``patch * 2**(levels-1)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.nn.common import pad_to_multiple, unpad

__all__ = [
    "MODEL_NAME",
    "ScoreNet",
    "ScoreNetConfig",
    "cached_score_net",
    "geometric_sigmas",
    "load_for_method",
    "load_score_net",
    "score_weights_path",
    "shipped_score_weights",
    "weights_problem",
    "weights_reasons",
]

MODEL_NAME = "dsm"


@dataclass
class ScoreNetConfig:
    """Size of the score network and the noise range it is trained for (normalised image units).

    Attributes:
        chans: channels per level (one entry per U-net level, the first at the patch resolution).
        blocks: residual blocks per level on the way down (one more on the way up, as in DDPM).
        patch: pixel-unshuffle factor of the input (1: full resolution; 2: half resolution, 4x cheaper).
        emb_dim: size of the noise-level embedding.
        sigma_min, sigma_max: the noise range (per real component) the network is trained on.
        sigma_data: typical standard deviation of normalised images (input scaling).
    """

    chans: list[int] = field(default_factory=lambda: [32, 64, 96])
    blocks: int = 1
    patch: int = 2
    emb_dim: int = 64
    sigma_min: float = 0.005
    sigma_max: float = 1.0
    sigma_data: float = 0.5

    def __post_init__(self):
        self.chans = [int(c) for c in self.chans]
        if not self.chans or any(c < 1 for c in self.chans):
            raise ValueError(f"chans must be a non-empty list of positive ints, got {self.chans}")
        if self.blocks < 1 or self.patch < 1 or self.emb_dim < 2:
            raise ValueError("blocks, patch must be >= 1 and emb_dim >= 2")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """``n`` noise levels from ``sigma_max`` down to ``sigma_min``, geometrically spaced (float64 ``[n]``)."""
    if n < 1:
        raise ValueError(f"need at least one noise level, got {n}")
    if n == 1:
        return torch.tensor([float(sigma_min)], dtype=torch.float64)
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64))


class NoiseEmbedding(nn.Module):
    """``log sigma`` -> sinusoidal features -> 2-layer MLP ``[B, emb_dim]``."""

    def __init__(self, emb_dim: int):
        super().__init__()
        half = emb_dim // 2
        # frequencies for log sigma over roughly [-8, 2]
        self.register_buffer("freqs", torch.exp(torch.linspace(math.log(0.25), math.log(16.0), half)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        a = log_sigma[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([a.sin(), a.cos()], dim=1))


class ResBlock(nn.Module):
    """``x + conv(silu(film(conv(silu(x)))))`` with a 1x1 skip when the channel count changes."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        # the residual branch starts small: a deep stack without normalisation stays well scaled
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(x))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class ScoreNet(nn.Module):
    """Noise-conditional score network (see the module docstring)."""

    model_name = MODEL_NAME

    def __init__(self, config: ScoreNetConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = ScoreNetConfig(**config)
        self.config = config or ScoreNetConfig()
        c = self.config
        p2 = c.patch * c.patch
        self.embed = NoiseEmbedding(c.emb_dim)
        self.inp = nn.Conv2d(2 * p2, c.chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [c.chans[0]]  # channels of the saved activations, in the order they are saved
        ch = c.chans[0]
        for level, width in enumerate(c.chans):
            blocks = nn.ModuleList()
            for _ in range(c.blocks):
                blocks.append(ResBlock(ch, width, c.emb_dim))
                ch = width
                skips.append(ch)
            self.down.append(blocks)
            if level < len(c.chans) - 1:
                skips.append(ch)  # the pooled activation
        self.mid = ResBlock(ch, ch, c.emb_dim)
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(c.chans))):
            blocks = nn.ModuleList()
            for _ in range(c.blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), width, c.emb_dim))
                ch = width
            self.up.append(blocks)
        self.out = nn.Conv2d(ch, 2 * p2, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        return self.config.patch * 2 ** (len(self.config.chans) - 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Predicted noise ``eps`` ``[B, 2, H, W]`` for noisy real/imag images ``x`` ``[B, 2, H, W]``."""
        c = self.config
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(b)
        emb = self.embed(sigma.log())
        x = x * torch.rsqrt(c.sigma_data**2 + sigma**2)[:, None, None, None]
        x, pads = pad_to_multiple(x, self.multiple, mode="constant")
        if c.patch > 1:
            x = F.pixel_unshuffle(x, c.patch)
        if self.inp.weight.is_contiguous(memory_format=torch.channels_last) and self.inp.weight.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # the layout the weights were put in (CPU: faster)
        h = self.inp(x)
        stack = [h]
        n_levels = len(self.down)
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
                stack.append(h)
            if level < n_levels - 1:
                h = F.avg_pool2d(h, 2)
                stack.append(h)
        h = self.mid(h, emb)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, stack.pop()], dim=1), emb)
            if i < n_levels - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        out = self.out(F.silu(h))
        if c.patch > 1:
            out = F.pixel_shuffle(out, c.patch)
        return unpad(out, pads)

    # --- complex-image interface ----------------------------------------------------------------------------
    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``grad log p_sigma(x)`` for complex images ``[B, H, W]`` (normalised units): ``-eps / sigma``."""
        eps = self.forward(torch.stack([x.real, x.imag], dim=1).float(), sigma)
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
        return torch.complex(eps[:, 0], eps[:, 1]) / (-s)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The MMSE denoiser ``x + sigma^2 score(x, sigma)`` for complex images ``[B, H, W]``."""
        eps = self.forward(torch.stack([x.real, x.imag], dim=1).float(), sigma)
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
        return x - s * torch.complex(eps[:, 0], eps[:, 1])


# ------------------------------------------------------------------------------------------------------------
# Weights (safetensors + sidecar through workbench.nn.weights)


def load_score_net(path: str | Path, device="cpu") -> tuple[ScoreNet, dict[str, Any]]:
    """Build the score network a weight file's sidecar describes and load its weights (eval mode)."""
    from workbench.nn.weights import WeightsError, build_with_weights, load_weights, read_sidecar

    side = read_sidecar(path)
    if side.get("model") != MODEL_NAME:
        raise WeightsError(path, f"holds {side.get('model')} weights, not a {MODEL_NAME} score network")

    def build(arch: dict[str, Any]) -> ScoreNet:
        return ScoreNet(ScoreNetConfig(**arch))

    tensors, sidecar = load_weights(path, device, build=build, what="score network")  # hash, shapes first
    model = build_with_weights(path, tensors, sidecar, build, "score network")
    model = model.to(device).eval()
    if torch.device(device).type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # ~20% faster convolutions on CPU (oneDNN)
    return model, sidecar


def cached_score_net(path: str | Path, device="cpu") -> tuple[ScoreNet, dict[str, Any]]:
    """:func:`load_score_net` cached by (file, modification time, device) in the one model cache
    (:func:`workbench.nn.weights.cached_model`)."""
    from workbench.nn.weights import cached_model

    return cached_model(path, device, load=load_score_net)


def shipped_score_weights() -> Path:
    """``resources/weights/dsm.safetensors`` (may be absent)."""
    from workbench.nn.weights import shipped_weights

    return shipped_weights(MODEL_NAME)


def weights_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as score-network weights (None: it can), in words a user understands."""
    from workbench.nn import weights

    return weights.weights_problem(path, (MODEL_NAME,), kind="a score network")


def score_weights_path(weights: str | Path | None = None) -> Path:
    """The weight file a plugin uses: ``weights`` when given (non-empty), else the shipped file."""
    return Path(weights) if weights else shipped_score_weights()


def weights_reasons(params: Any = None) -> list[str]:
    """A score-network plugin's check of its weights (``params.weights``, else the shipped file): the reason they
    cannot be used, or nothing."""
    why = weights_problem(score_weights_path(getattr(params, "weights", None)))
    return [why] if why else []


def load_for_method(weights: str | Path | None, device="cpu") -> tuple[ScoreNet, dict[str, Any], Path]:
    """``(model, sidecar, path)`` for a plugin: :func:`score_weights_path`, checked with
    :func:`weights_problem` (a :class:`~workbench.nn.weights.WeightsError` with the reason otherwise), cached."""
    from workbench.nn.weights import WeightsError

    path = score_weights_path(weights)
    why = weights_problem(path)
    if why:
        raise WeightsError(None, why)
    model, sidecar = cached_score_net(path, device)
    return model, sidecar, path
