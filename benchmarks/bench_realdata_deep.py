"""Real-data evaluation of the deep reconstructions (issue 14, item 1): do XPDNet, NC-PDNet, the U-net and the
posterior mean beat CG-SENSE, l1-wavelet and TV on real scans?

    python -m benchmarks.bench_realdata_deep [--quick] [--datasets head,gre,...] [--variants full,crop96,...]
        [--methods zero-filled,classical,unet,xpdnet,ncpdnet,dsm-posterior] [--xpdnet PATH] [--unet PATH]
        [--ncpdnet PATH] [--unet-noncartesian PATH] [--plugin-params xpdnet:adapt=true] [--adapt xpdnet]
        [--posterior-rows GLOB] [--posterior-levels N] [--kinds random,equispaced,golden-radial] [--accels 4,8]
        [--baseline results/realdata_deep.json] [--threads 1] [--resume] [--out DIR] [--name NAME]

New weights in seconds per row: ``--methods unet,xpdnet,ncpdnet --baseline benchmarks/results/realdata_deep.json
--xpdnet runs/.../xpdnet.safetensors --name realdata_candidate`` takes zero-filled, the classical methods and the
posterior mean from the committed run (same rows, same masks) and runs only the networks.

Rows. Every fully sampled Cartesian set of the real-data folder (:data:`REAL_SETS`; the asymmetric-echo 7 T
scan through its symmetric part), its readout oversampling removed, and variants made from it that change what a
model must generalise over (:data:`VARIANTS`): the k-space centre-cropped to 96x96 (a small matrix at the same
field of view), coil subsets (2 and 4 evenly spaced coils of the 8-coil head), and the other readout direction
(k-space transposed: the 1D masks then select lines along the former readout). Each variant at 4x and 8x with
fastMRI's random and equispaced line masks (centre fractions 0.08 / 0.04, seed 0), and golden-angle radial at
R = 4 and 8 simulated by the NUFFT of the fully sampled coil images (not the transposed variants: a radial
trajectory has no readout direction). Reference: the RSS of the fully sampled (variant) k-space on the grid;
data range = its maximum; fastMRI metrics (:mod:`workbench.scoring`).

Columns. Zero-filled RSS (radial: the density-compensated adjoint, RSS); CG-SENSE, l1-wavelet (Cartesian) and TV
at their best weight, an oracle per row over the grids of :mod:`benchmarks.bench_deep`, extended beyond an edge
where the best weight lies, and with their best coil maps, ESPIRiT or ACS, per method (:func:`classical_at_best`;
radial rows density-weighted with the Toeplitz normal); the
U-net (``unet`` plugin: Cartesian weights, or ``unet_noncartesian`` on radial rows), XPDNet (Cartesian) or
NC-PDNet (radial), and the posterior mean of ``dsm-posterior``, all through their plugins (the method registry
and :func:`workbench.methods.safe_run`, as the app runs them) at their default parameters. ``--adapt xpdnet``
adds an "XPDNet + adaptation" column (the plugin's ``adapt=true``) where the plugin has that parameter.

Verdicts (the issue's "done when"): XPDNet >= the best classical method + 1 dB (multi-coil) / + 0.5 dB
(single-coil) and never below CG-SENSE or zero-filled; NC-PDNet >= TV + 1 dB and >= the adjoint + 5 dB; the U-net
above zero-filled.

The JSON is rewritten after every row (``--resume`` skips the rows already there), the markdown too.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from benchmarks.bench_deep import _metrics, run_classical
from benchmarks.harness import (ACCELERATIONS, CENTER_FRACTIONS, DATASETS, RESULTS_DIR, Dataset, machine_description,
                                machine_line, make_problem, realdata_dir)

MASK_KINDS = ("random", "equispaced")
RADIAL_KIND = "golden-radial"
CROP_SHAPE = (96, 96)
N_ITER = 100  # TV / l1-wavelet iterations (as bench_deep)
GRID_EXTENSION = 2  # weights tried beyond the edge of a grid when the best is there
DEEP_CARTESIAN = ("unet", "xpdnet")
DEEP_RADIAL = ("unet", "ncpdnet")
ALL_METHODS = ("zero-filled", "classical", "unet", "xpdnet", "ncpdnet", "dsm-posterior")
DEFAULT_METHODS = ALL_METHODS
# the issue's "done when" margins (dB)
MARGIN_MULTICOIL, MARGIN_SINGLECOIL, MARGIN_NC_TV, MARGIN_NC_ADJOINT = 1.0, 0.5, 1.0, 5.0


# ------------------------------------------------------------------------------------------------------------
# Data sets and variants


@dataclass(frozen=True)
class RealSet:
    """A fully sampled real Cartesian set: a harness :class:`Dataset` (an asymmetric echo opened with
    ``symmetric_echo=True``: its fully sampled band, :mod:`workbench.io.readout`) and the slice."""

    dataset: Dataset
    slice_index: int | None = None

    @property
    def name(self) -> str:
        return self.dataset.name


REAL_SETS: dict[str, RealSet] = {
    s.name: s
    for s in (
        RealSet(DATASETS["head"]),
        RealSet(DATASETS["phantom"]),
        RealSet(DATASETS["gre"]),
        # the file's two "coils" are the forward and reverse half echoes of one coil (each holds 200 of the 384
        # readout samples): merged into one fully sampled coil by the reader (option merge_channels)
        RealSet(Dataset("dhe", "real phantom, 1 coil (forward and reverse half echoes merged), 384x192 grid -> "
                               "192x192 (marcsous_head8ch_dhe, Siemens 3 T, double-half-echo study)",
                        "marcsous_head8ch_dhe/meas_MID00382_FID42164_clean_fl2_m400.mat", {"merge_channels": True})),
        RealSet(Dataset("bodycoil", "real phantom, 2 coils (body coil), 256x128 grid -> 128x128, repetition 1 of 2 "
                                    "(twix_phantom gre_bodycoil)",
                        "twix_phantom/meas_MID00273_FID117236_gre_bodycoil.dat"), slice_index=0),
        # 428 of 512 readout samples, echo at grid row 256: rows 84..427 are the symmetric, fully sampled part
        RealSet(Dataset("7t", "real phantom, 1 coil, 7 T, asymmetric echo: the symmetric 344 of 512 readout samples "
                              "-> 172x256 (twix_phantom singlechannel_7T)", "twix_phantom/singlechannel_7T.dat",
                        {"symmetric_echo": True})),
    )
}


def full_kspace(real: RealSet, realdata: Path) -> np.ndarray | None:
    """The fully sampled k-space ``[C, H, W]`` complex64 of ``real``'s slice with the readout oversampling
    removed (the grid is the field of view); None when the file is absent."""
    from workbench.io import open_scan
    from workbench.problem import crop_fully_sampled_axes

    path = real.dataset.resolve(realdata)
    if path is None:
        return None
    scan = open_scan(path, **real.dataset.options)
    index = scan.n_slices // 2 if real.slice_index is None else real.slice_index
    k = scan.kspace(index)
    grid, recon = scan.grid_shape, scan.recon_shape
    if not scan.fully_sampled:
        raise ValueError(f"{path}: not fully sampled ({scan.sampled_fraction:.1%} of the grid)")
    k, _, _ = crop_fully_sampled_axes(k, torch.ones(grid, dtype=torch.bool), None, grid, recon)
    return np.ascontiguousarray(k.numpy(), dtype=np.complex64)


def coil_subset(n_coils: int, n: int) -> list[int]:
    """``n`` evenly spaced coil indices of ``n_coils`` (the first and the last included)."""
    return sorted({int(round(v)) for v in np.linspace(0, n_coils - 1, n)})


@dataclass(frozen=True)
class Variant:
    """A change of the fully sampled k-space ``[C, H, W]``: ``apply`` returns the new k-space, ``applies`` says
    whether it is a different problem for this k-space (a 2-coil subset of 2-coil data is not)."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]
    applies: Callable[[np.ndarray], bool] = lambda k: True
    radial: bool = True  # also simulated with radial trajectories


