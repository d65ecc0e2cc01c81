"""Scan-specific self-supervised adaptation (workbench.nn.adapt and the plugins' ``adapt`` option): the split of
the measured samples, a lower held-out k-space error after adaptation, cancellation, the time budget, the
shipped model left untouched, and the fallback to the trained network when adaptation does not help."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from workbench_builtin_methods.ncpdnet import NCPDNet
from workbench_builtin_methods.unet import UnetBaseline
from workbench_builtin_methods.xpdnet import XPDNet
from workbench.methods import JobCancelled, RunContext
from workbench.nn import build_model
from workbench.nn.adapt import AdaptOptions, adapt, split_samples, subset_batch
from workbench.nn.batch import Batch
from workbench.nn.weights import cached_model, save_weights, shipped_weights
from workbench.physics.coils import calibration_region
from workbench.physics.fft import fft2c
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.simulate import generate_slice

ARCH = {"n_iter": 2, "n_primal": 2, "image_net": {"n_filters": 4, "n_scales": 2, "n_convs_per_scale": 1,
                                                  "n_first_convs": 1},
        "sens_net": {"chans": 2, "num_pool_layers": 1}}
UNET_ARCH = {"chans": 4, "num_pool_layers": 2}
RECORD = {"training": {"sampling": {"kinds": ["random", "equispaced"]}, "steps": 1}}


@pytest.fixture(scope="module")
def slice64():
    return generate_slice(3, shape=(64, 64), n_coils=4)


@pytest.fixture(scope="module")
def problem(slice64):
    """A 4-coil 64x64 synthetic slice under a fastMRI-style random line mask at 4x (8 % centre lines)."""
    s = make_sampling("random", (64, 64), 4, seed=0, center_fraction=0.08)
    return Problem(torch.from_numpy(slice64["kspace"]) * s.mask, mask=s.mask, reference=slice64["reference"])


@pytest.fixture(scope="module")
def radial(slice64):
    """The same slice on a golden-angle radial trajectory (density-compensated), resampled by the NUFFT."""
    from workbench.physics.nufft import NufftSense

    s = make_sampling("golden-radial", (64, 64), 4, seed=0)
    maps = torch.from_numpy(slice64["maps"]).to(torch.complex64)
    image = torch.from_numpy(slice64["image"]).to(torch.complex64)
    y = NufftSense(maps, torch.as_tensor(s.trajectory), (64, 64), toeplitz=False).forward(image)
    return Problem(y, (64, 64), trajectory=s.trajectory, dcf=s.dcf, reference=slice64["reference"])


def _weights(tmp_path, name, arch, seed=0):
    torch.manual_seed(seed)
    path, _ = save_weights(tmp_path / f"{name}.safetensors", build_model(name, arch), RECORD)
    return str(path)


def _held_error(model, problem, split) -> float:
    """Relative k-space error on Gamma of the network's image from Theta u Lambda, by hand (A = M F S)."""
    batch = Batch.from_problem(problem)
    sub = Batch(batch.kspace * (split.theta | split.loss), batch.grid_shape, batch.recon_shape,
                mask=batch.mask & (split.theta | split.loss))
    with torch.no_grad():
        x = model.reconstruct(sub, final_data_consistency=False)
        k = fft2c(model.maps(sub) * x[:, None])[0][:, split.held]
    y = problem.y[:, split.held]
    return float((k - y).norm() / y.norm())


# ------------------------------------------------------------------------------------------------------------
# The split


def test_cartesian_split_is_disjoint_covers_the_measured_samples_and_keeps_the_acs_in_theta(problem):
    s = split_samples(problem, held_fraction=0.1, loss_fraction=0.4, seed=0)
    theta, loss, held, mask = s.theta, s.loss, s.held, problem.mask
    assert not (theta & loss).any() and not (theta & held).any() and not (loss & held).any()
    assert torch.equal(theta | loss | held, mask)  # every measured sample, never an unmeasured one
    n = int(mask.sum())
    assert abs(int(held.sum()) - 0.1 * n) <= 1 and int(loss.sum()) > 0.2 * n
    rows, cols = calibration_region(mask, (24, 24))
    assert theta[rows, cols].all()  # the ACS box whole: the same coil maps from Theta
    assert calibration_region(theta, (24, 24)) == (rows, cols)
    # fixed seed, and a redraw keeps Gamma
    again = split_samples(problem, 0.1, 0.4, seed=0)
    assert torch.equal(again.theta, theta) and torch.equal(again.held, held)
    other = s.redrawn(7)
    assert torch.equal(other.held, held) and not torch.equal(other.loss, loss)
    assert torch.equal(other.theta | other.loss, theta | loss) and not (other.theta & other.loss).any()


