"""Training data: synthetic multi-coil slices generated on the fly, or a folder of fastMRI files.

Both data sets answer ``batch(step, rank, world_size, batch_size) -> list[item]`` deterministically (the same
arguments give the same items, bit for bit), so that a resumed run sees exactly the data an uninterrupted run
would, and every DDP rank draws different items without any communication; ``validation_items()`` gives the
held-out set. An item is a dict that :func:`workbench.nn.batch.collate` groups into batches:
``kspace`` (undersampled, ``[C, H, W]`` or ``[C, K]``), ``mask`` ``[H, W]`` or ``trajectory``/``dcf``,
``grid_shape``, ``recon_shape``, ``target`` ``[h, w]``, ``data_range`` and ``meta``.

Sampling (``sampling`` config): ``kinds`` from :func:`workbench.sampling.sampling_kinds` (default: fastMRI's
``random`` and ``equispaced`` line masks), ``accelerations`` (default 4 and 8) and, for line masks, the
``center_fractions`` paired with them (default 0.32 / R: 0.08 at 4x, 0.04 at 8x as in fastMRI). Cartesian masks
are drawn per item; a non-Cartesian trajectory is shared by the items of one step (one NUFFT per batch).

Synthetic data (:class:`SyntheticData`, :func:`workbench.simulate.generate_slice`): per step a matrix size, a
coil count and a readout oversampling (shared by the step's items on all ranks, so that they batch and the
ranks stay in step); per item a seed that fixes anatomy position, contrast (random spin-echo TR/TE and tissue
properties), coil geometry and gains, noise level and correlation, pose, texture and bias. The coil model is the
generator's straight wires unless the config sets ``"coil_model": "loop"`` (circular surface loops; optionally
``"loop_radius_mm": [lo, hi]``, ``"loop_center_z_mm": [lo, hi]``, ``"loop_rings": n``). Training seeds are
``>= TRAIN_SEED_OFFSET`` and validation seeds below it: the held-out slices are never trained on.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from workbench.arrays import LRUCache
from workbench.errors import WorkbenchError

TRAIN_SEED_OFFSET = 1_000_000  # training generator seeds are >= this; validation seeds are < this
_SEED_SPACE = 2**31 - 1 - TRAIN_SEED_OFFSET
CARTESIAN_LINE_KINDS = ("random", "equispaced")


class DataConfigError(WorkbenchError):
    """A data or sampling configuration entry is invalid."""


# ------------------------------------------------------------------------------------------------------------
# Sampling


DEFAULT_SAMPLING: dict[str, Any] = {"kinds": ["random", "equispaced"], "accelerations": [4, 8],
                                    "center_fractions": [0.08, 0.04]}


class SamplingPlan:
    """Which masks / trajectories training draws from (see the module docstring)."""

    def __init__(self, config: dict[str, Any] | None = None):
        from workbench.sampling import sampling_kinds

        cfg = {**DEFAULT_SAMPLING, **(config or {})}
        self.kinds = [str(k) for k in cfg["kinds"]]
        self.accelerations = [float(a) for a in cfg["accelerations"]]
        cfs = cfg.get("center_fractions")
        if cfs is None or (config is not None and "accelerations" in config and "center_fractions" not in config):
            cfs = [0.32 / a for a in self.accelerations]
        self.center_fractions = [float(c) for c in cfs]
        unknown = [k for k in self.kinds if k not in sampling_kinds()]
        if unknown or not self.kinds:
            raise DataConfigError(f"sampling kinds {unknown or '[]'} unknown; choose from {', '.join(sampling_kinds())}")
        if not self.accelerations or any(a < 1 for a in self.accelerations):
            raise DataConfigError(f"sampling accelerations must be >= 1, got {self.accelerations}")
        if len(self.center_fractions) != len(self.accelerations):
            raise DataConfigError("sampling: give one center fraction per acceleration")
        cart = [k in ("random", "equispaced", "poisson", "gaussian") for k in self.kinds]
        if any(cart) and not all(cart):
            raise DataConfigError("sampling: mix of Cartesian and non-Cartesian kinds; train them as separate models")
        self.cartesian = all(cart)
        # the training loop prepares data in a background thread: the cache has its own lock
        self._trajectories: LRUCache[tuple, Any] = LRUCache(32)

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "accelerations": self.accelerations, "center_fractions": self.center_fractions}

    def choose(self, rng: np.random.Generator) -> tuple[str, float, float]:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        i = int(rng.integers(len(self.accelerations)))
        return kind, self.accelerations[i], self.center_fractions[i]

    def mask(self, kind: str, acceleration: float, center_fraction: float, shape: tuple[int, int],
             seed: int) -> torch.Tensor:
        """A Cartesian mask ``[H, W]`` bool."""
        from workbench.sampling import make_sampling

        return make_sampling(kind, shape, acceleration, seed=seed, center_fraction=center_fraction).mask

    def trajectory(self, kind: str, acceleration: float, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(trajectory [2, K], dcf [K])`` of a non-Cartesian kind (cached: the same object for one setting)."""
        from workbench.sampling import make_sampling

        key = (kind, float(acceleration), tuple(shape))

        def create():
            s = make_sampling(kind, shape, acceleration)
            return s.trajectory.contiguous(), s.dcf.contiguous()

        return self._trajectories.get_or_create(key, create)


