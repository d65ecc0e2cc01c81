"""Build ``icbm152_2009a_axial.npz``, the compact anatomy the simulator (``workbench.simulate``) draws from.

Source: the MNI ICBM152 2009a nonlinear symmetric T1, grey-matter and white-matter maps that nilearn ships inside
its wheel (see NOTICE.md for origin and licence). Run it by hand after changing the slab or the quantisation;
the runtime needs neither nilearn nor nibabel:

    .venv/bin/pip install nilearn nibabel        # build-time only
    .venv/bin/python resources/anatomy/make_anatomy.py [--nilearn-data DIR] [--out FILE]

What it writes (all maps ``uint8``, value/255 = probability or normalised intensity, shape ``[Z, rows, cols]``):
- ``t1``: skull-stripped T1-weighted average (0 outside the brain).
- ``gm``, ``wm``: grey / white matter probabilities.
- ``csf``: derived, ``clip(brain - gm - wm, 0, 1)`` with ``brain = t1 > 0`` (ventricles, sulci; the template
  holds no CSF map).
- ``z_mm``: float32 ``[Z]`` MNI z coordinate of each slice (mm); ``spacing_mm``: ``[dz, drow, dcol]``.
- ``center_mm``: float32 ``[2]`` position (row, col) in mm, from the array's first pixel, of the brain's
  bounding-box centre over the slab (the simulator centres this in its field of view).
- ``source``: a one-line description (file names, nilearn version).
Axial slices are stored upright in radiological display: row 0 = anterior, col 0 = patient's right.
The in-plane grid keeps the template's native 1 mm; slices are every 2 mm from z = -20 to +66 mm (MNI),
from below the lateral ventricles to the upper convexity. The array is cropped to the brain's bounding box
over the slab plus a margin.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "icbm152_2009a_axial.npz"
FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
Z_MM = np.arange(-20.0, 66.0 + 1e-6, 2.0)  # slice positions, MNI mm
MARGIN = 4  # voxels (= mm) kept around the brain's bounding box


def _nilearn_data_dir() -> tuple[Path, str]:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data", nilearn.__version__


def build(data_dir: Path, nilearn_version: str, out: Path) -> Path:
    import nibabel as nib

    vols = {}
    affine = None
    for key, name in FILES.items():
        img = nib.load(str(data_dir / name))
        # RAS voxel axes are assumed below (x = right, y = anterior, z = superior); refuse anything else.
        if nib.aff2axcodes(img.affine) != ("R", "A", "S"):
            raise SystemExit(f"{name}: expected RAS voxel axes, got {nib.aff2axcodes(img.affine)}")
        if affine is not None and not np.allclose(img.affine, affine):
            raise SystemExit(f"{name}: affine differs from the T1's")
        affine = img.affine
        vols[key] = np.asanyarray(img.dataobj).astype(np.float32) / 255.0
    zooms = np.abs(np.diag(affine)[:3])
    if not np.allclose(zooms, 1.0):
        raise SystemExit(f"expected 1 mm voxels, got {zooms}")

    # MNI z (mm) -> voxel index k: z = affine[2,2]*k + affine[2,3]
    ks = np.rint((Z_MM - affine[2, 3]) / affine[2, 2]).astype(int)
    slab = {k: v[:, :, ks] for k, v in vols.items()}  # [x, y, Z]
    brain = slab["t1"] > 0
    slab["csf"] = np.clip(brain.astype(np.float32) - slab["gm"] - slab["wm"], 0.0, 1.0) * brain

    # [x, y, Z] -> [Z, rows, cols] upright (row 0 = anterior: y reversed) and radiological (col 0 = right:
    # x reversed, since RAS x grows to the patient's right).
    def axial(v: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(v, (2, 1, 0))[:, ::-1, ::-1])

    maps = {k: axial(v) for k, v in slab.items()}
    any_brain = axial(brain).any(0)
    rows = np.where(any_brain.any(1))[0]
    cols = np.where(any_brain.any(0))[0]
    r0, r1 = max(rows[0] - MARGIN, 0), min(rows[-1] + MARGIN + 1, any_brain.shape[0])
    c0, c1 = max(cols[0] - MARGIN, 0), min(cols[-1] + MARGIN + 1, any_brain.shape[1])
    maps = {k: v[:, r0:r1, c0:c1] for k, v in maps.items()}
    center = np.array([(rows[0] + rows[-1]) / 2 - r0, (cols[0] + cols[-1]) / 2 - c0], dtype=np.float32)

    q = {k: np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8) for k, v in maps.items()}
    source = (
        f"MNI ICBM152 2009a nonlinear symmetric ({', '.join(FILES.values())}) from nilearn {nilearn_version}; "
        f"axial slices z={Z_MM[0]:g}..{Z_MM[-1]:g} mm step 2 mm, 1 mm in-plane, uint8"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        t1=q["t1"], gm=q["gm"], wm=q["wm"], csf=q["csf"],
        z_mm=Z_MM.astype(np.float32),
        spacing_mm=np.array([2.0, 1.0, 1.0], dtype=np.float32),
        center_mm=center,
        source=np.array(source),
    )
    os.replace(tmp, out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nilearn-data", type=Path, default=None, help="folder holding the nilearn .nii.gz files")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    data_dir, version = _nilearn_data_dir() if a.nilearn_data is None else (a.nilearn_data, "unknown")
    path = build(data_dir, version, a.out)
    with np.load(path) as z:
        shape = z["t1"].shape
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, maps {shape})")


if __name__ == "__main__":
    main()
