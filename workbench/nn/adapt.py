"""Scan-specific self-supervised adaptation of a trained network (zero-shot self-supervised learning, Yaman et
al., ICLR 2022, "ZS-SSL"; its data split is SSDU's, Yaman et al., MRM 2020).

A copy of the network is fine-tuned on the scan's own measured samples, split three ways (:func:`split_samples`):

- ``Theta``: the data-consistency set, the network's input during adaptation (always holds the calibration
  region, so that the coil maps are the same for every subset);
- ``Lambda``: the loss set; each step reconstructs from ``Theta`` and minimises the normalised k-space loss
  ``||A_Lambda x - y_Lambda||_1 / ||y_Lambda||_1 + ||A_Lambda x - y_Lambda||_2 / ||y_Lambda||_2``
  (:func:`kspace_loss`; ``A = P F S`` with the network's own coil maps ``S``). ``Theta`` / ``Lambda`` are
  redrawn every step by default (ZS-SSL's several masks; one fixed ``Gamma``);
- ``Gamma``: held out; every ``check_every`` steps the network reconstructs from ``Theta u Lambda`` and its
  relative k-space error on ``Gamma`` (:func:`kspace_error`) picks the state to keep (early stopping).

The final image (the caller's usual reconstruction) uses all measured samples with the best state; when no
checked state beat the un-adapted network on ``Gamma``, :func:`adapt` hands back the un-adapted network, so
that adaptation never makes the held-out error worse. The shipped (cached) network is never modified: the
copy is trained.

The split reuses :func:`workbench.holdout.split` (the scoring's hold-out: measured samples outside the
calibration region, for line masks off the fully sampled centre lines, chosen with a seed): once for
``Gamma``, once more on the rest for ``Lambda``. Cartesian subsets are masks on the grid; non-Cartesian ones
are subsets of the trajectory's samples whose density compensation is rescaled: a sample outside the
calibration radius stands for ``1 / f`` as much k-space when a fraction ``f`` of those is kept (the weights
outside are scaled to the sum of all samples' there; the calibration samples are all kept and keep theirs). Every subset batch takes the coil maps of the full
data (identical to the subset's own for Cartesian data, whose calibration box is kept whole).

The U-net only sees an image: its output magnitude ``|u|`` is mapped to k-space as ``A |u| = P F S |u|`` with
the ACS maps ``S`` (low-resolution coil images over their root-sum-of-squares), which carry the object's
low-resolution phase: ``|u|`` gets the phase of the calibration data, the rule the hold-out score gives a
magnitude image (:func:`workbench.scoring.calibration_phase`). The phase of the zero-filled image ``S^H F^H P
y`` was tried too: it holds the aliasing of the subset, and fitting ``Lambda`` through it taught the magnitude
to undo that aliasing (the held-out error fell further, the image got worse: real 8-coil head at 4x, 30
steps, 31.0 -> 28.2 dB against 31.0 -> 31.4 dB with the calibration phase). The phase is not learned either
way; the loss trains the magnitude, the only thing the U-net outputs.

Budget: ``seconds`` covers everything (the un-adapted check, the steps, the checks) plus a reserve for the
final reconstruction (the time of one reconstruction, measured by the first check); a step is only started
when it and the check after it fit. ``steps`` and ``patience`` (checks without improvement) stop it earlier.
Shapes: a :class:`~workbench.nn.batch.Batch` of one problem's slice; Cartesian sample sets are bool ``[H, W]``
grids, non-Cartesian ones bool ``[K]`` over the trajectory's samples.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from workbench.arrays import fit_shape
from workbench.nn.batch import Batch, Encoding
from workbench.physics.fft import fft2c

__all__ = [
    "AdaptOptions",
    "Adaptation",
    "SampleSplit",
    "TRAINABLE",
    "adapt",
    "kspace_error",
    "kspace_loss",
    "network_image",
    "split_samples",
    "subset_batch",
]

TRAINABLE = ("all", "image", "last")
"""Which parameters train: ``all``; ``image`` (the image networks: XPDNet/NC-PDNet without the coil-map
refinement, the whole U-net); ``last`` (the last unrolled iteration's image network only: the backward pass
then runs through one iteration; the U-net: its whole network)."""


@dataclass
class AdaptOptions:
    """Settings of :func:`adapt`.

    Attributes:
        steps: most optimiser steps; seconds: time budget of the whole run (with the final reconstruction).
        lr: Adam learning rate; trainable: one of :data:`TRAINABLE`.
        held_fraction: ``Gamma`` share of the measured samples; loss_fraction: ``Lambda`` share of the rest
            (both drawn outside the calibration region, at most half of what is eligible).
        resample: redraw ``Theta`` / ``Lambda`` every step (``Gamma`` stays).
        check_every: steps between two ``Gamma`` checks; patience: checks without improvement before stopping.
        seed: of the split (step ``i`` redraws with ``seed + i``).
    """

    steps: int = 30
    seconds: float = 60.0
    lr: float = 1e-4
    trainable: str = "last"
    held_fraction: float = 0.1
    loss_fraction: float = 0.4
    resample: bool = True
    check_every: int = 3
    patience: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, got {self.trainable!r}")
        if self.steps < 0 or self.seconds <= 0 or self.lr <= 0 or self.check_every < 1 or self.patience < 1:
            raise ValueError("adaptation needs steps >= 0, seconds > 0, lr > 0, check_every >= 1, patience >= 1")


@dataclass
class Adaptation:
    """What :func:`adapt` did: ``model`` (the adapted copy, or the un-adapted network when ``kept`` is False),
    ``steps`` run, ``seconds`` spent, the relative ``Gamma`` errors ``held_error_before`` / ``held_error_after``
    (of the returned network), ``best_step``, why it ``stopped`` (steps, time, patience, diverged) and the
    ``history`` of ``(step, held-out error)`` checks."""

    model: Any
    kept: bool
    steps: int
    seconds: float
    held_error_before: float
    held_error_after: float
    best_step: int
    stopped: str
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def extras(self) -> dict[str, Any]:
        """The Result extras of a run with adaptation."""
        return {"adapt_steps": self.steps, "adapt_seconds": round(self.seconds, 3),
                "adapt_held_error_before": self.held_error_before, "adapt_held_error_after": self.held_error_after,
                "adapt_kept": self.kept, "adapt_best_step": self.best_step, "adapt_stopped": self.stopped}


# ------------------------------------------------------------------------------------------------------------
# The split


@dataclass
class SampleSplit:
    """Disjoint sets of a problem's measured samples: ``theta`` (data consistency), ``loss`` (Lambda) and
    ``held`` (Gamma); bool ``[H, W]`` (Cartesian grid) or ``[K]`` (non-Cartesian samples). ``rest`` is the
    problem without ``held`` (what :meth:`redrawn` splits again), ``loss_fraction`` and ``seed`` its draw."""

    theta: torch.Tensor
    loss: torch.Tensor
    held: torch.Tensor
    rest: Any
    loss_fraction: float
    seed: int

    @property
    def measured(self) -> torch.Tensor:
        """``theta | loss | held``: every measured sample."""
        return self.theta | self.loss | self.held

    def redrawn(self, seed: int) -> "SampleSplit":
        """Another ``Theta`` / ``Lambda`` split of ``theta | loss`` (``seed``); the same ``held``."""
        theta, loss = _split_rest(self.rest, ~self.held, self.loss_fraction, seed)
        return replace(self, theta=theta, loss=loss, seed=seed)


def _split_rest(rest: Any, rest_positions: torch.Tensor, fraction: float, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(theta, loss)`` of the original problem's positions from a hold-out split of ``rest`` (the problem
    without Gamma; non-Cartesian: its samples are the original's ``rest_positions``)."""
    from workbench.holdout import split

    h = split(rest, fraction, seed)
    if rest.is_cartesian:
        return rest.mask & ~h.held, h.held
    loss = torch.zeros_like(rest_positions)
    loss[rest_positions] = h.held
    return rest_positions & ~loss, loss


