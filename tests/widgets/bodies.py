"""Children and bodies of the widget tests: module-level, so that worker processes
import them by reference (``python -m`` in the repository puts it on ``sys.path``)."""

from __future__ import annotations

import os
import time

from zart_nb import durable, schedule, wait


def nap(i: int, seconds: float = 0.02) -> int:
    time.sleep(seconds)
    return i


def quick(i: int) -> int:
    return i


def flaky(i: int, flag: str) -> int:
    """Fails while the file ``flag`` exists (child 3 only)."""
    if i == 3 and os.path.exists(flag):
        raise ValueError(f"child {i} refuses: {flag} exists")
    return i


@durable("naps")
def naps(n: int, seconds: float = 0.02) -> int:
    return sum(wait([schedule(nap, i, seconds) for i in range(n)]))


@durable("quick")
def quicks(n: int) -> int:
    return sum(wait([schedule(quick, i) for i in range(n)]))


@durable("flaky")
def flakies(n: int, flag: str) -> list:
    return wait([schedule(flaky, i, flag) for i in range(n)], return_exceptions=True)


@durable("naps-on-threads")
def naps_on_threads(n: int, seconds: float = 0.02) -> int:
    """The same children on an executor (two threads of this process)."""
    return sum(wait([schedule(nap, i, seconds) for i in range(n)], executor="threads:2"))
