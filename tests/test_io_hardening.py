"""Readers refuse files that point outside themselves, bound their allocations before allocating, and report
every damage as a typed error naming the file (issue 16)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib

import h5py
import numpy as np
import pytest

from workbench.errors import CorruptFileError, InvalidDataError, TooLargeError, UnsafeFileError, WorkbenchError
from workbench.io import open_scan
from workbench.io.bart import write_cfl
from workbench.io.fastmri import write_fastmri
from workbench.limits import memory_budget, parse_bytes

SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 128  # what an attacker would like to read as k-space


@pytest.fixture
def outside(tmp_path):
    """A FIFO outside the scan's folder, pre-filled with SECRET while the test holds its write end: a reader that
    opened it and read even one byte would consume it (and one that read more would block: the test times out).
    Yields (path, bytes_left_unread)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    fifo = folder / "secret"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fd, SECRET)

    def unread() -> bytes:
        data = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    yield str(fifo), unread
    os.close(fd)


def _scan_dir(tmp_path):
    d = tmp_path / "scans"
    d.mkdir(exist_ok=True)
    return d


def _fastmri_with(path, make_kspace):
    with h5py.File(path, "w") as f:
        make_kspace(f)
        f.attrs["acquisition"] = "AXT1"


def _mrd_group(f, make_data):
    g = f.create_group("dataset")
    g.create_dataset("xml", data=np.array([b"<ismrmrdHeader/>"], dtype=object), dtype=h5py.string_dtype())
    make_data(g)


def _mat73(f, make_var):
    make_var(f)


def _external_storage(target):
    def make(g, name="kspace"):
        g.create_dataset(name, shape=(1, 1, 8, 8), dtype="c8", external=[(target, 0, 512)])
    return make


def _external_link(target):
    def make(g, name="kspace"):
        g[name] = h5py.ExternalLink(target, "/kspace")
    return make


def _virtual(target):
    def make(g, name="kspace"):
        layout = h5py.VirtualLayout(shape=(1, 1, 8, 8), dtype="c8")
        layout[:] = h5py.VirtualSource(target, "kspace", shape=(1, 1, 8, 8))
        g.create_virtual_dataset(name, layout)
    return make


def _build(kind, path, make):
    with h5py.File(path, "w") as f:
        if kind == "fastmri":
            make(f)
        elif kind == "ismrmrd":
            _mrd_group(f, lambda g: make(g, "data"))
        else:  # MATLAB v7.3: an HDF5 file whose datasets carry MATLAB_class
            make(f, "ksp")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fastmri", "ismrmrd", "mat"])
@pytest.mark.parametrize("attack", [_external_storage, _external_link, _virtual],
                         ids=["external-storage", "external-link", "virtual-dataset"])
def test_hdf5_pointing_outside_is_refused_unread(tmp_path, outside, kind, attack):
    target, unread = outside
    path = _scan_dir(tmp_path) / "scan.h5"
    _build(kind, path, attack(target))
    with pytest.raises(UnsafeFileError) as e:
        scan = open_scan(path, format=kind)
        scan.kspace(0)
    assert "scan.h5" in str(e.value) and target in str(e.value)
    assert unread() == SECRET  # not one byte of the outside file was consumed
    # Probing (no format given) must not read it either.
    with pytest.raises(UnsafeFileError):
        open_scan(path)
    assert unread() == b""  # (already drained above) nothing blocked, nothing else appeared


def test_external_storage_at_an_absolute_system_path(tmp_path):
    # The case of the issue: raw storage pointing at the system's password file.
    path = tmp_path / "passwd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(1, 1, 4, 4), dtype="c8", external=[("/etc/passwd", 0, 128)])
    with pytest.raises(UnsafeFileError, match=r"passwd\.h5: .*'kspace'.*external file /etc/passwd"):
        open_scan(path)


def test_soft_link_loop_and_dangling_link(tmp_path):
    loop = tmp_path / "loop.h5"
    with h5py.File(loop, "w") as f:
        f["kspace"] = h5py.SoftLink("/other")
        f["other"] = h5py.SoftLink("/kspace")
    with pytest.raises(CorruptFileError, match=r"loop\.h5: HDF5 object 'kspace' cannot be opened"):
        open_scan(loop, format="fastmri")
    dangling = tmp_path / "dangling.h5"
    with h5py.File(dangling, "w") as f:
        f["kspace"] = h5py.SoftLink("/nowhere")
    with pytest.raises(CorruptFileError, match=r"dangling\.h5: HDF5 object 'kspace'"):
        open_scan(dangling, format="fastmri")


