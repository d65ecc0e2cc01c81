"""Networks of workbench.nn against independent references: pywt's Haar transform, explicit DFT matrices for
the data-consistency operators, numpy FFTs for an unrolled gradient step, and exact scaling laws."""

import math

import numpy as np
import pytest
import pywt
import torch
from torch import nn

from workbench.nn.batch import Batch, NonCartesianEncoding
from workbench.nn.common import channels_to_complex, complex_to_channels, ssim_map
from workbench.nn.mwcnn import MWCNN, MWCNNConfig, haar_dwt, haar_iwt
from workbench.nn.primal_net import PrimalNet
from workbench.nn.sens_net import SensitivityRefiner
from workbench.nn.unet import Unet, UnetRecon

from numpy_reference import np_fft2c, np_ifft2c  # noqa: E402

TINY = {"n_iter": 2, "n_primal": 2, "image_net": {"n_filters": 4, "n_scales": 2, "n_convs_per_scale": 1,
                                                  "n_first_convs": 1},
        "sens_net": {"chans": 4, "num_pool_layers": 1}}


def _rng_complex(g, *shape):
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def test_haar_dwt_matches_pywt_and_inverts():
    x = np.random.default_rng(0).standard_normal((6, 10))
    y = haar_dwt(torch.tensor(x)[None, None])[0].numpy()
    ca, (ch, cv, cd) = pywt.dwt2(x, "haar")
    # pywt's detail bands have the opposite sign convention for the two one-directional details
    np.testing.assert_allclose(y[0], ca, atol=1e-12)
    np.testing.assert_allclose(y[1], -cv, atol=1e-12)
    np.testing.assert_allclose(y[2], -ch, atol=1e-12)
    np.testing.assert_allclose(y[3], cd, atol=1e-12)
    t = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    torch.testing.assert_close(haar_iwt(haar_dwt(t)), t)
    assert math.isclose(float(haar_dwt(t).norm()), float(t.norm()), rel_tol=1e-12)  # orthonormal


@pytest.mark.parametrize("shape", [(33, 47), (64, 64)])
def test_mwcnn_and_unet_any_size(shape):
    x = torch.randn(2, 6, *shape)
    net = MWCNN(6, 4, MWCNNConfig(n_scales=3, n_filters=4, n_convs_per_scale=1, n_first_convs=1),
                zero_init_output=False)
    assert net(x).shape == (2, 4, *shape)
    assert Unet(6, 1, chans=4, num_pool_layers=3)(x).shape == (2, 1, *shape)


def test_widened_mwcnn_computes_the_narrow_one_and_trains_its_new_channels():
    """Function-preserving widening: the wider network loaded with ``widened_state`` gives the narrow network's
    output (a wrong sub-band order at a Haar transform would not), and the loss reaches the new channels."""
    torch.manual_seed(0)
    shape = dict(n_scales=2, n_convs_per_scale=2, n_first_convs=2)
    narrow = MWCNN(6, 4, MWCNNConfig(n_filters=4, **shape), zero_init_output=False)
    wide = MWCNN(6, 4, MWCNNConfig(n_filters=6, **shape), zero_init_output=False)
    wide.load_state_dict(wide.widened_state(narrow.state_dict()))
    x = torch.randn(2, 6, 21, 18)
    torch.testing.assert_close(wide(x), narrow(x), atol=1e-5, rtol=1e-5)
    # the new channels reach the output through zero weights: those get a gradient at once, the channels' own
    # incoming weights from the next step on
    optimizer = torch.optim.SGD(wide.parameters(), lr=0.1)
    for step in range(2):
        optimizer.zero_grad()
        wide(x).square().mean().backward()
        if step == 0:
            assert float(wide.out.weight.grad[:, 4:].abs().sum()) > 0
        optimizer.step()
    assert float(wide.first[0].weight.grad[4:].abs().sum()) > 0
    with pytest.raises(ValueError, match="does not fit"):
        narrow.widened_state(wide.state_dict())


def test_complex_channels_roundtrip():
    z = _rng_complex(torch.Generator().manual_seed(1), 2, 3, 5, 4)
    assert complex_to_channels(z).shape == (2, 6, 5, 4)
    torch.testing.assert_close(channels_to_complex(complex_to_channels(z)), z)


