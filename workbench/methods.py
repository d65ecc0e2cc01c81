"""The plugin API: what a reconstruction method is, how its parameters are declared, and how methods are found.

Every reconstruction method, built-in or third-party, is a :class:`Method` subclass::

    @dataclass
    class Params:
        n_iter: int = param(50, min=1, max=10_000, help="number of iterations")
        step: float = param(1.0, min=0.0, max=2.0, help="step size relative to 1/||A||^2")

    class Landweber(Method):
        name = "landweber"
        version = "1.0"
        description = "Landweber iteration x <- x - step A^H (A x - y)"
        capabilities = Capabilities(cartesian=True, noncartesian=True)
        Params = Params

        def run(self, problem, params, ctx):
            ...
            return Result(image=problem.crop(x), history=history)

The application never calls ``run`` directly: it goes through :func:`safe_run` (directly, or via
``workbench.jobs``), which validates the parameters, asks :meth:`Method.check`, runs under ``torch.no_grad()``,
and turns any exception into a :class:`MethodError` carrying the plugin's traceback text.

Discovery (:func:`discover_methods`) looks, in this order (the first method of a name wins; later ones with the
same name are recorded as errors):

1. the built-in methods: the entry points of the group ``workbench.methods`` that the workbench's own
   distribution declares (``pyproject.toml``; the repository's ``plugins/`` folder, installed as the package
   ``workbench_builtin_methods``), in module order;
2. the entry points of the same group declared by other installed distributions;
3. drop-in ``*.py`` files (not starting with ``_`` or ``.``) in the folders given as ``plugin_dirs``, in
   ``$WORKBENCH_PLUGIN_DIR`` (``os.pathsep``-separated) and in the user folder :func:`user_plugin_dir`.

Which objects of a module are methods: the module-level list ``METHODS`` (classes or instances) when the
module defines one; otherwise every :class:`Method` subclass *defined in that module* with a non-empty
``name`` (imported classes and unnamed intermediate base classes are ignored). An entry point may name a
Method subclass, an instance, a list of them, or a module.

A plugin that fails to import, declares invalid parameters or has an incompatible ``api_version`` is recorded
in ``Registry.errors`` (a :class:`PluginError` with its traceback text) and skipped; nothing else is affected.
That includes a plugin calling ``sys.exit()`` or raising ``KeyboardInterrupt`` (any BaseException) while it is
imported or instantiated; in ``run``, :func:`safe_run` turns them into a failed run the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import math
import os
import re
import sys
import threading
import time
import traceback
import types
import typing
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.result import Result

if TYPE_CHECKING:  # pragma: no cover
    from workbench.problem import Problem

__all__ = [
    "API_VERSION", "DISTRIBUTION", "ENTRY_POINT_GROUP", "PLUGIN_DIR_ENV", "SUPPORTED_API_VERSIONS", "Capabilities",
    "JobCancelled", "Method", "MethodError", "MethodNotApplicableError", "NoParams", "ParamDeclarationError",
    "ParamError", "ParamSpec", "PluginDefinitionError", "PluginError", "Registry", "RunContext",
    "UnknownMethodError", "discover_methods", "load_plugin_file", "methods_in_module", "param", "param_specs",
    "params_to_dict", "parse_params", "plugin_search_dirs", "plugin_traceback", "safe_run", "user_plugin_dir",
    "validate_method", "validate_method_class", "validate_params", "validate_result",
]

API_VERSION = 1
"""The plugin API version this workbench provides. A plugin declaring another ``api_version`` is not loaded."""

SUPPORTED_API_VERSIONS = frozenset({1})
ENTRY_POINT_GROUP = "workbench.methods"
DISTRIBUTION = "mri-workbench"  # the distribution whose entry points are the built-in methods
PLUGIN_DIR_ENV = "WORKBENCH_PLUGIN_DIR"
_META_KEY = "workbench.param"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# ======================================================================================================
# Errors
# ======================================================================================================


class JobCancelled(Exception):
    """Raised by :meth:`RunContext.check_cancelled` when the user cancelled the run. Methods let it propagate."""


class ParamError(WorkbenchError):
    """A parameter value is invalid (wrong type, out of range, not one of the choices, unknown name)."""

    def __init__(self, message: str, *, param: str | None = None, owner: str | None = None):
        self.param = param
        self.owner = owner
        super().__init__(message)


class PluginDefinitionError(Exception):
    """A plugin is declared incorrectly (no name, bad capabilities, incompatible api_version, ...)."""


class ParamDeclarationError(PluginDefinitionError):
    """A Params dataclass is declared incorrectly (unsupported type, default out of range, ...)."""


class MethodError(WorkbenchError):
    """A method failed while checking or running. ``traceback`` holds the plugin's traceback text."""

    def __init__(self, method: str, message: str, traceback_text: str = ""):
        self.method = method
        self.message = message
        self.traceback = traceback_text
        super().__init__(f"{method}: {message}")


