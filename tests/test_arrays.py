"""workbench.arrays against independent definitions (tests/numpy_reference.py: FFT convention, centre crop)."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from numpy_reference import np_crop, np_fft2c, np_ifft2c
from workbench.arrays import LRUCache, center_crop, center_pad, fft2c_np, fit_shape, ifft2c_np, jsonable, rss_np
from workbench.physics.fft import fft2c, ifft2c, rss


@pytest.mark.parametrize("hw", [(8, 6), (7, 9), (16, 16)])
@pytest.mark.parametrize("out", [(4, 4), (3, 5), (1, 1)])
def test_center_crop_matches_reference_for_numpy_and_torch(hw, out):
    x = np.arange(2 * hw[0] * hw[1], dtype=np.float32).reshape(2, *hw)
    np.testing.assert_array_equal(center_crop(x, out), np_crop(x, out))
    np.testing.assert_array_equal(center_crop(torch.from_numpy(x), out).numpy(), np_crop(x, out))
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, (hw[0] + 1, hw[1]))


@pytest.mark.parametrize("hw,out", [((4, 4), (8, 6)), ((3, 5), (7, 9)), ((5, 2), (5, 3))])
def test_center_pad_is_inverse_of_crop_and_zero_outside(hw, out):
    x = (np.arange(hw[0] * hw[1]) + 1).reshape(hw).astype(np.complex64)
    for a in (x, torch.from_numpy(x)):
        p = center_pad(a, out)
        p_np = p if isinstance(p, np.ndarray) else p.numpy()
        assert p_np.shape == out and p_np.dtype == np.complex64
        np.testing.assert_array_equal(np_crop(p_np, hw), x)
        assert np.count_nonzero(p_np) == x.size  # the rest is zero
        assert p_np[out[0] // 2, out[1] // 2] == x[hw[0] // 2, hw[1] // 2]  # the centre stays the centre
    with pytest.raises(ValueError, match="cannot pad"):
        center_pad(x, (hw[0] - 1, hw[1]))


def test_fit_shape_crops_and_pads_each_axis():
    x = np.arange(6 * 4, dtype=np.float64).reshape(6, 4) + 1
    y = fit_shape(x, (4, 7))  # rows cropped, columns padded
    assert y.shape == (4, 7)
    np.testing.assert_array_equal(y[:, 7 // 2 - 4 // 2 : 7 // 2 - 4 // 2 + 4], np_crop(x, (4, 4)))
    np.testing.assert_array_equal(fit_shape(torch.from_numpy(x), (4, 7)).numpy(), y)
    np.testing.assert_array_equal(fit_shape(y, (6, 4))[1:5], np_crop(x, (4, 4)))  # back: pads rows, crops columns
    assert fit_shape(y, (6, 4))[0].sum() == 0


@pytest.mark.parametrize("shape", [(3, 8, 6), (2, 7, 5)])
def test_numpy_fft_pair_matches_the_convention_and_the_torch_fft(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex128)
    np.testing.assert_allclose(fft2c_np(x), np_fft2c(x), atol=1e-12)
    np.testing.assert_allclose(ifft2c_np(x), np_ifft2c(x), atol=1e-12)
    np.testing.assert_allclose(fft2c_np(x, workers=-1), fft2c(torch.from_numpy(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(ifft2c_np(fft2c_np(x)), x, atol=1e-12)
    assert fft2c_np(x.astype(np.complex64)).dtype == np.complex64


def test_rss_np_matches_torch_rss():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 4, 5, 3)) + 1j * rng.standard_normal((2, 4, 5, 3))).astype(np.complex64)
    r = rss_np(x)
    assert r.shape == (2, 5, 3) and r.dtype == np.float32
    np.testing.assert_allclose(r, rss(torch.from_numpy(x)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rss_np(x.real, axis=1), np.sqrt((x.real**2).sum(1)), rtol=1e-6)


def test_jsonable_gives_plain_json():
    value = {1: (np.float32(0.5), np.int64(3)), "a": np.arange(3), "t": torch.tensor([1.0, float("nan")]),
             "inf": float("inf"), "b": b"x\xff", "o": object, "n": None, "big": torch.zeros(5, 5)}
    out = jsonable(value)
    json.dumps(out, allow_nan=False)
    assert out["1"] == [0.5, 3] and out["a"] == [0, 1, 2] and out["t"] == [1.0, None] and out["inf"] is None
    assert out["b"] == "x\ufffd" and out["o"] == str(object) and out["n"] is None and len(out["big"]) == 5
    short = jsonable(value, nonfinite=str, max_elements=16)
    assert short["inf"] == "inf" and short["t"] == [1.0, "nan"] and short["big"] == "<tensor (5, 5)>"


def test_lru_cache_evicts_least_recently_used_and_stays_bounded():
    cache = LRUCache(3)
    for k in "abc":
        cache.put(k, k.upper())
    assert cache.get("a") == "A"  # 'a' is now the most recently used
    cache.put("d", "D")
    assert cache.keys() == ["c", "a", "d"] and "b" not in cache and cache.get("b", 0) == 0
    assert cache.get_or_create("c", lambda: pytest.fail("hit must not create")) == "C"
    calls = []
    assert cache.get_or_create("e", lambda: calls.append(1) or "E") == "E" and calls == [1]
    assert cache.keys() == ["d", "c", "e"] and len(cache) == 3
    for i in range(50):
        cache.put(i, i)
        assert len(cache) <= 3
    cache.discard(lambda k: k == 49)
    assert cache.keys() == [47, 48]
    with pytest.raises(ValueError):
        LRUCache(0)


def test_lru_cache_creates_once_across_threads():
    cache, calls = LRUCache(None), []

    def create():
        calls.append(1)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_create("k", create))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_import_does_not_import_torch():
    code = "import sys, workbench.arrays; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
