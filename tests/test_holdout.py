"""The hold-out score's rule (workbench.holdout.estimated_nmse) against a slow direct computation of its definition
(explicit DFT matrices, per-line loops), and its behaviour: what a run puts where nothing was measured counts as the
run put it there, not as it put it on the held-out lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.holdout import SEPARATED, estimated_nmse, folds, kspace_nmse, scored_part, separated, summary
from workbench.physics.fft import fft2c, ifft2c
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.scoring import IMAGE_IS_RSS, ScoreError, calibration_phase
from workbench.simulate import generate_slice

N = 64


def _simulated(noise_level: float):
    """``(problem, noise-free image, fully sampled noisy k-space)``: a 4-coil slice, random lines at R = 4."""
    s = generate_slice(5, shape=(N, N), n_coils=4)
    sampling = make_sampling("random", (N, N), 4, seed=1, center_fraction=0.16)
    k = torch.from_numpy(s["kspace"])
    full = k + noise_level * float(k.abs().max()) * torch.randn(k.shape, dtype=torch.complex64,
                                                                generator=torch.Generator().manual_seed(1))
    problem = Problem(full * sampling.mask, mask=sampling.mask, maps=torch.from_numpy(s["maps"]))
    return problem, (problem.maps.conj() * ifft2c(k)).sum(0), full


@pytest.fixture(scope="module")
def simulated():
    return _simulated(0.02)[:2]


def _dft(n: int) -> np.ndarray:
    """The centred orthonormal DFT matrix: row k, column j = exp(-2 pi i (k - n/2)(j - n/2) / n) / sqrt(n)."""
    idx = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(idx, idx) / n) / math.sqrt(n)


def _direct(problem, holdouts, fold_images, scored_image) -> float:
    """The definition, written out: per fold the held-out lines' energy E, residual r and prediction energy P
    (coil images S x through explicit DFTs, summed line by line); rho = sum(E + P - r) / (2 sqrt(sum E sum P));
    the scored image's residual r_m on the measured lines and energy P_u on the unmeasured ones; E_u each
    unmeasured line's energy interpolated log-linearly over the column index from the measured lines' energies;
    NMSE = (r_m + E_u + P_u - 2 rho sqrt(E_u P_u)) / (E_m + E_u)."""
    y = problem.y.numpy().astype(np.complex128)
    maps = problem.maps.numpy().astype(np.complex128)
    cols = problem.mask.numpy().any(0)
    F = _dft(N)

    def kspace(image, phase_from):
        x = np.asarray(image).astype(np.complex128)
        if not np.any(np.imag(x)):
            x = np.abs(x) * np.exp(1j * calibration_phase(phase_from, phase_from.maps).numpy())
        return np.stack([F @ (m * x) @ F.T for m in maps])

    def line_energy(k, j):
        return sum(abs(k[c, i, j]) ** 2 for c in range(k.shape[0]) for i in range(N))

    E = r = P = 0.0
    for h, image in zip(holdouts, fold_images):
        k = kspace(image, h.train)
        for j in np.flatnonzero(h.held.numpy().any(0)):
            E += line_energy(y, j)
            r += line_energy(y - k, j)
            P += line_energy(k, j)
    rho = (E + P - r) / (2 * math.sqrt(E * P))
    k0 = kspace(scored_image, problem)
    measured = [j for j in range(N) if cols[j]]
    r_m = sum(line_energy(y - k0, j) for j in measured)
    p_u = sum(line_energy(k0, j) for j in range(N) if not cols[j])
    log_e = [math.log(line_energy(y, j)) for j in measured]
    e_u = sum(math.exp(np.interp(j, measured, log_e)) for j in range(N) if not cols[j])
    e_m = sum(line_energy(y, j) for j in measured)
    return (r_m + e_u + p_u - 2 * rho * math.sqrt(e_u * p_u)) / (e_m + e_u)


def test_estimated_nmse_is_its_definition(simulated):
    problem, truth = simulated
    holdouts = folds(problem, 3, 0.07, seed=2)
    assert len(holdouts) == 3 and all(h.held.any(0).sum() >= 1 for h in holdouts)
    # complex images (SENSE zero filling of each fold's kept data) and a magnitude-only scored image
    fold_images = [h.train.zero_filled("sense") for h in holdouts]
    scored_image = truth.abs() * 0.9
    got = estimated_nmse(holdouts, fold_images, scored_image=scored_image)
    assert got == pytest.approx(_direct(problem, holdouts, fold_images, scored_image), rel=1e-5)
    report = summary(holdouts, fold_images, scored_image=scored_image)
    assert report["holdout_nmse"] == pytest.approx(got, rel=1e-12)
    assert -1 <= report["holdout_correlation"] <= 1


def test_what_a_run_puts_on_the_unmeasured_lines_is_counted_as_it_is():
    problem, truth, full = _simulated(0.005)
    holdouts = folds(problem, 3, 0.07, seed=2)
    fold_images = [h.train.zero_filled("sense") for h in holdouts]
    zf = summary(holdouts, [None] * 3, IMAGE_IS_RSS)["holdout_nmse"]
    # zero filling: the unmeasured lines' estimated share of the scan's energy, whatever the folds' images
    assert zf == pytest.approx(estimated_nmse(holdouts, [truth] * 3, IMAGE_IS_RSS)) and 0 < zf < 1
    assert scored_part(problem, None, IMAGE_IS_RSS) == (0.0, 0.0)
    # the noise-free image (k-space NMSE against the fully sampled noisy data below zero filling's) scores below it
    cols = problem.mask.any(0)
    energy = float(full.abs().pow(2).sum())
    true_truth = float((full - fft2c(problem.maps * truth)).abs().pow(2).sum()) / energy
    true_zf = float(full[:, :, ~cols].abs().pow(2).sum()) / energy
    assert kspace_nmse(problem, full, truth) == pytest.approx(true_truth, rel=1e-5)
    assert kspace_nmse(problem, full, None, IMAGE_IS_RSS) == pytest.approx(true_zf, rel=1e-5)
    assert true_truth < 0.5 * true_zf
    assert estimated_nmse(holdouts, [truth] * 3, scored_image=truth) < 0.8 * zf
    # the same folds, a scored image that adds energy uncorrelated with the data on the unmeasured lines only:
    # its score is worse by about that energy (the held-out lines, where the fold runs put nothing of it, do not
    # see it: the relative-error rule scored both images alike)
    base = problem.zero_filled("sense")
    k_extra = torch.zeros(problem.n_coils, N, N, dtype=torch.complex64)
    k_extra[:, :, ~cols] = torch.randn(problem.n_coils, N, int((~cols).sum()), dtype=torch.complex64,
                                       generator=torch.Generator().manual_seed(3))
    k_extra *= 0.1 * float(problem.y.abs().max())
    extra = (problem.maps.conj() * ifft2c(k_extra)).sum(0)
    clean = estimated_nmse(holdouts, fold_images, scored_image=base)
    noisy = estimated_nmse(holdouts, fold_images, scored_image=base + extra)
    _, p_clean = scored_part(problem, base)
    _, p_noisy = scored_part(problem, base + extra)
    total = float(problem.y.abs().pow(2).sum()) / (1 - zf)  # measured + estimated unmeasured energy
    assert p_noisy > 2 * p_clean
    assert noisy - clean > 0.25 * (p_noisy - p_clean) / total


def test_the_score_needs_the_scored_image(simulated):
    problem, truth = simulated
    holdouts = folds(problem, 2, 0.07, seed=2)
    with pytest.raises(ScoreError, match="scored run's image"):
        summary(holdouts, [truth] * 2)
    with pytest.raises(ScoreError, match="NaN"):
        scored_part(problem, torch.full((N, N), float("nan")))


def test_the_standard_error_is_the_jackknife_over_folds(simulated):
    """``holdout_nmse_se``: the jackknife of the estimate over folds, each leave-one-fold-out estimate computed
    by the slow definition; zero filling (whose estimate no fold changes) has none; one fold has no error bar;
    two runs are ranked only when SEPARATED combined errors apart."""
    problem, truth = simulated
    holdouts = folds(problem, 4, 0.07, seed=3)
    fold_images = [h.train.zero_filled("sense") for h in holdouts]
    scored_image = truth.abs() * 0.9
    report = summary(holdouts, fold_images, scored_image=scored_image)
    loo = [_direct(problem, holdouts[:i] + holdouts[i + 1:], fold_images[:i] + fold_images[i + 1:], scored_image)
           for i in range(4)]
    mean = sum(loo) / 4
    expected = math.sqrt(3 / 4 * sum((v - mean) ** 2 for v in loo))
    assert expected > 0 and report["holdout_nmse_se"] == pytest.approx(expected, rel=1e-4)
    zf = summary(holdouts, [None] * 4, IMAGE_IS_RSS)
    assert zf["holdout_nmse_se"] == pytest.approx(0.0, abs=1e-12)
    assert summary(holdouts[:1], fold_images[:1], scored_image=scored_image)["holdout_nmse_se"] is None
    a = {"holdout_nmse": 0.10, "holdout_nmse_se": 0.003}
    b = {"holdout_nmse": 0.10 + SEPARATED * 0.005 * 1.01, "holdout_nmse_se": 0.004}
    assert separated(a, b) is True and separated(a, dict(b, holdout_nmse=0.108)) is False
    assert separated(a, {"holdout_nmse": 0.2, "holdout_nmse_se": None}) is None
