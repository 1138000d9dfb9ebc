"""Async steps in async durable bodies: concurrency, commits that share round trips,
names, retries, timeouts by cancellation, three-way outcomes, and the mistakes that an
async body can make (a forgotten ``await``, an async step in a sync body)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.helpers import execute
from zart_nb import (
    DuplicateStepName,
    Err,
    Failed,
    Ok,
    RetryPolicy,
    StepFailed,
    StepTimedOut,
    StoreError,
    UsageError,
    context,
    durable,
    run,
    sleep,
    step,
)

# -- concurrency ---------------------------------------------------------------------------


def test_gathered_steps_run_concurrently_and_each_is_committed(zart_env, sql):
    spans: dict[int, tuple[float, float]] = {}

    @step("slow-{i}")
    async def slow(i):
        start = time.monotonic()
        await asyncio.sleep(0.3)
        spans[i] = (start, time.monotonic())
        return i

    @durable("overlap")
    async def body():
        return await asyncio.gather(*(slow(i) for i in range(10)))

    assert asyncio.run(body()) == list(range(10))
    # every step started before any of them ended: the ten 0.3 s steps overlapped
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())
    rows = sql("SELECT name, status FROM steps WHERE run_id = 'overlap' ORDER BY seq")
    assert [(r["name"], r["status"]) for r in rows] == [(f"slow-{i}", "completed")
                                                        for i in range(10)]


def test_steps_that_complete_together_are_committed_by_one_statement(zart_env, sql):
    @step("quick-{i}")
    async def quick(i):
        await asyncio.sleep(0.05)
        return i

    @durable("batched")
    async def body():
        return sum(await asyncio.gather(*(quick(i) for i in range(50))))

    assert asyncio.run(body()) == sum(range(50))
    # one statement is one transaction: the rows it wrote share their finished_at (now())
    statements = sql("SELECT count(DISTINCT finished_at) AS n FROM steps "
                     "WHERE run_id = 'batched'")[0]["n"]
    assert statements <= 5, f"50 steps that completed together took {statements} commits"


def test_names_come_from_templates_not_from_completion_order(zart_env, sql):
    @step("item-{i}")
    async def item(i):
        await asyncio.sleep(0.01 * (5 - i))  # the last called completes first
        return i

    @durable("order")
    async def body():
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(item(i)) for i in range(5)]
        named = await item.named("extra")(9)
        return [t.result() for t in tasks] + [named]

    assert asyncio.run(body()) == [0, 1, 2, 3, 4, 9]
    rows = sql("SELECT name, seq FROM steps WHERE run_id = 'order' ORDER BY seq")
    assert [r["name"] for r in rows] == [f"item-{i}" for i in range(5)] + ["extra"]
    finished = sql("SELECT name FROM steps WHERE run_id = 'order' AND name <> 'extra' "
                   "ORDER BY finished_at DESC, name DESC LIMIT 1")
    assert finished[0]["name"] == "item-0"  # completed last, yet named by its template


def test_a_duplicate_name_in_a_gather_is_the_clear_error_naming_both_calls(zart_env):
    @step("same")
    async def same(i):
        return i

    @durable("dup")
    async def body():
        return await asyncio.gather(same(1), same(2))

    with pytest.raises(DuplicateStepName, match=r"'same' is used twice .*test_async_steps.py:\d+.*"
                                                r"test_async_steps.py:\d+"):
        asyncio.run(body())
    assert run("dup").status == "failed"


def test_a_completed_async_run_replays_every_step_without_running_it(zart_env):
    calls = []

    @step("part-{i}")
    async def part(i):
        calls.append(i)
        return i * 2

    async def body():
        return sum(await asyncio.gather(*(part(i) for i in range(4))))

    first = execute(body, name="again", run_id="again")
    second = execute(body, name="again", run_id="again", replay_completed=True)

    assert first.value == second.value == 12
    assert sorted(calls) == [0, 1, 2, 3]
    assert sorted(second.report.replayed) == [f"part-{i}" for i in range(4)]
    assert second.report.executed == []


def test_a_sync_step_in_an_async_body_runs_inline(zart_env):
    @step
    def plain(x):
        return x + 1

    @step
    async def later(x):
        return x * 10

    @durable("mixed")
    async def body():
        return await later(plain(1))

    assert asyncio.run(body()) == 20
    assert [s["name"] for s in run("mixed").steps] == ["plain", "later"]


def test_context_inside_an_async_step(zart_env):
    seen = []

    @step("ctx-{i}")
    async def ctx(i):
        await asyncio.sleep(0)
        seen.append(context())

    @durable("ctx-run")
    async def body():
        await asyncio.gather(ctx(1), ctx(2))

    asyncio.run(body())
    assert sorted((c.run_id, c.step, c.attempt) for c in seen) == [
        ("ctx-run", "ctx-1", 1), ("ctx-run", "ctx-2", 1)]


# -- retries, timeouts, outcomes ---------------------------------------------------------------


def test_an_async_step_is_retried_without_blocking_the_loop(zart_env):
    attempts = []
    ticks = []

    @step(retry=RetryPolicy.fixed(2, delay=0.2))
    async def flaky():
        attempts.append(context().attempt)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    @durable("retried")
    async def body():
        ticking = asyncio.create_task(ticker())
        try:
            return await flaky()
        finally:
            ticking.cancel()

    assert asyncio.run(body()) == "ok"
    assert attempts == [1, 2, 3]
    assert len(ticks) >= 5, "the loop went on while the step waited for its retries"
    history = run("retried").attempts("flaky")
    assert [(a["attempt"], a["status"]) for a in history] == [(1, "failed"), (2, "failed")]


def test_an_async_step_that_fails_every_attempt_is_failed(zart_env):
    @step(retry=RetryPolicy.fixed(1, delay=0.0))
    async def down():
        raise ConnectionError("down")

    @durable("exhausted")
    async def body():
        return await down.outcome()

    outcome = asyncio.run(body())
    assert isinstance(outcome, Failed) and outcome.error.reason == "retries_exhausted"
    assert isinstance(outcome.error.__cause__, ConnectionError)


def test_a_timeout_cancels_the_coroutine_which_cleans_up(zart_env):
    cleaned = []

    @step(timeout=0.2)
    async def stuck():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            cleaned.append("finally")

    @durable("timed-out")
    async def body():
        return await stuck.outcome()

    started = time.monotonic()
    outcome = asyncio.run(body())
    assert time.monotonic() - started < 10  # not the 30 s of the step
    assert isinstance(outcome, Failed) and isinstance(outcome.error, StepTimedOut)
    assert cleaned == ["cancelled", "finally"]
    step_row = run("timed-out").steps[0]
    assert step_row["status"] == "failed" and "timed out after 0.2 s" in step_row["error"]


def test_a_business_error_is_err_and_its_handlers_apply(zart_env):
    class Declined(Exception):
        pass

    @step("charge-{amount}")
    async def charge(amount):
        raise Declined(f"card declined for {amount}")

    @durable("business")
    async def body():
        outcome = await charge.outcome(5)
        fallback = await charge.or_default("skipped")(6)
        handled = await charge.or_else(lambda error: type(error).__name__)(7)
        try:
            await charge(8)
        except Declined as exc:
            raised = str(exc)
        return outcome, fallback, handled, raised

    outcome, fallback, handled, raised = asyncio.run(body())
    assert isinstance(outcome, Err) and isinstance(outcome.error, Declined)
    assert (fallback, handled, raised) == ("skipped", "Declined", "card declined for 8")
    statuses = {s["name"]: (s["status"], s["error_kind"]) for s in run("business").steps}
    assert statuses["charge-5"] == ("failed", "business")


def test_an_async_step_outside_a_body_is_its_coroutine_function():
    @step("plain-{x}")
    async def plain(x):
        await asyncio.sleep(0)
        if x < 0:
            raise ValueError("negative")
        return x

    async def outside():
        return (await plain(2), await plain.outcome(3), await plain.or_default(0)(-1))

    value, outcome, fallback = asyncio.run(outside())
    assert (value, outcome, fallback) == (2, Ok(3), 0)


# -- mistakes ------------------------------------------------------------------------------------


def test_an_async_step_in_a_sync_body_is_a_clear_error(zart_env):
    @step
    async def fetch():
        return 1

    @durable("sync-body")
    def body():
        return fetch()

    with pytest.raises(UsageError, match="'fetch' is an async def: await it in an async durable body"):
        body()


def test_a_durable_call_never_awaited_is_named_when_the_body_ends(zart_env):
    done = []

    @step
    async def work():
        done.append(1)

    @durable("forgot")
    async def body():
        sleep("nap", 0.01)  # no await: nothing would sleep
        work()
        return "end"

    with pytest.raises(UsageError, match=r"never awaited sleep\('nap'\), step 'work'"):
        asyncio.run(body())
    assert done == []
    assert run("forgot").status == "failed"


def test_the_body_ending_cancels_the_steps_it_left_running(zart_env):
    ended = []

    @step
    async def forever():
        try:
            await asyncio.sleep(30)
        finally:
            ended.append("cleaned up")

    @durable("left-running")
    async def body():
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0.05)
        return "done"

    assert asyncio.run(body()) == "done"
    assert ended == ["cleaned up"]
    assert [s["name"] for s in run("left-running").steps] == []


def test_results_that_do_not_pickle_fail_the_step_not_the_batch(zart_env):
    @step("value-{i}")
    async def value(i):
        return threading.Lock() if i == 2 else i

    @durable("unpicklable")
    async def body():
        return await asyncio.gather(*(value.outcome(i) for i in range(4)))

    outcomes = asyncio.run(body())
    assert [type(o) for o in outcomes] == [Ok, Ok, Failed, Ok]
    assert isinstance(outcomes[2].error, StepFailed) and outcomes[2].error.reason == "not_picklable"
    statuses = {s["name"]: s["status"] for s in run("unpicklable").steps}
    assert statuses == {"value-0": "completed", "value-1": "completed", "value-2": "failed",
                        "value-3": "completed"}


def test_an_async_on_failure_handler_is_awaited(zart_env):
    @step
    async def broken():
        raise KeyError("missing")

    async def fallback(run_input, error):
        await asyncio.sleep(0)
        return {"input": run_input, "error": type(error).__name__}

    @durable("handled", on_failure=fallback)
    async def body(n):
        return await broken()

    assert asyncio.run(body(7)) == {"input": 7, "error": "KeyError"}
    assert run("handled").status == "completed"


def test_commits_of_a_body_that_lost_its_run_write_nothing(zart_env, sql):
    @step("late-{i}")
    async def late(i):
        await asyncio.sleep(0.2)
        return i

    @durable("taken-over")
    async def body():
        # another process takes the run over while the steps run (its lease had expired)
        sql("UPDATE runs SET owner = 'elsewhere:1:x' WHERE run_id = 'taken-over'")
        return await asyncio.gather(*(late(i) for i in range(5)))

    with pytest.raises(StoreError, match="no longer owned by this process"):
        asyncio.run(body())
    assert sql("SELECT count(*) AS n FROM steps WHERE run_id = 'taken-over'")[0]["n"] == 0
