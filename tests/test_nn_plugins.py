"""The xpdnet / unet / ncpdnet plugins: run from a weight file on any slice size with progress per iteration;
check() explains missing weights and unsupported sampling."""

import numpy as np
import pytest
import torch

from workbench_builtin_methods.ncpdnet import NCPDNet
from workbench_builtin_methods.unet import UnetBaseline
from workbench_builtin_methods.xpdnet import XPDNet
from workbench.methods import MethodError, RunContext, safe_run
from workbench.nn import build_model
from workbench.nn.weights import save_weights
from workbench.physics.fft import center_crop, fft2c, ifft2c, rss
from workbench.problem import Problem
from workbench.scoring import IMAGE_IS_CONSISTENT_RSS, IMAGE_IS_RSS, IMAGE_IS_SCAN, as_acquired

ARCH = {"n_iter": 3, "n_primal": 2, "image_net": {"n_filters": 4, "n_scales": 2, "n_convs_per_scale": 1,
                                                  "n_first_convs": 1},
        "sens_net": {"chans": 2, "num_pool_layers": 1}}
RECORD = {"training": {"sampling": {"kinds": ["random", "equispaced"]}, "steps": 1}}


def _problem(shape=(45, 38), coils=3, recon=(40, 30), seed=0, fully_sampled=False):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij")
    image = ((xx**2 / 0.5 + yy**2 / 0.7) < 1).float() * (1 + 0.3 * torch.cos(4 * xx))
    maps = torch.stack([torch.exp(-((xx - c) ** 2 + yy**2)) * torch.exp(1j * torch.tensor(c)) for c in
                        np.linspace(-1, 1, coils)])
    k = fft2c(maps * image) + 0.01 * torch.complex(torch.randn(coils, *shape, generator=g),
                                                  torch.randn(coils, *shape, generator=g))
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, ::3] = True
    mask[:, shape[1] // 2 - 3 : shape[1] // 2 + 3] = True
    if fully_sampled:
        mask[:] = True
    ref = center_crop(rss(ifft2c(k)), recon)
    return Problem(k * mask, recon_shape=recon, mask=mask, reference=ref)


def _run(method, problem, weights, ctx=None, **extra):
    """What safe_run does, with the weight file passed to check() too (safe_run calls check(problem) only)."""
    params = method.make_params({"weights": weights, **extra})
    assert method.check(problem, params) == []
    with torch.no_grad():
        return method.run(problem, params, ctx or RunContext("cpu"))


def _weights(tmp_path, name, arch):
    torch.manual_seed(0)
    model = build_model(name, arch)
    path, _ = save_weights(tmp_path / f"{name}.safetensors", model, RECORD)
    return str(path)


def test_xpdnet_plugin_runs_with_progress(tmp_path):
    path = _weights(tmp_path, "xpdnet", ARCH)
    problem = _problem()
    events = []
    ctx = RunContext("cpu", on_progress=lambda f, t: events.append((f, t)))
    result = _run(XPDNet(), problem, path, ctx)
    assert result.image.shape == (40, 30)
    assert torch.isfinite(result.image.abs()).all() and float(result.image.abs().max()) > 0
    texts = [t for _, t in events]
    assert [t for t in texts if t.startswith("iteration")] == ["iteration 1/3", "iteration 2/3", "iteration 3/3"]
    assert events[-1][0] == 1.0
    # the untrained network (zero output layers) returns the SENSE zero-filled image with normalised ACS maps:
    # close to the reference within the undersampling error, in the data's units
    ref = problem.reference.numpy()
    rel = np.linalg.norm(result.image.abs().numpy() - ref) / np.linalg.norm(ref)
    assert rel < 0.5


def test_xpdnet_plugin_ends_with_the_measured_data(tmp_path):
    g = torch.Generator().manual_seed(1)
    net = build_model("xpdnet", ARCH)
    for p in net.parameters():  # a network that changes the image
        p.data = 0.1 * torch.randn(p.shape, generator=g)
    path, _ = save_weights(tmp_path / "random.safetensors", net, RECORD)
    method = XPDNet()

    def run(problem, data_consistency):
        params = method.make_params({"weights": str(path), "data_consistency": data_consistency})
        with torch.no_grad():
            return method.run(problem, params, RunContext("cpu")).image.abs()

    # fully sampled: with the step the output is the data's RSS image whatever the network does; without, not
    full = _problem(fully_sampled=True)
    ref = full.reference
    assert float((run(full, True) - ref).abs().max()) < 1e-4 * float(ref.max())
    assert float((run(full, False) - ref).abs().max()) > 0.05 * float(ref.max())
    # undersampled: the parameter reaches the network (the exact projection is tested in test_nn_models)
    under = _problem()
    assert not torch.allclose(run(under, True), run(under, False))
    # the noise floor: the unmeasured samples' noise energy added in quadrature, nothing else; off by default,
    # since the scoring layer's as-acquired mode adds it to every method's image (the same numbers)
    plain = method.run(under, method.make_params({"weights": str(path)}), RunContext("cpu"))
    with_floor = method.run(under, method.make_params({"weights": str(path), "noise_floor": True}), RunContext("cpu"))
    floor = with_floor.image.abs()
    energy = 3 * (1 - float(under.mask.float().mean())) * float(under.noise_std) ** 2
    assert energy > 0
    torch.testing.assert_close(floor**2 - plain.image.abs() ** 2, torch.full_like(floor, energy),
                               atol=1e-3 * float(floor.max()) ** 2, rtol=0)
    assert plain.extras["image_is"] == IMAGE_IS_CONSISTENT_RSS and with_floor.extras["image_is"] == IMAGE_IS_SCAN
    np.testing.assert_allclose(as_acquired(under, plain.image, plain.extras["image_is"]), floor.numpy(),
                               rtol=1e-4, atol=1e-4 * float(floor.max()))
    np.testing.assert_allclose(as_acquired(under, with_floor.image, with_floor.extras["image_is"]), floor.numpy())
    # the hold-out scores what the network put on the held-out samples; zero filling's declaration would say
    # it predicts nothing there (error exactly 1)
    from workbench.holdout import folds, residuals

    held = folds(under, 1, 0.1, seed=0)[0]
    energy_h, error_h, _, predicted_h = residuals(held, plain.image, plain.extras["image_is"])
    assert predicted_h > 0 and error_h != energy_h
    assert residuals(held, plain.image, IMAGE_IS_RSS)[1] == energy_h


def test_unet_plugin_any_size(tmp_path):
    path = _weights(tmp_path, "unet", {"chans": 4, "num_pool_layers": 2})
    for shape, recon in (((45, 38), (40, 30)), ((33, 64), (33, 64))):
        result = _run(UnetBaseline(), _problem(shape, recon=recon), path, data_consistency=False, consistency=False)
        assert result.image.shape == recon
        # untrained residual U-net: the zero-filled RSS
        p = _problem(shape, recon=recon)
        zf = center_crop(rss(ifft2c(p.y)), recon)
        torch.testing.assert_close(result.image.abs(), zf, atol=1e-4 * float(zf.max()), rtol=0)


def test_unet_plugin_ends_with_the_measured_data(tmp_path):
    g = torch.Generator().manual_seed(2)
    net = build_model("unet", {"chans": 4, "num_pool_layers": 2})
    for p in net.parameters():  # a network that changes the image
        p.data = 0.1 * torch.randn(p.shape, generator=g)
    path, _ = save_weights(tmp_path / "random_unet.safetensors", net, RECORD)
    # fully sampled: with the step the output is the data's RSS image whatever the network does; without, not
    full = _problem(fully_sampled=True)
    ref = full.reference
    with_dc = _run(UnetBaseline(), full, str(path))
    assert with_dc.extras["image_is"] == IMAGE_IS_CONSISTENT_RSS
    assert float((with_dc.image.abs() - ref).abs().max()) < 1e-4 * float(ref.max())
    without = _run(UnetBaseline(), full, str(path), data_consistency=False, consistency=False)
    assert float((without.image.abs() - ref).abs().max()) > 0.05 * float(ref.max())
    assert "image_is" not in without.extras
    # undersampled: the measured lines of every coil image are the data's, the others the network's
    under = _problem()
    out = _run(UnetBaseline(), under, str(path), consistency=False).image.abs()
    net_only = _run(UnetBaseline(), under, str(path), data_consistency=False, consistency=False).image.abs()
    assert not torch.allclose(out, net_only)
    from workbench.scoring import calibration_phase

    x = center_pad_to(net_only, under.grid_shape) * torch.exp(1j * calibration_phase(under, under.maps))
    k = torch.where(under.mask, under.y, fft2c(under.maps * x))
    torch.testing.assert_close(out, center_crop(rss(ifft2c(k)), under.recon_shape), atol=1e-4 * float(out.max()),
                               rtol=0)


def center_pad_to(image, shape):
    from workbench.arrays import fit_shape

    return torch.from_numpy(fit_shape(image.numpy().astype(np.complex64), shape))


def test_check_explains_missing_weights_and_sampling(tmp_path):
    cart = _problem()
    reasons = XPDNet().check(cart, XPDNet.Params(weights=str(tmp_path / "none.safetensors")))
    assert any("none.safetensors not found" in r and "workbench train xpdnet" in r for r in reasons)
    unet_path = _weights(tmp_path, "unet", {"chans": 4, "num_pool_layers": 1})
    assert any("holds unet weights" in r for r in XPDNet().check(cart, XPDNet.Params(weights=unet_path)))
    traj = torch.stack([torch.linspace(-3, 3, 200), torch.zeros(200)])
    noncart = Problem(torch.ones(2, 200, dtype=torch.complex64), (32, 32), trajectory=traj,
                      maps=torch.ones(2, 32, 32, dtype=torch.complex64) / 2**0.5)
    assert any("use ncpdnet" in r for r in XPDNet().check(noncart))
    assert any("use xpdnet" in r for r in NCPDNet().check(cart))
    assert any("trained on Cartesian" in r for r in UnetBaseline().check(noncart, UnetBaseline.Params(weights=unet_path)))
    # no centre lines: no ACS for the coil maps
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, ::4] = True
    no_acs = Problem(torch.ones(2, 32, 32, dtype=torch.complex64) * mask, mask=mask)
    assert any("ACS" in r for r in XPDNet().check(no_acs))
    # running with a missing weight file gives the same explanation as an error
    with pytest.raises(MethodError, match="not found"):
        safe_run(XPDNet(), cart, {"weights": str(tmp_path / "none.safetensors")})


