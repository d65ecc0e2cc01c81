"""What the built-in classical plugins share: the data term they solve, the scale of their weights, the automatic
choice of the weight, and the per-iteration callback (progress, history, intermediate images, cancellation).

Not a plugin (discovery skips modules starting with ``_``).

Data term. Cartesian data: ``0.5 ||A x - y||^2`` with ``A = problem.A``. Non-Cartesian data with a density
compensation and ``dcf_weighting``: the density-weighted ``0.5 ||D^1/2 (A x - y)||^2`` (``A.density_weighted()``;
its normal operator is the Toeplitz ``A^H D A``). The weighting equalises the sampling density, so ``A^H D A``
is close to the identity on the sampled disc: CG/FISTA/PDHG converge in as few iterations as on Cartesian data,
and the weights below mean the same thing for both kinds of data.

Weights are scale-free: a method's ``lam`` is relative to ``problem.scale`` (the 99th percentile of the
zero-filled RSS magnitude), and the solver gets ``lam * problem.scale``, so the same value works for data in
scanner units and for normalised data.

Automatic weight (``lam = None``). The plain discrepancy principle (residual = noise energy) over-regularises
SENSE-type reconstructions by a wide margin: the maps are zero outside the object and never perfect, so even
an unregularised fit leaves a residual of the order of the noise (measured: 0.4-0.8 ``M sigma^2``). The rule
used here is the discrepancy principle on top of that floor: with ``r(lam) = ||A x_lam - y||^2`` (short solves),

    r(lam) = r(lam_min) + kappa * E_noise,     E_noise = sum over measured samples of sigma^2

(``sigma = problem.noise_std``; density-weighted data: ``sigma^2 * dcf`` per sample), i.e. the regulariser may
remove noise energy worth ``kappa`` of the measured noise. ``kappa = 0.03`` gave weights within a factor two of
the PSNR-best ones on simulated brain slices (R = 4-6, 8 coils). ``lam_rule = "validation"`` instead holds out
8% of the measured samples and picks the weight that predicts them best (no noise estimate, ~2x the cost).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from workbench.methods import RunContext
from workbench.solvers.regularisation import LambdaSearch, discrepancy_principle, holdout_validation

LAM_RULES = ("discrepancy", "validation")
LAM_MIN = 1e-4  # relative weight of the "unregularised" floor solve
LAM_START = 3e-3  # first relative weight tried by the searches


# ---------------------------------------------------------------------------------------------------------
# the data term
class DataTerm:
    """The operator and data a solver sees, and what the automatic weight needs to know about them.

    Attributes:
        A, y: operator and data (density-weighted views for weighted non-Cartesian data).
        noise_energy: expected ``||noise||^2`` over the measured samples of ``y`` (0 without a noise estimate).
        weighted: whether the data term is density-weighted.
    """

    def __init__(self, problem: Any, dcf_weighting: bool = True):
        A, y = problem.A, problem.y
        self.problem = problem
        self.weighted = bool(dcf_weighting and not problem.is_cartesian and problem.dcf is not None)
        if self.weighted:
            A, y = A.density_weighted(), A.weigh(y)
        self.A, self.y = A, y

    @property
    def noise_energy(self) -> float:
        sigma = float(self.problem.noise_std)
        if self.weighted:
            return sigma**2 * float(self.problem.dcf.sum()) * self.problem.n_coils
        return sigma**2 * int((self.y != 0).sum())

    def describe(self) -> str:
        return "density-weighted least squares" if self.weighted else "least squares"


def operator_norm2(A: Any, y: torch.Tensor) -> float:
    """``||A||^2`` for step sizes: 15 power iterations (the estimate approaches from below; the library adds 2%,
    this 3% more). Each costs a normal operator, so 15 instead of 30 saves a few seconds on large
    non-Cartesian problems."""
    from workbench.solvers.recon import lipschitz

    return 1.03 * float(lipschitz(A, y, n_iter=15))


def weight_scale(problem: Any) -> float:
    """The absolute weight of ``lam = 1``: ``problem.scale`` (99th percentile of the zero-filled RSS magnitude)."""
    return float(problem.scale)


# ---------------------------------------------------------------------------------------------------------
# iteration callback
def iteration_callback(
    ctx: RunContext,
    problem: Any,
    n_iter: int,
    history: list[dict] | None = None,
    *,
    label: str = "iteration",
    start: float = 0.0,
    span: float = 1.0,
    t0: float | None = None,
) -> Callable[[int, torch.Tensor, dict], bool]:
    """A solver callback that appends ``{"iter", <solver info>, "time"}`` to ``history`` (when given), reports
    progress in ``[start, start + span]`` and the intermediate image, and returns True (stop) once the user
    cancelled."""
    t0 = time.perf_counter() if t0 is None else t0

    def callback(it: int, x: torch.Tensor, info: dict) -> bool:
        if history is not None:
            history.append({"iter": len(history) + 1, **info, "time": time.perf_counter() - t0})
        ctx.progress(start + span * (it + 1) / max(n_iter, 1), f"{label} {it + 1}/{n_iter}")
        if ctx.wants_iterates:
            ctx.report_iterate(problem.crop(x))
        return ctx.cancelled()

    return callback


# ---------------------------------------------------------------------------------------------------------
# automatic weight
def choose_lam(
    solve: Callable[..., Any],
    data: DataTerm,
    problem: Any,
    ctx: RunContext,
    *,
    rule: str = "discrepancy",
    kappa: float = 0.03,
    n_iter: int = 30,
    span: float = 0.5,
) -> tuple[float, LambdaSearch, dict]:
    """Choose the relative weight.

    ``solve(A, y, lam_abs, x0=None, n_iter=..., callback=...)`` -> SolverResult. The search runs short solves
    (``n_iter`` iterations each), reports progress in ``[0, span]`` and stops at once on cancellation.

    Returns ``(lam_relative, search, chosen)`` with ``chosen`` the dict for ``Result.chosen``.
    """
    if rule not in LAM_RULES:
        raise ValueError(f"lam_rule must be one of {LAM_RULES}, got {rule!r}")
    scale = weight_scale(problem)
    evals = [0]
    max_evals = 14

    def short_solve(A, y, lam, x0=None):
        evals[0] += 1
        done = min(evals[0], max_evals)
        ctx.progress(span * (done - 1) / max_evals, f"choosing the weight: solve {done}")
        out = solve(A, y, lam, x0=x0, n_iter=n_iter, callback=lambda it, x, info: ctx.cancelled())
        ctx.check_cancelled()
        return out

    rule_used = rule
    floor = None
    search: LambdaSearch | None = None
    if rule == "discrepancy":
        floor_x = short_solve(data.A, data.y, LAM_MIN * scale).x
        floor = float((data.A.forward(floor_x) - data.y).abs().pow(2).sum())
        measured = int((data.y != 0).sum())
        target = floor + kappa * data.noise_energy
        if data.noise_energy > 0 and target > 0 and measured > 0:
            # stop once the residual's excess over the floor is within 25% of kappa * E_noise
            rtol = 0.25 * (target - floor) / target
            search = discrepancy_principle(
                short_solve, data.A, data.y, math.sqrt(target / measured), lam0=LAM_START * scale, rtol=rtol,
                max_evals=max_evals - 1,
            )
        else:
            ctx.log("no noise estimate (noiseless data?): choosing the weight by hold-out validation instead")
            rule_used = "validation"
    if search is None:
        search = holdout_validation(short_solve, data.A, data.y, lam0=LAM_START * scale, decades=2.0, n_grid=5,
                                    refine=3)
    lam_rel = search.lam / scale
    chosen = {"lam": lam_rel, "lam_absolute": search.lam, "lam_rule": rule_used, "search_solves": len(search.trace)}
    if rule_used == "discrepancy":
        chosen.update(kappa=kappa, residual_floor=floor, residual_target=search.target)
    ctx.log(f"weight chosen by {rule_used}: lam = {lam_rel:.3g} x scale ({len(search.trace)} solves)")
    return lam_rel, search, chosen


def search_trace(search: LambdaSearch, scale: float) -> list[list[float]]:
    """The ``(lam_relative, value)`` pairs a search evaluated (for ``Result.extras``)."""
    return [[lam / scale, value] for lam, value in search.trace]


# ---------------------------------------------------------------------------------------------------------
# coil maps
def maps_reasons(problem: Any) -> list[str]:
    """Why coil maps cannot be estimated for this problem (empty when they are given or can be estimated)."""
    if problem.n_coils == 1 or problem.has_maps or not problem.is_cartesian:
        return []
    from workbench.errors import SamplingError
    from workbench.physics.coils import calibration_region

    need = (6, 6) if problem.maps_method == "espirit" else (2, 2)
    try:
        calibration_region(problem.mask, problem.calib, min_shape=need)
    except SamplingError as exc:
        return [f"no coil maps were given and they cannot be estimated: {exc}"]
    return []


def maps_coverage(problem: Any) -> float:
    """Fraction of the zero-filled signal energy that the coil maps capture: ``||S^H z||^2 / ||rss(z)||^2`` for
    the zero-filled coil images ``z`` (1 for perfect maps, well below 1 when the maps miss part of the object)."""
    sense = problem.zero_filled("sense")
    rss = problem.zero_filled("rss")
    total = float(rss.pow(2).sum())
    return float(sense.abs().pow(2).sum()) / total if total > 0 else 1.0


def check_maps(problem: Any, ctx: RunContext, extras: dict) -> None:
    """Record the maps' coverage in ``extras`` and warn in the log when the maps miss much of the signal."""
    if problem.n_coils == 1:
        return
    coverage = maps_coverage(problem)
    extras["maps_coverage"] = coverage
    if coverage < 0.7:
        ctx.log(f"warning: the coil maps capture only {100 * coverage:.0f}% of the zero-filled signal energy; "
                "the reconstruction will miss part of the object (a wider ACS, --maps acs, or given maps help)")


