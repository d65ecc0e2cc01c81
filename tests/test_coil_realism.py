"""Realism of the simulator's coil maps (issue #5): its g-factor at R = 4 and its smoothness against ESPIRiT maps
of the real 8-coil brain scans in ../shared/realdata (skipped when absent).

The real references and the simulator settings are those of ``benchmarks/bench_coil_realism.py`` (which writes
the full table, ``benchmarks/results/coil_realism.md``): the fully sampled ``head`` of the harness datasets and the
two Poisson-disc brains (ESPIRiT needs only their fully sampled centre); the generator with the real set's coil
count and matrix size and the training data's random draws, at seeds ``SEED0 + i``.

Band. The generator draws a population of coil arrays (coil gap, pose, gains); a real array is realistic if it
looks like one of its draws. So a real statistic must lie within the range of the simulated one over
``N_SEEDS`` seeds (min..max of 8 seeds covers about the 11th..89th percentile of the population), widened by the
real statistic's own uncertainty, measured by varying the object-mask threshold 0.05..0.2 (the one choice that
the statistics depend on): the real g4 mean moved by 2-5 % (head 1.89-1.99, sigpy 3.15-3.40, bart 3.21-3.43),
the smoothness by 0.002-0.005 (head 0.972-0.982, sigpy 0.986-0.990). Hence 5 % and 0.005.

The simulated maps here are the generator's own (the benchmark shows ESPIRiT of the simulated k-space reproduces
their statistics to < 1 % on average), on the object mask of the simulated k-space, as for the real sets. The
g-factor depends strongly on how much of the phase-encode FOV the object fills (a prescription choice, not a
coil property: 0.80-0.91 in the real sets, ~0.73 for the generator's 240 mm FOV), so each seed is simulated
again with its FOV scaled to the real object's extent before its g-factor is taken.

Measured (benchmarks/results/coil_realism.md, 20 seeds; see the xfail reasons): smoothness is inside for all three
real sets; the R = 4 g-factor is inside for the two Poisson-disc brains but the head's array unfolds better than
every simulated one; the simulated maps' dynamic range and effective coil count are far below all real sets
(1/r wire sensitivities decay too slowly). Those are reported, not hidden: strict xfails, so a fixed coil model
shows up as an XPASS (then remove the marker).

The opt-in loop model (``coil_model="loop"``: circular surface loops, radius 55-75 mm, Biot-Savart) is held to
the same bands on the same seeds: smoothness, effective coils and the R = 4 g-factor are inside for all three
real sets (the head's included); its dynamic range overshoots (8-seed min 14 vs real 8.9-10.8; 20-seed mean ~21:
the loops' far side is darker than the real maps'), a strict xfail as for the wires.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.bench_coil_realism import SEED0, SIM_FOV_MM, _simulate, real_sets
from workbench.physics.coil_stats import (
    band_limited_fraction,
    dynamic_range,
    effective_coils,
    gfactor_map,
    object_mask,
)
from workbench.physics.coils import calibration_region, estimate_espirit_maps

pytestmark = pytest.mark.realdata

N_SEEDS = 8  # ~7 s on one busy core; the benchmark uses 20
G4_REL_TOL = 0.05  # real g4 mean's sensitivity to the object-mask definition (2-5 %)
SMOOTH_ABS_TOL = 0.005  # real smoothness's sensitivity to the object-mask definition (0.002-0.005)
DYN_REL_TOL = 0.10  # dynamic range: head 10.1-11.3, sigpy 8.4-9.4 over mask thresholds 0.05-0.2
NEFF_REL_TOL = 0.05  # effective coils: head 2.98-3.19, sigpy 2.69-2.89
REAL_NAMES = ("head", "sigpy_brain", "bart_brain")


def _stats(maps: torch.Tensor, mask: torch.Tensor, coils: bool = True, g4: bool = True) -> dict[str, float]:
    """The statistics of benchmarks/bench_coil_realism.py (coil_map_stats) that the tests use; ``extent``: the
    object's extent along the phase encode (W) over the FOV."""
    cols = torch.nonzero(mask.any(0)).flatten()
    out = {"extent": float((cols.max() - cols.min() + 1) / mask.shape[1])}
    if coils:
        out.update(smooth_r1=float(band_limited_fraction(maps, mask, 1.0).median()),
                   dyn_range=float(dynamic_range(maps, mask).median()), n_eff=effective_coils(maps, mask))
    if g4:
        out["g4_mean"] = float(gfactor_map(maps, 4, mask)[mask].mean())
    return out


