"""One logic for sync and async bodies: generators of effects, and two drivers.

Executing a step (its attempts, retries, timeout, outcome), a durable sleep, a wait
for an event or for children, a run from its claim to its end: each is written once,
as a generator that decides everything and yields an *effect* wherever it must wait
or call out: a store call (``Io``), a pause (``Pause``), the user's code (``Call``), a
notification (``Notified``), a commit (``Commit``). A driver performs the effects and
sends their results back (or throws their exceptions in):

- ``drive`` performs them in place, blocking: a sync body, as before.
- ``adrive`` awaits them on the body's event loop: store calls on the execution's I/O
  thread, ``asyncio.sleep``, the step's coroutine (cancelled at its deadline), futures
  completed by the LISTEN thread, and the commit queue that batches completions.

Only the waiting differs; every decision is in the generator (the shape of psycopg's
own ``generators.py`` and ``waiting.py``). ``perform`` picks the driver: the awaitable
one when called on the event loop of an async body, else the blocking one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from contextlib import nullcontext
from typing import Any, TypeVar

from ..store.journal import Completion
from ..store.notify import Listener
from .execution import Execution, step_scope
from .lane import AsyncLane, Awaited
from .model import StepContext
from .timeouts import acall_with_timeout, call_with_timeout

T = TypeVar("T")


class Effect:
    """Something a generator needs done: ``run`` does it now, ``arun`` on the loop."""

    __slots__ = ()

    def run(self) -> Any:
        raise NotImplementedError

    async def arun(self, lane: AsyncLane) -> Any:
        raise NotImplementedError


Steps = Generator[Effect, Any, T]


class Io(Effect):
    """A blocking call to the store: inline, or on the execution's I/O thread."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def run(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def arun(self, lane: AsyncLane) -> Any:
        return await lane.io(self.fn, *self.args, **self.kwargs)


class Pause(Effect):
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self, lane: AsyncLane) -> None:
        await asyncio.sleep(self.seconds)


class Call(Effect):
    """The user's code: a step's function inside its ``StepContext`` and deadline, or a
    body (``body=True``), or a handler. On the loop, an awaitable it returns is awaited
    (and cancelled at the deadline); a sync function runs on the loop's thread."""

    __slots__ = ("args", "body", "fn", "kwargs", "timeout", "where")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, *, timeout: float | None = None,
                 where: StepContext | None = None, body: bool = False) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs or {}
        self.timeout, self.where, self.body = timeout, where, body

    def run(self) -> Any:
        with step_scope(self.where) if self.where is not None else nullcontext():
            return call_with_timeout(self.fn, self.args, self.kwargs, self.timeout)

    async def arun(self, lane: AsyncLane) -> Any:
        if self.body:
            lane.body_task = asyncio.current_task()
        with step_scope(self.where) if self.where is not None else nullcontext():
            return await acall_with_timeout(self.fn, self.args, self.kwargs, self.timeout)


class Notified(Effect):
    """Wait until ``key`` is notified after ``token`` was taken, at most ``timeout`` s."""

    __slots__ = ("key", "notes", "timeout", "token")

    def __init__(self, notes: Listener, key: str, token: int, timeout: float) -> None:
        self.notes, self.key, self.token, self.timeout = notes, key, token, timeout

    def run(self) -> bool:
        return self.notes.wait(self.key, self.token, self.timeout)

    async def arun(self, lane: AsyncLane) -> bool:
        return await self.notes.wait_async(self.key, self.token, self.timeout)


class Commit(Effect):
    """Commit a step's result before going on: alone, or with the results of the async
    steps that completed at the same time (one statement)."""

    __slots__ = ("done", "ex")

    def __init__(self, ex: Execution, done: Completion) -> None:
        self.ex, self.done = ex, done

    def run(self) -> None:
        self.ex.write_completion(self.done)

    async def arun(self, lane: AsyncLane) -> None:
        await lane.commit(self.done, self.ex.write_completions)


class Settle(Effect):
    """The body returned or raised: what it left running ends; returns the awaitables it
    never awaited (none in a sync body)."""

    __slots__ = ()

    def run(self) -> list[str]:
        return []

    async def arun(self, lane: AsyncLane) -> list[str]:
        return await lane.settle()


def drive(steps: Steps[T]) -> T:
    """Perform the effects of ``steps`` in place, blocking; its return value."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        send, error = None, None
        try:
            send = effect.run()
        except BaseException as exc:  # KeyboardInterrupt too: the generator cleans up
            error = exc


async def adrive(steps: Steps[T], lane: AsyncLane) -> T:
    """Await the effects of ``steps`` on the body's event loop; its return value."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        send, error = None, None
        try:
            send = await effect.arun(lane)
        except BaseException as exc:  # CancelledError too: the generator cleans up
            error = exc


def perform(ex: Execution, steps: Steps[T], what: str) -> T | Awaited[T]:
    """``steps`` as the caller needs them: an awaitable when called on the event loop of
    an async body (``what`` names it if it is never awaited), else run to the end now."""
    lane = ex.lane
    if lane is not None and ex.on_its_loop():
        return lane.awaitable(adrive(steps, lane), what)
    return drive(steps)


def waiting(ex: Execution, now: bool) -> Steps[None]:
    """The run's status while its body waits (children, a sleep, an event): ``waiting``
    from the first wait on, ``running`` once the last ends (an async body's waits may
    overlap)."""
    ex.waits += 1 if now else -1
    if ex.waits == (1 if now else 0):
        yield Io(ex.set_status, "waiting" if now else "running")