class MethodNotApplicableError(MethodError):
    """:meth:`Method.check` gave reasons why the method cannot run on this problem (``reasons``)."""

    def __init__(self, method: str, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__(method, "cannot run on this data: " + "; ".join(self.reasons))


class UnknownMethodError(WorkbenchError):
    """No method of that name was found."""


# ======================================================================================================
# Capabilities
# ======================================================================================================


@dataclass(frozen=True)
class Capabilities:
    """What data a method accepts and what it gives.

    Attributes:
        cartesian: reconstructs Cartesian (masked grid) data.
        noncartesian: reconstructs non-Cartesian (trajectory) data.
        multicoil: accepts more than one receive coil.
        singlecoil: accepts a single coil.
        needs_weights: needs trained weights (its ``check`` says when they are missing).
        gives_uncertainty: fills ``Result.std`` and/or ``Result.samples``.
        stochastic: results depend on a random seed (declare a ``seed`` parameter).
    """

    cartesian: bool = True
    noncartesian: bool = False
    multicoil: bool = True
    singlecoil: bool = True
    needs_weights: bool = False
    gives_uncertainty: bool = False
    stochastic: bool = False

    _LABELS: ClassVar[dict[str, str]] = {
        "cartesian": "cart", "noncartesian": "noncart", "multicoil": "multi", "singlecoil": "single",
        "needs_weights": "weights", "gives_uncertainty": "uncertainty", "stochastic": "stochastic",
    }

    def labels(self) -> list[str]:
        """Short labels of the flags that are set, e.g. ``["cart", "multi", "single", "uncertainty"]``."""
        return [label for name, label in self._LABELS.items() if getattr(self, name)]

    def to_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)


# ======================================================================================================
# Parameters
# ======================================================================================================

_PARAM_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as the GUI form builder and the CLI see it.

    ``type`` is one of ``bool, int, float, str``; ``optional`` means None is allowed (typically "automatic",
    e.g. ``lam: float | None = param(None, ...)`` with the method choosing the value and reporting it in
    ``Result.chosen``). ``min``/``max`` are inclusive bounds for numbers; ``choices`` lists the allowed values.
    """

    name: str
    type: type
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    unit: str = ""
    help: str = ""
    log_scale: bool = False
    label: str = ""
    optional: bool = False

    @property
    def type_name(self) -> str:
        return self.type.__name__ + (" | None" if self.optional else "")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["type"] = self.type.__name__
        d["choices"] = None if self.choices is None else list(self.choices)
        return d

    def validate(self, value: Any, owner: str | None = None) -> Any:
        """Convert ``value`` (a string from the CLI, or a Python value) to this parameter's type and check its
        range and choices. Returns the converted value; raises :class:`ParamError` naming the parameter."""
        return _coerce(self, value, owner)


def param(
    default: Any,
    *,
    min: float | None = None,  # noqa: A002 - the natural names for a form's bounds
    max: float | None = None,  # noqa: A002
    choices: Sequence[Any] | None = None,
    unit: str = "",
    help: str = "",  # noqa: A002
    log_scale: bool = False,
    label: str | None = None,
) -> Any:
    """Declare one field of a method's ``Params`` dataclass: its default, inclusive range, choices, unit, help
    text, whether a slider should be logarithmic and the form label (default: the name with spaces)."""
    meta = {
        "min": min, "max": max, "choices": None if choices is None else tuple(choices), "unit": unit,
        "help": help, "log_scale": log_scale, "label": label,
    }
    return dataclasses.field(default=default, metadata={_META_KEY: meta})


@dataclass
class NoParams:
    """The Params of a method without parameters."""


def _unwrap_type(hint: Any) -> tuple[Any, bool]:
    """``float | None`` -> (float, True); ``int`` -> (int, False)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


_SPECS: "weakref.WeakKeyDictionary[type, tuple[ParamSpec, ...]]" = weakref.WeakKeyDictionary()


def param_specs(params_cls: type) -> list[ParamSpec]:
    """The :class:`ParamSpec` of every field of a Params dataclass, in declaration order.

    Raises :class:`ParamDeclarationError` when the class is not a dataclass, a field has no default, an
    unsupported type (only bool, int, float, str and their ``| None`` forms), inconsistent bounds or choices,
    or a default that violates its own range or choices. Kept per class once read (the specs are frozen;
    resolving the annotations compiles each one: 3-5 ms for the built-in methods at every command's start).
    """
    try:
        cached = _SPECS.get(params_cls)
    except TypeError:  # not weak-referenceable: not a class, reported below
        cached = None
    if cached is not None:
        return list(cached)
    specs = _read_param_specs(params_cls)
    with contextlib.suppress(TypeError):
        _SPECS[params_cls] = tuple(specs)
    return specs


