"""The rows of zart-nb's tables as the store hands them out: frozen records.

Each record lists the columns of the query that makes it, by name (psycopg builds it
from the column names); ``JournalEntry`` is a NamedTuple built by position, because a
journal of 100,000 steps is loaded on every replay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple


class JournalEntry(NamedTuple):
    """One step of a run's journal as loaded: its result stays pickled until asked for."""

    name: str
    kind: str
    status: str
    seq: int | None
    code_fp: bytes | None
    args_fp: bytes | None
    result: bytes | None
    result_hash: bytes | None
    error: str | None
    error_kind: str | None
    error_payload: bytes | None
    traceback: str | None
    attempts: int
    not_before: datetime | None


class Placed(NamedTuple):
    """An encoded value placed for a row: ``inline`` bytes, or ``hash`` plus the ``data``
    to insert into payloads (ON CONFLICT DO NOTHING: identical content is stored once),
    or ``hash`` alone: a large result's manifest, stored already. ``size``: bytes of the
    value's pickle."""

    inline: bytes | None
    hash: bytes | None
    data: bytes | None
    size: int


@dataclass(frozen=True, slots=True)
class Owner:
    """Who executes which generation of a run: every journal write is fenced by it."""

    run_id: str
    generation: int
    owner: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this process now owns."""

    generation: int
    options: dict[str, Any]
    created: bool  # the claim created the run


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as stored, without its body."""

    run_id: str
    name: str
    namespace: str
    status: str
    generation: int
    input: bytes | None
    options: dict[str, Any]
    result: bytes | None
    result_hash: bytes | None
    error: str | None
    error_payload: bytes | None
    owner: str | None
    owner_host: str | None
    owner_pid: int | None
    lease_expired: bool | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run as listed: its counts of steps in the current generation."""

    run_id: str
    name: str
    status: str
    generation: int
    owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    steps_total: int
    steps_done: int
    steps_failed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StoredBody:
    """What a run keeps to be executed elsewhere: the pickled body, its source, options."""

    run_id: str
    name: str
    namespace: str
    status: str
    generation: int
    body: bytes | None
    body_source: str | None
    input: bytes | None
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step's stored outcome."""

    name: str
    kind: str
    status: str
    result: bytes | None
    result_hash: bytes | None
    error: str | None
    error_kind: str | None
    error_payload: bytes | None
    traceback: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class StepSummary:
    """A step as listed (``Run.steps``, ``zart-nb runs show``)."""

    name: str
    kind: str
    status: str
    seq: int | None
    attempts: int
    max_attempts: int
    error: str | None
    error_kind: str | None
    traceback: str | None
    worker: str | None
    result_size: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    out_of_line: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt that did not end its step: retried, failed, or superseded by a rerun."""

    name: str
    attempt: int
    status: str
    error: str | None
    worker: str | None
    started_at: datetime | None
    finished_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NewChild:
    """A child to queue (``schedule``)."""

    name: str
    seq: int
    code_fp: bytes
    args_fp: bytes
    task: bytes
    max_attempts: int
    retry: str  # the retry policy, as JSON
    timeout_s: float | None


@dataclass(frozen=True, slots=True)
class ChildTask:
    """A child a worker claimed: ``attempts`` counts this attempt; the fingerprints say
    which version of the child it is (a body executed again may queue another)."""

    run_id: str
    generation: int
    name: str
    task: bytes
    attempts: int
    max_attempts: int
    retry: dict[str, Any] | None
    timeout_s: float | None
    code_fp: bytes | None
    args_fp: bytes | None


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """A finished child, as its waiting body reads it."""

    name: str
    status: str
    attempts: int
    result: bytes | None
    result_hash: bytes | None
    error: str | None
    error_kind: str | None
    error_payload: bytes | None


@dataclass(frozen=True, slots=True)
class ChildResult:
    """A worker's successful child, to commit for the attempt ``claimed``."""

    claimed: ChildTask
    value: Placed  # the encoded result, placed


@dataclass(frozen=True, slots=True)
class ChildFailure:
    """A worker's failed child: retried after ``retry_at``, or failed for good (None)."""

    claimed: ChildTask
    error: str
    error_kind: str
    error_payload: bytes
    traceback: str
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class StepFailure:
    """A step of the body that failed for good."""

    name: str
    kind: str
    seq: int | None
    attempt: int
    error: str
    error_kind: str
    error_payload: bytes
    traceback: str
    started_at: datetime | None
    code_fp: bytes | None
    args_fp: bytes | None


@dataclass(frozen=True, slots=True)
class ProgressRow:
    """A run and its children, one character each, as a progress display reads them."""

    run_id: str
    name: str
    status: str
    generation: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    db_now: datetime
    states: str
    failed: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ChildDetail:
    """The child at a position of the progress grid, for the widget's detail panel."""

    name: str
    status: str
    attempts: int
    max_attempts: int
    error: str | None
    error_kind: str | None
    traceback: str | None
    worker: str | None
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GcCounts:
    runs: int
    steps: int
    payloads: int


@dataclass(frozen=True, slots=True)
class GcPreview:
    runs: int
    steps: int
    payloads: int
    chunks: int
