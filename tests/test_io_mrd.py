"""ISMRMRD/MRD reader, on small files written here with the ismrmrd package and read back."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from workbench.errors import InvalidDataError
from workbench.io import open_scan
from workbench.io.mrd import parse_ismrmrd_header, trajectory_to_radians


def mrd_header(enc, recon, enc_fov, recon_fov, *, trajectory="cartesian", limits_e1=None, n_slices=1):
    lim = ""
    if limits_e1 is not None:
        lo, hi, c = limits_e1
        lim = (f"<kspace_encoding_step_1><minimum>{lo}</minimum><maximum>{hi}</maximum><center>{c}</center>"
               "</kspace_encoding_step_1>")
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <measurementInformation><patientPosition>HFS</patientPosition><protocolName>gre_synth</protocolName>
  </measurementInformation>
  <acquisitionSystemInformation><systemVendor>ACME</systemVendor><systemModel>Model T</systemModel>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63870000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{enc_fov[0]}</x><y>{enc_fov[1]}</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{recon_fov[0]}</x><y>{recon_fov[1]}</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits>{lim}<slice><minimum>0</minimum><maximum>{n_slices - 1}</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>{trajectory}</trajectory>
  </encoding>
  <sequenceParameters><TR>8.5</TR><TE>4.2</TE><flipAngle_deg>15</flipAngle_deg></sequenceParameters>
</ismrmrdHeader>"""


def _acq(data, *, traj=None, e1=0, slice_=0, flags=(), center=None, **kw):
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, np.complex64), traj, **kw)
    acq.idx.kspace_encode_step_1 = e1
    acq.idx.slice = slice_
    if center is not None:
        acq.center_sample = center
    for fl in flags:
        acq.set_flag(fl)
    return acq


def write_mrd(path, xml, acquisitions):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(xml.encode())
    for a in acquisitions:
        ds.append_acquisition(a)
    ds.close()


NX, NY, C, S = 64, 32, 3, 2  # 2x oversampled readout (64 -> 32), 32 phase encodes, 3 coils, 2 slices


