"""The calibration of std maps (does the std predict the error?): the session's numbers against an independent
numpy computation and against the dsm-posterior plugin's own extras, and the compare view's calibration plot
(pytest-qt, offscreen) drawing exactly those numbers."""

from __future__ import annotations

import math
import textwrap
import time

import numpy as np
import pytest
from scipy.stats import spearmanr
from scipy.stats import t as student_t

from workbench.io.fastmri import write_fastmri
from workbench.nn.dsm import object_mask
from workbench.scan import scan_from_arrays
from workbench.session import Session
from numpy_reference import np_crop, np_fft2c, np_ifft2c  # noqa: E402

H, W, C = 64, 48, 4  # readout oversampled 2x: recon 32 x 48
RECON = (32, 48)

PLUGINS = {
    "std_map.py": '''
        import torch
        from workbench.methods import Capabilities, Method
        from workbench.result import Result

        class StdMap(Method):
            """The zero-filled image with a made-up std map: brighter pixels less certain, plus seeded jitter
            (continuous values, so no two pixels share a decile edge)."""
            name = "test-std"
            capabilities = Capabilities(cartesian=True, gives_uncertainty=True)

            def run(self, problem, params, ctx):
                img = problem.crop(problem.zero_filled("rss"))
                g = torch.Generator().manual_seed(3)
                jitter = torch.rand(img.shape, generator=g)
                return Result(image=img.to(torch.complex64), std=0.1 * img.abs() * (0.5 + jitter))
    ''',
    "samples.py": '''
        import torch
        from workbench.methods import Capabilities, Method
        from workbench.result import Result

        class Samples(Method):
            """Five 'posterior samples' around the zero-filled image; mean, std of magnitudes and the samples."""
            name = "test-samples"
            capabilities = Capabilities(cartesian=True, gives_uncertainty=True, stochastic=True)

            def run(self, problem, params, ctx):
                img = problem.crop(problem.zero_filled("rss")).to(torch.complex64)
                g = torch.Generator().manual_seed(5)
                spread = 0.05 * img.abs().max()
                noise = torch.complex(torch.randn(5, *img.shape, generator=g), torch.randn(5, *img.shape, generator=g))
                samples = img + spread * noise
                return Result(image=samples.mean(0), std=samples.abs().std(0), samples=samples)
    ''',
    "plain.py": '''
        import torch
        from workbench.methods import Capabilities, Method
        from workbench.result import Result

        class Plain(Method):
            name = "test-plain"
            capabilities = Capabilities(cartesian=True)

            def run(self, problem, params, ctx):
                return Result(image=problem.crop(problem.zero_filled("rss")).to(torch.complex64))
    ''',
}


