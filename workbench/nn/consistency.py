"""The final consistency solve of the unrolled networks (XPDNet, NC-PDNet), and the hold-out choice of its weight.

The network's image ``x_net`` is refined by one regularised least-squares solve (MoDL's data-consistency block,
Aggarwal et al., IEEE TMI 2019, applied once after the unrolled iterations)::

    x = argmin ||A x - y||^2_D + lam ||x - x_net||^2,   i.e.   (A^H D A + lam I) x = A^H D y + lam x_net

in the network's normalised units (``||A||^2 ~ 1``; ``D`` the density compensation of NC-PDNet, identity on a
Cartesian grid), by :data:`N_ITER` conjugate-gradient iterations (:data:`N_ITER_NONCARTESIAN` off the grid) started
at ``x_net``. With one coil on a Cartesian
grid it does what the hard data-consistency step already does; with several coils, or off the grid, it uses the
measured samples through the coil maps to correct what the network predicts where nothing was measured, at the
price of some noise amplification (a small ``lam`` is CG-SENSE started at the network's image).

The best weight depends on the scan: on the real rows (``benchmarks/results/consistency_weights.md``) the
8-coil head at 4x gained 1-3 dB from ``lam`` = 0.003-0.03 while the 2-coil phantoms lost up to 6 dB there and
wanted the network's image. So the weight is chosen per scan by k-space hold-out (:mod:`workbench.holdout`): a
seeded part of the measured samples is held out (whole lines off the fully sampled centre for a line mask,
whole readouts outside the calibration radius off the grid), the solves of every weight of :data:`LAMS` on the
rest, and the network's image itself, predict them, and the weight with the smallest error wins if it predicts
them at least :data:`TOLERANCE` better than the network's image (else the network's image stays: on the real
2-coil rows at 8x the held-out lines are mostly noise, and errors within 1% of each other said nothing about the
image). All weights cost one multi-shift CG run, so the choice costs about one more solve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["LAMS", "N_ITER", "N_ITER_NONCARTESIAN", "TOLERANCE", "NetworkSolution", "ConsistencyChoice",
           "choose_consistency_lam", "image_solution"]

LAMS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)  # the weights the hold-out tries (1: close to the network's image)
N_ITER = 20  # Cartesian grids: a line mask's normal operator is cheap
# off the grid each normal is a Toeplitz pass over the 2x grid per coil: 10 iterations chose and scored as 20 did on
# the 28 radial rows (NC-PDNet +0.01 dB, U-net -0.03), while on the Cartesian rows 10 lost up to 1.5 dB on one row
N_ITER_NONCARTESIAN = 10
TOLERANCE = 0.01


@dataclass
class NetworkSolution:
    """An unrolled network's image ``x`` ``[B, H, W]`` (normalised units, before any final data-consistency step)
    with the normalised problem it solved: ``rhs = A^H D y / s`` ``[B, H, W]``, ``maps`` ``[B, C, H, W]``,
    ``scale`` (``s``) ``[B]``, the ``enc`` (:class:`~workbench.nn.batch.Encoding`), and the network's hard
    data-consistency step ``data_consistent_output(x, maps, scale, enc)``."""

    x: torch.Tensor
    rhs: torch.Tensor
    maps: torch.Tensor
    scale: torch.Tensor
    enc: Any
    data_consistent_output: Callable[..., torch.Tensor]

    @torch.no_grad()
    def consistent(self, lams, n_iter: int | None = None) -> dict[float, torch.Tensor]:
        """``{lam: argmin ||A x - y||^2_D + lam ||x - x_net||^2}`` (module docstring) for every weight of
        ``lams`` (each > 0), each by ``n_iter`` CG iterations (default :data:`N_ITER` on a Cartesian grid,
        :data:`N_ITER_NONCARTESIAN` off it) from the network's image, all in one multi-shift
        CG run (:func:`~workbench.solvers.shifted_conjugate_gradient`: ``x = x_net + d`` with ``(N + lam) d =
        rhs - N x_net``, one right-hand side for every weight); normalised units."""
        from workbench.nn.batch import CartesianEncoding
        from workbench.solvers import shifted_conjugate_gradient

        if n_iter is None:
            n_iter = N_ITER if isinstance(self.enc, CartesianEncoding) else N_ITER_NONCARTESIAN
        lams = [float(v) for v in lams]
        if not lams or min(lams) <= 0:
            raise ValueError(f"consistency weights must be > 0, got {lams}")
        normal = lambda v: self.enc.normal(v, self.maps)  # noqa: E731
        steps = shifted_conjugate_gradient(normal, self.rhs - normal(self.x), lams, n_iter=n_iter)
        return {lam: self.x + d for lam, d in steps.items()}

    def with_encoding(self, enc: Any) -> "NetworkSolution":
        """The same network image, maps and scale with another encoding of the scan (a subset of its measured
        samples: the hold-out's kept part), whose right-hand side is computed here."""
        rhs = (enc.coil_images() * self.maps.conj()).sum(1) / self.scale[:, None, None]
        return NetworkSolution(x=self.x, rhs=rhs, maps=self.maps, scale=self.scale, enc=enc,
                               data_consistent_output=self.data_consistent_output)

    @torch.no_grad()
    def output(self, x: torch.Tensor, final_data_consistency: bool) -> torch.Tensor:
        """The complex image ``x`` in data units, through the hard data-consistency step when asked (and the
        operator has one)."""
        if final_data_consistency:
            x = self.data_consistent_output(x, self.maps, self.scale, self.enc)
        return x * self.scale[:, None, None]

    @torch.no_grad()
    def held_out_errors(self, original: Any, held: torch.Tensor, images: list[torch.Tensor]) -> list[float]:
        """``||y_h - P_h A (s x)||^2`` of each image ``x`` (normalised ``[1, H, W]``, of this solution's single
        item) at the held-out samples ``held`` of the problem ``original`` (a Cartesian ``[H, W]`` grid mask, or
        a ``[K]`` mask of the trajectory's samples; one NUFFT for all the images)."""
        maps = self.maps[0]
        data = original.y[:, held]
        if original.is_cartesian:
            from workbench.physics.fft import fft2c

            def predict(image):
                return fft2c(maps * image)[:, held]
        else:
            from workbench.physics.nufft import NufftSense

            predict = NufftSense(maps, original.trajectory[:, held], grid_shape=original.grid_shape,
                                 toeplitz=False).forward
        out = []
        for x in images:
            predicted = predict(x[0] * self.scale[0])
            out.append(float((data.to(predicted.device) - predicted).abs().pow(2).sum()))
        return out


def image_solution(image: Any, problem: Any, encoding_for: Callable[[Any], Any]) -> NetworkSolution:
    """A :class:`NetworkSolution` for any network's magnitude (or complex) image ``[h, w]`` of ``problem`` (the
    U-net's): the problem's encoding ``encoding_for(problem)`` (a network :class:`~workbench.nn.batch.Encoding`),
    its maps normalised, the scale and right-hand side as the unrolled networks make them, and the image padded
    to the grid with, when it has none, the phase of the calibration data (Cartesian; off the grid that of the
    density-compensated SENSE image), the rule of :func:`workbench.scoring.calibration_phase`."""
    from workbench.nn.common import robust_scale
    from workbench.nn.primal_net import PrimalNet
    from workbench.nn.sens_net import normalise_maps
    from workbench.physics.fft import rss
    from workbench.scoring import calibration_phase, complex_on_grid

    enc = encoding_for(problem)
    coil = enc.coil_images()
    maps = normalise_maps(enc.initial_maps())
    scale = robust_scale(rss(coil, dim=1))
    rhs = (coil * maps.conj()).sum(1) / scale[:, None, None]
    # off the grid the phase of the network's own density-compensated SENSE image (its maps, its NUFFT)
    x = complex_on_grid(image, rhs.shape[-2:], rhs.device, lambda: calibration_phase(problem, maps[0])
                        if problem.is_cartesian else rhs[0].angle())
    return NetworkSolution(x=(x / scale[0])[None], rhs=rhs, maps=maps, scale=scale, enc=enc,
                           data_consistent_output=PrimalNet.data_consistent_output)


@dataclass
class ConsistencyChoice:
    """The chosen weight (``None``: the network's image is kept) and the relative held-out errors
    ``{lam: error / the network image's error}`` that chose it (empty when no hold-out was possible, with the
    reason in ``note``)."""

    lam: float | None
    errors: dict[float, float]
    note: str = ""


def choose_consistency_lam(solution: NetworkSolution, problem: Any, encoding_for: Callable[[Any], Any],
                           progress: Callable[[float, str], None] | None = None,
                           lams: tuple[float, ...] = LAMS, tolerance: float = TOLERANCE,
                           rerun: Callable[[Any], NetworkSolution] | None = None) -> ConsistencyChoice:
    """Choose the consistency weight of the network image ``solution`` (of all of ``problem``'s samples) by
    hold-out (module docstring). ``encoding_for(problem)`` makes the network's encoding of a problem (on the
    device); ``progress(fraction, text)`` is called before and after the solves (it may raise to cancel).

    Without ``rerun`` the network's image is not recomputed without the held-out samples: the consistency solves
    use only the kept ones, but the image they start from has seen all. That favours the network's image (it
    knows the held-out samples a little), a bias towards keeping it; for the unrolled networks it chose on the
    real rows as a rerun of the network did (XPDNet over the 44 multi-coil Cartesian rows +0.47 dB over the best
    classical method either way; NC-PDNet over the 28 radial rows -0.19 dB against TV either way) for half the
    time. ``rerun(kept problem)``: the network's solution of the kept samples instead, for networks whose image
    keeps what they were given (the U-net corrects the zero-filled image, which holds the held-out samples: its
    image predicted held-out radial spokes to 7 % and no weight could beat it)."""
    from workbench.errors import SamplingError
    from workbench.holdout import folds

    try:
        # whole lines of a line mask, whole readouts off the grid: held out as the unmeasured ones are missing
        # (single samples are predicted from their measured neighbours along the readout, which every
        # consistency solve does well: it chose the smallest weight on the real radial phantoms and lost 4 dB)
        holdout = folds(problem, n_folds=1, lines=None if problem.is_cartesian else True)[0]
    except SamplingError as exc:
        return ConsistencyChoice(None, {}, f"no hold-out: {exc}")
    if progress is not None:
        progress(0.0, "consistency weight: hold-out")
    kept = rerun(holdout.train) if rerun is not None else solution.with_encoding(encoding_for(holdout.train))
    held = holdout.held.to(solution.x.device)
    if float(problem.y[:, held].abs().pow(2).sum()) == 0:
        return ConsistencyChoice(None, {}, "the held-out samples are zero")
    images = kept.consistent(lams)
    base, *rest = kept.held_out_errors(problem, held, [kept.x, *(images[lam] for lam in lams)])
    if base <= 0:
        return ConsistencyChoice(None, {}, "the network's image predicts the held-out samples exactly")
    errors = {lam: e / base for lam, e in zip(lams, rest)}
    if progress is not None:
        progress(1.0, "consistency weight: hold-out done")
    best = min(errors, key=errors.get)
    return ConsistencyChoice(best if errors[best] < 1 - tolerance else None, errors)
