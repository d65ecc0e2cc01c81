"""The sampling the app shows: its recipe and the mask / trajectory made from it (no Qt, no session).

Names: a :class:`workbench.sampling.Sampling` is the library's mask or trajectory; a *recipe* is how the app
makes one, as a JSON-able dict (``kind``, ``acceleration``, ``seed``, ``center_fraction``, ``params``, and the
``mask`` of a hand-drawn one); a :class:`SamplingState` is what the sampling panel shows: the recipe's fields,
the Sampling made from it and the effective mask / trajectory on this scan. :class:`SamplingModel` turns
recipes into states for one scan and holds the current one with its hand-drawn edits.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from workbench.arrays import LRUCache, jsonable
from workbench.errors import SamplingError
from workbench.session.mask_editor import MaskEditor, line_is_on, with_disc, with_lines

#: Sampling kind meaning "the data exactly as acquired in the file" (no retrospective undersampling).
ACQUIRED = "acquired"
#: Sampling kind of a hand-drawn mask.
USER = "user"


def to_numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass
class SamplingState:
    """What the sampling panel shows: the recipe (kind + parameters) and the resulting mask / trajectory.

    ``mask`` is bool ``[H, W]`` (numpy) for Cartesian kinds, ``trajectory`` ``[2, K]`` radians and ``dcf``
    ``[K]`` for non-Cartesian ones. ``acceleration`` is the effective R measured on the encoded grid
    (``requested_acceleration`` is the slider's value)."""

    kind: str
    requested_acceleration: float
    seed: int
    center_fraction: float | None
    params: dict[str, Any]
    mask: np.ndarray | None = None
    trajectory: np.ndarray | None = None
    dcf: np.ndarray | None = None
    acceleration: float = float("nan")
    acs_shape: tuple[int, int] | None = None
    sampling: Any = None  # the workbench.sampling.Sampling object (None for "acquired")

    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    def recipe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "acceleration": self.requested_acceleration,
            "seed": self.seed,
            "center_fraction": self.center_fraction,
            "params": jsonable(self.params),
        }

    def describe(self) -> str:
        if self.kind == ACQUIRED:
            return f"as acquired (R={self.acceleration:.2f})"
        if self.kind == USER:
            return f"hand-drawn mask (R={self.acceleration:.2f})"
        return f"{self.kind} R={self.acceleration:.2f}"


def default_recipe(scan: Any = None) -> dict[str, Any]:
    """Equispaced R=4 for fully sampled Cartesian data; the acquired samples otherwise."""
    if scan is not None and (not scan.is_cartesian or not scan.fully_sampled):
        return {"kind": ACQUIRED, "acceleration": 1.0, "seed": 0, "center_fraction": None, "params": {}}
    return {"kind": "equispaced", "acceleration": 4.0, "seed": 0, "center_fraction": None, "params": {}}


def recipe_of(sampling: Any) -> dict[str, Any]:
    """The recipe of a library Sampling (``{"kind": "acquired"}`` for None)."""
    if sampling is None:
        return {"kind": ACQUIRED}
    d = {"kind": getattr(sampling, "kind", "?"), "params": jsonable(getattr(sampling, "params", {}) or {})}
    try:
        d["acceleration"] = float(sampling.acceleration)
    except Exception:
        pass
    return d


def recipe_text(recipe: dict[str, Any], effective_r: float | None = None) -> str:
    """``"random R=4 cf=0.08 seed=0 (R_eff 3.76)"``: a recipe and its effective acceleration."""
    kind = recipe.get("kind", "?")
    eff = f" (R_eff {effective_r:.2f})" if effective_r is not None and np.isfinite(effective_r) else ""
    if kind in (ACQUIRED, USER):
        extra = "".join(f" {k}={v}" for k, v in (recipe.get("params") or {}).items())
        return kind + extra + eff
    parts = [kind]
    if recipe.get("acceleration") is not None:
        parts.append(f"R={float(recipe['acceleration']):g}")
    if recipe.get("center_fraction") is not None:
        parts.append(f"cf={recipe['center_fraction']:g}")
    if recipe.get("seed") is not None:
        parts.append(f"seed={recipe['seed']}")
    parts += [f"{k}={v}" for k, v in (recipe.get("params") or {}).items()]
    return " ".join(parts) + eff


