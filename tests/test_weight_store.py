"""Automatic weights remembered across commands (workbench.weight_store): reuse, damaged entries, eviction."""

from __future__ import annotations

import json
import os

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
