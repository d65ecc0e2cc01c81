"""Weights: safetensors + JSON sidecar, loaded without unpickling; damaged or mismatched files give typed errors."""

import json
import pickle

import pytest
import torch
from safetensors import safe_open

from workbench.nn import build_model
from workbench.nn.weights import (
    WeightsError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_weights,
    weights_problem,
)

ARCH = {"n_iter": 2, "n_primal": 2, "image_net": {"n_filters": 4, "n_scales": 1, "n_convs_per_scale": 1,
                                                  "n_first_convs": 1},
        "sens_net": {"chans": 2, "num_pool_layers": 1}}
RECORD = {"training": {"data": {"kind": "synthetic"}, "sampling": {"kinds": ["random"]}, "steps": 7},
          "command": "workbench train xpdnet --config x.json", "validation": {"all": {"psnr": 30.0}},
          "wall_time_s": 12.0, "device": "cpu"}


def _forbid_pickle(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("weights must load without pickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_weights_roundtrip_without_pickle(tmp_path, monkeypatch):
    torch.manual_seed(1)
    model = build_model("xpdnet", ARCH)
    for p in model.parameters():
        p.data.normal_()
    path, side = save_weights(tmp_path / "xpdnet.safetensors", model, RECORD)
    # a plain safetensors file: tensors named as the state dict
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    meta = json.loads(side.read_text())
    for key in ("architecture", "training", "command", "validation", "wall_time_s", "device", "sha256"):
        assert key in meta
    assert meta["model"] == "xpdnet" and meta["architecture"]["n_iter"] == 2 and meta["training"]["steps"] == 7
    _forbid_pickle(monkeypatch)
    loaded, sidecar = load_model(path)
    assert not loaded.training and sidecar["command"] == RECORD["command"]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # half precision on disk: half the size, float32 model after loading
    half, _ = save_weights(tmp_path / "half.safetensors", model, RECORD, dtype="float16")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded, sidecar = load_model(half)
    assert sidecar["dtype"] == "float16"
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype and torch.allclose(got, v, rtol=1e-3, atol=1e-4)


def test_weight_problems_are_explained(tmp_path):
    model = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    path, side = save_weights(tmp_path / "unet.safetensors", model, RECORD)
    assert weights_problem(path, ("unet",)) is None
    assert "holds unet weights, not xpdnet" in weights_problem(path, ("xpdnet",))
    assert "not found" in weights_problem(tmp_path / "missing.safetensors", ("unet",))
    # sidecar of another file: the hash check catches the mix-up
    other = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    for p in other.parameters():
        p.data.add_(1.0)
    save_weights(tmp_path / "other.safetensors", other, RECORD)
    side.write_text((tmp_path / "other.json").read_text())
    with pytest.raises(WeightsError, match="sha256"):
        load_model(path)
    # truncated tensor file
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes()[:50])
    (tmp_path / "bad.json").write_text(json.dumps({"model": "unet", "architecture": {}}))
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors", trust=True)  # no sha256 in bad.json: trusted to reach the file
    # architecture that does not fit the tensors
    meta = json.loads((tmp_path / "other.json").read_text())
    meta["architecture"]["chans"] = 8
    meta.pop("sha256")
    (tmp_path / "other.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(tmp_path / "other.safetensors", trust=True)


def test_checkpoint_restores_model_optimizer_and_rng(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        sum((p**2).sum() for p in model.parameters()).backward()
        opt.step()
    save_checkpoint(tmp_path / "ck.safetensors", model, opt, 2, {"wall_time_s": 1.0})
    expected_rand = torch.rand(3)
    torch.manual_seed(123)
    fresh = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    _forbid_pickle(monkeypatch)
    side = load_checkpoint(tmp_path / "ck.safetensors", fresh, fresh_opt)
    assert side["step"] == 2
    assert torch.equal(torch.rand(3), expected_rand)  # the RNG continues where it was saved
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for i in a:
        for key in a[i]:
            assert torch.equal(torch.as_tensor(a[i][key]), torch.as_tensor(b[i][key]))


def test_a_sidecar_lying_about_the_architecture_fails_before_the_model_is_built(tmp_path, monkeypatch):
    """Issue 16: a sidecar claiming a huge network is a WeightsError from the header shapes, never an allocation."""
    import workbench.nn as nn_pkg

    model = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    path, side = save_weights(tmp_path / "unet.safetensors", model, RECORD)
    meta = json.loads(side.read_text())
    meta["architecture"]["chans"] = 4096  # ~GBs of float32 if it were built for real
    side.write_text(json.dumps(meta))
    real_build, built = nn_pkg.build_model, []

    def watched(name, arch):
        m = real_build(name, arch)
        built.append(next(m.parameters()).device.type)
        return m

    monkeypatch.setattr(nn_pkg, "build_model", watched)
    with pytest.raises(WeightsError, match="do not fit the sidecar's unet architecture"):
        load_model(path)
    assert built == ["meta"]  # only the allocation-free skeleton was built
    meta["architecture"].update(chans=4, num_pool_layers=100_000)  # deep: stopped at the file's tensor count
    side.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="more parameters than the .* tensors in the file"):
        load_model(path)


def test_a_sidecar_without_sha256_needs_trust(tmp_path, monkeypatch):
    from workbench.nn.weights import TRUST_ENV

    model = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    path, side = save_weights(tmp_path / "unet.safetensors", model, RECORD)
    meta = json.loads(side.read_text())
    meta.pop("sha256")
    side.write_text(json.dumps(meta))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(WeightsError, match="no sha256"):
        load_model(path)
    # tampered weights without a hash would otherwise run silently
    assert load_model(path, trust=True)[1]["model"] == "unet"
    monkeypatch.setenv(TRUST_ENV, "1")
    assert load_model(path)[1]["model"] == "unet"


def test_shipped_weights_all_have_their_sha256():
    from workbench.nn.weights import check_sha256, read_sidecar, shipped_weights

    for name in ("unet", "unet_noncartesian", "xpdnet", "ncpdnet", "dsm"):
        path = shipped_weights(name)
        if not path.is_file():
            continue
        side = read_sidecar(path)
        assert len(side.get("sha256", "")) == 64, path
        check_sha256(path, side)  # matches the file
