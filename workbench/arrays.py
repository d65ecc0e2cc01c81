"""Small array helpers shared by the library, the CLI, the app and the benchmarks.

- centre crop / zero pad of the last two axes, for numpy arrays and torch tensors alike (fastMRI's convention:
  index ``N // 2`` stays the centre);
- the project's centred orthonormal 2D FFT on numpy arrays (``fftshift(fft2(ifftshift(x), norm="ortho"))`` over
  the last two axes: the same convention as the torch :func:`workbench.physics.fft.fft2c`) and the root sum of
  squares over coils on numpy arrays (torch: :func:`workbench.physics.fft.rss`);
- :func:`jsonable`: parameters, metrics and summaries as plain JSON values;
- :class:`LRUCache`: one small thread-safe least-recently-used cache.

Importing this module does not import torch (``workbench info`` starts without it): tensors are handled by duck
typing, and recognised as tensors only when torch has already been imported by whoever made them.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = [
    "center_crop",
    "center_pad",
    "fit_shape",
    "fft2c_np",
    "ifft2c_np",
    "rss_np",
    "jsonable",
    "LRUCache",
]

_AXES = (-2, -1)


# ----------------------------------------------------------------------------------------------------------------
# centre crop / pad (numpy or torch)
def center_crop(x, shape: tuple[int, int]):
    """Crop the last two axes of ``x`` (``[..., H, W]`` numpy array or torch tensor) to ``shape = (h, w)`` around
    the centre: the result is ``x[..., H//2 - h//2 : ..., W//2 - w//2 : ...]``, a view ``[..., h, w]``.

    Raises ``ValueError`` if ``shape`` is larger than ``[H, W]`` along an axis (see :func:`fit_shape`)."""
    h, w = x.shape[-2:]
    ch, cw = int(shape[0]), int(shape[1])
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to larger {tuple(shape)}")
    top, left = h // 2 - ch // 2, w // 2 - cw // 2
    return x[..., top : top + ch, left : left + cw]


def _zeros_like_shape(x, shape: tuple[int, ...]):
    if isinstance(x, np.ndarray):
        return np.zeros(shape, dtype=x.dtype)
    return x.new_zeros(shape)  # torch tensor: same dtype and device


def center_pad(x, shape: tuple[int, int]):
    """Zero-pad the last two axes of ``x`` (``[..., H, W]`` numpy array or torch tensor) to ``shape = (h, w)``
    so that index ``N//2`` stays the centre: a new ``[..., h, w]`` array, the inverse of :func:`center_crop`.

    Raises ``ValueError`` if ``shape`` is smaller than ``[H, W]`` along an axis (see :func:`fit_shape`)."""
    h, w = x.shape[-2:]
    ph, pw = int(shape[0]), int(shape[1])
    if ph < h or pw < w:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} to smaller {tuple(shape)}")
    out = _zeros_like_shape(x, (*x.shape[:-2], ph, pw))
    top, left = ph // 2 - h // 2, pw // 2 - w // 2
    out[..., top : top + h, left : left + w] = x
    return out


def fit_shape(x, shape: tuple[int, int]):
    """Centre-crop or zero-pad each of the last two axes of ``x`` (``[..., H, W]`` numpy array or torch tensor)
    to ``shape = (h, w)``, independently per axis: ``[..., h, w]`` (index ``N//2`` stays the centre). Returns
    ``x`` itself (or a view of it) where no padding is needed."""
    h, w = x.shape[-2:]
    ph, pw = max(int(shape[0]), h), max(int(shape[1]), w)
    if (ph, pw) != (h, w):
        x = center_pad(x, (ph, pw))
    return center_crop(x, shape)


# ----------------------------------------------------------------------------------------------------------------
# centred FFT and root sum of squares on numpy arrays
def _centred_np(x: np.ndarray, transform, workers: int | None) -> np.ndarray:
    extra = {} if workers is None else {"workers": workers}
    return np.fft.fftshift(transform(np.fft.ifftshift(x, axes=_AXES), norm="ortho", **extra), axes=_AXES)


def fft2c_np(x: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Centred orthonormal forward FFT over the last two axes of a numpy array ``[..., H, W]``:
    ``fftshift(fft2(ifftshift(x), norm="ortho"))`` (torch: :func:`workbench.physics.fft.fft2c`). Computed by
    numpy's FFT, or by ``scipy.fft`` with ``workers`` threads (``-1``: all cores) when ``workers`` is given (scipy's
    FFT costs 0.3 s of imports, which a reader opening a file should not pay); complex64 in gives complex64 out."""
    if workers is None:
        return _centred_np(x, np.fft.fft2, None)
    import scipy.fft

    return _centred_np(x, scipy.fft.fft2, workers)


def ifft2c_np(k: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Centred orthonormal inverse FFT over the last two axes of a numpy array ``[..., H, W]``, the exact inverse
    of :func:`fft2c_np` (torch: :func:`workbench.physics.fft.ifft2c`); ``workers`` as there."""
    if workers is None:
        return _centred_np(k, np.fft.ifft2, None)
    import scipy.fft

    return _centred_np(k, scipy.fft.ifft2, workers)


def rss_np(x: np.ndarray, axis: int = -3) -> np.ndarray:
    """Root sum of squares over the coil axis of a numpy array (default ``[..., C, H, W] -> [..., H, W]``);
    complex input gives the real dtype of its precision (complex64 -> float32). Torch:
    :func:`workbench.physics.fft.rss`."""
    if np.iscomplexobj(x):
        return np.sqrt((x.real**2 + x.imag**2).sum(axis))
    return np.sqrt((x**2).sum(axis))


# ----------------------------------------------------------------------------------------------------------------
# JSON
def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def jsonable(x: Any, *, nonfinite: Callable[[float], Any] | None = None, max_elements: int | None = None) -> Any:
    """``x`` as plain JSON values: dicts (keys as strings), lists (from lists and tuples), numpy scalars, numpy
    arrays and torch tensors as Python numbers and nested lists, bytes as UTF-8 text, ``None``, bools, ints,
    floats and strings as they are, anything else as ``str(x)``.

    A non-finite float becomes ``None`` (JSON has no NaN), or ``nonfinite(value)`` if given. Arrays and tensors
    with more than ``max_elements`` elements (if given) become a short text ``"<tensor (shape)>"``."""
    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): convert(item) for k, item in v.items()}
        if isinstance(v, (list, tuple)):
            return [convert(item) for item in v]
        if isinstance(v, np.generic):
            return convert(v.item())
        if isinstance(v, np.ndarray) or _is_tensor(v):
            if max_elements is not None and (v.size if isinstance(v, np.ndarray) else v.numel()) > max_elements:
                return f"<tensor {tuple(v.shape)}>"
            return convert(v.tolist() if isinstance(v, np.ndarray) else v.detach().cpu().tolist())
        if isinstance(v, float) and not math.isfinite(v):
            return None if nonfinite is None else nonfinite(v)
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    return convert(x)


# ----------------------------------------------------------------------------------------------------------------
# cache
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A thread-safe mapping that keeps at most ``maxsize`` entries (``None``: unbounded), evicting the least
    recently used (read or written) first.

    >>> cache = LRUCache(2)
    >>> cache.get_or_create("a", lambda: 1)
    1
    """

    def __init__(self, maxsize: int | None):
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 or None, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        # re-entrant: a factory run under the lock may itself use the cache
        self._lock = threading.RLock()

    def get(self, key: K, default: Any = None) -> V | Any:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` as the most recently used, evicting the oldest beyond ``maxsize``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while self.maxsize is not None and len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        """The value of ``key``; on a miss ``create()`` is called (under the cache's lock, so that two threads do
        not build the same costly value twice) and its result stored."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = create()
            self.put(key, value)
            return value

    def discard(self, predicate: Callable[[K], bool]) -> None:
        """Remove every entry whose key satisfies ``predicate`` (e.g. older versions of a reloaded file)."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[K]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())
