"""A score without a reference: k-space hold-out validation.

A seeded random part (:data:`DEFAULT_FRACTION`, 5-10 %) of the measured samples outside the calibration region is
held out; the method runs again on the rest, and its prediction ``P_h F S x`` of the held-out samples ``y_h``
(``x`` its image, ``S`` the coil maps, ``P_h`` the held-out positions) is compared with them: the normalised error
``||y_h - P_h F S x||^2 / ||y_h||^2`` (:func:`prediction_error`) and the correlation ``rho = Re<y_h, P_h F S x> /
(||y_h|| ||P_h F S x||)``. The score (:func:`estimated_nmse`) is the scan's k-space NMSE that they predict for the
scored run's image ``x0``: on a Cartesian grid the unmeasured samples' error ``||y_u - F_u S x0||^2 = ||y_u||^2 +
||F_u S x0||^2 - 2 rho ||y_u|| ||F_u S x0||``, whose middle term (what the run puts where nothing was measured) is
known exactly, ``||y_u||^2`` is estimated from the measured energy profile, and only ``rho`` comes from the held-out
samples; plus the run's residual on the measured samples; over the scan's estimated energy (lower is better; it
compares methods across accelerations too). It needs no reference, so it ranks methods on prospective scans.

Why the correlation and not the relative error: a held-out line lies in a wider gap than the unmeasured ones and
farther from the k-space centre (the fully sampled centre is never held out), so what a method puts there is not
what it puts on the unmeasured lines: CG-SENSE on the 2-coil GRE phantom at R = 4 puts 0.95 of the data's energy on
the held-out lines, 0.50 on the unmeasured ones, and the relative error ranked it (and TV, l1-wavelet) below zero
filling (``benchmarks/results/holdout.md``). Non-Cartesian samplings, which have no unmeasured grid, keep the
relative error times the unmeasured energy.

The score's rule (:func:`holdout_score`, the CLI's ``--validate``, the app's Validate) runs :data:`DEFAULT_FOLDS`
disjoint folds (:func:`folds`) and pools their sums. For a line mask each fold holds out whole measured
lines off the fully sampled centre: they are then missing as the unmeasured lines are (a held-out sample on a
measured line is predicted from its measured readout neighbours, which made every interpolating method look
better against zero filling than it is). Other Cartesian masks: measured
grid samples outside the calibration box (``problem.calib``, :func:`split`); non-Cartesian: trajectory samples
outside the calibration radius, their density compensation taken from the kept ones. The coil maps come from the
calibration data, which is never held out, so the runs on the rest reuse the problem's maps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from workbench.errors import SamplingError

__all__ = ["DEFAULT_FRACTION", "DEFAULT_SEED", "DEFAULT_FOLDS", "HoldOut", "split", "folds", "readouts",
           "prediction_error",
           "estimated_nmse", "residuals", "scored_part", "kspace_nmse", "params_as_run", "holdout_score", "summary",
           "pooled_summary", "jackknife_se", "separated", "score_text", "SEPARATED"]

DEFAULT_FRACTION = 0.07
DEFAULT_SEED = 0
DEFAULT_FOLDS = 4
#: standard errors (combined) by which two runs' hold-out NMSEs must differ for the score to rank them (about 95 %)
SEPARATED = 2.0


class HoldOut:
    """A problem with some measured samples held out: ``train`` (the Problem without them), ``held`` (bool:
    Cartesian ``[H, W]`` grid positions, non-Cartesian ``[K]`` samples of the original problem), ``fraction``
    (of the measured samples), ``seed``."""

    def __init__(self, original: Any, train: Any, held: torch.Tensor, fraction: float, seed: int):
        self.original, self.train, self.held, self.fraction, self.seed = original, train, held, fraction, seed

    @property
    def n_held(self) -> int:
        return int(self.held.sum())


def _column_mask(mask: torch.Tensor) -> bool:
    return bool(torch.equal(mask, mask.any(0, keepdim=True).expand_as(mask)))


def _eligible_cartesian(problem: Any) -> torch.Tensor:
    """Measured samples outside the calibration box; for a line mask, outside its fully sampled centre lines
    (those are not drawn like the unmeasured ones and carry most of the energy), so that the held-out samples
    lie on lines drawn as the unmeasured ones are."""
    (h, w), (ch, cw), mask = problem.grid_shape, problem.calib, problem.mask
    outside = torch.ones(h, w, dtype=torch.bool, device=mask.device)
    if _column_mask(mask):
        cols = mask.any(0).tolist()
        lo, hi = w // 2, w // 2
        while lo > 0 and cols[lo - 1]:
            lo -= 1
        while hi < w and cols[hi]:
            hi += 1
        outside[:, lo:hi] = False
    else:
        outside[h // 2 - ch // 2: h // 2 - ch // 2 + ch, w // 2 - cw // 2: w // 2 - cw // 2 + cw] = False
    return mask & outside


def _kept_settings(problem: Any) -> dict[str, Any]:
    """The Problem settings a hold-out's kept part shares with ``problem`` (reference, data range, device, maps
    and their method, calibration box, sampling)."""
    return dict(reference=problem.reference, data_range=problem.data_range, device=problem.device,
                maps_method=problem.maps_method, calib=problem.calib, sampling=problem.sampling,
                maps=problem.maps if problem.has_maps else None)


def split(problem: Any, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> HoldOut:
    """Hold out ``fraction`` of ``problem``'s measured samples (chosen with ``seed`` among those outside the
    calibration region); the kept problem shares the reference, data range, maps (when known) and settings."""
    from workbench.problem import Problem

    if not 0 < fraction < 0.5:
        raise SamplingError(f"hold-out fraction must be in (0, 0.5), got {fraction}")
    rng = np.random.default_rng(seed)
    common = {**_kept_settings(problem),
              "provenance": {**problem.provenance, "holdout": {"fraction": fraction, "seed": seed}}}
    if problem.is_cartesian:
        eligible = _eligible_cartesian(problem)
        n_measured = int(problem.mask.sum())
    else:
        radius = problem.trajectory.pow(2).sum(0).sqrt()  # radians: pi at the grid's edge
        calib_radius = math.pi * max(problem.calib) / max(problem.grid_shape)
        eligible = radius > calib_radius
        n_measured = int(problem.y.shape[-1])
    candidates = torch.nonzero(eligible.reshape(-1)).reshape(-1).cpu().numpy()
    n = min(int(round(fraction * n_measured)), len(candidates) // 2)
    if n < 1:
        raise SamplingError("no measured samples outside the calibration region to hold out")
    held = torch.zeros(eligible.numel(), dtype=torch.bool)
    held[torch.from_numpy(rng.choice(candidates, size=n, replace=False))] = True
    held = held.reshape(eligible.shape).to(eligible.device)
    if problem.is_cartesian:
        keep = problem.mask & ~held
        train = Problem(problem.y * keep, problem.grid_shape, problem.recon_shape, mask=keep, **common)
    else:
        keep = ~held
        dcf = None if problem.dcf is None else problem.dcf[keep]
        train = Problem(problem.y[:, keep], problem.grid_shape, problem.recon_shape,
                        trajectory=problem.trajectory[:, keep], dcf=dcf, **common)
    measured = int(problem.mask.sum()) if problem.is_cartesian else int(problem.y.shape[-1])
    return HoldOut(problem, train, held, int(held.sum()) / measured, seed)


def readouts(trajectory: torch.Tensor) -> torch.Tensor:
    """The readout of each sample ``[K]`` (int64, from 0) of a trajectory ``[2, K]`` stored readout by readout:
    a new readout starts where the step from the previous sample is more than 4 times the median step (a radial
    spoke ends at one edge and the next starts at another; a spiral interleaf ends at the edge and the next starts
    at the centre)."""
    step = (trajectory[:, 1:] - trajectory[:, :-1]).pow(2).sum(0).sqrt()
    if step.numel() == 0:
        return torch.zeros(trajectory.shape[1], dtype=torch.long, device=trajectory.device)
    jump = step > 4 * step.median().clamp_min(1e-12)
    return torch.cat([torch.zeros(1, dtype=torch.long, device=step.device), jump.long().cumsum(0)])


def _readout_folds(problem: Any, n_folds: int, fraction: float, seed: int) -> list[HoldOut]:
    """Non-Cartesian folds of whole readouts (:func:`readouts`), each held out outside the calibration radius
    only (inside it the samples stay: the coil maps come from there, and the centre is sampled densely, where the
    gaps between readouts are not what is missing elsewhere)."""
    from workbench.problem import Problem

    group = readouts(problem.trajectory)
    n_groups = int(group.max()) + 1
    n = max(1, int(round(fraction * n_groups)))
    if n_groups < 4 or n > n_groups // 2:
        raise SamplingError(f"hold-out: {n_groups} readouts are too few to hold out {n}")
    n_folds = min(n_folds, n_groups // 2 // n)
    radius = problem.trajectory.pow(2).sum(0).sqrt()
    outside = radius > math.pi * max(problem.calib) / max(problem.grid_shape)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n_groups)).to(group.device)
    common = _kept_settings(problem)
    out = []
    for f in range(n_folds):
        held = torch.isin(group, order[f * n:(f + 1) * n]) & outside
        if not bool(held.any()):
            raise SamplingError("hold-out: the held-out readouts have no samples outside the calibration radius")
        keep = ~held
        train = Problem(problem.y[:, keep], problem.grid_shape, problem.recon_shape,
                        trajectory=problem.trajectory[:, keep],
                        dcf=None if problem.dcf is None else problem.dcf[keep],
                        provenance={**problem.provenance, "holdout": {"fraction": fraction, "seed": seed,
                                                                      "fold": f, "readouts": True}}, **common)
        out.append(HoldOut(problem, train, held, int(held.sum()) / int(problem.y.shape[-1]), seed))
    return out


def folds(problem: Any, n_folds: int = DEFAULT_FOLDS, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED,
          lines: bool | None = None) -> list[HoldOut]:
    """``n_folds`` disjoint hold-out splits of ``problem`` (one seeded permutation of the eligible candidates,
    each fold the next ``fraction`` of the measured ones; fewer folds when they would take more than half of
    the candidates), whose errors :func:`summary` pools. ``lines`` (None:
    whenever the mask is a line mask): the candidates are whole measured lines off the fully sampled centre, so
    that what is held out is missing as the unmeasured lines are (a held-out sample on a measured line is
    predicted from its measured neighbours along the readout, which flatters every interpolating method against
    zero filling); else single samples (:func:`split`, an independent seeded split per fold). ``lines=True`` on
    non-Cartesian data: whole readouts outside the calibration radius (:func:`_readout_folds`)."""
    from workbench.problem import Problem

    if not 0 < fraction < 0.5 or n_folds < 1 or n_folds * fraction >= 0.9:
        raise SamplingError(f"hold-out: {n_folds} folds of {fraction} of the measured samples do not fit")
    if lines is None:
        lines = problem.is_cartesian and _column_mask(problem.mask)
    if lines and not problem.is_cartesian:
        return _readout_folds(problem, n_folds, fraction, seed)
    if not lines:
        if n_folds == 1:
            return [split(problem, fraction, seed)]
        rng = np.random.default_rng(seed)
        return [split(problem, fraction, int(s)) for s in rng.integers(0, 2**31, n_folds)]
    if not (problem.is_cartesian and _column_mask(problem.mask)):
        raise SamplingError("hold-out of whole lines needs a Cartesian line mask")
    cols = problem.mask.any(0)
    candidates = np.flatnonzero(_eligible_cartesian(problem).any(0).cpu().numpy())
    n = max(1, int(round(fraction * int(cols.sum()))))
    if n > len(candidates) // 2:
        raise SamplingError(f"hold-out: the line mask has {len(candidates)} measured lines off its centre, too "
                            f"few to hold out {n}")
    n_folds = min(n_folds, len(candidates) // 2 // n)  # the folds together take at most half of them
    order = np.random.default_rng(seed).permutation(candidates)
    common = _kept_settings(problem)
    out = []
    for f in range(n_folds):
        held_cols = torch.zeros_like(cols)
        held_cols[torch.from_numpy(order[f * n:(f + 1) * n]).to(cols.device)] = True
        held = problem.mask & held_cols[None, :]
        keep = problem.mask & ~held
        train = Problem(problem.y * keep, problem.grid_shape, problem.recon_shape, mask=keep,
                        provenance={**problem.provenance, "holdout": {"fraction": fraction, "seed": seed,
                                                                      "fold": f, "lines": True}}, **common)
        out.append(HoldOut(problem, train, held, int(held.sum()) / int(problem.mask.sum()), seed))
    return out


def _grid_image(problem: Any, maps: Any, image: Any, phase_from: Any) -> Any:
    """The image ``x`` on ``problem``'s grid (padded; a magnitude-only image gets the calibration phase of
    ``phase_from``, by the rule of the as-acquired score, :func:`workbench.scoring.as_acquired`)."""
    from workbench.scoring import ScoreError, calibration_phase, complex_on_grid

    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if not np.isfinite(img).all():
        raise ScoreError("the reconstruction has NaN or infinite pixels: no hold-out error is defined")
    return complex_on_grid(img, problem.grid_shape, maps.device, lambda: calibration_phase(phase_from, maps))


def residuals(holdout: HoldOut, image: Any, image_is: str | None = None) -> tuple[float, float, float, float]:
    """``(||y_h||^2, ||y_h - P_h F S x||^2, ||P_kept (y - F S x)||^2, ||P_h F S x||^2)`` of the image ``x``
    reconstructed from ``holdout.train``."""
    from workbench.physics.fft import fft2c
    from workbench.scoring import IMAGE_IS_RSS, IMAGE_IS_SCAN, ScoreError

    problem, train = holdout.original, holdout.train
    y_held = problem.y[:, holdout.held]
    held_energy = float(y_held.abs().pow(2).sum())
    if held_energy == 0:
        raise ScoreError("the held-out samples are all zero: no hold-out error is defined")
    if image_is in (IMAGE_IS_RSS, IMAGE_IS_SCAN):
        # the RSS of the kept data's own coil images: they hold the kept samples and nothing elsewhere (the
        # image itself is not needed)
        return held_energy, held_energy, 0.0, 0.0
    maps = train.maps
    x = _grid_image(problem, maps, image, train)
    if problem.is_cartesian:
        k = fft2c(maps * x)
        predicted, kept_residual = k[:, holdout.held], (train.y - k)[:, train.mask]
    else:
        from workbench.problem import Problem

        at_held = Problem(y_held, problem.grid_shape, trajectory=problem.trajectory[:, holdout.held], maps=maps,
                          device=problem.device)
        predicted = at_held.A.forward(x)
        kept_residual = train.y - Problem(train.y, problem.grid_shape, trajectory=train.trajectory, maps=maps,
                                          device=problem.device).A.forward(x)
    return (held_energy, float((y_held - predicted).abs().pow(2).sum()), float(kept_residual.abs().pow(2).sum()),
            float(predicted.abs().pow(2).sum()))


def scored_part(problem: Any, image: Any, image_is: str | None = None) -> tuple[float, float]:
    """``(||P_m (y - F S x)||^2, ||P_u F S x||^2)`` of the scored run's image ``x`` (reconstructed from all of
    ``problem``'s measured samples): its residual on the measured samples and, on a Cartesian grid, the energy
    it puts on the unmeasured grid samples (0 off the grid, where the score does not use it). An image declared
    the RSS of the measured data's coil images (or a scan of them) holds the measured samples and nothing else:
    ``(0, 0)``."""
    from workbench.physics.fft import fft2c
    from workbench.scoring import IMAGE_IS_RSS, IMAGE_IS_SCAN, ScoreError

    if image_is in (IMAGE_IS_RSS, IMAGE_IS_SCAN):
        return 0.0, 0.0
    if image is None:
        raise ScoreError("the hold-out score needs the scored run's image (its residual and what it puts on the "
                         "unmeasured samples)")
    maps = problem.maps
    x = _grid_image(problem, maps, image, problem)
    if problem.is_cartesian:
        k = fft2c(maps * x)
        return (float((problem.y - k)[:, problem.mask].abs().pow(2).sum()),
                float(k[:, ~problem.mask].abs().pow(2).sum()))
    return float((problem.y - problem.A.forward(x)).abs().pow(2).sum()), 0.0


def kspace_nmse(problem: Any, full_y: Any, image: Any, image_is: str | None = None) -> float:
    """What :func:`estimated_nmse` estimates, where the fully sampled data ``full_y`` (``[C, H, W]``, on
    ``problem``'s Cartesian grid) are known (benchmarks): ``||y - F S x||^2 / ||y||^2`` over the whole grid, with
    the measured samples of an image declared the RSS of the measured data's coil images kept as measured (and
    zero elsewhere)."""
    from workbench.physics.fft import fft2c
    from workbench.scoring import IMAGE_IS_RSS, IMAGE_IS_SCAN

    full_y = torch.as_tensor(full_y).to(problem.y.device)
    if image_is in (IMAGE_IS_RSS, IMAGE_IS_SCAN):
        predicted = problem.y * problem.mask
    else:
        predicted = fft2c(problem.maps * _grid_image(problem, problem.maps, image, problem))
    return float((full_y - predicted).abs().pow(2).sum() / full_y.abs().pow(2).sum())


def prediction_error(holdout: HoldOut, image: Any, image_is: str | None = None) -> float:
    """``||y_h - P_h F S x||^2 / ||y_h||^2`` for the image ``x`` (``[h, w]``, padded to the grid) reconstructed
    from ``holdout.train``. Coil images from the image by the rule of the as-acquired score
    (:func:`workbench.scoring.as_acquired`): ``S x`` (a magnitude-only image with the phase of the calibration
    data); an image declared the RSS of the kept data's coil images predicts zero at every held-out sample."""
    held_energy, held_residual = residuals(holdout, image, image_is)[:2]
    return held_residual / held_energy


