"""Render the main views of the app into PNG files: ``python -m workbench.gui.screenshots OUTDIR``.

Every view is rendered for each screen of ``--sizes`` (default 1366x768 and 1920x1080): the window takes the size
the app gives its first window on that screen, and the file is suffixed by the screen (``compare_grid_1366x768.png``);
the unsuffixed name (``compare_grid.png``, linked from the README and docs/app.md) is the largest screen's.

Runs offscreen (``QT_QPA_PLATFORM=offscreen`` is set when no display is given) on the demo scan with the
built-in plugins (and the example plugin folder of a checkout), with fresh settings, so the pictures are the
same on every machine: main window, sampling panel with the mask editor, trajectory preview, compare grid with
results, jobs panel, acceleration sweep, and the uncertainty view (a dsm-posterior result's std map and its
calibration plot; ``--uncertainty-only`` renders just that one).

When the real data folder exists (``$WORKBENCH_REALDATA``, else ``../shared/realdata`` beside the checkout; it is
never part of the repository), three more: real radial scans reconstructed in the app from their own trajectories
(density-compensated adjoint, CG-SENSE, TV), with their hold-out scores (no reference: validated at once):
``radial_cardiac_compare.png`` and ``radial_phantom_compare.png``; and the cardiac scan's acceleration sweep over
part of its acquired spokes, every point scored by the hold-out (:data:`PROSPECTIVE_SWEEP`):
``sweep_prospective.png``. Without it they are skipped (``--realdata-only`` renders just those three).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from workbench import paths

#: the screens rendered by default (a laptop and a desktop)
SIZES = ((1366, 768), (1920, 1080))
#: real radial scans: (screenshot, file under the real data folder, what it shows)
RADIAL_SHOTS = [
    ("radial_cardiac_compare.png", "gpunufft_radial_cardiac12ch/radial_cardiac_25_projections.mat",
     "cardiac short axis, 12 coils, 25 radial spokes"),
    ("radial_phantom_compare.png", "smsnlinv_radial_phantom16ch/kMB1_top_SP29.cfl",
     "resolution phantom, 16 coils, 29 radial spokes"),
]
#: the sweep of a prospective scan: (screenshot, the RADIAL_SHOTS scan it sweeps, methods, factors 1/f kept)
PROSPECTIVE_SWEEP = ("sweep_prospective.png", "radial_cardiac_compare.png", ["cg-sense", "tv"], "1, 1.5, 2, 3")
#: the methods compared on them (their default parameters: what a user gets with one click); a method that is
#: missing or cannot run here (e.g. NC-PDNet without its trained weights) is left out
RADIAL_METHODS = [("zero-filled", {}), ("cg-sense", {}), ("tv", {}), ("unet", {}), ("ncpdnet", {})]
# methods shown in the comparison, by preference; parameters keep the screenshots quick to make
PREFERRED = [("cg-sense", {}), ("l1-wavelet", {}), ("xpdnet", {}), ("tv", {}), ("landweber", {"n_iter": 30})]
#: the posterior sampler of the uncertainty screenshot: few chains and noise levels, so that a busy 2-core CPU makes
#: it in about 20 s (the picture shows the view, not the sampler at its best)
UNCERTAINTY_METHOD = ("dsm-posterior", {"n_samples": 6, "n_levels": 8, "steps_per_level": 1, "seed": 0})


def _pump(app, seconds: float = 0.0) -> None:
    t0 = time.time()
    while True:
        app.processEvents()
        if time.time() - t0 >= seconds:
            break
        time.sleep(0.01)


def _wait(app, entries, timeout: float) -> None:
    t0 = time.time()
    while any(e.active for e in entries) and time.time() - t0 < timeout:
        _pump(app, 0.05)
    _pump(app, 0.2)


def _wait_holdout(app, entries, timeout: float, session=None) -> None:
    """Until the hold-out scores of ``entries`` (validated by the session: a scan without a reference) are in, and
    the live zero-filled row's of ``session`` (computed in the background off the grid)."""
    def running() -> bool:
        live = session.comparison_rows()[:1] if session is not None else []
        return any(e.holdout is not None and e.holdout.get("holdout_message") == "running" for e in entries) or \
            any(r["holdout_note"].startswith("running") for r in live)

    t0 = time.time()
    while running() and time.time() - t0 < timeout:
        _pump(app, 0.1)
    _pump(app, 0.2)


