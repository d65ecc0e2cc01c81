"""``workbench server status|stop``: the resident command server (:mod:`workbench.command_server`), which runs
``recon`` and ``plugins`` without paying Python's and torch's start-up for every command. It starts by itself on
the first such command and leaves after ``WORKBENCH_SERVER_IDLE`` seconds without one (default 900);
``WORKBENCH_SERVER=0`` runs every command in-process instead."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "stop"),
                   help="status: list this user's servers and their running commands; stop: end them (a running "
                        "command finishes first)")


def run(args: argparse.Namespace) -> int:
    from workbench import command_server

    folder = command_server.runtime_dir()
    if folder is None:
        print("workbench server: no private runtime folder (it must belong to you and be closed to others); "
              "commands run in-process")
        return 1
    current = command_server.socket_path(folder)
    found = 0
    for path in command_server.servers(folder):
        pid = command_server.server_pid(path)
        if pid is None:
            continue
        found += 1
        which = "this code and environment" if path == current else "other code or environment"
        if args.action == "stop":
            answer = command_server.control(path, "stop")
            print(f"pid {pid} ({which}): " + ("stopping" if answer is not None else "did not answer"))
        else:
            running = command_server.control(path, "status")
            print(f"pid {pid} ({which}): {running if running is not None else '?'} command(s) running; {path}")
    if not found:
        print("no command server is running" + ("" if command_server.enabled() else
                                                 " (WORKBENCH_SERVER turns it off)"))
    return 0
