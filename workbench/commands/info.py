"""``workbench info FILE [--json] [--format NAME] [--option key=value ...]``: what a scan file holds.

Prints ``Scan.summary()`` (format, slices, coils, matrix, recon size, sampling, trajectory, reference, header
highlights) as aligned ``key  value`` lines, or one JSON object with ``--json``. Reader options are given as
``--option key=value`` (values: integers, floats, true/false, none, ``a,b`` tuples, else text).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from workbench.arrays import jsonable
from workbench.errors import WorkbenchError
from workbench.io.options import parse_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="raw scan file (fastMRI .h5, ISMRMRD .h5/.mrd, .npy/.npz, BART, .mat, twix)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.add_argument("--format", metavar="NAME", help="force a reader (e.g. fastmri, ismrmrd, npy)")
    parser.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                        help="reader option, e.g. kspace_var=ksp, coil_axis=0, image_domain=true (repeatable)")


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, typed value)."""
    if "=" not in text:
        raise WorkbenchError(f"--option {text!r}: expected KEY=VALUE")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise WorkbenchError(f"--option {text!r}: empty key")
    return key, parse_value(raw.strip())


def _extras(scan: Any) -> dict[str, Any]:
    """Derived facts worth a line: acceleration and the mask's pattern."""
    out: dict[str, Any] = {}
    if scan.is_cartesian and scan.acquired_mask is not None and not scan.fully_sampled:
        frac = scan.sampled_fraction
        if frac > 0:
            out["acceleration"] = round(1.0 / frac, 2)
        m = np.asarray(scan.acquired_mask, bool)
        enc = scan.encoded_mask if scan.encoded_mask is not None else np.ones_like(m)
        rows = m[np.asarray(enc).any(axis=1)]
        out["mask_pattern"] = "lines (phase-encode columns)" if (rows == rows[0]).all() else "2D (both axes)"
    return out


def _text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (int, np.integer)) for x in v):
            return " x ".join(str(x) for x in v)
        return ", ".join(_text(x) for x in v)
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    from workbench.io import open_scan

    options = dict(parse_option(o) for o in args.option)
    scan = open_scan(args.file, format=args.format, **options)
    summary = scan.summary()
    summary.update(_extras(scan))
    if args.json:
        print(json.dumps(jsonable(summary)))
        return 0
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key.ljust(width)}  {_text(value)}")
    return 0
