"""Denoising score matching, annealed Langevin posterior sampling, and the calibration of its uncertainty.

Conventions (normalised units, see :mod:`workbench.nn.score_net`): complex images ``[..., H, W]``; every noise
level ``sigma`` is the standard deviation **per real component** (real and imaginary parts each ``N(0, sigma^2)``);
the k-space noise of the measurements is ``sigma_y`` per real component, i.e. ``E|n|^2 = 2 sigma_y^2``
(``sigma_y = problem.noise_std / sqrt(2)`` before normalisation).

- :func:`dsm_loss`: ``E || sigma s(x + sigma z, sigma) + z ||^2`` with ``log sigma`` uniform in
  ``[log sigma_min, log sigma_max]`` (the ``lambda(sigma) = sigma^2`` weighting of Song & Ermon 2019).
- :func:`annealed_langevin`: posterior sampling for ``y = A x + n`` (Song & Ermon 2019; Jalal et al. 2021 for
  the annealed likelihood): at every level ``sigma_i`` of a geometric schedule, ``T`` steps of ::

      x <- x + a_i (score(x, sigma_i) - A^H (A x - y) / (sigma_y^2 + sigma_i^2)) + sqrt(2 a_i) z

  with ``a_i = step_size * sigma_i^2`` (``step_size`` = NCSN's ``epsilon / sigma_L^2``), capped so that the
  likelihood step stays stable when ``||A^H A|| > 1`` (e.g. a NUFFT without density compensation); the chains
  (a batch dimension) go through the network and the operator together, and end with the denoising step
  ``x + sigma_L^2 score(x, sigma_L)`` (Tweedie).
- :func:`calibration_metrics`: does the spread of the samples predict the error? (Built on the uncertainty
  statistics of :mod:`workbench.scoring`: spearman, coverage, error predictability, object mask, curve.)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from workbench.scoring import (  # the uncertainty statistics live with the other scores
    calibrated_spearman,
    calibration_curve,
    edge_spearman,
    error_predictability,
    gaussian_coverage,
    interval_coverage,
    object_mask,
    spearman,
    spearman_figures,
)

__all__ = [
    "PREDICTORS",
    "NormalisedProblem",
    "add_unmeasured_noise",
    "annealed_langevin",
    "calibration_metrics",
    "complex_noise",
    "count_evaluations",
    "denoising_psnr",
    "dsm_loss",
    "langevin_step_sizes",
    "predicted_scans",
    "sample_sigmas",
]

ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]
NormalFn = Callable[[torch.Tensor], torch.Tensor]


def complex_noise(shape, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Complex64 noise whose real and imaginary parts are independent ``N(0, 1)`` (``E|z|^2 = 2``)."""
    re = torch.randn(*shape, generator=generator, device=device)
    im = torch.randn(*shape, generator=generator, device=device)
    return torch.complex(re, im)


# ------------------------------------------------------------------------------------------------------------
# Denoising score matching


def sample_sigmas(n: int, sigma_min: float, sigma_max: float, *, generator: torch.Generator | None = None,
                  device=None) -> torch.Tensor:
    """``n`` noise levels with ``log sigma`` uniform in ``[log sigma_min, log sigma_max]`` (float32 ``[n]``)."""
    u = torch.rand(n, generator=generator, device=device)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def dsm_loss(model: torch.nn.Module, x: torch.Tensor, sigma_min: float, sigma_max: float, *,
             generator: torch.Generator | None = None, reduce: bool = True) -> torch.Tensor:
    """Denoising score-matching loss of a noise-predicting network on clean complex images ``x`` ``[B, H, W]``.

    ``model(x_noisy [B, 2, H, W], sigma [B]) -> eps [B, 2, H, W]`` (a :class:`~workbench.nn.score_net.ScoreNet`,
    possibly wrapped in DistributedDataParallel), whose score is ``-eps / sigma``; then
    ``|| sigma score + z ||^2 = || z - eps ||^2``, averaged over pixels and channels (per item when not
    ``reduce``, else over the batch too).
    """
    b = x.shape[0]
    sigma = sample_sigmas(b, sigma_min, sigma_max, generator=generator, device=x.device)
    z = torch.randn(b, 2, *x.shape[-2:], generator=generator, device=x.device)
    clean = torch.stack([x.real, x.imag], dim=1).float()
    eps = model(clean + sigma[:, None, None, None] * z, sigma)
    per_item = (eps - z).square().flatten(1).mean(1)
    return per_item.mean() if reduce else per_item


