"""``workbench plugins``: list the reconstruction methods found, their capabilities, and plugins that failed.

Exit status 0 when the listing succeeded (also when some plugins failed to load: they are listed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from workbench.methods import API_VERSION, Registry, discover_methods, plugin_search_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin-dir", action="append", default=[], metavar="DIR",
                        help="extra folder of drop-in plugin .py files (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON (methods with parameters, errors)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every method's parameters and the full traceback of failed plugins")


def registry_to_dict(registry: Registry) -> dict[str, Any]:
    """The JSON form of a registry (what ``--json`` prints)."""
    return {
        "api_version": API_VERSION,
        "methods": [
            {
                "name": m.name,
                "version": m.version,
                "description": m.description,
                "capabilities": m.capabilities.to_dict(),
                "params": [s.to_dict() for s in m.param_specs()],
                "source": registry.sources[m.name],
            }
            for m in registry
        ],
        "errors": [e.to_dict() for e in registry.errors],
    }


def _param_line(spec) -> str:
    bits = [f"{spec.name}: {spec.type_name} = {spec.default!r}"]
    if spec.choices is not None:
        bits.append("one of " + ", ".join(map(repr, spec.choices)))
    if spec.min is not None or spec.max is not None:
        lo = "-inf" if spec.min is None else f"{spec.min:g}"
        hi = "inf" if spec.max is None else f"{spec.max:g}"
        bits.append(f"[{lo}, {hi}]" + (" log" if spec.log_scale else ""))
    if spec.unit:
        bits.append(spec.unit)
    line = "  ".join(bits)
    return f"{line}  -- {spec.help}" if spec.help else line


def format_registry(registry: Registry, verbose: bool = False, plugin_dirs: Sequence[str] = ()) -> str:
    """The human-readable listing (``plugin_dirs``: the extra folders searched, shown with ``verbose``)."""
    lines: list[str] = []
    rows = [(m.name, m.version, " ".join(m.capabilities.labels()), registry.sources[m.name]) for m in registry]
    lines.append(f"Methods ({len(rows)}), plugin API version {API_VERSION}:")
    if rows:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("NAME", "VERSION", "CAPABILITIES"))]
        header = ("NAME", "VERSION", "CAPABILITIES", "SOURCE")
        fmt = "  {:<%d}  {:<%d}  {:<%d}  {}" % tuple(widths)
        lines.append(fmt.format(*header))
        for m, row in zip(registry, rows):
            lines.append(fmt.format(*row))
            if verbose:
                if m.description:
                    lines.append(f"      {m.description}")
                for spec in m.param_specs():
                    lines.append(f"      {_param_line(spec)}")
    else:
        lines.append("  (none)")
    if registry.errors:
        lines.append("")
        lines.append(f"Plugins that failed to load ({len(registry.errors)}):")
        for e in registry.errors:
            who = f" [{e.name}]" if e.name else ""
            lines.append(f"  {e.source}{who}: {e.message}")
            if verbose and e.traceback:
                lines.extend("      " + t for t in e.traceback.rstrip().splitlines())
    if verbose:
        lines.append("")
        lines.append("Drop-in folders searched:")
        for d, explicit in plugin_search_dirs(plugin_dirs):
            state = "" if d.is_dir() else " (absent)"
            lines.append(f"  {d}{state}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    registry = discover_methods(plugin_dirs=args.plugin_dir)
    if args.json:
        json.dump(registry_to_dict(registry), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_registry(registry, verbose=args.verbose, plugin_dirs=args.plugin_dir))
    return 0
