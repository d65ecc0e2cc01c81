"""The dsm-posterior and dsm-pnp plugins end to end on tiny problems with a tiny randomly initialised score
network saved as a weight file (safetensors + sidecar)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.methods import JobCancelled, RunContext, discover_methods, safe_run


@pytest.fixture(scope="module")
def registry():
    return discover_methods(entry_points=False, user_dirs=False)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from workbench.nn.score_net import ScoreNet, ScoreNetConfig
    from workbench.nn.weights import save_weights

    torch.manual_seed(0)
    net = ScoreNet(ScoreNetConfig(chans=[4, 8], patch=2, emb_dim=8, sigma_min=0.01, sigma_max=1.0))
    for p in net.out.parameters():  # a non-trivial denoiser (the output layer starts at zero)
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path_factory.mktemp("w") / "tiny_dsm.safetensors"
    save_weights(path, net, {"training": {"steps": 0}, "command": "test"})
    return str(path)


def _run(method, problem, values, ctx=None):
    """What safe_run does, with the parameters passed to check() too (safe_run calls check(problem) only, which
    looks at the shipped weights)."""
    params = method.make_params(values)
    assert method.check(problem, params) == []
    with torch.no_grad():
        return method.run(problem, params, ctx or RunContext("cpu"))


def _cartesian_problem(units: float = 1.0):
    from workbench.problem import Problem
    from workbench.sampling import make_sampling
    from workbench.simulate import generate_slice

    sim = generate_slice(3, shape=(32, 32), n_coils=3, contrast="t1")
    mask = make_sampling("random", (32, 32), 4, seed=0).mask
    k = torch.from_numpy(sim["kspace"]) * units
    return Problem(k * mask, mask=mask, maps=torch.from_numpy(sim["maps"]),
                   reference=sim["reference"] * units)


def test_both_plugins_are_discovered_with_their_capabilities(registry):
    post, pnp = registry.get("dsm-posterior"), registry.get("dsm-pnp")
    assert post.capabilities.gives_uncertainty and post.capabilities.stochastic and post.capabilities.needs_weights
    assert post.capabilities.noncartesian and pnp.capabilities.noncartesian and pnp.capabilities.needs_weights


def test_check_explains_a_missing_weight_file(registry, tmp_path):
    problem = _cartesian_problem()
    missing = tmp_path / "nope.safetensors"
    for name in ("dsm-posterior", "dsm-pnp"):
        method = registry.get(name)
        params = method.make_params({"weights": str(missing)})
        reasons = method.check(problem, params)
        assert len(reasons) == 1 and str(missing) in reasons[0] and "train" in reasons[0]
        with pytest.raises(Exception, match="not found"):
            safe_run(method, problem, {"weights": str(missing)})


def test_check_rejects_weights_of_another_model(registry, tmp_path, weights):
    import json
    import shutil

    other = tmp_path / "other.safetensors"
    shutil.copy(weights, other)
    side = json.loads(open(weights.replace(".safetensors", ".json")).read())
    side["model"] = "unet"
    other.with_suffix(".json").write_text(json.dumps(side))
    method = registry.get("dsm-posterior")
    (reason,) = method.check(_cartesian_problem(), method.make_params({"weights": str(other)}))
    assert "unet" in reason


def test_posterior_plugin_end_to_end(registry, weights):
    problem = _cartesian_problem()
    progress, previews = [], []
    ctx = RunContext("cpu", on_progress=lambda f, t: progress.append(f), on_iterate=previews.append,
                     iterate_interval=0.0)
    params = {"weights": weights, "n_samples": 3, "n_levels": 4, "steps_per_level": 2, "seed": 1}
    result = _run(registry.get("dsm-posterior"), problem, params, ctx)
    assert result.samples.shape == (3, 32, 32) and result.std.shape == (32, 32)
    assert torch.allclose(result.image, result.samples.mean(0), atol=1e-5)
    assert torch.allclose(result.std, result.samples.abs().std(0), atol=1e-5)
    n_eval = 4 * 2 + 3 + 1  # Langevin steps + predictor steps + final denoising
    assert len(result.history) == n_eval - 1 and result.extras["n_evaluations"] == n_eval
    assert progress[-1] == 1.0 and all(b >= a for a, b in zip(progress, progress[1:]))
    assert previews and previews[-1].shape == (32, 32)
    cal = result.extras["calibration"]
    assert set(cal) >= {"spearman", "coverage", "coverage_gaussian", "n_samples", "curve"}
    assert cal["n_samples"] == 3 and 0.0 <= cal["coverage"] <= 1.0
    assert result.chosen["likelihood"] == "exact" and result.chosen["scale"] == pytest.approx(problem.scale)
    # stochastic: another seed gives other samples, the same seed the same ones
    again = _run(registry.get("dsm-posterior"), problem, params)
    assert torch.equal(again.samples, result.samples)
    other = _run(registry.get("dsm-posterior"), problem, {**params, "seed": 2})
    assert not torch.equal(other.samples, result.samples)


def test_predicted_scans_keep_the_data_and_add_scanner_noise_elsewhere():
    from numpy_reference import np_fft2c
    from workbench.nn.dsm import predicted_scans

    g = torch.Generator().manual_seed(3)
    maps = torch.complex(torch.randn(2, 24, 20, generator=g), torch.randn(2, 24, 20, generator=g))
    mask = torch.zeros(24, 20, dtype=torch.bool)
    mask[:, ::3] = True
    y = torch.complex(torch.randn(2, 24, 20, generator=g), torch.randn(2, 24, 20, generator=g)) * mask
    x = torch.complex(torch.randn(200, 24, 20, generator=g), torch.randn(200, 24, 20, generator=g))
    x[1:] = x[0]  # one image sample, repeated: what varies between the scans is the new noise only
    scans = predicted_scans(x, maps, mask, y, noise_std=0.5, generator=g)
    k = np_fft2c(scans.numpy())
    m = mask.numpy()
    np.testing.assert_allclose(k[:, :, m], np.broadcast_to(y.numpy()[:, m], k[:, :, m].shape), atol=1e-5)
    noise = k[:, :, ~m] - np_fft2c((maps * x[0]).numpy())[:, ~m]
    assert abs(np.mean(np.abs(noise) ** 2) - 0.25) < 0.01  # E|n|^2 = noise_std^2 (80 000 draws)
    assert abs(np.mean(noise)) < 0.01 and abs(np.mean(noise.real**2) - np.mean(noise.imag**2)) < 0.01


def test_posterior_predicts_the_fully_sampled_scan(registry, weights):
    from workbench.physics.fft import ifft2c, rss
    from workbench.problem import Problem
    from workbench.simulate import generate_slice

    params = {"weights": weights, "n_samples": 3, "n_levels": 3, "steps_per_level": 1, "predict": "scan"}
    result = _run(registry.get("dsm-posterior"), _cartesian_problem(), params)
    # magnitudes (stored complex64, as every Result image)
    assert float(result.samples.imag.abs().max()) == 0 and float(result.samples.real.min()) >= 0
    # the image is the chains' mean of the expected RSS (noise integrated out); the samples are draws with the
    # noise, whose mean energy is the chains' mean of the expected RSS^2: larger by Jensen, not by much
    image2, samples2 = float((result.image.abs() ** 2).mean()), float((result.samples.abs() ** 2).mean())
    assert 0.7 * samples2 < image2 < 1.05 * samples2
    assert result.chosen["predict"] == "scan" and result.extras["calibration"]["coverage_predictive"] is None
    # fully sampled: nothing left to predict; every sample is the data's RSS image, the spread is zero
    sim = generate_slice(4, shape=(32, 32), n_coils=3)
    k = torch.from_numpy(sim["kspace"])
    full = Problem(k, mask=torch.ones(32, 32, dtype=torch.bool), maps=torch.from_numpy(sim["maps"]))
    result = _run(registry.get("dsm-posterior"), full, params)
    expected = rss(ifft2c(k))
    torch.testing.assert_close(result.image.real, expected, atol=1e-4 * float(expected.max()), rtol=0)
    assert float(result.std.max()) <= 1e-4 * float(expected.max())


def test_scan_prediction_is_refused_on_trajectories(registry, weights):
    from workbench.problem import Problem
    from workbench.sampling import make_sampling

    s = make_sampling("golden-radial", (32, 32), 4)
    problem = Problem(torch.zeros(2, s.trajectory.shape[-1], dtype=torch.complex64), (32, 32),
                      trajectory=s.trajectory, dcf=s.dcf)
    post = registry.get("dsm-posterior")
    reasons = post.check(problem, post.make_params({"weights": weights, "predict": "scan"}))
    assert any("Cartesian" in r for r in reasons)
    assert post.check(problem, post.make_params({"weights": weights})) == []


def test_least_squares_start_fits_the_data(registry, weights):
    from workbench.nn.dsm import NormalisedProblem

    data = NormalisedProblem(_cartesian_problem())

    def residual(x):  # relative residual of the likelihood's normal equations
        return float(torch.linalg.vector_norm(data.normal(x) - data.adjoint_y) / torch.linalg.vector_norm(data.adjoint_y))

    assert residual(data.least_squares()) < 0.1 * residual(data.x0)
    # the plugin starts its chains there by default; the zero-filled start remains a choice
    params = {"weights": weights, "n_samples": 2, "n_levels": 2, "steps_per_level": 1, "seed": 0}
    post = registry.get("dsm-posterior")
    assert post.make_params({}).init == "least-squares"
    a = _run(post, _cartesian_problem(), params)
    b = _run(post, _cartesian_problem(), {**params, "init": "zero-filled"})
    assert not torch.allclose(a.samples, b.samples)


def test_posterior_is_independent_of_scanner_units(registry, weights):
    """The data are divided by the problem's scale: k-space x 1000 gives images x 1000, the same samples."""
    params = {"weights": weights, "n_samples": 2, "n_levels": 3, "steps_per_level": 1, "seed": 0,
              "chains_per_batch": 1}
    a = _run(registry.get("dsm-posterior"), _cartesian_problem(1.0), params)
    b = _run(registry.get("dsm-posterior"), _cartesian_problem(1000.0), params)
    assert torch.allclose(b.samples / 1000, a.samples, rtol=1e-3, atol=1e-4 * float(a.samples.abs().max()))
    assert b.extras["calibration"]["coverage"] == pytest.approx(a.extras["calibration"]["coverage"], abs=0.01)