def _wait_derived(app, session, timeout: float = 120.0) -> None:
    """Until the background gridded image and PSF of a non-Cartesian sampling are shown."""
    t0 = time.time()
    while (session.derived_pending or session.zero_filled() is None) and session.derived_error() is None \
            and time.time() - t0 < timeout:
        _pump(app, 0.1)
    _pump(app, 0.3)


def _methods(registry, limit: int = 3):
    chosen = [(registry.methods[n], p) for n, p in PREFERRED if n in registry.methods]
    if len(chosen) < limit:
        chosen += [(m, {}) for n, m in registry.methods.items() if n not in dict(PREFERRED)][: limit - len(chosen)]
    return chosen[:limit]


def realdata_dir() -> Path | None:
    """The real data folder (``$WORKBENCH_REALDATA`` or ``../shared/realdata`` beside the checkout), if present."""
    d = paths.realdata_dir()
    return d if d.is_dir() else None


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1366x768,1920x1080"`` -> [(1366, 768), (1920, 1080)]."""
    out = []
    for part in text.replace(" ", "").split(","):
        if part:
            w, _, h = part.lower().partition("x")
            out.append((int(w), int(h)))
    if not out:
        raise ValueError("give screen sizes as WIDTHxHEIGHT[,WIDTHxHEIGHT...]")
    return out


def _window(app, sizes):
    from PyQt6 import QtCore

    from workbench.gui.main_window import MainWindow

    tmp = tempfile.mkdtemp(prefix="workbench-shots-")
    settings = QtCore.QSettings(os.path.join(tmp, "settings.ini"), QtCore.QSettings.Format.IniFormat)
    example_plugins = Path(__file__).resolve().parents[2] / "examples" / "plugins"
    win = MainWindow(plugin_dirs=[str(example_plugins)] if example_plugins.is_dir() else [], settings=settings)
    _size_for_screen(win, max(sizes))
    win.show()
    _pump(app, 0.2)
    return win


def _size_for_screen(win, screen) -> None:
    """The size the app gives its first window on a ``screen`` (width, height) and its jobs dock's height."""
    from PyQt6 import QtCore

    from workbench.gui.main_window import first_window_size

    win.resize(first_window_size(QtCore.QRect(0, 0, *screen)))
    win.fit_docks()


def _grab(app, win, out: Path, name: str, sizes, prepare=None, widget=None) -> list[Path]:
    """``name`` for each screen of ``sizes`` (suffixed ``_WxH``) and unsuffixed for the largest: the window sized
    for that screen, then ``prepare()`` (e.g. splitter sizes), then the window (or ``widget``) grabbed."""
    stem, ext = os.path.splitext(name)
    written = []
    for screen in sorted(sizes, key=lambda wh: wh[0] * wh[1]):
        _size_for_screen(win, screen)
        _pump(app, 0.2)
        if prepare is not None:
            prepare()
        _pump(app, 0.4)
        img = (widget or win).grab()
        for path in (out / f"{stem}_{screen[0]}x{screen[1]}{ext}",) + ((out / name,) if screen == max(
                sizes, key=lambda wh: wh[0] * wh[1]) else ()):
            img.save(str(path))
            written.append(path)
            print(f"wrote {path}")
    return written


def _app():
    if "QT_QPA_PLATFORM" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from workbench.gui.app import make_application

    return make_application()


