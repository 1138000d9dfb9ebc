"""Plain records of the engine: outcomes, retry policies, journal entries, reports."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ..errors import UsageError
from .fingerprint import comparable

T = TypeVar("T")


@dataclass(frozen=True)
class Ok(Generic[T]):
    """The step returned ``value``."""

    value: T


@dataclass(frozen=True)
class Err:
    """The step raised ``error``: its own (business) exception."""

    error: BaseException


@dataclass(frozen=True)
class Failed:
    """The framework failed the step: retries exhausted, timed out, worker lost, not picklable."""

    error: BaseException


Outcome = Ok | Err | Failed


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failing step is tried again.

    ``retries`` is the number of tries after the first (``retry=3``: up to 4 attempts).
    The delay before retry ``n`` (1-based) is ``delay`` for ``fixed``, and
    ``delay * factor ** (n - 1)`` capped at ``max_delay`` for ``exponential``; a random
    ``jitter`` fraction of it is added or removed so that failing siblings spread out.
    """

    retries: int = 0
    backoff: Literal["fixed", "exponential"] = "exponential"
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.retries < 0 or self.delay < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise UsageError(f"invalid retry policy {self}")
        if self.backoff not in ("fixed", "exponential"):
            raise UsageError(f"retry backoff must be 'fixed' or 'exponential', not {self.backoff!r}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @classmethod
    def fixed(cls, retries: int, delay: float = 1.0, jitter: float = 0.0) -> RetryPolicy:
        return cls(retries=retries, backoff="fixed", delay=delay, jitter=jitter)

    @classmethod
    def exponential(cls, retries: int, delay: float = 1.0, factor: float = 2.0,
                    max_delay: float = 60.0, jitter: float = 0.1) -> RetryPolicy:
        return cls(retries=retries, backoff="exponential", delay=delay, factor=factor,
                   max_delay=max_delay, jitter=jitter)

    @classmethod
    def coerce(cls, retry: int | RetryPolicy | None) -> RetryPolicy:
        if retry is None:
            return NO_RETRY
        if isinstance(retry, RetryPolicy):
            return retry
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise UsageError(f"retry must be a number of retries or a RetryPolicy, not {retry!r}")
        return cls.exponential(retry)

    def delay_before(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if self.backoff == "fixed":
            base = self.delay
        else:
            base = min(self.max_delay, self.delay * self.factor ** (retry - 1))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def to_json(self) -> dict:
        return {"retries": self.retries, "backoff": self.backoff, "delay": self.delay,
                "factor": self.factor, "max_delay": self.max_delay, "jitter": self.jitter}


NO_RETRY = RetryPolicy(retries=0)

OnChange = Literal["rerun", "error", "ignore"]
ON_CHANGE_POLICIES = ("rerun", "error", "ignore")


@dataclass
class Report:
    """What one execution of a body did with each step."""

    replayed: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # re-executed because code/args changed
    retried: list[str] = field(default_factory=list)  # failed before, executed again

    def summary(self) -> str:
        parts = [f"{len(self.replayed)} replayed", f"{len(self.executed)} executed"]
        if self.changed:
            parts.append(f"{len(self.changed)} re-executed because they changed "
                         f"({', '.join(self.changed[:5])}{', …' if len(self.changed) > 5 else ''})")
        return ", ".join(parts)


@dataclass
class Entry:
    """One step of the journal as loaded: the result stays pickled until asked for."""

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
    not_before: Any = None

    def change(self, code_fp: bytes, args_fp: bytes, *, inputs: str = "arguments") -> str | None:
        """What changed since this entry was recorded: "code", ``inputs``, or None.

        A fingerprint recorded by an older scheme cannot be compared with today's: it
        counts as unchanged, since a completed step never running again is the promise
        that matters most (docs/decisions.md).
        """
        if self.code_fp is not None and comparable(self.code_fp, code_fp) and self.code_fp != code_fp:
            return "code"
        if self.args_fp is not None and comparable(self.args_fp, args_fp) and self.args_fp != args_fp:
            return inputs
        return None

    @classmethod
    def from_row(cls, row: dict) -> Entry:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})
