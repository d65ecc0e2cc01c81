"""Automatic weights remembered across commands (workbench.weight_store): reuse, damaged entries, eviction."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from workbench import toolkit
from workbench.cli import main
from workbench.result import Result
from workbench.weight_store import WeightStore

SHAPE = (8, 6)


def _image(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)).astype(np.complex64)


def test_round_trip_and_what_is_refused(tmp_path):
    store = WeightStore(tmp_path / "w")
    image = _image()
    store.put("ab12", 0.01, [[0.01, 3.0]], {"lam": 0.01, "lam_rule": "discrepancy"}, image)
    lam, trace, chosen, back = store.get("ab12", SHAPE)
    assert lam == 0.01 and trace == [[0.01, 3.0]] and chosen["lam_rule"] == "discrepancy"
    np.testing.assert_array_equal(back, image)
    assert oct(os.stat(tmp_path / "w").st_mode & 0o777) == "0o700"
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in (tmp_path / "w").iterdir())

    assert store.get("ab12", (6, 8)) is None  # an image of another grid
    assert store.get("cd34", SHAPE) is None  # nothing stored
    with pytest.raises(ValueError):
        store.get("../etc/passwd", SHAPE)  # a key is a digest, never a path

    # damaged or foreign entries are ignored, never trusted
    (tmp_path / "w" / "ab12.json").write_text("{not json")
    assert store.get("ab12", SHAPE) is None
    store.put("ab12", 0.01, [], {}, image)
    np.save(tmp_path / "w" / "ab12.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert store.get("ab12", SHAPE) is None  # an object array would need pickle: refused
    np.save(tmp_path / "w" / "ab12.npy", np.full(SHAPE, np.nan, np.complex64))
    assert store.get("ab12", SHAPE) is None
    meta = json.loads((tmp_path / "w" / "ab12.json").read_text())
    (tmp_path / "w" / "ab12.json").write_text(json.dumps(dict(meta, lam="nan")))
    assert store.get("ab12", SHAPE) is None

    # an unwritable folder: put and get do nothing, raise nothing
    blocked = WeightStore(tmp_path / "file")
    (tmp_path / "file").write_text("a file, not a folder")
    blocked.put("ef56", 0.1, [], {}, image)
    assert blocked.get("ef56", SHAPE) is None


def test_least_recently_used_entries_go_first(tmp_path):
    store = WeightStore(tmp_path, max_entries=3)
    for i, key in enumerate(["a1", "b2", "c3"]):
        store.put(key, 0.1 * (i + 1), [], {}, _image(i))
        os.utime(tmp_path / f"{key}.json", ns=(i * 10**9, i * 10**9))
    assert store.get("a1", SHAPE) is not None  # read: now the most recently used
    store.put("d4", 0.4, [], {}, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1.json", "a1.npy", "c3.json", "c3.npy", "d4.json"]
    assert store.get("d4", SHAPE)[3] is None  # stored without an image


def test_a_second_command_reuses_the_weight_and_gives_the_same_image(tmp_path, monkeypatch, capsys):
    from workbench import command_server
    from workbench.simulate import generate_slice

    s = generate_slice(3, shape=(48, 40), n_coils=4)
    from workbench.io.fastmri import write_fastmri

    scan = tmp_path / "scan.h5"
    write_fastmri(scan, s["kspace"][None], s["reference"][None])
    monkeypatch.setenv("WORKBENCH_WEIGHT_STORE", str(tmp_path / "weights"))
    runs = []
    for i, code in enumerate(["code-1", "code-1", "code-2"]):
        toolkit._chosen_weights.clear()  # a fresh process: nothing in memory
        monkeypatch.setattr(command_server, "code_key", lambda code=code: code)
        out = tmp_path / f"r{i}.h5"
        assert main(["recon", str(scan), "--method", "tv", "--mask", "random", "--accel", "2", "--param",
                     "n_iter=20", "--out", str(out), "--json"]) == 0
        chosen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["chosen"]
        runs.append((chosen, Result.load(out).image.numpy()))
    (first, a), (second, b), (edited, c) = runs
    assert "reused" not in first and second["reused"] is True and second["lam"] == first["lam"]
    np.testing.assert_array_equal(b, a)  # the same start image and weight: the same result
    assert "reused" not in edited  # edited code searches afresh
    assert len(list((tmp_path / "weights").glob("*.json"))) == 2

    # an edit of the method's own file (a plugin of another package, a drop-in file) searches afresh too
    import inspect

    from workbench.methods import discover_methods

    plugin_file = inspect.getfile(type(discover_methods().get("tv").Params()))
    real_stat = os.stat
    monkeypatch.setattr(toolkit.os, "stat", lambda path, *a, **kw: real_stat(path, *a, **kw) if path != plugin_file
                        else os.stat_result((0o100644, 0, 0, 1, 0, 0, 123, 0, 0, 0)))
    toolkit._chosen_weights.clear()
    assert main(["recon", str(scan), "--method", "tv", "--mask", "random", "--accel", "2", "--param", "n_iter=20",
                 "--json"]) == 0
    assert "reused" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["chosen"]
    monkeypatch.undo()


def test_a_volume_run_reads_the_store_but_does_not_write_it(tmp_path, monkeypatch):
    # 35 slices would each write an entry and push every other one out of the 32-entry store
    from workbench.io import open_scan
    from workbench.io.fastmri import write_fastmri
    from workbench.methods import discover_methods
    from workbench.simulate import generate_slice
    from workbench.volume import reconstruct_volume

    slices = [generate_slice(i, shape=(48, 40), n_coils=4, slice_position=-10.0 + 8 * i) for i in range(3)]
    path = tmp_path / "vol.h5"
    write_fastmri(path, np.stack([s["kspace"] for s in slices]), np.stack([s["reference"] for s in slices]))
    monkeypatch.setenv("WORKBENCH_WEIGHT_STORE", str(tmp_path / "weights"))
    toolkit._chosen_weights.clear()
    volume = reconstruct_volume(open_scan(path), [0, 1, 2], discover_methods().get("tv"), {"n_iter": 10},
                                workers=2)
    assert len(volume.records) == 3 and all(r.chosen.get("lam") for r in volume.records)
    assert not (tmp_path / "weights").exists() or not list((tmp_path / "weights").glob("*.json"))


def _entry(tmp_path, name="w", key="ab12"):
    store = WeightStore(tmp_path / name)
    store.put(key, 0.01, [[0.01, 3.0]], {"lam": 0.01}, _image())
    assert store.get(key, SHAPE) is not None
    return store, tmp_path / name / f"{key}.json", tmp_path / name / f"{key}.npy"


def test_a_hostile_record_never_fails_or_stalls_a_run(tmp_path):
    store, meta, image = _entry(tmp_path)
    record = json.loads(meta.read_text())
    # deeply nested JSON (json raises RecursionError, not a ValueError)
    meta.write_text('{"format": "mri-workbench-weight/1", "lam": 0.01, "chosen": {}, "trace": '
                    + "[" * 100_000 + "]" * 100_000 + "}")
    assert store.get("ab12", SHAPE) is None
    # a weight that is not a positive number, a trace that is not (weight, value) pairs
    for bad in ({"lam": -0.5}, {"lam": 0.0}, {"lam": True}, {"trace": [["a", "b"]]}, {"trace": [[1.0]]},
                {"chosen": []}):
        meta.write_text(json.dumps(dict(record, **bad)))
        assert store.get("ab12", SHAPE) is None, bad
    # a FIFO in place of the record or the image: refused at once, not read (it would wait for a writer)
    meta.write_text(json.dumps(record))
    for path in (meta, image):
        saved = path.read_bytes()
        path.unlink()
        os.mkfifo(path)
        answer = []
        reader = threading.Thread(target=lambda: answer.append(store.get("ab12", SHAPE)), daemon=True)
        reader.start()
        reader.join(10)
        assert answer == [None], path.name
        path.unlink()
        path.write_bytes(saved)
    # a link to a file elsewhere is not followed
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(record))
    meta.unlink()
    meta.symlink_to(elsewhere)
    assert store.get("ab12", SHAPE) is None


def test_records_in_a_folder_others_may_write_are_not_trusted(tmp_path):
    store, meta, image = _entry(tmp_path)
    os.chmod(store.folder, 0o777)  # anyone could have put an entry there
    assert store.get("ab12", SHAPE) is None
    store.put("cd34", 0.02, [], {}, _image(1))
    assert not (store.folder / "cd34.json").exists()  # nor is anything written there
    os.chmod(store.folder, 0o700)
    assert store.get("ab12", SHAPE) is not None


def test_an_image_of_another_writer_is_not_paired_with_this_record(tmp_path):
    # Two commands store the same key at once: one's image, then the other's image and record, then the first
    # one's record. The record must not be taken with the other command's image.
    store, meta, image = _entry(tmp_path)
    other = WeightStore(tmp_path / "other")
    other.put("ab12", 0.02, [[0.02, 4.0]], {"lam": 0.02}, _image(7))
    os.replace(tmp_path / "other" / "ab12.npy", image)
    hit = store.get("ab12", SHAPE)
    assert hit is None or (hit[0] == 0.01 and hit[3] is None) or np.array_equal(hit[3], _image())


def test_a_store_that_cannot_be_touched_still_answers(tmp_path, monkeypatch):
    # a read-only store (another user's cache, a read-only home): its entries are still used
    store, meta, image = _entry(tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    lam, trace, chosen, back = store.get("ab12", SHAPE)
    assert lam == 0.01 and np.array_equal(back, _image())


def test_left_over_temporary_files_are_removed_and_not_counted(tmp_path):
    store = WeightStore(tmp_path, max_entries=2)
    old = tmp_path / ".tmp-killed.npy"  # a command killed while it wrote an image, long ago
    old.write_bytes(b"x" * 1000)
    os.utime(old, (1e9, 1e9))
    busy = tmp_path / ".tmp-writing.json"  # another command writing now
    busy.write_text("{")
    orphan = tmp_path / "ee99.npy"  # an image whose record a full disk refused, long ago
    orphan.write_bytes(b"x" * 1000)
    os.utime(orphan, (1e9, 1e9))
    fresh = tmp_path / "ff00.npy"  # an image whose record another command is about to write
    fresh.write_bytes(b"x" * 1000)
    for i, key in enumerate(["a1", "b2"]):
        store.put(key, 0.1, [], {}, None)
    assert not old.exists() and busy.exists() and not orphan.exists()
    assert sorted(p.name for p in tmp_path.glob("[!.]*")) == ["a1.json", "b2.json", "ff00.npy"]


def test_default_store_without_a_home_is_off(monkeypatch):
    from workbench import paths
    from workbench.weight_store import default_store

    def no_home(create=True):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setenv("WORKBENCH_WEIGHT_STORE", "")
    monkeypatch.setattr(paths, "cache_dir", no_home)
    assert default_store() is None


def test_a_weight_whose_image_is_too_large_is_not_kept(tmp_path, monkeypatch):
    # kept without its image, a reuse would start the final solve from zero and give another image than the
    # first run's; an entry whose search left no image (a weight moved to the bound) is kept as it is
    from workbench import weight_store

    monkeypatch.setattr(weight_store, "MAX_IMAGE_BYTES", _image().nbytes - 1)
    store = WeightStore(tmp_path)
    store.put("ab12", 0.01, [], {}, _image())
    assert store.get("ab12", SHAPE) is None
    store.put("cd34", 1.0, [], {"lam_searched": 3.0}, None)
    assert store.get("cd34", SHAPE)[0] == 1.0
