"""Posterior sampling with a denoising-score-matching prior (Ramzi et al. 2020; Song & Ermon 2019; Jalal et al.
2021): uncertainty maps from samples of p(x | y).

A score network learned by denoising score matching on complex MR images gives ``grad log p_sigma(x)`` at every
noise level ``sigma``. Annealed Langevin dynamics from ``sigma_max`` down to ``sigma_min``, adding at each level
the likelihood gradient ``-A^H (A x - y) / (sigma_y^2 + sigma^2)`` of the measured data, draws several chains
(batched through the network and the operator) from the posterior. The reconstruction is their mean, the
uncertainty map the pixel-wise standard deviation of their magnitudes; the samples are kept. Works with any
operator of the problem (Cartesian SENSE, NUFFT) since it only needs ``A^H A`` and ``A^H y``. Images are
divided by the problem's intensity scale first, so the prior does not depend on scanner units.

``predict = "scan"`` (Cartesian) turns each image sample into a sample of the fully sampled scan
(:func:`workbench.nn.dsm.predicted_scans`: the measured k-space kept, the rest from the sample plus fresh scanner
noise, root-sum-of-squares). A fully sampled RSS reference is one draw of that, so its mean and spread are the
ones to compare with such a reference; the reconstruction is then the chains' mean of the expected RSS
``sqrt(rss^2 + C (1 - f) noise_std^2)`` (the fresh noise integrated out, as XPDNet's noise floor). The default,
``"image"``, is the posterior of the noise-free image: scoring it in the "as-acquired" mode
(:func:`workbench.scoring.as_acquired`) turns its mean into that expected scan the same way as every other method's
image, so ``predict="scan"`` is only needed for the samples and the spread.

When the problem has a reference, ``Result.extras["calibration"]`` says whether the spread can be trusted:
Spearman correlation of the std map with the actual absolute error, and the empirical coverage of the 90%
pixel-wise intervals inside the object (from the sample quantiles, from the Student-t interval of the sample
std, and the latter widened by the reference's own noise: see
:func:`workbench.nn.dsm.calibration_metrics`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.methods import Capabilities, Method, param
from workbench.result import Result
from workbench.scoring import IMAGE_IS_SCAN


@dataclass
class Params:
    weights: str = param("", help="score network weights (.safetensors with its .json sidecar); empty: the "
                                  "shipped weights")
    n_samples: int = param(8, min=2, max=256, help="posterior samples (chains) to draw")
    n_levels: int = param(20, min=1, max=2000, help="noise levels of the annealing schedule (geometric)")
    steps_per_level: int = param(2, min=0, max=100, help="Langevin (corrector) steps at each noise level; 0: "
                                                         "predictor steps only")
    step_size: float = param(1.0, min=1e-4, max=1.9, log_scale=True,
                             help="Langevin step relative to sigma^2 (epsilon / sigma_min^2 of NCSN)")
    predictor: str = param("ancestral", choices=("ancestral", "reverse-diffusion", "none"),
                           help="between levels: an ancestral or a reverse-diffusion (Euler-Maruyama) step of the "
                                "reverse diffusion (predictor-corrector sampler: far fewer steps), or none (plain "
                                "annealed Langevin)")
    sigma_max: float | None = param(0.2, min=1e-4, max=10.0, log_scale=True,
                                    help="largest noise level (normalised units: the image's 99th percentile "
                                         "is about 1): how far the chains may wander from their start (0.2 "
                                         "suits the least-squares start; from the zero-filled image, 0.5); auto: "
                                         "the network's largest (at most its largest)")
    sigma_min: float | None = param(None, min=1e-4, max=10.0, log_scale=True,
                                    help="smallest noise level (normalised units); auto: the network's")
    noise_std: float | None = param(None, min=0.0, help="k-space noise standard deviation (data units, "
                                                          "E|n|^2); auto: estimated from the outer k-space")
    likelihood: str = param("auto", choices=("auto", "exact", "density-compensated"),
                            help="data term: exact (white noise, A^H A) or density-compensated (non-Cartesian: "
                                 "A^H D A, better conditioned); auto: exact for Cartesian data, "
                                 "density-compensated for non-Cartesian")
    chains_per_batch: int = param(0, min=0, max=256, help="chains computed together (memory); 0: all")
    seed: int = param(0, min=0, max=2**31 - 1, help="random seed of the chains")
    init: str = param("least-squares", choices=("least-squares", "zero-filled"),
                      help="where the chains start before the sigma_max noise is added: a least-squares fit of "
                           "the data (30 conjugate-gradient iterations on the likelihood's normal equations), so "
                           "that a short schedule from a small sigma_max suffices (Chung et al. 2022, 'come closer, "
                           "diffuse faster'), or the zero-filled image")
    predict: str = param("image", choices=("image", "scan"),
                         help="what the samples are of: the image (posterior of the noise-free image) or the fully "
                              "sampled scan (Cartesian: the measured k-space kept, the rest from each image sample "
                              "plus fresh scanner noise, root-sum-of-squares; what a fully sampled RSS reference "
                              "is a draw of)")


class DSMPosterior(Method):
    name = "dsm-posterior"
    version = "1.0"
    description = ("Posterior samples by annealed Langevin dynamics with a denoising-score-matching prior: "
                   "mean image, pixel-wise std map and the samples; needs trained weights")
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True,
                                needs_weights=True, gives_uncertainty=True, stochastic=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Usable score network weights (``params.weights``, else the shipped file)."""
        from workbench.nn.score_net import weights_reasons

        reasons = super().check(problem) + weights_reasons(params)
        if getattr(params, "predict", "image") == "scan" and not problem.is_cartesian:
            reasons.append("predict 'scan' needs Cartesian data (non-Cartesian samples are off the grid: there is "
                           "no exact way to put the measured ones back); use predict 'image'")
        return reasons

    def run(self, problem, params, ctx) -> Result:
        from workbench.nn.dsm import NormalisedProblem, annealed_langevin, calibration_metrics, count_evaluations
        from workbench.nn.score_net import geometric_sigmas, load_for_method

        if params.predictor == "none" and params.steps_per_level == 0:
            from workbench.methods import ParamError

            raise ParamError("dsm-posterior: steps_per_level must be at least 1 without a predictor",
                             param="steps_per_level", owner=self.name)
        ctx.progress(0.0, "loading the score network")
        model, sidecar, path = load_for_method(params.weights, ctx.device)
        arch = model.config
        data = NormalisedProblem(problem, ctx.device, noise_std=params.noise_std, likelihood=params.likelihood)
        # the network knows the noise levels it was trained on: stay inside them
        sigma_max = min(params.sigma_max, arch.sigma_max) if params.sigma_max is not None else arch.sigma_max
        sigma_min = max(params.sigma_min, arch.sigma_min) if params.sigma_min is not None else arch.sigma_min
        if sigma_min > sigma_max:
            sigma_min, sigma_max = sigma_max, sigma_min
        sigmas = geometric_sigmas(sigma_max, sigma_min, params.n_levels)
        per_batch = params.chains_per_batch or params.n_samples
        groups = [min(per_batch, params.n_samples - i) for i in range(0, params.n_samples, per_batch)]
        n_eval = count_evaluations(params.n_levels, params.steps_per_level, params.predictor)
        total = n_eval * len(groups)
        generator = torch.Generator(device=data.device).manual_seed(int(params.seed))
        if params.init == "least-squares":
            ctx.progress(0.01, "least-squares start")
            x_init = data.least_squares()
        else:
            x_init = data.x0

        def score(x, sigma):
            return model.score(x, sigma)

        history: list[dict] = []
        samples: list[torch.Tensor] = []
        t0 = time.perf_counter()
        done_before = 0

        for g, n_chains in enumerate(groups):
            def callback(k, n_steps, x, info, g=g):
                ctx.check_cancelled()
                step = done_before + k
                history.append({"iter": step, "chains": f"{g + 1}/{len(groups)}", "sigma": info["sigma"],
                                "residual": info["residual"], "time": time.perf_counter() - t0})
                ctx.progress(0.02 + 0.96 * step / total,
                             f"chains {g + 1}/{len(groups)}: level {info['level'] + 1}/{params.n_levels}, "
                             f"sigma {info['sigma']:.3g}")
                if ctx.wants_iterates:
                    # preview: the current clean estimate averaged over every chain so far
                    est = info["denoised"].mean(0)
                    if samples:
                        done = torch.cat(samples)
                        est = (est * n_chains + done.sum(0)) / (n_chains + done.shape[0])
                    ctx.report_iterate(problem.crop(est * data.scale))
                return False

            xs = annealed_langevin(
                score, data.normal, data.adjoint_y, n_chains=n_chains, sigmas=sigmas, sigma_y=data.sigma_y,
                steps_per_level=params.steps_per_level, step_size=params.step_size, predictor=params.predictor,
                lipschitz=data.lipschitz, x_init=x_init, support=data.support, generator=generator,
                callback=callback,
            )
            ctx.check_cancelled()
            samples.append(xs)
            done_before += n_eval
        elapsed = time.perf_counter() - t0

        x = torch.cat(samples) * data.scale  # data units
        if params.predict == "scan":
            from workbench.nn.dsm import add_unmeasured_noise, predicted_scans
            from workbench.physics.fft import expected_scan_rss, rss

            dev = x.device
            mask = problem.mask.to(dev)
            scans = predicted_scans(x, problem.maps.to(dev), mask, problem.y.to(dev))
            # the reconstruction: each chain's expected scan RSS, the fresh noise integrated out analytically
            # (a lower-variance estimate of the samples' mean), averaged over the chains
            mean = problem.crop(expected_scan_rss(rss(scans), mask, problem.n_coils, data.noise_std).mean(0))
            x = problem.crop(rss(add_unmeasured_noise(scans, mask, data.noise_std, generator=generator)))
        else:
            x = problem.crop(x)
            mean = x.mean(0)
        std = x.abs().std(0, unbiased=True)
        extras = {
            "weights": str(path),
            "trained_steps": sidecar.get("training", {}).get("steps"),
            "n_evaluations": n_eval * len(groups),
            "time_per_evaluation_s": round(elapsed / max(n_eval * len(groups), 1), 4),
        }
        if params.predict == "scan":  # already the expected scan: the as-acquired score leaves it as it is
            extras["image_is"] = IMAGE_IS_SCAN
        ref = getattr(problem, "reference", None)
        if ref is not None:
            from workbench.arrays import center_crop

            ref = torch.as_tensor(ref, dtype=torch.float32)
            h, w = ref.shape[-2:]
            if h <= x.shape[-2] and w <= x.shape[-1]:
                xc = center_crop(x, (h, w)).cpu()
                # the reference's own noise: the SENSE / RSS magnitude of white k-space noise (orthonormal FFT,
                # normalised maps) has about noise_std / sqrt(2) per pixel where the signal is well above it
                # (predicted scans carry that noise already)
                noise = data.noise_std / 2**0.5 if params.predict == "image" else None
                extras["calibration"] = calibration_metrics(xc, ref, estimate=center_crop(mean, (h, w)).cpu(),
                                                            reference_noise=noise)
        ctx.progress(1.0, "done")
        return Result(
            image=mean, std=std, samples=x, history=history,
            chosen={"scale": data.scale, "noise_std": data.noise_std, "sigma_y_normalised": data.sigma_y,
                    "sigma_max": float(sigma_max), "sigma_min": float(sigma_min), "lipschitz": data.lipschitz,
                    "likelihood": data.likelihood, "predict": params.predict},
            extras=extras,
        )
