"""Seeded fuzzing of every scan reader: malformed files of each format, each opened through
``workbench.io.open_scan`` (first slice, reference, summary) and ``workbench info --json`` in-process.

What a run checks per file: the outcome is success or a typed ``WorkbenchError`` that names the file (anything
else is a "traceback"); the peak of Python/NumPy allocations (tracemalloc) and the growth of the process's peak
RSS; that the input files are unchanged (SHA-256 and mtime); that a canary file outside the corpus, which the
HDF5 files with external storage/links/virtual datasets point at, was never read (its access time is set in the
past: any read moves it).

The normal test suite runs a small seeded corpus (tests/test_fuzz_readers.py). A larger campaign by hand:

    python -m tests.fuzz_readers --n 500 --seed 1 [--budget 512M] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
import tracemalloc
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

KINDS = ("fastmri", "mrd", "bart", "mat5", "mat73", "npy", "npz", "twix")
CANARY = b"root:x:0:0:root:/root:/bin/bash\n" * 64
BOMB_MB = 64  # how much the bombs inflate to (the suite's quick run uses less)
OLD_ATIME = 946684800  # 2000-01-01: any read of the canary moves its access time


# ---------------------------------------------------------------------------------------------- valid seeds
def _kspace(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


MRD_XML = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<encoding><encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
<fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
<fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{m}</maximum><center>{c}</center>
</kspace_encoding_step_1></encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"""


def write_mrd(path: Path, k: np.ndarray, xml: str | None = None, *, channels: int | None = None,
              samples: int | None = None) -> None:
    """An ISMRMRD file of Cartesian k-space ``[C, H, W]`` (one acquisition per column)."""
    import ismrmrd

    C, H, W = k.shape
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header((xml or MRD_XML.format(h=H, w=W, m=W - 1, c=W // 2)).encode())
    for col in range(W):
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(k[:, :, col]))
        acq.idx.kspace_encode_step_1 = col
        acq.center_sample = H // 2
        ds.append_acquisition(acq)
    ds.close()
    if channels is not None or samples is not None:  # forge the headers (ismrmrd keeps them consistent)
        with h5py.File(path, "r+") as f:
            data = f["dataset/data"]
            rows = data[...]
            for name, value in (("active_channels", channels), ("number_of_samples", samples)):
                if value is not None:
                    rows["head"][name][0] = value
            data[...] = rows


def _mat73_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116, b" ")
                + bytes(8) + b"\x00\x02IM")


