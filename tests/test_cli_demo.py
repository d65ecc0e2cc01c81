"""`workbench demo`: the cached demo file and the headless zero-filled table."""

import json
import re

import numpy as np
import pytest
from numpy_reference import np_ifft2c
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from workbench.cli import main

ROW = re.compile(r"^(random|equispaced)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def _rows(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line.strip())
        if m:
            rows[(m[1], int(m[2]))] = {"psnr": float(m[5]), "ssim": float(m[6]), "nmse": float(m[7])}
    return rows


def test_headless_table_is_sane(capsys):
    import os

    assert main(["demo", "--headless"]) == 0
    out = capsys.readouterr().out
    path = out.splitlines()[0]
    assert path.startswith(os.environ["WORKBENCH_CACHE"]) and path.endswith(".h5") and os.path.isfile(path)
    rows = _rows(out)
    assert set(rows) == {(f, r) for f in ("random", "equispaced") for r in (4, 8)}
    for family in ("random", "equispaced"):
        r4, r8 = rows[(family, 4)], rows[(family, 8)]
        for r in (r4, r8):
            assert np.isfinite(r["psnr"]) and 20.0 < r["psnr"] < 40.0
            assert 0.0 < r["ssim"] < 1.0 and 0.0 < r["nmse"] < 1.0
        assert r4["psnr"] > r8["psnr"] and r4["ssim"] > r8["ssim"] and r4["nmse"] < r8["nmse"]
    # the second run reuses the cached file
    assert main(["demo", "--headless", "--accelerations", "4"]) == 0
    out2 = capsys.readouterr().out
    assert out2.splitlines()[0] == path
    assert set(_rows(out2)) == {("random", 4), ("equispaced", 4)}


def test_json_row_matches_independent_zero_filled(capsys):
    import h5py

    from workbench.sampling.masks import RandomLineMask

    assert main(["demo", "--headless", "--accelerations", "4", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    row = next(r for r in table["rows"] if r["mask"] == "random")
    assert row["center_fraction"] == pytest.approx(0.08)
    with h5py.File(table["file"], "r") as f:
        i = table["slice"]
        k = f["kspace"][i].astype(np.complex128)
        ref = f["reconstruction_rss"][i]
        vmax = f["reconstruction_rss"][()].max()
    mask = RandomLineMask([0.08], [4])(shape=k.shape[-2:], seed=0).numpy()
    coil = np_ifft2c(k * mask)
    zf = np.sqrt((np.abs(coil) ** 2).sum(0))
    h, w = zf.shape
    zf = zf[h // 2 - 128 : h // 2 + 128, w // 2 - 128 : w // 2 + 128].astype(np.float32)
    assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, zf, data_range=vmax), abs=1e-3)
    assert row["ssim"] == pytest.approx(structural_similarity(ref, zf, data_range=vmax, win_size=7), abs=1e-3)
    assert row["nmse"] == pytest.approx(np.sum((ref - zf) ** 2) / np.sum(ref**2), rel=1e-3)


def test_without_headless_opens_the_app(monkeypatch, capsys):
    import workbench.cli

    calls = []
    monkeypatch.setattr(workbench.cli, "_open_app", lambda argv: calls.append(argv) or 0)
    assert main(["demo"]) == 0
    assert calls == [["--demo"]]
    assert capsys.readouterr().out.strip().endswith(".h5")


def test_bad_acceleration_is_a_user_error(capsys):
    assert main(["demo", "--headless", "--accelerations", "0"]) == 1
    assert "acceleration" in capsys.readouterr().err
