"""``context()``: where the calling code runs (run, durable, step, attempt)."""

from __future__ import annotations

from .execution import current, in_step
from .model import StepContext


def context() -> StepContext:
    """Run id, durable name, step name and attempt of the caller (None/1 outside a run)."""
    inside = in_step()
    if inside is not None:
        return inside
    ex = current()
    if ex is None:
        return StepContext(None, None, None, 1)
    return StepContext(ex.run_id, ex.name, None, 1)
