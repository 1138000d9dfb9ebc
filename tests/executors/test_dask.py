"""Children on a real Dask cluster (a LocalCluster of worker processes), the journal in
PostgreSQL: a Dask worker killed mid-way, the body's process killed mid-way, large
results into the payload store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

from tests.fanout.helpers import kill, lines, runs_per_child
from tests.helpers import REPO, execute, until

from . import bodies

N = 500


def count(sql, status: str) -> int:
    return sql("SELECT count(*) AS n FROM steps WHERE kind = 'child' AND status = %s",
               status)[0]["n"]


def test_500_children_complete_once_when_a_dask_worker_is_killed_midway(
        env, sql, completions, dask_client, tmp_path):
    env(ZART_WORKERS=0)
    log = tmp_path / "effects.log"
    bodies.EXECUTOR["executor"] = dask_client
    box: dict = {}

    def body() -> None:
        try:
            box["outcome"] = execute(bodies.fan, (str(log), N, 0.02), name="fan", run_id="dask-wide")
        except BaseException as exc:  # handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    until(lambda: count(sql, "completed") >= N // 4, timeout=120, every=0.01,
          what="a quarter of the children completed")
    victim = next(iter(dask_client.run(os.getpid).values()))  # a worker process (its nanny restarts it)
    os.kill(victim, signal.SIGKILL)
    thread.join(180)
    assert not thread.is_alive(), "the body did not end"
    assert "error" not in box, box.get("error")

    assert box["outcome"].value == [i * i for i in range(N)]
    rows = sql("SELECT name, status, attempts, worker FROM steps WHERE kind = 'child'")
    assert len(rows) == N and {r["status"] for r in rows} == {"completed"}
    workers = {r["worker"] for r in rows}  # the body, as the executor's zart-nb worker
    assert len(workers) == 1 and workers.pop().startswith("executor:")
    # each child's result was written once, whatever ran twice
    writes = Counter(completions())
    assert len(writes) == N and set(writes.values()) == {1}
    # the tasks Dask lost with the worker were submitted again, their attempt counted
    lost = {r["name"] for r in rows if r["attempts"] > 1}
    assert lost, "no task was lost with the killed worker"
    history = sql("SELECT name, attempt, error FROM step_attempts")
    assert {h["name"] for h in history} == lost
    assert all("KilledWorker" in h["error"] and h["attempt"] == 1 for h in history), history
    # every child ran; one ran twice only when the killed worker had it: lost while it
    # ran (attempt counted), or finished there with its result lost before the body
    # gathered it (Dask computes it again by itself, same attempt); the result committed
    # is the one of its last attempt, which ran
    runs = runs_per_child(log)
    assert len(runs) == N
    on_victim = {name for name, _, pid in lines(log) if int(pid) == victim}
    assert on_victim, "the victim had run children"
    assert {name for name, n in runs.items() if n > 1} <= on_victim
    ran = {(name, int(attempt)) for name, attempt, _ in lines(log)}
    assert all((r["name"], r["attempts"]) in ran for r in rows)


def fan_script(address: str, run_id: str, log, n: int, delay: float, seed: str):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.executors.scripts.fan", address, run_id, str(log), str(n),
         str(delay)], cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_body_killed_mid_fan_out_resubmits_only_children_without_a_committed_result(
        env, sql, dask_cluster, tmp_path):
    # leases of 10 minutes: the new body must take the dead body's children over at
    # once (it owns the run now), not wait for their leases to expire
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=600)
    log = tmp_path / "effects.log"
    address = f"dask://{dask_cluster.scheduler_address}"
    first = fan_script(address, "killed", log, 40, 0.3, "0")
    until(lambda: count(sql, "completed") >= 6 and count(sql, "running") > 0, timeout=120,
          every=0.01, what="children completed and children in flight")
    out, err = kill(first)
    assert sql("SELECT status FROM runs WHERE run_id = 'killed'")[0]["status"] == "waiting", err
    done = {r["name"] for r in sql("SELECT name FROM steps WHERE status = 'completed'")}
    in_flight = {r["name"] for r in sql("SELECT name FROM steps WHERE status = 'running'")}
    assert in_flight

    second = fan_script(address, "killed", log, 40, 0.3, "4242")  # a fresh process, another seed
    out, err = second.communicate(timeout=180)
    assert second.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])

    assert report["result"] == [i * i for i in range(40)]
    assert set(report["replayed"]) >= done
    runs = runs_per_child(log)
    assert len(runs) == 40 and all(runs[name] == 1 for name in done)  # loaded, not run again
    assert {name for name, n in runs.items() if n > 1} <= in_flight
    rows = {r["name"]: r for r in sql("SELECT name, status, attempts FROM steps")}
    assert all(rows[name]["attempts"] == 2 for name in in_flight)  # taken over, counted
    assert {r["status"] for r in rows.values()} == {"completed"}


def test_large_results_go_into_the_payload_store_once(env, sql, dask_client):
    env(ZART_WORKERS=0)
    bodies.EXECUTOR["executor"] = dask_client
    outcome = execute(bodies.each, (bodies.big, 3), name="big", run_id="big")

    assert outcome.value == [bytes([i]) * 100_000 for i in range(3)]
    rows = sql("SELECT result IS NULL AS out_of_line, result_hash FROM steps WHERE kind = 'child'")
    assert all(r["out_of_line"] and r["result_hash"] for r in rows)
    assert sql("SELECT count(*) AS n FROM payloads p JOIN steps s ON s.result_hash = p.hash")[0]["n"] == 3
    again = execute(bodies.each, (bodies.big, 3), name="big", run_id="big", replay_completed=True)
    assert again.value == outcome.value and again.report.replayed == [f"big-{i}" for i in range(3)]