# ------------------------------------------------------------------------------------------------- memory
def test_memory_budget_setting(monkeypatch):
    monkeypatch.delenv("WORKBENCH_MEMORY_BUDGET", raising=False)
    assert 0 < memory_budget() <= 4 << 30
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "64M")
    assert memory_budget() == 64 << 20
    assert parse_bytes("1.5GiB") == 3 << 29
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "lots")
    with pytest.raises(WorkbenchError, match="WORKBENCH_MEMORY_BUDGET"):
        memory_budget()


def test_fastmri_gzip_bomb_is_refused_before_reading(tmp_path):
    # 256 MiB of zeros in a file of a few hundred KB: `info` used GBs on such a file.
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("kspace", shape=(2, 16, 1024, 1024), dtype="c8", chunks=(1, 4, 1024, 1024),
                              compression="gzip", compression_opts=9)
        zeros = np.zeros((1, 4, 1024, 1024), np.complex64)
        for s in range(2):
            for c in range(0, 16, 4):
                ds[s:s + 1, c:c + 4] = zeros
    assert path.stat().st_size < 2 << 20
    with pytest.raises(TooLargeError, match=r"bomb\.h5: 'kspace' slice 0 declares 128\.0 MiB.*stores only"):
        open_scan(path)


def test_huge_declared_hdf5_dataset_with_no_storage(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(10, 64, 65536, 65536), dtype="c8")  # 22 PB declared, nothing stored
    with pytest.raises(TooLargeError, match=r"huge\.h5: 'kspace' slice 0 would need .* memory budget"):
        open_scan(path)


MRD_XML = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<encoding>
 <encodedSpace><matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize>
  <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
 <reconSpace><matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize>
  <fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
 <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{m}</maximum><center>{c}</center>
  </kspace_encoding_step_1></encodingLimits>
 <trajectory>cartesian</trajectory>
