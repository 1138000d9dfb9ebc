"""The Run API: status, steps, results, cancel, restart, rerun, retry_step, runs()."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from zart_nb import (
    RetryPolicy,
    RunBusy,
    RunFailed,
    RunNotFound,
    UsageError,
    capture,
    durable,
    run,
    runs,
    send_event,
    sleep,
    step,
    wait_for_event,
)


def counted_steps():
    calls: list[str] = []

    @step("part-{i}")
    def part(i):
        calls.append(f"part-{i}")
        return i * i

    return part, calls


def test_status_steps_and_results(zart_env):
    part, _ = counted_steps()

    @durable("api")
    def body(n):
        return [part(i) for i in range(n)]

    assert body(3, run_id="api-1") == [0, 1, 4]
    r = run("api-1")
    assert r.status == "completed" and r.generation == 1
    assert [s["name"] for s in r.steps] == ["part-0", "part-1", "part-2"]
    assert r.step_result("part-2") == 4
    assert r.result(timeout=1) == [0, 1, 4]
    with pytest.raises(UsageError, match="no step 'nope'"):
        r.step_result("nope")
    with pytest.raises(RunNotFound):
        run("missing")

    listed = runs()
    assert [(x["run_id"], x["status"], x["steps_done"]) for x in listed] == [("api-1", "completed", 3)]
    assert runs(status="failed") == []
    with pytest.raises(UsageError):
        runs(status="bogus")


def test_rerun_forgets_named_steps_and_keeps_the_rest(zart_env):
    part, calls = counted_steps()

    @durable("rerun")
    def body():
        return [part(i) for i in range(3)]

    body()
    assert run("rerun").rerun(["part-1"]) == ["part-1"]
    assert run("rerun").status == "pending"

    assert body() == [0, 1, 4]
    assert calls == ["part-0", "part-1", "part-2", "part-1"]
    assert body.last_report.replayed == ["part-0", "part-2"]
    superseded = run("rerun").attempts("part-1")
    assert [h["status"] for h in superseded] == ["superseded:completed"]
    with pytest.raises(UsageError, match="no step 'part-9'"):
        run("rerun").rerun("part-9")


def test_retry_step_runs_a_failed_step_again(zart_env):
    state = {"fail": True}
    part, calls = counted_steps()

    @step("fragile")
    def fragile():
        calls.append("fragile")
        if state["fail"]:
            raise RuntimeError("not yet")
        return "ok"

    @durable("retry-step")
    def body():
        return part(0), fragile.or_default("gave up")()

    assert body() == (0, "gave up")  # the body handled the failure: the run completed
    with pytest.raises(UsageError, match="only a failed step"):
        run("retry-step").retry_step("part-0")

    state["fail"] = False
    run("retry-step").retry_step("fragile")
    assert run("retry-step").status == "pending"
    assert body() == (0, "ok")
    assert calls == ["part-0", "fragile", "fragile"]
    assert body.last_report.replayed == ["part-0"]


def test_restart_starts_a_new_generation_and_keeps_the_old_one(zart_env, sql):
    part, calls = counted_steps()

    @durable("restart")
    def body():
        return [part(i) for i in range(2)]

    body()
    assert run("restart").restart() == 2
    assert body() == [0, 1]
    assert calls == ["part-0", "part-1"] * 2

    assert body(restart=True) == [0, 1]  # the same from the caller's side
    assert run("restart").generation == 3
    kept = sql("SELECT generation, count(*) AS n FROM steps GROUP BY generation ORDER BY 1")
    assert [(k["generation"], k["n"]) for k in kept] == [(1, 2), (2, 2), (3, 2)]


def test_cancel_stops_the_body_at_its_next_step(short_lease, sql):
    started = threading.Event()
    done: list[str] = []

    @step("tick-{i}")
    def tick(i):
        started.set()
        time.sleep(0.1)
        done.append(f"tick-{i}")
        return i

    @durable("cancel")
    def body():
        return [tick(i) for i in range(40)]

    canceller = threading.Thread(target=lambda: started.wait(10) and run("cancel").cancel())
    canceller.start()
    begun = time.monotonic()
    with pytest.raises(RunFailed, match="cancelled"):
        body()
    canceller.join()

    assert time.monotonic() - begun < short_lease  # noticed at the next heartbeat
    assert 1 <= len(done) < 40
    assert run("cancel").status == "cancelled"
    assert run("cancel").cancel() is False  # already ended
    with pytest.raises(RunFailed, match="cancelled; restart it"):
        body()

    run("cancel").restart()
    assert body() == list(range(40))


def test_a_cancel_just_before_the_body_ends_reads_as_a_cancel(zart_env):
    @step("last")
    def last():
        run("cancel-late").cancel()  # no heartbeat will see it before the body returns
        return 1

    @durable("cancel-late")
    def body():
        return last()

    with pytest.raises(RunFailed, match="cancelled"):
        body()
    assert run("cancel-late").status == "cancelled"


def test_restart_of_a_run_being_executed_is_refused(zart_env):
    seen = []

    @step("peek")
    def peek():
        with pytest.raises(RunBusy):
            run("busy-restart").restart()
        seen.append(True)
        return 1

    @durable("busy-restart")
    def body():
        return peek()

    assert body() == 1 and seen == [True]


def test_a_cancel_takes_effect_at_the_next_step_commit_not_the_next_heartbeat(zart_env):
    done: list[int] = []

    @step("cut-{i}")
    def cut(i):
        if i == 2:
            run("cancel-commit").cancel()  # the default lease: no heartbeat for 10 s
        done.append(i)
        return i

    @durable("cancel-commit")
    def body():
        return [cut(i) for i in range(10)]

    begun = time.monotonic()
    with pytest.raises(RunFailed, match="cancelled"):
        body()

    assert time.monotonic() - begun < 5
    assert done == [0, 1, 2]  # step 2's result was not committed; nothing ran after it
    assert [s["name"] for s in run("cancel-commit").steps] == ["cut-0", "cut-1"]


def test_a_completed_run_called_with_other_arguments_warns_and_returns_its_result(zart_env):
    @durable("args")
    def body(x):
        return x * 2

    assert body(2, run_id="args-1") == 4
    with pytest.warns(UserWarning, match="executed with other arguments") as warned:
        assert body(5, run_id="args-1") == 4
    assert warned[0].filename == __file__  # the user's line, not one of zart_nb's
    assert body(5, run_id="args-1", restart=True) == 10


def test_the_body_is_stored_only_when_a_worker_may_need_it(zart_env, sql):
    big = list(range(100_000))  # a global the body reads: it would pickle along with it

    @durable("no-body")
    def body():
        return len(big)

    assert body() == 100_000
    assert sql("SELECT body IS NULL AS empty FROM runs WHERE run_id = 'no-body'") == [{"empty": True}]

    body.detach(run_id="with-body")
    assert sql("SELECT body IS NOT NULL AS kept FROM runs WHERE run_id = 'with-body'") == [{"kept": True}]


def test_a_rerun_naming_an_unknown_step_changes_nothing(zart_env, sql):
    part, calls = counted_steps()

    @durable("atomic-rerun")
    def body():
        return [part(i) for i in range(3)]

    assert body() == [0, 1, 4]
    before = sql("SELECT name, status, result FROM steps ORDER BY name")
    with pytest.raises(UsageError, match="no step 'part-9'; nothing was changed"):
        run("atomic-rerun").rerun(["part-0", "part-9", "part-2"])
    assert sql("SELECT name, status, result FROM steps ORDER BY name") == before
    assert sql("SELECT count(*) AS n FROM step_attempts")[0]["n"] == 0
    assert run("atomic-rerun").status == "completed"
    # the next execution returns the stored result, and no step ran again
    assert body() == [0, 1, 4] and calls == ["part-0", "part-1", "part-2"]


def test_rerun_and_retry_step_are_refused_while_the_run_is_executed(zart_env, sql):
    seen = []

    @step("peek")
    def peek():
        for change in (lambda: run("busy-ops").rerun(["first"]),
                       lambda: run("busy-ops").retry_step("first")):
            with pytest.raises(RunBusy, match="being executed"):
                change()
        seen.append(True)
        return 2

    @step("first")
    def first():
        return 1

    @durable("busy-ops")
    def body():
        return first() + peek()

    assert body() == 3 and seen == [True]
    assert [s["name"] for s in run("busy-ops").steps] == ["first", "peek"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: run(123), "run id must be a non-empty string, not 123"),
    (lambda: run(""), "run id must be a non-empty string"),
    (lambda: runs(limit=-1), "runs(limit=...) must be a whole number from 1"),
    (lambda: runs(limit="10"), "runs(limit=...) must be a whole number from 1"),
    (lambda: runs(status="done"), "unknown run status 'done'"),
    (lambda: RetryPolicy(factor=-1), "RetryPolicy: factor must be a finite number >= 1"),
    (lambda: RetryPolicy(retries=2.5), "RetryPolicy: retries must be a whole number"),
    (lambda: RetryPolicy(delay=float("nan")), "RetryPolicy: delay must be a finite number"),
    (lambda: RetryPolicy(jitter=2), "RetryPolicy: jitter must be a fraction"),
    (lambda: sleep("x", 1e20), "sleep 'x': seconds must be a number of seconds between 0"),
    (lambda: sleep("x", -1), "sleep 'x': seconds must be a number of seconds between 0"),
    (lambda: sleep("x", "5"), "sleep 'x': seconds must be a number of seconds between 0"),
    (lambda: wait_for_event("e", timeout=float("inf")), "timeout must be a number of seconds"),
    (lambda: step(timeout=0)(len), "timeout must be a positive number of seconds"),
    (lambda: step(timeout=True)(len), "timeout must be a positive number of seconds"),
    (lambda: step(retry=-1)(len), "retry must be a number of retries"),
    (lambda: step(""), "@step name must be a non-empty string"),
    (lambda: durable("x", on_change="sometimes"), "on_change must be one of rerun, error, ignore"),
    (lambda: durable("x", on_failure="fallback"), "on_failure must be a function"),
    (lambda: durable("x", namespace=""), "namespace must be a non-empty string"),
    (lambda: capture("c", 42), "capture('c', fn) needs a function to call"),
    (lambda: send_event("r", ""), "event name must be a non-empty string"),
])
def test_bad_arguments_of_the_public_api_are_one_clear_line(zart_env, call, message):
    with pytest.raises(UsageError) as caught:
        call()
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_run_methods_take_one_pool_connection_at_a_time(zart_env, monkeypatch):
    part, _ = counted_steps()

    @durable("one-conn")
    def body():
        return [part(i) for i in range(2)]

    body()
    r = run("one-conn")
    store = r.store
    held = []
    most = []
    original = store.connection

    @contextlib.contextmanager
    def counting():
        held.append(1)
        most.append(len(held))
        try:
            with original() as conn:
                yield conn
        finally:
            held.pop()

    monkeypatch.setattr(store, "connection", counting)
    r.steps, r.attempts("part-0"), r.row(), r.generation, r.step_result("part-1"), r.status
    r.rerun(["part-0"])
    assert most and max(most) == 1


def test_a_user_exception_is_not_changed_by_storing_it(zart_env):
    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("not today")

    cause = Unpicklable("inner")
    error = ValueError("outer")
    error.__cause__ = cause

    @step("fails")
    def fails():
        raise error

    @durable("keeps-cause")
    def body():
        return fails()

    with pytest.raises(ValueError, match="outer") as caught:
        body()
    assert caught.value is error and error.__cause__ is cause
    with pytest.raises(ValueError, match="outer"):  # stored without the cause, replayed
        run("keeps-cause").step_result("fails")