def _unmeasured_energy(problem: Any) -> float | None:
    """For a line mask: the unmeasured lines' energy, each line's interpolated (log-linearly, along the phase
    encode) from the measured lines' energies; None for other samplings."""
    if not problem.is_cartesian or not _column_mask(problem.mask):
        return None
    cols = problem.mask.any(0).cpu().numpy()
    energy = problem.y.abs().pow(2).sum((0, 1)).double().cpu().numpy()
    measured, unmeasured = np.flatnonzero(cols), np.flatnonzero(~cols)
    tiny = max(float(energy[measured].max()), 1e-300) * 1e-12
    return float(np.exp(np.interp(unmeasured, measured, np.log(np.maximum(energy[measured], tiny)))).sum())


def estimated_nmse(holdout: HoldOut | list[HoldOut], image: Any, image_is: str | None = None,
                   scored_image: Any = None, scored_image_is: str | None = None) -> float:
    """The k-space NMSE of the fully sampled scan that the hold-out predicts for the scored run's image
    ``scored_image`` (reconstructed from all of the measured samples; ``scored_image_is`` its
    ``extras["image_is"]``; both None: ``image_is`` for both, as for zero filling, whose every image is the RSS of
    its data), comparable across samplings of a scan. ``image``: the image reconstructed from ``holdout.train``
    (with several folds, :func:`folds`, one image per fold; their sums are pooled before the ratios).

    On a Cartesian grid: ``(r_m + E_u + P_u - 2 rho sqrt(E_u P_u)) / (E_m + E_u)``, with ``r_m`` the scored
    image's residual on the measured samples and ``P_u`` the energy it puts on the unmeasured ones
    (:func:`scored_part`, exact), ``E_m`` the measured energy, ``E_u`` the unmeasured samples' estimated energy
    and ``rho`` the held-out samples' correlation with their prediction (pooled: ``sum(E_h + P_h - r_h) / (2
    sqrt(sum E_h sum P_h))``, from each fold's :func:`residuals`). ``E_u``: for a line mask each unmeasured line's
    from the measured lines' energy profile (interpolated; it falls steeply away from the centre, so a mean over
    the few held-out lines would miss it); else the held-out samples' mean energy for each unmeasured grid point
    (which they stand for). Off the grid: ``(r_m + e E_u) / (E_m + E_u)`` with ``e`` the pooled relative error
    on the held-out samples."""
    holdouts, images = (holdout, image) if isinstance(holdout, list) else ([holdout], [image])
    kinds = image_is if isinstance(image_is, list) else [image_is] * len(holdouts)
    if scored_image is None and scored_image_is is None and not isinstance(image_is, list):
        scored_image_is = image_is
    scored = scored_part(holdouts[0].original, scored_image, scored_image_is)
    return _pooled([residuals(h, x, k) for h, x, k in zip(holdouts, images, kinds)], holdouts, scored)[0]


