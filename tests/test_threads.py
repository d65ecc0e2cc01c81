"""The shared-machine settings: the passive OpenMP wait policy before torch starts and the per-job thread count
from the free cores (timings are in benchmarks/, never here)."""

import os
import subprocess
import sys

import pytest

from workbench import threads


def _machine(monkeypatch, cores: int, load: float) -> None:
    """A machine of ``cores`` usable cores at load average ``load``, no thread settings in the environment."""
    monkeypatch.setattr(threads, "_usable_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("load, expected", [(1.0, 4), (2.2, 3), (3.0, 2), (4.6, 1), (40.0, 1), (0.0, 4)])
def test_free_cores_subtracts_the_load_of_the_others(monkeypatch, load, expected):
    monkeypatch.setattr(threads, "_usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.free_cores() == expected


def test_threads_for_job_honours_the_users_settings(monkeypatch):
    _machine(monkeypatch, 8, 1.0)
    assert threads.threads_for_job() == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.threads_for_job() == 3
    monkeypatch.setenv("WORKBENCH_THREADS", "5")
    assert threads.threads_for_job() == 5


def test_every_core_by_default_and_the_free_cores_on_request(monkeypatch):
    # a loaded machine (load average 6.5 on 8 cores): every core by default, as BART does (a thread per core
    # gets the larger share beside busy peers), the free cores with WORKBENCH_THREADS=free
    _machine(monkeypatch, 8, 6.5)
    assert threads.threads_for_job() == 8
    monkeypatch.setenv("WORKBENCH_THREADS", "free")
    assert threads.threads_for_job() == 3


def test_cpu_job_runs_with_the_chosen_thread_count(monkeypatch):
    import torch

    from workbench.jobs import JobQueue, JobState
    from workbench.methods import discover_methods
    from workbench.problem import Problem

    before = torch.get_num_threads()
    monkeypatch.setenv("WORKBENCH_THREADS", "1")
    problem = Problem(torch.ones(1, 8, 8, dtype=torch.complex64))
    try:
        with JobQueue("cpu") as jobs:
            job = jobs.run_sync(discover_methods().get("zero-filled"), problem, None, device="cpu")
        assert job.state is JobState.DONE and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_passive_wait_policy_is_set_before_torch_and_a_users_choice_kept():
    code = "import os, workbench, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(env, OMP_WAIT_POLICY="ACTIVE"))
    assert out.stdout.strip() == "ACTIVE"


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    # 40 allocate-and-free cycles of an 8 MB array: with the policy the freed block is reused (no new page
    # faults); with glibc's default thresholds (a user's own setting is kept: here the default 128 KiB) each
    # cycle maps fresh pages and faults every one of them in again
    code = ("import resource, numpy as np, workbench\n"
            "a = np.ones(1 << 20); del a\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(40):\n    a = np.ones(1 << 20); del a\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if sys.platform != "linux" or not threads.keep_freed_memory():
        pytest.skip("glibc's mallopt only")
    kept = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout)
    default = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env=dict(env, MALLOC_MMAP_THRESHOLD_="131072")).stdout)
    assert kept < 200 and default > 40 * 200


@pytest.mark.parametrize("parallel, expected", [(1.6e-2, 1), (2e-4, 2), (5e-4, 2), (1.11e-3, 2), (1.5e-3, 1)])
def test_probe_falls_back_to_one_thread_when_the_team_stalls(monkeypatch, parallel, expected):
    # a parallel pass that waits for a parked thread (16 ms against 0.3 ms serial) means one thread; a team
    # that is faster than one thread keeps its threads, and so does one up to 1.7x slower (the probe's pass is
    # memory-bound: measured 1.15-1.67x on a quiet 2-core machine) and up to the margin threads.STALLED (4x: 3.7x
    # keeps two, 5x is a stalled core); the probe leaves torch at the count it returns
    import torch

    before = torch.get_num_threads()
    times = {1: 3e-4, 2: parallel}
    monkeypatch.setattr(threads, "_op_time", lambda n, x, **kw: times[n])
    monkeypatch.setattr(threads, "threads_for_job", lambda: 2)
    monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
    try:
        assert threads.probe_threads(2) == expected
        assert threads.use_threads_for_job() == expected and torch.get_num_threads() == expected
        monkeypatch.setenv("WORKBENCH_THREADS", "2")  # a fixed count is not probed
        monkeypatch.setattr(threads, "threads_for_job", lambda: 2)
        assert threads.use_threads_for_job() == 2
    finally:
        torch.set_num_threads(before)


def test_a_small_job_runs_on_one_thread(monkeypatch):
    # below SMALL_WORK coil-image elements the team's wake-ups cost more than the second core gives; a count
    # fixed by WORKBENCH_THREADS is kept; the job engine passes coils x grid
    import torch

    from workbench.jobs import _work
    from workbench.problem import Problem

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "cores_for_job", lambda: 2)
    monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
    try:
        assert threads.use_threads_for_job(threads.SMALL_WORK - 1) == 1 and torch.get_num_threads() == 1
        assert threads.use_threads_for_job(threads.SMALL_WORK) == 2 and torch.get_num_threads() == 2
        assert threads.use_threads_for_job(None) == 2
        monkeypatch.setenv("WORKBENCH_THREADS", "2")
        assert threads.use_threads_for_job(1000) == 2
    finally:
        torch.set_num_threads(before)
    k = torch.ones(2, 160, 160, dtype=torch.complex64)
    assert _work(Problem(k)) == 2 * 160 * 160 and _work(object()) is None
