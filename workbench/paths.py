"""Where the workbench finds its shipped resources and keeps generated files.

- :func:`cache_dir`: the user cache (demo scan, downloaded or generated files): ``$WORKBENCH_CACHE``, else
  ``$XDG_CACHE_HOME/mri-workbench``, else ``~/.cache/mri-workbench``. Created on first use.
- :func:`resources_dir`: the repository's top-level ``resources/`` folder (checkout or editable install), or a
  copy installed beside the package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workbench.errors import WorkbenchError

APP_NAME = "mri-workbench"
_PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir(create: bool = True) -> Path:
    """The user cache folder (see module docstring); ``create`` makes it if missing."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / APP_NAME
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkbenchError(f"{path}: cannot create the cache folder ({exc.strerror or exc}); "
                                 "set WORKBENCH_CACHE to a writable folder") from exc
    return path


def _resource_candidates() -> list[Path]:
    return [
        _PACKAGE_DIR.parent / "resources",  # checkout / editable install: <repo>/resources
        _PACKAGE_DIR / "resources",  # wheel that packs the resources inside the package
        Path(sys.prefix) / "share" / APP_NAME / "resources",  # wheel that installs them as data files
    ]


def resources_dir() -> Path:
    """The folder of shipped resources (anatomy for the simulator, trained weights, icons)."""
    for path in _resource_candidates():
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in _resource_candidates())
    raise WorkbenchError(f"the workbench resources folder was not found (looked in {tried}); "
                         "reinstall the package or run from a checkout")


def resource_path(*parts: str) -> Path:
    """A file under :func:`resources_dir`; raises a WorkbenchError naming it when it is missing."""
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise WorkbenchError(f"{path}: shipped resource is missing; reinstall the package or run from a checkout")
    return path


def realdata_dir() -> Path:
    """Where the real raw data sets for tests, benchmarks and screenshots are looked for:
    ``$WORKBENCH_REALDATA``, else ``../shared/realdata`` beside the checkout. It may not exist (callers check);
    never created."""
    env = os.environ.get("WORKBENCH_REALDATA")
    return Path(env).expanduser() if env else _PACKAGE_DIR.parent.parent / "shared" / "realdata"
