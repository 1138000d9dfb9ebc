"""The stored traceback of a child that failed on a worker, for a function defined in a
notebook cell: it starts at the user's code and shows the cells' lines.

On the worker, the function is rebuilt from its pickle: cloudpickle names its file
``<dynamic-code>``, and the cell's "file" exists only in the kernel's linecache. The
body ships the file names and the cells' lines with the task; the worker's traceback
(shown in the widget's detail panel and by ``zart-nb runs show``) reads as the kernel's
would. Checked for a child that raises through a helper of another cell, one that
exhausts its retries, and one that passes its timeout (the traceback shows where the
deadline found it).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel

HELPER = '''def check(value):
    if value > 2:
        raise ValueError(f"value {value} is too large")
    return value
'''

STEPS = '''import time
from zart_nb import RetryPolicy, durable, schedule, step, wait

@step("grow-{i}")
def grow(i):
    doubled = i * 2
    return check(doubled)

@step("flaky-{i}", retry=RetryPolicy.fixed(1, delay=0.1))
def flaky(i):
    return check(i + 10)

@step("stuck-{i}", timeout=0.5)
def stuck(i):
    time.sleep(30)

@durable("tracebacks")
def body():
    return wait([schedule(grow, 2), schedule(flaky, 1), schedule(stuck, 0)],
                return_exceptions=True)

outcome = body.execute(run_id="tracebacks").value
'''


def line(cell: str, text: str) -> int:
    """The number of the line of ``cell`` that reads ``text``."""
    return cell.splitlines().index(text) + 1


def test_a_childs_traceback_starts_at_the_users_code_and_shows_the_cells(kernel, sql):
    kernel.execute(HELPER, check=True)
    kernel.execute(STEPS, check=True, timeout=120)
    files = kernel.execute("import json; print(json.dumps([check.__code__.co_filename, "
                           "grow.fn.__code__.co_filename]))", check=True)
    helper_cell, steps_cell = json.loads(files.stdout)
    stored = {r["name"]: r for r in sql(
        "SELECT name, status, error, traceback, worker FROM steps WHERE kind = 'child'")}
    assert {name: r["status"] for name, r in stored.items()} == \
        {"grow-2": "failed", "flaky-1": "failed", "stuck-0": "failed"}
    kernel_pid = str(kernel.pid)
    assert all(r["worker"] is None or f":{kernel_pid}:" not in r["worker"]
               for r in stored.values())  # run by a worker process, not the kernel

    raise_line = line(HELPER, '        raise ValueError(f"value {value} is too large")')
    assert stored["grow-2"]["traceback"].splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{steps_cell}", line {line(STEPS, "    return check(doubled)")}, in grow',
        "    return check(doubled)",
        "           ^^^^^^^^^^^^^^",
        f'  File "{helper_cell}", line {raise_line}, in check',
        '    raise ValueError(f"value {value} is too large")',
        "ValueError: value 4 is too large",
    ]
    assert stored["flaky-1"]["traceback"].splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{steps_cell}", line {line(STEPS, "    return check(i + 10)")}, in flaky',
        "    return check(i + 10)",
        "           ^^^^^^^^^^^^^",
        f'  File "{helper_cell}", line {raise_line}, in check',
        '    raise ValueError(f"value {value} is too large")',
        "ValueError: value 11 is too large",
    ]
    assert stored["flaky-1"]["error"].startswith("StepFailed: child 'flaky-1' failed after 2 ")
    assert stored["stuck-0"]["traceback"].splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{steps_cell}", line {line(STEPS, "    time.sleep(30)")}, in stuck',
        "    time.sleep(30)",
        "zart_nb.StepTimedOut: child 'stuck-0' timed out after 0.5 s",
    ]
