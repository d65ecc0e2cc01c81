"""Running a trained reconstruction network as a method: which weight file, the reasons it cannot run, and the
run of the unrolled primal networks (XPDNet on Cartesian data, NC-PDNet on non-Cartesian data: one network,
two operators) with progress, intermediate images and cancellation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.result import Result

__all__ = ["chosen_weights", "load_network", "run_primal_net", "weights_reasons"]


def chosen_weights(params: Any, model: str) -> str | Path:
    """The weight file of ``params.weights`` when set (``params`` may be None), else the shipped one of
    ``model``."""
    from workbench.nn.weights import shipped_weights

    path = getattr(params, "weights", "") if params is not None else ""
    return path or shipped_weights(model)


def weights_reasons(params: Any, model: str, accepted: tuple[str, ...] | None = None) -> list[str]:
    """``check`` reasons about the weights: missing, unreadable, or of another model than ``accepted``
    (default: ``model``)."""
    from workbench.nn.weights import weights_problem

    why = weights_problem(chosen_weights(params, model), accepted or (model,))
    return [why] if why else []


def load_network(problem: Any, params: Any, ctx: Any, model: str, accepted: tuple[str, ...] | None = None
                 ) -> tuple[Any, dict[str, Any], str | Path, Any]:
    """Check the weights (:class:`~workbench.nn.weights.WeightsError` with the reason), report "loading
    weights", load them (cached per file and device) and put the problem into a network batch on
    ``ctx.device``. Returns ``(model, sidecar, path, batch)``."""
    from workbench.nn.batch import Batch
    from workbench.nn.weights import WeightsError, cached_model

    why = weights_reasons(params, model, accepted)
    if why:
        raise WeightsError(None, why[0])
    path = chosen_weights(params, model)
    ctx.progress(0.0, "loading weights")
    network, sidecar = cached_model(path, ctx.device)
    return network, sidecar, path, Batch.from_problem(problem).to(ctx.device)


def run_primal_net(problem: Any, params: Any, ctx: Any, model_name: str) -> Result:
    """Reconstruct with the primal network ``model_name`` (``"xpdnet"`` or ``"ncpdnet"``): load the weights
    (cached per file and device), run with progress in [0.05, 1] and cancellation, end with the hard data
    consistency (``params.data_consistency``, Cartesian only) and the noise floor of the unmeasured samples
    (``params.noise_floor``), and crop. Returns the magnitude image ``[h, w]`` in the data's units."""
    model, sidecar, path, batch = load_network(problem, params, ctx, model_name)

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
    extras = {"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps")}
    if final and problem.is_cartesian:
        from workbench.scoring import IMAGE_IS_RSS, IMAGE_IS_SCAN

        # the RSS of data-consistent coil images: the as-acquired score adds only the unmeasured samples' noise
        extras["image_is"] = IMAGE_IS_RSS
        if getattr(params, "noise_floor", False):
            from workbench.physics.fft import expected_scan_rss

            magnitude = expected_scan_rss(magnitude, problem.mask, problem.n_coils, problem.noise_std)
            extras["image_is"] = IMAGE_IS_SCAN
    image = problem.crop(magnitude).to(problem.y.dtype)
    ctx.progress(1.0, "done")
    return Result(image=image, extras=extras, chosen={"n_iter": model.config.n_iter})