def test_noncartesian_split_keeps_the_centre_and_rescales_the_density_compensation(radial):
    s = split_samples(radial, held_fraction=0.1, loss_fraction=0.4, seed=1)
    assert not (s.theta & s.loss).any() and not (s.theta & s.held).any() and not (s.loss & s.held).any()
    assert bool((s.theta | s.loss | s.held).all())
    radius = radial.trajectory.pow(2).sum(0).sqrt()
    centre = radius <= math.pi * 24 / 64
    assert bool(s.theta[centre].all())
    batch = Batch.from_problem(radial)
    sub = subset_batch(batch, s.theta, ~centre)
    assert sub.kspace.shape[-1] == int(s.theta.sum())
    # the kept outer samples carry the weight of all outer samples (each scaled alike); the centre's are unchanged
    kept_outer = ~centre[s.theta]
    assert float(sub.dcf[kept_outer].sum()) == pytest.approx(float(radial.dcf[~centre].sum()), rel=1e-5)
    ratio = sub.dcf[kept_outer] / radial.dcf[s.theta & ~centre]
    assert float(ratio.min()) == pytest.approx(float(ratio.max()), rel=1e-5) and float(ratio.min()) > 1.5
    assert torch.equal(sub.dcf[~kept_outer], radial.dcf[s.theta & centre])
    # the subset's coil maps are the full data's
    assert torch.equal(sub.encoding().initial_maps(), batch.encoding().initial_maps())


# ------------------------------------------------------------------------------------------------------------
# Adaptation


def _perturbed(name, arch, amount=0.05):
    """A small network whose weights fit no scan in particular (random, perturbed output layers)."""
    torch.manual_seed(0)
    model = build_model(name, arch).eval()
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.data += amount * torch.randn(p.shape, generator=g)
    return model


def test_adaptation_lowers_the_held_out_error_and_is_deterministic(problem):
    model = _perturbed("xpdnet", ARCH)
    options = AdaptOptions(steps=10, seconds=60, lr=1e-2, trainable="all", check_every=2, patience=10)
    events = []
    a = adapt(model, problem, options, lambda f, t: events.append((f, t)))
    assert a.kept and a.model is not model and 0 < a.best_step <= a.steps == 10
    assert a.held_error_after < 0.96 * a.held_error_before
    # the same held-out errors computed independently (A = M F S by hand, on the same split)
    split = split_samples(problem, options.held_fraction, options.loss_fraction, options.seed)
    assert _held_error(model, problem, split) == pytest.approx(a.held_error_before, rel=1e-4)
    assert _held_error(a.model, problem, split) == pytest.approx(a.held_error_after, rel=1e-4)
    steps = [t for _, t in events if "step" in t]
    assert len(steps) == 10 and steps[0].startswith("adapting: step 1/10, held-out error")
    assert [f for f, _ in events] == sorted(f for f, _ in events) and events[-1][0] == 1.0
    b = adapt(model, problem, options)
    assert b.history == a.history  # a seed and a thread count give the same run


def test_unet_adaptation_lowers_the_held_out_error(problem):
    model = _perturbed("unet", UNET_ARCH, 0.0)
    a = adapt(model, problem, AdaptOptions(steps=10, seconds=60, lr=1e-2, check_every=2, patience=10))
    assert a.kept and a.held_error_after < 0.96 * a.held_error_before


def test_the_trained_network_is_returned_when_adaptation_does_not_help(tmp_path, problem):
    """An absurd learning rate wrecks the copy: no checked state beats the trained one on Gamma, so the plugin
    reconstructs with the trained network, exactly as without adaptation, and says so."""
    path = _weights(tmp_path, "xpdnet", ARCH)
    method = XPDNet()
    plain = method.run(problem, method.make_params({"weights": path}), RunContext("cpu"))
    params = method.make_params({"weights": path, "adapt": True, "adapt_steps": 3, "adapt_lr": 1.0,
                                 "adapt_trainable": "all"})
    result = method.run(problem, params, RunContext("cpu"))
    ex = result.extras
    assert ex["adapt_kept"] is False and ex["adapt_held_error_after"] == ex["adapt_held_error_before"]
    assert ex["adapt_steps"] >= 1
    assert torch.equal(result.image, plain.image)


def test_adapt_patience_reaches_the_adaptation(tmp_path, problem, monkeypatch):
    """``adapt_patience`` is the adaptation's patience (held-out checks without improvement before it stops):
    XPDNet's own default 5, the U-net's the shared 3, and what the user sets."""
    import workbench.nn.adapt as adapt_module

    seen = []
    real = adapt_module.adapt
    monkeypatch.setattr(adapt_module, "adapt", lambda model, prob, options, *a: seen.append(options.patience)
                        or real(model, prob, options, *a))
    for method, name, arch in ((XPDNet(), "xpdnet", ARCH), (UnetBaseline(), "unet", UNET_ARCH)):
        path = _weights(tmp_path, name, arch)
        for extra in ({}, {"adapt_patience": 2}):
            method.run(problem, method.make_params({"weights": path, "adapt": True, "adapt_steps": 1, **extra}),
                       RunContext("cpu"))
    assert seen == [5, 2, 3, 2]


