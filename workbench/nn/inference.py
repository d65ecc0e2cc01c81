"""Running a trained reconstruction network as a method: which weight file, the reasons it cannot run, and the
run of the unrolled primal networks (XPDNet on Cartesian data, NC-PDNet on non-Cartesian data: one network,
two operators) with progress, intermediate images and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.methods import param
from workbench.result import Result

__all__ = ["AUTO_ADAPT_MAX_COILS", "AdaptParams", "ConsistencyParams", "PrimalAdaptParams", "adapt_if_asked",
           "adapt_patience_param", "adaptation_choice", "chosen_weights", "finish_consistency", "load_network",
           "run_primal_net", "wants_adaptation", "weights_reasons"]

#: ``adapt`` left automatic (None) adapts Cartesian scans with at most this many coils. Decided on the real rows
#: (benchmarks/results/realdata_deep_current_adapt*.md, realdata_deep_unet_adapt*.md): on the 64 Cartesian rows of 1-2
#: coils adaptation took XPDNet's rows at issue 14's margin from 31 to 36 and those below CG-SENSE from 10 to 5, and
#: the U-net's rows above zero filling from 52 to 59; on the 8-coil head it cost XPDNet 0.43 dB, and on the radial
#: 1-2 coil rows it cost NC-PDNet up to 4 dB (which keeps it off).
AUTO_ADAPT_MAX_COILS = 2


def adapt_patience_param(default: int) -> Any:
    """The ``adapt_patience`` parameter with a plugin's own default (XPDNet's differs from the shared one)."""
    return param(default, min=1, max=1000, label="adapt patience",
                 help="held-out checks (every 3 steps) without improvement before the fine-tuning stops; the steps "
                      "and the time budget stop it too")


@dataclass
class AdaptParams:
    """The plugin parameters of scan-specific adaptation (:mod:`workbench.nn.adapt`); a plugin's Params
    inherits them (and may redeclare a default)."""

    adapt: bool | None = param(None, help="fine-tune a copy of the network on this scan's own measured samples "
                                          "first (self-supervised: reconstruct from part of them, predict another "
                                          "part, stop when a held-out part is predicted best; never worse on the "
                                          "held-out part); auto: on for Cartesian scans of 1 or 2 coils, where it "
                                          "helped on the real scans, off otherwise (wants_adaptation)")
    adapt_steps: int = param(30, min=1, max=10000, help="most fine-tuning steps (for the U-net, more lowered "
                                                        "the held-out error further but not the image error)")
    adapt_seconds: float = param(60.0, min=1.0, max=3600.0, unit="s",
                                 help="time budget of the adaptation and reconstruction together")
    adapt_lr: float = param(1e-4, min=1e-7, max=1.0, log_scale=True, label="adapt learning rate",
                            help="Adam learning rate of the fine-tuning")
    adapt_patience: int = adapt_patience_param(3)


@dataclass
class ConsistencyParams:
    """The plugin parameters of the networks' final consistency solve (:mod:`workbench.nn.consistency`); on by
    default, decided on the real rows (``benchmarks/results/consistency_weights.md``)."""

    consistency: bool = param(True, label="consistency solve",
                              help="end with min ||Ax - y||^2 + lam ||x - x_net||^2 started at the network's image "
                                   "x_net (uses the measured samples through the coil maps where the network "
                                   "missed them); off: the network's image")
    consistency_lam: float | None = param(None, min=1e-4, max=100.0, log_scale=True, label="consistency weight",
                                          help="lam of the consistency solve (relative to ||A||^2 = 1; small: "
                                               "closer to CG-SENSE); empty/auto = chosen by k-space hold-out, "
                                               "or no solve when no weight predicts held-out samples better "
                                               "than the network")


@dataclass
class PrimalAdaptParams(AdaptParams, ConsistencyParams):
    """The unrolled networks' parameters: whether their coil maps are refined, and their :class:`AdaptParams`:
    which parameters train, a larger learning rate, and more steps (their held-out check stops them; the U-net's
    image got worse past ~30 steps while its held-out error still fell: ``benchmarks/results/adaptation.md``)."""

    adapt_steps: int = param(100, min=1, max=10000, help="most fine-tuning steps (the held-out check usually "
                                                         "stops it after 20-60)")
    # every parameter at 3e-4, decided on the full real rows (benchmarks/results/realdata_deep_*adapt_all.md against
    # *adapt_last.md): XPDNet minus the best classical method +1.16 dB against +0.75 for the last image network at
    # 1e-3 (24 Cartesian rows); NC-PDNet minus TV -0.76 against -2.11 (12 radial rows; -0.75 without adaptation)
    adapt_lr: float = param(3e-4, min=1e-7, max=1.0, log_scale=True, label="adapt learning rate",
                            help="Adam learning rate of the fine-tuning")
    adapt_trainable: str = param("all", choices=("last", "image", "all"), label="adapt which",
                                 help="parameters fine-tuned: everything (with the coil-map refinement when "
                                      "refine_maps is on), all image networks, or the last iteration's image "
                                      "network (fastest)")
    # off by default, decided on the real rows: the refinement trained on synthetic coils moved the real 8-coil
    # head's maps by half their energy; off, XPDNet gained 0.08 dB over the 80 Cartesian rows (head +0.20, better
    # on 58) and NC-PDNet 0.07 dB over the 28 radial rows (benchmarks/results/realdata_deep_*norefine*.md)
    refine_maps: bool = param(False, label="refine coil maps",
                              help="the network's learned refinement of the ESPIRiT / ACS coil maps, for weights "
                                   "that have one (off: the maps as estimated, the ones the classical methods use; "
                                   "better on the real scans)")


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
    # networks built on the problem's own coil maps get them with the batch (the same maps as the classical methods)
    with_maps = getattr(network.config, "initial_maps", "acs") == "espirit"
    return network, sidecar, path, Batch.from_problem(problem, with_maps=with_maps).to(ctx.device)


def adapt_if_asked(model: Any, problem: Any, batch: Any, params: Any, ctx: Any) -> tuple[Any, dict[str, Any], float]:
    """With ``params.adapt``: scan-specific self-supervised adaptation (:func:`workbench.nn.adapt.adapt`) of a
    copy of ``model`` with ``params.adapt_steps``, ``adapt_seconds``, ``adapt_lr`` (and ``adapt_trainable``
    where declared), progress in [0.05, 0.85] and cancellation. Returns ``(model to reconstruct with, Result
    extras, progress fraction where the reconstruction starts)``; without ``adapt``: ``(model, {}, 0.05)``."""
    if not wants_adaptation(params, problem):
        return model, {}, 0.05
    from workbench.nn.adapt import AdaptOptions, adapt

    options = AdaptOptions(steps=params.adapt_steps, seconds=params.adapt_seconds, lr=params.adapt_lr,
                           trainable=getattr(params, "adapt_trainable", AdaptOptions.trainable),
                           patience=params.adapt_patience)

    def progress(fraction, text):
        ctx.check_cancelled()
        ctx.progress(0.05 + 0.8 * fraction, text)

    result = adapt(model, problem, options, progress, batch)
    return result.model, result.extras, 0.85


def wants_adaptation(params: Any, problem: Any) -> bool:
    """``params.adapt``, or when it is left automatic (None), whether ``problem`` is Cartesian with at most
    :data:`AUTO_ADAPT_MAX_COILS` coils."""
    adapt = getattr(params, "adapt", False)
    if adapt is not None:
        return bool(adapt)
    return problem.is_cartesian and problem.n_coils <= AUTO_ADAPT_MAX_COILS


def adaptation_choice(params: Any, problem: Any) -> dict[str, Any]:
    """``Result.chosen``'s entries for an automatic ``adapt`` (what it became and why); {} when it was set."""
    if getattr(params, "adapt", False) is not None:
        return {}
    rule = (f"{problem.n_coils} coils; on for at most {AUTO_ADAPT_MAX_COILS}" if problem.is_cartesian
            else "non-Cartesian: off")
    return {"adapt": wants_adaptation(params, problem), "adapt_rule": rule}