def test_ssim_map_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    a = rng.random((40, 36)).astype(np.float32)
    b = (a + 0.1 * rng.standard_normal(a.shape)).astype(np.float32)
    ref = structural_similarity(a, b, win_size=7, data_range=1.0)
    got = float(ssim_map(torch.tensor(a)[None], torch.tensor(b)[None], torch.tensor([1.0])).mean())
    assert abs(got - ref) < 1e-4


def test_sensitivity_refiner_normalises():
    maps = _rng_complex(torch.Generator().manual_seed(3), 1, 5, 24, 20)
    ref = SensitivityRefiner({"chans": 4, "num_pool_layers": 1})
    nn.init.normal_(ref.unet.out.weight)  # a non-trivial correction
    out = ref(maps)
    torch.testing.assert_close((out.abs() ** 2).sum(1), torch.ones(1, 24, 20), atol=1e-4, rtol=0)


def _cartesian_batch(seed=0, shape=(32, 28), coils=3, acc_step=3):
    g = torch.Generator().manual_seed(seed)
    k = _rng_complex(g, 1, coils, *shape)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, ::acc_step] = True
    mask[:, shape[1] // 2 - 4 : shape[1] // 2 + 4] = True
    return Batch(k * mask, shape, shape, mask=mask[None])


class _GradientStep(nn.Module):
    """An 'image network' that returns -t * residual for buffer image 0 (zero for the others): the unrolled
    network then performs Landweber steps x <- x - t A^H (A x - y)."""

    def __init__(self, n_primal, t):
        super().__init__()
        self.p, self.t = n_primal, t

    def forward(self, x):
        p = self.p
        out = torch.zeros(x.shape[0], 2 * p, *x.shape[-2:])
        out[:, 0] = -self.t * x[:, p]  # real part of the residual
        out[:, p] = -self.t * x[:, 2 * p + 1]  # imaginary part
        return out


def test_unrolled_iteration_is_residual_data_consistency():
    batch = _cartesian_batch()
    net = PrimalNet({**TINY, "n_iter": 2, "share_weights": True, "refine_maps": False})
    t = 0.7
    net.image_nets[0] = _GradientStep(net.config.n_primal, t)
    x_net = net.reconstruct(batch)[0].numpy()
    # reference with numpy FFTs: x0 = S^H F^H M y, then two steps x <- x - t S^H F^H M F S x + t x0
    maps = batch.encoding(net.config.acs_calib).initial_maps()[0]
    s = (maps / torch.sqrt((maps.abs() ** 2).sum(0, keepdim=True) + 1e-12)).numpy()
    m = batch.mask[0].numpy()
    y = batch.kspace[0].numpy()
    x0 = (s.conj() * np_ifft2c(y * m)).sum(0)
    x = x0.copy()
    for _ in range(2):
        x = x - t * ((s.conj() * np_ifft2c(m * np_fft2c(s * x))).sum(0) - x0)
    np.testing.assert_allclose(x_net, x, rtol=0, atol=1e-4 * np.abs(x).max())


def _randomised(net, seed=5):
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.data = 0.1 * torch.randn(p.shape, generator=g)
    return net.eval()


def test_final_data_consistency_puts_the_measured_samples_back():
    batch = _cartesian_batch(seed=7)
    plain = _randomised(PrimalNet({**TINY, "refine_maps": False}))
    final = _randomised(PrimalNet({**TINY, "refine_maps": False, "final_data_consistency": True}))
    x = plain.reconstruct(batch)[0].numpy()
    out = final.reconstruct(batch)[0].numpy()
    # numpy definition: coil images S x, measured k-space where sampled, root-sum-of-squares, phase of S^H
    maps = batch.encoding(plain.config.acs_calib, plain.config.acs_threshold).initial_maps()[0]
    s = (maps / torch.sqrt((maps.abs() ** 2).sum(0, keepdim=True) + 1e-12)).numpy()
    m = batch.mask[0].numpy()
    coils = np_ifft2c(np.where(m, batch.kspace[0].numpy(), np_fft2c(s * x)))
    rss = np.sqrt((np.abs(coils) ** 2).sum(0))
    np.testing.assert_allclose(np.abs(out), rss, rtol=0, atol=1e-4 * rss.max())
    combined = (s.conj() * coils).sum(0)
    inside = np.abs(combined) > 1e-3 * np.abs(combined).max()
    np.testing.assert_allclose(np.angle(out * combined.conj())[inside], 0, atol=1e-3)
    # fully sampled: whatever the network predicts, the output is the RSS of the data's coil images
    full = Batch(_rng_complex(torch.Generator().manual_seed(8), 1, 3, 32, 28), (32, 28), (32, 28),
                 mask=torch.ones(1, 32, 28, dtype=torch.bool))
    expected = np.sqrt((np.abs(np_ifft2c(full.kspace[0].numpy())) ** 2).sum(0))
    np.testing.assert_allclose(final.reconstruct(full)[0].abs().numpy(), expected, rtol=0, atol=1e-4 * expected.max())
    # and it trains: finite gradients through the step
    final.train()
    magnitude, _ = final(batch)
    magnitude.sum().backward()
    grads = [p.grad for p in final.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)


def test_unmeasured_noise_energy_is_the_fully_sampled_scans_expected_rss():
    """Monte Carlo: coil images with the measured samples kept and fresh noise on the others; the mean of their
    RSS^2 is the noise-free-prediction RSS^2 plus the energy."""
    from workbench.physics.fft import unmeasured_noise_energy

    rng = np.random.default_rng(0)
    c, h, w, sigma = 3, 16, 12, 0.3
    coils = rng.standard_normal((c, h, w)) + 1j * rng.standard_normal((c, h, w))
    mask = np.zeros((h, w), dtype=bool)
    mask[:, ::3] = True
    k = np_fft2c(coils)
    y = np.where(mask, k + sigma / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)), 0)
    dc = np_ifft2c(np.where(mask, y, k))
    draws = 4000
    noise = sigma / np.sqrt(2) * (rng.standard_normal((draws, c, h, w)) + 1j * rng.standard_normal((draws, c, h, w)))
    scans = np_ifft2c(np.where(mask, y, k + noise))
    mean_rss2 = (np.abs(scans) ** 2).sum(1).mean(0)
    energy = unmeasured_noise_energy(torch.from_numpy(mask), c, sigma)
    assert energy == pytest.approx(c * (2 / 3) * sigma**2)
    expected = (np.abs(dc) ** 2).sum(0) + energy
    np.testing.assert_allclose(mean_rss2, expected, rtol=0.05)
    assert abs(mean_rss2.mean() / expected.mean() - 1) < 0.005


