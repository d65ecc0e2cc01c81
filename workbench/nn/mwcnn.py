"""Multi-level wavelet CNN (MWCNN, Liu et al., CVPR workshops 2018), the image network of XPDNet.

A U-net whose down- and up-sampling are the orthonormal 2D Haar transform and its inverse: nothing is lost
when going down (4 sub-bands become 4x the channels at half the resolution) and the skip connections add
(not concatenate) the features of the same scale, as in Ramzi et al.'s XPDNet implementation
(``fastmri-reproducible-benchmark``, ``MWCNN``)::

    x -> [first convs] -------------------------------------------------+--> [last convs] -> conv -> out
               |                                                        |
              DWT -> [convs, f0] --------------------------+            IWT
                       |                                   |             |
                      DWT -> [convs, f1] ------+          IWT <- conv(4 f0) <- [convs, f1]
                               ...            ...

Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` for any ``H, W`` (reflection-padded inside to a
multiple of ``2**n_scales`` and cropped back).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

from workbench.nn.common import pad_to_multiple, unpad


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 2D Haar transform: ``[B, C, H, W] -> [B, 4C, H/2, W/2]`` (H, W even).

    Channels are ordered by sub-band: ``[LL (C channels), detail along W, detail along H, diagonal]`` with, for
    each 2x2 block ``[[a, c], [b, d]]``, ``LL = (a + b + c + d) / 2``, ``W-detail = (-a - b + c + d) / 2``,
    ``H-detail = (-a + b - c + d) / 2``, ``diagonal = (a - b - c + d) / 2`` (an orthogonal 4x4 matrix).
    """
    a = x[..., 0::2, 0::2]
    b = x[..., 1::2, 0::2]
    c = x[..., 0::2, 1::2]
    d = x[..., 1::2, 1::2]
    return 0.5 * torch.cat([a + b + c + d, -a - b + c + d, -a + b - c + d, a - b - c + d], dim=1)


