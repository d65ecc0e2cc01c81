"""Session (project) files are input like any other (issue 16): the sidecar must lie in the session's folder,
malformed entries give a typed error naming the session file, saving is atomic and never replaces the scan; in
the app each of these is a dialog, and the app keeps working."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from workbench.atomic import WriteError
from workbench.errors import CorruptFileError
from workbench.io.fastmri import write_fastmri
from workbench.session import Session
from workbench.session.project import SessionFileError, load_project

H, W, C = 32, 24, 2


@pytest.fixture()
def saved(tmp_path, registry):
    """A session with one finished result (image + std) saved as project/s.json (+ s.npz); returns the path."""
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((1, C, H, W)) + 1j * rng.standard_normal((1, C, H, W))).astype(np.complex64)
    write_fastmri(tmp_path / "scan.h5", k)
    s = Session(device="cpu")
    s.open(tmp_path / "scan.h5")
    e = s.run(registry.methods["test-zf"])
    t0 = time.time()
    while e.active and time.time() - t0 < 30:
        time.sleep(0.01)
    assert e.state == "done"
    (tmp_path / "project").mkdir()
    path = tmp_path / "project" / "s.json"
    s.save(path)
    s.shutdown()
    return path


def _edit(path, **changes):
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("result0_"):
            doc["results"][0][key[len("result0_"):]] = value
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


def test_saved_session_loads(saved):
    p = load_project(saved)
    assert len(p.results) == 1 and p.results[0].state == "done" and p.results[0].std is not None


@pytest.mark.parametrize("sidecar", ["../../outside.npz", "../outside.npz", "/etc/passwd", "sub/../../outside.npz"])
def test_sidecar_outside_the_session_folder_is_refused(saved, sidecar):
    # an archive elsewhere on disk that would load "successfully" as result images
    outside = saved.parent.parent / "outside.npz"
    np.savez(outside, result0_image=np.ones((H // 2, W), np.complex64))
    _edit(saved, sidecar=sidecar)
    with pytest.raises(SessionFileError, match="s.json") as info:
        Session().load(saved)
    assert "sidecar" in str(info.value)


def test_sidecar_linked_out_of_the_folder_is_refused(saved):
    outside = saved.parent.parent / "outside.npz"
    np.savez(outside, result0_image=np.ones((H // 2, W), np.complex64))
    (saved.parent / "link.npz").symlink_to(outside)
    _edit(saved, sidecar="link.npz")
    with pytest.raises(SessionFileError, match="outside the session's folder"):
        load_project(saved)


@pytest.mark.parametrize("changes, words", [
    ({"results": {"not": "a list"}}, "'results' should be list"),
    ({"results": [3]}, "result 0: should be an object"),
    ({"result0_slice": "zero"}, "'slice' should be int"),
    ({"result0_metrics": {"psnr": "high"}}, "metrics should be numbers"),
    ({"result0_state": "exploded"}, "state 'exploded'"),
    ({"result0_history": [1, 2]}, "history"),
    ({"result0_image": ["result0_image"]}, "names its image"),
    ({"result0_params": "lam=1"}, "'params' should be dict"),
    ({"result0_elapsed": "1 s"}, "'elapsed' should be a number"),
    ({"result0_slice": 7}, "slice 7"),
    ({"sampling": [1]}, "'sampling' should be dict"),
    ({"slice": 99}, "slice 99"),
    ({"sidecar": 5}, "sidecar"),
])
def test_malformed_sessions_give_typed_errors(saved, changes, words):
    _edit(saved, **changes)
    s = Session(device="cpu")
    with pytest.raises(SessionFileError, match="s.json") as info:
        s.load(saved)
    assert words in str(info.value)
    assert s.scan is None  # refused before anything was shown
    s.shutdown()


def test_images_that_do_not_fit_the_scan_are_refused(saved):
    side = saved.with_suffix(".npz")
    with np.load(side) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["result0_image"] = np.ones((7, 5), np.complex64)
    arrays.pop("result0_std")
    np.savez(side, **arrays)
    with pytest.raises(SessionFileError, match=r"\(7, 5\)"):
        Session().load(saved)
    arrays["result0_image"] = np.full((H // 2, W), np.nan, np.complex64)
    np.savez(side, **arrays)
    with pytest.raises(SessionFileError, match="NaN"):
        load_project(saved)
    side.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(SessionFileError, match="cannot be read"):
        load_project(saved)


def test_session_save_never_replaces_the_scan(saved, tmp_path):
    s = Session(device="cpu")
    s.load(saved)
    before = (tmp_path / "scan.h5").read_bytes()
    with pytest.raises(WriteError, match="scan.h5"):
        s.save(tmp_path / "scan.h5")  # the session file itself
    npz_scan = tmp_path / "k.npz"
    np.savez(npz_scan, kspace=np.ones((C, H, W), np.complex64))
    s.open(npz_scan)
    with pytest.raises(WriteError, match="k.npz"):
        s.save(tmp_path / "k.json")  # its sidecar k.npz would replace the scan
    assert (tmp_path / "scan.h5").read_bytes() == before and np.load(npz_scan)["kspace"].shape == (C, H, W)
    assert not (tmp_path / "k.json").exists()
    s.shutdown()


def test_failed_session_save_keeps_the_previous_files(saved, monkeypatch):
    """Disk full while the sidecar is written: the previous project (json + images) still loads as before."""
    s = Session(device="cpu")
    s.load(saved)
    json_before, npz_before = saved.read_bytes(), saved.with_suffix(".npz").read_bytes()
    real = np.savez_compressed

    def full_disk(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(WriteError, match="No space left"):
        s.save(saved)
    monkeypatch.setattr(np, "savez_compressed", real)
    assert saved.read_bytes() == json_before and saved.with_suffix(".npz").read_bytes() == npz_before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["s.json", "s.npz"]  # no temporary file left
    assert load_project(saved).results[0].image is not None
    s.shutdown()


# ------------------------------------------------------------------------------------------------------------
# the app: a dialog, and it keeps working
def test_app_shows_a_dialog_for_a_malformed_session_and_keeps_working(window, messages, saved, qtbot):
    _edit(saved, result0_metrics={"psnr": [1, 2]})
    assert window.open_session(str(saved)) is False
    assert messages and "s.json" in messages[-1][2] and "metrics" in messages[-1][2]
    _edit(saved, result0_metrics={}, sidecar="../../../etc/passwd")
    assert window.open_session(str(saved)) is False
    assert "outside the session's folder" in messages[-1][2]
    _edit(saved, sidecar="s.npz")
    assert window.open_session(str(saved)) is True  # the app still works: the repaired file opens
    assert len(window.session.results) == 1


def test_a_sidecar_that_is_not_an_archive_is_refused(saved):
    with open(saved.with_suffix(".npz"), "wb") as f:
        np.save(f, np.ones(3))  # a bare .npy array under the sidecar's name
    with pytest.raises(SessionFileError, match="not an .npz archive"):
        load_project(saved)
