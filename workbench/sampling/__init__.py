"""Sampling: a Cartesian mask or a non-Cartesian trajectory (+ density compensation), with the parameters that
recreate it.

    s = make_sampling("poisson", (256, 256), acceleration=6, seed=3)
    s.mask            # torch.bool [H, W]
    s.acceleration    # effective R = samples on the grid / samples acquired
    s.save("mask.npz"); Sampling.load("mask.npz")

Kinds (``sampling_kinds()``): ``random`` and ``equispaced`` (fastMRI 1D line masks, columns), ``poisson`` and
``gaussian`` (2D variable density, for 2D slices of 3D scans), ``radial``, ``golden-radial`` and ``spiral``
(non-Cartesian). A user-drawn mask becomes a Sampling with :meth:`Sampling.from_mask`.

For non-Cartesian kinds, acceleration R means about H*W/R k-space samples (radial: ``2 max(H, W)`` samples per
spoke, ``round(H W / (R 2 max(H, W)))`` spokes; spiral: 16 interleaves by default, see
:func:`~workbench.sampling.trajectories.spiral_for_acceleration`). The density compensation ``dcf`` is computed
on first use and cached, by the method in ``params["dcf_method"]`` (:data:`DCF_METHODS`: ``"pipe-menon"``, the
default and what the trained NC-PDNet weights use, ``"voronoi"`` or, radial only, ``"ramp"``; see
:mod:`workbench.sampling.dcf`): ``make_sampling("golden-radial", (256, 256), 10, dcf_method="voronoi")``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from workbench.arrays import LRUCache
from workbench.errors import SamplingError
from workbench.sampling.dcf import (
    DCF_METHODS,
    DEFAULT_DCF_METHOD,
    check_dcf_method,
    compute_dcf,
    pipe_menon_dcf,
    ramp_dcf,
    voronoi_dcf,
)
from workbench.sampling.masks import (
    EquispacedLineMask,
    GaussianMask,
    MaskFunc,
    PoissonDiscMask,
    RandomLineMask,
    UserMask,
    _check_acceleration,
    _check_shape,
    acs_shape,
    effective_acceleration,
    mask_from_params,
)
from workbench.sampling.trajectories import (
    radial_for_acceleration,
    radial_trajectory,
    spiral_for_acceleration,
    spiral_trajectory,
)

__all__ = [
    "Sampling",
    "make_sampling",
    "sampling_kinds",
    "default_center_fraction",
    "RandomLineMask",
    "EquispacedLineMask",
    "PoissonDiscMask",
    "GaussianMask",
    "UserMask",
    "MaskFunc",
    "mask_from_params",
    "effective_acceleration",
    "acs_shape",
    "radial_trajectory",
    "spiral_trajectory",
    "pipe_menon_dcf",
    "voronoi_dcf",
    "ramp_dcf",
    "compute_dcf",
    "DCF_METHODS",
    "DEFAULT_DCF_METHOD",
    "dcf_methods_for",
]

_CARTESIAN_KINDS = ("random", "equispaced", "poisson", "gaussian")
_NONCARTESIAN_KINDS = ("radial", "golden-radial", "spiral")
_FORMAT_VERSION = 1

# extra keyword parameters each kind accepts in make_sampling (beyond acceleration, seed, center_fraction)
_KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "random": (),
    "equispaced": ("offset",),
    "poisson": ("calib", "crop_corner", "tol"),
    "gaussian": ("calib", "sigma"),
    "radial": ("n_readout", "dcf_method"),
    "golden-radial": ("n_readout", "dcf_method"),
    "spiral": ("n_interleaves", "alpha", "dcf_method"),
}


def dcf_methods_for(kind: str) -> tuple[str, ...]:
    """The density compensation methods a non-Cartesian kind accepts (the ramp is for radial kinds only);
    empty for Cartesian kinds. The first is the default."""
    if kind in ("radial", "golden-radial"):
        return DCF_METHODS
    if kind in _NONCARTESIAN_KINDS:
        return tuple(m for m in DCF_METHODS if m != "ramp")
    return ()


def sampling_kinds() -> list[str]:
    """The kinds :func:`make_sampling` knows, Cartesian first."""
    return list(_CARTESIAN_KINDS + _NONCARTESIAN_KINDS)


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairs (0.08 at 4x, 0.04 at 8x) continued as 0.32 / R."""
    return 0.32 / float(acceleration)


# ----------------------------------------------------------------------------------------------------------
# dcf cache: the same trajectory (kind + shape + params) is not recomputed when a slider returns to it
_DCF_CACHE: LRUCache[str, torch.Tensor] = LRUCache(16)


