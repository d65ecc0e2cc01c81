"""Project files of the app: a JSON document (scan path and reader options, slice, coil, sampling recipe, results
with their parameters and metrics) and a ``.npz`` sidecar beside it (hand-drawn mask, result images and std
maps). Given values and returning values: no Qt, no session.

A project file is input like any other: the sidecar it names must lie in the project's own folder (a name that
climbs out with ``..``, an absolute path or a link elsewhere is refused), and every entry is type-checked
before anything is built from it, so a malformed file gives a :class:`SessionFileError` naming it. Saving is
atomic (:mod:`workbench.atomic`) and never replaces the scan the session was made from.
"""

from __future__ import annotations

import json
import numbers
import os
import time
import tokenize
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.arrays import jsonable
from workbench.atomic import WriteError, atomic_open
from workbench.errors import CorruptFileError, ScanError
from workbench.session.runs import ResultEntry
from workbench.session.sampling_state import USER

PROJECT_FORMAT = "workbench-session"
PROJECT_VERSION = 1
RESULT_STATES = ("done", "failed", "cancelled")


class SessionFileError(CorruptFileError):
    """A session (project) file is malformed: wrong types, a sidecar outside its folder, unusable images."""


@dataclass
class Project:
    """What a project file holds: ``results`` are finished (or failed / cancelled) entries, numbered from 0."""

    scan_path: str
    scan_options: dict[str, Any] = field(default_factory=dict)
    slice_index: int | None = None
    coil_index: int | None = None
    symmetric: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)  # a recipe; a hand-drawn one carries its "mask"
    results: list[ResultEntry] = field(default_factory=list)