def test_final_data_consistency_leaves_non_cartesian_data_alone():
    from workbench.sampling import make_sampling

    s = make_sampling("golden-radial", (24, 24), 2)
    y = _rng_complex(torch.Generator().manual_seed(9), 1, 2, s.trajectory.shape[-1])
    batch = Batch(y, (24, 24), (24, 24), trajectory=s.trajectory, dcf=s.dcf)
    plain = _randomised(PrimalNet({**TINY, "refine_maps": False}))
    final = _randomised(PrimalNet({**TINY, "refine_maps": False, "final_data_consistency": True}))
    torch.testing.assert_close(final.reconstruct(batch), plain.reconstruct(batch))


def test_primal_net_is_scale_invariant_and_starts_at_adjoint():
    batch = _cartesian_batch(seed=4)
    net = PrimalNet(TINY).eval()
    # zero-initialised output layers: the untrained network returns the SENSE-combined zero-filled image
    enc = batch.encoding(net.config.acs_calib)
    maps = enc.initial_maps()
    maps = maps / torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True) + 1e-12)
    adj = (maps.conj() * enc.coil_images()).sum(1)
    torch.testing.assert_close(net.reconstruct(batch), adj, atol=1e-4 * float(adj.abs().max()), rtol=0)
    # with random weights: reconstructing alpha * y gives alpha * x (input normalisation)
    _randomised(net)
    x1 = net.reconstruct(batch)
    alpha = 1234.5
    x2 = net.reconstruct(Batch(batch.kspace * alpha, batch.grid_shape, batch.recon_shape, mask=batch.mask))
    assert float((x2 - alpha * x1).abs().max()) <= 1e-3 * float((alpha * x1).abs().max())
    assert float(x1.abs().max()) > 0


