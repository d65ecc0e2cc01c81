"""Coil-map realism: the simulator's coil model against ESPIRiT maps of real multi-coil brain scans.

    python -m benchmarks.bench_coil_realism [--seeds 20] [--realdata DIR] [--out benchmarks/results] [--threads 1]

Real references (``../shared/realdata``, or ``--realdata`` / ``$WORKBENCH_REALDATA``):
- every fully sampled harness dataset (:data:`benchmarks.harness.DATASETS`) with at least 4 coils (today: the
  8-coil ``head``), and
- the two 8-coil Poisson-disc brains (:data:`CALIBRATION_SETS`): undersampled, but ESPIRiT needs only their
  fully sampled k-space centre, and one fully sampled real set is too thin a basis for a "real range".

For each, ESPIRiT maps (:func:`workbench.physics.coils.estimate_espirit_maps`, the defaults a Problem uses) and an
object mask (:func:`workbench.physics.coil_stats.object_mask`: low-resolution RSS of the calibration region,
within the maps' support) give the statistics of :func:`workbench.physics.coil_stats.coil_map_stats`: smoothness
(energy fraction within 1 cycle per object size), the 95/5 percentile ratio of each coil's magnitude (median
over coils), the effective number of coils, and the g-factor of equispaced undersampling along the phase encode
(W) at R = 2 and 4 (mean and 95th percentile over the object).

The simulator (:func:`workbench.simulate.generate_slice`) runs with the real set's coil count and matrix size and
the training data's random draws (pose, coil gap 10-25 mm, contrast, noise correlation; ``--seeds`` seeds), with
each coil model (``--models``): ``wire``, the generator's default (straight wires, 1/r), and ``loop`` (circular
surface loops of the generator's default radius 55-75 mm and array position; the same seed gives the same head,
pose, gains and noise draws, only the coils differ). Each model three ways (the loop rows prefixed ``loop_``):
- ``sim true``: the generator's own maps (``maps``), FOV 240 mm (the generator's and training's default);
- ``sim ESPIRiT``: ESPIRiT maps estimated from the simulated k-space exactly as from the real one (same
  estimator, same calibration size: the like-for-like comparison), FOV 240 mm;
- ``sim ESPIRiT, FOV matched``: the same seed with the FOV chosen so that the object spans the same fraction of
  the phase-encode FOV as in the real set. The g-factor grows quickly with that fraction (aliased copies
  overlap more), which is a property of the scan prescription, not of the coils: this row isolates the coils.

Writes ``results/coil_realism.md`` and ``.json``. About a minute per model at one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import DATASETS, RESULTS_DIR, machine_description, machine_line, realdata_dir

# statistics shown, in order: (key, label, format)
STATS: tuple[tuple[str, str, str], ...] = (
    ("object_extent_pe", "object extent along PE / FOV", ".3f"),
    ("smooth_r1", "smoothness: energy fraction <= 1 cycle/object", ".4f"),
    ("dyn_range", "dynamic range: p95/p5 of the coil magnitude (median coil)", ".2f"),
    ("n_eff", "effective coils (participation ratio)", ".2f"),
    ("g2_mean", "g-factor R=2 mean", ".3f"),
    ("g2_p95", "g-factor R=2 p95", ".3f"),
    ("g4_mean", "g-factor R=4 mean", ".3f"),
    ("g4_p95", "g-factor R=4 p95", ".3f"),
)
RADIUS = 1.0  # cycles per object size for the smoothness statistic (2 already gives > 0.998 for every set)
ACCELERATIONS = (2, 4)
SIM_FOV_MM = 240.0  # the generator's default field of view along W (training uses it)
# the training data's draws (workbench.nn.data.DEFAULT_SYNTHETIC): random pose, coil gap, noise correlation
SIM_DRAWS: dict[str, Any] = {"rotation_deg": None, "flip_lr": None, "scale": None, "shift_mm": None,
                             "noise_correlation": None, "snr": (10.0, 60.0), "coil_gap_mm": None,
                             "texture": None, "bias": None}
SIM_CONTRASTS = ("random", "t1", "t2", "pd")
SEED0 = 7_000  # generator seeds SEED0 + i (any seeds will do; fixed for reproducibility)
COIL_MODELS = ("wire", "loop")  # workbench.simulate.COIL_MODELS, each with the generator's defaults


@dataclass(frozen=True)
class RealSet:
    """A real multi-coil scan whose ESPIRiT maps serve as a reference."""

    name: str
    description: str
    path: str  # relative to the real-data folder
    options: dict[str, Any] = field(default_factory=dict)


CALIBRATION_SETS: tuple[RealSet, ...] = (
    RealSet("sigpy_brain", "real axial brain, 8 coils, 230x180, Poisson R~8 (ESPIRiT from the 24x24 centre)",
            "sigpy_brain8ch_poisson/cartesian_ksp.npy"),
    RealSet("bart_brain", "real axial brain, 8 coils, 230x180, Poisson R~8 (ESPIRiT from the 20x20 centre; "
            "another slice than sigpy_brain)", "bartws_brain8ch_poisson_ref/ksp.cfl"),
)


def real_sets(realdata: Path, min_coils: int = 4) -> list[tuple[RealSet, Any]]:
    """``[(RealSet, Scan)]``: the fully sampled harness datasets with at least ``min_coils`` coils, then the
    :data:`CALIBRATION_SETS`; those whose file is absent are left out."""
    from workbench.io import open_scan

    out = []
    for d in DATASETS.values():
        if d.path is None or not (realdata / d.path).is_file():
            continue
        scan = open_scan(realdata / d.path, **d.options)
        if scan.is_cartesian and scan.fully_sampled and scan.n_coils >= min_coils:
            out.append((RealSet(d.name, d.description, d.path, dict(d.options)), scan))
    for s in CALIBRATION_SETS:
        if (realdata / s.path).is_file():
            out.append((s, open_scan(realdata / s.path, **s.options)))
    return out


def maps_stats(kspace: torch.Tensor, calib: tuple[int, int], true_maps: torch.Tensor | None = None
               ) -> dict[str, dict[str, Any]]:
    """ESPIRiT maps of ``kspace`` ``[C, H, W]`` (and ``true_maps`` if given) -> their statistics over the object
    mask of ``kspace``: ``{"espirit": stats[, "true": stats]}``."""
    from workbench.physics.coil_stats import coil_map_stats, object_mask
    from workbench.physics.coils import estimate_espirit_maps

    maps = estimate_espirit_maps(kspace, calib=calib)
    mask = object_mask(kspace, calib=calib, support=maps.abs().sum(0) > 0)
    out = {"espirit": coil_map_stats(maps, mask, ACCELERATIONS, radius=RADIUS)}
    if true_maps is not None:
        out["true"] = coil_map_stats(true_maps, mask, ACCELERATIONS, radius=RADIUS)
    return out


def _simulate(seed: int, shape: tuple[int, int], n_coils: int, fov_mm: float, coil_model: str = "wire"
              ) -> dict[str, Any]:
    from workbench.simulate import generate_slice

    contrast = SIM_CONTRASTS[seed % len(SIM_CONTRASTS)]
    return generate_slice(seed, shape=shape, n_coils=n_coils, contrast=contrast, fov_mm=fov_mm,
                          coil_model=coil_model, **SIM_DRAWS)


def simulated_stats(seed: int, shape: tuple[int, int], n_coils: int, calib: tuple[int, int],
                    target_extent: float | None, coil_model: str = "wire") -> dict[str, dict[str, Any]]:
    """One generator seed: ``{"true": ..., "espirit": ...}`` at the default FOV and, with ``target_extent``,
    ``"espirit_matched"``: the same seed with the FOV scaled so that the object's PE extent is ``target_extent``."""
    sim = _simulate(seed, shape, n_coils, SIM_FOV_MM, coil_model)
    out = maps_stats(torch.from_numpy(sim["kspace"]), calib, torch.from_numpy(sim["maps"]))
    if target_extent is not None:
        # the object's extent in pixels scales as 1 / FOV (same head, same coils, other pixel size)
        fov = SIM_FOV_MM * out["espirit"]["object_extent_pe"] / target_extent
        sim = _simulate(seed, shape, n_coils, fov, coil_model)
        matched = maps_stats(torch.from_numpy(sim["kspace"]), calib)["espirit"]
        matched["fov_mm"] = fov
        out["espirit_matched"] = matched
    return out


