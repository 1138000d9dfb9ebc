"""Cells that await: a ``%%zart_durable`` or ``%%zart_step`` cell with top-level ``await``
runs on the kernel's own event loop, awaited by IPython.

IPython awaits a cell that uses top-level ``await``: ``should_run_async`` looks at the
transformed cell, and ipykernel then awaits ``run_cell_async`` on the kernel's loop
(``%autoawait``, on by default). But a cell magic's body is only a string: IPython sees
``get_ipython().run_cell_magic('zart_durable', 'NAME', '…')``, finds no ``await`` in
it, and calls the magic like any function. So zart adds an input transformer, run after
IPython's own (``input_transformers_post``): when a zart cell's body awaits, it puts
``await`` before that call. IPython now treats the cell as an awaiting one; the magic
returns a coroutine (the cell executed as an async body) and the kernel's loop awaits
it, exactly as it awaits ``await asyncio.sleep(1)`` typed in a cell. No loop is nested
or started (DESIGN.md 2.11); while the cell awaits, the loop goes on, so widget
updates and the progress display keep flowing; Ctrl-C makes ipykernel cancel the
coroutine, which releases the run.

That cancel is scheduled by ipykernel's SIGINT handler with a ``call_soon`` that does
not wake the loop up (ipython/ipykernel#881: an awaiting cell is cancelled only when
its loop next wakes, after ``await asyncio.sleep(60)`` a minute later). While a zart
cell awaits, ``interruptible`` keeps a tick on the loop every 0.1 s, so that Ctrl-C
takes effect at once.

The body awaits when, transformed as the magic will compile it, it needs to be a
coroutine (``cells.awaits``): the transformer and the magic decide alike.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..errors import UsageError
from .cells import awaits

MAGICS = ("zart_durable", "zart_step")
_PREFIX = "get_ipython().run_cell_magic("
TICK_SECONDS = 0.1

Transformer = Callable[[list[str]], list[str]]


def awaiting_cells(shell: Any) -> Transformer:
    """The input transformer of ``shell`` that makes its awaiting zart cells awaited."""

    def await_zart_cells(lines: list[str]) -> list[str]:
        if not lines or not lines[0].startswith(_PREFIX) or not awaited_by(shell):
            return lines
        call = magic_call("".join(lines))
        if call is None or call[0] not in MAGICS:
            return lines
        try:
            python = shell.transform_cell(call[2])
        except Exception:  # the magic reports the cell's own problem
            return lines
        if not awaits(python):
            return lines
        return ["await " + lines[0], *lines[1:]]

    return await_zart_cells


def magic_call(text: str) -> tuple[str, str, str] | None:
    """(magic, line, body) when ``text`` is IPython's call of a cell magic, else None."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run_cell_magic" and not call.keywords and len(call.args) == 3
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)):
        return None
    name, line, body = (a.value for a in call.args)  # type: ignore[attr-defined]
    return name, line, body


def awaited_by(shell: Any) -> bool:
    """IPython awaits awaiting cells on asyncio (``%autoawait`` on, its default runner)."""
    runners = getattr(shell, "loop_runner_map", {})
    asyncio_runner = runners.get("asyncio", (None,))[0]
    return bool(getattr(shell, "autoawait", False)) and shell.loop_runner is asyncio_runner


def check_awaited(shell: Any, magic: str) -> None:
    """A cell that awaits, in a shell that will not await it, is refused in one line."""
    if not awaited_by(shell):
        raise UsageError(f"this {magic} cell uses await, which needs IPython's autoawait on "
                         "asyncio: run %autoawait asyncio first")


@asynccontextmanager
async def interruptible() -> AsyncIterator[None]:
    """While the block awaits, the loop wakes every TICK_SECONDS (see the docstring)."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)

    ticking = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        ticking.cancel()
