"""The store against a real PostgreSQL: connecting, migrating, refusing what it must."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest

from zart_nb import codec
from zart_nb.config import Settings
from zart_nb.errors import PayloadError, StoreError
from zart_nb.store import schema
from zart_nb.store.connection import Store, get_store, redact


def open_store(url: str) -> Store:
    return Store(Settings(database_url=url, secret=b"store-test-secret-0123456789abcdef")).open()


def migration_rows(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, count(*) FROM zart.schema_migrations "
                            "GROUP BY version ORDER BY version").fetchall()


EVERY_MIGRATION_ONCE = [(m.version, 1) for m in schema.migrations()]


class TouchOnLoad:
    """Unpickling this creates a folder: the witness that a payload was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("dsn", [
    "postgresql://bob:s3cret@127.0.0.1:1/x",
    "host=127.0.0.1 port=1 user=bob password=s3cret dbname=x",
])
def test_unreachable_dsn_is_a_store_error_without_the_password(dsn):
    with pytest.raises(StoreError) as caught:
        open_store(dsn)

    message = str(caught.value)
    assert "s3cret" not in message
    assert "***" in message
    assert "127.0.0.1" in message


def test_redact_leaves_a_dsn_without_password_alone():
    assert redact("postgresql://bob@db.example/x") == "postgresql://bob@db.example/x"


def test_open_migrates_an_empty_database(empty_db_url):
    store = open_store(empty_db_url)
    store.close()

    assert migration_rows(empty_db_url) == EVERY_MIGRATION_ONCE


def test_migrations_are_idempotent(empty_db_url):
    open_store(empty_db_url).close()
    open_store(empty_db_url).close()

    with psycopg.connect(empty_db_url) as conn:
        assert schema.migrate(conn, "zart") == []
    assert migration_rows(empty_db_url) == EVERY_MIGRATION_ONCE


def test_concurrent_migrations_make_one_schema(empty_db_url):
    start = threading.Barrier(4)
    applied: list[list[str]] = []
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            with psycopg.connect(empty_db_url, autocommit=True) as conn:
                start.wait(timeout=30)
                applied.append(schema.migrate(conn, "zart"))
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert failures == []
    every = [f"{m.version:04d}_{m.name}" for m in schema.migrations()]
    assert sorted(applied, key=len) == [[], [], [], every]
    assert migration_rows(empty_db_url) == EVERY_MIGRATION_ONCE


def test_newer_schema_is_refused(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO zart.schema_migrations (version, name, checksum) "
                     "VALUES (9999, 'future', 'x')")

    with pytest.raises(StoreError, match="version 9999, newer than this zart-nb"):
        open_store(db_url)


