"""Every write is atomic and never targets an input (issue 16): a write that fails part-way (a full disk, a
writer's exception) leaves the previous good file intact and no temporary file behind."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from workbench.atomic import WriteError, atomic_open, atomic_path
from workbench.cli import main
from workbench.io.fastmri import write_fastmri
from workbench.io.writers import export_images, write_dicom, write_nifti
from workbench.result import Result
from workbench.sampling import make_sampling
from workbench.session.runs import write_metrics_csv


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def partial_then_full(path_arg: int = 1):
    """A writer that writes some bytes to its target (the ``path_arg``-th argument), then finds the disk full."""
    def write(*args, **kwargs):
        with open(args[path_arg], "wb") as f:
            f.write(b"\0" * 100)
        disk_full()
    return write


def only(folder, *names):
    assert sorted(os.listdir(folder)) == sorted(names)  # no temporary file left behind


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("good")
    os.chmod(target, 0o640)
    with pytest.raises(WriteError, match="No space left"):
        with atomic_open(target, "w") as f:
            f.write("half")
            disk_full()
    assert target.read_text() == "good"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "good"
    only(tmp_path, "a.txt")
    with atomic_open(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new" and (os.stat(target).st_mode & 0o777) == 0o640
    with pytest.raises(WriteError, match="refusing to overwrite the input"):
        with atomic_open(tmp_path / "." / "a.txt", "w", inputs=[str(target)]):
            pass
    only(tmp_path, "a.txt")


@pytest.fixture()
def scan_file(tmp_path):
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((1, 2, 16, 12)) + 1j * rng.standard_normal((1, 2, 16, 12))).astype(np.complex64)
    path = tmp_path / "in.h5"
    write_fastmri(path, k)
    return path


def test_recon_never_writes_over_its_input(scan_file, capsys):
    before = scan_file.read_bytes()
    for out in (scan_file, scan_file.parent / "." / "in.h5"):
        assert main(["recon", str(scan_file), "--method", "zero-filled", "--out", str(out), "--json"]) == 1
        assert "refusing to overwrite the input file" in capsys.readouterr().err
    assert scan_file.read_bytes() == before


def test_recon_out_failing_part_way_keeps_the_previous_result(scan_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.h5"
    assert main(["recon", str(scan_file), "--method", "zero-filled", "--out", str(out), "--json"]) == 0
    good = Result.load(out)
    import h5py

    real = h5py.Group.create_dataset

    def fail_on_meta(self, name, *a, **k):
        if name == "meta":  # the image is already in the file
            disk_full()
        return real(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_meta)
    assert main(["recon", str(scan_file), "--method", "zero-filled", "--out", str(out), "--json"]) == 1
    assert "No space left" in capsys.readouterr().err
    monkeypatch.undo()
    torch.testing.assert_close(Result.load(out).image, good.image)
    only(tmp_path, "in.h5", "out.h5")


def test_nifti_and_dicom_exports_failing_part_way_keep_the_previous_files(tmp_path, monkeypatch):
    import nibabel
    import pydicom

    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_nifti(tmp_path / "a.nii.gz", image)
    write_dicom(tmp_path / "a.dcm", image, label="a")
    nii, dcm = (tmp_path / "a.nii.gz").read_bytes(), (tmp_path / "a.dcm").read_bytes()
    monkeypatch.setattr(nibabel, "save", partial_then_full(1))
    monkeypatch.setattr(pydicom.Dataset, "save_as", partial_then_full(1))
    with pytest.raises(WriteError, match="a.nii.gz"):
        write_nifti(tmp_path / "a.nii.gz", 2 * image)
    with pytest.raises(WriteError, match="a.dcm"):
        write_dicom(tmp_path / "a.dcm", 2 * image)
    assert (tmp_path / "a.nii.gz").read_bytes() == nii and (tmp_path / "a.dcm").read_bytes() == dcm
    only(tmp_path, "a.nii.gz", "a.dcm")


def test_exports_never_replace_the_scan(tmp_path):
    class Scan:
        path = str(tmp_path / "r.dcm")
        header: dict = {}
        attrs: dict = {}
        recon_shape = (3, 4)

    (tmp_path / "r.dcm").write_bytes(b"the scan")
    with pytest.raises(WriteError, match="refusing to overwrite"):
        export_images(tmp_path, [("r", np.ones((3, 4)))], "dicom", Scan())
    assert (tmp_path / "r.dcm").read_bytes() == b"the scan"


def test_mask_and_csv_writes_failing_part_way_keep_the_previous_files(tmp_path, monkeypatch):
    sampling = make_sampling("random", (16, 12), acceleration=2, seed=1)
    sampling.save(tmp_path / "mask.npz")
    before = (tmp_path / "mask.npz").read_bytes()
    monkeypatch.setattr(np, "savez_compressed", lambda f, **a: (f.write(b"PK partial"), disk_full()))
    with pytest.raises(WriteError):
        sampling.save(tmp_path / "mask.npz")
    monkeypatch.undo()
    assert (tmp_path / "mask.npz").read_bytes() == before
    row = {"label": "a", "method": "m", "slice": 0, "psnr": 30.0}
    write_metrics_csv(tmp_path / "m.csv", [row])
    good = (tmp_path / "m.csv").read_text()
    with pytest.raises(KeyError):
        write_metrics_csv(tmp_path / "m.csv", [row, {"label": "no slice"}])  # fails after writing a row
    assert (tmp_path / "m.csv").read_text() == good
    only(tmp_path, "mask.npz", "m.csv")


def test_scan_writers_keep_the_previous_file_on_a_full_disk(tmp_path, monkeypatch):
    from workbench.io import open_scan
    from workbench.io.bart import read_cfl, write_cfl

    k = (np.arange(2 * 8 * 8).reshape(2, 8, 8) + 1j).astype(np.complex64)
    write_cfl(tmp_path / "ksp", k)
    good_cfl, good_hdr = (tmp_path / "ksp.cfl").read_bytes(), (tmp_path / "ksp.hdr").read_text()
    # the .cfl fails part-way: both files stay as they were
    class FullDisk:  # what write_cfl's np.asfortranarray(...).ravel(...).tofile(path) meets on a full disk
        def __init__(self, *args, **kwargs):
            pass

        def ravel(self, order="C"):
            return self

        def tofile(self, path):
            partial_then_full(0)(path)

    monkeypatch.setattr(np, "asfortranarray", FullDisk)
    with pytest.raises(WriteError, match="No space left"):
        write_cfl(tmp_path / "ksp", k[:1])
    monkeypatch.undo()
    assert (tmp_path / "ksp.cfl").read_bytes() == good_cfl and (tmp_path / "ksp.hdr").read_text() == good_hdr
    only(tmp_path, "ksp.cfl", "ksp.hdr")
    assert np.array_equal(np.squeeze(read_cfl(tmp_path / "ksp")), k)

    path = tmp_path / "scan.h5"
    write_fastmri(path, k[None].repeat(2, 0), np.abs(k[:, :4, :4]))
    before = path.read_bytes()
    import h5py

    real_create = h5py.Group.create_dataset

    def create_then_full(self, name, *args, **kwargs):
        real_create(self, name, *args, **kwargs)
        disk_full()

    monkeypatch.setattr(h5py.Group, "create_dataset", create_then_full)
    with pytest.raises(WriteError, match="No space left"):
        write_fastmri(path, k[None], None)
    monkeypatch.undo()
    assert path.read_bytes() == before
    only(tmp_path, "ksp.cfl", "ksp.hdr", "scan.h5")
    assert open_scan(path).n_slices == 2
