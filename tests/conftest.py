import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Real data lives beside the checkout (../shared/realdata) and never in the repository.
REALDATA = Path(os.environ.get("WORKBENCH_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real raw data sets; tests using it skip cleanly when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} not present")
    return REALDATA


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