def crop_kspace(k: np.ndarray, shape: Sequence[int] = CROP_SHAPE) -> np.ndarray:
    """The centre ``shape`` of the k-space (centre at index N//2 stays at n//2): the same field of view on a
    smaller matrix, i.e. a lower resolution."""
    from workbench.arrays import center_crop

    return np.ascontiguousarray(center_crop(k, tuple(shape)))


def _coils(n: int) -> Variant:
    return Variant(f"coils{n}", f"{n} evenly spaced coils", lambda k: np.ascontiguousarray(k[coil_subset(len(k), n)]),
                   lambda k: len(k) > n)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("full", "all coils, the full matrix", lambda k: k),
        Variant("crop96", f"k-space centre cropped to {CROP_SHAPE[0]}x{CROP_SHAPE[1]}", crop_kspace,
                lambda k: k.shape[-2] > CROP_SHAPE[0] and k.shape[-1] > CROP_SHAPE[1]),
        _coils(2),
        _coils(4),
        Variant("transpose", "readout and phase encode swapped (masks along the former readout)",
                lambda k: np.ascontiguousarray(np.swapaxes(k, -1, -2)), radial=False),
    )
}


def variant_scan(k: np.ndarray, name: str):
    """An in-memory Scan of one slice from the variant k-space ``[C, H, W]``: fully sampled, so
    ``Problem.from_scan`` gives the RSS reference of it."""
    from workbench.scan import scan_from_arrays

    return scan_from_arrays(k, format="realdata-variant", attrs={"variant": name})


# ------------------------------------------------------------------------------------------------------------
# Rows


@dataclass
class RowSpec:
    """One row: set, variant, sampling kind and acceleration."""

    dataset: str
    variant: str
    kind: str
    acceleration: int

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.variant}/{self.kind}/{self.acceleration}x"

    @property
    def radial(self) -> bool:
        return self.kind == RADIAL_KIND


def make_row_problem(k: np.ndarray, spec: RowSpec, seed: int = 0):
    """The problem of a row from its variant k-space (Cartesian: harness ``make_problem``; radial: the NUFFT of
    the fully sampled coil images onto the golden-angle trajectory)."""
    from workbench.problem import Problem
    from workbench.sampling import make_sampling

    scan = variant_scan(k, spec.variant)
    if not spec.radial:
        return make_problem(scan, 0, spec.kind, spec.acceleration, seed=seed)[0]
    sampling = make_sampling(spec.kind, scan.grid_shape, spec.acceleration)
    return Problem.from_scan(scan, 0, sampling)


@dataclass
class Options:
    """What the deep columns run with."""

    methods: Sequence[str] = DEFAULT_METHODS
    weights: dict[str, str] = field(default_factory=dict)  # plugin -> weight file ("" = shipped)
    plugin_params: dict[str, dict[str, str]] = field(default_factory=dict)
    adapt: Sequence[str] = ()
    posterior_rows: str = "*"
    posterior_params: dict[str, Any] = field(default_factory=dict)
    n_iter: int = N_ITER