</encoding>
</ismrmrdHeader>"""


def test_mrd_header_declaring_a_huge_matrix(tmp_path):
    import ismrmrd

    path = tmp_path / "big_matrix.h5"
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(MRD_XML.format(n=8192, m=8191, c=4096).encode())
    acq = ismrmrd.Acquisition.from_array(np.ones((4, 64), np.complex64))
    acq.idx.kspace_encode_step_1 = 4096
    acq.center_sample = 32
    ds.append_acquisition(acq)
    ds.close()
    with pytest.raises(TooLargeError, match=r"big_matrix\.h5: a 4-coil 8192x8192 k-space grid"):
        open_scan(path)


def _mrd_four_lines(path) -> None:
    import ismrmrd

    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(MRD_XML.format(n=16, m=3, c=2).encode())
    for line in range(4):
        acq = ismrmrd.Acquisition.from_array(np.ones((2, 16), np.complex64))
        acq.idx.kspace_encode_step_1 = line
        ds.append_acquisition(acq)
    ds.close()


def test_mrd_sequence_length_forged(tmp_path):
    # Found by the fuzzer: 0xFF bytes over one acquisition's variable-length descriptors made HDF5 allocate
    # 16 GiB (0xFFFFFFFF floats) before reading; the lengths are now read from the stored chunks first.
    path = tmp_path / "forged_len.h5"
    _mrd_four_lines(path)
    with h5py.File(path, "r") as f:
        data = f["dataset/data"]
        row, offset = 2, data.id.get_type().get_member_offset(data.id.get_type().get_member_index(b"data"))
        chunk = data.id.get_chunk_info_by_coord((row // data.chunks[0] * data.chunks[0],))
        at = chunk.byte_offset + (row % data.chunks[0]) * data.id.get_type().get_size() + offset
    raw = bytearray(path.read_bytes())
    raw[at: at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"forged_len\.h5: .*4294967295 (values of 'data'|elements)"):
        open_scan(path)


def test_mrd_damaged_float_format(tmp_path):
    # Found by the fuzzer: one byte of a float member's exponent bias in the acquisitions' datatype made HDF5's
    # conversion corrupt the heap ("double free or corruption", the process aborted).
    import ismrmrd

    path = tmp_path / "float_format.h5"
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(MRD_XML.format(n=16, m=3, c=2).encode())
    ds.append_acquisition(ismrmrd.Acquisition.from_array(np.ones((2, 16), np.complex64)))
    ds.close()
    data = bytearray(path.read_bytes())
    ieee32 = bytes.fromhex("11201f00040000000000200017080017" + "7f000000")  # float32 datatype message
    at = data.index(ieee32)
    data[at + 17] = 4  # exponent bias 0x7f -> 0x0400007f
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"float_format\.h5: ISMRMRD acquisitions: its 32-bit float format"):
        open_scan(path)


def test_mrd_damaged_chunk_size(tmp_path):
    # Found by the fuzzer: a chunk index stating 1396 bytes for a 372-byte chunk made HDF5 read past its buffer
    # (a segmentation fault at the next garbage collection).
    path = tmp_path / "chunk_size.h5"
    _mrd_four_lines(path)
    with h5py.File(path, "r") as f:
        record = f["dataset/data"].id.get_type().get_size()
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<IIQ", record, 0, 1))  # B-tree entry of chunk 1: size, filter mask, offset
    data[at + 1] |= 0x04  # 372 -> 1396 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"chunk_size\.h5: ISMRMRD acquisitions: its 4 chunks of \d+ bytes"):
        open_scan(path)


def test_sparse_multi_terabyte_cfl(tmp_path):
    base = tmp_path / "sparse"
    (tmp_path / "sparse.hdr").write_text("# Dimensions\n65536 65536 1 256 1\n")
    with open(tmp_path / "sparse.cfl", "wb") as f:  # a sparse 8 TiB file: its size matches the header
        f.truncate(65536 * 65536 * 256 * 8)
    with pytest.raises(TooLargeError, match=r"sparse\.cfl: one BART k-space slice would need"):
        open_scan(str(base) + ".cfl")


def test_cfl_header_sizes_that_overflow_int64(tmp_path):
    (tmp_path / "wrap.hdr").write_text("# Dimensions\n4294967296 4294967296 1 1 1\n")  # 2**64 elements
    (tmp_path / "wrap.cfl").write_bytes(b"")
    (tmp_path / "x.cfl").write_bytes(bytes(8))
    with pytest.raises(WorkbenchError, match=r"wrap\.(cfl|hdr)"):
        open_scan(tmp_path / "wrap.hdr")


def test_huge_trajectory_grid_is_refused(tmp_path):
    # A trajectory in 1/FOV units reaching 1e6 asks for a 2e6 x 2e6 grid (a 358 GiB image per coil in recon).
    k = np.ones((2, 64), np.complex64)
    traj = np.stack([np.linspace(-1e6, 1e6, 64), np.zeros(64)]).astype(np.float32)
    path = tmp_path / "far.npz"
    np.savez(path, kspace=k, traj=traj)
    with pytest.raises(TooLargeError, match=r"far\.npz: 2-coil images on the 2000000x2000000 grid"):
        open_scan(path, trajectory_units="fov")


def _npz_with_member(path, name, payload, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr(name, payload)


def test_npz_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "64M")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<c8", "fortran_order": False, "shape": (1, 4096, 4096)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("kspace.npy", "w", force_zip64=True) as m:
            m.write(buf.getvalue())
            block = bytes(1 << 20)
            for _ in range(128):
                m.write(block)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(TooLargeError, match=r"bomb\.npz: archive member 'kspace\.npy' would need 128\.0 MiB"):
        open_scan(path)


def test_npz_member_header_lying_about_its_shape(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<c8", "fortran_order": False, "shape": (8, 65536, 65536)})
    path = tmp_path / "liar.npz"
    _npz_with_member(path, "kspace.npy", buf.getvalue() + bytes(64))
    with pytest.raises(CorruptFileError, match=r"liar\.npz: archive member 'kspace\.npy' declares"):
        open_scan(path)


MAT5_HEADER = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"


def _mat5(path, element_type: int, payload: bytes) -> None:
    path.write_bytes(MAT5_HEADER + struct.pack("<II", element_type, len(payload)) + payload)


def test_matlab_v5_zlib_bomb(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "64M")
    path = tmp_path / "bomb.mat"
    # a v5 header and one miCOMPRESSED element inflating to 128 MiB of a miMATRIX that claims it all
    inner = struct.pack("<II", 14, 128 << 20) + bytes(128 << 20)
    _mat5(path, 15, zlib.compress(inner, 9))
    with pytest.raises(TooLargeError, match=r"bomb\.mat: a compressed MATLAB variable"):
        open_scan(path)


def test_matlab_v5_cell_array_with_forged_dims(tmp_path):
    # scipy allocates a cell array of the declared dims before reading its elements
    path = tmp_path / "cells.mat"
    flags = struct.pack("<II", 6, 8) + struct.pack("<II", 1, 0)  # mxCELL_CLASS
    dims = struct.pack("<II", 5, 8) + struct.pack("<ii", 100000, 100000)
    name = struct.pack("<HH", 1, 1) + b"c\0\0\0"  # small data element
    _mat5(path, 14, flags + dims + name)
    with pytest.raises(TooLargeError, match=r"cells\.mat: MATLAB cell array declares 10000000000 x 1 elements"):
        open_scan(path)


def test_matlab_v5_damage_that_crashed_scipy(tmp_path):
    # One-byte damages found by the fuzzer that crashed the process inside scipy's C reader (SIGSEGV/SIGBUS):
    # an unknown data type in a tag, and a real scalar whose flags say complex (no imaginary part follows;
    # here scipy only raises, in the fuzzer's file it crashed). Both are refused before scipy reads.
    from scipy.io import savemat

    good = tmp_path / "good.mat"
    savemat(good, {"ksp": np.ones((8, 6, 2), np.complex64), "TR": 5.0}, do_compression=False)
    data = good.read_bytes()
    ksp_end = 128 + 8 + struct.unpack_from("<I", data, 132)[0]
    imag_tag = data.rindex(struct.pack("<II", 7, 8 * 6 * 2 * 4), 0, ksp_end)  # miSINGLE imaginary part
    unknown = bytearray(data)
    unknown[imag_tag + 1] = 0x20  # type 7 -> 0x2007
    flags = bytearray(data)
    flags[ksp_end + 8 + 8 + 1] |= 0x08  # TR's array flags: complex
    for name, damaged, message in (("type.mat", unknown, "unknown type 8199"),
                                   ("flags.mat", flags, "1 data parts; its flags need 2")):
        (tmp_path / name).write_bytes(bytes(damaged))
        with pytest.raises(CorruptFileError, match=name.replace(".", r"\.") + ": MATLAB .*" + message):
            open_scan(tmp_path / name)


def test_matlab_v73_huge_declared_variable(tmp_path):
    path = tmp_path / "big73.mat"
    with h5py.File(path, "w") as f:
        dt = np.dtype([("real", "<f4"), ("imag", "<f4")])
        ds = f.create_dataset("ksp", shape=(8, 65536, 65536), dtype=dt, chunks=(1, 256, 256), compression="gzip")
        ds.attrs["MATLAB_class"] = np.bytes_("single")
    with pytest.raises(TooLargeError, match=r"big73\.mat: variable ksp"):
        open_scan(path, format="mat")


# ------------------------------------------------------------------------------------------------- errors
def test_xml_header_stored_as_an_integer(tmp_path):
    import ismrmrd

    fastmri = tmp_path / "intxml.h5"
    write_fastmri(fastmri, np.ones((1, 2, 16, 12), np.complex64))
    mrd = tmp_path / "mrdint.h5"
    ds = ismrmrd.Dataset(str(mrd), "dataset", create_if_needed=True)
    ds.append_acquisition(ismrmrd.Acquisition.from_array(np.ones((1, 16), np.complex64)))
    ds.close()
    for path, name in ((fastmri, "ismrmrd_header"), (mrd, "dataset/xml")):
        with h5py.File(path, "a") as f:
            f[name] = 42
    with pytest.raises(InvalidDataError, match=r"intxml\.h5: 'ismrmrd_header' is int64 \(\), not one XML text"):
        open_scan(fastmri)
    with pytest.raises(InvalidDataError, match=r"mrdint\.h5: ISMRMRD header 'xml' is int64"):
        open_scan(mrd)


def test_missing_external_link_target(tmp_path):
    path = tmp_path / "gone.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = h5py.ExternalLink(str(tmp_path / "does_not_exist.h5"), "/kspace")
    with pytest.raises(UnsafeFileError, match=r"gone\.h5: HDF5 external link 'kspace'"):
        open_scan(path)


def test_corrupt_npy_header_and_negative_shape(tmp_path):
    bad = tmp_path / "token.npy"
    header = b"{'descr': '<c8', 'fortran_order': False, 'shape': (4, 4"  # unterminated: TokenError
    bad.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n" + bytes(128))
    with pytest.raises(CorruptFileError, match=r"token\.npy: NumPy file is truncated or damaged"):
        open_scan(bad)
    neg = tmp_path / "negative.npy"
    header = b"{'descr': '<c8', 'fortran_order': False, 'shape': (-4, 4), }".ljust(117) + b"\n"
    neg.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(128))
    with pytest.raises(CorruptFileError, match=r"negative\.npy"):
        open_scan(neg)
    # a damaged version byte made numpy read a 4-byte header length (here 662 MB) before checking it
    version = tmp_path / "version.npy"
    good = io.BytesIO()
    np.save(good, np.ones((2, 4, 4), np.complex64))
    data = bytearray(good.getvalue())
    data[6] = 3
    version.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"version\.npy: NumPy file states a header of \d+ bytes"):
        open_scan(version)


def test_npz_member_that_is_not_npy(tmp_path):
    path = tmp_path / "notnpy.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("kspace.npy", b"this is not a numpy array at all" * 4)
    with pytest.raises(CorruptFileError, match=r"notnpy\.npz: archive member 'kspace\.npy' is not a valid \.npy"):
        open_scan(path)
    other = tmp_path / "text.npz"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("notes.txt", b"hello")
    with pytest.raises(InvalidDataError, match=r"text\.npz: archive member 'notes\.txt' is not a \.npy"):
        open_scan(other)


def test_hdf5_bit_flips_give_typed_errors(tmp_path):
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((2, 2, 16, 12)) + 1j).astype(np.complex64)
    path = tmp_path / "good.h5"
    write_fastmri(path, k, np.abs(rng.standard_normal((2, 8, 8))))
    data = path.read_bytes()
    for i in range(40):
        flipped = bytearray(data)
        pos = int(rng.integers(0, 2048))
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        bad = tmp_path / f"flip{i}.h5"
        bad.write_bytes(bytes(flipped))
        try:
            scan = open_scan(bad)
            for s in range(scan.n_slices):
                scan.kspace(s)
                scan.reference(s)
        except WorkbenchError as exc:
            assert f"flip{i}.h5" in str(exc)


@pytest.mark.timeout(60)
def test_damaged_global_heap_that_made_hdf5_loop_forever(tmp_path):
    # Found by the fuzzer: one damaged byte in the global heap (where variable-length attributes live) made
    # HDF5 loop forever reading `f.attrs`. A free-space object of size 0 is such a heap.
    path = tmp_path / "heap.h5"
    write_fastmri(path, np.ones((1, 2, 16, 12), np.complex64), attrs={"patient_id": "someone"})
    data = bytearray(path.read_bytes())
    first_object = data.index(b"GCOL") + 16
    data[first_object: first_object + 2] = bytes(2)        # object index 0: free space
    data[first_object + 8: first_object + 16] = bytes(8)   # of size 0
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"heap\.h5: HDF5 global heap at byte \d+ is damaged"):
        open_scan(path)


def test_forged_variable_length_attribute(tmp_path):
    # A damaged length in a variable-length string attribute made HDF5 allocate 4 GiB before it noticed that
    # the heap object holds 7 bytes.
    path = tmp_path / "vattr.h5"
    write_fastmri(path, np.ones((1, 2, 16, 12), np.complex64), attrs={"patient_id": "someone"})
    data = bytearray(path.read_bytes())
    reference = data.index(struct.pack("<IQ", 7, data.index(b"GCOL")))
    data[reference: reference + 4] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"vattr\.h5: HDF5 variable-length value at byte \d+ states "
                                               r"4294967280 elements but its heap object holds 7 bytes"):
        open_scan(path)


def test_nan_reference_is_a_typed_error(tmp_path):
    k = np.ones((1, 2, 16, 12), np.complex64)
    ref = np.full((1, 8, 8), np.nan, np.float32)
    path = tmp_path / "nanref.h5"
    write_fastmri(path, k, ref)
    scan = open_scan(path)
    with pytest.raises(InvalidDataError, match=r"nanref\.h5: slice 0 reference image has 64 NaN/Inf values"):
        scan.reference(0)


def test_reading_leaves_inputs_unmodified(tmp_path):
    k = np.ones((1, 2, 16, 12), np.complex64)
    paths = [tmp_path / "a.h5", tmp_path / "b.npy", tmp_path / "c.cfl"]
    write_fastmri(paths[0], k)
    np.save(paths[1], k[0])
    write_cfl(tmp_path / "c", np.transpose(k[0], (1, 2, 0))[:, :, None, :])
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    for p in paths:
        open_scan(p).kspace(0)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before


def test_gzip_file_renamed(tmp_path):
    path = tmp_path / "k.npy"
    path.write_bytes(gzip.compress(bytes(1000)))
    with pytest.raises(WorkbenchError, match=r"k\.npy.*gzip"):
        open_scan(path)
