"""Children and bodies of the executor tests. Module-level, so that executor workers
(Dask's, a pool's processes) import them by reference; each run of a child appends
``NAME ATTEMPT PID`` to the side-effect log it is given.

An executor is not an argument of a body (a run's input must pickle): bodies find it in
``EXECUTOR``, set by the test, or take its name (``"dask://HOST:PORT"``).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

# the fan-out tests' children, run on executors too (test_pools takes them from here)
from tests.fanout.scripts.bodies import record
from tests.fanout.scripts.bodies import refuse as refuse
from tests.fanout.scripts.bodies import retried_refuse as retried_refuse
from zart_nb import schedule, step, wait

EXECUTOR: dict[str, Any] = {}


@step("sleepy-{i}", timeout=0.5)
def sleepy(i, seconds):
    time.sleep(seconds)
    return i


@step("hog-{i}", timeout=0.3)
def hog(i):
    """Holds the GIL in one C call for a long time: no thread of its process can run, so
    its worker cannot even tell the timeout passed."""
    return sum(range(10**11))


def die_once(i, flag):
    """Child 2 kills its own process the first time (while ``flag`` exists)."""
    if i == 2 and os.path.exists(flag):
        os.remove(flag)
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def die_always(i):
    """Kills its own process every time: a child that must not loop forever."""
    os.kill(os.getpid(), signal.SIGKILL)


def schedule_only(log):
    """Queues one child and ends without waiting for it."""
    schedule(record, log, 0)


def wait_for_one(log):
    """The same child, waited for on the test's executor."""
    return wait(schedule(record, log, 0), executor=EXECUTOR["executor"], return_exceptions=True)


def unpicklable(i):
    import threading

    return threading.Lock()


def big(i):
    return bytes([i]) * 100_000  # > 16 KB: goes to the payload store


def fan(log, n, delay=0.0, executor=None):
    """``n`` children of ``record`` on the test's executor (or the one named)."""
    chosen = executor if executor is not None else EXECUTOR.get("executor")
    return wait([schedule(record, log, i, delay) for i in range(n)], executor=chosen)


def fan_default(log, n):
    """The same, on whatever executor the body's defaults choose."""
    return wait([schedule(record, log, i) for i in range(n)])


def three(log, failing, return_exceptions=False):
    handles = [schedule(record, log, 1), schedule(failing, log, 2), schedule(record, log, 3)]
    return wait(handles, return_exceptions=return_exceptions, executor=EXECUTOR["executor"])


def each(fn, n, *args, return_exceptions=True):
    return wait([schedule(fn, i, *args) for i in range(n)], executor=EXECUTOR["executor"],
                return_exceptions=return_exceptions)
