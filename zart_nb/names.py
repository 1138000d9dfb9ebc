"""Names that PostgreSQL keys: run ids, step, event and durable names.

They are keys of b-tree indexes, so a NUL or more than ``MAX_NAME_BYTES`` UTF-8 bytes
is refused before anything is written. Any other text (quotes, SQL, emoji) is stored
as it is.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError

MAX_NAME_BYTES = 1000


def check_name(what: str, name: Any) -> str:
    """``name`` when it is a non-empty string PostgreSQL can key; else a UsageError
    naming ``what`` ("step name", "run id", ...)."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{what} must be a non-empty string, not {name!r}")
    if "\x00" in name:
        raise UsageError(f"{what} {name[:40]!r} contains a NUL character")
    if len(name) > MAX_NAME_BYTES // 4 and len(name.encode()) > MAX_NAME_BYTES:
        raise UsageError(f"{what} {name[:40]!r}... is {len(name.encode())} bytes long; at most "
                         f"{MAX_NAME_BYTES} (it is a key of the journal's indexes)")
    return name
