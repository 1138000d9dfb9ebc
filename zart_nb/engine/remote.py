"""What runs on an executor's worker (a Dask worker, a process of a pool): one child.

The waiting body verified the child's signed task and sends its pickle as plain bytes,
so that the worker needs no secret and no database: ``run_child`` unpickles the function
(once per worker and function) and its arguments, calls it inside the child's step scope
(``context()`` works) with its timeout, and answers with a ``Reply`` made only of bytes,
text and numbers. The result and the exception travel pickled by cloudpickle inside it,
so that any executor can carry them back (a plain-pickle process pool cannot carry a
class defined in a notebook), and the body seals the result's pickle as it is.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..frames import format_users_traceback
from .execution import one_line, pickled_error, step_scope
from .lane import is_async_callable
from .loops import thread_loop
from .model import StepContext
from .timeouts import TimedOut, acall_with_timeout, call_with_timeout

RETURNED, RAISED, TIMED_OUT, NOT_LOADABLE, NOT_PICKLABLE = (
    "returned", "raised", "timed_out", "not_loadable", "not_picklable")


@dataclass(frozen=True)
class Reply:
    """What became of one attempt on the worker.

    ``data`` is the result's pickle (``returned``) or the exception's (``raised``);
    ``pickled_by`` says which Python and cloudpickle wrote it (``codec.PICKLED_BY``);
    ``message`` explains ``not_loadable`` and ``not_picklable``.
    """

    kind: str
    data: bytes | None = None
    traceback: str = ""
    message: str = ""
    seconds: float = 0.0
    pickled_by: tuple[int, int, str] = codec.PICKLED_BY


class FunctionCache:
    """Children's functions unpickled once per process (keyed by their pickle's hash): a
    notebook function travels by value with every task, and unpickling it costs more
    than its arguments. Bounded: a long-lived worker meets many notebooks."""

    LIMIT = 256

    def __init__(self) -> None:
        self._functions: dict[bytes, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def load(self, pickled: bytes) -> Callable[..., Any]:
        key = codec.digest(pickled)
        fn = self._functions.get(key)
        if fn is None:
            fn = pickle.loads(pickled)
            with self._lock:
                if len(self._functions) >= self.LIMIT:
                    self._functions.clear()
                self._functions[key] = fn
        return fn


_functions = FunctionCache()


def call_child(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               timeout: float | None) -> Any:
    """The child's function called with its deadline; a coroutine function runs on this
    thread's event loop (made once, reused by its next children), cancelled at the
    deadline."""
    if is_async_callable(fn):
        return thread_loop().run_until_complete(acall_with_timeout(fn, args, kwargs, timeout))
    return call_with_timeout(fn, args, kwargs, timeout)


def run_child(task: bytes, where: StepContext, timeout: float | None) -> Reply:
    """Run one attempt of a child: ``task`` is the pickle of ``(function's pickle, args,
    kwargs)`` from its verified envelope, ``where`` names the run, child and attempt."""
    name = where.step
    try:
        pickled_fn, args, kwargs = pickle.loads(task)
        fn = _functions.load(pickled_fn)
    except Exception as exc:  # unpickling imports the function's module
        return Reply(NOT_LOADABLE, message=(
            f"child {name!r}: cannot load its function on the executor's worker: "
            f"{one_line(exc)}; install that module there, or send it with "
            "zart_nb.ship(module) before scheduling"))
    started = time.monotonic()
    try:
        with step_scope(where):
            value = call_child(fn, args, kwargs, timeout)
    except TimedOut:
        return Reply(TIMED_OUT, seconds=time.monotonic() - started)
    except Exception as exc:
        return Reply(RAISED, pickled_error(exc), traceback=format_users_traceback(exc),
                     seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    try:
        data = codec.dumps(value)
    except Exception as exc:  # pickling raises many kinds of errors
        return Reply(NOT_PICKLABLE, message=(
            f"child {name!r}: {codec.unpicklable_reason(value, 'result', exc)}"), seconds=seconds)
    return Reply(RETURNED, data, seconds=seconds)