def write_mat73(path: Path, k: np.ndarray, *, compress: bool = True) -> None:
    """A MATLAB v7.3 file holding ``ksp`` (MATLAB order reversed in HDF5, compound real/imag)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        t = k.T
        data = np.empty(t.shape, dtype=[("real", "<f4"), ("imag", "<f4")])
        data["real"], data["imag"] = t.real, t.imag
        ds = f.create_dataset("ksp", data=data, compression="gzip" if compress else None)
        ds.attrs["MATLAB_class"] = np.bytes_(b"single")
    _mat73_header(path)


def seed_file(kind: str, folder: Path, rng: np.random.Generator, realdata: Path | None) -> Path | None:
    """A small valid file of ``kind`` in ``folder`` (None for twix without the real data folder)."""
    from scipy.io import savemat

    from workbench.io.bart import write_cfl
    from workbench.io.fastmri import write_fastmri

    k = _kspace(rng, 2, 24, 16)
    if kind == "fastmri":
        p = folder / "seed.h5"
        write_fastmri(p, k[None], np.abs(rng.standard_normal((1, 12, 12))).astype(np.float32),
                      header_xml=MRD_XML.format(h=24, w=16, m=15, c=8))
    elif kind == "mrd":
        p = folder / "seed_mrd.h5"
        write_mrd(p, k)
    elif kind == "bart":
        p = folder / "ksp.cfl"
        write_cfl(folder / "ksp", np.transpose(k, (1, 2, 0))[:, :, None, :])
    elif kind == "mat5":
        p = folder / "seed5.mat"
        savemat(p, {"ksp": np.transpose(k, (1, 2, 0)), "TR": 5.0}, do_compression=bool(rng.integers(2)))
    elif kind == "mat73":
        p = folder / "seed73.mat"
        write_mat73(p, np.transpose(k, (1, 2, 0)))
    elif kind == "npy":
        p = folder / "seed.npy"
        np.save(p, k)
    elif kind == "npz":
        p = folder / "seed.npz"
        traj = np.stack(np.meshgrid(np.linspace(-np.pi, np.pi, 24, endpoint=False), np.zeros(16)), 0)
        np.savez_compressed(p, kspace=k.reshape(2, -1), traj=traj.reshape(2, -1).astype(np.float32))
    elif kind == "twix":
        src = realdata / "twix_phantom" / "gre.dat" if realdata else None
        if src is None or not src.is_file():
            return None
        p = folder / "seed.dat"
        shutil.copyfile(src, p)
    else:
        raise ValueError(kind)
    return p


def companions(path: Path) -> list[Path]:
    """The files a case consists of (a BART pair has two)."""
    if path.suffix in (".cfl", ".hdr"):
        return [path.with_suffix(".cfl"), path.with_suffix(".hdr")]
    return [path]


# -------------------------------------------------------------------------------------------- mutations
def byte_mutation(src: Path, dst: Path, rnd: random.Random) -> str:
    """Copy ``src`` (and its companions) to ``dst`` with one damage: a truncation, bit flips or an overwritten run."""
    pairs = list(zip(companions(src), companions(dst)))
    for s, d in pairs:
        shutil.copyfile(s, d)
    target = rnd.choice(pairs)[1]
    data = bytearray(target.read_bytes())
    how = rnd.choice(["truncate", "flip", "flip", "flip-head", "overwrite"])
    if how == "truncate":
        data = data[: rnd.randrange(max(len(data), 1))]
    elif how.startswith("flip"):
        span = min(len(data), 4096) if how == "flip-head" else len(data)
        for _ in range(rnd.randint(1, 16)):
            if span:
                data[rnd.randrange(span)] ^= 1 << rnd.randrange(8)
    else:
        if data:
            start = rnd.randrange(len(data))
            n = rnd.randint(1, 64)
            fill = rnd.choice([b"\x00", b"\xff", bytes([rnd.randrange(256)])])
            data[start: start + n] = fill * len(data[start: start + n])
    target.write_bytes(bytes(data))
    return f"{how} {target.name}"


def _bomb(f: h5py.Group, name: str, shape: tuple, chunks: tuple, dtype="c8") -> None:
    """A gzip-compressed dataset of zeros, written chunk by chunk (little memory while writing)."""
    ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression="gzip", compression_opts=9)
    block = np.zeros(chunks, dtype=ds.dtype)
    for idx in np.ndindex(*(s // c for s, c in zip(shape, chunks))):
        ds[tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks))] = block


def _outside(f: h5py.Group, name: str, canary: str, rnd: random.Random, shape=(1, 2, 24, 16), dtype="c8") -> str:
    how = rnd.choice(["external-storage", "external-link", "virtual"])
    if how == "external-storage":
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(canary, 0, h5py.h5f.UNLIMITED)])
    elif how == "external-link":
        f[name] = h5py.ExternalLink(canary, "/kspace")
    else:
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(canary, "kspace", shape=shape)
        f.create_virtual_dataset(name, layout)
    return how


def structured(kind: str, p: Path, rnd: random.Random, rng: np.random.Generator, canary: str) -> str:
    """A file of ``kind`` at ``p`` that is well-formed as a container but wrong inside: dtypes, shapes, attrs,
    huge declared sizes, bombs, links. Returns a description."""
    from workbench.io.bart import write_cfl
    from workbench.io.fastmri import write_fastmri

    k = _kspace(rng, 2, 24, 16)
    if kind == "fastmri":
        how = rnd.choice(["dtype", "ndim", "empty", "huge", "bomb", "xml-int", "xml-garbage", "ref-shape", "nan",
                          "ref-nan", "mask", "outside", "loop", "attrs", "group"])
        with h5py.File(p, "w") as f:
            if how == "dtype":
                f["kspace"] = rng.standard_normal((1, 2, 24, 16)).astype(rnd.choice(["f4", "i2", "u1"]))
            elif how == "ndim":
                f["kspace"] = _kspace(rng, *[3] * rnd.choice([1, 2, 5]))
            elif how == "empty":
                f.create_dataset("kspace", shape=(1, 0, 24, 16), dtype="c8")
            elif how == "huge":
                f.create_dataset("kspace", shape=tuple(rnd.choice([1, 2**20, 2**31]) for _ in range(4)),
                                 dtype="c8", chunks=(1, 1, 1, 1) if rnd.random() < 0.5 else None)
            elif how == "bomb":
                _bomb(f, "kspace", (1, BOMB_MB // 8, 1024, 1024), (1, 1, 1024, 1024))
            elif how == "outside":
                how += " " + _outside(f, "kspace", canary, rnd)
            elif how == "loop":
                f["kspace"] = h5py.SoftLink("/x")
                f["x"] = h5py.SoftLink("/kspace")
            elif how == "group":
                f.create_group("kspace")
            else:
                f["kspace"] = k[None]
            if how == "nan":
                f["kspace"][0, 0, 0, 0] = np.nan
            if how == "xml-int":
                f["ismrmrd_header"] = rnd.randint(-5, 5)
            if how == "xml-garbage":
                f["ismrmrd_header"] = np.bytes_(bytes(rnd.randrange(256) for _ in range(200)))
            if how in ("ref-shape", "ref-nan"):
                f["reconstruction_rss"] = (np.full((1, 12, 12), np.nan, np.float32) if how == "ref-nan"
                                           else np.ones((rnd.randint(0, 3), 4), np.float32))
            if how == "mask":
                f["mask"] = np.ones(rnd.randint(0, 40), bool)
            if how == "attrs":
                f.attrs["max"] = np.nan
                f.attrs["acquisition"] = np.arange(3)
        return how
    if kind == "mrd":
        how = rnd.choice(["huge-matrix", "zero-matrix", "xml-int", "xml-garbage", "channels", "samples", "nan",
                          "outside", "data-dtype", "limits"])
        if how in ("outside", "data-dtype", "xml-int"):
            with h5py.File(p, "w") as f:
                g = f.create_group("dataset")
                if how == "xml-int":
                    g["xml"] = rnd.randint(0, 9)
                    g["data"] = np.zeros(3, dtype=[("head", "<i4"), ("data", "<f4")])
                else:
                    g.create_dataset("xml", data=np.array([MRD_XML.format(h=24, w=16, m=15, c=8).encode()],
                                                          dtype=object), dtype=h5py.string_dtype())
                    if how == "outside":
                        how += " " + _outside(g, "data", canary, rnd, shape=(4,), dtype="f4")
                    else:
                        g["data"] = rng.standard_normal(10).astype(np.float32)
            return how
        xml = None
        if how == "huge-matrix":
            n = rnd.choice([8192, 65536, 2**31 - 1])
            xml = MRD_XML.format(h=n, w=n, m=n - 1, c=n // 2)
        elif how == "zero-matrix":
            xml = MRD_XML.format(h=0, w=-4, m=15, c=8)
        elif how == "xml-garbage":
            xml = "<ismrmrdHeader><encoding>" + "x" * rnd.randint(0, 50)
        elif how == "limits":
            xml = MRD_XML.format(h=24, w=16, m=rnd.choice([-3, 10**9]), c=rnd.choice([-7, 10**9]))
        if how == "nan":
            k[0, 0, 0] = np.inf
        write_mrd(p, k, xml, channels=rnd.choice([0, 1, 64, 65535]) if how == "channels" else None,
                  samples=rnd.choice([0, 1, 40000, 65535]) if how == "samples" else None)
        return how
    if kind == "bart":
        how = rnd.choice(["huge-dims", "zero-dims", "text", "size-mismatch", "sparse", "17-dims", "traj-nan",
                          "traj-huge"])
        base = p.with_suffix("")
        if how.startswith("traj"):
            kr = _kspace(rng, 32, 8, 1, 2)
            write_cfl(base, kr)
            t = np.zeros((3, 32, 8), np.float32)
            t[0] = np.linspace(-16, 16, 32)[:, None] * (1e9 if how == "traj-huge" else 1)
            if how == "traj-nan":
                t[1, 3, 3] = np.nan
            write_cfl(p.parent / f"traj_{p.stem}", t)
            return how
        write_cfl(base, np.transpose(k, (1, 2, 0))[:, :, None, :])
        hdr = p.with_suffix(".hdr")
        if how == "huge-dims":
            hdr.write_text(f"# Dimensions\n{rnd.choice([2**31, 2**40, 10**30])} 16 1 2 1\n")
        elif how == "zero-dims":
            hdr.write_text(f"# Dimensions\n24 {rnd.choice([0, -1])} 1 2 1\n")
        elif how == "text":
            hdr.write_text("# Dimensions\n24 x16 1 2\n")
        elif how == "17-dims":
            hdr.write_text("# Dimensions\n" + " ".join(["2"] * 17) + "\n")
        elif how == "size-mismatch":
            with open(p, "ab") as f:
                f.write(bytes(rnd.randint(1, 64)))
        elif how == "sparse":
            dims = (65536, 4096, 1, 32)
            hdr.write_text("# Dimensions\n" + " ".join(map(str, dims)) + " 1\n")
            with open(p, "r+b") as f:
                f.truncate(int(np.prod(dims, dtype=object)) * 8)
        return how
    if kind == "mat5":
        header = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
        how = rnd.choice(["zlib-bomb", "cells", "dims", "no-complex", "compressed-garbage"])
        if how == "zlib-bomb":
            inner = struct.pack("<II", 14, BOMB_MB << 20) + bytes(BOMB_MB << 20)
            comp = zlib.compress(inner, 9)
            p.write_bytes(header + struct.pack("<II", 15, len(comp)) + comp)
        elif how == "cells":
            body = (struct.pack("<IIII", 6, 8, 1, 0) + struct.pack("<IIii", 5, 8, 10**5, rnd.choice([10**5, -1]))
                    + struct.pack("<HH", 1, 1) + b"c\0\0\0")
            p.write_bytes(header + struct.pack("<II", 14, len(body)) + body)
        elif how == "dims":  # an uncompressed complex array whose dims are rewritten
            from scipy.io import savemat

            savemat(p, {"ksp": np.transpose(k, (1, 2, 0))}, do_compression=False)
            data = bytearray(p.read_bytes())
            at = data.find(struct.pack("<iii", 24, 16, 2))
            if at > 0:
                data[at: at + 12] = struct.pack("<iii", *[rnd.choice([-1, 0, 2**31 - 1, 65536]) for _ in range(3)])
            p.write_bytes(bytes(data))
        elif how == "no-complex":
            from scipy.io import savemat

            savemat(p, {"x": np.ones((4, 4)), "s": "text"})
        else:
            comp = bytes(rnd.randrange(256) for _ in range(200))
            p.write_bytes(header + struct.pack("<II", 15, len(comp)) + comp)
        return how
    if kind == "mat73":
        how = rnd.choice(["huge", "bomb", "outside", "dtype", "char", "loop"])
        with h5py.File(p, "w", userblock_size=512) as f:
            cplx = np.dtype([("real", "<f4"), ("imag", "<f4")])
            if how == "huge":
                ds = f.create_dataset("ksp", shape=(2**20, 2**20, 8), dtype=cplx, chunks=(1, 64, 8))
            elif how == "bomb":
                _bomb(f, "ksp", (BOMB_MB // 8, 1024, 1024), (1, 1024, 1024), dtype=cplx)
                ds = f["ksp"]
            elif how == "outside":
                how += " " + _outside(f, "ksp", canary, rnd, shape=(2, 16, 24), dtype=cplx)
                ds = None
            elif how == "loop":
                f["ksp"] = h5py.SoftLink("/ksp")
                ds = None
            elif how == "char":
                ds = f.create_dataset("ksp", data=np.array([[1, 2, 0x7FFFFFFF]], np.int64))
                ds.attrs["MATLAB_class"] = np.bytes_(b"char")
            else:
                ds = f.create_dataset("ksp", data=np.zeros((2, 16, 24), dtype=[("a", "<f4"), ("imag", "S2")]))
            if ds is not None and "MATLAB_class" not in ds.attrs:
                ds.attrs["MATLAB_class"] = np.bytes_(b"single")
        _mat73_header(p)
        return how
    if kind == "npy":
        how = rnd.choice(["shape-huge", "shape-negative", "header-garbage", "object", "descr", "truncated-data"])
        hdr = {"descr": "<c8", "fortran_order": False, "shape": (2, 24, 16)}
        body = k.tobytes()
        if how == "shape-huge":
            hdr["shape"] = (2**20, 2**20, 16)
        elif how == "shape-negative":
            hdr["shape"] = (2, -24, 16)
        elif how == "descr":
            hdr["descr"] = rnd.choice(["<U8", "|V8", "<f2", "|b1"])
        elif how == "truncated-data":
            body = body[: len(body) // 3]
        if how == "object":
            np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            return how
        if how == "header-garbage":
            text = rnd.choice([b"{'descr': '<c8', 'shape': (2, 2", b"{[(", b"\xff\xfe", b"{'descr': 5}"])
            text = text.ljust(118) + b"\n"
            p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body)
            return how
        buf = io.BytesIO()
        try:
            np.lib.format.write_array_header_1_0(buf, hdr)
        except ValueError:
            np.lib.format.write_array_header_2_0(buf, hdr)
        p.write_bytes(buf.getvalue() + body)
        return how
    if kind == "npz":
        how = rnd.choice(["bomb", "not-npy", "liar", "object", "traj-huge", "traj-nan", "empty", "stored-liar"])
        with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
            if how == "bomb":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "<c8", "fortran_order": False,
                                                           "shape": (1, 1024, BOMB_MB * 128)})
                with z.open("kspace.npy", "w", force_zip64=True) as m:
                    m.write(buf.getvalue())
                    for _ in range(BOMB_MB):
                        m.write(bytes(1 << 20))
            elif how == "not-npy":
                z.writestr(rnd.choice(["kspace.npy", "readme.txt"]), b"not an array" * 10)
            elif how in ("liar", "stored-liar"):
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "<c8", "fortran_order": False,
                                                           "shape": (64, 65536, 65536)})
                z.writestr("kspace.npy", buf.getvalue() + bytes(64),
                           compress_type=zipfile.ZIP_STORED if how == "stored-liar" else zipfile.ZIP_DEFLATED)
            elif how == "object":
                buf = io.BytesIO()
                np.save(buf, np.array([1, "x"], dtype=object), allow_pickle=True)
                z.writestr("kspace.npy", buf.getvalue())
            elif how == "empty":
                pass
            else:
                buf = io.BytesIO()
                np.save(buf, k.reshape(2, -1))
                z.writestr("kspace.npy", buf.getvalue())
                t = np.stack([np.linspace(-1, 1, 384), np.zeros(384)]).astype(np.float32)
                t *= 1e8 if how == "traj-huge" else 1
                if how == "traj-nan":
                    t[0, 5] = np.nan
                buf = io.BytesIO()
                np.save(buf, t)
                z.writestr("traj.npy", buf.getvalue())
        return how
    raise ValueError(kind)


# ------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    kind: str
    path: Path
    how: str
    options: dict = field(default_factory=dict)


def generate(n: int, seed: int, folder: Path, canary: str, realdata: Path | None) -> list[Case]:
    """``n`` malformed files in ``folder`` (one subfolder each), a third structured, the rest byte mutations of
    valid seeds, spread over all kinds (twix only with the real data folder)."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    seeds_dir = folder / "_seeds"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    seeds = {kind: seed_file(kind, seeds_dir, rng, realdata) for kind in KINDS}
    kinds = [k for k in KINDS if seeds[k] is not None]
    cases = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        d = folder / f"{i:04d}_{kind}"
        d.mkdir()
        src = seeds[kind]
        if kind != "twix" and rnd.random() < 0.4:
            ext = {"fastmri": ".h5", "mrd": ".h5", "bart": ".cfl", "mat5": ".mat", "mat73": ".mat", "npy": ".npy",
                   "npz": ".npz"}[kind]
            p = d / f"case{i}{ext}"
            how = structured(kind, p, rnd, rng, canary)
            if kind == "bart" and how.startswith("traj"):
                p = p.with_suffix(".cfl")
        else:
            p = d / src.name
            how = byte_mutation(src, p, rnd)
        cases.append(Case(kind, p, how))
    return cases