def run_primal_net(problem: Any, params: Any, ctx: Any, model_name: str) -> Result:
    """Reconstruct with the primal network ``model_name`` (``"xpdnet"`` or ``"ncpdnet"``): load the weights
    (cached per file and device), run with progress in [0.05, 1] and cancellation, end with the hard data
    consistency (``params.data_consistency``, Cartesian only) and the noise floor of the unmeasured samples
    (``params.noise_floor``), and crop; with ``params.consistency``, the network's image goes through the
    consistency solve first (:func:`finish_consistency`); with ``params.adapt``, a scan-adapted copy of
    the network (:func:`adapt_if_asked`). Returns the magnitude image ``[h, w]`` in the data's units."""
    model, sidecar, path, batch = load_network(problem, params, ctx, model_name)
    if not getattr(params, "refine_maps", True):
        model = model.without_map_refinement()
    model, adapt_extras, start = adapt_if_asked(model, problem, batch, params, ctx)

    def progress(fraction, text):
        ctx.check_cancelled()
        ctx.progress(start + (1 - start) * fraction, text)

    def iterate(x):
        if ctx.wants_iterates:
            ctx.report_iterate(problem.crop(x[0].abs()).to("cpu"))

    # Cartesian only: the non-Cartesian operator has no exact projection and leaves the image as it is
    final = getattr(params, "data_consistency", None)
    extras = {"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps"), **adapt_extras}
    chosen: dict[str, Any] = {"n_iter": model.config.n_iter, **adaptation_choice(params, problem)}
    x = _reconstruct(model, problem, batch, params, ctx, progress, iterate, final, extras, chosen)
    magnitude = x.abs()
    if final and problem.is_cartesian:
        from workbench.scoring import IMAGE_IS_CONSISTENT_RSS, IMAGE_IS_SCAN

        # the RSS of data-consistent coil images: the as-acquired score adds only the unmeasured samples' noise;
        # they hold the network's prediction on the unmeasured samples, which the hold-out scores
        extras["image_is"] = IMAGE_IS_CONSISTENT_RSS
        if getattr(params, "noise_floor", False):
            from workbench.physics.fft import expected_scan_rss

            magnitude = expected_scan_rss(magnitude, problem.mask, problem.n_coils, problem.noise_std)
            extras["image_is"] = IMAGE_IS_SCAN
    image = problem.crop(magnitude).to(problem.y.dtype)
    ctx.progress(1.0, "done")
    return Result(image=image, extras=extras, chosen=chosen)