def render_realdata(outdir: str | os.PathLike, realdata: str | os.PathLike | None = None,
                    timeout: float = 600.0, sizes=SIZES) -> list[Path]:
    """The real radial scans of :data:`RADIAL_SHOTS` opened as File > Open does, reconstructed from their own
    trajectories ("as acquired") by :data:`RADIAL_METHODS` through the methods panel and the jobs queue, and the
    window grabbed on the compare tab. Returns the paths written ([] without the real data folder)."""
    root = Path(realdata) if realdata is not None else realdata_dir()
    if root is None or not root.is_dir():
        print("screenshots: no real data folder; radial screenshots skipped", file=sys.stderr)
        return []
    app = _app()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    win = _window(app, sizes)
    written: list[Path] = []
    try:
        for name, rel, what in RADIAL_SHOTS:
            path = root / rel
            if not path.exists():
                print(f"screenshots: {path} missing; {name} skipped", file=sys.stderr)
                continue
            if not win.open_path(str(path)):
                raise SystemExit(f"screenshots: {path} could not be opened")
            s = win.session
            _wait_derived(app, s)
            mp = win.methods_panel
            entries = []
            available = [win.registry.methods[m] for m, _ in RADIAL_METHODS if m in win.registry.methods]
            reasons = s.check_methods(available)
            for method, params in RADIAL_METHODS:
                if reasons.get(method) or not mp.select(method):
                    why = "; ".join(reasons.get(method) or ["not installed"])
                    print(f"screenshots: {method} left out of {name}: {why}", file=sys.stderr)
                    continue
                mp.form.set_values(params)
                e = mp.run_current()
                if e is not None:
                    entries.append(e)
            _wait(app, entries, timeout)
            _wait_holdout(app, entries, timeout, s)  # no reference: the table ranks them by the hold-out score
            for e in entries:
                if e.state != "done":
                    print(f"screenshots: {name}: {e.label} {e.state}: {e.error}", file=sys.stderr)
            cv = win.compare_view
            win.tabs.setCurrentWidget(cv)
            # the live gridded image is the zero-filled result again: show each image once
            cv.shown["zero-filled"] = False
            cv.rebuild(force=True)
            win.jobs_dock.raise_()
            _pump(app, 0.6)
            print(f"{name}: {what}")
            written += _grab(app, win, out, name, sizes)
            if name == PROSPECTIVE_SWEEP[1]:
                written += _prospective_sweep_shot(app, win, out, timeout, sizes)
    finally:
        win.close()
        _pump(app, 0.1)
    return written


def _prospective_sweep_shot(app, win, out: Path, timeout: float, sizes=SIZES) -> list[Path]:
    """The Sweep tab on the open prospective scan: :data:`PROSPECTIVE_SWEEP`'s methods and zero filling on part of
    the acquired spokes, each point scored by the hold-out (the tab's default without a reference)."""
    name, _, methods, factors = PROSPECTIVE_SWEEP
    sv = win.sweep_view
    win.tabs.setCurrentWidget(sv)
    sv.refresh_methods()
    sv.set_checked(methods)
    sv.acc_edit.setText(factors)
    sweep = sv.run_sweep()
    if sweep is None:
        print(f"screenshots: {name} skipped: the sweep did not start", file=sys.stderr)
        return []
    t0 = time.time()
    while (any(e.active for e in sweep.entries) or any((e.holdout or {}).get("holdout_message") == "running"
                                                        for e in sweep.entries)) and time.time() - t0 < timeout:
        _pump(app, 0.2)
    print(f"{name}: {sv.status.text()}")
    return _grab(app, win, out, name, sizes)


