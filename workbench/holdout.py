"""A score without a reference: k-space hold-out validation.

A seeded random part (:data:`DEFAULT_FRACTION`, 5-10 %) of the measured samples outside the calibration region is
held out; the method runs again on the rest, and the normalised error of its prediction of the held-out samples,
``||y_h - P_h F S x||^2 / ||y_h||^2`` (``x`` its image, ``S`` the coil maps, ``P_h`` the held-out positions), is
the score: lower is better, 1 for an image that predicts nothing there. It needs no reference, so it ranks methods on prospective scans.

Cartesian: held-out grid samples outside the calibration box (``problem.calib``); non-Cartesian: held-out
trajectory samples outside the calibration radius, their density compensation taken from the kept ones. The coil
maps come from the calibration data, which is never held out, so the run on the rest reuses the problem's maps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from workbench.arrays import fit_shape
from workbench.errors import SamplingError

__all__ = ["DEFAULT_FRACTION", "DEFAULT_SEED", "HoldOut", "split", "prediction_error", "holdout_score", "summary"]

DEFAULT_FRACTION = 0.07
DEFAULT_SEED = 0


class HoldOut:
    """A problem with some measured samples held out: ``train`` (the Problem without them), ``held`` (bool:
    Cartesian ``[H, W]`` grid positions, non-Cartesian ``[K]`` samples of the original problem), ``fraction``
    (of the measured samples), ``seed``."""

    def __init__(self, original: Any, train: Any, held: torch.Tensor, fraction: float, seed: int):
        self.original, self.train, self.held, self.fraction, self.seed = original, train, held, fraction, seed

    @property
    def n_held(self) -> int:
        return int(self.held.sum())


def _eligible_cartesian(problem: Any) -> torch.Tensor:
    (h, w), (ch, cw) = problem.grid_shape, problem.calib
    outside = torch.ones(h, w, dtype=torch.bool, device=problem.mask.device)
    outside[h // 2 - ch // 2: h // 2 - ch // 2 + ch, w // 2 - cw // 2: w // 2 - cw // 2 + cw] = False
    return problem.mask & outside


def split(problem: Any, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> HoldOut:
    """Hold out ``fraction`` of ``problem``'s measured samples (chosen with ``seed`` among those outside the
    calibration region); the kept problem shares the reference, data range, maps (when known) and settings."""
    from workbench.problem import Problem

    if not 0 < fraction < 0.5:
        raise SamplingError(f"hold-out fraction must be in (0, 0.5), got {fraction}")
    rng = np.random.default_rng(seed)
    common = dict(reference=problem.reference, data_range=problem.data_range, device=problem.device,
                  maps_method=problem.maps_method, calib=problem.calib, sampling=problem.sampling,
                  provenance={**problem.provenance, "holdout": {"fraction": fraction, "seed": seed}},
                  maps=problem.maps if problem.has_maps else None)
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
    return HoldOut(problem, train, held, n / n_measured, seed)


def prediction_error(holdout: HoldOut, image: Any) -> float:
    """``||y_h - P_h F S x||^2 / ||y_h||^2`` for the image ``x`` (``[h, w]``, padded to the grid) reconstructed
    from ``holdout.train``, the same rule for every image: through the coil maps and the Fourier transform (a
    magnitude-only image, such as the zero-filled RSS, with the phase of the calibration data)."""
    from workbench.physics.fft import fft2c
    from workbench.scoring import ScoreError, calibration_phase

    problem = holdout.original
    y_held = problem.y[:, holdout.held]
    den = float(y_held.abs().pow(2).sum())
    if den == 0:
        raise ScoreError("the held-out samples are all zero: no hold-out error is defined")
    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if not np.isfinite(img).all():
        raise ScoreError("the reconstruction has NaN or infinite pixels: no hold-out error is defined")
    maps = holdout.train.maps
    x = torch.from_numpy(fit_shape(img.astype(np.complex64), problem.grid_shape)).to(maps.device)
    if not np.iscomplexobj(img) or not np.any(np.imag(img)):
        x = x.abs() * torch.exp(1j * calibration_phase(holdout.train, maps))
    if problem.is_cartesian:
        predicted = fft2c(maps * x)[:, holdout.held]
    else:
        from workbench.problem import Problem

        at_held = Problem(y_held, problem.grid_shape, trajectory=problem.trajectory[:, holdout.held], maps=maps,
                          device=problem.device)
        predicted = at_held.A.forward(x)
    return float((y_held - predicted).abs().pow(2).sum()) / den


def holdout_score(method: Any, problem: Any, params: Any = None, fraction: float = DEFAULT_FRACTION,
                  seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Run ``method`` on ``problem`` with ``fraction`` of its measured samples held out (``seed``) and return
    ``{"holdout_error", "holdout_fraction", "holdout_samples", "holdout_seed"}`` (the library's call; the CLI
    and the app run the same two steps through their job engine)."""
    from workbench.methods import safe_run

    h = split(problem, fraction, seed)
    result = safe_run(method, h.train, params)
    return summary(h, prediction_error(h, result.image))


def summary(holdout: HoldOut, error: float) -> dict[str, Any]:
    """The JSON-able report of one hold-out validation."""
    return {"holdout_error": error, "holdout_fraction": round(holdout.fraction, 5),
            "holdout_samples": holdout.n_held, "holdout_seed": holdout.seed}
