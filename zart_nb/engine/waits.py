"""Durable waits: ``sleep``, ``sleep_until`` and ``wait_for_event``.

The wake time (or an event's deadline) is stored when the wait begins, so a body
executed again after a restart waits only for what is left. An event sent before the
body reaches its wait is kept in the events table and found at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import codec
from ..errors import EventTimeout, UsageError
from ..names import check_name
from ..store import events as events_db
from ..store.notify import listener
from .execution import Decision, Execution, body_execution, utcnow

POLL_SECONDS = 5.0
MAX_SECONDS = 100 * 365 * 86400.0  # a hundred years: anything longer is a mistake


def sleep(name: str, seconds: float) -> None:
    """Sleep ``seconds``, durably: after a restart only the remainder is slept."""
    seconds = _seconds(f"sleep {name!r}: seconds", seconds)
    ex = body_execution()
    if ex is None:
        time.sleep(seconds)
        return
    _sleep_until(ex, name, lambda: utcnow() + timedelta(seconds=seconds))


def sleep_until(name: str, when: datetime) -> None:
    """Sleep until ``when`` (an aware datetime, or naive UTC), durably."""
    if not isinstance(when, datetime):
        raise UsageError(f"sleep_until {name!r}: needs a datetime, not {type(when).__name__}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ex = body_execution()
    if ex is None:
        time.sleep(max(0.0, (when - utcnow()).total_seconds()))
        return
    _sleep_until(ex, name, lambda: when)


def wait_for_event(name: str, timeout: float | None = None) -> Any:
    """The payload of event ``name`` sent to this run (``send_event``), waiting for it.

    ``timeout`` (seconds) raises EventTimeout, which the body may catch.
    """
    if timeout is not None:
        timeout = _seconds(f"wait_for_event {name!r}: timeout", timeout)
    ex = body_execution()
    if ex is None:
        raise UsageError(f"wait_for_event({name!r}) only works inside a durable body")
    decision = _lookup(ex, name, "event")
    if decision.action == "replay":
        assert decision.entry is not None
        return ex.value(decision.entry)
    deadline = _resumed_until(decision)
    if deadline is None:
        deadline = None if timeout is None else utcnow() + timedelta(seconds=timeout)
        ex.start_wait(name, "event", decision.seq, deadline)
    notes = listener(ex.store)
    ex.set_status("waiting")
    try:
        while True:
            ex.check_live()
            token = notes.token(ex.run_id)
            with ex.lock:
                payload = events_db.payload(ex.conn, ex.run_id, name)
            if payload is not None:
                value = codec.decode(payload, what=f"event {name!r}")
                ex.complete(name, "event", decision.seq, value, code_fp=None, args_fp=None,
                            attempt=1, max_attempts=1, started_at=None)
                return value
            left = None if deadline is None else (deadline - utcnow()).total_seconds()
            if left is not None and left <= 0:
                error = EventTimeout(f"event {name!r} did not reach run {ex.run_id!r} "
                                     f"within its timeout")
                ex.fail(name, error, kind="framework", seq=decision.seq, attempt=1,
                        started_at=None)
                raise error
            notes.wait(ex.run_id, token, POLL_SECONDS if left is None else min(left, POLL_SECONDS))
    finally:
        ex.set_status("running")


def _seconds(what: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or not 0 <= value <= MAX_SECONDS):
        raise UsageError(f"{what} must be a number of seconds between 0 and {MAX_SECONDS:.0f} "
                         f"(a hundred years), not {value!r}")
    return float(value)


def _lookup(ex: Execution, name: str, what: str) -> Decision:
    return ex.lookup(check_name(f"a durable {what} name", name), what=what)


def _resumed_until(decision: Decision) -> datetime | None:
    """The wake time or deadline stored when this wait began in an earlier execution."""
    return decision.entry.not_before if decision.entry is not None else None


def _sleep_until(ex: Execution, name: str, wake_at: Callable[[], datetime]) -> None:
    decision = _lookup(ex, name, "sleep")
    if decision.action == "replay":
        return
    wake = _resumed_until(decision)
    if wake is None:
        wake = wake_at()
        ex.start_wait(name, "sleep", decision.seq, wake)
    ex.set_status("waiting")
    try:
        while (left := (wake - utcnow()).total_seconds()) > 0:
            ex.check_live()
            time.sleep(min(left, 1.0))
    finally:
        ex.set_status("running")
    ex.complete(name, "sleep", decision.seq, None, code_fp=None, args_fp=None, attempt=1,
                max_attempts=1, started_at=None)
