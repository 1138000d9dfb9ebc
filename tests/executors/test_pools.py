"""Children on local pools (``ProcessPoolExecutor``, loky, threads): results in order,
the same failures, retries, timeouts and three-way outcomes as with zart-nb's workers,
and pools that break."""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import loky
import pytest

from tests.fanout.helpers import lines, runs_per_child
from tests.helpers import execute
from zart_nb import StepFailed, StepTimedOut, UsageError, run

from . import bodies


def spawned_pool(n: int = 2) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))


@pytest.fixture
def executor(request):
    """``executor(kind)``: a pool of 2 of that kind, the bodies' executor; shut down after."""
    made = []

    def make(kind: str):
        pool = {"processes": spawned_pool, "threads": lambda: ThreadPoolExecutor(2),
                "loky": lambda: loky.get_reusable_executor(max_workers=2)}[kind]()
        made.append((kind, pool))
        bodies.EXECUTOR["executor"] = pool
        return pool

    yield make
    for kind, pool in made:
        if kind == "loky":  # a worker may still hold a child the body gave up on
            pool.shutdown(wait=True, kill_workers=True)
        else:
            pool.shutdown(wait=True)


@pytest.mark.parametrize("kind", ["processes", "loky", "threads"])
def test_children_run_on_the_pool_and_come_back_in_order(env, sql, executor, tmp_path, kind):
    env(ZART_WORKERS=0)
    executor(kind)
    log = tmp_path / "effects.log"
    outcome = execute(bodies.fan, (str(log), 20), name="fan", run_id="pool")

    assert outcome.value == [i * i for i in range(20)]
    assert sorted(name for name, _, _ in lines(log)) == sorted(f"record-{i}" for i in range(20))
    assert {attempt for _, attempt, _ in lines(log)} == {"1"}  # context() inside the child
    pids = {int(pid) for _, _, pid in lines(log)}
    assert (pids == {os.getpid()}) == (kind == "threads")  # a process pool ran them elsewhere
    rows = sql("SELECT status, worker, attempts FROM steps WHERE kind = 'child'")
    assert {(r["status"], r["attempts"]) for r in rows} == {("completed", 1)}
    assert all(r["worker"].startswith("executor:") for r in rows)


CASES = {  # the failing child: its name, how many times it runs, what wait() gives
    "plain": (bodies.refuse, "refuse-0", 1, ValueError),
    "retried": (bodies.retried_refuse, "retried-2", 3, StepFailed),
}


def check_attempts(sql, log, name: str, tries: int) -> None:
    """As tests/fanout/test_failures.py checks the PostgreSQL queue's."""
    assert sorted(int(a) for child, a, _ in lines(log) if child == name) == list(range(1, tries + 1))
    history = run("failing").attempts(name)
    assert [(a["attempt"], a["status"]) for a in history] == [(i, "failed") for i in
                                                              range(1, tries + 1)]
    assert all("ValueError: child 2 refuses" in a["error"] for a in history)
    row = sql("SELECT status, attempts, error, error_kind, traceback FROM steps WHERE name = %s",
              name)[0]
    assert row["status"] == "failed" and row["attempts"] == tries
    assert "ValueError: child 2 refuses" in row["traceback"] and "zart_nb" not in row["traceback"]
    assert row["error_kind"] == ("framework" if tries > 1 else "business")


@pytest.mark.parametrize("case", CASES)
def test_fail_fast_raises_the_failed_childs_error_naming_it(env, sql, executor, tmp_path, case):
    env(ZART_WORKERS=0)
    executor("loky")
    failing, name, tries, kind = CASES[case]
    log = tmp_path / "effects.log"
    with pytest.raises(kind) as info:
        execute(bodies.three, (str(log), failing), name="failing", run_id="failing")

    assert f"child step {name!r} of run 'failing'" in "\n".join(info.value.__notes__)
    if kind is StepFailed:
        assert info.value.reason == "retries_exhausted"
        assert isinstance(info.value.__cause__, ValueError)
    check_attempts(sql, log, name, tries)
    assert run("failing").status == "failed"


@pytest.mark.parametrize("case", CASES)
def test_return_exceptions_gives_the_error_in_place(env, sql, executor, tmp_path, case):
    env(ZART_WORKERS=0)
    executor("threads")
    failing, name, tries, kind = CASES[case]
    log = tmp_path / "effects.log"
    outcome = execute(bodies.three, (str(log), failing, True), name="failing", run_id="failing")

    first, error, third = outcome.value
    assert (first, third) == (1, 9) and type(error) is kind and "child 2 refuses" in str(error)
    check_attempts(sql, log, name, tries)
    assert run("failing").status == "completed"


def test_a_child_past_its_timeout_fails_as_timed_out_and_is_not_retried(env, sql, executor):
    env(ZART_WORKERS=0)
    executor("processes")
    outcome = execute(bodies.each, (bodies.sleepy, 2, 30), name="slow", run_id="slow")

    assert all(isinstance(e, StepTimedOut) and e.reason == "timed_out" for e in outcome.value)
    rows = sql("SELECT status, attempts, error_kind FROM steps WHERE kind = 'child'")
    assert {(r["status"], r["attempts"], r["error_kind"]) for r in rows} == {("failed", 1, "framework")}


