"""Speed of the physics layer: coil maps, Cartesian SENSE, NUFFT vs Toeplitz normal.

    python -m benchmarks.bench_physics [--device cpu|cuda] [--repeats 5] [--threads N]

Prints one line per measurement (median and minimum of ``repeats`` runs after a warm-up) and returns the
figures from :func:`run` as a dict. Reference points: BART ``ecalib`` takes ~0.45 s for 8x256x256 on this
project's reference machine; the NUFFT pair / Toeplitz target for 256x256, 8 coils, 32k samples is ~294 / ~23 ms.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from workbench.physics.coils import estimate_acs_maps, estimate_espirit_maps
from workbench.physics.fft import fft2c
from workbench.physics.nufft import NufftSense
from workbench.physics.sense import CartesianSense


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats: int) -> tuple[float, float]:
    """(median, min) seconds of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def simulated_kspace(n_coils: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth elliptical object with Gaussian coil profiles: (k-space [C, H, W], maps [C, H, W])."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    obj = ((yy / 0.85) ** 2 + (xx / 0.7) ** 2 < 1) * (1 + 0.3 * np.cos(6 * yy) * np.sin(5 * xx))
    maps = np.stack([np.exp(-((yy - 1.3 * math.sin(a)) ** 2 + (xx - 1.3 * math.cos(a)) ** 2) / 1.3) * np.exp(1j * a * xx)
                     for a in np.linspace(0, 2 * np.pi, n_coils, endpoint=False)])
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0))
    m = torch.from_numpy(maps.astype(np.complex64)).to(device)
    k = fft2c(m * torch.from_numpy(obj.astype(np.complex64)).to(device))
    g = torch.Generator().manual_seed(0)
    k = k + 1e-3 * float(k.abs().max()) * torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g)).to(device)
    return k, m


def radial(n_spokes: int, n_read: int) -> torch.Tensor:
    ang = np.pi * np.arange(n_spokes) / n_spokes
    r = (np.arange(n_read) - n_read // 2) * 2 * np.pi / n_read
    return torch.tensor(np.stack([(r[None] * np.sin(ang[:, None])).ravel(), (r[None] * np.cos(ang[:, None])).ravel()]),
                        dtype=torch.float32)


def run(device: str = "cpu", repeats: int = 5, report=print) -> dict[str, float]:
    out: dict[str, float] = {}

    def record(name: str, fn, note: str = ""):
        med, mn = timeit(fn, device, repeats)
        out[name] = med
        report(f"{name:<44s} median {1e3 * med:9.1f} ms   min {1e3 * mn:9.1f} ms  {note}")

    report(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={repeats}")

    # --- coil maps, 8 x 256 x 256 ---------------------------------------------------------------------------
    k8, _ = simulated_kspace(8, 256, 256, device)
    record("espirit 8x256x256 (calib 24, kernel 6)", lambda: estimate_espirit_maps(k8), "(BART ecalib ~450 ms)")
    record("acs maps 8x256x256 (calib 24)", lambda: estimate_acs_maps(k8))

    # --- Cartesian SENSE, 16 x 320 x 320 --------------------------------------------------------------------
    k16, maps16 = simulated_kspace(16, 320, 320, device)
    g = torch.Generator().manual_seed(1)
    cols = torch.rand(320, generator=g) < 0.25
    cols[160 - 13 : 160 + 13] = True
    A = CartesianSense(maps16, cols.to(device))
    x = torch.randn(320, 320, dtype=torch.complex64, generator=g).to(device)
    y = A(x)
    record("fft2c 16x320x320", lambda: fft2c(k16))
    record("CartesianSense forward 16x320x320", lambda: A(x))
    record("CartesianSense adjoint 16x320x320", lambda: A.adjoint(y))
    record("CartesianSense normal 16x320x320", lambda: A.normal(x))

    # --- NUFFT, 256 x 256, 8 coils, 32k samples -------------------------------------------------------------
    _, maps8 = simulated_kspace(8, 256, 256, device)
    traj = radial(64, 512).to(device)  # 32768 samples
    r = traj.pow(2).sum(0).sqrt() * 256 / (2 * np.pi)
    dcf = torch.clamp(r, min=0.125) * (np.pi / 64) * 0.5
    x = torch.randn(256, 256, dtype=torch.complex64, generator=g).to(device)
    import torchkbnufft  # noqa: F401  (not part of the timings below)

    def once(name, fn):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out[name] = time.perf_counter() - t0
        report(f"{name:<44s} {1e3 * out[name]:9.1f} ms (once per operator)")

    N = NufftSense(maps8, traj, dcf=dcf)
    once("Toeplitz kernel (first normal call)", lambda: N.toeplitz_kernel())
    once("interpolation matrices (first forward)", lambda: N(x))
    yk = N(x)
    record("NUFFT forward (8 coils, 32k samples)", lambda: N(x))
    record("NUFFT adjoint", lambda: N.adjoint(yk))
    record("NUFFT pair A^H A x", lambda: N.adjoint(N(x)), "(target ~294 ms)")
    record("Toeplitz normal A^H A x", lambda: N.normal(x), "(target ~23 ms)")
    Nt = NufftSense(maps8, traj, dcf=dcf, interp="table")
    record("NUFFT pair, table interpolation", lambda: Nt.adjoint(Nt(x)))

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    out["toeplitz_vs_pair_rel"] = rel(N.normal(x), N.adjoint(N(x)))
    out["toeplitz_vs_pair_dcf_rel"] = rel(N.weighted_normal(x), N.adjoint(dcf * N(x)))
    report(f"Toeplitz vs NUFFT pair relative difference: {out['toeplitz_vs_pair_rel']:.2e} (no dcf), "
           f"{out['toeplitz_vs_pair_dcf_rel']:.2e} (dcf)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.device, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