def _summary(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95)),
            "min": float(v.min()), "max": float(v.max())}


def _prefix(model: str) -> str:
    """Variant-name prefix of a coil model's rows: none for the default wire model (the keys as before)."""
    return "" if model == "wire" else f"{model}_"


def run(n_seeds: int = 20, realdata: str | Path | None = None, log=print,
        models: Sequence[str] = COIL_MODELS) -> dict[str, Any]:
    from workbench import simulate
    from workbench.physics.coils import calibration_region

    t0 = time.perf_counter()
    folder = realdata_dir(realdata)
    meta = machine_description()
    meta.update(realdata=str(folder), n_seeds=n_seeds, seed0=SEED0, radius=RADIUS, sim_fov_mm=SIM_FOV_MM,
                sim_draws={k: v for k, v in SIM_DRAWS.items()}, sim_contrasts=list(SIM_CONTRASTS),
                coil_models=list(models), load_before=" ".join(f"{v:.1f}" for v in os.getloadavg()),
                loop_defaults={"radius_mm": list(simulate.DEFAULT_LOOP_RADIUS_MM),
                               "center_z_mm": list(simulate.DEFAULT_LOOP_CENTER_Z_MM),
                               "coils_per_ring": simulate.LOOP_COILS_PER_RING,
                               "ring_spacing_radii": simulate.LOOP_RING_SPACING})
    reals = []
    for rs, scan in real_sets(folder) if folder.is_dir() else []:
        k = scan.kspace(scan.n_slices // 2)
        rows, cols = calibration_region(k, (24, 24))
        calib = (rows.stop - rows.start, cols.stop - cols.start)
        stats = maps_stats(k, calib)["espirit"]
        reals.append({"name": rs.name, "description": rs.description, "path": rs.path, "n_coils": scan.n_coils,
                      "grid": list(k.shape[-2:]), "calib": list(calib), "fully_sampled": bool(scan.fully_sampled),
                      "stats": stats})
        log(f"real {rs.name}: " + ", ".join(f"{key}={stats[key]:{fmt}}" for key, _, fmt in STATS))
    # One simulated group per (coil count, matrix size); its calibration size is the first real set's, its FOV
    # target extent the mean over the group's real sets.
    groups: dict[tuple, dict[str, Any]] = {}
    for r in reals:
        key = (r["n_coils"], tuple(r["grid"]))
        g = groups.setdefault(key, {"n_coils": r["n_coils"], "grid": r["grid"], "calib": r["calib"], "reals": []})
        g["reals"].append(r["name"])
    for g in groups.values():
        extents = [r["stats"]["object_extent_pe"] for r in reals if r["name"] in g["reals"]]
        g["target_extent"] = float(np.mean(extents))
        per_seed: list[dict[str, Any]] = [{} for _ in range(n_seeds)]
        g["seconds_by_model"] = {}
        for model in models:
            t1 = time.perf_counter()
            for i in range(n_seeds):
                s = simulated_stats(SEED0 + i, tuple(g["grid"]), g["n_coils"], tuple(g["calib"]), g["target_extent"],
                                    model)
                per_seed[i].update({_prefix(model) + k: v for k, v in s.items()})
            g["seconds_by_model"][model] = round(time.perf_counter() - t1, 1)
        g["seconds"] = round(sum(g["seconds_by_model"].values()), 1)
        g["per_seed"] = per_seed
        g["summary"] = {
            variant: {key: _summary([s[variant][key] for s in per_seed])
                      for key in per_seed[0][variant] if isinstance(per_seed[0][variant][key], (int, float))}
            for variant in per_seed[0]
        }
        log(f"sim {g['n_coils']} coils {g['grid'][0]}x{g['grid'][1]}: {n_seeds} seeds in {g['seconds']} s "
            f"({', '.join(f'{m} {t} s' for m, t in g['seconds_by_model'].items())})")
    meta["total_time_s"] = round(time.perf_counter() - t0, 1)
    meta["load_after"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    out = {"meta": meta, "real": reals, "simulated": list(groups.values())}
    out["verdicts"] = verdicts(out)
    return out


VARIANTS = (("true", "wire: true maps, FOV 240"), ("espirit", "wire: ESPIRiT, FOV 240"),
            ("espirit_matched", "wire: ESPIRiT, FOV matched"),
            ("loop_true", "loop: true maps, FOV 240"), ("loop_espirit", "loop: ESPIRiT, FOV 240"),
            ("loop_espirit_matched", "loop: ESPIRiT, FOV matched"))


def _variants(out: dict[str, Any]) -> list[tuple[str, str]]:
    """The :data:`VARIANTS` this result has (the models it ran)."""
    have = set(out["simulated"][0]["summary"]) if out["simulated"] else set()
    return [(v, lab) for v, lab in VARIANTS if v in have]


def _group_of(out: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in out["simulated"] if real["name"] in g["reals"])


def verdicts(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Per real set, statistic and simulated variant: is the real value inside the simulated 5-95% range,
    and if not, on which side the simulation lies."""
    res = []
    for r in out["real"]:
        g = _group_of(out, r)
        for key, _, _ in STATS:
            for variant, _ in _variants(out):
                s = g["summary"][variant].get(key)
                if s is None:
                    continue
                v = r["stats"][key]
                where = "inside" if s["p5"] <= v <= s["p95"] else ("sim lower" if v > s["p95"] else "sim higher")
                res.append({"real": r["name"], "stat": key, "variant": variant,
                            "model": "loop" if variant.startswith("loop_") else "wire", "real_value": v,
                            "sim_mean": s["mean"], "sim_p5": s["p5"], "sim_p95": s["p95"], "verdict": where,
                            "ratio_sim_mean_to_real": s["mean"] / v if v else None})
    return res


def _cell(s: dict[str, float], fmt: str) -> str:
    return f"{s['mean']:{fmt}} [{s['p5']:{fmt}}, {s['p95']:{fmt}}]"


# Which simulated variant a statistic is judged on: the coil statistics proper barely depend on the FOV (like for
# like: ESPIRiT of the simulated k-space at the generator's FOV); the g-factor does (aliased copies overlap more
# when the object fills more of the FOV), so it is judged with the object's PE extent matched, and reported at the
# training FOV as well.
JUDGED_ON = {"smooth_r1": "espirit", "dyn_range": "espirit", "n_eff": "espirit", "g2_mean": "espirit_matched",
             "g2_p95": "espirit_matched", "g4_mean": "espirit_matched", "g4_p95": "espirit_matched"}


def _verdict_line(out: dict[str, Any], key: str, variant: str) -> tuple[str, str]:
    """``(verdict, text)`` for one statistic on one simulated variant, over every real set."""
    labels = {k: lab for k, lab, _ in STATS}
    f = {k: fmt for k, _, fmt in STATS}[key]
    rows = [v for v in out["verdicts"] if v["stat"] == key and v["variant"] == variant]
    kinds = sorted({v["verdict"] for v in rows})
    n = len(rows)
    if kinds == ["inside"]:
        verdict = "inside"
        head = f"inside the simulated 5-95% range for all {n} real sets"
    elif "inside" not in kinds and len(kinds) == 1:
        verdict = "OUTSIDE"
        head = f"OUTSIDE: {kinds[0]} than every real set ({n})"
    else:
        verdict = "mixed"
        head = "mixed: " + "; ".join(f"{kind} for {', '.join(v['real'] for v in rows if v['verdict'] == kind)}"
                                     for kind in kinds)
    real = ", ".join(f"{r['name']} {r['stats'][key]:{f}}" for r in out["real"])
    sims = ", ".join(f"{_cell(g['summary'][variant][key], f)} ({g['grid'][0]}x{g['grid'][1]})"
                     for g in out["simulated"])
    ratio = [v["ratio_sim_mean_to_real"] for v in rows if v["ratio_sim_mean_to_real"]]
    span = f"; sim mean / real {min(ratio):.2f}-{max(ratio):.2f}" if ratio else ""
    return verdict, f"**{labels[key]}**: {head}. Real: {real}; simulated: {sims}{span}."


def _models(out: dict[str, Any]) -> list[str]:
    have = {v for v, _ in _variants(out)}
    return [m for m in COIL_MODELS if _prefix(m) + "true" in have]


def comparison_table(out: dict[str, Any], g: dict[str, Any]) -> list[str]:
    """Markdown rows: each statistic for the group's real sets and each model, on the variant it is judged on
    (:data:`JUDGED_ON`), mean [5th, 95th percentile] over seeds, and whether each real value is inside."""
    reals = [r for r in out["real"] if r["name"] in g["reals"]]
    models = _models(out)
    lines = ["| statistic (judged on) | " + " | ".join(r["name"] for r in reals) + " | " +
             " | ".join(f"{m} model" for m in models) + " |", "|---|" + "---|" * (len(reals) + len(models))]
    for key, lab, f in STATS:
        if key not in JUDGED_ON:
            continue
        cells = [f"{r['stats'][key]:{f}}" for r in reals]
        for m in models:
            s = g["summary"][_prefix(m) + JUDGED_ON[key]][key]
            inside = sum(s["p5"] <= r["stats"][key] <= s["p95"] for r in reals)
            cells.append(f"{_cell(s, f)}: {inside}/{len(reals)} inside")
        what = "ESPIRiT, FOV 240" if JUDGED_ON[key] == "espirit" else "ESPIRiT, FOV matched"
        lines.append(f"| {lab} ({what}) | " + " | ".join(cells) + " |")
    return lines


def reading(out: dict[str, Any]) -> str:
    """The comparison in words, generated from the numbers (so a rerun stays consistent)."""
    if not out["verdicts"]:
        return "No real data: nothing to compare."
    parts = [_reading_context(out)]
    for model in _models(out):
        title = {"wire": "Wire model (the generator's default: straight wires, 1/r)",
                 "loop": "Loop model (coil_model=\"loop\": circular surface loops)"}.get(model, model)
        parts += ["", f"### {title}", "", _reading_model(out, model)]
    return "\n".join(parts)


def _reading_context(out: dict[str, Any]) -> str:
    ext = [r["stats"]["object_extent_pe"] for r in out["real"]]
    sim_ext = [g["summary"]["espirit"]["object_extent_pe"]["mean"] for g in out["simulated"]]
    est = max(abs(g["summary"][_prefix(m) + "espirit"][k]["mean"] / g["summary"][_prefix(m) + "true"][k]["mean"] - 1)
              for g in out["simulated"] for k in JUDGED_ON for m in _models(out))

    def span(v: Sequence[float]) -> str:
        lo, hi = f"{min(v):.2f}", f"{max(v):.2f}"
        return lo if lo == hi else f"{lo}-{hi}"

    return (f"Context (a property of the prescription, not of the coils): the real objects span "
            f"{span(ext)} of the phase-encode FOV, the simulated heads at the generator's "
            f"{SIM_FOV_MM:g} mm FOV {span(sim_ext)} on average; g-factors are therefore "
            f"judged with the extent matched per seed. The simulated true maps and the ESPIRiT maps of the "
            f"simulated k-space differ by at most {100 * est:.1f}% (seed means, both coil models) on these "
            "statistics, so the estimator is not what separates real from simulated maps.")


def _reading_model(out: dict[str, Any], model: str) -> str:
    lines = []
    outside = []
    pre = _prefix(model)
    for key, variant in JUDGED_ON.items():
        verdict, text = _verdict_line(out, key, pre + variant)
        what = "ESPIRiT, FOV 240 mm" if variant == "espirit" else "ESPIRiT, FOV matched"
        lines.append(f"- ({what}) {text}")
        if verdict != "inside":
            outside.append(f"{key} ({verdict.lower()})")
    for key in ("g4_mean", "g4_p95"):
        _, text = _verdict_line(out, key, pre + "espirit")
        lines.append(f"- (ESPIRiT, FOV 240 mm as in training) {text}")
    lines += ["", f"{model}: outside or mixed: " + (", ".join(outside) if outside else "nothing") + "."]
    # Inside a wide population range is not the same as typical: name the statistics whose simulated mean is off
    # the real values by more than 25 %.
    far = []
    for key, variant in JUDGED_ON.items():
        ratios = [v["ratio_sim_mean_to_real"] for v in out["verdicts"]
                  if v["stat"] == key and v["variant"] == pre + variant and v["ratio_sim_mean_to_real"]]
        if ratios and (min(ratios) > 1.25 or max(ratios) < 0.8):
            far.append(f"{key} (sim mean / real {min(ratios):.2f}-{max(ratios):.2f})")
    lines.append(f"{model}: simulated mean more than 25% off every real value: "
                 + (", ".join(far) if far else "nothing") + ".")
    return "\n".join(lines)


def to_markdown(out: dict[str, Any]) -> str:
    meta = out["meta"]
    lines = ["# Coil-map realism: simulated coil maps vs ESPIRiT maps of real scans", "",
             f"Machine: {machine_line(meta)}.", "",
             f"Command: `{meta.get('command', '')}`; total {meta.get('total_time_s')} s. {meta['n_seeds']} generator "
             f"seeds ({meta['seed0']}...) per real matrix size, the real set's coil count, training-like random "
             "draws (pose, coil gap 10-25 mm, contrast, noise correlation), each coil model "
             f"({', '.join(meta.get('coil_models', ['wire']))}; loop defaults: radius "
             f"{'-'.join(f'{v:g}' for v in meta.get('loop_defaults', {}).get('radius_mm', []))} mm, array centre "
             f"at MNI z {'-'.join(f'{v:g}' for v in meta.get('loop_defaults', {}).get('center_z_mm', []))} mm) on the "
             "same seeds. Statistics "
             "(`workbench.physics.coil_stats.coil_map_stats`) over the object mask (low-resolution RSS of the "
             "calibration region, within the ESPIRiT support), the same definition for real and simulated data; "
             "the simulated true maps use the mask of their own k-space. g-factor: SENSE unfolding (Pruessmann "
             "1999), equispaced undersampling along the phase encode (W), identity noise covariance. Simulated "
             "cells: mean [5th, 95th percentile] over seeds.", ""]
    if not out["real"]:
        lines += ["Real data folder absent: nothing to compare.", ""]
        return "\n".join(lines)
    lines += ["## Real sets", "", "| set | what | coils | grid | calib | " +
              " | ".join(lab for _, lab, _ in STATS) + " |", "|---|---|---|---|---|" + "---|" * len(STATS)]
    for r in out["real"]:
        lines.append(f"| {r['name']} | {r['description']} | {r['n_coils']} | {r['grid'][0]}x{r['grid'][1]} | "
                     f"{r['calib'][0]}x{r['calib'][1]} | " +
                     " | ".join(f"{r['stats'][k]:{f}}" for k, _, f in STATS) + " |")
    lines.append("")
    variants = _variants(out)
    for g in out["simulated"]:
        reals = [r for r in out["real"] if r["name"] in g["reals"]]
        fovs = _summary([s["espirit_matched"]["fov_mm"] for s in g["per_seed"]])
        lines += [f"## {g['n_coils']} coils, {g['grid'][0]}x{g['grid'][1]}: {', '.join(g['reals'])} vs simulation",
                  "", f"{meta['n_seeds']} seeds in {g['seconds']} s; calibration {g['calib'][0]}x{g['calib'][1]}; "
                  f"matched FOV {fovs['mean']:.0f} mm [{fovs['p5']:.0f}, {fovs['p95']:.0f}] for a PE extent of "
                  f"{g['target_extent']:.3f}; seconds per model: "
                  f"{', '.join(f'{m} {t}' for m, t in g.get('seconds_by_model', {}).items())}.", "",
                  "Judged (the real values against each model's 5-95% range):", ""]
        lines += comparison_table(out, g)
        lines += ["", "All variants:", "",
                  "| statistic | " + " | ".join(r["name"] for r in reals) + " | " +
                  " | ".join(lab for _, lab in variants) + " |",
                  "|---|" + "---|" * (len(reals) + len(variants))]
        for key, lab, f in STATS:
            cells = [f"{r['stats'][key]:{f}}" for r in reals]
            cells += [_cell(g["summary"][v][key], f) for v, _ in variants]
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reading", "", reading(out), ""]
    return "\n".join(lines)


def write(out: dict[str, Any], out_dir: str | Path = RESULTS_DIR, name: str = "coil_realism") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{name}.md", out_dir / f"{name}.json"
    md.write_text(to_markdown(out))
    js.write_text(json.dumps(out, indent=1, allow_nan=False, default=str) + "\n")
    return md, js


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_coil_realism",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="generator seeds per real matrix size (default 20)")
    parser.add_argument("--realdata", default=None, help="real data folder (default $WORKBENCH_REALDATA or "
                        "../shared/realdata)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="output folder (default benchmarks/results)")
    parser.add_argument("--models", default=",".join(COIL_MODELS),
                        help=f"coil models to simulate, comma-separated (default {','.join(COIL_MODELS)})")
    parser.add_argument("--no-write", action="store_true", help="print only, write no files")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if "wire" not in models or any(m not in COIL_MODELS for m in models):
        parser.error(f"--models: a comma-separated subset of {','.join(COIL_MODELS)} including wire")
    torch.set_num_threads(args.threads)
    out = run(args.seeds, args.realdata, models=models)
    if args.no_write:
        print(to_markdown(out))
    else:
        md, js = write(out, args.out)
        print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