def test_posterior_cancels_between_steps(registry, weights):
    ctx = RunContext("cpu")
    steps = []

    def on_progress(f, t):
        steps.append(f)
        if len(steps) == 3:
            ctx.cancel()

    ctx._on_progress = on_progress
    with pytest.raises(JobCancelled):
        _run(registry.get("dsm-posterior"), _cartesian_problem(),
                 {"weights": weights, "n_samples": 2, "n_levels": 20}, ctx)
    assert len(steps) <= 4


def test_posterior_on_a_radial_problem(registry, weights):
    from workbench.problem import Problem
    from workbench.sampling import make_sampling
    from workbench.sampling.retrospective import sample_noncartesian
    from workbench.simulate import generate_slice

    sim = generate_slice(4, shape=(32, 32), n_coils=2, contrast="t2")
    s = make_sampling("radial", (32, 32), 2)
    coil = torch.from_numpy(sim["maps"] * sim["image"][None])
    y = sample_noncartesian(coil, s.trajectory)
    problem = Problem(y, (32, 32), trajectory=s.trajectory, dcf=s.dcf, maps=torch.from_numpy(sim["maps"]))
    r = _run(registry.get("dsm-posterior"), problem,
                 {"weights": weights, "n_samples": 2, "n_levels": 3, "steps_per_level": 1})
    assert r.samples.shape == (2, 32, 32) and torch.isfinite(r.std).all()
    assert r.chosen["likelihood"] == "density-compensated" and "calibration" not in r.extras
    exact = _run(registry.get("dsm-posterior"), problem,
                     {"weights": weights, "n_samples": 2, "n_levels": 3, "likelihood": "exact"})
    assert exact.chosen["likelihood"] == "exact" and exact.chosen["lipschitz"] > 1.0


def test_pnp_plugin_end_to_end_and_units(registry, weights):
    method = registry.get("dsm-pnp")
    progress = []
    ctx = RunContext("cpu", on_progress=lambda f, t: progress.append(f))
    a = _run(method, _cartesian_problem(), {"weights": weights, "n_iter": 4}, ctx)
    assert a.image.shape == (32, 32) and torch.isfinite(a.image).all()
    assert [h["iter"] for h in a.history] == [1, 2, 3, 4] and progress[-1] == 1.0
    sig = [h["sigma"] for h in a.history]
    assert sig[0] == pytest.approx(0.1) and sig[-1] == pytest.approx(0.01)
    b = _run(method, _cartesian_problem(1000.0), {"weights": weights, "n_iter": 4})
    assert torch.allclose(b.image / 1000, a.image, rtol=1e-3, atol=1e-4 * float(a.image.abs().max()))
