"""Bad input gets typed errors naming the file and what is wrong; inputs are never modified."""

from __future__ import annotations

import hashlib
import os
import stat

import h5py
import numpy as np
import pytest

from workbench.errors import CorruptFileError, InvalidDataError, ScanError, UnsupportedFormatError
from workbench.io import open_scan
from workbench.io.fastmri import write_fastmri


def crandn(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def fastmri_file(tmp_path, rng):
    path = tmp_path / "scan.h5"
    k = crandn(rng, 4, 3, 32, 24)
    write_fastmri(path, k, np.abs(rng.standard_normal((4, 16, 16))))
    return path


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(ScanError, match="nothere.h5: file does not exist"):
        open_scan(tmp_path / "nothere.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty.h5: file is empty"):
        open_scan(tmp_path / "empty.h5")
    with pytest.raises(ScanError, match="is a folder"):
        open_scan(tmp_path)


def test_truncated_hdf5(fastmri_file, tmp_path):
    data = fastmri_file.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as e:
        scan = open_scan(cut)
        for i in range(scan.n_slices):  # if the superblock survived, reading the lost slices must fail
            scan.kspace(i)
    assert "cut.h5" in str(e.value) and ("truncated" in str(e.value) or "damaged" in str(e.value))


def test_corrupt_hdf5_body(fastmri_file, tmp_path):
    data = bytearray(fastmri_file.read_bytes())
    data[8:2048] = bytes(2040)  # keep the signature, wipe the superblock and the root group
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="bad.h5: HDF5 file cannot be opened"):
        open_scan(bad)


def test_text_renamed_h5_and_png_renamed_npy(tmp_path):
    txt = tmp_path / "notes.h5"
    txt.write_text("this is not k-space\n" * 10)
    with pytest.raises(UnsupportedFormatError) as e:
        open_scan(txt)
    assert "notes.h5" in str(e.value) and "text file" in str(e.value) and ".h5" in str(e.value)
    png = tmp_path / "picture.npy"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(UnsupportedFormatError, match="picture.npy.*PNG image"):
        open_scan(png)
    with pytest.raises(CorruptFileError, match="picture.npy: not a NumPy"):
        open_scan(png, format="npy")
    with pytest.raises(UnsupportedFormatError, match="unknown format 'nifti'"):
        open_scan(png, format="nifti")


def test_truncated_npy_and_npz(tmp_path, rng):
    k = crandn(rng, 4, 16, 16)
    np.save(tmp_path / "k.npy", k)
    data = (tmp_path / "k.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.npy: NumPy file is truncated"):
        open_scan(tmp_path / "cut.npy")
    np.savez(tmp_path / "k.npz", ksp=k)
    data = (tmp_path / "k.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.npz"):
        open_scan(tmp_path / "cut.npz")


def test_hdf5_without_kspace(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 4, 4))
        f["labels"] = np.arange(2)
    with pytest.raises(InvalidDataError, match="other.h5: HDF5 file has no 'kspace' dataset.*images, labels"):
        open_scan(path)


def test_nan_in_first_slice_fails_at_open_later_slice_at_read(tmp_path, rng):
    k = crandn(rng, 3, 2, 16, 12)
    k0 = k.copy()
    k0[0, 1, 3, 4] = np.nan
    write_fastmri(tmp_path / "nan0.h5", k0)
    with pytest.raises(InvalidDataError, match="nan0.h5: slice 0 k-space has 1 NaN/Inf"):
        open_scan(tmp_path / "nan0.h5")
    k2 = k.copy()
    k2[2, 0, 0, :3] = np.inf
    write_fastmri(tmp_path / "inf2.h5", k2)
    scan = open_scan(tmp_path / "inf2.h5")
    scan.kspace(1)
    with pytest.raises(InvalidDataError, match="inf2.h5: slice 2 k-space has 3 NaN/Inf"):
        scan.kspace(2)
    np.save(tmp_path / "nan.npy", k0[0])
    with pytest.raises(InvalidDataError, match="nan.npy: slice 0"):
        open_scan(tmp_path / "nan.npy")


def test_inconsistent_shapes(tmp_path, rng):
    k = crandn(rng, 3, 2, 16, 12)
    write_fastmri(tmp_path / "refs.h5", k, np.ones((2, 8, 8)))
    with pytest.raises(InvalidDataError, match="refs.h5: 'reconstruction_rss' has shape \\(2, 8, 8\\) but 'kspace' has 3"):
        open_scan(tmp_path / "refs.h5")
    write_fastmri(tmp_path / "mask.h5", k, mask=np.ones(10, bool))
    with pytest.raises(InvalidDataError, match="mask.h5: 'mask' has length 10 but k-space width .* is 12"):
        open_scan(tmp_path / "mask.h5")
    with h5py.File(tmp_path / "real.h5", "w") as f:
        f["kspace"] = np.ones((2, 8, 8), np.float32)
    with pytest.raises(InvalidDataError, match="real.h5: 'kspace' has dtype float32"):
        open_scan(tmp_path / "real.h5")
    with h5py.File(tmp_path / "dims.h5", "w") as f:
        f["kspace"] = np.ones((8, 8), np.complex64)
    with pytest.raises(InvalidDataError, match="dims.h5: 'kspace' has shape \\(8, 8\\)"):
        open_scan(tmp_path / "dims.h5")
    np.save(tmp_path / "five.npy", crandn(rng, 2, 2, 2, 4, 4))
    with pytest.raises(InvalidDataError, match="five.npy: array 'five' has 5 dimensions"):
        open_scan(tmp_path / "five.npy")


def test_unknown_option_is_an_error(fastmri_file, tmp_path, rng):
    np.save(tmp_path / "k.npy", crandn(rng, 2, 8, 8))
    with pytest.raises(ScanError, match="k.npy: unknown option coil_axes for the npy reader.*coil_axis"):
        open_scan(tmp_path / "k.npy", coil_axes=0)


def _fingerprint(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns


def test_inputs_are_opened_read_only(fastmri_file, tmp_path, rng):
    import ismrmrd

    np.save(tmp_path / "k.npy", crandn(rng, 2, 8, 8))
    np.savez(tmp_path / "k.npz", ksp=crandn(rng, 2, 8, 8))
    mrd = tmp_path / "k.mrd"
    ds = ismrmrd.Dataset(str(mrd), "dataset", create_if_needed=True)
    ds.write_xml_header(b"""<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
      <experimentalConditions><H1resonanceFrequency_Hz>1</H1resonanceFrequency_Hz></experimentalConditions>
      <encoding><encodedSpace><matrixSize><x>8</x><y>4</y><z>1</z></matrixSize><fieldOfView_mm><x>1</x><y>1</y>
      <z>1</z></fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>8</x><y>4</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>1</x><y>1</y><z>1</z></fieldOfView_mm></reconSpace><encodingLimits/>
      <trajectory>cartesian</trajectory></encoding></ismrmrdHeader>""")
    for e1 in range(4):
        acq = ismrmrd.Acquisition.from_array(crandn(rng, 2, 8), center_sample=4)
        acq.idx.kspace_encode_step_1 = e1
        ds.append_acquisition(acq)
    ds.close()
    files = [fastmri_file, tmp_path / "k.npy", tmp_path / "k.npz", mrd]
    before = {p: _fingerprint(p) for p in files}
    for p in files:
        os.chmod(p, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # a writable open would fail (unless root)
    try:
        for p in files:
            scan = open_scan(p)
            for i in range(scan.n_slices):
                scan.kspace(i)
                scan.reference(i)
    finally:
        for p in files:
            os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
    assert {p: _fingerprint(p) for p in files} == before
