"""Build ``dipy_real_slices.npz``: real MR magnitude slices for the simulator's ``subject="real"``.

Source: sample scans that dipy ships inside its wheel (``dipy/data/files``; BSD-3-Clause, see NOTICE.md). Run it
by hand after changing the selection; the runtime needs neither dipy nor nibabel:

    .venv/bin/pip download --no-deps dipy==1.12.1     # the wheel (build time only); unzip it somewhere
    .venv/bin/pip install nibabel                     # build time only
    .venv/bin/python resources/anatomy/make_real_slices.py --dipy-data DIR/dipy/data/files [--preview PNG]

What it writes (``[N, S, S]`` slices, zero-padded, each slice's support centred on pixel ``(S // 2, S // 2)``):
- ``mag``: float16 magnitude, 1 at the 99.5th percentile of the slice's support, 0 outside the support (the
  hole-filled head; the scan's background noise is removed so that only the simulator's noise remains).
- ``pixel_mm``: float32 ``[N]`` pixel size in mm (the scan's own, see ``SOURCES``).
- ``source``: int8 ``[N]`` index into ``sources`` (the simulator draws a source first, then one of its slices).
- ``sources``: the source file names; ``description``: a one-line summary.
Axial slices are stored upright in radiological view (row 0 = anterior, col 0 = patient's right); the coronal T1
has superior at row 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
OUT = HERE / "dipy_real_slices.npz"
DIPY_VERSION = "1.12.1"
# file -> (slices kept, pixel mm, what it is). Slice indices are along the file's third axis (4D: volume 0).
SOURCES = {
    # b0 (non-diffusion-weighted) spin-echo EPI, 128 x 128 x 10 at 2 x 2 mm: dipy's brain-masking test data.
    "S0_10slices.nii.gz": (tuple(range(10)), 2.0, "b0 EPI, 2 mm"),
    # one slice of a diffusion scan (8-channel coil, 14 volumes): volumes 0 and 1 are its b0 images; 2..13 are
    # diffusion weighted (far noisier: a poor ground truth). The header has no pixel size (1 mm): 2.5 mm
    # gives the head a plausible 200 mm length (see NOTICE.md).
    "test_piesno.nii.gz": ((0, 1), 2.5, "b0 EPI slice, pixel size assumed 2.5 mm"),
    # b0 EPI, 58 x 58 x 24 at 4 x 4 x 5 mm (dipy's reslicing example); slices 7..20 hold the cerebrum.
    "aniso_vox.nii.gz": (tuple(range(7, 21)), 4.0, "b0 EPI, 4 mm"),
    # a coronal T1-weighted slice of one subject, skull-stripped, 256 x 256, no pixel size given (1 mm assumed:
    # the brain is then 141 mm wide, as an adult brain is).
    "t1_coronal_slice.npy": ((0,), 1.0, "coronal T1 (skull-stripped), pixel size assumed 1 mm"),
}
# quarter turns (np.rot90's k) that bring a file upright, where its header's orientation is wrong: test_piesno's
# identity affine leaves the head lying on its side (anterior to the left; left/right cannot be told).
ROT90 = {"test_piesno.nii.gz": -1}
MARGIN = 3  # pixels of background kept around the support


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path) -> np.ndarray:
    """The file's slices ``[Z, rows, cols]`` float32, axial ones upright and radiological."""
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32)[None]  # already upright (superior at row 0)
    import nibabel as nib

    img = nib.load(str(path))
    vol = np.asanyarray(img.dataobj).astype(np.float32)
    if vol.ndim == 4:
        vol = vol[..., 0]
    codes = nib.aff2axcodes(img.affine)
    if not (codes[0] in "RL" and codes[1] in "AP" and codes[2] in "SI"):
        raise SystemExit(f"{path.name}: expected x = left/right, y = anterior/posterior voxel axes, got {codes}")
    # voxel axes -> R, A, S (flip those that run the other way), then [Z, rows, cols] with row 0 = anterior
    # and col 0 = patient's right, as make_anatomy.py stores the template.
    for ax, code in enumerate(codes):
        if code in "LPI":
            vol = np.flip(vol, ax)
    return np.ascontiguousarray(np.transpose(vol, (2, 1, 0))[:, ::-1, ::-1])


def support_mask(img: np.ndarray) -> np.ndarray:
    """The head: above 8 % of the 99.5th percentile of the non-zero pixels after a light smoothing, the largest
    connected part, holes filled, closed over 2 pixels."""
    s = ndimage.gaussian_filter(img, 1.0)
    ref = np.percentile(img[img > 0], 99.5)
    m = s > 0.08 * ref
    lab, n = ndimage.label(m)
    if n == 0:
        raise SystemExit("empty slice")
    m = lab == (np.argmax(ndimage.sum(m, lab, range(1, n + 1))) + 1)
    m = ndimage.binary_closing(m, iterations=2, border_value=0)
    return ndimage.binary_fill_holes(m)


def build(data_dir: Path, out: Path) -> tuple[Path, dict[str, str]]:
    slices, pixel, src, digests = [], [], [], {}
    for i, (name, (keep, pixel_mm, _)) in enumerate(SOURCES.items()):
        path = data_dir / name
        digests[name] = sha256(path)
        vol = _load(path)
        for k in keep:
            img = np.rot90(np.clip(vol[k], 0, None), ROT90.get(name, 0))
            m = support_mask(img)
            ref = float(np.percentile(img[m], 99.5))
            img = np.where(m, img / ref, 0.0).astype(np.float32)
            rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
            slices.append(img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
            pixel.append(pixel_mm)
            src.append(i)
    size = max(max(s.shape) for s in slices) + 2 * MARGIN
    size += size % 2
    mag = np.zeros((len(slices), size, size), np.float16)
    for j, s in enumerate(slices):
        r0, c0 = size // 2 - s.shape[0] // 2, size // 2 - s.shape[1] // 2
        mag[j, r0:r0 + s.shape[0], c0:c0 + s.shape[1]] = s
    description = (f"real MR magnitude slices from dipy {DIPY_VERSION} (dipy/data/files: {', '.join(SOURCES)}), "
                   f"support-masked, normalised, float16")
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, mag=mag, pixel_mm=np.asarray(pixel, np.float32), source=np.asarray(src, np.int8),
                        sources=np.asarray(list(SOURCES)), description=np.asarray(description))
    os.replace(tmp, out)
    return out, digests


def preview(npz: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(npz) as z:
        mag, pixel, src, names = z["mag"].astype(np.float32), z["pixel_mm"], z["source"], z["sources"]
    cols = 7
    rows = -(-len(mag) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows))
    for j, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if j < len(mag):
            ax.imshow(mag[j], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{j}: {names[src[j]].split('.')[0][:12]} {pixel[j]:g}mm", fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dipy-data", type=Path, required=True, help="dipy/data/files of the unpacked dipy wheel")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--preview", type=Path, default=None, help="also write a PNG of every slice")
    a = p.parse_args()
    path, digests = build(a.dipy_data, a.out)
    for name, digest in digests.items():
        print(f"sha256 {digest}  {name}")
    with np.load(path) as z:
        shape = z["mag"].shape
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, slices {shape}); sha256 {sha256(path)}")
    if a.preview:
        preview(path, a.preview)


if __name__ == "__main__":
    main()
