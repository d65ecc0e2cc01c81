"""XPDNet (Ramzi et al., fastMRI challenge 2020): an unrolled primal network with learned coil-map refinement.

Each of the unrolled iterations feeds a buffer of 5 complex images and the data-consistency residual
``A^H (A x - y)`` to its own multi-level wavelet CNN, which updates the buffer; coil maps are estimated from the
ACS lines and refined by a small U-net. By default the network's output goes through a hard data-consistency
step: the measured k-space samples go back into the output's coil images, whose root-sum-of-squares is the
image, with the scanner noise of the unmeasured samples added in quadrature (the expected RSS of the fully
sampled scan; ``benchmarks/results/deep.md`` has the figures with and without). Trained on synthetic multi-coil
brain slices (1 to 16 coils, random and equispaced 1D masks at 4x and 8x). The same network with a NUFFT
operator is NC-PDNet (plugin ``ncpdnet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods import Capabilities, Method, param
from workbench.result import Result


@dataclass
class Params:
    weights: str = param("", help="weight file (.safetensors with its .json sidecar); empty: the shipped weights")
    data_consistency: bool = param(True, help="end with the measured k-space: put the measured samples back into "
                                              "the output's coil images and combine them by root-sum-of-squares "
                                              "(off: the network's own output)")
    noise_floor: bool = param(True, help="with data consistency: add the scanner noise of the unmeasured samples "
                                         "in quadrature, sqrt(|x|^2 + C (1 - f) noise_std^2), so that the image "
                                         "is the expected root-sum-of-squares of the fully sampled scan, "
                                         "background noise floor included (the fastMRI reference's definition)")


def _weights_path(params_or_none, model: str):
    from workbench.nn.weights import shipped_weights

    path = getattr(params_or_none, "weights", "") if params_or_none is not None else ""
    return path or shipped_weights(model)


def run_primal_net(method: Method, model_names: tuple[str, ...], problem, params, ctx) -> Result:
    """Shared by the xpdnet and ncpdnet plugins: load the weights (cached), run with progress, crop."""
    from workbench.nn.batch import Batch
    from workbench.nn.weights import cached_model

    from workbench.nn.weights import WeightsError, weights_problem

    path = _weights_path(params, model_names[0])
    why = weights_problem(path, model_names)
    if why:
        raise WeightsError(None, why)
    ctx.progress(0.0, "loading weights")
    model, sidecar = cached_model(path, ctx.device)
    batch = Batch.from_problem(problem).to(ctx.device)

    def progress(fraction, text):
        ctx.check_cancelled()
        ctx.progress(0.05 + 0.95 * fraction, text)

    def iterate(x):
        if ctx.wants_iterates:
            ctx.report_iterate(problem.crop(x[0].abs()).to("cpu"))

    # Cartesian only: the non-Cartesian operator has no exact projection and leaves the image as it is
    final = getattr(params, "data_consistency", None)
    x = model.reconstruct(batch, progress, iterate, final_data_consistency=final)[0]
    magnitude = x.abs()
    if final and problem.is_cartesian and getattr(params, "noise_floor", False):
        from workbench.physics.fft import expected_scan_rss

        magnitude = expected_scan_rss(magnitude, problem.mask, problem.n_coils, problem.noise_std)
    image = problem.crop(magnitude).to(problem.y.dtype)
    ctx.progress(1.0, "done")
    return Result(image=image, extras={"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps")},
                  chosen={"n_iter": model.config.n_iter})


class XPDNet(Method):
    name = "xpdnet"
    version = "1.0"
    description = ("XPDNet: unrolled primal network (MWCNN per iteration, residual data consistency, learned coil "
                   "map refinement); needs trained weights")
    capabilities = Capabilities(cartesian=True, noncartesian=False, multicoil=True, singlecoil=True,
                                needs_weights=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Cartesian data with an ACS region, and usable weights (``params.weights``, else the shipped file)."""
        from workbench.nn.weights import weights_problem

        reasons = []
        if not problem.is_cartesian:
            reasons.append("xpdnet reconstructs Cartesian data; for radial or spiral trajectories use ncpdnet "
                           "(the same network with a NUFFT operator)")
        else:
            from workbench.errors import SamplingError
            from workbench.physics.coils import calibration_region

            try:
                calibration_region(problem.mask, (24, 24), min_shape=(2, 2))
            except SamplingError:
                reasons.append("xpdnet estimates coil maps from the fully sampled k-space centre (ACS), and this "
                               "mask has none; choose a mask with centre lines")
        why = weights_problem(_weights_path(params, "xpdnet"), ("xpdnet",))
        if why:
            reasons.append(why)
        return reasons

    def run(self, problem, params, ctx) -> Result:
        return run_primal_net(self, ("xpdnet",), problem, params, ctx)