def _undersample(kspace: torch.Tensor, plan: SamplingPlan, rng: np.random.Generator, mask_seed: int,
                 step_sampling: tuple | None) -> dict[str, Any]:
    """Apply a drawn sampling to fully sampled k-space ``[C, H, W]``."""
    grid = tuple(int(s) for s in kspace.shape[-2:])
    if plan.cartesian:
        kind, acc, cf = plan.choose(rng)
        mask = plan.mask(kind, acc, cf, grid, mask_seed)
        return {"kspace": kspace * mask, "mask": mask,
                "sampling": {"kind": kind, "acceleration": acc, "center_fraction": cf, "seed": mask_seed}}
    from workbench.physics.fft import ifft2c
    from workbench.sampling.retrospective import sample_noncartesian

    kind, acc, _ = step_sampling
    traj, dcf = plan.trajectory(kind, acc, grid)
    y = sample_noncartesian(ifft2c(kspace), traj)
    return {"kspace": y, "trajectory": traj, "dcf": dcf, "sampling": {"kind": kind, "acceleration": acc}}


# ------------------------------------------------------------------------------------------------------------
# Synthetic data


DEFAULT_SYNTHETIC: dict[str, Any] = {
    "shapes": [[160, 160], [192, 192]],  # reconstruction sizes (H, W); the grid doubles H with oversampling
    "n_coils": [1, 2, 4, 8, 12, 16],  # drawn per step
    "n_coils_weights": None,  # probabilities of the n_coils entries (None: uniform)
    "readout_oversampling": [1, 2],
    # probability that a step's items have readout and phase encode swapped (masks then run along the former
    # readout): real scans come in both orientations, and a network trained on one does not unfold the other
    "swap_readout_p": 0.0,
    # probability that an item is a test object (workbench.simulate.make_phantom: a container with inserts, no
    # skull) rather than a head, in a 180-240 mm field of view: real scans include phantoms, and networks that
    # only saw heads draw a skull-like rim at every object's border
    "phantom_p": 0.0,
    # probability that an item is a real scan's magnitude slice (workbench.simulate.make_real: dipy's sample b0
    # EPI and T1 slices, real anatomy and texture) rather than the template head; phantom_p + real_p <= 1
    "real_p": 0.0,
    # the most a real slice is upsampled onto the grid (simulate.make_real's max_upsampling; beyond it the pixel
    # is made coarser): slices of 2-4 mm resampled onto a 1 mm grid have no high frequencies, and a network
    # trained on them blurs real scans. None: any (the data of configurations written before the option)
    "real_max_upsampling": None,
    # probability that a test object fills the reconstructed field of view (simulate.make_phantom's fill_mm:
    # the real twix phantoms reach the readout crop once the oversampling is removed)
    "fill_fov_p": 0.0,
    # probability that a template head gets synthetic cortical folds (workbench.simulate's folds, strength drawn
    # in 0.5..1): the average template has none, and a network trained on it smooths a real brain's sulci
    "folds_p": 0.0,
    "contrasts": ["random", "t1", "t2", "pd"],
    "snr": [10.0, 60.0],  # white-matter SNR range
    "noise_correlation": None,  # None: random 0..0.5 per item
    "pose": "random",  # "random": rotation, flip, scale and shift drawn per item; "fixed": upright, centred
    "texture": None,  # None: random per item
    "bias": None,
    "coil_gap_mm": None,
    "coil_model": "wire",  # "wire" (straight wires, 1/r) or "loop" (circular surface loops: workbench.simulate)
    "loop_radius_mm": None,  # "loop" only: [lo, hi] mm per volume (None: the generator's 55-75 mm)
    "loop_center_z_mm": None,  # "loop" only: MNI z range of the array's centre (None: 0-30 mm)
    "loop_rings": None,  # "loop" only: rings along z (None: ceil(n_coils / 8))
    "intensity_log10": [-3.0, 3.0],  # random global scale of the data (scanner units), log10 range
    "target": "reference",  # "reference": RSS of the fully sampled data (fastMRI); "clean": noise-free |image|
    "n_val": 16,
}


