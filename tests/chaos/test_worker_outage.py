"""A worker through a restart of the PostgreSQL server: the same process goes on.

The server (one of the test's own) is stopped cleanly (``pg_ctl -m fast``) or crashed
(``-m immediate``: the next start recovers from the WAL), and started again:

- while the worker is idle: afterwards, that worker runs the children of a new fan-out;
- while it runs children: the ones that finished while the server was down are
  committed by that worker once it is back, and the run completes when executed again.
  No child is lost, none runs twice.

Either way the worker logs the outage once and its end once, naming the server. A
worker started while the server is down waits for it.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import until
from zart_nb.store import embedded

from .figures import record
from .helpers import (
    back_times,
    executions,
    finish,
    journal,
    log_records,
    own_env,
    spawn_body,
    wait_lines,
)
from .scripts.bodies import fan_expected

DOWN_SECONDS = 1.5


def restart_server(home, mode: str) -> tuple[str, float, float]:
    """Stop the server (``mode``), leave it down a moment, start it again: its URL, when
    it was stopped and when it was ready again (epoch seconds)."""
    stopped = time.time()
    assert embedded.stop(home, mode=mode)
    time.sleep(DOWN_SECONDS)
    url = embedded.server_url(home)
    return url, stopped, time.time()


def recovered_after(output: str, stopped: float, ready: float) -> float:
    """Seconds from the server ready again to the worker back on it (pg_ctl says it is
    ready a moment after it accepts connections: at least 0)."""
    back = [t for t in back_times(output) if t > stopped]
    assert back, output
    return round(max(0.0, back[0] - ready), 2)


def fan(home, url, run_id: str, log, children: int, child_ms: int, **popen):
    return spawn_body("fan", run_id, log, "--children", str(children), "--child-ms",
                      str(child_ms), env=own_env(home, url, ZART_LEASE_SECONDS="2"), **popen)


def outage_lines(output: str) -> tuple[list[str], list[str]]:
    lines = output.splitlines()
    return ([ln for ln in lines if "lost the database" in ln],
            [ln for ln in lines if "is back on the database" in ln])


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_an_idle_worker_works_again_after_a_server_restart(own_server, own_workers,
                                                            tmp_path, mode):
    home, url = own_server
    worker = own_workers.start(2)
    before = tmp_path / "before.log"
    assert finish(fan(home, url, "before", before, 10, 5))["result"] == fan_expected(10)
    assert {r[2] for r in log_records(before)} == {str(worker.pid)}

    url, stopped, ready = restart_server(home, mode)
    after = tmp_path / "after.log"
    assert finish(fan(home, url, "after", after, 10, 5))["result"] == fan_expected(10)

    assert worker.poll() is None, own_workers.output(worker)
    assert {r[2] for r in log_records(after)} == {str(worker.pid)}  # the same process
    output = own_workers.output(worker)
    lost, back = outage_lines(output)
    assert len(lost) == 1 and len(back) == 1, output
    assert str(home) in lost[0] and str(home) in back[0]  # the server, named
    record("outage", f"idle_{mode}", worker="idle", stop=f"pg_ctl -m {mode}",
           down_s=DOWN_SECONDS, children=10, executions=len(log_records(after)),
           re_executed=0, worker_back_after_s=recovered_after(output, stopped, ready),
           same_worker_process=True)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_children_finished_while_the_server_is_down_are_committed_once_back(
        own_server, own_workers, tmp_path, mode):
    home, url = own_server
    worker = own_workers.start(2)
    log = tmp_path / "effects.log"
    body = fan(home, url, "through", log, 12, 800)
    wait_lines(log, 2, body)  # two children started; each takes 0.8 s
    url, stopped, ready = restart_server(home, mode)  # they finish while it is down
    body.communicate(timeout=60)  # the body lost its connection: it failed (or finished)
    # the two results were kept, then committed by the worker once the server was back
    until(lambda: sum(r["status"] == "completed" for r in journal(url, "through")) >= 2, 30,
          "the children finished during the outage committed")

    resumed = finish(fan(home, url, "through", log, 12, 800))
    assert resumed["result"] == fan_expected(12)
    counts = executions(log_records(log))
    assert set(counts) == {f"f-{j}" for j in range(12)}
    assert set(counts.values()) == {1}, counts  # none lost, none run twice
    assert {r[2] for r in log_records(log)} == {str(worker.pid)}
    assert worker.poll() is None, own_workers.output(worker)
    rows = [r for r in journal(url, "through") if r["kind"] == "child"]
    assert {(r["status"], r["attempts"]) for r in rows} == {("completed", 1)}, rows
    output = own_workers.output(worker)
    lost, back = outage_lines(output)
    assert len(lost) == 1 and len(back) == 1, output
    record("outage", f"running_{mode}", worker="running children", stop=f"pg_ctl -m {mode}",
           down_s=DOWN_SECONDS, children=12, executions=sum(counts.values()),
           re_executed=sum(c > 1 for c in counts.values()),
           worker_back_after_s=recovered_after(output, stopped, ready),
           same_worker_process=True)


def test_a_worker_started_while_the_server_is_down_waits_for_it(own_server, own_workers,
                                                               tmp_path):
    home, url = own_server
    assert embedded.stop(home)
    worker = own_workers.start(2)
    until(lambda: "waiting for the database" in own_workers.output(worker), 60,
          "the worker waiting")
    time.sleep(DOWN_SECONDS)
    assert worker.poll() is None, own_workers.output(worker)
    url = embedded.server_url(home)
    log = tmp_path / "effects.log"
    assert finish(fan(home, url, "late", log, 10, 5))["result"] == fan_expected(10)
    assert {r[2] for r in log_records(log)} == {str(worker.pid)}
    output = own_workers.output(worker)
    assert output.count("waiting for the database") == 1, output
    assert output.count("reached the database") == 1, output