@pytest.fixture(scope="module")
def reals(realdata):
    reals = {}
    for rs, scan in real_sets(realdata):
        if rs.name not in REAL_NAMES:
            continue
        k = scan.kspace(scan.n_slices // 2)
        rows, cols = calibration_region(k, (24, 24))
        calib = (rows.stop - rows.start, cols.stop - cols.start)
        maps = estimate_espirit_maps(k, calib=calib)
        mask = object_mask(k, calib=calib, support=maps.abs().sum(0) > 0)
        reals[rs.name] = {"stats": _stats(maps, mask), "grid": tuple(k.shape[-2:]), "n_coils": scan.n_coils,
                          "calib": calib}
    return reals


def _compare(reals, coil_model):
    """{real name: (real stats, simulated stats per seed)} for the generator with ``coil_model``."""
    sims = {}
    for name, r in reals.items():
        key = (r["n_coils"], r["grid"])
        group = [n for n, x in reals.items() if (x["n_coils"], x["grid"]) == key]
        if key in sims:
            continue
        target = float(np.mean([reals[n]["stats"]["extent"] for n in group]))
        per_seed = []
        for i in range(N_SEEDS):
            seed = SEED0 + i
            sim = _simulate(seed, r["grid"], r["n_coils"], SIM_FOV_MM, coil_model)
            k = torch.from_numpy(sim["kspace"])
            s = _stats(torch.from_numpy(sim["maps"]), object_mask(k, calib=r["calib"]), g4=False)
            fov = SIM_FOV_MM * s["extent"] / target  # same head and coils, pixel size scaled
            sim = _simulate(seed, r["grid"], r["n_coils"], fov, coil_model)
            k = torch.from_numpy(sim["kspace"])
            matched = _stats(torch.from_numpy(sim["maps"]), object_mask(k, calib=r["calib"]), coils=False)
            s["g4_mean_matched"], s["extent_matched"], s["target"] = matched["g4_mean"], matched["extent"], target
            per_seed.append(s)
        sims[key] = {k2: np.array([s[k2] for s in per_seed]) for k2 in per_seed[0]}
    return {name: (r["stats"], sims[(r["n_coils"], r["grid"])]) for name, r in reals.items()}


@pytest.fixture(scope="module")
def comparison(reals):
    return _compare(reals, "wire")


@pytest.fixture(scope="module")
def loop_comparison(reals):
    return _compare(reals, "loop")


def _get(comparison, name):
    if name not in comparison:
        pytest.skip(f"real set {name} not present")
    return comparison[name]


def test_fov_matching_reaches_the_real_extent(comparison):
    # the target is the mean extent of the real sets sharing the matrix size (sigpy 0.900, bart 0.911); the
    # scaling is linear in 1 / FOV, the mask a pixel grid: a few pixels off at most
    for name, (real, sim) in comparison.items():
        assert abs(real["extent"] - sim["target"][0]) < 0.01, name
        np.testing.assert_allclose(np.median(sim["extent_matched"]), sim["target"][0], atol=0.01, err_msg=name)
        np.testing.assert_allclose(sim["extent_matched"], sim["target"][0], atol=0.04, err_msg=name)


@pytest.mark.parametrize("name", REAL_NAMES)
def test_smoothness_within_band(comparison, name):
    real, sim = _get(comparison, name)
    lo, hi = sim["smooth_r1"].min() - SMOOTH_ABS_TOL, sim["smooth_r1"].max() + SMOOTH_ABS_TOL
    assert lo <= real["smooth_r1"] <= hi, (name, real["smooth_r1"], sim["smooth_r1"].round(4))


HEAD_G4 = ("the real head array unfolds better at R=4 than every simulated array with the same object fill: "
           "g4 mean 1.945 vs simulated 2.80 [2.15, 3.44] (5-95 %, 20 seeds; min 2.08); the Poisson-disc brains "
           "(3.29, 3.39) are inside. Reported in issue #5 (benchmarks/results/coil_realism.md).")


@pytest.mark.parametrize("name", [pytest.param("head", marks=pytest.mark.xfail(strict=True, reason=HEAD_G4)),
                                  "sigpy_brain", "bart_brain"])
def test_gfactor_r4_within_band(comparison, name):
    real, sim = _get(comparison, name)
    g = sim["g4_mean_matched"]
    lo, hi = g.min() * (1 - G4_REL_TOL), g.max() * (1 + G4_REL_TOL)
    assert lo <= real["g4_mean"] <= hi, (name, real["g4_mean"], g.round(3))


LOCALISATION = ("the simulated coils are far less localised than the real ones (1/r wire fields): median 95/5 "
                "percentile ratio of |S| 4.3 [3.2, 6.1] vs real 8.9-10.8, effective coils 1.9 [1.6, 2.4] vs real "
                "2.8-3.1 (20 seeds). Reported in issue #5 (benchmarks/results/coil_realism.md).")


@pytest.mark.xfail(strict=True, reason=LOCALISATION)
@pytest.mark.parametrize("stat, tol", [("dyn_range", DYN_REL_TOL), ("n_eff", NEFF_REL_TOL)])
def test_coil_localisation_within_band(comparison, stat, tol):
    for name, (real, sim) in comparison.items():
        lo, hi = sim[stat].min() * (1 - tol), sim[stat].max() * (1 + tol)
        assert lo <= real[stat] <= hi, (name, real[stat], sim[stat].round(3))


# ------------------------------------------------------------------------------------------------------------
# The loop model (coil_model="loop", the generator's default loop geometry), same seeds, same bands


@pytest.mark.parametrize("name", REAL_NAMES)
def test_loop_smoothness_within_band(loop_comparison, name):
    real, sim = _get(loop_comparison, name)
    lo, hi = sim["smooth_r1"].min() - SMOOTH_ABS_TOL, sim["smooth_r1"].max() + SMOOTH_ABS_TOL
    assert lo <= real["smooth_r1"] <= hi, (name, real["smooth_r1"], sim["smooth_r1"].round(4))


@pytest.mark.parametrize("name", REAL_NAMES)
def test_loop_gfactor_r4_within_band(loop_comparison, name):
    # the head's array, which unfolds better than every wire array, is inside for the loops
    real, sim = _get(loop_comparison, name)
    g = sim["g4_mean_matched"]
    lo, hi = g.min() * (1 - G4_REL_TOL), g.max() * (1 + G4_REL_TOL)
    assert lo <= real["g4_mean"] <= hi, (name, real["g4_mean"], g.round(3))


def test_loop_effective_coils_within_band(loop_comparison):
    for name, (real, sim) in loop_comparison.items():
        lo, hi = sim["n_eff"].min() * (1 - NEFF_REL_TOL), sim["n_eff"].max() * (1 + NEFF_REL_TOL)
        assert lo <= real["n_eff"] <= hi, (name, real["n_eff"], sim["n_eff"].round(3))


LOOP_DYN = ("the loops' far side is darker than the real maps': median 95/5 percentile ratio of |S| 23-24 "
            "[14, 57] (8 seeds) vs real 8.9-10.8 (benchmark, 20 seeds: 21 [9, 34]); quasi-static Biot-Savart "
            "loops fall off too fast across the head for the real arrays' floor. Reported in "
            "benchmarks/results/coil_realism.md.")


@pytest.mark.xfail(strict=True, reason=LOOP_DYN)
def test_loop_dynamic_range_within_band(loop_comparison):
    for name, (real, sim) in loop_comparison.items():
        lo, hi = sim["dyn_range"].min() * (1 - DYN_REL_TOL), sim["dyn_range"].max() * (1 + DYN_REL_TOL)
        assert lo <= real["dyn_range"] <= hi, (name, real["dyn_range"], sim["dyn_range"].round(3))