def _plugin_weights(name: str, spec: RowSpec, opts: Options) -> str:
    if name == "unet" and spec.radial:
        return opts.weights.get("unet_noncartesian", "")
    return opts.weights.get(name, "")


def run_method(registry, name: str, problem, params: dict[str, Any]) -> dict[str, Any]:
    """``safe_run`` of plugin ``name`` on ``problem`` with ``params``: fastMRI scores and time, or the reason it
    did not run."""
    from workbench.methods import MethodNotApplicableError
    from workbench.scoring import score_result

    if name not in registry:
        return {"status": "n/a", "message": f"no plugin {name!r}"}
    from workbench.methods import safe_run

    t = time.perf_counter()
    try:
        result = safe_run(registry.get(name), problem, params)
    except MethodNotApplicableError as exc:
        return {"status": "n/a", "message": str(exc)}
    except Exception as exc:  # reported in the table, never fatal to the run
        return {"status": "error", "message": f"{type(exc).__name__}: {str(exc)[:300]}"}
    scores = score_result(problem, result, "fastmri")
    out = {"status": "ok", **{k: float(v) for k, v in scores.items()}, "time_s": round(time.perf_counter() - t, 2)}
    inside = score_result(problem, result, "object")
    out["object"] = {"psnr": float(inside["psnr"]), "ssim": float(inside["ssim"])}
    extras = result.extras or {}
    for key, value in extras.items():  # what the adaptation reports (steps, time, held-out loss), if anything
        if key.startswith("adapt") and len(str(value)) < 600:
            out[key] = json.loads(json.dumps(value, default=str))
    return out


def has_param(registry, name: str, param: str) -> bool:
    return name in registry and any(s.name == param for s in registry.get(name).param_specs())


def extend_to_optimum(problem, grids: dict[str, dict[float, dict]], n_iter: int, radial: bool,
                      steps: int = GRID_EXTENSION, key: str = "psnr") -> None:
    """Where a method's best weight (by the score ``key``) is at the edge of its grid, try up to ``steps`` more
    weights beyond it (x3 or /3; never below 0), so that "at its best weight" is not an artefact of the grid."""
    for m, by_weight in grids.items():
        for _ in range(steps):
            fs = sorted(by_weight)
            best = max(fs, key=lambda f: by_weight[f][key])
            if best == fs[-1]:
                new = fs[-1] * 3 if fs[-1] > 0 else 0.01
            elif best == fs[0] and fs[0] > 0:
                new = fs[0] / 3
            else:
                break
            by_weight.update(run_classical(problem, n_iter, noncartesian=radial, methods=(m,),
                                           grids={m: (new,)})[m])


MAPS_CHOICES = ("espirit", "acs")  # Problem.MAPS_METHODS: the classical oracle tries both


def classical_at_best(problem, methods: Sequence[str], n_iter: int, radial: bool) -> dict[str, dict[str, Any]]:
    """Each classical method at its best weight (the grids of :func:`run_classical`, extended beyond an edge) and
    with its best coil maps of :data:`MAPS_CHOICES` (multi-coil: ESPIRiT, the maps a user gets by default, and the
    ACS maps; where ESPIRiT cannot be estimated, ACS alone), as ``{method: {psnr, ssim, nmse, time_s, lam_factor,
    maps, grid, object}}`` (``object``: the object mode's own oracle over the same runs, ``{psnr, ssim,
    lam_factor, maps}``; the grid is extended past an edge for either mode's optimum). Before this rule the table took ESPIRiT unless
    it left a tenth of the object uncovered, then ACS for every method; on the head's 8x and cropped rows those
    ACS maps cost l1-wavelet up to 5.75 dB (head crop96 equispaced 4x: 32.38 -> 38.13 with ESPIRiT), while XPDNet
    (ESPIRiT maps, the plugin's default) was compared against them. ``problem.maps`` is left as it was found
    (unset: a deep plugin then estimates its default maps itself)."""
    from workbench.errors import SamplingError

    had = problem.maps if problem.has_maps else None
    choices = MAPS_CHOICES if problem.n_coils > 1 else ("none",)
    best: dict[str, dict[str, Any]] = {}  # by the fastMRI PSNR
    inside: dict[str, dict[str, Any]] = {}  # by the object mode's
    try:
        for name in choices:
            if name != "none":
                try:
                    problem.maps = problem.estimate_maps(name)
                except SamplingError:  # fewer calibration lines than the ESPIRiT kernel needs
                    continue
            grids = run_classical(problem, n_iter, noncartesian=radial, methods=methods)
            extend_to_optimum(problem, grids, n_iter, radial)
            extend_to_optimum(problem, grids, n_iter, radial, key="psnr_object")  # its optimum may lie elsewhere
            for m, by_weight in grids.items():
                f, r = max(by_weight.items(), key=lambda kv: kv[1]["psnr"])
                if m not in best or r["psnr"] > best[m]["psnr"]:
                    best[m] = {"status": "ok", "psnr": r["psnr"], "ssim": r["ssim"], "nmse": r["nmse"],
                               "time_s": round(r["time_s"], 2), "lam_factor": f, "maps": name,
                               "grid": {str(g): round(v["psnr"], 2) for g, v in by_weight.items()}}
                f, r = max(by_weight.items(), key=lambda kv: kv[1]["psnr_object"])
                if m not in inside or r["psnr_object"] > inside[m]["psnr"]:
                    inside[m] = {"psnr": r["psnr_object"], "ssim": r["ssim_object"], "lam_factor": f, "maps": name}
    finally:
        problem.maps = had
    return {m: {**v, "object": inside[m]} for m, v in best.items()}


