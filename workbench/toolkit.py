"""The method toolkit: what a reconstruction method needs besides the plugin API, for built-in and third-party
plugins alike (the built-ins in ``plugins/`` use nothing else).

- the plugin API itself, re-exported: :class:`Method`, :class:`Capabilities`, :func:`param`, :class:`RunContext`,
  :class:`ParamError`, :class:`Result`;
- the data term (:class:`DataTerm`) and the scale of the weights (:func:`weight_scale`, :func:`operator_norm2`);
- the automatic weight (:func:`choose_lam`, :func:`mismatch_share`, :func:`unknowns`, :func:`exact_fit`,
  :func:`search_trace`) and
  the parameters that steer it (:func:`lam_rule_param`, ...);
- the per-iteration callback with progress, history, intermediate images and cancellation
  (:func:`iteration_callback`);
- checks: coil maps (:func:`maps_reasons`, :func:`maps_coverage`, :func:`check_maps`) and wavelet levels
  (:func:`wavelet_reasons`, :func:`check_wavelet_levels`, :data:`WAVELETS`);
- parameter declarations (:func:`weight_settings`, :func:`lam_param`, ...);
- regularised least squares with one solver dispatch (:func:`regularised_least_squares` and its
  :class:`Penalty` terms, from :mod:`workbench.solvers`), the run skeleton every regularised method shares
  (:func:`start_run`, :func:`solve_with_weight`, :func:`finish_run`) and :class:`RegularisedMethod`, the base
  class that turns a method into its declaration and its penalties (sigpy's app pattern).

Shapes: an image is ``[H, W]`` complex (``problem.grid_shape``, cropped to ``problem.recon_shape`` by
``problem.crop``); ``DataTerm.A`` maps ``[H, W]`` to the data ``y`` (Cartesian ``[C, H, W]``, non-Cartesian
``[C, M]``).

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
used here is a generalised discrepancy principle on top of that floor: with ``r(lam) = ||A x_lam - y||^2``
(short solves) and ``floor = r(lam_min)``,

    r(lam) = floor + kappa * E_noise + min(2 m floor, (||y||^2 - floor) / 10),
    E_noise = sum over measured samples of sigma^2,     m = max(0, 1 - M / P, 1 - 2 E_noise / floor)

(``sigma = problem.noise_std``; density-weighted data: ``sigma^2 * dcf`` per sample; ``M``: the measured samples
of all coils; ``P``: the unknowns, the pixels where the coil maps are nonzero). The regulariser may remove noise
energy worth ``kappa`` of the measured noise, plus twice the share ``m`` of the floor counted as mismatch
(:func:`mismatch_share`), at most a tenth of the data energy the floor solve explains (a model that explains
little of the data is not driven to ``x = 0``).

- ``m = 0`` where the model fits the data to the noise: as many samples as unknowns (``M >= P``: 8-12 coils at
  R = 4-8) and a floor under twice the noise energy. The rule is then the floor + ``kappa`` rule, whose
  ``kappa = 0.03`` gave weights within a factor two of the PSNR-best ones on simulated brain slices (R = 4-6,
  8 coils); one coil (a model that fits any data: floor ~ 0) is the same.
- Fewer samples than unknowns (2 coils at R = 4 or 8): an exact model would fit the data exactly, so the floor
  is energy the model does not explain (mismatch, and directions the data do not determine, where the
  unregularised fit amplifies noise); ``1 - M / P`` of it is counted (continuous at ``M = P``).
- A floor above twice the noise energy is at least ``1 - 2 E_noise / floor`` mismatch (up to twice: a short
  floor solve that has not converged, 1.4 ``E_noise`` for 10 iterations on a simulated 8-coil slice). Cartesian
  data only: the short floor solve of density-weighted non-Cartesian data stops far from its minimum, so a floor
  above the noise says nothing about mismatch there (the prospective radial cardiac scan, 12 coils, 25 spokes:
  floor 5.3 times the noise energy; counting it took TV's weight to 0.37 x scale, an over-smoothed image, and
  its hold-out NMSE from 0.351 to 0.463).

Measured on the real sets (``benchmarks/results/score_modes_defaults.md``): on the 2-coil GRE, body-coil and DHE
phantoms the floor is 0.27-0.91 (GRE, body coil) and 390-560 (DHE, when its half echoes were read as 2 coils)
times the noise energy and the PSNR-best
residual 1.4-4.7 times the floor, against 1.02-1.1 times it on the 8- and 12-coil head and demo; the gain 2 puts
the 2-coil weights within a factor 4 of the best of a grid 3e-4 .. 0.3 (TV on GRE at R = 4: 15.86 -> 22.01 dB in
the object mode, 22.87 at the best weight) and leaves the head, the demo, the 1-coil phantom and the 7 T scan as
they were.
On a simulated 2-coil slice whose maps fit (96x96, R = 4) it costs TV 0.56 dB (32.69 -> 32.13; zero-filled 24.3).
``lam_rule = "validation"`` instead holds out 8% of the measured samples and picks the weight that predicts them
best (no noise estimate, ~2x the cost).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import torch

from workbench.arrays import LRUCache
from workbench.methods import Capabilities, Method, ParamError, RunContext, param
from workbench.physics.wavelet import DEFAULT_WAVELET
from workbench.result import Result
from workbench.solvers import (
    LambdaSearch, Penalty, SolverResult, discrepancy_principle, holdout_validation, lipschitz,
    regularised_least_squares, tv_penalty, wavelet_penalty,
)

__all__ = [
    "LAM_RULES",
    "RUN_DEFAULTS",
    "RegularisedMethod",
    "SenseMethod",
    "WAVELETS",
    "Capabilities",
    "DataTerm",
    "Method",
    "ParamError",
    "Penalty",
    "Result",
    "RunContext",
    "Solve",
    "WeightedSolution",
    "check_maps",
    "check_wavelet_levels",
    "choose_lam",
    "dcf_weighting_param",
    "exact_fit",
    "finish_run",
    "iteration_callback",
    "kappa_param",
    "lam_param",
    "lam_rule_param",
    "levels_param",
    "maps_coverage",
    "maps_reasons",
    "mismatch_share",
    "operator_norm2",
    "param",
    "penalised_solver",
    "record_objective_param",
    "regularised_least_squares",
    "search_iter_param",
    "search_trace",
    "solve_with_weight",
    "solver_param",
    "start_run",
    "tv_penalty",
    "unknowns",
    "wavelet_param",
    "wavelet_penalty",
    "wavelet_reasons",
    "weight_scale",
    "weight_settings",
]

LAM_RULES = ("discrepancy", "validation")
LAM_MIN = 1e-4  # relative weight of the "unregularised" floor solve
LAM_START = 3e-3  # first relative weight tried by the searches
WAVELETS = ("db2", "db4", "haar", "db8", "sym4", "sym8", "coif2")  # orthogonal wavelets offered to users
# what solve_with_weight uses for the settings a method's Params does not declare
RUN_DEFAULTS = {"lam_rule": "discrepancy", "kappa": 0.03, "search_iter": 30, "dcf_weighting": True,
                "record_objective": False}
MISMATCH_GAIN = 2.0  # residual allowed on top of the floor per unit of its mismatch share (module docstring)
MISMATCH_CAP = 0.1  # ... at most this fraction of the data energy the floor solve explains
FLOOR_GUARD = 2.0  # a floor up to this many times the noise energy may be a floor solve that has not converged
SEARCH_EVALS = 6  # most short solves of the discrepancy search after the floor solve
WARM_FRACTION = 2 / 3  # iterations of a warm-started search solve, as a fraction of search_iter


# ---------------------------------------------------------------------------------------------------------
# the data term
class DataTerm:
    """The operator and data a solver sees, and what the automatic weight needs to know about them.

    Attributes:
        A, y: operator (image ``[H, W]`` -> data) and data ``y`` (density-weighted views for weighted
            non-Cartesian data; for a Cartesian mask of whole lines the sampled lines in hybrid space,
            ``CartesianLineSense``: the same residuals and normal operator at the cost of 1D FFTs).
        kspace: ``(A, y)`` in k-space (``problem.A`` and ``problem.y``, density-weighted when ``weighted``).
        noise_energy: expected ``||noise||^2`` over the measured samples of ``y`` (0 without a noise estimate).
        weighted: whether the data term is density-weighted.
    """

    def __init__(self, problem: Any, dcf_weighting: bool = True):
        A, y = problem.A, problem.y
        self.problem = problem
        self.weighted = bool(dcf_weighting and not problem.is_cartesian and problem.dcf is not None)
        if self.weighted:
            A, y = A.density_weighted(), A.weigh(y)
        self.kspace = (A, y)
        # a mask of whole lines: the same least squares on the sampled lines in hybrid space (1D FFTs, data and
        # duals on the sampled lines only; CartesianLineSense); hold-out validation keeps k-space locations
        line = A.line_form(y) if problem.is_cartesian and hasattr(A, "line_form") else None
        self.A, self.y = line if line is not None else (A, y)

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
    return 1.03 * float(lipschitz(A, y, n_iter=15))


def weight_scale(problem: Any) -> float:
    """The absolute weight of ``lam = 1``: ``problem.scale`` (99th percentile of the zero-filled RSS magnitude)."""
    return float(problem.scale)


# ---------------------------------------------------------------------------------------------------------
# parameters of the automatic weight, declared alike by every regularised method
LAM_RANGE = (1e-6, 1.0)  # the relative weights a user may give (lam_param); an automatic weight is kept inside


def lam_param(what: str) -> Any:
    """``lam``: the weight relative to the image intensity scale, None = automatic; ``what`` starts its help."""
    return param(None, min=LAM_RANGE[0], max=LAM_RANGE[1], log_scale=True, unit="x scale",
                 help=f"{what} relative to the image intensity scale (99th percentile of the zero-filled "
                      "magnitude); empty/auto = chosen automatically")


def wavelet_param() -> Any:
    """``wavelet``: one of :data:`WAVELETS`."""
    return param(DEFAULT_WAVELET, choices=WAVELETS, help="orthogonal wavelet (PyWavelets name; db2 is BART's dau2)")


def levels_param() -> Any:
    """``levels``: wavelet decomposition levels, None = automatic (:func:`check_wavelet_levels` checks them)."""
    return param(None, min=1, max=10, help="decomposition levels; auto = up to 4 (fewer for small images)")


def lam_rule_param() -> Any:
    """``lam_rule``: how ``lam`` is chosen when left automatic (one of :data:`LAM_RULES`)."""
    return param("discrepancy", choices=LAM_RULES, label="automatic weight",
                 help="how lam is chosen when left automatic: discrepancy principle on the noise estimate, "
                      "or hold-out validation on 8% of the measured samples")


def kappa_param() -> Any:
    """``kappa`` of the discrepancy rule (see the module docstring)."""
    return param(0.03, min=1e-3, max=1.0, log_scale=True,
                 help="discrepancy rule: noise energy (fraction of the measured noise) the regularisation may "
                      "remove on top of the unregularised residual; larger = smoother")


def search_iter_param() -> Any:
    """``search_iter``: iterations of each short solve of the weight search."""
    return param(30, min=5, max=500, help="iterations of each solve while choosing lam")


def dcf_weighting_param() -> Any:
    """``dcf_weighting``: the density-weighted data term for non-Cartesian data (:class:`DataTerm`)."""
    return param(True, label="density weighting",
                 help="non-Cartesian data: density-weighted data term (fast convergence)")


def record_objective_param() -> Any:
    """``record_objective``: the objective in the history (costs one more operator per iteration, 1.2-1.7x the
    time of a solve: off by default; the history then has each iteration's change)."""
    return param(False, help="record the objective at every iteration (one more forward operator per iteration)")


def solver_param() -> Any:
    """``solver``: :func:`regularised_least_squares`' choice of PDHG or ADMM."""
    return param("pdhg", choices=("pdhg", "admm"),
                 help="primal-dual hybrid gradient (no inner solves) or ADMM with a CG x-update")


def weight_settings(params_cls: type) -> type:
    """Class decorator of a regularised method's Params dataclass: the same dataclass with the settings of the
    automatic weight and the data term appended after its own fields: ``lam_rule``, ``kappa``, ``search_iter``,
    ``dcf_weighting``, ``record_objective`` (:func:`lam_rule_param`, ...; what :func:`solve_with_weight`
    reads)."""

    @dataclass
    class WithSettings(params_cls):  # type: ignore[misc, valid-type]
        lam_rule: str = lam_rule_param()
        kappa: float = kappa_param()
        search_iter: int = search_iter_param()
        dcf_weighting: bool = dcf_weighting_param()
        record_objective: bool = record_objective_param()

    # the method's own name and module: forms, error messages and pickling see the class it declared
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(WithSettings, attr, getattr(params_cls, attr))
    return WithSettings


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
    """A solver callback ``(it, x [H, W], info) -> stop`` that appends ``{"iter", <solver info>, "time"}`` to
    ``history`` (when given), reports progress in ``[start, start + span]`` and the intermediate image
    (``problem.crop(x)``), and returns True (stop) once the user cancelled."""
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
class Solve(Protocol):
    """The solver closure of a regularised method: ``lam_abs`` in data units, ``x0`` ``[H, W]`` or None."""

    def __call__(self, A: Any, y: torch.Tensor, lam_abs: float, x0: torch.Tensor | None = None, *, n_iter: int,
                 callback: Callable | None = None, track_objective: bool = False) -> SolverResult: ...


def choose_lam(
    solve: Solve,
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

    ``solve(A, y, lam_abs, x0=None, n_iter=..., callback=...)`` -> SolverResult. The search runs short solves,
    reports progress in ``[0, span]`` and stops at once on cancellation. The floor solve of the discrepancy rule
    (the first grid point of validation) runs ``n_iter`` iterations from zero; the first search solve runs
    ``n_iter`` from the floor's image, every later one starts from the solution of the nearest weight tried and
    runs ``WARM_FRACTION * n_iter`` (at least 5). The discrepancy search knows the floor and models the excess
    ``r - floor`` as a power of the weight (``discrepancy_principle(floor=...)``), so the usual search is the
    floor and two solves (30 + 30 + 20 iterations; bracketing by factors of 10 took 30 + 30 + 3 x 20, with the
    first search solve from zero). Where the model fits the data exactly in closed form (one coil:
    :func:`exact_fit`) that image is the floor's, with floor 0, and no floor solve runs (weights within 1%;
    l1-wavelet on the real 1-coil phantom and 7 T scan 17-19% faster). Fewer warm iterations (10) moved the chosen weights by 20% and TV's PSNR on
    the real head by 0.17 dB; starting the first search solve from the floor with 20 iterations cost TV 0.07 dB.

    Returns ``(lam_relative, search, chosen)`` with ``chosen`` the dict for ``Result.chosen``.
    """
    if rule not in LAM_RULES:
        raise ValueError(f"lam_rule must be one of {LAM_RULES}, got {rule!r}")
    scale = weight_scale(problem)
    evals = [0]
    max_evals = SEARCH_EVALS + 1
    warm_iter = max(5, round(n_iter * WARM_FRACTION))

    start: list[torch.Tensor | None] = [None]  # the floor's image: where the first search solve starts

    def short_solve(A, y, lam, x0=None):
        evals[0] += 1
        done = min(evals[0], max_evals)
        ctx.progress(span * (done - 1) / max_evals, f"choosing the weight: solve {done}")
        iters = n_iter if x0 is None else warm_iter
        if x0 is None and A is data.A:
            x0 = start[0]  # the first search solve: from the floor's image, all n_iter iterations
        out = solve(A, y, lam, x0=x0, n_iter=iters, callback=lambda it, x, info: ctx.cancelled())
        ctx.check_cancelled()
        return out

    rule_used = rule
    floor = None
    search: LambdaSearch | None = None
    if rule == "discrepancy":
        floor_x = exact_fit(data, problem)
        if floor_x is None:
            floor_x = short_solve(data.A, data.y, LAM_MIN * scale).x
        start[0] = floor_x
        floor = float((data.A.forward(floor_x) - data.y).abs().pow(2).sum())
        measured = int((data.y != 0).sum())
        share = mismatch_share(floor, data.noise_energy, measured, unknowns(problem),
                               floor_converged=bool(problem.is_cartesian))
        explained = float(data.y.abs().pow(2).sum()) - floor
        target = floor + kappa * data.noise_energy + min(MISMATCH_GAIN * share * floor, MISMATCH_CAP * explained)
        if data.noise_energy > 0 and target > 0 and measured > 0:
            # stop once the residual's excess over the floor is within 25% of its goal
            rtol = 0.25 * (target - floor) / target
            search = discrepancy_principle(
                short_solve, data.A, data.y, math.sqrt(target / measured), lam0=LAM_START * scale, rtol=rtol,
                max_evals=SEARCH_EVALS, floor=floor,
            )
        else:
            ctx.log("no noise estimate (noiseless data?): choosing the weight by hold-out validation instead")
            rule_used = "validation"
    if search is None:
        search = holdout_validation(short_solve, *data.kspace, lam0=LAM_START * scale, decades=2.0, n_grid=5,
                                    refine=3)
    lam_rel = search.lam / scale
    chosen = {"lam": lam_rel, "lam_absolute": search.lam, "lam_rule": rule_used, "search_solves": len(search.trace)}
    if not LAM_RANGE[0] <= lam_rel <= LAM_RANGE[1]:
        # a weight the user could not type back (and a re-run, such as the hold-out's folds, would refuse): the
        # nearest one that can be; the search's image was for the other weight, so the run starts afresh
        ctx.log(f"weight {lam_rel:.3g} x scale is outside {LAM_RANGE[0]:g}..{LAM_RANGE[1]:g}: using the bound")
        lam_rel = min(max(lam_rel, LAM_RANGE[0]), LAM_RANGE[1])
        chosen.update(lam=lam_rel, lam_absolute=lam_rel * scale, lam_searched=search.lam / scale)
        search.x = None
    if rule_used == "discrepancy":
        chosen.update(kappa=kappa, residual_floor=floor, residual_target=search.target, mismatch_share=share,
                      noise_energy=data.noise_energy)
    ctx.log(f"weight chosen by {rule_used}: lam = {lam_rel:.3g} x scale ({len(search.trace)} solves)")
    return lam_rel, search, chosen


def exact_fit(data: DataTerm, problem: Any) -> torch.Tensor | None:
    """An image that fits the data exactly, when the model has one in closed form, else None: one coil on a
    Cartesian grid with ``|S| = 1`` everywhere (``A = M F S``), where ``x = A^H y`` gives ``A x = M F S S^* F^H
    M^T y = y``. The floor of the discrepancy rule is then 0 without the 30-iteration floor solve (a sixth of
    a 1-coil l1-wavelet run with its weight search)."""
    if not problem.is_cartesian or problem.n_coils != 1 or data.weighted:
        return None
    maps = problem.maps
    if tuple(maps.shape[-2:]) != tuple(problem.grid_shape) or float((maps.abs() - 1).abs().max()) > 1e-5:
        return None
    return data.A.adjoint(data.y)


def unknowns(problem: Any) -> int:
    """The unknowns of the SENSE model: the pixels where some coil map is nonzero (every pixel for one coil)."""
    return int((problem.maps.abs().sum(0) > 0).sum())


def mismatch_share(floor: float, noise_energy: float, measured: int, n_unknowns: int,
                   floor_converged: bool = True) -> float:
    """The share ``m`` of the floor residual counted as mismatch (module docstring):
    ``max(0, 1 - measured / n_unknowns, 1 - FLOOR_GUARD * noise_energy / floor)``, 0 when the model fits to the
    noise. ``floor_converged=False`` (non-Cartesian data, whose short floor solve stops far from the minimum)
    drops the second term."""
    share = 0.0
    if n_unknowns > 0:
        share = max(share, 1.0 - measured / n_unknowns)
    if floor > 0 and floor_converged:
        share = max(share, 1.0 - FLOOR_GUARD * noise_energy / floor)
    return min(share, 1.0)


def search_trace(search: LambdaSearch, scale: float) -> list[list[float]]:
    """The ``(lam_relative, value)`` pairs a search evaluated (for ``Result.extras``)."""
    return [[lam / scale, value] for lam, value in search.trace]


# ---------------------------------------------------------------------------------------------------------
# checks: coil maps, wavelet levels
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


def wavelet_reasons(problem: Any) -> list[str]:
    """``check`` reasons of the wavelet-regularised methods (image too small for one wavelet level)."""
    if min(problem.grid_shape) < 4:
        return [f"the image ({problem.grid_shape[0]}x{problem.grid_shape[1]}) is too small for a wavelet transform"]
    return []


def check_wavelet_levels(method: Any, problem: Any, levels: int | None) -> None:
    """A ParamError naming the parameter when ``levels`` exceeds what the image size allows."""
    from workbench.physics.wavelet import max_wavelet_levels

    top = max_wavelet_levels(problem.grid_shape)
    if levels is not None and levels > top:
        raise ParamError(f"parameter 'levels' of {method.name}: {levels} levels are too many for a "
                         f"{problem.grid_shape[0]}x{problem.grid_shape[1]} image (at most {top})",
                         param="levels", owner=method.name)


# ---------------------------------------------------------------------------------------------------------
# the run skeleton: start (maps, data term), weight, final solve with progress, finish
def start_run(problem: Any, ctx: RunContext, dcf_weighting: bool = True) -> tuple[DataTerm, dict]:
    """Report the start (the maps are estimated on first use), check the maps and build the data term.
    Returns ``(data, extras)`` with the maps' coverage in ``extras``."""
    ctx.progress(0.0, "coil maps" if not problem.has_maps else "starting")
    extras: dict = {}
    check_maps(problem, ctx, extras)
    return DataTerm(problem, dcf_weighting), extras


def finish_run(problem: Any, ctx: RunContext, x: torch.Tensor, history: list[dict], extras: dict,
               chosen: dict | None = None, text: str = "done") -> Result:
    """Stop here if the user cancelled, report the end and wrap the image ``x [H, W]`` (cropped) in a Result."""
    ctx.check_cancelled()
    ctx.progress(1.0, text)
    return Result(image=problem.crop(x), history=history, chosen=chosen or {}, extras=extras)


@dataclass
class WeightedSolution:
    """What :func:`solve_with_weight` found.

    Attributes:
        result: the final solve (``x`` ``[H, W]``).
        lam: the relative weight used (given or chosen); ``lam * scale`` went to the solver.
        scale: :func:`weight_scale` of the problem.
        lipschitz_A: :func:`operator_norm2` of the data term's operator.
        data: the :class:`DataTerm`.
        history: one dict per iteration of the final solve.
        chosen: ``Result.chosen`` (the automatic weight, its rule and search figures; empty for a given weight).
        extras: ``Result.extras`` so far (maps coverage, the weight search trace).
    """

    result: SolverResult
    lam: float
    scale: float
    lipschitz_A: float
    data: DataTerm
    history: list[dict] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def to_result(self, problem: Any, ctx: RunContext, **extras: Any) -> Result:
        """The Result: cancellation check, progress 1, the image cropped, ``extras`` after ``data_term``."""
        self.extras.update(data_term=self.data.describe(), **extras)
        return finish_run(problem, ctx, self.result.x, self.history, self.extras, self.chosen)


def penalised_solver(problem: Any, penalties: Callable[[float], list[Penalty]], solver: str = "pdhg"
                     ) -> Callable[[DataTerm, float, float], Solve]:
    """The ``make_solve`` of :func:`solve_with_weight` for ``min_x 0.5 ||A x - y||^2 + sum_j penalty_j(x)``:
    ``penalties(lam_abs)`` gives the :class:`Penalty` terms (operators on ``problem.grid_shape``) for the weight
    in data units; :func:`regularised_least_squares` solves with ``solver`` (``"pdhg"``: the linearised form
    for non-Cartesian data, whose normal operator is the cheap Toeplitz embedding; or ``"admm"``), its step
    balance following the relative weight ``lam_abs / scale``."""

    def make_solve(data: DataTerm, scale: float, lipschitz_A: float) -> Solve:
        def solve(A, y, lam_abs, x0=None, *, n_iter, callback=None, track_objective=False):
            return regularised_least_squares(
                A, y, penalties(lam_abs), solver=solver, linearized=not problem.is_cartesian,
                lam_relative=lam_abs / scale, n_iter=n_iter, x0=x0, lipschitz_A=lipschitz_A,
                track_objective=track_objective, callback=callback)

        return solve

    return make_solve


# (data digest, method settings) -> (lam, search trace, chosen, search image): a method run again on the same
# scan, mask and maps (the app's Run after a look at the result, a sweep of n_iter) skips the weight search
_chosen_weights = LRUCache(8)


def _data_digest(problem: Any, data: DataTerm) -> str:
    """A digest of what the weight depends on in the data: ``y``, the maps, the mask or trajectory and dcf, and
    the reconstructed shape (the scale is a percentile inside it)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(getattr(problem, "recon_shape", ()) or ())).encode())
    for t in (data.y, problem.maps, problem.mask, problem.trajectory, problem.dcf):
        if t is not None:
            digest.update(repr((tuple(t.shape), t.dtype, str(t.device))).encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _store_key(key: tuple, params: Any) -> str:
    """The on-disk key: ``key`` and the code that chose the weight, the workbench's and its built-in plugins'
    (:func:`workbench.command_server.code_key`) and the file of the method's Params (a plugin of another
    package or a drop-in file: an edit of it chooses afresh)."""
    import inspect

    from workbench.command_server import code_key

    try:
        st = os.stat(inspect.getfile(type(params)))
        plugin = (st.st_size, st.st_mtime_ns)
    except (TypeError, OSError):
        plugin = None
    return hashlib.blake2b(repr((key, code_key(), plugin)).encode(), digest_size=16).hexdigest()


def _stored_weight(key: tuple, problem: Any, params: Any) -> tuple | None:
    """The entry of :mod:`workbench.weight_store` for ``key`` (an earlier command's), in memory form, or None."""
    from workbench.weight_store import default_store

    store = default_store()
    hit = None if store is None else store.get(_store_key(key, params), tuple(problem.grid_shape))
    if hit is None:
        return None
    lam, trace, chosen, image = hit
    x0 = None if image is None else torch.from_numpy(image).to(problem.device)
    entry = (lam, trace, chosen, x0)
    _chosen_weights.put(key, entry)
    return entry


def _store_weight(key: tuple, entry: tuple, params: Any) -> None:
    from workbench.weight_store import default_store, writes_suspended

    store = default_store()
    if store is not None and not writes_suspended():
        lam, trace, chosen, x0 = entry
        store.put(_store_key(key, params), lam, trace, chosen, None if x0 is None else x0.detach().cpu().numpy())


def _settings_key(params: Any) -> tuple:
    """The method's Params type and every setting except those that do not change the chosen weight."""
    names = getattr(params, "__dataclass_fields__", None) or vars(params)
    return (type(params).__module__, type(params).__qualname__,
            tuple((n, repr(getattr(params, n))) for n in names if n not in ("n_iter", "record_objective")))


def solve_with_weight(problem: Any, params: Any, ctx: RunContext,
                      make_solve: Callable[[DataTerm, float, float], Solve]) -> WeightedSolution:
    """The run of a regularised method up to its final solve.

    :func:`start_run`, ``||A||^2`` (:func:`operator_norm2`), ``solve = make_solve(data, scale, lipschitz_A)``,
    the weight (``params.lam``, or :func:`choose_lam` when it is None, warm-starting the final solve from the
    search's image; reused, with that image, when the same data and settings had it chosen before), then ``params.n_iter`` iterations with progress, history, intermediate images and
    cancellation (:func:`iteration_callback`).

    ``params`` has the fields ``lam`` (relative, or None) and ``n_iter``, and may declare the settings
    ``lam_rule``, ``kappa``, ``search_iter``, ``dcf_weighting`` and ``record_objective`` (:func:`lam_rule_param`,
    ...); those it leaves out take the defaults of :data:`RUN_DEFAULTS`.
    """
    t0 = time.perf_counter()
    setting = {name: getattr(params, name, default) for name, default in RUN_DEFAULTS.items()}
    data, extras = start_run(problem, ctx, setting["dcf_weighting"])
    scale = weight_scale(problem)
    lip = operator_norm2(data.A, data.y)
    solve = make_solve(data, scale, lip)
    chosen: dict = {}
    x0, start = None, 0.0
    lam = params.lam
    if lam is None:
        key = (_data_digest(problem, data), _settings_key(params))
        hit = _chosen_weights.get(key) or _stored_weight(key, problem, params)
        if hit is not None:  # the same data, maps and settings as an earlier run: its weight and search image
            lam, extras["lam_search"], chosen, x0 = hit
            chosen, x0 = dict(chosen, reused=True), None if x0 is None else x0.clone()
            ctx.log(f"weight reused from an earlier run on the same data: lam = {lam:.3g} x scale")
        else:
            lam, search, chosen = choose_lam(solve, data, problem, ctx, rule=setting["lam_rule"],
                                             kappa=setting["kappa"], n_iter=setting["search_iter"])
            extras["lam_search"] = search_trace(search, scale)
            x0, start = search.x, 0.5
            entry = (lam, extras["lam_search"], chosen, None if x0 is None else x0.clone())
            _chosen_weights.put(key, entry)
            _store_weight(key, entry, params)
    history: list[dict] = []
    callback = iteration_callback(ctx, problem, params.n_iter, history, start=start, span=1.0 - start, t0=t0)
    result = solve(data.A, data.y, lam * scale, x0=x0, n_iter=params.n_iter, callback=callback,
                   track_objective=setting["record_objective"])
    return WeightedSolution(result, lam, scale, lip, data, history, chosen, extras)


# ---------------------------------------------------------------------------------------------------------
# a regularised method as an app (sigpy style): the subclass says what to minimise, this class runs it
class SenseMethod(Method):
    """Base class of a method built on the SENSE operator ``problem.A`` (the coil maps): any data, Cartesian or
    not, any number of coils; ``check`` adds :func:`maps_reasons` (maps that cannot be estimated)."""

    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True)

    def check(self, problem: Any) -> list[str]:
        return super().check(problem) + maps_reasons(problem)


