"""Running a coroutine to its end from sync code, without nesting event loops.

Sync code that has an async body or an async child to run (a worker's thread, a
script's ``execute`` of an async body, ``%zart_resume`` of a cell that awaits) runs
it here: on this thread's own event loop, made once and reused, when no loop runs in
this thread; else, when a loop runs here already (a notebook kernel), on a helper
thread's loop while this thread waits for it, as for any blocking call (Ctrl-C cancels
the coroutine there, then is raised here). Never ``asyncio.run``, never a loop inside
a running one (DESIGN.md 2.11).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's own event loop (made on first use, reused afterwards)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """The result of ``coro``, run from sync code (see the module's docstring)."""
    if not running_here():
        return thread_loop().run_until_complete(coro)
    return _on_helper_thread(coro)


def _on_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    ctx = contextvars.copy_context()  # the caller's context (a kernel's output routing)
    box: dict[str, Any] = {}
    ready = threading.Event()

    def target() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = box["task"] = loop.create_task(coro, context=ctx)
            box["loop"] = loop
            ready.set()
            box["value"] = loop.run_until_complete(task)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=target, daemon=True, name="zart-async-body")
    thread.start()
    ready.wait()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
