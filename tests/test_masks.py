"""Cartesian masks and the Cartesian side of Sampling, checked against independent definitions:
fastMRI's documented algorithm (re-implemented below), counts, brute-force ACS search, geometric rules."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from workbench.errors import SamplingError
from workbench.sampling import Sampling, make_sampling, sampling_kinds
from workbench.sampling.masks import (
    EquispacedLineMask,
    GaussianMask,
    PoissonDiscMask,
    RandomLineMask,
    UserMask,
    acs_shape,
    effective_acceleration,
    mask_from_params,
)


# ---- fastMRI's mask functions, written from its documentation (fastmri/data/subsample.py) ---------------
def fastmri_mask(kind, center_fractions, accelerations, num_cols, seed, allow_any_combination=False):
    rng = np.random.RandomState()
    rng.seed(seed)  # temp_seed(self.rng, seed)
    if allow_any_combination:
        cf, acc = rng.choice(center_fractions), rng.choice(accelerations)
    else:
        i = rng.randint(len(center_fractions))
        cf, acc = center_fractions[i], accelerations[i]
    num_low = round(num_cols * cf)
    center = np.zeros(num_cols, dtype=np.float32)
    pad = (num_cols - num_low + 1) // 2
    center[pad : pad + num_low] = 1
    if kind == "random":  # RandomMaskFunc
        prob = (num_cols / acc - num_low) / (num_cols - num_low)
        accel = rng.uniform(size=num_cols) < prob
    else:  # EquispacedMaskFractionFunc
        adjusted = (acc * (num_low - num_cols)) / (num_low * acc - num_cols)
        offset = rng.randint(0, high=round(adjusted))
        accel = np.zeros(num_cols)
        accel[np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint)] = 1.0
    return np.maximum(center, accel).astype(bool)


@pytest.mark.parametrize("cls,kind", [(RandomLineMask, "random"), (EquispacedLineMask, "equispaced")])
@pytest.mark.parametrize("num_cols", [368, 320, 193])
def test_line_masks_equal_fastmri(cls, kind, num_cols):
    cfs, accs = [0.08, 0.04], [4, 8]
    func = cls(cfs, accs)
    for seed in [0, 1, 42, 1234, (102, 105, 108, 101)]:
        got = func((64, num_cols), seed=seed)
        expected = fastmri_mask(kind, cfs, accs, num_cols, seed)
        assert got.dtype == torch.bool and got.shape == (64, num_cols)
        # a line mask: every row the same (columns selected, broadcast along the readout H)
        assert torch.equal(got, got[:1].expand_as(got))
        np.testing.assert_array_equal(got[0].numpy(), expected)
    any_combo = cls(cfs, [4, 6, 8], allow_any_combination=True)
    np.testing.assert_array_equal(
        any_combo((16, num_cols), seed=7)[0].numpy(),
        fastmri_mask(kind, cfs, [4, 6, 8], num_cols, 7, allow_any_combination=True),
    )


def test_random_mask_mean_acceleration_is_nominal():
    func = RandomLineMask([0.08], [4])
    counts = [int(func((8, 368), seed=s)[0].sum()) for s in range(300)]
    # expected number of columns is W / R (fastMRI's probability formula)
    assert abs(np.mean(counts) - 368 / 4) < 1.5


def test_equispaced_lines_are_evenly_spaced_with_nominal_acceleration():
    for w, acc, cf in [(368, 4, 0.08), (320, 8, 0.04), (640, 6, 0.05)]:
        func = EquispacedLineMask([cf], [acc], offset=1)
        m = func((16, w), seed=0)[0].numpy()
        num_low = round(w * cf)
        adjusted = acc * (w - num_low) / (w - num_low * acc)
        pad = (w - num_low + 1) // 2
        outside = np.flatnonzero(m & ~np.isin(np.arange(w), np.arange(pad, pad + num_low)))
        gaps = np.diff(outside)
        # outside the centre the gaps are the adjusted spacing, rounded (or multiples where the centre sits)
        assert set(np.unique(gaps[gaps < 2 * adjusted - 1])) <= {math.floor(adjusted), math.ceil(adjusted)}
        assert outside[0] == 1
        assert abs(w / m.sum() - acc) / acc < 0.05


def test_line_mask_seed_determinism_and_params_roundtrip():
    func = RandomLineMask([0.08], [4], seed=5)
    a = func((32, 100))  # no seed: drawn from the object's generator and recorded
    p = func.params()
    assert p["kind"] == "random" and p["shape"] == [32, 100] and isinstance(p["seed"], int)
    assert torch.equal(mask_from_params(json.loads(json.dumps(p))), a)
    b = RandomLineMask([0.08], [4], seed=5)((32, 100))
    assert torch.equal(a, b)  # the same constructor seed gives the same sequence
    masks = {tuple(func((32, 100), seed=s)[0].tolist()) for s in range(10)}
    assert len(masks) > 5  # different seeds, different masks
    e = EquispacedLineMask([0.08], [4])
    m = e((32, 100), seed=3)
    assert torch.equal(mask_from_params(e.params()), m)


# ---- reported figures -----------------------------------------------------------------------------------
def brute_force_acs(mask):
    """Largest-area fully sampled box centred like center_crop (ties: the squarer one), by exhaustive search."""
    h, w = mask.shape
    best = (0, 0)
    for rows in range(1, h + 1):
        for cols in range(1, w + 1):
            top, left = h // 2 - rows // 2, w // 2 - cols // 2
            if mask[top : top + rows, left : left + cols].all():
                a, b = rows * cols, best[0] * best[1]
                if a > b or (a == b and abs(rows - cols) < abs(best[0] - best[1])):
                    best = (rows, cols)
    return best


def test_acs_shape_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(20):
        h, w = rng.integers(9, 22, size=2)
        m = rng.random((h, w)) < 0.5
        bh, bw = rng.integers(1, h + 1), rng.integers(1, w + 1)
        m[h // 2 - bh // 2 : h // 2 - bh // 2 + bh, w // 2 - bw // 2 : w // 2 - bw // 2 + bw] = True
        assert acs_shape(m) == brute_force_acs(m), trial
    # a line mask gives (H, centre lines); centred like center_crop: n lines are [W//2 - n//2, W//2 - n//2 + n)
    line = np.zeros(40, dtype=bool)
    line[16:24] = True  # 8 centre lines
    line[3] = True
    assert acs_shape(np.broadcast_to(line, (30, 40))) == (30, 8)
    left = line.copy()
    left[15] = True  # [15, 25) would need column 24 too: still 8
    assert acs_shape(np.broadcast_to(left, (30, 40))) == (30, 8)
    right = line.copy()
    right[24] = True  # [16, 25) is the centred 9-line block
    assert acs_shape(right) == (1, 9)
    assert acs_shape(np.zeros((10, 10), bool)) == (0, 0)
    # random line masks of either orientation (the shortcut for whole lines) against the exhaustive search
    for trial in range(30):
        h, w = rng.integers(5, 24, size=2)
        lines = rng.random(w) < 0.5
        lines[w // 2] = trial % 5 != 0  # sometimes no centre line at all
        m = np.broadcast_to(lines, (h, w))
        assert acs_shape(m) == brute_force_acs(m), trial
        assert acs_shape(m.T) == brute_force_acs(m.T), trial


def test_fastmri_masks_report_their_centre_lines():
    for w, cf in [(368, 0.08), (320, 0.04), (372, 0.08)]:
        m = EquispacedLineMask([cf], [4])((640, w), seed=0)
        num_low = round(w * cf)
        rows, cols = acs_shape(m)
        assert rows == 640 and cols >= num_low - 1  # a centre block of odd size misses one line symmetrically
        assert effective_acceleration(m) == pytest.approx(w / m[0].sum().item())


def test_effective_acceleration_counts_and_encoded_region():
    m = np.zeros((10, 20), bool)
    m[:, ::4] = True
    assert effective_acceleration(m) == pytest.approx(4.0)
    assert effective_acceleration(torch.from_numpy(m[0])) == pytest.approx(4.0)
    encoded = np.zeros((10, 20), bool)
    encoded[:, 2:18] = True  # zero-padded edges do not count as undersampling
    assert effective_acceleration(m, encoded) == pytest.approx(16 / 4)
    assert effective_acceleration(np.zeros((4, 4), bool)) == math.inf


# ---- 2D masks -------------------------------------------------------------------------------------------
def _sigpy_radius_rule(shape, calib, t):
    """The documented exclusion radius: 1 + t r (t > 0), r normalised from the calibration box (sigpy)."""
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(float)
    x = np.maximum(abs(x - w / 2) - calib[1] / 2, 0)
    x /= x.max()
    y = np.maximum(abs(y - h / 2) - calib[0] / 2, 0)
    y /= y.max()
    r = np.hypot(x, y)
    return r, np.maximum(1 + t * r, 1.0)


@pytest.mark.parametrize("acc", [1.6, 2.5, 4, 8, 15])
def test_poisson_hits_acceleration_and_keeps_calibration(acc):
    func = PoissonDiscMask(acc, calib=(24, 20))
    m = func((256, 240), seed=1).numpy()
    assert abs(240 * 256 / m.sum() - acc) / acc <= 0.02 + 1e-9
    assert m[128 - 12 : 128 + 12, 120 - 10 : 120 + 10].all()
    rows, cols = acs_shape(m)
    assert rows * cols >= 24 * 20  # the largest centred full box is at least the calibration box
    r, _ = _sigpy_radius_rule((256, 240), (24, 20), 1.0)
    assert not m[r >= 1].any()  # crop_corner


def test_poisson_is_a_maximal_variable_density_poisson_disc_set():
    shape, calib = (192, 192), (16, 16)
    func = PoissonDiscMask(7, calib=calib)
    m = func(shape, seed=3).numpy()
    t = func.last_density_parameter
    assert t > 0  # in the sigpy regime at this acceleration
    r, radius = _sigpy_radius_rule(shape, calib, t)
    box = np.zeros(shape, bool)
    box[96 - 8 : 96 + 8, 96 - 8 : 96 + 8] = True
    pts = np.argwhere(m & ~box)
    rad = radius[pts[:, 0], pts[:, 1]]
    tree = cKDTree(pts)
    # 1) disc property: no two points closer than the smaller of their radii
    pairs = tree.query_pairs(r=rad.max(), output_type="ndarray")
    d = np.linalg.norm(pts[pairs[:, 0]] - pts[pairs[:, 1]], axis=1)
    assert (d >= np.minimum(rad[pairs[:, 0]], rad[pairs[:, 1]]) - 1e-9).all()
    # 2) maximal: every empty pixel inside the sampled region lies within the radius of some point
    empty = np.argwhere(~m & ~box & (r < 1))
    near = tree.query_ball_point(empty, r=rad.max())
    covered = [any(np.linalg.norm(pts[j] - e) < rad[j] for j in js) for e, js in zip(empty, near)]
    assert all(covered)
    # 3) variable density: inner annulus denser than the outer one
    inner, outer = (r > 0.05) & (r < 0.3), (r > 0.7) & (r < 0.95)
    assert m[inner].mean() > 2 * m[outer].mean()


def test_poisson_deterministic_and_recreated_from_params():
    func = PoissonDiscMask(5, calib=(12, 12), seed=11)
    a = func((96, 80))
    assert torch.equal(mask_from_params(func.params()), a)
    assert torch.equal(PoissonDiscMask(5, calib=(12, 12))((96, 80), seed=func.last_seed), a)
    assert not torch.equal(func((96, 80), seed=1), func((96, 80), seed=2))


def test_gaussian_exact_count_calibration_and_density():
    for acc in [3, 6.5, 10]:
        func = GaussianMask(acc, calib=(16, 16), sigma=0.4)
        m = func((128, 160), seed=2).numpy()
        assert m.sum() == round(128 * 160 / acc)
        assert m[64 - 8 : 64 + 8, 80 - 8 : 80 + 8].all()
    ky = (np.arange(128) - 64) / 64
    kx = (np.arange(160) - 80) / 80
    rho = np.hypot(ky[:, None], kx[None, :])
    # sampled fraction decreases with the distance from the centre, as the Gaussian does
    fractions = [m[(rho > a) & (rho < a + 0.2)].mean() for a in (0.2, 0.5, 0.8)]
    assert fractions[0] > fractions[1] > fractions[2]
    assert torch.equal(mask_from_params(func.params()), torch.from_numpy(m))


def test_user_mask_1d_2d_and_params():
    line = np.zeros(24, bool)
    line[::3] = True
    func = UserMask(line)
    m = func((16, 24))
    assert m.shape == (16, 24) and torch.equal(m[5], torch.from_numpy(line))
    assert torch.equal(mask_from_params(json.loads(json.dumps(func.params()))), m)
    two_d = np.random.default_rng(0).random((20, 30)) < 0.3
    assert torch.equal(UserMask(two_d)(), torch.from_numpy(two_d))
    with pytest.raises(SamplingError, match="does not fit"):
        UserMask(two_d)((20, 31))
    with pytest.raises(SamplingError, match="no sample"):
        UserMask(np.zeros((10, 10), bool))


def test_mask_errors_are_typed_and_say_what_is_wrong():
    with pytest.raises(SamplingError, match="acceleration must be >= 1"):
        RandomLineMask([0.08], [0.5])
    with pytest.raises(SamplingError, match=r"center fraction must be in \[0, 1\)"):
        EquispacedLineMask([1.0], [4])
    with pytest.raises(SamplingError, match="too small"):
        RandomLineMask([0.08], [4])((4, 100), seed=0)
    with pytest.raises(SamplingError, match="lower the center fraction"):
        RandomLineMask([0.5], [4])((32, 100), seed=0)
    with pytest.raises(SamplingError, match="does not fit"):
        PoissonDiscMask(4, calib=(40, 40))((32, 32), seed=0)
    with pytest.raises(SamplingError, match="below the minimum"):
        PoissonDiscMask(1.05)((64, 64), seed=0)
    with pytest.raises(SamplingError, match="known: random"):
        mask_from_params({"kind": "spiralish"})
    with pytest.raises(SamplingError, match="seed"):
        RandomLineMask([0.08], [4])((32, 100), seed=-3)


# ---- Sampling (Cartesian kinds) -------------------------------------------------------------------------
def test_make_sampling_cartesian_kinds(tmp_path):
    assert sampling_kinds() == ["random", "equispaced", "poisson", "gaussian", "radial", "golden-radial", "spiral"]
    for kind in ["random", "equispaced", "poisson", "gaussian"]:
        s = make_sampling(kind, (128, 96), 4, seed=3)
        assert s.is_cartesian and s.trajectory is None and s.dcf is None
        assert s.mask.dtype == torch.bool and s.mask.shape == (128, 96)
        assert s.acceleration == pytest.approx(effective_acceleration(s.mask))
        assert s.acs_shape == acs_shape(s.mask)
        for name in ("s.npz", "s.json"):
            s.save(tmp_path / name)
            loaded = Sampling.load(tmp_path / name)
            assert loaded.kind == kind and loaded.shape == (128, 96)
            assert torch.equal(loaded.mask, s.mask), (kind, name)
        assert torch.equal(Sampling.from_dict(s.to_dict()).mask, s.mask)
    # the line masks are fastMRI's for the same seed, with the default centre fraction 0.32 / R
    s = make_sampling("random", (64, 368), 8, seed=9)
    np.testing.assert_array_equal(s.mask[0].numpy(), fastmri_mask("random", [0.04], [8], 368, 9))
    # centre fraction drives the calibration box of 2D masks
    s = make_sampling("gaussian", (100, 100), 5, center_fraction=0.1, seed=0)
    assert s.mask[45:55, 45:55].all() and s.params["calib"] == [10, 10]


def test_sampling_from_user_mask_roundtrip(tmp_path):
    m = np.random.default_rng(1).random((40, 48)) < 0.25
    s = Sampling.from_mask(m)
    assert s.kind == "user" and s.acceleration == pytest.approx(m.size / m.sum())
    s.save(tmp_path / "u.json")
    assert torch.equal(Sampling.load(tmp_path / "u.json").mask, torch.from_numpy(m))


def test_make_sampling_errors():
    with pytest.raises(SamplingError, match="known: random, equispaced, poisson, gaussian, radial"):
        make_sampling("rosette", (64, 64), 4)
    with pytest.raises(SamplingError, match="acceleration must be >= 1"):
        make_sampling("random", (64, 64), 0.9)
    with pytest.raises(SamplingError, match="center fraction"):
        make_sampling("equispaced", (64, 64), 4, center_fraction=1.2)
    with pytest.raises(SamplingError, match="too small"):
        make_sampling("poisson", (4, 64), 4)
    with pytest.raises(SamplingError, match="unknown parameter"):
        make_sampling("random", (64, 64), 4, sigma=3)


def test_load_reports_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SamplingError, match="bad.npz"):
        Sampling.load(bad)
    with pytest.raises(SamplingError, match="no such file"):
        Sampling.load(tmp_path / "missing.json")