LOOP_OPTIONS = ("loop_radius_mm", "loop_center_z_mm", "loop_rings")


class SyntheticData:
    """Synthetic multi-coil brain slices from :mod:`workbench.simulate` (see the module docstring)."""

    kind = "synthetic"

    def __init__(self, config: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None, seed: int = 0):
        unknown = set(config or {}) - set(DEFAULT_SYNTHETIC) - {"kind"}
        if unknown:
            raise DataConfigError(f"synthetic data: unknown option(s) {', '.join(sorted(unknown))}; "
                                  f"known: {', '.join(DEFAULT_SYNTHETIC)}")
        self.config = {**copy.deepcopy(DEFAULT_SYNTHETIC), **(config or {})}
        self.plan = SamplingPlan(sampling)
        self.seed = int(seed)
        c = self.config
        self.shapes = [tuple(int(v) for v in s) for s in c["shapes"]]
        self.n_coils = [int(n) for n in c["n_coils"]]
        if not self.shapes or any(min(s) < 32 for s in self.shapes):
            raise DataConfigError(f"synthetic data: shapes must be (H, W) pairs >= 32, got {c['shapes']}")
        if not self.n_coils or any(not 1 <= n <= 64 for n in self.n_coils):
            raise DataConfigError(f"synthetic data: n_coils must be in 1..64, got {c['n_coils']}")
        w = c.get("n_coils_weights")
        self.coil_p = None if w is None else np.asarray(w, float) / float(np.sum(w))
        if self.coil_p is not None and len(self.coil_p) != len(self.n_coils):
            raise DataConfigError("synthetic data: n_coils_weights must have one weight per n_coils entry")
        if c["target"] not in ("reference", "clean"):
            raise DataConfigError(f"synthetic data: target must be 'reference' or 'clean', got {c['target']!r}")
        for key in ("swap_readout_p", "phantom_p", "real_p", "fill_fov_p", "folds_p"):
            try:
                ok = 0.0 <= float(c[key]) <= 1.0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise DataConfigError(f"synthetic data: {key} must be in [0, 1], got {c[key]!r}")
        if c["real_max_upsampling"] is not None:
            try:
                ok = 1.0 <= float(c["real_max_upsampling"]) < float("inf")
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise DataConfigError("synthetic data: real_max_upsampling must be a number >= 1 or null, got "
                                      f"{c['real_max_upsampling']!r}")
        if float(c["phantom_p"]) + float(c["real_p"]) > 1.0 + 1e-9:
            raise DataConfigError(f"synthetic data: phantom_p + real_p must be <= 1, got {c['phantom_p']} + "
                                  f"{c['real_p']}")
        if c["pose"] not in ("random", "fixed"):
            raise DataConfigError(f"synthetic data: pose must be 'random' or 'fixed', got {c['pose']!r}")
        from workbench.simulate import COIL_MODELS

        if c["coil_model"] not in COIL_MODELS:
            raise DataConfigError(f"synthetic data: coil_model must be one of {', '.join(COIL_MODELS)}, "
                                  f"got {c['coil_model']!r}")
        loop_opts = [k for k in LOOP_OPTIONS if c[k] is not None]
        if c["coil_model"] != "loop" and loop_opts:
            raise DataConfigError(f"synthetic data: {', '.join(loop_opts)} need \"coil_model\": \"loop\"")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.config, "train_seeds": f">= {TRAIN_SEED_OFFSET}",
                "validation_seeds": f"0..{int(self.config['n_val']) - 1}"}

    # --- seeds -------------------------------------------------------------------------------------------
    def train_seed(self, global_index: int) -> int:
        """Generator seed of training item ``global_index`` (always >= TRAIN_SEED_OFFSET)."""
        return TRAIN_SEED_OFFSET + (self.seed * 1_000_003 + int(global_index)) % _SEED_SPACE

    @staticmethod
    def validation_seed(i: int) -> int:
        return int(i)

    # --- items -------------------------------------------------------------------------------------------
    def draw_setting(self, rng: np.random.Generator) -> dict[str, Any]:
        """A matrix size, coil count, readout oversampling (and non-Cartesian sampling) from the config."""
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        n_coils = int(rng.choice(self.n_coils, p=self.coil_p))
        oversampling = int(rng.choice(self.config["readout_oversampling"]))
        step_sampling = None if self.plan.cartesian else self.plan.choose(rng)
        p_swap = float(self.config["swap_readout_p"])
        swap = bool(rng.random() < p_swap) if p_swap > 0 else False  # no draw at 0: older configs keep their data
        return {"shape": shape, "n_coils": n_coils, "oversampling": oversampling, "step_sampling": step_sampling,
                "swap_readout": swap}

    def held_out_setting(self, seed: int) -> dict[str, Any]:
        """The setting of a held-out slice (validation, benchmarks): drawn from the seed alone."""
        return self.draw_setting(np.random.default_rng([int(seed), 15485863]))

    def simulate(self, seed: int, setting: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], np.random.Generator]:
        """The fully sampled slice of generator seed ``seed``: ``(generate_slice output, meta, rng)``; ``rng``
        continues with the item's own draws (mask, units)."""
        from workbench.simulate import generate_slice

        c = self.config
        rng = np.random.default_rng([seed, 7919])  # the item's own choices (contrast, mask, units)
        contrast = str(rng.choice(c["contrasts"]))
        if c["pose"] == "random":  # None: the generator draws it
            pose = {"rotation_deg": None, "flip_lr": None, "scale": None, "shift_mm": None}
        else:
            pose = {"rotation_deg": 0.0, "flip_lr": False, "scale": 1.0, "shift_mm": (0.0, 0.0)}
        coils = {}  # the wire model: the generator's default
        if c["coil_model"] != "wire":
            coils = {"coil_model": c["coil_model"],
                     **{k: tuple(c[k]) if isinstance(c[k], list) else c[k] for k in LOOP_OPTIONS}}
        subject = {}
        p_phantom, p_real = float(c["phantom_p"]), float(c["real_p"])
        if p_phantom > 0 or p_real > 0:  # its own generator: older configs keep their data
            own = np.random.default_rng([seed, 2718])
            u = own.random()  # one draw decides: [0, phantom_p) phantom, then real_p real, else the template
            if u < p_phantom:
                subject = {"subject": "phantom", "fov_mm": float(own.uniform(180.0, 240.0))}
                if float(c["fill_fov_p"]) > 0 and own.random() < float(c["fill_fov_p"]):
                    subject["fill_fov"] = True
            elif u < p_phantom + p_real:
                subject = {"subject": "real"}
                if c["real_max_upsampling"] is not None:
                    subject["real_max_upsampling"] = float(c["real_max_upsampling"])
        if not subject and float(c["folds_p"]) > 0:  # a template head; its own generator, as above
            own = np.random.default_rng([seed, 3163])
            if own.random() < float(c["folds_p"]):
                subject = {"folds": float(own.uniform(0.5, 1.0))}
        sim = generate_slice(
            seed, shape=setting["shape"], n_coils=setting["n_coils"], contrast=contrast, snr=tuple(c["snr"]),
            noise_correlation=c["noise_correlation"], readout_oversampling=setting["oversampling"],
            texture=c["texture"], bias=c["bias"], coil_gap_mm=c["coil_gap_mm"], **pose, **coils, **subject,
        )
        meta = {"seed": int(seed), "contrast": contrast, "n_coils": setting["n_coils"],
                "swap_readout": bool(setting.get("swap_readout", False)), "subject": subject.get("subject", "brain"),
                "shape": list(setting["shape"]), "readout_oversampling": setting["oversampling"],
                "snr": round(float(sim["params"].snr), 2)}
        if "folds" in subject:
            meta["folds"] = round(subject["folds"], 3)
        return sim, meta, rng

    def item(self, seed: int, setting: dict[str, Any]) -> dict[str, Any]:
        """One training item from generator seed ``seed`` with the step's ``setting``."""
        c = self.config
        sim, meta, rng = self.simulate(seed, setting)
        lo, hi = c["intensity_log10"]
        units = float(10.0 ** rng.uniform(lo, hi)) if hi > lo else float(10.0**lo)
        kspace = torch.from_numpy(sim["kspace"]) * units
        target = torch.from_numpy(sim["reference"] if c["target"] == "reference" else sim["target"]) * units
        if setting.get("swap_readout"):
            kspace, target = kspace.transpose(-2, -1).contiguous(), target.transpose(-2, -1).contiguous()
        mask_seed = int(rng.integers(0, 2**31 - 1))
        out = _undersample(kspace, self.plan, rng, mask_seed, setting["step_sampling"])
        meta.update(units=units, sampling=out.pop("sampling"))
        return {**out, "grid_shape": tuple(kspace.shape[-2:]), "recon_shape": tuple(target.shape),
                "target": target.float(), "data_range": float(target.max()), "meta": meta}

    def batch(self, step: int, rank: int = 0, world_size: int = 1, batch_size: int = 1) -> list[dict[str, Any]]:
        """The ``batch_size`` items of ``rank`` at optimiser step ``step`` (deterministic)."""
        setting = self.draw_setting(np.random.default_rng([self.seed, int(step), 104729]))
        first = (int(step) * world_size + int(rank)) * batch_size
        return [self.item(self.train_seed(first + j), setting) for j in range(batch_size)]

    def validation_items(self, n: int | None = None) -> list[dict[str, Any]]:
        """The held-out slices (generator seeds ``0..n-1``), each with its own setting and sampling."""
        n = int(self.config["n_val"] if n is None else n)
        items = []
        for i in range(n):
            seed = self.validation_seed(i)
            items.append(self.item(seed, self.held_out_setting(seed)))
        return items