def evaluate_row(spec: RowSpec, problem, registry, opts: Options, baseline: dict | None = None) -> dict:
    """The columns of ``opts.methods`` on one row (see the module docstring); the others from ``baseline`` (the
    same row of an earlier run), when given."""
    row: dict[str, Any] = {"id": spec.id, "dataset": spec.dataset, "variant": spec.variant, "kind": spec.kind,
                           "acceleration": spec.acceleration, "n_coils": problem.n_coils,
                           "grid": list(problem.grid_shape), "effective_acceleration": round(problem.acceleration, 2),
                           "methods": {}}
    t0 = time.perf_counter()
    row["maps"] = ""
    if "zero-filled" in opts.methods:
        zf = _metrics(problem, problem.zero_filled("rss"))
        row["methods"]["zero-filled"] = {"status": "ok", **{k: float(zf[k]) for k in ("psnr", "ssim", "nmse")},
                                         "object": {"psnr": float(zf["psnr_object"]), "ssim": float(zf["ssim_object"])}}
    if "classical" in opts.methods:
        wanted = ("cg-sense", "tv") if spec.radial else ("cg-sense", "l1-wavelet", "tv")
        t = time.perf_counter()
        row["methods"].update(classical_at_best(problem, wanted, opts.n_iter, spec.radial))
        row["maps"] = "/".join(row["methods"][m]["maps"] for m in wanted)  # per method, in the columns' order
        row["classical_time_s"] = round(time.perf_counter() - t, 1)
    deep = DEEP_RADIAL if spec.radial else DEEP_CARTESIAN
    for name in deep:
        if name not in opts.methods:
            continue
        params = {"weights": _plugin_weights(name, spec, opts), **opts.plugin_params.get(name, {})}
        row["methods"][name] = run_method(registry, name, problem, params)
        if name in opts.adapt:
            if has_param(registry, name, "adapt"):
                row["methods"][f"{name}+adapt"] = run_method(registry, name, problem, {**params, "adapt": "true"})
            else:
                row["methods"][f"{name}+adapt"] = {"status": "n/a", "message": f"{name} has no 'adapt' parameter"}
    if "dsm-posterior" in opts.methods and fnmatch.fnmatch(spec.id, opts.posterior_rows):
        params = {"weights": opts.weights.get("dsm", ""), **opts.posterior_params,
                  **opts.plugin_params.get("dsm-posterior", {})}
        row["methods"]["dsm-posterior"] = run_method(registry, "dsm-posterior", problem, params)
    row["time_s"] = round(time.perf_counter() - t0, 1)
    if baseline:  # the columns this run did not compute, from an earlier run of the same row
        taken = [m for m in baseline["methods"] if m not in row["methods"]]
        row["methods"].update({m: baseline["methods"][m] for m in taken})
        row["maps"] = row["maps"] or baseline.get("maps", "")
        row["from_baseline"] = taken
    row["verdicts"] = verdicts(row)
    return row


# ------------------------------------------------------------------------------------------------------------
# Verdicts


OBJECT = "@object"  # suffix of a verdict computed with the object mode's PSNR (information beside the issue's)


def _psnr(row: dict, name: str, mode: str = "fastmri") -> float | None:
    """The PSNR of method ``name`` on the row in scoring ``mode`` ("fastmri", or "object": inside the reference's
    object mask, the method's own oracle weight for the classical ones); None where absent."""
    r = row["methods"].get(name)
    if not r or r.get("status") != "ok":
        return None
    if mode == "object":
        r = r.get("object") or {}
    return r.get("psnr")


def best_classical(row: dict, mode: str = "fastmri") -> tuple[str, float] | None:
    """(name, PSNR) of the best of CG-SENSE, l1-wavelet and TV on the row (scoring ``mode``)."""
    found = [(m, _psnr(row, m, mode)) for m in ("cg-sense", "l1-wavelet", "tv")]
    found = [(m, v) for m, v in found if v is not None]
    return max(found, key=lambda mv: mv[1]) if found else None


def verdicts(row: dict) -> dict[str, Any]:
    """The issue's thresholds on one row: ``{check: {"delta": dB, "pass": bool}}`` for the checks whose
    columns are present, with the fastMRI PSNR (the issue's definition), and the same checks with the object
    mode's PSNR under the key ``check + OBJECT`` where the row has object-mode scores."""
    out = _verdicts(row, "fastmri")
    out.update({k + OBJECT: v for k, v in _verdicts(row, "object").items()})
    return out


