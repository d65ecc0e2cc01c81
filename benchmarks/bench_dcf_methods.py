"""Density compensation methods on real radial data: Pipe-Menon vs Voronoi vs the analytic ramp on the 12-coil
cardiac set (25 full-diameter spokes x 256 samples at multiples of 14.4 deg, grid 256, recon 128;
``gpunufft_radial_cardiac12ch`` in the real-data folder).

    python -m benchmarks.bench_dcf_methods [--realdata DIR] [--png /tmp/dcf_methods_cardiac.png] [--repeats 3]

For each method it prints the time to compute the weights (median of the repeats; Pipe-Menon includes building
its interpolation matrix), the weights' growth (mean weight at |k| in [2.8, 3.1] rad over the mean at [0.9, 1.1]
rad; the true area grows like |k|: ratio ~3), and the sharpness of the density-compensated adjoint (RSS over the
coils, cropped to the 128x128 field of view, each image normalised to its own scale):

- ``hf``: the fraction of the image's spectral energy above half the maximal spatial frequency (|k| > pi/2 on
  the recon grid). Streaks raise it too: read it together with the images.
- ``edge``: the equivalent width (pixels) of the steepest edges on the profiles through the image centre:
  (max - min within +-6 px) / max |gradient|, median over the 4 steepest edges (2 per profile, row and column).
  A blurred edge is wider.

The side-by-side PNG shows the three adjoints on one grey scale each and the weights against |k|. Exits 0
(printing why) when the data is absent, so ``benchmarks.run_all`` can run it anywhere.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from workbench import paths

FILE = "gpunufft_radial_cardiac12ch/radial_cardiac_25_projections.mat"
METHODS = ("pipe-menon", "voronoi", "ramp")


def default_realdata() -> Path:
    return paths.realdata_dir()


def hf_fraction(img: np.ndarray) -> float:
    """Energy of the centred spectrum beyond half the maximal spatial frequency, over the total."""
    h, w = img.shape
    spec = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    ky = (np.arange(h) - h // 2) * 2 * math.pi / h
    kx = (np.arange(w) - w // 2) * 2 * math.pi / w
    r = np.hypot(*np.meshgrid(ky, kx, indexing="ij"))
    return float(spec[r > math.pi / 2].sum() / spec.sum())


def _profile_edges(p: np.ndarray, half: int = 6, n: int = 2) -> list[float]:
    g = np.abs(np.gradient(p))
    widths = []
    for _ in range(n):
        i = int(np.argmax(g))
        if g[i] <= 0:
            break
        lo, hi = max(0, i - half), min(len(p), i + half + 1)
        widths.append(float((p[lo:hi].max() - p[lo:hi].min()) / g[i]))
        g[lo:hi] = 0  # the next steepest edge elsewhere
    return widths


def edge_width(img: np.ndarray) -> float:
    """Median equivalent width of the steepest edges on the centre row and column (pixels)."""
    h, w = img.shape
    widths = _profile_edges(img[h // 2]) + _profile_edges(img[:, w // 2])
    return float(np.median(widths))


def adjoint_rss(scan, dcf: torch.Tensor) -> np.ndarray:
    from workbench.arrays import center_crop
    from workbench.physics.nufft import NufftSense

    traj = scan.trajectory_tensor()
    k = scan.kspace(0)
    op = NufftSense(None, traj, scan.grid_shape, dcf=dcf, toeplitz=False, interp="table")
    coils = op.dc_adjoint(k[:, None, :])  # [C, H, W]: the coil axis as a batch axis
    rss = coils.abs().pow(2).sum(0).sqrt().numpy()
    return center_crop(rss, scan.recon_shape)


def measure(path: Path, repeats: int = 3) -> dict[str, dict]:
    from workbench.io import open_scan
    from workbench.sampling.dcf import compute_dcf

    scan = open_scan(path)
    traj = scan.trajectory_tensor()
    r = traj.double().norm(dim=0)
    mid, edge = (r > 0.9) & (r < 1.1), (r > 2.8) & (r < 3.1)
    out: dict[str, dict] = {}
    for method in METHODS:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dcf = compute_dcf(traj, scan.grid_shape, method)
            times.append(time.perf_counter() - t0)
        img = adjoint_rss(scan, dcf)
        img_n = img / np.percentile(img, 99.5)
        out[method] = {
            "time_s": statistics.median(times),
            "growth": float(dcf[edge].double().mean() / dcf[mid].double().mean()),
            "edge_weight": float(dcf[edge].double().mean()),
            "hf": hf_fraction(img_n),
            "edge_px": edge_width(img_n),
            "image": img_n,
            "dcf": dcf.numpy(),
            "radius": r.numpy(),
        }
    return out


def save_png(results: dict[str, dict], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results) + 1, figsize=(4.2 * (len(results) + 1), 4.4))
    for ax, (method, row) in zip(axes, results.items()):
        ax.imshow(row["image"], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{method}\nhf {row['hf']:.4f}, edge {row['edge_px']:.2f} px, {row['time_s'] * 1e3:.0f} ms",
                     fontsize=9)
        ax.axis("off")
    ax = axes[-1]
    for method, row in results.items():
        order = np.argsort(row["radius"])
        ax.plot(row["radius"][order], row["dcf"][order], ".", ms=1.5, label=method)
    ax.set_xlabel("|k| (rad)")
    ax.set_ylabel("weight (Cartesian cells of the 256 grid)")
    ax.set_title("density compensation vs |k|", fontsize=9)
    ax.legend(markerscale=6, fontsize=8)
    fig.suptitle("DCF adjoint (RSS, 12 coils) of the 25-spoke radial cardiac set", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", default=str(default_realdata()), help="the real-data folder")
    parser.add_argument("--png", default="/tmp/dcf_methods_cardiac.png", help="where to save the side-by-side PNG")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = Path(args.realdata) / FILE
    if not path.exists():
        print(f"bench_dcf_methods: {path} not found; skipped")
        return None
    results = measure(path, args.repeats)
    print(f"{'method':<12}{'time':>9}{'w(2.8-3.1)':>12}{'growth':>8}{'hf':>9}{'edge px':>9}")
    for method, row in results.items():
        print(f"{method:<12}{row['time_s'] * 1e3:>7.1f}ms{row['edge_weight']:>12.2f}{row['growth']:>8.2f}"
              f"{row['hf']:>9.4f}{row['edge_px']:>9.2f}")
    if args.png:
        save_png(results, args.png)
        print(f"saved {args.png}")
    return results


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # torchkbnufft's forked threads can abort the interpreter at exit (see workbench.cli)
