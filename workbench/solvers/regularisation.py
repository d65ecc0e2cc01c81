"""Automatic choice of the regularisation weight ``lam``.

``solve`` is a solver closure ``solve(A, y, lam, x0=None) -> x`` (a tensor or a SolverResult), for example
``functools.partial(l1_wavelet, n_iter=30)`` from :mod:`workbench.solvers.recon`: short solves, warm-started
from the solution of the nearest weight tried so far.

* :func:`discrepancy_principle`: pick ``lam`` so that the data residual matches the noise,
  ``||A x_lam - y||^2 = tau * M * sigma^2`` (Morozov), ``M`` measured complex samples, ``sigma`` the noise
  standard deviation per complex sample (``E|n|^2 = sigma^2``). The residual grows with ``lam``; the search
  brackets the target by factors of 10 and then interpolates/bisects on ``log(lam)``.
* :func:`holdout_validation`: hold out a random fraction of the measured k-space locations (all coils of a
  location together), reconstruct from the rest, and pick the ``lam`` that predicts the held-out samples
  best (a grid on ``log(lam)``, then golden-section refinement). Needs no noise estimate.

Both return a :class:`LambdaSearch` with the chosen weight and the trace of every ``(lam, value)`` tried, so a
Result can show how the weight was chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from workbench.physics.linop import Linop, Multiply
from workbench.solvers.base import SolverResult

Solve = Callable[..., "torch.Tensor | SolverResult"]


@dataclass
class LambdaSearch:
    """Outcome of an automatic weight search.

    Attributes:
        lam: the chosen weight.
        trace: ``(lam, value)`` in the order evaluated; ``value`` is the residual ``||A x - y||^2`` over the
            measured samples (discrepancy) or the mean held-out squared error (validation).
        method: ``"discrepancy"`` or ``"validation"``.
        target: the residual aimed at (discrepancy) or None.
        x: the solution at ``lam`` from the search (a short solve on all data for the discrepancy principle;
            None for validation, whose solves saw only the training samples).
    """

    lam: float
    trace: list[tuple[float, float]] = field(default_factory=list)
    method: str = "discrepancy"
    target: float | None = None
    x: torch.Tensor | None = None

    def to_dict(self) -> dict:
        return {"lam": self.lam, "method": self.method, "target": self.target, "trace": [list(t) for t in self.trace]}


def measured_samples(y: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the samples that were measured: the nonzero entries of ``y`` (unmeasured Cartesian
    locations are stored as exact zeros; a measured noisy sample is never exactly 0)."""
    return y != 0


def _solution(out) -> torch.Tensor:
    return out.x if isinstance(out, SolverResult) else out


def _nearest(cache: dict[float, torch.Tensor], lam: float) -> torch.Tensor | None:
    if not cache:
        return None
    best = min(cache, key=lambda k: abs(math.log(k) - math.log(lam)))
    return cache[best]


