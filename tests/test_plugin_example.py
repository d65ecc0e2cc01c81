"""The example plugin of docs/plugins.md (examples/plugins/landweber.py), installed as a drop-in file and run
end to end, against an independent NumPy Landweber iteration; broken plugins beside it stay contained."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.jobs import JobQueue, JobState
from workbench.methods import MethodError, discover_methods, safe_run
from workbench.problem import Problem
from workbench.sampling import Sampling
from workbench.scan import scan_from_arrays
from numpy_reference import np_fft2c, np_ifft2c  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "landweber.py"
H, W, C = 24, 20, 3


# --------------------------------------------------------------------------------------------------------
# data: a smooth object, smooth normalised coil maps, a random column mask with a fully sampled centre
def phantom_maps_mask(seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    obj = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1) * (1.0 + 0.5 * (xx > 0.1)) * np.exp(1j * 0.6 * yy)
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)) * np.exp(1j * (cx * xx + cy * yy))
                     for cx, cy in [(-1, -1), (1, -0.5), (0, 1.2)]])
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    cols = rng.random(W) < 0.35
    cols[W // 2 - 2: W // 2 + 2] = True
    mask = np.broadcast_to(cols, (H, W)).copy()
    return obj.astype(np.complex64), maps.astype(np.complex64), mask


def np_forward(x, maps, mask):
    """Reference SENSE model written directly in NumPy: M F (S x)."""
    return mask * np_fft2c(maps * x)


def np_adjoint(k, maps, mask):
    return (np.conj(maps) * np_ifft2c(mask * k)).sum(0)


def make_problem(recon_shape=(H, W)):
    """The real Problem, built the way the app builds it: a Scan from arrays and a Sampling from a mask, with
    the maps given (so that the NumPy reference model uses exactly the same ones)."""
    obj, maps, mask = phantom_maps_mask()
    rng = np.random.default_rng(1)
    kspace = np_fft2c(maps * obj) + 0.01 * (rng.standard_normal((C, H, W)) + 1j * rng.standard_normal((C, H, W)))
    scan = scan_from_arrays(kspace.astype(np.complex64), recon_shape=recon_shape)
    problem = Problem.from_scan(scan, 0, sampling=Sampling.from_mask(mask), maps=maps)
    return problem, maps, mask


# --------------------------------------------------------------------------------------------------------
BROKEN_SYNTAX = "from workbench.methods import Method\nclass Oops(Method)\n    name = 'oops'\n"
RAISES_IN_RUN = textwrap.dedent('''
    from workbench.methods import Method, Capabilities

    def inner_step():
        raise RuntimeError("explode: singular matrix")

    class Explode(Method):
        name = "explode"
        capabilities = Capabilities(cartesian=True, noncartesian=True)

        def run(self, problem, params, ctx):
            inner_step()
''')


@pytest.fixture
def plugin_dir(tmp_path):
    d = tmp_path / "my-plugins"
    d.mkdir()
    shutil.copy(EXAMPLE, d / "landweber.py")
    (d / "broken_syntax.py").write_text(BROKEN_SYNTAX)
    (d / "explode.py").write_text(RAISES_IN_RUN)
    return d


def test_landweber_plugin_end_to_end(plugin_dir):
    reg = discover_methods([plugin_dir], entry_points=False, builtin=False, user_dirs=False)
    assert set(reg.names()) == {"landweber", "explode"}
    (err,) = reg.errors
    assert err.source.endswith("broken_syntax.py") and err.message.startswith("SyntaxError")

    method = reg.get("landweber")
    assert [s.name for s in method.param_specs()] == ["n_iter", "step"]
    problem, maps, mask = make_problem()
    n_iter, step = 25, 1.5
    result = safe_run(method, problem, {"n_iter": str(n_iter), "step": str(step)})
    x = result.image.numpy()
    assert x.shape == (H, W) and result.method == "landweber" and result.version == "1.0"
    assert len(result.history) == n_iter
    assert torch.equal(result.mask, torch.from_numpy(mask)) and result.provenance["slice"] == 0  # reproducible

    # ||A||^2 from the dense matrix of the NumPy model: the power-iteration estimate approaches it from below
    basis = np.eye(H * W, dtype=np.complex64).reshape(H * W, H, W)
    dense = np.stack([np_forward(b, maps, mask).ravel() for b in basis], axis=1)
    norm2 = np.linalg.eigvalsh(dense.conj().T @ dense)[-1]  # largest eigenvalue of A^H A
    est = result.chosen["norm_A_squared"]
    assert 0.95 * norm2 <= est <= norm2 * (1 + 1e-4)

    # independent Landweber in NumPy with the same step size
    tau = result.chosen["step_size"]
    assert tau == pytest.approx(step / est)
    y = problem.y.numpy()
    ref = np.zeros((H, W), np.complex128)
    for _ in range(n_iter):
        ref = ref - tau * np_adjoint(np_forward(ref, maps, mask) - y, maps, mask)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-4

    # it reduces the data residual compared with zero filling, monotonically (step < 2/||A||^2)
    res_lw = np.linalg.norm(np_forward(x, maps, mask) - y)
    res_zf = np.linalg.norm(np_forward(problem.zero_filled().numpy(), maps, mask) - y)
    assert res_lw < 0.5 * res_zf
    residuals = [h["residual"] for h in result.history]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(residuals, residuals[1:]))
    assert residuals[-1] == pytest.approx(res_lw / np.linalg.norm(y), rel=1e-4)

    # the broken neighbour fails alone, with its traceback; landweber still runs after it
    with pytest.raises(MethodError) as info:
        safe_run(reg.get("explode"), problem)
    assert "RuntimeError: explode: singular matrix" in str(info.value)
    assert "inner_step" in info.value.traceback and "explode.py" in info.value.traceback
    again = safe_run(method, problem, {"n_iter": n_iter, "step": step})
    assert torch.equal(again.image, result.image)


def test_landweber_crops_and_runs_as_a_cancellable_job(plugin_dir):
    reg = discover_methods([plugin_dir], entry_points=False, builtin=False, user_dirs=False)
    method = reg.get("landweber")
    problem, _, _ = make_problem(recon_shape=(16, 12))
    with JobQueue("cpu", iterate_interval=0.0) as jq:
        iterates = []
        job = jq.submit(method, problem, {"n_iter": 5}, on_iterate=lambda j, im: iterates.append(im))
        assert job.wait(30) and job.state is JobState.DONE, job.error
        assert job.result.image.shape == (16, 12)
        assert len(iterates) == 5 and iterates[-1].shape == (16, 12)
        assert torch.allclose(iterates[-1], job.result.image)

        first = []

        def cancel_after_first(j):
            if j.progress > 0 and not first:
                first.append(j.progress)
                j.cancel()

        job = jq.submit(method, problem, {"n_iter": 5000}, on_progress=cancel_after_first)
        assert job.wait(30) and job.state is JobState.CANCELLED
        assert job.progress < 0.01


def test_the_guide_shows_the_example_verbatim():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```" in guide
