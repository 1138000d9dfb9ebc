"""What every magic of the notebook front shares: its one-line messages and errors, the
names a cell never stores, the live progress display, and executing a cell's run while
other kernels execute it too."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from ..engine.effects import Call, Steps, adrive, drive
from ..engine.execute import BodyResult, RunRequest, replay, replay_async
from ..engine.lane import AsyncLane
from ..errors import RunFailed, UsageError
from ..store.records import RunRow
from .progress import show_for_run

MAX_ATTACH_ROUNDS = 20
_IPYTHON_NAMES = re.compile(r"^(_+\d*|_i+\d*|_[iod]h|_ii*|In|Out|get_ipython|exit|quit)$")


def say(message: str) -> None:
    """One line of the notebook front, on stdout."""
    print(f"zart: {message}", flush=True)


class CellError(Exception):
    """An error the notebook front shows as one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mZartError\x1b[0m: {self}"]


def unchained(error: CellError) -> CellError:
    """``error`` to be raised as ``raise error from None`` would: the error it replaces
    is not shown."""
    error.__cause__ = None
    error.__suppress_context__ = True
    return error


def is_hidden(shell: Any, name: str) -> bool:
    """IPython's own names (``_``, ``_i3``, ``Out``...) and those it hides: never stored,
    never fingerprinted, never carried."""
    return name in getattr(shell, "user_ns_hidden", {}) or bool(_IPYTHON_NAMES.match(name))


def show_progress(run_id: str) -> None:
    """The run's live progress (a widget in Jupyter, a text line elsewhere); best effort."""
    try:
        show_for_run(run_id)
    except Exception as exc:  # never fail an attach because of the display
        print(f"(no progress display: {exc})", file=sys.stderr)


def replay_here(make_request: Callable[[], RunRequest], *, restart: bool = False,
                on_attach: Callable[[RunRow], None],
                retry_failed: Callable[[], bool] = lambda: False) -> BodyResult:
    """Execute the cell's run in this kernel, a completed run too (its steps replay).

    When another kernel executes the run, this one attaches and waits for it to end, then
    executes it again here, so that it ends with the same variables. ``retry_failed``
    says whether a RunFailed met while attached is the other kernel's failure, to go on
    from (a step cell), rather than this cell's.
    """
    return drive(_rounds(replay, make_request, restart, on_attach, retry_failed))


async def replay_here_async(make_request: Callable[[], RunRequest], *, restart: bool = False,
                            on_attach: Callable[[RunRow], None],
                            retry_failed: Callable[[], bool] = lambda: False) -> BodyResult:
    """``replay_here`` for a cell that awaits, on the kernel's event loop."""
    return await adrive(_rounds(replay_async, make_request, restart, on_attach, retry_failed),
                        AsyncLane())


def _rounds(replaying: Callable[..., Any], make_request: Callable[[], RunRequest], restart: bool,
            on_attach: Callable[[RunRow], None], retry_failed: Callable[[], bool],
            ) -> Steps[BodyResult]:
    for _ in range(MAX_ATTACH_ROUNDS):
        try:
            outcome = yield Call(replaying, (make_request(),),
                                 {"restart": restart, "on_attach": on_attach})
        except RunFailed:
            if retry_failed():
                continue
            raise
        restart = False
        if not outcome.attached:
            result: BodyResult = outcome
            return result
    raise UsageError("the run kept being executed by other processes; try again later")
