"""Siemens twix reader: layout rules on synthetic arrays, bad input, and the real phantom files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy_reference import np_ifft2c as ifft2c

from workbench.errors import CorruptFileError, UnsupportedFormatError
from workbench.io import open_scan
from workbench.io.twix import arrange_lines, header_highlights, twix_signature


# ------------------------------------------------------------------------------------------ synthetic
def test_arrange_lines_puts_readout_on_h():
    rng = np.random.default_rng(3)
    lines = rng.standard_normal((6, 2, 10)) + 1j * rng.standard_normal((6, 2, 10))   # [Lin, Cha, Col]
    k, front = arrange_lines(lines, center_col=5)
    assert front == 0 and k.shape == (2, 10, 6)
    for c, h, w in [(0, 0, 0), (1, 9, 5), (1, 3, 2)]:
        assert k[c, h, w] == lines[w, c, h]


def test_arrange_lines_pads_asymmetric_echo_to_centre():
    # 428 of 512 samples with the echo at column 172: 84 zeros in front, echo at 256
    lines = np.zeros((4, 1, 428), complex)
    lines[:, :, 172] = 1.0
    lines[:, :, 0] = 0.5
    k, front = arrange_lines(lines, center_col=172)
    assert front == 84 and k.shape == (1, 512, 4)
    assert (k[0, 256] == 1.0).all() and (k[0, 84] == 0.5).all() and not k[0, :84].any()
    # echo late in the window (samples after the echo missing): zeros at the end
    k2, front2 = arrange_lines(np.ones((2, 1, 12)), center_col=8)
    assert front2 == 0 and k2.shape == (1, 16, 2) and not k2[0, 12:].any()


def test_header_highlights_from_measyaps():
    hdr = {"MeasYaps": {"sProtConsistencyInfo": {"flNominalB0": 2.89362}, "lContrasts": 2, "alTR": [10000],
                        "alTE": [3000, 6000, 20000], "adFlipAngleDegree": [15.0],
                        "sSliceArray": {"asSlice": [{"dReadoutFOV": 200.0, "dPhaseFOV": 180.0, "dThickness": 4.0}]},
                        "sKSpace": {"lBaseResolution": 160, "lPhaseEncodingLines": 144},
                        "tSequenceFileName": "%SiemensSeq%\\gre", "tProtocolName": "t1_gre"},
           "Dicom": {"ManufacturersModelName": "Skyra"}, "Meas": {"flReadoutOSFactor": 2.0}}
    h = header_highlights(hdr)
    assert h["field_strength_T"] == 2.894 and h["TR_ms"] == 10.0 and h["TE_ms"] == [3.0, 6.0]
    assert h["FOV_mm"] == [200.0, 180.0] and h["base_resolution"] == 160 and h["phase_encoding_lines"] == 144
    assert h["sequence"] == "gre" and h["protocol"] == "t1_gre" and h["scanner"] == "Siemens Skyra"
    assert h["flip_angle_deg"] == 15.0 and h["readout_oversampling"] == 2.0


def test_non_twix_dat_is_rejected(tmp_path):
    for name, data in [("notes.dat", b"temperature,pressure\n1,2\n" * 40),
                       ("zeros.dat", bytes(4096)),
                       ("fake.dat", np.array([0, 1, 0, 0, 10240, 0, 999, 0], "<u4").tobytes() + bytes(512))]:
        p = tmp_path / name
        p.write_bytes(data)
        assert twix_signature(str(p), data[:512]) is None
        with pytest.raises(UnsupportedFormatError, match=name):
            open_scan(p)
        with pytest.raises(UnsupportedFormatError, match=f"{name}: not a Siemens twix"):
            open_scan(p, format="twix")
    with pytest.raises(UnsupportedFormatError, match="notes.dat.*text file"):
        open_scan(tmp_path / "notes.dat")


# ---------------------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def twix_dir(realdata):
    return realdata / "twix_phantom"


def test_gre_layout_and_header(twix_dir):
    import twixtools

    path = twix_dir / "gre.dat"
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    scan = open_scan(path)
    assert scan.format == "twix" and scan.kspace_shape == (2, 320, 160)
    assert scan.grid_shape == (320, 160) and scan.recon_shape == (160, 160) and scan.fully_sampled
    h = scan.header
    assert h["field_strength_T"] == pytest.approx(2.894, abs=1e-3) and h["TR_ms"] == 10.0 and h["TE_ms"] == 3.0
    assert h["FOV_mm"] == [200.0, 200.0] and h["base_resolution"] == 160 and h["sequence"] == "gre"
    # the PROVENANCE recipe, independently: (Lin, Cha, Col) -> [Cha, Col, Lin]
    im = twixtools.map_twix(str(path), verbose=False)[-1]["image"]
    im.flags["remove_os"] = False
    im.flags["squeeze_singletons"] = True
    ref = np.transpose(im[:], (1, 2, 0))
    np.testing.assert_array_equal(scan.kspace(0).numpy(), ref)
    a = np.abs(ref).sum(0)
    assert np.unravel_index(a.argmax(), a.shape) == (160, 80)      # DC at (H//2, W//2)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_asymmetric_echo_7t_is_padded_and_masked(twix_dir):
    scan = open_scan(twix_dir / "singlechannel_7T.dat")
    assert scan.kspace_shape == (1, 512, 256) and scan.recon_shape == (256, 256)
    assert scan.header["field_strength_T"] == pytest.approx(6.981, abs=1e-3)
    mask = scan.acquired_mask
    assert not mask[:84].any() and mask[84:].all()
    assert scan.sampled_fraction == pytest.approx(428 / 512)
    k = scan.kspace(0).numpy()
    assert not k[:, :84].any()
    peak = np.unravel_index(np.abs(k[0]).argmax(), k.shape[1:])
    assert abs(peak[0] - 256) <= 4 and abs(peak[1] - 128) <= 1          # echo near the centre now
    assert "asymmetric echo" in scan.header["note"]


def test_repetitions_are_slices_and_epi_note(twix_dir):
    scan = open_scan(twix_dir / "meas_MID00273_FID117236_gre_bodycoil.dat")
    assert scan.n_slices == 2 and scan.kspace_shape == (2, 256, 128) and scan.recon_shape == (128, 128)
    a, b = (np.abs(ifft2c(scan.kspace(i).numpy())) for i in (0, 1))
    assert not np.array_equal(a, b)
    corr = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
    assert corr > 0.98                                               # the same phantom twice
    epi = open_scan(twix_dir / "epi.dat")
    assert epi.kspace_shape == (2, 160, 80) and epi.attrs["epi"] and epi.attrs["ramp_regridded"]
    assert "no Nyquist-ghost" in epi.header["note"]


def test_truncated_twix(twix_dir, tmp_path):
    data = (twix_dir / "gre.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.dat: truncated"):
        open_scan(cut)


def test_reading_defers_twixtools_plotting_and_integration_imports(twix_dir):
    """twixtools imports matplotlib.pyplot and scipy.integrate at module level; the reader defers both to their
    first use (half a second of `workbench info`), leaves no stand-in in sys.modules, and what twixtools calls
    still works (ramp regridding's cumulative_trapezoid; pyplot when plotted)."""
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from workbench.io import open_scan
        scan = open_scan({str(twix_dir / "gre.dat")!r})
        assert scan.kspace(0).shape == (2, 320, 160)
        heavy = [m for m in ("matplotlib", "matplotlib.pyplot", "scipy.integrate") if m in sys.modules]
        assert not heavy, heavy
        epi = open_scan({str(twix_dir / "epi.dat")!r})  # ramp sampling: regridded with cumulative_trapezoid
        assert epi.attrs["ramp_regridded"] and epi.kspace(0).shape == (2, 160, 80)
        assert "matplotlib" not in sys.modules
        import twixtools.recon_helpers as helpers
        assert np.allclose(helpers.cumtrapz(np.arange(5.0)), [0.5, 2.0, 4.5, 8.0])
        import scipy.integrate
        assert type(scipy.integrate).__name__ == "module" and hasattr(scipy.integrate, "quad")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_deferred_twixtools_import_does_not_block_another_threads_import():
    """While the reader imports twixtools (with its stand-ins), another thread may be half-way through importing
    a module twixtools needs (tqdm here, held for a moment): both imports finish, and the other thread's own
    imports never see a stand-in. Holding the global import lock meanwhile deadlocked: the other thread waited
    for that lock, the reader for the other thread's half-imported module."""
    code = textwrap.dedent("""
        import importlib.machinery, sys, threading, time
        from workbench.io.twix import _import_twixtools
        assert "tqdm" not in sys.modules and "twixtools" not in sys.modules
        half_imported = threading.Event()

        class SlowTqdm:
            def find_spec(self, name, path=None, target=None):
                if name != "tqdm" or threading.current_thread() is threading.main_thread():
                    return None
                sys.meta_path.remove(self)
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                loader = spec.loader

                class Slow:
                    def create_module(self, spec):
                        return loader.create_module(spec)

                    def exec_module(self, module):
                        half_imported.set()
                        time.sleep(0.5)
                        loader.exec_module(module)

                spec.loader = Slow()
                return spec

        seen = {}

        def other():
            import tqdm  # noqa: F401
            import scipy.integrate
            seen["integrate"] = type(scipy.integrate).__name__

        sys.meta_path.insert(0, SlowTqdm())
        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        assert half_imported.wait(30)
        twixtools = _import_twixtools()
        thread.join(30)
        assert not thread.is_alive() and seen == {"integrate": "module"}, seen
        assert "matplotlib" not in sys.modules and hasattr(twixtools, "read_twix")
        print("ok")
    """)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("importing twixtools deadlocked with another thread's import")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _twix_image(path):
    from workbench.io.twix import _import_twixtools

    twixtools = _import_twixtools()
    im = twixtools.map_twix(str(path), verbose=False)[-1]["image"]
    im.flags["remove_os"] = False
    im.flags["zf_missing_lines"] = True
    return twixtools, im


@pytest.mark.parametrize("name", ["gre.dat", "meas_MID00273_FID117236_gre_bodycoil.dat", "singlechannel_7T.dat"])
def test_line_assembly_equals_twixtools_indexing(twix_dir, name):
    """The reader's one-pass assembly against twixtools' own __getitem__, slice by slice."""
    from workbench.io.twix import _plain_flags, assemble_lines

    _, im = _twix_image(twix_dir / name)
    assert _plain_flags(im)
    names, shape = list(im.dims), list(im.shape)
    for rep in range(shape[names.index("Rep")]):
        idx = tuple(rep if d == "Rep" else slice(None) if d in ("Lin", "Cha", "Col") else 0 for d in names)
        ours = assemble_lines(im, idx)
        assert ours.dtype == np.complex64
        np.testing.assert_array_equal(ours, np.asarray(im[idx]))


def test_line_assembly_averages_lines_that_share_an_index(twix_dir):
    """Lines acquired twice (an averaged dimension) are averaged, as twixtools does: the last line's data is
    given a second copy counted on line 0, and both readings must agree."""
    import copy

    from workbench.io.twix import assemble_lines

    twixtools, im = _twix_image(twix_dir / "gre.dat")
    extra = copy.copy(im.mdb_list[-1])
    extra.mdh = copy.deepcopy(extra.mdh)
    extra.mdh.Counter.Lin = im.mdb_list[0].mdh.Counter.Lin
    extra.mdh.Counter.Ave = 1
    doubled = twixtools.twix_array(im.mdb_list + [extra], im.hdr, im.flags)
    idx = tuple(slice(None) if d in ("Lin", "Cha", "Col") else 0 for d in doubled.dims)
    ours = assemble_lines(doubled, idx)
    np.testing.assert_array_equal(ours, np.asarray(doubled[idx]))
    lin0 = im.mdb_list[0].mdh.Counter.Lin + doubled.lin_offset
    np.testing.assert_allclose(ours[lin0], (im.mdb_list[0].data + im.mdb_list[-1].data) / 2, rtol=1e-6)


def test_regridded_epi_goes_through_twixtools(twix_dir):
    from workbench.io.twix import _plain_flags

    _, im = _twix_image(twix_dir / "epi.dat")
    im.flags["regrid"] = True
    assert im.rs_traj is not None and not _plain_flags(im)
