"""Reconstruction quality and speed: methods x samplings x datasets -> a markdown table and a JSON file.

    python -m benchmarks.harness [--datasets demo,head,phantom,gre] [--methods cg-sense,tv,...]
                                 [--masks random[,equispaced]] [--accels 4,8] [--variants default,auto,fixed]
                                 [--out benchmarks/results] [--name classical] [--quick] [--threads N]

(also ``workbench bench ...`` with the same options.)

Every method found by :func:`workbench.methods.discover_methods` runs through :func:`workbench.methods.safe_run`
(exactly as the app and the CLI run it) on every problem: a dataset slice retrospectively undersampled with a
fastMRI line mask (random or equispaced, 4x with a 0.08 centre fraction, 8x with 0.04). The default run uses
the random masks only (about 6 minutes on 2 cores); ``--masks random,equispaced`` is the full matrix of
``results/classical.md`` (about 12 minutes; ``make bench`` runs it).

Variants: "default" runs a method at its default parameters; "auto" sets its optional regularisation weights
(``lam...`` parameters that accept None = automatic) to automatic when they default to a number; "fixed" sets
them to ``--fixed-lam`` when they default to automatic. The weight a method used or chose is reported (from
``Result.chosen``). Methods that cannot run on a problem (``check``: e.g. missing trained weights, GRAPPA on
single-coil data) are listed with their reason; a method that fails is listed with its error.

Coil maps (ESPIRiT) are estimated once per problem before the methods run and timed separately, so a method's
time is its own work. Each method runs once untimed on a small simulated problem first (imports, FFT plans).
Metrics follow the fastMRI definitions (:mod:`workbench.scoring`) against the problem's reference (the stored
RSS of the demo file; the RSS of the fully sampled data otherwise), with the fastMRI data range
(``problem.data_range``: the file's ``max`` attribute, else the stored reference volume's maximum, else the
slice's).

Datasets (``DATASETS``): the built-in demo scan (middle slice) and, when the real-data folder exists
(``--realdata``, ``$WORKBENCH_REALDATA``, default ``<checkout>/../shared/realdata``), the fully sampled real sets:
the 8-coil head (coil images), the single-coil phantom and the 2-coil Siemens GRE phantom.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from workbench import paths

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MASK_KINDS = ("random", "equispaced")
DEFAULT_MASKS = ("random",)  # the default run stays under 10 minutes on 2 cores; run_all adds "equispaced"
ACCELERATIONS = (4, 8)
CENTER_FRACTIONS = {4: 0.08, 8: 0.04}  # fastMRI's pairs
VARIANTS = ("default", "auto")  # also available: "fixed"
FIXED_LAM = 0.003  # relative weight of the "fixed" variant (the plugins' weights are relative to problem.scale)


# ======================================================================================================
# Datasets
# ======================================================================================================


@dataclass(frozen=True)
class Dataset:
    """A benchmark scan: where it is, how to open it, which slice.

    ``path`` is relative to the real-data folder, or None for the built-in demo scan; ``slice_index`` None means
    the middle slice."""

    name: str
    description: str
    path: str | None
    options: dict[str, Any] = field(default_factory=dict)
    slice_index: int | None = None

    def resolve(self, realdata: Path) -> Path | None:
        """The file, or None when it is not available (real data folder absent)."""
        if self.path is None:
            from workbench.simulate import demo_scan_path

            return demo_scan_path()
        p = Path(realdata) / self.path
        return p if p.is_file() else None


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("demo", "simulated T1 brain, 12 coils, 512x256 grid (2x readout oversampling) -> 256x256", None),
        Dataset("head", "real axial brain, 8 coils, 256x256 (coil images; Bydder, marcsous_head8ch_dhe)",
                "marcsous_head8ch_dhe/head.mat", {"image_domain": True, "coil_axis": -1}),
        Dataset("phantom", "real phantom, single coil, 256x256 (imagiology_phantom_1ch)",
                "imagiology_phantom_1ch/rawdata.mat"),
        Dataset("gre", "real Siemens GRE phantom, 2 coils, 320x160 grid -> 160x160 (twix_phantom/gre.dat)",
                "twix_phantom/gre.dat"),
    )
}


def open_dataset(name: str, realdata: Path) -> tuple[Any, int] | None:
    """``(scan, slice index)`` of dataset ``name`` (:data:`DATASETS`), None when its file is not available."""
    from workbench.io import open_scan

    ds = DATASETS[name]
    path = ds.resolve(realdata)
    if path is None:
        return None
    scan = open_scan(path, **ds.options)
    return scan, scan.n_slices // 2 if ds.slice_index is None else ds.slice_index


def available_datasets(names: Iterable[str], realdata: Path, log: Callable[[str], None] = print):
    """``(name, scan, slice index)`` of each dataset of ``names`` whose file is available; the others are
    logged and skipped."""
    for name in names:
        opened = open_dataset(name, realdata)
        if opened is None:
            log(f"{name}: skipped ({Path(realdata) / str(DATASETS[name].path)} not found)")
            continue
        yield (name, *opened)


def realdata_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$WORKBENCH_REALDATA``, else ``<checkout>/../shared/realdata``."""
    return Path(explicit) if explicit else paths.realdata_dir()