def _read_param_specs(params_cls: type) -> list[ParamSpec]:
    owner = getattr(params_cls, "__qualname__", repr(params_cls))
    if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
        raise ParamDeclarationError(f"{owner} must be a class decorated with @dataclass")
    try:
        hints = typing.get_type_hints(params_cls)
    except Exception as exc:
        raise ParamDeclarationError(f"{owner}: cannot resolve the field types ({exc})") from exc
    specs = []
    for f in dataclasses.fields(params_cls):
        where = f"{owner}.{f.name}"
        if f.default is dataclasses.MISSING:
            raise ParamDeclarationError(f"{where} has no default (declare it with param(default, ...))")
        base, optional = _unwrap_type(hints.get(f.name, f.type))
        if base not in _PARAM_TYPES:
            raise ParamDeclarationError(f"{where} has type {base!r}; supported: bool, int, float, str "
                                        "(optionally '| None')")
        meta = dict(f.metadata.get(_META_KEY, {}))
        lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
        if (lo is not None or hi is not None) and base not in (int, float):
            raise ParamDeclarationError(f"{where}: min/max only apply to int and float parameters")
        if lo is not None and hi is not None and lo > hi:
            raise ParamDeclarationError(f"{where}: min {lo} is larger than max {hi}")
        if choices is not None:
            if len(choices) == 0:
                raise ParamDeclarationError(f"{where}: choices is empty")
            if any(type(c) is not base and not (base is float and type(c) is int) for c in choices):
                raise ParamDeclarationError(f"{where}: every choice must be a {base.__name__}")
        if meta.get("log_scale") and (base not in (int, float) or lo is None or lo <= 0):
            raise ParamDeclarationError(f"{where}: log_scale needs a numeric parameter with min > 0")
        spec = ParamSpec(
            name=f.name, type=base, default=f.default, min=lo, max=hi, choices=choices,
            unit=meta.get("unit", "") or "", help=meta.get("help", "") or "",
            log_scale=bool(meta.get("log_scale", False)),
            label=meta.get("label") or f.name.replace("_", " "), optional=optional,
        )
        try:
            _coerce(spec, f.default, owner, strings=False)
        except ParamError as exc:
            raise ParamDeclarationError(f"{where}: the default is invalid: {exc}") from exc
        specs.append(spec)
    return specs


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_NONE = {"none", "auto", "null"}


