"""The durable primitives awaited in async bodies: sleeps, events, captures and waits for
children (on the local pool and on external workers), none of them blocking the event
loop; cancelling and interrupting an async body."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import execute, until
from zart_nb import (
    RunFailed,
    StepTimedOut,
    capture,
    durable,
    now,
    run,
    schedule,
    send_event,
    sleep,
    sleep_until,
    step,
    wait,
    wait_for_event,
)

from . import children


async def ticking(ticks: list[float]) -> None:
    """Counts the turns of the event loop: it stops counting if anything blocks the loop."""
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.02)


def test_sleeps_and_captures_are_durable_in_an_async_body(zart_env):
    calls = []

    async def body():
        first = now("start")
        token = capture("token", lambda: calls.append(1) or "t-1")
        await sleep("nap", 0.2)
        await sleep_until("alarm", datetime.now(timezone.utc) + timedelta(seconds=0.1))
        return first, token

    one = execute(body, name="naps", run_id="naps")
    started = time.monotonic()
    again = execute(body, name="naps", run_id="naps", replay_completed=True)

    assert time.monotonic() - started < 0.2  # both sleeps replayed, not slept again
    assert one.value == again.value and calls == [1]
    assert again.report.replayed == ["start", "token", "nap", "alarm"]
    kinds = {s["name"]: (s["kind"], s["status"]) for s in run("naps").steps}
    assert kinds == {"start": ("capture", "completed"), "token": ("capture", "completed"),
                     "nap": ("sleep", "completed"), "alarm": ("sleep", "completed")}


def test_waiting_for_an_event_does_not_block_the_loop(zart_env):
    ticks: list[float] = []

    @durable("approval")
    async def body():
        ticker = asyncio.create_task(ticking(ticks))
        try:
            decision = await wait_for_event("approved", timeout=30)
        finally:
            ticker.cancel()
        return decision

    threading.Timer(0.6, send_event, args=("approval", "approved", {"by": "ann"})).start()
    assert asyncio.run(body()) == {"by": "ann"}
    assert len(ticks) >= 5, f"the loop turned {len(ticks)} times in 0.6 s of waiting"
    steps = run("approval").steps
    assert [(s["name"], s["kind"], s["status"]) for s in steps] == [("approved", "event", "completed")]


def test_concurrent_waits_keep_the_run_waiting_until_the_last_ends(zart_env, sql):
    def status() -> str:
        return sql("SELECT status FROM runs WHERE run_id = 'two-waits'")[0]["status"]

    @durable("two-waits")
    async def body():
        long = asyncio.ensure_future(sleep("long", 1.0))
        await sleep("short", 0.1)
        during = status()  # the short sleep ended, the long one goes on
        await long
        return during, status()

    assert asyncio.run(body()) == ("waiting", "running")


def test_async_children_on_the_local_pool(env, tmp_path):
    env(ZART_WORKERS=2)
    log = str(tmp_path / "children.log")
    ticks: list[float] = []

    @durable("local-kids")
    async def body():
        ticker = asyncio.create_task(ticking(ticks))
        handles = [schedule(children.square, log, i) for i in range(6)]
        try:
            return await wait(handles)
        finally:
            ticker.cancel()

    results = asyncio.run(body())
    assert [r[0] for r in results] == [i * i for i in range(6)]
    assert all(r[2] != "" for r in results)  # each ran inside an event loop of a worker
    assert len(ticks) >= 5  # the body's loop went on while it waited for the workers
    assert len(Path(log).read_text().splitlines()) == 6


def test_async_children_on_external_workers_reuse_the_thread_loop(env, workers, tmp_path):
    env(ZART_WORKERS=0)
    worker = workers.start(1)
    log = str(tmp_path / "children.log")

    @durable("external-kids")
    async def body():
        loops = await wait([schedule(children.loop_id, i) for i in range(4)])
        stuck = schedule(children.stuck, log)
        flaky = schedule(children.flaky, log)
        return loops, await wait([stuck, flaky], return_exceptions=True)

    loops, (timed_out, retried) = asyncio.run(body())
    assert {pid for pid, _ in loops} == {worker.pid}
    assert len({loop for _, loop in loops}) == 1, "one loop for the worker thread, reused"
    assert isinstance(timed_out, StepTimedOut)
    assert retried == "ok at attempt 2"
    assert until(lambda: "stuck cleaned up" in Path(log).read_text(), timeout=10,
                 what="the timed-out child's finally")  # cancelled: its finally ran
    statuses = {s["name"]: s["status"] for s in run("external-kids").steps}
    assert statuses["stuck-0"] == "failed" and statuses["flaky-0"] == "completed"


def test_a_cancelled_run_stops_its_awaiting_body(env):
    env(ZART_LEASE_SECONDS=2)

    @durable("cancel-me")
    async def body():
        await sleep("long", 30)

    threading.Timer(0.5, lambda: run("cancel-me").cancel()).start()
    started = time.monotonic()
    with pytest.raises(RunFailed, match="cancelled"):
        asyncio.run(body())
    assert time.monotonic() - started < 5


def test_an_interrupted_body_releases_its_run_and_resumes(zart_env):
    done = []

    @step("part-{i}")
    async def part(i):
        await asyncio.sleep(0.05 if i == 0 else 30)
        done.append(i)
        return i

    async def body():
        return [await part(0), await part(1)]

    async def interrupted():
        task = asyncio.ensure_future(execute_async_body(body))
        await asyncio.sleep(0.5)
        task.cancel()  # what a kernel does to a cell's coroutine on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    row = run("interrupted").row()
    assert row["status"] == "failed" and row["error"].startswith("interrupted: CancelledError")
    assert row["owner"] is None
    assert [s["name"] for s in run("interrupted").steps] == ["part-0"]

    async def quick_body():
        return [await part(0), 1]

    again = execute(quick_body, name="interrupted", run_id="interrupted")
    assert again.value == [0, 1] and again.report.replayed == ["part-0"]
    assert done == [0]


async def execute_async_body(body):
    from zart_nb.engine.execute import RunRequest, execute_async

    return await execute_async(RunRequest(body, "interrupted", "interrupted"))


def test_a_detached_async_body_runs_on_a_worker(env, workers, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(1)
    log = str(tmp_path / "children.log")

    @durable("detached-async")
    async def body(n):
        squares = await asyncio.gather(*(children.square(log, i) for i in range(n)))
        await sleep("settle", 0.05)
        return [s[0] for s in squares]

    handle = body.detach(3)
    assert handle.result(timeout=60) == [0, 1, 4]
    assert [s["name"] for s in handle.steps] == ["square-0", "square-1", "square-2", "settle"]


def test_concurrent_fan_outs_in_one_body_each_get_their_children(env, tmp_path):
    env(ZART_WORKERS=2)
    log = str(tmp_path / "children.log")

    async def fan_out(first):
        handles = []
        for i in range(first, first + 3):
            handles.append(schedule(children.square, log, i))
            await asyncio.sleep(0)  # the other fan-out schedules meanwhile
        return [r[0] for r in await wait(handles)]

    @durable("two-fan-outs")
    async def body():
        return await asyncio.gather(fan_out(0), fan_out(10))

    assert asyncio.run(body()) == [[0, 1, 4], [100, 121, 144]]
    assert len(Path(log).read_text().splitlines()) == 6