class RegularisedMethod(SenseMethod):
    """Base class of ``min_x 0.5 ||A x - y||^2 + sum_j penalty_j(x)`` methods with an automatic weight.

    A subclass sets ``name``, ``version``, ``description`` and ``Params`` (a ``@weight_settings`` dataclass with
    ``lam`` and ``n_iter``; ``solver`` and ``levels`` are read when present) and defines :meth:`penalties`, or
    :meth:`make_solve` for a solver of its own; :meth:`extras` adds to ``Result.extras``. ``run`` is
    :func:`solve_with_weight` then :meth:`WeightedSolution.to_result`. With ``uses_wavelets``, ``check`` adds
    :func:`wavelet_reasons` and ``run`` checks ``params.levels``.
    """

    uses_wavelets: ClassVar[bool] = False

    def check(self, problem: Any) -> list[str]:
        reasons = Method.check(self, problem) + (wavelet_reasons(problem) if self.uses_wavelets else [])
        return reasons + maps_reasons(problem)  # in this order: the wavelet reasons before the maps

    def penalties(self, problem: Any, params: Any) -> Callable[[float], list[Penalty]]:
        """``lam_abs -> [Penalty]``: the terms for a weight in data units (operators on ``problem.grid_shape``)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither penalties() nor make_solve()")

    def make_solve(self, problem: Any, params: Any) -> Callable[[DataTerm, float, float], Solve]:
        """The ``make_solve`` of :func:`solve_with_weight`; default: :meth:`penalties` by
        :func:`penalised_solver` with ``params.solver`` (PDHG when the Params have no ``solver``)."""
        return penalised_solver(problem, self.penalties(problem, params), getattr(params, "solver", "pdhg"))

    def extras(self, run: WeightedSolution, problem: Any, params: Any) -> dict:
        """``Result.extras`` after the data term: by default the absolute weight and the scale."""
        return {"lam_absolute": run.lam * run.scale, "scale": run.scale}

    def run(self, problem: Any, params: Any, ctx: RunContext) -> Result:
        if self.uses_wavelets:
            check_wavelet_levels(self, problem, getattr(params, "levels", None))
        run = solve_with_weight(problem, params, ctx, self.make_solve(problem, params))
        return run.to_result(problem, ctx, **self.extras(run, problem, params))
