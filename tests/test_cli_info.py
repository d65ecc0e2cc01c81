"""``workbench info``: aligned lines, --json, --format, --option, and errors with exit status 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.commands.info import parse_option
from workbench.io.fastmri import write_fastmri

HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><systemFieldStrength_T>3</systemFieldStrength_T>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>127000000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>32</x><y>24</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>200</x><y>150</y><z>3</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>100</x><y>100</y><z>3</z></fieldOfView_mm></reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>19</maximum><center>10</center>
    </kspace_encoding_step_1></encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
  <sequenceParameters><TR>2000</TR><TE>30</TE></sequenceParameters>
</ismrmrdHeader>"""


@pytest.fixture
def fastmri_file(tmp_path):
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 3, 32, 24)) + 1j * rng.standard_normal((2, 3, 32, 24))).astype(np.complex64)
    k[..., :2] = 0  # padding: columns 2..21 are encoded (24//2 - 10 = 2, 2 + 19 + 1 = 22)
    k[..., 22:] = 0
    mask = np.zeros(24, bool)
    mask[2:22:2] = True
    write_fastmri(tmp_path / "scan.h5", k * mask, None, header_xml=HEADER, mask=mask,
                  attrs={"acceleration": 2, "num_low_frequency": 0})
    return tmp_path / "scan.h5"


def test_info_prints_aligned_lines(fastmri_file, capsys):
    assert main(["info", str(fastmri_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out}
    assert rows["format"].split()[1] == "fastmri"
    assert rows["slices"].split()[1] == "2" and rows["coils"].split()[1] == "3"
    assert rows["kspace_shape"].split(None, 1)[1] == "3 x 32 x 24"
    assert rows["recon_shape"].split(None, 1)[1] == "16 x 16"
    assert rows["sampled_fraction"].split()[1] == "0.5" and rows["fully_sampled"].split()[1] == "no"
    assert rows["acceleration"].split()[1] == "2"
    assert rows["mask_pattern"].split(None, 1)[1] == "lines (phase-encode columns)"
    assert rows["TR_ms"].split()[1] == "2000" and rows["vendor"].split()[1] == "SIEMENS"
    assert rows["encoded_matrix"].split()[1] == "32x24x1"
    # Values start in one column.
    starts = {len(line) - len(line.split(None, 1)[1]) for line in out}
    assert len(starts) == 1


def test_info_json(fastmri_file, capsys):
    assert main(["info", str(fastmri_file), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "fastmri" and d["slices"] == 2 and d["coils"] == 3
    assert d["kspace_shape"] == [3, 32, 24] and d["grid"] == [32, 24] and d["recon_shape"] == [16, 16]
    assert d["sampled_fraction"] == 0.5 and d["fully_sampled"] is False and d["trajectory"] == "cartesian"
    assert d["field_strength_T"] == 3.0 and d["TE_ms"] == 30 and d["acceleration"] == 2
    assert d["reference"] is None


def test_info_options_and_format(tmp_path, capsys):
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((16, 12, 4)) + 1j * rng.standard_normal((16, 12, 4))).astype(np.complex64)
    np.savez(tmp_path / "scan.npz", data=k, other=k[..., :2])
    assert main(["info", str(tmp_path / "scan.npz"), "--json", "--format", "npy",
                 "--option", "kspace_var=data", "--option", "coil_axis=-1", "--option", "readout_oversampling=2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["coils"] == 4 and d["kspace_shape"] == [4, 16, 12] and d["recon_shape"] == [8, 12]
    assert d["fully_sampled"] is True


def test_info_errors_exit_1_with_file_and_reason(tmp_path, fastmri_file, capsys):
    assert main(["info", str(tmp_path / "missing.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"workbench info: error: {tmp_path / 'missing.h5'}: file does not exist")
    assert main(["info", str(fastmri_file), "--format", "npy"]) == 1
    assert f"workbench info: error: {fastmri_file}: not a NumPy" in capsys.readouterr().err
    np.savez(tmp_path / "two.npz", a=np.ones((2, 4, 4), np.complex64), b=np.ones((3, 4, 4), np.complex64))
    assert main(["info", str(tmp_path / "two.npz")]) == 1
    err = capsys.readouterr().err
    assert "two.npz: cannot tell which array is k-space" in err and "kspace_var" in err
    assert main(["info", str(fastmri_file), "--option", "nonsense"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_parse_option_values():
    assert parse_option("coil_axis=-1") == ("coil_axis", -1)
    assert parse_option("readout_oversampling=2.5") == ("readout_oversampling", 2.5)
    assert parse_option("image_domain=true") == ("image_domain", True)
    assert parse_option("coil_axis=none") == ("coil_axis", None)
    assert parse_option("grid_shape=256,256") == ("grid_shape", (256, 256))
    assert parse_option("kspace_var=ksp") == ("kspace_var", "ksp")