def test_a_child_whose_worker_cannot_answer_is_failed_by_the_body(env, sql, executor):
    # hog holds its process's GIL in one C call: the worker's own timer cannot fire, and
    # the task cannot be stopped; the body fails it once its timeout and the lease passed
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=1)
    executor("loky")
    outcome = execute(bodies.each, (bodies.hog, 1), name="hog", run_id="hog")

    [error] = outcome.value
    assert isinstance(error, StepTimedOut) and "timed out after 0.3 s" in str(error)
    assert sql("SELECT status FROM steps WHERE kind = 'child'") == [{"status": "failed"}]


def test_an_unpicklable_result_fails_as_not_picklable(env, sql, executor):
    env(ZART_WORKERS=0)
    executor("threads")
    [error] = execute(bodies.each, (bodies.unpicklable, 1), name="lock", run_id="lock").value

    assert isinstance(error, StepFailed) and error.reason == "not_picklable"
    assert "cannot pickle" in str(error) and "unpicklable-0" in str(error)


def test_a_function_the_pool_cannot_import_fails_as_not_loadable(env, sql, executor):
    env(ZART_WORKERS=0)
    executor("processes")  # spawned: a module only this process has is not there
    module = types.ModuleType("only_here")
    exec("def double(i):\n    return 2 * i\n", module.__dict__)
    module.double.__module__ = "only_here"
    sys.modules["only_here"] = module
    try:
        [error] = execute(bodies.each, (module.double, 1), name="double", run_id="double").value
    finally:
        del sys.modules["only_here"]

    assert isinstance(error, StepFailed) and error.reason == "not_loadable"
    assert "No module named 'only_here'" in str(error) and "zart_nb.ship(module)" in str(error)


def test_a_broken_pool_of_the_user_stops_the_wait_and_loses_nothing(env, sql, executor, tmp_path):
    env(ZART_WORKERS=0)
    pool = executor("processes")
    pool.shutdown()
    log = tmp_path / "effects.log"
    with pytest.raises(UsageError, match=r"the executor \(ProcessPoolExecutor\) refused its "
                                         "children: RuntimeError: cannot schedule new futures"):
        execute(bodies.fan, (str(log), 5), name="fan", run_id="broken")
    rows = sql("SELECT status, attempts FROM steps WHERE kind = 'child'")
    assert {(r["status"], r["attempts"]) for r in rows} == {("scheduled", 0)}  # given back

    executor("threads")
    assert execute(bodies.fan, (str(log), 5), name="fan", run_id="broken").value == \
        [i * i for i in range(5)]
    assert set(runs_per_child(log).values()) == {1}


def test_a_pool_made_from_a_name_is_made_again_when_a_child_kills_its_process(env, sql, tmp_path):
    env(ZART_WORKERS=0)
    flag = tmp_path / "die-once"
    flag.touch()
    bodies.EXECUTOR["executor"] = "loky:2"
    outcome = execute(bodies.each, (bodies.die_once, 4, str(flag)), name="die", run_id="die")

    assert outcome.value == [0, 1, 2, 3] and not flag.exists()
    rows = {r["name"]: r for r in sql("SELECT name, status, attempts FROM steps")}
    assert rows["die_once-2"]["attempts"] == 2  # its attempt was lost with the process
    history = sql("SELECT name, error FROM step_attempts")
    assert "die_once-2" in {h["name"] for h in history}
    assert all("TerminatedWorkerError" in h["error"] or "BrokenProcessPool" in h["error"]
               for h in history), history


def test_a_child_that_always_kills_its_worker_fails_as_worker_lost(env, sql):
    env(ZART_WORKERS=0)
    bodies.EXECUTOR["executor"] = "loky:2"
    [error] = execute(bodies.each, (bodies.die_always, 1), name="die", run_id="die").value

    assert isinstance(error, StepFailed) and error.reason == "worker_lost"
    assert "worker lost 3 times" in str(error)  # 1 attempt + the 2 losses beyond it
    row = sql("SELECT status, attempts, error_kind FROM steps WHERE kind = 'child'")[0]
    assert (row["status"], row["attempts"], row["error_kind"]) == ("failed", 3, "framework")
    assert [a["attempt"] for a in run("die").attempts("die_always-0")] == [1, 2, 3]


def test_a_child_whose_holders_were_lost_too_often_fails_when_taken_over(env, sql, executor,
                                                                          tmp_path):
    env(ZART_WORKERS=0)
    log = str(tmp_path / "log")
    execute(bodies.schedule_only, (log,), name="orphan", run_id="orphan")
    # as if an earlier body of the run held it, and its holders were lost 3 times
    sql("UPDATE steps SET status = 'running', worker = 'executor:gone:1:x', attempts = 3, "
        "lease_until = now() + interval '1 hour' WHERE kind = 'child'")
    executor("threads")
    outcome = execute(bodies.wait_for_one, (log,), name="orphan", run_id="orphan",
                      replay_completed=True)

    assert isinstance(outcome.value, StepFailed) and outcome.value.reason == "worker_lost"
    assert "its holder went away 3 times" in str(outcome.value)
    assert not (tmp_path / "log").exists()  # not run again
