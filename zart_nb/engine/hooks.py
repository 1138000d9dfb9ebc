"""Hooks by which a higher layer serves the engine without the engine importing it.

``show_progress``: the notebook extension sets it on load (and clears it on unload);
the engine calls it once per execution when a body starts to wait for children, so
that a live progress display appears where the user waits. It must not raise.

``make_progress``: builds the progress widget that ``Run.progress()`` returns; the
package's ``__init__`` sets it to a function that imports the notebook layer only
when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

show_progress: Callable[[str], None] | None = None
make_progress: Callable[[str, Any], Any] | None = None  # (run_id, store) -> widget


def progress(run_id: str) -> None:
    """Ask the front end, if any, to show the progress of ``run_id``."""
    if show_progress is not None:
        with contextlib.suppress(Exception):  # a display problem must never break a run
            show_progress(run_id)