def split_samples(problem: Any, held_fraction: float = 0.1, loss_fraction: float = 0.4, seed: int = 0
                  ) -> SampleSplit:
    """Split ``problem``'s measured samples into ``Theta``, ``Lambda`` and ``Gamma`` (module docstring) with
    :func:`workbench.holdout.split`: ``Gamma`` is ``held_fraction`` of the measured samples (``seed``),
    ``Lambda`` ``loss_fraction`` of the rest (``seed + 1``); both outside the calibration region, each at most
    half of the samples eligible there. :class:`~workbench.errors.SamplingError` when there are none."""
    from workbench.holdout import split

    gamma = split(problem, held_fraction, seed)
    rest_positions = ~gamma.held if not problem.is_cartesian else problem.mask & ~gamma.held
    theta, loss = _split_rest(gamma.train, rest_positions, loss_fraction, seed + 1)
    return SampleSplit(theta, loss, gamma.held, gamma.train, loss_fraction, seed + 1)


# ------------------------------------------------------------------------------------------------------------
# Subsets of a batch


class _KnownMapsEncoding(Encoding):
    """An encoding whose initial coil maps are given (those of the full data)."""

    def __init__(self, inner: Encoding, maps: torch.Tensor):
        self.inner, self.maps, self.grid_shape = inner, maps, inner.grid_shape

    def coil_images(self) -> torch.Tensor:
        return self.inner.coil_images()

    def initial_maps(self) -> torch.Tensor:
        return self.maps

    def normal(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return self.inner.normal(x, maps)

    def consistent_coil_images(self, coils: torch.Tensor) -> torch.Tensor | None:
        return self.inner.consistent_coil_images(coils)


@dataclass
class _SubsetBatch(Batch):
    """A batch of some of ``parent``'s samples; its encodings use the parent's initial coil maps."""

    parent: Batch | None = None

    def encoding(self, *args: Any, **kwargs: Any) -> Encoding:
        """:meth:`Batch.encoding` (same settings) with the initial maps of the parent's."""
        inner = super().encoding(*args, **kwargs)
        return _KnownMapsEncoding(inner, self.parent.encoding(*args, **kwargs).initial_maps())


def _outside_calibration(problem: Any) -> torch.Tensor:
    """Non-Cartesian samples ``[K]`` outside the calibration radius (:func:`workbench.holdout.split`'s rule:
    the only ones a split removes)."""
    radius = problem.trajectory.pow(2).sum(0).sqrt()
    return radius > math.pi * max(problem.calib) / max(problem.grid_shape)


def subset_batch(batch: Batch, keep: torch.Tensor, outside: torch.Tensor | None = None) -> Batch:
    """``batch`` (one trajectory / mask) reduced to the samples ``keep`` (bool ``[H, W]`` or ``[K]``), with the
    coil maps of the full batch. Non-Cartesian: the kept samples' density compensation, those ``outside``
    the calibration radius (bool ``[K]``; None: all) scaled so that their sum is that of all samples outside
    (a kept fraction ``f`` of them stands for ``1 / f`` as much k-space)."""
    keep = keep.to(batch.kspace.device)
    if batch.is_cartesian:
        mask = batch.mask & keep
        return _SubsetBatch(batch.kspace * mask[:, None], batch.grid_shape, batch.recon_shape, mask=mask,
                            parent=batch)
    dcf = batch.dcf
    if dcf is not None:
        outside = torch.ones_like(keep) if outside is None else outside.to(keep.device)
        ratio = float(dcf[outside].sum()) / max(float(dcf[outside & keep].sum()), 1e-30)
        dcf = torch.where(outside, dcf * ratio, dcf)[keep]
    return _SubsetBatch(batch.kspace[..., keep], batch.grid_shape, batch.recon_shape,
                        trajectory=batch.trajectory[:, keep], dcf=dcf, parent=batch)


class _Samples:
    """The measured samples ``positions`` of ``batch`` and the forward model onto them:
    ``predict(x [B, H, W], maps [B, C, H, W]) -> [B, C, n]``, ``data`` ``[B, C, n]``."""

    def __init__(self, batch: Batch, positions: torch.Tensor):
        self.positions = positions.to(batch.kspace.device)
        if batch.is_cartesian:
            self.data = batch.kspace[:, :, self.positions]
            self.op = None
        else:
            from workbench.physics.nufft import NufftSense

            self.data = batch.kspace[..., self.positions]
            self.op = NufftSense(None, batch.trajectory[:, self.positions], batch.grid_shape, toeplitz=False)

    def predict(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        if self.op is None:
            return fft2c(maps * x[:, None])[:, :, self.positions]
        return torch.stack([self.op.with_maps(s).forward(xi) for xi, s in zip(x, maps)])


def kspace_loss(predicted: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """SSDU's normalised l1 + l2 k-space loss ``||p - y||_1 / ||y||_1 + ||p - y||_2 / ||y||_2`` (complex
    samples of any shape; a 0-d tensor)."""
    r = predicted - measured
    return r.abs().sum() / measured.abs().sum().clamp_min(1e-30) + r.norm() / measured.norm().clamp_min(1e-30)


def kspace_error(predicted: torch.Tensor, measured: torch.Tensor) -> float:
    """Relative error ``||p - y||_2 / ||y||_2`` (what the held-out check compares)."""
    return float((predicted - measured).norm() / measured.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------------------------
# Networks


def network_image(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's complex image ``[B, H, W]`` on the grid in data units and the coil maps ``[B, C, H, W]``
    that map it to k-space: XPDNet / NC-PDNet: the unrolled output (before any final data-consistency step,
    whose k-space off the measured samples is the same) with the network's refined maps; U-net: its
    magnitude (zero outside the reconstruction size) and the ACS maps, which give it the calibration data's
    phase (module docstring). Differentiable."""
    if hasattr(model, "unrolled"):
        x, scale = model.unrolled(batch, final_data_consistency=False)
        return x * scale[:, None, None], model.maps(batch)
    out, scale = model(batch)
    magnitude = fit_shape(out.clamp_min(0) * scale[:, None, None], batch.grid_shape)
    maps = batch.encoding(acs_calib=model.config.acs_calib).initial_maps()
    return magnitude.to(maps.dtype), maps  # the ACS maps carry the calibration phase (module docstring)


def _trainable(model: Any, which: str) -> list[torch.nn.Parameter]:
    nets = getattr(model, "image_nets", None)
    if which == "all" or nets is None:
        return list(model.parameters())
    return list((nets if which == "image" else nets[-1]).parameters())


# ------------------------------------------------------------------------------------------------------------
# Adaptation


def adapt(model: Any, problem: Any, options: AdaptOptions | None = None,
          callback: Callable[[float, str], None] | None = None, batch: Batch | None = None) -> Adaptation:
    """Fine-tune a copy of ``model`` (XPDNet / NC-PDNet / U-net) on ``problem``'s measured samples (module
    docstring) and return the :class:`Adaptation` (its ``model``: the best checked state, or ``model`` itself
    when none beat it on ``Gamma``). ``batch``: the problem as a network batch on the compute device (default:
    :meth:`Batch.from_problem`). ``callback(fraction, text)`` after each check and step (it may raise to
    cancel). Deterministic for a seed and a thread count; runs on the batch's device."""
    options = options or AdaptOptions()
    t0 = time.perf_counter()
    batch = batch if batch is not None else Batch.from_problem(problem).to(problem.device)
    report = callback or (lambda fraction, text: None)
    split = split_samples(problem, options.held_fraction, options.loss_fraction, options.seed)
    outside = None if problem.is_cartesian else _outside_calibration(problem)
    rest_batch = subset_batch(batch, split.theta | split.loss, outside)
    held = _Samples(batch, split.held)

    work = copy.deepcopy(model).eval()
    params = _trainable(work, options.trainable)
    chosen = {id(p) for p in params}
    for p in work.parameters():
        p.requires_grad_(id(p) in chosen)

    def held_error() -> float:
        with torch.no_grad():
            return kspace_error(held.predict(*network_image(work, rest_batch)), held.data)

    report(0.0, "adapting: held-out error of the trained network")
    t = time.perf_counter()
    before = held_error()
    t_check = time.perf_counter() - t
    deadline = t0 + options.seconds - t_check  # the final reconstruction costs about one check
    best, best_step, best_state, since_best = before, 0, None, 0
    history = [(0, before)]
    optimizer = torch.optim.Adam(params, lr=options.lr)
    # first guess of a step: the forward pass plus a backward pass (about twice a forward) through the part of
    # the network that trains
    share = sum(p.numel() for p in params) / max(sum(p.numel() for p in work.parameters()), 1)
    step, t_step, stopped = 0, t_check * (1 + 2 * share), "steps"
    budget = max(options.seconds - 2 * t_check, 1e-9)
    while step < options.steps:
        if time.perf_counter() + t_step + t_check > deadline:
            stopped = "time"
            break
        t = time.perf_counter()
        if options.resample and step > 0:
            split = split.redrawn(options.seed + 1 + step)
        theta, loss_set = subset_batch(batch, split.theta, outside), _Samples(batch, split.loss)
        with torch.enable_grad():
            loss = kspace_loss(loss_set.predict(*network_image(work, theta)), loss_set.data)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        step += 1
        t_step = time.perf_counter() - t
        last = step == options.steps or time.perf_counter() + t_step + t_check > deadline
        if not torch.isfinite(loss):
            stopped = "diverged"
        elif step % options.check_every == 0 or last:
            error = held_error()
            history.append((step, error))
            if error < best:
                best, best_step, since_best = error, step, 0
                best_state = {k: v.detach().clone() for k, v in work.state_dict().items()}
            else:
                since_best += 1
                if since_best >= options.patience:
                    stopped = "patience"
        fraction = max(step / max(options.steps, 1), (time.perf_counter() - t0) / budget)
        report(min(fraction, 1.0), f"adapting: step {step}/{options.steps}, held-out error {history[-1][1]:.4f} "
                                   f"(trained network {before:.4f})")
        if stopped in ("diverged", "patience"):
            break
    seconds = time.perf_counter() - t0
    if best_state is None:
        return Adaptation(model, False, step, seconds, before, before, 0, stopped, history)
    work.load_state_dict(best_state)
    for p in work.parameters():
        p.requires_grad_(False)
    return Adaptation(work, True, step, seconds, before, best, best_step, stopped, history)