def _uncertainty_shot(app, win, path: Path, timeout: float, sizes=SIZES) -> list[Path]:
    """The demo scan at R=4 reconstructed by :data:`UNCERTAINTY_METHOD`; the compare tab with its std map and the
    calibration plot (std against |error|). None when the method is missing or cannot run here."""
    from PyQt6 import QtCore

    name, params = UNCERTAINTY_METHOD
    s = win.session
    method = win.registry.methods.get(name)
    why = ["not installed"] if method is None else s.check_methods([method]).get(name)
    if why:
        print(f"screenshots: {path.name} skipped: {name}: {'; '.join(why)}", file=sys.stderr)
        return []
    s.set_sampling("random", acceleration=4.0, seed=0)
    entry = s.run(method, params)
    _wait(app, [entry], timeout)
    if entry.state != "done":
        print(f"screenshots: {path.name} skipped: {name} {entry.state}: {entry.error}", file=sys.stderr)
        return []
    cv = win.compare_view
    win.tabs.setCurrentWidget(cv)
    # only the posterior result beside the reference and the live zero-filled image
    for e in s.results:
        cv.shown[e.id] = e is entry
    cv.rebuild(force=True)
    cv.show_calibration()

    def room_for_the_plot() -> None:
        # three rows of panels (image, error, std) and the plot: a short jobs dock
        win.resizeDocks([win.jobs_dock], [int(0.16 * win.height())], QtCore.Qt.Orientation.Vertical)
        _pump(app, 0.1)
        # the plot with its legend needs about 250 px (on a laptop screen that is half the tab)
        total = sum(cv.splitter.sizes())
        plot = min(max(int(0.36 * total), 250), total // 2)
        cv.splitter.setSizes([total - plot, plot])

    return _grab(app, win, path.parent, path.name, sizes, prepare=room_for_the_plot)


def render_uncertainty(outdir: str | os.PathLike, timeout: float = 600.0, sizes=SIZES) -> list[Path]:
    """Just the uncertainty screenshot (``uncertainty_calibration.png``), in a fresh window on the demo scan."""
    app = _app()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    win = _window(app, sizes)
    try:
        if not win.open_demo():
            raise SystemExit("screenshots: the demo scan could not be opened")
        return _uncertainty_shot(app, win, out / "uncertainty_calibration.png", timeout, sizes)
    finally:
        win.close()
        _pump(app, 0.1)


def render(outdir: str | os.PathLike, timeout: float = 240.0, realdata: bool = True, sizes=SIZES) -> list[Path]:
    """Write the screenshots into ``outdir`` (and the real radial ones when the real data folder exists);
    returns their paths."""
    app = _app()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    win = _window(app, sizes)

    if not win.open_demo():
        raise SystemExit("screenshots: the demo scan could not be opened")
    s = win.session
    written: list[Path] = []

    def shot(name: str, prepare=None) -> None:
        _pump(app, 0.3)
        written.extend(_grab(app, win, out, name, sizes, prepare=prepare))

    # 1. main window: k-space, reference, header
    win.tabs.setCurrentWidget(win.scan_view)
    shot("main_window.png")

    # 2. sampling panel: a random line mask edited by hand (extra lines, a painted centre region)
    win.tabs.setCurrentWidget(win.sampling_panel)
    s.set_sampling("random", acceleration=6.0, seed=1)
    h, w = s.grid_shape
    s.editor.begin_stroke()
    s.editor.set_lines(range(w // 2 - 14, w // 2 - 10), True)
    s.editor.end_stroke()
    s.symmetric = True
    win.sampling_panel.symmetric_box.setChecked(True)
    win.sampling_panel.tool_brush.setChecked(True)
    s.editor.begin_stroke()
    s.editor.paint(h * 0.30, w * 0.30, 10, True)
    s.editor.end_stroke()
    shot("sampling_mask_editor.png")

    # 3. a non-Cartesian trajectory with its density compensation
    s.set_sampling("golden-radial", acceleration=4.0)
    _wait_derived(app, s)
    shot("sampling_trajectory.png")

    # 4. compare: back to a Cartesian mask, run methods, show the grid with error maps and the metrics table
    s.symmetric = False
    win.sampling_panel.symmetric_box.setChecked(False)
    s.set_sampling("random", acceleration=4.0, seed=0)
    entries = []
    for method, params in _methods(win.registry):
        try:
            entries.append(s.run(method, params))
        except Exception as exc:  # a method that cannot run here is skipped, the others are shown
            print(f"screenshots: {method.name} skipped: {exc}", file=sys.stderr)
    _wait(app, entries, timeout)
    s.validate()  # the Validate button: every row's hold-out score, a score without a reference, in the table
    _wait_holdout(app, entries, timeout, s)
    win.tabs.setCurrentWidget(win.compare_view)
    _pump(app, 0.3)
    win.compare_view.rebuild()
    shot("compare_grid.png")
    # the same results scored in the fair modes (workbench.scoring): inside the object, and as acquired
    for mode in ("object", "as-acquired"):
        s.score_mode = mode
        win.compare_view.outline_box.setChecked(mode == "object")  # the object mask drawn on the images
        _pump(app, 0.5)
        shot(f"compare_score_{mode.replace('-', '_')}.png")
    s.score_mode = "fastmri"
    win.compare_view.outline_box.setChecked(False)

    # 5. jobs panel: finished, cancelled, failed (a method that cannot run on this data) and running jobs
    if entries:
        method, params = _methods(win.registry)[0]
        long_params = dict(params)
        if "n_iter" in [sp.name for sp in method.param_specs()]:
            long_params["n_iter"] = 5000 if "landweber" in method.name else 1000
        cancelled = s.run(method, long_params)
        t0 = time.time()
        while cancelled.state != "running" and time.time() - t0 < 30:
            _pump(app, 0.05)
        s.cancel(cancelled)
        _wait(app, [cancelled], 30)
        extra = []
        win.methods_panel._check_now()
        _pump(app, 1.0)
        greyed = [n for n, why in win.methods_panel.reasons.items() if why]
        if greyed:
            extra.append(s.run(win.registry.methods[greyed[0]]))
            _wait(app, extra, 60)
        slow = next((win.registry.methods[n] for n in ("l1-wavelet", "tv") if n in win.registry.methods), None)
        running = s.run(slow, {}) if slow is not None else s.run(method, long_params)
        t0 = time.time()
        while running.progress < 0.05 and time.time() - t0 < 60:
            _pump(app, 0.1)
        win.jobs_dock.raise_()
        _pump(app, 0.5)
        # the dock at its default height, following the newest job
        shot("jobs_panel.png")
        s.cancel(running)
        _wait(app, [running], 30)

    # 6. acceleration sweep (zero-filled curve at once, methods as their jobs finish)
    win.tabs.setCurrentWidget(win.sweep_view)
    sv = win.sweep_view
    sv.refresh_methods()
    names = [m.name for m, _ in _methods(win.registry, limit=1)]
    sv.set_checked(names)
    sv.family_combo.setCurrentText("random")
    sv.acc_edit.setText("2, 4, 6, 8")
    sweep = sv.run_sweep()
    if sweep is not None:
        _wait(app, sweep.entries, timeout)
    shot("sweep.png")

    # 7. uncertainty: a posterior sampler's std map and the calibration plot of std against |error|
    written += _uncertainty_shot(app, win, out / "uncertainty_calibration.png", max(timeout, 600.0), sizes)

    win.close()
    _pump(app, 0.1)
    if realdata:
        written += render_realdata(out, sizes=sizes)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.gui.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("outdir", nargs="?", default="docs/screenshots")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the reconstruction jobs")
    p.add_argument("--realdata-only", action="store_true",
                   help="render only the real radial screenshots (needs the real data folder)")
    p.add_argument("--no-realdata", action="store_true", help="skip the real radial screenshots")
    p.add_argument("--uncertainty-only", action="store_true",
                   help="render only the uncertainty view (std map and calibration plot of dsm-posterior)")
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                   help="screens to render for, WIDTHxHEIGHT[,WIDTHxHEIGHT...] (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        p.error(f"--sizes: {exc}")
    if args.realdata_only:
        render_realdata(args.outdir, sizes=sizes)
    elif args.uncertainty_only:
        render_uncertainty(args.outdir, max(args.timeout, 600.0), sizes)
    else:
        render(args.outdir, args.timeout, realdata=not args.no_realdata, sizes=sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