def haar_iwt(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt`: ``[B, 4C, H, W] -> [B, C, 2H, 2W]`` (the transpose of an orthogonal map)."""
    ll, lw, lh, hh = torch.chunk(y, 4, dim=1)
    b, c, h, w = ll.shape
    out = y.new_empty(b, c, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = 0.5 * (ll - lw - lh + hh)
    out[..., 1::2, 0::2] = 0.5 * (ll - lw + lh - hh)
    out[..., 0::2, 1::2] = 0.5 * (ll + lw - lh - hh)
    out[..., 1::2, 1::2] = 0.5 * (ll + lw + lh + hh)
    return out


def _grouped_positions(old: int, new: int, groups: int) -> torch.Tensor:
    """Where the ``old`` channels (``groups`` equal groups) sit among ``new`` ones: each group's first places."""
    return torch.cat([g * (new // groups) + torch.arange(old // groups) for g in range(groups)])


class ConvBlock(nn.Sequential):
    """``n_convs`` x (3x3 convolution + ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, n_convs: int = 2):
        layers: list[nn.Module] = []
        for i in range(max(1, n_convs)):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
                       nn.ReLU(inplace=True)]
        super().__init__(*layers)


@dataclass
class MWCNNConfig:
    """Size of an MWCNN. ``n_filters`` is the width of the first (full resolution) convolutions; scale ``s``
    (after ``s + 1`` wavelet transforms) has ``n_filters * 2**(s + 1)`` filters (16 -> 32, 64, 128)."""

    n_scales: int = 3
    n_filters: int = 16
    n_convs_per_scale: int = 2
    n_first_convs: int = 2

    def filters(self) -> list[int]:
        return [self.n_filters * 2 ** (s + 1) for s in range(self.n_scales)]

    def to_dict(self) -> dict:
        return asdict(self)


class MWCNN(nn.Module):
    """Multi-level wavelet CNN ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.

    Args:
        in_channels, out_channels: real channels (complex images as real/imaginary channel pairs).
        config: :class:`MWCNNConfig` (scales, filters, convolutions per scale).
        zero_init_output: start with a zero last layer, so that an unrolled network that adds this output to its
            iterate starts as the identity (stable early training).
    """

    def __init__(self, in_channels: int, out_channels: int, config: MWCNNConfig | None = None,
                 zero_init_output: bool = True):
        super().__init__()
        cfg = config or MWCNNConfig()
        if cfg.n_scales < 1:
            raise ValueError(f"MWCNN needs at least one scale, got {cfg.n_scales}")
        self.config = cfg
        f0 = cfg.n_filters
        filters = cfg.filters()
        self.first = ConvBlock(in_channels, f0, cfg.n_first_convs)
        widths = [f0] + filters  # channels at scale 0 (full resolution), 1, ..., n_scales
        self.down = nn.ModuleList(ConvBlock(4 * widths[s], widths[s + 1], cfg.n_convs_per_scale)
                                  for s in range(cfg.n_scales))
        # Upward path at scale s+1: convolutions, then a convolution to 4x the channels of scale s for the IWT.
        self.up = nn.ModuleList(
            nn.Sequential(ConvBlock(widths[s + 1], widths[s + 1], max(1, cfg.n_convs_per_scale - 1)),
                          nn.Conv2d(widths[s + 1], 4 * widths[s], 3, padding=1))
            for s in range(cfg.n_scales)
        )
        self.last = ConvBlock(f0, f0, cfg.n_first_convs)
        self.out = nn.Conv2d(f0, out_channels, 3, padding=1)
        if zero_init_output:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def zero_output_state(self) -> dict[str, torch.Tensor]:
        """This network's state with its output convolution zero (the rest as it is): it outputs zero, so an
        unrolled iteration it serves starts as the identity (a network deepened by iterations keeps its function,
        Net2Net's deepening, Chen et al., ICLR 2016)."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        state["out.weight"].zero_()
        state["out.bias"].zero_()
        return state

    def widened_state(self, narrower: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state of this network that computes what ``narrower`` computes: ``narrower`` is the state (keys
        relative to the module) of an MWCNN with the same scales, convolutions and in/out channels and at most as
        many filters. Each layer keeps the narrow weights in its first channels (sub-band by sub-band where a
        Haar transform groups them), the weights from the new channels into the old ones are zero, and the
        weights into the new channels are this network's own initial ones: the start is the narrow function, and
        training reaches the new channels through their zero outgoing weights (function-preserving widening,
        Net2Net, Chen et al., ICLR 2016). Raises ``ValueError`` when ``narrower`` does not fit."""
        own = self.state_dict()
        if set(narrower) != set(own):
            raise ValueError(f"the weights have other layers than this MWCNN ({sorted(set(narrower) ^ set(own))[:3]})")
        ends = {"first.0.weight": 1, "out.weight": 0}  # the network's in and out channels must be the same
        for key, dim in ends.items():
            if narrower[key].shape[dim] != own[key].shape[dim]:
                raise ValueError(f"{key}: {narrower[key].shape[dim]} channels where this MWCNN has "
                                 f"{own[key].shape[dim]}; only the filters can be widened")
        state = {}
        for key, mine in own.items():
            old = narrower[key]
            if old.shape == mine.shape:
                state[key] = old.to(mine.dtype).clone()
                continue
            # the DWT hands the down path 4 sub-bands of C channels; the up path's last convolution makes 4 for the IWT
            in_groups = 4 if re.fullmatch(r"down\.\d+\.0\.weight", key) else 1
            out_groups = 4 if re.fullmatch(r"up\.\d+\.1\.(weight|bias)", key) else 1
            if old.dim() != mine.dim() or old.shape[2:] != mine.shape[2:] or any(
                    o > m or o % g or m % g for o, m, g in zip(old.shape[:2], mine.shape[:2], (out_groups, in_groups))):
                raise ValueError(f"{key}: a {tuple(old.shape)} tensor does not fit into {tuple(mine.shape)}")
            rows = _grouped_positions(old.shape[0], mine.shape[0], out_groups)
            new = mine.detach().clone()
            if old.dim() == 1:
                new[rows] = old.to(new.dtype)
            else:
                new[rows] = 0  # the new channels into the old ones
                cols = _grouped_positions(old.shape[1], mine.shape[1], in_groups)
                new[rows[:, None], cols[None, :]] = old.to(new.dtype)
            state[key] = new
        return state

    @property
    def multiple(self) -> int:
        return 2**self.config.n_scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pads = pad_to_multiple(x, self.multiple)
        h = self.first(x)
        skips = [h]
        for block in self.down:
            h = block(haar_dwt(h))
            skips.append(h)
        for s in reversed(range(len(self.down))):
            h = haar_iwt(self.up[s](h)) + skips[s]
        return unpad(self.out(self.last(h)), pads)
