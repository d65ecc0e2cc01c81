"""U-net post-processing baseline (fastMRI's U-net on the zero-filled root-sum-of-squares image).

The zero-filled image is cropped to the reconstruction size, normalised by its 99th percentile and corrected by
a U-net trained on synthetic multi-coil brain slices (1 to 16 coils, random and equispaced 1D masks at 4x and
8x). It sees only the image, not the measured data: the "post-processing network" XPDNet is compared with.
On non-Cartesian data the zero-filled image is the density-compensated adjoint, and the shipped weights are
``unet_noncartesian`` (golden-angle radial and spiral at 4x and 8x): NC-PDNet's U-net baseline.
With ``data_consistency`` (on by default, Cartesian data) the U-net's image ends as XPDNet's does: its coil images
(through the problem's coil maps, with the calibration data's phase) get the measured k-space back, and the image
is their root-sum-of-squares (:func:`workbench.scoring.consistent_rss`): over the 80 real Cartesian rows U-net minus
zero filling +0.44 -> +1.44 dB, above it on 67 rows rather than 49 (``benchmarks/results/realdata_deep_unet_dc.md``).
``adapt`` fine-tunes a copy on the scan's own samples first (:mod:`workbench.nn.adapt`; the U-net's magnitude
goes to k-space through its ACS maps, i.e. with the calibration data's phase).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError
from workbench.methods import Capabilities, Method, param
from workbench.nn.inference import AdaptParams, adapt_if_asked, chosen_weights, load_network, weights_reasons
from workbench.nn.weights import read_sidecar
from workbench.result import Result


@dataclass
class Params(AdaptParams):
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
    version = "1.1"  # 1.1: data consistency by default
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
        image = problem.crop(model.reconstruct(batch, lambda f, t: ctx.progress(start + (1 - start) * f, t))[0])
        extras = {"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps"), **adapt_extras}
        if params.data_consistency and problem.is_cartesian:
            from workbench.scoring import IMAGE_IS_CONSISTENT_RSS, consistent_rss

            try:
                image = torch.from_numpy(consistent_rss(problem, image.cpu().numpy())).to(image.device)
                extras["image_is"] = IMAGE_IS_CONSISTENT_RSS
            except WorkbenchError as exc:  # no coil maps (a calibration region too small): the network's image
                extras["data_consistency_note"] = f"not applied: {exc}"
        ctx.progress(1.0, "done")
        return Result(image=image.to(problem.y.dtype), extras=extras)