@torch.no_grad()
def denoising_psnr(model, images: list[torch.Tensor], sigmas, *, seed: int = 0, device="cpu") -> list[dict[str, float]]:
    """Validation of a score network as a denoiser: for each ``sigma``, the PSNR (dB, peak = the image's largest
    magnitude, complex MSE) of ``x + sigma z`` and of its denoised version, averaged over ``images``
    (complex ``[H, W]``, normalised units)."""
    model = getattr(model, "module", model)
    rows = []
    for sigma in sigmas:
        noisy_db, den_db = [], []
        for i, x in enumerate(images):
            g = torch.Generator(device=device).manual_seed(seed * 7919 + i)
            x = x.to(device)[None]
            xn = x + float(sigma) * complex_noise(x.shape, generator=g, device=device)
            d = model.denoise(xn, float(sigma))
            peak = float(x.abs().max()) ** 2
            noisy_db.append(10 * math.log10(peak / float((xn - x).abs().square().mean())))
            den_db.append(10 * math.log10(peak / float((d - x).abs().square().mean())))
        rows.append({"sigma": float(sigma), "noisy_psnr": round(float(np.mean(noisy_db)), 3),
                     "denoised_psnr": round(float(np.mean(den_db)), 3)})
    return rows


# ------------------------------------------------------------------------------------------------------------
# Annealed Langevin posterior sampling


def langevin_step_sizes(sigmas: torch.Tensor, step_size: float, sigma_y: float, lipschitz: float = 1.0) -> list[float]:
    """The step ``a_i`` of every level: ``step_size * sigma_i^2``, capped at
    ``step_size * (sigma_y^2 + sigma_i^2) / lipschitz`` so that the likelihood part of a step never exceeds
    ``step_size`` times its own curvature (``lipschitz = ||A^H A||``)."""
    out = []
    for s in sigmas.tolist():
        a = step_size * s * s
        if lipschitz > 1.0:
            a = min(a, step_size * (sigma_y**2 + s * s) / lipschitz)
        out.append(float(a))
    return out


PREDICTORS = ("none", "reverse-diffusion", "ancestral")


def count_evaluations(n_levels: int, steps_per_level: int, predictor: str = "none", denoise_last: bool = True) -> int:
    """Network evaluations of :func:`annealed_langevin` (its callback's ``n_steps`` plus the final denoising)."""
    n = n_levels * steps_per_level + (n_levels - 1 if predictor != "none" else 0)
    return n + (1 if denoise_last else 0)