def save_project(path: str | os.PathLike, project: Project, scan: Any) -> str:
    """Write ``project`` (of ``scan``) to ``path`` and its sidecar; returns the sidecar path."""
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    sidecar = os.path.splitext(path)[0] + ".npz"
    if os.path.abspath(sidecar) == os.path.abspath(path):
        raise WriteError(path, "a session file ends in .json (its images go to the .npz beside it)")
    arrays: dict[str, np.ndarray] = {}
    sampling = {k: v for k, v in project.sampling.items() if k != "mask"}
    if project.sampling.get("mask") is not None:
        arrays["mask"] = project.sampling["mask"]
        sampling["mask"] = "mask"
    results = []
    for n, e in enumerate(project.results):
        d = {"id": e.id, "method": e.method, "label": e.label, "version": e.version, "params": e.params,
             "slice": e.slice_index, "sampling": e.sampling, "device": e.device, "state": e.state,
             "elapsed": e.elapsed, "metrics": jsonable(e.metrics), "error": e.error,
             "error_details": e.error_details, "acceleration": jsonable(e.acceleration),
             "history": jsonable(e.history)}
        if e.state == "done" and e.image is not None:
            arrays[f"result{n}_image"] = np.asarray(e.image, np.complex64)
            d["image"] = f"result{n}_image"
            if e.std is not None:
                arrays[f"result{n}_std"] = np.asarray(e.std, np.float32)
                d["std"] = f"result{n}_std"
        elif e.active:
            d["state"] = "cancelled"
            d["error"] = "the session was saved while this job ran"
        results.append(d)
    scan_path = None if scan.path is None else os.path.abspath(scan.path)
    doc = {
        "format": PROJECT_FORMAT, "version": PROJECT_VERSION,
        "scan": {"path": scan_path,
                 "relpath": None if scan_path is None else os.path.relpath(scan_path, base),
                 "format": scan.format, "options": jsonable(project.scan_options)},
        "slice": project.slice_index, "coil": project.coil_index, "symmetric": project.symmetric,
        "sampling": sampling, "results": results,
        "sidecar": os.path.basename(sidecar),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    inputs = (scan_path,)  # neither file may replace the scan (e.g. a scan.npz beside a scan.json session)
    with atomic_open(sidecar, "wb", inputs=inputs) as f:
        np.savez_compressed(f, **arrays)
    with atomic_open(path, "w", inputs=inputs) as f:
        json.dump(doc, f, indent=1)
    return sidecar


def load_project(path: str | os.PathLike) -> Project:
    """Read a project written by :func:`save_project`. The scan is found by its absolute path, else relative to
    the project file. Raises :class:`SessionFileError` (not a project, wrong types, a sidecar outside the
    project's folder or unreadable, a missing hand-drawn mask, unusable images) or ScanError (the scan is
    missing)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SessionFileError(path, f"not a readable session file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != PROJECT_FORMAT:
        raise SessionFileError(path, "not a workbench session file")
    base = os.path.dirname(os.path.abspath(path))
    sidecar = _sidecar_inside(path, base, doc.get("sidecar"))
    arrays = _read_sidecar(path, sidecar) if os.path.exists(sidecar) else {}
    sd = _typed(path, doc, "scan", dict, {})
    candidates = [_typed(path, sd, "path", str, None), _typed(path, sd, "relpath", str, None)]
    candidates = [p if os.path.isabs(p) or n == 0 else os.path.join(base, p)
                  for n, p in enumerate(candidates) if p]
    scan_path = next((p for p in candidates if os.path.exists(p)), None)
    if scan_path is None:
        raise ScanError(candidates[0] if candidates else path,
                        f"the scan of session {os.path.basename(path)} is missing")
    sampling = dict(_typed(path, doc, "sampling", dict, {}))
    if sampling.get("kind") == USER:
        if "mask" not in arrays:
            raise SessionFileError(path, f"the hand-drawn mask is missing from the sidecar {sidecar}")
        sampling["mask"] = arrays["mask"]
    results = [_result_entry(path, n, d, arrays) for n, d in enumerate(_typed(path, doc, "results", list, []))]
    return Project(scan_path=scan_path, scan_options=_typed(path, sd, "options", dict, {}),
                   slice_index=_typed(path, doc, "slice", int, None), coil_index=_typed(path, doc, "coil", int, None),
                   symmetric=_typed(path, doc, "symmetric", bool, False), sampling=sampling, results=results)


def check_project_fits(path: str | os.PathLike, project: Project, n_slices: int, recon_shape: tuple[int, int]
                       ) -> None:
    """Raise :class:`SessionFileError` when the project's slices or result images do not fit its scan (opened
    with ``n_slices`` slices of ``recon_shape`` images), before the session shows any of it."""
    path = os.fspath(path)
    shape = tuple(recon_shape)
    if project.slice_index is not None and not 0 <= project.slice_index < n_slices:
        raise SessionFileError(path, f"slice {project.slice_index} is outside the scan's {n_slices} slices")
    for n, e in enumerate(project.results):
        if not 0 <= e.slice_index < n_slices:
            raise SessionFileError(path, f"result {n} is on slice {e.slice_index}; the scan has {n_slices}")
        for what, image in (("image", e.image), ("std map", e.std)):
            if image is not None and tuple(image.shape) != shape:
                raise SessionFileError(path, f"result {n}: its {what} is {tuple(image.shape)}, the scan's images "
                                             f"are {shape}")


_NUMBER = (numbers.Real,)


def _typed(path: str, d: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str = "") -> Any:
    """``d[key]`` (``default`` when absent or null) if it is a ``kind``; else SessionFileError naming it."""
    value = d.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = " or ".join("a number" if k is numbers.Real else k.__name__ for k in kinds)
        raise SessionFileError(path, f"{where}{key!r} should be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _sidecar_inside(path: str, base: str, name: Any) -> str:
    """The sidecar's path: ``name`` (default NAME.npz) inside the project's folder; anything resolving
    elsewhere (``..``, an absolute path, a link out of the folder) is refused."""
    if name is None:
        name = os.path.basename(os.path.splitext(path)[0] + ".npz")
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise SessionFileError(path, f"the sidecar {name!r} must be a file name inside the session's folder")
    sidecar = os.path.join(base, name)
    real_base = os.path.realpath(base)
    if os.path.commonpath([os.path.realpath(sidecar), real_base]) != real_base:
        raise SessionFileError(path, f"the sidecar {name!r} lies outside the session's folder; refused")
    return sidecar


def _read_sidecar(path: str, sidecar: str) -> dict[str, np.ndarray]:
    try:
        z = np.load(sidecar, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array under the sidecar's name
            raise ValueError("not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile) as exc:
        raise SessionFileError(path, f"its sidecar {sidecar} cannot be read ({exc})") from exc


def _image(path: str, where: str, arrays: dict[str, np.ndarray], key: Any, real: bool) -> np.ndarray | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise SessionFileError(path, f"{where}names its image by {key!r}, not by a sidecar entry")
    if key not in arrays:
        return None
    a = arrays[key]
    kind = "f" if real else "fc"
    if a.ndim != 2 or a.dtype.kind not in kind + "iu" or a.size == 0:
        raise SessionFileError(path, f"{where}{key!r} in the sidecar is {a.dtype} {a.shape}, not a 2D "
                                     f"{'real' if real else 'numeric'} image")
    if not np.isfinite(a).all():
        raise SessionFileError(path, f"{where}{key!r} in the sidecar holds NaN or Inf values")
    return a.astype(np.float32 if real else np.complex64, copy=False)


def _result_entry(path: str, n: int, d: Any, arrays: dict[str, np.ndarray]) -> ResultEntry:
    where = f"result {n}: "
    if not isinstance(d, dict):
        raise SessionFileError(path, f"{where}should be an object, got {type(d).__name__}")

    def get(key: str, kind: Any, default: Any = None) -> Any:
        return _typed(path, d, key, kind, default, where)

    state = get("state", str, "done")
    if state not in RESULT_STATES:
        raise SessionFileError(path, f"{where}state {state!r} is not one of {', '.join(RESULT_STATES)}")
    metrics = get("metrics", dict, {})
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, _NUMBER)) for v in metrics.values()):
        raise SessionFileError(path, f"{where}metrics should be numbers, got {metrics!r:.80}")
    history = get("history", list, [])
    if not all(isinstance(h, dict) for h in history):
        raise SessionFileError(path, f"{where}history should be a list of objects")
    method = get("method", str, "?")
    e = ResultEntry(id=n, method=method, params=get("params", dict, {}), slice_index=get("slice", int, 0),
                    sampling=get("sampling", dict, {}), label=get("label", str, "") or method,
                    version=get("version", str, ""), device=get("device", str, "cpu"), state=state,
                    elapsed=get("elapsed", _NUMBER), metrics=metrics, error=get("error", str),
                    error_details=get("error_details", str), acceleration=get("acceleration", _NUMBER),
                    history=history)
    e.progress = 1.0 if e.state == "done" else 0.0
    e.image = _image(path, where, arrays, d.get("image"), real=False)
    if e.image is None and e.state == "done":
        e.state, e.error = "failed", "image missing from the session sidecar"
    e.std = _image(path, where, arrays, d.get("std"), real=True)
    if e.std is not None and e.image is not None and e.std.shape != e.image.shape:
        raise SessionFileError(path, f"{where}its std map is {e.std.shape}, its image {e.image.shape}")
    return e
