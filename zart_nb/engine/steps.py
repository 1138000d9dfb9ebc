"""``@step``: a function whose result is checkpointed when called inside a durable body.

Outside a body a step is just its function. Inside one, the call is looked up in the
journal by its name: a completed step whose code and arguments did not change returns
its stored result without running; otherwise it runs (with retries and a timeout if
asked), and its result is committed before the body goes on.

A step on an ``async def`` is awaited in an async body: the call claims its name and
makes the replay decision at once (so names follow the order of the calls, never the
order of completion), and returns an awaitable that replays the result or runs the
coroutine and commits its outcome. Sync and async steps share one logic (``_attempts``,
a generator of effects, see effects.py): only the waiting differs.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import string
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, overload

from ..errors import PayloadError, StepFailed, StepTimedOut, TemplateError, UsageError
from ..names import check_name
from ..store.records import JournalEntry
from .effects import Call, Commit, Io, Pause, Steps, adrive, drive
from .execution import Decision, Execution, body_execution, one_line, utcnow
from .fingerprint import arguments_fingerprint, code_fingerprint
from .lane import Awaited, is_async_callable
from .model import Err, Failed, Ok, Outcome, RetryPolicy, StepContext
from .timeouts import TimedOut

Called = Outcome | Awaitable[Outcome]  # an async step's call is awaited for its outcome


class StepFunction:
    """A function made a step by ``@step``; call it, or use ``.named`` / ``.outcome`` / …"""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *,
                 retry: int | RetryPolicy | None = None, timeout: float | None = None) -> None:
        if not callable(fn):
            raise UsageError(f"@step decorates a function, not {type(fn).__name__}")
        template = name or getattr(fn, "__name__", None) or type(fn).__name__
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 0 < timeout < math.inf):
            raise UsageError(f"step {template!r}: timeout must be a positive number of seconds, "
                             f"not {timeout!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.template = template
        self.retry = RetryPolicy.coerce(retry)
        self.timeout = float(timeout) if timeout else None
        self.is_async = is_async_callable(fn)
        self._signature: inspect.Signature | None = None
        # call shape -> (the template rewritten for it, the defaults it takes)
        self._plans: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = invoke(self, None, args, kwargs)
        if type(result) is Ok:  # a sync step executed or replayed: most calls
            return result.value
        return _then(result, _raise_or_return)

    def __repr__(self) -> str:
        return f"<step {self.template!r} of {self.qualname}>"

    @functools.cached_property
    def retry_json(self) -> str:
        """The retry policy as JSON, as a child's row keeps it for the workers."""
        return json.dumps(self.retry.to_json())

    @property
    def qualname(self) -> str:
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__qualname__

    def named(self, name: str) -> NamedCall:
        """This step under a name chosen at the call site: ``notify.named(f"notify-{i}")(…)``."""
        return NamedCall(self, check_name("step name", name))

    def outcome(self, *args: Any, **kwargs: Any) -> Called:
        """``Ok(value)``, ``Err(the step's exception)`` or ``Failed(framework error)``
        (awaited, for an async step)."""
        return invoke(self, None, args, kwargs)

    def or_default(self, default: Any) -> Callable[..., Any]:
        """A call that returns ``default`` when the step raised its own (business) error."""
        return NamedCall(self, None).or_default(default)

    def or_else(self, handler: Callable[[BaseException], Any]) -> Callable[..., Any]:
        """A call that returns ``handler(error)`` when the step raised a business error."""
        return NamedCall(self, None).or_else(handler)

    def resolve_name(self, template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if "{" not in template:
            return template
        # Whether a call binds depends only on its shape (how many positional arguments,
        # which keywords): once a shape bound, later calls of that shape fill the template
        # rewritten for it (positional parameters by index, the others by name, defaults
        # given) without inspect's bind and without a dict of values per call (the
        # largest cost of replaying a templated step).
        shape = (template, len(args), tuple(kwargs))
        plan = self._plans.get(shape)
        if plan is None:
            return self._resolve_slowly(template, args, kwargs, shape)
        rewritten, defaults = plan
        try:
            return rewritten.format(*args, **kwargs, **defaults)
        except (KeyError, IndexError, AttributeError, ValueError):
            return self._resolve_slowly(template, args, kwargs, shape)  # raises, naming it

    def _resolve_slowly(self, template: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                        shape: tuple[Any, ...]) -> str:
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UsageError(f"step {template!r}: {exc}") from None
        bound.apply_defaults()
        params = self._signature.parameters
        name = self._fill(template, bound.arguments)
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
            where = {param: i if i < len(args) else param for i, param in enumerate(params)}
            rewritten = by_position(template, where)
            if rewritten is not None:
                defaults = {p: bound.arguments[p] for p in params
                            if where[p] == p and p not in kwargs}
                self._plans[shape] = (rewritten, defaults)
        return name

    def _fill(self, template: str, values: dict[str, Any]) -> str:
        try:
            return template.format(**values)
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            if self._signature is None:
                self._signature = inspect.signature(self.fn)
            params = ", ".join(self._signature.parameters) or "none"
            raise TemplateError(f"step name template {template!r} of {self.qualname}: "
                                f"cannot fill {exc} (parameters: {params})") from None


class NamedCall:
    """A step call with its name fixed at the call site (or the step's own, when None)."""

    def __init__(self, step: StepFunction, name: str | None) -> None:
        self.step = step
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _then(invoke(self.step, self.name, args, kwargs), _raise_or_return)

    def outcome(self, *args: Any, **kwargs: Any) -> Called:
        return invoke(self.step, self.name, args, kwargs)

    def or_default(self, default: Any) -> Callable[..., Any]:
        return self.or_else(lambda _error: default)

    def or_else(self, handler: Callable[[BaseException], Any]) -> Callable[..., Any]:
        def handled(result: Outcome) -> Any:
            if isinstance(result, Err):
                return handler(result.error)
            return _raise_or_return(result)

        def call(*args: Any, **kwargs: Any) -> Any:
            return _then(invoke(self.step, self.name, args, kwargs), handled)
        return call


@overload
def step(name: Callable[..., Any], *, retry: int | RetryPolicy | None = None,
         timeout: float | None = None) -> StepFunction: ...


@overload
def step(name: str | None = None, *, retry: int | RetryPolicy | None = None,
         timeout: float | None = None) -> Callable[[Callable[..., Any]], StepFunction]: ...


def step(name: str | Callable[..., Any] | None = None, *, retry: int | RetryPolicy | None = None,
         timeout: float | None = None) -> StepFunction | Callable[[Callable[..., Any]], StepFunction]:
    """Make a function a step: ``@step``, ``@step("name-{param}")``, ``@step(retry=3, timeout=60)``."""
    if callable(name):
        return StepFunction(name)
    if name is not None:
        check_name("@step name", name)
    return lambda fn: StepFunction(fn, name, retry=retry, timeout=timeout)


def by_position(template: str, where: dict[str, int | str]) -> str | None:
    """``template`` with each field whose parameter came by position (``where`` gives
    its index) naming that index instead: "load-{day:%d}" -> "load-{0:%d}". None when a
    field is not a parameter (positional fields, unknown names) or nests fields in its
    format spec: such templates are filled by name each time."""
    out = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for literal, field, spec, conversion in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        cut = min((i for i in (field.find("."), field.find("[")) if i >= 0), default=len(field))
        root = field[:cut]
        if root not in where or "{" in (spec or ""):
            return None
        out.append("{" + str(where[root]) + field[cut:] + (f"!{conversion}" if conversion else "")
                   + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def _raise_or_return(result: Outcome) -> Any:
    if isinstance(result, Ok):
        return result.value
    raise result.error


def _then(result: Called, then: Callable[[Outcome], Any]) -> Any:
    """``then(outcome)``, now or once the awaitable outcome of an async step is there."""
    if isinstance(result, (Ok, Err, Failed)):
        return then(result)
    if isinstance(result, Awaited):  # in a body: still named if it is never awaited
        return result.then(then)

    async def later() -> Any:
        return then(await result)
    return later()


def invoke(step: StepFunction, name: str | None, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> Called:
    ex = body_execution()
    if ex is None:  # outside a body, or inside a step: a plain call
        if step.is_async:
            return _plainly(step.fn, args, kwargs)
        try:
            return Ok(step.fn(*args, **kwargs))
        except Exception as exc:
            return Err(exc)
    # a call-site name (.named) is used as is, like a child's: only templates are filled
    resolved = name if name is not None else step.resolve_name(step.template, args, kwargs)
    if step.is_async:
        return run_async_step(ex, step, resolved, args, kwargs)
    return run_step(ex, step, resolved, args, kwargs)


async def _plainly(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    try:
        return Ok(await fn(*args, **kwargs))
    except Exception as exc:
        return Err(exc)


def _decide(ex: Execution, step: StepFunction, name: str, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> tuple[Decision, bytes, bytes]:
    code_fp = code_fingerprint(step.fn)
    args_fp = arguments_fingerprint(args, kwargs, kind="step", name=name)
    return ex.lookup(name, code_fp, args_fp), code_fp, args_fp


def run_step(ex: Execution, step: StepFunction, name: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Outcome:
    """Replay ``name`` from the journal, or execute it and commit its outcome."""
    decision, code_fp, args_fp = _decide(ex, step, name, args, kwargs)
    if decision.action == "replay":
        assert decision.entry is not None
        return Ok(ex.value(decision.entry))
    return drive(_attempts(ex, step, name, decision, code_fp, args_fp, args, kwargs))


def run_async_step(ex: Execution, step: StepFunction, name: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Awaitable[Outcome]:
    """The same for an async step: decided now, replayed or executed when awaited."""
    if not ex.on_its_loop():
        raise UsageError(f"step {name!r} is an async def: await it in an async durable body "
                         "(an async def under @durable, or a %%zart_durable cell that uses "
                         "await), on the body's event loop")
    decision, code_fp, args_fp = _decide(ex, step, name, args, kwargs)
    steps: Steps[Outcome]
    if decision.action == "replay":
        assert decision.entry is not None
        steps = _replayed(ex, decision.entry)
    else:
        steps = _attempts(ex, step, name, decision, code_fp, args_fp, args, kwargs)
    assert ex.lane is not None
    return ex.lane.awaitable(adrive(steps, ex.lane), f"step {name!r}")


def stored(ex: Execution, entry: JournalEntry) -> Steps[Any]:
    """The stored result of ``entry``; a large one is read from the store."""
    if entry.result_hash is not None:
        return (yield Io(ex.value, entry))
    return ex.value(entry)


def _replayed(ex: Execution, entry: JournalEntry) -> Steps[Outcome]:
    return Ok((yield from stored(ex, entry)))


def _attempts(ex: Execution, step: StepFunction, name: str, decision: Decision,
              code_fp: bytes, args_fp: bytes, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Steps[Outcome]:
    """Execute the step as attempt ``decision.attempt`` and on, retrying as its policy
    says, and commit its outcome: ``Ok``, ``Err`` (its own error) or ``Failed``."""
    seq, first_attempt = decision.seq, decision.attempt
    policy = step.retry
    last_attempt = first_attempt + policy.retries
    attempt = first_attempt

    def fail(error: BaseException, kind: str, cause: BaseException | None = None) -> Io:
        return Io(ex.fail, name, error, kind=kind, seq=seq, attempt=attempt, started_at=started,
                  code_fp=code_fp, args_fp=args_fp, cause=cause)

    while True:
        ex.check_live()
        started = utcnow()
        ex.begin(name, attempt)
        try:
            value = yield Call(step.fn, args, kwargs, timeout=step.timeout,
                               where=StepContext(ex.run_id, ex.name, name, attempt))
        except TimedOut as timed_out:
            error = StepTimedOut(f"step {name!r} timed out after {step.timeout:g} s",
                                 step=name, reason="timed_out")
            yield fail(error.with_traceback(timed_out.__traceback__), "framework")
            return Failed(error.with_traceback(None))  # stored; its frames not kept alive
        except Exception as exc:
            if attempt < last_attempt:
                yield Io(ex.record_attempt, name, attempt, exc, started)
                yield Pause(policy.delay_before(attempt - first_attempt + 1))
                attempt += 1
                continue
            if policy.retries:
                failed = StepFailed(f"step {name!r} failed after {attempt - first_attempt + 1} "
                                    f"attempts; last: {one_line(exc)}", step=name,
                                    reason="retries_exhausted")
                failed.__cause__ = exc
                yield fail(failed, "framework", cause=exc)
                return Failed(failed)
            yield fail(exc, "business")
            return Err(exc)
        finally:
            ex.ended(name)
        try:
            done = ex.completion(name, "step", seq, value, code_fp=code_fp, args_fp=args_fp,
                                 attempt=attempt, max_attempts=policy.max_attempts,
                                 started_at=started)
        except PayloadError as exc:
            unpicklable = StepFailed(str(exc), step=name, reason="not_picklable")
            yield fail(unpicklable, "framework")
            return Failed(unpicklable)
        yield Commit(ex, done)
        return Ok(value)


def capture(name: str, fn: Callable[[], Any]) -> Any:
    """A durable value: ``fn()`` runs once per run, its result is replayed afterwards."""
    if not callable(fn):
        raise UsageError(f"capture({name!r}, fn) needs a function to call, not {type(fn).__name__}")
    ex = body_execution()
    if ex is None:
        return fn()
    decision = ex.lookup(check_name("capture name", name), what="capture")
    if decision.action == "replay":
        assert decision.entry is not None
        return ex.value(decision.entry)
    value = fn()
    ex.complete(name, "capture", decision.seq, value, code_fp=None, args_fp=None, attempt=1,
                max_attempts=1, started_at=None)
    return value


def now(name: str) -> datetime:
    """The current UTC time, fixed at the first execution: replay returns the same instant."""
    moment: datetime = capture(name, utcnow)
    return moment
