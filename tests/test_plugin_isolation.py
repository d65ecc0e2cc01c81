"""Plugins cannot take the workbench down (issue 16): sys.exit / KeyboardInterrupt at import are load errors,
in run they fail the job (never "cancelled", never exit 0), a job ignoring Cancel is abandoned and the queue
goes on, and results are validated (shape, dtype, finite values) before they are called done."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.io.fastmri import write_fastmri
from workbench.jobs import JobQueue, JobState
from workbench.methods import discover_methods, safe_run, MethodError
from workbench.problem import Problem
from workbench.scan import scan_from_arrays

HEADER = """
import sys, time
import torch
from workbench.methods import Capabilities, Method
from workbench.result import Result
"""
AT_IMPORT = {
    "exits_at_import.py": "sys.exit(3)",
    "interrupts_at_import.py": "raise KeyboardInterrupt",
    "exits_in_constructor.py": """
        class ExitInInit(Method):
            name = "test-exit-init"
            def __init__(self):
                sys.exit(4)
            def run(self, problem, params, ctx):
                pass
    """,
}


def _method(cls: str, name: str, run_body: str, caps: str = "") -> str:
    """A one-method plugin file: class ``cls`` named ``name`` whose ``run`` is ``run_body``."""
    body = textwrap.indent(textwrap.dedent(run_body).strip(), " " * 8)
    return (f"class {cls}(Method):\n    name = {name!r}\n"
            f"    capabilities = Capabilities(cartesian=True, noncartesian=True{caps})\n"
            f"    def run(self, problem, params, ctx):\n{body}\n")


ZERO_FILLED = "Result(image=problem.crop(problem.zero_filled('rss')))"
RUNNING = {
    "exits_in_run.py": _method("ExitInRun", "test-exit-run", "sys.exit(3)"),
    "interrupts_in_run.py": _method("InterruptInRun", "test-interrupt-run", "raise KeyboardInterrupt"),
    "hangs.py": _method("Hangs", "test-hangs", f"""
        t0 = time.time()
        while time.time() - t0 < 8:  # ignores Cancel (ends on its own so the test leaves no thread)
            time.sleep(0.01)
        return {ZERO_FILLED}"""),
    "wrong_shape.py": _method("WrongShape", "test-7x5", "return Result(image=torch.ones(7, 5, dtype=torch.complex64))"),
    "nan_std.py": _method("NanStd", "test-nan-std", """
        img = problem.crop(problem.zero_filled("rss"))
        return Result(image=img, std=torch.full(img.shape, float("nan")))""", ", gives_uncertainty=True"),
    "integer_image.py": _method("IntegerImage", "test-int-image", f"""
        r = {ZERO_FILLED}
        r.image = r.image.abs().to(torch.int64)  # changed after construction, past Result's checks
        return r"""),
    "quick.py": _method("Quick", "test-quick", f"return {ZERO_FILLED}"),
}


def _write(folder, files):
    folder.mkdir(exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(HEADER + textwrap.dedent(body))
    return folder


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("running"), RUNNING)


@pytest.fixture(scope="module")
def methods(running):
    reg = discover_methods([running], entry_points=False, builtin=False, user_dirs=False)
    assert not reg.errors, reg.errors
    return reg.methods


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j * rng.standard_normal((1, 2, 16, 12))).astype(np.complex64)
    return Problem.from_scan(scan_from_arrays(k), 0, None, device="cpu")


# ------------------------------------------------------------------------------------------------------------
# import
def test_exit_and_interrupt_at_import_are_load_errors(tmp_path, running):
    folder = _write(tmp_path / "bad", {**AT_IMPORT, "quick.py": RUNNING["quick.py"]})
    reg = discover_methods([folder], entry_points=False, builtin=False, user_dirs=False)
    assert "test-quick" in reg.methods  # the good plugin beside them still loads
    by_file = {e.source.rsplit("/", 1)[-1]: e.message for e in reg.errors}
    assert by_file["exits_at_import.py"].startswith("SystemExit")
    assert by_file["interrupts_at_import.py"].startswith("KeyboardInterrupt")
    assert "SystemExit" in by_file["exits_in_constructor.py"]


def test_workbench_plugins_starts_with_a_plugin_that_exits(tmp_path, capsys):
    folder = _write(tmp_path / "bad", AT_IMPORT)
    assert main(["plugins", "--plugin-dir", str(folder), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "SystemExit" in json.dumps(listing) and "KeyboardInterrupt" in json.dumps(listing)


def test_the_app_starts_with_a_plugin_that_exits(tmp_path, qtbot, settings, messages):
    from workbench.gui.main_window import MainWindow

    folder = _write(tmp_path / "bad", {**AT_IMPORT, "quick.py": RUNNING["quick.py"]})
    win = MainWindow(plugin_dirs=[str(folder)], settings=settings)
    qtbot.addWidget(win)
    assert "test-quick" in win.registry.methods
    assert any("exits_at_import.py" in e.source for e in win.registry.errors)
    win.close()


# ------------------------------------------------------------------------------------------------------------
# run
@pytest.mark.parametrize("name, words", [("test-exit-run", "SystemExit"), ("test-interrupt-run", "KeyboardInterrupt")])
def test_exit_or_interrupt_in_run_fails_the_job(methods, problem, name, words):
    with JobQueue("cpu") as q:
        job = q.submit(methods[name], problem)
        assert job.wait(30)
    assert job.state is JobState.FAILED, job.state  # not "cancelled"
    assert words in job.error.message and "inside run()" in job.error.message
    sync = JobQueue("cpu").run_sync(methods["test-exit-run"], problem)  # the CLI's path, on the main thread
    assert sync.state is JobState.FAILED and "SystemExit" in sync.error.message


def test_recon_json_exits_non_zero_when_the_plugin_exits(tmp_path, running, capsys):
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j * rng.standard_normal((1, 2, 16, 12))).astype(np.complex64)
    write_fastmri(tmp_path / "scan.h5", k)
    code = main(["recon", str(tmp_path / "scan.h5"), "--plugin-dir", str(running), "--method", "test-exit-run",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "SystemExit" in err and "error" in err


def test_a_job_ignoring_cancel_is_abandoned_and_the_queue_goes_on(methods, problem):
    q = JobQueue("cpu", cancel_grace=0.5)
    hung = q.submit(methods["test-hangs"], problem)
    after = q.submit(methods["test-quick"], problem)
    t0 = time.time()
    while hung.state is not JobState.RUNNING and time.time() - t0 < 10:
        time.sleep(0.01)
    hung.cancel()
    assert after.wait(5), "the job behind the hung one still waits"
    assert after.state is JobState.DONE
    assert hung.unresponsive and hung.state is JobState.FAILED and "unresponsive" in hung.error.message
    t0 = time.time()
    q.shutdown(wait=True)  # does not wait for the stuck thread
    assert time.time() - t0 < 2
    assert hung.wait(0) and hung.result is None


def test_a_job_answering_cancel_is_still_cancelled(methods, problem, registry):
    with JobQueue("cpu", cancel_grace=2.0) as q:
        job = q.submit(registry.methods["test-slow"], problem)
        while job.state is not JobState.RUNNING:
            time.sleep(0.01)
        job.cancel()
        assert job.wait(5)
    assert job.state is JobState.CANCELLED and not job.unresponsive


# ------------------------------------------------------------------------------------------------------------
# results
@pytest.mark.parametrize("name, words", [
    ("test-7x5", "7x5"),
    ("test-nan-std", "std"),
    ("test-int-image", "complex or real float"),
])
def test_invalid_results_fail_the_job(methods, problem, name, words):
    with pytest.raises(MethodError, match=words):
        safe_run(methods[name], problem)
    with JobQueue("cpu") as q:
        job = q.submit(methods[name], problem)
        assert job.wait(30)
    assert job.state is JobState.FAILED and words in job.error.message and job.result is None


def test_a_valid_result_passes(methods, problem):
    r = safe_run(methods["test-quick"], problem)
    assert tuple(r.image.shape) == tuple(problem.recon_shape) and torch.isfinite(r.image).all()


def test_the_app_closes_and_later_jobs_run_while_a_plugin_hangs(tmp_path, running, methods, qtbot, settings,
                                                                 messages):
    from workbench.gui.main_window import MainWindow
    from workbench.session import Session

    rng = np.random.default_rng(2)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j * rng.standard_normal((1, 2, 16, 12))).astype(np.complex64)
    write_fastmri(tmp_path / "scan.h5", k)
    session = Session(device="cpu", job_queue=JobQueue("cpu", cancel_grace=0.5))
    reg = discover_methods([running], entry_points=False, builtin=False, user_dirs=False)
    win = MainWindow(plugin_dirs=[str(running)], settings=settings, session=session, registry=reg)
    qtbot.addWidget(win)
    session.open(tmp_path / "scan.h5")
    hung = session.run(methods["test-hangs"])
    later = session.run(methods["test-quick"])
    qtbot.waitUntil(lambda: hung.state == "running", timeout=10_000)
    session.cancel(hung)
    qtbot.waitUntil(lambda: later.state == "done", timeout=5_000)  # the queue went on
    qtbot.waitUntil(lambda: hung.state == "failed", timeout=5_000)
    assert "unresponsive" in hung.error
    again = session.run(methods["test-hangs"])
    qtbot.waitUntil(lambda: again.state == "running", timeout=10_000)
    t0 = time.time()
    win.close()  # a plugin still running: closing returns (its daemon thread is left behind)
    assert time.time() - t0 < 3


def test_a_check_calling_sys_exit_is_a_reason_not_an_exit(problem):
    from workbench.methods import Method
    from workbench.session.runs import method_reasons

    class ExitInCheck(Method):
        name = "test-exit-check"

        def check(self, problem, params=None):
            raise SystemExit(2)

    reasons = method_reasons([ExitInCheck()], lambda: problem)
    assert "SystemExit" in reasons["test-exit-check"][0]
    with pytest.raises(MethodError, match="check.. failed: SystemExit"):
        safe_run(ExitInCheck(), problem)


def test_after_shutdown_a_hung_job_reports_nothing(tmp_path, running, methods):
    # An app that closes while a plugin hangs: the Cancel watchdog and the plugin's eventual return come after the
    # window (and its dispatcher) is gone; dispatching then aborted the test process ("pure virtual method").
    from workbench.session import Session

    rng = np.random.default_rng(3)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j * rng.standard_normal((1, 2, 16, 12))).astype(np.complex64)
    write_fastmri(tmp_path / "scan.h5", k)
    closed, late = threading.Event(), []
    session = Session(device="cpu", job_queue=JobQueue("cpu", cancel_grace=0.3),
                      dispatch=lambda fn: late.append(fn) if closed.is_set() else fn())
    session.open(tmp_path / "scan.h5")
    hung = session.run(methods["test-hangs"])
    t0 = time.time()
    while hung.state != "running" and time.time() - t0 < 10:
        time.sleep(0.01)
    session.shutdown(timeout=0.5)
    closed.set()
    time.sleep(1.0)  # past the watchdog's grace: the job is abandoned now
    assert hung.job.unresponsive and late == []
