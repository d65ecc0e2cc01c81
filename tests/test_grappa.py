"""GRAPPA (workbench/physics/grappa.py and the grappa plugin) against exact low-rank data and brute-force fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.errors import SamplingError
from workbench.physics import grappa as G
from workbench.physics.fft import fft2c, ifft2c, rss

H, W, C = 64, 64, 8


def smooth_maps(n_coils: int = C, shape=(H, W)) -> torch.Tensor:
    """Coils on a ring around the object: Gaussian magnitude, linear phase. Band-limited, hence exactly the
    low-rank (k-space shift-invariant) structure GRAPPA relies on."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, shape[0], dtype=torch.float64),
                            torch.linspace(-1, 1, shape[1], dtype=torch.float64), indexing="ij")
    maps = []
    for c in range(n_coils):
        ang = 2 * math.pi * c / n_coils
        cx, cy = 1.3 * math.cos(ang), 1.3 * math.sin(ang)
        mag = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0)
        maps.append(mag * torch.exp(1j * 0.5 * (xx * math.cos(ang) + yy * math.sin(ang))))
    return torch.stack(maps).to(torch.complex64)


def phantom(shape=(H, W)) -> torch.Tensor:
    """Nested ellipses with a smooth phase (a piecewise-constant object)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij")
    img = 1.0 * ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1)
    img = img - 0.4 * (((xx - 0.15) / 0.25) ** 2 + ((yy + 0.1) / 0.4) ** 2 < 1)
    img = img + 0.3 * (((xx + 0.3) / 0.12) ** 2 + ((yy - 0.3) / 0.12) ** 2 < 1)
    return (img * torch.exp(1j * 0.3 * xx)).to(torch.complex64)


def line_mask_with_acs(columns, n_acs: int = 16, shape=(H, W)) -> torch.Tensor:
    lines = torch.zeros(shape[1], dtype=torch.bool)
    lines[list(columns)] = True
    lines[shape[1] // 2 - n_acs // 2: shape[1] // 2 - n_acs // 2 + n_acs] = True
    return lines[None, :].expand(*shape).clone()


@pytest.fixture(scope="module")
def kspace() -> torch.Tensor:
    return fft2c(smooth_maps() * phantom())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_equispaced_r2_reconstructs_exact_low_rank_kspace(kspace):
    mask = line_mask_with_acs(range(0, W, 2))
    out = G.grappa(kspace * mask, mask, kernel_readout=5, source_lines=4, reg=1e-4)
    assert rel_err(out.kspace, kspace) < 0.05
    # the acquired samples are the measurements, bit for bit
    assert torch.equal(out.kspace[:, mask], (kspace * mask)[:, mask])
    # and the image is much better than zero filling
    truth = rss(ifft2c(kspace))
    assert rel_err(rss(ifft2c(out.kspace)), truth) < 0.3 * rel_err(rss(ifft2c(kspace * mask)), truth)
    assert out.unfilled == [] and not out.stopped and out.axis == -1


def test_irregular_pattern_with_small_gaps_gets_one_kernel_per_pattern(kspace):
    # gaps of one and two lines alternate: x.x..x.x.. -> several distinct source patterns
    cols = [c for c in range(W) if c % 5 in (0, 2)]
    mask = line_mask_with_acs(cols)
    out = G.grappa(kspace * mask, mask, kernel_readout=5, source_lines=4, reg=1e-4)
    assert out.n_patterns >= 3
    filled = sorted(t for ts in out.targets.values() for t in ts)
    assert filled == [int(i) for i in torch.nonzero(~mask[0]).flatten()]
    assert rel_err(out.kspace, kspace) < 0.08
    assert torch.equal(out.kspace[:, mask], (kspace * mask)[:, mask])


def test_row_masks_are_handled_by_transposition(kspace):
    mask = line_mask_with_acs(range(0, W, 2))
    out_cols = G.grappa(kspace * mask, mask, reg=1e-4)
    k_t = kspace.transpose(-1, -2).contiguous()
    out_rows = G.grappa(k_t * mask.T, mask.T, reg=1e-4)
    assert out_rows.axis == -2
    assert torch.allclose(out_rows.kspace, out_cols.kspace.transpose(-1, -2), atol=1e-5 * float(kspace.abs().max()))


def test_calibration_matches_brute_force_least_squares():
    # well-conditioned random calibration data: the Gram-block calibration must equal an explicit lstsq fit
    g = torch.Generator().manual_seed(0)
    c, h, a, kx = 3, 20, 9, 3
    acs = torch.randn(c, h, a, dtype=torch.complex64, generator=g)
    patterns = [(-1, 1), (-2, 1, 3), (1, 2)]
    kernels = G.calibrate(acs, patterns, kernel_readout=kx, reg=0.0)
    a_np = acs.numpy().astype(np.complex128)
    for pattern in patterns:
        rows, targets = [], []
        lo, hi = min(min(pattern), 0), max(max(pattern), 0)
        for t in range(-lo, a - hi):
            for r in range(h - kx + 1):
                rows.append(np.concatenate([a_np[:, r:r + kx, t + d].reshape(-1) for d in pattern]))
                targets.append(a_np[:, r + kx // 2, t])
        w, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
        np.testing.assert_allclose(kernels[pattern].numpy(), w, rtol=0, atol=2e-4 * np.abs(w).max())


def test_source_pattern_rules():
    acquired = [0, 2, 4, 5, 6, 9, 20]
    assert G.source_pattern(acquired, 3, 4, max_span=10) == (-3, -1, 1, 2)
    assert G.source_pattern(acquired, 1, 2, max_span=10) == (-1, 1)
    # near an edge the missing side is made up from the other side
    assert G.source_pattern([3, 4, 6, 8], 0, 4, max_span=10) == (3, 4, 6, 8)
    # a pattern wider than the ACS allows drops its farthest lines
    assert G.source_pattern(acquired, 14, 2, max_span=8) == (-5,)
    assert G.source_pattern(acquired, 14, 2, max_span=4) == ()


def test_acs_region_and_line_mask():
    lines = torch.zeros(32, dtype=torch.bool)
    lines[[0, 4, 8, 13, 14, 15, 16, 17, 18, 24]] = True
    assert G.acs_region(lines) == slice(13, 19)
    m, axis = G.line_mask(lines[None].expand(10, 32))
    assert axis == -1 and torch.equal(m, lines)
    speckle = torch.zeros(10, 32, dtype=torch.bool)
    speckle[::2, ::3] = True
    with pytest.raises(SamplingError, match="2D pattern"):
        G.line_mask(speckle)


def test_missing_acs_is_a_clear_error(kspace):
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[:, ::2] = True  # no adjacent centre lines
    with pytest.raises(SamplingError, match="ACS"):
        G.grappa(kspace * mask, mask)


def test_callback_stops_calibration(kspace):
    cols = [c for c in range(W) if c % 5 in (0, 2)]
    mask = line_mask_with_acs(cols)
    seen = []
    out = G.grappa(kspace * mask, mask, callback=lambda done, total: seen.append(done) or done >= 2)
    assert seen == [1, 2] and out.stopped and len(out.kernels) == 2


# ---------------------------------------------------------------------------------------------------------
# the plugin: check() explains, run() improves on zero filling
def _problem(kspace, mask, **kw):
    from workbench.problem import Problem

    return Problem(kspace * mask, mask=mask, **kw)


def test_plugin_check_reasons(kspace):
    from workbench.methods import discover_methods

    method = discover_methods(entry_points=False, user_dirs=False).get("grappa")
    single = _problem(kspace[:1], line_mask_with_acs(range(0, W, 2)))
    assert any("multi-coil" in r for r in method.check(single))
    no_acs = torch.zeros(H, W, dtype=torch.bool)
    no_acs[:, ::2] = True
    assert any("ACS" in r for r in method.check(_problem(kspace, no_acs)))
    speckle = torch.rand(H, W, generator=torch.Generator().manual_seed(1)) < 0.4
    speckle[H // 2 - 8:H // 2 + 8, W // 2 - 8:W // 2 + 8] = True
    assert any("2D pattern" in r for r in method.check(_problem(kspace, speckle)))
    assert method.check(_problem(kspace, line_mask_with_acs(range(0, W, 2)))) == []


def test_plugin_on_noisy_simulated_slice_beats_zero_filling():
    from workbench.methods import RunContext, discover_methods, safe_run
    from workbench.metrics import psnr
    from workbench.problem import Problem
    from workbench.simulate import generate_slice

    s = generate_slice(3, shape=(96, 96), n_coils=8)
    k = torch.from_numpy(s["kspace"])
    mask = line_mask_with_acs(range(0, 96, 2), n_acs=16, shape=(96, 96))
    problem = Problem(k * mask, mask=mask, reference=s["reference"])
    method = discover_methods(entry_points=False, user_dirs=False).get("grappa")
    ctx = RunContext("cpu")
    result = safe_run(method, problem, {}, ctx)
    zero_filled = problem.zero_filled("rss")
    assert psnr(s["reference"], result.image.abs()) > psnr(s["reference"], zero_filled) + 3.0
    assert result.extras["n_kernels"] >= 1 and result.extras["unfilled_lines"] == 0
    assert result.history and result.history[-1]["iter"] == result.extras["n_kernels"]
