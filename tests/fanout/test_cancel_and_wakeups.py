"""A cancelled run's children are not run; waiting (the body's and the workers') wakes on
LISTEN/NOTIFY instead of polling PostgreSQL in a loop."""

from __future__ import annotations

import time

import pytest

from tests.helpers import execute, until
from zart_nb import RunFailed, run, schedule, wait

from .helpers import InThread
from .scripts import bodies


def waits_for_children(log, n, delay=0.0):
    return wait([schedule(bodies.record, log, i, delay) for i in range(n)])


def children(sql, run_id: str) -> list[str]:
    return [r["status"] for r in sql("SELECT status FROM steps WHERE run_id = %s AND kind = 'child'",
                                     run_id)]


def test_unclaimed_children_of_a_cancelled_run_are_not_run(env, workers, sql, tmp_path):
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=2)
    log = tmp_path / "doomed.log"
    body = InThread(waits_for_children, str(log), 10, run_id="doomed")
    until(lambda: children(sql, "doomed") == ["scheduled"] * 10, what="the children queued")
    assert run("doomed").cancel()
    with pytest.raises(RunFailed, match="'doomed' was cancelled"):
        body.result()

    workers.start(2)
    alive = execute(waits_for_children, (str(tmp_path / "alive.log"), 1), name="alive",
                    run_id="alive")
    assert alive.value == [0]  # the worker ran a later child, and passed the cancelled ones by
    assert not log.exists(), log.read_text()
    assert children(sql, "doomed") == ["scheduled"] * 10
    assert run("doomed").status == "cancelled"


def commits(sql) -> int:
    return sql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0][
        "xact_commit"]


def test_waiting_for_a_slow_child_does_not_poll_the_database(env, workers, sql, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(2)  # one slot busy, one idle: the idle one must not poll for work either
    body = InThread(waits_for_children, str(tmp_path / "slow.log"), 1, 5.0, run_id="slow")
    until(lambda: children(sql, "slow") == ["running"], what="the child to start")
    time.sleep(1.5)  # backends publish their statistics about once a second
    before = commits(sql)
    time.sleep(3.0)
    idle = commits(sql) - before
    # the slow polls (body 2 s; each worker's claim, detached-run and next-retry looks
    # every 2 s), heartbeats, pool connection checks and these probes: under 15 a
    # second; a loop that polls as it waits does hundreds
    assert idle < 45, f"{idle} transactions in 3 s of waiting"
    assert body.result() == [0]


def test_a_body_waiting_for_children_notices_a_cancel_at_once(env, sql, tmp_path):
    env(ZART_WORKERS=0)  # no worker: the children never finish; the lease is the default 30 s
    body = InThread(waits_for_children, str(tmp_path / "log"), 3, run_id="cut-short")
    until(lambda: children(sql, "cut-short") == ["scheduled"] * 3, what="the children queued")
    begun = time.monotonic()
    assert run("cut-short").cancel()

    with pytest.raises(RunFailed, match="'cut-short' was cancelled"):
        body.result()
    assert time.monotonic() - begun < 5  # not the next heartbeat, 10 s away