@torch.no_grad()
def annealed_langevin(
    score_fn: ScoreFn,
    normal: NormalFn | None,
    adjoint_y: torch.Tensor | None,
    *,
    n_chains: int,
    sigmas: torch.Tensor,
    sigma_y: float = 0.0,
    steps_per_level: int = 3,
    step_size: float = 0.2,
    predictor: str = "none",
    lipschitz: float = 1.0,
    x_init: torch.Tensor | None = None,
    image_shape: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    denoise_last: bool = True,
    support: torch.Tensor | None = None,
    callback: Callable[[int, int, torch.Tensor, dict[str, Any]], bool | None] | None = None,
) -> torch.Tensor:
    """Draw ``n_chains`` samples of ``p(x | y)`` by annealed Langevin dynamics (see the module docstring).

    Args:
        score_fn: ``(x [N, H, W] complex, sigma) -> grad log p_sigma(x)`` (the prior score at level ``sigma``).
        normal: ``x [N, H, W] -> A^H A x`` (batched through the operator); None samples the prior.
        adjoint_y: ``A^H y`` ``[H, W]``.
        sigmas: the levels, decreasing (:func:`~workbench.nn.score_net.geometric_sigmas`).
        sigma_y: measurement noise per real component (normalised units).
        steps_per_level, step_size: ``T`` and ``epsilon / sigma_L^2`` of NCSN (Langevin steps per level, and
            the step ``a_i = step_size sigma_i^2``); with a predictor, ``T`` may be 0 (predictor only).
        predictor: "none" (annealed Langevin of Song & Ermon 2019), "reverse-diffusion": between levels, one
            Euler-Maruyama step of the reverse variance-exploding SDE from ``sigma_i`` to ``sigma_{i+1}``
            (``x += (sigma_i^2 - sigma_{i+1}^2) grad + sqrt(sigma_i^2 - sigma_{i+1}^2) z``), making the Langevin
            steps correctors (the predictor-corrector sampler of Song et al. 2021): it follows the annealing path
            with far fewer evaluations. "ancestral": the same step with the noise of ancestral sampling,
            ``sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2) z`` (Song et al. 2021, appendix F; the
            variance-exploding DDPM step): where the denoiser is right it lands exactly on noise level
            ``sigma_{i+1}``, so coarse schedules do not accumulate noise (Euler-Maruyama adds too much when
            ``sigma_{i+1} / sigma_i`` is far from 1).
        lipschitz: ``||A^H A||`` (1 for Cartesian SENSE with normalised maps); larger values cap the steps.
        x_init: starting images ``[H, W]`` or ``[N, H, W]`` (default zeros); ``sigmas[0]`` noise is added.
        image_shape: ``(H, W)`` when neither ``x_init`` nor ``adjoint_y`` give it.
        generator: the random stream (seeded: reproducible chains).
        denoise_last: finish with ``x + sigma_L^2 score(x, sigma_L)``.
        support: where the image can be non-zero ``[H, W]`` (bool or 0/1), e.g. where the coil maps are: the
            data say nothing outside (``A`` is zero there) and the image is zero there by the model; the chains
            are kept at zero outside (None: everywhere).
        callback: ``callback(step, n_steps, x, info)`` after every step; ``info`` has ``sigma``, ``level``,
            ``step_size``, ``residual`` (``||A^H A x - A^H y|| / ||A^H y||`` per chain, root mean square) and
            ``denoised`` (``x + sigma^2 score`` before the step: a clean estimate for previews). Returning
            True stops (the current ``x`` is returned).

    Returns the samples ``[n_chains, H, W]`` complex64.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {', '.join(PREDICTORS)}, got {predictor!r}")
    if steps_per_level < (1 if predictor == "none" else 0):
        raise ValueError("annealed Langevin without a predictor needs at least one step per level")
    if normal is None:
        sigma_y = 0.0
    if x_init is not None:
        shape = tuple(x_init.shape[-2:])
        device = x_init.device
    elif adjoint_y is not None:
        shape = tuple(adjoint_y.shape[-2:])
        device = adjoint_y.device
    elif image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        device = torch.device("cpu")
    else:
        raise ValueError("annealed_langevin needs x_init, adjoint_y or image_shape")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    levels = sigmas.tolist()
    steps = langevin_step_sizes(sigmas, step_size, sigma_y, lipschitz)
    x = torch.zeros(n_chains, *shape, dtype=torch.complex64, device=device)
    if x_init is not None:
        x = x + x_init.to(device, torch.complex64)
    keep = None if support is None else support.to(device=device, dtype=torch.float32)
    x = x + levels[0] * complex_noise(x.shape, generator=generator, device=device)
    if keep is not None:
        x = x * keep
    aty_norm = 1.0 if adjoint_y is None else max(float(torch.linalg.vector_norm(adjoint_y)), 1e-30)
    n_steps = count_evaluations(len(levels), int(steps_per_level), predictor, denoise_last=False)
    k = 0

    def gradient(x: torch.Tensor, sigma: float, level: int, a: float, lik_weight: float = 1.0):
        prior = score_fn(x, sigma)
        residual = float("nan")
        if normal is None:
            return prior, prior, {"sigma": sigma, "level": level, "step_size": a, "residual": residual}
        r = normal(x) - adjoint_y
        residual = float(torch.linalg.vector_norm(r)) / (aty_norm * math.sqrt(n_chains))
        grad = prior - (lik_weight / (sigma_y**2 + sigma * sigma)) * r
        return grad, prior, {"sigma": sigma, "level": level, "step_size": a, "residual": residual}

    def report(x: torch.Tensor, prior: torch.Tensor, info: dict[str, Any]) -> bool:
        if callback is None:
            return False
        info["denoised"] = x_before + (info["sigma"] ** 2) * prior
        return bool(callback(k, n_steps, x, info))

    for level, (sigma, a) in enumerate(zip(levels, steps)):
        for _ in range(int(steps_per_level)):  # Langevin (corrector) steps at this level
            grad, prior, info = gradient(x, sigma, level, a)
            x_before = x
            x = x + a * grad + math.sqrt(2.0 * a) * complex_noise(x.shape, generator=generator, device=device)
            if keep is not None:
                x = x * keep
            k += 1
            if report(x, prior, info):
                return x
        if predictor != "none" and level + 1 < len(levels):
            nxt = levels[level + 1]
            d = sigma * sigma - nxt * nxt
            # the likelihood part of the predictor is capped like the Langevin steps (stable for ||A^H A|| > 1)
            w = 1.0 if lipschitz <= 1.0 else min(1.0, (sigma_y**2 + sigma * sigma) / (lipschitz * d))
            grad, prior, info = gradient(x, sigma, level, d, w)
            x_before = x
            noise = math.sqrt(d) if predictor == "reverse-diffusion" else nxt * math.sqrt(d) / sigma
            x = x + d * grad + noise * complex_noise(x.shape, generator=generator, device=device)
            if keep is not None:
                x = x * keep
            k += 1
            if report(x, prior, info):
                return x
    if denoise_last:
        s_last = levels[-1]
        x = x + (s_last * s_last) * score_fn(x, s_last)
        if keep is not None:
            x = x * keep
    return x


# ------------------------------------------------------------------------------------------------------------
# Calibration


def predicted_scans(samples: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, y: torch.Tensor,
                    noise_std: float = 0.0, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of the fully sampled scan, given the data: coil images ``[N, C, H, W]`` (Cartesian).

    A fully sampled acquisition repeats the measured k-space samples (noise included: they are ``y``) and adds
    the ones left out, each with its own scanner noise. So each image sample ``x`` (``[N, H, W]``, data units)
    becomes the coil k-space ``F S x`` with ``y`` where ``mask`` is set, plus (``noise_std > 0``, see
    :func:`add_unmeasured_noise`) fresh complex noise elsewhere. Their root-sum-of-squares is what a fully
    sampled RSS reference is a draw of, so these, not the clean image samples, are the ones to score against
    it; without the noise their expected RSS is :func:`workbench.physics.fft.expected_scan_rss`.

    Shapes: ``maps [C, H, W]``, ``mask`` broadcastable to ``[H, W]`` (bool), ``y [C, H, W]``.
    """
    from workbench.physics.fft import fft2c, ifft2c

    out = torch.empty(samples.shape[0], *maps.shape, dtype=torch.complex64, device=samples.device)
    for i, x in enumerate(samples):  # one sample at a time: C-fold memory per sample only
        out[i] = ifft2c(torch.where(mask, y, fft2c(maps * x)))
    return add_unmeasured_noise(out, mask, noise_std, generator=generator) if noise_std > 0 else out