def phantom_kspace(seed=0):
    """One textured ellipse seen by four coils, with a little noise: ``[1, C, H, W]``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    img = ((yy - 32) ** 2 / 14**2 + (xx - 24) ** 2 / 17**2 < 1) * (1.0 + 0.4 * np.sin(xx / 2.5))
    img = img + 0.5 * ((yy - 30) ** 2 + (xx - 20) ** 2 < 16)
    maps = np.stack([np.exp(-((yy - a) ** 2 + (xx - b) ** 2) / 900) for a, b in [(0, 0), (0, 47), (63, 0), (63, 47)]])
    k = np_fft2c(img * maps) + 0.002 * (rng.standard_normal((C, H, W)) + 1j * rng.standard_normal((C, H, W)))
    return k.astype(np.complex64)[None]


def rss_reference(k):
    return np_crop(np.sqrt((np.abs(np_ifft2c(k)) ** 2).sum(-3)), RECON).astype(np.float32)


def decile_curve(std, abs_error, mask, n_bins=10):
    """Mean std and mean |error| of the pixels in ``mask`` in each decile of std, written out with numpy."""
    s, e = std[mask].astype(np.float64), abs_error[mask].astype(np.float64)
    edges = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1))
    xs, ys, counts = [], [], []
    for i in range(n_bins):
        upper = s <= edges[i + 1] if i == n_bins - 1 else s < edges[i + 1]
        sel = (s >= edges[i]) & upper
        xs.append(s[sel].mean())
        ys.append(e[sel].mean())
        counts.append(int(sel.sum()))
    return np.array(xs), np.array(ys), counts


def wait_for(entry, timeout=30.0):
    t0 = time.time()
    while entry.active and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert not entry.active, f"job still {entry.state} after {timeout} s"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calibration_plugins")
    for name, src in PLUGINS.items():
        (d / name).write_text(textwrap.dedent(src))
    return d


@pytest.fixture(scope="module")
def registry(plugin_dir):
    from workbench.methods import discover_methods

    return discover_methods([plugin_dir], entry_points=False, builtin=False, user_dirs=False)


@pytest.fixture()
def session():
    s = Session(device="cpu")
    s.set_scan(scan_from_arrays(phantom_kspace(), recon_shape=RECON))
    s.set_sampling("equispaced", acceleration=3.0)
    yield s
    s.shutdown()


# ----------------------------------------------------------------------------------------------------------------
# the session model, headless
def test_session_calibration_against_numpy(session, registry):
    std_entry = session.run(registry.methods["test-std"])
    plain = session.run(registry.methods["test-plain"])
    wait_for(std_entry)
    wait_for(plain)
    assert std_entry.state == "done" and plain.state == "done"
    ref = rss_reference(phantom_kspace()[0])
    np.testing.assert_allclose(session.reference(), ref, rtol=1e-4, atol=1e-5 * ref.max())

    cal = session.calibration(std_entry.id)
    abs_error = np.abs(np.abs(std_entry.image) - ref)
    mask = object_mask(ref)
    xs, ys, counts = decile_curve(std_entry.std, abs_error, mask)
    np.testing.assert_allclose(cal["std"], xs, rtol=1e-4)
    np.testing.assert_allclose(cal["abs_error"], ys, rtol=1e-4)
    assert cal["count"] == counts and sum(counts) == cal["n_pixels"] == int(mask.sum())
    rho = spearmanr(std_entry.std[mask], abs_error[mask]).statistic
    assert cal["spearman"] == pytest.approx(rho, abs=1e-4)
    # no samples behind this std map: the Gaussian 90% interval, |error| <= 1.645 std
    assert cal["interval"] == "Gaussian interval" and cal["n_samples"] is None
    inside = abs_error[mask] <= 1.6448536 * std_entry.std[mask]
    assert cal["coverage"] == pytest.approx(inside.mean(), abs=1e-6)
    assert cal["guide_slope"] == pytest.approx(math.sqrt(2 / math.pi))
    # cached per result, recomputed when its std map changes; nothing for a result without one
    assert session.calibration(std_entry.id) is cal
    std_entry.std = std_entry.std * 2
    again = session.calibration(std_entry.id)
    assert again is not cal and again["std"] == pytest.approx([2 * v for v in cal["std"]], rel=1e-5)
    assert session.calibration(plain.id) is None


def test_session_calibration_uses_the_student_t_interval_of_the_samples(session, registry):
    e = session.run(registry.methods["test-samples"])
    wait_for(e)
    assert e.state == "done"
    cal = session.calibration(e.id)
    ref = session.reference().astype(np.float64)
    mask = object_mask(ref)
    est, std = np.abs(e.image).astype(np.float64), e.std.astype(np.float64)
    half = student_t.ppf(0.95, 4) * math.sqrt(1 + 1 / 5) * std
    assert cal["n_samples"] == 5 and "5 samples" in cal["interval"]
    assert cal["coverage"] == pytest.approx((np.abs(ref - est) <= half)[mask].mean(), abs=1e-6)


def test_session_calibration_agrees_with_the_dsm_plugins_extras(session, tmp_path):
    """The dsm-posterior plugin scores its samples with the same functions (its curve in units of the
    reference's 99th percentile): the session's numbers for its result are the same."""
    import torch

    from workbench.methods import discover_methods
    from workbench.nn.score_net import ScoreNet, ScoreNetConfig
    from workbench.nn.weights import save_weights

    torch.manual_seed(0)
    net = ScoreNet(ScoreNetConfig(chans=[4, 8], patch=2, emb_dim=8, sigma_min=0.01, sigma_max=1.0))
    for p in net.out.parameters():  # a non-trivial denoiser (the output layer starts at zero)
        torch.nn.init.normal_(p, std=0.05)
    weights = tmp_path / "tiny_dsm.safetensors"
    save_weights(weights, net, {"training": {"steps": 0}, "command": "test"})
    method = discover_methods(entry_points=False, user_dirs=False).get("dsm-posterior")
    session.set_sampling("equispaced", acceleration=3.0, center_fraction=0.2)  # enough lines for coil maps
    e = session.run(method, {"weights": str(weights), "n_samples": 4, "n_levels": 3, "steps_per_level": 1})
    wait_for(e, 120)
    assert e.state == "done", e.error
    reported = e.result.extras["calibration"]
    cal = session.calibration(e.id)
    peak = float(np.percentile(session.reference(), 99))
    # the session reads the stored float32 std map, the plugin recomputes it from the samples in float64: a pixel
    # whose std sits on a decile edge may land in the neighbouring bin
    assert sum(cal["count"]) == sum(reported["curve"]["count"])
    assert max(abs(a - b) for a, b in zip(cal["count"], reported["curve"]["count"])) <= 2
    np.testing.assert_allclose(cal["std"], np.array(reported["curve"]["std"]) * peak, rtol=1e-2, atol=2e-6 * peak)
    np.testing.assert_allclose(cal["abs_error"], np.array(reported["curve"]["abs_error"]) * peak, rtol=5e-2,
                               atol=2e-6 * peak)
    assert cal["spearman"] == pytest.approx(reported["spearman"], abs=2e-3)
    assert cal["spearman_if_calibrated"] == pytest.approx(reported["spearman_if_calibrated"], abs=2e-3)
    assert cal["spearman_oracle"] == pytest.approx(reported["spearman_oracle"], abs=2e-3)
    assert cal["spearman_edges"] == pytest.approx(reported["spearman_edges"], abs=2e-3)
    assert cal["n_samples"] == 4 and cal["coverage"] == pytest.approx(reported["coverage_gaussian"], abs=2e-3)
    assert cal["coverage_predictive"] == pytest.approx(reported["coverage_predictive"], abs=2e-3)


# ----------------------------------------------------------------------------------------------------------------
# the compare view's calibration plot
@pytest.fixture()
def scan_file(tmp_path):
    k = phantom_kspace()
    path = tmp_path / "small.h5"
    write_fastmri(path, k, rss_reference(k[0])[None])
    return str(path)


def legend_texts(compare_view):
    return [label.text for _, label in compare_view.calibration.legend.items]


def test_calibration_plot_draws_the_sessions_numbers(window, scan_file, qtbot):
    assert window.open_path(scan_file)
    s = window.session
    s.set_sampling("equispaced", acceleration=3.0)
    std_entry = s.run(window.registry.methods["test-std"])
    plain = s.run(window.registry.methods["test-plain"])
    qtbot.waitUntil(lambda: not std_entry.active and not plain.active, timeout=20000)
    cv = window.compare_view
    window.tabs.setCurrentWidget(cv)
    qtbot.waitUntil(lambda: [c.key for c in cv.grid.columns] == ["reference", "zero-filled", std_entry.id, plain.id])
    cv.show_calibration()
    plot = cv.calibration.plot_item

    # one curve, for the result with a std map; its points are the session's numbers, which are numpy's
    assert list(cv.calibration.curves) == [std_entry.id]
    cal = s.calibration(std_entry.id)
    x, y = cv.calibration.curves[std_entry.id].getData()
    np.testing.assert_allclose(x, cal["std"])
    np.testing.assert_allclose(y, cal["abs_error"])
    ref = s.reference()
    xs, ys, _ = decile_curve(std_entry.std, np.abs(np.abs(std_entry.image) - ref), object_mask(ref))
    np.testing.assert_allclose(x, xs, rtol=1e-4)
    np.testing.assert_allclose(y, ys, rtol=1e-4)
    assert len(x) == 10

    # Spearman and coverage written in its legend entry, the calibrated-Gaussian guide dashed at slope 0.80
    rho = spearmanr(std_entry.std[object_mask(ref)], np.abs(np.abs(std_entry.image) - ref)[object_mask(ref)])
    texts = legend_texts(cv)
    entry_text = next(t for t in texts if t.startswith(std_entry.label))
    assert f"Spearman {rho.statistic:.3f}" in entry_text
    assert f"90% interval coverage {cal['coverage']:.3f}" in entry_text and "Gaussian interval" in entry_text
    assert not any(t.startswith(plain.label) for t in texts)
    guide = [item for item in plot.listDataItems() if "calibrated Gaussian" in (item.name() or "")]
    assert len(guide) == 1
    gx, gy = guide[0].getData()
    assert gx[0] == 0 and gy[0] == 0 and gy[-1] / gx[-1] == pytest.approx(math.sqrt(2 / math.pi))
    assert gx[-1] >= max(x)
    from PyQt6 import QtCore

    assert guide[0].opts["pen"].style() == QtCore.Qt.PenStyle.DashLine
    assert "image units" in plot.getAxis("bottom").labelText
    assert "image units" in plot.getAxis("left").labelText
    assert cv.calibration.status.startswith("Mean |error| against mean std")

    # only the result without a std map shown: a clear "no std map" state, no points
    cv.set_shown(std_entry.id, False)
    qtbot.waitUntil(lambda: std_entry.id not in [c.key for c in cv.grid.columns])
    assert cv.calibration.curves == {}
    assert cv.calibration.status.startswith("No std map")
    assert cv.calibration.title_label.text.startswith("No std map")
    assert not plot.listDataItems() and not legend_texts(cv)
