"""NC-PDNet (Ramzi et al., IEEE TMI 2022): the XPDNet network with a non-Cartesian operator.

Data consistency uses the NUFFT with density compensation, ``A^H D (A x - y) = (A^H D A) x - A^H D y``, the first
term by the Toeplitz-embedded normal operator (FFTs on the 2x grid, no interpolation); coil maps come from the
trajectory centre and are refined by a small U-net. One implementation with XPDNet
(:mod:`workbench.nn.primal_net`); only the operator differs. The network's image ends with one consistency solve,
``min ||A x - y||^2_D + lam ||x - x_net||^2``, its weight chosen per scan by holding out whole spokes
(:mod:`workbench.nn.consistency`; ``consistency``, ``consistency_lam``). ``adapt`` fine-tunes a copy on the scan's own
samples first (:mod:`workbench.nn.adapt`: subsets of the trajectory's samples, density compensation rescaled);
left automatic it stays off, as for every non-Cartesian scan (on the real radial rows it lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods import Capabilities, Method, param
from workbench.nn.inference import PrimalAdaptParams, run_primal_net, weights_reasons


@dataclass
class Params(PrimalAdaptParams):
    weights: str = param("", help="weight file (.safetensors with its .json sidecar); empty: the shipped weights")


class NCPDNet(Method):
    name = "ncpdnet"
    # 1.1: the estimated coil maps by default (refine_maps off); 1.2: adaptation of every parameter; 1.3: the
    # consistency solve with its weight chosen by hold-out
    version = "1.3"
    description = ("NC-PDNet: unrolled primal network for radial / spiral data (NUFFT with density compensation, "
                   "Toeplitz normal operator); needs trained weights")
    capabilities = Capabilities(cartesian=False, noncartesian=True, multicoil=True, singlecoil=True,
                                needs_weights=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Non-Cartesian data and usable weights (``params.weights``, else the shipped file)."""
        reasons = []
        if problem.is_cartesian:
            reasons.append("ncpdnet reconstructs non-Cartesian (radial, spiral) data; for Cartesian masks use xpdnet")
        return reasons + weights_reasons(params, "ncpdnet")

    def run(self, problem, params, ctx):
        return run_primal_net(problem, params, ctx, "ncpdnet")
