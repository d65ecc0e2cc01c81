"""The shipped weights (resources/weights): provenance a user can check, and models that do their job on data
they never saw (a held-out generator slice: the seed is below the training seeds)."""

from pathlib import Path

import pytest
import torch

from workbench_builtin_methods.ncpdnet import NCPDNet
from workbench_builtin_methods.unet import UnetBaseline
from workbench_builtin_methods.xpdnet import XPDNet
from workbench.methods import safe_run
from workbench.metrics import evaluate
from workbench.nn.weights import file_sha256, load_model, read_sidecar
from workbench.problem import Problem
from workbench.sampling import make_sampling
from workbench.sampling.retrospective import sample_noncartesian
from workbench.physics.fft import ifft2c
from workbench.simulate import generate_slice

METHODS = {"xpdnet": XPDNet, "ncpdnet": NCPDNet, "unet": UnetBaseline}
ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = sorted((ROOT / "resources" / "weights").glob("*.safetensors"))
HELD_OUT_SEED = 499_000  # below workbench.nn.data.TRAIN_SEED_OFFSET, apart from the benchmark's seeds


def test_the_documented_models_are_shipped():
    assert {p.stem for p in WEIGHTS} >= {"xpdnet", "unet", "ncpdnet", "unet_noncartesian", "dsm"}


@pytest.mark.parametrize("path", WEIGHTS, ids=lambda p: p.stem)
def test_shipped_weights_carry_their_provenance(path):
    side = read_sidecar(path)
    assert path.stat().st_size < 10 * 2**20
    assert side["sha256"] == file_sha256(path), "the sidecar describes another file"
    # made by the project's own training command, from a config that ships
    command = side["command"].split()
    assert command[:3] == ["workbench", "train", side["model"]], side["command"]
    config = command[command.index("--config") + 1]
    assert (ROOT / config).is_file(), f"{config} is not in the repository"
    assert side["validation"], "no validation metrics"
    assert side["training"]["steps"] > 0
    model, _ = load_model(path)  # safetensors: nothing pickled is executed
    assert sum(p.numel() for p in model.parameters()) == side["n_parameters"]


def _slice(n_coils=8, shape=(160, 160)):
    return generate_slice(HELD_OUT_SEED, shape=shape, n_coils=n_coils, snr=40.0)


def _psnr(problem, image):
    ref = problem.reference
    return evaluate(ref, problem.crop(image).abs(), data_range=float(ref.max()))["psnr"]


@pytest.mark.slow
@pytest.mark.parametrize("method_name", ["xpdnet", "unet"])
def test_shipped_cartesian_models_beat_zero_filled(method_name):
    sim = _slice()
    k = torch.from_numpy(sim["kspace"])
    s = make_sampling("random", tuple(k.shape[-2:]), 4, seed=1, center_fraction=0.08)
    problem = Problem(k * s.mask, mask=s.mask, reference=sim["reference"], sampling=s)
    zf = _psnr(problem, problem.zero_filled("rss"))
    result = safe_run(METHODS[method_name](), problem)
    assert _psnr(problem, result.image) > zf + 2.0


@pytest.mark.slow
@pytest.mark.parametrize("method_name", ["ncpdnet", "unet"])
def test_shipped_noncartesian_models_beat_the_density_compensated_adjoint(method_name):
    sim = _slice(shape=(128, 128))
    k = torch.from_numpy(sim["kspace"])
    s = make_sampling("golden-radial", tuple(k.shape[-2:]), 4)
    y = sample_noncartesian(ifft2c(k), s.trajectory)
    problem = Problem(y, tuple(k.shape[-2:]), trajectory=s.trajectory, dcf=s.dcf, reference=sim["reference"],
                      sampling=s)
    adjoint = _psnr(problem, problem.zero_filled("rss"))
    result = safe_run(METHODS[method_name](), problem)
    assert _psnr(problem, result.image) > adjoint + 1.0
