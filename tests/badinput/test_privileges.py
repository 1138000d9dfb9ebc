"""A database user without CREATE rights: the first open names the migration and the
right it needs (never a raw psycopg traceback); granting it makes the same call work."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.chaos.figures import record
from tests.helpers import execute
from zart_nb import StoreError, step
from zart_nb.config import configure, settings
from zart_nb.store.connection import close_store


@pytest.fixture
def unprivileged(pg_server, monkeypatch, tmp_path):
    """A fresh database and a LOGIN role with no CREATE right on it; ZART_* point there."""
    role = f"zart_nocreate_{os.getpid()}"
    db = f"nocreate_{os.getpid()}"
    with pg_server.admin() as conn:
        try:
            conn.execute(pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD 'secret-pw'")
                         .format(pgsql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server's user may not create roles")
    url = pg_server.create_database(db)
    params = conninfo_to_dict(url)
    params.update(user=role, password="secret-pw")
    monkeypatch.setenv("ZART_DATABASE_URL", make_conninfo(**params))
    monkeypatch.setenv("ZART_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ZART_SECRET", "zart-test-secret-0123456789abcdef")
    close_store()
    configure(None)
    try:
        yield role, db
    finally:
        close_store()
        configure(None)
        pg_server.drop_database(db)
        with pg_server.admin() as conn:
            conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


@step("hello")
def hello():
    return "hello"


def test_a_user_without_create_rights_gets_the_migration_and_the_right(unprivileged, pg_server):
    role, db = unprivileged
    with pytest.raises(StoreError) as caught:
        execute(lambda: hello(), name="no-create")
    message = str(caught.value)
    assert message.startswith("migration 0001_init needs the right to create schema 'zart' and "
                              "its tables (GRANT CREATE ON DATABASE ... TO the user)")
    assert f"permission denied for database {db}" in message
    assert "secret-pw" not in message and "secret-pw" not in repr(caught.value.__cause__)
    record("badinput", "a database user without CREATE rights", outcome=f"StoreError: {message}")

    with psycopg.connect(pg_server.dsn(db), autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('zart')").fetchone()[0] is None  # no half
        conn.execute(pgsql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            pgsql.Identifier(db), pgsql.Identifier(role)))
    close_store()
    assert settings().database_url.count("secret-pw") == 1
    assert execute(lambda: hello(), name="no-create").value == "hello"