def discrepancy_principle(
    solve: Solve,
    A: Linop,
    y: torch.Tensor,
    noise_std: float,
    *,
    tau: float = 1.0,
    lam0: float | None = None,
    measured: torch.Tensor | None = None,
    rtol: float = 0.05,
    max_evals: int = 14,
    factor: float = 10.0,
    floor: float | None = None,
    slope: float = 1.5,
) -> LambdaSearch:
    """Choose ``lam`` with ``||A x_lam - y||^2 ~= tau * M * noise_std^2`` over the measured samples.

    Without ``floor`` the search brackets the target by factors of ``factor`` and then interpolates
    ``log(residual)`` in ``log(lam)``. With ``floor`` (the residual as ``lam -> 0``, below the target) it models
    the excess ``r(lam) - floor`` as a power of ``lam``: the first step assumes the exponent ``slope``, later ones
    the secant exponent of the last two weights (kept in [0.5, 4], steps at most ``factor``, inside a bracket once
    there is one). The excess, not the residual that the floor dominates, follows a power
    law closely (exponents 1.1-1.9 on brain slices), so this takes 2 solves where bracketing took 3-4.

    Args:
        solve: ``solve(A, y, lam, x0=None)`` -> image (or SolverResult).
        A, y: forward operator and measured data ``[*batch, *A.oshape]`` (batch items share ``lam``).
        noise_std: standard deviation of the complex noise per sample (``E|n|^2 = noise_std^2``).
        tau: safety factor (1 is Morozov's choice; slightly above 1 regularises more).
        lam0: first weight tried (default ``noise_std``: the scale of a threshold for orthonormal ``A``).
        measured: bool mask of measured samples broadcastable to ``y``; default :func:`measured_samples`.
        rtol: stop once the residual is within ``rtol`` (relative) of the target.
        max_evals: maximum number of solves.
        factor: bracketing step on ``lam``.
    """
    if not noise_std > 0:
        raise ValueError(f"discrepancy_principle: noise_std must be positive, got {noise_std}")
    if measured is None:
        measured = measured_samples(y)
    n_measured = int(torch.broadcast_to(measured, y.shape).sum())
    target = tau * n_measured * float(noise_std) ** 2
    cache: dict[float, torch.Tensor] = {}
    trace: list[tuple[float, float]] = []

    def residual(lam: float) -> float:
        x = _solution(solve(A, y, lam, x0=_nearest(cache, lam)))
        cache[lam] = x
        r = float((measured * (A.forward(x) - y)).abs().pow(2).sum())
        trace.append((lam, r))
        return r

    lam = float(lam0) if lam0 is not None else float(noise_std)
    if floor is not None:
        best = _excess_search(residual, lam, target, float(floor), rtol, max_evals, factor, slope)
        return LambdaSearch(best, trace, "discrepancy", target, _nearest(cache, best))
    r = residual(lam)
    lo = hi = None  # (lam, residual) below and above the target
    if r < target:
        lo = (lam, r)
    else:
        hi = (lam, r)
    while (lo is None or hi is None) and len(trace) < max_evals:
        if abs(r / target - 1) <= rtol:
            break
        lam = lam * factor if hi is None else lam / factor
        r = residual(lam)
        if r < target:
            lo = (lam, r)
        else:
            hi = (lam, r)
    while lo is not None and hi is not None and len(trace) < max_evals and abs(r / target - 1) > rtol:
        # interpolate log(residual) linearly in log(lam), kept away from the bracket ends (safeguarded secant)
        a, b = math.log(lo[0]), math.log(hi[0])
        ra, rb = math.log(max(lo[1], 1e-300)), math.log(max(hi[1], 1e-300))
        frac = 0.5 if rb <= ra else (math.log(target) - ra) / (rb - ra)
        frac = min(max(frac, 0.15), 0.85)
        lam = math.exp(a + frac * (b - a))
        r = residual(lam)
        if r < target:
            lo = (lam, r)
        else:
            hi = (lam, r)
    best_lam, _ = min(trace, key=lambda t: abs(math.log(max(t[1], 1e-300) / target)))
    return LambdaSearch(best_lam, trace, "discrepancy", target, cache[best_lam])


def _excess_search(residual: Callable[[float], float], lam: float, target: float, floor: float, rtol: float,
                   max_evals: int, factor: float, slope: float) -> float:
    """The search of :func:`discrepancy_principle` with a ``floor``: the weight whose excess over the floor is
    the target's (power-law model ``r - floor = c lam^p``)."""
    goal = target - floor
    lo = hi = None  # (lam, residual) below and above the target
    points: list[tuple[float, float]] = []  # (log lam, log excess) of solves with a positive excess
    for _ in range(max(1, max_evals)):
        r = residual(lam)
        if r < target:
            lo = (lam, r) if lo is None or lam > lo[0] else lo
        else:
            hi = (lam, r) if hi is None or lam < hi[0] else hi
        if r - floor <= 0:  # not above the floor yet (short solves): no model, step up, but never past a weight
            # already above the target: there, halfway (in log) to it (the head's fused lasso at R = 8 stepped
            # 10x past such a bracket twice and ran out of solves on an untried weight 1.35x the right one)
            lam = math.sqrt(lam * hi[0]) if hi is not None else lam * factor
            continue
        points.append((math.log(lam), math.log(r - floor)))
        p = slope
        if len(points) >= 2 and points[-1][0] != points[-2][0]:
            p = (points[-1][1] - points[-2][1]) / (points[-1][0] - points[-2][0])
            straddle = min(points[-1][1], points[-2][1]) <= math.log(goal) <= max(points[-1][1], points[-2][1])
            if p <= 0 or not straddle:  # the exponent is clipped where it extrapolates, not where it interpolates
                p = min(max(p, 0.5), 4.0)
        step = (math.log(goal) - points[-1][1]) / p
        step = min(max(step, -math.log(factor)), math.log(factor))
        nxt = points[-1][0] + step
        if lo is not None and hi is not None:
            a, b = math.log(lo[0]), math.log(hi[0])
            nxt = min(max(nxt, a + 0.15 * (b - a)), b - 0.15 * (b - a))
        if abs(r / target - 1) <= rtol:
            return lam * math.exp(min(max(step, -0.25), 0.25))  # the model's root, at most ~25% away
        lam = math.exp(nxt)
    return lam if points else lam / factor


