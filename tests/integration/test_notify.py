"""Children's wake-ups come from the statements that change them (migration 0003).

Every statement that inserts a child or changes its status sends ``zart_run`` (payload:
the run) and, when the child becomes 'scheduled', ``zart_work`` (payload: its
namespace); a LISTEN hears them once the transaction commits, not before. The runs here
are in namespace "default" and their children in "kids": a ``zart_work`` of "kids" can
only come from a child. And the row trigger that sent them before is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from zart_nb.config import Settings
from zart_nb.errors import StoreError
from zart_nb.store import queue, runs, schema
from zart_nb.store.connection import Store, get_store
from zart_nb.store.records import ChildFailure, ChildResult, ChildTask, NewChild, Owner, Placed
from zart_nb.store.sql import Connection

KIDS = "kids"
WORKER = "worker-1"
LEASE = 30.0

Heard = set[tuple[str, str]]


def run(r: str) -> tuple[str, str]:
    return ("zart_run", r)


def work(namespace: str) -> tuple[str, str]:
    return ("zart_work", namespace)


# -- setting up children, before anyone listens ------------------------------------------

def start(conn: Connection, run_id: str, names: tuple[str, ...] = ("a", "b")) -> Owner:
    """A run owned by "me", with children ``names`` queued in namespace "kids"."""
    claim = runs.claim(conn, run_id=run_id, name="body", namespace="default", input=b"",
                       options={}, owner="me", host="h", pid=1, lease=LEASE, reopen=False)
    assert claim is not None
    who = Owner(run_id, claim.generation, "me")
    queue.insert(conn, who, KIDS, [child(name, seq) for seq, name in enumerate(names, 1)])
    return who


def child(name: str, seq: int) -> NewChild:
    return NewChild(name=name, seq=seq, code_fp=b"code", args_fp=b"args", task=b"task",
                    max_attempts=1, retry="null", timeout_s=None)


def claimed(conn: Connection, *run_ids: str) -> list[ChildTask]:
    """The children of ``run_ids`` claimed by WORKER."""
    for run_id in run_ids:
        start(conn, run_id)
    tasks = queue.claim(conn, namespace=KIDS, worker=WORKER, limit=100, lease=LEASE)
    assert {t.run_id for t in tasks} == set(run_ids)
    return tasks


def failure(task: ChildTask, retry_at: datetime | None) -> ChildFailure:
    return ChildFailure(claimed=task, error="ValueError: no", error_kind="business",
                        error_payload=b"", traceback="", retry_at=retry_at)


def expire_leases(conn: Connection, *, lost_often: bool = False) -> None:
    """WORKER's leases ran out (``lost_often``: after two losses beyond the attempts)."""
    conn.execute("UPDATE steps SET lease_until = now() - interval '1 minute', "
                 "attempts = CASE WHEN %s THEN max_attempts + 2 ELSE attempts END "
                 "WHERE worker = %s", (lost_often, WORKER))


def status(conn: Connection, run_id: str, name: str) -> str:
    row = conn.execute("SELECT status FROM steps WHERE run_id = %s AND name = %s",
                       (run_id, name)).fetchone()
    assert row is not None
    return str(row[0])


# -- the paths: each sets up, then returns the write under test and what it must wake ----

Write = Callable[[Connection], Any]
Case = Callable[[Connection], tuple[Write, Heard]]


def schedule(conn: Connection) -> tuple[Write, Heard]:
    runs.claim(conn, run_id="r1", name="body", namespace="default", input=b"", options={},
               owner="me", host="h", pid=1, lease=LEASE, reopen=False)
    who = Owner("r1", 1, "me")
    return (lambda c: queue.insert(c, who, KIDS, [child("a", 1), child("b", 2)]),
            {work(KIDS), run("r1")})


def schedule_again(conn: Connection) -> tuple[Write, Heard]:
    """A body executed again queues a child that failed: the upsert's update."""
    task = claimed(conn, "r1")[0]
    assert queue.fail(conn, WORKER, failure(task, None)) == 1
    who = Owner("r1", 1, "me")

    def write(c: Connection) -> None:
        queue.insert(c, who, KIDS, [child(task.name, 1)])
        assert status(c, "r1", task.name) == "scheduled"

    return write, {work(KIDS), run("r1")}


def claim(conn: Connection) -> tuple[Write, Heard]:
    start(conn, "r1")
    start(conn, "r2")

    def write(c: Connection) -> None:
        tasks = queue.claim(c, namespace=KIDS, worker=WORKER, limit=100, lease=LEASE)
        assert sorted((t.run_id, t.name, t.attempts) for t in tasks) == [
            ("r1", "a", 1), ("r1", "b", 1), ("r2", "a", 1), ("r2", "b", 1)]

    return write, {run("r1"), run("r2")}


