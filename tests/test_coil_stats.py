"""Coil-map statistics (workbench.physics.coil_stats). The g-factor is checked against independent definitions:
R = 1, disjoint coils, a per-pixel-set numpy unfolding of a few pixels, and the noise amplification of the full
dense SENSE encoding matrix (mask x centred orthonormal DFT x maps) inverted with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.physics.coil_stats import (
    band_limited_fraction,
    coil_map_stats,
    dynamic_range,
    effective_coils,
    gfactor_map,
    object_mask,
)


def random_maps(c: int, h: int, w: int, seed: int = 0, smooth: bool = True) -> np.ndarray:
    """Complex maps ``[C, H, W]``: smooth (Gaussian-profile coils at random places around the field of view,
    each with a random linear phase and gain) or white."""
    rng = np.random.default_rng(seed)
    if not smooth:
        return (rng.standard_normal((c, h, w)) + 1j * rng.standard_normal((c, h, w))).astype(np.complex128)
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = []
    for i in range(c):
        a = 2 * np.pi * (i + rng.uniform(-0.3, 0.3)) / c
        width = rng.uniform(0.6, 1.0)
        mag = np.exp(-((y - 1.2 * np.sin(a)) ** 2 + (x - 1.2 * np.cos(a)) ** 2) / (2 * width**2))
        py, px = rng.uniform(-1.5, 1.5, 2)
        maps.append(rng.uniform(0.7, 1.3) * mag * np.exp(1j * (py * y + px * x + rng.uniform(-3, 3))))
    return np.stack(maps)


def ellipse(h: int, w: int, ry: float = 0.42, rx: float = 0.4) -> np.ndarray:
    y, x = np.meshgrid((np.arange(h) - h // 2) / h, (np.arange(w) - w // 2) / w, indexing="ij")
    return (y / ry) ** 2 + (x / rx) ** 2 <= 1


def centred_dft(n: int) -> np.ndarray:
    """The centred orthonormal DFT matrix: ``F @ v == fftshift(fft(ifftshift(v), norm="ortho"))``."""
    eye = np.eye(n)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho"), axes=0)


def dense_gfactor(maps: np.ndarray, mask: np.ndarray, r: int, offset: int = 0, noise_cov=None) -> np.ndarray:
    """g from the dense encoding matrix ``E = P (F_H x F_W) S`` over the object pixels (every r-th phase-encode
    column from ``offset``): ``g_i = sqrt([(E^H Psi^-1 E)^-1]_ii / (R [(S^H Psi^-1 S)^-1]_full,ii))``, the noise
    amplification of the undersampled unfolding over that of the fully sampled one, per sqrt(R)."""
    c, h, w = maps.shape
    f2 = np.kron(centred_dft(h), centred_dft(w))  # acts on row-major flattened images
    cols = np.arange(offset, w, r)
    rows_k = (np.arange(h)[:, None] * w + cols[None, :]).ravel()  # acquired k-space samples
    pix = np.flatnonzero(mask.ravel())
    blocks = [f2[rows_k][:, pix] * maps[i].ravel()[pix][None, :] for i in range(c)]
    e = np.concatenate(blocks, 0)  # [C * n_samples, n_pix]
    psi = np.eye(c) if noise_cov is None else np.asarray(noise_cov)
    psi_inv = np.kron(np.linalg.inv(psi), np.eye(len(rows_k)))
    cov_r = np.linalg.inv(e.conj().T @ psi_inv @ e)
    s = maps.reshape(c, -1)[:, pix]  # [C, n_pix]
    full_info = np.real(np.einsum("cp,cd,dp->p", s.conj(), np.linalg.inv(psi), s))  # 1 / full variance
    g = np.zeros(h * w)
    g[pix] = np.sqrt(np.real(np.diag(cov_r)) * full_info / r)
    return g.reshape(h, w)


def test_r1_is_one_everywhere_in_the_object():
    maps = random_maps(4, 16, 20)
    mask = ellipse(16, 20)
    g = gfactor_map(torch.from_numpy(maps), 1, mask).numpy()
    np.testing.assert_allclose(g[mask], 1.0, atol=1e-12)
    assert (g[~mask] == 0).all()


def test_disjoint_coils_have_g_one():
    # coil c sees only the c-th quarter along W: every aliased set (x, x + W/4, ...) meets each coil once
    c, h, w, r = 4, 8, 24, 4
    rng = np.random.default_rng(1)
    maps = np.zeros((c, h, w), complex)
    for i in range(c):
        q = slice(i * w // r, (i + 1) * w // r)
        maps[i, :, q] = rng.standard_normal((h, w // r)) + 1j * rng.standard_normal((h, w // r))
    g = gfactor_map(torch.from_numpy(maps), r).numpy()
    np.testing.assert_allclose(g, 1.0, atol=1e-12)
    # and orthogonal (not disjoint) coil vectors: a unitary mixing of disjoint coils changes nothing
    u, _ = np.linalg.qr(rng.standard_normal((c, c)) + 1j * rng.standard_normal((c, c)))
    g_mixed = gfactor_map(torch.from_numpy(np.einsum("dc,chw->dhw", u, maps)), r).numpy()
    np.testing.assert_allclose(g_mixed, 1.0, atol=1e-10)


def test_per_pixel_unfolding_reference():
    """A few pixels: the C x n system of the object pixels that alias onto each other, inverted by numpy."""
    c, h, w, r = 6, 32, 48, 4
    maps = random_maps(c, h, w, seed=2)
    mask = ellipse(h, w, 0.45, 0.45)
    g = gfactor_map(torch.from_numpy(maps), r, mask).numpy()
    rng = np.random.default_rng(3)
    inside = np.argwhere(mask)
    for y, x in inside[rng.choice(len(inside), 12, replace=False)]:
        xs = [(x + k * w // r) % w for k in range(r)]
        xs = [xx for xx in xs if mask[y, xx]]
        s = maps[:, y, xs]  # [C, n]
        shs = s.conj().T @ s
        i = xs.index(x)
        ref = np.sqrt(np.real(np.linalg.inv(shs)[i, i]) * np.real(shs[i, i]))
        assert g[y, x] == pytest.approx(ref, rel=1e-9)
    assert (g[mask] >= 1 - 1e-12).all()


@pytest.mark.parametrize("r, offset", [(2, 0), (3, 1), (4, 3)])
def test_matches_dense_encoding_matrix(r, offset):
    c, h, w = 4, 6, 12
    maps = random_maps(c, h, w, seed=r)
    mask = ellipse(h, w, 0.45, 0.45)
    ref = dense_gfactor(maps, mask, r, offset)
    g = gfactor_map(torch.from_numpy(maps), r, mask).numpy()
    np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-10)
    assert ref[mask].max() > 1.05  # a non-trivial case


def test_noise_covariance_and_axis():
    c, h, w, r = 4, 6, 12, 3
    maps = random_maps(c, h, w, seed=7)
    mask = ellipse(h, w, 0.45, 0.45)
    rng = np.random.default_rng(8)
    a = rng.standard_normal((c, c)) + 1j * rng.standard_normal((c, c))
    psi = a @ a.conj().T + c * np.eye(c)
    ref = dense_gfactor(maps, mask, r, 0, noise_cov=psi)
    g = gfactor_map(torch.from_numpy(maps), r, mask, noise_cov=torch.from_numpy(psi)).numpy()
    np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-10)
    # undersampling along H is the same problem transposed
    g_h = gfactor_map(torch.from_numpy(maps.transpose(0, 2, 1).copy()), r, mask.T, axis=-2).numpy()
    np.testing.assert_allclose(g_h, gfactor_map(torch.from_numpy(maps), r, mask).numpy().T, rtol=1e-10)


def test_gfactor_invariant_to_pixelwise_normalisation():
    maps = random_maps(5, 16, 16, seed=4)
    mask = ellipse(16, 16)
    rng = np.random.default_rng(5)
    scale = rng.uniform(0.2, 3.0, (16, 16)) * np.exp(1j * rng.uniform(-3, 3, (16, 16)))
    g1 = gfactor_map(torch.from_numpy(maps), 4, mask).numpy()
    g2 = gfactor_map(torch.from_numpy(maps * scale), 4, mask).numpy()
    np.testing.assert_allclose(g1, g2, rtol=1e-9)


def test_gfactor_rejects_bad_acceleration():
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError):
        gfactor_map(torch.ones(2, 8, 10, dtype=torch.complex64), 4)


def test_effective_coils_and_dynamic_range_limits():
    c, h, w = 4, 16, 16
    mask = np.ones((h, w), bool)
    disjoint = np.zeros((c, h, w), complex)
    for i in range(c):
        disjoint[i, :, i * 4 : (i + 1) * 4] = 1.0
    assert effective_coils(torch.from_numpy(disjoint), mask) == pytest.approx(c)
    same = np.ones((c, 1, 1)) * random_maps(1, h, w, seed=1) * np.arange(1, c + 1)[:, None, None]
    assert effective_coils(torch.from_numpy(same), mask) == pytest.approx(1.0)
    flat = np.exp(1j * np.random.default_rng(0).uniform(-3, 3, (c, h, w)))  # constant magnitude, any phase
    np.testing.assert_allclose(dynamic_range(torch.from_numpy(flat), mask).numpy(), 1.0)
    ramp = np.broadcast_to(np.linspace(1, 10, h * w).reshape(h, w), (c, h, w)).astype(complex)
    assert dynamic_range(torch.from_numpy(ramp), mask)[0] == pytest.approx(
        np.percentile(np.linspace(1, 10, h * w), 95) / np.percentile(np.linspace(1, 10, h * w), 5))


def test_band_limited_fraction():
    h, w = 48, 40
    mask = ellipse(h, w)
    y, x = np.meshgrid(np.arange(h) / 48.0, np.arange(w) / 48.0, indexing="ij")
    smooth = np.stack([1 + 0.5 * np.exp(2j * np.pi * 0.5 * y), 2 + 0.3 * x + 0.2j * y])  # <= 1/2 cycle/object
    common = np.exp(1j * 40 * np.sin(9 * x) * np.cos(7 * y))  # a wild common phase: not a coil property
    frac = band_limited_fraction(torch.from_numpy(smooth * common), mask, radius=1.0).numpy()
    assert frac.min() > 0.999
    # each coil with its own fine magnitude ripple (8 cycles per object; a common one would be a common
    # factor, not a coil property): at most 1 / (1 + 0.9^2 / 2) of the energy is smooth
    ripple = np.stack([1 + 0.9 * np.cos(2 * np.pi * 8 * (np.cos(a) * y + np.sin(a) * x)) for a in (0.3, 1.2)])
    frac_rough = band_limited_fraction(torch.from_numpy(smooth * ripple), mask, radius=1.0).numpy()
    assert (frac_rough < 1 / (1 + 0.81 / 2) + 0.03).all()
    # more radius, more energy explained
    some = random_maps(3, h, w, seed=5) + 0.3 * np.cos(2 * np.pi * 4 * x)
    f1, f3 = (band_limited_fraction(torch.from_numpy(some), mask, radius=r).numpy() for r in (1.0, 3.0))
    assert (f3 >= f1 - 1e-12).all() and f1.min() < 0.999


def test_coil_map_stats_keys_and_scale_invariance():
    maps = random_maps(6, 32, 32, seed=9)
    mask = ellipse(32, 32)
    a = coil_map_stats(torch.from_numpy(maps), mask)
    b = coil_map_stats(torch.from_numpy(maps * (3.5 - 2j)), mask)
    for key in ("smooth_r1", "dyn_range", "n_eff", "g2_mean", "g2_p95", "g4_mean", "g4_p95", "object_extent_pe"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    assert a["n_coils"] == 6 and 1 <= a["n_eff"] <= 6 and a["g4_mean"] >= a["g2_mean"] >= 1


def test_espirit_of_simulated_kspace_reproduces_the_generator_statistics():
    """The benchmark compares ESPIRiT maps of real scans with simulated ones: on simulated k-space the estimator
    must reproduce the generator's own maps' statistics (else the comparison measures the estimator)."""
    from workbench.physics.coils import estimate_espirit_maps
    from workbench.simulate import generate_slice

    sim = generate_slice(11, shape=(128, 128), n_coils=8, fov_mm=220.0)
    k = torch.from_numpy(sim["kspace"])
    esp = estimate_espirit_maps(k)
    mask = object_mask(k, support=esp.abs().sum(0) > 0)
    assert 0.3 < mask.double().mean() < 0.9
    s_true = coil_map_stats(torch.from_numpy(sim["maps"]), mask)
    s_esp = coil_map_stats(esp, mask)
    for key in ("smooth_r1", "dyn_range", "n_eff", "g2_mean", "g4_mean"):
        # one slice: within 5 % (the benchmark's 20-seed means agree to < 1 %)
        assert s_esp[key] == pytest.approx(s_true[key], rel=0.05), key


def test_singular_unfolding_is_infinite():
    same = torch.ones(2, 4, 8, dtype=torch.complex64)  # two identical coils cannot separate 2 or 4 pixels
    assert torch.isinf(gfactor_map(same, 2)).all() and torch.isinf(gfactor_map(same, 4)).all()
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :2] = True  # no aliasing partner inside the object: nothing to unfold, g = 1
    g = gfactor_map(same, 4, mask)
    assert (g[mask] == 1).all() and (g[~mask] == 0).all()
