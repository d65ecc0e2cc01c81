"""``workbench doctor``: what this machine gives the workbench, and the exact command for what is missing.

Checks, in the spirit of ``napari --info``: Python, Qt and its platform plugin (the system libraries PyQt6's
wheels do not bring: ``ldd`` on ``libqxcb.so``), whether a display is there, torch and the compute device, and
where the cache, the settings, the user plugins and the real data are. ``make demo`` runs ``workbench doctor
--app`` first, so a machine without Qt's X libraries gets the install command instead of Qt's abort (which blames
``libxcb-cursor0`` whatever is missing).

Exit status: 0 when everything the asked-for use needs is there, 1 otherwise (with ``--app``: the desktop app
cannot start; without it: the library cannot run).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Shared libraries that Qt's xcb platform plugin loads, with the package that provides each
# (Debian/Ubuntu, Fedora). Sonames not listed fall back to a best guess from the name.
SYSTEM_PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libSM.so.6": ("libsm6", "libSM"),
    "libICE.so.6": ("libice6", "libICE"),
}


def install_commands(sonames: list[str]) -> dict[str, str]:
    """The commands that install the packages providing ``sonames``, for Debian/Ubuntu (apt) and Fedora (dnf)."""
    deb, rpm = [], []
    for so in sonames:
        d, r = SYSTEM_PACKAGES.get(so) or _guess_packages(so)
        if d not in deb:
            deb.append(d)
        if r not in rpm:
            rpm.append(r)
    return {"debian": "sudo apt-get install -y " + " ".join(deb), "fedora": "sudo dnf install -y " + " ".join(rpm)}


def _guess_packages(soname: str) -> tuple[str, str]:
    # libfoo-bar.so.3 -> Debian libfoo-bar3, Fedora libfoo-bar (the usual naming when a library is not listed).
    m = re.match(r"(lib[\w+.-]+?)\.so(?:\.(\d+))?", soname)
    base, major = (m.group(1), m.group(2) or "") if m else (soname, "")
    sep = "-" if base[-1:].isdigit() and major else ""
    return (base.lower() + sep + major, base)


def missing_libraries(binary: Path) -> list[str]:
    """The shared libraries that ``ldd`` reports as "not found" for ``binary`` (and its own dependencies)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(binary)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        if "not found" in line:
            name = line.split("=>")[0].strip()
            if name and name not in found:
                found.append(name)
    return found


