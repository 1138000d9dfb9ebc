"""Events: delivered before or after the body waits, from any process; immutable once
sent; a clear error for a run that does not exist; a timeout the body can catch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import execute, until
from zart_nb import (
    EventAlreadySent,
    EventTimeout,
    RunNotFound,
    ZartError,
    send_event,
    wait_for_event,
)

from .helpers import InThread


def run_status(sql, run_id: str) -> str | None:
    rows = sql("SELECT status FROM runs WHERE run_id = %s", run_id)
    return rows[0]["status"] if rows else None


GATE = threading.Event()


def gated_wait():
    GATE.wait(20)  # the test sends the event meanwhile
    started = time.monotonic()
    return wait_for_event("go"), time.monotonic() - started


def test_an_event_sent_before_the_body_waits_is_kept(env, sql):
    GATE.clear()
    body = InThread(gated_wait, run_id="early")
    until(lambda: run_status(sql, "early") == "running", what="the run to start")
    send_event("early", "go", {"n": 1})
    GATE.set()
    payload, waited = body.result()
    assert payload == {"n": 1} and waited < 0.5


def await_go():
    return wait_for_event("go")


SEND = ("import sys, zart_nb; zart_nb.send_event(sys.argv[1], 'go', {'from': 'elsewhere'})")


def test_an_event_sent_from_another_process_wakes_the_waiting_body(env, sql):
    body = InThread(await_go, run_id="late")
    until(lambda: sql("SELECT 1 FROM steps WHERE run_id = 'late' AND name = 'go' "
                      "AND kind = 'event' AND status = 'running'"), what="the wait to begin")
    assert run_status(sql, "late") == "waiting"
    subprocess.run([sys.executable, "-c", SEND, "late"], check=True, env=os.environ.copy(),
                   timeout=60)
    sent = time.monotonic()
    assert body.result() == {"from": "elsewhere"}
    assert time.monotonic() - sent < 2.0, "woken by NOTIFY, not by the 5 s poll"

    with pytest.raises(EventAlreadySent, match=r"already sent to run 'late'.*immutable"):
        send_event("late", "go", {"from": "a second sender"})
    again = execute(await_go, name="await_go", run_id="late", replay_completed=True)
    assert again.value == {"from": "elsewhere"} and again.report.replayed == ["go"]


def test_an_event_to_a_run_that_does_not_exist_is_refused(env):
    with pytest.raises(RunNotFound) as info:
        send_event("no-such-run", "go", 1)
    assert str(info.value) == "cannot send event 'go': run 'no-such-run' does not exist"


def await_with_timeout(timeout):
    started = time.monotonic()
    try:
        return wait_for_event("never", timeout=timeout)
    except EventTimeout as error:
        return f"gave up after {time.monotonic() - started:.1f} s: {error}"


def test_a_timeout_raises_event_timeout_which_the_body_can_catch(env, sql):
    value = execute(await_with_timeout, (0.5,), name="patient", run_id="patient").value
    assert value == ("gave up after 0.5 s: event 'never' did not reach run 'patient' "
                     "within its timeout")
    assert issubclass(EventTimeout, ZartError)
    row = sql("SELECT status, error FROM steps WHERE run_id = 'patient' AND name = 'never'")[0]
    assert row["status"] == "failed" and row["error"].startswith("EventTimeout")