def _scan_energies(problem: Any) -> tuple[float, float | None]:
    """``(E_m, E_u)``: the measured samples' energy and, for a line mask, the unmeasured lines' estimated energy
    (:func:`_unmeasured_energy`; None otherwise). The same for every fold and run of a scan."""
    return float(problem.y.abs().pow(2).sum()), _unmeasured_energy(problem)


def _pooled(parts: list[tuple[float, ...]], holdouts: list[HoldOut], scored: tuple[float, float],
            energies: tuple[float, float | None] | None = None) -> tuple[float, float, float]:
    """``(estimated NMSE, pooled held-out relative error, pooled correlation rho)`` from each fold's
    :func:`residuals` and the scored run's :func:`scored_part` (see :func:`estimated_nmse`); ``energies``: the
    scan's :func:`_scan_energies` when already known."""
    problem = holdouts[0].original
    held_energy, held_residual = sum(p[0] for p in parts), sum(p[1] for p in parts)
    predicted = sum(p[3] for p in parts)
    relative = held_residual / held_energy
    rho = 0.0
    if predicted > 0:  # Cauchy-Schwarz: within [-1, 1] up to rounding
        rho = min(1.0, max(-1.0, (held_energy + predicted - held_residual) / (2 * math.sqrt(held_energy * predicted))))
    measured_residual, unmeasured_predicted = scored
    measured, unmeasured = energies if energies is not None else _scan_energies(problem)
    if unmeasured is None:
        n_measured = int(problem.mask.sum()) if problem.is_cartesian else int(problem.y.shape[-1])
        n_held = sum(h.n_held for h in holdouts)
        unmeasured = max(math.prod(problem.grid_shape) - n_measured, 0) * held_energy / n_held
    total = measured + unmeasured
    if problem.is_cartesian:
        error = unmeasured + unmeasured_predicted - 2 * rho * math.sqrt(unmeasured * unmeasured_predicted)
    else:
        error = relative * unmeasured
    return (measured_residual + error) / total, relative, rho