# ---------------------------------------------------------------------------------------------------------
# PDHG with balanced block steps (TV, fused lasso)
def pdhg_ratio(lam_relative: float) -> float:
    """Primal/dual step balance for :func:`regularised_pdhg`: ``0.5 / sqrt(lam)``, clipped to [1, 30].

    PDHG's speed hinges on ``tau / sigma``; on simulated brain slices (8 coils, R = 4) the best balance grew as
    the weight shrank, from ~3 at ``lam = 0.01-0.03`` to ~10-16 at ``lam = 0.001-0.003``, which this formula
    follows (objective within 1e-3 of the optimum in 100 iterations instead of 1.5e-2 with ``tau = sigma``)."""
    return min(max(0.5 / math.sqrt(max(lam_relative, 1e-12)), 1.0), 30.0)


def regularised_pdhg(
    A: Any,
    y: torch.Tensor,
    blocks: list[tuple[Any, float, Callable[[torch.Tensor, float], torch.Tensor]]],
    *,
    ratio: float,
    n_iter: int,
    x0: torch.Tensor | None = None,
    lipschitz_A: float | None = None,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[int, torch.Tensor, dict], bool | None] | None = None,
):
    """``min_x 0.5 ||A x - y||^2 + sum_j g_j(K_j x)`` by PDHG (Chambolle-Pock) with one dual step per block.

    ``blocks`` lists ``(K_j, ||K_j||^2, dual_prox_j)`` with ``dual_prox_j(u, sigma) = prox_{sigma g_j*}(u)``.
    Steps: ``tau = ratio / sqrt(||A||^2 * max_j ||K_j||^2)`` and ``sigma_j = 0.99 / (n_blocks * tau * ||K_j||^2)``
    (for every block, the data block included), so ``tau * sum_j sigma_j ||K_j||^2 < 1``: convergent for any
    ``ratio``, and no block's step is dictated by another block's norm (the finite-difference operator's
    ``||D||^2 = 8`` would otherwise slow the data block down eightfold).
    """
    from workbench.solvers import pdhg, prox_dual_least_squares
    from workbench.solvers.recon import lipschitz

    if lipschitz_A is None:
        lipschitz_A = float(lipschitz(A, y))
    norms = [lipschitz_A] + [float(n) for _, n, _ in blocks]
    tau = ratio / math.sqrt(lipschitz_A * max(norms[1:]))
    n = len(norms)
    sigmas = [0.99 / (n * tau * L) for L in norms]
    ops = [A] + [op for op, _, _ in blocks]
    proxes = [lambda u, s: prox_dual_least_squares(u, s, y)] + [prox for _, _, prox in blocks]
    if x0 is None:
        x0 = torch.zeros(A.ishape, dtype=y.dtype, device=y.device)
    result = pdhg(x0, ops, proxes, tau=tau, sigma=sigmas, n_iter=n_iter, objective=objective, callback=callback)
    result.info.update(ratio=ratio, lipschitz_A=lipschitz_A)
    return result