def test_edited_migration_is_refused(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE zart.schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(StoreError, match="must not be edited"):
        open_store(db_url)


def test_status_reports_applied_and_known_versions(db_url, empty_db_url):
    latest = schema.migrations()[-1].version
    with psycopg.connect(db_url) as conn:
        assert schema.status(conn, "zart") == (latest, latest)
    with psycopg.connect(empty_db_url) as conn:
        assert schema.status(conn, "zart") == (0, latest)


def test_pooled_connections_see_zart_tables_unqualified(zart_env):
    store = get_store()
    with store.connection() as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    assert get_store() is store


def store_payload(conn: psycopg.Connection, data: bytes) -> bytes:
    key = codec.digest(data)
    conn.execute("INSERT INTO payloads (hash, data, size) VALUES (%s, %s, %s)", (key, data, len(data)))
    return key


def load_payload(conn: psycopg.Connection, key: bytes) -> bytes:
    return conn.execute("SELECT data FROM payloads WHERE hash = %s", (key,), binary=True).fetchone()[0]


def test_stored_payload_round_trips_binary(zart_env):
    value = {"frame": bytes(range(256)) * 1000, "label": "q3"}
    with get_store().connection() as conn:
        key = store_payload(conn, codec.encode(value))
        assert codec.decode(load_payload(conn, key)) == value


def test_flipped_byte_in_a_stored_payload_is_refused_on_read(zart_env, tmp_path):
    marker = tmp_path / "unpickled"
    value = {"frame": bytes(1000), "side_effect": TouchOnLoad(str(marker))}
    with get_store().connection() as conn:
        key = store_payload(conn, codec.encode(value))
        # byte 100 lies in the zeros of "frame": the pickle stays valid, only the MAC can tell
        conn.execute("UPDATE payloads SET data = set_byte(data, 100, get_byte(data, 100) # 1) "
                     "WHERE hash = %s", (key,))
        tampered = load_payload(conn, key)

    with pytest.raises(PayloadError, match="signature does not match"):
        codec.decode(tampered)
    assert not marker.exists()


def test_unpicklable_connection_is_named_by_path(db_url):
    with psycopg.connect(db_url) as conn, pytest.raises(PayloadError) as caught:
        codec.encode({"conn": conn}, what="result")

    assert str(caught.value) == "result['conn']: cannot pickle 'psycopg.Connection'"


def test_closing_the_store_stops_its_listeners(zart_env):
    from zart_nb.store.notify import listener

    store = get_store()
    follower = listener(store)
    assert listener(store) is follower  # one per store and channel
    store.close()

    follower._thread.join(timeout=5)
    assert not follower._thread.is_alive()


def test_a_refused_statement_is_a_store_error_with_its_sqlstate_and_cause(zart_env):
    from zart_nb.store import runs

    with get_store().connection() as conn:
        assert runs.claim(conn, run_id="r", name="r", namespace="default", input=b"", options={},
                          owner="me", host="h", pid=1, lease=30, reopen=False) is not None
        with pytest.raises(StoreError) as caught:  # runs.status has a CHECK constraint
            runs.set_status(conn, "r", "me", "bogus")
    assert caught.value.sqlstate == "23514"
    assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
    assert str(caught.value).startswith("the database refused [23514]: ")


def test_every_named_query_is_run_by_a_store_module():
    from zart_nb.store import events, gc, journal, payloads, progress, queue, runs, sql

    assert {events, gc, journal, payloads, progress, queue, runs}  # imported: names declared
    assert sql.unused_queries() == set()
    with pytest.raises(KeyError):
        sql.query("no_such_query")


def test_a_fresh_commit_of_a_step_that_has_a_row_after_all_updates_it(zart_env):
    """A step's first commit is a plain INSERT; a row of that name there after all
    (a unique violation) is committed by the upsert, and only by the run's owner."""
    from zart_nb.store import journal
    from zart_nb.store.payloads import place
    from zart_nb.store.records import Owner

    with get_store().connection() as conn:
        conn.execute("INSERT INTO runs (run_id, name, status, owner, generation) "
                     "VALUES ('r', 'body', 'running', 'me', 1)")
        me = Owner("r", 1, "me")

        def commit(who: Owner, name: str, value: object) -> bool:
            data = codec.encode(value)
            return journal.complete(conn, who, journal.Completion(
                name, "step", 1, None, None, place(data), 1, 1, None, fresh=True))

        def stored(name: str) -> object:
            row = conn.execute("SELECT result FROM steps WHERE run_id = 'r' AND name = %s",
                               (name,), binary=True).fetchone()
            return codec.decode(row[0])

        assert commit(me, "a", "first")
        assert commit(me, "a", "second")  # the row was there: updated, not refused
        assert stored("a") == "second"
        assert not commit(Owner("r", 1, "someone else"), "a", "third")
        assert not commit(Owner("r", 1, "someone else"), "b", "new")
        assert stored("a") == "second"
        assert conn.execute("SELECT count(*) FROM steps WHERE run_id = 'r'").fetchone() == (1,)


def test_rows_as_named_tuples_are_filled_and_counted(zart_env):
    """every_positional fills a NamedTuple in C; a query whose columns do not match its
    fields is refused rather than made into short or long records."""
    from typing import NamedTuple

    from zart_nb.store import sql

    class Pair(NamedTuple):
        a: int
        b: str

    class Triple(NamedTuple):
        a: int
        b: str
        c: int

    pairs = sql.Query("pairs", b"SELECT i, i::text FROM generate_series(1, %(n)s) AS i")
    with get_store().connection() as conn:
        rows = sql.every_positional(conn, pairs, {"n": 3}, Pair, binary=True)
        assert rows == [Pair(1, "1"), Pair(2, "2"), Pair(3, "3")]
        assert type(rows[0]) is Pair and rows[2].b == "3"
        with pytest.raises(TypeError, match="Triple has 3 fields, the query 2 columns"):
            sql.every_positional(conn, pairs, {"n": 1}, Triple)
        assert sql.every_positional(conn, pairs, {"n": 2}, lambda a, b: b * a) == ["1", "22"]
