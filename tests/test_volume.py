"""Volume mode: ``workbench recon --slice all|A:B|A,B`` and workbench.volume (one process, one result file)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.io import open_scan
from workbench.methods import Method, discover_methods
from workbench.result import Result
from workbench.volume import (SliceRangeError, VolumeCancelled, is_volume_spec, load_volume, parse_slices,
                              reconstruct_volume)

N_SLICES = 4


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    """A small 4-slice, 4-coil fastMRI file (simulated brain slices) with its stored reference."""
    from workbench.io.fastmri import write_fastmri
    from workbench.simulate import generate_slice

    slices = [generate_slice(i, shape=(48, 40), n_coils=4, slice_position=-10.0 + 8 * i) for i in range(N_SLICES)]
    path = tmp_path_factory.mktemp("volume") / "vol.h5"
    write_fastmri(path, np.stack([s["kspace"] for s in slices]), np.stack([s["reference"] for s in slices]))
    return path


def _files(folder):
    return sorted(os.listdir(folder))


def test_slice_specifications():
    assert parse_slices("all", 5) == [0, 1, 2, 3, 4]
    assert parse_slices("1:4", 5) == [1, 2, 3] and parse_slices("3:", 5) == [3, 4] and parse_slices(":2", 5) == [0, 1]
    assert parse_slices("0:5:2", 5) == [0, 2, 4] and parse_slices("4,0,2", 5) == [4, 0, 2] and parse_slices(3, 5) == [3]
    assert is_volume_spec("all") and is_volume_spec("1:3") and is_volume_spec("1,2")
    assert not is_volume_spec("3") and not is_volume_spec(None)
    for bad, words in (("3:1", "empty or out of range"), ("0:9", "out of range"), ("5", "slice 5 is out of range"),
                       ("-1", "slice -1 is out of range"), ("a:b", "not a slice number"), ("1,1", "twice"),
                       ("0:4:0", "step"), ("1:2:3:4", "A:B")):
        with pytest.raises(SliceRangeError, match=words) as info:
            parse_slices(bad, 5, "scan.h5")
        assert str(info.value).startswith("scan.h5: ")  # typed, naming the file
        assert "the scan has 5 slices: 0..4" in str(info.value) or words in ("twice", "step")


def test_bad_slice_range_on_the_command_line_names_the_file(scan_file, capsys, tmp_path):
    out = tmp_path / "v.h5"
    assert main(["recon", str(scan_file), "--slice", "2:9", "--method", "zero-filled", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{scan_file}: slice range '2:9' is empty or out of range (the scan has 4 slices: 0..3" in err
    assert not out.exists()
    assert main(["recon", str(scan_file), "--slice", "all", "--method", "zero-filled", "--validate"]) == 1
    assert "--validate applies to one slice" in capsys.readouterr().err


def test_volume_file_holds_every_slice_and_equals_single_slice_runs(scan_file, tmp_path, capsys):
    common = ["--method", "cg-sense", "--mask", "equispaced", "--accel", "2", "--param", "n_iter=8"]
    out = tmp_path / "volume.h5"
    assert main(["recon", str(scan_file), "--slice", "all", *common, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    done = [line for line in err.splitlines() if " done in " in line]
    assert [line.split(" (")[0] for line in done] == [f"cg-sense: slice {i}" for i in range(N_SLICES)]
    assert f"({N_SLICES}/{N_SLICES}) done" in done[-1]
    vol = load_volume(out)
    assert vol["slices"] == list(range(N_SLICES)) and vol["image"].shape == (N_SLICES, 48, 40)
    assert vol["image"].dtype == np.complex64 and vol["mask"] is not None
    meta = vol["meta"]
    assert meta["method"] == "cg-sense" and meta["params"]["n_iter"] == 8 and len(meta["per_slice"]) == N_SLICES
    assert "--slice all" in meta["provenance"]["command"]
    assert _files(tmp_path) == ["volume.h5"]
    for i in range(N_SLICES):
        single = tmp_path / f"s{i}.h5"
        assert main(["recon", str(scan_file), "--slice", str(i), *common, "--out", str(single)]) == 0
        image = Result.load(single).image.numpy()
        np.testing.assert_allclose(vol["image"][i], image, rtol=0, atol=1e-5 * np.abs(image).max())
        # the per-slice scores are the single-slice command's
        assert meta["per_slice"][i]["metrics"]["psnr"] == pytest.approx(
            Result.load(single).extras["metrics"]["psnr"], abs=1e-3)
    capsys.readouterr()


def test_ranges_nifti_and_npy_outputs(scan_file, tmp_path, capsys):
    nib = pytest.importorskip("nibabel")
    nii, npy = tmp_path / "v.nii.gz", tmp_path / "v.npy"
    assert main(["recon", str(scan_file), "--slice", "1:3", "--method", "zero-filled", "--out", str(nii)]) == 0
    assert main(["recon", str(scan_file), "--slice", "3,0", "--method", "zero-filled", "--out", str(npy),
                 "--json"]) == 0
    assert nib.load(str(nii)).shape == (40, 48, 2)  # NIfTI: [W, H, S]
    stack = np.load(npy)
    assert stack.shape == (2, 48, 40) and stack.dtype == np.complex64
    scan = open_scan(scan_file)
    np.testing.assert_allclose(np.abs(stack[0]), scan.reference(3), rtol=1e-4, atol=1e-6 * stack.max())
    assert _files(tmp_path) == ["v.nii.gz", "v.npy"]
    capsys.readouterr()


def test_progress_per_slice_and_cancel_leaves_no_file(scan_file, tmp_path):
    scan = open_scan(scan_file)
    method = discover_methods().get("cg-sense")
    seen, progressed = [], set()
    volume = reconstruct_volume(scan, [2, 0, 1], method, {"n_iter": 4}, keep_images=True,
                                on_progress=lambda k, i, job: progressed.add(i),
                                on_slice=lambda k, record, image: seen.append((k, record.slice, image.shape)))
    assert seen == [(0, 2, (48, 40)), (1, 0, (48, 40)), (2, 1, (48, 40))] and progressed == {0, 1, 2}
    assert volume.images.shape == (3, 48, 40) and [r.slice for r in volume.records] == [2, 0, 1]
    assert volume.metrics is not None and volume.metrics["psnr"] > 10

    out = tmp_path / "cancelled.h5"
    out.write_bytes(b"previous result")  # a previous file of that name stays as it was
    cancel = threading.Event()
    with pytest.raises(VolumeCancelled):
        reconstruct_volume(scan, range(N_SLICES), method, {"n_iter": 4}, out=out, cancel=cancel,
                           on_slice=lambda k, record, image: cancel.set() if k == 1 else None)
    assert out.read_bytes() == b"previous result" and _files(tmp_path) == ["cancelled.h5"]

    # Cancel while a slice's method runs: the job stops at its next progress report; no file either.
    fresh = tmp_path / "fresh.h5"
    cancel = threading.Event()
    with pytest.raises(VolumeCancelled):
        reconstruct_volume(scan, range(N_SLICES), method, {"n_iter": 50}, out=fresh, cancel=cancel,
                           on_progress=lambda k, i, job: cancel.set() if k == 2 else None)
    assert not fresh.exists() and _files(tmp_path) == ["cancelled.h5"]


class FailsOnItsSecondRun(Method):
    name = "fails-later"
    version = "1"
    description = "an empty image, then an error"

    def __init__(self):
        self.runs = 0

    def run(self, problem, params, ctx):
        self.runs += 1
        if self.runs == 2:
            raise RuntimeError("diverged")
        return Result(image=torch.zeros(tuple(problem.recon_shape), dtype=torch.complex64))


@pytest.mark.parametrize("workers", [1, 2])
def test_slices_in_memory_are_those_in_flight(scan_file, workers):
    # The queue forgets each finished slice's job (which holds the slice's Problem: k-space, maps): the volume's
    # memory is that of the slices in flight (one per worker), not the sum of its slices'.
    import gc
    import weakref

    from workbench.jobs import JobQueue

    jobs, problems, alive = JobQueue("cpu", cpu_threads=1 if workers > 1 else None), {}, []  # as the run's own

    def progress(k, index, job):
        problems.setdefault(k, weakref.ref(job.problem))

    def slice_done(k, record, image):
        gc.collect()
        alive.append(sum(ref() is not None for kk, ref in problems.items() if kk <= k))  # slices done so far
        assert sum(ref() is not None for ref in problems.values()) <= workers
        # a slice after k may have finished its job and not yet told the queue to forget it (its own thread)
        assert sum(j.done for j in jobs.jobs) <= workers - 1

    reconstruct_volume(open_scan(scan_file), range(N_SLICES), discover_methods().get("cg-sense"), {"n_iter": 3},
                       jobs=jobs, on_progress=progress, on_slice=slice_done, workers=workers)
    assert len(problems) == N_SLICES and alive == [0] * N_SLICES


class FailsOnSlice3(Method):
    name = "fails-on-3"
    version = "1"
    description = "an empty image, or an error on slice 3 after the other slice in flight has started"

    def __init__(self):
        self.started = threading.Event()

    def run(self, problem, params, ctx):
        if problem.provenance["slice"] == 3:
            self.started.wait(10)
            raise RuntimeError("diverged")
        self.started.set()
        for _ in range(200):  # a slice in flight beside the failing one stops at its next progress report
            ctx.progress(0.5, "working")
            ctx.check_cancelled()
            time.sleep(0.01)
        return Result(image=torch.zeros(tuple(problem.recon_shape), dtype=torch.complex64))


def test_a_failing_slice_names_it_and_writes_nothing(scan_file, tmp_path):
    scan = open_scan(scan_file)
    out = tmp_path / "v.h5"
    with pytest.raises(WorkbenchError, match="fails-later: slice 3: .*diverged"):
        reconstruct_volume(scan, [1, 3, 0], FailsOnItsSecondRun(), out=out, workers=1)
    assert _files(tmp_path) == []
    # two slices at once: slice 3 fails while slice 0 runs, slice 0 the first in flight or the second; slice 0 is
    # stopped, not waited for to the end, and the run raises slice 3's error (not slice 0's "cancelled")
    for order in ([3, 0, 1], [0, 3, 1]):
        t0 = time.perf_counter()
        with pytest.raises(WorkbenchError, match="fails-on-3: slice 3: .*diverged"):
            reconstruct_volume(scan, order, FailsOnSlice3(), out=out, workers=2)
        assert _files(tmp_path) == [] and time.perf_counter() - t0 < 1.5, order


def test_volume_params_are_the_last_slice_s_whatever_finishes_last(scan_file):
    # with one worker the volume's params are those of its last slice; two workers give the same, although the
    # first slice finishes after the last one
    second_done = threading.Event()

    class ParamsOfItsSlice(Method):
        name, version, description = "params-of-its-slice", "1", "an image whose params name its slice"

        def run(self, problem, params, ctx):
            index = problem.provenance["slice"]
            if index == 0:  # slice 0 ends after slice 1
                second_done.wait(10)
                time.sleep(0.05)
            image = torch.zeros(tuple(problem.recon_shape), dtype=torch.complex64)
            second_done.set() if index == 1 else None
            return Result(image=image, params={"slice": index})

    scan = open_scan(scan_file)
    for workers in (1, 2):
        second_done.clear() if workers == 2 else second_done.set()  # one worker: slice 0 must not wait for 1
        volume = reconstruct_volume(scan, [0, 1], ParamsOfItsSlice(), workers=workers)
        assert volume.params == {"slice": 1}, workers


def test_slices_in_parallel_equal_one_at_a_time(scan_file):
    # Two slices at once (one intra-op thread each) give the images, records and volume scores of one slice at a
    # time; the calls of on_slice come in slice order on the calling thread, on_progress one at a time.
    scan = open_scan(scan_file)
    method = discover_methods().get("cg-sense")
    seen, inside, overlap = {}, [0], []

    def progress(k, index, job):
        inside[0] += 1
        overlap.append(inside[0])
        time.sleep(0.001)
        inside[0] -= 1

    caller, threads = threading.get_ident(), torch.get_num_threads()
    for workers in (1, 2):
        order = []
        seen[workers] = reconstruct_volume(
            scan, [2, 0, 3, 1], method, {"n_iter": 6}, keep_images=True, workers=workers, on_progress=progress,
            on_slice=lambda k, record, image: order.append((k, record.slice, threading.get_ident() == caller)))
        assert order == [(0, 2, True), (1, 0, True), (2, 3, True), (3, 1, True)]
    one, two = seen[1], seen[2]
    assert max(overlap) == 1
    np.testing.assert_allclose(two.images, one.images, rtol=0, atol=1e-5 * np.abs(one.images).max())
    assert [r.slice for r in two.records] == [2, 0, 3, 1]
    assert [r.iterations for r in two.records] == [r.iterations for r in one.records]
    assert two.metrics["psnr"] == pytest.approx(one.metrics["psnr"], abs=1e-3)
    assert torch.get_num_threads() == threads  # the run's one-thread-per-slice setting is undone


def test_volume_runs_in_the_background_with_progress_per_slice(scan_file, tmp_path):
    from workbench.session.volume_runs import VolumeRuns

    scan = open_scan(scan_file)
    changes = []
    runs = VolumeRuns(on_change=lambda run: changes.append((run.state, run.progress, tuple(run.done_slices))))
    out = tmp_path / "v.h5"
    run = runs.start(scan, discover_methods().get("cg-sense"), {"n_iter": 4}, path=str(out))
    assert run.wait(120) and run.state == "done", run.error
    assert run.done_slices == list(range(N_SLICES)) and run.metrics["psnr"] > 10
    states = [c[0] for c in changes]
    assert states[0] == "running" and states[-1] == "done"
    finished = [c[2] for c in changes if c[2]]
    assert sorted(set(finished), key=len) == [tuple(range(k)) for k in range(1, N_SLICES + 1)]  # one by one
    progress = [c[1] for c in changes]
    assert progress == sorted(progress) and progress[-1] == 1.0
    vol = load_volume(out)
    for i in range(N_SLICES):
        np.testing.assert_array_equal(vol["image"][i], run.image(i))

    cancelled = runs.start(scan, discover_methods().get("cg-sense"), {"n_iter": 200}, path=str(tmp_path / "c.h5"))
    cancelled.cancel()
    assert cancelled.wait(60) and cancelled.state == "cancelled"
    assert _files(tmp_path) == ["v.h5"]
    with pytest.raises(WorkbenchError):  # bad parameters fail in the caller, before any thread starts
        runs.start(scan, discover_methods().get("cg-sense"), {"n_iter": -3})
    runs.shutdown()


def test_volume_run_progress_never_moves_back_with_slices_in_flight(monkeypatch):
    # Slice k+1 reports its progress on a worker thread while slice k finishes on the run's thread (two slices in
    # flight): the run's progress, as its observers see it change by change, never moves back. Thread switches
    # are forced often so that a stale value written after a newer one would show.
    import sys
    import types

    from workbench.session import volume_runs
    from workbench.volume import SliceRecord

    n = 100

    def two_in_flight(scan, slices, method, params, *, on_progress, on_slice, **kw):
        for k in range(n):
            job = types.SimpleNamespace(progress=0.0)

            def next_slice(k=k, job=job):
                for i in range(20):
                    job.progress = i / 20
                    on_progress(k + 1, k + 1, job)

            worker = threading.Thread(target=next_slice)
            if k + 1 < n:
                worker.start()
            on_slice(k, SliceRecord(k, 0.0, {}, 1, None), np.zeros((2, 2), np.complex64))
            if k + 1 < n:
                worker.join()
        return types.SimpleNamespace(metrics=None)

    monkeypatch.setattr(volume_runs, "reconstruct_volume", two_in_flight)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            seen = []
            runs = volume_runs.VolumeRuns(on_change=lambda run: seen.append(run.progress))
            run = runs.start(types.SimpleNamespace(n_slices=n, path=None),
                             types.SimpleNamespace(name="m", make_params=lambda p: None))
            assert run.wait(60) and run.state == "done"
            assert seen == sorted(seen) and seen[-1] == 1.0
    finally:
        sys.setswitchinterval(interval)


def test_a_method_that_ignores_cancel_does_not_keep_the_process_alive(scan_file):
    # Two slices run on threads of their own; a method that ignores Cancel keeps neither the app from quitting
    # (its volume runs are cancelled and waited for a moment) nor the process from ending, as the job engine's
    # abandoned workers do not. Threads that the interpreter joins at exit held it until the method returned.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import threading, time
        import torch
        from workbench.io import open_scan
        from workbench.methods import Method
        from workbench.result import Result
        from workbench.session.volume_runs import VolumeRuns

        started = threading.Event()

        class Deaf(Method):
            name, version, description = "deaf", "1", "ignores Cancel for a minute"

            def run(self, problem, params, ctx):
                started.set()
                time.sleep(60)
                return Result(image=torch.zeros(tuple(problem.recon_shape), dtype=torch.complex64))

        runs = VolumeRuns()
        run = runs.start(open_scan({str(scan_file)!r}), Deaf(), None, slices=[0, 1, 2])
        assert started.wait(30)
        runs.shutdown(timeout=0.5)
        print("quitting", flush=True)
    """)
    env = dict(os.environ, WORKBENCH_THREADS="2")  # two slices at once
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=50)
    except subprocess.TimeoutExpired:
        pytest.fail("the process waited for the method that ignores Cancel")
    assert done.returncode == 0 and "quitting" in done.stdout, done.stderr
    assert time.perf_counter() - t0 < 45


def test_on_slice_never_runs_during_an_on_progress_call(scan_file):
    # Two slices at once: the calls of on_progress come from the slices' threads, those of on_slice from the
    # caller's; both write to one terminal line (the CLI's SliceProgress), so they take turns too.
    inside, overlaps = [0], []

    def progress(k, index, job):
        inside[0] += 1
        time.sleep(0.02)
        inside[0] -= 1

    def slice_done(k, record, image):
        end = time.perf_counter() + 0.15  # long enough to meet the other slice's next progress report
        while time.perf_counter() < end:
            overlaps.append(inside[0])
            time.sleep(0.002)

    reconstruct_volume(open_scan(scan_file), range(N_SLICES), discover_methods().get("cg-sense"), {"n_iter": 30},
                       workers=2, on_progress=progress, on_slice=slice_done)
    assert overlaps and max(overlaps) == 0
