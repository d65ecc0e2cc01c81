"""The image and result writers (workbench.io.writers), headless: NIfTI orientation and spacing, DICOM values
and shared series, HDF5 results rebuilt from a reopened session's entries."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.io.writers import (export_images, export_results_hdf5, pixel_spacing_mm, safe_name, write_dicom,
                                  write_nifti)


def ramp(h=12, w=10):
    return (np.arange(h * w, dtype=np.float32).reshape(h, w) + 1.0) * np.exp(0.3j).astype(np.complex64)


def test_safe_name_and_pixel_spacing():
    assert safe_name("cg-sense #2") == "cg-sense_2"
    assert safe_name("///") == "image"
    scan = SimpleNamespace(header={"recon_fov_mm": "240x180x5"}, recon_shape=(120, 60))
    assert pixel_spacing_mm(scan) == pytest.approx((2.0, 3.0))
    scan = SimpleNamespace(header={"fov_mm": [100, 50, 3]}, recon_shape=(50, 50))
    assert pixel_spacing_mm(scan) == pytest.approx((2.0, 1.0))
    assert pixel_spacing_mm(SimpleNamespace(header={"recon_fov_mm": "bad"}, recon_shape=(4, 4))) == (1.0, 1.0)
    # no field of view: 1 mm wide, and as high as the scan's pixels are (an asymmetric echo's band)
    assert pixel_spacing_mm(SimpleNamespace(header={}, recon_shape=(4, 4), pixel_aspect=1.5)) == (1.5, 1.0)


def test_nifti_keeps_the_image_upright_with_its_spacing(tmp_path):
    import nibabel as nib

    image = ramp()
    path = tmp_path / "a.nii.gz"
    write_nifti(path, image, (2.0, 0.5), description="cg-sense")
    nii = nib.load(path)
    data = np.asarray(nii.dataobj)
    assert data.shape == (10, 12, 1) and data.dtype == np.float32
    # voxel axes: i = column, j = row from the bottom, k = slice
    np.testing.assert_allclose(data[:, ::-1, 0].T, np.abs(image), rtol=1e-6)
    np.testing.assert_allclose(np.diag(nii.affine)[:3], [0.5, 2.0, 1.0])
    assert nii.header["descrip"].tobytes().rstrip(b"\0") == b"cg-sense"
    with pytest.raises(WorkbenchError, match="shape"):
        write_nifti(tmp_path / "b.nii.gz", np.zeros((2, 2, 2, 2)))


def test_dicom_restores_the_values_through_the_rescale_slope(tmp_path):
    import pydicom

    image = ramp()
    path = tmp_path / "a.dcm"
    write_dicom(path, image, label="tv lam=0.01", spacing_mm=(1.5, 1.25), instance=3)
    ds = pydicom.dcmread(path)
    slope = float(ds.RescaleSlope)
    np.testing.assert_allclose(ds.pixel_array * slope, np.abs(image), atol=slope)
    assert ds.Modality == "MR" and ds.SeriesDescription == "tv lam=0.01" and int(ds.InstanceNumber) == 3
    assert [float(v) for v in ds.PixelSpacing] == [1.5, 1.25]
    with pytest.raises(WorkbenchError, match="2D"):
        write_dicom(tmp_path / "b.dcm", np.zeros((2, 3, 3)))


def test_export_images_names_the_files_by_label_and_shares_one_dicom_series(tmp_path):
    import pydicom

    images = [("slice1_reference", np.abs(ramp())), ("slice1_cg-sense #1", ramp())]
    nii = export_images(tmp_path / "nii", images, "nifti")
    assert [os.path.basename(p) for p in nii] == ["slice1_reference.nii.gz", "slice1_cg-sense_1.nii.gz"]
    scan = SimpleNamespace(header={}, recon_shape=(12, 10), attrs={"patient_id": "p7"})
    dcm = export_images(tmp_path / "dcm", images, "dicom", scan)
    sets = [pydicom.dcmread(p) for p in dcm]
    assert len({ds.SeriesInstanceUID for ds in sets}) == 1 and len({ds.StudyInstanceUID for ds in sets}) == 1
    assert [int(ds.InstanceNumber) for ds in sets] == [1, 2] and sets[0].PatientID == "p7"
    with pytest.raises(ValueError, match="unknown image format"):
        export_images(tmp_path / "x", images, "png")


def test_export_results_rebuilds_a_result_for_an_entry_reopened_from_a_session_file(tmp_path):
    from workbench.result import Result

    image, std = ramp(), np.full((12, 10), 0.5, np.float32)
    reopened = SimpleNamespace(id=4, label="tv #4", state="done", image=image, std=std, result=None, method="tv",
                               version="1", params={"lam": 0.01}, history=[{"iter": 1}], device="cpu",
                               elapsed=1.5, slice_index=2, sampling={"kind": "equispaced"})
    failed = SimpleNamespace(id=5, label="broken", state="failed", image=None)
    scan = SimpleNamespace(path="/data/scan.h5")
    paths = export_results_hdf5(tmp_path, [reopened, failed], scan)
    assert [os.path.basename(p) for p in paths] == ["004_tv_4.h5"]
    r = Result.load(paths[0])
    np.testing.assert_array_equal(r.image.numpy(), image)
    np.testing.assert_array_equal(r.std.numpy(), std)
    assert r.method == "tv" and r.params == {"lam": 0.01} and r.time_s == 1.5
    assert r.provenance == {"scan": "/data/scan.h5", "slice": 2, "sampling": {"kind": "equispaced"}}
