"""Durable waits: ``sleep``, ``sleep_until`` and ``wait_for_event``.

The wake time (or an event's deadline) is stored when the wait begins, so a body
executed again after a restart waits only for what is left. An event sent before the
body reaches its wait is kept in the events table and found at once.

In an async body, on its event loop, each returns an awaitable (``await sleep(...)``):
the name is claimed at the call, the waiting happens when awaited, on ``asyncio.sleep``
and the LISTEN thread's futures. Sync and async share the logic (effects.py).
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
from .effects import Commit, Io, Notified, Pause, Steps, perform, waiting
from .execution import Decision, Execution, body_execution, utcnow
from .steps import stored

POLL_SECONDS = 5.0
MAX_SECONDS = 100 * 365 * 86400.0  # a hundred years: anything longer is a mistake


def sleep(name: str, seconds: float) -> Any:
    """Sleep ``seconds``, durably: after a restart only the remainder is slept (awaited
    in an async body)."""
    seconds = _seconds(f"sleep {name!r}: seconds", seconds)
    ex = body_execution()
    if ex is None:
        time.sleep(seconds)
        return None
    decision = _lookup(ex, name, "sleep")
    return perform(ex, _sleeping(ex, name, decision,
                                 lambda: utcnow() + timedelta(seconds=seconds)),
                   f"sleep({name!r})")


def sleep_until(name: str, when: datetime) -> Any:
    """Sleep until ``when`` (an aware datetime, or naive UTC), durably (awaited in an
    async body)."""
    if not isinstance(when, datetime):
        raise UsageError(f"sleep_until {name!r}: needs a datetime, not {type(when).__name__}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ex = body_execution()
    if ex is None:
        time.sleep(max(0.0, (when - utcnow()).total_seconds()))
        return None
    decision = _lookup(ex, name, "sleep")
    return perform(ex, _sleeping(ex, name, decision, lambda: when), f"sleep_until({name!r})")


def wait_for_event(name: str, timeout: float | None = None) -> Any:
    """The payload of event ``name`` sent to this run (``send_event``), waiting for it
    (awaited in an async body).

    ``timeout`` (seconds) raises EventTimeout, which the body may catch.
    """
    if timeout is not None:
        timeout = _seconds(f"wait_for_event {name!r}: timeout", timeout)
    ex = body_execution()
    if ex is None:
        raise UsageError(f"wait_for_event({name!r}) only works inside a durable body")
    decision = _lookup(ex, name, "event")
    return perform(ex, _awaiting_event(ex, name, decision, timeout), f"wait_for_event({name!r})")


def _awaiting_event(ex: Execution, name: str, decision: Decision,
                    timeout: float | None) -> Steps[Any]:
    if decision.action == "replay":
        assert decision.entry is not None
        return (yield from stored(ex, decision.entry))
    deadline = _resumed_until(decision)
    if deadline is None:
        deadline = None if timeout is None else utcnow() + timedelta(seconds=timeout)
        yield Io(ex.start_wait, name, "event", decision.seq, deadline)
    notes = yield Io(listener, ex.store)
    yield from waiting(ex, True)
    try:
        while True:
            ex.check_live()
            token = notes.token(ex.run_id)
            payload = yield Io(ex.read, events_db.payload, ex.run_id, name)
            if payload is not None:
                value = codec.decode(payload, what=f"event {name!r}")
                yield Commit(ex, ex.completion(name, "event", decision.seq, value, code_fp=None,
                                               args_fp=None, attempt=1, max_attempts=1,
                                               started_at=None))
                return value
            left = None if deadline is None else (deadline - utcnow()).total_seconds()
            if left is not None and left <= 0:
                error = EventTimeout(f"event {name!r} did not reach run {ex.run_id!r} "
                                     f"within its timeout")
                yield Io(ex.fail, name, error, kind="framework", seq=decision.seq, attempt=1,
                         started_at=None)
                raise error
            yield Notified(notes, ex.run_id, token,
                           POLL_SECONDS if left is None else min(left, POLL_SECONDS))
    finally:
        yield from waiting(ex, False)


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


def _sleeping(ex: Execution, name: str, decision: Decision,
              wake_at: Callable[[], datetime]) -> Steps[None]:
    if decision.action == "replay":
        return
    wake = _resumed_until(decision)
    if wake is None:
        wake = wake_at()
        yield Io(ex.start_wait, name, "sleep", decision.seq, wake)
    yield from waiting(ex, True)
    try:
        while (left := (wake - utcnow()).total_seconds()) > 0:
            ex.check_live()
            yield Pause(min(left, 1.0))
    finally:
        yield from waiting(ex, False)
    yield Commit(ex, ex.completion(name, "sleep", decision.seq, None, code_fp=None, args_fp=None,
                                   attempt=1, max_attempts=1, started_at=None))
