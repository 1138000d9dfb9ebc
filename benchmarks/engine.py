"""The engine's hot paths: a sequential step's checkpoint, replay, and resuming a run.

sequential_steps: N trivial steps executed in a fresh run, per step, next to a raw
  ``INSERT`` + commit of the same bytes into a regular (not TEMP) bytea table on the
  same server in the same run: the ratio is the engine's overhead over one commit.
commit_statement: the statements that commit a step, one at a time on one connection with
  ``synchronous_commit`` off (the server's and the client's work, not the disk's): a raw
  ``INSERT`` of the same bytes into a 2-column table, ``insert_step`` (a step's first
  commit) and ``complete_step`` (the upsert for re-executions and stored payloads), each
  1,000 times (quick: 200) on a run its connection owns; medians of 9 alternated rounds
  (quick: 1), in microseconds a statement.
replay_rate: a completed run executed again, every step served from the journal.
restart_to_first_step: a run of 10,000 completed steps (quick: 2,000) whose process was
  SIGKILLed as its next step started is executed again in a new process (``python -c``),
  itself killed at that step. replay_s: from the body's call (imports done, the store's
  pool open) to the start of the first new step (the claim, the journal's one query, the
  replays); to_first_new_step_s: from just before the process is spawned (interpreter
  and imports included). Figures are medians of 3 (1 with --quick); the sequential ratio
  is the median of 5 alternated rounds, replay_rate the median of 5.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import execute
from zart_nb import codec, step
from zart_nb.engine.model import Options
from zart_nb.store.sql import query

from .common import SCHEMA, SECRET, Context, Figures, benchmark, median_of

REPO = Path(__file__).resolve().parents[1]
RAW_TABLE = "CREATE TABLE IF NOT EXISTS raw_steps (id integer PRIMARY KEY, data bytea NOT NULL)"
_ids = itertools.count()


@step("s-{i}")
def trivial(i):
    return i


def steps_body(n):
    for i in range(n):
        trivial(i)
    return n


def _run_id(label: str) -> str:
    return f"bench-{label}-{os.getpid()}-{next(_ids)}"


@benchmark("sequential_steps")
def sequential_steps(ctx: Context) -> Figures:
    n = 300 if ctx.quick else 2000
    rounds = 1 if ctx.quick else 5
    s = ctx.settings
    execute(steps_body, (10,), name="warm-up", run_id=_run_id("warm"))

    def zart(durability: str) -> float:
        return median_of(1, lambda: execute(steps_body, (n,), name="seq", run_id=_run_id("seq"),
                                            options=Options(durability=durability)))

    data = codec.encode(12345)  # a trivial step's result, as the engine stores it
    with psycopg.connect(s.database_url, autocommit=True,
                         options=f"-c search_path={SCHEMA}") as conn:
        conn.execute(RAW_TABLE)

        def raw() -> None:
            for i in range(n):
                conn.execute("INSERT INTO raw_steps (id, data) VALUES (%s, %b)", (i, data))

        raw_s, zart_s = [], []
        for _ in range(rounds):  # alternating: a busy moment of the machine hits both sides
            raw_s.append(median_of(1, raw, reset=lambda: conn.execute("TRUNCATE raw_steps")))
            zart_s.append(zart("sync"))
        conn.execute("DROP TABLE raw_steps")
    async_s = statistics.median(zart("async") for _ in range(rounds))
    return {
        "steps": n,
        "zart_us_per_step": round(statistics.median(zart_s) / n * 1e6, 1),
        "raw_insert_commit_us": round(statistics.median(raw_s) / n * 1e6, 1),
        "zart_over_raw": round(statistics.median(z / r for z, r in zip(zart_s, raw_s, strict=True)), 2),
        "zart_async_us_per_step": round(async_s / n * 1e6, 1),  # durability="async"
    }


@benchmark("commit_statement")
def commit_statement(ctx: Context) -> Figures:
    n = 200 if ctx.quick else 1000
    rounds = 1 if ctx.quick else 9
    s = ctx.settings
    run_id = _run_id("statement")
    execute(steps_body, (1,), name="statement", run_id=run_id)
    data = codec.encode(12345)

    def step_params(i: int) -> dict[str, Any]:
        return {"run_id": run_id, "generation": 1, "owner": "bench", "name": f"x-{i}",
                "kind": "step", "seq": i, "code_fp": bytes(17), "args_fp": bytes(17),
                "result": data, "hash": None, "data": None, "size": len(data), "attempt": 1,
                "max_attempts": 1, "started_at": None}

    statements = {
        "raw_insert": ("INSERT INTO raw_steps (id, data) VALUES (%s, %b)", lambda i: (i, data)),
        "insert_step": (query("insert_step").text, step_params),
        "complete_step": (query("complete_step").text, step_params),
    }
    times: dict[str, list[float]] = {label: [] for label in statements}
    with psycopg.connect(s.database_url, autocommit=True,
                         options=f"-c search_path={SCHEMA}") as conn:
        conn.execute(RAW_TABLE)
        conn.execute("SET synchronous_commit TO off")
        conn.execute("UPDATE runs SET status = 'running', owner = 'bench' WHERE run_id = %s",
                     (run_id,))

        def reset() -> None:
            conn.execute("TRUNCATE raw_steps")
            conn.execute("DELETE FROM steps WHERE run_id = %s AND name LIKE 'x-%%'", (run_id,))

        def run(text: Any, rows: list[Any]) -> float:
            reset()
            start = time.perf_counter()
            for row in rows:
                conn.execute(text, row, prepare=True)
            return time.perf_counter() - start

        for _ in range(rounds):  # alternating: a busy moment of the machine hits all three
            for label, (text, params) in statements.items():
                times[label].append(run(text, [params(i) for i in range(n)]))
        conn.execute("DROP TABLE raw_steps")
    figures: Figures = {"statements": n}
    for label, seconds in times.items():
        figures[f"{label}_us"] = round(statistics.median(seconds) / n * 1e6, 1)
    return figures


@benchmark("replay_rate")
def replay_rate(ctx: Context) -> Figures:
    n = 2000 if ctx.quick else 10_000
    runs = 1 if ctx.quick else 5
    ctx.settings  # noqa: B018
    run_id = _run_id("replay")
    execute(steps_body, (n,), name="replay", run_id=run_id, options=Options(durability="async"))

    def again() -> None:
        outcome = execute(steps_body, (n,), name="replay", run_id=run_id, replay_completed=True)
        assert len(outcome.report.replayed) == n and not outcome.report.executed

    seconds = median_of(runs, again)
    return {"steps": n, "replay_s": round(seconds, 4), "steps_per_s": round(n / seconds)}


# A process that executes the run (a fresh one replays it) and is SIGKILLed as its first
# new step starts. It prints when it is ready to call the body (imports done, the store's
# pool open, as in a kernel that already ran a cell) and when that step starts.
KILLED = """
import os, signal, sys, time
from zart_nb import step
from zart_nb.engine.model import Options
from zart_nb.store.sql import query
from zart_nb.store.connection import get_store
from tests.helpers import execute
from benchmarks.engine import steps_body