def _coerce(spec: ParamSpec, value: Any, owner: str | None, *, strings: bool = True) -> Any:
    who = f"parameter '{spec.name}'" + (f" of {owner}" if owner else "")

    def fail(why: str) -> ParamError:
        return ParamError(f"{who}: {why}", param=spec.name, owner=owner)

    t = spec.type
    if isinstance(value, str) and strings:
        s = value.strip()
        if spec.optional and s.lower() in _NONE and not (t is str and spec.choices and s in spec.choices):
            return None
        if t is str:
            value = s
        elif t is bool:
            if s.lower() in _TRUE:
                value = True
            elif s.lower() in _FALSE:
                value = False
            else:
                raise fail(f"expected true or false, got {value!r}")
        elif t is int:
            try:
                value = int(s, 10)
            except ValueError:
                raise fail(f"expected an integer, got {value!r}") from None
        else:
            try:
                value = float(s)
            except ValueError:
                raise fail(f"expected a number, got {value!r}") from None
    if value is None:
        if spec.optional:
            return None
        raise fail("a value is required (None is not allowed)")
    if t is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise fail(f"expected true or false, got {value!r}")
        value = bool(value)
    elif t is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_np_number(value):
            raise fail(f"expected an integer, got {value!r}")
        if isinstance(value, float) or _is_np_number(value):
            if not float(value).is_integer():
                raise fail(f"expected an integer, got {value!r}")
        value = int(value)
    elif t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_np_number(value):
            raise fail(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise fail(f"expected a finite number, got {value!r}")
    elif not isinstance(value, str):
        raise fail(f"expected text, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise fail(f"{value!r} is not one of {', '.join(repr(c) for c in spec.choices)}")
    if spec.min is not None and value < spec.min:
        raise fail(f"{value!r} is below the minimum {spec.min}")
    if spec.max is not None and value > spec.max:
        raise fail(f"{value!r} is above the maximum {spec.max}")
    return value


def _is_np_number(value: Any) -> bool:
    return isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.bool_)


def parse_params(params_cls: type, values: Mapping[str, Any] | None = None, *, owner: str | None = None) -> Any:
    """Build a ``params_cls`` instance from a mapping of values (strings from the CLI such as ``{"lam": "0.01"}``
    or Python values from the GUI), filling in defaults for missing names.

    Names may use ``-`` for ``_`` (``n-iter``). Raises :class:`ParamError` naming the parameter (and
    ``owner``, typically the method name) for unknown names, wrong types, values out of range or not among
    the choices.
    """
    specs = {s.name: s for s in param_specs(params_cls)}
    kwargs: dict[str, Any] = {}
    for key, value in (values or {}).items():
        name = str(key).replace("-", "_")
        if name not in specs:
            known = ", ".join(specs) or "none"
            raise ParamError(f"unknown parameter '{key}'" + (f" for {owner}" if owner else "")
                             + f" (known parameters: {known})", param=str(key), owner=owner)
        kwargs[name] = _coerce(specs[name], value, owner)
    return params_cls(**kwargs)


def validate_params(params: Any, *, owner: str | None = None) -> Any:
    """Check every field of a Params instance against its declaration; returns a new, converted instance."""
    return parse_params(type(params), params_to_dict(params), owner=owner)


def params_to_dict(params: Any) -> dict[str, Any]:
    """The field values of a Params instance as a plain dict (JSON-able)."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


# ======================================================================================================
# Run context
# ======================================================================================================


class RunContext:
    """What a running method talks to: the device, progress, cancellation, intermediate images, a log.

    Callbacks (``on_progress(fraction, text)``, ``on_iterate(image)``, ``on_log(text)``) run synchronously in
    the thread that runs the method; :mod:`workbench.jobs` forwards them to the job's observers. Progress is
    forwarded at most every ``progress_interval`` seconds (and always at 0 and 1), intermediate images at most
    every ``iterate_interval`` seconds, so a method may call both every iteration.

    Attributes:
        device: the ``torch.device`` to compute on (the problem's tensors are already there).
        fraction, text: the latest progress reported.
        messages: every line passed to :meth:`log`.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        cancel_event: threading.Event | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_iterate: Callable[[torch.Tensor], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        progress_interval: float = 0.0,
        iterate_interval: float = 0.25,
    ):
        self.device = torch.device(device)
        self._cancel = cancel_event if cancel_event is not None else threading.Event()
        self._on_progress = on_progress
        self._on_iterate = on_iterate
        self._on_log = on_log
        self._progress_interval = progress_interval
        self._iterate_interval = iterate_interval
        self._last_progress = -math.inf
        self._last_iterate = -math.inf
        self.fraction = 0.0
        self.text = ""
        self.messages: list[str] = []
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the context was created (≈ since the run started)."""
        return time.perf_counter() - self.started

    def progress(self, fraction: float, text: str = "") -> None:
        """Report progress ``fraction`` in [0, 1] (clamped) with an optional short text ("iteration 3/50")."""
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            return
        if math.isnan(fraction):
            return
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.text = str(text)
        now = time.perf_counter()
        final = self.fraction in (0.0, 1.0)
        if self._on_progress is not None and (final or now - self._last_progress >= self._progress_interval):
            self._last_progress = now
            self._on_progress(self.fraction, self.text)

    def cancel(self) -> None:
        """Request cancellation (what ``Job.cancel`` does)."""
        self._cancel.set()

    def cancelled(self) -> bool:
        """True once the user asked to cancel. Methods check it (or call :meth:`check_cancelled`) at least once
        per iteration."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the user asked to cancel."""
        if self._cancel.is_set():
            raise JobCancelled()

    @property
    def wants_iterates(self) -> bool:
        """Whether anybody listens to :meth:`report_iterate` (skip preparing images otherwise)."""
        return self._on_iterate is not None

    def report_iterate(self, image: torch.Tensor, *, force: bool = False) -> None:
        """Offer an intermediate image (complex or real ``[h, w]``, normally ``problem.crop(x)``) to the view.
        Throttled; the listener receives a detached CPU copy, so the method may keep updating ``image``."""
        if self._on_iterate is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_iterate < self._iterate_interval:
            return
        self._last_iterate = now
        self._on_iterate(image.detach().to("cpu", copy=True))

    def log(self, text: str) -> None:
        """Add a line to the run's log (shown in the job's details)."""
        self.messages.append(str(text))
        if self._on_log is not None:
            self._on_log(str(text))


# ======================================================================================================
# Method
# ======================================================================================================


def _problem_is_cartesian(problem: Any) -> bool:
    flag = getattr(problem, "is_cartesian", None)
    if isinstance(flag, bool):
        return flag
    return getattr(problem, "trajectory", None) is None


def _problem_n_coils(problem: Any) -> int | None:
    n = getattr(problem, "n_coils", None)
    if isinstance(n, int):
        return n
    y = getattr(problem, "y", None)
    if isinstance(y, torch.Tensor) and y.dim() >= 2:
        # [C, H, W] Cartesian or [C, K] non-Cartesian
        return int(y.shape[0])
    return None


class Method:
    """Base class of a reconstruction method. Subclasses set the class attributes and implement :meth:`run`.

    Class attributes:
        name: unique short name used by the CLI and the GUI (letters, digits, ``_ . + -``), e.g. "cg-sense".
        version: the plugin's own version string, stored with every result.
        api_version: the plugin API version the plugin was written for (:data:`API_VERSION`).
        description: one or two sentences for tooltips and ``workbench plugins``.
        capabilities: a :class:`Capabilities`.
        Params: a dataclass whose fields are declared with :func:`param` (default: no parameters).

    A Method instance is created once at discovery and may run several problems, possibly at the same time on
    different devices: keep per-run state in local variables, not on ``self``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    api_version: ClassVar[int] = API_VERSION
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    Params: ClassVar[type] = NoParams

    @classmethod
    def param_specs(cls) -> list[ParamSpec]:
        """The parameters for form builders (see :func:`param_specs`)."""
        return param_specs(cls.Params)

    @classmethod
    def default_params(cls) -> Any:
        return cls.Params()

    @classmethod
    def make_params(cls, values: Any = None) -> Any:
        """Params from None (defaults), a Params instance (validated) or a mapping (parsed, see
        :func:`parse_params`). Raises :class:`ParamError`."""
        if values is None:
            return cls.Params()
        if isinstance(values, cls.Params):
            return validate_params(values, owner=cls.name)
        if isinstance(values, Mapping):
            return parse_params(cls.Params, values, owner=cls.name)
        raise ParamError(f"{cls.name}: params must be a {cls.Params.__name__}, a dict or None, "
                         f"got {type(values).__name__}", owner=cls.name)

    def check(self, problem: "Problem", params: Any = None) -> list[str]:
        """Reasons, in words a user understands, why this method cannot run on ``problem`` (empty list: it can).

        The base implementation compares :attr:`capabilities` with the problem (Cartesian or not, coil count).
        Override to add checks (missing weights, image size) and call ``super().check(problem)``. ``params``
        (the validated Params, or None when the caller has none yet, e.g. a GUI listing) lets a method check
        what depends on them, such as a user-chosen weight file. Overrides may omit it: callers pass it only
        to methods whose ``check`` accepts it.
        """
        caps = self.capabilities
        reasons = []
        cart = _problem_is_cartesian(problem)
        if cart and not caps.cartesian:
            reasons.append(f"{self.name} reconstructs non-Cartesian data only; this data is Cartesian")
        if not cart and not caps.noncartesian:
            reasons.append(f"{self.name} reconstructs Cartesian data only; this data has a non-Cartesian trajectory")
        n = _problem_n_coils(problem)
        if n is not None and n > 1 and not caps.multicoil:
            reasons.append(f"{self.name} works on single-coil data only; this data has {n} coils")
        if n == 1 and not caps.singlecoil:
            reasons.append(f"{self.name} needs multi-coil data; this data has a single coil")
        return reasons

    def run(self, problem: "Problem", params: Any, ctx: RunContext) -> Result:
        """Reconstruct ``problem`` with ``params`` (an instance of :attr:`Params`) on ``ctx.device``.

        Report progress with ``ctx.progress``, call ``ctx.check_cancelled()`` at least once per iteration and
        return a :class:`Result` whose image is on ``problem.recon_shape`` (``problem.crop(x)``).
        """
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")

    def __repr__(self) -> str:
        return f"<Method {self.name} {self.version}>"


def validate_method(method: Method) -> None:
    """Raise :class:`PluginDefinitionError` when ``method`` is not a usable Method (used at discovery)."""
    cls = type(method)
    if not isinstance(method, Method):
        raise PluginDefinitionError(f"{cls.__name__} is not a workbench.methods.Method")
    name = method.name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PluginDefinitionError(f"{cls.__name__}.name must be a short name of letters, digits and _ . + -, "
                                    f"got {name!r}")
    if method.api_version not in SUPPORTED_API_VERSIONS:
        raise PluginDefinitionError(
            f"{name} was written for plugin API version {method.api_version!r}; this workbench supports "
            f"version {', '.join(map(str, sorted(SUPPORTED_API_VERSIONS)))}")
    if not isinstance(method.version, str):
        raise PluginDefinitionError(f"{name}: version must be a string, got {method.version!r}")
    caps = method.capabilities
    if not isinstance(caps, Capabilities):
        raise PluginDefinitionError(f"{name}: capabilities must be a Capabilities, got {type(caps).__name__}")
    if not (caps.cartesian or caps.noncartesian):
        raise PluginDefinitionError(f"{name}: capabilities accept neither Cartesian nor non-Cartesian data")
    if not (caps.multicoil or caps.singlecoil):
        raise PluginDefinitionError(f"{name}: capabilities accept neither multi-coil nor single-coil data")
    if cls.run is Method.run:
        raise PluginDefinitionError(f"{name}: run() is not implemented")
    param_specs(method.Params)  # raises ParamDeclarationError


# ======================================================================================================
# Running a method safely
# ======================================================================================================


def _call_check(method: Any, problem: Any, params: Any) -> list[str]:
    """``method.check(problem, params)`` when the plugin's check takes params, else ``check(problem)``."""
    try:
        accepts = "params" in inspect.signature(method.check).parameters
    except (TypeError, ValueError):
        accepts = False
    return method.check(problem, params) if accepts else method.check(problem)


def _escaped(exc: BaseException) -> None:
    """Re-raise a KeyboardInterrupt that reached the main thread: that is the user's Ctrl-C (the CLI cancels).
    Everything else a plugin raises, SystemExit included, and a KeyboardInterrupt on a worker thread (which
    never receives signals, so the plugin raised it) fails the run."""
    if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        raise exc


def validate_result(result: Any, problem: Any) -> str | None:
    """Why ``result`` cannot be called done for ``problem`` (None: it can): not a :class:`Result`, an image that
    is not on ``problem.recon_shape``, not numeric, or not finite; a std map or samples with NaN/Inf."""
    if not isinstance(result, Result):
        return f"run() returned {type(result).__name__}, expected a workbench.result.Result"
    image = result.image
    if not isinstance(image, torch.Tensor) or not (image.is_complex() or image.is_floating_point()):
        return f"the result image must be a complex or real float tensor, got {getattr(image, 'dtype', image)!r}"
    expected = getattr(problem, "recon_shape", None)
    if expected is not None and tuple(image.shape) != tuple(expected):
        return (f"the result image is {'x'.join(map(str, image.shape))}, but this problem's images are "
                f"{'x'.join(map(str, expected))} (problem.recon_shape; crop with problem.crop(x))")
    if not torch.isfinite(image).all():
        return "the reconstructed image contains NaN or Inf values (the iteration diverged?)"
    if result.std is not None:
        std = result.std
        if tuple(std.shape) != tuple(image.shape) or not std.is_floating_point():
            return f"the std map must be a real [h, w] tensor like the image, got {std.dtype} {tuple(std.shape)}"
        if not torch.isfinite(std).all():
            return "the uncertainty (std) map contains NaN or Inf values"
    if result.samples is not None and not torch.isfinite(result.samples).all():
        return "the posterior samples contain NaN or Inf values"
    return None


def safe_run(method: Method, problem: "Problem", params: Any = None, ctx: RunContext | None = None) -> Result:
    """Run ``method`` on ``problem`` the way the app and the CLI do.

    Validates ``params`` (None, a Params instance or a mapping; :class:`ParamError` on bad values), calls
    :meth:`Method.check` (:class:`MethodNotApplicableError` with the reasons), runs under ``torch.no_grad()``
    (use ``torch.enable_grad()`` inside ``run`` to optimise something), and fills what the method left empty
    in the Result (method name/version, params, device, time, the problem's mask/trajectory), moving its
    tensors to the CPU. Any exception of the plugin becomes a :class:`MethodError` with the traceback text, and
    so does ``SystemExit`` or any other BaseException (a KeyboardInterrupt on the main thread, the user's
    Ctrl-C, propagates); :class:`JobCancelled` propagates unchanged (also when a plugin turned it into another
    exception). The result is checked (:func:`validate_result`: shape ``problem.recon_shape``, numeric, finite
    image and std map) before it is returned.
    """
    ctx = ctx if ctx is not None else RunContext(getattr(problem, "device", "cpu"))
    name = getattr(method, "name", type(method).__name__)
    p = method.make_params(params)
    try:
        reasons = list(_call_check(method, problem, p))
    except BaseException as exc:  # noqa: B036 - also sys.exit(); see _escaped
        _escaped(exc)
        raise MethodError(name, f"check() failed: {type(exc).__name__}: {exc}", plugin_traceback(exc)) from exc
    if reasons:
        raise MethodNotApplicableError(name, reasons)
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            result = method.run(problem, p, ctx)
    except JobCancelled:
        raise
    except Exception as exc:
        if ctx.cancelled():
            raise JobCancelled() from exc
        # A WorkbenchError (e.g. maps cannot be estimated) already reads as a user message.
        message = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        raise MethodError(name, message, plugin_traceback(exc)) from exc
    except BaseException as exc:  # noqa: B036 - sys.exit() in a plugin fails its run, never the app
        _escaped(exc)
        raise MethodError(name, f"the plugin raised {type(exc).__name__}({exc}) inside run(); a method must "
                                "return a Result or raise an Exception", plugin_traceback(exc)) from exc
    elapsed = time.perf_counter() - t0
    problem_result = validate_result(result, problem)
    if problem_result:
        raise MethodError(name, problem_result)
    result.method = result.method or name
    result.version = result.version or str(method.version)
    result.params = result.params or params_to_dict(p)
    result.device = result.device or str(ctx.device)
    if math.isnan(result.time_s):
        result.time_s = elapsed
    if result.mask is None and isinstance(getattr(problem, "mask", None), torch.Tensor):
        result.mask = problem.mask
    if result.trajectory is None and isinstance(getattr(problem, "trajectory", None), torch.Tensor):
        result.trajectory = problem.trajectory
    if not result.provenance and isinstance(getattr(problem, "provenance", None), dict):
        result.provenance = dict(problem.provenance)
    return result.cpu()


# ======================================================================================================
# Discovery
# ======================================================================================================


@dataclass
class PluginError:
    """A plugin that could not be loaded: where it came from, the method name when known, a one-line message
    and the full traceback text."""

    source: str
    message: str
    traceback: str = ""
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Registry:
    """The methods found (name -> Method instance, in discovery order), where each came from, and the plugins
    that failed to load."""

    methods: dict[str, Method] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)

    def add(self, method: Method, source: str) -> None:
        """Validate and add one method; a name already taken is recorded as an error (the first one wins)."""
        validate_method(method)
        if method.name in self.methods:
            raise PluginDefinitionError(f"a method named {method.name!r} already exists "
                                        f"(from {self.sources[method.name]}); this one is ignored")
        self.methods[method.name] = method
        self.sources[method.name] = source

    def get(self, name: str) -> Method:
        """The method called ``name``; :class:`UnknownMethodError` listing the available ones otherwise."""
        try:
            return self.methods[name]
        except KeyError:
            raise UnknownMethodError(f"no method named {name!r}; available: {', '.join(self.methods) or 'none'}"
                                     ) from None

    def names(self) -> list[str]:
        return list(self.methods)

    def applicable(self, problem: "Problem") -> dict[str, list[str]]:
        """For every method, the reasons it cannot run on ``problem`` (empty list: it can)."""
        out = {}
        for name, m in self.methods.items():
            try:
                out[name] = list(m.check(problem))
            except BaseException as exc:  # noqa: B036 - a broken check must not hide the other methods
                out[name] = [f"check() failed: {type(exc).__name__}: {exc}"]
        return out

    def __contains__(self, name: object) -> bool:
        return name in self.methods

    def __iter__(self) -> Iterator[Method]:
        return iter(self.methods.values())

    def __len__(self) -> int:
        return len(self.methods)


def user_plugin_dir() -> Path:
    """The default folder of drop-in plugins: ``workbench.paths.plugin_dir()`` when that exists, else
    ``$XDG_CONFIG_HOME/mri-workbench/plugins`` (``~/.config/...``). Never created here."""
    try:
        from workbench import paths  # type: ignore[attr-defined]

        fn = getattr(paths, "plugin_dir", None) or getattr(paths, "user_plugin_dir", None)
        if callable(fn):
            return Path(fn())
    except ImportError:
        pass
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mri-workbench" / "plugins"


def plugin_search_dirs(plugin_dirs: Iterable[str | os.PathLike] = (), *, user_dirs: bool = True
                       ) -> list[tuple[Path, bool]]:
    """The drop-in folders in search order as ``(folder, explicit)``; ``explicit`` folders (arguments and
    ``$WORKBENCH_PLUGIN_DIR``) are reported as errors when missing, the default user folder is not."""
    out: list[tuple[Path, bool]] = [(Path(d).expanduser(), True) for d in plugin_dirs]
    if user_dirs:
        env = os.environ.get(PLUGIN_DIR_ENV, "")
        out += [(Path(d).expanduser(), True) for d in env.split(os.pathsep) if d.strip()]
        out.append((user_plugin_dir(), False))
    seen: set[Path] = set()
    unique = []
    for d, explicit in out:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((d, explicit))
    return unique


def methods_in_module(module: types.ModuleType) -> list[Any]:
    """The method classes/instances a module provides: its ``METHODS`` list when defined, else every Method
    subclass defined in the module itself with a non-empty ``name``."""
    if hasattr(module, "METHODS"):
        return list(module.METHODS)
    return [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Method) and obj is not Method
        and obj.__module__ == module.__name__ and getattr(obj, "name", "")
    ]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def plugin_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc`` without the leading frames of the workbench's own loading/running code and
    importlib, so that it starts where the plugin's code does."""
    te = traceback.TracebackException.from_exception(exc)
    frames = list(te.stack)
    while len(frames) > 1 and (frames[0].filename == __file__ or frames[0].filename.startswith("<frozen")):
        frames.pop(0)
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def _record(registry: Registry, source: str, exc: BaseException, name: str | None = None) -> None:
    registry.errors.append(PluginError(source=source, message=_one_line(exc), traceback=plugin_traceback(exc),
                                       name=name))


