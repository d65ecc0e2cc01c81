"""fastMRI HDF5 reader, on synthetic fastMRI-format files written with write_fastmri.

The files mimic the knee release: a phantom seen through smooth coil maps, 2x readout oversampling (the object
fills the central half of H), phase-encode edges zero-padded and described by the header's encodingLimits, and a
stored reconstruction_rss computed here with numpy FFTs (centre-cropped like fastMRI's)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from workbench.errors import ScanError
from workbench.io import open_scan
from workbench.io.fastmri import write_fastmri
from workbench.physics.fft import center_crop, ifft2c, rss
from numpy_reference import np_crop, np_fft2c, np_ifft2c  # noqa: E402

H, W = 64, 48  # readout (2x oversampled), phase encode (zero-padded edges)
PAD_LEFT, N_PE = 4, 40  # encoded columns [4, 44)
RECON = (32, 32)


def phantom(h, w, obj_h, obj_w, shift=0.0):
    """Two nested ellipses, object of size obj_h x obj_w centred in an h x w image."""
    y, x = np.mgrid[:h, :w].astype(np.float64)
    y = (y - h // 2) / (obj_h / 2)
    x = (x - w // 2) / (obj_w / 2)
    img = 1.0 * (y**2 + x**2 < 0.9)
    img -= 0.5 * (((y - 0.2 - shift) / 0.4) ** 2 + (x / 0.3) ** 2 < 1)
    return img


def coil_maps(c, h, w):
    """Smooth sensitivities: Gaussians centred on a ring around the image centre, with a phase ramp."""
    y, x = np.mgrid[:h, :w].astype(np.float64)
    maps = []
    for i in range(c):
        a = 2 * np.pi * i / c
        cy, cx = h / 2 + 0.35 * h * np.sin(a), w / 2 + 0.35 * w * np.cos(a)
        mag = np.exp(-(((y - cy) / (0.6 * h)) ** 2 + ((x - cx) / (0.6 * w)) ** 2))
        maps.append(mag * np.exp(1j * (0.02 * (x - cx) + 0.5 * i)))
    return np.stack(maps)


def header_xml(*, enc=(H, W), recon=RECON, limits=(0, N_PE - 1, W // 2 - PAD_LEFT), extra=""):
    lo, hi, centre = limits
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <measurementInformation><patientPosition>HFS</patientPosition><protocolName>CORPD_FBK_synth</protocolName>
  </measurementInformation>
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T><receiverChannels>4</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>210</y><z>4.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>{lo}</minimum><maximum>{hi}</maximum><center>{centre}</center>
      </kspace_encoding_step_1><slice><minimum>0</minimum><maximum>2</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
  <sequenceParameters><TR>2750</TR><TE>27</TE><TI>100</TI><flipAngle_deg>130</flipAngle_deg>
    <sequence_type>TurboSpinEcho</sequence_type></sequenceParameters>{extra}
</ismrmrdHeader>"""


def knee_kspace(n_slices=3, n_coils=4, pad=True):
    """Multi-coil k-space [S, C, H, W] of a phantom filling half the (oversampled) readout FOV."""
    maps = coil_maps(n_coils, H, W)
    slices = []
    for s in range(n_slices):
        img = phantom(H, W, obj_h=H // 2 - 4, obj_w=W - 14, shift=0.1 * s)
        slices.append(np_fft2c(maps * img))
    k = np.stack(slices).astype(np.complex64)
    if pad:
        k[..., :PAD_LEFT] = 0
        k[..., PAD_LEFT + N_PE :] = 0
    return k


def rss_reference(k, shape=RECON):
    """fastMRI's reconstruction_rss, computed independently with numpy: crop(rss(ifft2c(k)))."""
    return np_crop(np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(axis=-3)), shape).astype(np.float32)


@pytest.fixture
def knee_file(tmp_path):
    k = knee_kspace()
    ref = rss_reference(k)
    path = tmp_path / "knee.h5"
    write_fastmri(path, k, ref, header_xml=header_xml())
    return path, k, ref


def test_multicoil_knee_geometry_and_kspace(knee_file):
    path, k, ref = knee_file
    scan = open_scan(path)
    assert scan.format == "fastmri"
    assert (scan.n_slices, scan.n_coils) == (3, 4)
    assert scan.kspace_shape == (4, H, W) and scan.grid_shape == (H, W)
    assert scan.recon_shape == RECON  # the stored reconstruction's shape
    assert scan.is_cartesian and scan.reference_kind == "rss"
    for i in range(3):
        got = scan.kspace(i)
        assert got.dtype == torch.complex64 and tuple(got.shape) == (4, H, W)
        np.testing.assert_array_equal(got.numpy(), k[i])
    assert scan.attrs["acquisition"] == "AXT1" and scan.attrs["patient_id"] == "synthetic"


