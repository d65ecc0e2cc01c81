"""The console script starts fast and stops quietly when its reader goes away (`workbench info FILE | head`)."""

from __future__ import annotations

import subprocess
import sys


def test_closed_pipe_gives_no_traceback(tmp_path):
    # A reader that closes at once; the command writes more than a pipe buffer, so the write must fail.
    code = ("import sys; sys.argv = ['workbench', '--help']; import workbench.cli as c; "
            "c.main = lambda argv=None: [print('x' * 1000) for _ in range(1000)] and 0; c.entry()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_info_does_not_import_torch_or_qt(tmp_path):
    # `workbench info` only reads a header: importing torch would cost it about a second at every call.
    import numpy as np

    path = tmp_path / "k.npy"
    np.save(path, (np.ones((4, 32, 32)) + 1j).astype(np.complex64))
    code = ("import sys; from workbench.cli import main; rc = main(['info', sys.argv[1]]); "
            "heavy = sorted(m for m in ('torch', 'PyQt6', 'torchkbnufft', 'skimage') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def _small_fastmri(path, n_slices=2):
    """A small multi-coil fastMRI file with an ISMRMRD header and a stored reference."""
    import numpy as np

    from workbench.io.fastmri import write_fastmri
    from workbench.simulate import ismrmrd_header_xml

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((n_slices, 4, 32, 32)) + 1j * rng.standard_normal((n_slices, 4, 32, 32)))
    image = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1))), axes=(-2, -1)))
    reference = np.sqrt((image ** 2).sum(1)).astype(np.float32)
    header = ismrmrd_header_xml(encoded=(32, 32), recon=(32, 32), fov_mm=(200.0, 200.0), slice_thickness_mm=5.0,
                                n_slices=n_slices, n_coils=4)
    write_fastmri(path, k.astype(np.complex64), reference, header_xml=header)
    return path


def _modules_after(code: str, *args: str) -> tuple[str, list[str]]:
    """Run ``code`` in a fresh interpreter; its stdout and the heavy modules it loaded."""
    probe = ("import sys; heavy = sorted(m for m in ('torch', 'PyQt6', 'torchkbnufft', 'skimage', 'scipy.stats', "
             "'scipy.ndimage', 'ismrmrd') if m in sys.modules); print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code + "\n" + probe, *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY"))
    return out.stdout, eval(line[len("HEAVY "):])  # a list literal printed by the probe


def test_info_on_a_fastmri_file_loads_no_heavy_module(tmp_path):
    # The header is parsed with ElementTree: the ismrmrd package's schema costs a tenth of a second to import.
    path = _small_fastmri(tmp_path / "scan.h5")
    stdout, heavy = _modules_after("import sys; from workbench.cli import main; main(['info', sys.argv[1]])",
                                   str(path))
    assert "fastmri" in stdout and "recon_matrix" in stdout
    assert heavy == []


def test_recon_scores_without_scipy_stats_or_skimage(tmp_path):
    # skimage.metrics imports scipy.stats (most of a second): recon's scoring computes the same numbers in numpy.
    path = _small_fastmri(tmp_path / "scan.h5")
    code = ("import sys, json, io, contextlib; from workbench.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = main(['recon', sys.argv[1], '--method', 'zero-filled', '--mask', 'equispaced', '--json'])\n"
            "assert rc == 0; print('PSNR', json.loads(buf.getvalue())['metrics']['psnr'])")
    stdout, heavy = _modules_after(code, str(path))
    assert "PSNR" in stdout
    assert "torch" in heavy  # the reconstruction itself needs it
    assert not {"scipy.stats", "skimage", "ismrmrd"} & set(heavy), heavy


def test_importing_scoring_loads_no_scipy_stats():
    _, heavy = _modules_after("import workbench.scoring, workbench.metrics, workbench.fastmri_metrics")
    assert heavy == []


def test_a_served_commands_client_imports_only_what_it_sends_with(tmp_path):
    """The client of the command server (every `workbench recon`) imports neither torch nor the argument parser
    that only the server and an in-process command use."""
    code = ("import sys; from workbench import command_server, cli; "
            "print('LOADED', sorted(m for m in ('torch', 'numpy', 'argparse') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout
