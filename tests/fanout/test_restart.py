"""A body executed again after it died or ended: finished children come from the
journal (not re-run, not re-inserted), running ones are not started twice, a durable
sleep sleeps only its remainder."""

from __future__ import annotations

import time

import pytest

from tests.helpers import execute, until
from zart_nb import schedule, wait

from .helpers import kill, runs_per_child, spawn_script
from .scripts import bodies

N = 12


def count(sql, run_id: str, status: str) -> int:
    return sql("SELECT count(*) AS n FROM steps WHERE run_id = %s AND kind = 'child' AND status = %s",
               run_id, status)[0]["n"]


def names(sql, run_id: str, status: str) -> set[str]:
    return {r["name"] for r in sql("SELECT name FROM steps WHERE run_id = %s AND kind = 'child' "
                                   "AND status = %s", run_id, status)}


def test_body_killed_during_wait_neither_reruns_finished_children_nor_restarts_running_ones(
        env, workers, sql, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(2)
    log = tmp_path / "effects.log"
    proc = spawn_script("tests.fanout.scripts.bodies", "fan", "killed", str(log), "--n", str(N),
                        "--delay", "0.4")
    until(lambda: count(sql, "killed", "completed") >= 3 and count(sql, "killed", "running") > 0,
          what="children finished and children in flight", every=0.01)
    kill(proc)
    assert sql("SELECT status FROM runs WHERE run_id = 'killed'")[0]["status"] == "waiting"
    finished, in_flight = names(sql, "killed", "completed"), names(sql, "killed", "running")
    assert in_flight

    outcome = bodies.fan.execute((str(log), N, 0.4), run_id="killed")

    assert outcome.value == [i * i for i in range(N)]
    assert set(outcome.report.replayed) >= finished
    assert not in_flight & set(outcome.report.executed)  # (replayed if finished meanwhile)
    runs = runs_per_child(log)
    assert sorted(runs) == sorted(f"record-{i}" for i in range(N))
    assert set(runs.values()) == {1}, runs


def test_replayed_children_are_neither_run_nor_inserted_again(env, workers, sql, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(2)
    log = tmp_path / "effects.log"
    first = bodies.fan.execute((str(log), 5), run_id="again")
    written = sql("SELECT name, xmin::text AS version FROM steps WHERE kind = 'child' ORDER BY name")

    second = execute(bodies.fan.fn, (str(log), 5), name="fan", run_id="again",
                     replay_completed=True)

    assert second.value == first.value == [0, 1, 4, 9, 16]
    assert second.report.replayed == [f"record-{i}" for i in range(5)]
    assert second.report.executed == []
    assert sql("SELECT name, xmin::text AS version FROM steps WHERE kind = 'child' "
               "ORDER BY name") == written, "a replayed child's row was written again"
    assert set(runs_per_child(log).values()) == {1}


FLAKY: dict = {}


def fan_then_fail(log, n):
    results = wait([schedule(bodies.record, log, i) for i in range(n)])
    if FLAKY.pop("fail", False):
        raise RuntimeError("the body failed after its children")
    return sum(results)


def test_children_of_a_failed_execution_are_replayed_by_the_next(env, workers, sql, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(2)
    log = tmp_path / "effects.log"
    FLAKY["fail"] = True
    with pytest.raises(RuntimeError, match="after its children"):
        execute(fan_then_fail, (str(log), 4), name="flaky", run_id="flaky")
    written = sql("SELECT name, xmin::text AS version FROM steps WHERE kind = 'child' ORDER BY name")

    outcome = execute(fan_then_fail, (str(log), 4), name="flaky", run_id="flaky")

    assert outcome.value == 0 + 1 + 4 + 9
    assert outcome.report.replayed == [f"record-{i}" for i in range(4)]
    assert sql("SELECT name, xmin::text AS version FROM steps WHERE kind = 'child' "
               "ORDER BY name") == written
    assert set(runs_per_child(log).values()) == {1}


def test_sleep_across_a_restart_sleeps_only_the_remainder(env, sql):
    env(ZART_WORKERS=0)
    proc = spawn_script("tests.fanout.scripts.bodies", "sleep", "napper", "--seconds", "3")
    until(lambda: sql("SELECT 1 FROM steps WHERE run_id = 'napper' AND name = 'nap'"),
          what="the sleep to begin", every=0.01)
    time.sleep(1.0)
    kill(proc)
    wake = sql("SELECT not_before FROM steps WHERE run_id = 'napper' AND name = 'nap'")

    started = time.monotonic()
    outcome = bodies.sleeper.execute((3,), run_id="napper")
    elapsed = time.monotonic() - started

    assert outcome.value == "woke"
    assert 1.0 < elapsed < 2.8, f"slept {elapsed:.2f} s after 1 s of a 3 s sleep"
    row = sql("SELECT status, not_before FROM steps WHERE run_id = 'napper' AND name = 'nap'")[0]
    assert row["status"] == "completed" and row["not_before"] == wake[0]["not_before"]
    again = execute(bodies.sleeper.fn, (3,), name="sleeper", run_id="napper",
                    replay_completed=True)
    assert again.report.replayed == ["nap"]
