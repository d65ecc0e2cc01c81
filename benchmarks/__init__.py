"""Quality and speed benchmarks (run by hand, by `make bench` or by `workbench bench`; never timed in tests).

- :mod:`benchmarks.harness`: methods x samplings x datasets -> ``results/classical.md|json``.
- :mod:`benchmarks.peers`: CG-SENSE / l1-wavelet / TV against BART and sigpy -> ``results/peers.md|json``.
- :mod:`benchmarks.run_all`: both, then every other ``bench_*.py`` script here.
"""

import os as _os

# Benchmarks measure with OpenMP threads that sleep instead of spinning while they wait (what the peers get,
# e.g. BART runs with OMP_WAIT_POLICY=passive): on a busy machine spinning threads of many small torch
# operations can slow a run down by an order of magnitude, and the timings would measure the load instead of
# the code. Effective only when this package is imported before torch (``python -m benchmarks.X``).
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")