@step("first-new")
def first_new():
    print(time.time(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

def body(n):
    steps_body(n)
    first_new()

get_store()
print(time.time(), flush=True)
execute(body, (int(sys.argv[1]),), name="resume", run_id=sys.argv[2],
        options=Options(durability="async"))
"""


@benchmark("restart_to_first_step")
def restart_to_first_step(ctx: Context) -> Figures:
    n = 2000 if ctx.quick else 10_000
    runs = 1 if ctx.quick else 3
    s = ctx.settings
    run_id = _run_id("killed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=s.database_url, ZART_SECRET=SECRET.decode(), ZART_SCHEMA=SCHEMA)

    def once(code: str, *args: str) -> tuple[float, list[float]]:
        start = time.time()
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode not in (0, -signal.SIGKILL):
            raise RuntimeError(done.stderr[-2000:])
        return start, [float(line) for line in done.stdout.split()]

    once(KILLED, str(n), run_id)  # executes the n steps, killed at the next one
    replays, restarts = [], []
    for _ in range(runs):
        start, (ready, first_new) = once(KILLED, str(n), run_id)
        replays.append(first_new - ready)
        restarts.append(first_new - start)
    bare = statistics.median(_elapsed(once, "pass") for _ in range(runs))
    imports = statistics.median(_elapsed(once, "import zart_nb.engine.execute, benchmarks.engine")
                                for _ in range(runs))
    replay_s = statistics.median(replays)
    return {"replayed_steps": n, "replay_s": round(replay_s, 4),
            "replay_steps_per_s": round(n / replay_s),
            "to_first_new_step_s": round(statistics.median(restarts), 3),
            "python_startup_s": round(bare, 3), "python_and_imports_s": round(imports, 3)}


def _elapsed(once: Any, code: str) -> float:
    start = time.time()
    once(code)
    return time.time() - start
