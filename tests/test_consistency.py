"""The unrolled networks' final consistency solve (workbench.nn.consistency): the regularised least squares it
claims, checked against a dense solve; what it does with one coil; the hold-out choice of its weight; readout
hold-out folds of non-Cartesian data."""

import math

import numpy as np
import pytest
import torch

from workbench.holdout import folds, readouts
from workbench.nn.batch import CartesianEncoding
from workbench.nn.consistency import NetworkSolution, choose_consistency_lam
from workbench.physics.fft import fft2c, ifft2c
from workbench.problem import Problem


def _maps(coils, shape):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij")
    maps = torch.stack([torch.exp(-((xx - c) ** 2 + (yy - c / 2) ** 2)) * torch.exp(1j * torch.tensor(2.0 * c))
                        for c in np.linspace(-1, 1, coils)]).to(torch.complex64)
    return maps / maps.abs().pow(2).sum(0).sqrt().clamp_min(1e-6), xx, yy


def _solution(x_net, coils=3, shape=(12, 10), seed=0):
    """A NetworkSolution for a random line mask with ``x_net`` as the network's image (scale 1)."""
    g = torch.Generator().manual_seed(seed)
    maps, _, _ = _maps(coils, shape)
    truth = torch.randn(shape, generator=g) + 1j * torch.randn(shape, generator=g)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, torch.randperm(shape[1], generator=g)[: shape[1] // 2]] = True
    y = fft2c(maps * truth) * mask
    enc = CartesianEncoding(y[None], mask[None])
    rhs = (ifft2c(y) * maps.conj()).sum(0)[None]
    sol = NetworkSolution(x=x_net[None].to(torch.complex64), rhs=rhs, maps=maps[None], scale=torch.ones(1), enc=enc,
                          data_consistent_output=lambda x, m, s, e: x)
    return sol, maps, mask, y


def _dense_operator(maps, mask):
    """A = M F S as a dense matrix [C * H * W, H * W], column by column."""
    n = maps.shape[-2] * maps.shape[-1]
    cols = []
    for j in range(n):
        e = torch.zeros(n, dtype=torch.complex64)
        e[j] = 1
        cols.append((fft2c(maps * e.reshape(maps.shape[-2:])) * mask).reshape(-1))
    return torch.stack(cols, 1).numpy().astype(np.complex128)


@pytest.mark.parametrize("lam", [0.01, 0.3, 3.0])
def test_the_consistency_solve_is_the_regularised_least_squares_solution(lam):
    g = torch.Generator().manual_seed(3)
    x_net = torch.randn(12, 10, generator=g) + 1j * torch.randn(12, 10, generator=g)
    sol, maps, mask, y = _solution(x_net)
    x = sol.consistent([lam], n_iter=400)[lam][0].numpy().reshape(-1)
    a = _dense_operator(maps, mask)
    # argmin ||A x - y||^2 + lam ||x - x_net||^2 from its normal equations, by a dense solve
    expected = np.linalg.solve(a.conj().T @ a + lam * np.eye(a.shape[1]),
                               a.conj().T @ y.numpy().reshape(-1) + lam * x_net.numpy().reshape(-1))
    np.testing.assert_allclose(x, expected, rtol=0, atol=2e-4 * np.abs(expected).max())
    # and the minimiser: every perturbation raises the objective
    def objective(v):
        fit = np.linalg.norm(a @ v - y.numpy().reshape(-1)) ** 2
        return fit + lam * np.linalg.norm(v - x_net.numpy().reshape(-1)) ** 2
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = 1e-2 * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
        assert objective(x + d) > objective(x)


def test_one_coil_the_solve_only_moves_the_measured_samples():
    """With one coil on a grid, (M + lam) k = M y + lam k_net sample by sample: the unmeasured samples keep the
    network's values, the measured ones move to (y + lam k_net) / (1 + lam)."""
    g = torch.Generator().manual_seed(5)
    shape = (12, 10)
    x_net = torch.randn(shape, generator=g) + 1j * torch.randn(shape, generator=g)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, ::2] = True
    y = (torch.randn(shape, generator=g) + 1j * torch.randn(shape, generator=g)).to(torch.complex64) * mask
    maps = torch.ones(1, *shape, dtype=torch.complex64)
    enc = CartesianEncoding(y[None, None], mask[None])
    sol = NetworkSolution(x=x_net[None].to(torch.complex64), rhs=ifft2c(y)[None], maps=maps[None],
                          scale=torch.ones(1), enc=enc, data_consistent_output=lambda x, m, s, e: x)
    lam = 0.5
    k = fft2c(sol.consistent([lam], n_iter=100)[lam][0])
    k_net = fft2c(x_net.to(torch.complex64))
    torch.testing.assert_close(k[~mask], k_net[~mask], atol=1e-4, rtol=0)
    torch.testing.assert_close(k[mask], (y[mask] + lam * k_net[mask]) / (1 + lam), atol=1e-4, rtol=0)


def _network_solution(problem, maps, image):
    """A NetworkSolution of ``problem`` whose network image is ``image`` (scale 1)."""
    enc = CartesianEncoding(problem.y[None], problem.mask[None])
    rhs = (ifft2c(problem.y) * maps.conj()).sum(0)[None]
    return NetworkSolution(x=image[None].to(torch.complex64), rhs=rhs, maps=maps[None], scale=torch.ones(1), enc=enc,
                           data_consistent_output=lambda x, m, s, e: x)


def _encoding(problem):
    return CartesianEncoding(problem.y[None], problem.mask[None])


