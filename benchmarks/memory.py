"""Memory of a replay: results must be unpickled lazily, when the body asks for them.

replay_memory: a run whose steps returned distinct 10 MiB ``bytes`` (1 GiB in all; 200
  MiB with --quick) is executed again in a fresh process, every step replayed. The
  peak RSS of that process (``ru_maxrss``) above its level just before the replay is
  reported for a body that discards each result (it should stay near one result: the
  journal query brings no large result, each is fetched and unpickled on its call) and
  for a body that keeps them all (near the total), so that the two can be compared.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from zart_nb import step
from zart_nb.engine.execute import Options, execute
from zart_nb.store.connection import close_store

from .common import SECRET, SCHEMA, Context, Figures, benchmark

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
RESULT = 10 * MiB
_ids = itertools.count()


@step("blob-{i}")
def blob(i, size):
    return random.Random(i).randbytes(size)  # distinct: payloads are stored once per content


def replay_body(n, size, keep):
    kept = []
    for i in range(n):
        value = blob(i, size)
        if keep:
            kept.append(value)
    return n


# The replaying process: its RSS high-water mark before and after the replay.
REPLAY = """
import json, resource, sys
from zart_nb.engine.execute import execute
from zart_nb.store.connection import get_store
from benchmarks.memory import replay_body

n, size, keep, run_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "keep", sys.argv[4]
with get_store().connection() as conn:
    conn.execute("SELECT 1")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = execute(replay_body, (n, size, keep), name="memory", run_id=run_id, replay_completed=True)
assert len(out.report.replayed) == n and not out.report.executed, out.report
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after}))
"""


@benchmark("replay_memory")
def replay_memory(ctx: Context) -> Figures:
    n = 20 if ctx.quick else 100
    s = ctx.settings
    run_id = f"bench-memory-{os.getpid()}-{next(_ids)}"
    execute(replay_body, (n, RESULT, False), name="memory", run_id=run_id,
            options=Options(durability="async"))
    close_store()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=s.database_url, ZART_SECRET=SECRET.decode(), ZART_SCHEMA=SCHEMA)

    def peak(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", REPLAY, str(n), str(RESULT), mode, run_id],
                             cwd=REPO, env=env, check=True, capture_output=True, text=True,
                             timeout=600).stdout
        got = json.loads(out)
        return (got["after_kib"] - got["before_kib"]) / 1024

    discard, keep = peak("discard"), peak("keep")
    return {"steps": n, "result_mib": RESULT // MiB, "stored_mib": n * RESULT // MiB,
            "replay_peak_mib_discarding": round(discard, 1),
            "replay_peak_mib_keeping_all": round(keep, 1),
            "discarding_peak_in_results": round(discard / (RESULT / MiB), 2)}
