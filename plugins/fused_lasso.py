"""Fused lasso: wavelet sparsity and total variation together.

    x = argmin 0.5 ||A x - y||^2 + lam_abs ||W x||_1 + tv_ratio * lam_abs * TV(x),   lam_abs = lam * problem.scale

``W`` orthonormal wavelets, ``TV`` isotropic or anisotropic total variation, ``A`` the SENSE operator
(Cartesian ``M F S``; non-Cartesian ``F_nu S``, density-weighted by default, Toeplitz normal operator). One
weight ``lam`` scales both penalties, their proportion is fixed by ``tv_ratio``; so the automatic choice
(``lam = None``) searches a single number, as for l1-wavelet and TV, and both chosen weights are reported
(``Result.chosen["lam_wavelet"]``, ``["lam_tv"]``, relative to the scale).

Solver: PDHG on ``K = [A; W; D]`` with one dual step per block and the primal/dual balance of the TV plugin
(``plugins/_shared.py``; non-Cartesian data: the linearised Condat-Vu variant with the Toeplitz normal operator),
or ADMM with splittings ``W x`` and ``D x`` and a CG x-update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.methods import Capabilities, Method, RunContext, param
from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.wavelet import Wavelet2D
from workbench.result import Result
from workbench.solvers import fused_lasso, project_l2_ball
from workbench.solvers.prox import l1_norm
from workbench.solvers.recon import data_fidelity, tv_norm

from plugins._shared import (
    LAM_RULES, DataTerm, check_maps, choose_lam, iteration_callback, linearized_pdhg, linearized_theta,
    maps_reasons, normal_objective, operator_norm2, pdhg_ratio, regularised_pdhg, search_trace, weight_scale,
    check_wavelet_levels, wavelet_reasons,
)
from plugins.l1_wavelet import WAVELETS
from plugins.tv import ADMM_RHO, GRADIENT_NORM2


@dataclass
class FusedLassoParams:
    lam: float | None = param(None, min=1e-6, max=1.0, log_scale=True, unit="x scale",
                              help="wavelet weight relative to the image intensity scale (99th percentile of the "
                                   "zero-filled magnitude); the TV weight is tv_ratio * lam; empty/auto = chosen "
                                   "automatically")
    tv_ratio: float = param(1.0, min=0.0, max=100.0, label="TV / wavelet",
                            help="TV weight as a multiple of the wavelet weight (0 = l1-wavelet only)")
    n_iter: int = param(100, min=1, max=5000, help="iterations")
    wavelet: str = param("db4", choices=WAVELETS, help="orthogonal wavelet (PyWavelets name)")
    levels: int | None = param(None, min=1, max=10, help="decomposition levels; auto = up to 4")
    variant: str = param("isotropic", choices=("isotropic", "anisotropic"), help="TV variant")
    solver: str = param("pdhg", choices=("pdhg", "admm"),
                        help="primal-dual hybrid gradient (no inner solves) or ADMM with a CG x-update")
    lam_rule: str = param("discrepancy", choices=LAM_RULES, label="automatic weight",
                          help="how lam is chosen when left automatic: discrepancy principle on the noise estimate, "
                               "or hold-out validation on 8% of the measured samples")
    kappa: float = param(0.03, min=1e-3, max=1.0, log_scale=True,
                         help="discrepancy rule: noise energy (fraction of the measured noise) the regularisers may "
                              "remove on top of the unregularised residual; larger = smoother")
    search_iter: int = param(30, min=5, max=500, help="iterations of each solve while choosing lam")
    dcf_weighting: bool = param(True, label="density weighting",
                                help="non-Cartesian data: density-weighted data term (fast convergence)")
    record_objective: bool = param(True, help="record the objective at every iteration")


class FusedLasso(Method):
    name = "fused-lasso"
    version = "1.0"
    description = ("Fused lasso: min 0.5||Ax - y||^2 + lam ||Wx||_1 + tv_ratio lam TV(x) by PDHG (or ADMM); one "
                   "automatic weight scales both penalties.")
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True)
    Params = FusedLassoParams

    def check(self, problem) -> list[str]:
        return super().check(problem) + wavelet_reasons(problem) + maps_reasons(problem)

    def run(self, problem, params: FusedLassoParams, ctx: RunContext) -> Result:
        t0 = time.perf_counter()
        check_wavelet_levels(self, problem, params.levels)
        ctx.progress(0.0, "coil maps" if not problem.has_maps else "starting")
        extras: dict = {}
        check_maps(problem, ctx, extras)
        data = DataTerm(problem, params.dcf_weighting)
        A, y = data.A, data.y
        scale = weight_scale(problem)
        lip = operator_norm2(A, y)
        isotropic = params.variant == "isotropic"
        W = Wavelet2D(A.ishape, params.wavelet, params.levels)
        D = FiniteDifference2D(A.ishape)

        def solve(A, y, lam_abs, x0=None, n_iter=params.n_iter, callback=None, track_objective=False):
            lam_tv = params.tv_ratio * lam_abs
            if params.solver == "admm":
                return fused_lasso(A, y, lam_abs, lam_tv, wavelet=params.wavelet, levels=params.levels,
                                   isotropic=isotropic, solver="admm", rho=ADMM_RHO * lip, n_iter=n_iter, x0=x0,
                                   track_objective=track_objective, callback=callback)
            objective = None
            if track_objective:
                data_term = (lambda v: data_fidelity(A, y, v)) if problem.is_cartesian else normal_objective(A, y)

                def objective(v: torch.Tensor) -> torch.Tensor:
                    return data_term(v) + lam_abs * l1_norm(W.forward(v), 2) + lam_tv * tv_norm(D, v, isotropic)
            blocks = [(W, 1.0, lambda c, s: project_l2_ball(c, lam_abs))]
            if lam_tv > 0:
                blocks.append((D, GRADIENT_NORM2, lambda q, s: project_l2_ball(q, lam_tv, dim=-3 if isotropic
                                                                               else None)))
            if not problem.is_cartesian:  # no NUFFT in the loop: the data term through the Toeplitz normal
                return linearized_pdhg(A, y, blocks, theta=linearized_theta(lam_abs / scale), n_iter=n_iter, x0=x0,
                                       lipschitz_A=lip, objective=objective, callback=callback)
            return regularised_pdhg(A, y, blocks, ratio=pdhg_ratio(lam_abs / scale), n_iter=n_iter, x0=x0,
                                    lipschitz_A=lip, objective=objective, callback=callback)

        chosen: dict = {}
        x0, start = None, 0.0
        lam = params.lam
        if lam is None:
            lam, search, chosen = choose_lam(solve, data, problem, ctx, rule=params.lam_rule, kappa=params.kappa,
                                             n_iter=params.search_iter)
            chosen.update(lam_wavelet=lam, lam_tv=params.tv_ratio * lam)
            extras["lam_search"] = search_trace(search, scale)
            x0, start = search.x, 0.5
        history: list[dict] = []
        callback = iteration_callback(ctx, problem, params.n_iter, history, start=start, span=1.0 - start, t0=t0)
        result = solve(A, y, lam * scale, x0=x0, callback=callback, track_objective=params.record_objective)
        ctx.check_cancelled()
        ctx.progress(1.0, "done")
        extras.update(data_term=data.describe(), lam_wavelet_absolute=lam * scale,
                      lam_tv_absolute=params.tv_ratio * lam * scale, scale=scale, lipschitz_A=lip)
        return Result(image=problem.crop(result.x), history=history, chosen=chosen, extras=extras)
