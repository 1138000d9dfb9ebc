"""Small helpers shared by the test suites."""

from __future__ import annotations

import time
from typing import Any, Callable


def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
          every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(every)
