"""CPU threads on a shared machine: how many intra-op threads a CPU job gets, and how idle ones wait.

Two things make torch slow when something else runs on the machine:

- OpenMP threads that spin while they wait at a barrier keep a core busy that another process (or our own
  other thread) needs; a native profile under one busy process put half of the main thread's time in
  libgomp barrier waits. ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep instead. It is read once, when the
  OpenMP runtime starts (with torch), so ``workbench/__init__.py`` sets it (unless the user did) before
  anything imports torch.
- Too few threads. With passive waits, a team of one thread per core loses little when the scheduler parks
  one of its threads behind another process, and under contention the scheduler shares the CPU by runnable
  threads, so one thread gets a smaller share than the two of a peer. Head l1-wavelet / TV, whole command,
  2 cores, load average 12 from other (mostly niced) sessions, medians of interleaved runs: 1 thread quiet
  11.5 / 14.5 s, beside one busy loop 24.8 / 31.7 s (slow-down 2.15 / 2.19); 2 threads 12.3 / 15.6 s and
  21.5 / 19.5 s (1.74 / 1.25); BART with 2 threads 13.8 / 14.6 s and 20.2 / 26.9 s (1.47 / 1.84). So
  :func:`threads_for_job` gives each CPU job every core this process may run on, as BART and OpenMP do,
  unless :func:`probe_threads` finds a parallel pass slower than a serial one at the job's start (a core held
  by a process of higher priority: a 10x slower solve with 2 threads).
  The one-minute load average cannot tell a niced or short-lived process from a busy peer; the rule that
  subtracted it (:func:`free_cores`, one thread at these loads) stays available as ``WORKBENCH_THREADS=free``.

- Page faults: glibc returns large freed blocks (from 128 KiB, adjusted upwards up to 32 MiB) to the kernel
  and trims the heap top, so every iteration's fresh 4-12 MB coil-image tensors are faulted in page by page
  again (the system time of a solve; a 1D-FFT normal operator on 8 x 256 x 256 took 17 ms instead of 7 ms).
  :func:`keep_freed_memory` raises both thresholds once at import, so freed blocks are reused; the peak is
  unchanged, and up to ``TRIM_THRESHOLD`` of freed memory stays with the process.

``WORKBENCH_THREADS=N`` fixes the count, ``free`` follows :func:`free_cores` per job (``auto`` or unset: every
usable core); an ``OMP_NUM_THREADS`` set by the user is respected as the upper bound.
"""

from __future__ import annotations

import os
import time

__all__ = ["SMALL_WORK", "cores_for_job", "free_cores", "keep_freed_memory", "probe_threads", "set_passive_wait_policy",
           "threads_for_job", "use_threads_for_job"]

# Coil-image elements below which a job runs on one thread: on small problems the team's wake-ups cost more than
# the second core gives (quiet 2-core machine, whole served commands, medians of 3 interleaved, 2 threads / 1:
# the 1-coil 256x256 phantom CG-SENSE 1.11, l1-wavelet 1.35, TV 1.61; the 2-coil 160x160 GRE 0.95, 1.28, 1.58;
# the 8-coil 256x256 head 0.90, 1.08, 1.14; the demo 0.83, 1.22, 0.89: CG-SENSE's FFTs gain from 2^19 up)
SMALL_WORK = 1 << 18
STALLED = 4.0  # a parallel probe pass this many times slower than a serial one: a core is held elsewhere
MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap and are reused when freed
TRIM_THRESHOLD = 512 << 20  # freed memory at the heap top kept before it is returned to the kernel


def set_passive_wait_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy (only effective before torch is imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed large blocks (``mallopt`` of the mmap and trim thresholds)
    unless the user set ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``. True when applied (glibc
    only; elsewhere nothing happens)."""
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(libc.mallopt(m_trim_threshold,
                                                                                               TRIM_THRESHOLD))
    except (OSError, AttributeError):  # not glibc
        return False


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def free_cores(own_running: float = 1.0) -> int:
    """Cores of this process's affinity set that other processes leave free: ``cores - (load - own_running)``,
    rounded, at least 1. ``own_running``: runnable threads of ours in the load average (the calling thread)."""
    cores = _usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    others = max(0.0, load - own_running)
    return max(1, min(cores, int(cores - others + 0.5)))


def _setting() -> str:
    """``WORKBENCH_THREADS``, lower case (``auto`` when unset)."""
    return os.environ.get("WORKBENCH_THREADS", "auto").strip().lower() or "auto"


def _fixed_count() -> int | None:
    """The thread count ``WORKBENCH_THREADS`` fixes, or None (``auto``, ``free``, anything not a number)."""
    try:
        return max(1, int(_setting()))
    except ValueError:
        return None


def threads_for_job() -> int:
    """Intra-op threads for the next CPU job: ``WORKBENCH_THREADS`` when set to a number, :func:`free_cores`
    when it is ``free``, else every usable core; capped by a user's ``OMP_NUM_THREADS``."""
    fixed = _fixed_count()
    if fixed is not None:
        return fixed
    n = free_cores() if _setting() == "free" else _usable_cores()
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return n


def _op_time(n: int, x, reps: int = 7, budget: float = float("inf")) -> float:
    """Median seconds of one parallel elementwise pass over ``x`` with ``n`` threads (stops early, returning
    the time so far, once ``budget`` seconds are spent)."""
    import torch

    torch.set_num_threads(n)
    x.mul_(1.0)  # wake the team
    times: list[float] = []
    for _ in range(reps):
        t = time.perf_counter()
        x.mul_(1.0)
        times.append(time.perf_counter() - t)
        if sum(times) > budget:
            return sum(times)
    times.sort()
    return times[len(times) // 2]


def probe_threads(n: int) -> int:
    """``n``, or 1 when a parallel pass with ``n`` threads is slower than with one right now (a few ms).

    A thread of the team that the scheduler keeps waiting (another process of higher priority, or a busy one,
    on its core) stalls every parallel region until it runs: on this 2-core machine, beside a training run at
    nice -5, a pass over 4 MB took 16 ms with 2 threads against 0.3 ms with one, and a whole l1-wavelet solve
    ran 10x slower. When the other core is free, 2 threads win on a solve, though not on the probe's
    memory-bound pass (up to 1.7x slower), hence the margin :data:`STALLED`. The load average cannot tell the
    two apart; timing a parallel pass can."""
    if n <= 1:
        return max(1, n)
    import torch

    x = torch.ones(1 << 20)
    one = _op_time(1, x)
    many = _op_time(n, x, budget=8 * 7 * one + 0.002)
    # A pass this small is bound by memory: on a quiet 2-core machine two threads take 1.15-1.67x one thread's
    # time (30 probes), so "not slower" would say one thread whenever nothing stalls; a stalled core is 50x.
    return n if many <= STALLED * one else 1


def cores_for_job() -> int:
    """The CPU threads a job may use now: :func:`threads_for_job`, checked by :func:`probe_threads` unless
    ``WORKBENCH_THREADS`` fixes the count (a whole-volume run gives each of them a slice of its own)."""
    n = threads_for_job()
    if _setting() == "auto":
        n = probe_threads(n)
    return n


def use_threads_for_job(work: int | None = None) -> int:
    """Set torch's intra-op thread count for a CPU job to :func:`cores_for_job` and return it; one thread when
    the job's data are small (``work``: coil-image elements, below :data:`SMALL_WORK`) and the count is not
    fixed by ``WORKBENCH_THREADS``."""
    import torch

    small = work is not None and work < SMALL_WORK and _fixed_count() is None
    n = 1 if small else cores_for_job()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
