"""Writers beside the readers: magnitude images as NIfTI (nibabel) and DICOM (pydicom), results as HDF5
(``Result.save``). The app's Export menu calls them; they need no Qt, so scripts and tests use them headless.

Images are ``[H, W]`` (rows, columns) as the readers and the app show them, or a stack ``[S, H, W]`` for NIfTI.

Every file is written atomically (:mod:`workbench.atomic`: a temporary file beside it, fsync, rename), so a
write that fails part-way leaves the previous file intact, and never over one of ``inputs`` (the scan).
"""

from __future__ import annotations

import datetime
import os
import re
from typing import Any, Iterable

import numpy as np

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError

__all__ = ["safe_name", "pixel_spacing_mm", "write_nifti", "write_dicom", "export_images", "export_results_hdf5"]


def safe_name(label: str) -> str:
    """A file-name-safe version of a result label ("cg-sense #2" -> "cg-sense_2")."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_") or "image"


def pixel_spacing_mm(scan: Any) -> tuple[float, float]:
    """(row, column) pixel size in mm of ``recon_shape`` images, from the header's reconstruction field of view
    when known (``recon_fov_mm`` as ``[y, x, z]`` or ``"240x240x5"``), else 1 mm wide and ``Scan.pixel_aspect`` mm
    high."""
    hdr = getattr(scan, "header", {}) or {}
    for key in ("recon_fov_mm", "fov_mm", "field_of_view_mm"):
        fov = hdr.get(key)
        if fov is None:
            continue
        try:
            parts = [float(v) for v in (fov.lower().split("x") if isinstance(fov, str) else fov)]
            h, w = scan.recon_shape
            return parts[0] / h, parts[1] / w
        except (TypeError, ValueError, IndexError, AttributeError):
            continue
    return float(getattr(scan, "pixel_aspect", 1.0) or 1.0), 1.0


def write_nifti(path: str | os.PathLike, image: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0),
                description: str = "", *, inputs: Iterable[Any] = ()) -> None:
    """Write a 2D magnitude image ``[H, W]`` (or a stack ``[S, H, W]``) as NIfTI-1 float32. Voxel axes: i =
    columns (left to right), j = rows (bottom to top, so the image looks the same in NIfTI viewers), k = slice."""
    import nibabel as nib

    a = np.abs(np.asarray(image)).astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise WorkbenchError(f"{os.fspath(path)}: cannot write an image of shape {a.shape} as NIfTI")
    vol = np.ascontiguousarray(np.transpose(a[:, ::-1, :], (2, 1, 0)))  # [W, H, S]
    dy, dx = spacing_mm
    affine = np.diag([dx, dy, 1.0, 1.0])
    img = nib.Nifti1Image(vol, affine)
    img.header["descrip"] = description.encode()[:79]
    img.header.set_xyzt_units("mm")
    with atomic_path(path, inputs=inputs) as tmp:
        nib.save(img, tmp)


def write_dicom(path: str | os.PathLike, image: np.ndarray, *, label: str = "", spacing_mm: tuple[float, float] = (1.0, 1.0),
                series_uid: str | None = None, study_uid: str | None = None, instance: int = 1,
                patient_id: str = "anonymous", inputs: Iterable[Any] = ()) -> None:
    """Write a 2D magnitude image ``[H, W]`` as a DICOM MR Image (16-bit unsigned, with RescaleSlope restoring
    the values). The series description holds ``label`` (method and parameters)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    a = np.abs(np.asarray(image)).astype(np.float64)
    if a.ndim != 2:
        raise WorkbenchError(f"{os.fspath(path)}: DICOM export takes a 2D image, got shape {a.shape}")
    peak = float(a.max()) if a.size else 0.0
    slope = peak / 65535.0 if peak > 0 else 1.0
    pixels = np.round(a / slope).clip(0, 65535).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "MR"
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesDescription = label[:64]
    ds.ImageComments = label[:10240]
    ds.Manufacturer = "mri-workbench"
    ds.DerivationDescription = "reconstructed with mri-workbench"[:1024]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(instance)
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [f"{spacing_mm[0]:.6g}", f"{spacing_mm[1]:.6g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = f"{slope:.10g}"
    ds.WindowCenter = f"{peak / 2:.6g}"
    ds.WindowWidth = f"{peak:.6g}"
    ds.PixelData = pixels.tobytes()
    with atomic_path(path, inputs=inputs) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def export_images(folder: str | os.PathLike, images: Iterable[tuple[str, np.ndarray]], fmt: str, scan: Any = None
                  ) -> list[str]:
    """Write the magnitude of each (label, image ``[H, W]``) as ``<label>.nii.gz`` (fmt "nifti") or
    ``<label>.dcm`` ("dicom") into ``folder`` (DICOM files share one study and series); ``scan`` (a
    :class:`workbench.scan.Scan`) gives the pixel spacing and patient id. Returns the paths written."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    spacing = pixel_spacing_mm(scan) if scan is not None else (1.0, 1.0)
    inputs = (getattr(scan, "path", None),)
    paths = []
    study = series = None
    if fmt == "dicom":
        from pydicom.uid import generate_uid

        study, series = generate_uid(), generate_uid()
    for i, (label, image) in enumerate(images, start=1):
        if fmt == "nifti":
            p = os.path.join(folder, safe_name(label) + ".nii.gz")
            write_nifti(p, image, spacing, description=label, inputs=inputs)
        elif fmt == "dicom":
            p = os.path.join(folder, safe_name(label) + ".dcm")
            write_dicom(p, image, label=label, spacing_mm=spacing, series_uid=series, study_uid=study, instance=i,
                        patient_id=str((getattr(scan, "attrs", {}) or {}).get("patient_id", "anonymous")),
                        inputs=inputs)
        else:
            raise ValueError(f"unknown image format {fmt!r} (nifti or dicom)")
        paths.append(p)
    return paths


def export_results_hdf5(folder: str | os.PathLike, entries: Iterable[Any], scan: Any = None) -> list[str]:
    """Save every finished result as ``<id>_<label>.h5`` (``workbench.result.Result`` layout: image, std, mask
    or trajectory, parameters, history, provenance) into ``folder``. ``entries`` are the session's result
    entries (``id``, ``label``, ``state``, ``image`` ``[H, W]`` complex, ``std``, ``result``, ...); one reopened
    from a session file has no ``Result`` and gets one rebuilt from what it kept. Returns the paths written."""
    import math

    import torch

    from workbench.result import Result

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for e in entries:
        if e.state != "done" or e.image is None:
            continue
        result = e.result
        if result is None:  # reopened from a session file: rebuild the Result from what was kept
            result = Result(image=torch.from_numpy(np.asarray(e.image, np.complex64)), method=e.method,
                            version=e.version, params=dict(e.params),
                            std=None if e.std is None else torch.from_numpy(np.asarray(e.std, np.float32)),
                            history=list(e.history), device=e.device,
                            time_s=float(e.elapsed) if e.elapsed is not None else math.nan)
        if not result.provenance:
            result.provenance = {"scan": getattr(scan, "path", None), "slice": e.slice_index, "sampling": e.sampling}
        p = os.path.join(folder, f"{e.id:03d}_{safe_name(e.label)}.h5")
        result.save(p, inputs=(getattr(scan, "path", None),))
        paths.append(p)
    return paths
