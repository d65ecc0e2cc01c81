"""Fused lasso: wavelet sparsity and total variation together.

    x = argmin 0.5 ||A x - y||^2 + lam_abs ||W x||_1 + tv_ratio * lam_abs * TV(x),   lam_abs = lam * problem.scale

``W`` orthonormal wavelets, ``TV`` isotropic or anisotropic total variation, ``A`` the SENSE operator
(Cartesian ``M F S``; non-Cartesian ``F_nu S``, density-weighted by default, Toeplitz normal operator). One
weight ``lam`` scales both penalties, their proportion is fixed by ``tv_ratio``; so the automatic choice
(``lam = None``) searches a single number, as for l1-wavelet and TV, and both chosen weights are reported
(``Result.chosen["lam_wavelet"]``, ``["lam_tv"]``, relative to the scale).

Solver (``workbench.solvers.regularised_least_squares``): PDHG on ``K = [A; W; D]`` with one dual step per block
and the primal/dual balance of the TV plugin (non-Cartesian data: the linearised Condat-Vu variant with the
Toeplitz normal operator), or ADMM with splittings ``W x`` and ``D x`` and a CG x-update.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.wavelet import Wavelet2D
from workbench.toolkit import (
    RegularisedMethod, lam_param, levels_param, param, solver_param, tv_penalty, wavelet_param, wavelet_penalty,
    weight_settings,
)


@weight_settings
@dataclass
class FusedLassoParams:
    lam: float | None = lam_param("wavelet weight (the TV weight is tv_ratio * lam)")
    tv_ratio: float = param(1.0, min=0.0, max=100.0, label="TV / wavelet",
                            help="TV weight as a multiple of the wavelet weight (0 = l1-wavelet only)")
    n_iter: int = param(100, min=1, max=5000, help="iterations")
    wavelet: str = wavelet_param()
    levels: int | None = levels_param()
    variant: str = param("isotropic", choices=("isotropic", "anisotropic"), help="TV variant")
    solver: str = solver_param()


class FusedLasso(RegularisedMethod):
    name = "fused-lasso"
    version = "1.0"
    description = ("Fused lasso: min 0.5||Ax - y||^2 + lam ||Wx||_1 + tv_ratio lam TV(x) by PDHG (or ADMM); one "
                   "automatic weight scales both penalties.")
    Params = FusedLassoParams
    uses_wavelets = True

    def penalties(self, problem, params: FusedLassoParams):
        W = Wavelet2D(problem.grid_shape, params.wavelet, params.levels)
        D = FiniteDifference2D(problem.grid_shape)
        isotropic = params.variant == "isotropic"
        # one weight scales both terms
        return lambda lam_abs: [wavelet_penalty(W, lam_abs), tv_penalty(D, params.tv_ratio * lam_abs, isotropic)]

    def extras(self, run, problem, params: FusedLassoParams) -> dict:
        if params.lam is None:  # both chosen weights, relative to the scale
            run.chosen.update(lam_wavelet=run.lam, lam_tv=params.tv_ratio * run.lam)
        return {"lam_wavelet_absolute": run.lam * run.scale, "lam_tv_absolute": params.tv_ratio * run.lam * run.scale,
                "scale": run.scale, "lipschitz_A": run.lipschitz_A}
