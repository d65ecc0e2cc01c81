"""Responsiveness of the desktop app.

    python -m benchmarks.bench_gui [--coils 16] [--shape 320x320] [--recon 320x320] [--repeats 3] [--method NAME]

1. Slider latency: with the sampling tab shown, the time from an acceleration-slider change to the updated mask,
   zero-filled image and PSNR/SSIM on screen (the slot that redraws the views has run), for a ``C``-coil slice
   (default 16 coils, 320x320; ``--shape 640x368 --recon 320x320`` for fastMRI knee geometry). Masks are
   random-line masks at R = 2..12 in quarter steps, each visited once first, then ``repeats`` times (the
   session caches generated masks, as when a user moves the slider back and forth). The model alone
   (``Session.set_acceleration`` + zero-filled image + metrics) and one centred FFT of the slice
   (``ifft2c``, torch) are timed too, for scale.
2. Event-loop stall: while a reconstruction job runs (the built-in ``cg-sense`` when present, else the
   example Landweber plugin), a 5 ms QTimer records its ticks; the longest gap between ticks is the longest
   time the GUI could not react. Progress updates flow to the jobs panel meanwhile.

Prints a JSON summary (milliseconds). Runs offscreen when there is no display.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _shape(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def make_scan(n_coils: int, shape: tuple[int, int], recon: tuple[int, int], seed: int = 0):
    """A fully sampled multi-coil slice of the simulated brain (workbench.simulate), as an in-memory scan."""
    from workbench.scan import scan_from_arrays
    from workbench.simulate import generate_slice

    over = 2 if shape[0] == 2 * recon[0] else 1
    base = (shape[0] // over, shape[1])
    sl = generate_slice(seed, shape=base, n_coils=n_coils, readout_oversampling=over)
    k = sl["kspace"]
    return scan_from_arrays(k[None], recon_shape=recon, reference=None)


def _stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"median_ms": round(1e3 * statistics.median(v), 2), "p90_ms": round(1e3 * v[int(0.9 * (len(v) - 1))], 2),
            "max_ms": round(1e3 * v[-1], 2), "n": len(v)}


def run(n_coils: int = 16, shape=(320, 320), recon=(320, 320), repeats: int = 3, method: str | None = None,
        job_seconds: float = 20.0) -> dict:
    if "QT_QPA_PLATFORM" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    import torch
    from PyQt6 import QtCore

    from workbench.gui.app import make_application
    from workbench.gui.main_window import MainWindow
    from workbench.gui.sampling_panel import R_STEPS
    from workbench.methods import discover_methods
    from workbench.physics.fft import ifft2c

    app = make_application()
    scan = make_scan(n_coils, shape, recon)
    examples = Path(__file__).resolve().parents[1] / "examples" / "plugins"
    registry = discover_methods([examples] if examples.is_dir() else [], user_dirs=False)
    settings = QtCore.QSettings(os.path.join(os.environ.get("TMPDIR", "/tmp"), "bench_gui_settings.ini"),
                                QtCore.QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, registry=registry)
    win.resize(1600, 1000)
    win.show()
    s = win.session
    s.set_scan(scan)
    s.set_sampling("random", acceleration=4.0)
    win.tabs.setCurrentWidget(win.sampling_panel)
    for _ in range(10):
        app.processEvents()

    # --- one centred FFT of the slice, for scale ----------------------------------------------------------
    k = s.kspace()
    fft_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ifft2c(k)
        fft_times.append(time.perf_counter() - t0)

    # --- slider -> views -----------------------------------------------------------------------------------
    sp = win.sampling_panel
    done = {"t": None}
    original = sp._refresh_views

    def timed_refresh(*a, **kw):
        original(*a, **kw)
        done["t"] = time.perf_counter()

    sp._refresh_views = timed_refresh
    values = [v for v in range(2 * R_STEPS, 12 * R_STEPS + 1)]
    first, again = [], []
    for rep in range(1 + repeats):
        for v in values[::-1] if rep % 2 else values:
            if sp.r_slider.value() == v:
                continue
            done["t"] = None
            t0 = time.perf_counter()
            sp.r_slider.setValue(v)
            while done["t"] is None:
                app.processEvents()
            (first if rep == 0 else again).append(done["t"] - t0)
    sp._refresh_views = original

    # --- the model alone -----------------------------------------------------------------------------------
    model = []
    for r in (3.0, 5.0, 7.0, 9.0) * 3:
        t0 = time.perf_counter()
        s.set_acceleration(r)
        s.zero_filled()
        s.zero_filled_metrics()
        model.append(time.perf_counter() - t0)

    # --- event-loop stall while a job runs -----------------------------------------------------------------
    name = method or next((n for n in ("cg-sense", "landweber") if n in registry.methods), None)
    stall = {}
    if name is not None:
        s.set_sampling("random", acceleration=4.0)
        ticks: list[float] = []
        timer = QtCore.QTimer()
        timer.setInterval(5)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        t_start = time.perf_counter()
        entry = s.run(registry.methods[name])
        progress_events = []
        s.subscribe("result", lambda e: progress_events.append(time.perf_counter()) if e is entry else None)
        while entry.active and time.perf_counter() - t_start < job_seconds:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
        if entry.active:
            s.cancel(entry)
            while entry.active:
                app.processEvents()
        timer.stop()
        gaps = np.diff(ticks) if len(ticks) > 1 else np.array([0.0])
        stall = {"method": name, "state": entry.state, "job_wall_s": round(time.perf_counter() - t_start, 2),
                 "longest_stall_ms": round(1e3 * float(gaps.max()), 1),
                 "p99_gap_ms": round(1e3 * float(np.percentile(gaps, 99)), 1),
                 "timer_ticks": len(ticks), "progress_updates": len(progress_events)}
    win.close()
    return {
        "slice": {"coils": n_coils, "grid": list(shape), "recon": list(recon)},
        "cpu_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "ifft2c_slice_ms": round(1e3 * statistics.median(fft_times), 2),
        "slider_to_view_first_visit": _stats(first),
        "slider_to_view_revisit": _stats(again),
        "model_only": _stats(model),
        "event_loop_during_job": stall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_gui", description=__doc__.splitlines()[0])
    p.add_argument("--coils", type=int, default=16)
    p.add_argument("--shape", type=_shape, default=(320, 320), help="k-space grid HxW")
    p.add_argument("--recon", type=_shape, default=(320, 320), help="image size HxW")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--method", default=None, help="method run for the stall measurement")
    p.add_argument("--job-seconds", type=float, default=20.0, help="stop the job after this long")
    args = p.parse_args(argv)
    out = run(args.coils, args.shape, args.recon, args.repeats, args.method, args.job_seconds)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
