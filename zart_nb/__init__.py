"""zart-nb: durable execution for Jupyter notebooks and Python scripts.

Steps called inside a durable body are checkpointed into PostgreSQL; executing the
body again replays completed steps from the journal and continues where it stopped.
Importing this package connects to nothing and imports no notebook machinery.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .codec import ship
from .engine import hooks as _hooks
from .engine.backends import dask_executor, ray_executor
from .engine.context import context
from .engine.fanout import StepHandle, schedule, wait
from .engine.model import Err, Failed, Ok, Report, RetryPolicy, StepContext
from .engine.runs import DurableFunction, Run, durable, run, runs, send_event
from .engine.steps import StepFunction, capture, now, step
from .engine.waits import sleep, sleep_until, wait_for_event
from .errors import (
    CodeChanged,
    DuplicateStepName,
    EventAlreadySent,
    EventTimeout,
    PayloadError,
    RunBusy,
    RunFailed,
    RunNotFound,
    StepFailed,
    StepTimedOut,
    StoreError,
    TemplateError,
    UsageError,
    ZartError,
)
from .version import __version__

if TYPE_CHECKING:
    from .store.connection import Store

__all__ = [
    "CodeChanged",
    "DuplicateStepName",
    "DurableFunction",
    "Err",
    "EventAlreadySent",
    "EventTimeout",
    "Failed",
    "Ok",
    "PayloadError",
    "Report",
    "RetryPolicy",
    "Run",
    "RunBusy",
    "RunFailed",
    "RunNotFound",
    "StepContext",
    "StepFailed",
    "StepFunction",
    "StepHandle",
    "StepTimedOut",
    "StoreError",
    "TemplateError",
    "UsageError",
    "ZartError",
    "__version__",
    "capture",
    "context",
    "dask_executor",
    "durable",
    "load_ipython_extension",
    "now",
    "ray_executor",
    "run",
    "runs",
    "schedule",
    "send_event",
    "ship",
    "sleep",
    "sleep_until",
    "step",
    "unload_ipython_extension",
    "wait",
    "wait_for_event",
]

for _name in __all__:
    _obj = globals().get(_name)
    if callable(_obj):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "zart_nb"
del _name, _obj


def _make_progress(run_id: str, store: Store) -> Any:
    from .notebook.progress import RunProgress  # ipywidgets only when a widget is asked for

    return RunProgress(run_id, store=store)


_hooks.make_progress = _make_progress


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext zart_nb``: registers the magics (the notebook layer loads only now)."""
    from .notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.extension import unload

    unload(ipython)
