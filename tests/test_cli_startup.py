"""The console script starts fast and stops quietly when its reader goes away (`workbench info FILE | head`)."""

from __future__ import annotations

import subprocess
import sys


def test_closed_pipe_gives_no_traceback(tmp_path):
    # A reader that closes at once; the command writes more than a pipe buffer, so the write must fail.
    code = ("import sys; sys.argv = ['workbench', '--help']; import workbench.cli as c; "
            "c.main = lambda: [print('x' * 1000) for _ in range(1000)] and 0; c.entry()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_info_does_not_import_torch_or_qt(tmp_path):
    # `workbench info` only reads a header: importing torch would cost it about a second at every call.
    import numpy as np

    path = tmp_path / "k.npy"
    np.save(path, (np.ones((4, 32, 32)) + 1j).astype(np.complex64))
    code = ("import sys; from workbench.cli import main; rc = main(['info', sys.argv[1]]); "
            "heavy = sorted(m for m in ('torch', 'PyQt6', 'torchkbnufft', 'skimage') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
