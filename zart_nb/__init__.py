"""zart-nb: durable execution for Jupyter notebooks and Python scripts.

Steps called inside a durable body are checkpointed into PostgreSQL; executing the
body again replays completed steps from the journal and continues where it stopped.
Importing this package connects to nothing and imports no notebook machinery.
"""

from __future__ import annotations

from .codec import ship
from .engine import hooks as _hooks
from .engine.context import context
from .engine.fanout import StepHandle, schedule, wait
from .engine.model import Err, Failed, Ok, Report, RetryPolicy, StepContext
from .engine.runs import DurableFunction, Run, durable, run, runs, send_event
from .engine.steps import StepFunction, capture, now, step
from .engine.waits import sleep, sleep_until, wait_for_event
from .errors import (
    CodeChanged, DuplicateStepName, EventAlreadySent, EventTimeout, PayloadError, RunBusy,
    RunFailed, RunNotFound, StepFailed, StepTimedOut, StoreError, TemplateError, UsageError,
    ZartError,
)

from .version import __version__

__all__ = [
    "step", "durable", "capture", "now", "context", "ship",
    "schedule", "wait", "StepHandle", "sleep", "sleep_until", "wait_for_event",
    "run", "runs", "send_event", "Run", "DurableFunction", "StepFunction", "StepContext",
    "Ok", "Err", "Failed", "RetryPolicy", "Report",
    "ZartError", "UsageError", "DuplicateStepName", "TemplateError", "RunNotFound",
    "EventAlreadySent", "RunBusy", "CodeChanged", "StoreError", "PayloadError", "StepFailed",
    "StepTimedOut", "EventTimeout", "RunFailed",
    "load_ipython_extension", "unload_ipython_extension",
]

for _name in __all__:
    _obj = globals().get(_name)
    if callable(_obj):
        try:
            _obj.__module__ = "zart_nb"
        except (AttributeError, TypeError):
            pass
del _name, _obj


def _make_progress(run_id: str, store):
    from .notebook.progress import RunProgress  # ipywidgets only when a widget is asked for

    return RunProgress(run_id, store=store)


_hooks.make_progress = _make_progress


def load_ipython_extension(ipython) -> None:
    """``%load_ext zart_nb``: registers the magics (the notebook layer loads only now)."""
    from .notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .notebook.extension import unload

    unload(ipython)
