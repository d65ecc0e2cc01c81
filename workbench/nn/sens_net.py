"""Learned refinement of coil sensitivity maps (XPDNet's ``refine_smaps``).

The initial maps come from the k-space centre (ACS lines, or the trajectory centre for non-Cartesian data) as
low-resolution coil images over their root sum of squares. A small U-net, shared by all coils (each coil's
real/imaginary parts are a 2-channel image), predicts a correction; the corrected maps are normalised so that
``sum_c |S_c|^2 = 1`` (the project's convention, which the data-consistency term relies on).

Maps are smooth, so the correction is computed on a grid ``downsample`` times coarser (area pooling) and
interpolated back (bilinear): the refinement costs a fraction of the image network.

Shapes: maps ``[B, C, H, W]`` complex -> ``[B, C, H, W]`` complex; any ``C`` (one coil: a phase map).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.nn.common import channels_to_complex, complex_to_channels
from workbench.nn.unet import Unet


@dataclass
class SensNetConfig:
    chans: int = 8
    num_pool_layers: int = 3
    downsample: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``S_c / sqrt(sum_c |S_c|^2 + eps^2)``: unit root-sum-of-squares over the coil axis ``-3``."""
    norm = torch.sqrt((maps.real**2 + maps.imag**2).sum(-3, keepdim=True) + eps**2)
    return maps / norm


class SensitivityRefiner(nn.Module):
    """``maps [B, C, H, W] -> refined, normalised maps [B, C, H, W]`` (residual U-net correction per coil)."""

    def __init__(self, config: SensNetConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = SensNetConfig(**config)
        self.config = config or SensNetConfig()
        self.unet = Unet(2, 2, self.config.chans, self.config.num_pool_layers, zero_init_output=True)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b, c, h, w = maps.shape
        x = complex_to_channels(maps.reshape(b * c, 1, h, w))  # [B*C, 2, H, W]
        f = int(self.config.downsample)
        if f > 1 and h >= 2 * f and w >= 2 * f:
            low = F.avg_pool2d(x, f, ceil_mode=True)
            correction = F.interpolate(self.unet(low), size=(h, w), mode="bilinear", align_corners=False)
        else:
            correction = self.unet(x)
        refined = maps + channels_to_complex(correction).reshape(b, c, h, w)
        return normalise_maps(refined)
