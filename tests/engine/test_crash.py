"""A body killed with SIGKILL and executed again: completed steps exactly once, the step in
flight at most twice, the same result as an uninterrupted run; dead owners taken over."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.helpers import execute
from zart_nb import RunBusy, run

from .helpers import crash_body, executions, log_lines, spawn_crash_body, wait_for_line
from .scripts import crash_body as script

N = 5
ALL_STEPS = ["fetch"] + [f"process-{i}" for i in range(N)]


@pytest.fixture
def log(tmp_path):
    script.CONFIG.update(log=str(tmp_path / "effects.log"), die_in=None, die_after=None,
                         linger=0.0, step_sleep=0.0)
    return tmp_path / "effects.log"


def resume_here(run_id: str):
    """Execute the run again in this process (the script's module, same step code)."""
    return script.body.execute((N,), run_id=run_id)


def uninterrupted(tmp_path) -> list[str]:
    ref_log = tmp_path / "reference.log"
    done = crash_body("reference", ref_log, "--n", str(N), check=True)
    return json.loads(done.stdout)["result"]


@pytest.mark.parametrize(("kill", "in_flight"), [
    (("--die-in", "fetch", "--linger", "0.3"), "fetch"),
    (("--die-in", "process-2", "--linger", "0.3"), "process-2"),
    (("--die-after", "fetch"), None),
    (("--die-after", "process-2"), None),
    (("--die-after", f"process-{N - 1}"), None),  # every step done, the run not finished
])
def test_killed_body_resumes_with_each_completed_step_run_once(zart_env, log, tmp_path, kill,
                                                               in_flight):
    killed = crash_body("crash-1", log, "--n", str(N), *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    started = time.monotonic()
    outcome = resume_here("crash-1")
    assert time.monotonic() - started < 5, "a dead owner on this host is taken over at once"

    assert outcome.value == script.expected(N) == uninterrupted(tmp_path)
    counts = executions(log)
    for name in ALL_STEPS:
        assert counts[name] == (2 if name == in_flight else 1), (name, log_lines(log))
    if in_flight is not None:
        # the step was in flight for 0.3 s: its first attempt was noted, the second knows it
        assert f"{in_flight} attempt=1" in log_lines(log)
        assert f"{in_flight} attempt=2" in log_lines(log)
        assert in_flight in outcome.report.retried
    done_before = ALL_STEPS[:ALL_STEPS.index(in_flight or kill[1]) + (0 if in_flight else 1)]
    assert outcome.report.replayed == done_before
    assert run("crash-1").status == "completed"


def test_step_killed_at_once_runs_again_at_most_twice(zart_env, log):
    # killed within InflightWatch.GRACE of its start: its attempt may be under-counted
    # (documented), but it runs again, and no completed step does
    killed = crash_body("crash-2", log, "--n", str(N), "--die-in", "process-3")
    assert killed.returncode == -signal.SIGKILL

    outcome = resume_here("crash-2")

    assert outcome.value == script.expected(N)
    counts = executions(log)
    assert counts["process-3"] == 2
    assert all(counts[name] == 1 for name in ALL_STEPS if name != "process-3")
    assert outcome.report.replayed == ALL_STEPS[:4]


def test_killed_twice_then_resumed_in_a_fresh_process(zart_env, log):
    assert crash_body("crash-3", log, "--die-in", "process-1", "--linger", "0.3").returncode < 0
    assert crash_body("crash-3", log, "--die-in", "process-1", "--linger", "0.3").returncode < 0

    done = crash_body("crash-3", log, check=True)

    out = json.loads(done.stdout)
    assert out["result"] == script.expected(N)
    assert out["replayed"] == ["fetch", "process-0"]
    attempts = [line for line in log_lines(log) if line.startswith("process-1 ")]
    assert attempts == ["process-1 attempt=1", "process-1 attempt=2", "process-1 attempt=3"]
    assert executions(log)["fetch"] == 1


def test_owner_killed_from_outside_is_taken_over_at_once(zart_env, log):
    owner = spawn_crash_body("crash-4", log, "--step-sleep", "0.2")
    try:
        wait_for_line(log, "process-2 attempt=1")
    finally:
        owner.kill()
        owner.communicate()  # reaped: its pid is gone

    started = time.monotonic()
    outcome = resume_here("crash-4")

    assert time.monotonic() - started < 3
    assert outcome.value == script.expected(N)
    counts = executions(log)
    assert counts["fetch"] == counts["process-0"] == counts["process-1"] == 1
    assert counts["process-2"] <= 2
    assert all(counts[f"process-{i}"] == 1 for i in range(3, N))


def test_owner_on_another_host_is_taken_over_when_its_lease_expires(short_lease, log, sql):
    owner = spawn_crash_body("crash-5", log, "--step-sleep", "0.2")
    try:
        wait_for_line(log, "process-1 attempt=1")
    finally:
        owner.kill()
        owner.communicate()
    # as if the owner had run on another machine: its pid tells nothing here
    sql("UPDATE runs SET owner_host = 'elsewhere' WHERE run_id = 'crash-5'")

    started = time.monotonic()
    outcome = resume_here("crash-5")
    waited = time.monotonic() - started

    assert outcome.value == script.expected(N)
    assert 0.3 < waited < short_lease + 3
    assert executions(log)["process-0"] == 1


def test_two_processes_racing_on_one_run_execute_it_once(zart_env, log):
    racers = [spawn_crash_body("race", log, "--step-sleep", "0.1") for _ in range(2)]
    outs = []
    for proc in racers:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout))

    assert [o["result"] for o in outs] == [script.expected(N)] * 2
    assert sorted(o["attached"] for o in outs) == [False, True]
    assert executions(log) == dict.fromkeys(ALL_STEPS, 1)


def test_second_executor_attaches_or_gets_run_busy(zart_env, log):
    owner = spawn_crash_body("busy", log, "--step-sleep", "0.2")
    try:
        wait_for_line(log, "process-0 attempt=1")
        with pytest.raises(RunBusy, match="busy"):
            script.body.execute((N,), run_id="busy", wait=False)

        outcome = script.body.execute((N,), run_id="busy")
    finally:
        stdout, stderr = owner.communicate(timeout=60)

    assert owner.returncode == 0, stderr
    assert outcome.attached
    assert outcome.value == json.loads(stdout)["result"] == script.expected(N)
    assert executions(log) == dict.fromkeys(ALL_STEPS, 1)


def test_a_finished_run_returns_its_stored_result_without_running_the_body(zart_env, log):
    def boom(n):
        raise RuntimeError("the body broke")

    owner = spawn_crash_body("attach-fail", log, "--step-sleep", "0.2", "--n", "3")
    wait_for_line(log, "process-0 attempt=1")
    owner.communicate(timeout=60)
    # a later executor gets the stored result; its body (which would raise) never runs
    outcome = execute(boom, (3,), name="crash", run_id="attach-fail")
    assert outcome.attached and outcome.value == script.expected(3)
