"""The built-in classical methods (plugins/): discovery, correctness against independent references, quality
against zero filling, non-Cartesian data, cancellation and the automatic weight."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from workbench.methods import JobCancelled, RunContext, discover_methods, safe_run
from workbench.metrics import psnr
from workbench.physics.fft import ifft2c, rss
from workbench.physics.gradient import FiniteDifference2D
from workbench.physics.wavelet import DEFAULT_WAVELET, Wavelet2D
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scan import scan_from_arrays
from workbench.simulate import generate_slice

CLASSICAL = ("zero-filled", "cg-sense", "l1-wavelet", "tv", "fused-lasso", "grappa")


@pytest.fixture(scope="module")
def registry():
    return discover_methods(entry_points=False, user_dirs=False)


@pytest.fixture(scope="module")
def brain():
    """A realistic 96x96 slice with 8 coils (noisy, fully sampled) as an in-memory scan."""
    s = generate_slice(0, shape=(96, 96), n_coils=8)
    return s, scan_from_arrays(s["kspace"][None], reference=s["reference"][None])


@pytest.fixture(scope="module")
def brain_r4(brain):
    """Random line mask, R = 4. At 96 columns fastMRI's centre fraction 0.08 leaves 8 ACS lines, too few for a
    6x6 ESPIRiT kernel; 0.16 (15 lines) is what the same ACS *width* in mm would give on a 192 matrix."""
    s, scan = brain
    problem = Problem.from_scan(scan, 0, make_sampling("random", (96, 96), 4, seed=0, center_fraction=0.16))
    problem.maps  # estimate once for every test
    return s, problem


def run(registry, name, problem, params=None, ctx=None):
    return safe_run(registry.get(name), problem, params or {}, ctx or RunContext("cpu"))


# ---------------------------------------------------------------------------------------------------------
def test_builtin_methods_are_found_through_the_public_discovery():
    registry = discover_methods()
    for name in CLASSICAL:
        assert name in registry, registry.errors
        assert registry.sources[name].startswith("builtin workbench_builtin_methods.")
    assert not [e for e in registry.errors if e.source.startswith("builtin")]
    for name in CLASSICAL:
        for spec in registry.get(name).param_specs():
            assert spec.help, f"{name}.{spec.name} has no help text"


# ---------------------------------------------------------------------------------------------------------
# CG-SENSE against a direct solve of the normal equations with a dense matrix
def _random_maps(c, shape, seed):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(c, *shape, dtype=torch.complex64, generator=g)
    return maps / rss(maps)


def _dense(op, shape) -> np.ndarray:
    """The matrix of ``op.forward`` (columns = images of the unit vectors), complex128."""
    n = shape[0] * shape[1]
    basis = torch.eye(n, dtype=torch.complex64).reshape(n, *shape)
    return op.forward(basis).reshape(n, -1).T.numpy().astype(np.complex128)


def test_cg_sense_matches_a_direct_least_squares_solve(registry):
    shape, lam = (12, 10), 0.05
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(shape[1], generator=g) < 0.5
    mask[4:7] = True
    y = torch.randn(3, *shape, dtype=torch.complex64, generator=g)
    problem = Problem(y, mask=mask, maps=_random_maps(3, shape, 2))
    result = run(registry, "cg-sense", problem, {"lam": lam, "n_iter": 400, "tol": 0.0})
    a = _dense(problem.A, shape)
    rhs = a.conj().T @ problem.y.numpy().reshape(-1)
    direct = torch.linalg.solve(torch.from_numpy(a.conj().T @ a + lam * np.eye(a.shape[1])), torch.from_numpy(rhs))
    x = result.image.numpy().reshape(-1)
    assert np.linalg.norm(x - direct.numpy()) / np.linalg.norm(direct.numpy()) < 1e-3
    assert result.history[0]["residual"] > result.history[-1]["residual"]


def test_noncartesian_cg_sense_matches_a_direct_density_weighted_solve(registry):
    from workbench.sampling.dcf import pipe_menon_dcf
    from workbench.sampling.trajectories import radial_trajectory

    shape, lam = (12, 12), 0.02
    traj = radial_trajectory(10, 24)
    dcf = pipe_menon_dcf(traj, shape)
    g = torch.Generator().manual_seed(3)
    y = torch.randn(2, traj.shape[1], dtype=torch.complex64, generator=g)
    problem = Problem(y, shape, trajectory=traj, dcf=dcf, maps=_random_maps(2, shape, 4))
    result = run(registry, "cg-sense", problem, {"lam": lam, "n_iter": 300, "tol": 0.0})
    a = _dense(problem.A, shape)  # the plain NUFFT forward F_nu S
    d = np.tile(dcf.numpy().astype(np.float64), 2)
    rhs = a.conj().T @ (d * problem.y.numpy().reshape(-1))
    direct = np.linalg.solve(a.conj().T @ (d[:, None] * a) + lam * np.eye(a.shape[1]), rhs)
    x = result.image.numpy().reshape(-1)
    assert np.linalg.norm(x - direct) / np.linalg.norm(direct) < 1e-3


# ---------------------------------------------------------------------------------------------------------
# l1-wavelet and TV: the objective decreases and reaches the optimum of slow reference solvers
@pytest.fixture(scope="module")
def small():
    s = generate_slice(4, shape=(48, 48), n_coils=4)
    mask = make_sampling("random", (48, 48), 3, seed=1, center_fraction=0.25).mask
    k = torch.from_numpy(s["kspace"])
    return Problem(k * mask, mask=mask, maps=torch.from_numpy(s["maps"]))


def _lipschitz(problem, n=100):
    x = torch.randn(problem.grid_shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    for _ in range(n):
        x = problem.A.normal(x / torch.linalg.vector_norm(x))
    return float(torch.linalg.vector_norm(x))


def _data_term(problem, x):
    return 0.5 * float((problem.A.forward(x) - problem.y).abs().pow(2).sum())


def test_l1_wavelet_objective_decreases_to_the_fista_optimum(registry, small):
    lam_rel = 0.01
    result = run(registry, "l1-wavelet", small, {"lam": lam_rel, "n_iter": 150, "cycle_spinning": False,
                                                    "record_objective": True})
    lam = lam_rel * small.scale
    W = Wavelet2D(small.grid_shape, DEFAULT_WAVELET)

    def objective(x):
        return _data_term(small, x) + lam * float(W.forward(x).abs().sum())

    history = [h["objective"] for h in result.history]
    assert len(history) == 150
    assert history[-1] < history[0] and history[-1] <= min(history[:10])
    assert abs(objective(result.image) - history[-1]) < 1e-4 * history[-1]
    # reference: textbook FISTA (Beck & Teboulle; constant step, no restart), 4x the iterations
    step = 1.0 / (1.01 * _lipschitz(small))
    x = z = torch.zeros(small.grid_shape, dtype=torch.complex64)
    aty = small.A.adjoint(small.y)
    t = 1.0
    for _ in range(600):
        v = W.forward(z - step * (small.A.normal(z) - aty))
        x_new = W.adjoint(v * torch.clamp(1 - lam * step / v.abs().clamp_min(1e-30), min=0))
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = x_new + (t - 1) / t_new * (x_new - x)
        x, t = x_new, t_new
    reference = objective(x)
    assert abs(objective(result.image) - reference) < 1e-3 * reference


def test_tv_objective_decreases_to_the_chambolle_pock_optimum(registry, small):
    lam_rel = 0.01
    lam = lam_rel * small.scale
    D = FiniteDifference2D(small.grid_shape)

    def objective(x):
        g = D.forward(x)
        return _data_term(small, x) + lam * float(torch.sqrt(g.abs().pow(2).sum(-3)).sum())

    for solver in ("pdhg", "admm"):
        result = run(registry, "tv", small, {"lam": lam_rel, "n_iter": 150, "solver": solver, "record_objective": True})
        history = [h["objective"] for h in result.history]
        assert history[-1] < history[0] and history[-1] <= min(history[:10])
        assert abs(objective(result.image) - history[-1]) < 1e-4 * history[-1]
        if solver == "pdhg":
            pdhg_value = objective(result.image)
    # reference: textbook Chambolle-Pock with equal steps on K = [A; D], 2500 iterations
    norm = (1.01 * (_lipschitz(small) + 8.0)) ** 0.5
    tau = sigma = 0.99 / norm
    x = xbar = torch.zeros(small.grid_shape, dtype=torch.complex64)
    u = torch.zeros_like(small.y)
    p = torch.zeros(2, *small.grid_shape, dtype=torch.complex64)
    for _ in range(2500):
        u = (u + sigma * small.A.forward(xbar) - sigma * small.y) / (1 + sigma)
        q = p + sigma * D.forward(xbar)
        p = q / torch.clamp(torch.sqrt(q.abs().pow(2).sum(-3, keepdim=True)) / lam, min=1)
        x_new = x - tau * (small.A.adjoint(u) + D.adjoint(p))
        xbar, x = 2 * x_new - x, x_new
    reference = objective(x)
    assert abs(pdhg_value - reference) < 1e-3 * reference


def test_noncartesian_tv_reaches_the_chambolle_pock_optimum(registry):
    # radial data: the plugin's linearised PDHG (Toeplitz normal operator) against textbook Chambolle-Pock with
    # the NUFFT and its adjoint, both on the density-weighted objective
    s = generate_slice(6, shape=(32, 32), n_coils=4)
    scan = scan_from_arrays(s["kspace"][None], reference=s["reference"][None])
    problem = Problem.from_scan(scan, 0, make_sampling("radial", (32, 32), 2), maps=s["maps"])
    A, y = problem.A.density_weighted(), problem.A.weigh(problem.y)
    lam = 0.01 * problem.scale
    D = FiniteDifference2D((32, 32))

    def objective(x):
        g = D.forward(x)
        return 0.5 * float((A.forward(x) - y).abs().pow(2).sum()) + lam * float(g.abs().pow(2).sum(-3).sqrt().sum())

    result = run(registry, "tv", problem, {"lam": 0.01, "n_iter": 150, "record_objective": True})
    history = [h["objective"] for h in result.history]
    assert abs(objective(result.image) - history[-1]) < 1e-3 * history[-1]
    assert history[-1] < history[0]
    norm = (1.01 * (_lipschitz(problem) * float(problem.dcf.max()) + 8.0)) ** 0.5
    tau = sigma = 0.99 / norm
    x = xbar = torch.zeros(32, 32, dtype=torch.complex64)
    u, p = torch.zeros_like(y), torch.zeros(2, 32, 32, dtype=torch.complex64)
    for _ in range(1500):
        u = (u + sigma * A.forward(xbar) - sigma * y) / (1 + sigma)
        q = p + sigma * D.forward(xbar)
        p = q / torch.clamp(torch.sqrt(q.abs().pow(2).sum(-3, keepdim=True)) / lam, min=1)
        x_new = x - tau * (A.adjoint(u) + D.adjoint(p))
        xbar, x = 2 * x_new - x, x_new
    reference = objective(x)
    assert abs(objective(result.image) - reference) < 1e-3 * reference


# ---------------------------------------------------------------------------------------------------------
# quality: every method improves on zero filling
@pytest.mark.parametrize("name, params", [
    ("cg-sense", {}),
    ("l1-wavelet", {"n_iter": 60, "search_iter": 20}),
    ("tv", {"n_iter": 60, "search_iter": 20}),
    ("fused-lasso", {"n_iter": 60, "search_iter": 20}),
])
def test_methods_beat_zero_filling_at_r4(registry, brain_r4, name, params):
    s, problem = brain_r4
    zero_filled = run(registry, "zero-filled", problem)
    assert torch.allclose(zero_filled.image.real, rss(ifft2c(problem.y)), atol=1e-6)
    result = run(registry, name, problem, params)
    ref = s["reference"]
    assert psnr(ref, result.image.abs()) > psnr(ref, zero_filled.image.abs()) + 2.0
    if "search_iter" in params:  # automatic weight: chosen and reported
        assert result.chosen["lam_rule"] == "discrepancy" and 1e-5 < result.chosen["lam"] < 0.1
        assert result.extras["lam_search"] and result.params["lam"] is None


def test_grappa_beats_zero_filling_at_r2(registry, brain):
    s, scan = brain
    problem = Problem.from_scan(scan, 0, make_sampling("equispaced", (96, 96), 2, seed=0, center_fraction=0.16))
    ref = s["reference"]
    result = run(registry, "grappa", problem)
    assert psnr(ref, result.image.abs()) > psnr(ref, problem.zero_filled("rss")) + 3.0


def test_zero_filled_sense_combination_uses_the_maps(registry, brain_r4):
    _, problem = brain_r4
    result = run(registry, "zero-filled", problem, {"combine": "sense"})
    expected = (ifft2c(problem.y) * problem.maps.conj()).sum(0)
    assert torch.allclose(result.image, expected, atol=1e-5 * float(expected.abs().max()))


def test_validation_rule_chooses_and_reports_a_weight(registry, brain_r4):
    s, problem = brain_r4
    result = run(registry, "l1-wavelet", problem, {"n_iter": 30, "search_iter": 10, "lam_rule": "validation"})
    assert result.chosen["lam_rule"] == "validation" and result.chosen["lam"] > 0
    assert len(result.extras["lam_search"]) == result.chosen["search_solves"] >= 5


def test_the_chosen_weight_is_reused_for_the_same_data_and_settings_only(registry, brain_r4):
    _, problem = brain_r4
    params = {"n_iter": 20, "search_iter": 10, "kappa": 0.05}
    first = run(registry, "tv", problem, params)
    again = run(registry, "tv", problem, dict(params, n_iter=25))  # more iterations: the same weight
    assert "reused" not in first.chosen and again.chosen["reused"] is True
    assert again.chosen["lam"] == first.chosen["lam"] and again.extras["lam_search"] == first.extras["lam_search"]
    other = run(registry, "tv", problem, dict(params, kappa=0.1))  # another setting of the rule: searched
    assert "reused" not in other.chosen and other.chosen["lam"] != first.chosen["lam"]
    masked = Problem(problem.y * problem.mask.flip(-1), mask=problem.mask & problem.mask.flip(-1), maps=problem.maps)
    assert "reused" not in run(registry, "tv", masked, params).chosen  # other data: searched


# ---------------------------------------------------------------------------------------------------------
# non-Cartesian
@pytest.fixture(scope="module")
def radial(brain):
    s, scan = brain
    problem = Problem.from_scan(scan, 0, make_sampling("radial", (96, 96), 4))
    problem.maps
    return s, problem


@pytest.mark.parametrize("name, params", [
    ("cg-sense", {}),
    ("l1-wavelet", {"lam": 0.003, "n_iter": 40}),
    ("tv", {"lam": 0.003, "n_iter": 40}),
])
def test_noncartesian_methods_beat_the_density_compensated_adjoint(registry, radial, name, params):
    s, problem = radial
    adjoint = run(registry, "zero-filled", problem, {"combine": "sense"})
    assert torch.allclose(adjoint.image, problem.A.dc_adjoint(problem.y), atol=1e-5)
    result = run(registry, name, problem, params)
    ref = s["reference"]
    assert psnr(ref, result.image.abs()) > psnr(ref, adjoint.image.abs()) + 2.0
    assert result.trajectory is not None and result.mask is None


def test_grappa_refuses_noncartesian_data(registry, radial):
    _, problem = radial
    reasons = registry.get("grappa").check(problem)
    assert reasons and "Cartesian" in reasons[0]


# ---------------------------------------------------------------------------------------------------------
# cancellation: within one iteration
@pytest.mark.parametrize("name, params", [
    ("cg-sense", {"n_iter": 50, "tol": 0.0}),
    ("l1-wavelet", {"lam": 0.003, "n_iter": 50}),
    ("tv", {"lam": 0.003, "n_iter": 50}),
    ("fused-lasso", {"lam": 0.003, "n_iter": 50}),
])
def test_cancel_stops_within_one_iteration(registry, small, name, params):
    iterations = []
    ctx = None

    def on_progress(fraction, text):
        if text.startswith("iteration"):
            iterations.append(text)
            if len(iterations) == 3:
                ctx.cancel()

    ctx = RunContext("cpu", on_progress=on_progress)
    with pytest.raises(JobCancelled):
        run(registry, name, small, params, ctx)
    assert len(iterations) == 3


def test_cancel_during_the_weight_search(registry, small):
    solves = []
    event = threading.Event()

    def on_progress(fraction, text):
        if text.startswith("choosing the weight"):
            solves.append(text)
            if len(solves) == 2:
                event.set()

    ctx = RunContext("cpu", cancel_event=event, on_progress=on_progress)
    with pytest.raises(JobCancelled):
        run(registry, "tv", small, {"n_iter": 50, "search_iter": 200}, ctx)
    assert len(solves) == 2