def _digest(paths: list[Path]) -> list[tuple]:
    out = []
    for p in paths:
        if p.exists():
            st = p.stat()
            h = hashlib.sha256()
            with open(p, "rb") as f:
                if st.st_size <= 64 << 20:
                    h.update(f.read())
                else:  # a sparse multi-GB case: its ends, size and mtime
                    h.update(f.read(1 << 20))
                    f.seek(-(1 << 20), os.SEEK_END)
                    h.update(f.read())
            out.append((str(p), st.st_size, st.st_mtime_ns, h.hexdigest()))
    return out


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def run_case(case: Case) -> dict:
    """Open the case's file, read slice 0, its reference and summary, then run ``workbench info --json``."""
    from workbench.cli import main as cli_main
    from workbench.errors import WorkbenchError
    from workbench.io import open_scan

    files = [p for p in (case.path.parent.iterdir()) if p.is_file()]
    before = _digest(files)
    size = sum(p.stat().st_blocks * 512 for p in files)  # allocated bytes (a sparse file holds none)
    rss0 = _maxrss()
    tracemalloc.reset_peak()
    traced0 = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    outcome, detail = "ok", ""
    names = {case.path.name, case.path.stem}
    try:
        scan = open_scan(case.path, **case.options)
        scan.kspace(0)
        scan.reference(0)
        scan.summary()
    except WorkbenchError as exc:
        outcome, detail = type(exc).__name__, str(exc)
        if not any(n in str(exc) for n in names):
            outcome = "unnamed"
    except BaseException as exc:  # noqa: BLE001
        outcome, detail = "traceback", "".join(traceback.format_exception(exc))[-2000:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = cli_main(["info", str(case.path), "--json"])
        info = "ok" if rc == 0 else ("error" if "error:" in err.getvalue() else f"rc={rc}")
    except BaseException as exc:  # noqa: BLE001
        info = "traceback"
        detail = detail or "".join(traceback.format_exception(exc))[-2000:]
    peak = tracemalloc.get_traced_memory()[1] - traced0
    return {"kind": case.kind, "how": case.how, "file": str(case.path), "bytes": size, "outcome": outcome,
            "info": info, "detail": detail, "peak": peak, "rss_growth": max(_maxrss() - rss0, 0),
            "seconds": time.perf_counter() - t0, "modified": _digest(files) != before}


def campaign(n: int, seed: int, folder: Path, realdata: Path | None = None, log: Any = None
             ) -> tuple[list[dict], bool]:
    """Generate and run ``n`` cases; returns (results, canary_read). ``log``: a text stream told each case before
    it runs (so that a crash names its file)."""
    outside = folder / "_outside"
    outside.mkdir(parents=True, exist_ok=True)
    canary = outside / "secret.txt"
    canary.write_bytes(CANARY)
    cases = generate(n, seed, folder / "corpus", str(canary), realdata)
    os.utime(canary, (OLD_ATIME, canary.stat().st_mtime))
    for path in sorted((folder / "corpus" / "_seeds").iterdir()):  # warm up: imports are not a case's memory
        if path.suffix != ".hdr":
            run_case(Case("seed", path, "valid"))
    tracemalloc.start()
    try:
        results = []
        for i, c in enumerate(cases):
            if log is not None:
                print(f"{i} {c.kind} {c.how} {c.path}", file=log, flush=True)
            results.append(run_case(c))
    finally:
        tracemalloc.stop()
    canary_read = canary.stat().st_atime != OLD_ATIME or canary.read_bytes() != CANARY
    return results, canary_read


def over_memory(r: dict, floor: int = 0) -> bool:
    """Peak Python/NumPy allocation above 2 GB or above 20x the case's file bytes (and above ``floor``)."""
    return r["peak"] > 2e9 or r["peak"] > max(20 * r["bytes"], floor)


def summarise(results: list[dict], canary_read: bool, floor: int = 0) -> dict:
    outcomes: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "cases": len(results),
        "outcomes": dict(sorted(outcomes.items())),
        "tracebacks": sum(r["outcome"] == "traceback" or r["info"] == "traceback" for r in results),
        "unnamed_errors": sum(r["outcome"] == "unnamed" for r in results),
        "info_other": sum(r["info"] not in ("ok", "error", "traceback") for r in results),
        "peaks_over_2GB_or_20x": sum(over_memory(r, floor) for r in results),
        "max_peak_MB": round(max((r["peak"] for r in results), default=0) / 2**20, 1),
        "max_rss_growth_MB": round(max((r["rss_growth"] for r in results), default=0) / 2**20, 1),
        "max_seconds": round(max((r["seconds"] for r in results), default=0), 2),
        "external_reads": int(canary_read),
        "modified_inputs": sum(r["modified"] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", default="512M", help="WORKBENCH_MEMORY_BUDGET for the run")
    ap.add_argument("--floor", default=16 << 20, type=int, help="peaks below this many bytes are not counted")
    ap.add_argument("--keep", metavar="DIR", help="write the corpus here and keep it")
    ap.add_argument("--show", type=int, default=5, help="print this many failing cases")
    ap.add_argument("--log", metavar="FILE", help="write each case's file here before it runs")
    args = ap.parse_args(argv)
    os.environ["WORKBENCH_MEMORY_BUDGET"] = args.budget
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from workbench.paths import realdata_dir

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fuzz_readers_"))
    try:
        with open(args.log or os.devnull, "w") as log:
            results, canary_read = campaign(args.n, args.seed, folder, realdata_dir(), log)
        summary = summarise(results, canary_read, args.floor)
        bad = [r for r in results if r["outcome"] in ("traceback", "unnamed") or r["info"] == "traceback"
               or r["modified"] or over_memory(r, args.floor)]
        for r in bad[: args.show]:
            print(f"--- {r['kind']} {r['how']} {r['file']}: {r['outcome']} / info {r['info']}, peak "
                  f"{r['peak'] / 2**20:.1f} MB for {r['bytes']} bytes\n{r['detail']}")
        for key in ("peak", "rss_growth", "seconds"):
            top = max(results, key=lambda r: r[key])
            print(f"largest {key}: {top['kind']} {top['how']} {top['file']} ({top[key]:.3g}, {top['outcome']})")
        for key, value in summary.items():
            print(f"{key:24s} {value}")
        return 1 if bad or canary_read else 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
