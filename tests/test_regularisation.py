import functools
import math

import pytest
import torch
from test_solvers import MaskedFFT  # the reference multi-coil masked FFT of the solver tests

from workbench.solvers import cg_sense, l1_wavelet
from workbench.solvers.regularisation import LambdaSearch, discrepancy_principle, holdout_validation


SIGMA = 0.05


@functools.lru_cache(maxsize=None)
def _problem():
    """32x32 piecewise-constant phantom with a phase ramp, 2 coils, 40% random + centre lines, known noise."""
    g = torch.Generator().manual_seed(0)
    n = 32
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1).float() + ((xx - 0.2) ** 2 + (yy + 0.2) ** 2 < 0.1).float()
    img = img * torch.exp(1j * 0.5 * xx)
    maps = torch.stack([torch.exp(-((xx - c) ** 2 + yy**2)) for c in (-1.0, 1.0)]).to(torch.complex64)
    maps = maps / (maps.abs() ** 2).sum(0).sqrt()
    mask = torch.rand(n, n, generator=g) < 0.35
    mask[:, n // 2 - 3 : n // 2 + 3] = True
    A = MaskedFFT(maps, mask)
    noise = torch.complex(torch.randn(2, n, n, generator=g), torch.randn(2, n, n, generator=g)) * SIGMA / math.sqrt(2)
    y = A(img.to(torch.complex64)) + noise * mask
    return A, y, img.to(torch.complex64)


def _l1(A, y, lam, x0=None, n_iter=30):
    return l1_wavelet(A, y, lam, wavelet="haar", n_iter=n_iter, x0=x0)


def _tikhonov(A, y, lam, x0=None, n_iter=15):
    return cg_sense(A, y, lam, x0=x0, n_iter=n_iter, tol=0)


def _error(solve, A, y, img, lam):
    return float(torch.linalg.vector_norm(solve(A, y, lam, n_iter=100).x - img))


@pytest.mark.parametrize("solve", [_l1, _tikhonov], ids=["l1-wavelet", "tikhonov"])
def test_discrepancy_principle_matches_noise_and_beats_other_weights(solve):
    A, y, img = _problem()
    search = discrepancy_principle(solve, A, y, SIGMA)
    n_measured = int(A.mask.sum()) * 2
    assert search.target == pytest.approx(n_measured * SIGMA**2)
    assert search.method == "discrepancy" and len(search.trace) >= 2 and search.x is not None
    # a full solve at the chosen weight fits the data to the noise level
    x = solve(A, y, search.lam, n_iter=100).x
    residual = float((A(x) - y).abs().pow(2).sum())
    assert residual == pytest.approx(search.target, rel=0.2)
    err = _error(solve, A, y, img, search.lam)
    assert err < _error(solve, A, y, img, search.lam * 100)
    assert err < _error(solve, A, y, img, search.lam / 100)


@pytest.mark.parametrize("solve", [_l1, _tikhonov], ids=["l1-wavelet", "tikhonov"])
def test_holdout_validation_beats_other_weights(solve):
    A, y, img = _problem()
    search = holdout_validation(solve, A, y, lam0=SIGMA, decades=3, n_grid=7, refine=3)
    assert search.method == "validation" and len(search.trace) >= 9
    assert search.lam == min(search.trace, key=lambda t: t[1])[0]
    err = _error(solve, A, y, img, search.lam)
    assert err < _error(solve, A, y, img, search.lam * 100)
    assert err < _error(solve, A, y, img, search.lam / 100)


def test_search_trace_serialises_and_bad_noise_is_rejected():
    A, y, _ = _problem()
    search = discrepancy_principle(_tikhonov, A, y, SIGMA, max_evals=4)
    d = search.to_dict()
    assert isinstance(search, LambdaSearch) and d["lam"] == search.lam and len(d["trace"]) == len(search.trace) <= 4
    with pytest.raises(ValueError, match="noise_std"):
        discrepancy_principle(_tikhonov, A, y, 0.0)


def test_discrepancy_above_a_floor_reaches_the_target_in_fewer_solves():
    # the toolkit's rule: the residual may exceed the unregularised floor by a given excess; with the floor the
    # search models the excess as a power of lam and stops within rtol of the target in at most 3 solves,
    # where bracketing by factors of 10 needs more; the weight lies within 25% of the exact root (bisection)
    A, y, _ = _problem()

    def residual(lam):
        x = _tikhonov(A, y, lam, n_iter=60).x
        return float((A(x) - y).abs().pow(2).sum())

    floor = residual(1e-6)
    target = floor + 0.1 * int(A.mask.sum()) * 2 * SIGMA**2
    n_measured = int(A.mask.sum()) * 2
    sigma = math.sqrt(target / n_measured)
    rtol = 0.25 * (target - floor) / target
    solve = functools.partial(_tikhonov, n_iter=60)
    with_floor = discrepancy_principle(solve, A, y, sigma, lam0=0.03, rtol=rtol, floor=floor)
    bracketing = discrepancy_principle(solve, A, y, sigma, lam0=0.03, rtol=rtol)
    assert len(with_floor.trace) <= 3 < len(bracketing.trace)
    assert abs(with_floor.trace[-1][1] / target - 1) <= rtol
    lo, hi = 1e-6, 10.0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if residual(mid) < target else (lo, mid)
    assert with_floor.lam == pytest.approx(lo, rel=0.25)
    assert with_floor.x is not None and with_floor.target == pytest.approx(target)


def test_a_short_solve_under_the_floor_does_not_step_past_a_weight_above_the_target():
    # short warm-started solves can end under the floor at a small weight; the search then steps up, but never
    # past a weight already known to lie above the target (the real head's fused lasso at R = 8 went 10x past
    # it twice and ran out of solves). A residual with a steep power law makes the first model step overshoot.
    from workbench.physics.linop import Identity

    n = 100
    y = torch.ones(n, dtype=torch.complex64)
    floor, goal, lam_star, dip = 1.0, 0.5, 2e-3, 1.5e-3

    def residual(lam):
        return floor - 0.5 * goal if lam < dip else floor + goal * (lam / lam_star) ** 4

    def solve(A, y, lam, x0=None):
        return y + math.sqrt(residual(lam) / n)  # ||x - y||^2 = residual(lam)

    target = floor + goal
    search = discrepancy_principle(solve, Identity((n,)), y, math.sqrt(target / n), lam0=3e-3,
                                   rtol=0.25 * goal / target, floor=floor)
    lams = [lam for lam, _ in search.trace]
    assert lams[0] == 3e-3 and lams[1] < dip  # above the target, then under the floor
    assert max(lams[1:]) <= lams[0]
    assert len(lams) <= 4 and search.lam == pytest.approx(lam_star, rel=0.1)
