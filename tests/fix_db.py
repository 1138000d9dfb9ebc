"""Fixtures that give every test a real PostgreSQL; DESIGN.md forbids a mocked database.

One server per session: ``ZART_TEST_DATABASE_URL`` when it is set (the role needs
CREATEDB), else the embedded server in a temporary ``ZART_HOME``. Migrations run once,
into a template database; each test asking for ``db_url`` gets its own copy
(``CREATE DATABASE … TEMPLATE``, a file copy: far cheaper than migrating again) and it
is dropped afterwards. Database names carry the pid, so that two test sessions can
share one external server.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from zart_nb.config import Settings, configure, settings
from zart_nb.store import embedded, schema
from zart_nb.store.connection import close_store

from .helpers import Workers

TEST_SECRET = "zart-test-secret-0123456789abcdef"
SCHEMA = "zart"


@dataclass(frozen=True)
class PgServer:
    """The session's server: ``url`` reaches its maintenance database."""

    url: str
    home: Path | None  # the embedded server's ZART_HOME; None for ZART_TEST_DATABASE_URL
    template: str

    def dsn(self, dbname: str) -> str:
        """The server's DSN with the database replaced by ``dbname``."""
        params = conninfo_to_dict(self.url)
        params["dbname"] = dbname
        return make_conninfo(**params)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); returns its DSN."""
        query = SQL("CREATE DATABASE {}").format(Identifier(name))
        if template:
            query += SQL(" TEMPLATE {}").format(Identifier(template))
        with self.admin() as conn:
            conn.execute(query)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(name)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("ZART_TEST_DATABASE_URL")
    home = None if external else Path(tempfile.mkdtemp(prefix="zart-test-"))
    try:
        url = external or embedded.server_url(home)
        server = PgServer(url, home, f"zart_template_{os.getpid()}")
        server.drop_database(server.template)
        with psycopg.connect(server.create_database(server.template), autocommit=True) as conn:
            schema.migrate(conn, SCHEMA)
        yield server
        server.drop_database(server.template)
    finally:
        if home is not None:
            embedded.stop(home)
            shutil.rmtree(home, ignore_errors=True)


_numbers = itertools.count(1)


@pytest.fixture
def db_url(pg_server: PgServer) -> Iterator[str]:
    """DSN of a fresh, migrated database of this test's own."""
    name = f"test_{os.getpid()}_{next(_numbers)}"
    url = pg_server.create_database(name, template=pg_server.template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    """DSN of a fresh database without zart's schema (for migration tests)."""
    name = f"empty_{os.getpid()}_{next(_numbers)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def zart_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The ``ZART_*`` environment of a user of this test's database.

    Set in ``os.environ``, so that code under test and the subprocesses it spawns with
    the environment (workers, kernels) see the same database, home and secret.
    """
    monkeypatch.setenv("ZART_DATABASE_URL", db_url)
    monkeypatch.setenv("ZART_HOME", str(tmp_path / "zart-home"))
    monkeypatch.setenv("ZART_SECRET", TEST_SECRET)
    close_store()
    configure(None)
    yield settings()
    close_store()
    configure(None)


@pytest.fixture
def sql(zart_env: Settings) -> Callable[..., list[dict]]:
    """``sql(query, *params)``: rows of a query on the test database, in zart's schema."""

    def run(query: str, *params: Any) -> list[dict]:
        with psycopg.connect(zart_env.database_url, autocommit=True,
                             options=f"-c search_path={SCHEMA}", row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    return run


@pytest.fixture
def env(zart_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``env(ZART_WORKERS=0, ZART_LEASE_SECONDS=2)``: set for this process (settings
    re-read) and for every process it spawns."""

    def set_env(**values: Any) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))
        close_store()
        configure(None)

    return set_env


@pytest.fixture
def workers(zart_env: Settings, tmp_path: Path) -> Iterator[Workers]:
    """External worker processes on this test's database, stopped after the test."""
    logs = tmp_path / "workers"
    logs.mkdir()
    pool = Workers(logs)
    yield pool
    pool.stop()
