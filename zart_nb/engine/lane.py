"""The async side of one execution: where an async body's store calls and commits go.

An async body runs on an event loop that never waits for the network. The store calls
of its execution are the very functions a sync body calls; here they run, in order, on
one I/O thread of the execution's own (they share the body's connection anyway, one at
a time). The results of async steps that complete together are committed together: a
step hands its encoded result to the ``commit`` queue and waits; the queue writes what
is ready in one multi-row statement while the next completions gather behind it, so a
gather of 100 steps that finish at once costs a few round trips, not 100.

``Awaited`` wraps each awaitable that zart hands an async body (a step call, a sleep, a
wait): a coroutine that notes when it is first awaited, so that one the body forgot to
await is named when the body ends instead of doing nothing silently. At the end of the
body (``settle``) the step tasks the body left running are cancelled and the pending
commits written, before the run is finished.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import Suspend
from ..store.journal import Completion

T = TypeVar("T")
U = TypeVar("U")


class AsyncLane:
    """The event loop of an async body, its I/O thread, its commit queue, its step tasks."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.body_task: asyncio.Task[Any] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()  # tasks that awaited a step, but the body's
        self.issued: dict[int, Awaited[Any]] = {}  # handed to the body, not awaited yet
        self.closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Completion, asyncio.Future[None]]] = []
        self._write: Callable[[list[Completion]], None] | None = None
        self._draining: asyncio.Task[None] | None = None

    # -- the I/O thread -------------------------------------------------------------
    async def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the execution's I/O thread (calls run one at a time,
        in the order they were asked for)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="zart-io")
        return await self.loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """No more I/O: the thread ends once the calls already asked for are done."""
        self.closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- commits ----------------------------------------------------------------------
    async def commit(self, done: Completion, write: Callable[[list[Completion]], None]) -> None:
        """Wait until ``done`` is committed, with whatever else completed meanwhile
        (``write`` commits a batch, or raises for all of it)."""
        if self.closed:
            raise Suspend("the execution ended: nothing more is committed")
        future = self.loop.create_future()
        self._queue.append((done, future))
        self._write = write
        if self._draining is None or self._draining.done():
            self._draining = self.loop.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # the completions ready in this turn of the loop join the batch
        while self._queue:
            batch, self._queue = self._queue, []
            assert self._write is not None
            try:
                await self.io(self._write, [done for done, _ in batch])
            except BaseException as exc:  # each waiter gets the error (a copy: own traceback)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(_own_copy(exc))
                if isinstance(exc, asyncio.CancelledError):  # the queue itself was cancelled
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    # -- what the body was handed ---------------------------------------------------------
    def awaitable(self, coro: Coroutine[Any, Any, T], what: str) -> Awaited[T]:
        return Awaited(coro, what, self)

    def started(self, awaited: Awaited[Any]) -> None:
        self.issued.pop(id(awaited), None)
        task = asyncio.current_task()
        if task is not None and task is not self.body_task and task not in self.tasks:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def settle(self) -> list[str]:
        """The body ended: cancel the step tasks it left running, write the commits still
        queued; returns what the body was handed and never awaited."""
        current = asyncio.current_task()
        left = [task for task in self.tasks if not task.done() and task is not current]
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        if self._draining is not None and not self._draining.done():
            await asyncio.shield(self._draining)
        forgotten = list(self.issued.values())
        self.issued.clear()
        for awaited in forgotten:
            awaited.close()  # never started: no "never awaited" warning, our error instead
        return [awaited.what for awaited in forgotten]


class Awaited(Coroutine[Any, Any, T]):
    """A coroutine zart handed an async body; it tells its lane when it is first awaited.

    A real ``Coroutine`` (``asyncio.create_task`` and ``TaskGroup`` take it, ``gather``
    too), delegating to the coroutine it wraps.
    """

    __slots__ = ("_coro", "_inner", "_lane", "started", "what")

    def __init__(self, coro: Coroutine[Any, Any, T], what: str, lane: AsyncLane,
                 inner: Coroutine[Any, Any, Any] | None = None) -> None:
        self._coro = coro
        self._inner = inner  # the coroutine ``coro`` awaits, closed with it
        self._lane = lane
        self.what = what
        self.started = False
        lane.issued[id(self)] = self

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self._lane.started(self)

    def send(self, value: Any) -> Any:
        self._start()
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._start()
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()
        if self._inner is not None and not self.started:
            self._inner.close()

    def __await__(self) -> Generator[Any, None, T]:
        self._start()
        return self._coro.__await__()

    def then(self, fn: Callable[[T], U]) -> Awaited[U]:
        """The awaitable of ``fn(this one's result)``, standing for this one."""
        inner = self._coro

        async def after() -> U:
            return fn(await inner)

        self._lane.issued.pop(id(self), None)
        return Awaited(after(), self.what, self._lane, inner)

    def __repr__(self) -> str:
        return f"<awaitable {self.what}>"


def is_async_callable(fn: Any) -> bool:
    """An ``async def`` (or a callable whose ``__call__`` is one, or that says so with a
    boolean ``is_async``: a cell body that uses top-level ``await``)."""
    flag = getattr(fn, "is_async", None)
    if isinstance(flag, bool):
        return flag
    call = type(fn).__call__ if callable(fn) and not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _own_copy(error: BaseException) -> BaseException:
    """A copy of ``error`` to raise in one more task (zart's errors copy with their cause)."""
    try:
        return copy.copy(error)
    except Exception:  # an exception that does not copy: shared, traceback and all
        return error
