"""l1-wavelet + total variation with an automatic weight, from the public toolkit (docs/plugins.md):

    x = argmin 0.5 ||A x - y||^2 + lam_abs (||W x||_1 + tv_share TV(x)),    lam_abs = lam * problem.scale

``workbench.toolkit`` does the rest: the coil-map checks, the data term (density-weighted for non-Cartesian
data), the automatic weight (``lam`` empty), the solver (PDHG; its linearised form for non-Cartesian data),
progress, history, intermediate images and Cancel. Install: copy this file into a plugin folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.wavelet import Wavelet2D
from workbench.toolkit import RegularisedMethod, lam_param, param, tv_penalty, wavelet_penalty, weight_settings


@weight_settings  # adds the automatic weight's settings: lam_rule, kappa, search_iter, ...
@dataclass
class WaveletTVParams:
    lam: float | None = lam_param("weight of both terms")
    tv_share: float = param(0.5, min=0.0, max=10.0, help="TV weight as a multiple of the wavelet weight")
    n_iter: int = param(80, min=1, max=2000, help="iterations")


class WaveletTV(RegularisedMethod):  # checks, data term, automatic weight, solver, progress, Cancel
    name = "wavelet-tv"
    version = "1.0"
    description = "l1-wavelet + TV (db4, isotropic) by PDHG with an automatic weight: the toolkit example"
    Params = WaveletTVParams
    uses_wavelets = True

    def penalties(self, problem, params: WaveletTVParams):
        W, D = Wavelet2D(problem.grid_shape, "db4"), FiniteDifference2D(problem.grid_shape)
        return lambda lam_abs: [wavelet_penalty(W, lam_abs), tv_penalty(D, params.tv_share * lam_abs)]