def claim_own(conn: Connection) -> tuple[Write, Heard]:
    who = start(conn, "r1")

    def write(c: Connection) -> None:
        tasks = queue.claim_own(c, who, worker="executor:me", names=["a", "b"], lease=LEASE)
        assert sorted(t.name for t in tasks) == ["a", "b"]
        assert all(isinstance(t, ChildTask) and t.task == b"task" for t in tasks)

    return write, {run("r1")}


def claim_own_only_lost(conn: Connection) -> tuple[Write, Heard]:
    """Every child it would take was lost too often: it fails them, takes none, and
    still wakes the run."""
    claimed(conn, "r1")
    expire_leases(conn, lost_often=True)
    who = Owner("r1", 1, "me")

    def write(c: Connection) -> None:
        assert queue.claim_own(c, who, worker="executor:me", names=["a", "b"], lease=LEASE) == []
        assert status(c, "r1", "a") == status(c, "r1", "b") == "failed"

    return write, {run("r1")}


def complete(conn: Connection) -> tuple[Write, Heard]:
    tasks = claimed(conn, "r1", "r2")
    results = [ChildResult(claimed=t, value=Placed(b"1", None, None, 1)) for t in tasks]

    def write(c: Connection) -> None:
        assert sorted(queue.complete(c, WORKER, results)) == ["a", "a", "b", "b"]

    return write, {run("r1"), run("r2")}


def fail_and_retry(conn: Connection) -> tuple[Write, Heard]:
    task = claimed(conn, "r1")[0]
    later = datetime.now(timezone.utc) + timedelta(hours=1)

    def write(c: Connection) -> None:
        assert queue.fail(c, WORKER, failure(task, later)) == 1
        assert status(c, "r1", task.name) == "scheduled"

    return write, {work(KIDS), run("r1")}


def fail_for_good(conn: Connection) -> tuple[Write, Heard]:
    task = claimed(conn, "r1")[0]

    def write(c: Connection) -> None:
        assert queue.fail(c, WORKER, failure(task, None)) == 1
        assert status(c, "r1", task.name) == "failed"

    return write, {run("r1")}


def release(conn: Connection) -> tuple[Write, Heard]:
    tasks = claimed(conn, "r1")

    def write(c: Connection) -> None:
        assert queue.release(c, WORKER, tasks) == len(tasks)
        assert status(c, "r1", "a") == "scheduled"

    return write, {work(KIDS), run("r1")}


def retake(conn: Connection) -> tuple[Write, Heard]:
    tasks = claimed(conn, "r1")

    def write(c: Connection) -> None:
        assert queue.retake(c, WORKER, LEASE, tasks) == {
            (t.run_id, t.generation, t.name): t.attempts for t in tasks}

    return write, {run("r1")}


def requeue_expired(conn: Connection) -> tuple[Write, Heard]:
    claimed(conn, "r1")
    expire_leases(conn)

    def write(c: Connection) -> None:
        queue.requeue_expired(c, lease=0)
        assert status(c, "r1", "a") == "scheduled"

    return write, {work(KIDS), run("r1")}


def requeue_expired_lost_often(conn: Connection) -> tuple[Write, Heard]:
    claimed(conn, "r1")
    expire_leases(conn, lost_often=True)

    def write(c: Connection) -> None:
        queue.requeue_expired(c, lease=0)
        assert status(c, "r1", "a") == "failed"

    return write, {run("r1")}


def retry_step(conn: Connection) -> tuple[Write, Heard]:
    """Run.retry_step of a failed child; the run's own trigger adds its wake-ups (it
    becomes pending in namespace "default")."""
    task = claimed(conn, "r1")[0]
    assert queue.fail(conn, WORKER, failure(task, None)) == 1
    runs.release(conn, "r1", "me", "interrupted")

    def write(c: Connection) -> None:
        runs.retry_step(c, "r1", task.name)
        assert status(c, "r1", task.name) == "scheduled"

    return write, {work(KIDS), run("r1"), work("default")}


CASES: list[Case] = [schedule, schedule_again, claim, claim_own, claim_own_only_lost, complete,
                     fail_and_retry, fail_for_good, release, retake, requeue_expired,
                     requeue_expired_lost_often, retry_step]


