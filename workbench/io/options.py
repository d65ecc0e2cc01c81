"""Reader options written as text: the values of ``workbench info --option key=value`` and of the app's
File > Open with options…, typed the same way for both (docs/formats.md lists the options)."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_value"]


def parse_value(raw: str) -> Any:
    """``"-1"`` -> -1, ``"2.5"`` -> 2.5, ``"true"``/``"yes"``/``"on"`` -> True (and their opposites -> False),
    ``"none"``/``"null"`` -> None, ``"256,256"`` -> (256, 256) (each part typed alike), anything else -> the
    text itself."""
    low = raw.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if "," in raw:
        parts = [parse_value(p.strip()) for p in raw.split(",") if p.strip()]
        return tuple(parts)
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw
