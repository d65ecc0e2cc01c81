"""``workbench recon FILE --method NAME [sampling] [--param k=v ...] [--json] [--out result.h5]``: reconstruct one
slice with a method and report PSNR / SSIM / NMSE against the reference. ``--slice all`` (or ``A:B``, ``A,B,C``)
reconstructs those slices in this one process into one ``--out`` file (:mod:`workbench.commands.recon_volume`).

Sampling (at most one):
- ``--mask random|equispaced|poisson|gaussian --accel R [--center-fraction F] [--seed S]``: retrospective
  Cartesian undersampling (fastMRI mask families by name);
- ``--trajectory radial|golden-radial|spiral --accel R``: retrospective non-Cartesian sampling of a fully sampled
  Cartesian scan (NUFFT of its coil images);
- ``--mask-file M.npy`` (a boolean ``[H, W]`` or ``[W]`` mask) or ``M.npz`` / ``M.json`` (a saved Sampling);
- none: the scan's own sampling (its acquired lines, or its trajectory).

``--dcf pipe-menon|voronoi|ramp``: the density compensation of a non-Cartesian problem (``--trajectory``, a saved
trajectory, or a non-Cartesian scan's own, replacing the file's weights); default: the sampling's own, the
file's, else Pipe-Menon. ``ramp`` is for radial trajectories only.

Coil maps: ``--maps espirit|acs`` (estimated) or ``--maps-file maps.npy`` (complex ``[C, H, W]``).

The method runs through the job engine's synchronous path (the same code path as the app's background jobs),
with a progress line on stderr (not with ``--json``). Metrics follow the fastMRI evaluation: magnitude, centre
crop, data range = the maximum of the reference *volume* (:func:`workbench.scoring.volume_data_range`: the file's
``max`` attribute, else the maximum over the stored reference slices; the slice's own maximum when the reference is
computed from the k-space).
``--score-mode fastmri|object|as-acquired`` (:data:`workbench.scoring.SCORE_MODES`): the full field of view
(default), inside the reference's object mask, or every image as a fully sampled scan of it; the output names the
mode of every number. ``--validate``: a score without a reference (:mod:`workbench.holdout`): the method runs again
on 4 disjoint folds, each holding out 7 % of the measured lines of a line mask (else samples) outside the
calibration region (seed 0); the pooled normalised error of its prediction of them, and the scan's k-space NMSE it
predicts (:func:`workbench.holdout.estimated_nmse`), are reported (lower is better).
``--json`` prints exactly one JSON line on stdout. ``--out`` saves the Result (image, mask / trajectory,
parameters, chosen weights, history, provenance, metrics, the command line) so that it can be reproduced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from typing import Any

import numpy as np

from workbench.arrays import jsonable
from workbench.errors import SamplingError, WorkbenchError

CARTESIAN_KINDS = ("random", "equispaced", "poisson", "gaussian")
# safe_run reports exceptions that are not user errors as "ValueError: ..." (a crash worth a traceback)
_CRASH = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning)\b: ")
NONCARTESIAN_KINDS = ("radial", "golden-radial", "spiral")
DEFAULT_ACCELERATION = 4.0
DCF_CHOICES = ("pipe-menon", "voronoi", "ramp")  # workbench.sampling.dcf.DCF_METHODS (not imported at start-up)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="raw scan file (fastMRI .h5, ISMRMRD, .npy/.npz, BART, .mat, twix)")
    p.add_argument("--slice", default=None, metavar="N|A:B|A,B|all",
                   help="slice index (default: the middle slice), or several slices into one result: all, A:B "
                        "(A to B-1), A,B,C (see workbench.volume)")
    p.add_argument("--method", required=True, metavar="NAME",
                   help="reconstruction method (see `workbench plugins`), e.g. zero-filled, cg-sense, l1-wavelet, tv")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. lam=0.003 or lam=auto (repeatable)")
    s = p.add_argument_group("sampling (default: the scan's own)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--mask", choices=CARTESIAN_KINDS, metavar="KIND",
                   help="retrospective Cartesian mask: " + ", ".join(CARTESIAN_KINDS))
    g.add_argument("--trajectory", choices=NONCARTESIAN_KINDS, metavar="KIND",
                   help="retrospective non-Cartesian trajectory: " + ", ".join(NONCARTESIAN_KINDS))
    g.add_argument("--mask-file", metavar="PATH", help="saved mask (.npy bool [H, W] or [W]) or sampling (.npz/.json)")
    s.add_argument("--accel", type=float, default=None, metavar="R",
                   help=f"acceleration of --mask / --trajectory (default {DEFAULT_ACCELERATION:g})")
    s.add_argument("--center-fraction", type=float, default=None, metavar="F",
                   help="fraction of fully sampled centre lines (default 0.32 / R for line masks)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the mask (default 0)")
    s.add_argument("--dcf", choices=DCF_CHOICES, default=None, metavar="METHOD",
                   help="density compensation of non-Cartesian data: " + ", ".join(DCF_CHOICES)
                   + " (default: the file's or the sampling's, else pipe-menon; ramp: radial only)")
    m = p.add_argument_group("coil maps")
    m.add_argument("--maps", choices=("espirit", "acs"), default="espirit", help="how to estimate coil maps")
    m.add_argument("--maps-file", metavar="PATH", help="coil maps to use (.npy complex [C, H, W])")
    p.add_argument("--keep-oversampling", action="store_true",
                   help="reconstruct the whole grid (default: a readout oversampled beyond the image size and fully "
                        "sampled is cropped to it first)")
    p.add_argument("--device", default="auto", metavar="DEV", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--plugin-dir", action="append", default=[], metavar="DIR",
                   help="extra folder of drop-in plugin .py files (repeatable)")
    p.add_argument("--score-mode", choices=("fastmri", "object", "as-acquired"), default="fastmri",
                   help="how images are scored: fastmri (full field of view, default), object (inside the "
                        "reference's object mask), as-acquired (each image as a fully sampled scan of it)")
    p.add_argument("--validate", action="store_true",
                   help="also score without a reference: run again on 4 folds, each holding out 7%% of the "
                        "measured lines (of a line mask; else samples) outside the calibration region, and report "
                        "the scan's k-space error predicted from their prediction")
    p.add_argument("--json", action="store_true", help="print one JSON line (metrics, time, parameters)")
    p.add_argument("--out", metavar="PATH", help="save the result (HDF5) with its sampling and parameters")
    p.add_argument("--format", metavar="NAME", help="force a reader (e.g. fastmri, ismrmrd, npy)")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="reader option (repeatable), as for `workbench info`")


# ---------------------------------------------------------------------------------------------------------
def parse_key_values(items: list[str], what: str) -> dict[str, str]:
    """``["lam=0.01", "n_iter=5"]`` -> ``{"lam": "0.01", "n_iter": "5"}`` (values stay strings: the method's
    parameter declarations convert them)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"{what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _load_npy(path: str, what: str, error=WorkbenchError) -> np.ndarray:
    if not os.path.exists(path):
        raise error(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not a readable .npy {what} file ({exc})") from None


def make_sampling_from_args(args: argparse.Namespace, scan: Any):
    """The Sampling the arguments ask for (None: the scan's own)."""
    from workbench.sampling import Sampling, make_sampling

    grid = tuple(scan.grid_shape)
    kind = args.mask or args.trajectory
    if kind is None and (args.accel is not None or args.center_fraction is not None):
        raise SamplingError("--accel and --center-fraction need --mask or --trajectory")
    if args.mask_file:
        path = args.mask_file
        if path.endswith((".npz", ".json")):
            sampling = Sampling.load(path)
        else:
            mask = _load_npy(path, "mask", SamplingError)
            if mask.dtype.kind not in "biuf" or mask.ndim not in (1, 2):
                raise SamplingError(f"{path}: a mask must be a boolean [H, W] or [W] array, got {mask.dtype} "
                                    f"{mask.shape}")
            try:
                sampling = Sampling.from_mask(mask != 0, shape=grid)
            except SamplingError as exc:
                raise SamplingError(f"{path}: {exc}") from None
        if sampling.is_cartesian and tuple(sampling.mask.shape) != grid:
            raise SamplingError(f"{path}: the mask is {tuple(sampling.mask.shape)}, the scan's grid is {grid}")
        return sampling
    if kind is None:
        return None
    accel = DEFAULT_ACCELERATION if args.accel is None else args.accel
    if args.trajectory and args.center_fraction is not None:
        raise SamplingError("--center-fraction applies to Cartesian masks only (trajectories always sample the "
                            "centre densely)")
    extra = {"dcf_method": args.dcf} if args.trajectory and getattr(args, "dcf", None) else {}
    return make_sampling(kind, grid, accel, seed=args.seed, center_fraction=args.center_fraction, **extra)


def load_maps(path: str, scan: Any) -> np.ndarray:
    maps = _load_npy(path, "coil maps")
    expected = (scan.n_coils, *scan.grid_shape)
    if maps.shape != expected:
        raise WorkbenchError(f"{path}: coil maps have shape {maps.shape}, expected {expected} (coils, grid)")
    if not np.issubdtype(maps.dtype, np.number) or not np.isfinite(maps).all():
        raise WorkbenchError(f"{path}: coil maps must be finite numbers")
    return maps.astype(np.complex64)


def _fmt(v: Any) -> str:
    if v is None:
        return "auto"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class ProgressLine:
    """Progress on stderr: one line updated in place on a terminal; otherwise (a log file) a line per 10%."""

    def __init__(self, name: str, stream=None):
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0
        self.shown = False
        self.decile = -1

    def __call__(self, job: Any) -> None:
        text = f"{self.name}: {100 * job.progress:3.0f}% {job.progress_text}".rstrip()
        if self.tty:
            pad = max(self.width - len(text), 0)
            self.width = len(text)
            self.stream.write("\r" + text + " " * pad)
            self.shown = True
        else:
            decile = int(10 * job.progress)
            if decile == self.decile:
                return
            self.decile = decile
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------------------
def command_line(args: argparse.Namespace) -> str:
    """The ``workbench recon`` command that reproduces this run (from the parsed arguments)."""
    parts = ["workbench", "recon", args.file, "--slice", str(args.slice_index), "--method", args.method]
    for flag in ("mask", "trajectory", "mask_file", "accel", "center_fraction", "dcf", "maps_file", "format",
                 "score_mode"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.mask or args.trajectory:
        parts += ["--seed", str(args.seed)]
    parts += ["--maps", args.maps, "--device", args.device] + (["--validate"] if args.validate else [])
    if getattr(args, "keep_oversampling", False):
        parts.append("--keep-oversampling")
    for flag, values in (("--param", args.param), ("--option", args.option), ("--plugin-dir", args.plugin_dir)):
        for v in values:
            parts += [flag, v]
    return " ".join(shlex.quote(str(p)) for p in parts)


def validate(jobs: Any, method: Any, problem: Any, params: Any, device: Any, scored: Any) -> dict[str, Any]:
    """The hold-out score (:mod:`workbench.holdout`) of the run's result ``scored``: ``method`` runs again,
    through the same job engine, on each of ``problem``'s hold-out folds (part of its measured samples held out),
    with the parameters the run ended with (its ``Result.chosen``)."""
    from workbench.holdout import folds, params_as_run, summary
    from workbench.jobs import JobState

    holdouts, results, as_run = folds(problem), [], params_as_run(method, params, scored.chosen)
    for held in holdouts:
        job = jobs.run_sync(method, held.train, as_run, device=device)
        if job.state is not JobState.DONE:
            raise WorkbenchError(f"{method.name} (hold-out run): {job.error.message if job.error else 'failed'}")
        results.append(job.result)
    return summary(holdouts, [r.image for r in results], [(r.extras or {}).get("image_is") for r in results],
                   scored.image, (scored.extras or {}).get("image_is"))


def run(args: argparse.Namespace) -> int:
    from workbench.atomic import refuse_overwrite
    from workbench.io import open_scan
    from workbench.jobs import JobQueue, JobState, resolve_device
    from workbench.methods import discover_methods
    from workbench.problem import Problem
    from workbench.scoring import SCORE_MODE_TEXT, ScoreError, score, volume_data_range, zero_filled_image_is
    from workbench.volume import is_volume_spec, parse_slices

    registry = discover_methods(plugin_dirs=args.plugin_dir)
    if args.method not in registry:
        failed = [e for e in registry.errors if e.name == args.method]
        if failed:
            raise WorkbenchError(f"method {args.method!r} failed to load: {failed[0].message}")
    method = registry.get(args.method)  # UnknownMethodError lists the known ones
    params = method.make_params(parse_key_values(args.param, "--param"))  # bad values fail before any work
    device = resolve_device(args.device)
    inputs = (args.file, args.mask_file, args.maps_file)
    if args.out:
        refuse_overwrite(args.out, inputs)  # before any work: --out never replaces an input
    options = {}
    if args.option:
        from workbench.commands.info import parse_option

        options = dict(parse_option(o) for o in args.option)
    scan = open_scan(args.file, format=args.format, **options)
    volume = is_volume_spec(args.slice)
    index = scan.n_slices // 2 if args.slice is None or volume else parse_slices(args.slice, scan.n_slices,
                                                                               args.file)[0]
    args.slice_index = index
    sampling = make_sampling_from_args(args, scan)
    if args.dcf is not None and (args.mask or (sampling is not None and sampling.is_cartesian)
                                 or (sampling is None and scan.is_cartesian)):
        raise SamplingError("--dcf applies to non-Cartesian data (--trajectory, a saved trajectory or a "
                            "non-Cartesian scan)")
    if volume:  # several slices into one result file: workbench/commands/recon_volume.py
        from workbench.commands.recon_volume import run_volume

        return run_volume(args, scan, method, params, device, sampling, inputs, command_line)
    maps = load_maps(args.maps_file, scan) if args.maps_file else None
    t_prepare = time.perf_counter()
    problem = Problem.from_scan(scan, index, sampling, device=device, maps=maps, maps_method=args.maps,
                                dcf_method=args.dcf, remove_oversampling=not args.keep_oversampling)
    prepare_s = time.perf_counter() - t_prepare

    had_maps = problem.has_maps
    progress = None if args.json else ProgressLine(method.name)
    jobs = JobQueue(device, progress_interval=0.1)
    try:
        job = jobs.run_sync(method, problem, params, device=device, on_progress=progress)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        print(f"workbench recon: {method.name} interrupted", file=sys.stderr)
        return 130
    if progress is not None:
        progress.close()
    if job.state is not JobState.DONE:
        if job.state is JobState.CANCELLED:
            raise WorkbenchError(f"{method.name}: cancelled")
        err = job.error
        if err is not None and err.traceback and _CRASH.match(err.message):
            print(err.traceback.rstrip(), file=sys.stderr)  # a plugin crash (not a user error): show where
        raise WorkbenchError(f"{method.name}: {err.message if err else 'failed'}")
    result = job.result

    metrics = zero_filled = score_error = None
    data_range = range_source = None
    mode = args.score_mode
    if problem.reference is not None:
        reference = problem.reference.numpy()
        data_range, range_source = volume_data_range(scan, reference)
        try:
            metrics = dict(score(reference, result.image, mode, data_range=data_range, problem=problem,
                                 image_is=result.extras.get("image_is")), mode=mode)
            zf = problem.crop(problem.zero_filled("rss")).cpu().numpy()
            zero_filled = dict(score(reference, zf, mode, data_range=data_range, problem=problem,
                                     image_is=zero_filled_image_is(problem)), mode=mode)
        except ScoreError as exc:  # degenerate reference or image: the reconstruction itself is fine
            metrics = zero_filled = None
            score_error = str(exc)
    holdout = validate(jobs, method, problem, params, device, result) if args.validate else None

    sampling_desc = sampling.describe() if sampling is not None else (
        "the scan's own sampling" + (f", R = {problem.acceleration:.2f}" if problem.is_cartesian else ""))
    summary = result.to_json_summary()
    summary.update(
        file=os.fspath(args.file), slice=index, sampling=sampling.to_dict() if sampling is not None else None,
        sampling_description=sampling_desc, acceleration=problem.acceleration, coils=problem.n_coils,
        grid=list(problem.grid_shape), recon_shape=list(problem.recon_shape), maps=(
            args.maps_file if args.maps_file else args.maps),
        metrics=metrics, zero_filled=zero_filled, data_range=data_range, data_range_source=range_source,
        score_mode=mode, score_error=score_error, no_reference=None if problem.reference is not None else (
            scan.no_reference_reason() or "the scan has no reference image"), holdout=holdout,
        prepare_s=round(prepare_s, 4), maps_estimated_in_run=problem.has_maps and not had_maps, out=args.out,
        dcf_method=problem.provenance.get("dcf_method"),
    )
    # The sampling (a drawn mask's whole bit string included) is printed once, at the top level; the result file
    # keeps it in its provenance too.
    provenance_sampling = (summary.get("provenance") or {}).pop("sampling", None)
    if summary["sampling"] is None:
        summary["sampling"] = provenance_sampling
    if args.out:
        result.provenance["command"] = command_line(args)
        result.provenance.setdefault("maps_file", args.maps_file)
        result.extras["metrics"] = jsonable(metrics) if metrics else {}
        result.extras["zero_filled_metrics"] = jsonable(zero_filled) if zero_filled else {}
        if data_range is not None:
            result.extras["data_range"] = data_range
        try:
            result.save(args.out, inputs=inputs)  # atomic: a failed write leaves the previous file
        except OSError as exc:
            raise WorkbenchError(f"{args.out}: cannot write the result ({exc})") from None

    if args.json:
        print(json.dumps(jsonable(summary), separators=(",", ":")))
        return 0
    print(f"method    {method.name} {method.version} on {result.device}")
    print(f"data      {os.path.basename(os.fspath(args.file))}, slice {index}: {sampling_desc}; "
          f"{problem.n_coils} coil(s), grid {problem.grid_shape[0]}x{problem.grid_shape[1]}"
          + ("" if problem.recon_shape == problem.grid_shape
             else f" -> {problem.recon_shape[0]}x{problem.recon_shape[1]}"))
    print("params    " + " ".join(f"{k}={_fmt(v)}" for k, v in result.params.items()))
    if result.chosen:
        print("chosen    " + " ".join(f"{k}={_fmt(v)}" for k, v in result.chosen.items()
                                     if not isinstance(v, (dict, list))))
    iters = f", {len(result.history)} iterations" if len(result.history) > 1 else ""
    maps_note = ", coil map estimation included" if problem.has_maps and not had_maps else ""
    print(f"time      {result.time_s:.2f} s{iters}{maps_note} (data preparation {prepare_s:.2f} s)")
    if metrics is not None:
        print(f"scoring   {mode}: {SCORE_MODE_TEXT[mode]}")
        print(f"PSNR      {metrics['psnr']:.2f} dB   (zero-filled {zero_filled['psnr']:.2f} dB; data range "
              f"{data_range:.4g}, {range_source})")
        print(f"SSIM      {metrics['ssim']:.4f}     (zero-filled {zero_filled['ssim']:.4f})")
        print(f"NMSE      {metrics['nmse']:.4g}    (zero-filled {zero_filled['nmse']:.4g})")
    elif score_error is not None:
        print(f"metrics   not computed: {score_error}")
    else:
        print(f"metrics   no reference image for this scan: {summary['no_reference']}")
    if holdout is not None:
        from workbench.holdout import score_text

        print(f"hold-out  NMSE {score_text(holdout['holdout_nmse'], holdout.get('holdout_nmse_se'))}  (the scan's "
              f"k-space error predicted from "
              f"{holdout['holdout_samples']} held-out samples in {holdout['holdout_folds']} folds, "
              f"{100 * holdout['holdout_fraction']:.1f}% of the measured, error {holdout['holdout_error']:.4g} "
              f"there; lower is better)")
    for line in getattr(job, "log", []):
        print(f"log       {line}")
    if args.out:
        print(f"saved     {args.out}")
    return 0
