"""``workbench recon FILE --slice all|A:B|A,B,C --method NAME [...] [--out volume.h5]``: the volume mode of
``recon`` (:mod:`workbench.volume`). Every slice runs in this one process, one after the other, with the same
sampling, method and parameters; progress goes to stderr per slice (not with ``--json``); ``--out`` gets one
file with every slice (HDF5 volume result, ``.nii``/``.nii.gz`` magnitude or ``.npy`` complex stack), written
atomically: an interrupted or failed run leaves none."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from workbench.arrays import jsonable
from workbench.errors import WorkbenchError

__all__ = ["run_volume"]


class SliceProgress:
    """Progress on stderr: the method's progress within a slice (in place on a terminal) and a line per slice."""

    def __init__(self, method: str, n: int, stream=None):
        self.method, self.n = method, n
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0

    def progress(self, k: int, index: int, job: Any) -> None:
        if not self.tty:
            return
        text = f"{self.method}: slice {index} ({k + 1}/{self.n}) {100 * job.progress:3.0f}% {job.progress_text}"
        self.stream.write("\r" + text.rstrip() + " " * max(self.width - len(text.rstrip()), 0))
        self.width = len(text.rstrip())
        self.stream.flush()

    def slice_done(self, k: int, record: Any, image: Any) -> None:
        m = record.metrics
        scores = f"  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}" if m else ""
        line = f"{self.method}: slice {record.slice} ({k + 1}/{self.n}) done in {record.time_s:.2f} s{scores}"
        self.stream.write(("\r" + line + " " * max(self.width - len(line), 0)) if self.tty else line)
        self.stream.write("\n")
        self.width = 0
        self.stream.flush()


def run_volume(args: argparse.Namespace, scan: Any, method: Any, params: Any, device: str, sampling: Any,
               inputs: tuple, command_line) -> int:
    """Reconstruct the slices ``args.slice`` names; print a summary (or one JSON line)."""
    from workbench.volume import parse_slices, reconstruct_volume

    for flag, value in (("--validate", args.validate), ("--maps-file", args.maps_file)):
        if value:
            raise WorkbenchError(f"{flag} applies to one slice; it cannot be combined with --slice {args.slice}")
    slices = parse_slices(args.slice, scan.n_slices, args.file)
    args.slice_index = args.slice
    shown = None if args.json else SliceProgress(method.name, len(slices))
    provenance = {"scan": os.fspath(args.file), "slices": slices, "command": command_line(args),
                  "sampling": sampling.to_dict() if sampling is not None else None, "maps": args.maps,
                  "device": device}
    volume = reconstruct_volume(
        scan, slices, method, params, sampling=sampling, device=device, maps_method=args.maps,
        dcf_method=args.dcf, remove_oversampling=not args.keep_oversampling, score_mode=args.score_mode,
        out=args.out, inputs=inputs, provenance=provenance,
        on_progress=shown.progress if shown else None, on_slice=shown.slice_done if shown else None)
    summary = dict(volume.to_json_summary(), file=os.fspath(args.file), score_mode=args.score_mode)
    if args.json:
        print(json.dumps(jsonable(summary), separators=(",", ":")))
        return 0
    times = [r.time_s for r in volume.records]
    print(f"method    {method.name} {method.version} on {device}")
    print(f"data      {os.path.basename(os.fspath(args.file))}, {len(slices)} slice(s) {slices[0]}..{slices[-1]}: "
          + (sampling.describe() if sampling is not None else "the scan's own sampling"))
    print(f"time      {volume.time_s:.2f} s in all; the method {sum(times):.2f} s "
          f"({min(times):.2f}-{max(times):.2f} s a slice)")
    if volume.metrics:
        m = volume.metrics
        print(f"volume    PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}  NMSE {m['nmse']:.4g}  ({args.score_mode}: "
              "PSNR and NMSE over the volume, SSIM the mean over slices)")
    if args.out:
        print(f"saved     {args.out}")
    return 0