def _register_objects(registry: Registry, objects: Iterable[Any], source: str) -> None:
    for obj in objects:
        name = getattr(obj, "name", None)
        try:
            if isinstance(obj, type):
                if not issubclass(obj, Method):
                    raise PluginDefinitionError(f"{obj.__name__} is not a workbench.methods.Method subclass")
                validate_method_class(obj)
                obj = obj()
            registry.add(obj, source)
        except BaseException as exc:  # noqa: B036 - also a constructor calling sys.exit()
            _record(registry, source, exc, name if isinstance(name, str) else None)


def validate_method_class(cls: type[Method]) -> None:
    """Check the class attributes before instantiating (so an incompatible plugin's __init__ never runs)."""
    if cls.api_version not in SUPPORTED_API_VERSIONS:
        raise PluginDefinitionError(
            f"{cls.name or cls.__name__} was written for plugin API version {cls.api_version!r}; this workbench "
            f"supports version {', '.join(map(str, sorted(SUPPORTED_API_VERSIONS)))}")


def _distribution(ep: importlib.metadata.EntryPoint) -> str | None:
    name = getattr(getattr(ep, "dist", None), "name", None)
    return re.sub(r"[-_.]+", "-", name).lower() if name else None


_ENTRY_POINTS: tuple[tuple, list] | None = None  # (key, entry points of ENTRY_POINT_GROUP)


