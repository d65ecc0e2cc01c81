"""Deep reconstruction benchmark: zero-filled, the best classical method at its best weight, U-net, XPDNet.

    python -m benchmarks.bench_deep [--n-synthetic 6] [--datasets head,phantom,gre] [--threads 1]
                                    [--xpdnet resources/weights/xpdnet.safetensors] [--unet ...]
                                    [--out benchmarks/results] [--name deep] [--quick]

1. Held-out synthetic slices: generator seeds ``SYNTH_SEED0 ...`` (below the training seeds' offset
   ``workbench.nn.data.TRAIN_SEED_OFFSET``, and apart from the seeds validated during training), drawn with the
   same distribution as the training data of the shipped XPDNet config (matrix size, 1-16 coils, contrast,
   pose, noise, oversampling); each at 4x and 8x with a fastMRI line mask (random for even, equispaced for odd
   slices; centre fraction 0.08 / 0.04).
2. The fully sampled real sets of ``benchmarks.harness.DATASETS`` (8-coil head, single-coil phantom, 2-coil
   GRE phantom), retrospectively undersampled with random and equispaced masks at 4x and 8x.
3. CPU inference time of the plugins on a 16-coil 320x320 slice (4x).

Classical baselines: total variation (PDHG) and l1-wavelet (FISTA) from :mod:`workbench.solvers.recon`, each
over a small grid of weights ``lam = f * scale`` (``scale``: the 99th percentile of the zero-filled image); the
best weight per (data set, acceleration) is picked by mean PSNR over that group's slices (an oracle choice:
classical methods at their best). Coil maps: ESPIRiT, or the ACS maps when ESPIRiT leaves more than 10 % of
the object without sensitivity (it does with the 8 ACS lines of an 8x mask on a 192-wide grid). The deep
models run through their plugins exactly as the app runs them (their own ACS maps + learned refinement).
Metrics: fastMRI definitions (:mod:`workbench.scoring`) against the fully sampled RSS reference, data range =
the slice's reference maximum.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.harness import (RESULTS_DIR, available_datasets, machine_description, machine_line,
                                make_problem, realdata_dir)

SYNTH_SEED0 = 500_000  # held out: < TRAIN_SEED_OFFSET and far from the training-time validation seeds 0..n_val-1
TV_GRID = (0.003, 0.01, 0.03, 0.1)
L1_GRID = (0.001, 0.003, 0.01, 0.03)
CG_GRID = (0.0, 0.01, 0.03, 0.1)  # Tikhonov lam / ||A^H D A||
CG_ITER = 30
ACCELERATIONS = (4, 8)
CENTER_FRACTIONS = {4: 0.08, 8: 0.04}


# ------------------------------------------------------------------------------------------------------------
# Problems


def synthetic_problems(n: int, data_config: dict[str, Any], log: Callable[[str], None]):
    """``[(group, label, problem)]``: ``n`` held-out generator slices at each acceleration."""
    from workbench.nn.data import SyntheticData
    from workbench.problem import Problem
    from workbench.sampling import make_sampling

    data = SyntheticData(data_config)
    out = []
    for i in range(n):
        seed = SYNTH_SEED0 + i
        setting = data.held_out_setting(seed)
        sim, meta, _ = data.simulate(seed, setting)
        contrast = meta["contrast"]
        k = torch.from_numpy(sim["kspace"])
        kind = "random" if i % 2 == 0 else "equispaced"
        for acc in ACCELERATIONS:
            s = make_sampling(kind, tuple(k.shape[-2:]), acc, seed=seed, center_fraction=CENTER_FRACTIONS[acc])
            p = Problem(k * s.mask, recon_shape=sim["reference"].shape, mask=s.mask, reference=sim["reference"],
                        sampling=s)
            label = (f"seed {seed}: {setting['n_coils']} coils, {contrast}, {k.shape[-2]}x{k.shape[-1]} grid, "
                     f"{kind} {acc}x")
            out.append((f"synthetic {acc}x", label, p))
        log(f"synthetic slice {seed}: {setting['n_coils']} coils, {contrast}, grid {tuple(k.shape[-2:])}")
    return out


def noncartesian_problems(n: int, data_config: dict[str, Any], kinds, log: Callable[[str], None]):
    """``[(group, label, problem)]``: ``n`` held-out generator slices resampled (NUFFT) onto each trajectory."""
    from workbench.nn.data import SyntheticData
    from workbench.physics.fft import ifft2c
    from workbench.problem import Problem
    from workbench.sampling import make_sampling
    from workbench.sampling.retrospective import sample_noncartesian

    data = SyntheticData(data_config)
    out = []
    for i in range(n):
        seed = SYNTH_SEED0 + 1000 + i
        sim, meta, _ = data.simulate(seed, data.held_out_setting(seed))
        k = torch.from_numpy(sim["kspace"])
        grid = tuple(k.shape[-2:])
        for kind in kinds:
            for acc in ACCELERATIONS:
                s = make_sampling(kind, grid, acc)
                y = sample_noncartesian(ifft2c(k), s.trajectory)
                p = Problem(y, grid, recon_shape=sim["reference"].shape, trajectory=s.trajectory, dcf=s.dcf,
                            reference=sim["reference"], sampling=s)
                out.append((f"synthetic {kind} {acc}x", f"seed {seed}: {meta['n_coils']} coils, {meta['contrast']}, "
                            f"{grid[0]}x{grid[1]}, {kind} {acc}x ({s.n_samples} samples)", p))
        log(f"non-Cartesian slice {seed}: {meta['n_coils']} coils, grid {grid}")
    return out


def real_problems(names: list[str], realdata: Path, log: Callable[[str], None]):
    out = []
    for name, scan, index in available_datasets(names, realdata, log):
        for acc in ACCELERATIONS:
            for kind in ("random", "equispaced"):
                p, _ = make_problem(scan, index, kind, acc, seed=0)
                out.append((f"{name} {acc}x", f"{name} {kind} {acc}x ({p.n_coils} coils)", p))
    return out


def _choose_maps(problem) -> str:
    """ESPIRiT maps unless they leave > 10 % of the object (where the ACS maps see signal) uncovered; set on the
    problem for every method of this benchmark's (synthetic) table. The real-data table gives each classical
    method the better of both instead and leaves the networks their default maps
    (:func:`benchmarks.bench_realdata_deep.classical_at_best`): on the real head this rule's ACS maps cost
    l1-wavelet up to 5.75 dB."""
    from workbench.errors import SamplingError

    if problem.n_coils == 1:
        return "none"
    acs = problem.estimate_maps("acs")
    try:
        esp = problem.estimate_maps("espirit")
    except SamplingError:  # fewer ACS lines than the ESPIRiT kernel
        problem.maps = acs
        return "acs"
    obj = (acs.abs() ** 2).sum(0) > 0.5
    covered = ((esp.abs() ** 2).sum(0) > 0.5) & obj
    if float(covered.sum()) >= 0.9 * float(obj.sum()):
        problem.maps = esp
        return "espirit"
    problem.maps = acs
    return "acs"


# ------------------------------------------------------------------------------------------------------------
# Methods


def _metrics(problem, image) -> dict[str, float]:
    """fastMRI PSNR / SSIM / NMSE of ``image`` against the problem's reference, and the object mode's PSNR / SSIM
    (``psnr_object``, ``ssim_object``: inside the reference's object mask, :mod:`workbench.scoring`)."""
    from workbench.scoring import score

    ref = problem.reference
    img = problem.crop(image).abs() if torch.is_tensor(image) else image
    out = score(ref, img, "fastmri", data_range=problem.data_range)
    inside = score(ref, img, "object", data_range=problem.data_range)
    return {**out, "psnr_object": inside["psnr"], "ssim_object": inside["ssim"]}


def equal_step_tv(A, y, lam: float, n_iter: int) -> torch.Tensor:
    """Isotropic TV by textbook Chambolle-Pock with equal steps on ``K = [A; D]``: the baseline the published
    figures were computed with (``workbench.solvers.total_variation`` balances its steps and gets further in
    the same iterations, 0.0-0.2 dB more PSNR at 100)."""
    from workbench.physics.gradient import FiniteDifference2D
    from workbench.solvers import pdhg, pdhg_steps, prox_dual_least_squares, tv_penalty

    D = FiniteDifference2D(A.ishape)
    x0 = torch.zeros(A.ishape, dtype=y.dtype, device=y.device)
    tau, sigma = pdhg_steps([A, D], x0)
    proxes = [lambda u, s: prox_dual_least_squares(u, s, y), tv_penalty(D, lam).dual_prox]
    return pdhg(x0, [A, D], proxes, tau=tau, sigma=sigma, n_iter=n_iter).x


def run_classical(problem, n_iter: int, noncartesian: bool = False, methods=None,
                  grids: dict | None = None) -> dict[str, dict[float, dict[str, float]]]:
    """TV and l1-wavelet over their weight grids (Cartesian), CG-SENSE and TV (non-Cartesian: the issue's
    "iterative SENSE / TV with the Toeplitz operator"); ``methods`` (a subset of "cg-sense", "tv",
    "l1-wavelet") overrides that choice, ``grids`` (method -> weight factors) the grids. Non-Cartesian problems are solved density-weighted (``D^1/2 A``, whose
    normal is the Toeplitz ``A^H D A``), the preconditioned least squares NC-PDNet uses."""
    from workbench.solvers.recon import cg_sense, l1_wavelet, lipschitz

    if methods is None:
        methods = ("cg-sense", "tv") if noncartesian else ("tv", "l1-wavelet")
    grids = {"cg-sense": CG_GRID, "tv": TV_GRID, "l1-wavelet": L1_GRID, **(grids or {})}
    A, y = problem.A, problem.y
    if not problem.is_cartesian and problem.dcf is not None:
        A, y = A.density_weighted(), A.weigh(y)
    scale = float(problem.zero_filled().abs().flatten().quantile(0.99))
    out: dict[str, dict[float, dict[str, float]]] = {m: {} for m in ("tv", "l1-wavelet") if m in methods}
    if "cg-sense" in methods:  # Tikhonov weight relative to ||A^H D A||; CG stopped early regularises too
        out["cg-sense"] = {}
        norm2 = float(lipschitz(A, y))
        for f in grids["cg-sense"]:
            t = time.perf_counter()
            x = cg_sense(A, y, f * norm2, n_iter=CG_ITER).x
            out["cg-sense"][f] = {**_metrics(problem, x), "time_s": time.perf_counter() - t}
    for f in grids["tv"] if "tv" in methods else ():
        t = time.perf_counter()
        x = equal_step_tv(A, y, f * scale, n_iter)
        out["tv"][f] = {**_metrics(problem, x), "time_s": time.perf_counter() - t}
    for f in grids["l1-wavelet"] if "l1-wavelet" in methods else ():
        t = time.perf_counter()
        x = l1_wavelet(A, y, f * scale, n_iter=n_iter, track_objective=False).x
        out["l1-wavelet"][f] = {**_metrics(problem, x), "time_s": time.perf_counter() - t}
    return out


def run_plugin(method, problem, weights: str, **values) -> dict[str, float]:
    from workbench.methods import RunContext

    params = method.make_params({"weights": weights, **values})
    reasons = method.check(problem, params)
    if reasons:
        return {"error": "; ".join(reasons)}
    t = time.perf_counter()
    with torch.no_grad():
        result = method.run(problem, params, RunContext("cpu"))
    return {**_metrics(problem, result.image), "time_s": time.perf_counter() - t}


def inference_time(xpdnet: str, unet: str, repeats: int = 3) -> dict[str, Any]:
    """Median wall time of the plugins on a 16-coil 320x320 slice at 4x (weights loaded and warmed up once)."""
    from workbench_builtin_methods.unet import UnetBaseline
    from workbench_builtin_methods.xpdnet import XPDNet
    from workbench.problem import Problem
    from workbench.sampling import make_sampling
    from workbench.simulate import generate_slice

    sim = generate_slice(SYNTH_SEED0 - 1, shape=(320, 320), n_coils=16)
    s = make_sampling("random", (320, 320), 4, seed=0, center_fraction=0.08)
    problem = Problem(torch.from_numpy(sim["kspace"]) * s.mask, mask=s.mask, reference=sim["reference"])
    out: dict[str, Any] = {"shape": [320, 320], "coils": 16, "threads": torch.get_num_threads()}
    for name, method, w in (("xpdnet", XPDNet(), xpdnet), ("unet", UnetBaseline(), unet)):
        if not Path(w).is_file():
            out[name] = None
            continue
        run_plugin(method, problem, w)  # warm-up: weights, FFT plans
        times = [run_plugin(method, problem, w)["time_s"] for _ in range(repeats)]
        out[name] = {"median_s": statistics.median(times), "min_s": min(times)}
    return out


# ------------------------------------------------------------------------------------------------------------
# Driver


def run(args) -> dict[str, Any]:
    from workbench_builtin_methods.unet import UnetBaseline
    from workbench_builtin_methods.xpdnet import XPDNet
    from workbench.scoring import evaluate

    log = print
    meta = machine_description()
    cfg = json.loads(Path(args.config).read_text())
    side = {}
    for name, w in (("xpdnet", args.xpdnet), ("unet", args.unet)):
        p = Path(w).with_suffix(".json")
        side[name] = json.loads(p.read_text()) if p.is_file() else None
    meta.update(weights={k: (None if v is None else {"file": str(getattr(args, k)), "steps": v["training"]["steps"],
                                                     "init_steps": (v["training"].get("initialised_from") or {}).get("steps"),
                                                     "n_parameters": v["n_parameters"],
                                                     "wall_time_s": v["wall_time_s"], "device": v["device"]})
                         for k, v in side.items()},
                tv_grid=TV_GRID, l1_grid=L1_GRID, n_iter=args.n_iter)
    problems = synthetic_problems(args.n_synthetic, cfg["data"], log) if args.n_synthetic else []
    problems += real_problems(args.datasets, realdata_dir(args.realdata), log)
    rows = []
    for group, label, p in problems:
        maps = _choose_maps(p)
        zf = evaluate(p.reference, p.crop(p.zero_filled("rss")), data_range=p.data_range)
        row = {"group": group, "label": label, "maps": maps, "zero_filled": zf,
               "classical": run_classical(p, args.n_iter),
               "unet": run_plugin(UnetBaseline(), p, args.unet),
               "xpdnet": run_plugin(XPDNet(), p, args.xpdnet, noise_floor=True),  # as published here
               # ablations: without the noise floor, and the network's own output (no final data consistency)
               "xpdnet_no_floor": run_plugin(XPDNet(), p, args.xpdnet, noise_floor=False),
               "xpdnet_no_dc": run_plugin(XPDNet(), p, args.xpdnet, data_consistency=False)}
        best = {m: max(v.values(), key=lambda r: r["psnr"])["psnr"] for m, v in row["classical"].items()}
        log(f"{label} [maps {maps}]: ZF {zf['psnr']:.2f}, TV {best['tv']:.2f}, L1 {best['l1-wavelet']:.2f}, "
            f"U-net {row['unet'].get('psnr', float('nan')):.2f}, XPDNet {row['xpdnet'].get('psnr', float('nan')):.2f}")
        rows.append(row)
    nc_rows = []
    if args.n_noncartesian and Path(args.ncpdnet).is_file():
        from workbench_builtin_methods.ncpdnet import NCPDNet

        nc_side = json.loads(Path(args.ncpdnet).with_suffix(".json").read_text())
        for name, w in (("ncpdnet", args.ncpdnet), ("unet_noncartesian", args.unet_noncartesian)):
            sc = Path(w).with_suffix(".json")
            if sc.is_file():
                sc = json.loads(sc.read_text())
                meta["weights"][name] = {"file": w, "steps": sc["training"]["steps"],
                                         "n_parameters": sc["n_parameters"], "wall_time_s": sc["wall_time_s"],
                                         "device": sc["device"]}
        nc_cfg = nc_side["config"]
        for group, label, p in noncartesian_problems(args.n_noncartesian, nc_cfg["data"],
                                                      nc_cfg["sampling"]["kinds"], log):
            maps = _choose_maps(p)
            zf = evaluate(p.reference, p.crop(p.zero_filled("rss")), data_range=p.data_range)
            row = {"group": group, "label": label, "maps": maps, "zero_filled": zf,
                   "classical": run_classical(p, args.n_iter, noncartesian=True),
                   "unet": run_plugin(UnetBaseline(), p, args.unet_noncartesian),
                   "xpdnet": run_plugin(NCPDNet(), p, args.ncpdnet)}
            best = max(row["classical"]["tv"].values(), key=lambda r: r["psnr"])["psnr"]
            cg = max(row["classical"]["cg-sense"].values(), key=lambda r: r["psnr"])["psnr"]
            log(f"{label} [maps {maps}]: adjoint+DCF {zf['psnr']:.2f}, CG-SENSE {cg:.2f}, TV {best:.2f}, "
                f"U-net {row['unet'].get('psnr', float('nan')):.2f}, "
                f"NC-PDNet {row['xpdnet'].get('psnr', float('nan')):.2f}")
            nc_rows.append(row)
    timing = inference_time(args.xpdnet, args.unet) if not args.no_timing else None
    return {"meta": meta, "rows": rows, "summary": summarise(rows), "timing": timing,
            "noncartesian_rows": nc_rows, "noncartesian_summary": summarise(nc_rows)}


def _mean(values):
    return float(np.mean(values)) if values else float("nan")


def summarise(rows: list[dict]) -> list[dict[str, Any]]:
    """Per group: mean PSNR/SSIM of each method; classical methods at the weight best on that group."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == group]
        entry: dict[str, Any] = {"group": group, "n": len(rs)}
        entry["zero-filled"] = {k: _mean([r["zero_filled"][k] for r in rs]) for k in ("psnr", "ssim")}
        best_classical = None
        for m in [m for m in ("tv", "l1-wavelet", "cg-sense") if m in rs[0]["classical"]]:
            grid = rs[0]["classical"][m].keys()
            scores = {f: _mean([r["classical"][m][f]["psnr"] for r in rs]) for f in grid}
            f = max(scores, key=scores.get)
            entry[m] = {"psnr": scores[f], "ssim": _mean([r["classical"][m][f]["ssim"] for r in rs]), "lam_factor": f,
                        "time_s": _mean([r["classical"][m][f]["time_s"] for r in rs])}
            if best_classical is None or entry[m]["psnr"] > entry[best_classical]["psnr"]:
                best_classical = m
        entry["best_classical"] = best_classical
        for m in [m for m in ("unet", "xpdnet", "xpdnet_no_floor", "xpdnet_no_dc") if m in rs[0]]:
            ok = [r[m] for r in rs if "psnr" in r[m]]
            entry[m] = ({"psnr": _mean([x["psnr"] for x in ok]), "ssim": _mean([x["ssim"] for x in ok]),
                         "time_s": _mean([x["time_s"] for x in ok])} if ok else
                        {"error": rs[0][m].get("error", "not run")})
        out.append(entry)
    return out


def _cell(e: dict) -> str:
    if not e or "psnr" not in e:
        return "n/a"
    return f"{e['psnr']:.2f} / {e['ssim']:.3f}"


def to_markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    lines = ["# Deep reconstruction benchmark", "", f"Machine: {machine_line(meta)}.", "",
             f"Command: `{meta.get('command', '')}`. Classical weights `lam = f * scale` (scale = 99th percentile "
             f"of the zero-filled SENSE image), TV f in {list(meta['tv_grid'])}, l1-wavelet f in "
             f"{list(meta['l1_grid'])}, {meta['n_iter']} iterations; the best f per row (oracle, by mean PSNR). "
             "PSNR (dB) / SSIM, fastMRI definitions, against the fully sampled RSS reference.", ""]
    for name, w in meta["weights"].items():
        if w:
            steps = (f"{w['steps']} steps fine-tuned (`--init`) from {w['init_steps']}-step weights "
                     f"({w['steps'] + w['init_steps']} in all)" if w.get("init_steps") else f"{w['steps']} steps")
            lines.append(f"- {name}: `{Path(w['file']).name}`, {w['n_parameters']:,} parameters, {steps}, "
                         f"{w['wall_time_s'] / 60:.1f} min on {w['device']}")
    lines += ["", "XPDNet: the plugin's default, ending with the hard data-consistency step (the measured k-space put "
              "back into the output's coil images, root-sum-of-squares) and the noise floor (the scanner noise of "
              "the unmeasured samples added in quadrature: the expected RSS of the fully sampled scan); 'no floor': "
              "without the latter (`noise_floor=false`); 'no final DC': the network's own output "
              "(`data_consistency=false`).", "",
              "| data (slices) | zero-filled | TV (best f) | l1-wavelet (best f) | U-net | XPDNet | "
              "XPDNet, no floor | XPDNet, no final DC | XPDNet - best classical |", "|---|---|---|---|---|---|---|---|---|"]
    for e in res["summary"]:
        best = e[e["best_classical"]]
        gain = f"{e['xpdnet']['psnr'] - best['psnr']:+.2f} dB" if "psnr" in e["xpdnet"] else ""
        lines.append(f"| {e['group']} ({e['n']}) | {_cell(e['zero-filled'])} | {_cell(e['tv'])} ({e['tv']['lam_factor']:g})"
                     f" | {_cell(e['l1-wavelet'])} ({e['l1-wavelet']['lam_factor']:g}) | {_cell(e['unet'])} | "
                     f"{_cell(e['xpdnet'])} | {_cell(e.get('xpdnet_no_floor', {}))} | "
                     f"{_cell(e.get('xpdnet_no_dc', {}))} | {gain} |")
    t = res.get("timing")
    if t:
        lines += ["", f"CPU inference, 16-coil 320x320 slice at 4x ({t['threads']} torch threads), median of 3 "
                  "runs through the plugin (ACS maps, refinement, network): "
                  + ", ".join(f"{k} {v['median_s']:.2f} s" for k, v in t.items() if isinstance(v, dict)) + "."]
    if res.get("noncartesian_summary"):
        lines += ["", "## Non-Cartesian (NC-PDNet)", "",
                  "Held-out synthetic slices resampled onto the trajectory by the NUFFT; zero-filled = adjoint with "
                  "density compensation (RSS); TV density-weighted with the Toeplitz normal; NC-PDNet through its "
                  "plugin; U-net: the post-processing baseline on the adjoint + DCF image (`unet_noncartesian` "
                  "weights); CG-SENSE: 30 iterations, Tikhonov lam = f ||A^H D A|| at the best f of "
                  f"{list(CG_GRID)}.", "", "| data (slices) | adjoint + DCF | CG-SENSE (best f) | TV (best f) | "
                  "U-net | NC-PDNet | NC-PDNet - adjoint | NC-PDNet - U-net |", "|---|---|---|---|---|---|---|---|"]
        for e in res["noncartesian_summary"]:
            def gain(other):
                ok = "psnr" in e["xpdnet"] and "psnr" in other
                return f"{e['xpdnet']['psnr'] - other['psnr']:+.2f} dB" if ok else ""
            cg = e.get("cg-sense")
            lines.append(f"| {e['group']} ({e['n']}) | {_cell(e['zero-filled'])} | "
                         f"{_cell(cg) + ' (' + format(cg['lam_factor'], 'g') + ')' if cg else 'n/a'} | {_cell(e['tv'])} "
                         f"({e['tv']['lam_factor']:g}) | {_cell(e['unet'])} | {_cell(e['xpdnet'])} | "
                         f"{gain(e['zero-filled'])} | {gain(e['unet'])} |")
    lines += ["", "## Every slice", "", "| slice | maps | ZF | TV best | L1 best | U-net | XPDNet | XPDNet, no floor | "
              "XPDNet, no final DC |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"] + res.get("noncartesian_rows", []):
        tv = max(r["classical"]["tv"].values(), key=lambda x: x["psnr"])
        l1 = max(r["classical"].get("l1-wavelet", {0: {}}).values(), key=lambda x: x.get("psnr", 0))
        lines.append(f"| {r['label']} | {r['maps']} | {_cell(r['zero_filled'])} | {_cell(tv)} | {_cell(l1)} | "
                     f"{_cell(r['unet'])} | {_cell(r['xpdnet'])} | {_cell(r.get('xpdnet_no_floor', {}))} | "
                     f"{_cell(r.get('xpdnet_no_dc', {}))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from workbench.nn.weights import shipped_weights

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_deep", description=__doc__.splitlines()[0])
    ap.add_argument("--n-synthetic", type=int, default=6, help="held-out synthetic slices (each at 4x and 8x)")
    ap.add_argument("--datasets", default="head,phantom,gre", help="real data sets (benchmarks.harness.DATASETS)")
    ap.add_argument("--realdata", default=None)
    ap.add_argument("--xpdnet", default=str(shipped_weights("xpdnet")))
    ap.add_argument("--unet", default=str(shipped_weights("unet")))
    ap.add_argument("--ncpdnet", default=str(shipped_weights("ncpdnet")))
    ap.add_argument("--unet-noncartesian", default=str(shipped_weights("unet_noncartesian")))
    ap.add_argument("--n-noncartesian", type=int, default=3,
                    help="held-out slices per trajectory kind and acceleration for NC-PDNet (0: skip)")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "xpdnet_cpu.json"),
                    help="training config whose data distribution the synthetic slices follow")
    ap.add_argument("--n-iter", type=int, default=100, help="iterations of TV / l1-wavelet")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="only the inference timing (appended to the JSON)")
    ap.add_argument("--merge", default=None, metavar="NAME",
                    help="with --timing-only: take the non-Cartesian rows from NAME.json")
    ap.add_argument("--quick", action="store_true", help="1 synthetic slice, the head only, no timing")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--name", default="deep")
    args = ap.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    if args.quick:
        args.n_synthetic, args.datasets, args.no_timing, args.n_noncartesian = 1, ["head"], True, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.timing_only:
        res = json.loads((out / f"{args.name}.json").read_text())
        res["timing"] = inference_time(args.xpdnet, args.unet)
        if args.merge:  # the non-Cartesian part of another run (e.g. run separately while NC-PDNet trained)
            other = json.loads((out / f"{args.merge}.json").read_text())
            for key in ("noncartesian_rows", "noncartesian_summary"):
                res[key] = other.get(key, [])
            for name in ("ncpdnet", "unet_noncartesian"):
                if name in other["meta"].get("weights", {}):
                    res["meta"]["weights"][name] = other["meta"]["weights"][name]
    else:
        res = run(args)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / f"{args.name}.md").write_text(to_markdown(res))
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