def params_as_run(method: Any, params: Any = None, chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a run ended with: ``params`` (None: the defaults) with every automatic one (None) that the
    method chose and reported in ``Result.chosen`` (``chosen``) set to that value, and every switch it reported
    there (a bool, e.g. ``consistency=False`` when its rule kept the network's image) set as reported. The hold-out runs use them:
    they validate the result that was scored, with the weight it has, and do not search for one again on each
    fold (a search on 93 % of the data may land elsewhere, and it costs several solves)."""
    from workbench.methods import params_to_dict

    values = params_to_dict(method.make_params(params))
    for k, v in (chosen or {}).items():
        if values.get(k, 0) is None and isinstance(v, (int, float)) and not isinstance(v, bool):
            values[k] = v
        elif isinstance(v, bool) and (isinstance(values.get(k), bool) or values.get(k, 0) is None):
            values[k] = v  # a step the run chose to leave out, or an automatic switch (xpdnet's adapt) as chosen
    return values


def holdout_score(method: Any, problem: Any, params: Any = None, n_folds: int = DEFAULT_FOLDS,
                  fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED,
                  chosen: dict[str, Any] | None = None, image: Any = None,
                  image_is: str | None = None) -> dict[str, Any]:
    """Run ``method`` on each of ``problem``'s :func:`folds` (``n_folds`` of ``fraction`` of its measured samples
    held out, ``seed``) with the parameters the scored run ended with (:func:`params_as_run`; ``chosen``: its
    ``Result.chosen``) and return :func:`summary` for the scored run's ``image`` (``image_is``: its
    ``extras["image_is"]``; None: the scored run is made again, ``method`` on all of ``problem`` with ``params``).
    The library's call; the CLI and the app run the same steps through their job engine."""
    from workbench.methods import safe_run

    holdouts = folds(problem, n_folds, fraction, seed)
    as_run = params_as_run(method, params, chosen)
    if image is None:
        scored = safe_run(method, problem, params)
        image, image_is = scored.image, (scored.extras or {}).get("image_is")
    results = [safe_run(method, h.train, as_run) for h in holdouts]
    return summary(holdouts, [r.image for r in results], [(r.extras or {}).get("image_is") for r in results],
                   image, image_is)


