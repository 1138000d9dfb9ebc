"""``@step``: a function whose result is checkpointed when called inside a durable body.

Outside a body a step is just its function. Inside one, the call is looked up in the
journal by its name: a completed step whose code and arguments did not change returns
its stored result without running; otherwise it runs (with retries and a timeout if
asked), and its result is committed before the body goes on.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
import inspect
import threading
import time
from typing import Any, Callable

from ..errors import CodeChanged, PayloadError, StepFailed, StepTimedOut, TemplateError, UsageError
from .fingerprint import arguments_fingerprint, code_fingerprint
from .journal import Execution, StepContext, _in_step, current, one_line, utcnow
from .model import Err, Failed, Ok, Outcome, RetryPolicy


class StepFunction:
    """A function made a step by ``@step``; call it, or use ``.named`` / ``.outcome`` / …"""

    def __init__(self, fn: Callable, name: str | None = None, *,
                 retry: int | RetryPolicy | None = None, timeout: float | None = None) -> None:
        if not callable(fn):
            raise UsageError(f"@step decorates a function, not {type(fn).__name__}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise UsageError(f"step {name or fn.__name__!r}: timeout must be a positive number "
                             f"of seconds, not {timeout!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.template = name or fn.__name__
        self.retry = RetryPolicy.coerce(retry)
        self.timeout = float(timeout) if timeout else None
        self._signature: inspect.Signature | None = None
        self._plans: dict[tuple, tuple] = {}  # call shape -> where each parameter comes from

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _raise_or_return(invoke(self, None, args, kwargs))

    def __repr__(self) -> str:
        return f"<step {self.template!r} of {self.fn.__qualname__}>"

    def named(self, name: str) -> NamedCall:
        """This step under a name chosen at the call site: ``notify.named(f"notify-{i}")(…)``."""
        if not isinstance(name, str) or not name:
            raise UsageError(f"step {self.template!r}: .named() needs a non-empty string, not {name!r}")
        return NamedCall(self, name)

    def outcome(self, *args: Any, **kwargs: Any) -> Outcome:
        """``Ok(value)``, ``Err(the step's exception)`` or ``Failed(framework error)``."""
        return invoke(self, None, args, kwargs)

    def or_default(self, default: Any) -> Callable[..., Any]:
        """A call that returns ``default`` when the step raised its own (business) error."""
        return NamedCall(self, None).or_default(default)

    def or_else(self, handler: Callable[[BaseException], Any]) -> Callable[..., Any]:
        """A call that returns ``handler(error)`` when the step raised a business error."""
        return NamedCall(self, None).or_else(handler)

    def resolve_name(self, template: str, args: tuple, kwargs: dict) -> str:
        if "{" not in template:
            return template
        # Whether a call binds depends only on its shape (how many positional arguments,
        # which keywords): once a shape bound, later calls of that shape take each
        # parameter from where it came the first time, without inspect's bind (the
        # largest cost of replaying a templated step).
        shape = (template, len(args), tuple(kwargs))
        plan = self._plans.get(shape)
        if plan is None:
            return self._resolve_slowly(template, args, kwargs, shape)
        values = {}
        for param, where, default in plan:
            if where == "arg":
                values[param] = args[default]
            elif where == "kw":
                values[param] = kwargs[param]
            else:
                values[param] = default
        return self._fill(template, values)

    def _resolve_slowly(self, template: str, args: tuple, kwargs: dict, shape: tuple) -> str:
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UsageError(f"step {template!r}: {exc}") from None
        bound.apply_defaults()
        params = self._signature.parameters
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
            plan = []
            for i, param in enumerate(params):
                if i < len(args):
                    plan.append((param, "arg", i))
                elif param in kwargs:
                    plan.append((param, "kw", None))
                else:
                    plan.append((param, "default", bound.arguments[param]))
            self._plans[shape] = tuple(plan)
        return self._fill(template, bound.arguments)

    def _fill(self, template: str, values: dict) -> str:
        try:
            return template.format(**values)
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            if self._signature is None:
                self._signature = inspect.signature(self.fn)
            params = ", ".join(self._signature.parameters) or "none"
            raise TemplateError(f"step name template {template!r} of {self.fn.__qualname__}: "
                                f"cannot fill {exc} (parameters: {params})") from None


class NamedCall:
    """A step call with its name fixed at the call site (or the step's own, when None)."""

    def __init__(self, step: StepFunction, name: str | None) -> None:
        self.step = step
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _raise_or_return(invoke(self.step, self.name, args, kwargs))

    def outcome(self, *args: Any, **kwargs: Any) -> Outcome:
        return invoke(self.step, self.name, args, kwargs)

    def or_default(self, default: Any) -> Callable[..., Any]:
        return self.or_else(lambda _error: default)

    def or_else(self, handler: Callable[[BaseException], Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = invoke(self.step, self.name, args, kwargs)
            if isinstance(result, Err):
                return handler(result.error)
            return _raise_or_return(result)
        return call


def step(name: str | Callable | None = None, *, retry: int | RetryPolicy | None = None,
         timeout: float | None = None):
    """Make a function a step: ``@step``, ``@step("name-{param}")``, ``@step(retry=3, timeout=60)``."""
    if callable(name):
        return StepFunction(name)
    if name is not None and (not isinstance(name, str) or not name):
        raise UsageError(f"@step name must be a non-empty string, not {name!r}")
    return lambda fn: StepFunction(fn, name, retry=retry, timeout=timeout)


def _raise_or_return(result: Outcome) -> Any:
    if isinstance(result, Ok):
        return result.value
    raise result.error


def invoke(step: StepFunction, name: str | None, args: tuple, kwargs: dict) -> Outcome:
    ex = current()
    if ex is None or _in_step.get() is not None:
        try:
            return Ok(step.fn(*args, **kwargs))
        except Exception as exc:
            return Err(exc)
    # a call-site name (.named) is used as is, like a child's: only templates are filled
    resolved = name if name is not None else step.resolve_name(step.template, args, kwargs)
    return run_step(ex, step, resolved, args, kwargs)


def run_step(ex: Execution, step: StepFunction, name: str, args: tuple, kwargs: dict,
             kind: str = "step") -> Outcome:
    """Replay ``name`` from the journal, or execute it and commit its outcome."""
    seq = ex.claim_name(name)
    code_fp = code_fingerprint(step.fn)
    args_fp = arguments_fingerprint(args, kwargs, owner=f"step {name!r}")
    entry = ex.journal.get(name)
    first_attempt = 1
    executed = ex.report.executed
    if entry is not None:
        if entry.status == "completed":
            changed = entry.change(code_fp, args_fp)
            if changed is None or ex.on_change == "ignore":
                ex.report.replayed.append(name)
                return Ok(ex.value(entry))
            if ex.on_change == "error":
                raise CodeChanged(f"step {name!r} of run {ex.run_id!r}: its {changed} changed since "
                                  "it completed (on_change='error'); rerun it, or use "
                                  "on_change='rerun' or 'ignore'")
            executed = ex.report.changed
        else:  # failed, or in flight when its process died: runs again, attempts counted on
            ex.report.retried.append(name)
        first_attempt = entry.attempts + 1
    executed.append(name)
    return _execute(ex, step, name, seq, kind, args, kwargs, code_fp, args_fp, first_attempt)


def _execute(ex: Execution, step: StepFunction, name: str, seq: int, kind: str, args: tuple,
             kwargs: dict, code_fp: bytes, args_fp: bytes, first_attempt: int) -> Outcome:
    policy = step.retry
    last_attempt = first_attempt + policy.retries
    max_attempts = policy.max_attempts
    attempt = first_attempt
    while True:
        ex.check_live()
        started = utcnow()
        ex.begin(name, attempt)
        token = _in_step.set(StepContext(ex.run_id, ex.name, name, attempt))
        try:
            value = call_with_timeout(step.fn, args, kwargs, step.timeout)
        except _TimedOut:
            error = StepTimedOut(f"step {name!r} timed out after {step.timeout:g} s",
                                 step=name, reason="timed_out")
            ex.fail(name, error, kind="framework", seq=seq, attempt=attempt, started_at=started,
                    code_fp=code_fp, args_fp=args_fp)
            return Failed(error)
        except Exception as exc:
            if attempt < last_attempt:
                ex.record_attempt(name, attempt, exc, started)
                time.sleep(policy.delay_before(attempt - first_attempt + 1))
                attempt += 1
                continue
            if policy.retries:
                error = StepFailed(f"step {name!r} failed after {attempt - first_attempt + 1} "
                                   f"attempts; last: {one_line(exc)}", step=name,
                                   reason="retries_exhausted")
                error.__cause__ = exc
                ex.fail(name, error, kind="framework", seq=seq, attempt=attempt, started_at=started,
                        code_fp=code_fp, args_fp=args_fp, cause=exc)
                return Failed(error)
            ex.fail(name, exc, kind="business", seq=seq, attempt=attempt, started_at=started,
                    code_fp=code_fp, args_fp=args_fp)
            return Err(exc)
        finally:
            _in_step.reset(token)
            ex.inflight = None
        try:
            ex.complete(name, kind, seq, value, code_fp=code_fp, args_fp=args_fp, attempt=attempt,
                        max_attempts=max_attempts, started_at=started)
        except PayloadError as exc:
            error = StepFailed(str(exc), step=name, reason="not_picklable")
            ex.fail(name, error, kind="framework", seq=seq, attempt=attempt, started_at=started,
                    code_fp=code_fp, args_fp=args_fp)
            return Failed(error)
        return Ok(value)


class _TimedOut(Exception):
    pass


class StepAbandoned(BaseException):
    """Raised inside a step's thread after its deadline, to stop what it is doing."""


def call_with_timeout(fn: Callable, args: tuple, kwargs: dict, timeout: float | None) -> Any:
    """Call ``fn``; with a timeout it runs in a thread that is abandoned at the deadline."""
    if not timeout:
        return fn(*args, **kwargs)
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=target, daemon=True, name="zart-step-timeout")
    thread.start()
    if not done.wait(timeout):
        # Python code in the thread stops at its next bytecode; a blocking C call
        # finishes first, its result dropped.
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(StepAbandoned))
        raise _TimedOut()
    if "error" in box:
        raise box["error"]
    return box["value"]


def capture(name: str, fn: Callable[[], Any]) -> Any:
    """A durable value: ``fn()`` runs once per run, its result is replayed afterwards."""
    ex = current()
    if ex is None or _in_step.get() is not None:
        return fn()
    if not isinstance(name, str) or not name:
        raise UsageError(f"capture() needs a non-empty name, not {name!r}")
    entry = ex.journal.get(name)
    seq = ex.claim_name(name)
    if entry is not None and entry.status == "completed":
        ex.report.replayed.append(name)
        return ex.value(entry)
    value = fn()
    ex.complete(name, "capture", seq, value, code_fp=None, args_fp=None, attempt=1,
                max_attempts=1, started_at=None)
    ex.report.executed.append(name)
    return value


def now(name: str):
    """The current UTC time, fixed at the first execution: replay returns the same instant."""
    return capture(name, utcnow)