@dataclass
class Report:
    """What ``doctor`` found: named sections of (label, value) rows, and the problems with their advice."""

    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"what", "blocks", "advice"}

    def add(self, section: str, label: str, value: Any) -> None:
        self.sections.setdefault(section, []).append((label, str(value)))

    def problem(self, what: str, blocks: str, advice: str) -> None:
        self.problems.append({"what": what, "blocks": blocks, "advice": advice})

    def imported(self, module: str, section: str, label: str, blocks: str, advice: str) -> Any:
        """``module`` imported, or None after reporting it: a row ``label`` in ``section`` and a problem that
        blocks ``blocks`` with ``advice``."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            self.add(section, label, f"not importable ({exc})")
            self.problem(f"{label} is not installed", blocks, advice)
            return None

    def blocking(self, use: str) -> list[dict[str, Any]]:
        """Problems that stop ``use`` ("library" or "app"; the app needs the library too)."""
        uses = {"library"} if use == "library" else {"library", "app"}
        return [p for p in self.problems if p["blocks"] in uses]


def _check_python(r: Report) -> None:
    r.add("Python", "version", platform.python_version())
    r.add("Python", "executable", sys.executable)
    r.add("Python", "platform", platform.platform())
    if sys.version_info < (3, 11):
        r.problem(f"Python {platform.python_version()} is older than 3.11", "library",
                  "install Python 3.11 or newer and run `make` again (it picks the newest python3.1x on PATH)")


def _check_qt(r: Report, environ: dict[str, str]) -> None:
    advice = "pip install 'mri-workbench[gui]' (make demo does it)"
    qt_info = r.imported("workbench.gui.qt_info", "Qt", "PyQt6 / pyqtgraph", "app", advice)  # only gui/ imports Qt
    if qt_info is None:
        return
    qt = qt_info.qt_installation()
    r.add("Qt", "PyQt6 / Qt", f"{qt['pyqt']} / {qt['qt']}")
    plugins = qt["platform_plugins"]
    platform_name = environ.get("QT_QPA_PLATFORM", "")
    r.add("Qt", "QT_QPA_PLATFORM", platform_name or "(unset: xcb on X11, wayland where available)")
    if sys.platform.startswith("linux") and platform_name in ("", "xcb"):
        xcb = plugins / "libqxcb.so"
        if not xcb.exists():
            r.add("Qt", "xcb platform plugin", f"missing ({xcb})")
            r.problem(f"Qt's xcb platform plugin is missing ({xcb})", "app", "reinstall PyQt6: pip install -U PyQt6")
        else:
            missing = missing_libraries(xcb)
            r.add("Qt", "xcb platform plugin", xcb)
            r.add("Qt", "missing system libraries", ", ".join(missing) or "none")
            if missing:
                cmds = install_commands(missing)
                r.problem(f"Qt's xcb platform plugin cannot load: {', '.join(missing)} not found", "app",
                          f"Debian/Ubuntu: {cmds['debian']}\nFedora: {cmds['fedora']}")
        display, wayland = environ.get("DISPLAY"), environ.get("WAYLAND_DISPLAY")
        r.add("Qt", "display", f"DISPLAY={display}" if display else
              (f"WAYLAND_DISPLAY={wayland}" if wayland else "none"))
        if not display and not wayland:
            r.problem("no display: DISPLAY and WAYLAND_DISPLAY are unset", "app",
                      "run on a desktop session, over `ssh -X`, or on a virtual screen: "
                      "xvfb-run -a workbench --demo (Debian/Ubuntu: sudo apt-get install -y xvfb)")
    r.add("Qt", "pyqtgraph", qt["pyqtgraph"])


def _check_torch(r: Report) -> None:
    torch = r.imported("torch", "Compute", "torch", "library", "pip install torch (make does it)")
    if torch is None:
        return
    r.add("Compute", "torch", f"{torch.__version__} ({torch.get_num_threads()} threads, {os.cpu_count()} cores)")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        r.add("Compute", "device", f"cuda ({names})")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        r.add("Compute", "device", "mps")
    else:
        r.add("Compute", "device", "cpu (no GPU found: jobs run on the CPU)")


def _check_places(r: Report, environ: dict[str, str]) -> None:
    from workbench import paths

    try:
        r.add("Places", "cache", paths.cache_dir(create=False))
        from workbench.weight_store import default_store

        store = default_store()
        r.add("Places", "weight store", store.folder if store is not None else "off (WORKBENCH_WEIGHT_STORE=0)")
        r.add("Places", "resources", paths.resources_dir())
    except Exception as exc:  # a broken install is something to report, not to crash on
        r.problem(str(exc), "library", "reinstall the package (make clean && make demo) or run from a checkout")
    config = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mri-workbench"
    r.add("Places", "settings", config / "workbench.conf")
    r.add("Places", "user plugins", config / "plugins")
    data = paths.realdata_dir()
    r.add("Places", "real data", f"{data}" + ("" if data.is_dir() else
                                             " (absent: set WORKBENCH_REALDATA to the folder of the real sets)"))
    _check_command_server(r, environ)


def _check_command_server(r: Report, environ: dict[str, str]) -> None:
    """Whether recon / plugins can use the resident command server, and why not (never a problem: without it
    they run in-process, only slower to start)."""
    from workbench import command_server

    if not command_server.enabled(environ):
        r.add("Places", "command server", "off (WORKBENCH_SERVER, or a platform without Unix socket descriptor "
                                          "passing): commands run in-process")
        return
    folder = command_server.runtime_dir()
    if folder is None:
        r.add("Places", "command server", "unavailable: its socket folder exists but is not private to you (owned "
                                          "by another user or open to others); commands run in-process. Remove it "
                                          "or set WORKBENCH_RUNTIME_DIR to a folder of yours")
        return
    running = [p for p in command_server.servers(folder) if command_server.server_pid(p)]
    r.add("Places", "command server", f"on, sockets in {folder} ({len(running)} running)")


def diagnose(environ: dict[str, str] | None = None, app: bool = True) -> Report:
    """Run every check (the Qt ones only with ``app``) and return the report."""
    env = dict(os.environ if environ is None else environ)
    r = Report()
    _check_python(r)
    if app:
        _check_qt(r, env)
    _check_torch(r)
    _check_places(r, env)
    return r


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", action="store_true",
                   help="exit 1 unless the desktop app can start (Qt, its system libraries, a display)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    report = diagnose(app=True)
    blocking = report.blocking("app" if args.app else "library")
    if args.json:
        print(json.dumps({"sections": {k: dict(v) for k, v in report.sections.items()},
                          "problems": report.problems, "ok": not blocking}, indent=2))
        return 1 if blocking else 0
    width = max((len(label) for rows in report.sections.values() for label, _ in rows), default=0)
    for section, rows in report.sections.items():
        print(section)
        for label, value in rows:
            print(f"  {label:<{width}}  {value}")
    for p in report.problems:
        stream = sys.stderr if p in blocking else sys.stdout
        print(f"\nproblem ({'blocks the ' + p['blocks'] if p in blocking else 'for the ' + p['blocks']}): "
              f"{p['what']}", file=stream)
        for line in p["advice"].splitlines():
            print(f"  {line}", file=stream)
    if not report.problems:
        print("\nno problems found")
    return 1 if blocking else 0