def summary(holdout: HoldOut | list[HoldOut], image: Any, image_is: Any = None, scored_image: Any = None,
            scored_image_is: str | None = None) -> dict[str, Any]:
    """The JSON-able report of a hold-out validation of the scored run's image ``scored_image``
    (``scored_image_is``; both None: ``image_is``, which must then be one kind for all, as for zero filling) from
    ``image`` (reconstructed from ``holdout.train``; with a list of folds, a list of images and of ``image_is``, or
    one ``image_is`` for all): ``holdout_nmse`` (:func:`estimated_nmse`, the score: lower is better),
    ``holdout_error`` (the held-out samples' pooled relative error, :func:`prediction_error` for one fold),
    ``holdout_correlation`` (their pooled correlation with the prediction, ``rho``), ``holdout_fraction`` (all
    folds together), ``holdout_samples``, ``holdout_folds``, ``holdout_lines`` (whole lines held out),
    ``holdout_seed``."""
    holdouts, images = (holdout, image) if isinstance(holdout, list) else ([holdout], [image])
    kinds = image_is if isinstance(image_is, list) else [image_is] * len(holdouts)
    if scored_image is None and scored_image_is is None:
        scored_image_is = None if isinstance(image_is, list) else image_is
    return pooled_summary(holdouts, [residuals(h, x, k) for h, x, k in zip(holdouts, images, kinds)],
                          scored_part(holdouts[0].original, scored_image, scored_image_is))


