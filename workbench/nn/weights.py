"""Trained weights: safetensors tensors + a JSON sidecar, loaded without executing pickled code.

A weight file ``NAME.safetensors`` has a sidecar ``NAME.json`` with what is needed to rebuild and judge the
model::

    {"format": "mri-workbench-weights", "format_version": 1,
     "model": "xpdnet", "architecture": {... the model config ...}, "n_parameters": 1234567,
     "training": {"data": {...}, "sampling": {...}, "steps": 500, "batch_size": 2, "world_size": 1, ...},
     "command": "workbench train xpdnet --config configs/xpdnet_cpu.json", "validation": {...metrics...},
     "wall_time_s": 1500.0, "device": "cpu", "torch": "2.13.0", "created": "2025-...Z",
     "sha256": "<of the .safetensors file>"}

Training checkpoints (:func:`save_checkpoint`) use the same two-file layout with the optimizer state and the
RNG state as tensors, and the step, optimizer hyper-parameters and config in the JSON.

Loading checks, in this order, before any model is built: the sidecar's ``sha256`` against the file (a sidecar
without one is refused unless the caller trusts the file: ``trust=True``, or the environment variable
``WORKBENCH_TRUST_WEIGHTS=1`` for the app, the CLI and the plugins), then the architecture against the tensor
shapes of the safetensors header (the model is built on PyTorch's ``meta`` device, which allocates nothing, and
its state-dict shapes compared), so a sidecar that lies about the size is a :class:`WeightsError` and never a
multi-GB allocation.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from workbench.arrays import LRUCache
from workbench.atomic import atomic_write_bytes
from workbench.errors import WorkbenchError

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "TRUST_ENV",
    "WEIGHTS_FORMAT",
    "WeightsError",
    "build_with_weights",
    "cached_model",
    "check_architecture",
    "check_sha256",
    "file_sha256",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "misfit",
    "read_sidecar",
    "save_checkpoint",
    "save_weights",
    "shipped_weights",
    "sidecar_path",
    "tensor_shapes",
    "weights_problem",
]

WEIGHTS_FORMAT = "mri-workbench-weights"
CHECKPOINT_FORMAT = "mri-workbench-checkpoint"
FORMAT_VERSION = 1
TRUST_ENV = "WORKBENCH_TRUST_WEIGHTS"
"""Set to 1 to load weight files whose sidecar has no sha256 (their integrity cannot be checked)."""


class WeightsError(WorkbenchError):
    """A weight or checkpoint file is missing, damaged or does not fit the model."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``NAME.json`` beside ``NAME.safetensors``."""
    return Path(path).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(o: Any):
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata))


