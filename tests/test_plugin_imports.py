"""The built-in plugins use only the public library: every name a plugin imports is listed in the ``__all__`` of
the module it comes from, no plugin imports another (``plugins.*``), and the wheel's package list covers every
package folder (the built-ins install as ``workbench_builtin_methods``, not as a top-level ``plugins``)."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted((ROOT / "plugins").glob("*.py"))


def imported_names(path: Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` for every ``from module import name`` in the file (functions included), and
    ``(module, "", line)`` for every ``import module``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names]
    return out


def test_the_plugins_are_found():
    assert len([p for p in PLUGINS if not p.name.startswith("_")]) == 11
    assert not (ROOT / "plugins" / "_shared.py").exists()


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.name)
def test_plugin_imports_only_public_workbench_names(path):
    problems = []
    for module, name, line in imported_names(path):
        top = module.split(".")[0]
        if top in ("plugins", "workbench_builtin_methods"):
            problems.append(f"line {line}: imports another plugin ({module})")
        if top != "workbench":
            continue
        if not name:
            problems.append(f"line {line}: 'import {module}': import the names from the module instead")
            continue
        public = getattr(importlib.import_module(module), "__all__", None)
        if public is None:
            problems.append(f"line {line}: {module} declares no __all__")
        elif name not in public:
            problems.append(f"line {line}: {module}.{name} is not in its __all__")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_the_checker_sees_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from workbench.methods import _coerce\n    from plugins.tv import X\n")
    found = imported_names(bad)
    assert ("workbench.methods", "_coerce", 2) in found and ("plugins.tv", "X", 3) in found
    assert "_coerce" not in importlib.import_module("workbench.methods").__all__


def test_the_wheel_lists_every_package_and_maps_the_builtins():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "workbench").rglob("*.py")}
    assert set(config["packages"]) == folders | {"workbench_builtin_methods"}
    assert config["package-dir"] == {"workbench_builtin_methods": "plugins"}
    assert "plugins" not in config["packages"]