def jackknife_se(parts: list[tuple[float, ...]], holdouts: list[HoldOut], scored: tuple[float, float],
                 energies: tuple[float, float | None] | None = None) -> float | None:
    """The standard error of the hold-out NMSE over the draw of the held-out samples: the jackknife over folds,
    ``sqrt((F - 1) / F * sum_i (v_i - mean v)^2)`` with ``v_i`` the estimate pooled without fold ``i`` (the
    usual error bar of a pooled ratio). None with one fold. Two runs of a scan whose estimates are less than
    :data:`SEPARATED` of their combined standard error apart are not told apart by their hold-out. It measures
    how much the draw of the held-out lines moves the estimate, not the estimate's bias (the unmeasured energy
    is interpolated, and held-out lines lie where the unmeasured ones do not): on the real sets
    (``benchmarks/results/holdout.md``) some pairs many errors apart were still ranked against the reference."""
    if len(parts) < 2:
        return None
    energies = energies if energies is not None else _scan_energies(holdouts[0].original)
    v = [_pooled(parts[:i] + parts[i + 1:], holdouts[:i] + holdouts[i + 1:], scored, energies)[0]
         for i in range(len(parts))]
    mean = sum(v) / len(v)
    return math.sqrt((len(v) - 1) / len(v) * sum((x - mean) ** 2 for x in v))


