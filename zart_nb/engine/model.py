"""Plain records of the engine: outcomes, retry policies, journal entries, reports."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ..errors import UsageError

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


Outcome = Ok[Any] | Err | Failed


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
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise UsageError(f"RetryPolicy: retries must be a whole number >= 0, not {self.retries!r}")
        for field_name, low in (("delay", 0.0), ("factor", 1.0), ("max_delay", 0.0)):
            value = getattr(self, field_name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < low):
                raise UsageError(f"RetryPolicy: {field_name} must be a finite number >= {low:g}, "
                                 f"not {value!r}")
        if (isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float))
                or not 0 <= self.jitter <= 1):
            raise UsageError(f"RetryPolicy: jitter must be a fraction between 0 and 1, not "
                             f"{self.jitter!r}")
        if self.backoff not in ("fixed", "exponential"):
            raise UsageError(f"RetryPolicy: backoff must be 'fixed' or 'exponential', not "
                             f"{self.backoff!r}")

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
            try:
                grown = self.delay * self.factor ** (retry - 1)
            except OverflowError:  # a long retry budget: the cap applies long before
                grown = math.inf
            base = min(self.max_delay, grown)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def to_json(self) -> dict[str, Any]:
        return {"retries": self.retries, "backoff": self.backoff, "delay": self.delay,
                "factor": self.factor, "max_delay": self.max_delay, "jitter": self.jitter}


NO_RETRY = RetryPolicy(retries=0)

OnChange = Literal["rerun", "error", "ignore"]
ON_CHANGE_POLICIES: tuple[OnChange, ...] = ("rerun", "error", "ignore")
TERMINAL_STATUSES = ("completed", "failed", "cancelled")
RUN_STATUSES = ("pending", "running", "waiting", *TERMINAL_STATUSES)


@dataclass(frozen=True)
class Options:
    """How a run is executed: ``on_change`` (a completed step whose code or arguments
    changed: ``rerun``, ``error``, ``ignore``), ``durability`` (``sync``: commits wait for
    the WAL flush; ``async``: they survive a crash of the process, not of the server), and
    the worker ``namespace`` its children are queued under (None: the settings')."""

    on_change: OnChange = "rerun"
    durability: Literal["sync", "async"] = "sync"
    namespace: str | None = None

    def __post_init__(self) -> None:
        if self.on_change not in ON_CHANGE_POLICIES:
            raise UsageError(f"on_change must be one of {', '.join(ON_CHANGE_POLICIES)}, "
                             f"not {self.on_change!r}")
        if self.durability not in ("sync", "async"):
            raise UsageError(f"durability must be 'sync' or 'async', not {self.durability!r}")
        if self.namespace is not None and (not isinstance(self.namespace, str)
                                           or not self.namespace.strip()):
            raise UsageError(f"namespace must be a non-empty string, not {self.namespace!r}")

    def stored(self) -> dict[str, str]:
        """What the run row keeps of them (workers executing a detached run read it)."""
        return {"on_change": self.on_change, "durability": self.durability}

    @classmethod
    def from_stored(cls, stored: dict[str, Any], namespace: str) -> Options:
        return cls(on_change=stored.get("on_change", "rerun"),
                   durability=stored.get("durability", "sync"), namespace=namespace)


@dataclass(frozen=True)
class StepContext:
    """What ``context()`` returns: where the calling code runs."""

    run_id: str | None
    durable_name: str | None
    step: str | None
    attempt: int


@dataclass
class Report:
    """What one execution of a body did with each step: ``executed`` holds every step
    that ran (``retried`` ones too), ``changed`` the ones that ran again because their
    code or arguments changed."""

    replayed: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # failed or in flight before

    def summary(self) -> str:
        parts = [f"{len(self.replayed)} replayed", f"{len(self.executed)} executed"]
        if self.changed:
            parts.append(f"{len(self.changed)} re-executed because they changed "
                         f"({', '.join(self.changed[:5])}{', …' if len(self.changed) > 5 else ''})")
        return ", ".join(parts)
