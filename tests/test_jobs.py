"""Job engine: ordering, cancellation (running and queued), failures, callbacks, run_sync."""

from __future__ import annotations

import threading
import time
import types
from dataclasses import dataclass

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.jobs import JobQueue, JobState
from workbench.methods import Capabilities, Method, ParamError, param
from workbench.result import Result


def stand_in_problem(**extra):
    """The attributes the engine and these methods use; ``ran`` records what ran, in order."""
    return types.SimpleNamespace(y=torch.ones(2, 4, 3, dtype=torch.complex64), trajectory=None, device="cpu",
                                 ran=[], gate=threading.Event(), **extra)


@dataclass
class ValueParams:
    value: float = param(1.0, min=-1e6, max=1e6)


class Constant(Method):
    """Image = value everywhere (plus the coil sum of y, which is 2): an explicit expected result."""

    name = "constant"
    version = "1"
    capabilities = Capabilities()
    Params = ValueParams

    def run(self, problem, params, ctx):
        problem.ran.append(params.value)
        ctx.progress(0.5, "half way")
        return Result(image=torch.full((4, 3), params.value, dtype=torch.complex64) + problem.y.sum(0))


@dataclass
class SlowParams:
    n_iter: int = param(100_000, min=1)


class Slow(Method):
    """Loops (5 ms per iteration) checking for cancellation each time; records every iteration."""

    name = "slow"
    Params = SlowParams

    def run(self, problem, params, ctx):
        for k in range(params.n_iter):
            ctx.check_cancelled()
            problem.ran.append(k)
            ctx.progress(k / params.n_iter, f"iteration {k}")
            ctx.report_iterate(torch.full((4, 3), float(k)))
            time.sleep(0.005)
        return Result(image=torch.zeros(4, 3))


class Gate(Method):
    """Blocks until problem.gate is set (still honouring cancellation)."""

    name = "gate"

    def run(self, problem, params, ctx):
        while not problem.gate.wait(0.01):
            ctx.check_cancelled()
        problem.ran.append("gate")
        return Result(image=torch.zeros(4, 3))


def exploding_helper(x):
    return x / 0


class Explodes(Method):
    name = "explodes"

    def run(self, problem, params, ctx):
        exploding_helper(1)


@pytest.fixture
def jq():
    q = JobQueue("cpu", progress_interval=0.0, iterate_interval=0.0)
    yield q
    q.shutdown(timeout=5)


