"""The automatic weight's rule (workbench.toolkit.choose_lam, the module docstring's generalised discrepancy rule):
the residual target checked against its definition computed independently (k-space residual of the floor solve,
noise energy from the noise estimate and the measured samples, unknowns from the maps' support, the data energy),
in the regimes of the mismatch share: a model that fits to the noise (the previous floor + kappa rule), fewer
samples than unknowns, a floor above the noise energy, and a model that explains little of the data (the cap)."""

from __future__ import annotations

import pytest
import torch

from workbench import toolkit
from workbench.methods import RunContext, discover_methods, parse_params
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.simulate import generate_slice

SHAPE = (64, 64)


CASES = {  # case -> (coils, acceleration, shift of the maps against the data's)
    "fits": (8, 4, (0, 0)),
    "fewer samples": (2, 4, (0, 0)),
    "mismatch": (4, 2, (10, 0)),  # maps 10 px off: the floor is 2.6 times the noise energy
    "little explained": (4, 2, (21, 16)),  # maps of another place: the floor is most of the data energy
}


def _problem(case: str) -> Problem:
    coils, accel, shift = CASES[case]
    s = generate_slice(0, shape=SHAPE, n_coils=coils)
    sampling = make_sampling("random", SHAPE, accel, seed=0, center_fraction=0.2)
    k = torch.from_numpy(s["kspace"]) * sampling.mask
    maps = torch.roll(torch.from_numpy(s["maps"]), shifts=shift, dims=(-2, -1))
    return Problem(k, mask=sampling.mask, maps=maps, reference=s["reference"])


def _recording_tv(problem: Problem, calls: list):
    """The tv plugin's solve, recording each call's weight and image (the first call is the floor solve)."""
    method = discover_methods(entry_points=False, user_dirs=False).get("tv")
    params = method.Params()
    data = toolkit.DataTerm(problem)
    scale = toolkit.weight_scale(problem)
    solve = method.make_solve(problem, params)(data, scale, toolkit.operator_norm2(data.A, data.y))

    def recording(A, y, lam_abs, x0=None, **kw):
        out = solve(A, y, lam_abs, x0=x0, **kw)
        calls.append((lam_abs, out.x))
        return out

    return recording, data, scale


@pytest.mark.parametrize("case", list(CASES))
def test_target_is_the_generalised_discrepancy_of_the_floor(case):
    problem = _problem(case)
    calls: list = []
    solve, data, scale = _recording_tv(problem, calls)
    kappa = 0.03
    lam, search, chosen = toolkit.choose_lam(solve, data, problem, RunContext("cpu"), kappa=kappa, n_iter=15)

    # independent figures: the floor solve's residual in k-space, the noise energy, samples and unknowns
    floor_lam, floor_x = calls[0]
    assert floor_lam == pytest.approx(toolkit.LAM_MIN * scale)
    floor = float((problem.A.forward(floor_x) - problem.y).abs().pow(2).sum())
    measured = int((problem.y != 0).sum())
    noise = problem.noise_std**2 * measured
    unknowns = int(((problem.maps.abs() ** 2).sum(0) > 0).sum())
    share = max(0.0, 1 - measured / unknowns, 1 - 2 * noise / floor)
    explained = float(problem.y.abs().pow(2).sum()) - floor
    target = floor + kappa * noise + min(2 * share * floor, 0.1 * explained)

    assert chosen["lam_rule"] == "discrepancy"
    assert chosen["residual_floor"] == pytest.approx(floor, rel=1e-4)
    assert chosen["mismatch_share"] == pytest.approx(share, rel=1e-4, abs=1e-9)
    assert chosen["residual_target"] == pytest.approx(target, rel=1e-4)
    # each case is in the regime it names
    if case == "fits":  # more samples than unknowns, floor below the noise: the floor + kappa rule
        assert measured >= unknowns and floor < noise and share == 0
        assert chosen["residual_target"] == pytest.approx(floor + kappa * noise, rel=1e-4)
    elif case == "fewer samples":
        assert floor < noise and share == pytest.approx(1 - measured / unknowns) and share > 0
    elif case == "mismatch":
        assert measured >= unknowns and floor > 2.5 * noise and share == pytest.approx(1 - 2 * noise / floor)
        assert 2 * share * floor < 0.1 * explained  # not capped
    else:  # capped: the weight stays where the model still explains most of what it explained
        assert floor > 0.5 * (explained + floor) and 2 * share * floor > 0.1 * explained
        assert search.lam / scale < 1.0
    # the search ends near the target: its closest residual within half the excess over the floor
    closest = min(search.trace, key=lambda t: abs(t[1] - target))[1]
    assert abs(closest - target) <= 0.5 * (target - floor)
    assert lam == pytest.approx(search.lam / scale) and chosen["search_solves"] == len(search.trace) <= 6


