"""schedule/wait themselves: outside a body (the function runs at once), child names
(numbered calls, templates, call-site names, duplicates), bad arguments, a wide fan-out."""

from __future__ import annotations

import time

import pytest

from tests.helpers import execute
from zart_nb import DuplicateStepName, UsageError, schedule, step, wait

from .scripts import bodies


def square(x):
    return x * x


@step("check-{svc}")
def check(svc):
    return svc.upper()


def test_outside_a_body_schedule_runs_the_function_at_once():
    handle = schedule(square, 7)
    assert wait(handle) == 49
    assert wait([schedule(square, i) for i in range(4)]) == [0, 1, 4, 9]
    assert wait(schedule(check.named("anything"), "db")) == "DB"

    failed = schedule(bodies.refuse, "/dev/null", 3)
    with pytest.raises(ValueError, match="child 3 refuses"):
        wait(failed)
    ok, error = wait([schedule(square, 2), failed], return_exceptions=True)
    assert ok == 4 and isinstance(error, ValueError)


def test_wait_takes_handles_only():
    with pytest.raises(UsageError, match="takes handles returned by schedule"):
        wait([schedule(square, 1), 42])
    with pytest.raises(UsageError, match="needs a function"):
        schedule(42)


def named_children():
    handles = [schedule(square, i) for i in range(2)]  # square-0, square-1
    handles += [schedule(check, svc) for svc in ("db", "web")]  # check-db, check-web
    handles.append(schedule(check.named("the-cache"), "cache"))
    return wait(handles)


def test_child_names_are_deterministic(env, sql):
    env(ZART_WORKERS=1)
    assert execute(named_children, name="names", run_id="names").value == \
        [0, 1, "DB", "WEB", "CACHE"]
    rows = sql("SELECT name, seq FROM steps WHERE kind = 'child' ORDER BY seq")
    assert [r["name"] for r in rows] == ["square-0", "square-1", "check-db", "check-web",
                                         "the-cache"]


def twice_the_same_name():
    schedule(check, "db")
    schedule(check, "db")


def test_a_child_name_used_twice_is_an_error_naming_both_calls(env):
    env(ZART_WORKERS=0)
    with pytest.raises(DuplicateStepName) as info:
        execute(twice_the_same_name, name="dup", run_id="dup")
    message = str(info.value)
    assert "'check-db' is used twice" in message and message.count("test_basics.py:") == 2


def wide(n):
    return sum(wait([schedule(square, i) for i in range(n)]))


@pytest.mark.slow
def test_a_fan_out_of_ten_thousand_children(env, sql):
    env(ZART_WORKERS=2)
    n = 10_000
    started = time.monotonic()
    assert execute(wide, (n,), name="wide", run_id="wide").value == sum(i * i for i in range(n))
    assert time.monotonic() - started < 120
    assert sql("SELECT count(*) AS n FROM steps WHERE kind = 'child' AND status = 'completed'") == \
        [{"n": n}]


def slow_children(log, n, delay):
    return wait([schedule(bodies.record, log, i, delay) for i in range(n)])


def test_a_worker_runs_slow_children_back_to_back(env, tmp_path):
    env(ZART_WORKERS=1)  # one process, one slot: it must claim the next child at once
    n, delay = 6, 0.3
    execute(slow_children, (str(tmp_path / "warm.log"), 1, 0.0), name="warm", run_id="warm")
    started = time.monotonic()
    value = execute(slow_children, (str(tmp_path / "slow.log"), n, delay), name="slow",
                    run_id="slow").value
    elapsed = time.monotonic() - started
    assert value == [i * i for i in range(n)]
    assert elapsed < n * delay + 1.5, f"{n} children of {delay} s took {elapsed:.1f} s"
