import os
import textwrap
from pathlib import Path
from string import Template

import pytest

from workbench.paths import realdata_dir

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Commands the tests start run in-process and leave no resident server behind; tests/test_command_server.py
# turns the server on for its own commands, in a private folder.
os.environ["WORKBENCH_SERVER"] = "0"
# Weights chosen by earlier runs (workbench.weight_store) would make a test depend on what ran before it;
# tests/test_weight_store.py turns the store on in a private folder.
os.environ["WORKBENCH_WEIGHT_STORE"] = "0"

# Real data lives beside the checkout (../shared/realdata) or where $WORKBENCH_REALDATA says, never in the
# repository (workbench.paths.realdata_dir).
REALDATA = realdata_dir()
REALDATA_SKIP = f"real data folder {REALDATA} not present (set WORKBENCH_REALDATA to the folder of the real sets)"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real raw data sets; tests using it skip cleanly when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(REALDATA_SKIP)
    return REALDATA


def pytest_terminal_summary(terminalreporter):
    # Say once, at the end, how many real-data tests did not run and how to make them run.
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if REALDATA_SKIP in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} real-data tests skipped: {REALDATA_SKIP}", yellow=True)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    # The demo scan and other generated files go to a per-session temporary cache, never to the user's.
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The tests' problems are small: on a 2-core machine (shared with the Qt event loop and job threads)
    # handing work to a second OpenMP thread costs more than it saves, and timings become erratic.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------------------
# Test plugins: the methods the session and GUI tests run, written to a temporary folder and discovered there
# (fixtures ``plugin_dir`` and ``registry``). The Landweber plugin's defaults are ``LANDWEBER_DEFAULTS``, or the
# requesting test module's own ``LANDWEBER_DEFAULTS``.
LANDWEBER_DEFAULTS = {"n_iter": 10, "step": 0.5}
TEST_PLUGINS = {
    "coil_landweber.py": '''
        from dataclasses import dataclass
        import torch
        from workbench.methods import Capabilities, Method, param
        from workbench.physics.fft import fft2c, ifft2c, rss
        from workbench.result import Result

        @dataclass
        class Params:
            n_iter: int = param($n_iter, min=1, max=1000, help="iterations")
            step: float = param($step, min=0.0, max=2.0, help="step size")

        class CoilLandweber(Method):
            name = "test-landweber"
            version = "1.0"
            description = "Landweber iteration per coil on the masked FFT, then RSS (no maps needed)"
            capabilities = Capabilities(cartesian=True)
            Params = Params

            def run(self, problem, params, ctx):
                m = problem.mask.to(problem.y.device)
                x = torch.zeros_like(problem.y)
                for it in range(params.n_iter):
                    ctx.check_cancelled()
                    x = x - params.step * ifft2c(m * (m * fft2c(x) - problem.y))
                    ctx.progress((it + 1) / params.n_iter, f"iteration {it + 1}")
                    ctx.report_iterate(problem.crop(rss(x)))
                return Result(image=problem.crop(rss(x)).to(torch.complex64))
    ''',
    "zero_filled_std.py": '''
        import torch
        from workbench.methods import Capabilities, Method
        from workbench.result import Result

        class ZeroFilledStd(Method):
            name = "test-zf"
            version = "1.0"
            capabilities = Capabilities(cartesian=True, noncartesian=True, gives_uncertainty=True)

            def run(self, problem, params, ctx):
                img = problem.crop(problem.zero_filled("rss"))
                return Result(image=img.to(torch.complex64), std=0.1 * img.abs())
    ''',
    "failing.py": '''
        from workbench.methods import Capabilities, Method

        class Failing(Method):
            name = "test-failing"
            capabilities = Capabilities(cartesian=True)

            def run(self, problem, params, ctx):
                raise RuntimeError("deliberate failure in the test plugin")
    ''',
    "slow.py": '''
        import time
        from workbench.methods import Capabilities, Method
        from workbench.result import Result

        class Slow(Method):
            name = "test-slow"
            capabilities = Capabilities(cartesian=True, noncartesian=True)

            def run(self, problem, params, ctx):
                for i in range(3000):
                    ctx.check_cancelled()
                    ctx.progress(i / 3000, "waiting")
                    time.sleep(0.01)
                return Result(image=problem.crop(problem.zero_filled("rss")))
    ''',
    "noncart_only.py": '''
        from workbench.methods import Capabilities, Method

        class NonCartOnly(Method):
            name = "test-noncart-only"
            capabilities = Capabilities(cartesian=False, noncartesian=True)

            def run(self, problem, params, ctx):
                raise AssertionError("never runs on Cartesian data")
    ''',
    "broken.py": '''
        import this_module_does_not_exist_anywhere
    ''',
    "out_of_memory.py": '''
        import torch
        from workbench.methods import Capabilities, Method

        class HostOOM(Method):
            name = "test-oom"
            capabilities = Capabilities(cartesian=True)

            def run(self, problem, params, ctx):
                raise MemoryError()

        class CudaOOM(Method):
            name = "test-cuda-oom"
            capabilities = Capabilities(cartesian=True)

            def run(self, problem, params, ctx):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    ''',
}


@pytest.fixture(scope="module")
def plugin_dir(request, tmp_path_factory):
    """A folder with the test plugins (see ``TEST_PLUGINS``)."""
    d = tmp_path_factory.mktemp("plugins")
    defaults = {**LANDWEBER_DEFAULTS, **getattr(request.module, "LANDWEBER_DEFAULTS", {})}
    for name, src in TEST_PLUGINS.items():
        (d / name).write_text(Template(textwrap.dedent(src)).substitute(defaults))
    return d


@pytest.fixture(scope="module")
def registry(plugin_dir):
    """The test plugins, discovered (one broken: ``broken.py``)."""
    from workbench.methods import discover_methods

    return discover_methods([plugin_dir], entry_points=False, builtin=False, user_dirs=False)


# ------------------------------------------------------------------------------------------------------------
# The app (Qt is imported by the fixtures, so tests without it never load it)


@pytest.fixture()
def settings(tmp_path):
    """QSettings in a temporary file, so tests never touch the user's."""
    from PyQt6 import QtCore

    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)


@pytest.fixture()
def messages(monkeypatch):
    """Capture message boxes instead of showing them."""
    from PyQt6 import QtWidgets

    seen = []
    for name in ("warning", "critical", "information"):
        monkeypatch.setattr(QtWidgets.QMessageBox, name,
                            lambda parent, title, text, *a, _n=name, **k: seen.append((_n, title, text)))
    monkeypatch.setattr(QtWidgets.QMessageBox, "exec", lambda self: seen.append(("exec", self.windowTitle(),
                                                                                  self.text())))
    return seen


@pytest.fixture()
def window(qtbot, settings, registry, plugin_dir, messages):
    """The main window on the module's ``registry`` and ``plugin_dir``, shown offscreen."""
    from workbench.gui.main_window import MainWindow

    win = MainWindow(plugin_dirs=[str(plugin_dir)], settings=settings, registry=registry)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    yield win
    win.close()
