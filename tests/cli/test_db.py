"""``zart-nb db`` on the test's database and on an embedded server of its own; a database
that is down."""

from __future__ import annotations

import os

from zart_nb.store.connection import redact
from zart_nb.store.schema import migrations

from .conftest import assert_one_line_error, zart

DOWN = "postgresql://u:secret@127.0.0.1:1/x"


def test_url_status_and_psql_on_the_configured_database(zart_env):
    url = zart("db", "url")
    assert url.code == 0, url
    assert url.out.strip() == redact(zart_env.database_url)

    assert zart("--dsn", DOWN, "db", "url").out.strip() == "postgresql://u:***@127.0.0.1:1/x"

    status = zart("db", "status")
    assert status.code == 0, status
    latest = migrations()[-1].version
    assert "answering" in status.out and f"version {latest} applied" in status.out

    info = zart("db", "status", "--json").json()
    assert info["kind"] == "external" and info["running"] is True
    assert info["schema_applied"] == info["schema_known"] >= 1

    psql = zart("db", "psql", "-tA", "-c", "select count(*) from runs")
    assert psql.code == 0, psql
    assert psql.out.strip() == "0"


def test_migrate_applies_to_the_given_dsn_once(zart_env, empty_db_url):
    first = zart("db", "migrate", "--dsn", empty_db_url)
    assert first.code == 0, first
    assert "applied 0001_init" in first.out

    again = zart("db", "migrate", "--dsn", empty_db_url)
    assert again.code == 0, again
    assert "up to date" in again.out


def test_a_database_that_is_down_is_a_failed_operation_with_the_password_redacted(zart_env):
    env = dict(os.environ, ZART_DATABASE_URL=DOWN)
    for args in (["runs", "list"], ["runs", "show", "x"], ["gc", "--older-than", "1d"],
                 ["db", "migrate"], ["db", "status"], ["worker"], ["event", "send", "x", "y"]):
        result = zart(*args, env=env)
        assert result.code == 1, (args, result)
        assert "secret" not in result.out + result.err
        assert_one_line_error(result, 1, "u:***@127.0.0.1:1/x")


def test_stop_refuses_an_external_server(zart_env):
    assert_one_line_error(zart("db", "stop"), 2, "external server")


def test_embedded_server_lifecycle(zart_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ZART_DATABASE_URL"}
    env["ZART_HOME"] = str(tmp_path / "home")

    stopped = zart("db", "status", "--json", env=env)
    assert stopped.code == 0, stopped
    assert stopped.json()["kind"] == "embedded" and stopped.json()["running"] is False

    started = zart("db", "url", env=env)  # the embedded server starts on first use
    assert started.code == 0, started
    try:
        running = zart("db", "status", "--json", env=env).json()
        assert running["running"] is True and running["pid"] > 0
        assert running["data_dir"] == str(tmp_path / "home" / "pgdata")

        psql = zart("db", "psql", "-tA", "-c", "select 41 + 1", env=env)
        assert psql.out.strip() == "42", psql
    finally:
        stop = zart("db", "stop", env=env)
    assert stop.code == 0, stop
    assert "stopped the embedded server" in stop.out
    assert zart("db", "status", "--json", env=env).json()["running"] is False
    assert "not running" in zart("db", "stop", env=env).out