def test_unet_recon_shapes_and_units():
    batch = _cartesian_batch(seed=6, shape=(40, 36))
    batch.recon_shape = (30, 30)
    model = UnetRecon({"chans": 4, "num_pool_layers": 2})
    out = model.reconstruct(batch)
    assert out.shape == (1, 30, 30)
    # untrained residual U-net: the output is the zero-filled RSS cropped
    rss = torch.sqrt((batch.encoding().coil_images().abs() ** 2).sum(1))[:, 5:35, 3:33]
    torch.testing.assert_close(out, rss, atol=1e-4 * float(rss.max()), rtol=0)


def _explicit_dft(traj, shape):
    h, w = shape
    n0, n1 = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    phase = np.outer(traj[0], n0.ravel()) + np.outer(traj[1], n1.ravel())
    return np.exp(-1j * phase) / math.sqrt(h * w)  # [K, H*W]


def test_noncartesian_normal_matches_explicit_nufft_pair_and_dft():
    shape = (16, 18)
    rng = np.random.default_rng(7)
    traj = rng.uniform(-math.pi, math.pi, (2, 400)).astype(np.float32)
    dcf = rng.uniform(0.2, 1.0, 400).astype(np.float32)
    g = torch.Generator().manual_seed(8)
    maps = _rng_complex(g, 2, 3, *shape)
    x = _rng_complex(g, 2, *shape)
    y = _rng_complex(g, 2, 3, 400)
    enc = NonCartesianEncoding(y, torch.tensor(traj), torch.tensor(dcf), shape)
    got = enc.normal(x, maps).numpy()
    # the explicit NUFFT pair A^H D A
    op = enc.op.with_maps(maps)
    pair = op._adjoint(op._forward(x) * torch.tensor(dcf)).numpy()
    assert np.linalg.norm(got - pair) <= 1e-4 * np.linalg.norm(pair)
    # the exact DFT
    e = _explicit_dft(traj.astype(np.float64), shape)
    s = maps.numpy().reshape(2, 3, -1)
    xs = x.numpy().reshape(2, 1, -1)
    k = np.einsum("kn,bcn->bck", e, s * xs) * dcf
    exact = (s.conj() * np.einsum("kn,bck->bcn", e.conj(), k)).sum(1).reshape(2, *shape)
    assert np.linalg.norm(got - exact) <= 1e-2 * np.linalg.norm(exact)
    # the density-compensated coil images F^H D y
    coil = enc.coil_images().numpy().reshape(2, 3, -1)
    exact_coil = np.einsum("kn,bck->bcn", e.conj(), y.numpy() * dcf)
    assert np.linalg.norm(coil - exact_coil) <= 1e-2 * np.linalg.norm(exact_coil)


def test_ncpdnet_configuration_runs_on_a_radial_batch():
    from workbench.sampling import make_sampling
    from workbench.sampling.retrospective import sample_noncartesian

    shape = (32, 32)
    s = make_sampling("radial", shape, 2.0)
    g = torch.Generator().manual_seed(9)
    coil_images = _rng_complex(g, 2, *shape)
    y = sample_noncartesian(coil_images, s.trajectory)
    batch = Batch(y[None], shape, (28, 28), trajectory=s.trajectory, dcf=s.dcf)
    net = PrimalNet(TINY)
    fractions = []
    x = net.reconstruct(batch, lambda f, t: fractions.append(f))
    assert x.shape == (1, 32, 32) and torch.isfinite(torch.view_as_real(x)).all()
    assert fractions[-1] == 1.0 and len(fractions) == 1 + TINY["n_iter"]
    mag, scale = net(batch)
    assert mag.shape == (1, 28, 28) and scale.shape == (1,)


def test_acs_threshold_zero_gives_maps_everywhere():
    from workbench.physics.fft import fft2c

    # a disc with empty background, seen by 3 smooth coils, fully sampled
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 48), indexing="ij")
    image = ((xx**2 + yy**2) < 0.4).to(torch.complex64)
    maps = torch.stack([torch.exp(-((xx - c) ** 2 + yy**2)).to(torch.complex64) for c in (-1.0, 0.0, 1.0)])
    k = fft2c(maps * image)[None]
    mask = torch.ones(1, 48, 48, dtype=torch.bool)

    def energy(threshold):
        net = PrimalNet({**TINY, "acs_threshold": threshold, "refine_maps": False})
        return (net.maps(Batch(k, (48, 48), (48, 48), mask=mask)).abs() ** 2).sum(1)[0]

    everywhere = energy(0.0)
    torch.testing.assert_close(everywhere, torch.ones_like(everywhere), atol=1e-3, rtol=0)
    default = energy(0.05)
    assert float(default[0, 0]) == 0.0 and float(default[24, 24]) == pytest.approx(1.0, abs=1e-3)


