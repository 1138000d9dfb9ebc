"""What one attempt of a child comes to, the same wherever it ran: in a zart-nb worker
(the PostgreSQL queue) or on an executor driven by the waiting body.

A child that raised is tried again after its retry policy's delay while it has attempts
left; then it fails for good, as its own (business) error when it had no retries, as
``StepFailed(reason="retries_exhausted")`` carrying the last error when it had some. A
child whose holder was lost (a worker that died, a lease that expired) is tried again at
once, its attempt counted, until it was lost ``LOST_BEYOND`` times beyond its attempts:
then it fails with ``reason="worker_lost"`` (``requeue_expired_children`` applies the same
rule in SQL). A waiting body reads a finished child's outcome with ``outcome_of``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import codec
from ..errors import PayloadError, StepFailed, StepTimedOut
from ..store.records import ChildFailure, ChildOutcome, ChildTask
from .execution import Execution, encode_error, one_line, utcnow
from .model import Err, Ok, Outcome, RetryPolicy

LOST_BEYOND = 2  # losses allowed beyond a child's attempts (as in requeue_expired_children)


@dataclass(frozen=True)
class Verdict:
    """A failed attempt: tried again at ``retry_at``, or failed for good (None)."""

    error: BaseException
    kind: str = "business"  # or "framework"
    cause: BaseException | None = None  # whose traceback is stored (the last error)
    retry_at: datetime | None = None


def after_error(task: ChildTask, exc: BaseException) -> Verdict:
    """The child's function raised ``exc`` on attempt ``task.attempts``."""
    policy = RetryPolicy(**task.retry) if task.retry else RetryPolicy()
    attempt, name = task.attempts, task.name
    if attempt < task.max_attempts:
        delay = policy.delay_before(max(1, attempt - task.max_attempts + policy.max_attempts))
        return Verdict(exc, retry_at=utcnow() + timedelta(seconds=delay))
    if policy.retries:
        error = StepFailed(f"child {name!r} failed after {attempt} attempts; last: "
                           f"{one_line(exc)}", step=name, reason="retries_exhausted")
        error.__cause__ = exc
        return Verdict(error, "framework", cause=exc)
    return Verdict(exc)


def after_loss(task: ChildTask, exc: BaseException) -> Verdict:
    """The attempt was lost with its holder (``exc`` says how): tried again at once, or
    failed once it was lost too often (a child that kills its worker must not loop)."""
    if task.attempts < task.max_attempts + LOST_BEYOND:
        return Verdict(exc, "framework", retry_at=utcnow())
    error = StepFailed(f"child {task.name!r}: worker lost {task.attempts} times; last: "
                       f"{one_line(exc)}", step=task.name, reason="worker_lost")
    return Verdict(error, "framework")


def framework(name: str, message: str, reason: str) -> Verdict:
    """A failure for good that retrying would not cure (not loadable, not picklable)."""
    return Verdict(StepFailed(message, step=name, reason=reason), "framework")


def timed_out(name: str, seconds: float | None) -> Verdict:
    """The child passed its timeout: failed for good (timeouts are not retried)."""
    return Verdict(StepTimedOut(f"child {name!r} timed out after {seconds or 0:g} s", step=name,
                                reason="timed_out"), "framework")


def record(task: ChildTask, verdict: Verdict, traceback: str) -> ChildFailure:
    """The row ``queue.fail`` writes for ``verdict`` (``traceback``: the user's frames)."""
    return ChildFailure(claimed=task, error=one_line(verdict.error), error_kind=verdict.kind,
                        error_payload=encode_error(verdict.error), traceback=traceback,
                        retry_at=verdict.retry_at)


def outcome_of(ex: Execution, row: ChildOutcome) -> Outcome:
    """The outcome of a finished child as its waiting body reads it from its row."""
    name = row.name
    if row.status == "completed":
        return Ok(ex.stored_value(row.result, row.result_hash, f"result of child {name!r}"))
    if row.error_payload is not None:
        try:
            return Err(codec.decode(row.error_payload, what=f"error of child {name!r}"))
        except PayloadError as exc:
            return Err(exc)
    return Err(StepFailed(f"child {name!r}: {row.error or 'failed'}", step=name,
                          reason="worker_lost"))
