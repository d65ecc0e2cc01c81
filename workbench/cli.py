"""Command line: ``workbench [FILE] [--demo]`` opens the app; ``workbench SUBCOMMAND ...`` runs headless tools.

Each subcommand lives in ``workbench/commands/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``,
so that adding one touches only its own file and the table below.
"""

from __future__ import annotations

import importlib
import sys

from workbench.errors import WorkbenchError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: a served command's client stays light
if TYPE_CHECKING:  # argparse is imported where a parser is built: a served command's client never builds one
    import argparse

# The commands the resident command server runs (workbench.command_server): those that import torch. `info`
# starts fast without it and stays in-process; the app never uses the server.
SERVED_COMMANDS = frozenset({"recon", "plugins"})

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("workbench.commands.info", "print what a scan file holds"),
    "demo": ("workbench.commands.demo", "write the demo scan; --headless prints zero-filled metrics"),
    "recon": ("workbench.commands.recon", "reconstruct a slice with a method and report metrics"),
    "plugins": ("workbench.commands.plugins", "list the reconstruction methods found, with capabilities and errors"),
    "bench": ("workbench.commands.bench", "run the reconstruction benchmarks (methods x accelerations x datasets)"),
    "train": ("workbench.commands.train", "train a deep reconstruction model (single process or under torchrun)"),
    "server": ("workbench.commands.server", "status or stop the resident command server that runs recon and "
               "plugins without paying start-up each time"),
    "doctor": ("workbench.commands.doctor", "check Python, Qt and its system libraries, torch and the device; "
               "say how to fix what is missing"),
}


APP_FORMS = """the desktop app:
  workbench                   open the app
  workbench FILE              open the app on a scan (any supported format)
  workbench --demo            open the app on the built-in demo scan
  workbench --plugin-dir DIR  also load the drop-in plugins in DIR (repeatable)

`workbench COMMAND --help` describes each command; `workbench doctor` checks this machine."""


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def _build_parser(command: str) -> argparse.ArgumentParser:
    # Only the chosen subcommand's module is imported: start-up stays cheap and one broken command
    # cannot break the others. Built once per process (5 ms): the command server builds its commands' parsers
    # before it forks, and parsing never changes a parser.
    if command not in _PARSERS:
        _PARSERS[command] = _make_parser(command)
    return _PARSERS[command]


def _make_parser(command: str) -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="workbench", description="MRI reconstruction workbench", epilog=APP_FORMS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(mod).add_arguments(sp)
            sp.set_defaults(_module=mod)
    return p


def _open_app(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="workbench", description="Open the workbench app (or use a COMMAND: "
                                + ", ".join(SUBCOMMANDS) + ")")
    p.add_argument("file", nargs="?", help="scan to open")
    p.add_argument("--demo", action="store_true", help="open the built-in demo scan")
    p.add_argument("--plugin-dir", action="append", default=[], help="extra folder of drop-in plugins")
    args = p.parse_args(argv)
    try:
        from workbench.gui.app import run_app
    except ImportError as exc:  # GUI not available yet, or Qt missing
        print(f"workbench: the desktop app is not available ({exc}); try `workbench demo --headless`",
              file=sys.stderr)
        return 2
    return run_app(file=args.file, demo=args.demo, plugin_dirs=args.plugin_dir)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        return _open_app(argv)
    args = _build_parser(argv[0]).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except WorkbenchError as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 1


def run_command(argv: list[str]) -> int:
    """:func:`main` with the console script's handling of a reader that went away; streams flushed. Used by the
    console script and by the command server's children (:mod:`workbench.command_server`)."""
    import os

    try:
        rc = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`workbench info FILE | head`): stop quietly with the status of a process ended
        # by SIGPIPE, as cat does, instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        rc = 128 + 13
    sys.stderr.flush()
    return int(rc or 0)


def entry() -> None:
    """Console-script entry point. The commands in :data:`SERVED_COMMANDS` run in a child of the
    resident command server when one can be used (Python's and torch's start-up paid once; ``WORKBENCH_SERVER=0``
    turns it off), else here. torchkbnufft's forked interpolation threads can abort the interpreter at exit
    ("terminate called without an active exception", exit 134) right after a NUFFT call; leaving with
    ``os._exit`` after flushing keeps the exit status the command's own."""
    import os

    argv = sys.argv[1:]
    rc = None
    if argv and argv[0] in SERVED_COMMANDS:
        from workbench import command_server

        rc = command_server.run(argv)
    if rc is None:
        rc = run_command(argv)
    os._exit(rc)
