"""CG-SENSE (Pruessmann et al., MRM 1999/2001) with Tikhonov regularisation.

Solves the normal equations of regularised least squares by the conjugate gradient method (CGNR):

    (A^H A + lam I) x = A^H y,    i.e.   x = argmin ||A x - y||^2 + lam ||x||^2

with ``A = M F S`` (Cartesian: mask, centred FFT, coil maps) or ``A = F_nu S`` (non-Cartesian: NUFFT). For
non-Cartesian data the normal operator is the Toeplitz embedding (one FFT pair on the twice-oversampled grid per
coil, no gridding) and, with ``dcf_weighting``, the data term is density-weighted, ``A^H D A x = A^H D y``, as in
Pruessmann's non-Cartesian CG-SENSE (it converges in a few tens of iterations instead of hundreds).

``lam`` is in units of ``||A||^2``, which is about 1 (coil maps normalised to ``sum_c |S_c|^2 = 1``, orthonormal
FFT, density-weighted NUFFT), so the same value suits any data scale. Without regularisation CG-SENSE is
semi-convergent: the error first drops, then noise is amplified as the iterations go on; a small ``lam`` (or
few iterations) keeps it stable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from workbench.solvers import conjugate_gradient
from workbench.toolkit import RunContext, SenseMethod, finish_run, iteration_callback, param, start_run

MIN_TOL = 1e-7


@dataclass
class CGSenseParams:
    n_iter: int = param(30, min=1, max=1000, help="maximum number of conjugate gradient iterations")
    lam: float = param(0.01, min=0.0, max=10.0, unit="x ||A||^2",
                       help="Tikhonov weight lam in (A^H A + lam I) x = A^H y, relative to ||A||^2 (about 1); "
                            "0 = plain CG-SENSE (then stop early: noise grows with the iterations)")
    tol: float = param(1e-5, min=0.0, max=0.1,
                       help="stop when the relative residual of the normal equations is below this; values below "
                            "float32 precision (1e-7) are raised to it, past which CG only accumulates rounding "
                            "errors")
    dcf_weighting: bool = param(True, label="density weighting",
                                help="non-Cartesian data: density-weighted data term A^H D A (fast convergence); "
                                     "off: plain least squares (statistically optimal for white noise, slower)")


class CGSense(SenseMethod):
    name = "cg-sense"
    version = "1.0"
    description = ("CG-SENSE: conjugate gradient on (A^H A + lam I) x = A^H y with Tikhonov weight lam; "
                   "Toeplitz normal operator for non-Cartesian data.")
    Params = CGSenseParams

    def run(self, problem, params: CGSenseParams, ctx: RunContext):
        t0 = time.perf_counter()
        data, extras = start_run(problem, ctx, params.dcf_weighting)
        A, y = data.A, data.y
        history: list[dict] = []
        callback = iteration_callback(ctx, problem, params.n_iter, history, t0=t0)
        # Below float32 precision the CG recurrences only amplify rounding errors (with tol=0 the library's CG
        # keeps iterating and drifts away from the solution), hence the floor.
        tol = max(params.tol, MIN_TOL)
        result = conjugate_gradient(A.normal, A.adjoint(y), n_iter=params.n_iter, tol=tol, lam=params.lam,
                                    item_ndim=2, callback=callback)
        extras.update(data_term=data.describe(), converged=result.converged, iterations=result.n_iter)
        return finish_run(problem, ctx, result.x, history, extras, text=f"done after {result.n_iter} iterations")