def linearized_theta(lam_relative: float) -> float:
    """Dual step scale of :func:`linearized_pdhg`: ``30 * lam``, clipped to [0.03, 1] (best of 0.03-3 on a
    radial brain slice at ``lam`` = 0.001 / 0.003 / 0.01: 0.03 / 0.03-0.1 / 0.1-0.3)."""
    return min(max(30.0 * lam_relative, 0.03), 1.0)


def linearized_pdhg(
    A: Any,
    y: torch.Tensor,
    blocks: list[tuple[Any, float, Callable[[torch.Tensor, float], torch.Tensor]]],
    *,
    theta: float,
    n_iter: int,
    x0: torch.Tensor | None = None,
    lipschitz_A: float | None = None,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[int, torch.Tensor, dict], bool | None] | None = None,
):
    """``min_x 0.5 ||A x - y||^2 + sum_j g_j(K_j x)`` by the primal-dual method of Condat (2013) and Vu (2013):
    the smooth data term enters through its gradient ``A^H A x - A^H y``, so each iteration costs one *normal*
    operator (the Toeplitz embedding for non-Cartesian data) instead of a NUFFT and its adjoint:

        x+ = x - tau (A^H A x - A^H y + sum_j K_j^H u_j);   u_j = prox_{sigma_j g_j*}(u_j + sigma_j K_j (2 x+ - x))

    Steps: ``sigma_j ||K_j||^2 = theta ||A||^2 / n_blocks`` and ``tau = 0.99 / (||A||^2 / 2 + sum_j sigma_j
    ||K_j||^2)``, which satisfies the convergence condition ``1/tau - ||sum_j sigma_j K_j^H K_j|| > ||A||^2 / 2``.
    On a 512x256, 12-coil radial problem one iteration takes 0.28 s against 1.3 s for :func:`regularised_pdhg`
    (NUFFT 0.33 s, adjoint 0.94 s, Toeplitz normal 0.28 s; one CPU thread).
    """
    from workbench.solvers.base import SolverResult, sq_norm
    from workbench.solvers.recon import lipschitz

    if lipschitz_A is None:
        lipschitz_A = float(lipschitz(A, y))
    aty = A.adjoint(y)
    x = torch.zeros_like(aty) if x0 is None else x0
    sigmas = [theta * lipschitz_A / (len(blocks) * float(norm)) for _, norm, _ in blocks]
    tau = 0.99 / (lipschitz_A / 2 + theta * lipschitz_A)
    duals = [torch.zeros(*x.shape[: x.dim() - 2], *op.oshape, dtype=x.dtype, device=x.device) for op, _, _ in blocks]
    history: list[float] = []
    stopped = False
    done = 0
    tiny = torch.finfo(x.real.dtype).tiny
    for it in range(n_iter):
        step = A.normal(x) - aty
        for (op, _, _), u in zip(blocks, duals):
            step = step + op.adjoint(u)
        x_new = x - tau * step
        extrapolated = 2 * x_new - x
        duals = [prox(u + s * op.forward(extrapolated), s) for (op, _, prox), u, s in zip(blocks, duals, sigmas)]
        change = float(sq_norm(x_new - x, 2).sqrt().max() / sq_norm(x_new, 2).sqrt().clamp_min(tiny).max())
        x = x_new
        done = it + 1
        info = {"change": change}
        if objective is not None:
            info["objective"] = float(objective(x).sum())
        history.append(info.get("objective", change))
        if callback is not None and callback(it, x, info):
            stopped = True
            break
    name = "objective" if objective is not None else "change"
    return SolverResult(x, history, name, done, False, stopped,
                        {"tau": tau, "sigma": sigmas, "theta": theta, "lipschitz_A": lipschitz_A, "duals": duals})