@contextmanager
def listening(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("LISTEN zart_run")
        conn.execute("LISTEN zart_work")
        yield conn


def heard(listener: psycopg.Connection, *, timeout: float,
          stop_after: int | None = None) -> list[tuple[str, str]]:
    return [(n.channel, n.payload)
            for n in listener.notifies(timeout=timeout, stop_after=stop_after)]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_each_change_of_a_child_wakes_its_listeners_at_commit(zart_env: Settings, case: Case) -> None:
    store = get_store()
    with store.connection() as conn:
        write, expected = case(conn)
        with listening(zart_env.database_url) as listener:
            with conn.transaction():
                write(conn)
                assert heard(listener, timeout=0.1) == []  # nothing before the commit
            got = heard(listener, timeout=10, stop_after=len(expected))
            got += heard(listener, timeout=0.1)  # and nothing more
    assert sorted(got) == sorted(expected)  # once each: one statement, one payload


def test_a_write_that_changes_no_child_wakes_nobody(zart_env: Settings) -> None:
    store = get_store()
    with store.connection() as conn:
        tasks = claimed(conn, "r1")
        with listening(zart_env.database_url) as listener:
            assert queue.claim(conn, namespace=KIDS, worker="worker-2", limit=10, lease=LEASE) == []
            assert queue.release(conn, "worker-2", tasks) == 0
            assert queue.complete(conn, "worker-2", [
                ChildResult(claimed=t, value=Placed(b"1", None, None, 1)) for t in tasks]) == []
            assert heard(listener, timeout=0.3) == []


# -- the migration -------------------------------------------------------------------------

def triggers(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'zart' AND NOT t.tgisinternal").fetchall()
    return {name for (name,) in rows}


def functions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT p.proname FROM pg_proc p JOIN pg_namespace n "
                        "ON n.oid = p.pronamespace WHERE n.nspname = 'zart'").fetchall()
    return {name for (name,) in rows}


def test_the_steps_trigger_is_gone_and_the_others_stay(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert triggers(conn) == {"runs_notify", "events_notify"}
        assert "notify_step_v1" not in functions(conn)
        assert {"notify_run_v1", "notify_event_v1"} <= functions(conn)


def test_a_database_at_version_2_migrates_to_3_with_its_children(
        empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = schema.migrations()
    assert [m.version for m in shipped][:3] == [1, 2, 3]
    secret = b"store-test-secret-0123456789abcdef"

    with monkeypatch.context() as before:  # the zart-nb of version 2
        before.setattr(schema, "migrations", lambda: shipped[:2])
        old = Store(Settings(database_url=empty_db_url, secret=secret)).open()
        with old.connection() as conn:
            claim = runs.claim(conn, run_id="r1", name="body", namespace="default", input=b"",
                               options={}, owner="me", host="h", pid=1, lease=LEASE,
                               reopen=False)
            assert claim is not None
            # queued as version 2 queued them (today's statement calls notify_children_v1,
            # which version 3 creates)
            conn.execute(
                "INSERT INTO steps (run_id, generation, name, kind, status, seq, namespace, "
                "code_fp, args_fp, task, max_attempts, attempts) "
                "SELECT 'r1', %s, name, 'child', 'scheduled', seq, %s, 'code', 'args', 'task', 1, 0 "
                "FROM (VALUES ('a', 1), ('b', 2)) AS c(name, seq)", (claim.generation, KIDS))
        old.close()
    with psycopg.connect(empty_db_url) as conn:
        assert "steps_notify" in triggers(conn)

    new = Store(Settings(database_url=empty_db_url, secret=secret)).open()
    try:
        with psycopg.connect(empty_db_url) as conn:
            assert "steps_notify" not in triggers(conn)
            assert "notify_step_v1" not in functions(conn)
            assert conn.execute("SELECT max(version) FROM zart.schema_migrations").fetchone() == (
                shipped[-1].version,)
        with new.connection() as conn, listening(empty_db_url) as listener:
            tasks = queue.claim(conn, namespace=KIDS, worker=WORKER, limit=10, lease=LEASE)
            assert sorted(t.name for t in tasks) == ["a", "b"]  # the children queued at 2
            assert heard(listener, timeout=10, stop_after=1) == [run("r1")]
    finally:
        new.close()


def test_a_zart_nb_of_version_2_refuses_a_database_at_3(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = schema.migrations()
    monkeypatch.setattr(schema, "migrations", lambda: shipped[:2])

    with pytest.raises(StoreError, match=f"at version {shipped[-1].version}, newer than this zart-nb"):
        Store(Settings(database_url=db_url, secret=b"store-test-secret-0123456789abcdef")).open()