def wait_until(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


def test_cancel_running_job_stops_it_quickly(jq):
    prob = stand_in_problem()
    done, iterates = [], []
    job = jq.submit(Slow(), prob, on_done=done.append, on_iterate=lambda j, im: iterates.append(im))
    wait_until(lambda: len(prob.ran) >= 10)
    assert job.state is JobState.RUNNING and 0 < job.progress < 1 and job.progress_text.startswith("iteration")
    t0 = time.monotonic()
    assert job.cancel()
    assert job.wait(1.0), "the job did not stop within 1 s"
    assert time.monotonic() - t0 < 1.0
    assert job.state is JobState.CANCELLED and job.result is None and job.error is None
    n = len(prob.ran)
    time.sleep(0.1)
    assert len(prob.ran) == n < 100_000  # the partial work stopped
    assert done == [job] and job.finished >= job.started and job.elapsed > 0
    assert iterates and iterates[-1].device.type == "cpu"
    assert not job.cancel()  # already finished


def test_failing_job_reports_traceback_and_queue_keeps_working(jq):
    prob = stand_in_problem()
    bad = jq.submit(Explodes(), prob)
    good = jq.submit(Constant(), prob, {"value": 3})
    assert bad.wait(5) and good.wait(5)
    assert bad.state is JobState.FAILED and bad.result is None
    assert "ZeroDivisionError" in bad.error.message and bad.error.kind == "MethodError"
    assert "exploding_helper" in bad.error.traceback and "return x / 0" in bad.error.traceback
    assert good.state is JobState.DONE
    assert torch.equal(good.result.image, torch.full((4, 3), 5.0 + 0j))


def test_twenty_jobs_in_order_with_correct_results(jq):
    prob = stand_in_problem()
    progress_seen = []
    jobs = [jq.submit(Constant(), prob, {"value": str(i)}, on_progress=lambda j: progress_seen.append(j.progress))
            for i in range(20)]
    for j in jobs:
        assert j.wait(10)
    assert [j.state for j in jobs] == [JobState.DONE] * 20
    assert prob.ran == [float(i) for i in range(20)]
    assert all(a.finished <= b.started for a, b in zip(jobs, jobs[1:]))  # one at a time, in submission order
    for i, j in enumerate(jobs):
        assert torch.equal(j.result.image, torch.full((4, 3), i + 2.0 + 0j))
        assert j.result.params == {"value": float(i)} and j.result.method == "constant" and j.result.device == "cpu"
        assert j.progress == 1.0
    assert 0.5 in progress_seen and 0.0 in progress_seen
    assert jq.pending() == []


def test_cancel_queued_job_never_runs(jq):
    prob = stand_in_problem()
    done = []
    blocker = jq.submit(Gate(), prob)
    queued = jq.submit(Constant(), prob, {"value": 99}, on_done=done.append)
    wait_until(lambda: blocker.state is JobState.RUNNING)
    assert queued.state is JobState.QUEUED
    assert queued.cancel()
    assert queued.state is JobState.CANCELLED and queued.wait(0) and done == [queued]
    assert queued.started is None
    prob.gate.set()
    after = jq.submit(Constant(), prob, {"value": 1})
    assert blocker.wait(5) and after.wait(5)
    assert blocker.state is JobState.DONE and after.state is JobState.DONE
    assert prob.ran == ["gate", 1.0]  # 99 never ran
    assert done == [queued]  # on_done not called a second time


def test_callbacks_run_on_worker_thread_and_errors_in_them_are_contained(jq):
    prob = stand_in_problem()
    threads = set()

    def on_progress(job):
        threads.add(threading.get_ident())
        raise RuntimeError("buggy observer")

    job = jq.submit(Constant(), prob, on_progress=on_progress, on_done=lambda j: threads.add(threading.get_ident()))
    assert job.wait(5) and job.state is JobState.DONE
    assert threads and threading.get_ident() not in threads
    assert any("buggy observer" in line for line in job.log)


def test_run_sync_uses_the_same_path(jq):
    prob = stand_in_problem()
    seen = []
    job = jq.run_sync(Constant(), prob, {"value": 4}, on_progress=lambda j: seen.append(threading.get_ident()))
    assert job.state is JobState.DONE and torch.equal(job.result.image, torch.full((4, 3), 6.0 + 0j))
    assert set(seen) == {threading.get_ident()}
    bad = jq.run_sync(Explodes(), prob)
    assert bad.state is JobState.FAILED and "exploding_helper" in bad.error.traceback


def test_submit_validates_params_and_device(jq):
    prob = stand_in_problem()
    with pytest.raises(ParamError, match="parameter 'value' of constant"):
        jq.submit(Constant(), prob, {"value": "lots"})
    if not torch.cuda.is_available():
        with pytest.raises(WorkbenchError, match="no CUDA GPU"):
            jq.submit(Constant(), prob, device="cuda")


def test_problem_factory_is_built_on_the_worker(jq):
    built_on = []

    def build():
        built_on.append(threading.get_ident())
        return stand_in_problem()

    job = jq.submit(Constant(), build, {"value": 1})
    assert job.wait(5) and job.state is JobState.DONE
    assert built_on and built_on[0] != threading.get_ident() and job.problem.ran == [1.0]

    def fails():
        raise OSError("slice 3 could not be read")

    job = jq.submit(Constant(), fails)
    assert job.wait(5) and job.state is JobState.FAILED
    assert "could not prepare the data: OSError: slice 3 could not be read" in job.error.message


def test_check_reasons_fail_the_job(jq):
    class NonCartOnly(Constant):
        name = "noncart-only"
        capabilities = Capabilities(cartesian=False, noncartesian=True)

    job = jq.submit(NonCartOnly(), stand_in_problem())
    assert job.wait(5) and job.state is JobState.FAILED
    assert "cannot run on this data" in job.error.message and "non-Cartesian data only" in job.error.message


def test_shutdown_cancels_pending_and_rejects_new_jobs():
    q = JobQueue("cpu")
    prob = stand_in_problem()
    running = q.submit(Slow(), prob)
    queued = q.submit(Constant(), prob)
    wait_until(lambda: running.state is JobState.RUNNING)
    q.shutdown(timeout=5)
    assert running.state is JobState.CANCELLED and queued.state is JobState.CANCELLED
    with pytest.raises(RuntimeError, match="shut down"):
        q.submit(Constant(), prob)
