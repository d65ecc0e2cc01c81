"""`workbench doctor`: finds missing system libraries with ldd, names the packages and says when the app cannot start."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from workbench.commands import doctor


def test_install_commands_name_the_packages_of_missing_qt_libraries():
    cmds = doctor.install_commands(["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-icccm.so.4"])
    assert cmds["debian"] == "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1"
    assert cmds["fedora"] == "sudo dnf install -y xcb-util-wm xcb-util-keysyms"
    # An unlisted library gets the usual Debian name (soname base + major, with a dash after a digit).
    assert doctor.install_commands(["libfoo-bar.so.3"])["debian"].endswith("libfoo-bar3")
    assert doctor.install_commands(["libfoo2.so.1"])["debian"].endswith("libfoo2-1")


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd")
def test_missing_libraries_reads_ldd(tmp_path):
    # A library linked against libwbgone.so.7, which is then deleted: ldd must report it as not found.
    (tmp_path / "gone.c").write_text("int gone(void) { return 1; }\n")
    (tmp_path / "user.c").write_text("int gone(void); int use(void) { return gone(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libwbgone.so.7", "-o", str(tmp_path / "libwbgone.so"),
                    str(tmp_path / "gone.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(tmp_path / "libuser.so"),
                    str(tmp_path / "user.c"), "-L", str(tmp_path), "-lwbgone"], check=True)
    (tmp_path / "libwbgone.so").unlink()
    assert doctor.missing_libraries(tmp_path / "libuser.so") == ["libwbgone.so.7"]


def test_no_display_blocks_the_app_but_not_the_library(monkeypatch):
    env = {"PATH": "/usr/bin", "QT_QPA_PLATFORM": "xcb"}  # no DISPLAY, no WAYLAND_DISPLAY
    report = doctor.diagnose(env, app=True)
    whats = [p["what"] for p in report.blocking("app")]
    assert any("no display" in w for w in whats)
    assert not any("no display" in p["what"] for p in report.blocking("library"))
    assert "xvfb-run" in next(p["advice"] for p in report.problems if "no display" in p["what"])
    labels = {label for rows in report.sections.values() for label, _ in rows}
    assert {"version", "torch", "device", "cache", "settings", "user plugins", "real data"} <= labels


def test_cli_exit_status_and_json(monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert main(["doctor", "--app"]) == 1
    err = capsys.readouterr().err
    assert "blocks the app" in err and "no display" in err
    assert main(["doctor", "--json"]) == 0  # the library itself can run here
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and "Compute" in report["sections"]
