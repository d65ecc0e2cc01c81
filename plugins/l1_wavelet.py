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
it automatically (see :mod:`workbench.toolkit`: discrepancy principle above the unregularised residual, or
hold-out validation) and reports the value in ``Result.chosen["lam"]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from workbench.solvers import l1_wavelet
from workbench.toolkit import RegularisedMethod, lam_param, levels_param, param, wavelet_param, weight_settings


@weight_settings
@dataclass
class L1WaveletParams:
    lam: float | None = lam_param("sparsity weight (typical 0.001-0.01)")
    n_iter: int = param(100, min=1, max=5000, help="FISTA iterations")
    wavelet: str = wavelet_param()
    levels: int | None = levels_param()
    cycle_spinning: bool = param(True, help="threshold in a randomly shifted wavelet grid at every iteration "
                                            "(removes blocky artefacts)")
    seed: int = param(0, min=0, max=2**31 - 1, help="random seed of the cycle-spinning shifts")


class L1Wavelet(RegularisedMethod):
    name = "l1-wavelet"
    version = "1.0"
    description = ("l1-wavelet compressed sensing: min 0.5||Ax - y||^2 + lam ||Wx||_1 by FISTA with cycle "
                   "spinning; automatic lam by a discrepancy principle or hold-out validation.")
    Params = L1WaveletParams
    uses_wavelets = True

    def make_solve(self, problem, params: L1WaveletParams):
        def make(data, scale, lip):  # FISTA with the step 1 / ||A||^2
            return functools.partial(l1_wavelet, wavelet=params.wavelet, levels=params.levels,
                                     cycle_spinning=params.cycle_spinning, seed=params.seed, step=1.0 / lip,
                                     track_objective=False)
        return make

    def extras(self, run, problem, params: L1WaveletParams) -> dict:
        return {"lam_absolute": run.lam * run.scale, "scale": run.scale, "step": 1.0 / run.lipschitz_A,
                "levels": run.result.info["levels"]}
