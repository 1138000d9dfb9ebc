"""Many children across external workers and the local pool, one worker killed mid-way:
every child completes, its result is committed once, results come back in order."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

from tests.helpers import until

from .helpers import lines, runs_per_child
from .scripts import bodies

N = 2000

COUNT_COMPLETIONS = [
    "CREATE TABLE completions (name text, worker text, attempts integer)",
    """CREATE FUNCTION count_completion() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO completions VALUES (NEW.name, NEW.worker, NEW.attempts); RETURN NULL; END $$""",
    """CREATE TRIGGER count_completion AFTER INSERT OR UPDATE ON steps FOR EACH ROW
       WHEN (NEW.kind = 'child' AND NEW.status = 'completed') EXECUTE FUNCTION count_completion()""",
]


def pid_of(worker: str) -> int:
    return int(worker.split(":")[-2])  # host:pid:suffix


def test_children_complete_once_when_a_worker_is_killed_midway(env, workers, sql, tmp_path):
    env(ZART_WORKERS=2, ZART_LEASE_SECONDS=2)
    for statement in COUNT_COMPLETIONS:  # every write of a child's result, counted by PostgreSQL
        sql(statement)
    victim = workers.start(2)
    workers.start(2)  # the survivor
    log = tmp_path / "effects.log"
    box: dict = {}

    def body() -> None:
        try:
            box["outcome"] = bodies.fan.execute((str(log), N, 0.005), run_id="wide")
        except BaseException as exc:  # handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()

    def victim_busy_midway():
        done = sql("SELECT count(*) AS n FROM steps WHERE kind = 'child' AND status = 'completed'")
        held = sql("SELECT count(*) AS n FROM steps WHERE status = 'running' AND worker LIKE %s",
                   f"%:{victim.pid}:%")
        return done[0]["n"] >= N // 4 and held[0]["n"] > 0

    until(victim_busy_midway, timeout=60, what="the victim holding children a quarter of the way",
          every=0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    held = {r["name"] for r in sql("SELECT name FROM steps WHERE status = 'running' AND worker LIKE %s",
                                    f"%:{victim.pid}:%")}
    thread.join(120)
    assert not thread.is_alive(), "the body did not end"
    assert "error" not in box, box.get("error")

    assert box["outcome"].value == [i * i for i in range(N)]
    assert held, "the victim held children when it was killed"
    rows = sql("SELECT name, status, attempts, worker FROM steps WHERE kind = 'child'")
    assert len(rows) == N and {r["status"] for r in rows} == {"completed"}
    assert {r["name"] for r in rows if r["attempts"] > 1} >= held  # their lost attempt counted

    # Each child's result was written once, by a worker that ran that very attempt.
    writes = Counter(r["name"] for r in sql("SELECT name FROM completions"))
    assert len(writes) == N and set(writes.values()) == {1}
    ran = {(name, int(attempt), int(pid)) for name, attempt, pid in lines(log)}
    for r in rows:
        assert (r["name"], r["attempts"], pid_of(r["worker"])) in ran, r
    assert victim.pid not in {pid_of(r["worker"]) for r in rows if r["name"] in held}

    # Every child ran; a child ran twice only when the killed worker held it.
    runs = runs_per_child(log)
    assert len(runs) == N and min(runs.values()) >= 1
    by_others = Counter(name for name, _, pid in lines(log) if int(pid) != victim.pid)
    assert max(by_others.values()) == 1
    assert {name for name, count in runs.items() if count > 1} <= held
    assert len({int(pid) for _, _, pid in lines(log)}) >= 3, "the local pool ran children too"


def test_an_idle_worker_stops_promptly_on_sigterm(env, workers, sql):
    env(ZART_WORKERS=0)
    worker = workers.start(2)
    until(lambda: sql("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                      "AND query LIKE 'LISTEN%%zart_work%%'"), what="the worker to listen")
    time.sleep(0.3)  # into its sleep on the work channel
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0, workers.output(worker)
    assert time.monotonic() - started < 1.0, "SIGTERM waited for the 2 s slow poll"