# ======================================================================================================
# Configuration and records
# ======================================================================================================


@dataclass
class BenchConfig:
    """What to run. ``datasets``: names from :data:`DATASETS` or :class:`Dataset` objects; ``methods`` None =
    every discovered method; ``variants``: a subset of ``("default", "auto", "fixed")``."""

    datasets: Sequence[str | Dataset] = tuple(DATASETS)
    methods: Sequence[str] | None = None
    masks: Sequence[str] = DEFAULT_MASKS
    accelerations: Sequence[float] = ACCELERATIONS
    variants: Sequence[str] = VARIANTS
    seed: int = 0
    device: str = "cpu"
    realdata: str | None = None
    plugin_dirs: Sequence[str] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method overrides (both variants)
    warmup: bool = True
    fixed_lam: float = FIXED_LAM
    slice_index: int | None = None  # overrides every dataset's slice


@dataclass
class Record:
    """One method run on one problem (``status``: "ok", "n/a" = cannot run on it, "error")."""

    dataset: str
    sampling: str
    acceleration: float
    method: str
    variant: str
    status: str = "ok"
    psnr: float | None = None
    ssim: float | None = None
    nmse: float | None = None
    time_s: float | None = None
    cpu_s: float | None = None  # process CPU time (all threads): the work, whatever the machine's load
    params: dict[str, Any] = field(default_factory=dict)
    chosen: dict[str, Any] = field(default_factory=dict)
    lam: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class ProblemInfo:
    """One benchmark problem: a dataset slice under one sampling."""

    dataset: str
    file: str
    slice_index: int
    sampling: str
    acceleration: float
    center_fraction: float
    effective_acceleration: float
    n_coils: int
    grid_shape: tuple[int, int]
    recon_shape: tuple[int, int]
    maps_time_s: float | None
    zero_filled_psnr: float | None = None
    maps_error: str = ""
    # The fully sampled data combined with the problem's maps (sum_c conj(S_c) F^-1 k_c) against the RSS
    # reference: what a SENSE-type reconstruction reaches at best under the fastMRI metrics.
    sense_full_psnr: float | None = None
    sense_full_ssim: float | None = None


# ======================================================================================================
# Running
# ======================================================================================================


def _lam_specs(method) -> list:
    """The optional (None = automatic) regularisation weights a method declares."""
    return [s for s in method.param_specs() if s.optional and s.name.lower().startswith("lam") and s.type is float]


