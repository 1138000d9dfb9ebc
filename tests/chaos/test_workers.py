"""Fan-outs under worker deaths and under many workers (DESIGN.md §2.7).

- Workers killed with SIGKILL at random during a fan-out (leases of 2 s): every child
  completes, the result is right, and a child runs again only when a worker that was
  running it died (its lease expired; its attempt counted).
- 8 worker threads (2 processes x 4) on one fan-out, nobody killed: every child runs
  exactly once, attempt 1, and no lease ever expires.

Short versions (CI): 300 children with kills, 1,000 without. ``make chaos``: 2,000
with kills, 10,000 without.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.helpers import until

from .figures import record
from .helpers import executions, finish, journal, log_records, spawn_body
from .scripts.bodies import fan_expected


def fan_with_worker_kills(zart_env, env, workers, tmp_path, *, children: int, kills: int,
                          seed: int) -> dict:
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=2)
    rng = random.Random(seed)
    log = tmp_path / "children.log"
    for _ in range(3):
        workers.start(concurrency=2)
    started = time.monotonic()
    body = spawn_body("fan", "fan-kills", log, "--children", str(children), "--child-ms", "25")
    # kill points spread over the run: by the number of children executed so far
    for point in sorted(rng.sample(range(children // 10, children * 9 // 10), kills)):
        until(lambda point=point: len(log_records(log)) >= point or body.poll() is not None, 120,
              f"{point} children executed")
        if body.poll() is not None:
            break
        victim = rng.choice(workers.alive())
        workers.kill(victim)
        workers.start(concurrency=2)  # a replacement, as a supervisor would
    out = finish(body, timeout=300)
    elapsed = time.monotonic() - started

    assert out["result"] == fan_expected(children)
    rows = journal(zart_env.database_url, "fan-kills")
    children_rows = [r for r in rows if r["kind"] == "child"]
    assert len(children_rows) == children and all(r["status"] == "completed" for r in children_rows)
    records = log_records(log)
    counts = executions(records)
    assert set(counts) == {f"f-{j}" for j in range(children)}
    killed = {str(pid) for pid in workers.killed}
    by_child: dict[str, list[list[str]]] = {}
    for r in records:
        by_child.setdefault(r[0], []).append(r)
    for name, runs in by_child.items():
        # every execution but the last was on a worker that was killed, and each one
        # after a loss knows it is a later attempt
        assert all(r[2] in killed for r in runs[:-1]), (name, runs)
        assert [int(r[1]) for r in runs] == sorted(int(r[1]) for r in runs), (name, runs)
        if len(runs) > 1:
            assert int(runs[-1][1]) > 1, (name, runs)
    re_run = sorted(n for n, c in counts.items() if c > 1)
    return {"children": children, "workers": "3 processes x 2 threads", "worker_kills":
            len(workers.killed), "children_re_executed": len(re_run),
            "max_executions": max(counts.values()), "lease_s": 2, "seconds": round(elapsed, 1),
            "seed": seed}


def test_workers_killed_during_a_fan_out_short(zart_env, env, workers, tmp_path):
    figures = fan_with_worker_kills(zart_env, env, workers, tmp_path, children=300, kills=3,
                                    seed=7)
    record("workers", "worker_kills_short", **figures)


@pytest.mark.slow
def test_workers_killed_during_a_2000_child_fan_out(zart_env, env, workers, tmp_path):
    figures = fan_with_worker_kills(zart_env, env, workers, tmp_path, children=2000, kills=12,
                                    seed=2000)
    record("workers", "worker_kills_long", **figures)


def many_workers(zart_env, env, workers, tmp_path, *, children: int) -> dict:
    env(ZART_WORKERS=0)
    log = tmp_path / "children.log"
    for _ in range(2):
        workers.start(concurrency=4)
    started = time.monotonic()
    out = finish(spawn_body("fan", "fan-many", log, "--children", str(children),
                            "--child-ms", "1"), timeout=600)
    elapsed = time.monotonic() - started
    assert out["result"] == fan_expected(children)

    records = log_records(log)
    counts = executions(records)
    assert set(counts) == {f"f-{j}" for j in range(children)}
    twice = [n for n, c in counts.items() if c > 1]
    assert not twice, f"children executed twice without a lease expiry: {twice[:10]}"
    assert {r[1] for r in records} == {"1"}
    rows = [r for r in journal(zart_env.database_url, "fan-many") if r["kind"] == "child"]
    assert len(rows) == children
    assert {(r["status"], r["attempts"]) for r in rows} == {("completed", 1)}
    threads = {(r[2], r[3]) for r in records}
    return {"children": children, "workers": "2 processes x 4 threads",
            "worker_threads_used": len(threads), "executions": sum(counts.values()),
            "seconds": round(elapsed, 1), "children_per_s": round(children / elapsed)}


def test_eight_workers_run_each_child_once_short(zart_env, env, workers, tmp_path):
    record("workers", "eight_workers_short",
           **many_workers(zart_env, env, workers, tmp_path, children=1000))


@pytest.mark.slow
def test_eight_workers_on_10000_children(zart_env, env, workers, tmp_path):
    record("workers", "eight_workers_long",
           **many_workers(zart_env, env, workers, tmp_path, children=10_000))
