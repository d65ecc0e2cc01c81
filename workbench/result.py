"""The Result of one reconstruction: the image plus everything needed to judge and reproduce it.

Shapes: ``image`` is complex64 ``[h, w]`` on the problem's ``recon_shape`` (methods reconstruct on the grid and
crop with ``problem.crop(x)``, so every result of a scan is directly comparable with the reference);
``std`` is float32 ``[h, w]``; ``samples`` is complex64 ``[N, h, w]``.

A Result is saved as one HDF5 file (:meth:`Result.save`, :meth:`Result.load`)::

    /image        complex64 [h, w]
    /std          float32 [h, w]        (optional)
    /samples      complex64 [N, h, w]   (optional)
    /mask         uint8 [H, W]          (optional: the Cartesian sampling mask)
    /trajectory   float32 [2, K]        (optional: the non-Cartesian trajectory, radians)
    /extras/NAME  arrays from ``extras`` (optional)
    /meta         JSON text: format, method, version, params, chosen, history, device, time_s, provenance,
                  the JSON-able part of extras, workbench version
    attributes    format, format_version, method, version (for h5ls)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "RESULT_FORMAT",
    "RESULT_FORMAT_VERSION",
    "Result",
]

RESULT_FORMAT = "mri-workbench-result"
RESULT_FORMAT_VERSION = 1


def _as_tensor(x: Any, dtype: torch.dtype, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Result.{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if dtype.is_complex and not x.is_complex():
        x = x.to(torch.float32)
    elif not dtype.is_complex and x.is_complex():
        raise TypeError(f"Result.{what} must be real, got {x.dtype}")
    return x.to(dtype)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _json_serialisable(value: Any) -> bool:
    """Whether json.dumps takes ``value`` as it is (a predicate; arrays.jsonable converts)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class Result:
    """One reconstruction.

    Attributes:
        image: complex64 ``[h, w]`` on ``recon_shape`` (see the module docstring).
        method, version: the plugin's name and version (filled by ``safe_run`` when the method leaves them empty).
        params: the parameter values used, as a plain dict (filled by ``safe_run``).
        std: optional float32 ``[h, w]`` pixel-wise posterior standard deviation (uncertainty map).
        samples: optional complex64 ``[N, h, w]`` posterior samples.
        history: one dict per iteration, e.g. ``{"iter": 3, "objective": 1.2, "residual": 0.04, "time": 0.31}``
            (``time`` in seconds since the start of ``run``).
        device: where it ran (``"cpu"``, ``"cuda:0"``), filled by ``safe_run``.
        time_s: wall-clock seconds of ``run`` (filled by ``safe_run`` when left NaN).
        chosen: hyper-parameters the method chose itself, e.g. ``{"lam_auto": 0.003}``.
        extras: anything else the method wants to report. Arrays/tensors are stored as HDF5 datasets, other
            JSON-able values in the metadata; the rest is dropped on save.
        mask: the Cartesian sampling mask ``[H, W]`` bool, filled from the problem by ``safe_run``.
        trajectory: the non-Cartesian trajectory ``[2, K]`` float32 radians, filled from the problem.
        provenance: where the data came from (scan file, slice, sampling parameters, maps method), filled by
            whoever built the Problem, so that the result can be reproduced.
    """

    image: torch.Tensor
    method: str = ""
    version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = ""
    time_s: float = math.nan
    chosen: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = _as_tensor(self.image, torch.complex64, "image")
        if self.image.dim() != 2:
            raise ValueError(f"Result.image must be [h, w], got shape {tuple(self.image.shape)}")
        shape = tuple(self.image.shape)
        if self.std is not None:
            self.std = _as_tensor(self.std, torch.float32, "std")
            if tuple(self.std.shape) != shape:
                raise ValueError(f"Result.std has shape {tuple(self.std.shape)}, expected the image shape {shape}")
        if self.samples is not None:
            self.samples = _as_tensor(self.samples, torch.complex64, "samples")
            if self.samples.dim() != 3 or tuple(self.samples.shape[1:]) != shape:
                raise ValueError(f"Result.samples has shape {tuple(self.samples.shape)}, expected [N, {shape[0]}, "
                                 f"{shape[1]}]")
        if self.mask is not None:
            self.mask = _as_tensor(self.mask, torch.bool, "mask")
        if self.trajectory is not None:
            self.trajectory = _as_tensor(self.trajectory, torch.float32, "trajectory")
        self.history = [dict(h) for h in self.history]

    # ---------------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    def magnitude(self) -> torch.Tensor:
        """``|image|`` as float32 ``[h, w]`` (what metrics and views use)."""
        return self.image.abs()

    def cpu(self) -> "Result":
        """Detach every tensor and move it to the CPU (in place; returns self)."""
        for name in ("image", "std", "samples", "mask", "trajectory"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.detach().cpu())
        return self

    def to_json_summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no arrays): what ``workbench recon --json`` prints."""
        last = self.history[-1] if self.history else None
        d: dict[str, Any] = {
            "method": self.method,
            "version": self.version,
            "device": self.device,
            "time_s": None if math.isnan(self.time_s) else round(float(self.time_s), 4),
            "params": dict(self.params),
            "chosen": dict(self.chosen),
            "image_shape": list(self.shape),
            "iterations": len(self.history),
            "final": last,
            "has_std": self.std is not None,
            "n_samples": 0 if self.samples is None else int(self.samples.shape[0]),
            "extras": {k: v for k, v in self.extras.items()
                       if not isinstance(v, (torch.Tensor, np.ndarray)) and _json_serialisable(v)},
        }
        if self.provenance:
            d["provenance"] = dict(self.provenance)
        return d

    # --- HDF5 ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, mask: Any = None, trajectory: Any = None,
             inputs: tuple = ()) -> None:
        """Write the result to an HDF5 file (layout in the module docstring). ``mask``/``trajectory`` override
        the stored sampling (e.g. when the Result came without it). The write is atomic and never replaces one
        of ``inputs`` (:mod:`workbench.atomic`; WriteError)."""
        import h5py

        from workbench import __version__
        from workbench.atomic import atomic_path

        mask = self.mask if mask is None else _as_tensor(mask, torch.bool, "mask")
        trajectory = self.trajectory if trajectory is None else _as_tensor(trajectory, torch.float32, "trajectory")
        json_extras = {}
        array_extras = {}
        for k, v in self.extras.items():
            if isinstance(v, (torch.Tensor, np.ndarray)):
                array_extras[k] = _to_numpy(v) if isinstance(v, torch.Tensor) else v
            elif _json_serialisable(v):
                json_extras[k] = v
        meta = {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "workbench_version": __version__,
            "method": self.method,
            "version": self.version,
            "params": self.params,
            "chosen": self.chosen,
            "history": self.history,
            "device": self.device,
            "time_s": self.time_s,
            "provenance": self.provenance,
            "extras": json_extras,
        }
        with atomic_path(path, inputs=inputs) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = RESULT_FORMAT
            f.attrs["format_version"] = RESULT_FORMAT_VERSION
            f.attrs["method"] = self.method
            f.attrs["version"] = self.version
            f.create_dataset("image", data=_to_numpy(self.image))
            if self.std is not None:
                f.create_dataset("std", data=_to_numpy(self.std), compression="gzip")
            if self.samples is not None:
                f.create_dataset("samples", data=_to_numpy(self.samples), compression="gzip")
            if mask is not None:
                f.create_dataset("mask", data=_to_numpy(mask).astype(np.uint8), compression="gzip")
            if trajectory is not None:
                f.create_dataset("trajectory", data=_to_numpy(trajectory), compression="gzip")
            if array_extras:
                g = f.create_group("extras")
                for k, v in array_extras.items():
                    g.create_dataset(k, data=v)
            # A dataset, not an attribute: attributes are limited to 64 KiB and histories can be longer.
            f.create_dataset("meta", data=json.dumps(meta, default=str))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """Read a file written by :meth:`save`. Raises CorruptFileError when it is not a workbench result."""
        import h5py

        from workbench.errors import CorruptFileError

        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise CorruptFileError(path, f"cannot open as HDF5 ({exc})") from exc
        with f:
            if f.attrs.get("format") != RESULT_FORMAT or "image" not in f or "meta" not in f:
                raise CorruptFileError(path, "not a workbench result file (no 'image'/'meta' or wrong format tag)")
            version = int(f.attrs.get("format_version", 0))
            if version > RESULT_FORMAT_VERSION:
                raise CorruptFileError(path, f"result format version {version} is newer than this workbench "
                                             f"supports ({RESULT_FORMAT_VERSION})")
            raw = f["meta"][()]
            meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)

            def opt(name: str) -> torch.Tensor | None:
                return torch.from_numpy(np.asarray(f[name][()])) if name in f else None

            extras = dict(meta.get("extras", {}))
            if "extras" in f:
                for k in f["extras"]:
                    extras[k] = np.asarray(f["extras"][k][()])
            mask = opt("mask")
            return cls(
                image=torch.from_numpy(np.asarray(f["image"][()])),
                method=meta.get("method", ""),
                version=meta.get("version", ""),
                params=meta.get("params", {}),
                std=opt("std"),
                samples=opt("samples"),
                history=meta.get("history", []),
                device=meta.get("device", ""),
                time_s=float(meta["time_s"]) if meta.get("time_s") is not None else math.nan,
                chosen=meta.get("chosen", {}),
                extras=extras,
                mask=None if mask is None else mask.bool(),
                trajectory=opt("trajectory"),
                provenance=meta.get("provenance", {}),
            )
