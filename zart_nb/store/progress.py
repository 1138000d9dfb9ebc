"""What progress displays read: a run and its children in one query, one child's detail."""

from __future__ import annotations

from datetime import datetime

from . import sql
from .records import ChildDetail, ProgressRow
from .sql import Connection

SNAPSHOT = sql.query("progress_snapshot")
CHILD_AT = sql.query("progress_child_at")
REPLAYED_UNTIL = sql.query("progress_replayed_until")
NOW = sql.query("progress_now")


def snapshot(conn: Connection, run_id: str, *, since: datetime | None,
             failed_limit: int) -> ProgressRow | None:
    """The run with one character per child (children completed before ``since`` count as
    replayed), and the first ``failed_limit`` failed children with their errors."""
    return sql.one(conn, SNAPSHOT, {"run_id": run_id, "since": since,
                                    "failed_limit": failed_limit}, ProgressRow)


def child_at(conn: Connection, run_id: str, index: int) -> ChildDetail | None:
    return sql.one(conn, CHILD_AT, {"run_id": run_id, "index": index}, ChildDetail)


def last_finished(conn: Connection, run_id: str, names: list[str]) -> datetime | None:
    """When the last of the named children completed."""
    moment: datetime | None = sql.value(conn, REPLAYED_UNTIL, {"run_id": run_id, "names": names})
    return moment


def now(conn: Connection) -> datetime:
    """The database's clock."""
    moment: datetime = sql.value(conn, NOW)
    return moment