def holdout_validation(
    solve: Solve,
    A: Linop,
    y: torch.Tensor,
    *,
    lam0: float | None = None,
    lams: Sequence[float] | None = None,
    decades: float = 3.0,
    n_grid: int = 7,
    refine: int = 4,
    holdout_fraction: float = 0.08,
    shared_dims: Sequence[int] | None = None,
    measured: torch.Tensor | None = None,
    seed: int = 0,
) -> LambdaSearch:
    """Choose ``lam`` minimising the prediction error on held-out measured samples.

    Args:
        solve: ``solve(A, y, lam, x0=None)`` -> image (or SolverResult).
        A, y: forward operator and data ``[*batch, *A.oshape]``.
        lam0: centre of the default grid ``lam0 * 10**linspace(-decades, decades, n_grid)``; default
            ``0.01 * max|A^H y|``.
        lams: explicit grid instead.
        refine: golden-section steps between the grid neighbours of the best grid point.
        holdout_fraction: fraction of the measured locations held out (5-10% is usual).
        shared_dims: item dims of ``A.oshape`` along which a location is held out together; default the
            first (coil) dim when ``A.oshape`` has two or more dims.
        measured: bool mask of measured samples; default :func:`measured_samples`.
        seed: for the random hold-out set.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_validation: holdout_fraction must be in (0, 1), got {holdout_fraction}")
    nd = len(A.oshape)
    if measured is None:
        measured = measured_samples(y)
    measured = torch.broadcast_to(measured, y.shape)
    if shared_dims is None:
        shared_dims = (0,) if nd >= 2 else ()
    # a location is measured if any batch item / shared dim measured it
    lead = y.dim() - nd
    reduce = tuple(range(lead)) + tuple(lead + (d % nd) for d in shared_dims)
    loc = measured.any(dim=reduce, keepdim=True) if reduce else measured
    loc = loc.reshape(loc.shape[lead:])  # item-shaped, size 1 along shared dims
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(loc.shape, generator=g).to(loc.device)
    held = loc & (u < holdout_fraction)
    if int(held.sum()) == 0:
        raise ValueError("holdout_validation: no measured sample was held out; increase holdout_fraction")
    keep = (~held).to(y.real.dtype if y.is_complex() else y.dtype)
    A_train = Multiply(A.oshape, keep) * A
    y_train = y * keep
    held_mask = measured & held
    n_held = int(held_mask.sum())
    if lams is None:
        if lam0 is None:
            lam0 = 0.01 * float(A.adjoint(y).abs().max())
        lams = [lam0 * 10 ** (decades * (2 * i / (n_grid - 1) - 1)) for i in range(n_grid)]
    lams = sorted(float(v) for v in lams)
    cache: dict[float, torch.Tensor] = {}
    trace: list[tuple[float, float]] = []
    values: dict[float, float] = {}

    def error(lam: float) -> float:
        if lam in values:
            return values[lam]
        x = _solution(solve(A_train, y_train, lam, x0=_nearest(cache, lam)))
        cache[lam] = x
        e = float((held_mask * (A.forward(x) - y)).abs().pow(2).sum()) / n_held
        trace.append((lam, e))
        values[lam] = e
        return e

    errs = [error(lam) for lam in lams]
    i = min(range(len(lams)), key=lambda k: errs[k])
    if refine > 0 and len(lams) >= 3:
        a = math.log(lams[max(i - 1, 0)])
        b = math.log(lams[min(i + 1, len(lams) - 1)])
        invphi = (math.sqrt(5) - 1) / 2
        c, d = b - invphi * (b - a), a + invphi * (b - a)
        fc, fd = error(math.exp(c)), error(math.exp(d))
        for _ in range(refine - 2):
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - invphi * (b - a)
                fc = error(math.exp(c))
            else:
                a, c, fc = c, d, fd
                d = a + invphi * (b - a)
                fd = error(math.exp(d))
    best_lam = min(values, key=values.get)
    return LambdaSearch(best_lam, trace, "validation", None, None)
