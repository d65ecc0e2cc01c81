"""Whole volumes: ``workbench recon FILE --slice all`` against one ``workbench recon FILE --slice i`` per slice.

    python -m benchmarks.bench_volume [--slices 35] [--coils 16] [--shape 320,368] [--method cg-sense]
                                      [--folder /tmp/...] [--keep] [--name volume]

A synthetic fastMRI-size volume (``workbench.simulate.generate_slice`` per slice, 2x readout oversampling:
``--shape 320,368`` gives the 640x368 grid of fastMRI's knee files) is written slice by slice into a fastMRI file
in a temporary folder (never in the repository; about 1 GB at 35 slices and 16 coils). Both sides run the same
command (``--method``, its defaults, ``--mask random --accel 4``, ``--out``): the volume mode before and after
the single-slice commands (their mean), the single-slice command once per slice, each as a whole process under
``/usr/bin/time -v`` (wall time, CPU time and peak resident memory; on a shared machine the CPU time moves less
with the load than the wall time). The result files are checked to agree slice by slice. Timings never enter
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_volume(path: Path, n_slices: int, n_coils: int, shape: tuple[int, int]) -> float:
    """Simulate ``n_slices`` brain slices and write them as one fastMRI file, a slice at a time; seconds taken."""
    import h5py

    from workbench.simulate import generate_slice, ismrmrd_header_xml

    t0 = time.perf_counter()
    grid = (2 * shape[0], shape[1])
    positions = np.linspace(-15.0, 60.0, n_slices)  # within the anatomy (-20..66 mm MNI z)
    header = ismrmrd_header_xml(encoded=grid, recon=shape, fov_mm=(220.0 * shape[0] / shape[1], 220.0),
                                slice_thickness_mm=3.0, n_slices=n_slices, n_coils=n_coils)
    top = 0.0
    with h5py.File(path, "w") as f:
        k = f.create_dataset("kspace", shape=(n_slices, n_coils, *grid), dtype=np.complex64,
                             chunks=(1, n_coils, *grid))
        ref = f.create_dataset("reconstruction_rss", shape=(n_slices, *shape), dtype=np.float32)
        for i, z in enumerate(positions):
            s = generate_slice(1000 + i, shape=shape, readout_oversampling=2, n_coils=n_coils,
                               slice_position=float(z), snr=30.0)
            k[i] = s["kspace"]
            ref[i] = s["reference"]
            top = max(top, float(s["reference"].max()))
            print(f"simulated slice {i + 1}/{n_slices}", file=sys.stderr, flush=True)
        f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode()))
        f.attrs["max"] = top
        f.attrs["acquisition"] = "synthetic fastMRI-size volume"
    return time.perf_counter() - t0


def timed(cmd: Sequence[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds (user + system), peak resident MB) of one whole process (``/usr/bin/time -v``)."""
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")

    def field(name: str) -> float:
        return float(re.search(rf"{name}: ([\d.]+)", out.stderr).group(1))

    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    return wall, cpu, field(r"Maximum resident set size \(kbytes\)") / 1024


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slices", type=int, default=35)
    p.add_argument("--coils", type=int, default=16)
    p.add_argument("--shape", default="320,368", help="image H,W (the grid has twice H: readout oversampling)")
    p.add_argument("--method", default="cg-sense")
    p.add_argument("--folder", default=None, help="where the volume is written (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the folder (and reuse a volume already there)")
    p.add_argument("--name", default="volume")
    args = p.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    folder = Path(args.folder or tempfile.mkdtemp(prefix="wb-volume-"))
    folder.mkdir(parents=True, exist_ok=True)
    scan = folder / f"volume_{args.slices}x{args.coils}x{2 * shape[0]}x{shape[1]}.h5"
    try:
        sim_s = None
        if not scan.exists():
            sim_s = write_volume(scan, args.slices, args.coils, shape)
        py = [sys.executable, "-m", "workbench", "recon", str(scan), "--method", args.method, "--mask", "random",
              "--accel", "4", "--json"]
        load_before = [round(v, 2) for v in os.getloadavg()]
        # the volume runs before and after the single-slice commands, so that a change of load hits both sides
        volume_runs = [timed([*py, "--slice", "all", "--out", str(folder / "volume_result.h5")])]
        single = []
        for i in range(args.slices):
            single.append(timed([*py, "--slice", str(i), "--out", str(folder / f"slice_{i}.h5")]))
            print(f"single slice {i}: {single[-1][0]:.1f} s", file=sys.stderr, flush=True)
        volume_runs.append(timed([*py, "--slice", "all", "--out", str(folder / "volume_result.h5")]))
        load_after = [round(v, 2) for v in os.getloadavg()]
        vol_wall = float(np.mean([w for w, _, _ in volume_runs]))
        vol_cpu = float(np.mean([c for _, c, _ in volume_runs]))
        vol_peak = max(m for _, _, m in volume_runs)

        from workbench.result import Result
        from workbench.volume import load_volume

        vol = load_volume(folder / "volume_result.h5")
        worst = max(float(np.abs(vol["image"][i] - Result.load(folder / f"slice_{i}.h5").image.numpy()).max()
                          / np.abs(vol["image"][i]).max()) for i in range(args.slices))
        singles_wall, singles_cpu = sum(w for w, _, _ in single), sum(c for _, c, _ in single)
        single_method_s = sum(Result.load(folder / f"slice_{i}.h5").time_s for i in range(args.slices))
        record = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(), "load_before": load_before,
            "load_after": load_after, "slices": args.slices, "coils": args.coils, "grid": [2 * shape[0], shape[1]],
            "recon_shape": list(shape), "method": args.method, "kspace_gb": round(scan.stat().st_size / 1e9, 3),
            "simulation_s": sim_s, "volume_wall_s": round(vol_wall, 2), "volume_runs_wall_s": [
                round(w, 2) for w, _, _ in volume_runs], "volume_cpu_s": round(vol_cpu, 2),
            "volume_peak_mb": round(vol_peak), "singles_wall_s": round(singles_wall, 2),
            "singles_cpu_s": round(singles_cpu, 2), "single_wall_s_median": round(float(np.median(
                [w for w, _, _ in single])), 2), "single_peak_mb_max": round(max(m for _, _, m in single)),
            "singles_method_s": round(single_method_s, 2), "ratio": round(vol_wall / singles_wall, 3),
            "cpu_ratio": round(vol_cpu / singles_cpu, 3), "max_relative_difference": worst,
            "volume_metrics": vol["meta"].get("metrics"),
            "volume_method_s": round(sum(r["time_s"] for r in vol["meta"]["per_slice"]), 2),
            "volume_workers": vol["meta"].get("workers", 1),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        (RESULTS_DIR / f"{args.name}.md").write_text(to_markdown(record))
        print(to_markdown(record))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def to_markdown(r: dict) -> str:
    return "\n".join([
        "# Whole volumes: `recon --slice all` against one command per slice", "",
        f"Made by `python -m benchmarks.bench_volume` on {r['date']} ({r['cores']} cores, load average "
        f"{r['load_before']} before, {r['load_after']} after; other work shared the machine).", "",
        f"Data: a synthetic fastMRI-size volume, {r['slices']} slices x {r['coils']} coils, grid "
        f"{r['grid'][0]}x{r['grid'][1]} (2x readout oversampling) -> {r['recon_shape'][0]}x{r['recon_shape'][1]}, "
        f"{r['kspace_gb']} GB of k-space, written slice by slice by `workbench.simulate.generate_slice` into a "
        "temporary folder. Both sides: `workbench recon FILE --method "
        f"{r['method']} --mask random --accel 4 --json --out ...` with the method's defaults (ESPIRiT maps per "
        "slice), whole processes under `/usr/bin/time -v`.", "",
        "| | wall time | CPU time (user + system) | peak resident memory |", "|---|---|---|---|",
        f"| `--slice all` (one process, one result file; mean of the runs before and after the singles: "
        f"{', '.join(f'{w:.1f}' for w in r['volume_runs_wall_s'])} s) | {r['volume_wall_s']:.1f} s | "
        f"{r['volume_cpu_s']:.1f} s | {r['volume_peak_mb']} MB |",
        f"| {r['slices']} x `--slice i` (one process each) | {r['singles_wall_s']:.1f} s (median "
        f"{r['single_wall_s_median']:.2f} s a command) | {r['singles_cpu_s']:.1f} s | {r['single_peak_mb_max']} MB "
        "(the largest) |",
        f"| ratio | **{r['ratio']:.2f}x** | **{r['cpu_ratio']:.2f}x** | |", "",
        f"The (last) volume run solved {r.get('volume_workers', 1)} slice(s) at a time"
        + (", one intra-op thread each" if r.get("volume_workers", 1) > 1 else "")
        + f"; its slices' method times add up to {r['volume_method_s']:.1f} s (slices in flight overlap), "
        f"against {r['singles_method_s']:.1f} s over the single-slice commands (the rest: start-up, maps, reading, "
        "scoring, writing). The volume run holds the data of the slices in flight only, so its peak memory "
        "depends on the number of workers, not on the number of slices (the k-space is "
        f"{r['kspace_gb']} GB). "
        f"Largest difference between a volume slice and its single-slice result: {r['max_relative_difference']:.2g} "
        "of the slice's peak. Volume metrics (fastMRI: PSNR and NMSE over the volume, SSIM the mean over slices): "
        + (", ".join(f"{k} {v:.4g}" for k, v in (r["volume_metrics"] or {}).items()) or "none") + ".", ""])


if __name__ == "__main__":
    sys.exit(main())
