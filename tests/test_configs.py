"""Every training config in ``configs/`` is one that ``workbench train`` accepts, and is documented.

A typo in a shipped config (an unknown data entry, a probability above 1, an architecture the model does not
take) would otherwise surface only when someone starts an hour-long training run with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.nn.train import TrainingError, TrainingHooks, load_config
from workbench.nn.train_dsm import DSMTraining

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(p for p in CONFIGS.iterdir() if p.suffix in (".json", ".yaml", ".yml"))


def _hooks(model: str) -> TrainingHooks:
    return DSMTraining() if model == "dsm" else TrainingHooks()


def test_there_are_configs():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_config_resolves_builds_its_model_and_its_data(path):
    raw = load_config(path)
    assert raw.get("model"), f"{path.name}: names no model"
    hooks = _hooks(raw["model"])
    cfg = hooks.resolve_config(raw, raw["model"])
    model = hooks.build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    if (cfg.get("data") or {}).get("kind", "synthetic") == "synthetic":
        data = hooks.make_data(cfg)  # the data entry is checked here (DataConfigError on a bad one)
        assert data.describe()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_config_is_listed_in_the_readme(path):
    readme = (CONFIGS / "README.md").read_text(encoding="utf-8")
    gpu = path.name.endswith("_gpu.json") and "`*_gpu.json`" in readme
    assert f"`{path.name}`" in readme or gpu, f"configs/README.md does not describe {path.name}"


def test_a_bad_entry_is_refused(tmp_path):
    """The check above can fail: an unknown data entry and an impossible probability are refused."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "unet", "data": {"kind": "synthetic", "phantom_p": 0.8, "real_p": 0.5}}')
    hooks = TrainingHooks()
    cfg = hooks.resolve_config(load_config(bad), "unet")
    with pytest.raises(Exception, match="phantom_p"):
        hooks.make_data(cfg)
    bad.write_text('{"model": "unet", "stepz": 10}')
    with pytest.raises(TrainingError, match="stepz"):
        hooks.resolve_config(load_config(bad), "unet")
