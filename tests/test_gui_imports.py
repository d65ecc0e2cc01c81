"""Which way the app's imports point: the GUI uses the library (never the CLI, never a private name), the compare
tabs are given their data (they do not import the session), and the writers beside the readers need no Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import workbench

GUI = Path(workbench.__file__).parent / "gui"


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in a file, those inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def gui_files() -> list[Path]:
    files = sorted(GUI.rglob("*.py"))
    assert len(files) > 10
    return files


def test_the_gui_imports_no_command_and_no_private_name():
    for path in gui_files():
        for module, names in imports(path):
            assert not module.startswith("workbench.commands"), f"{path.name} imports the CLI's {module}"
            if module.startswith("workbench") and not module.startswith("workbench.gui"):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert not private, f"{path.name} imports private {private} from {module}"


def test_the_compare_tabs_are_given_their_data():
    for path in sorted((GUI / "compare").glob("*.py")):
        for module, _ in imports(path):
            assert not module.startswith("workbench.session"), f"compare/{path.name} reads the session"


def test_no_gui_module_imports_the_main_window_but_the_app_and_the_screenshots():
    for path in gui_files():
        if path.name in ("app.py", "screenshots.py", "main_window.py"):
            continue
        assert all(m != "workbench.gui.main_window" for m, _ in imports(path)), path.name


def test_the_writers_load_without_qt():
    code = "import sys, workbench.io.writers; print('PyQt6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
