"""Acceleration sweeps of the app (no Qt; given the session's parts, never importing the session).

A fully sampled Cartesian scan is swept over a generated sampling family: its mask at each acceleration. A scan
that was not fully sampled (a prospective scan: the radial cardiac set, a Poisson-disc brain) is swept over
:data:`ACQUIRED_SUBSET`: at factor f, an evenly spread 1/f of its acquired readouts (radial spokes, Cartesian
lines, or the samples of a 2D mask outside the calibration box, which is always kept); f = 1 is the scan as
acquired. The points' ``acceleration`` is then the effective R of what is kept (the acquisition's R times f).

Each point may be scored by the hold-out (:mod:`workbench.holdout`, through
:meth:`~workbench.session.runs.Runs.validate`): :func:`start`'s ``holdout``, by default on when the slice has
no reference (a prospective scan has none), so that the sweep ranks methods there too. :func:`sweep_rows` is
the sweep as a table (every point with its metrics, the scoring mode that produced them, and its hold-out
score); :func:`write_sweep` exports it as JSON or CSV.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Iterable

import numpy as np

from workbench import scoring
from workbench.arrays import jsonable
from workbench.atomic import atomic_open
from workbench.errors import SamplingError, WorkbenchError
from workbench.session.runs import Sweep
from workbench.session.sampling_state import ACQUIRED, USER

__all__ = ["ACQUIRED_SUBSET", "AcquiredSubset", "families", "readouts", "acquired_subset", "start",
           "zero_filled_points", "sweep_rows", "write_sweep"]

#: the family of a scan not fully sampled: part of what was acquired
ACQUIRED_SUBSET = "acquired subset"


def families(scan: Any) -> list[str]:
    """The sampling families ``scan`` can be swept over: the generated ones for a fully sampled Cartesian scan,
    else :data:`ACQUIRED_SUBSET`; [] without a scan."""
    if scan is None:
        return []
    if scan.is_cartesian and scan.fully_sampled:
        try:
            from workbench.sampling import sampling_kinds

            return list(sampling_kinds())
        except ImportError:
            return ["random", "equispaced"]
    return [ACQUIRED_SUBSET]


def readouts(trajectory: np.ndarray) -> list[np.ndarray]:
    """The readouts of a trajectory ``[2, K]`` whose samples come readout after readout (as the readers store
    them): runs of samples between jumps much longer than the typical step, the step measured modulo the
    period first (a readout's end sample may be stored wrapped to the other edge), then as it is (the step from
    a linear order's spoke at 90 - d degrees to the one at 90 + d is a period). SamplingError when neither gives
    readouts of one length (then the samples' order is not known)."""
    t = np.asarray(trajectory, np.float64)
    if t.shape[-1] < 2:
        raise SamplingError("the trajectory has a single sample: no readouts to keep part of")
    d = np.diff(t, axis=1)
    for step in (np.hypot(*((d + np.pi) % (2 * np.pi) - np.pi)), np.hypot(*d)):
        cuts = np.flatnonzero(step > 3 * max(float(np.median(step)), 1e-12)) + 1
        parts = np.split(np.arange(t.shape[1]), cuts)
        if len({len(p) for p in parts}) == 1:
            return parts
    raise SamplingError("the trajectory's readouts could not be told apart (they differ in length); a sweep "
                        "keeps whole readouts")


class AcquiredSubset:
    """The sampling of a sweep point of a prospective scan: ``keep`` (bool: ``[K]`` samples of a non-Cartesian
    scan, ``[H, W]`` grid points of a Cartesian one) of the acquired data at ``factor`` (1/factor of the acquired
    readouts kept), with ``acceleration`` the effective R of what is kept. :meth:`problem_of` makes the point's
    problem from the scan's acquired one (coil maps estimated again from what is kept)."""

    kind = ACQUIRED_SUBSET

    def __init__(self, keep: np.ndarray, factor: float, acceleration: float, kept: str, seed: int = 0):
        self.keep, self.factor, self.acceleration, self.kept, self.seed = keep, float(factor), acceleration, kept, seed
        self.params = {"of_acquired": f"1/{factor:g}", "kept": kept, "seed": seed}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "acceleration": self.acceleration, "params": dict(self.params)}

    def problem_of(self, problem: Any) -> Any:
        """The problem of this point from the scan's acquired ``problem`` (itself when everything is kept)."""
        import torch

        from workbench.problem import Problem

        if self.factor == 1:
            return problem
        common = dict(reference=problem.reference, data_range=problem.data_range, device=problem.device,
                      maps_method=problem.maps_method, calib=problem.calib, sampling=self,
                      provenance={**problem.provenance, "sampling": self.to_dict()})
        keep = torch.from_numpy(self.keep).to(problem.y.device)
        if problem.is_cartesian:
            if tuple(keep.shape) != tuple(problem.mask.shape):  # the readout cropped to the field of view
                if not bool((keep == keep.any(0, keepdim=True)).all()):
                    raise SamplingError("the kept samples do not fit the problem's grid")
                keep = keep.any(0, keepdim=True).expand_as(problem.mask)
            keep = problem.mask & keep
            return Problem(problem.y * keep, problem.grid_shape, problem.recon_shape, mask=keep, **common)
        from workbench.sampling.dcf import compute_dcf

        method = problem.provenance.get("dcf_method")
        traj = problem.trajectory[:, keep]
        # the file's weights were made for every readout: a subset gets its own
        dcf = compute_dcf(traj, problem.grid_shape, "pipe-menon" if method in (None, "file") else method,
                          device=problem.device)
        return Problem(problem.y[:, keep], problem.grid_shape, problem.recon_shape, trajectory=traj,
                       dcf=torch.as_tensor(dcf, dtype=torch.float32), **common)


def _spread(n: int, factor: float) -> np.ndarray:
    """``ceil(n / factor)`` indices of ``range(n)`` spread evenly (0 always among them)."""
    count = max(1, math.ceil(n / factor - 1e-9))
    return np.unique(np.floor(np.arange(count) * n / count).astype(int))


def acquired_subset(state: Any, factor: float, calib: tuple[int, int] = (24, 24), seed: int = 0) -> AcquiredSubset:
    """The :class:`AcquiredSubset` at ``factor`` (>= 1) of the acquired sampling ``state`` (a
    :class:`~workbench.session.sampling_state.SamplingState` of kind "acquired"): non-Cartesian, every readout
    (:func:`readouts`) of an evenly spread 1/factor of them; a Cartesian line mask, its fully sampled centre lines
    and an evenly spread 1/factor of the other lines; another Cartesian mask, the ``calib`` box and a seeded
    random 1/factor of the other samples."""
    factor = float(factor)
    if not factor >= 1 or not math.isfinite(factor):
        raise SamplingError(f"a sweep of the acquired data keeps 1/f of it: f must be >= 1, got {factor:g}")
    if not state.is_cartesian:
        parts = readouts(state.trajectory)
        chosen = _spread(len(parts), factor)
        keep = np.zeros(state.trajectory.shape[1], bool)
        keep[np.concatenate([parts[i] for i in chosen])] = True
        return AcquiredSubset(keep, factor, state.acceleration * state.trajectory.shape[1] / keep.sum(),
                              f"{len(chosen)} of {len(parts)} readouts")
    mask = np.asarray(state.mask, bool)
    h, w = mask.shape
    cols = mask.any(0)
    if np.array_equal(mask, np.broadcast_to(cols, mask.shape)):  # a line mask: whole lines
        lo = hi = w // 2
        while lo > 0 and cols[lo - 1]:
            lo -= 1
        while hi < w and cols[hi]:
            hi += 1
        others = np.flatnonzero(cols & ~((np.arange(w) >= lo) & (np.arange(w) < hi)))
        kept_cols = np.zeros(w, bool)
        kept_cols[lo:hi] = cols[lo:hi]
        kept_cols[others[_spread(len(others), factor)] if len(others) else []] = True
        keep = mask & kept_cols[None, :]
        kept = f"{int(kept_cols.sum())} of {int(cols.sum())} lines"
    else:
        box = np.zeros_like(mask)
        ch, cw = min(calib[0], h), min(calib[1], w)
        box[h // 2 - ch // 2: h // 2 - ch // 2 + ch, w // 2 - cw // 2: w // 2 - cw // 2 + cw] = True
        others = np.flatnonzero(mask & ~box)
        rng = np.random.default_rng(seed)
        chosen = rng.choice(others, size=max(1, math.ceil(len(others) / factor - 1e-9)), replace=False) \
            if len(others) else others
        keep = mask & box
        keep.reshape(-1)[chosen] = True
        kept = f"{int(keep.sum())} of {int(mask.sum())} samples"
    return AcquiredSubset(keep, factor, state.acceleration * mask.sum() / max(int(keep.sum()), 1), kept, seed)


def start(session: Any, runs: Any, methods: list[tuple[Any, Any]], accelerations: Iterable[float],
          kind: str | None = None, holdout: bool | None = None) -> Sweep:
    """The sweep of ``session`` (the facade: its sampling model, ``run`` and events) over ``accelerations`` of
    family ``kind`` (None: the current one; :data:`ACQUIRED_SUBSET` for a scan not fully sampled): for each
    (method, params) and acceleration one job of ``runs``; with ``holdout`` (None: when the slice has no
    reference) each finished point is scored by the hold-out as well."""
    scan = session.scan
    if scan is None:
        raise WorkbenchError("open a scan first")
    offered = families(scan)
    if kind is None:
        kind = session.sampling_model.recipe["kind"]
        kind = ACQUIRED_SUBSET if ACQUIRED_SUBSET in offered else ("equispaced" if kind in (USER, ACQUIRED) else kind)
    if kind == ACQUIRED_SUBSET and ACQUIRED_SUBSET not in offered:
        raise SamplingError("this scan is fully sampled: sweep a sampling family instead of the acquired subset")
    accs = [float(a) for a in accelerations]
    for method, params in methods:  # every parameter checked (ParamError) before any job starts
        method.make_params(params)
    if kind == ACQUIRED_SUBSET:
        acquired = session.sampling_model.build({"kind": ACQUIRED, "acceleration": 1.0, "seed": 0,
                                                 "center_fraction": None, "params": {}})
        points = [acquired_subset(acquired, f) for f in accs]  # all of them first: a bad factor starts nothing
        points = [(p, p.acceleration) for p in points]
    else:
        points = [(st.sampling, st.acceleration) for st in (session.sampling_model.family(kind, r) for r in accs)]
    sw = runs.new_sweep(kind, accs, [getattr(m, "name", str(m)) for m, _ in methods])
    sw.holdout = session.reference() is None if holdout is None else bool(holdout)
    for sampling, acceleration in points:
        for method, params in methods:
            session.run(method, params, label=getattr(method, "name", str(method)), sampling=sampling,
                        acceleration=acceleration, sweep=sw)
    session.emit("sweep", sw)
    return sw


def zero_filled_points(session: Any, kind: str, accelerations: Iterable[float]) -> dict[float, dict[str, float]]:
    """Zero-filled metrics of the current slice for the generated family ``kind`` at each acceleration, in the
    session's scoring mode ({} for :data:`ACQUIRED_SUBSET`: such a sweep runs zero filling as jobs)."""
    if kind == ACQUIRED_SUBSET:
        return {}
    states = [session.sampling_model.family(kind, r) for r in accelerations]
    mode, views = session.score_mode, session.views
    return {float(st.acceleration): views.evaluate(views.zero_filled_cartesian(st.mask), mode, session.problem(
        st.sampling) if mode == "as-acquired" else None, scoring.IMAGE_IS_RSS) for st in states if st.is_cartesian}


def sweep_rows(sweep: Sweep, score_mode: str, zero_filled: dict[float, dict[str, float]] | None = None
               ) -> list[dict[str, Any]]:
    """The sweep as rows, one per point: method (label), acceleration, state, PSNR / SSIM / NMSE in
    ``score_mode`` (named in each row; None without a reference), the hold-out NMSE (``holdout``: None while it
    runs or when not asked for), its standard error (``holdout_se``) and its note, the chosen weight, the
    sampling; ``zero_filled`` (the sweep panel's curve, computed at once) first."""
    from workbench.session.runs import holdout_cells
    from workbench.session.sampling_state import recipe_text

    rows = [{"label": "zero-filled", "acceleration": r, "state": "done", "score_mode": score_mode,
             "psnr": m.get("psnr"), "ssim": m.get("ssim"), "nmse": m.get("nmse"), "holdout": None,
             "holdout_se": None, "holdout_note": "", "chosen": "", "sampling": sweep.kind}
            for r, m in sorted((zero_filled or {}).items())]
    for e in sorted(sweep.entries, key=lambda e: (e.label, e.acceleration or 0.0)):
        rows.append({"label": e.label, "acceleration": e.acceleration, "state": e.state, "score_mode": score_mode,
                     "psnr": e.metrics.get("psnr"), "ssim": e.metrics.get("ssim"), "nmse": e.metrics.get("nmse"),
                     **holdout_cells(e.holdout), "chosen": e.chosen_text(),
                     "sampling": recipe_text(e.sampling, e.acceleration)})
    return rows


def write_sweep(path: str | os.PathLike, sweep: Sweep, score_mode: str,
                zero_filled: dict[float, dict[str, float]] | None = None, inputs: tuple = ()) -> None:
    """:func:`sweep_rows` as JSON (``.json``: the sweep's family, what it was asked for (``accelerations``, or
    for :data:`ACQUIRED_SUBSET` the factors ``of_acquired``: 1/f of the acquired readouts), scoring mode, whether
    points are scored by the hold-out, and the rows) or else CSV; written atomically, never over one of
    ``inputs``."""
    rows = sweep_rows(sweep, score_mode, zero_filled)
    asked = "of_acquired" if sweep.kind == ACQUIRED_SUBSET else "accelerations"
    with atomic_open(path, "w", inputs=inputs, newline="") as f:
        if str(path).lower().endswith(".json"):
            json.dump(jsonable({"family": sweep.kind, asked: sweep.accelerations,
                                "score_mode": score_mode, "holdout": sweep.holdout,
                                "holdout_score": "hold-out NMSE (workbench.holdout.estimated_nmse, lower is "
                                                 "better)", "points": rows}), f, indent=1)
            return
        cols = list(rows[0]) if rows else ["label", "acceleration"]
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                        for c in cols])
