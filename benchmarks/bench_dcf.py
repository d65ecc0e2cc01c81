"""Density compensation speed: workbench's Pipe-Menon (sparse matrix) vs torchkbnufft's
calc_density_compensation_function, on a 256 x 256 grid with ~32k samples.

    python -m benchmarks.bench_dcf [--repeats 5] [--size 256]

Prints the median wall time of the whole call (matrix build included), the CPU time, and the agreement of the
two estimates after a global scale fit (torchkbnufft's weights have a different normalisation).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch


def _time(fn, repeats: int) -> tuple[float, float, torch.Tensor]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def _scale_fit_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.reshape(-1).abs().double()
    ours = ours.double()
    scale = (ours * ref).sum() / (ref * ref).sum()
    return ((ours - scale * ref).norm() / ours.norm()).item()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    import torchkbnufft as tkbn

    from workbench.sampling.dcf import pipe_menon_dcf
    from workbench.sampling.trajectories import radial_trajectory, spiral_trajectory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--skip-torchkbnufft", action="store_true", help="time only the workbench code")
    args = parser.parse_args(argv)
    n = args.size
    grid = (n, n)
    cases = {
        f"radial 64x{2 * n}": radial_trajectory(64, 2 * n),
        f"golden-radial 64x{2 * n}": radial_trajectory(64, 2 * n, golden=True),
        f"spiral 32x{n * 4}": spiral_trajectory(32, 4 * n, grid, alpha=1.5),
    }
    print(f"grid {n}x{n}, torch threads {torch.get_num_threads()}, median of {args.repeats} runs")
    print(f"{'trajectory':<24}{'K':>7}{'ours wall':>11}{'ours cpu':>10}{'torch path':>12}{'tkbn wall':>11}"
          f"{'speed-up':>10}{'rel.diff':>10}")
    results: dict[str, dict[str, float]] = {}
    for name, traj in cases.items():
        wall, cpu, ours = _time(lambda: pipe_menon_dcf(traj, grid), args.repeats)
        wall_t, _, _ = _time(lambda: pipe_menon_dcf(traj, grid, backend="torch"), args.repeats)
        row = {"samples": traj.shape[1], "ours_wall_s": wall, "ours_cpu_s": cpu, "torch_backend_wall_s": wall_t}
        if not args.skip_torchkbnufft:
            tkbn.calc_density_compensation_function(traj[:, :100], grid)  # JIT warm-up, not timed
            wall_ref, _, ref = _time(lambda: tkbn.calc_density_compensation_function(traj, grid),
                                     max(1, args.repeats // 2))
            row.update(tkbn_wall_s=wall_ref, speedup=wall_ref / wall, rel_diff=_scale_fit_error(ours, ref))
        results[name] = row
        ref_cols = (f"{row['tkbn_wall_s']:>10.3f}s{row['speedup']:>9.1f}x{row['rel_diff']:>10.1e}"
                    if "tkbn_wall_s" in row else "")
        print(f"{name:<24}{row['samples']:>7}{wall:>10.3f}s{cpu:>9.3f}s{wall_t:>11.3f}s{ref_cols}")
    return results


if __name__ == "__main__":
    main()
    # torchkbnufft's torch.jit.fork workers (torch 2.13, CPU) can still be tearing down when the interpreter
    # exits right after them, which aborts the process (exit 134) after all output is printed; leave directly.
    sys.stdout.flush()
    os._exit(0)