def add_unmeasured_noise(coils: torch.Tensor, mask: torch.Tensor, noise_std: float, *,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """``coils [N, C, H, W]`` plus the image of fresh complex k-space noise (``E|n|^2 = noise_std^2``) on the
    samples outside ``mask``: the noise a fully sampled scan would add where the data were not measured."""
    from workbench.physics.fft import ifft2c

    out = coils.clone()
    for i in range(out.shape[0]):
        noise = complex_noise(out.shape[1:], generator=generator, device=out.device) * (noise_std / math.sqrt(2.0))
        out[i] += ifft2c(torch.where(mask, 0, noise))
    return out


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def calibration_metrics(samples: Any, reference: Any, estimate: Any = None, mask: Any = None,
                        level: float = 0.9, reference_noise: float | None = None) -> dict[str, Any]:
    """How well the spread of posterior samples predicts the actual error, on magnitudes.

    Args:
        samples: ``[N, h, w]`` samples (complex or magnitude).
        reference: ``[h, w]`` magnitude reference.
        estimate: the reconstruction ``[h, w]`` (default: the mean of the samples).
        mask: pixels to score (default: :func:`object_mask` of the reference).
        reference_noise: the standard deviation of the reference's own noise (magnitude, same units), when
            known: a fully sampled reference is a noisy measurement of the image the samples estimate, so a
            predictive interval for it is ``sqrt(std^2 + reference_noise^2)`` wide (``coverage_predictive``).

    Returns ``spearman`` (std vs ``|estimate| - reference`` in absolute value), ``spearman_if_calibrated``
    (the Spearman correlation a perfectly calibrated Gaussian posterior with this std map would reach, errors
    drawn as ``|N(0, std^2)|``: pixel-wise errors are noisy, so a std map that varies little cannot correlate
    much even when it is right), ``spearman_oracle`` (:func:`error_predictability`: what a std map that knew
    the error's local energy would reach; low when the reference's own noise dominates the error),
    ``spearman_edges`` (:func:`edge_spearman`: the edge-detector baseline), ``coverage`` (reference inside
    the sample-quantile ``level`` interval), ``coverage_gaussian`` (inside the Student-t interval from the sample
    std), ``coverage_predictive`` (the same with the reference noise added, when given), ``mean_std``,
    ``mean_abs_error`` (relative to the reference's 99th percentile), ``n_samples``, ``n_pixels``, ``level`` and
    ``curve`` (:func:`calibration_curve`).
    """
    s = np.abs(_numpy(samples)).astype(np.float64)
    ref = _numpy(reference).astype(np.float64)
    if s.ndim != 3 or s.shape[1:] != ref.shape:
        raise ValueError(f"calibration: samples {s.shape} do not match the reference {ref.shape}")
    est = s.mean(0) if estimate is None else np.abs(_numpy(estimate)).astype(np.float64)
    std = s.std(0, ddof=1) if s.shape[0] > 1 else np.zeros_like(ref)
    m = object_mask(ref) if mask is None else _numpy(mask).astype(bool)
    err = np.abs(est - ref)
    peak = float(np.percentile(ref, 99)) or 1.0
    return {
        **{k: round(v, 4) for k, v in spearman_figures(std, err, est, m).items()},
        "coverage": round(interval_coverage(s, ref, m, level), 4),
        "coverage_gaussian": round(gaussian_coverage(est, std, ref, s.shape[0], m, level), 4),
        "coverage_predictive": None if reference_noise is None else round(gaussian_coverage(
            est, np.sqrt(std**2 + float(reference_noise) ** 2), ref, s.shape[0], m, level), 4),
        "reference_noise": None if reference_noise is None else round(float(reference_noise) / peak, 5),
        "level": level,
        "mean_std": round(float(std[m].mean()) / peak, 5) if m.any() else float("nan"),
        "mean_abs_error": round(float(err[m].mean()) / peak, 5) if m.any() else float("nan"),
        "n_samples": int(s.shape[0]),
        "n_pixels": int(m.sum()),
        "curve": {k: [round(v, 6) if isinstance(v, float) else v for v in vals]
                  for k, vals in calibration_curve(std / peak, err / peak, m).items()},
    }


# ------------------------------------------------------------------------------------------------------------
# A Problem in normalised units (what both DSM plugins work with)


class NormalisedProblem:
    """A :class:`~workbench.problem.Problem` seen in the score network's units: images divided by ``scale``
    (:attr:`Problem.scale`, the 99th percentile of the zero-filled magnitude), so that neither the prior nor the
    step sizes depend on the scanner's units.

    ``likelihood``: "exact" (white k-space noise: ``A^H A`` and ``A^H y``), "density-compensated"
    (non-Cartesian only: ``A^H D A`` and ``A^H D y`` with the problem's dcf, i.e. each sample's weight divided by
    the local sampling density: a tempered likelihood that discounts the redundant samples of the k-space
    centre, with ``||A^H D A|| ~ 1`` instead of tens, so Langevin steps need no capping) or "auto" (exact for
    Cartesian data, density-compensated for non-Cartesian data with a dcf).

    Attributes:
        normal: ``x [..., H, W] -> A^H A x`` (or ``A^H D A x``; the operator is linear: unchanged by the scaling).
        adjoint_y: ``A^H y / scale`` (or ``A^H D y / scale``) ``[H, W]``.
        likelihood: the one chosen ("exact" or "density-compensated").
        x0: the zero-filled image / scale ``[H, W]`` (density compensated for non-Cartesian data).
        support: bool ``[H, W]``, where the coil maps are non-zero (everywhere for single-coil data).
        scale: the intensity scale (data units per normalised unit).
        noise_std: k-space noise in data units (``E|n|^2 = noise_std^2``): given or estimated by the problem.
        sigma_y: the same per real component in normalised units, ``noise_std / (sqrt(2) scale)``.
        lipschitz: ``||A^H A||`` (Cartesian: the largest ``sum_c |S_c|^2``, an exact bound since ``F^H M F``
            is a projection; non-Cartesian: power iteration).
    """

    def __init__(self, problem, device=None, noise_std: float | None = None, likelihood: str = "auto",
                 sigma_y_floor: float = 1e-4):
        from workbench.errors import WorkbenchError

        if likelihood not in ("auto", "exact", "density-compensated"):
            raise WorkbenchError(f"likelihood must be auto, exact or density-compensated, got {likelihood!r}")
        device = torch.device(device) if device is not None else problem.device
        if problem.device != device:
            problem = problem.to(device)
        self.problem = problem
        A = problem.A
        self.A = A
        if likelihood == "auto":
            likelihood = "density-compensated" if not problem.is_cartesian and problem.dcf is not None else "exact"
        if likelihood == "density-compensated" and (problem.is_cartesian or problem.dcf is None):
            likelihood = "exact"  # Cartesian data: every sample has the same weight already
        self.likelihood = likelihood
        self.scale = float(problem.scale)
        self.noise_std = float(problem.noise_std if noise_std is None else noise_std)
        self.sigma_y = max(self.noise_std / (math.sqrt(2.0) * self.scale), sigma_y_floor)
        if likelihood == "exact":
            self.normal = A.normal
            self.adjoint_y = A.adjoint(problem.y) / self.scale
        else:
            self.normal = A.weighted_normal
            self.adjoint_y = A.dc_adjoint(problem.y) / self.scale
        self.x0 = problem.zero_filled() / self.scale
        if problem.is_cartesian:
            self.lipschitz = float(problem.maps.abs().square().sum(-3).max())
        else:
            from workbench.solvers.power import power_iteration

            self.lipschitz = 1.05 * float(power_iteration(self.normal, tuple(problem.grid_shape), n_iter=20,
                                                          device=device))
        # where the coil maps see the object: outside, A is zero and the image is zero by the model
        sens = problem.maps.abs().square().sum(-3)
        self.support = sens > 1e-6 * float(sens.max())
        self.grid_shape = tuple(problem.grid_shape)
        self.device = device

    def least_squares(self, n_iter: int = 30) -> torch.Tensor:
        """``n_iter`` conjugate-gradient iterations on the likelihood's normal equations (``normal(x) =
        adjoint_y``) from zero: a data-consistent start ``[H, W]`` for the chains (normalised units). Stopped
        early, CG regularises; 30 iterations undo most of the aliasing of a 4x line mask."""
        from workbench.solvers.cg import conjugate_gradient

        return conjugate_gradient(self.normal, self.adjoint_y, n_iter=n_iter, tol=1e-4).x