def _reconstruct(model, problem, batch, params, ctx, progress, iterate, final, extras, chosen):
    """The network's image, through the consistency solve when asked, and the hard data-consistency step
    (:func:`finish_consistency`). Complex ``[H, W]``, data units."""
    from workbench.nn.batch import Batch

    n = model.config.n_iter

    def report(i, x):
        progress(0.8 * (i + 1) / n, f"iteration {i + 1}/{n}")
        iterate(x)

    solution = model.solve(batch, report)
    with_maps = getattr(model.config, "initial_maps", "acs") == "espirit"

    def encoding_for(p):
        return model.encoding(Batch.from_problem(p, with_maps=with_maps).to(ctx.device))

    if final is None:
        final = model.config.final_data_consistency
    return finish_consistency(solution, problem, params, encoding_for, lambda f, t: progress(0.8 + 0.2 * f, t),
                              bool(final) and problem.is_cartesian, extras, chosen)


def finish_consistency(solution: Any, problem: Any, params: Any, encoding_for: Any, progress: Any, final: bool,
                       extras: dict, chosen: dict, rerun: Any = None) -> Any:
    """A network's :class:`~workbench.nn.consistency.NetworkSolution` through the consistency solve with
    ``params.consistency_lam``, or the weight chosen by hold-out (:func:`~workbench.nn.consistency.
    choose_consistency_lam` with ``encoding_for(problem)`` and ``rerun``), when ``params.consistency``; then,
    with ``final``, the hard data-consistency step. Records the weight in ``chosen`` and the hold-out's errors in
    ``extras``; ``progress(fraction, text)`` in [0, 1]. Returns the complex image ``[H, W]`` in data units."""
    from workbench.nn.consistency import choose_consistency_lam

    x = solution.x
    if getattr(params, "consistency", False):
        lam = params.consistency_lam
        if lam is None:
            choice = choose_consistency_lam(solution, problem, encoding_for, lambda f, t: progress(0.5 * f, t),
                                            rerun=rerun)
            lam = choice.lam
            extras["consistency_holdout"] = {f"{k:g}": round(v, 4) for k, v in choice.errors.items()}
            if choice.note:
                extras["consistency_note"] = choice.note
            chosen["consistency_lam_rule"] = "hold-out"
            if lam is None:  # the rule kept the network's image: validating this run means running without it
                chosen["consistency"] = False
        if lam is not None:
            progress(0.5, f"consistency solve, lam {lam:g}")
            x = solution.consistent([lam])[lam]
        chosen["consistency_lam"] = lam
    return solution.output(x, final)[0]
