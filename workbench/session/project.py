"""Project files of the app: a JSON document (scan path and reader options, slice, coil, sampling recipe, results
with their parameters and metrics) and a ``.npz`` sidecar beside it (hand-drawn mask, result images and std
maps). Given values and returning values: no Qt, no session.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.arrays import jsonable
from workbench.errors import CorruptFileError, ScanError
from workbench.session.runs import ResultEntry
from workbench.session.sampling_state import USER

PROJECT_FORMAT = "workbench-session"
PROJECT_VERSION = 1


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
    with open(sidecar, "wb") as f:
        np.savez_compressed(f, **arrays)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return sidecar


def load_project(path: str | os.PathLike) -> Project:
    """Read a project written by :func:`save_project`. The scan is found by its absolute path, else relative to
    the project file. Raises CorruptFileError (not a project, a missing hand-drawn mask) or ScanError (the scan
    is missing)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(path, f"not a readable session file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != PROJECT_FORMAT:
        raise CorruptFileError(path, "not a workbench session file")
    base = os.path.dirname(os.path.abspath(path))
    sidecar = os.path.join(base, doc.get("sidecar") or os.path.basename(os.path.splitext(path)[0] + ".npz"))
    arrays: dict[str, np.ndarray] = {}
    if os.path.exists(sidecar):
        with np.load(sidecar, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    sd = doc.get("scan") or {}
    candidates = [p for p in (sd.get("path"), sd.get("relpath") and os.path.join(base, sd["relpath"])) if p]
    scan_path = next((p for p in candidates if os.path.exists(p)), None)
    if scan_path is None:
        raise ScanError(candidates[0] if candidates else path,
                        f"the scan of session {os.path.basename(path)} is missing")
    sampling = dict(doc.get("sampling") or {})
    if sampling.get("kind") == USER:
        if "mask" not in arrays:
            raise CorruptFileError(sidecar, "the hand-drawn mask is missing from the sidecar")
        sampling["mask"] = arrays["mask"]
    results = []
    for n, d in enumerate(doc.get("results", [])):
        e = ResultEntry(id=n, method=d.get("method", "?"), params=d.get("params") or {},
                        slice_index=int(d.get("slice", 0)), sampling=d.get("sampling") or {},
                        label=d.get("label") or d.get("method", "?"), version=d.get("version") or "",
                        device=d.get("device") or "cpu", state=d.get("state", "done"),
                        elapsed=d.get("elapsed"), metrics=d.get("metrics") or {}, error=d.get("error"),
                        error_details=d.get("error_details"), acceleration=d.get("acceleration"),
                        history=d.get("history") or [])
        e.progress = 1.0 if e.state == "done" else 0.0
        if d.get("image") in arrays:
            e.image = arrays[d["image"]]
        elif e.state == "done":
            e.state, e.error = "failed", "image missing from the session sidecar"
        if d.get("std") in arrays:
            e.std = arrays[d["std"]]
        results.append(e)
    return Project(scan_path=scan_path, scan_options=sd.get("options") or {}, slice_index=doc.get("slice"),
                   coil_index=doc.get("coil"), symmetric=bool(doc.get("symmetric", False)), sampling=sampling,
                   results=results)
