"""The twix reader's header parse (workbench.io.twix_header) against twixtools' full parse."""

from __future__ import annotations

import struct

import pytest

from workbench.io.twix import _import_twixtools
from workbench.io.twix_header import MEAS_KEYS, PARSED_BUFFERS, parse_header

MEAS = """<XProtocol>
{
  <Name> "Meas"
  <ParamMap."">
  {
    <ParamLong."alRegridMode">
    {
      2 1
    }
    <ParamDouble."flReadoutOSFactor">
    {
      <Precision> 6
      2.000000
    }
    <ParamLong."lSomethingElse">
    {
      7
    }
  }
}
"""
YAPS = "### ASCCONV BEGIN ###\nsKSpace.lBaseResolution\t = \t160\nsKSpace.ucDimension\t = \t0x2\n### ASCCONV END ###\n"


def _raw(buffers):
    body = b"".join(name.encode() + b"\x00" + struct.pack("<I", len(text)) + text.encode()
                    for name, text in buffers)
    return struct.pack("<II", 8 + len(body), len(buffers)) + body


def test_parses_what_the_reader_uses_and_keeps_the_rest_as_text():
    twixprot = _import_twixtools().twixprot
    raw = _raw([("Config", "<XProtocol> { }"), ("Meas", MEAS), ("MeasYaps", YAPS)])
    hdr = parse_header(raw, twixprot)
    assert hdr["Meas"] == {"alRegridMode": [2, 1], "flReadoutOSFactor": 2.0}  # lSomethingElse: not a MEAS_KEY
    assert hdr["MeasYaps"]["sKSpace"] == {"lBaseResolution": 160, "ucDimension": 2}
    assert "Config" not in hdr and hdr["Config_raw"] == "<XProtocol> { }" and hdr["Meas_raw"] == MEAS
    # a damaged header gives what could be read, never an exception
    assert parse_header(raw[: len(raw) // 2], twixprot).keys() >= {"Config_raw"}
    assert parse_header(b"\x01\x02", twixprot) == {}
    assert parse_header(struct.pack("<II", 8, 10**9) + b"\x00" * 40, twixprot) == {}


def test_real_headers_equal_twixtools_full_parse(realdata):
    tt = _import_twixtools()
    files = sorted((realdata / "twix_phantom").glob("*.dat"))
    if not files:
        pytest.skip("no twix files")
    for path in files:
        full = tt.read_twix(str(path), verbose=False)
        lean = tt.read_twix(str(path), verbose=False, parse_prot=False, parse_pmu=False, parse_geometry=False)
        assert len(full) == len(lean)
        for a, b in zip(full, lean):
            hdr = parse_header(b["hdr_str"].tobytes(), tt.twixprot)
            for name in PARSED_BUFFERS:
                assert hdr[name] == a["hdr"][name], (path.name, name)
            for key in MEAS_KEYS:
                assert hdr["Meas"].get(key, "absent") == a["hdr"]["Meas"].get(key, "absent"), (path.name, key)
