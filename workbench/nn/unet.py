"""The fastMRI U-net (Ronneberger et al. 2015 as in Zbontar et al. 2018), and the post-processing baseline built
on it: zero-filled image -> U-net -> magnitude image (the "post-processing network" of Ramzi et al.'s
comparison).

:class:`Unet`: ``[B, in_chans, H, W] -> [B, out_chans, H, W]``, any ``H, W`` (padded inside to a multiple of
``2**num_pool_layers``). Blocks as fastMRI's ``fastmri.models.Unet``: two (3x3 conv, instance norm, LeakyReLU
0.2, dropout) per level, average pooling down, transposed 2x2 convolutions up, concatenated skips, 1x1 output.

:class:`UnetRecon`: the reconstruction model. Input: the zero-filled root-sum-of-squares magnitude (``input="rss"``,
fastMRI's baseline) or the complex SENSE-combined zero-filled image with ACS coil maps (``input="complex"``),
cropped to the reconstruction size, divided by its robust scale (99th percentile), then the U-net (optionally
residual on the input magnitude), then multiplied back: scanner units do not matter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.arrays import fit_shape
from workbench.nn.common import complex_to_channels, pad_to_multiple, robust_scale, unpad
from workbench.physics.fft import rss


class UnetConvBlock(nn.Sequential):
    """Two (3x3 convolution without bias, instance norm, LeakyReLU(0.2), dropout)."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0):
        super().__init__(
            nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )


class TransposeConvBlock(nn.Sequential):
    """2x2 transposed convolution (stride 2), instance norm, LeakyReLU(0.2)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(
            nn.ConvTranspose2d(in_chans, out_chans, 2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2, inplace=True),
        )


class Unet(nn.Module):
    """fastMRI's U-net: ``[B, in_chans, H, W] -> [B, out_chans, H, W]``.

    Args:
        chans: channels of the first level (doubling at each of the ``num_pool_layers`` poolings).
        drop_prob: dropout probability.
        zero_init_output: zero the final 1x1 convolution (a residual use starts as the identity).
    """

    def __init__(self, in_chans: int, out_chans: int, chans: int = 32, num_pool_layers: int = 4,
                 drop_prob: float = 0.0, zero_init_output: bool = False):
        super().__init__()
        self.num_pool_layers = int(num_pool_layers)
        self.down = nn.ModuleList([UnetConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pool_layers - 1):
            self.down.append(UnetConvBlock(ch, ch * 2, drop_prob))
            ch *= 2
        self.bottom = UnetConvBlock(ch, ch * 2, drop_prob)
        self.up_transpose = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for _ in range(num_pool_layers):
            self.up_transpose.append(TransposeConvBlock(ch * 2, ch))
            self.up_conv.append(UnetConvBlock(ch * 2, ch, drop_prob))
            ch //= 2
        self.out = nn.Conv2d(chans, out_chans, 1)
        if zero_init_output:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pads = pad_to_multiple(x, 2**self.num_pool_layers)
        stack = []
        h = x
        for layer in self.down:
            h = layer(h)
            stack.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.bottom(h)
        for transpose, conv in zip(self.up_transpose, self.up_conv):
            h = transpose(h)
            h = conv(torch.cat([h, stack.pop()], dim=1))
        return unpad(self.out(h), pads)


@dataclass
class UnetReconConfig:
    """Size and input of the U-net baseline."""

    chans: int = 32
    num_pool_layers: int = 4
    drop_prob: float = 0.0
    input: str = "rss"  # "rss" (zero-filled RSS magnitude) or "complex" (SENSE-combined with ACS maps)
    residual: bool = True  # predict a correction of the input magnitude
    acs_calib: tuple[int, int] = (24, 24)

    def __post_init__(self):
        if self.input not in ("rss", "complex"):
            raise ValueError(f"U-net input must be 'rss' or 'complex', got {self.input!r}")
        self.acs_calib = tuple(int(v) for v in self.acs_calib)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["acs_calib"] = list(self.acs_calib)
        return d


class UnetRecon(nn.Module):
    """Post-processing reconstruction: zero-filled image -> U-net -> magnitude on the reconstruction size.

    ``forward(batch)`` (for training, also under DistributedDataParallel) returns ``(magnitude / scale, scale)``:
    the normalised magnitude ``[B, h, w]`` on ``batch.recon_shape`` and the per item scale ``[B]``.
    :meth:`reconstruct` returns the magnitude in data units.
    """

    model_name = "unet"

    def __init__(self, config: UnetReconConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = UnetReconConfig(**config)
        self.config = config or UnetReconConfig()
        in_chans = 1 if self.config.input == "rss" else 2
        self.unet = Unet(in_chans, 1, self.config.chans, self.config.num_pool_layers, self.config.drop_prob,
                         zero_init_output=self.config.residual)

    def inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network input ``[B, 1 or 2, h, w]`` (normalised), its magnitude ``[B, h, w]`` and the scale ``[B]``."""
        enc = batch.encoding(acs_calib=self.config.acs_calib)
        coil = enc.coil_images()  # [B, C, H, W]
        if self.config.input == "rss":
            image = rss(coil, dim=1)
        else:
            maps = enc.initial_maps()
            image = (coil * maps.conj()).sum(1)
        image = fit_shape(image, batch.recon_shape)
        mag = image.abs() if image.is_complex() else image
        scale = robust_scale(mag)
        image = image / scale[:, None, None]
        mag = mag / scale[:, None, None]
        x = complex_to_channels(image[:, None]) if image.is_complex() else image[:, None]
        return x, mag, scale

    def forward(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, mag, scale = self.inputs(batch)
        out = self.unet(x)[:, 0]
        if self.config.residual:
            out = out + mag
        return out, scale

    @torch.no_grad()
    def reconstruct(self, batch, callback=None) -> torch.Tensor:
        """Magnitude ``[B, h, w]`` in data units. ``callback(fraction, text)`` reports progress."""
        if callback is not None:
            callback(0.0, "U-net")
        out, scale = self.forward(batch)
        if callback is not None:
            callback(1.0, "U-net done")
        return out.clamp_min(0) * scale[:, None, None]
