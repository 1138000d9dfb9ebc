"""Versioned migrations: ``sql/migrations/NNNN_name.sql``, applied under an advisory lock.

A current schema costs one query. A schema that is behind is migrated by the first
process that takes the lock; the others wait, see it current, and go on. Each applied
file's checksum is kept: an edited shipped migration, or a database newer than this
code, is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from ..errors import StoreError
from .sql import translated

_LOCK_KEY = 0x7A617274  # "zart": serialises migrations across processes
_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def migrations() -> list[Migration]:
    folder = resources.files("zart_nb.store") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def applied(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    """version -> checksum of the migrations applied to ``schema`` (empty: none)."""
    row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".schema_migrations',)).fetchone()
    if row is None or row[0] is None:
        return {}
    rows = conn.execute(sql.SQL("SELECT version, checksum FROM {}.schema_migrations")
                        .format(sql.Identifier(schema))).fetchall()
    return dict(rows)


def status(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """(applied version, latest version this code knows)."""
    with translated(conn):
        done = applied(conn, schema)
    return (max(done, default=0), migrations()[-1].version)


def migrate(conn: psycopg.Connection, schema: str) -> list[str]:
    """Bring ``schema`` up to date; returns the names of the migrations applied now."""
    with translated(conn):
        return _migrate(conn, schema)


def _migrate(conn: psycopg.Connection, schema: str) -> list[str]:
    wanted = migrations()
    if _check(applied(conn, schema), wanted):
        return []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        done = applied(conn, schema)
        if _check(done, wanted):
            return []
        return [_apply(conn, schema, m) for m in wanted if m.version not in done]
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _check(done: dict[int, str], wanted: list[Migration]) -> bool:
    """True when every migration is applied; raises on a newer or edited schema."""
    known = {m.version: m for m in wanted}
    newer = [v for v in done if v not in known]
    if newer:
        raise StoreError(f"the database schema is at version {max(newer)}, newer than this "
                         f"zart-nb knows ({wanted[-1].version}); upgrade zart-nb")
    for version, checksum in done.items():
        if known[version].checksum != checksum:
            m = known[version]
            raise StoreError(f"migration {m.version:04d}_{m.name}.sql differs from the one applied "
                             "to this database; shipped migrations must not be edited")
    return len(done) == len(known)


def _apply(conn: psycopg.Connection, schema: str, m: Migration) -> str:
    label = f"{m.version:04d}_{m.name}"
    ident = sql.Identifier(schema)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"))
            conn.execute(m.text.encode())  # a multi-statement script: simple query protocol
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (m.version, m.name, m.checksum))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreError(f"migration {label} needs the right to create schema {schema!r} and its "
                         f"tables (GRANT CREATE ON DATABASE ... TO the user); PostgreSQL said: "
                         f"{exc.diag.message_primary}") from exc
    return label
