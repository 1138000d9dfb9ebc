"""Cells that await, in real kernels: a ``%%zart_durable`` cell with top-level ``await``
runs on the kernel's own event loop (which goes on meanwhile), replays after a crash and
a restart, is interrupted cleanly, attaches from a second kernel, and ``%%zart_step``
cells await too. Side effects of steps are counted in a file."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from .driver import KernelDriver
from .reading import counts, summary

pytestmark = pytest.mark.kernel

SETUP = '''
import asyncio
from zart_nb import step, schedule, wait, sleep
LOG = {log!r}

@step("fetch-{{i}}")
async def fetch(i):
    with open(LOG, "a") as f:
        f.write(f"{{i}}\\n")
    await asyncio.sleep({delay})
    print(f"fetched {{i}}", flush=True)
    return i * i
'''

SQUARE = '''
@step("square-{i}")
async def square(i):
    await asyncio.sleep(0.05)
    return i * i
'''

CELL = '''%%zart_durable {name}
squares = await asyncio.gather(*(fetch(i) for i in range({n})))
await sleep("pause", 0.05)
total = sum(squares)
total
'''


def setup(kernel: KernelDriver, log: Path, delay: float | str) -> None:
    """Define ``fetch`` in the kernel; ``delay``: its seconds, or an expression of ``i``."""
    kernel.execute(SETUP.format(log=str(log), delay=delay), check=True)


def test_an_awaiting_durable_cell_runs_on_the_kernel_loop_which_goes_on(kernel, tmp_path):
    log = tmp_path / "effects.txt"
    setup(kernel, log, 0.5)
    # a task of the kernel's loop that counts its turns: a blocked loop would not count
    kernel.execute("ticks = []\nasync def tick():\n    while True:\n        ticks.append(1)\n"
                   "        await asyncio.sleep(0.02)\nticker = asyncio.ensure_future(tick())",
                   check=True)
    before = int(kernel.execute("len(ticks)", check=True).result["text/plain"])

    r = kernel.execute(CELL.format(name="gathered", n=6), timeout=60, check=True)

    assert r.result == {"text/plain": "55"}
    assert summary(r.stdout, "gathered") == (0, 7)
    during = int(kernel.execute("ticker.cancel()\nlen(ticks)", check=True).result["text/plain"])
    assert during - before >= 10, "the kernel's event loop was blocked while the cell awaited"
    assert kernel.execute("squares, total", check=True).result == {
        "text/plain": "([0, 1, 4, 9, 16, 25], 55)"}
    assert counts(log) == Counter(range(6))


# an async step that notes its start, then takes 0.2 s per unit of ``i``
SLOW = '''
@step("slow-{i}")
async def slow(i):
    with open(LOG, "a") as f:
        f.write(f"{i}\\n")
    await asyncio.sleep(0.2 * (i + 1))
    print(f"done {i}", flush=True)
    return i
'''


def test_sigkill_mid_gather_then_restart_replays_the_committed_steps(kernel, tmp_path):
    log = tmp_path / "effects.txt"
    setup(kernel, log, 0.0)
    kernel.execute(SLOW, check=True)
    cell = ("%%zart_durable crash\nvalues = await asyncio.gather(*(slow(i) for i in range(6)))\n"
            "sum(values)")
    h = kernel.submit(cell)
    kernel.collect(h, timeout=60, stop_when=lambda r: "done 2" in r.stdout)
    time.sleep(0.1)  # the completions of that moment committed
    kernel.kill_hard()
    kernel.collect(h, timeout=10)
    assert h.status == "died"
    at_crash = counts(log)
    assert all(at_crash[i] == 1 for i in range(6))  # all six had started

    kernel.restart()
    setup(kernel, log, 0.0)
    kernel.execute(SLOW, check=True)
    r = kernel.execute(cell, timeout=60, check=True)

    assert r.result == {"text/plain": "15"}
    replayed, executed = summary(r.stdout, "crash")
    assert replayed >= 3 and replayed + executed == 6
    final = counts(log)
    assert [final[i] for i in range(3)] == [1, 1, 1]  # committed before the kill: not again
    assert all(final[i] in (1, 2) for i in range(3, 6))
    assert sum(final.values()) == 6 + executed


def test_interrupting_an_awaited_step_releases_the_run_and_the_cell_resumes(kernel, tmp_path):
    log = tmp_path / "effects.txt"
    setup(kernel, log, 0.0)
    kernel.execute('''
@step("long")
async def long():
    try:
        await asyncio.sleep(60)
    finally:
        with open(LOG, "a") as f:
            f.write("99\\n")
    return "never"
''', check=True)
    cell = ("%%zart_durable stop-me\nfirst = await fetch(1)\nprint('first done', flush=True)\n"
            "second = await long()\nsecond")
    h = kernel.submit(cell)
    kernel.collect(h, timeout=60, stop_when=lambda r: "first done" in r.stdout)
    time.sleep(0.3)
    kernel.interrupt()
    r = kernel.collect(h, timeout=30)

    assert r.status == "error" and r.error["ename"] == "CancelledError"
    assert "run 'stop-me' interrupted; the journal keeps every committed step" in r.stdout
    assert counts(log)[99] == 1  # the step's coroutine was cancelled: its finally ran
    status = kernel.execute("from zart_nb import run\nrun('stop-me').row()['status'], "
                            "run('stop-me').row()['owner']", check=True)
    assert status.result == {"text/plain": "('failed', None)"}
    # the kernel goes on, and the cell resumes where it stopped
    kernel.execute('''
@step("long")
async def long():
    return "now quick"
''', check=True)
    again = kernel.execute(cell, timeout=60, check=True)
    assert again.result == {"text/plain": "'now quick'"}
    assert summary(again.stdout, "stop-me") == (1, 1)
    assert counts(log)[1] == 1


def test_a_second_kernel_attaches_to_an_awaiting_cell_and_ends_with_its_variables(kernels,
                                                                                 tmp_path):
    log = tmp_path / "effects.txt"
    first, second = kernels(), kernels()
    for k in (first, second):
        setup(k, log, 0.6)
    cell = CELL.format(name="shared", n=4)
    h = first.submit(cell)
    first.collect(h, timeout=60, stop_when=lambda r: "fetched" in r.stdout)

    r = second.execute(cell, timeout=60, check=True)

    assert "attached to run 'shared'" in r.stdout
    assert summary(r.stdout, "shared") == (5, 0)  # replayed here once the owner finished
    assert r.result == {"text/plain": "14"}
    owner = first.collect(h, timeout=60, check=True)
    assert owner.result == {"text/plain": "14"}
    assert counts(log) == Counter(range(4))  # executed once, by the owner


def test_an_awaiting_cell_waits_for_children_with_the_progress_widget(kernel, tmp_path):
    log = tmp_path / "effects.txt"
    setup(kernel, log, 0.0)
    kernel.execute(SQUARE, check=True)  # defined in the notebook: it travels by value
    r = kernel.execute("%%zart_durable kids\nhandles = [schedule(square, i) for i in range(4)]\n"
                       "await wait(handles)", timeout=90, check=True)
    assert r.result == {"text/plain": "[0, 1, 4, 9]"}
    assert r.widget_views, "the progress of the children was shown"


def test_awaiting_step_cells_run_once_then_restore(kernel, tmp_path):
    log = tmp_path / "effects.txt"
    setup(kernel, log, 0.1)
    kernel.execute("%zart_run async-steps", check=True)
    cell = "%%zart_step load\nrows = await asyncio.gather(fetch(2), fetch(3))\nlen(rows)"
    r = kernel.execute(cell, timeout=60, check=True)
    assert r.result == {"text/plain": "2"}
    assert "step cell 'load' ran and was checkpointed in run 'async-steps'" in r.stdout

    kernel.restart()
    setup(kernel, log, 0.1)
    kernel.execute("%zart_run async-steps", check=True)
    again = kernel.execute(cell, timeout=60, check=True)
    assert "step cell 'load' restored" in again.stdout
    assert again.result == {"text/plain": "2"}
    assert kernel.execute("rows", check=True).result == {"text/plain": "[4, 9]"}
    assert counts(log) == Counter([2, 3])  # restored, not executed again


def test_an_awaiting_cell_with_autoawait_off_is_refused_in_one_line(kernel):
    kernel.execute("%autoawait off", check=True)
    r = kernel.execute("%%zart_durable no-await\nimport asyncio\nawait asyncio.sleep(0)")
    assert r.status == "error"
    assert "uses await, which needs IPython's autoawait on asyncio" in r.stderr


def test_zart_resume_executes_a_stopped_awaiting_cell_again(kernels, tmp_path):
    log = tmp_path / "effects.txt"
    # staggered, so that steps are still in flight when the first one has printed: with
    # equal delays all five could commit before the kill reached the kernel
    delay = "0.3 * (i + 1)"
    first = kernels()
    setup(first, log, delay)
    cell = CELL.format(name="resumable", n=5)
    h = first.submit(cell)
    first.collect(h, timeout=60, stop_when=lambda r: "fetched" in r.stdout)
    first.kill_hard()

    second = kernels()
    setup(second, log, delay)
    r = second.execute("%zart_resume resumable", timeout=60, check=True)

    assert "resuming run 'resumable'" in r.stdout
    assert r.result == {"text/plain": "30"}
    assert "fetched" in r.stdout  # the output of the resumed cell shows in this cell
    assert second.execute("total", check=True).result == {"text/plain": "30"}
    assert set(counts(log)) == set(range(5))
