"""The engine's hot paths: a sequential step's checkpoint, replay, and resuming a run.

sequential_steps: N trivial steps executed in a fresh run, per step, next to a raw
  ``INSERT`` + commit of the same bytes into a regular (not TEMP) bytea table on the
  same server in the same run: the ratio is the engine's overhead over one commit.
replay_rate: a completed run executed again, every step served from the journal.
restart_to_first_step: a run of 1000 completed steps that stopped is executed again in
  a new process (``python -c``); measured from just before the process is spawned to
  the moment the body of its first new step starts (interpreter, imports, store, one
  journal query, 1000 replays).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import execute
from zart_nb import codec, step
from zart_nb.engine.model import Options
from zart_nb.store.connection import close_store, get_store

from .common import SCHEMA, SECRET, Context, Figures, benchmark, best_of

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
    runs = 1 if ctx.quick else 3
    ctx.settings  # noqa: B018 - configures the process for this server
    store = get_store()
    execute(steps_body, (10,), name="warm-up", run_id=_run_id("warm"))

    def zart(durability: str) -> float:
        return best_of(runs, lambda: execute(steps_body, (n,), name="seq", run_id=_run_id("seq"),
                                             options=Options(durability=durability)))

    with store.connection() as conn:
        conn.execute(RAW_TABLE)
        data = codec.encode(12345)  # a trivial step's result, as the engine stores it

        def raw() -> None:
            for i in range(n):
                conn.execute("INSERT INTO raw_steps (id, data) VALUES (%s, %b)", (i, data))

        raw_s = best_of(runs, raw, reset=lambda: conn.execute("TRUNCATE raw_steps"))
        conn.execute("DROP TABLE raw_steps")
    sync_s, async_s = zart("sync"), zart("async")
    return {
        "steps": n,
        "zart_us_per_step": round(sync_s / n * 1e6, 1),
        "raw_insert_commit_us": round(raw_s / n * 1e6, 1),
        "zart_over_raw": round(sync_s / raw_s, 2),
        "zart_async_us_per_step": round(async_s / n * 1e6, 1),  # durability="async"
    }


@benchmark("replay_rate")
def replay_rate(ctx: Context) -> Figures:
    n = 2000 if ctx.quick else 10_000
    runs = 1 if ctx.quick else 3
    ctx.settings  # noqa: B018
    run_id = _run_id("replay")
    execute(steps_body, (n,), name="replay", run_id=run_id, options=Options(durability="async"))

    def again() -> None:
        outcome = execute(steps_body, (n,), name="replay", run_id=run_id, replay_completed=True)
        assert len(outcome.report.replayed) == n and not outcome.report.executed

    seconds = best_of(runs, again)
    return {"steps": n, "replay_s": round(seconds, 4), "steps_per_s": round(n / seconds)}


# The resumed process: replays the journal, reports the instant its first new step
# starts, and stops there (os._exit: as abrupt as a crash, the run stays resumable).
RESUME = """
import os, sys, time
from zart_nb import step
from tests.helpers import execute
from benchmarks.engine import steps_body

@step("first-new")
def first_new():
    print(time.time(), flush=True)
    os._exit(0)

def body(n):
    steps_body(n)
    first_new()

execute(body, (int(sys.argv[1]),), name="resume", run_id=sys.argv[2])
"""


class _Stop(Exception):
    pass


def _stopped_body(n):
    steps_body(n)
    raise _Stop("stopped before its next step")


@benchmark("restart_to_first_step")
def restart_to_first_step(ctx: Context) -> Figures:
    n = 1000
    runs = 1 if ctx.quick else 3
    s = ctx.settings
    run_id = _run_id("resume")
    with contextlib.suppress(_Stop):
        execute(_stopped_body, (n,), name="resume", run_id=run_id)
    close_store()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=s.database_url, ZART_SECRET=SECRET.decode(), ZART_SCHEMA=SCHEMA)

    def once(code: str, *args: str) -> tuple[float, str]:
        start = time.time()
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, check=True,
                             capture_output=True, text=True, timeout=120).stdout
        return start, out

    times = []
    for _ in range(runs):
        start, out = once(RESUME, str(n), run_id)
        times.append(float(out.split()[0]) - start)
    bare = min(_elapsed(once, "pass") for _ in range(runs))
    imports = min(_elapsed(once, "import zart_nb.engine.execute, benchmarks.engine")
                  for _ in range(runs))
    return {"replayed_steps": n, "to_first_new_step_s": round(min(times), 3),
            "python_startup_s": round(bare, 3), "python_and_imports_s": round(imports, 3)}


def _elapsed(once, code: str) -> float:
    start = time.time()
    once(code)
    return time.time() - start