def test_zero_filled_rss_reproduces_stored_reference(knee_file):
    path, k, ref = knee_file
    scan = open_scan(path)
    for i in range(scan.n_slices):
        zf = center_crop(rss(ifft2c(scan.kspace(i))), scan.recon_shape).numpy()
        stored = scan.reference(i)
        assert stored.dtype == np.float32 and stored.shape == RECON
        np.testing.assert_allclose(stored, ref[i])
        np.testing.assert_allclose(zf, stored, atol=1e-5 * stored.max())
    # The object sits in the central half of the readout: the crop removes only empty oversampled FOV.
    full = np.sqrt((np.abs(np_ifft2c(k[0])) ** 2).sum(0))
    assert (np_crop(full, RECON) ** 2).sum() > 0.99 * (full**2).sum()


def test_padded_edges_do_not_count_as_undersampling(knee_file):
    path, _, _ = knee_file
    scan = open_scan(path)
    expected_cols = np.zeros(W, bool)
    expected_cols[PAD_LEFT : PAD_LEFT + N_PE] = True
    assert scan.encoded_mask is not None and scan.encoded_mask.shape == (H, W)
    np.testing.assert_array_equal(scan.encoded_mask, np.broadcast_to(expected_cols, (H, W)))
    assert scan.sampled_fraction == 1.0 and scan.fully_sampled
    assert scan.attrs["encoded_from"] == "header encodingLimits"


def test_header_highlights(knee_file):
    path, _, _ = knee_file
    scan = open_scan(path)
    h = scan.header
    assert h["field_strength_T"] == pytest.approx(2.89362)
    assert (h["TR_ms"], h["TE_ms"], h["TI_ms"], h["flip_angle_deg"]) == (2750, 27, 100, 130)
    assert (h["vendor"], h["model"]) == ("SIEMENS", "Skyra")
    assert (h["protocol"], h["sequence"]) == ("CORPD_FBK_synth", "TurboSpinEcho")
    assert h["encoded_matrix"] == "64x48x1" and h["recon_matrix"] == "32x32x1"
    assert h["encoded_fov_mm"] == "280x210x4.5" and h["recon_fov_mm"] == "140x140x3"
    assert h["trajectory_header"] == "cartesian"
    assert scan.header_xml == header_xml()
    assert scan.attrs["header_parser"] == "ElementTree"
    summary = scan.summary()
    assert summary["TR_ms"] == 2750 and summary["fully_sampled"] is True


def test_header_with_vendor_extension_falls_back_to_elementtree(tmp_path):
    # An element the schema does not know (it made the strict xsd parser fail) is ignored; the rest is read.
    k = knee_kspace(n_slices=1)
    path = tmp_path / "vendor.h5"
    write_fastmri(path, k, rss_reference(k), header_xml=header_xml(extra="<siemensExtras><a>1</a></siemensExtras>"))
    scan = open_scan(path)
    assert scan.attrs["header_parser"] == "ElementTree"
    ref_scan_header = open_scan(_write_clean(tmp_path, k)).header
    assert scan.header == ref_scan_header
    assert scan.fully_sampled and scan.encoded_mask is not None


def _write_clean(tmp_path, k):
    path = tmp_path / "clean.h5"
    write_fastmri(path, k, rss_reference(k), header_xml=header_xml())
    return path


