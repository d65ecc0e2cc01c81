"""Zero-filled reconstruction: the baseline every other method is measured against.

Cartesian data: the inverse FFT of the k-space with zeros where nothing was measured, per coil, combined by
root sum of squares (RSS, the fastMRI baseline; no coil maps needed) or by the coil maps (SENSE combination
``sum_c conj(S_c) F^-1 y_c``, complex, keeps the phase).

Non-Cartesian data: the density-compensated adjoint NUFFT (gridding reconstruction) ``F^H D y_c`` per coil,
combined the same way (``A^H D y`` for the SENSE combination).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.methods import Capabilities, Method, RunContext, param
from workbench.result import Result
from workbench.scoring import zero_filled_image_is


@dataclass
class ZeroFilledParams:
    combine: str = param("rss", choices=("rss", "sense"),
                         help="coil combination: root sum of squares (magnitude, no maps needed) or SENSE with the "
                              "coil maps (complex)")


class ZeroFilled(Method):
    name = "zero-filled"
    version = "1.0"
    description = ("Zero-filled inverse FFT (Cartesian) or density-compensated adjoint NUFFT (non-Cartesian), "
                   "coils combined by RSS or with the coil maps.")
    capabilities = Capabilities(cartesian=True, noncartesian=True, multicoil=True, singlecoil=True)
    Params = ZeroFilledParams

    def run(self, problem, params: ZeroFilledParams, ctx: RunContext) -> Result:
        t0 = time.perf_counter()
        ctx.progress(0.0, "zero filling")
        ctx.check_cancelled()
        image = problem.zero_filled(params.combine).to(torch.complex64)
        ctx.progress(1.0, "done")
        kind = "adjoint NUFFT with density compensation" if not problem.is_cartesian else "inverse FFT"
        image_is = zero_filled_image_is(problem, params.combine)
        return Result(
            image=problem.crop(image),
            history=[{"iter": 1, "time": time.perf_counter() - t0}],
            # Cartesian RSS: the measured data's own coil images, so the as-acquired score only adds noise
            extras={"operation": f"{kind}, {params.combine.upper()} combination",
                    **({"image_is": image_is} if image_is else {})},
        )