def _head_like_problem(coils=8, shape=(64, 64), acceleration=3, noise=0.0):
    maps, xx, yy = _maps(coils, shape)
    image = (((xx / 0.8) ** 2 + (yy / 0.9) ** 2) < 1).float() * (1 + 0.5 * torch.sin(9 * xx) * torch.cos(7 * yy))
    g = torch.Generator().manual_seed(0)
    k = fft2c(maps * image) + noise * torch.complex(torch.randn(coils, *shape, generator=g),
                                                    torch.randn(coils, *shape, generator=g))
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, ::acceleration] = True
    mask[:, shape[1] // 2 - 4: shape[1] // 2 + 4] = True
    return Problem(k * mask, mask=mask, maps=maps), maps, image.to(torch.complex64)


def test_the_hold_out_picks_a_weight_where_the_network_misses_what_the_coils_know():
    # a well-posed 8-coil problem and a "network" that blurs: the measured samples say better, a small weight wins
    problem, maps, image = _head_like_problem()

    k = fft2c(image)
    keep = torch.zeros_like(k.real, dtype=torch.bool)
    keep[24:40, 24:40] = True
    solution = _network_solution(problem, maps, ifft2c(k * keep))  # a "network" that blurs
    choice = choose_consistency_lam(solution, problem, _encoding)
    assert choice.lam is not None and choice.lam <= 0.1
    assert choice.errors[choice.lam] < 0.9 and min(choice.errors.values()) == choice.errors[choice.lam]
    # and the image of the chosen weight, solved on all the measured samples, is closer to the truth
    error = lambda x: float((x[0] - image).abs().norm() / image.abs().norm())  # noqa: E731
    assert error(solution.consistent([choice.lam])[choice.lam]) < 0.7 * error(solution.x)


def test_the_hold_out_keeps_a_network_image_that_the_solve_cannot_improve():
    # the "network" returns the truth while the data are noisy: every solve moves towards the noise
    problem, maps, image = _head_like_problem(coils=2, acceleration=4, noise=0.3)
    events = []
    choice = choose_consistency_lam(_network_solution(problem, maps, image), problem, _encoding,
                                    progress=lambda f, t: events.append((f, t)))
    assert choice.lam is None
    assert all(v >= 0.99 for v in choice.errors.values())
    assert events[-1][0] == pytest.approx(1.0) and [f for f, _ in events] == sorted(f for f, _ in events)


def test_no_lines_to_hold_out_keeps_the_network_image_with_the_reason():
    problem, maps, image = _head_like_problem()
    full = Problem(problem.y, mask=torch.ones_like(problem.mask), maps=maps)
    choice = choose_consistency_lam(_network_solution(full, maps, image), full, _encoding)
    assert choice.lam is None and choice.errors == {} and "hold-out" in choice.note


def test_readout_folds_hold_out_whole_spokes_outside_the_calibration_radius():
    from workbench.sampling import make_sampling
    from workbench.sampling.retrospective import sample_noncartesian

    shape = (48, 48)
    sampling = make_sampling("radial", shape, 4.0)
    traj = torch.as_tensor(sampling.trajectory)
    group = readouts(traj)
    n_spokes = int(group.max()) + 1
    # a golden-angle spoke is a straight line through the centre: its samples share one angle (mod pi)
    angle = torch.atan2(traj[1], traj[0]) % math.pi
    for s in range(n_spokes):
        a = angle[(group == s) & (traj.pow(2).sum(0) > 0.01)]
        spread = torch.minimum((a - a[0]).abs(), math.pi - (a - a[0]).abs())
        assert float(spread.max()) < 1e-3
    sizes = torch.bincount(group)
    assert n_spokes > 4 and bool((sizes == sizes[0]).all())  # every spoke found whole
    maps, _, _ = _maps(2, shape)
    y = sample_noncartesian(maps * torch.ones(shape, dtype=torch.complex64), traj)
    problem = Problem(y, shape, trajectory=traj, dcf=sampling.dcf)
    (h,) = folds(problem, n_folds=1, lines=True)
    radius = traj.pow(2).sum(0).sqrt()
    inside = radius <= math.pi * max(problem.calib) / max(shape)
    held_spokes = set(group[h.held].tolist())
    assert 1 <= len(held_spokes) <= n_spokes // 2
    for s in held_spokes:  # the whole spoke outside the radius, nothing of it inside
        on = group == s
        assert bool(h.held[on & ~inside].all()) and not bool(h.held[on & inside].any())
    assert int(h.train.y.shape[-1]) == traj.shape[1] - int(h.held.sum())


def test_rerun_judges_the_network_on_the_kept_samples():
    """With ``rerun`` the weights are judged on the network's solution of the kept samples (the U-net plugin's
    way: its image keeps the zero-filled image's held-out samples): here the full-data 'network' blurs, so
    judged on it a weight wins, while the rerun returns the truth, which no solve improves."""
    problem, maps, image = _head_like_problem()
    k = fft2c(image)
    keep = torch.zeros_like(k.real, dtype=torch.bool)
    keep[24:40, 24:40] = True
    blurred = _network_solution(problem, maps, ifft2c(k * keep))
    seen = []

    def rerun(kept):
        seen.append(kept)
        return _network_solution(kept, maps, image)

    assert choose_consistency_lam(blurred, problem, _encoding).lam is not None
    fair = choose_consistency_lam(blurred, problem, _encoding, rerun=rerun)
    assert len(seen) == 1 and int(seen[0].mask.sum()) < int(problem.mask.sum())
    assert bool((seen[0].mask <= problem.mask).all())
    assert fair.lam is None and fair.errors == {} and "exactly" in fair.note  # noise-free: the truth predicts them
