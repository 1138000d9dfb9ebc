"""The Run API: status, steps, results, cancel, restart, rerun, retry_step, runs()."""

from __future__ import annotations

import threading
import time

import pytest

from zart_nb import (
    RunBusy,
    RunFailed,
    RunNotFound,
    UsageError,
    durable,
    run,
    runs,
    step,
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
    with pytest.warns(UserWarning, match="executed with other arguments"):
        assert body(5, run_id="args-1") == 4
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