def _folder_mtime(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None


def _method_entry_points() -> list:
    """The entry points of :data:`ENTRY_POINT_GROUP`, read again only when the import path changed: the key
    holds every ``sys.path`` folder's modification time (installing, upgrading or removing a distribution adds
    or removes its metadata folder there). Reading them scans every installed distribution (4 ms); the command
    server reads them once before it forks its commands."""
    global _ENTRY_POINTS
    reader = importlib.metadata.entry_points
    key = (id(reader), tuple((p, _folder_mtime(p)) for p in sys.path))
    if _ENTRY_POINTS is None or _ENTRY_POINTS[0] != key:
        _ENTRY_POINTS = (key, list(reader(group=ENTRY_POINT_GROUP)))
    return list(_ENTRY_POINTS[1])


def _discover_entry_points(registry: Registry, *, builtin: bool = True, others: bool = True) -> None:
    """Load the entry points of the group ``workbench.methods``: the workbench's own (the built-in methods,
    sorted by module) when ``builtin``, then every other distribution's when ``others``."""
    try:
        eps = _method_entry_points()
    except Exception as exc:
        _record(registry, f"entry points {ENTRY_POINT_GROUP}", exc)
        return
    # a distribution's name is read from its metadata file each time it is asked for; its entry points share it
    names: dict[int, str | None] = {}

    def dist_of(ep: importlib.metadata.EntryPoint) -> str | None:
        key = id(getattr(ep, "dist", None))
        if key not in names:
            names[key] = _distribution(ep)
        return names[key]

    own = sorted((ep for ep in eps if dist_of(ep) == DISTRIBUTION), key=lambda ep: ep.value)
    if builtin and not own:
        registry.errors.append(PluginError(
            source="builtin methods", message=f"no entry points of {DISTRIBUTION!r} in the group "
            f"{ENTRY_POINT_GROUP!r}: the workbench is not installed (pip install -e . in its folder)"))
    chosen = (own if builtin else []) + ([ep for ep in eps if dist_of(ep) != DISTRIBUTION] if others else [])
    for ep in chosen:
        dist = dist_of(ep)
        if dist == DISTRIBUTION:
            source = f"builtin {ep.value}"
        else:
            source = f"entry point {ep.name} = {ep.value}" + (f" ({ep.dist.name})" if dist else "")
        try:
            obj = ep.load()
            if isinstance(obj, types.ModuleType):
                objects = methods_in_module(obj)
            elif isinstance(obj, (list, tuple)):
                objects = list(obj)
            elif isinstance(obj, Method) or (isinstance(obj, type) and issubclass(obj, Method)):
                objects = [obj]
            else:
                raise PluginDefinitionError(f"entry point {ep.name} names {obj!r}; expected a Method subclass, "
                                            "an instance, a list of them, or a module")
        except BaseException as exc:  # noqa: B036 - sys.exit() or KeyboardInterrupt at import is a load error
            _record(registry, source, exc, ep.name)
            continue
        _register_objects(registry, objects, source)


def _module_name_for(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"workbench_dropin_{stem}_{digest}"


def load_plugin_file(path: str | os.PathLike) -> types.ModuleType:
    """Import one drop-in ``.py`` file as a module (registered in ``sys.modules`` under a unique name, so that
    dataclasses, pickling and type hints work); re-loading the same file replaces the module."""
    path = Path(path)
    modname = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


def _discover_folder(registry: Registry, folder: Path, explicit: bool) -> None:
    if not folder.is_dir():
        if explicit:
            registry.errors.append(PluginError(source=str(folder), message="plugin folder does not exist"))
        return
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")):
            continue
        try:
            module = load_plugin_file(path)
            objects = methods_in_module(module)
        except BaseException as exc:  # noqa: B036 - sys.exit() or KeyboardInterrupt at import is a load error
            _record(registry, str(path), exc)
            continue
        if not objects:
            registry.errors.append(PluginError(source=str(path), message="the file defines no Method subclass "
                                               "with a name (and no METHODS list)"))
        _register_objects(registry, objects, str(path))


def discover_methods(
    plugin_dirs: Iterable[str | os.PathLike] = (),
    entry_points: bool = True,
    *,
    builtin: bool = True,
    user_dirs: bool = True,
) -> Registry:
    """Find every method: the built-in methods (``builtin``: the workbench's own entry points), other
    distributions' entry points (``entry_points``; both in the group ``workbench.methods``) and drop-in
    files from ``plugin_dirs``, ``$WORKBENCH_PLUGIN_DIR`` and :func:`user_plugin_dir` (the last two only with
    ``user_dirs``). Never raises for a broken plugin: see ``Registry.errors``."""
    registry = Registry()
    if builtin or entry_points:
        _discover_entry_points(registry, builtin=builtin, others=entry_points)
    for folder, explicit in plugin_search_dirs(plugin_dirs, user_dirs=user_dirs):
        _discover_folder(registry, folder, explicit)
    return registry