def test_mismatch_share_definition():
    # max(0, 1 - M / P, 1 - 2 E / floor), at most 1
    assert toolkit.mismatch_share(0.5, 1.0, 200, 100) == 0.0  # fits: more samples, floor under the noise
    assert toolkit.mismatch_share(1.5, 1.0, 200, 100) == 0.0  # under twice the noise: maybe not converged
    assert toolkit.mismatch_share(0.5, 1.0, 50, 100) == pytest.approx(0.5)  # half as many samples as unknowns
    assert toolkit.mismatch_share(8.0, 1.0, 200, 100) == pytest.approx(0.75)  # floor eight times the noise
    assert toolkit.mismatch_share(8.0, 1.0, 10, 100) == pytest.approx(0.9)  # the larger of the two
    assert toolkit.mismatch_share(0.0, 1.0, 200, 100) == 0.0 and toolkit.mismatch_share(1.0, 1.0, 200, 0) == 0.0
    # a floor solve that stops far from its minimum (non-Cartesian): only the sample count speaks
    assert toolkit.mismatch_share(8.0, 1.0, 200, 100, floor_converged=False) == 0.0
    assert toolkit.mismatch_share(8.0, 1.0, 10, 100, floor_converged=False) == pytest.approx(0.9)
    assert toolkit.unknowns(_problem("fits")) == int(
        ((_problem("fits").maps.abs() ** 2).sum(0) > 0).sum())



def test_automatic_weight_stays_inside_the_range_a_user_can_give():
    # A target no weight in range reaches (kappa far too large): the search ends above lam = 1 x scale, and the
    # run gets the bound, which the parameter check (and a re-run such as the hold-out's folds) accepts.
    problem = _problem("fits")
    calls: list = []
    solve, data, scale = _recording_tv(problem, calls)
    lam, search, chosen = toolkit.choose_lam(solve, data, problem, RunContext("cpu"), kappa=1e6, n_iter=5)
    assert chosen["lam_searched"] > toolkit.LAM_RANGE[1]
    assert lam == chosen["lam"] == toolkit.LAM_RANGE[1]
    assert chosen["lam_absolute"] == pytest.approx(lam * scale)
    assert search.x is None  # the search's image belongs to the other weight
    method = discover_methods(entry_points=False, user_dirs=False).get("tv")
    assert parse_params(method.Params, {"lam": lam}).lam == lam  # accepted as a parameter value
    with pytest.raises(Exception, match="above the maximum"):
        parse_params(method.Params, {"lam": chosen["lam_searched"]})  # what the search found is not


def test_non_cartesian_floor_is_not_counted_as_mismatch(realdata):
    # The prospective radial cardiac scan (12 coils, 25 spokes): the 15-iteration floor of the density-weighted
    # problem stays far above twice the noise energy, which on Cartesian data would count as mismatch and, here,
    # over-smooth (design.md); only the sample count may speak (more samples than unknowns: m = 0).
    from workbench.io import open_scan

    path = realdata / "gpunufft_radial_cardiac12ch" / "radial_cardiac_25_projections.mat"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    problem = Problem.from_scan(open_scan(str(path)), 0, None)
    calls: list = []
    solve, data, scale = _recording_tv(problem, calls)
    lam, search, chosen = toolkit.choose_lam(solve, data, problem, RunContext("cpu"), n_iter=15)
    assert not problem.is_cartesian
    assert chosen["residual_floor"] > 2 * chosen["noise_energy"]  # what the Cartesian rule would count
    measured = int((data.y != 0).sum())
    assert measured > toolkit.unknowns(problem)
    assert chosen["mismatch_share"] == 0.0
    assert chosen["residual_target"] == pytest.approx(chosen["residual_floor"] + 0.03 * chosen["noise_energy"],
                                                      rel=1e-4)


def test_one_coil_floor_is_the_exact_fit_without_a_floor_solve(monkeypatch):
    # One coil, |S| = 1 on the grid: A^H y fits every measured sample, so the floor is 0 and no floor solve runs;
    # the weight is the one the 15-iteration floor solve gives (its floor is ~0 too), to 1%.
    s = generate_slice(1, shape=SHAPE, n_coils=1)
    sampling = make_sampling("random", SHAPE, 4, seed=0, center_fraction=0.1)
    problem = Problem(torch.from_numpy(s["kspace"]) * sampling.mask, mask=sampling.mask, reference=s["reference"])
    data = toolkit.DataTerm(problem)
    x = toolkit.exact_fit(data, problem)
    y = problem.y
    assert float((problem.A.forward(x) - y).abs().pow(2).sum()) <= 1e-10 * float(y.abs().pow(2).sum())

    chosen = {}
    for label, fit in (("exact", toolkit.exact_fit), ("floor solve", lambda data, problem: None)):
        monkeypatch.setattr(toolkit, "exact_fit", fit)
        calls: list = []
        solve, data, scale = _recording_tv(problem, calls)
        lam, search, chosen[label] = toolkit.choose_lam(solve, data, problem, RunContext("cpu"), n_iter=15)
        floor_solves = [c for c in calls if c[0] == pytest.approx(toolkit.LAM_MIN * scale)]
        assert len(floor_solves) == (0 if label == "exact" else 1)
    assert chosen["exact"]["residual_floor"] <= 1e-10 * float(y.abs().pow(2).sum())
    assert chosen["exact"]["lam"] == pytest.approx(chosen["floor solve"]["lam"], rel=0.01)

    # more than one coil (maps that vary) or non-unit maps: no closed form
    two = _problem("fewer samples")
    assert toolkit.exact_fit(toolkit.DataTerm(two), two) is None
    half = Problem(problem.y, mask=sampling.mask, maps=0.5 * torch.ones(1, *SHAPE, dtype=torch.complex64))
    assert toolkit.exact_fit(toolkit.DataTerm(half), half) is None
