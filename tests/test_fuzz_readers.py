"""A seeded corpus of malformed files for every reader (tests/fuzz_readers.py), each opened through
``open_scan`` (slice 0, reference, summary) and ``workbench info --json``: only success or a typed error naming
the file, bounded memory, inputs unchanged, nothing outside the corpus read. The larger campaign runs by hand:
``python -m tests.fuzz_readers --n 500``."""

from __future__ import annotations

import fuzz_readers
import pytest

from workbench.paths import realdata_dir


@pytest.mark.timeout(240)
def test_malformed_files_give_typed_errors_within_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "256M")
    monkeypatch.setattr(fuzz_readers, "BOMB_MB", 16)
    n = 40 if realdata_dir() is not None else 35  # 5 cases of each kind (twix needs the real data folder)
    results, canary_read = fuzz_readers.campaign(n, seed=7, folder=tmp_path, realdata=realdata_dir())
    summary = fuzz_readers.summarise(results, canary_read, floor=8 << 20)
    bad = [r for r in results if r["outcome"] in ("traceback", "unnamed") or r["info"] == "traceback"]
    assert not bad, "\n\n".join(f"{r['kind']} {r['how']}: {r['detail']}" for r in bad[:3])
    assert summary["peaks_over_2GB_or_20x"] == 0, [(r["how"], r["peak"]) for r in results
                                                   if fuzz_readers.over_memory(r, 8 << 20)]
    assert summary["max_rss_growth_MB"] < 256
    assert summary["external_reads"] == 0 and summary["modified_inputs"] == 0
    # the corpus exercises the checks, not only the happy path
    kinds = {o for o in summary["outcomes"] if o != "ok"}
    assert {"CorruptFileError", "InvalidDataError", "TooLargeError"} <= kinds, summary
