"""Denoising score matching, the annealed Langevin posterior sampler, the calibration metrics and the DSM
training entry, checked against closed forms (Gaussian toys), scipy and explicit counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.nn.dsm import (
    annealed_langevin,
    calibration_metrics,
    complex_noise,
    count_evaluations,
    dsm_loss,
    gaussian_coverage,
    interval_coverage,
    spearman,
)
from workbench.nn.score_net import ScoreNet, ScoreNetConfig, geometric_sigmas


# ------------------------------------------------------------------------------------------------------------
# Score network


def test_geometric_sigmas_endpoints_and_constant_ratio():
    s = geometric_sigmas(2.0, 0.01, 12)
    assert s[0] == pytest.approx(2.0) and s[-1] == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, (0.01 / 2.0) ** (1 / 11)))


def test_score_net_any_size_and_tweedie_relation():
    torch.manual_seed(0)
    net = ScoreNet(ScoreNetConfig(chans=[8, 12], patch=2, emb_dim=8)).eval()
    for p in net.out.parameters():  # a non-trivial output (the layer starts at zero)
        torch.nn.init.normal_(p, std=0.1)
    x = complex_noise((2, 37, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s = net.score(x, 0.3)
        d = net.denoise(x, 0.3)
    assert s.shape == x.shape and s.dtype == torch.complex64
    assert torch.allclose(d, x + 0.3**2 * s, atol=1e-5)  # r(x, s) = x + s^2 score(x, s)
    assert float(s.abs().mean()) > 0


def test_dsm_training_approaches_the_gaussian_optimum():
    """x ~ N(0, c^2) per real component: the optimal denoiser is x c^2 / (c^2 + s^2) and the smallest DSM loss
    at level s is c^2 / (c^2 + s^2) (the variance of the noise given the noisy image). A tiny network trained
    by DSM approaches both."""
    torch.manual_seed(0)
    c, lo, hi = 0.5, 0.1, 1.0
    net = ScoreNet(ScoreNetConfig(chans=[16], blocks=1, patch=1, emb_dim=16, sigma_min=lo, sigma_max=hi,
                                  sigma_data=c))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(1)
    first = []
    for step in range(150):
        x = c * complex_noise((16, 12, 12), generator=g)
        loss = dsm_loss(net, x, lo, hi, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step < 5:
            first.append(float(loss.detach()))
    net.eval()
    x = c * complex_noise((64, 12, 12), generator=torch.Generator().manual_seed(2))
    for sigma in (0.15, 0.4, 0.9):
        noisy = x + sigma * complex_noise(x.shape, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            d = net.denoise(noisy, sigma)
        optimal = noisy * c**2 / (c**2 + sigma**2)
        gap_identity = float((noisy - optimal).abs().square().mean())  # the untrained (zero-output) network
        gap = float((d - optimal).abs().square().mean())
        assert gap < 0.1 * gap_identity, (sigma, gap, gap_identity)
        # the DSM loss at this level against its analytic minimum
        z = torch.stack([(noisy - x).real, (noisy - x).imag], 1) / sigma
        with torch.no_grad():
            eps = net(torch.stack([noisy.real, noisy.imag], 1), torch.full((64,), sigma))
        loss = float((eps - z).square().mean())
        assert loss == pytest.approx(c**2 / (c**2 + sigma**2), rel=0.1)
    assert np.mean(first) > 0.95  # the zero-initialised output starts at loss 1


# ------------------------------------------------------------------------------------------------------------
# Sampler


def _dense(A, shape):
    n = shape[0] * shape[1]
    basis = torch.eye(n, dtype=torch.complex64).reshape(n, *shape)
    return A(basis).reshape(n, -1).T.to(torch.complex128)  # [M, N]


@pytest.mark.parametrize("predictor, steps, step_size",
                         [("ancestral", 3, 1.0), ("reverse-diffusion", 3, 0.8), ("none", 6, 1.0)])
def test_langevin_matches_the_closed_form_gaussian_posterior(predictor, steps, step_size):
    """Prior x ~ N(0, c^2 I), 2-coil Cartesian SENSE with a random mask, y = A x + n (sigma_y per real part):
    the posterior is Gaussian with precision P = M^H M / sigma_y^2 + I / c^2 (M the dense matrix of A), mean
    P^-1 M^H y / sigma_y^2 and per-real-part variance diag(P^-1). The sampler gets the analytic smoothed prior
    score -x / (c^2 + sigma^2)."""
    from workbench.physics.sense import CartesianSense

    g = torch.Generator().manual_seed(0)
    h = w = 8
    c, sy = 1.0, 0.2
    maps = complex_noise((2, h, w), generator=g)
    maps = maps / maps.abs().square().sum(0).sqrt()
    A = CartesianSense(maps, torch.rand(h, w, generator=g) < 0.4)
    x = c * complex_noise((h, w), generator=g)
    y = A(x) + sy * complex_noise(A.oshape, generator=g)
    M = _dense(A, (h, w))
    P = M.conj().T @ M / sy**2 + torch.eye(h * w, dtype=torch.complex128) / c**2
    cov = torch.linalg.inv(P)
    mean = cov @ (M.conj().T @ y.reshape(-1).to(torch.complex128)) / sy**2
    var = cov.diagonal().real

    n_chains = 512
    xs = annealed_langevin(lambda v, s: -v / (c * c + s * s), A.normal, A.H(y), n_chains=n_chains,
                           sigmas=geometric_sigmas(2.0, 0.01, 40), sigma_y=sy, steps_per_level=steps,
                           step_size=step_size, predictor=predictor, generator=torch.Generator().manual_seed(1))
    assert xs.shape == (n_chains, h, w)
    emp_mean = xs.mean(0).reshape(-1).to(torch.complex128)
    emp_var = ((xs - xs.mean(0)).abs().square().mean(0) / 2).reshape(-1).double()
    assert float((emp_var / var).mean()) == pytest.approx(1.0, abs=0.1)
    # mean error in units of the posterior std (Monte Carlo alone gives ~0.06 with 512 chains)
    z = (emp_mean - mean).abs() / var.sqrt()
    assert float(z.square().mean().sqrt()) < 0.3


def test_langevin_prior_only_and_callback():
    c = 0.7
    seen = []
    xs = annealed_langevin(lambda v, s: -v / (c * c + s * s), None, None, n_chains=256, image_shape=(8, 8),
                           sigmas=geometric_sigmas(3.0, 0.01, 30), steps_per_level=2, step_size=0.5,
                           predictor="reverse-diffusion", generator=torch.Generator().manual_seed(0),
                           callback=lambda k, n, x, info: seen.append((k, n, info["sigma"])))
    var = float((xs - xs.mean(0)).abs().square().mean() / 2)
    assert var == pytest.approx(c * c, rel=0.1)
    n_steps = count_evaluations(30, 2, "reverse-diffusion", denoise_last=False)
    assert [k for k, _, _ in seen] == list(range(1, n_steps + 1)) and seen[0][1] == n_steps
    assert seen[0][2] == pytest.approx(3.0) and seen[-1][2] == pytest.approx(0.01)


def test_langevin_stops_when_the_callback_says_so():
    calls = []
    annealed_langevin(lambda v, s: -v, None, None, n_chains=2, image_shape=(4, 4), sigmas=geometric_sigmas(1, 0.1, 5),
                      callback=lambda k, n, x, info: calls.append(k) or k == 3)
    assert calls == [1, 2, 3]


# ------------------------------------------------------------------------------------------------------------
# Calibration


def test_spearman_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, size=500).astype(float)  # many ties
    b = a + rng.normal(0, 5, size=500)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    mask = rng.random(500) < 0.3
    assert spearman(a, b, mask) == pytest.approx(stats.spearmanr(a[mask], b[mask]).statistic, abs=1e-12)
    img_a, img_b = a[:400].reshape(20, 20), b[:400].reshape(20, 20)
    assert spearman(torch.from_numpy(img_a), img_b) == pytest.approx(stats.spearmanr(a[:400], b[:400]).statistic)
    assert math.isnan(spearman(np.ones(10), np.arange(10)))


def test_interval_coverage_explicit_counts():
    # 21 samples per pixel with the values 0..20 in a different order at every pixel: the 5% and 95% sample
    # quantiles (linear interpolation) are exactly 1 and 19.
    rng = np.random.default_rng(1)
    samples = np.stack([rng.permutation(21) for _ in range(12)], axis=1).astype(float).reshape(21, 3, 4)
    reference = np.array([[0.5, 1.0, 10.0, 19.0], [19.5, 25.0, -3.0, 5.0], [18.9, 1.1, 0.99, 12.0]])
    inside = (reference >= 1) & (reference <= 19)
    assert inside.sum() == 7
    assert interval_coverage(samples, reference) == pytest.approx(7 / 12)
    mask = np.zeros((3, 4), bool)
    mask[0] = True  # 0.5 out, 1 in, 10 in, 19 in
    assert interval_coverage(samples, reference, mask) == pytest.approx(3 / 4)
    assert interval_coverage(torch.from_numpy(samples), torch.from_numpy(reference), level=0.5) == pytest.approx(
        float(((reference >= 5) & (reference <= 15)).mean()))


def test_gaussian_coverage_explicit_interval():
    # t quantile 0.95 with 7 degrees of freedom: 1.894579; half width t * std * sqrt(1 + 1/8)
    half = 1.894579 * math.sqrt(1 + 1 / 8)
    mean = np.zeros((2, 3))
    std = np.array([[1.0, 2.0, 0.5], [1.0, 1.0, 1.0]])
    ref = np.array([[0.99 * half, 2.01 * half, 0.4 * half], [-1.01 * half, -0.5 * half, 3.0]])
    expected = np.abs(ref) <= half * std
    assert gaussian_coverage(mean, std, ref, n_samples=8) == pytest.approx(expected.mean())
    assert expected.sum() == 3


def test_calibration_metrics_of_a_calibrated_gaussian_sampler():
    """Samples and reference drawn from the same per-pixel Gaussian with varying spread: coverage ~ 0.9 and the
    std predicts the error (positive Spearman correlation)."""
    rng = np.random.default_rng(2)
    h = w = 64
    mu = 10 + rng.random((h, w))
    s = 0.05 + 0.5 * rng.random((h, w))
    n = 40
    samples = mu + s * rng.standard_normal((n, h, w))
    ref = mu + s * rng.standard_normal((h, w))
    m = calibration_metrics(samples, ref, mask=np.ones((h, w), bool))
    assert m["coverage_gaussian"] == pytest.approx(0.9, abs=0.02)
    # sample quantiles of 40 draws: a slightly narrower interval, (n - 1 - 2 * 0.05 (n - 1)) / (n + 1) ~ 0.86
    assert m["coverage"] == pytest.approx(0.86, abs=0.03)
    assert m["spearman"] > 0.3
    # a calibrated sampler scores about what its own std map allows
    assert m["spearman_if_calibrated"] == pytest.approx(m["spearman"], abs=0.1)
    assert m["n_samples"] == n and m["n_pixels"] == h * w
    assert len(m["curve"]["std"]) == 10 and m["curve"]["abs_error"][-1] > m["curve"]["abs_error"][0]


def test_object_mask_ignores_the_noise_floor():
    """A disk on the noise floor of an 8-coil root sum of squares (chi-distributed, mean ~0.28 of the disk): the
    mask is the disk (a fixed 10% of the maximum would take most of the background)."""
    from workbench.nn.dsm import object_mask

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:96, :96]
    disk = (yy - 48) ** 2 + (xx - 40) ** 2 < 30**2
    coils = disk[None] / np.sqrt(8) + 0.1 * (rng.standard_normal((8, 96, 96)) + 1j * rng.standard_normal((8, 96, 96)))
    rss = np.sqrt((np.abs(coils) ** 2).sum(0))
    m = object_mask(rss)
    assert (m & disk).sum() / (m | disk).sum() > 0.95
    assert (rss[~disk] > 0.1 * np.percentile(rss, 99)).mean() > 0.9


def test_predictive_coverage_accounts_for_reference_noise():
    """The reference is a noisy measurement of what the samples estimate: with the reference noise added to the
    interval the coverage is right again."""
    rng = np.random.default_rng(3)
    h = w = 64
    mu = 10 + rng.random((h, w))
    s = 0.05 + 0.2 * rng.random((h, w))
    noise = 0.15
    samples = mu + s * rng.standard_normal((30, h, w))
    ref = mu + s * rng.standard_normal((h, w)) + noise * rng.standard_normal((h, w))
    m = calibration_metrics(samples, ref, mask=np.ones((h, w), bool), reference_noise=noise)
    assert m["coverage_gaussian"] < 0.8
    assert m["coverage_predictive"] == pytest.approx(0.9, abs=0.02)
    assert calibration_metrics(samples, ref, mask=np.ones((h, w), bool))["coverage_predictive"] is None


# ------------------------------------------------------------------------------------------------------------
# Training entry


def _tiny_config():
    return {
        "model": "dsm",
        "architecture": {"chans": [4, 8], "patch": 1, "emb_dim": 8, "sigma_min": 0.01, "sigma_max": 1.0},
        "data": {"shapes": [[48, 48]], "n_coils": [1, 2], "readout_oversampling": [1], "crop": [32, 32],
                 "crops_per_image": 2, "n_val": 1},
        "batch_size": 2,
        "steps": 3,
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "ema": 0.5,
        "validation": {"n": 1, "sigmas": [0.1], "max_size": 48},
        "checkpoint_every": 0,
    }


def test_dsm_data_patches_are_normalised_and_deterministic():
    from workbench.arrays import fit_shape
    from workbench.nn.train_dsm import DSMImageData

    data = DSMImageData({"shapes": [[48, 48]], "n_coils": [2], "readout_oversampling": [1], "crop": [32, 32],
                         "crops_per_image": 2, "scale_jitter": [0.8, 1.0]})
    a, b = data.batch(5, batch_size=3), data.batch(5, batch_size=3)
    assert a.shape == (3, 32, 32) and a.dtype == torch.complex64 and torch.equal(a, b)
    assert not torch.equal(a, data.batch(6, batch_size=3))
    seed = data.synthetic.train_seed(0)
    x, meta, _ = data.image(seed, data.synthetic.draw_setting(np.random.default_rng(0)))
    p99 = float(torch.quantile(fit_shape(x.abs(), (48, 48)).flatten(), 0.99))
    assert p99 == pytest.approx(1 / meta["scale_factor"], rel=1e-3)  # 99th percentile / u
    assert 0.8 <= meta["scale_factor"] <= 1.0


def test_train_dsm_writes_weights_and_resumes_exactly(tmp_path):
    from workbench.nn.score_net import load_score_net
    from workbench.nn.train_dsm import train_dsm

    full = train_dsm(_tiny_config(), tmp_path / "a", progress=False, log=lambda s: None, command="test")
    assert full["finished"] and full["steps_done"] == 3
    model, side = load_score_net(full["weights"])
    assert side["model"] == "dsm" and side["training"]["steps"] == 3 and side["command"] == "test"
    assert side["validation"]["denoising"][0]["sigma"] == 0.1
    assert side["n_parameters"] == sum(p.numel() for p in model.parameters())

    part = train_dsm(_tiny_config(), tmp_path / "b", stop_after=2, progress=False, log=lambda s: None)
    assert not part["finished"] and part["steps_done"] == 2
    rest = train_dsm(_tiny_config(), tmp_path / "b", resume=True, progress=False, log=lambda s: None)
    assert rest["finished"]
    a, _ = load_score_net(full["weights"])
    b, side_b = load_score_net(rest["weights"])
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert len(side_b["commands"]) == 2


def test_the_one_training_command_trains_the_score_network(tmp_path):
    import json

    from workbench.cli import main

    cfg = tmp_path / "dsm.json"
    cfg.write_text(json.dumps(_tiny_config()))
    out = tmp_path / "run"
    assert main(["train", "dsm", "--config", str(cfg), "--out", str(out), "--threads", "1", "--quiet"]) == 0
    sidecar = json.loads((out / "dsm.json").read_text())
    assert (out / "dsm.safetensors").is_file()
    assert "workbench train dsm" in json.dumps(sidecar)


def _loo_local_rms_slow(e, window):
    """Leave-one-out local RMS by loops, edges replicated (a reference for error_predictability)."""
    r = window // 2
    padded = np.pad(e, r, mode="edge")
    out = np.empty_like(e)
    for i in range(e.shape[0]):
        for j in range(e.shape[1]):
            block = padded[i:i + window, j:j + window] ** 2
            out[i, j] = math.sqrt((block.sum() - block[r, r]) / (window * window - 1))
    return out


def test_error_predictability_matches_a_slow_reference():
    from workbench.nn.dsm import error_predictability, spearman

    rng = np.random.default_rng(5)
    e = np.abs(rng.standard_normal((24, 20))) * (1 + 3 * (np.arange(20) > 9))
    mask = rng.random((24, 20)) > 0.3
    for window in (3, 5):
        expected = spearman(_loo_local_rms_slow(e, window), e, mask)
        assert error_predictability(e, mask, window) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError):
        error_predictability(e, window=4)


def test_error_predictability_bounds():
    """Pixel-independent noise of one level: nothing can predict it (~0). Errors |N(0, s^2)| with a smoothly
    varying s: about what the true s itself reaches."""
    from workbench.nn.dsm import error_predictability, spearman

    rng = np.random.default_rng(6)
    white = np.abs(rng.standard_normal((128, 128)))
    assert abs(error_predictability(white)) < 0.05
    yy, xx = np.mgrid[:128, :128] / 128.0
    s = np.exp(2.5 * np.sin(2 * np.pi * xx) * np.cos(np.pi * yy))  # smooth, 0.08 .. 12
    e = np.abs(s * rng.standard_normal(s.shape))
    best = spearman(s, e)
    assert best > 0.5
    assert 0.85 * best < error_predictability(e) < best + 0.03


def test_edge_spearman_sees_errors_at_edges():
    from workbench.nn.dsm import edge_spearman, spearman

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:96, :96]
    disk = ((yy - 48) ** 2 + (xx - 48) ** 2 < 30**2).astype(float)
    spread = 0.05 + np.exp(-0.5 * (np.sqrt((yy - 48.0) ** 2 + (xx - 48.0) ** 2) - 30) ** 2)  # peaks at the rim
    at_edges = np.abs(rng.standard_normal(disk.shape)) * spread
    uniform = np.abs(rng.standard_normal(disk.shape))
    # about what the true spread of the errors reaches (a thin rim: 0.28)
    assert edge_spearman(disk, at_edges) > 0.85 * spearman(spread, at_edges) > 0.2
    assert abs(edge_spearman(disk, uniform)) < 0.05