def method_variants(method, wanted: Sequence[str] = VARIANTS,
                    fixed_lam: float | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``[(variant, params)]`` to run for ``method``.

    - "default": its default parameters;
    - "auto": every optional ``lam...`` weight set to None (automatic), when some of them default to a number
      (a method whose weights are automatic by default is covered by "default");
    - "fixed": every optional ``lam...`` weight that defaults to automatic set to ``fixed_lam``
      (:data:`FIXED_LAM`: a typical relative weight), to compare the automatic choice with a fixed one.
    """
    fixed_lam = FIXED_LAM if fixed_lam is None else fixed_lam
    lams = _lam_specs(method)
    out = []
    if "default" in wanted:
        out.append(("default", {}))
    if "auto" in wanted and any(s.default is not None for s in lams):
        out.append(("auto", {s.name: None for s in lams}))
    if "fixed" in wanted and any(s.default is None for s in lams):
        out.append(("fixed", {s.name: fixed_lam for s in lams if s.default is None}))
    return out


def _chosen_lams(result) -> dict[str, Any]:
    """Regularisation weights the method reports: ``chosen`` entries named ``lam...``, else the ``lam...``
    parameters it ran with."""
    picked = {k: v for k, v in (result.chosen or {}).items() if "lam" in k.lower() and _is_number(v)}
    if not picked:
        picked = {k: v for k, v in (result.params or {}).items() if k.lower().startswith("lam") and _is_number(v)}
    return picked


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _jsonable(v: Any) -> Any:
    """Records as JSON: non-finite numbers as text ("nan", "inf"), large tensors summarised by their shape."""
    from workbench.arrays import jsonable

    return jsonable(v, nonfinite=str, max_elements=16)


def make_problem(scan, slice_index: int, kind: str, acceleration: float, *, seed: int = 0, device: str = "cpu"):
    """The benchmark problem: ``scan``'s slice under a fastMRI line mask of ``kind`` at ``acceleration``."""
    from workbench.problem import Problem
    from workbench.sampling import default_center_fraction, make_sampling

    cf = CENTER_FRACTIONS.get(int(acceleration), default_center_fraction(acceleration))
    sampling = make_sampling(kind, scan.grid_shape, acceleration, seed=seed, center_fraction=cf)
    return Problem.from_scan(scan, slice_index, sampling, device=device), cf


def _warm_up(methods: Iterable, variants: Sequence[str], device: str, fixed_lam: float,
             log: Callable[[str], None]) -> None:
    """Run every method once on a small simulated problem: imports, FFT plans and caches are not timed later."""
    from workbench.methods import safe_run
    from workbench.problem import Problem
    from workbench.sampling import make_sampling
    from workbench.simulate import generate_slice

    s = generate_slice(1, shape=(64, 64), n_coils=4)
    sampling = make_sampling("random", (64, 64), 4, seed=0, center_fraction=0.08)
    problem = Problem(torch.from_numpy(s["kspace"]) * sampling.mask, mask=sampling.mask, reference=s["reference"],
                      maps=torch.from_numpy(s["maps"]), device=device)
    for m in methods:
        for _, params in method_variants(m, variants, fixed_lam):
            try:
                if not m.check(problem):
                    safe_run(m, problem, params)
            except Exception as exc:  # a broken method is reported in the real run
                log(f"  warm-up of {m.name} failed: {exc}")


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``config``; returns ``{"meta", "problems", "records", "skipped"}`` (JSON-able)."""
    from workbench.errors import WorkbenchError
    from workbench.io import open_scan
    from workbench.methods import MethodError, MethodNotApplicableError, discover_methods, safe_run
    from workbench.scoring import evaluate
    from workbench.physics.fft import ifft2c

    t_start = time.perf_counter()
    registry = discover_methods(config.plugin_dirs)
    for err in registry.errors:
        log(f"plugin error: {err.source}: {err.message}")
    names = list(config.methods) if config.methods else registry.names()
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise WorkbenchError(f"unknown method(s) {', '.join(unknown)}; found: {', '.join(registry.names())}")
    methods = [registry.get(n) for n in names]
    realdata = realdata_dir(config.realdata)
    meta = machine_description()
    meta.update(
        kind="classical", realdata=str(realdata), seed=config.seed, device=config.device,
        masks=list(config.masks), accelerations=list(config.accelerations), variants=list(config.variants),
        center_fractions={str(k): v for k, v in CENTER_FRACTIONS.items()}, fixed_lam=config.fixed_lam,
        methods={m.name: m.version for m in methods}, plugin_errors=[e.message for e in registry.errors],
        load_before=load_average(),
    )
    if config.warmup:
        log("warm-up ...")
        _warm_up(methods, config.variants, config.device, config.fixed_lam, log)

    problems: list[ProblemInfo] = []
    records: list[Record] = []
    skipped: list[dict[str, str]] = []
    for entry in config.datasets:
        if isinstance(entry, Dataset):
            ds = entry
        elif entry in DATASETS:
            ds = DATASETS[entry]
        else:
            raise WorkbenchError(f"unknown dataset {entry!r}; known: {', '.join(DATASETS)}")
        ds_name = ds.name
        path = ds.resolve(realdata)
        if path is None:
            skipped.append({"dataset": ds_name, "why": f"{realdata / ds.path} not found"})
            log(f"{ds_name}: skipped ({realdata / ds.path} not found)")
            continue
        scan = open_scan(path, **ds.options)
        index = config.slice_index if config.slice_index is not None else ds.slice_index
        if index is None:
            index = scan.n_slices // 2
        for kind in config.masks:
            for accel in config.accelerations:
                problem, cf = make_problem(scan, index, kind, accel, seed=config.seed, device=config.device)
                label = f"{kind} {accel:g}x"
                t0 = time.perf_counter()
                maps_time, maps_error = None, ""
                if problem.n_coils > 1:
                    try:
                        _ = problem.maps  # estimated once, cached in the problem: not part of any method's time
                        maps_time = time.perf_counter() - t0
                    except WorkbenchError as exc:  # e.g. too few calibration lines: the methods say so
                        maps_error = str(exc)
                        log(f"  coil maps: {maps_error}")
                ref = problem.reference
                zf = None if ref is None else evaluate(ref, problem.crop(problem.zero_filled("rss")),
                                                       problem.data_range)["psnr"]
                info = ProblemInfo(ds_name, str(path), int(index), kind, float(accel), cf,
                                   round(problem.acceleration, 3), problem.n_coils, tuple(problem.grid_shape),
                                   tuple(problem.recon_shape), maps_time, zf, maps_error)
                if ref is not None and problem.n_coils > 1 and not maps_error and scan.fully_sampled:
                    full = (problem.maps.conj() * ifft2c(scan.kspace(index, config.device))).sum(0)
                    ceiling = evaluate(ref, problem.crop(full), problem.data_range)
                    info.sense_full_psnr, info.sense_full_ssim = ceiling["psnr"], ceiling["ssim"]
                problems.append(info)
                log(f"{ds_name} slice {index} {label} (R_eff {problem.acceleration:.2f}, {problem.n_coils} coils, "
                    f"maps {maps_time or 0:.2f} s)")
                for m in methods:
                    for variant, params in method_variants(m, config.variants, config.fixed_lam):
                        params = {**config.params.get(m.name, {}), **params}
                        rec = Record(ds_name, kind, float(accel), m.name, variant)
                        c0 = time.process_time()
                        try:
                            result = safe_run(m, problem, params or None)
                        except MethodNotApplicableError as exc:
                            rec.status, rec.message = "n/a", "; ".join(exc.reasons)
                        except MethodError as exc:
                            rec.status, rec.message = "error", exc.message
                        except Exception as exc:  # parameter errors and the like: reported, never fatal
                            rec.status, rec.message = "error", f"{type(exc).__name__}: {exc}"
                        else:
                            rec.time_s = float(result.time_s)
                            rec.cpu_s = round(time.process_time() - c0, 3)
                            rec.params = _jsonable(result.params)
                            rec.chosen = _jsonable({k: v for k, v in (result.chosen or {}).items()
                                                    if not isinstance(v, (list, dict)) or len(str(v)) < 400})
                            rec.lam = _jsonable(_chosen_lams(result))
                            if ref is not None:
                                scores = evaluate(ref, result.image, problem.data_range)
                                rec.psnr, rec.ssim, rec.nmse = scores["psnr"], scores["ssim"], scores["nmse"]
                        records.append(rec)
                        log("  " + _record_line(rec))
    meta["load_after"] = load_average()
    meta["total_time_s"] = round(time.perf_counter() - t_start, 1)
    return {
        "meta": meta,
        "problems": [_jsonable(asdict(p)) for p in problems],
        "records": [_jsonable(asdict(r)) for r in records],
        "skipped": skipped,
    }


def _record_line(r: Record) -> str:
    head = f"{r.method:<14}{r.variant:<8}"
    if r.status != "ok":
        return head + f"{r.status}: {r.message}"
    lam = ", ".join(f"{k}={_fmt_num(v)}" for k, v in r.lam.items())
    t = f"{r.time_s:7.2f} s (CPU {r.cpu_s:.1f} s)"
    return head + (f"PSNR {r.psnr:6.2f}  SSIM {r.ssim:.4f}  NMSE {r.nmse:.4f}  {t}  {lam}"
                   if r.psnr is not None else f"{t}  {lam}")


# ======================================================================================================
# Machine description
# ======================================================================================================


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """Date, host CPU and core count, OS, Python / torch / numpy versions, torch threads, OMP settings."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }


def machine_line(meta: dict[str, Any]) -> str:
    load = meta.get("load_before")
    load_txt = f"; load average before/after {load} / {meta.get('load_after')}" if load else ""
    return (f"{meta['date']}: {meta['cpu']}, {meta['cores']} cores, torch {meta['torch']} "
            f"({meta['torch_threads']} threads), numpy {meta['numpy']}, Python {meta['python']}, {meta['os']}"
            f"{load_txt}")


# ======================================================================================================
# Output
# ======================================================================================================


def _fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _opt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r["status"] != "ok":
        return r["status"]
    if r["psnr"] is None:
        return f"{r['time_s']:.2f} s"
    return f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['time_s']:.2f} s"