def test_cg_start_is_the_tikhonov_sense_solution():
    # A fresh network's image nets output zero (zero-initialised last layers): with init="cg" the output is the
    # starting point, which must be argmin ||M F S x - y||^2 + lam ||x||^2 solved here by a dense numpy solve.
    batch = _cartesian_batch(seed=3, shape=(16, 14), coils=3)
    lam = 0.05
    net = PrimalNet({**TINY, "refine_maps": False, "init": "cg", "init_cg_iter": 60, "init_lam": lam}).eval()
    x_net = net.reconstruct(batch)[0].numpy()
    maps = batch.encoding(net.config.acs_calib, net.config.acs_threshold).initial_maps()[0]
    s = (maps / torch.sqrt((maps.abs() ** 2).sum(0, keepdim=True) + 1e-12)).numpy().astype(np.complex128)
    m = batch.mask[0].numpy()
    n = m.size
    cols = [(m * np_fft2c(s * e.reshape(m.shape))).ravel() for e in np.eye(n)]
    a = np.stack(cols, axis=1)  # the explicit operator, [C*H*W, H*W]
    rhs = a.conj().T @ batch.kspace[0].numpy().astype(np.complex128).ravel()
    x = np.linalg.solve(a.conj().T @ a + lam * np.eye(n), rhs).reshape(m.shape)
    np.testing.assert_allclose(x_net, x, rtol=0, atol=2e-4 * np.abs(x).max())
    zero_filled = PrimalNet({**TINY, "refine_maps": False}).eval().reconstruct(batch)[0].numpy()
    assert np.abs(zero_filled - x).max() > 0.05 * np.abs(x).max()  # the default start is not that solution
    trained = _randomised(net)  # image networks that change the image: networks=False still gives the start
    assert np.abs(trained.reconstruct(batch)[0].numpy() - x).max() > 0.05 * np.abs(x).max()
    np.testing.assert_allclose(trained.reconstruct(batch, networks=False)[0].numpy(), x, rtol=0,
                               atol=2e-4 * np.abs(x).max())


def test_espirit_initial_maps_use_the_given_maps_else_espirit_else_acs():
    from workbench.physics.coils import estimate_espirit_maps

    net = PrimalNet({**TINY, "refine_maps": False, "initial_maps": "espirit"})
    batch = _cartesian_batch(seed=4, shape=(40, 36), coils=4)
    estimated = estimate_espirit_maps(batch.kspace[0], calib=net.config.acs_calib)
    got = net.maps(batch)[0]
    inside = estimated.abs().sum(0) > 0
    torch.testing.assert_close(got[:, inside], estimated[:, inside], atol=1e-4, rtol=0)
    given = _rng_complex(torch.Generator().manual_seed(9), 1, 4, 40, 36)
    with_maps = Batch(batch.kspace, batch.grid_shape, batch.recon_shape, mask=batch.mask, maps=given)
    norm = torch.sqrt((given.abs() ** 2).sum(1, keepdim=True))
    torch.testing.assert_close(net.maps(with_maps), given / norm, atol=1e-5, rtol=0)
    # a 4-line calibration box is too small for ESPIRiT's kernel: the low-resolution ACS maps are used instead
    narrow = _cartesian_batch(seed=4, shape=(40, 36), coils=4, acc_step=100)
    narrow.mask[:, :, :] = False
    narrow.mask[:, :, 16:20] = True
    narrow.kspace = narrow.kspace * narrow.mask[:, None]
    acs = PrimalNet({**TINY, "refine_maps": False}).maps(narrow)
    torch.testing.assert_close(net.maps(narrow), acs)
    with pytest.raises(ValueError):
        PrimalNet({**TINY, "initial_maps": "magic"})
    with pytest.raises(ValueError):
        PrimalNet({**TINY, "init": "cg", "init_cg_iter": 0})