# ------------------------------------------------------------------------------------------------------------
# fastMRI folder


class FastMRIData:
    """Slices of the fastMRI HDF5 files in a folder (multi- or single-coil, fully sampled), undersampled with
    the sampling plan on the fly; targets are the files' stored references (``reconstruction_rss``/``_esc``,
    else the RSS of the fully sampled slice), data range the file's ``max`` attribute (fastMRI's).

    Options: ``path`` (folder of ``*.h5``), ``val_path`` (held-out folder; default: every ``val_every``-th file
    of ``path`` in name order, at least one when there are two or more files), ``slices`` ("all" or
    ``[first, stop]`` per volume), ``n_val`` (held-out slices used for validation, spread over the files).
    """

    kind = "fastmri"

    def __init__(self, config: dict[str, Any], sampling: dict[str, Any] | None = None, seed: int = 0):
        known = {"kind", "path", "val_path", "val_every", "slices", "n_val"}
        unknown = set(config) - known
        if unknown:
            raise DataConfigError(f"fastmri data: unknown option(s) {', '.join(sorted(unknown))}; known: "
                                  f"{', '.join(sorted(known))}")
        if "path" not in config:
            raise DataConfigError("fastmri data: 'path' (a folder of fastMRI .h5 files) is required")
        self.config = dict(config)
        self.plan = SamplingPlan(sampling)
        self.seed = int(seed)
        self.path = Path(os.path.expanduser(str(config["path"])))
        if not self.path.is_dir():
            raise DataConfigError(f"{self.path}: fastmri data folder not found")
        files = sorted(self.path.glob("*.h5"))
        if not files:
            raise DataConfigError(f"{self.path}: no fastMRI .h5 files in the folder")
        if config.get("val_path"):
            vp = Path(os.path.expanduser(str(config["val_path"])))
            val_files = sorted(vp.glob("*.h5"))
            if not val_files:
                raise DataConfigError(f"{vp}: no fastMRI .h5 files in the validation folder")
            train_files = files
        elif len(files) >= 2:
            every = int(config.get("val_every", 10))
            val_files = files[::every][: max(1, len(files) // every)] if every > 0 else []
            val_files = val_files or [files[0]]
            train_files = [f for f in files if f not in val_files]
        else:
            train_files, val_files = files, []
        self._scans: LRUCache[str, Any] = LRUCache(16)  # its own lock: data is prepared in a background thread
        self.train_index = self._index(train_files)
        self.val_index = self._index(val_files)
        if not self.train_index:
            raise DataConfigError(f"{self.path}: the fastMRI files hold no slices to train on")
        self.train_files = [str(f) for f in train_files]
        self.val_files = [str(f) for f in val_files]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: str(v) for k, v in self.config.items()}, "train_files": len(self.train_files),
                "train_slices": len(self.train_index), "val_files": len(self.val_files)}

    def _scan(self, path: str):
        from workbench.io import open_scan

        return self._scans.get_or_create(path, lambda: open_scan(path, format="fastmri"))

    def _index(self, files: Sequence[Path]) -> list[tuple[str, int]]:
        out = []
        sl = self.config.get("slices", "all")
        for f in files:
            scan = self._scan(str(f))
            if not scan.is_cartesian or not scan.fully_sampled:
                raise DataConfigError(f"{f}: training needs fully sampled Cartesian fastMRI files")
            lo, hi = (0, scan.n_slices) if sl == "all" else (int(sl[0]), min(int(sl[1]), scan.n_slices))
            out += [(str(f), i) for i in range(lo, hi)]
        return out

    def item(self, path: str, index: int, rng: np.random.Generator, step_sampling) -> dict[str, Any]:
        from workbench.physics.fft import center_crop, ifft2c, rss

        scan = self._scan(path)
        k = scan.kspace(index)
        if k.dim() == 2:
            k = k[None]
        ref = scan.reference(index)
        target = torch.from_numpy(ref) if ref is not None else center_crop(rss(ifft2c(k)), tuple(scan.recon_shape))
        vmax = scan.attrs.get("max")
        data_range = float(vmax) if vmax is not None else float(target.max())
        out = _undersample(k, self.plan, rng, int(rng.integers(0, 2**31 - 1)), step_sampling)
        if out.get("mask") is not None and scan.encoded_mask is not None:
            # zero-padded phase-encode edges carry no data: they are not samples
            out["mask"] = out["mask"] & torch.from_numpy(np.asarray(scan.encoded_mask, bool))
            out["kspace"] = k * out["mask"]
        meta = {"file": os.path.basename(path), "slice": int(index), "n_coils": int(k.shape[0]),
                "sampling": out.pop("sampling")}
        return {**out, "grid_shape": tuple(scan.grid_shape), "recon_shape": tuple(target.shape),
                "target": target.float(), "data_range": data_range, "meta": meta}

    def batch(self, step: int, rank: int = 0, world_size: int = 1, batch_size: int = 1) -> list[dict[str, Any]]:
        n = len(self.train_index)
        step_sampling = None if self.plan.cartesian else self.plan.choose(
            np.random.default_rng([self.seed, int(step), 104729]))
        items = []
        for j in range(batch_size):
            pos = (int(step) * world_size + int(rank)) * batch_size + j
            epoch, within = divmod(pos, n)
            order = np.random.default_rng([self.seed, epoch, 65537]).permutation(n)
            path, index = self.train_index[int(order[within])]
            rng = np.random.default_rng([self.seed, pos, 7919])
            items.append(self.item(path, index, rng, step_sampling))
        return items

    def validation_items(self, n: int | None = None) -> list[dict[str, Any]]:
        n = int(self.config.get("n_val", 16) if n is None else n)
        if not self.val_index:
            return []
        picks = np.unique(np.linspace(0, len(self.val_index) - 1, min(n, len(self.val_index))).round().astype(int))
        items = []
        for i in picks:
            path, index = self.val_index[int(i)]
            rng = np.random.default_rng([int(i), 15485863])
            step_sampling = None if self.plan.cartesian else self.plan.choose(rng)
            items.append(self.item(path, index, rng, step_sampling))
        return items


def make_data(config: dict[str, Any], sampling: dict[str, Any] | None = None, seed: int = 0):
    """The data set a training config's ``data`` entry describes (``kind``: "synthetic" or "fastmri")."""
    kind = (config or {}).get("kind", "synthetic")
    if kind == "synthetic":
        return SyntheticData({k: v for k, v in (config or {}).items() if k != "kind"}, sampling, seed)
    if kind == "fastmri":
        return FastMRIData(config, sampling, seed)
    raise DataConfigError(f"data kind must be 'synthetic' or 'fastmri', got {kind!r}")
