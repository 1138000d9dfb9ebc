"""Calling a step's function with a deadline.

Python offers no safe way to kill a thread: a step with a timeout runs in a thread of
its own, and at the deadline an asynchronous exception (``StepAbandoned``) is raised in
that thread, which stops Python code at its next bytecode; a blocking C call finishes
first, and its result is dropped. Where the deadline found the step's code is kept as
the traceback of ``TimedOut``: the stored traceback of a timed-out step shows it.

An async step needs no thread: at the deadline its coroutine is cancelled (its
``finally`` blocks and ``except CancelledError`` handlers run), and nothing is left
running.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import inspect
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from ..frames import ours


class TimedOut(Exception):
    """The call passed its deadline (the caller turns it into StepTimedOut, with this
    exception's traceback: the step's frames when the deadline came)."""


class StepAbandoned(BaseException):
    """Raised inside a step's thread after its deadline, to stop what it is doing."""


def call_with_timeout(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                      timeout: float | None) -> Any:
    """``fn(*args, **kwargs)``; with a timeout, in a thread abandoned at the deadline."""
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
        assert thread.ident is not None
        where = _frames_of(thread.ident)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(StepAbandoned))
        raise TimedOut().with_traceback(where)
    if "error" in box:
        raise box["error"]
    return box["value"]


async def acall_with_timeout(fn: Callable[..., Any], args: tuple[Any, ...],
                             kwargs: dict[str, Any], timeout: float | None) -> Any:
    """``fn(*args, **kwargs)``, awaited when it returns an awaitable; with a timeout, the
    awaiting is cancelled at the deadline and TimedOut raised."""
    if not timeout:
        return await _awaited(fn, args, kwargs)
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await _awaited(fn, args, kwargs)
    except TimeoutError:
        if deadline.expired():
            raise TimedOut() from None
        raise  # the step's own TimeoutError: a business error


async def _awaited(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result
def _frames_of(ident: int) -> types.TracebackType | None:
    """The frames thread ``ident`` runs below zart_nb's, as a traceback (outermost first)."""
    frame = sys._current_frames().get(ident)
    inner_first = []
    while frame is not None and not ours(frame.f_code):
        inner_first.append(frame)
        frame = frame.f_back
    chain = None
    for f in inner_first:
        chain = types.TracebackType(chain, f, f.f_lasti, f.f_lineno)
    return chain
