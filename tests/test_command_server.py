"""The resident command server (workbench/command_server.py): a served command behaves as the same command run
in-process (output, exit status, files, errors), signals reach it, a client that goes away takes its command with
it, and the server refuses what it must refuse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import command_server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the server is Linux-only")

WORKBENCH = [sys.executable, "-c", "from workbench.cli import entry; entry()"]


@pytest.fixture
def runtime():
    """A private, short socket folder (sun_path holds 108 bytes) with every server in it stopped afterwards."""
    folder = tempfile.mkdtemp(prefix="wbsrv")
    os.chmod(folder, 0o700)
    yield folder
    for path in command_server.servers(folder):
        command_server.control(path, "stop")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(command_server.server_pid(p) for p in command_server.servers(folder)):
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


def _env(runtime: str | None, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("WORKBENCH_SERVER", None)  # conftest turns it off for every other test
    if runtime is not None:
        env["WORKBENCH_RUNTIME_DIR"] = runtime
    env["WORKBENCH_SERVER_IDLE"] = "60"
    env.update(extra)
    return env


def _run(argv, env, cwd=None, timeout=240):
    return subprocess.run([*WORKBENCH, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    """A small 4-coil Cartesian scan (.npy k-space [C, H, W]) with a smooth object."""
    from workbench.simulate import generate_slice

    path = tmp_path_factory.mktemp("srv") / "k.npy"
    item = generate_slice(3, shape=(64, 64), n_coils=4)
    np.save(path, np.asarray(item["kspace"], dtype=np.complex64))
    return path


def _server_pids(folder: str) -> list[int]:
    return sorted(p for p in (command_server.server_pid(s) for s in command_server.servers(folder)) if p)


def test_served_command_matches_the_in_process_one(scan, runtime, tmp_path):
    argv = ["recon", str(scan), "--method", "cg-sense", "--mask", "random", "--accel", "4", "--json",
            "--center-fraction", "0.16", "--out", "result.h5"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here = _run(argv, _env(None, WORKBENCH_SERVER="0"), cwd=tmp_path / "a")
    assert here.returncode == 0, here.stderr
    assert _server_pids(runtime) == []
    served = _run(argv, _env(runtime), cwd=tmp_path / "b")
    assert served.returncode == 0, served.stderr
    pids = _server_pids(runtime)
    assert len(pids) == 1, "the first served command starts one server"
    a, b = json.loads(here.stdout), json.loads(served.stdout)
    for key in ("psnr", "ssim", "nmse"):
        assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-6)
    # --out is relative to the client's folder, as in-process
    assert (tmp_path / "a" / "result.h5").is_file() and (tmp_path / "b" / "result.h5").is_file()
    again = _run(argv, _env(runtime), cwd=tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert _server_pids(runtime) == pids, "the second command reuses the same server"


def test_errors_and_exit_status_are_the_commands(runtime, tmp_path):
    missing = str(tmp_path / "nope.h5")
    here = _run(["recon", missing, "--method", "zero-filled"], _env(None, WORKBENCH_SERVER="0"))
    served = _run(["recon", missing, "--method", "zero-filled"], _env(runtime))
    assert here.returncode == served.returncode == 1
    assert served.stderr.strip() == here.stderr.strip() and "nope.h5" in served.stderr
    # argparse's exits: --help prints the whole usage (buffered output flushed before the child exits), 0; a
    # usage error 2 with argparse's message, as in-process
    for argv, status, stream in ((["recon", "--help"], 0, "stdout"), (["recon", "--no-such-flag"], 2, "stderr")):
        here = _run(argv, _env(None, WORKBENCH_SERVER="0"))
        served = _run(argv, _env(runtime))
        assert here.returncode == served.returncode == status, served.stderr
        assert served.stdout == here.stdout and served.stderr == here.stderr
        assert getattr(served, stream).startswith("usage: workbench recon") and "--slice" in served.stdout + served.stderr
    # the client's environment reaches the command: a drop-in plugin folder named by WORKBENCH_PLUGIN_DIR
    (tmp_path / "plugs").mkdir()
    (tmp_path / "plugs" / "echo_method.py").write_text(
        "from workbench.methods import Method\n"
        "class EchoMethod(Method):\n"
        "    name = 'echo-from-env'\n"
        "    def run(self, problem, params, ctx):\n"
        "        raise RuntimeError('not run here')\n")
    served = _run(["plugins"], _env(runtime, WORKBENCH_PLUGIN_DIR=str(tmp_path / "plugs")))
    assert served.returncode == 0, served.stderr
    assert "echo-from-env" in served.stdout and "cg-sense" in served.stdout


SLEEPER = (
    "import time\n"
    "from workbench.methods import Method\n"
    "class Sleeper(Method):\n"
    "    name = 'sleeper'\n"
    "    def run(self, problem, params, ctx):\n"
    "        for _ in range(1200):\n"
    "            time.sleep(0.05)\n"
    "        raise RuntimeError('slept a whole minute')\n")


def test_ctrl_c_reaches_the_command_and_a_vanished_client_ends_it(scan, runtime, tmp_path):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    argv = ["recon", str(scan), "--method", "sleeper", "--plugin-dir", str(tmp_path)]
    env = _env(runtime)
    assert _run(["plugins"], env).returncode == 0  # the server is up: what follows measures the command only
    # As a shell's foreground command: SIGINT at its default even where this run inherited it ignored (a
    # background job of a script), which the client keeps ignored, as an in-process command would.
    proc = subprocess.Popen([*WORKBENCH, *argv], stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_running(runtime, 1)
    time.sleep(1.0)  # the command is inside the method
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "sleeper interrupted" in err
    proc = subprocess.Popen([*WORKBENCH, *argv], stderr=subprocess.DEVNULL, env=env)
    _wait_running(runtime, 1)
    proc.kill()  # no chance to forward anything: the server sees the connection close
    proc.wait(timeout=30)
    _wait_running(runtime, 0, timeout=20)


def _wait_running(folder: str, n: int, timeout: float = 60.0) -> None:
    (path,) = [p for p in command_server.servers(folder) if command_server.server_pid(p)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if command_server.control(path, "status") == n:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server did not reach {n} running command(s)")


def test_unsafe_folder_means_in_process(scan, tmp_path):
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)  # others could plant or read a socket here
    env = _env(str(open_folder))
    assert command_server.runtime_dir.__doc__  # documented rule
    out = _run(["recon", str(scan), "--method", "zero-filled", "--mask", "random", "--json"], env)
    assert out.returncode == 0, out.stderr
    assert list(open_folder.iterdir()) == [], "nothing is created in a folder open to others"


def test_malformed_requests_are_refused_and_the_server_goes_on(scan, runtime):
    env = _env(runtime)
    assert _run(["plugins"], env).returncode == 0
    (path,) = command_server.servers(runtime)
    for junk in (b"\xff\xff\xff\xff", struct.pack("!I", 5) + b"[1,2]", struct.pack("!I", 9) + b"not json!",
                 struct.pack("!I", 2) + b"{}", struct.pack("!I", 200000) + b"[" * 100000 + b"]" * 100000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(junk)
            assert struct.unpack("!ci", s.recv(5)) == (b"X", 2)
    out = _run(["recon", str(scan), "--method", "zero-filled", "--mask", "random", "--json"], env)
    assert out.returncode == 0, out.stderr


def test_code_key_follows_edits_and_family_key_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    monkeypatch.setattr(command_server, "_code_files", lambda: [str(f)])
    before = command_server.code_key()
    f.write_text("x = 22\n")
    assert command_server.code_key() != before
    fam = command_server.family_key()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # read when torch loads: needs its own server
    assert command_server.family_key() != fam
    monkeypatch.setenv("SOME_SHELL_VARIABLE", "x")  # read per command: the same server
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert command_server.family_key() == fam


def test_opt_out(monkeypatch):
    monkeypatch.setenv("WORKBENCH_SERVER", "off")
    assert command_server.run(["plugins"]) is None


def test_doctor_says_whether_the_server_is_used(tmp_path, monkeypatch):
    from workbench.commands.doctor import diagnose

    def row(env):
        return dict(diagnose(env, app=False).sections["Places"])["command server"]

    assert row({"WORKBENCH_SERVER": "0"}).startswith("off")
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    monkeypatch.setenv("WORKBENCH_RUNTIME_DIR", str(open_folder))
    assert row({}).startswith("unavailable")
    private = tmp_path / "private"
    monkeypatch.setenv("WORKBENCH_RUNTIME_DIR", str(private))
    assert row({}).startswith("on, sockets in " + str(private))


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_spare_process_takes_the_next_command_and_a_lost_one_is_replaced(scan, runtime):
    """The server forks the next command's process ahead (CommandServer._fork_spare); a command goes to it, one
    that died unused is replaced, and it leaves with the server."""
    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        pytest.skip("no /proc/PID/task/TID/children on this kernel")
    env = _env(runtime)
    argv = ["recon", str(scan), "--method", "zero-filled", "--mask", "random", "--json"]
    first = _run(argv, env)
    assert first.returncode == 0, first.stderr
    (server,) = _server_pids(runtime)
    (spare,) = _wait_for(lambda: _children(server))  # idle: one spare waits
    served = _run(argv, env)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["metrics"] == json.loads(first.stdout)["metrics"]
    assert not _alive(spare), "the spare ran the command and exited"
    (replacement,) = _wait_for(lambda: [p for p in _children(server) if _alive(p)])
    assert replacement != spare
    os.kill(replacement, signal.SIGKILL)  # a spare lost before its command is reaped and replaced
    _wait_for(lambda: not _alive(replacement))
    (third,) = _wait_for(lambda: [p for p in _children(server) if _alive(p)])
    assert third != replacement
    os.kill(third, signal.SIGKILL)  # and a command that arrives before the server has noticed: forked as before
    again = _run(argv, env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["metrics"] == json.loads(first.stdout)["metrics"]
    (last,) = _wait_for(lambda: [p for p in _children(server) if _alive(p)])
    (path,) = command_server.servers(runtime)
    assert command_server.control(path, "stop") == 0
    _wait_for(lambda: command_server.server_pid(path) is None)
    _wait_for(lambda: not _alive(last))  # the spare leaves with its server