def test_without_map_refinement_is_the_same_network_on_the_estimated_maps():
    batch = _cartesian_batch(seed=11)
    refined = _randomised(PrimalNet({**TINY, "refine_maps": True}))
    # independent definition: a network built without the refiner, given the same image networks' weights
    plain = PrimalNet({**TINY, "refine_maps": False}).eval()
    plain.image_nets.load_state_dict(refined.image_nets.state_dict())
    before = refined.reconstruct(batch)
    view = refined.without_map_refinement()
    torch.testing.assert_close(view.reconstruct(batch), plain.reconstruct(batch), rtol=0, atol=1e-6)
    assert (view.reconstruct(batch) - before).abs().max() > 1e-3 * before.abs().max()  # the refinement mattered
    # the original keeps its refinement and its parameters; the view shares the image networks
    assert refined.sens_net is not None and refined.config.refine_maps
    torch.testing.assert_close(refined.reconstruct(batch), before, rtol=0, atol=0)
    assert view.image_nets is refined.image_nets and plain.without_map_refinement() is plain
    # what is registered on the view stays off the original
    view.register_forward_hook(lambda module, args, out: None)
    view.register_buffer("probe", torch.zeros(1))
    assert not refined._forward_hooks and "probe" not in dict(refined.named_buffers())
    torch.testing.assert_close(refined.reconstruct(batch), before, rtol=0, atol=0)


def test_cartesian_encoding_normal_is_the_sense_normal_for_every_mask():
    """The encoding's normal operator takes the 1D-FFT line form when every item has the same line mask: it must
    equal the 2D SENSE normal operator, for column and row masks, and fall back for other masks."""
    from workbench.nn.batch import CartesianEncoding
    from workbench.physics.sense import CartesianSense

    g = torch.Generator().manual_seed(0)
    b, c, h, w = 2, 3, 20, 16
    maps = torch.randn(b, c, h, w, dtype=torch.complex64, generator=g)
    x = torch.randn(b, h, w, dtype=torch.complex64, generator=g)
    cols = torch.zeros(h, w, dtype=torch.bool)
    cols[:, ::3] = True
    rows = torch.zeros(h, w, dtype=torch.bool)
    rows[::4] = True
    points = torch.rand(h, w, generator=g) < 0.4
    for mask, line_form in ((cols.expand(b, h, w), True), (rows.expand(b, h, w), True),
                            (torch.stack([cols, rows]), False), (points.expand(b, h, w), False)):
        enc = CartesianEncoding(torch.zeros(b, c, h, w, dtype=torch.complex64), mask.clone())
        assert (enc._lines() is not None) == line_form
        expected = CartesianSense(maps, mask.clone(), grid_shape=(h, w)).normal(x)
        torch.testing.assert_close(enc.normal(x, maps), expected, atol=1e-5, rtol=1e-5)


def test_training_consistency_solve_is_the_plugins_solve_and_trains_through():
    """With train_consistency_lams, a training forward pass ends with the consistency solve (here p = 1, one
    weight): the same image as NetworkSolution.consistent of the eval-mode network, and gradients reach the
    image networks through it; eval mode and configs without it are unchanged."""
    batch = _cartesian_batch(seed=4, shape=(24, 20))
    arch = {**TINY, "refine_maps": False}
    plain = _randomised(PrimalNet(arch))
    net = PrimalNet({**arch, "train_consistency_lams": [0.05], "train_consistency_p": 1.0, "consistency_iter": 30})
    net.load_state_dict(plain.state_dict())
    net.eval()
    x_eval, _ = net.unrolled(batch)
    x_plain, _ = plain.unrolled(batch)
    torch.testing.assert_close(x_eval, x_plain)
    expected = net.solve(batch).consistent([0.05], n_iter=30)[0.05]
    net.train()
    x_train, _ = net.unrolled(batch)
    torch.testing.assert_close(x_train.detach(), expected, atol=1e-4 * float(expected.abs().max()), rtol=1e-4)
    assert float((x_train - x_eval).detach().abs().max()) > 1e-3 * float(x_eval.detach().abs().max())
    x_train.abs().sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.image_nets.parameters())
    with pytest.raises(ValueError):
        PrimalNet({**arch, "train_consistency_lams": [0.0]})
