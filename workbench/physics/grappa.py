"""GRAPPA (Griswold et al., MRM 2002): fill the missing phase-encode lines of multi-coil Cartesian k-space with
linear combinations of the acquired neighbours, the weights learnt on the fully sampled centre (ACS).

Shapes: k-space ``[C, H, W]`` with zeros where not sampled; the sampling is a *line mask*: whole phase-encode
lines, i.e. columns along W (the readout runs along H, as in fastMRI). A mask of whole rows is handled by
transposing. Any line pattern works (equispaced, random, irregular): every missing line gets its own source
pattern (the offsets of the acquired lines used to synthesise it), and one kernel is calibrated per distinct
pattern.

For a missing column ``t`` with source offsets ``d_1..d_n`` (acquired columns ``t + d_i``) and a readout
kernel of ``kx`` points, the estimate is

    k[c, h, t] = sum_{i, c', u} w[(i, c', u), c] * k[c', h + u - kx//2, t + d_i]

with ``w`` the Tikhonov-regularised least-squares fit over every position of the ACS where the same pattern
fits (``(S^H S + lam I) w = S^H T``, ``lam = reg * trace(S^H S) / n_unknowns``). All patterns share one Gram
matrix of the ACS columns (``X^H X`` with ``X`` the readout windows of every ACS column), from which each
pattern's normal equations are sums of blocks: calibrating hundreds of patterns of a random mask costs one
matrix product plus small solves. Acquired samples are never changed.

    result = grappa(kspace, mask, kernel_readout=5, source_lines=2, reg=0.1)
    image = rss(ifft2c(result.kspace))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from workbench.errors import SamplingError, WorkbenchError

__all__ = [
    "GRAM_BYTES_LIMIT",
    "GrappaResult",
    "Pattern",
    "acs_region",
    "apply",
    "calibrate",
    "grappa",
    "line_mask",
    "source_pattern",
]

# The shared ACS Gram matrix holds (A * C * kx)^2 complex64 values; beyond this many bytes the ACS used for
# calibration is narrowed to its central lines (a wide ACS adds little once the kernels are well determined).
GRAM_BYTES_LIMIT = 256 * 2**20

Pattern = tuple[int, ...]


def line_mask(mask, grid_shape: Sequence[int] | None = None) -> tuple[torch.Tensor, int]:
    """The acquired lines of a line mask: ``(lines, axis)`` with ``lines`` bool ``[N]`` along the phase-encode
    axis and ``axis`` = -1 (columns, the usual case) or -2 (rows).

    ``mask`` is bool ``[H, W]`` or a 1D column mask ``[W]``. Raises :class:`SamplingError` when the mask does
    not consist of whole lines (e.g. a Poisson-disc or Gaussian 2D pattern).
    """
    m = torch.as_tensor(mask)
    m = m != 0
    if m.dim() == 1:
        return m.clone(), -1
    if m.dim() != 2:
        raise SamplingError(f"GRAPPA needs a [H, W] mask, got shape {tuple(m.shape)}")
    if grid_shape is not None and tuple(m.shape) != tuple(int(s) for s in grid_shape):
        raise SamplingError(f"mask is {tuple(m.shape)}, the k-space grid is {tuple(grid_shape)}")
    cols_any, cols_all = m.any(0), m.all(0)
    if bool((cols_any == cols_all).all()):
        return cols_any, -1
    rows_any, rows_all = m.any(1), m.all(1)
    if bool((rows_any == rows_all).all()):
        return rows_any, -2
    raise SamplingError("GRAPPA needs whole phase-encode lines (a 1D line mask); this mask samples a 2D pattern "
                        "(e.g. Poisson disc or Gaussian)")


def acs_region(lines: torch.Tensor) -> slice:
    """The auto-calibration region: the longest run of consecutive acquired lines that contains the centre line
    ``N // 2`` (or, when the centre is not acquired, the longest run nearest to it). Empty slice when no line
    is acquired."""
    acquired = [bool(v) for v in torch.as_tensor(lines).cpu()]
    n = len(acquired)
    runs: list[tuple[int, int]] = []
    start = None
    for i, a in enumerate(acquired + [False]):
        if a and start is None:
            start = i
        elif not a and start is not None:
            runs.append((start, i))
            start = None
    if not runs:
        return slice(0, 0)
    centre = n // 2

    def distance(run: tuple[int, int]) -> int:
        a, b = run
        return 0 if a <= centre < b else min(abs(centre - a), abs(centre - (b - 1)))

    best = min(runs, key=lambda r: (distance(r), -(r[1] - r[0])))
    return slice(*best)


def source_pattern(acquired: Sequence[int], target: int, source_lines: int, max_span: int) -> Pattern:
    """Offsets of the acquired lines used to synthesise line ``target``: the ``source_lines`` nearest acquired
    lines, half before and half after the target (more from one side when the other runs out), then the
    farthest dropped until the pattern (target included) spans at most ``max_span`` lines, so that it fits in the
    ACS. Empty when no acquired line is close enough."""
    before = sorted((a - target for a in acquired if a < target), reverse=True)  # -1, -3, ... nearest first
    after = sorted(a - target for a in acquired if a > target)  # 1, 3, ...
    n_before = min(len(before), source_lines // 2)
    n_after = min(len(after), source_lines - n_before)
    n_before = min(len(before), source_lines - n_after)
    chosen = before[:n_before] + after[:n_after]
    while chosen and max(max(chosen), 0) - min(min(chosen), 0) > max_span:
        far = max(chosen, key=lambda d: (abs(d), d))  # ties: drop the one after the target
        chosen.remove(far)
    return tuple(sorted(chosen))


@dataclass
class GrappaResult:
    """What :func:`grappa` returns.

    Attributes:
        kspace: ``[C, H, W]`` with the missing lines filled (acquired samples unchanged).
        kernels: pattern (tuple of source offsets) -> weights ``[n * C * kx, C]`` (complex64).
        targets: pattern -> the lines it filled.
        acs: the ACS lines used for calibration (a slice along the phase-encode axis).
        axis: -1 when the lines are columns (phase encode along W), -2 for rows.
        unfilled: missing lines with no acquired line near enough to fit a pattern in the ACS (left zero).
        stopped: the callback asked to stop (the k-space is then only partly filled).
    """

    kspace: torch.Tensor
    kernels: dict[Pattern, torch.Tensor] = field(default_factory=dict)
    targets: dict[Pattern, list[int]] = field(default_factory=dict)
    acs: slice = field(default_factory=lambda: slice(0, 0))
    axis: int = -1
    unfilled: list[int] = field(default_factory=list)
    stopped: bool = False

    @property
    def n_patterns(self) -> int:
        return len(self.kernels)


def _readout_windows(k: torch.Tensor, kx: int, pad: bool) -> torch.Tensor:
    """``[C, H, N]`` -> ``[N, H', C * kx]``: for every line and readout position, the ``kx`` neighbours along the
    readout of every coil (``pad``: zero-padded, ``H' = H``; else only the windows that fit, ``H' = H - kx + 1``)."""
    if pad:
        k = torch.nn.functional.pad(k, (0, 0, kx // 2, kx - 1 - kx // 2))
    win = k.unfold(1, kx, 1)  # [C, H', N, kx]
    c, hh, n, _ = win.shape
    return win.permute(2, 1, 0, 3).reshape(n, hh, c * kx)


def calibrate(
    acs: torch.Tensor,
    patterns: Sequence[Pattern],
    kernel_readout: int = 5,
    reg: float = 0.1,
    callback: Callable[[int, int], bool | None] | None = None,
) -> dict[Pattern, torch.Tensor]:
    """GRAPPA weights for each source pattern from fully sampled calibration k-space ``acs`` ``[C, H, A]`` (lines
    along the last axis).

    Returns pattern -> ``[n * C * kx, C]`` complex64 mapping the flattened sources (line, coil, readout offset)
    to the target line's coils. ``callback(done, total)`` after each pattern; True stops (the patterns
    calibrated so far are returned). Raises WorkbenchError when a pattern does not fit in the ACS.
    """
    c, h, a = acs.shape
    kx = int(kernel_readout)
    if kx < 1 or kx > h:
        raise WorkbenchError(f"GRAPPA readout kernel size {kx} must be between 1 and the readout length {h}")
    windows = _readout_windows(acs.to(torch.complex64), kx, pad=False)  # [A, H', Ck]
    ck = c * kx
    flat = windows.permute(1, 0, 2).reshape(windows.shape[1], a * ck)  # [H', A * Ck]
    gram = (flat.mH @ flat).reshape(a, ck, a, ck).permute(0, 2, 1, 3)  # [A, A, Ck, Ck]: X_s^H X_t
    centre = torch.arange(c, device=acs.device) * kx + kx // 2  # the target sample of each coil in a window
    kernels: dict[Pattern, torch.Tensor] = {}
    for done, pattern in enumerate(patterns):
        d = torch.tensor(pattern, dtype=torch.long, device=acs.device)
        lo, hi = min(min(pattern), 0), max(max(pattern), 0)
        positions = torch.arange(-lo, a - hi, device=acs.device)  # ACS lines t with t + d_i inside the ACS
        if len(pattern) == 0 or positions.numel() == 0:
            raise WorkbenchError(f"GRAPPA source pattern {pattern} does not fit in the {a}-line ACS")
        src = positions[:, None] + d[None, :]  # [P, n]
        n = len(pattern)
        lhs = gram[src[:, :, None], src[:, None, :]].sum(0)  # [n, n, Ck, Ck]
        lhs = lhs.permute(0, 2, 1, 3).reshape(n * ck, n * ck).to(torch.complex128)
        rhs = gram[src, positions[:, None]][..., centre].sum(0)  # [n, Ck, C]
        rhs = rhs.reshape(n * ck, c).to(torch.complex128)
        lam = reg * float(torch.diagonal(lhs).real.sum()) / (n * ck)
        lhs = lhs + (lam if lam > 0 else 1e-30) * torch.eye(n * ck, dtype=lhs.dtype, device=lhs.device)
        kernels[pattern] = torch.linalg.solve(lhs, rhs).to(torch.complex64)
        if callback is not None and callback(done + 1, len(patterns)):
            break
    return kernels


def apply(kspace: torch.Tensor, kernels: dict[Pattern, torch.Tensor], targets: dict[Pattern, list[int]],
          kernel_readout: int) -> torch.Tensor:
    """Fill the lines ``targets[p]`` of ``kspace`` ``[C, H, W]`` (lines along W) with the kernels; returns a new
    tensor (the other lines are copied unchanged)."""
    out = kspace.clone()
    kx = int(kernel_readout)
    c, h, _ = kspace.shape
    windows = _readout_windows(kspace, kx, pad=True)  # [W, H, Ck]
    for pattern, lines in targets.items():
        if pattern not in kernels or not lines:
            continue
        t = torch.tensor(lines, dtype=torch.long, device=kspace.device)
        d = torch.tensor(pattern, dtype=torch.long, device=kspace.device)
        src = windows[t[:, None] + d[None, :]]  # [T, n, H, Ck]
        src = src.permute(0, 2, 1, 3).reshape(len(lines), h, -1)  # [T, H, n * Ck]
        out[:, :, t] = (src @ kernels[pattern]).permute(2, 1, 0)  # [C, H, T]
    return out


def grappa(
    kspace: torch.Tensor,
    mask,
    *,
    kernel_readout: int = 5,
    source_lines: int = 2,
    reg: float = 0.1,
    acs: slice | None = None,
    max_acs_lines: int | None = None,
    callback: Callable[[int, int], bool | None] | None = None,
) -> GrappaResult:
    """GRAPPA reconstruction of the missing lines of multi-coil k-space.

    Args:
        kspace: ``[C, H, W]`` complex, zeros where not sampled.
        mask: the line mask, bool ``[H, W]`` (whole columns, or whole rows) or ``[W]``.
        kernel_readout: kernel extent along the readout (odd numbers keep it centred), e.g. 5.
        source_lines: acquired lines per kernel (nearest, split before/after the target): 2 (one on each side,
            the classic "2 lines x kx points" kernel) or 4 (2 + 2; better on noiseless data, noisier at R >= 4).
        reg: Tikhonov weight relative to the mean eigenvalue of the calibration normal matrix (0.1 suits noisy
            data at R = 2-4; 1e-4 for noiseless data).
        acs: the calibration lines (slice along the phase-encode axis); default :func:`acs_region`.
        max_acs_lines: use at most this many central ACS lines (default: all, narrowed only when the shared
            Gram matrix would exceed :data:`GRAM_BYTES_LIMIT`).
        callback: ``callback(done, total)`` after each calibrated pattern; True stops early.

    Raises SamplingError when the mask is not a line mask or the ACS is too small for any kernel.
    """
    k = torch.as_tensor(kspace)
    if k.dim() != 3:
        raise WorkbenchError(f"GRAPPA needs multi-coil k-space [C, H, W], got shape {tuple(k.shape)}")
    k = k.to(torch.complex64)
    lines, axis = line_mask(mask, None if torch.as_tensor(mask).dim() == 1 else k.shape[-2:])
    if axis == -2:
        k = k.transpose(-1, -2)
    lines = lines.to(k.device)
    c, h, w = k.shape
    if lines.numel() != w:
        raise SamplingError(f"line mask has {lines.numel()} lines, the k-space has {w}")
    if source_lines < 1:
        raise WorkbenchError(f"GRAPPA needs at least one source line, got {source_lines}")
    k = k * lines.to(k.real.dtype)  # only acquired lines are data
    region = acs_region(lines) if acs is None else acs
    a0, a1 = region.indices(w)[:2]
    if not bool(lines[a0:a1].all()):
        raise SamplingError(f"the calibration lines {a0}..{a1 - 1} are not all acquired")
    kx = int(kernel_readout)
    cap = int(math.sqrt(GRAM_BYTES_LIMIT / 8) // (c * kx))
    if max_acs_lines is not None:
        cap = min(cap, int(max_acs_lines))
    if a1 - a0 > cap:
        mid = (a0 + a1) // 2
        a0, a1 = mid - cap // 2, mid - cap // 2 + cap
    n_acs = a1 - a0
    if n_acs < 2:
        raise SamplingError(f"GRAPPA needs a fully sampled centre (ACS) of at least 2 lines; this mask has "
                            f"{max(n_acs, 0)}")
    acquired = [int(i) for i in torch.nonzero(lines).flatten().cpu()]
    missing = [int(i) for i in torch.nonzero(~lines).flatten().cpu()]
    targets: dict[Pattern, list[int]] = {}
    unfilled = []
    for t in missing:
        # at least two calibration positions: the pattern spans at most n_acs - 2 lines
        p = source_pattern(acquired, t, source_lines, n_acs - 2)
        if p:
            targets.setdefault(p, []).append(t)
        else:
            unfilled.append(t)
    kernels = calibrate(k[:, :, a0:a1], list(targets), kx, reg, callback)
    stopped = len(kernels) < len(targets)
    filled = apply(k, kernels, targets, kx)
    if axis == -2:
        filled = filled.transpose(-1, -2).contiguous()
    return GrappaResult(filled, kernels, targets, slice(a0, a1), axis, unfilled, stopped)
