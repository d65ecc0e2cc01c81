"""GRAPPA (Griswold et al., MRM 2002): k-space parallel imaging, the classical baseline without coil maps.

Every missing phase-encode line is synthesised, coil by coil, as a linear combination of the acquired samples
around it: ``source_lines`` acquired lines (the nearest ones, half before and half after) times
``kernel_readout`` neighbouring points along the readout, in all coils. The weights are fitted by
Tikhonov-regularised least squares on the fully sampled centre (ACS), one kernel per distinct source pattern,
so equispaced, random and irregular line masks all work (``workbench/physics/grappa.py``). The acquired samples
are kept as measured; the coil images of the completed k-space are combined by root sum of squares (or with
the coil maps).

Random masks leave wide gaps; a line far from every acquired line is poorly predicted (GRAPPA interpolates, it
does not extrapolate far), so GRAPPA is at its best on equispaced masks with R = 2-4.

Defaults (2 x 5 kernel, reg = 0.1): on the demo scan (12 coils, 20 ACS lines) they gave 35.3 / 29.5 / 26.1 dB at
equispaced R = 2 / 3 / 4 (zero-filled 30.3 / 26.1 / 24.4) and 32.4 / 24.8 dB at random R = 2 / 4 (30.7 / 23.8);
a 4 x 5 kernel or reg = 0.01 amplified noise at R = 4 (22-25 dB), and helped by at most 0.5 dB at R = 2-3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from workbench.errors import SamplingError
from workbench.methods import Capabilities, Method, RunContext, param
from workbench.physics.fft import ifft2c, rss
from workbench.physics.grappa import acs_region, grappa, line_mask
from workbench.result import Result


@dataclass
class GrappaParams:
    kernel_readout: int = param(5, min=1, max=15, label="kernel (readout)",
                                help="kernel extent along the readout, in samples (odd numbers keep it centred)")
    source_lines: int = param(2, min=1, max=8, label="kernel (lines)",
                              help="acquired lines per kernel, the nearest ones split before/after the missing line "
                                   "(2 = one on each side: a 2 x 5 kernel with kernel_readout 5; 4 = 4 x 5)")
    reg: float = param(0.1, min=0.0, max=10.0, unit="x mean eigenvalue",
                       help="Tikhonov weight of the calibration, relative to the mean eigenvalue of the "
                            "calibration normal matrix; larger = less noise amplification, more residual aliasing")
    combine: str = param("rss", choices=("rss", "sense"),
                         help="coil combination of the completed k-space: root sum of squares (no maps) or SENSE "
                              "with the coil maps")


class Grappa(Method):
    name = "grappa"
    version = "1.0"
    description = ("GRAPPA: missing k-space lines from acquired neighbours with kernels calibrated on the ACS "
                   "(one per source pattern: any line mask), then RSS.")
    capabilities = Capabilities(cartesian=True, noncartesian=False, multicoil=True, singlecoil=False)
    Params = GrappaParams

    def check(self, problem) -> list[str]:
        reasons = super().check(problem)
        if reasons or not problem.is_cartesian:
            return reasons
        try:
            lines, _ = line_mask(problem.mask)
        except SamplingError as exc:
            return [str(exc)]
        region = acs_region(lines)
        n_acs = region.stop - region.start
        if n_acs < 3:
            reasons.append("GRAPPA calibrates on a fully sampled block of central k-space lines (ACS); this mask has "
                           + ("none" if n_acs == 0 else f"only {n_acs} adjacent central line(s), at least 3 are needed")
                           + " (use a mask with a centre fraction, e.g. --center-fraction 0.08)")
        return reasons

    def run(self, problem, params: GrappaParams, ctx: RunContext) -> Result:
        t0 = time.perf_counter()
        ctx.progress(0.0, "calibrating")
        history: list[dict] = []

        def callback(done: int, total: int) -> bool:
            history.append({"iter": done, "time": time.perf_counter() - t0})
            ctx.progress(0.9 * done / max(total, 1), f"calibrating kernel {done}/{total}")
            return ctx.cancelled()

        out = grappa(problem.y, problem.mask, kernel_readout=params.kernel_readout,
                     source_lines=params.source_lines, reg=params.reg, callback=callback)
        ctx.check_cancelled()
        ctx.progress(0.95, "combining coils")
        coil_images = ifft2c(out.kspace)
        if params.combine == "rss":
            image = rss(coil_images).to(torch.complex64)
        else:
            image = (coil_images * problem.maps.conj()).sum(0)
        lines, _ = line_mask(problem.mask)
        gaps = _largest_gap(lines)
        extras = {
            "n_kernels": out.n_patterns,
            "acs_lines": [out.acs.start, out.acs.stop],
            "unfilled_lines": len(out.unfilled),
            "largest_gap": gaps,
        }
        if out.unfilled:
            ctx.log(f"{len(out.unfilled)} missing line(s) are too far from any acquired line for a kernel that fits "
                    "in the ACS; they stay zero")
        if gaps > 2 * params.source_lines:
            ctx.log(f"warning: the mask has gaps of {gaps} lines; GRAPPA predicts lines far from acquired ones "
                    "poorly (an equispaced mask suits it better)")
        ctx.progress(1.0, "done")
        return Result(image=problem.crop(image), history=history, extras=extras)


def _largest_gap(lines: torch.Tensor) -> int:
    """The longest run of missing lines."""
    best = run = 0
    for v in lines.tolist():
        run = 0 if v else run + 1
        best = max(best, run)
    return best