def changed_recipe(recipe: dict[str, Any], kind: str | None = None, acceleration: float | None = None,
                   seed: int | None = None, center_fraction: float | None | str = "keep",
                   params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``recipe`` with the given fields changed; a new ``kind`` starts with no extra ``params``."""
    recipe = copy.deepcopy(recipe)
    if kind is not None and kind != recipe["kind"]:
        recipe["kind"] = kind
        recipe["params"] = {}
    if acceleration is not None:
        recipe["acceleration"] = float(acceleration)
    if seed is not None:
        recipe["seed"] = int(seed)
    if center_fraction != "keep":
        recipe["center_fraction"] = None if center_fraction is None else float(center_fraction)
    recipe["params"].update(params or {})
    return recipe


def family_recipe(recipe: dict[str, Any], kind: str, acceleration: float) -> dict[str, Any]:
    """The recipe of a generated family at ``acceleration`` (for sweeps): the current one's fields, no mask."""
    out = dict(copy.deepcopy(recipe), kind=kind, acceleration=float(acceleration))
    out.pop("mask", None)
    if kind != recipe["kind"]:
        out["params"] = {}
    return out


def acquired_mask(scan: Any) -> np.ndarray | None:
    """The samples a Cartesian scan holds, bool ``[H, W]``; None when not Cartesian or not recorded."""
    if not scan.is_cartesian or scan.acquired_mask is None:
        return None
    return np.asarray(scan.acquired_mask, dtype=bool)


def user_sampling(mask: np.ndarray):
    """A Sampling for a hand-drawn mask; None while the mask is empty (a valid state while drawing, but nothing
    can be reconstructed from it)."""
    from workbench.sampling import Sampling

    return Sampling.from_mask(mask.copy()) if mask.any() else None


class SamplingModel:
    """The sampling of one scan: builds the :class:`SamplingState` of a recipe (generated Samplings cached by
    recipe), holds the current recipe and state, and edits a hand-drawn mask with undo / redo. Every change
    builds the new state first (a SamplingError leaves everything as it was), then calls ``on_change(state)``.
    ``symmetric`` edits are mirrored through the k-space centre."""

    def __init__(self, scan: Any, on_change: Callable[[SamplingState], None]):
        self.scan = scan
        self.grid_shape: tuple[int, int] = tuple(scan.grid_shape)  # type: ignore[assignment]
        self._samplings: LRUCache = LRUCache(64)  # recipe -> generated Sampling: the slider goes back and forth
        self._acs: LRUCache = LRUCache(128)  # id(sampling) -> (sampling, ACS shape): the search scans the mask
        self.recipe = default_recipe(scan)
        self.version = 0
        self.editor = MaskEditor()
        self.symmetric = False  # hand-drawn edits are mirrored through the k-space centre
        self._state: SamplingState | None = None
        self._on_change = on_change

    @property
    def state(self) -> SamplingState:
        if self._state is None:
            self._state = self.build(self.recipe)
        return self._state

    def use(self, recipe: dict[str, Any], keep_history: bool = False) -> SamplingState:
        state = self.build(recipe)
        self.recipe, self._state = recipe, state
        self.version += 1
        if not keep_history:
            self.editor.clear_history()
        self._on_change(state)
        return state

    def set(self, kind: str | None = None, acceleration: float | None = None, seed: int | None = None,
            center_fraction: float | None | str = "keep", params: dict[str, Any] | None = None) -> SamplingState:
        if kind == USER and self._state is not None:
            return self.begin_user_mask()
        return self.use(changed_recipe(self.recipe, kind, acceleration, seed, center_fraction, params))

    def set_acceleration(self, acceleration: float) -> SamplingState:
        if self.recipe["kind"] in (USER, ACQUIRED):
            raise SamplingError(f"the {self.recipe['kind']} sampling has no acceleration setting; pick a family")
        return self.set(acceleration=acceleration)

    @property
    def acquired_dcf_method(self) -> str | None:
        return self.recipe["params"].get("dcf_method") if self.recipe["kind"] == ACQUIRED else None

    @property
    def acquired_dcf_label(self) -> str | None:
        if self.scan.is_cartesian or self.recipe["kind"] != ACQUIRED:
            return None
        return self.acquired_dcf_method or ("file" if self.scan.dcf is not None else "pipe-menon")

    def set_acquired_dcf_method(self, method: str | None) -> SamplingState:
        recipe = self.with_dcf_method(self.recipe, method)
        if recipe == self.recipe and self._state is not None:
            return self._state
        return self.use(recipe)

    def family(self, kind: str, acceleration: float) -> SamplingState:
        """The state of the generated family ``kind`` at ``acceleration`` (not made current: for sweeps)."""
        return self.build(family_recipe(self.recipe, kind, acceleration))

    # --- building states -------------------------------------------------------------------------------------
    def _key(self, recipe: dict[str, Any]) -> str:
        return json.dumps({k: jsonable(v) for k, v in recipe.items() if k != "mask"}, sort_keys=True) + str(
            self.grid_shape)

    def _encoded(self) -> np.ndarray:
        if self.scan.encoded_mask is not None:
            return np.asarray(self.scan.encoded_mask, dtype=bool)
        return np.ones(self.grid_shape, dtype=bool)

    def _effective_r(self, mask: np.ndarray) -> float:
        enc = self._encoded()
        n = int((mask & enc).sum())
        return float(enc.sum()) / n if n else float("inf")

    def build(self, recipe: dict[str, Any]) -> SamplingState:
        """The state of ``recipe``; raises SamplingError for a recipe that does not fit the scan."""
        scan = self.scan
        kind = recipe["kind"]
        base = dict(kind=kind, requested_acceleration=float(recipe["acceleration"]), seed=int(recipe["seed"]),
                    center_fraction=recipe["center_fraction"], params=dict(recipe["params"]))
        if kind == ACQUIRED:
            method = base["params"].pop("dcf_method", None)
            if not scan.is_cartesian:
                if method is not None:
                    from workbench.problem import acquired_dcf
                    from workbench.sampling.dcf import check_dcf_method

                    method = base["params"]["dcf_method"] = check_dcf_method(method)
                    if method == "ramp":  # cheap; refuses a trajectory that is not radial before anything changes
                        acquired_dcf(scan, method)
                return SamplingState(**base, trajectory=np.asarray(scan.trajectory, np.float32),
                                     dcf=None if scan.dcf is None or method is not None
                                     else np.asarray(scan.dcf, np.float32),
                                     acceleration=float(np.prod(self.grid_shape)) / scan.kspace_shape[-1])
            if method is not None:
                raise SamplingError("density compensation applies to non-Cartesian data; this scan is Cartesian")
            acq = acquired_mask(scan)
            mask = acq if acq is not None else np.ones(self.grid_shape, dtype=bool)
            return SamplingState(**base, mask=mask, acceleration=self._effective_r(mask))
        if kind == USER:
            mask = np.asarray(recipe["mask"], dtype=bool)
            if mask.shape != self.grid_shape:
                raise SamplingError(f"mask has shape {mask.shape}, this scan's grid is {self.grid_shape}")
            return self._cartesian(base, user_sampling(mask), mask)
        sampling = self._samplings.get(self._key(recipe))
        if sampling is None:
            sampling = self._generate(recipe)
            self._samplings.put(self._key(recipe), sampling)
        if getattr(sampling, "trajectory", None) is not None:
            traj = to_numpy(sampling.trajectory).astype(np.float32)
            dcf = to_numpy(getattr(sampling, "dcf", None))
            return SamplingState(**base, trajectory=traj, dcf=None if dcf is None else dcf.astype(np.float32),
                                 acceleration=float(np.prod(self.grid_shape)) / traj.shape[-1], sampling=sampling)
        return self._cartesian(base, sampling, to_numpy(sampling.mask).astype(bool))

    def _generate(self, recipe: dict[str, Any]):
        from workbench.sampling import make_sampling

        if not self.scan.is_cartesian:
            raise SamplingError("this scan is non-Cartesian: it can only be used as acquired")
        kwargs = dict(recipe["params"])
        if recipe["center_fraction"] is not None:
            kwargs["center_fraction"] = recipe["center_fraction"]
        try:
            return make_sampling(recipe["kind"], self.grid_shape, float(recipe["acceleration"]),
                                 seed=int(recipe["seed"]), **kwargs)
        except SamplingError:
            raise
        except (TypeError, ValueError) as exc:
            raise SamplingError(f"{recipe['kind']}: {exc}") from exc

    def _cartesian(self, base: dict[str, Any], sampling: Any, mask: np.ndarray) -> SamplingState:
        acq = acquired_mask(self.scan)
        eff = mask & acq if acq is not None else mask
        acs = None
        if sampling is not None:
            hit = self._acs.get(id(sampling))
            if hit is None or hit[0] is not sampling:
                hit = (sampling, getattr(sampling, "acs_shape", None))
                self._acs.put(id(sampling), hit)
            acs = hit[1]
        return SamplingState(**base, mask=eff, acceleration=self._effective_r(eff), sampling=sampling,
                             acs_shape=None if acs is None else tuple(int(a) for a in acs))

    def with_dcf_method(self, recipe: dict[str, Any], method: str | None) -> dict[str, Any]:
        """The acquired recipe with its density compensation set to ``method`` (None or ``"file"``: the file's
        weights, else Pipe-Menon)."""
        if self.scan.is_cartesian:
            raise SamplingError("density compensation applies to non-Cartesian data; this scan is Cartesian")
        if recipe["kind"] != ACQUIRED:
            raise SamplingError("the density compensation of the acquired trajectory applies when the data is "
                                "used as acquired")
        if isinstance(method, str) and method.strip().lower() == "file":
            method = None
        recipe = copy.deepcopy(recipe)
        if method is None:
            recipe["params"].pop("dcf_method", None)
        else:
            from workbench.sampling.dcf import check_dcf_method

            recipe["params"]["dcf_method"] = check_dcf_method(method)
        return recipe

    def recipe_from_file(self, path: str | os.PathLike) -> dict[str, Any]:
        """The recipe of a sampling file (:meth:`workbench.sampling.Sampling.save`): a Cartesian mask becomes a
        hand-drawn one (``kind`` user with its ``mask``), a trajectory keeps its family's recipe (the slider then
        regenerates the same family) and is used as saved."""
        from workbench.sampling import Sampling, dcf_methods_for

        sampling = Sampling.load(os.fspath(path))
        mask = to_numpy(getattr(sampling, "mask", None))
        if getattr(sampling, "trajectory", None) is None and mask is not None:
            mask = mask.astype(bool)
            if mask.ndim == 1:  # a 1D column mask
                mask = np.broadcast_to(mask[None, :], self.grid_shape).copy()
            if mask.shape != self.grid_shape:
                raise SamplingError(f"{os.fspath(path)}: mask has shape {mask.shape}, this scan's grid is "
                                    f"{self.grid_shape}")
            return {"kind": USER, "mask": mask}
        if tuple(sampling.shape) != self.grid_shape:
            raise SamplingError(f"{os.fspath(path)}: the trajectory is for a {sampling.shape[0]}x{sampling.shape[1]} "
                                f"grid, this scan's grid is {self.grid_shape[0]}x{self.grid_shape[1]}")
        params = dict(getattr(sampling, "params", {}) or {})
        recipe = {"kind": sampling.kind, "acceleration": float(params.get("acceleration") or sampling.acceleration),
                  "seed": 0, "center_fraction": None, "params": {}}
        method = getattr(sampling, "dcf_method", None)
        if method is not None and method in dcf_methods_for(sampling.kind):
            recipe["params"]["dcf_method"] = method
        self._samplings.put(self._key(recipe), sampling)
        return recipe

    # --- hand-drawn masks ---------------------------------------------------------------------------------------
    @property
    def editing(self) -> bool:
        return self.recipe["kind"] == USER

    def begin_user_mask(self, mask: np.ndarray | None = None) -> SamplingState:
        if mask is None:
            if self.state.mask is None:
                raise SamplingError("hand-drawn masks need a Cartesian scan")
            mask = self.state.mask
        return self.use(dict(self.recipe, kind=USER, params={}, mask=np.array(mask, dtype=bool)))

    def user_mask(self) -> np.ndarray:
        if not self.editing:
            self.begin_user_mask()
        return self.recipe["mask"]

    def edit(self, new_mask: np.ndarray) -> None:
        self.editor.record(self.user_mask())
        self.use(dict(self.recipe, mask=new_mask), keep_history=True)

    def begin_stroke(self) -> None:
        self.editor.begin_stroke(self.user_mask())

    def end_stroke(self) -> None:
        self.editor.end_stroke(self.recipe.get("mask"))

    def set_lines(self, columns: Iterable[int], value: bool) -> None:
        self.edit(with_lines(self.user_mask(), columns, value, self.symmetric))

    def toggle_line(self, column: int) -> bool:
        new = not line_is_on(self.user_mask(), column)
        self.set_lines([column], new)
        return new

    def paint(self, row: float, col: float, radius: float, value: bool) -> None:
        self.edit(with_disc(self.user_mask(), row, col, radius, value, self.symmetric))

    def clear_mask(self) -> None:
        self.edit(np.zeros(self.grid_shape, dtype=bool))

    @property
    def can_undo(self) -> bool:
        return self.editing and self.editor.can_undo

    @property
    def can_redo(self) -> bool:
        return self.editing and self.editor.can_redo

    def undo(self) -> bool:
        return self.undo_or_redo()

    def redo(self) -> bool:
        return self.undo_or_redo(redo=True)

    def undo_or_redo(self, redo: bool = False) -> bool:
        if not self.editing:
            return False
        mask = (self.editor.redo if redo else self.editor.undo)(self.recipe["mask"])
        if mask is not None:
            self.use(dict(self.recipe, mask=mask), keep_history=True)
        return mask is not None

    # --- files --------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        st = self.state
        sampling = st.sampling if st.sampling is not None or st.mask is None else user_sampling(st.mask)
        if sampling is None:
            raise SamplingError("the acquired non-Cartesian trajectory belongs to the scan; nothing to save")
        sampling.save(os.fspath(path), inputs=(self.scan.path,))  # atomic, never over the scan

    def load(self, path: str | os.PathLike) -> SamplingState:
        recipe = self.recipe_from_file(path)
        return self.begin_user_mask(recipe["mask"]) if recipe["kind"] == USER else self.use(recipe)

    def restore(self, saved: dict[str, Any]) -> None:
        """Make a project's saved recipe current (a hand-drawn one carries its ``mask``)."""
        if saved.get("kind") == USER:
            self.recipe.update(seed=int(saved.get("seed", 0)), center_fraction=saved.get("center_fraction"),
                               acceleration=float(saved.get("acceleration", 4.0)))
            self.begin_user_mask(saved["mask"])
        elif saved.get("kind"):
            self.set(saved["kind"], float(saved.get("acceleration", 4.0)), int(saved.get("seed", 0)),
                     saved.get("center_fraction"), dict(saved.get("params") or {}))

    def saved(self) -> dict[str, Any]:
        """The recipe to save in a project (with the ``mask`` of a hand-drawn one)."""
        return dict(self.state.recipe(), **({"mask": self.recipe["mask"]} if self.editing else {}))
