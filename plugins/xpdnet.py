"""XPDNet (Ramzi et al., fastMRI challenge 2020): an unrolled primal network, with an optional learned coil-map
refinement.

Each of the unrolled iterations feeds a buffer of 5 complex images and the data-consistency residual ``A^H (A x -
y)`` to its own multi-level wavelet CNN, which updates the buffer; coil maps are estimated from the ACS lines
(ESPIRiT) and, with ``refine_maps``, refined by a small U-net (off by default since version 1.1: the refinement
learned the simulator's coils and cost 0.08 dB on the real scans). By default the network's image then goes through
one consistency solve, ``min ||A x - y||^2 + lam ||x - x_net||^2``, with ``lam`` chosen per scan by k-space
hold-out, or none when no weight predicts held-out lines better (``consistency``, ``consistency_lam``;
:mod:`workbench.nn.consistency`: +1 to +5 dB on the real 8-coil head at 4x), and a
hard data-consistency step: the measured k-space samples go back into the output's coil images, whose
root-sum-of-squares is the image. The scanner noise of the unmeasured samples (the expected RSS of the fully sampled
scan) is now the scoring layer's "as-acquired" mode (:func:`workbench.scoring.as_acquired`), applied to every method
alike; ``noise_floor=True`` still adds it here (``benchmarks/results/deep.md`` has the figures with and without).
Trained on synthetic multi-coil brain slices (1 to 16 coils, 96x96 to 256x256, random and equispaced 1D masks at 4x
and 8x). The shipped weights start the iterations from the CG-SENSE solution with the problem's own ESPIRiT maps
(the maps the classical methods use) and learn a correction of it (``configs/xpdnet_cg_cpu.json``); their last
round was trained through the consistency solve (``configs/xpdnet_consistency_cpu.json``). The same network
with a NUFFT operator is NC-PDNet (plugin ``ncpdnet``). ``adapt`` fine-tunes a copy on the scan's own measured
samples first (:mod:`workbench.nn.adapt`; ``benchmarks/results/adaptation.md``); left automatic, it does so for
scans of 1 or 2 coils (:data:`~workbench.nn.inference.AUTO_ADAPT_MAX_COILS`), where it helped on the real scans."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import SamplingError
from workbench.methods import Capabilities, Method, param
from workbench.nn.inference import PrimalAdaptParams, adapt_patience_param, run_primal_net, weights_reasons
from workbench.physics.coils import calibration_region


@dataclass
class Params(PrimalAdaptParams):
    weights: str = param("", help="weight file (.safetensors with its .json sidecar); empty: the shipped weights")
    data_consistency: bool = param(True, help="end with the measured k-space: put the measured samples back into "
                                              "the output's coil images and combine them by root-sum-of-squares "
                                              "(off: the network's own output)")
    noise_floor: bool = param(False, help="with data consistency: add the scanner noise of the unmeasured samples "
                                          "in quadrature, sqrt(|x|^2 + C (1 - f) noise_std^2), so that the image "
                                          "is the expected root-sum-of-squares of the fully sampled scan (off by "
                                          "default: the 'as-acquired' scoring mode does this for every method)")
    # 5 rather than the shared 3, decided on the 64 adapted real rows (benchmarks/results/realdata_deep_current.md):
    # +0.08 dB, 3 more rows at issue 14's margin, one more below CG-SENSE (by 0.15 dB); 8 gained more but put 3 more
    # below CG-SENSE and one below zero filling (realdata_deep_xpdnet_patience8.md)
    adapt_patience: int = adapt_patience_param(5)


class XPDNet(Method):
    name = "xpdnet"
    # 1.1: the estimated coil maps by default (refine_maps off); 1.2: adaptation of every parameter; 1.3: the
    # consistency solve with its weight chosen by hold-out; 1.4: adaptation automatic (on for 1-2 coils); 1.5: the
    # weights of configs/xpdnet_fresh_cpu.json; 1.6: the average of the xpdnet_fresh2 and xpdnet_fresh3 rounds; 1.7:
    # the average of 1.6 and the xpdnet_fresh4 round trained from it; 1.8: the adaptation's patience 5 (was 3)
    version = "1.8"
    description = ("XPDNet: unrolled primal network (MWCNN per iteration, residual data consistency, optional "
                   "learned coil map refinement); needs trained weights")
    capabilities = Capabilities(cartesian=True, noncartesian=False, multicoil=True, singlecoil=True,
                                needs_weights=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Cartesian data with an ACS region, and usable weights (``params.weights``, else the shipped file)."""
        reasons = []
        if not problem.is_cartesian:
            reasons.append("xpdnet reconstructs Cartesian data; for radial or spiral trajectories use ncpdnet "
                           "(the same network with a NUFFT operator)")
        else:
            try:
                calibration_region(problem.mask, (24, 24), min_shape=(2, 2))
            except SamplingError:
                reasons.append("xpdnet estimates coil maps from the fully sampled k-space centre (ACS), and this "
                               "mask has none; choose a mask with centre lines")
        return reasons + weights_reasons(params, "xpdnet")

    def run(self, problem, params, ctx):
        return run_primal_net(problem, params, ctx, "xpdnet")
