"""A worker frozen past its lease (SIGSTOP: a stalled machine, a long pause) and resumed,
with a child in the middle of running: its lease ran out, and another worker's
heartbeat put the child back in the queue.

- Another worker claimed the child meanwhile: the frozen worker's result, when it comes,
  is not written over that attempt; the child's result is written once, by the worker
  that holds it.
- Nobody claimed it (the other worker serves another namespace): the frozen worker's
  result is committed when it resumes; the child ran once.

PostgreSQL counts every write of a child's result (a trigger), and the child's side
effects are counted in a log.
"""

from __future__ import annotations

import signal
from collections import Counter

from tests.helpers import until
from zart_nb import schedule, wait

from .helpers import InThread, lines
from .scripts import bodies
from .test_workers import COUNT_COMPLETIONS, pid_of


def one_slow_child(log):
    return wait(schedule(bodies.record, log, 3, 1.5))


def freeze_past_the_lease(sql, workers, log):
    """A worker running the child, frozen until its lease has run out."""
    frozen = workers.start(1)
    until(lambda: len(lines(log)) == 1, 30, "the child started")
    frozen.send_signal(signal.SIGSTOP)
    until(lambda: sql("SELECT lease_until < now() AS over FROM steps WHERE kind = 'child'")[0]
          ["over"], 30, "the frozen worker's lease over")
    return frozen


def setup(env, sql):
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=1)
    for statement in COUNT_COMPLETIONS:
        sql(statement)


def test_a_result_that_comes_too_late_is_not_written_over_another_workers_attempt(
        env, sql, workers, tmp_path):
    setup(env, sql)
    log = tmp_path / "effects.log"
    body = InThread(one_slow_child, str(log), run_id="frozen")
    frozen = freeze_past_the_lease(sql, workers, log)
    other = workers.start(1)  # requeues the child and claims it: attempt 2
    until(lambda: len(lines(log)) == 2, 30, "the other worker running the child")
    frozen.send_signal(signal.SIGCONT)  # its attempt 1 ends while the other runs attempt 2

    assert body.result(60) == 9
    ran = [(attempt, int(pid)) for _, attempt, pid in lines(log)]
    assert ran == [("1", frozen.pid), ("2", other.pid)]
    writes = sql("SELECT name, worker, attempts FROM completions")
    assert [(pid_of(w["worker"]), w["attempts"]) for w in writes] == [(other.pid, 2)]
    assert frozen.poll() is None, workers.output(frozen)


def test_a_result_that_comes_late_is_committed_when_nobody_else_took_the_child(
        env, sql, workers, tmp_path):
    setup(env, sql)
    log = tmp_path / "effects.log"
    body = InThread(one_slow_child, str(log), run_id="frozen")
    frozen = freeze_past_the_lease(sql, workers, log)
    workers.start(1, "--namespace", "elsewhere")  # requeues the child, never claims it
    until(lambda: sql("SELECT status FROM steps WHERE kind = 'child'")[0]["status"]
          == "scheduled", 30, "the child requeued")
    frozen.send_signal(signal.SIGCONT)

    assert body.result(60) == 9
    assert Counter(name for name, _, _ in lines(log)) == {"record-0": 1}  # ran once
    writes = sql("SELECT worker FROM completions")
    assert [pid_of(w["worker"]) for w in writes] == [frozen.pid]
    assert frozen.poll() is None, workers.output(frozen)