def test_ncpdnet_plugin_runs_on_radial_data(tmp_path):
    from workbench.sampling import make_sampling
    from workbench.sampling.retrospective import sample_noncartesian

    path = _weights(tmp_path, "ncpdnet", ARCH)
    p = _problem((32, 32), recon=(32, 32))
    s = make_sampling("radial", (32, 32), 2.0)
    y = sample_noncartesian(ifft2c(p.y), s.trajectory)
    problem = Problem(y, (32, 32), trajectory=s.trajectory, dcf=s.dcf)
    result = _run(NCPDNet(), problem, path)
    assert result.image.shape == (32, 32) and torch.isfinite(result.image.abs()).all()


def test_unet_default_weights_follow_the_sampling(tmp_path, monkeypatch):
    """Without a chosen file the U-net takes the shipped weights of the data's kind of sampling: `unet` on
    Cartesian masks, `unet_noncartesian` on trajectories (NC-PDNet's baseline), and says which file is missing."""
    import workbench.nn.weights as weights

    monkeypatch.setattr(weights, "shipped_weights", lambda model: tmp_path / f"{model}.safetensors")
    _weights(tmp_path, "unet", {"chans": 4, "num_pool_layers": 1})  # Cartesian-trained (RECORD's kinds)
    cart = _problem()
    traj = torch.stack([torch.linspace(-3, 3, 200), torch.zeros(200)])
    noncart = Problem(torch.ones(2, 200, dtype=torch.complex64), (32, 32), trajectory=traj,
                      maps=torch.ones(2, 32, 32, dtype=torch.complex64) / 2**0.5)
    assert UnetBaseline().check(cart) == []
    (reason,) = UnetBaseline().check(noncart)
    assert "unet_noncartesian.safetensors not found" in reason
    assert "configs/unet_noncartesian_cpu.json" in reason
    # once non-Cartesian weights are there, they are the ones used
    torch.manual_seed(0)
    model = build_model("unet", {"chans": 4, "num_pool_layers": 1})
    save_weights(tmp_path / "unet_noncartesian.safetensors", model,
                 {"training": {"sampling": {"kinds": ["golden-radial", "spiral"]}, "steps": 1}})
    assert UnetBaseline().check(noncart) == []