def _cache_key(kind: str, shape: tuple[int, int], params: dict[str, Any]) -> str:
    return json.dumps([kind, list(shape), params], sort_keys=True, default=str)


@dataclass(eq=False, repr=False)
class Sampling:
    """A sampling pattern on the grid ``shape`` (H, W).

    Attributes:
        kind: one of :func:`sampling_kinds` or ``"user"``.
        shape: the k-space grid (H, W) (for non-Cartesian: the NUFFT image grid).
        params: JSON-able parameters that recreate it (:meth:`to_dict` / :meth:`from_dict`).
        mask: bool ``[H, W]`` for Cartesian kinds, else None.
        trajectory: float32 ``[2, K]`` radians in [-pi, pi) for non-Cartesian kinds, else None.
        dcf: float32 ``[K]`` density compensation (non-Cartesian), computed on first access by
            :attr:`dcf_method` and cached; in units of the Cartesian k-space cell (see
            :mod:`workbench.sampling.dcf`).
    """

    kind: str
    shape: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    dcf: torch.Tensor | None = field(default=None, repr=False)

    # ---- derived properties -----------------------------------------------------------------------------
    @property
    def is_cartesian(self) -> bool:
        return self.mask is not None

    @property
    def n_samples(self) -> int:
        """Acquired k-space samples (mask entries or trajectory points)."""
        if self.mask is not None:
            return int(self.mask.sum())
        return int(self.trajectory.shape[1])

    @property
    def acceleration(self) -> float:
        """Effective R: samples on the full H x W grid / samples acquired."""
        if self.mask is not None:
            return effective_acceleration(self.mask)
        return self.shape[0] * self.shape[1] / self.n_samples

    @property
    def dcf_method(self) -> str | None:
        """How the density compensation is computed (``params["dcf_method"]``; Pipe-Menon when the parameters
        do not say, as in files saved before the choice existed); None for Cartesian masks."""
        if self.trajectory is None:
            return None
        return check_dcf_method(self.params.get("dcf_method") or DEFAULT_DCF_METHOD)

    def with_dcf_method(self, method: str) -> "Sampling":
        """The same trajectory with its density compensation computed by ``method`` (recorded in ``params``)."""
        if self.trajectory is None:
            raise SamplingError(f"{self.kind} sampling: a Cartesian mask has no density compensation")
        method = check_dcf_method(method)
        allowed = dcf_methods_for(self.kind) or DCF_METHODS
        if method not in allowed:
            raise SamplingError(f"{self.kind} sampling: density compensation {method!r} is not available "
                                f"(choose {', '.join(allowed)})")
        if method == self.dcf_method:
            return self
        return Sampling(self.kind, self.shape, {**self.params, "dcf_method": method}, trajectory=self.trajectory)

    @property
    def acs_shape(self) -> tuple[int, int] | None:
        """Largest fully sampled centred box (rows, cols) of a mask; None for trajectories."""
        return acs_shape(self.mask) if self.mask is not None else None

    def __repr__(self) -> str:
        return (f"Sampling(kind={self.kind!r}, shape={self.shape}, R={self.acceleration:.2f}, "
                f"n_samples={self.n_samples})")

    def describe(self) -> str:
        """One line for the GUI / CLI, e.g. ``"random, R = 4.02, ACS 640x26"``."""
        text = f"{self.kind}, R = {self.acceleration:.2f}"
        if self.is_cartesian:
            h, w = self.acs_shape
            return f"{text}, ACS {h}x{w}"
        return f"{text}, {self.n_samples} samples"

    def to(self, device: str | torch.device) -> "Sampling":
        """A copy with its tensors on ``device``."""
        return Sampling(
            self.kind,
            self.shape,
            dict(self.params),
            None if self.mask is None else self.mask.to(device),
            None if self.trajectory is None else self.trajectory.to(device),
            None if self._dcf is None else self._dcf.to(device),
        )

    # ---- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_mask(cls, mask: Any, shape: Sequence[int] | None = None) -> "Sampling":
        """A Sampling for a user-drawn or file-provided mask (``[H, W]``, or ``[W]`` with ``shape``)."""
        func = UserMask(mask)
        m = func(shape)
        return cls("user", tuple(m.shape), func.params(), mask=m)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (kind, shape, params) that :meth:`from_dict` turns back into the same sampling."""
        return {"format_version": _FORMAT_VERSION, "kind": self.kind, "shape": list(self.shape),
                "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | None = None) -> "Sampling":
        where = f"{path}: " if path else ""
        try:
            kind, shape, params = d["kind"], tuple(int(s) for s in d["shape"]), dict(d["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SamplingError(f"{where}not a sampling description (missing or bad {exc})") from None
        if kind == "user" or kind in _CARTESIAN_KINDS:
            mask = mask_from_params({**params, "kind": params.get("kind", kind)})
            return cls(kind, shape, params, mask=mask)
        try:
            if kind in ("radial", "golden-radial"):
                traj = radial_trajectory(params["n_spokes"], params["n_readout"], golden=bool(params["golden"]))
            elif kind == "spiral":
                traj = spiral_trajectory(params["n_interleaves"], params["n_samples"], shape,
                                         alpha=params["alpha"], n_turns=params["n_turns"])
            else:
                raise SamplingError(
                    f"{where}unknown sampling kind {kind!r}; known: {', '.join(sampling_kinds())}, user"
                )
        except KeyError as exc:
            raise SamplingError(f"{where}{kind} sampling parameters lack {exc}") from None
        return cls(kind, shape, params, trajectory=traj)

    # ---- files -------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, inputs: tuple = ()) -> None:
        """``.npz``: the arrays (mask or trajectory + dcf) and the JSON description; ``.json``: the description
        only (the pattern is regenerated exactly on load). Written atomically, never over one of ``inputs``
        (:mod:`workbench.atomic`)."""
        from workbench.atomic import atomic_open

        path = os.fspath(path)
        description = json.dumps(self.to_dict())
        if path.endswith(".json"):
            with atomic_open(path, "w", inputs=inputs, encoding="utf-8") as f:
                f.write(description)
            return
        if not path.endswith(".npz"):
            raise SamplingError(f"{path}: sampling files are .npz or .json")
        arrays: dict[str, np.ndarray] = {"description": np.array(description)}
        if self.mask is not None:
            arrays["mask"] = self.mask.cpu().numpy()
        if self.trajectory is not None:
            arrays["trajectory"] = self.trajectory.cpu().numpy()
            arrays["dcf"] = self.dcf.cpu().numpy()
        with atomic_open(path, "wb", inputs=inputs) as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sampling":
        path = os.fspath(path)
        if not os.path.exists(path):
            raise SamplingError(f"{path}: no such file")
        try:
            if path.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    return cls.from_dict(json.load(f), path)
            with np.load(path, allow_pickle=False) as z:
                d = json.loads(str(z["description"]))
                arrays = {k: z[k] for k in ("mask", "trajectory", "dcf") if k in z.files}
        except SamplingError:
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise SamplingError(f"{path}: not a readable sampling file ({exc})") from None
        try:
            kind, shape, params = d["kind"], tuple(int(s) for s in d["shape"]), dict(d["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SamplingError(f"{path}: sampling description is damaged ({exc})") from None
        mask = arrays.get("mask")
        traj = arrays.get("trajectory")
        dcf = arrays.get("dcf")
        if mask is not None and mask.shape != shape:
            raise SamplingError(f"{path}: mask shape {mask.shape} does not match the grid {shape}")
        bad_dcf = traj is not None and dcf is not None and dcf.shape != traj.shape[1:]
        if traj is not None and (traj.ndim != 2 or traj.shape[0] != 2 or bad_dcf):
            raise SamplingError(f"{path}: trajectory / dcf shapes are inconsistent")
        if mask is None and traj is None:
            raise SamplingError(f"{path}: no mask or trajectory in the file")
        return cls(
            kind,
            shape,
            params,
            mask=None if mask is None else torch.from_numpy(mask.astype(bool)),
            trajectory=None if traj is None else torch.from_numpy(traj.astype(np.float32)),
            dcf=None if dcf is None else torch.from_numpy(dcf.astype(np.float32)),
        )


def _get_dcf(self: Sampling) -> torch.Tensor | None:
    if self._dcf is None and self.trajectory is not None:
        key = _cache_key(self.kind, self.shape, self.params)
        cached = _DCF_CACHE.get(key)
        if cached is None or cached.shape[0] != self.trajectory.shape[1]:
            cached = compute_dcf(self.trajectory.cpu(), self.shape, self.dcf_method)
            _DCF_CACHE.put(key, cached)
        self._dcf = cached.to(self.trajectory.device)
    return self._dcf


def _set_dcf(self: Sampling, value: torch.Tensor | None) -> None:
    self._dcf = value


# `dcf` is a dataclass field (so Sampling(..., dcf=w) works) backed by a lazy property: the generated __init__
# assigns through the setter, and the first read computes the weights (by ``dcf_method``).
Sampling.dcf = property(_get_dcf, _set_dcf, doc="float32 [K] density compensation (lazy, cached).")


# ----------------------------------------------------------------------------------------------------------
def make_sampling(
    kind: str,
    shape: Sequence[int],
    acceleration: float,
    *,
    seed: int = 0,
    center_fraction: float | None = None,
    **params: Any,
) -> Sampling:
    """Make a sampling pattern of ``kind`` for the grid ``shape`` = (H, W) at acceleration R.

    Args:
        kind: one of :func:`sampling_kinds`.
        shape: the k-space grid (H, W); 1D masks select columns (W).
        acceleration: R >= 1. Masks: nominal R (fastMRI semantics for the line masks, within ``tol`` for
            Poisson disc, exact up to rounding for Gaussian). Non-Cartesian: about H*W/R samples.
        seed: makes a mask reproducible (the same seed gives fastMRI's mask for random/equispaced);
            trajectories are deterministic and ignore it.
        center_fraction: line masks: fraction of centre columns (default :func:`default_center_fraction`);
            2D masks: the calibration box is ``round(H * f) x round(W * f)`` (default 24 x 24 unless
            ``calib`` is given). Ignored for non-Cartesian kinds (their centre is always densely sampled).
        params: per kind: equispaced ``offset``; poisson ``calib``, ``crop_corner``, ``tol``; gaussian ``calib``,
            ``sigma``; radial / golden-radial ``n_readout``; spiral ``n_interleaves`` (16), ``alpha`` (1.0).
            Non-Cartesian kinds: ``dcf_method`` (:func:`dcf_methods_for`: ``"pipe-menon"``, the default,
            ``"voronoi"``, or for radial kinds ``"ramp"``), recorded in the Sampling's ``params``.
    """
    if kind not in _KIND_PARAMS:
        raise SamplingError(f"unknown sampling kind {kind!r}; known: {', '.join(sampling_kinds())}")
    unknown = sorted(set(params) - set(_KIND_PARAMS[kind]))
    if unknown:
        allowed = ", ".join(_KIND_PARAMS[kind]) or "none"
        raise SamplingError(f"{kind} sampling: unknown parameter(s) {', '.join(unknown)} (accepted: {allowed})")
    h, w = _check_shape(shape, f"{kind} sampling")
    acceleration = _check_acceleration(acceleration, f"{kind} sampling")
    if center_fraction is not None and kind in _CARTESIAN_KINDS:
        if not 0 <= float(center_fraction) < 1:
            raise SamplingError(f"{kind} sampling: center fraction must be in [0, 1), got {center_fraction!r}")
    shape = (h, w)
    if kind in _NONCARTESIAN_KINDS:
        dcf_method = check_dcf_method(params.get("dcf_method") or DEFAULT_DCF_METHOD)
        if dcf_method not in dcf_methods_for(kind):
            raise SamplingError(f"{kind} sampling: the {dcf_method} density compensation is for radial "
                                f"trajectories (choose {', '.join(dcf_methods_for(kind))})")

    if kind in ("random", "equispaced"):
        cf = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
        if kind == "random":
            func: MaskFunc = RandomLineMask([cf], [acceleration])
        else:
            func = EquispacedLineMask([cf], [acceleration], offset=params.get("offset"))
        mask = func(shape, seed=seed)
        return Sampling(kind, shape, func.params(), mask=mask)
    if kind in ("poisson", "gaussian"):
        if center_fraction is not None and "calib" not in params:
            params["calib"] = (round(h * float(center_fraction)), round(w * float(center_fraction)))
        cls = PoissonDiscMask if kind == "poisson" else GaussianMask
        func = cls(acceleration, **params)
        mask = func(shape, seed=seed)
        return Sampling(kind, shape, func.params(), mask=mask)
    if kind in ("radial", "golden-radial"):
        golden = kind == "golden-radial"
        traj = radial_for_acceleration(shape, acceleration, golden=golden, n_readout=params.get("n_readout"))
        n_readout = params.get("n_readout") or 2 * max(h, w)
        p = {"n_spokes": traj.shape[1] // n_readout, "n_readout": n_readout, "golden": golden,
             "acceleration": acceleration, "dcf_method": dcf_method}
        return Sampling(kind, shape, p, trajectory=traj)
    # spiral
    n_il = params.get("n_interleaves", 16)
    alpha = params.get("alpha", 1.0)
    traj = spiral_for_acceleration(shape, acceleration, n_interleaves=n_il, alpha=alpha)
    p = {"n_interleaves": n_il, "n_samples": traj.shape[1] // n_il, "alpha": alpha,
         "n_turns": max(h, w) / (2.0 * acceleration * n_il), "acceleration": acceleration,
         "dcf_method": dcf_method}
    return Sampling(kind, shape, p, trajectory=traj)
