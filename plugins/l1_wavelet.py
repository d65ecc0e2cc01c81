"""l1-wavelet compressed sensing (Lustig, Donoho & Pauly, MRM 2007).

    x = argmin 0.5 ||A x - y||^2 + lam_abs ||W x||_1,     lam_abs = lam * problem.scale

with ``W`` an orthonormal 2D wavelet transform (periodised filter bank in torch: runs on the GPU, batched) and
``A`` the SENSE operator (Cartesian ``M F S``; non-Cartesian ``F_nu S``, density-weighted by default, Toeplitz
normal operator). Solver: FISTA with gradient restart, step ``1 / ||A||^2`` (power iteration); the proximal
step is wavelet soft-thresholding ``W^H soft(W v, lam_abs * step)``. With cycle spinning every iteration
thresholds in a randomly shifted wavelet grid (seeded), which removes the blocky artefacts of a decimated
transform (sigpy's L1WaveletRecon does the same).

``lam`` is relative to the image intensity scale (the 99th percentile of the zero-filled RSS magnitude), so
0.003 means a threshold of 0.3% of the bright tissue intensity whatever the data units. ``lam = None`` chooses
it automatically (see ``plugins/_shared.py``: discrepancy principle above the unregularised residual, or
hold-out validation) and reports the value in ``Result.chosen["lam"]``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from workbench.methods import Capabilities, Method, RunContext, param
from workbench.result import Result
from workbench.solvers import l1_wavelet

from plugins._shared import (
    LAM_RULES, DataTerm, check_maps, choose_lam, iteration_callback, maps_reasons, operator_norm2, search_trace,
    weight_scale, check_wavelet_levels, wavelet_reasons,
)

WAVELETS = ("db4", "haar", "db2", "db8", "sym4", "sym8", "coif2")


@dataclass
class L1WaveletParams:
    lam: float | None = param(None, min=1e-6, max=1.0, log_scale=True, unit="x scale",
                              help="sparsity weight relative to the image intensity scale (99th percentile of the "
                                   "zero-filled magnitude); typical 0.001-0.01; empty/auto = chosen automatically")
    n_iter: int = param(100, min=1, max=5000, help="FISTA iterations")
    wavelet: str = param("db4", choices=WAVELETS, help="orthogonal wavelet (PyWavelets name)")
    levels: int | None = param(None, min=1, max=10, help="decomposition levels; auto = up to 4 (fewer for small "
                                                           "images)")
    cycle_spinning: bool = param(True, help="threshold in a randomly shifted wavelet grid at every iteration "
                                            "(removes blocky artefacts)")
    seed: int = param(0, min=0, max=2**31 - 1, help="random seed of the cycle-spinning shifts")
    lam_rule: str = param("discrepancy", choices=LAM_RULES, label="automatic weight",
                          help="how lam is chosen when left automatic: discrepancy principle on the noise estimate, "
                               "or hold-out validation on 8% of the measured samples")
    kappa: float = param(0.03, min=1e-3, max=1.0, log_scale=True,
                         help="discrepancy rule: noise energy (fraction of the measured noise) the regulariser may "
                              "remove on top of the unregularised residual; larger = smoother")
    search_iter: int = param(30, min=5, max=500, help="iterations of each solve while choosing lam")
    dcf_weighting: bool = param(True, label="density weighting",
                                help="non-Cartesian data: density-weighted data term (fast convergence)")
    record_objective: bool = param(True, help="record the objective at every iteration (one more forward "
                                              "operator per iteration)")


class L1Wavelet(Method):
    name = "l1-wavelet"
    version = "1.0"
    description = ("l1-wavelet compressed sensing: min 0.5||Ax - y||^2 + lam ||Wx||_1 by FISTA with cycle "
                   "spinning; automatic lam by a discrepancy principle or hold-out validation.")
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True)
    Params = L1WaveletParams

    def check(self, problem) -> list[str]:
        return super().check(problem) + wavelet_reasons(problem) + maps_reasons(problem)

    def run(self, problem, params: L1WaveletParams, ctx: RunContext) -> Result:
        t0 = time.perf_counter()
        check_wavelet_levels(self, problem, params.levels)
        ctx.progress(0.0, "coil maps" if not problem.has_maps else "starting")
        extras: dict = {}
        check_maps(problem, ctx, extras)
        data = DataTerm(problem, params.dcf_weighting)
        A, y = data.A, data.y
        scale = weight_scale(problem)
        step = 1.0 / operator_norm2(A, y)
        solve = functools.partial(l1_wavelet, wavelet=params.wavelet, levels=params.levels,
                                  cycle_spinning=params.cycle_spinning, seed=params.seed, step=step,
                                  track_objective=False)
        chosen: dict = {}
        x0, start = None, 0.0
        lam = params.lam
        if lam is None:
            lam, search, chosen = choose_lam(solve, data, problem, ctx, rule=params.lam_rule, kappa=params.kappa,
                                             n_iter=params.search_iter)
            extras["lam_search"] = search_trace(search, scale)
            x0, start = search.x, 0.5
        history: list[dict] = []
        callback = iteration_callback(ctx, problem, params.n_iter, history, start=start, span=1.0 - start, t0=t0)
        result = solve(A, y, lam * scale, x0=x0, n_iter=params.n_iter, callback=callback,
                       track_objective=params.record_objective)
        ctx.check_cancelled()
        ctx.progress(1.0, "done")
        extras.update(data_term=data.describe(), lam_absolute=lam * scale, scale=scale, step=step,
                      levels=result.info["levels"])
        return Result(image=problem.crop(result.x), history=history, chosen=chosen, extras=extras)
