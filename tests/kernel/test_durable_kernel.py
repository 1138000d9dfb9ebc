"""%%zart_durable in real kernels: a crash (SIGKILL) and a restart, an interrupt, and two
kernels executing the same cell at once. Side effects of steps are counted in a file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from .reading import counts, summary

pytestmark = pytest.mark.kernel

SETUP = '''
import time
from zart_nb import step
LOG = {log!r}

@step("work-{{i}}")
def work(i):
    with open(LOG, "a") as f:
        f.write(f"{{i}}\\n")
    time.sleep({delay})
    return i * i
'''

CELL = '''%%zart_durable {name}
results = []
for i in range({n}):
    results.append(work(i))
    print(f"committed {{i}}", flush=True)
total = sum(results)
total
'''


def test_sigkill_mid_run_then_rerun_resumes(kernel, tmp_path: Path):
    log = tmp_path / "side-effects.txt"
    kernel.execute(SETUP.format(log=str(log), delay=0.4), check=True)
    cell = CELL.format(name="crash", n=6)
    h = kernel.submit(cell)
    kernel.collect(h, timeout=60, stop_when=lambda r: "committed 2" in r.stdout)
    kernel.kill_hard()
    kernel.collect(h, timeout=10)
    assert h.status == "died"
    at_crash = counts(log)
    assert all(at_crash[i] == 1 for i in range(3)) and sum(at_crash.values()) <= 4

    kernel.restart()
    r = kernel.execute("'results' in globals()", check=True)
    assert r.result == {"text/plain": "False"}
    kernel.execute(SETUP.format(log=str(log), delay=0.4), check=True)
    r = kernel.execute(cell, timeout=60, check=True)
    assert r.result == {"text/plain": "55"}
    replayed, executed = summary(r.stdout, "crash")
    assert replayed >= 3 and replayed + executed == 6
    final = counts(log)
    assert [final[i] for i in range(3)] == [1, 1, 1]  # committed before the kill: not again
    assert final[3] in (1, 2)  # in flight at the kill: at-least-once
    assert final[4] == final[5] == 1
    r = kernel.execute("results, total", check=True)
    assert r.result == {"text/plain": "([0, 1, 4, 9, 16, 25], 55)"}
    # executed once more, the finished run replays every step and binds the variables again
    kernel.execute("del results, total", check=True)
    r = kernel.execute(cell, timeout=60, check=True)
    assert summary(r.stdout, "crash") == (6, 0)
    assert counts(log) == final
    assert kernel.execute("total", check=True).result == {"text/plain": "55"}


def test_interrupt_then_rerun_resumes(kernel, tmp_path: Path):
    log = tmp_path / "side-effects.txt"
    kernel.execute(SETUP.format(log=str(log), delay=0.5), check=True)
    cell = CELL.format(name="intr", n=5)
    h = kernel.submit(cell)
    kernel.collect(h, timeout=60, stop_when=lambda r: "committed 1" in r.stdout)
    kernel.interrupt()
    kernel.collect(h, timeout=30)
    assert h.status == "error" and h.error["ename"] == "KeyboardInterrupt"
    assert "run 'intr' interrupted" in h.stdout and "run the cell again to resume" in h.stdout
    r = kernel.execute("from zart_nb import Run\nrow = Run('intr').row()\n(row['status'], row['owner'])",
                       check=True)
    assert r.result == {"text/plain": "('failed', None)"}  # released: anyone may go on

    r = kernel.execute(cell, timeout=60, check=True)
    assert r.result == {"text/plain": "30"}
    replayed, executed = summary(r.stdout, "intr")
    assert replayed >= 2 and replayed + executed == 5
    final = counts(log)
    assert final[0] == final[1] == 1 and all(final[i] >= 1 for i in range(5))
    assert sum(final.values()) <= 6
    r = kernel.execute("Run('intr').status, {s['status'] for s in Run('intr').steps}, "
                       "len(Run('intr').steps)", check=True)
    assert r.result == {"text/plain": "('completed', {'completed'}, 5)"}


def test_two_kernels_one_body_runs_the_other_attaches(kernels, tmp_path: Path):
    log = tmp_path / "side-effects.txt"
    first, second = kernels(), kernels()
    for kd in (first, second):
        kd.execute(SETUP.format(log=str(log), delay=0.3), check=True)
    cell = CELL.format(name="shared", n=5)
    a, b = first.submit(cell), second.submit(cell)
    first.collect(a, timeout=90)
    second.collect(b, timeout=90)
    assert a.status == b.status == "ok", (a.summary(), b.summary())
    assert a.result == b.result == {"text/plain": "30"}
    assert counts(log) == Counter(dict.fromkeys(range(5), 1))  # one body ran each step
    attached = [r for r in (a, b) if "attached to run 'shared'" in r.stdout]
    assert len(attached) == 1, (a.stdout, b.stdout)
    assert summary(attached[0].stdout, "shared") == (5, 0)
    for kd in (first, second):
        assert kd.execute("results", check=True).result == {"text/plain": "[0, 1, 4, 9, 16]"}