def to_markdown(out: dict[str, Any], title: str = "Classical reconstructions") -> str:
    """The benchmark as markdown: machine line, one PSNR/SSIM/time matrix per dataset, then every run."""
    meta, records, problems = out["meta"], out["records"], out["problems"]
    lines = [f"# {title}", "", f"Machine: {machine_line(meta)}.", ""]
    lines.append(f"Command: `{meta.get('command', '')}`; total {meta.get('total_time_s', '?')} s. "
                 "fastMRI line masks along the phase encode (W), seed "
                 f"{meta.get('seed', 0)}, centre fractions {meta.get('center_fractions')}. Metrics (fastMRI "
                 "definitions) against the RSS reference of the slice, data range = the file's `max` attribute, else "
                 "the reference volume's maximum, else the slice's. "
                 "Times are `safe_run` wall-clock seconds of the method alone (ESPIRiT maps estimated before, "
                 "timed in the problem table); CPU = process CPU seconds over all threads (on a busy machine wall "
                 "times inflate, CPU times much less); `auto` = the method's automatic regularisation weight, "
                 f"`fixed` = relative weight {meta.get('fixed_lam')}.")
    lines.append("")
    if out.get("skipped"):
        for s in out["skipped"]:
            lines.append(f"- dataset `{s['dataset']}` skipped: {s['why']}")
        lines.append("")
    lines += ["## Problems", "", "SENSE ceiling: the fully sampled data combined with the problem's coil maps "
              "(`sum_c conj(S_c) F^-1 k_c`) scored against the RSS reference, the best a SENSE-type reconstruction "
              "(CG-SENSE, l1-wavelet, TV, ...) can reach under these metrics: the reference keeps the RSS noise "
              "floor outside the object, a maps-weighted combination does not, which costs PSNR and above all SSIM.",
              "", "| dataset | file | slice | sampling | R (eff.) | centre frac. | coils | grid -> recon "
              "| maps (s) | zero-filled RSS PSNR | SENSE ceiling PSNR / SSIM |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in problems:
        lines.append(f"| {p['dataset']} | {Path(p['file']).name} | {p['slice_index']} | {p['sampling']} | "
                     f"{p['acceleration']:g} ({p['effective_acceleration']:.2f}) | {p['center_fraction']} | "
                     f"{p['n_coils']} | {p['grid_shape'][0]}x{p['grid_shape'][1]} -> "
                     f"{p['recon_shape'][0]}x{p['recon_shape'][1]} | "
                     f"{_opt(p['maps_time_s'], '.2f')} | {_opt(p['zero_filled_psnr'], '.2f')} | "
                     + (f"{p['sense_full_psnr']:.2f} / {p['sense_full_ssim']:.3f}" if p.get("sense_full_psnr") else "")
                     + " |")
    lines.append("")
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    for ds in datasets:
        rows = [r for r in records if r["dataset"] == ds]
        cols = list(dict.fromkeys((r["sampling"], r["acceleration"]) for r in rows))
        keys = list(dict.fromkeys((r["method"], r["variant"]) for r in rows))
        lines += [f"## {ds}: PSNR (dB) / SSIM / time", "",
                  "| method | variant | " + " | ".join(f"{k} {a:g}x" for k, a in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for method, variant in keys:
            cells = []
            for k, a in cols:
                match = [r for r in rows if (r["method"], r["variant"], r["sampling"], r["acceleration"])
                         == (method, variant, k, a)]
                cells.append(_cell(match[0] if match else None))
            lines.append(f"| {method} | {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Every run", "", "| dataset | sampling | R | method | variant | PSNR | SSIM | NMSE | time (s) | "
              "CPU (s) | weight (lam) | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lam = ", ".join(f"{k}={_fmt_num(v)}" for k, v in r["lam"].items())
        if r["status"] == "ok" and r["psnr"] is not None:
            nums = f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | {r['time_s']:.2f} | {r['cpu_s']:.1f}"
        elif r["status"] == "ok":
            nums = f" | | | {r['time_s']:.2f} | {r['cpu_s']:.1f}"
        else:
            nums = " | | | | "
        note = r["message"].replace("|", "/").replace("\n", " ")[:160] if r["status"] != "ok" else ""
        lines.append(f"| {r['dataset']} | {r['sampling']} | {r['acceleration']:g} | {r['method']} | {r['variant']} | "
                     f"{nums} | {lam} | {note} |")
    lines.append("")
    return "\n".join(lines)


def write_results(out: dict[str, Any], out_dir: str | os.PathLike = RESULTS_DIR, name: str = "classical",
                  title: str = "Classical reconstructions") -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{name}.md", out_dir / f"{name}.json"
    md.write_text(to_markdown(out, title))
    js.write_text(json.dumps(out, indent=1, allow_nan=False, default=str) + "\n")
    return md, js


# ======================================================================================================
# Command line (shared with `workbench bench`)
# ======================================================================================================


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _param_override(text: str) -> tuple[str, str, str]:
    method, _, rest = text.partition(":")
    key, eq, value = rest.partition("=")
    if not method or not eq or not key:
        raise argparse.ArgumentTypeError(f"expected METHOD:NAME=VALUE, got {text!r}")
    return method, key.strip(), value.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's command-line options (``python -m benchmarks.harness`` and ``workbench bench``)."""
    parser.add_argument("--datasets", type=_csv, default=list(DATASETS),
                        help=f"comma-separated datasets (default all available: {','.join(DATASETS)})")
    parser.add_argument("--methods", type=_csv, default=None,
                        help="comma-separated method names (default: every discovered method)")
    parser.add_argument("--masks", type=_csv, default=list(DEFAULT_MASKS),
                        help="mask kinds: random and/or equispaced (default random; the full matrix, as in "
                        "results/classical.md: random,equispaced)")
    parser.add_argument("--accels", type=lambda s: [float(v) for v in _csv(s)], default=list(ACCELERATIONS),
                        help="accelerations (default 4,8; centre fraction 0.08 at 4x, 0.04 at 8x, else 0.32/R)")
    parser.add_argument("--variants", type=_csv, default=list(VARIANTS),
                        help="default = the method's defaults; auto = automatic regularisation weight (for "
                        "methods whose weight is fixed by default); fixed = --fixed-lam for methods whose weight is "
                        "automatic by default (default: default,auto)")
    parser.add_argument("--fixed-lam", type=float, default=FIXED_LAM,
                        help=f"relative weight of the 'fixed' variant (default {FIXED_LAM})")
    parser.add_argument("--param", action="append", default=[], type=_param_override, metavar="METHOD:NAME=VALUE",
                        help="override a method parameter (repeatable), e.g. tv:n_iter=100")
    parser.add_argument("--slice", type=int, default=None, help="slice index for every dataset (default: middle)")
    parser.add_argument("--seed", type=int, default=0, help="mask seed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--realdata", default=None, help="real data folder (default $WORKBENCH_REALDATA or "
                        "../shared/realdata)")
    parser.add_argument("--plugin-dir", action="append", default=[], help="extra folder of drop-in plugins")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: demo dataset, random 4x only, default variants")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="output folder (default benchmarks/results)")
    parser.add_argument("--name", default="classical", help="output file stem (NAME.md, NAME.json)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no files")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    params: dict[str, dict[str, Any]] = {}
    for method, key, value in args.param:
        params.setdefault(method, {})[key] = value  # strings: safe_run parses them with the method's types
    cfg = BenchConfig(
        datasets=args.datasets, methods=args.methods, masks=args.masks, accelerations=args.accels,
        variants=args.variants, seed=args.seed, device=args.device, realdata=args.realdata,
        plugin_dirs=args.plugin_dir, params=params, warmup=not args.no_warmup, slice_index=args.slice,
        fixed_lam=args.fixed_lam,
    )
    if args.quick:
        cfg.datasets, cfg.masks, cfg.accelerations, cfg.variants = ["demo"], ["random"], [4], ["default"]
    return cfg


def run_from_args(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    out = run_benchmark(config_from_args(args))
    if not args.no_write:
        md, js = write_results(out, args.out, args.name)
        print(f"wrote {md} and {js}")
    else:
        print(to_markdown(out))
    failed = [r for r in out["records"] if r["status"] == "error"]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