def test_refine_maps_off_runs_the_network_on_the_estimated_maps(tmp_path):
    """``refine_maps=false``: the same weights' image networks on the maps the classical methods use; the
    independent definition is a network saved without the refiner holding the same image networks."""
    torch.manual_seed(3)
    refined = build_model("xpdnet", ARCH)
    for p in refined.parameters():  # non-trivial networks (the fresh output layers are zero)
        p.data = 0.05 * torch.randn(p.shape)
    with_path, _ = save_weights(tmp_path / "refined.safetensors", refined, RECORD)
    plain = build_model("xpdnet", {**ARCH, "refine_maps": False})
    plain.image_nets.load_state_dict(refined.image_nets.state_dict())
    plain_path, _ = save_weights(tmp_path / "plain.safetensors", plain, RECORD)
    problem = _problem(seed=4)
    method = XPDNet()
    with torch.no_grad():
        off = method.run(problem, method.make_params({"weights": str(with_path), "refine_maps": "false"}),
                         RunContext("cpu")).image
        on = method.run(problem, method.make_params({"weights": str(with_path), "refine_maps": "true"}),
                        RunContext("cpu")).image
        default = method.run(problem, method.make_params({"weights": str(with_path)}), RunContext("cpu")).image
    torch.testing.assert_close(default, off, rtol=0, atol=0)  # off by default (decided on the real rows)
    expected = _run(XPDNet(), problem, str(plain_path)).image
    torch.testing.assert_close(off, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    assert float((on - off).abs().max()) > 1e-3 * float(expected.abs().max())
