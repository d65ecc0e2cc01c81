"""Landweber iteration: a complete example plugin for the MRI workbench.

    x_{k+1} = x_k - tau * A^H (A x_k - y),   x_0 = 0,   tau = step / ||A||^2

Gradient descent on the data consistency 0.5 ||A x - y||^2; stopping early (``n_iter``) is the regulariser.
It converges for 0 < step < 2; ||A||^2 is estimated by power iteration on A^H A.

Install: copy this file into a plugin folder (``~/.config/mri-workbench/plugins``, a folder listed in
``$WORKBENCH_PLUGIN_DIR``, or ``workbench --plugin-dir FOLDER``); ``workbench plugins`` then lists it.
See docs/plugins.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.methods import Capabilities, Method, RunContext, param
from workbench.result import Result


@dataclass
class LandweberParams:
    n_iter: int = param(50, min=1, max=5000, help="number of iterations (fewer = smoother)")
    step: float = param(1.0, min=0.01, max=1.99, help="step size in units of 1/||A||^2; converges below 2")


def squared_norm(A, device: torch.device, n_iter: int = 30) -> float:
    """||A||^2, the largest eigenvalue of A^H A, by power iteration from a fixed random start."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(A.ishape, dtype=torch.complex64, generator=g).to(device)
    eig = 1.0
    for _ in range(n_iter):
        x = A.H(A(x / torch.linalg.vector_norm(x)))
        eig = float(torch.linalg.vector_norm(x))
    return eig


class Landweber(Method):
    name = "landweber"
    version = "1.0"
    description = "Landweber iteration x <- x - step A^H(A x - y): least squares, regularised by early stopping."
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True)
    Params = LandweberParams

    def run(self, problem, params: LandweberParams, ctx: RunContext) -> Result:
        A, y = problem.A, problem.y
        lipschitz = squared_norm(A, ctx.device)
        tau = params.step / lipschitz
        x = torch.zeros(A.ishape, dtype=torch.complex64, device=ctx.device)
        r = -y  # A x_0 - y
        y_norm = float(torch.linalg.vector_norm(y)) or 1.0
        history = []
        t0 = time.perf_counter()
        for k in range(params.n_iter):
            ctx.check_cancelled()
            x = x - tau * A.H(r)
            r = A(x) - y
            res = float(torch.linalg.vector_norm(r))
            history.append({"iter": k + 1, "objective": 0.5 * res**2, "residual": res / y_norm,
                            "time": time.perf_counter() - t0})
            ctx.progress((k + 1) / params.n_iter, f"iteration {k + 1}/{params.n_iter}")
            if ctx.wants_iterates:
                ctx.report_iterate(problem.crop(x))
        return Result(image=problem.crop(x), history=history,
                      chosen={"step_size": tau, "norm_A_squared": lipschitz})