def score_text(nmse: float, se: float | None) -> str:
    """``0.0589 ± 0.0046``: the hold-out NMSE and its standard error as the CLI, the table and the job details
    show them; no "± 0" where it has none (zero filling on a grid, which no fold changes: it would read as
    exact)."""
    return f"{nmse:.4g}" + (f" ± {se:.2g}" if se else "")


def separated(a: dict[str, Any], b: dict[str, Any], z: float | None = None) -> bool | None:
    """Whether the hold-out summaries ``a`` and ``b`` (of two runs on one scan) rank the runs: their NMSEs differ
    by at least ``z`` (default :data:`SEPARATED`) combined standard errors ``sqrt(se_a^2 + se_b^2)``. None when
    either has no estimate or no standard error."""
    z = SEPARATED if z is None else z
    va, vb = a.get("holdout_nmse"), b.get("holdout_nmse")
    sa, sb = a.get("holdout_nmse_se"), b.get("holdout_nmse_se")
    if None in (va, vb, sa, sb):
        return None
    return abs(va - vb) >= z * math.sqrt(sa * sa + sb * sb)


def pooled_summary(holdouts: list[HoldOut], parts: list[tuple[float, ...]],
                   scored: tuple[float, float]) -> dict[str, Any]:
    """:func:`summary` from each fold's :func:`residuals` (computed where each fold's run ended) and the scored
    run's :func:`scored_part`."""
    energies = _scan_energies(holdouts[0].original)
    nmse, relative, rho = _pooled(parts, holdouts, scored, energies)
    return {"holdout_nmse": nmse, "holdout_nmse_se": jackknife_se(parts, holdouts, scored, energies),
            "holdout_error": relative, "holdout_correlation": rho,
            "holdout_fraction": round(sum(h.fraction for h in holdouts), 5),
            "holdout_samples": sum(h.n_held for h in holdouts), "holdout_folds": len(holdouts),
            "holdout_lines": bool(holdouts[0].train.provenance.get("holdout", {}).get("lines", False)),
            "holdout_seed": holdouts[0].seed}
