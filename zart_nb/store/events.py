"""Events sent to runs: immutable once sent, kept until the body waits for them."""

from __future__ import annotations

from ..errors import EventAlreadySent, RunNotFound, StoreError
from . import sql
from .sql import Connection

INSERT = sql.query("insert_event")
GET = sql.query("get_event")

_FOREIGN_KEY_VIOLATION = "23503"
_UNIQUE_VIOLATION = "23505"


def send(conn: Connection, run_id: str, name: str, payload: bytes) -> None:
    """Store event ``name`` for run ``run_id``; the first one of a name wins."""
    try:
        sql.execute(conn, INSERT, {"run_id": run_id, "name": name, "payload": payload})
    except StoreError as exc:
        if exc.sqlstate == _FOREIGN_KEY_VIOLATION:
            raise RunNotFound(f"cannot send event {name!r}: run {run_id!r} does not exist") from None
        if exc.sqlstate == _UNIQUE_VIOLATION:
            raise EventAlreadySent(f"event {name!r} was already sent to run {run_id!r}; "
                                   "events are immutable once sent") from None
        raise


def payload(conn: Connection, run_id: str, name: str) -> bytes | None:
    """The event's payload, or None when it was not sent yet."""
    data: bytes | None = sql.value(conn, GET, {"run_id": run_id, "name": name})
    return data
