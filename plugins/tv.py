"""Total-variation regularised reconstruction (Rudin-Osher-Fatemi prior; Block et al., MRM 2007).

    x = argmin 0.5 ||A x - y||^2 + lam_abs TV(x),     lam_abs = lam * problem.scale

``TV(x) = sum_pixels ||(D x)_pixel||_2`` (isotropic) or ``sum |D x|`` (anisotropic) with ``D`` the forward
differences along both axes (Neumann boundary). ``A`` is the SENSE operator (Cartesian ``M F S``;
non-Cartesian ``F_nu S``, density-weighted by default, Toeplitz normal operator).

Solvers:
- ``pdhg`` (default): Cartesian data: Chambolle-Pock on ``K = [A; D]`` with the data term in the dual (no inner
  solves), one dual step per block and a primal/dual balance that follows the weight
  (``workbench.solvers.regularised_pdhg``); about 2.5x faster per unit of accuracy than equal steps. Non-Cartesian data: the linearised primal-dual method
  (Condat-Vu), whose data term goes through the Toeplitz normal operator (no NUFFT in the loop).
- ``admm``: splitting ``z = D x`` with a 5-step CG x-update on ``A^H A + rho D^H D`` (``rho = 0.3``).

``lam`` is relative to the image intensity scale (99th percentile of the zero-filled RSS magnitude): 0.003
penalises a jump of 0.3% of the bright tissue intensity as much as a unit squared data error. ``lam = None``
chooses it automatically and reports it in ``Result.chosen["lam"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.physics.gradient import FiniteDifference2D
from workbench.solvers import linearized_theta, pdhg_ratio
from workbench.toolkit import RegularisedMethod, lam_param, param, solver_param, tv_penalty, weight_settings


@weight_settings
@dataclass
class TVParams:
    lam: float | None = lam_param("TV weight (typical 0.001-0.01)")
    n_iter: int = param(100, min=1, max=5000, help="iterations")
    variant: str = param("isotropic", choices=("isotropic", "anisotropic"),
                         help="isotropic: l2 norm of the gradient per pixel (rotation invariant); anisotropic: l1 "
                              "norm of both differences")
    solver: str = solver_param()


class TotalVariation(RegularisedMethod):
    name = "tv"
    version = "1.0"
    description = ("Total variation: min 0.5||Ax - y||^2 + lam TV(x) by PDHG (or ADMM), isotropic or "
                   "anisotropic; automatic lam by a discrepancy principle or hold-out validation.")
    Params = TVParams

    def penalties(self, problem, params: TVParams):
        D = FiniteDifference2D(problem.grid_shape)
        return lambda lam_abs: [tv_penalty(D, lam_abs, params.variant == "isotropic")]

    def extras(self, run, problem, params: TVParams) -> dict:
        extras = {"lam_absolute": run.lam * run.scale, "scale": run.scale, "lipschitz_A": run.lipschitz_A}
        if params.solver == "pdhg" and problem.is_cartesian:
            extras["pdhg_ratio"] = pdhg_ratio(run.lam)
        elif params.solver == "pdhg":
            extras["solver_variant"] = "linearized PDHG (Condat-Vu) with the Toeplitz normal operator"
            extras["pdhg_theta"] = linearized_theta(run.lam)
        return extras
