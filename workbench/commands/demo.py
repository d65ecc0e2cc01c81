"""``workbench demo``: write (or reuse) the simulated demo scan and print its path.

``--headless`` also prints the zero-filled baseline: for each acceleration and the fastMRI line-mask families
(random, equispaced; centre fraction 0.08 at 4x, 0.04 at 8x, i.e. 0.32 / R as in fastMRI), the PSNR / SSIM /
NMSE of the RSS of the undersampled middle slice against the file's stored reference (data range = the volume
maximum, as fastMRI evaluates). Without ``--headless`` it opens the app on the demo scan.
"""

from __future__ import annotations

import argparse
import json
import time

from workbench.errors import SamplingError

MASK_SEED = 0  # fixed, so that the printed table is reproducible


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="do not open the app; print zero-filled metrics")
    p.add_argument("--accelerations", type=int, nargs="+", default=[4, 8], metavar="R",
                   help="accelerations of the table (default: 4 8)")
    p.add_argument("--regenerate", action="store_true", help="write the demo scan again even if cached")
    p.add_argument("--json", action="store_true", help="with --headless: print the table as JSON")


def center_fraction_for(acceleration: float) -> float:
    """fastMRI's pairing: 0.08 at 4x, 0.04 at 8x, i.e. 0.32 / R."""
    return 0.32 / acceleration


def zero_filled_table(path, accelerations=(4, 8)) -> dict:
    """Zero-filled RSS metrics of the middle slice of the scan at ``path`` for each acceleration and family."""
    import numpy as np

    from workbench.io import open_scan
    from workbench.physics.fft import center_crop, ifft2c, rss
    from workbench.sampling.masks import EquispacedLineMask, RandomLineMask, acs_shape, effective_acceleration
    from workbench.scoring import evaluate, volume_data_range

    scan = open_scan(path)
    index = scan.n_slices // 2
    kspace = scan.kspace(index)
    reference = scan.reference(index)
    # fastMRI scores a slice with its volume's maximum (stored as the file's "max" attribute)
    volume_max, _ = volume_data_range(scan, reference)
    rows = []
    for acc in accelerations:
        cf = center_fraction_for(acc)
        for family, cls in (("random", RandomLineMask), ("equispaced", EquispacedLineMask)):
            mask = cls(center_fractions=[cf], accelerations=[acc])(shape=tuple(kspace.shape[-2:]), seed=MASK_SEED)
            image = center_crop(rss(ifft2c(kspace * mask)), tuple(scan.recon_shape))
            m = evaluate(reference, image.numpy(), data_range=float(volume_max))
            rows.append({
                "mask": family, "acceleration": acc, "center_fraction": cf,
                "effective_acceleration": round(effective_acceleration(mask), 3),
                "acs_lines": int(acs_shape(mask)[1]),
                **{k: float(np.round(v, 6)) for k, v in m.items()},
            })
    return {"file": str(path), "slice": index, "reference": scan.reference_kind, "rows": rows}


def run(args: argparse.Namespace) -> int:
    from workbench.simulate import demo_scan_path

    bad = [r for r in args.accelerations if r < 1]
    if bad:
        raise SamplingError(f"demo: accelerations must be >= 1, got {', '.join(map(str, bad))}")
    t0 = time.perf_counter()
    path = demo_scan_path(regenerate=args.regenerate)
    elapsed = time.perf_counter() - t0
    if not args.headless:
        print(path)
        from workbench.cli import _open_app

        return _open_app(["--demo"])
    if not args.json:
        print(path, flush=True)  # first line: the path alone, for scripts
    table = zero_filled_table(path, args.accelerations)
    if args.json:
        print(json.dumps({**table, "seconds_to_write_or_find": round(elapsed, 3)}, indent=2))
        return 0
    print(f"demo scan ready in {elapsed:.2f} s; zero-filled RSS of slice {table['slice']} vs the stored "
          f"reference ({table['reference']}), data range = volume max:")
    print(f"{'mask':<11}{'R':>3}{'R_eff':>7}{'ACS':>5}{'PSNR dB':>9}{'SSIM':>8}{'NMSE':>9}")
    for r in table["rows"]:
        print(f"{r['mask']:<11}{r['acceleration']:>3}{r['effective_acceleration']:>7.2f}{r['acs_lines']:>5}"
              f"{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['nmse']:>9.4f}")
    return 0