def test_cancel_during_adaptation_raises_the_jobs_cancel_error(tmp_path, problem):
    path = _weights(tmp_path, "xpdnet", ARCH)
    texts = []

    def on_progress(fraction, text):
        texts.append(text)
        if text.startswith("adapting: step 2/"):
            ctx.cancel()

    ctx = RunContext("cpu", on_progress=on_progress)
    params = XPDNet().make_params({"weights": path, "adapt": True, "adapt_steps": 50})
    with pytest.raises(JobCancelled):
        XPDNet().run(problem, params, ctx)
    assert texts[-1].startswith("adapting: step 2/")  # stopped at the next step


def test_the_time_budget_is_respected(problem):
    model = build_model("xpdnet", ARCH).eval()
    adapt(model, problem, AdaptOptions(steps=1))  # the first backward pass of a process is slow
    t = time.perf_counter()
    a = adapt(model, problem, AdaptOptions(steps=100000, seconds=3.0, lr=1e-3, patience=100000))
    elapsed = time.perf_counter() - t
    assert a.stopped == "time" and a.steps > 1 and elapsed < 3.0
    assert a.history[-1][0] == a.steps  # the last step was checked


def test_shipped_model_is_unchanged_by_adaptation(problem, radial):
    """The plugins adapt a copy: the cached shipped network keeps its weights (and is what a later run gets)."""
    for method, prob, name in ((XPDNet(), problem, "xpdnet"), (UnetBaseline(), problem, "unet"),
                               (NCPDNet(), radial, "ncpdnet")):
        path = shipped_weights(name)
        if not path.is_file():
            pytest.skip(f"no shipped {name} weights")
        model, _ = cached_model(path, "cpu")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        grads = [p.requires_grad for p in model.parameters()]
        values = {"adapt": True, "adapt_steps": 1, "adapt_lr": 1e-2}
        params = method.make_params(values if name == "unet" else {**values, "adapt_trainable": "all"})
        result = method.run(prob, params, RunContext("cpu"))
        assert result.extras["adapt_steps"] == 1 and np.isfinite(result.extras["adapt_held_error_after"])
        assert torch.isfinite(result.image).all()
        assert cached_model(path, "cpu")[0] is model
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert [p.requires_grad for p in model.parameters()] == grads


def test_xpdnet_adapts_by_default_scans_of_at_most_two_coils(tmp_path, problem):
    """``adapt`` left automatic: a 2-coil scan is adapted, a 4-coil one is not (AUTO_ADAPT_MAX_COILS), each run
    reports the choice, the hold-out's re-runs keep it, and an explicit False is obeyed."""
    from workbench.holdout import params_as_run
    from workbench.nn.inference import AUTO_ADAPT_MAX_COILS

    assert AUTO_ADAPT_MAX_COILS == 2
    path = _weights(tmp_path, "xpdnet", ARCH)
    method = XPDNet()
    two = Problem(problem.y[:2], mask=problem.mask, reference=problem.reference)
    auto = {"weights": path, "adapt_steps": 1}
    assert method.make_params(auto).adapt is None
    adapted = method.run(two, method.make_params(auto), RunContext("cpu"))
    assert adapted.chosen["adapt"] is True and adapted.chosen["adapt_rule"] == "2 coils; on for at most 2"
    assert adapted.extras["adapt_steps"] == 1
    assert params_as_run(method, auto, adapted.chosen)["adapt"] is True
    plain = method.run(problem, method.make_params(auto), RunContext("cpu"))
    assert plain.chosen["adapt"] is False and "adapt_steps" not in plain.extras
    assert params_as_run(method, auto, plain.chosen)["adapt"] is False
    off = method.run(two, method.make_params({**auto, "adapt": False}), RunContext("cpu"))
    assert "adapt" not in off.chosen and "adapt_steps" not in off.extras


def test_the_unet_adapts_by_default_cartesian_scans_of_at_most_two_coils_only(tmp_path, problem, radial):
    """The U-net's automatic ``adapt``: on for a 2-coil Cartesian scan, off for 4 coils and off the grid (where
    adaptation lost on the real radial rows), each choice reported."""
    path = _weights(tmp_path, "unet", UNET_ARCH)
    method = UnetBaseline()
    auto = {"weights": path, "adapt_steps": 1}
    two = Problem(problem.y[:2], mask=problem.mask, reference=problem.reference)
    adapted = method.run(two, method.make_params(auto), RunContext("cpu"))
    assert adapted.chosen["adapt"] is True and adapted.extras["adapt_steps"] == 1
    four = method.run(problem, method.make_params(auto), RunContext("cpu"))
    assert four.chosen["adapt"] is False and "adapt_steps" not in four.extras
    assert method.make_params(auto).adapt is None
    from workbench.nn.inference import adaptation_choice, wants_adaptation

    nc_params = NCPDNet().make_params({})  # NC-PDNet: automatic too, and so off (always off the grid)
    assert nc_params.adapt is None and not wants_adaptation(nc_params, radial)

    params = method.make_params(auto)
    two_radial = Problem(radial.y[:2], radial.grid_shape, trajectory=radial.trajectory, dcf=radial.dcf)
    assert not wants_adaptation(params, two_radial)
    assert adaptation_choice(params, two_radial) == {"adapt": False, "adapt_rule": "non-Cartesian: off"}
