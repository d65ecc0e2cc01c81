"""The parts of a Siemens twix measurement header that the twix reader uses, parsed without the rest.

twixtools parses every buffer of the text protocol (``Config``, ``Dicom``, ``Meas``, ``MeasYaps``, ``Phoenix``,
``Spice``) into nested dictionaries: 45-50 ms a file, 33 ms of it the half-megabyte XProtocol ``Meas``, for a
command whose reconstruction takes 50 ms. The reader needs ``MeasYaps`` (the ASCCONV protocol: sizes, partial
Fourier, the header highlights), ``Dicom`` (scanner, software, field strength) and a handful of ``Meas``
parameters (the ramp-sampling regrid of EPI, the readout oversampling). :func:`parse_header` splits the raw
header into its buffers as twixtools does, parses ``MeasYaps`` and ``Dicom`` with twixtools' own parser and, of
``Meas``, only the leaf parameters :data:`MEAS_KEYS` (also with twixtools' parser, so values convert as before).
The other buffers are kept as raw text (``<name>_raw``). ``tests/test_realdata.py`` checks every key against
twixtools' full parse on the real twix files.
"""

from __future__ import annotations

import re
import struct
from typing import Any

__all__ = ["MEAS_KEYS", "PARSED_BUFFERS", "parse_header"]

PARSED_BUFFERS = ("MeasYaps", "Dicom")
# Meas parameters read by twixtools (recon_helpers.calc_regrid_traj) and by the reader (header highlights)
MEAS_KEYS = ("alRegridMode", "alRegridDestSamples", "aflRegridADCDuration", "alRegridDelaySamplesTime",
             "alRegridRampupTime", "alRegridFlattopTime", "alRegridRampdownTime", "flReadoutOSFactor")
_BUFFER = re.compile(rb"(\w{4,})\x00(.{4})", re.DOTALL)  # a buffer's name and its length (twixtools' pattern)
_LEAF = re.compile(r'<Param\w*\."(%s)">\s*\{[^{}]*\}' % "|".join(MEAS_KEYS))


def parse_header(raw: bytes, twixprot: Any) -> dict[str, Any]:
    """The header dictionary of one measurement from its raw bytes (``hdr_str`` of ``read_twix(...,
    parse_prot=False)``): ``MeasYaps``, ``Dicom`` and ``Meas`` (:data:`MEAS_KEYS` only) parsed by ``twixprot``
    (twixtools' module), every buffer's text under ``<name>_raw``. A damaged header gives what could be read."""
    out: dict[str, Any] = {}
    if len(raw) < 8:
        return out
    _, n_buffer = struct.unpack_from("<II", raw, 0)
    pos = 8
    for _ in range(min(int(n_buffer), 64)):
        found = _BUFFER.search(raw, pos, pos + 48)
        if found is None:
            break
        name = found.group(1).decode("latin1")
        length = struct.unpack("<I", found.group(2))[0]
        pos = found.end()
        text = raw[pos: pos + length].decode("latin1")
        pos += length
        out[f"{name}_raw"] = text
        if name in PARSED_BUFFERS:
            out[name] = twixprot.parse_buffer(text)
        elif name == "Meas":
            leaves = "\n".join(m.group(0) for m in _LEAF.finditer(text))
            out[name] = twixprot.parse_xprot(leaves) if leaves else {}
    return out
