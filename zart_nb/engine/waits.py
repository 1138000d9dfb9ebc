"""Durable waits: ``sleep``, ``sleep_until`` and ``wait_for_event``.

The wake time (or an event's deadline) is stored when the wait begins, so a body
executed again after a restart waits only for what is left. An event sent before the
body reaches its wait is kept in the events table and found at once.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import codec
from ..errors import EventTimeout, UsageError
from ..store import queries
from ..store.notify import listener
from .journal import Execution, current, in_step, utcnow

POLL_SECONDS = 5.0


def sleep(name: str, seconds: float) -> None:
    """Sleep ``seconds``, durably: after a restart only the remainder is slept."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise UsageError(f"sleep {name!r}: seconds must be a non-negative number, not {seconds!r}")
    ex = _body()
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
    ex = _body()
    if ex is None:
        time.sleep(max(0.0, (when - utcnow()).total_seconds()))
        return
    _sleep_until(ex, name, lambda: when)


def wait_for_event(name: str, timeout: float | None = None) -> Any:
    """The payload of event ``name`` sent to this run (``send_event``), waiting for it.

    ``timeout`` (seconds) raises EventTimeout, which the body may catch.
    """
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise UsageError(f"wait_for_event {name!r}: timeout must be a non-negative number")
    ex = _body()
    if ex is None:
        raise UsageError(f"wait_for_event({name!r}) only works inside a durable body")
    seq = _claim(ex, name)
    entry = ex.journal.get(name)
    if entry is not None and entry.status == "completed":
        ex.report.replayed.append(name)
        return ex.value(entry)
    if entry is not None and entry.not_before is not None:
        deadline = entry.not_before
    else:
        deadline = None if timeout is None else utcnow() + timedelta(seconds=timeout)
        _begin(ex, name, "event", seq, deadline)
    notes = listener(ex.store)
    ex.set_status("waiting")
    try:
        while True:
            ex.check_live()
            token = notes.token(ex.run_id)
            with ex.lock:
                row = queries.one(ex.conn, "get_event", run_id=ex.run_id, name=name)
            if row is not None:
                value = codec.decode(row["payload"], what=f"event {name!r}")
                ex.complete(name, "event", seq, value, code_fp=None, args_fp=None, attempt=1,
                            max_attempts=1, started_at=None)
                ex.report.executed.append(name)
                return value
            left = None if deadline is None else (deadline - utcnow()).total_seconds()
            if left is not None and left <= 0:
                error = EventTimeout(f"event {name!r} did not reach run {ex.run_id!r} "
                                     f"within its timeout")
                ex.fail(name, error, kind="framework", seq=seq, attempt=1, started_at=None)
                raise error
            notes.wait(ex.run_id, token, POLL_SECONDS if left is None else min(left, POLL_SECONDS))
    finally:
        ex.set_status("running")


def _body() -> Execution | None:
    ex = current()
    return None if ex is None or in_step() is not None else ex


def _claim(ex: Execution, name: str) -> int:
    if not isinstance(name, str) or not name:
        raise UsageError(f"a durable wait needs a non-empty name, not {name!r}")
    return ex.claim_name(name)


def _begin(ex: Execution, name: str, kind: str, seq: int, until: datetime | None) -> None:
    with ex.lock:
        queries.execute(ex.conn, "start_wait", run_id=ex.run_id, generation=ex.generation,
                        name=name, kind=kind, seq=seq, not_before=until, owner=ex.owner)


def _sleep_until(ex: Execution, name: str, wake_at) -> None:
    seq = _claim(ex, name)
    entry = ex.journal.get(name)
    if entry is not None and entry.status == "completed":
        ex.report.replayed.append(name)
        return
    if entry is not None and entry.not_before is not None:
        wake = entry.not_before
    else:
        wake = wake_at()
        _begin(ex, name, "sleep", seq, wake)
    ex.set_status("waiting")
    try:
        while (left := (wake - utcnow()).total_seconds()) > 0:
            ex.check_live()
            time.sleep(min(left, 1.0))
    finally:
        ex.set_status("running")
    ex.complete(name, "sleep", seq, None, code_fp=None, args_fp=None, attempt=1, max_attempts=1,
                started_at=None)
    ex.report.executed.append(name)
