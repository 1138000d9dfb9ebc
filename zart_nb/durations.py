"""Durations as people write them, one grammar for the CLI and the magics.

``500ms``, ``90s``, ``30m``, ``1.5h``, ``2d``, ``1w``, compounds such as ``1d12h`` or
``1h30m``, and a plain number of seconds.
"""

from __future__ import annotations

import re

from .errors import UsageError

_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0,
          "sec": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|min|sec|[wdhms])", re.I)
_PLAIN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*$")
_WHOLE = re.compile(r"^\s*(?:(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|min|sec|[wdhms])\s*)+$", re.I)


def parse_duration(text: str, *, what: str = "duration", unit_required: bool = False) -> float:
    """Seconds in ``text``; a UsageError naming ``what`` when it is not a positive duration.

    ``unit_required``: a bare number is refused (``gc --older-than 30`` is ambiguous and
    would remove far more than meant).
    """
    text = str(text)
    plain = _PLAIN.match(text)
    if plain and not unit_required:
        seconds = float(plain.group(1))
    elif _WHOLE.match(text):
        seconds = sum(float(n) * _UNITS[unit.lower()] for n, unit in _PART.findall(text))
    else:
        raise UsageError(f"{what} {text!r} is not a duration (like 500ms, 90s, 30m, 1.5h, 2d, 1d12h)")
    if seconds <= 0:
        raise UsageError(f"{what} {text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` written the way ``parse_duration`` reads it: 90061 -> ``1d1h1m1s``."""
    whole = int(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
