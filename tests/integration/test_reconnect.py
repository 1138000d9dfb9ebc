"""Connections that come back after the database does (zart_nb/store/reconnect.py), and
how a lost connection is told from a refusal (StoreError.sqlstate, store.sql.lost)."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from zart_nb.engine.leases import Ticker
from zart_nb.errors import StoreError
from zart_nb.store import sql
from zart_nb.store.connection import Store, get_store
from zart_nb.store.notify import listener
from zart_nb.store.reconnect import Backoff, Link

NOW = sql.Query("now", b"SELECT now()")
BACKEND_PID = sql.Query("backend_pid", b"SELECT pg_backend_pid()")
ECHO = sql.Query("echo", b"SELECT %(text)s::text")


def terminate(url: str, pid: int) -> None:
    """End one session from the server's side, as a restart would end them all."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lost_connection_and_a_refusal_are_told_apart_by_sqlstate(zart_env):
    store = get_store()
    conn = store.connect()
    terminate(zart_env.database_url, sql.value(conn, BACKEND_PID))
    with pytest.raises(StoreError) as gone:
        sql.value(conn, NOW)
    assert sql.lost(gone.value.sqlstate) and str(gone.value).startswith("lost the database")
    with store.connection() as fresh, pytest.raises(StoreError) as nul:
        sql.value(fresh, ECHO, {"text": "a\x00b"})  # refused by the driver: nothing sent
    assert nul.value.sqlstate is None and not sql.lost(nul.value.sqlstate)
    unreachable = Store(zart_env.evolve(database_url="postgresql:///x?host=/nonexistent"))
    with pytest.raises(StoreError) as refused_connection:
        unreachable.connect()
    assert sql.lost(refused_connection.value.sqlstate)


def test_backoff_doubles_from_a_tenth_of_a_second_to_its_cap():
    backoff = Backoff(cap=1.0)
    assert [backoff.delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.delay() == 0.1


def test_a_link_replaces_a_connection_the_server_ended_without_an_outage(zart_env, caplog):
    opened = []
    link = Link(get_store(), "the test", setup=lambda conn: opened.append(conn))
    first = link.use(lambda conn: sql.value(conn, BACKEND_PID))
    terminate(zart_env.database_url, first)
    with caplog.at_level(logging.INFO, logger="zart_nb"):
        second = link.use(lambda conn: sql.value(conn, BACKEND_PID))
    assert second != first and len(opened) == 2  # set up again, at once
    assert not link.down and not caplog.records
    link.close()


def test_an_outage_is_logged_once_and_its_end_once(zart_env, caplog):
    store = Store(zart_env)
    link = Link(store, "the test")
    good = store.dsn
    store.dsn = "postgresql:///zart?host=/nonexistent-zart-socket"  # the server unreachable
    with caplog.at_level(logging.INFO, logger="zart_nb"):
        for _ in range(3):
            link.retry_at = None  # do not wait out the backoff
            with pytest.raises(StoreError):
                link.use(lambda conn: sql.value(conn, NOW))
        assert link.down and 0 < link.pause() <= 0.4
        store.dsn = good
        link.retry_at = None
        link.use(lambda conn: sql.value(conn, NOW))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"zart-nb: the test lost the database {good} (cannot connect")
    assert messages[0].endswith("; reconnecting")
    assert messages[1].startswith(f"zart-nb: the test is back on the database {good} after ")
    assert "(3 failed attempts)" in messages[1]
    assert not link.down
    link.close()


def test_the_outage_log_never_shows_a_password(zart_env, caplog):
    unreachable = Store(zart_env.evolve(
        database_url="postgresql://zart:s3cret-pw@/zart?host=/nonexistent-zart-socket"))
    link = Link(unreachable, "the test")
    with caplog.at_level(logging.INFO, logger="zart_nb"), pytest.raises(StoreError):
        link.use(lambda conn: sql.value(conn, NOW))
    [message] = [r.getMessage() for r in caplog.records]
    assert "zart:***@" in message and "s3cret" not in message


def test_a_refusal_is_logged_once_with_its_traceback(zart_env, caplog):
    link = Link(get_store(), "the test")
    with caplog.at_level(logging.INFO, logger="zart_nb"):
        for _ in range(2):
            link.retry_at = None
            with pytest.raises(StoreError):
                link.use(lambda conn: sql.value(conn, ECHO, {"text": "a\x00b"}))
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
    assert "refused" in caplog.records[0].getMessage()
    link.close()


def test_the_listener_listens_again_after_losing_its_connection(zart_env):
    store = get_store()
    follower = listener(store, "zart_test_channel")
    token = follower.token("k")
    with psycopg.connect(zart_env.database_url, autocommit=True) as admin:
        pids = admin.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE "
                             "'LISTEN \"zart_test_channel\"%'").fetchall()
        assert len(pids) == 1
        admin.execute("SELECT pg_terminate_backend(%s)", (pids[0][0],))
    # listening again, it wakes every waiter (anything may have happened meanwhile)
    assert follower.wait("k", token, 30)
    token = follower.token("k")
    with psycopg.connect(zart_env.database_url, autocommit=True) as admin:
        admin.execute("NOTIFY zart_test_channel, 'k'")
    assert follower.wait("k", token, 30)


def test_a_bug_in_a_ticker_is_logged_with_its_traceback_and_the_thread_goes_on(caplog):
    ticks = threading.Semaphore(0)

    class Buggy(Ticker):
        def tick(self) -> None:
            ticks.release()
            raise KeyError("a bug")

    with caplog.at_level(logging.ERROR, logger="zart_nb"):
        ticker = Buggy("zart-test-ticker", 0.01).start()
        assert all(ticks.acquire(timeout=10) for _ in range(3))  # it went on ticking
        ticker.stop()
    bug = caplog.records[0]
    assert bug.getMessage() == "zart-nb: zart-test-ticker failed; it goes on"
    assert bug.exc_info is not None and bug.exc_info[0] is KeyError
