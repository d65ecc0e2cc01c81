"""U-net post-processing baseline (fastMRI's U-net on the zero-filled root-sum-of-squares image).

The zero-filled image is cropped to the reconstruction size, normalised by its 99th percentile and corrected by
a U-net trained on synthetic multi-coil brain slices (1 to 16 coils, random and equispaced 1D masks at 4x and
8x). It sees only the image, not the measured data: the "post-processing network" XPDNet is compared with.
On non-Cartesian data the zero-filled image is the density-compensated adjoint, and the shipped weights are
``unet_noncartesian`` (golden-angle radial and spiral at 4x and 8x): NC-PDNet's U-net baseline.
By default the U-net's image (with the calibration data's phase) ends as XPDNet's does: one consistency solve
``min ||A x - y||^2 + lam ||x - x_unet||^2`` with ``lam`` chosen per scan by k-space hold-out, or none
(``consistency``, ``consistency_lam``; :mod:`workbench.nn.consistency`), then on Cartesian data the measured
k-space put back into its coil images, whose root-sum-of-squares is the image (``data_consistency``). Both off:
the fastMRI post-processing baseline. The hard step alone: over the 80 real Cartesian rows U-net minus zero
filling +0.44 -> +1.44 dB, above it on 67 rows rather than 49 (``benchmarks/results/realdata_deep_unet_dc.md``).
``adapt`` fine-tunes a copy on the scan's own samples first (:mod:`workbench.nn.adapt`; the U-net's magnitude
goes to k-space through its ACS maps, i.e. with the calibration data's phase); left automatic, it does so for
Cartesian scans of 1 or 2 coils (:data:`~workbench.nn.inference.AUTO_ADAPT_MAX_COILS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.methods import Capabilities, Method, param
from workbench.nn.inference import (AdaptParams, ConsistencyParams, adapt_if_asked, adaptation_choice, chosen_weights,
                                    finish_consistency, load_network, weights_reasons)
from workbench.nn.weights import read_sidecar
from workbench.result import Result


@dataclass
class Params(AdaptParams, ConsistencyParams):
    weights: str = param("", help="weight file (.safetensors with its .json sidecar); empty: the shipped weights "
                              "for the data's sampling (Cartesian masks or non-Cartesian trajectories)")
    data_consistency: bool = param(True, help="Cartesian data: put the measured samples back into the image's "
                                              "coil images and combine them by root-sum-of-squares (off: the "
                                              "network's image, the fastMRI post-processing baseline)")


def _shipped_model(problem) -> str:
    """The shipped weights for the problem's kind of sampling."""
    return "unet" if problem.is_cartesian else "unet_noncartesian"


class UnetBaseline(Method):
    name = "unet"
    version = "1.2"  # 1.1: the consistency solve and the measured data by default; 1.2: adaptation automatic
    description = "U-net post-processing of the zero-filled image (fastMRI baseline); needs trained weights"
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True,
                                needs_weights=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Usable weights (``params.weights``, else the shipped file) trained for this kind of sampling."""
        model = _shipped_model(problem)
        why = weights_reasons(params, model, ("unet",))
        if why:
            return why
        kinds = read_sidecar(chosen_weights(params, model)).get("training", {}).get("sampling", {}).get("kinds", [])
        cartesian_weights = all(k in ("random", "equispaced", "poisson", "gaussian") for k in kinds)
        if kinds and cartesian_weights != problem.is_cartesian:
            trained = "Cartesian masks" if cartesian_weights else "non-Cartesian trajectories"
            return [f"these U-net weights were trained on {trained} ({', '.join(kinds)}); the data are "
                    f"{'Cartesian' if problem.is_cartesian else 'non-Cartesian'}: choose matching weights"]
        return []

    def run(self, problem, params, ctx) -> Result:
        model, sidecar, path, batch = load_network(problem, params, ctx, _shipped_model(problem), ("unet",))
        model, adapt_extras, start = adapt_if_asked(model, problem, batch, params, ctx)
        ctx.check_cancelled()
        half = lambda f, t: ctx.progress(start + (1 - start) * 0.5 * f, t)  # noqa: E731
        image = problem.crop(model.reconstruct(batch, half)[0])
        extras = {"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps"), **adapt_extras}
        chosen: dict = adaptation_choice(params, problem)
        final = params.data_consistency and problem.is_cartesian
        if final or params.consistency:
            image = self._consistent(model, image, problem, params, ctx, start, final, extras, chosen)
        ctx.progress(1.0, "done")
        return Result(image=image.to(problem.y.dtype), extras=extras, chosen=chosen)

    @staticmethod
    def _consistent(model, image, problem, params, ctx, start, final, extras, chosen):
        """The U-net's image through the consistency solve and / or the hard data-consistency step
        (:func:`~workbench.nn.inference.finish_consistency`), with the encoding the unrolled networks use (the
        problem's coil maps, ESPIRiT on Cartesian data; maps everywhere); the network's image where no coil maps
        can be had. The weight's hold-out runs the U-net again on the kept samples (its image keeps the zero-filled
        image's held-out samples, which no solve can beat)."""
        from workbench.nn.batch import Batch
        from workbench.nn.consistency import image_solution
        from workbench.scoring import IMAGE_IS_CONSISTENT_RSS

        def encoding_for(p):
            return Batch.from_problem(p, with_maps=True).to(ctx.device).encoding((24, 24), 0.0, "espirit")

        def progress(fraction, text):
            ctx.check_cancelled()
            ctx.progress(start + (1 - start) * (0.5 + 0.5 * fraction), text)

        def rerun(kept):
            kept_image = kept.crop(model.reconstruct(Batch.from_problem(kept).to(ctx.device))[0])
            return image_solution(kept_image, kept, encoding_for)

        try:
            solution = image_solution(image, problem, encoding_for)
            x = finish_consistency(solution, problem, params, encoding_for, progress, final, extras, chosen, rerun)
        except WorkbenchError as exc:  # no coil maps (a calibration region too small): the network's image
            extras["consistency_note"] = f"not applied: {exc}"
            return image
        if final:
            extras["image_is"] = IMAGE_IS_CONSISTENT_RSS
        return problem.crop(x.abs())