def _verdicts(row: dict, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    zf, best = _psnr(row, "zero-filled", mode), best_classical(row, mode)
    unet = _psnr(row, "unet", mode)
    if unet is not None and zf is not None:
        out["unet-zf"] = {"delta": unet - zf, "pass": unet > zf}
    if row["kind"] == RADIAL_KIND:
        tv = _psnr(row, "tv", mode)
        for name in ("ncpdnet", "ncpdnet+adapt"):
            v = _psnr(row, name, mode)
            if v is None or tv is None or zf is None:
                continue
            out[f"{name}-tv"] = {"delta": v - tv, "pass": v >= tv + MARGIN_NC_TV}
            out[f"{name}-adjoint"] = {"delta": v - zf, "pass": v >= zf + MARGIN_NC_ADJOINT}
        return out
    margin = MARGIN_MULTICOIL if row["n_coils"] > 1 else MARGIN_SINGLECOIL
    cg = _psnr(row, "cg-sense", mode)
    for name in ("xpdnet", "xpdnet+adapt"):
        v = _psnr(row, name, mode)
        if v is None or best is None:
            continue
        floor_ok = (cg is None or v >= cg) and (zf is None or v >= zf)
        out[f"{name}-best"] = {"delta": v - best[1], "best": best[0], "margin": margin,
                               "pass": v >= best[1] + margin and floor_ok, "not_below_cg_zf": floor_ok}
    return out


# ------------------------------------------------------------------------------------------------------------
# Output


def _weights_meta(opts: Options) -> dict[str, Any]:
    """File, sha256 (from the sidecar) and training steps of every weight file the run uses."""
    from workbench.nn.weights import read_sidecar, shipped_weights

    out = {}
    for name in ("xpdnet", "unet", "ncpdnet", "unet_noncartesian", "dsm"):
        path = Path(opts.weights.get(name) or shipped_weights(name))
        try:
            side = read_sidecar(path)
        except Exception as exc:  # absent or unreadable: say so in the table
            out[name] = {"file": str(path), "error": f"{type(exc).__name__}: {exc}"}
            continue
        training = side.get("training", {}) or {}
        out[name] = {"file": str(path), "sha256": side.get("sha256"), "steps": training.get("steps"),
                     "initialised_from_steps": (training.get("initialised_from") or {}).get("steps"),
                     "created": side.get("created"), "command": side.get("command")}
    return out


def _cell(r: dict | None, ssim: bool = True) -> str:
    if not r:
        return ""
    if r.get("status") != "ok":
        return r.get("status", "")
    return f"{r['psnr']:.2f} / {r['ssim']:.3f}" if ssim else f"{r['psnr']:.2f}"


def _delta(v: dict | None) -> str:
    if not v:
        return ""
    return f"{v['delta']:+.2f}{'' if v['pass'] else ' ✗'}"


def _columns(rows: list[dict], candidates: Sequence[str]) -> list[str]:
    return [c for c in candidates if any(c in r["methods"] for r in rows)]


def summary(rows: list[dict]) -> list[dict[str, Any]]:
    """Per data set and kind (Cartesian / radial): mean and worst of each verdict's delta, passes / rows."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], "radial" if r["kind"] == RADIAL_KIND else "Cartesian"), []).append(r)
    out = []
    for (ds, kind), rs in groups.items():
        entry: dict[str, Any] = {"dataset": ds, "kind": kind, "n": len(rs), "checks": {}}
        checks = list(dict.fromkeys(c for r in rs for c in r["verdicts"]))
        for c in checks:
            vals = [r["verdicts"][c] for r in rs if c in r["verdicts"]]
            entry["checks"][c] = {"mean": float(np.mean([v["delta"] for v in vals])),
                                  "worst": float(min(v["delta"] for v in vals)),
                                  "passed": sum(v["pass"] for v in vals), "n": len(vals)}
        out.append(entry)
    return out


CHECK_TEXT = {
    "xpdnet-best": "XPDNet - best classical (pass: >= +1 dB multi-coil, +0.5 dB single-coil, and >= CG-SENSE, ZF)",
    "xpdnet+adapt-best": "XPDNet + adaptation - best classical (same thresholds)",
    "unet-zf": "U-net - zero-filled (pass: > 0)",
    "ncpdnet-tv": "NC-PDNet - TV (pass: >= +1 dB)",
    "ncpdnet-adjoint": "NC-PDNet - adjoint + DCF (pass: >= +5 dB)",
    "ncpdnet+adapt-tv": "NC-PDNet + adaptation - TV (pass: >= +1 dB)",
    "ncpdnet+adapt-adjoint": "NC-PDNet + adaptation - adjoint (pass: >= +5 dB)",
}
CHECK_TEXT.update({k + OBJECT: v.split(" (pass")[0] + ", object mode (same thresholds; information)"
                   for k, v in list(CHECK_TEXT.items())})


def _below_lines(rows: list[dict]) -> list[str]:
    """Where a network ends below what it starts from: per variant, the rows with XPDNet below zero-filled or
    CG-SENSE, and the posterior mean's mean and worst delta to the best classical method."""
    out = []
    cart = [r for r in rows if r["kind"] != RADIAL_KIND and _psnr(r, "xpdnet") is not None]
    if cart:
        per = {}
        for r in cart:
            n = per.setdefault(r["variant"], [0, 0, 0])
            n[0] += 1
            n[1] += _psnr(r, "xpdnet") < (_psnr(r, "zero-filled") or -np.inf)
            n[2] += _psnr(r, "xpdnet") < (_psnr(r, "cg-sense") or -np.inf)
        out.append("XPDNet below zero-filled / below CG-SENSE, rows per variant: "
                   + "; ".join(f"{v}: {a} / {b} of {n}" for v, (n, a, b) in per.items()) + ".")
    post = [(r["id"], _psnr(r, "dsm-posterior") - best_classical(r)[1]) for r in rows
            if _psnr(r, "dsm-posterior") is not None and best_classical(r)]
    if post:
        worst = min(post, key=lambda t: t[1])
        out.append(f"Posterior mean - best classical over its {len(post)} rows: mean "
                   f"{np.mean([d for _, d in post]):+.2f} dB, worst {worst[1]:+.2f} dB ({worst[0]}).")
    return [*out, ""] if out else []


def to_markdown(res: dict[str, Any]) -> str:
    meta, rows = res["meta"], res["rows"]
    lines = ["# Deep reconstructions on real scans (issue 14)", "", f"Machine: {machine_line(meta)}.", "",
             f"Command: `{meta.get('command', '')}` at {meta.get('git', '?')}; {len(rows)} rows, "
             f"{sum(r.get('time_s', 0) for r in rows) / 60:.1f} min of row time.", ""]
    lines += ["How: every fully sampled real Cartesian set (readout oversampling removed) and its variants, "
              "retrospectively undersampled with fastMRI line masks (random / equispaced, centre fraction 0.08 at "
              "4x, 0.04 at 8x, seed 0) and golden-angle radial (NUFFT of the fully sampled coil images); reference "
              "= RSS of the fully sampled variant k-space, data range = its maximum; PSNR (dB) / SSIM with the "
              "fastMRI definitions. Classical methods at their best weight per row (oracle) over the grids of "
              f"`bench_deep` (CG-SENSE Tikhonov f in {meta.get('cg_grid')} x ||A^H A||, {meta.get('cg_iter')} "
              f"iterations; TV f in {meta.get('tv_grid')} and l1-wavelet f in {meta.get('l1_grid')} x the 99th "
              f"percentile of the zero-filled image, {meta.get('n_iter')} iterations; where the best weight is at "
              f"a grid's edge, up to {GRID_EXTENSION} more weights beyond it, x3 or /3), each with its better "
              "coil maps, ESPIRiT or ACS (the `maps` column: CG-SENSE / l1-wavelet / TV; radial: CG-SENSE / TV). "
              "Deep models through their plugins (`safe_run`) with default parameters"
              + (f", extra plugin parameters {meta['plugin_params']}" if meta.get("plugin_params") else "") + ". "
              + meta.get("posterior_note", "")
              + (f" Columns other than {', '.join(meta['methods'])} are taken from `{meta['baseline']}` (the same "
                 "rows of an earlier run)." if meta.get("baseline") else ""), ""]
    lines += ["Variants: " + "; ".join(f"`{k}`: {v}" for k, v in meta.get("variants", {}).items()) + ".", "",
              "Sets: " + "; ".join(f"`{k}`: {v}" for k, v in meta.get("datasets", {}).items()) + ".", ""]
    if meta.get("skipped"):
        lines += [f"- skipped: {s}" for s in meta["skipped"]] + [""]
    lines += ["Weights:", ""]
    for name, w in meta.get("weights", {}).items():
        if "error" in w:
            lines.append(f"- {name}: `{w['file']}` not usable ({w['error']})")
        else:
            steps = w.get("steps")
            if w.get("initialised_from_steps"):
                steps = f"{steps} (+{w['initialised_from_steps']} before)"
            lines.append(f"- {name}: `{Path(w['file']).name}`, sha256 `{w.get('sha256')}`, {steps} steps, "
                         f"created {w.get('created')}")
    lines += ["", "## Summary against the issue's thresholds", "",
              "Per set: mean and worst delta (dB) over its rows, and rows passing / rows.", "",
              "| set | rows | check | mean | worst | pass |", "|---|---|---|---|---|---|"]
    for e in res.get("summary", []):
        for c, v in e["checks"].items():
            lines.append(f"| {e['dataset']} ({e['kind']}) | {e['n']} | {CHECK_TEXT.get(c, c)} | {v['mean']:+.2f} | "
                         f"{v['worst']:+.2f} | {v['passed']}/{v['n']} |")
    all_checks = [v for r in rows for c, v in r["verdicts"].items() if not c.endswith(OBJECT)]
    inside = [v for r in rows for c, v in r["verdicts"].items() if c.endswith(OBJECT)]
    lines += ["", f"Overall: {sum(v['pass'] for v in all_checks)} of {len(all_checks)} checks pass"
              + (f" (in the object mode: {sum(v['pass'] for v in inside)} of {len(inside)})" if inside else "")
              + ".", ""]
    lines += _below_lines(rows)

    cart = [r for r in rows if r["kind"] != RADIAL_KIND]
    if cart:
        deep = _columns(cart, ("unet", "xpdnet", "xpdnet+adapt", "dsm-posterior"))
        head = ["row", "coils", "maps", "zero-filled", "CG-SENSE", "l1-wavelet", "TV", "best classical", *deep,
                "XPDNet - best", "U-net - ZF", "object mode: XPDNet - best / U-net - ZF"]
        if "xpdnet+adapt" in deep:
            head.insert(-2, "XPDNet+adapt - best")  # before "U-net - ZF" and the object mode's column
        lines += ["## Cartesian rows: PSNR / SSIM", "", "✗: fails the issue's threshold.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in cart:
            best = best_classical(r)
            cells = [r["id"], str(r["n_coils"]), r["maps"], _cell(r["methods"].get("zero-filled"))]
            for m in ("cg-sense", "l1-wavelet", "tv"):
                c = r["methods"].get(m)
                cells.append(_cell(c) + (f" ({c['lam_factor']:g})" if c and "lam_factor" in c else ""))
            cells.append(f"{best[0]} {best[1]:.2f}" if best else "")
            cells += [_cell(r["methods"].get(m)) for m in deep]
            cells.append(_delta(r["verdicts"].get("xpdnet-best")))
            if "xpdnet+adapt" in deep:
                cells.append(_delta(r["verdicts"].get("xpdnet+adapt-best")))
            cells.append(_delta(r["verdicts"].get("unet-zf")))
            cells.append(f"{_delta(r['verdicts'].get('xpdnet-best' + OBJECT))} / "
                         f"{_delta(r['verdicts'].get('unet-zf' + OBJECT))}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    rad = [r for r in rows if r["kind"] == RADIAL_KIND]
    if rad:
        deep = _columns(rad, ("unet", "ncpdnet", "ncpdnet+adapt", "dsm-posterior"))
        head = ["row", "coils", "maps", "adjoint + DCF", "CG-SENSE", "TV", *deep, "NC-PDNet - TV",
                "NC-PDNet - adjoint", "U-net - adjoint", "object mode: NC-PDNet - TV / U-net - adjoint"]
        lines += ["## Radial rows (golden angle, simulated): PSNR / SSIM", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for r in rad:
            cells = [r["id"], str(r["n_coils"]), r["maps"], _cell(r["methods"].get("zero-filled"))]
            for m in ("cg-sense", "tv"):
                c = r["methods"].get(m)
                cells.append(_cell(c) + (f" ({c['lam_factor']:g})" if c and "lam_factor" in c else ""))
            cells += [_cell(r["methods"].get(m)) for m in deep]
            cells += [_delta(r["verdicts"].get(c)) for c in ("ncpdnet-tv", "ncpdnet-adjoint", "unet-zf")]
            cells.append(f"{_delta(r['verdicts'].get('ncpdnet-tv' + OBJECT))} / "
                         f"{_delta(r['verdicts'].get('unet-zf' + OBJECT))}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    notes = [(r["id"], m, v["message"]) for r in rows for m, v in r["methods"].items() if v.get("status") != "ok"]
    if notes:
        lines += ["## Methods that did not run", ""]
        seen = set()
        for rid, m, msg in notes:
            key = (m, msg[:120])
            if key not in seen:
                seen.add(key)
                lines.append(f"- {m} ({rid}{', and others' if sum(n[1] == m for n in notes) > 1 else ''}): "
                             f"{msg[:300]}")
        lines.append("")
    return "\n".join(lines)


def write(res: dict[str, Any], out_dir: Path, name: str) -> tuple[Path, Path]:
    """``<name>.json`` and ``<name>.md``, each replaced whole (a reader never sees half a file)."""
    from workbench.atomic import atomic_open

    res["summary"] = summary(res["rows"])
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    with atomic_open(js) as f:
        f.write(json.dumps(res, indent=1, allow_nan=False, default=str) + "\n")
    with atomic_open(md) as f:
        f.write(to_markdown(res))
    return js, md


# ------------------------------------------------------------------------------------------------------------
# Driver


def row_specs(sets: Sequence[str], variants: Sequence[str], kinds: Sequence[str], accels: Sequence[int],
              ks: dict[str, np.ndarray]) -> list[RowSpec]:
    """Every (set, variant, kind, acceleration) that applies (a variant that changes nothing is left out, and
    radial rows of variants that are not radial)."""
    out = []
    for ds in sets:
        if ds not in ks:
            continue
        for v in variants:
            var = VARIANTS[v]
            if not var.applies(ks[ds]):
                continue
            for kind in kinds:
                if kind == RADIAL_KIND and not var.radial:
                    continue
                out.extend(RowSpec(ds, v, kind, int(a)) for a in accels)
    return out


def _param_list(items: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for text in items:
        for part in text.split(","):
            method, _, rest = part.partition(":")
            key, eq, value = rest.partition("=")
            if not (method and key and eq):
                raise SystemExit(f"--plugin-params: expected METHOD:NAME=VALUE, got {part!r}")
            out.setdefault(method.strip(), {})[key.strip()] = value.strip()
    return out


def _git_state() -> str:
    """The checkout's commit, with "+ uncommitted changes in <paths>" when the code that runs differs from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "workbench", "plugins", "benchmarks"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    paths = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(paths)}" if paths else "")


def run(args, log: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks import bench_deep
    from workbench.methods import discover_methods

    realdata = realdata_dir(args.realdata)
    out_dir = Path(args.out)
    previous: dict[str, dict] = {}
    js = out_dir / f"{args.name}.json"
    if args.resume and js.is_file():
        previous = {r["id"]: r for r in json.loads(js.read_text()).get("rows", [])}
        log(f"resuming: {len(previous)} rows already in {js}")
    baseline: dict[str, dict] = {}
    if args.baseline:
        baseline = {r["id"]: r for r in json.loads(Path(args.baseline).read_text()).get("rows", [])}
        log(f"columns not computed here come from {args.baseline} ({len(baseline)} rows)")
    opts = Options(methods=args.methods, weights={k: v for k, v in (("xpdnet", args.xpdnet), ("unet", args.unet),
                                                                      ("ncpdnet", args.ncpdnet),
                                                                      ("unet_noncartesian", args.unet_noncartesian),
                                                                      ("dsm", args.dsm)) if v},
                   plugin_params=_param_list(args.plugin_params), adapt=args.adapt,
                   posterior_rows=args.posterior_rows, n_iter=args.n_iter)
    if args.posterior_levels:
        opts.posterior_params = {"n_levels": args.posterior_levels, "n_samples": args.posterior_samples}
    registry = discover_methods()
    meta = machine_description()
    meta["git"] = _git_state()
    posterior = ("Posterior mean: `dsm-posterior` "
                 + (f"with n_levels={args.posterior_levels}, n_samples={args.posterior_samples} (reduced)"
                    if args.posterior_levels else "at its defaults")
                 + (f", on the rows matching `{args.posterior_rows}` only" if args.posterior_rows != "*" else "")
                 + "." if "dsm-posterior" in args.methods else "")
    meta.update(realdata=str(realdata), methods=list(args.methods), baseline=args.baseline,
                plugin_params=opts.plugin_params,
                adapt=list(args.adapt), posterior_note=posterior, weights=_weights_meta(opts), n_iter=args.n_iter,
                tv_grid=bench_deep.TV_GRID, l1_grid=bench_deep.L1_GRID, cg_grid=bench_deep.CG_GRID,
                cg_iter=bench_deep.CG_ITER, center_fractions={str(k): v for k, v in CENTER_FRACTIONS.items()},
                variants={v: VARIANTS[v].description for v in args.variants},
                datasets={d: REAL_SETS[d].dataset.description for d in args.datasets}, skipped=[])
    ks = {}
    for d in args.datasets:
        k = full_kspace(REAL_SETS[d], realdata)
        if k is None:
            meta["skipped"].append(f"{d}: {realdata / str(REAL_SETS[d].dataset.path)} not found")
            log(meta["skipped"][-1])
        else:
            ks[d] = k
    specs = row_specs(args.datasets, args.variants, args.kinds, args.accels, ks)
    res = {"meta": meta, "rows": [previous[s.id] for s in specs if s.id in previous]}
    log(f"{len(specs)} rows ({len(res['rows'])} done before)")
    t_start = time.perf_counter()
    variant_k: dict[tuple[str, str], np.ndarray] = {}
    for i, spec in enumerate(specs):
        if spec.id in previous:
            continue
        key = (spec.dataset, spec.variant)
        if key not in variant_k:
            variant_k = {key: VARIANTS[spec.variant].apply(ks[spec.dataset])}
        problem = make_row_problem(variant_k[key], spec, seed=args.seed)
        log(f"[{i + 1}/{len(specs)}] {spec.id}: {problem.n_coils} coils, grid {problem.grid_shape}, "
            f"R eff {problem.acceleration:.2f} ...")
        row = evaluate_row(spec, problem, registry, opts, baseline.get(spec.id))
        res["rows"].append(row)
        m = row["methods"]
        log("    " + ", ".join(f"{name} {v['psnr']:.2f}" if v.get("status") == "ok" else f"{name} {v.get('status')}"
                               for name, v in m.items())
            + f"  [{row['time_s']:.0f} s; " + ", ".join(f"{c} {v['delta']:+.2f}{'' if v['pass'] else ' FAIL'}"
                                                       for c, v in row["verdicts"].items()) + "]")
        meta["total_time_s"] = round(time.perf_counter() - t_start, 1)
        if not args.no_write:
            write(res, out_dir, args.name)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    def csv(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_realdata_deep", description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=csv, default=list(REAL_SETS), help=f"sets (default all: {','.join(REAL_SETS)})")
    ap.add_argument("--variants", type=csv, default=list(VARIANTS),
                    help=f"variants (default all: {','.join(VARIANTS)})")
    ap.add_argument("--kinds", type=csv, default=[*MASK_KINDS, RADIAL_KIND],
                    help="samplings: random, equispaced (Cartesian masks), golden-radial (default all)")
    ap.add_argument("--accels", type=lambda s: [int(v) for v in csv(s)], default=list(ACCELERATIONS))
    ap.add_argument("--methods", type=csv, default=list(DEFAULT_METHODS),
                    help=f"columns (default all: {','.join(ALL_METHODS)}; 'classical' = CG-SENSE, l1-wavelet, TV)")
    ap.add_argument("--xpdnet", default="", help="XPDNet weights to evaluate (default: the shipped ones)")
    ap.add_argument("--unet", default="", help="U-net weights for Cartesian rows (default: the shipped ones)")
    ap.add_argument("--ncpdnet", default="", help="NC-PDNet weights (default: the shipped ones)")
    ap.add_argument("--unet-noncartesian", default="", help="U-net weights for radial rows (default: shipped)")
    ap.add_argument("--dsm", default="", help="score network weights of the posterior (default: shipped)")
    ap.add_argument("--plugin-params", action="append", default=[], metavar="METHOD:NAME=VALUE[,...]",
                    help="extra plugin parameters (repeatable), e.g. xpdnet:adapt_steps=50")
    ap.add_argument("--adapt", type=csv, default=[], metavar="xpdnet,unet,ncpdnet",
                    help="add a '+adapt' column (the plugin's adapt=true) for these plugins, where they have it")
    ap.add_argument("--posterior-rows", default="*", metavar="GLOB",
                    help="run the posterior mean only on rows whose id (set/variant/kind/Rx) matches, e.g. "
                         "'*/full/random/*'")
    ap.add_argument("--posterior-levels", type=int, default=0,
                    help="reduced posterior schedule: this many noise levels (default 0: the plugin's defaults)")
    ap.add_argument("--posterior-samples", type=int, default=4, help="chains with --posterior-levels (default 4)")
    ap.add_argument("--baseline", default=None, metavar="JSON",
                    help="take the columns not in --methods (e.g. zero-filled, classical, dsm-posterior) from this "
                         "earlier run's rows: evaluating new weights then costs seconds per row")
    ap.add_argument("--n-iter", type=int, default=N_ITER, help="TV / l1-wavelet iterations")
    ap.add_argument("--seed", type=int, default=0, help="mask seed")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--realdata", default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: the head, full variant, random 4x only")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in NAME.json, run the others")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--name", default="realdata_deep")
    args = ap.parse_args(argv)
    unknown = [d for d in args.datasets if d not in REAL_SETS] + [v for v in args.variants if v not in VARIANTS]
    unknown += [m for m in args.methods if m not in ALL_METHODS]
    unknown += [k for k in args.kinds if k not in (*MASK_KINDS, RADIAL_KIND)]
    if unknown:
        ap.error(f"unknown: {', '.join(unknown)}")
    if args.quick:
        args.datasets, args.variants, args.kinds, args.accels = ["head"], ["full"], ["random"], [4]
        if args.name == "realdata_deep":
            args.name = "realdata_deep_quick"
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args)
    if args.no_write:
        res["summary"] = summary(res["rows"])
        print(to_markdown(res))
    else:
        print(f"wrote {Path(args.out) / args.name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