def test_test_file_with_mask_and_no_reference(tmp_path):
    # fastMRI test/challenge files: no reconstruction, a 1D mask over W, acceleration attrs.
    k = knee_kspace(n_slices=2)
    mask = np.zeros(W, bool)
    mask[PAD_LEFT::4] = True
    mask[W // 2 - 3 : W // 2 + 3] = True
    mask[: PAD_LEFT] = False
    mask[PAD_LEFT + N_PE :] = False
    k = k * mask
    path = tmp_path / "test_file.h5"
    write_fastmri(path, k, None, header_xml=header_xml(), mask=mask,
                  attrs={"acceleration": 4, "num_low_frequency": 6})
    scan = open_scan(path)
    assert scan.reference(0) is None and scan.reference_kind is None
    assert scan.recon_shape == RECON  # from the header's reconSpace matrix
    np.testing.assert_array_equal(scan.acquired_mask, np.broadcast_to(mask, (H, W)))
    assert scan.sampled_fraction == pytest.approx(mask[PAD_LEFT : PAD_LEFT + N_PE].sum() / N_PE)
    assert not scan.fully_sampled
    assert scan.attrs["acceleration"] == 4 and scan.attrs["num_low_frequency"] == 6
    assert scan.header["acceleration"] == 4 and scan.header["num_low_frequency"] == 6


def test_undersampled_without_mask_dataset_reads_mask_from_zero_columns(tmp_path):
    k = knee_kspace(n_slices=1)
    keep = np.zeros(W, bool)
    keep[PAD_LEFT : PAD_LEFT + N_PE : 2] = True
    path = tmp_path / "under.h5"
    write_fastmri(path, k * keep, None, header_xml=header_xml())
    scan = open_scan(path)
    assert scan.sampled_fraction == pytest.approx(keep.sum() / N_PE)
    np.testing.assert_array_equal(scan.acquired_mask[0], keep)


def test_single_coil_knee_uses_esc_reference(tmp_path):
    k = knee_kspace(n_slices=2, n_coils=1)[:, 0]  # [S, H, W]
    esc = np_crop(np.abs(np_ifft2c(k)), RECON).astype(np.float32)
    path = tmp_path / "single.h5"
    write_fastmri(path, k, esc, header_xml=header_xml())
    with h5py.File(path, "r") as f:
        assert "reconstruction_esc" in f and f["kspace"].ndim == 3
    scan = open_scan(path)
    assert scan.n_coils == 1 and scan.kspace_shape == (1, H, W) and scan.reference_kind == "esc"
    np.testing.assert_array_equal(scan.kspace(1).numpy()[0], k[1])
    zf = center_crop(ifft2c(scan.kspace(1)).abs()[0], scan.recon_shape).numpy()
    np.testing.assert_allclose(zf, scan.reference(1), atol=1e-5 * esc.max())


def test_brain_like_file_without_padding_or_header(tmp_path):
    # Brain files: no zero-padded columns; without a header recon_shape comes from the reference.
    k = knee_kspace(n_slices=2, pad=False)
    ref = rss_reference(k, (32, 40))
    path = tmp_path / "brain.h5"
    write_fastmri(path, k, ref)
    scan = open_scan(path)
    assert scan.recon_shape == (32, 40) and scan.header == {"acquisition": "AXT1"} and scan.header_xml is None
    assert scan.encoded_mask is None and scan.acquired_mask is None and scan.fully_sampled
    # Neither header nor reference: the whole grid.
    path2 = tmp_path / "bare.h5"
    write_fastmri(path2, k)
    assert open_scan(path2).recon_shape == (H, W)


def test_zero_padded_edges_without_header_are_recognised(tmp_path):
    k = knee_kspace(n_slices=1)
    path = tmp_path / "noheader.h5"
    write_fastmri(path, k, rss_reference(k))
    scan = open_scan(path)
    assert scan.fully_sampled and scan.attrs["encoded_from"] == "zero columns"
    assert scan.encoded_mask[0].sum() == N_PE


def test_kspace_is_read_one_slice_at_a_time(knee_file, monkeypatch):
    path, k, _ = knee_file
    reads: list[tuple[str, int]] = []
    original = h5py.Dataset.__getitem__

    def spy(self, sel, **kw):
        out = original(self, sel, **kw)
        reads.append((self.name, np.asarray(out).nbytes))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    scan = open_scan(path)
    slice_bytes = k[0].nbytes
    opened = sum(n for name, n in reads if name == "/kspace")
    assert opened == slice_bytes  # only slice 0, for the NaN/Inf check
    reads.clear()
    scan.kspace(2)
    scan.reference(2)
    assert [(n, b) for n, b in reads if n == "/kspace"] == [("/kspace", slice_bytes)]
    assert [(n, b) for n, b in reads if n == "/reconstruction_rss"] == [("/reconstruction_rss", RECON[0] * RECON[1] * 4)]


def test_reference_option_and_unknown_options(knee_file):
    path, _, _ = knee_file
    with pytest.raises(ScanError, match="reconstruction_esc"):
        open_scan(path, reference="esc")
    with pytest.raises(ScanError, match="unknown option kspace_var.*fastmri"):
        open_scan(path, kspace_var="x")
    assert open_scan(path, reference="rss").reference_kind == "rss"
