"""The console script stops quietly when its reader goes away (`workbench info FILE | head`)."""

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
