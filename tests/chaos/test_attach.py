"""Four processes executing the same run at once (DESIGN.md §2.6): one body runs, the
other three attach to it and return the same result; every step runs once.

Reuses the engine suite's crash body (tests/engine/scripts/crash_body.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.engine.helpers import executions, spawn_crash_body
from tests.engine.scripts.crash_body import expected

from .figures import record


def race(tmp_path, run_id: str, processes: int, n: int) -> dict:
    log = tmp_path / f"{run_id}.log"
    started = time.monotonic()
    racers = [spawn_crash_body(run_id, log, "--n", str(n), "--step-sleep", "0.05")
              for _ in range(processes)]
    outs = []
    for proc in racers:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout))
    elapsed = time.monotonic() - started
    assert [o["result"] for o in outs] == [expected(n)] * processes
    assert sorted(o["attached"] for o in outs) == [False] + [True] * (processes - 1)
    counts = executions(log)
    assert counts == {"fetch": 1, **{f"process-{i}": 1 for i in range(n)}}
    return {"processes": processes, "steps": n + 1, "bodies_run": 1,
            "attached": processes - 1, "step_executions": sum(counts.values()),
            "seconds": round(elapsed, 1)}


def test_four_processes_one_run_one_body(zart_env, tmp_path):
    record("attach", "four_processes", **race(tmp_path, "race-4", 4, 10))


@pytest.mark.slow
def test_four_processes_one_run_repeated(zart_env, tmp_path):
    rounds = [race(tmp_path, f"race-{i}", 4, 30) for i in range(5)]
    record("attach", "four_processes_x5", rounds=len(rounds), processes=4, steps=31,
           bodies_run=5, attached=15, step_executions=sum(r["step_executions"] for r in rounds),
           seconds=round(sum(r["seconds"] for r in rounds), 1))
