"""Registers the built-in readers (imported once by ``workbench.io.readers()``)."""

import importlib
import importlib.util

# Order matters only for ties in probe scores: the more specific formats first.
_MODULES = ["fastmri", "mrd", "twix", "bart", "matlab", "numpy_files"]

for _name in _MODULES:
    _mod = f"workbench.io.{_name}"
    if importlib.util.find_spec(_mod) is not None:
        importlib.import_module(_mod)
