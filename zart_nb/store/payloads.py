"""Where an encoded value is stored: inline in its row when small, else once per content
in the payloads table, addressed by its hash and read only when asked for."""

from __future__ import annotations

from dataclasses import dataclass

from .. import codec
from . import sql
from .sql import Connection

INLINE_LIMIT = 16 * 1024  # larger values go to the payloads table, stored once

GET = sql.query("get_payload")


@dataclass(frozen=True, slots=True)
class Placed:
    """An encoded value placed for a row: ``inline`` bytes, or ``hash`` plus the ``data``
    to insert into payloads (ON CONFLICT DO NOTHING: identical content is stored once)."""

    inline: bytes | None
    hash: bytes | None
    data: bytes | None
    size: int


def place(data: bytes) -> Placed:
    if len(data) <= INLINE_LIMIT:
        return Placed(data, None, None, len(data))
    return Placed(None, codec.digest(data), data, len(data))


def read(conn: Connection, digest: bytes) -> bytes | None:
    """A large value by its content hash, read in binary (no hex text to decode)."""
    data: bytes | None = sql.value(conn, GET, {"hash": digest}, binary=True)
    return data
