"""Plug-and-play reconstruction with the score network as the denoiser (half-quadratic splitting, as in DPIR:
Zhang et al. 2021; the lecture's section 3.3.1).

Half-quadratic splitting of ``min_x ||A x - y||^2 / (2 sigma_y^2) + R(x)`` alternates

- data consistency: ``x = argmin ||A x - y||^2 + mu_k ||x - z||^2`` with ``mu_k = lam sigma_y^2 / sigma_k^2``,
  solved by a few conjugate-gradient iterations on ``(A^H A + mu_k I) x = A^H y + mu_k z`` (any operator:
  Cartesian SENSE, or NUFFT with its Toeplitz normal and the density-compensated data term ``A^H D A``,
  ``A^H D y`` of :class:`~workbench.nn.dsm.NormalisedProblem`, better conditioned),
- denoising: ``z = r(x, sigma_k) = x + sigma_k^2 score(x, sigma_k)``, the score network's MMSE denoiser,

with ``sigma_k`` decreasing geometrically from ``sigma_start`` to ``sigma_end``. The score network is the
one the ``dsm-posterior`` plugin samples with: one network, two uses. Images are divided by the problem's
intensity scale, so the parameters do not depend on the scanner's units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.methods import Capabilities, Method, param
from workbench.result import Result


@dataclass
class Params:
    weights: str = param("", help="score network weights (.safetensors with its .json sidecar); empty: the "
                                  "shipped weights")
    n_iter: int = param(10, min=1, max=500, help="splitting iterations (one denoising each)")
    sigma_start: float = param(0.1, min=1e-4, max=10.0, log_scale=True,
                               help="denoiser noise level of the first iteration (normalised units)")
    sigma_end: float = param(0.01, min=1e-4, max=10.0, log_scale=True,
                             help="denoiser noise level of the last iteration (normalised units)")
    lam: float = param(1.0, min=1e-4, max=1e4, log_scale=True,
                       help="regularisation weight: mu_k = lam sigma_y^2 / sigma_k^2")
    cg_iter: int = param(5, min=1, max=200, help="conjugate-gradient iterations per data-consistency step")
    noise_std: float | None = param(None, min=0.0, help="k-space noise standard deviation (data units, "
                                                          "E|n|^2); auto: estimated from the outer k-space")


class DSMPnP(Method):
    name = "dsm-pnp"
    version = "1.0"
    description = ("Plug-and-play half-quadratic splitting with the denoising-score-matching network as the "
                   "denoiser; needs trained weights")
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True,
                                needs_weights=True)
    Params = Params

    def check(self, problem, params=None) -> list[str]:
        """Usable score network weights (``params.weights``, else the shipped file)."""
        from workbench.nn.score_net import weights_reasons

        return super().check(problem) + weights_reasons(params)

    def run(self, problem, params, ctx) -> Result:
        from workbench.nn.dsm import NormalisedProblem
        from workbench.nn.score_net import geometric_sigmas, load_for_method
        from workbench.solvers import conjugate_gradient

        ctx.progress(0.0, "loading the score network")
        model, sidecar, path = load_for_method(params.weights, ctx.device)
        data = NormalisedProblem(problem, ctx.device, noise_std=params.noise_std)
        sigmas = geometric_sigmas(params.sigma_start, params.sigma_end, params.n_iter).tolist()
        z = data.x0
        history = []
        t0 = time.perf_counter()
        for k, sigma in enumerate(sigmas):
            ctx.check_cancelled()
            mu = params.lam * data.sigma_y**2 / sigma**2
            x = conjugate_gradient(data.normal, data.adjoint_y + mu * z, x0=z, n_iter=params.cg_iter, tol=0.0,
                                   lam=mu).x
            z = model.denoise(x[None], sigma)[0] * data.support  # zero where no coil sees the object
            change = float(torch.linalg.vector_norm(z - x) / torch.linalg.vector_norm(x).clamp_min(1e-30))
            history.append({"iter": k + 1, "sigma": sigma, "mu": mu, "denoiser_change": change,
                            "time": time.perf_counter() - t0})
            ctx.progress((k + 1) / len(sigmas), f"iteration {k + 1}/{len(sigmas)}, sigma {sigma:.3g}")
            if ctx.wants_iterates:
                ctx.report_iterate(problem.crop(z * data.scale))
        ctx.progress(1.0, "done")
        return Result(
            image=problem.crop(z * data.scale), history=history,
            chosen={"scale": data.scale, "noise_std": data.noise_std, "sigma_y_normalised": data.sigma_y},
            extras={"weights": str(path), "trained_steps": sidecar.get("training", {}).get("steps")},
        )
