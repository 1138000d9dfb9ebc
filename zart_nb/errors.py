"""The one exception tree of zart-nb, split by who has to act on it::

    ZartError
    ├── UsageError            the caller's mistake: bad argument, bad template, duplicate
    │   │                     step name, unknown run; shown as one line by magics and CLI
    │   ├── DuplicateStepName
    │   ├── TemplateError
    │   ├── RunNotFound
    │   ├── EventAlreadySent
    │   ├── RunBusy           another live process owns the run and the caller asked not to wait
    │   └── CodeChanged       a step's code or arguments changed under on_change="error"
    ├── StoreError            the database: unreachable, refused, schema too new (DSN redacted)
    ├── PayloadError          unsigned, tampered, foreign-Python or unpicklable payloads
    ├── StepFailed            framework failures of a step: retries exhausted, timed out,
    │   │                     worker lost, result not picklable (zart's ``Failed``)
    │   └── StepTimedOut
    ├── EventTimeout          ``wait_for_event`` passed its timeout
    └── RunFailed             a run ended failed / cancelled; carries the step's error

A step's own exception (a business error, zart's ``Err``) is never wrapped: it is
re-raised as the user's exception on replay.

Internal control-flow signals derive from ``BaseException`` so that a user's
``except Exception`` cannot swallow them.

Every exception here survives pickling (the journal stores them): each keeps its
constructor arguments in ``args`` and rebuilds from them.
"""

from __future__ import annotations

from typing import Any


class ZartError(Exception):
    """Base of every error zart-nb raises."""

    def __reduce__(self) -> tuple[Any, ...]:  # rebuild from args, whatever __init__ takes;
        # the cause travels too (a StepFailed for exhausted retries carries the last error)
        return (_rebuild, (type(self), self.args, self.__dict__, self.__cause__))


def _rebuild(cls: type[ZartError], args: tuple[Any, ...], state: dict[str, Any],
             cause: BaseException | None = None) -> ZartError:
    exc = Exception.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    exc.__cause__ = cause
    return exc


class UsageError(ZartError):
    """A mistake of the caller; the message says what to change."""


class DuplicateStepName(UsageError):
    pass


class TemplateError(UsageError):
    pass


class RunNotFound(UsageError):
    pass


class EventAlreadySent(UsageError):
    pass


class RunBusy(UsageError):
    pass


class CodeChanged(UsageError):
    pass


class StoreError(ZartError):
    """The database could not do what was asked; the original is in ``__cause__``.

    ``sqlstate`` is PostgreSQL's code for the failure (``"53100"``: disk full; class
    ``08`` or ``57P`` when the server was lost or could not be reached, see
    ``store.sql.lost``; ``None`` when nothing was sent: the driver refused a value, or
    the store is closed), so that callers decide without the driver.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PayloadError(ZartError):
    """A payload could not be pickled, or a stored one may not be unpickled."""


class StepFailed(ZartError):
    """A framework failure of a step (zart's ``Failed``), as opposed to the step's own error.

    ``step`` names the step; ``reason`` is one of ``retries_exhausted``, ``timed_out``,
    ``worker_lost``, ``not_picklable``, ``cancelled``.
    """

    def __init__(self, message: str, *, step: str = "", reason: str = "failed") -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason


class StepTimedOut(StepFailed):
    pass


class EventTimeout(ZartError):
    pass


class RunFailed(ZartError):
    """A run ended without a result: failed or cancelled."""


class Suspend(BaseException):
    """Internal: unwinds a body that must stop here (cancelled, or lost its lease)."""
