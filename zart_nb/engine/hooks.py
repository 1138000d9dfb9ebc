"""Hooks by which a higher layer follows the engine without the engine importing it.

The notebook extension sets ``show_progress`` on load (and clears it on unload): the
engine calls it once per execution when a body starts to wait for children, so that
a live progress display appears where the user waits. It must not raise.
"""

from __future__ import annotations

from typing import Callable

show_progress: Callable[[str], None] | None = None


def progress(run_id: str) -> None:
    """Ask the front end, if any, to show the progress of ``run_id``."""
    if show_progress is not None:
        try:
            show_progress(run_id)
        except Exception:  # a display problem must never break a run
            pass