def _load_tensors(path: Path, device="cpu") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(path, "weight file not found")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(path, f"not a readable safetensors file ({exc})") from exc


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a weight or checkpoint file (``path`` may name either file)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise WeightsError(side, "sidecar (architecture and training record) not found beside the weights")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(side, f"sidecar is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "model" not in data or "architecture" not in data:
        raise WeightsError(side, "sidecar lacks the 'model' / 'architecture' entries")
    return data


# ------------------------------------------------------------------------------------------------------------
# Weights


def save_weights(path: str | os.PathLike, model: torch.nn.Module, record: dict[str, Any],
                 dtype: str = "float32") -> tuple[Path, Path]:
    """Write ``model``'s state dict to ``path`` (``.safetensors``) and the sidecar ``record`` (training data,
    sampling, steps, command, validation metrics, wall time, device ...; ``model``/``architecture`` are filled
    from the model). ``dtype="float16"`` stores floating tensors in half precision (half the file; loading
    casts back to the model's float32). Returns both paths."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(path, "weight files end in .safetensors")
    if dtype not in ("float32", "float16", "bfloat16"):
        raise WeightsError(path, f"weights dtype must be float32, float16 or bfloat16, got {dtype!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    target = getattr(torch, dtype)
    state = {k: v.to(target) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    _save_tensors(path, state, metadata={"format": WEIGHTS_FORMAT, "model": model.model_name})
    from workbench.nn.common import n_parameters

    sidecar = {
        "format": WEIGHTS_FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.model_name,
        "architecture": model.config.to_dict(),
        "n_parameters": n_parameters(model),
        "dtype": dtype,
        **{k: v for k, v in record.items() if k not in ("format", "format_version", "model", "architecture")},
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }
    side = sidecar_path(path)
    _write_json(side, sidecar)
    return path, side


def _trusted(trust: bool) -> bool:
    return trust or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_sha256(path: str | os.PathLike, sidecar: dict[str, Any], trust: bool = False) -> None:
    """The file's sha256 against its sidecar's; a sidecar without one is a :class:`WeightsError` unless
    ``trust`` (or ``$WORKBENCH_TRUST_WEIGHTS=1``) says to load the file unchecked."""
    expected = sidecar.get("sha256")
    if not expected:
        if _trusted(trust):
            return
        raise WeightsError(sidecar_path(path), "the sidecar has no sha256, so the weights' integrity cannot be "
                           f"checked; trust the file explicitly (trust=True, or {TRUST_ENV}=1) to load it anyway")
    if not isinstance(expected, str) or file_sha256(path) != expected.strip().lower():
        raise WeightsError(path, "the weights do not match their sidecar (sha256 differs); the files were mixed up")


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "weight file not found")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise WeightsError(path, f"not a readable safetensors file ({exc})") from exc


def _describe(arch: Any) -> str:
    return json.dumps(arch, default=str)[:120] if isinstance(arch, dict) else repr(arch)[:120]


@contextlib.contextmanager
def _at_most_parameters(limit: int, path: Path | str, what: str) -> Iterator[None]:
    """Stop a model build (in this thread) at its ``limit + 1``-th parameter: on the meta device a wide layer
    costs nothing, but a sidecar declaring thousands of unrolled iterations would still cost minutes and GBs of
    Python objects; the file holds only ``limit`` tensors."""
    from torch.nn.modules.module import register_module_parameter_registration_hook

    thread, count = threading.get_ident(), [0]

    def hook(module: torch.nn.Module, name: str, param: Any) -> None:
        if param is not None and threading.get_ident() == thread:
            count[0] += 1
            if count[0] > limit:
                raise WeightsError(path, f"the sidecar's {what} has more parameters than the {limit} tensors "
                                         "in the file")

    handle = register_module_parameter_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def check_architecture(path: str | os.PathLike, sidecar: dict[str, Any],
                       build: Callable[[dict[str, Any]], torch.nn.Module], what: str,
                       prefix: str = "") -> None:
    """Build the sidecar's architecture on the ``meta`` device (no memory) and compare its state-dict shapes with
    the tensors of ``path``'s header (those whose names start with ``prefix``, which is stripped): a
    :class:`WeightsError` naming the first difference, before a real model is ever allocated."""
    arch = sidecar.get("architecture")
    if not isinstance(arch, dict):
        raise WeightsError(sidecar_path(path), f"'architecture' must be an object, got {_describe(arch)}")
    shapes = {k[len(prefix):]: v for k, v in tensor_shapes(path).items() if k.startswith(prefix)}
    try:
        with torch.device("meta"), _at_most_parameters(len(shapes), path, what):
            skeleton = build(arch)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, NotImplementedError,
            OverflowError, RecursionError) as exc:
        raise WeightsError(sidecar_path(path), f"architecture cannot be built ({type(exc).__name__}: {exc})") from exc
    why = misfit(shapes, {k: v.shape for k, v in skeleton.state_dict().items()})
    if why:
        raise WeightsError(path, f"the tensors in the file do not fit the sidecar's {what} ({why})")


def misfit(shapes: dict[str, Any], expected: dict[str, Any], where: str = "the architecture") -> str:
    """What keeps tensors of ``shapes`` (name -> shape) from loading into a model whose state has the
    ``expected`` shapes, in words, or '' when they fit: the first difference (unrolled image networks in each,
    else a shape, else a tensor missing from the file, else one ``where`` lacks), then how many differ."""
    shapes = {k: tuple(v) for k, v in shapes.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    if not (missing or extra or wrong):
        return ""
    nets = [{k.split(".")[1] for k in keys if k.startswith("image_nets.")} for keys in (shapes, expected)]
    if all(nets) and nets[0] != nets[1]:  # the unrolled networks' iterations
        first = f"{len(nets[0])} unrolled image networks in the file, {len(nets[1])} in {where}"
    elif wrong:
        first = f"{wrong[0]} is {list(shapes[wrong[0]])} in the file, {list(expected[wrong[0]])} in {where}"
    else:
        first = (f"missing from the file: {', '.join(missing[:3])}" if missing
                 else f"not in {where}: {', '.join(extra[:3])}")
    return f"{first}; {len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of another shape"


def load_weights(path: str | os.PathLike, device="cpu", *, trust: bool = False,
                 build: Callable[[dict[str, Any]], torch.nn.Module] | None = None, what: str = "architecture"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, sidecar)`` of a weight file; safetensors only (no pickle). Checks the sidecar's hash
    (:func:`check_sha256`, ``trust``) and, given the model's ``build(architecture)``, the architecture against
    the file's tensor shapes (:func:`check_architecture`) before loading any tensor."""
    path = Path(path)
    sidecar = read_sidecar(path)
    if not path.is_file():
        raise WeightsError(path, "weight file not found")
    check_sha256(path, sidecar, trust)
    if build is not None:
        check_architecture(path, sidecar, build, what)
    return _load_tensors(path, device), sidecar


def load_model(path: str | os.PathLike, device="cpu", *, trust: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the model the sidecar describes and load its weights (eval mode, on ``device``); hash and
    architecture are checked first (:func:`load_weights`)."""
    from workbench.nn import build_model

    sidecar = read_sidecar(path)
    name = sidecar["model"]

    def build(arch: dict[str, Any]) -> torch.nn.Module:
        return build_model(name, arch)

    what = f"{name} architecture"
    tensors, sidecar = load_weights(path, device, trust=trust, build=build, what=what)
    model = build_with_weights(path, tensors, sidecar, build, what)
    return model.to(device).eval(), sidecar


def build_with_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], sidecar: dict[str, Any],
                       build: Callable[[dict[str, Any]], torch.nn.Module], what: str) -> torch.nn.Module:
    """``build(sidecar["architecture"])`` with ``tensors`` loaded strictly; a :class:`WeightsError` naming the
    sidecar when the architecture cannot be built, the weight file when the weights do not fit ``what``.
    Callers check the architecture first (:func:`load_weights` with ``build``), so the build allocates only
    what the file holds."""
    try:
        model = build(sidecar["architecture"])
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsError(sidecar_path(path), f"architecture cannot be built ({exc})") from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(path, f"weights do not fit the {what} of the sidecar ({first})") from exc
    return model


# ------------------------------------------------------------------------------------------------------------
# Checkpoints (resume)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    record: dict[str, Any]) -> None:
    """Model, optimizer and RNG state after ``step`` optimiser steps, for an exact resume."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = val
            else:
                state_meta.setdefault(str(idx), {})[key] = val
    tensors["rng.torch"] = torch.get_rng_state()
    _save_tensors(path, tensors, metadata={"format": CHECKPOINT_FORMAT})
    _write_json(sidecar_path(path), {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.model_name,
        "architecture": model.config.to_dict(),
        "step": int(step),
        "optimizer": {"param_groups": opt["param_groups"], "state_scalars": state_meta},
        **record,
        "sha256": file_sha256(path),
    })


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    device="cpu", *, trust: bool = False) -> dict[str, Any]:
    """Restore a :func:`save_checkpoint` file into ``model`` (and ``optimizer``); returns its sidecar (``step``).
    The hash is checked first (:func:`check_sha256`, ``trust``), and the model's shapes against the header."""
    path = Path(path)
    sidecar = read_sidecar(path)
    if sidecar.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(path, "not a training checkpoint")
    if not path.is_file():
        raise WeightsError(path, "checkpoint file not found")
    check_sha256(path, sidecar, trust)
    model = getattr(model, "module", model)
    shapes = {k[len("model."):]: v for k, v in tensor_shapes(path).items() if k.startswith("model.")}
    wrong = [k for k, v in model.state_dict().items() if k in shapes and shapes[k] != tuple(v.shape)]
    if wrong:
        raise WeightsError(path, f"checkpoint does not fit the model ({wrong[0]} is {list(shapes[wrong[0]])})")
    tensors = _load_tensors(path, device)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(path, f"checkpoint does not fit the model ({str(exc).splitlines()[0]})") from exc
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        for idx, extra in sidecar["optimizer"].get("state_scalars", {}).items():
            state.setdefault(int(idx), {}).update(extra)
        optimizer.load_state_dict({"state": state, "param_groups": sidecar["optimizer"]["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].cpu())
    return sidecar


# ------------------------------------------------------------------------------------------------------------
# Shipped weights and the plugins' model cache


def shipped_weights(model: str) -> Path:
    """Where the shipped weights of ``model`` live: ``resources/weights/<model>.safetensors`` (may be absent)."""
    from workbench.paths import resources_dir

    try:
        base = resources_dir()
    except WorkbenchError:
        base = Path(__file__).resolve().parents[2] / "resources"
    return base / "weights" / f"{model}.safetensors"


def weights_problem(path: str | os.PathLike, models: tuple[str, ...], kind: str | None = None) -> str | None:
    """Why the weight file ``path`` cannot be used by a plugin for ``models`` (None: it can), in words a user
    understands; ``kind`` names what is expected (default: the model names). Reads only the sidecar (cheap
    enough for ``Method.check``)."""
    path = Path(path)
    if not path.is_file():
        # shipped files are named after their config (unet_noncartesian.safetensors <- unet_noncartesian_cpu.json)
        config = path.stem if path.stem.startswith(models[0]) else models[0]
        return (f"weight file {path} not found; train {kind or 'one'} with `workbench train {models[0]} --config "
                f"configs/{config}_cpu.json` or choose a weight file")
    try:
        side = read_sidecar(path)
    except WeightsError as exc:
        return str(exc)
    if side.get("model") not in models:
        return f"{path} holds {side.get('model')} weights, not {kind or ' / '.join(models)}"
    return None


# One cache of loaded networks for every loader (plugins' models, the score network): keyed by file, modification
# time, device and loader, so that a retrained file is reloaded and its older version dropped.
_MODEL_CACHE: LRUCache[tuple, tuple[torch.nn.Module, dict]] = LRUCache(None)


def cached_model(path: str | os.PathLike, device="cpu", load=None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``load(path, device)`` (default :func:`load_model`) cached by (file, modification time, device, loader):
    a plugin loads its weights once."""
    load = load_model if load is None else load
    path = Path(path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise WeightsError(path, "weight file not found") from None
    key = (str(path), mtime, str(torch.device(device)), load)

    def create():
        _MODEL_CACHE.discard(lambda k: k[0] == key[0] and k[3] is load)  # an older version of the same file
        return load(path, device)

    return _MODEL_CACHE.get_or_create(key, create)
