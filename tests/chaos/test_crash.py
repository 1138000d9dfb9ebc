"""A durable run with fan-out, killed with SIGKILL at random points and executed again.

Checked after every kill and at the end (DESIGN.md §2.1):
- the final result equals an uninterrupted run's;
- no step or child whose completion was committed at a kill runs again afterwards
  (the journal is read after each kill, once the dead body's workers have exited);
- a step or child runs again only when a kill fell between its two executions while it
  was not committed: in flight (at-least-once), never otherwise.

Short version (CI): 50 steps, 4 kills. ``make chaos``: 200 steps, 20 kills.
"""

from __future__ import annotations

import itertools
import random
import time

import pytest

from .figures import record
from .helpers import (
    committed,
    executions,
    finish,
    kill_body,
    log_records,
    spawn_body,
    wait_lines,
)
from .scripts.bodies import mixed_expected, plan


def mixed_args(steps: int, blocks: int, children: int) -> tuple[str, ...]:
    return ("--steps", str(steps), "--blocks", str(blocks), "--children", str(children))


def crash_run(db_url: str, tmp_path, *, steps: int, blocks: int, children: int, kills: int,
              seed: int) -> dict:
    rng = random.Random(seed)
    args = mixed_args(steps, blocks, children)
    units = steps + blocks * children  # side-effect lines of an uninterrupted run
    log = tmp_path / "effects.log"
    run_id = f"crash-{seed}"
    snapshots = []  # (lines in the log at the kill, names committed at the kill)
    points = sorted(rng.sample(range(1, units), kills))
    started = time.monotonic()
    for point in points:
        lines_now = len(log_records(log))
        proc = spawn_body("mixed", run_id, log, *args)
        # the point counts lines of all executions so far: each kill lands further on
        reached = wait_lines(log, max(point, lines_now + 1), proc)
        if not reached:  # the body finished before the point: nothing left to kill
            finish(proc)
            break
        time.sleep(rng.uniform(0, 0.012))
        kill_body(proc, db_url)
        snapshots.append((len(log_records(log)), committed(db_url, run_id)))
    final = finish(spawn_body("mixed", run_id, log, *args))
    elapsed = time.monotonic() - started

    records = [r for r in log_records(log) if r[0] != "done"]
    # 1. nothing committed at a kill runs again afterwards
    for cut, done in snapshots:
        again = [r[0] for r in records[cut:] if r[0] in done]
        assert not again, f"committed steps executed again after a kill: {again[:10]}"
    # 2. a second execution only across a kill that found the step uncommitted
    positions: dict[str, list[int]] = {}
    for index, r in enumerate(records):
        positions.setdefault(r[0], []).append(index)
    for name, where in positions.items():
        for first, second in itertools.pairwise(where):
            assert any(first < cut <= second and name not in done for cut, done in snapshots), \
                f"{name} executed twice without a kill in between ({first}, {second})"
    counts = executions(records)
    expected_names = {f"s-{i}" for i in range(steps)} | {
        f"c-{b}-{j}" for b, (_, n) in enumerate(plan(steps, blocks, children)) for j in range(n)}
    assert set(counts) == expected_names
    assert final["result"] == mixed_expected(steps, blocks, children)
    return {"steps": steps, "children": blocks * children, "kills": len(snapshots),
            "executions": sum(counts.values()), "re_executed": sorted(n for n, c in counts.items() if c > 1),
            "max_executions": max(counts.values()), "seconds": round(elapsed, 1), "seed": seed}


def test_killed_at_random_points_short(zart_env, tmp_path, pg_server):
    figures = crash_run(zart_env.database_url, tmp_path, steps=40, blocks=2, children=5,
                        kills=4, seed=8)
    uninterrupted = finish(spawn_body("mixed", "reference", tmp_path / "reference.log",
                                      *mixed_args(40, 2, 5)))
    assert uninterrupted["result"] == mixed_expected(40, 2, 5)
    record("crash", "sigkill_short", **figures)


@pytest.mark.slow
def test_killed_at_20_random_points(zart_env, tmp_path):
    figures = crash_run(zart_env.database_url, tmp_path, steps=160, blocks=4, children=10,
                        kills=20, seed=2024)
    uninterrupted = finish(spawn_body("mixed", "reference", tmp_path / "reference.log",
                                      *mixed_args(160, 4, 10)))
    assert uninterrupted["result"] == mixed_expected(160, 4, 10)
    record("crash", "sigkill_long", **figures)