def normal_objective(A: Any, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> 0.5 ||A x - y||^2`` computed with the normal operator, ``0.5 <x, A^H A x> - Re <x, A^H y> +
    0.5 ||y||^2`` (for non-Cartesian data the Toeplitz normal is cheaper than a NUFFT)."""
    aty = A.adjoint(y)
    yy = float(y.abs().pow(2).sum())

    def data_term(x: torch.Tensor) -> torch.Tensor:
        nx = A.normal(x)
        quad = (torch.view_as_real(x) * torch.view_as_real(nx)).sum(dim=(-3, -2, -1))
        lin = (torch.view_as_real(x) * torch.view_as_real(aty)).sum(dim=(-3, -2, -1))
        return (0.5 * quad - lin + 0.5 * yy).clamp_min(0)

    return data_term


def wavelet_reasons(problem: Any) -> list[str]:
    """``check`` reasons of the wavelet-regularised methods (image too small for one wavelet level)."""
    if min(problem.grid_shape) < 4:
        return [f"the image ({problem.grid_shape[0]}x{problem.grid_shape[1]}) is too small for a wavelet transform"]
    return []


def check_wavelet_levels(method: Any, problem: Any, levels: int | None) -> None:
    """A ParamError naming the parameter when ``levels`` exceeds what the image size allows."""
    from workbench.methods import ParamError
    from workbench.physics.wavelet import max_wavelet_levels

    top = max_wavelet_levels(problem.grid_shape)
    if levels is not None and levels > top:
        raise ParamError(f"parameter 'levels' of {method.name}: {levels} levels are too many for a "
                         f"{problem.grid_shape[0]}x{problem.grid_shape[1]} image (at most {top})",
                         param="levels", owner=method.name)

