"""Quality and speed benchmarks (run by hand, by `make bench` or by `workbench bench`; never timed in tests).

- :mod:`benchmarks.harness`: methods x samplings x datasets -> ``results/classical.md|json``.
- :mod:`benchmarks.peers`: CG-SENSE / l1-wavelet / TV against BART and sigpy -> ``results/peers.md|json``.
- :mod:`benchmarks.run_all`: both, then every other ``bench_*.py`` script here.
"""