@pytest.fixture
def cartesian_file(tmp_path):
    rng = np.random.default_rng(0)
    truth = (rng.standard_normal((S, C, NX, NY)) + 1j * rng.standard_normal((S, C, NX, NY))).astype(np.complex64)
    acqs = [_acq(rng.standard_normal((C, NX)) * 100, flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])]
    # A separate calibration line (not imaging) with garbage that must not land in the k-space.
    acqs.append(_acq(np.full((C, NX), 1e6), e1=3, flags=[ismrmrd.ACQ_IS_PARALLEL_CALIBRATION], center=NX // 2))
    # Interleaved slices, lines in a scrambled order; every other line of slice 1 is reversed in the file.
    order = rng.permutation(NY)
    for e1 in order:
        for s in range(S):
            line = truth[s, :, :, e1]
            rev = s == 1 and e1 % 2 == 0
            acqs.append(_acq(line[:, ::-1] if rev else line, e1=int(e1), slice_=s, center=NX // 2,
                             flags=[ismrmrd.ACQ_IS_REVERSE] if rev else []))
    xml = mrd_header((NX, NY), (NX // 2, NY), (512, 256), (256, 256), limits_e1=(0, NY - 1, NY // 2), n_slices=S)
    path = tmp_path / "cart.mrd.h5"
    write_mrd(path, xml, acqs)
    return path, truth


def test_cartesian_multislice_with_oversampling(cartesian_file):
    path, truth = cartesian_file
    scan = open_scan(path)
    assert scan.format == "ismrmrd" and scan.is_cartesian
    assert (scan.n_slices, scan.n_coils, scan.kspace_shape) == (S, C, (C, NX, NY))
    assert scan.grid_shape == (NX, NY)
    assert scan.recon_shape == (NX // 2, NY)  # readout oversampling removed (recon FOV / encoded FOV)
    for s in range(S):
        np.testing.assert_array_equal(scan.kspace(s).numpy(), truth[s])
    assert scan.fully_sampled and scan.acquired_mask is None
    assert scan.attrs["skipped_acquisitions"] == {"noise": 1, "calibration": 1}
    assert scan.header["TR_ms"] == 8.5 and scan.header["flip_angle_deg"] == 15
    assert scan.header["field_strength_T"] == pytest.approx(1.5, abs=0.01)  # from the 63.87 MHz resonance
    assert scan.header["protocol"] == "gre_synth" and scan.header["vendor"] == "ACME"
    assert scan.attrs["header_parser"] == "ElementTree"


def test_cartesian_undersampled_partial_fourier_and_averages(tmp_path):
    # Partial Fourier: lines 0..23 of 32 encoded, centre 16 (limits say so); R=2 outside a 8-line ACS; one line
    # measured twice (two averages) whose mean is expected.
    rng = np.random.default_rng(1)
    lines = {e1: (rng.standard_normal((C, NX)) + 1j * rng.standard_normal((C, NX))).astype(np.complex64)
             for e1 in range(24) if e1 % 2 == 0 or 12 <= e1 < 20}
    second = (rng.standard_normal((C, NX)) + 1j * rng.standard_normal((C, NX))).astype(np.complex64)
    acqs = [_acq(v, e1=e1, center=NX // 2) for e1, v in lines.items()]
    acqs.append(_acq(second, e1=14, center=NX // 2))
    acqs[-1].idx.average = 1
    xml = mrd_header((NX, NY), (NX, NY), (256, 256), (256, 256), limits_e1=(0, 23, 16))
    path = tmp_path / "pf.h5"
    write_mrd(path, xml, acqs)
    scan = open_scan(path)
    k = scan.kspace(0).numpy()
    expected = np.zeros((C, NX, NY), np.complex64)
    for e1, v in lines.items():
        expected[:, :, e1] = v
    expected[:, :, 14] = (lines[14] + second) / 2
    np.testing.assert_allclose(k, expected, rtol=1e-6)
    encoded_cols = np.arange(NY) < 24
    np.testing.assert_array_equal(scan.encoded_mask[0], encoded_cols)
    acquired_cols = np.isin(np.arange(NY), list(lines))
    np.testing.assert_array_equal(scan.acquired_mask[5], acquired_cols)
    assert scan.sampled_fraction == pytest.approx(len(lines) / 24)
    assert scan.recon_shape == (NX, NY)


def test_asymmetric_echo_is_placed_by_centre_sample(tmp_path):
    # 48 of 64 readout samples, echo centre at sample 16: rows 16..63 are filled.
    data = (np.arange(C * 48).reshape(C, 48) + 1j).astype(np.complex64)
    acqs = [_acq(data, e1=e1, center=16) for e1 in range(NY)]
    write_mrd(tmp_path / "ae.h5", mrd_header((NX, NY), (NX // 2, NY), (512, 256), (256, 256)), acqs)
    scan = open_scan(tmp_path / "ae.h5")
    k = scan.kspace(0).numpy()
    assert np.all(k[:, :16] == 0)
    np.testing.assert_array_equal(k[:, 16:, 7], data)
    # the 16 rows before the readout were never acquired: not fully sampled, no reference from zeros
    assert not scan.acquired_mask[:16].any() and scan.acquired_mask[16:].all()
    assert scan.sampled_fraction == 0.75 and not scan.fully_sampled
    assert "readouts shorter than the grid: 48 of 64" in scan.header["note"]
    band = open_scan(tmp_path / "ae.h5", symmetric_echo=True)  # rows 16..47 around the echo at row 32
    assert band.fully_sampled and band.grid_shape == (32, NY)
    np.testing.assert_array_equal(band.kspace(0).numpy(), k[:, 16:48])


N_SPOKES, N_READ, NR = 12, 64, 32  # radial: 64 samples per spoke (2x oversampled), recon 32x32


def radial_traj_fov_units():
    """[N_SPOKES*N_READ, 2] trajectory in ISMRMRD's 1/FOV units: k in [-32, 32) for the 64-grid."""
    r = np.arange(N_READ) - N_READ // 2
    ang = np.pi * np.arange(N_SPOKES) / N_SPOKES
    return [np.stack([r * np.cos(a), r * np.sin(a)], axis=1).astype(np.float32) for a in ang]


@pytest.fixture
def radial_file(tmp_path):
    rng = np.random.default_rng(2)
    spokes = radial_traj_fov_units()
    data = [(rng.standard_normal((C, N_READ)) + 1j * rng.standard_normal((C, N_READ))).astype(np.complex64)
            for _ in spokes]
    acqs = [_acq(d, traj=t, e1=i, center=N_READ // 2) for i, (d, t) in enumerate(zip(data, spokes))]
    acqs.insert(0, _acq(rng.standard_normal((C, N_READ)), flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT]))
    xml = mrd_header((N_READ, N_READ), (NR, NR), (400, 400), (200, 200), trajectory="radial")
    path = tmp_path / "radial.h5"
    write_mrd(path, xml, acqs)
    return path, np.concatenate(data, axis=1), np.concatenate(spokes, axis=0)


def test_radial_trajectory_in_radians(radial_file):
    path, data, traj_fov = radial_file
    scan = open_scan(path)
    assert not scan.is_cartesian and scan.kspace_shape == (C, N_SPOKES * N_READ)
    assert scan.grid_shape == (N_READ, N_READ) and scan.recon_shape == (NR, NR)
    np.testing.assert_array_equal(scan.kspace(0).numpy(), data)
    # Independent conversion: k (cycles per FOV) -> 2*pi*k/N radians, within [-pi, pi).
    expected = 2 * np.pi * traj_fov.T.astype(np.float64) / N_READ
    t = scan.trajectory
    assert t.shape == (2, N_SPOKES * N_READ) and t.dtype == np.float32
    assert t.min() >= -np.pi and t.max() < np.pi
    np.testing.assert_allclose(t, expected, atol=1e-6)
    assert scan.attrs["trajectory_units"] == "fov" and scan.attrs["trajectory_kind"] == "radial"
    assert np.isnan(scan.sampled_fraction) and scan.summary()["samples_per_coil"] == N_SPOKES * N_READ


def test_radial_normalised_trajectory_is_detected(tmp_path):
    spokes = radial_traj_fov_units()
    acqs = [_acq(np.ones((1, N_READ)), traj=t / N_READ, e1=i) for i, t in enumerate(spokes)]
    write_mrd(tmp_path / "r.h5", mrd_header((N_READ, N_READ), (NR, NR), (400, 400), (200, 200),
                                            trajectory="radial"), acqs)
    scan = open_scan(tmp_path / "r.h5")
    assert scan.attrs["trajectory_units"] == "cycles"
    np.testing.assert_allclose(scan.trajectory, 2 * np.pi * np.concatenate(spokes).T / N_READ, atol=1e-6)


def test_trajectory_conversion_wraps_and_rejects_out_of_grid():
    t = np.array([[-32.0, 0.0, 32.0], [0.0, 16.0, -32.0]])
    rad, units = trajectory_to_radians(t, (64, 64), "fov")
    assert units == "fov"
    np.testing.assert_allclose(rad, [[-np.pi, 0, -np.pi], [0, np.pi / 2, -np.pi]], atol=1e-6)
    with pytest.raises(InvalidDataError, match="beyond the grid"):
        trajectory_to_radians(t * 3, (64, 64), "fov", path="x.h5")


def test_header_parser_elementtree_agrees_with_xsd():
    xml = mrd_header((NX, NY), (NX // 2, NY), (512, 256), (256, 256), limits_e1=(0, NY - 1, NY // 2))
    # The readers' ElementTree view gives what the package's schema parser gives (an independent reading).
    h1, g1, p1 = parse_ismrmrd_header(xml, parser="ismrmrd.xsd")
    h2, g2, p2 = parse_ismrmrd_header(xml)
    h3, g3, p3 = parse_ismrmrd_header(xml.replace("</ismrmrdHeader>", "<vendorThing/></ismrmrdHeader>"),
                                      parser="ismrmrd.xsd")
    assert (p1, p2, p3) == ("ismrmrd.xsd", "ElementTree", "ElementTree")
    assert h1 == h2 == h3 and g1 == g2 == g3
    assert g1["encoded_matrix"] == (NX, NY, 1) and g1["limits"]["kspace_encoding_step_1"] == (0, NY - 1, NY // 2)


def test_mrd_nan_slice_reported(tmp_path):
    good = np.ones((C, NX), np.complex64)
    bad = good.copy()
    bad[0, 3] = np.nan
    acqs = [_acq(good, e1=e1, slice_=0, center=NX // 2) for e1 in range(NY)]
    acqs += [_acq(bad if e1 == 5 else good, e1=e1, slice_=1, center=NX // 2) for e1 in range(NY)]
    write_mrd(tmp_path / "nan.h5", mrd_header((NX, NY), (NX, NY), (256, 256), (256, 256), n_slices=2), acqs)
    scan = open_scan(tmp_path / "nan.h5")
    scan.kspace(0)
    with pytest.raises(InvalidDataError, match="nan.h5.*slice 1.*NaN"):
        scan.kspace(1)


def test_repetitions_become_slices_and_reads_are_per_slice(tmp_path, monkeypatch):
    import h5py

    rng = np.random.default_rng(3)
    lines = {(rep, e1): (rng.standard_normal((C, NX)) + 0j).astype(np.complex64) for rep in range(2)
             for e1 in range(NY)}
    acqs = []
    for (rep, e1), v in lines.items():
        a = _acq(v, e1=e1, center=NX // 2)
        a.idx.repetition = rep
        acqs.append(a)
    write_mrd(tmp_path / "reps.h5", mrd_header((NX, NY), (NX, NY), (256, 256), (256, 256)), acqs)
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, sel, **kw):
        out = original(self, sel, **kw)
        if self.name == "/dataset/data" and not kw:  # header-only reads go through FieldsView (new_dtype=...)
            reads.append(np.asarray(out).shape[0])
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    scan = open_scan(tmp_path / "reps.h5")
    assert scan.n_slices == 2 and [d["repetition"] for d in scan.attrs["slice_labels"]] == [0, 1]
    reads.clear()
    k = scan.kspace(1).numpy()
    assert reads == [NY]  # only the 32 acquisitions of repetition 1
    np.testing.assert_array_equal(k[:, :, 7], lines[(1, 7)])


def test_mrd_without_acquisitions(tmp_path):
    ds = ismrmrd.Dataset(str(tmp_path / "hdr.h5"), "dataset", create_if_needed=True)
    ds.write_xml_header(mrd_header((NX, NY), (NX, NY), (1, 1), (1, 1)).encode())
    ds.close()
    with pytest.raises(InvalidDataError, match="hdr.h5: ISMRMRD dataset 'dataset' holds no acquisitions"):
        open_scan(tmp_path / "hdr.h5")


def test_3d_trajectory_and_nan_trajectory_are_refused(tmp_path):
    spokes = radial_traj_fov_units()
    xml = mrd_header((N_READ, N_READ), (NR, NR), (400, 400), (200, 200), trajectory="radial")
    t3 = [np.concatenate([t, np.full((N_READ, 1), 2.0, np.float32)], axis=1) for t in spokes]
    write_mrd(tmp_path / "t3.h5", xml, [_acq(np.ones((1, N_READ)), traj=t, e1=i) for i, t in enumerate(t3)])
    with pytest.raises(InvalidDataError, match="t3.h5: 3D trajectories"):
        open_scan(tmp_path / "t3.h5")
    bad = [t.copy() for t in spokes]
    bad[3][5, 0] = np.nan
    write_mrd(tmp_path / "tn.h5", xml, [_acq(np.ones((1, N_READ)), traj=t, e1=i) for i, t in enumerate(bad)])
    with pytest.raises(InvalidDataError, match="tn.h5: trajectory has 1 NaN/Inf"):
        open_scan(tmp_path / "tn.h5")
