"""Plugin API: parameter declarations and parsing, capabilities checks, safe_run, discovery, Result files."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import sys
import textwrap
import types
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
import torch

from workbench import methods as M
from workbench.methods import (
    API_VERSION, Capabilities, JobCancelled, Method, MethodError, MethodNotApplicableError, ParamDeclarationError,
    ParamError, RunContext, discover_methods, param, param_specs, parse_params, safe_run,
)
from workbench.result import Result


# --------------------------------------------------------------------------------------------------------
# a tiny stand-in problem: what check() and safe_run look at
def fake_problem(coils: int = 4, cartesian: bool = True, shape=(6, 5)):
    if cartesian:
        y = torch.ones(coils, *shape, dtype=torch.complex64)
        traj = None
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[:, ::2] = True
    else:
        y = torch.ones(coils, 40, dtype=torch.complex64)
        traj = torch.zeros(2, 40)
        mask = None
    return types.SimpleNamespace(y=y, trajectory=traj, mask=mask, device="cpu", recon_shape=shape,
                                 crop=lambda x: x)


@dataclass
class DemoParams:
    lam: float = param(0.01, min=0.0, max=1.0, log_scale=False, unit="", help="regularisation weight")
    n_iter: int = param(20, min=1, max=500, help="iterations")
    reg: str = param("wavelet", choices=("wavelet", "tv"), help="regulariser")
    warm: bool = param(True, help="warm start")
    mu: float | None = param(None, min=1e-6, max=10.0, log_scale=True, label="Step", help="None = automatic")


class Demo(Method):
    name = "demo"
    version = "2.1"
    description = "returns the zero-filled-like image A^H y summed over coils, scaled by 1 + lam"
    capabilities = Capabilities(cartesian=True, noncartesian=False, multicoil=True, singlecoil=False)
    Params = DemoParams

    def run(self, problem, params, ctx):
        ctx.progress(0.5, "half")
        return Result(image=problem.y.sum(0) * (1 + params.lam), history=[{"iter": 1}], chosen={"mu_auto": 0.5})


# --------------------------------------------------------------------------------------------------------
# parameters
def test_param_specs_describe_the_declaration():
    specs = {s.name: s for s in param_specs(DemoParams)}
    assert list(specs) == ["lam", "n_iter", "reg", "warm", "mu"]
    lam = specs["lam"]
    assert (lam.type, lam.default, lam.min, lam.max, lam.help, lam.optional) == (float, 0.01, 0.0, 1.0,
                                                                                  "regularisation weight", False)
    assert lam.label == "lam"
    assert specs["n_iter"].type is int and specs["n_iter"].label == "n iter"
    assert specs["reg"].choices == ("wavelet", "tv") and specs["reg"].type is str
    assert specs["warm"].type is bool and specs["warm"].default is True
    mu = specs["mu"]
    assert mu.optional and mu.type is float and mu.default is None and mu.log_scale and mu.label == "Step"
    d = mu.to_dict()
    assert d["type"] == "float" and json.loads(json.dumps(d))["min"] == 1e-6


def test_parse_params_converts_cli_strings():
    p = parse_params(DemoParams, {"lam": "0.5", "n-iter": "7", "reg": "tv", "warm": "no", "mu": "auto"})
    assert (p.lam, p.n_iter, p.reg, p.warm, p.mu) == (0.5, 7, "tv", False, None)
    assert isinstance(p.n_iter, int) and isinstance(p.lam, float)
    p = parse_params(DemoParams, {"mu": "1e-3", "n_iter": 12.0, "lam": 1})
    assert p.mu == 1e-3 and p.n_iter == 12 and p.lam == 1.0 and isinstance(p.lam, float)
    assert parse_params(DemoParams, {}) == DemoParams()


@pytest.mark.parametrize("values, fragment", [
    ({"lam": "abc"}, "parameter 'lam' of demo: expected a number"),
    ({"lam": "2"}, "parameter 'lam' of demo: 2.0 is above the maximum 1.0"),
    ({"lam": "-0.1"}, "below the minimum"),
    ({"lam": "nan"}, "finite"),
    ({"n_iter": "3.5"}, "parameter 'n_iter' of demo: expected an integer"),
    ({"n_iter": 0}, "below the minimum 1"),
    ({"n_iter": True}, "expected an integer"),
    ({"reg": "l1"}, "parameter 'reg' of demo: 'l1' is not one of 'wavelet', 'tv'"),
    ({"warm": "maybe"}, "parameter 'warm' of demo: expected true or false"),
    ({"lam": None}, "parameter 'lam' of demo: a value is required"),
    ({"mu": "20"}, "parameter 'mu' of demo: 20.0 is above the maximum"),
    ({"lamda": "1"}, "unknown parameter 'lamda' for demo (known parameters: lam, n_iter, reg, warm, mu)"),
])
def test_parse_params_rejects_bad_values_naming_the_parameter(values, fragment):
    with pytest.raises(ParamError) as info:
        parse_params(DemoParams, values, owner="demo")
    assert fragment in str(info.value)


def test_method_make_params_accepts_none_instance_and_mapping():
    assert Demo.make_params(None) == DemoParams()
    assert Demo.make_params({"lam": "0.2"}).lam == 0.2
    assert Demo.make_params(DemoParams(n_iter=3)).n_iter == 3
    with pytest.raises(ParamError, match="n_iter"):
        Demo.make_params(DemoParams(n_iter=-3))  # instances built by hand are validated too
    with pytest.raises(ParamError):
        Demo.make_params(["lam"])


def _declare(**fields):
    ns = {"__annotations__": {k: v[0] for k, v in fields.items()}}
    ns.update({k: v[1] for k, v in fields.items()})
    return dataclass(type("P", (), ns))


@pytest.mark.parametrize("cls, fragment", [
    (type("NotADataclass", (), {}), "must be a class decorated with @dataclass"),
    (_declare(x=(list, param(1))), "supported: bool, int, float, str"),
    (_declare(x=(float, param(5.0, min=0.0, max=1.0))), "the default is invalid"),
    (_declare(x=(float, param(0.5, min=1.0, max=0.0))), "min 1.0 is larger than max 0.0"),
    (_declare(x=(str, param("a", choices=("b", "c")))), "the default is invalid"),
    (_declare(x=(str, param("a", min=0))), "min/max only apply"),
    (_declare(x=(float, param(1.0, log_scale=True))), "log_scale needs"),
    (_declare(x=(int, param(None))), "a value is required"),
])
def test_invalid_declarations_are_rejected(cls, fragment):
    with pytest.raises(ParamDeclarationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        param_specs(cls)


def test_field_without_default_is_rejected():
    @dataclass
    class P:
        x: int

    with pytest.raises(ParamDeclarationError, match="P.x has no default"):
        param_specs(P)


# --------------------------------------------------------------------------------------------------------
# capabilities and check
def test_capability_labels():
    assert Capabilities().labels() == ["cart", "multi", "single"]
    caps = Capabilities(cartesian=True, noncartesian=True, needs_weights=True, gives_uncertainty=True,
                        stochastic=True)
    assert " ".join(caps.labels()) == "cart noncart multi single weights uncertainty stochastic"


def test_base_check_compares_capabilities_with_the_problem():
    m = Demo()  # Cartesian, multi-coil only
    assert m.check(fake_problem(coils=4)) == []
    (why,) = m.check(fake_problem(coils=1))
    assert "needs multi-coil data" in why and "single coil" in why
    (why,) = m.check(fake_problem(coils=4, cartesian=False))
    assert "Cartesian data only" in why and "non-Cartesian" in why

    class SingleNonCart(Demo):
        capabilities = Capabilities(cartesian=False, noncartesian=True, multicoil=False, singlecoil=True)

    reasons = SingleNonCart().check(fake_problem(coils=8))
    assert len(reasons) == 2 and any("8 coils" in r for r in reasons) and any("is Cartesian" in r for r in reasons)
    assert SingleNonCart().check(fake_problem(coils=1, cartesian=False)) == []


def test_base_check_on_real_problems():
    from workbench.problem import Problem

    cart_multi = Problem(torch.ones(3, 8, 6, dtype=torch.complex64))
    cart_single = Problem(torch.ones(8, 6, dtype=torch.complex64))
    traj = torch.rand(2, 30) * 2 - 1
    noncart = Problem(torch.ones(2, 30, dtype=torch.complex64), (8, 6), trajectory=traj)
    assert Demo().check(cart_multi) == []
    assert len(Demo().check(cart_single)) == 1 and len(Demo().check(noncart)) == 1
    assert "non-Cartesian" in Demo().check(noncart)[0] and "single coil" in Demo().check(cart_single)[0]


# --------------------------------------------------------------------------------------------------------
# RunContext
def test_run_context_progress_cancel_iterates_log():
    seen, images, logs = [], [], []
    ctx = RunContext("cpu", on_progress=lambda f, t: seen.append((f, t)), on_iterate=images.append,
                     on_log=logs.append, iterate_interval=0.0)
    ctx.progress(-1)
    ctx.progress(0.25, "a")
    ctx.progress(7, "done")
    ctx.progress(float("nan"))
    assert seen == [(0.0, ""), (0.25, "a"), (1.0, "done")]
    x = torch.ones(2, 2, dtype=torch.complex64)
    ctx.report_iterate(x)
    x += 1  # the listener got a copy
    assert images[0].device.type == "cpu" and torch.equal(images[0], torch.ones(2, 2, dtype=torch.complex64))
    ctx.log("hello")
    assert logs == ["hello"] and ctx.messages == ["hello"]
    assert not ctx.cancelled()
    ctx.check_cancelled()
    ctx.cancel()
    assert ctx.cancelled()
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_run_context_throttles_iterates_and_progress():
    images, seen = [], []
    ctx = RunContext("cpu", on_iterate=images.append, iterate_interval=3600.0, on_progress=lambda f, t: seen.append(f),
                     progress_interval=3600.0)
    for k in range(10):
        ctx.report_iterate(torch.zeros(2, 2))
        ctx.progress(0.1 + k / 20)
    ctx.progress(1.0)
    assert len(images) == 1
    assert seen == [0.1, 1.0]  # the first, then only the final one
    assert not RunContext("cpu").wants_iterates and ctx.wants_iterates


# --------------------------------------------------------------------------------------------------------
# safe_run
def test_safe_run_fills_metadata_and_moves_to_cpu():
    prob = fake_problem(coils=3)
    r = safe_run(Demo(), prob, {"lam": "0.5"})
    expected = torch.full((6, 5), 3 * 1.5, dtype=torch.complex64)  # 3 coils of ones, times (1 + lam)
    assert torch.allclose(r.image, expected)
    assert (r.method, r.version, r.device) == ("demo", "2.1", "cpu")
    assert r.params == {"lam": 0.5, "n_iter": 20, "reg": "wavelet", "warm": True, "mu": None}
    assert r.chosen == {"mu_auto": 0.5} and r.time_s >= 0
    assert torch.equal(r.mask, prob.mask)  # the sampling travels with the result


def boom_helper():
    raise ZeroDivisionError("the plugin divided by zero")


class Failing(Demo):
    name = "failing"

    def run(self, problem, params, ctx):
        boom_helper()


def test_safe_run_wraps_plugin_exceptions_with_traceback():
    with pytest.raises(MethodError) as info:
        safe_run(Failing(), fake_problem())
    err = info.value
    assert err.method == "failing" and "ZeroDivisionError: the plugin divided by zero" in str(err)
    assert "boom_helper" in err.traceback and "ZeroDivisionError" in err.traceback
    assert "safe_run" not in err.traceback  # starts at the plugin's frames
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_safe_run_reports_check_reasons_and_bad_results():
    with pytest.raises(MethodNotApplicableError) as info:
        safe_run(Demo(), fake_problem(coils=1))
    assert info.value.reasons and "needs multi-coil" in str(info.value)

    class NotAResult(Demo):
        name = "bad"

        def run(self, problem, params, ctx):
            return problem.y.sum(0)

    with pytest.raises(MethodError, match="returned Tensor, expected a workbench.result.Result"):
        safe_run(NotAResult(), fake_problem())

    class Diverges(Demo):
        name = "nan"

        def run(self, problem, params, ctx):
            return Result(image=problem.y.sum(0) * float("nan"))

    with pytest.raises(MethodError, match="NaN or Inf"):
        safe_run(Diverges(), fake_problem())


def test_safe_run_lets_cancellation_through():
    class Wrapping(Demo):
        name = "wrap"

        def run(self, problem, params, ctx):
            try:
                ctx.check_cancelled()
            except JobCancelled as exc:
                raise RuntimeError("plugin wrapped the cancellation") from exc

    ctx = RunContext("cpu")
    ctx.cancel()
    with pytest.raises(JobCancelled):
        safe_run(Wrapping(), fake_problem(), None, ctx)


def test_run_happens_without_autograd():
    class Grad(Demo):
        name = "grad"

        def run(self, problem, params, ctx):
            w = torch.ones(1, requires_grad=True)
            return Result(image=problem.y.sum(0) * w, extras={"grad": torch.is_grad_enabled()})

    r = safe_run(Grad(), fake_problem())
    assert r.extras["grad"] is False and not r.image.requires_grad


# --------------------------------------------------------------------------------------------------------
# discovery
GOOD = '''
from dataclasses import dataclass
from workbench.methods import Method, Capabilities, param
from workbench.result import Result

@dataclass
class P:
    gain: float = param(2.0, min=0.0)

class {cls}(Method):
    name = "{name}"
    version = "0.3"
    capabilities = Capabilities(cartesian=True, noncartesian=True)
    Params = P
    def run(self, problem, params, ctx):
        return Result(image=problem.y.sum(0) * params.gain)
'''


def write(folder, filename, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(textwrap.dedent(text))
    return folder / filename


def errors_by_source(reg):
    return {e.source.rsplit("/", 1)[-1]: e for e in reg.errors}


def test_discovery_of_drop_in_files_records_failures(tmp_path):
    d = tmp_path / "plugins"
    write(d, "good.py", GOOD.format(cls="Good", name="good"))
    write(d, "syntax.py", "def broken(:\n    pass\n")
    write(d, "importfail.py", "import a_module_that_does_not_exist_42\n")
    write(d, "future.py", GOOD.format(cls="Future", name="future") + "    api_version = 99\n")
    write(d, "badparams.py", GOOD.format(cls="BadParams", name="badparams").replace("param(2.0, min=0.0)",
                                                                                    "param(-1.0, min=0.0)"))
    write(d, "zdup.py", GOOD.format(cls="Dup", name="good"))
    write(d, "noname.py", "from workbench.methods import Method\nclass Base(Method):\n    pass\n")
    write(d, "_private.py", "raise RuntimeError('never imported')\n")
    reg = discover_methods([d], entry_points=False, builtin=False, user_dirs=False)
    assert reg.names() == ["good"]
    assert reg.sources["good"].endswith("good.py")
    errs = errors_by_source(reg)
    assert set(errs) == {"syntax.py", "importfail.py", "future.py", "badparams.py", "zdup.py", "noname.py"}
    assert errs["syntax.py"].message.startswith("SyntaxError") and "syntax.py" in errs["syntax.py"].traceback
    assert "ModuleNotFoundError" in errs["importfail.py"].message
    assert "plugin API version 99" in errs["future.py"].message and errs["future.py"].name == "future"
    assert "the default is invalid" in errs["badparams.py"].message
    assert "already exists" in errs["zdup.py"].message and errs["zdup.py"].name == "good"
    assert "defines no Method" in errs["noname.py"].message
    # the good one runs
    r = safe_run(reg.get("good"), fake_problem(coils=2), {"gain": "3"})
    assert torch.allclose(r.image, torch.full((6, 5), 6.0 + 0j))
    with pytest.raises(M.UnknownMethodError, match="available: good"):
        reg.get("nope")


def test_discovery_from_env_folders_and_missing_folders(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "one.py", GOOD.format(cls="One", name="one"))
    write(b, "two.py", GOOD.format(cls="Two", name="two"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no default user folder
    monkeypatch.setenv(M.PLUGIN_DIR_ENV, f"{a}{os.pathsep}{b}")
    reg = discover_methods([tmp_path / "missing"], entry_points=False, builtin=False)
    assert reg.names() == ["one", "two"]
    assert [e.message for e in reg.errors] == ["plugin folder does not exist"]
    assert not (tmp_path / "config" / "mri-workbench").exists()  # never created
    # without user folders, the environment is ignored
    assert len(discover_methods((), entry_points=False, builtin=False, user_dirs=False)) == 0


def test_methods_list_convention(tmp_path):
    d = tmp_path / "p"
    write(d, "listed.py", GOOD.format(cls="A", name="a") + textwrap.dedent('''
        class B(A):
            name = "b"
        METHODS = [B]   # only B, although A is defined here too
    '''))
    reg = discover_methods([d], entry_points=False, builtin=False, user_dirs=False)
    assert reg.names() == ["b"] and not reg.errors


def test_entry_points(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    write(pkg, "wb_ep_plugin.py", GOOD.format(cls="EP", name="ep-method"))
    write(pkg, "wb_ep_broken.py", "raise ImportError('missing CUDA extension')\n")
    monkeypatch.syspath_prepend(str(pkg))
    eps = [
        importlib.metadata.EntryPoint("ep", "wb_ep_plugin:EP", M.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("mod", "wb_ep_plugin", M.ENTRY_POINT_GROUP),  # same class again via module
        importlib.metadata.EntryPoint("broken", "wb_ep_broken:X", M.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("weird", "json:dumps", M.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(M.importlib.metadata, "entry_points",
                        lambda group=None: [e for e in eps if e.group == group])
    try:
        reg = discover_methods((), entry_points=True, builtin=False, user_dirs=False)
    finally:
        for mod in ("wb_ep_plugin", "wb_ep_broken"):
            sys.modules.pop(mod, None)
    assert reg.names() == ["ep-method"]
    msgs = {e.name: e.message for e in reg.errors}
    assert "already exists" in msgs["ep-method"]
    assert msgs["broken"] == "ImportError: missing CUDA extension"
    assert "expected a Method subclass" in msgs["weird"]


def test_builtin_package_is_scanned():
    reg = discover_methods((), entry_points=False, builtin=True, user_dirs=False)
    # whatever built-ins exist (plugins/ fills up over time) load without errors and validate
    assert not [e for e in reg.errors if e.source.startswith("builtin")], [e.traceback for e in reg.errors]
    for m in reg:
        assert reg.sources[m.name].startswith("builtin workbench_builtin_methods.")
        M.validate_method(m)


def test_builtins_come_first_and_keep_their_names(tmp_path, monkeypatch):
    # a third party's entry point named like a built-in loads after it and is reported, not swapped in
    pkg = tmp_path / "site"
    write(pkg, "wb_ep_tv.py", GOOD.format(cls="FakeTV", name="tv"))
    monkeypatch.syspath_prepend(str(pkg))
    real = list(importlib.metadata.entry_points(group=M.ENTRY_POINT_GROUP))
    fake = importlib.metadata.EntryPoint("tv", "wb_ep_tv:FakeTV", M.ENTRY_POINT_GROUP)
    monkeypatch.setattr(M.importlib.metadata, "entry_points", lambda group=None: [fake] + real)
    try:
        reg = discover_methods((), user_dirs=False)
    finally:
        sys.modules.pop("wb_ep_tv", None)
    assert reg.sources["tv"] == "builtin workbench_builtin_methods.tv:TotalVariation"
    assert any(e.name == "tv" and "already exists" in e.message for e in reg.errors)
    assert reg.names()[0] == "cg-sense"  # the built-ins in module order, before anything else


def test_missing_installation_is_reported(monkeypatch):
    monkeypatch.setattr(M.importlib.metadata, "entry_points", lambda group=None: [])
    reg = discover_methods((), entry_points=False, builtin=True, user_dirs=False)
    assert len(reg) == 0 and "not installed" in reg.errors[0].message


def test_plugins_command_lists_methods_and_errors(tmp_path, capsys):
    from workbench.cli import main

    d = tmp_path / "p"
    write(d, "good.py", GOOD.format(cls="Good", name="zz-good"))
    write(d, "bad.py", "x = 1 / 0\n")
    assert main(["plugins", "--plugin-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "zz-good" in out and "cart noncart multi single" in out
    assert "failed to load" in out and "bad.py: ZeroDivisionError: division by zero" in out
    assert "Traceback" not in out
    assert main(["plugins", "--plugin-dir", str(d), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "Traceback" in out and "gain: float = 2.0" in out
    assert main(["plugins", "--plugin-dir", str(d), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["api_version"] == API_VERSION
    good = [m for m in data["methods"] if m["name"] == "zz-good"][0]
    assert good["params"][0]["name"] == "gain" and good["capabilities"]["noncartesian"] is True
    assert any(e["source"].endswith("bad.py") and "ZeroDivisionError" in e["traceback"] for e in data["errors"])


# --------------------------------------------------------------------------------------------------------
# Result
def test_result_validates_shapes():
    img = torch.zeros(4, 3, dtype=torch.complex64)
    with pytest.raises(ValueError, match="must be"):
        Result(image=torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="std has shape"):
        Result(image=img, std=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="samples has shape"):
        Result(image=img, samples=torch.zeros(2, 3, 4, dtype=torch.complex64))
    r = Result(image=np.ones((4, 3)))  # real numpy becomes complex64
    assert r.image.dtype == torch.complex64


def test_result_save_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(1)
    img = torch.randn(8, 6, dtype=torch.complex64, generator=g)
    std = torch.rand(8, 6, generator=g)
    samples = torch.randn(3, 8, 6, dtype=torch.complex64, generator=g)
    mask = torch.rand(10, 9, generator=g) > 0.5
    history = [{"iter": k, "objective": 1.0 / (k + 1), "residual": 0.5 ** k, "time": 0.01 * k} for k in range(3000)]
    r = Result(image=img, method="m", version="1.2", params={"lam": 0.1, "reg": "tv", "mu": None}, std=std,
               samples=samples, history=history, device="cpu", time_s=1.5, chosen={"lam_auto": 0.02},
               extras={"note": "x", "weights": np.arange(4.0), "obj": object()}, mask=mask,
               provenance={"scan": "/data/file.h5", "slice": 3, "sampling": {"kind": "random", "acceleration": 4}})
    path = tmp_path / "r.h5"
    r.save(path)
    with h5py.File(path, "r") as f:  # the layout, read independently
        np.testing.assert_array_equal(f["image"][()], img.numpy())
        np.testing.assert_array_equal(f["mask"][()].astype(bool), mask.numpy())
        meta = json.loads(f["meta"][()])
        assert meta["method"] == "m" and meta["params"]["lam"] == 0.1 and len(meta["history"]) == 3000
    back = Result.load(path)
    assert torch.equal(back.image, img) and torch.equal(back.std, std) and torch.equal(back.samples, samples)
    assert torch.equal(back.mask, mask) and back.trajectory is None
    assert back.history == history and back.params == r.params and back.chosen == r.chosen
    assert (back.method, back.version, back.device, back.time_s) == ("m", "1.2", "cpu", 1.5)
    assert back.provenance == r.provenance
    assert back.extras["note"] == "x" and np.array_equal(back.extras["weights"], np.arange(4.0))
    assert "obj" not in back.extras  # not storable: dropped
    s = back.to_json_summary()
    json.dumps(s)
    assert s["iterations"] == 3000 and s["final"]["iter"] == 2999 and s["n_samples"] == 3 and s["has_std"]


def test_result_load_rejects_other_files(tmp_path):
    from workbench.errors import CorruptFileError

    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["kspace"] = np.zeros(3)
    with pytest.raises(CorruptFileError, match="not a workbench result"):
        Result.load(p)
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(CorruptFileError, match="text.h5"):
        Result.load(tmp_path / "text.h5")
    r = Result(image=torch.zeros(2, 2))
    assert math.isnan(r.time_s) and r.to_json_summary()["time_s"] is None


def test_safe_run_passes_params_to_a_check_that_takes_them():
    seen = {}

    class NeedsSmallLam(Demo):
        name = "needs-small-lam"

        def check(self, problem, params=None):
            seen["params"] = params
            reasons = super().check(problem)
            if params is not None and params.lam > 0.5:
                reasons.append("lam above 0.5 is not supported by this plugin")
            return reasons

    with pytest.raises(MethodNotApplicableError) as info:
        safe_run(NeedsSmallLam(), fake_problem(), {"lam": 0.9})
    assert "lam above 0.5" in str(info.value)
    assert safe_run(NeedsSmallLam(), fake_problem(), {"lam": 0.1}).image is not None
    assert seen["params"].lam == 0.1
    # a check without a params argument keeps working
    assert safe_run(Demo(), fake_problem(), {"lam": 0.9}).image is not None


def test_entry_points_are_read_again_when_the_import_path_changes(tmp_path, monkeypatch):
    """The read is kept while every sys.path folder is unchanged (the command server reads it once before it
    forks), and redone when a distribution is installed there (its metadata folder changes the folder's time)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    reads = []

    def reader(group=None):
        reads.append(group)
        return [importlib.metadata.EntryPoint(f"m{len(reads)}", "wb_none:X", M.ENTRY_POINT_GROUP)]

    monkeypatch.setattr(M.importlib.metadata, "entry_points", reader)
    first = M._method_entry_points()
    assert M._method_entry_points() == first and len(reads) == 1
    (site / "newdist-1.0.dist-info").mkdir()
    st = os.stat(site)
    os.utime(site, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a coarse clock still sees a change
    second = M._method_entry_points()
    assert len(reads) == 2 and second[0].name == "m2"


def test_param_specs_are_read_once_per_class_and_a_bad_declaration_is_refused_every_time(monkeypatch):
    import typing

    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda cls, *a, **k: calls.append(cls) or real(cls, *a, **k))

    @dataclass
    class Good:
        lam: float | None = M.param(None, min=0.0, help="weight")
        n_iter: int = M.param(10, min=1)

    first = M.param_specs(Good)
    second = M.param_specs(Good)
    assert first == second and first is not second and calls == [Good]
    second.clear()  # a caller's list is its own
    assert [s.name for s in M.param_specs(Good)] == ["lam", "n_iter"]

    @dataclass
    class Bad:
        n: int = M.param(5, min=10)

    for _ in range(2):
        with pytest.raises(M.ParamDeclarationError):
            M.param_specs(Bad)
