"""Memory of a replay: results must be unpickled lazily, when the body asks for them.

replay_memory: a run whose steps returned distinct 10 MiB ``bytes`` (1,000 MiB in all;
  200 MiB with --quick) is executed again in a fresh process, every step replayed. The
  peak RSS of that process (Linux's VmHWM) above its RSS just before the replay is
  reported for a body that discards each result and for a body that keeps them all. Lazy
  loading shows as a discarding peak that does not grow with the run: it is measured
  again on a run a fifth of the size (the last figure), and should be the same.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.helpers import execute
from zart_nb import step
from zart_nb.engine.model import Options
from zart_nb.store.connection import close_store

from .common import SCHEMA, SECRET, Context, Figures, benchmark

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


# The replaying process: its peak RSS during the replay, above its RSS just before. Linux's
# VmHWM is per address space (ru_maxrss survives exec, so a big parent would leak into it),
# and writing 5 to clear_refs resets it to the current RSS.
REPLAY = """
import json, sys
from tests.helpers import execute
from zart_nb.store.connection import get_store
from benchmarks.memory import replay_body

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

n, size, keep, run_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "keep", sys.argv[4]
with get_store().connection() as conn:
    conn.execute("SELECT 1")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
out = execute(replay_body, (n, size, keep), name="memory", run_id=run_id, replay_completed=True)
assert len(out.report.replayed) == n and not out.report.executed, out.report
print(json.dumps({"before_kib": before, "after_kib": status("VmHWM")}))
"""


@benchmark("replay_memory")
def replay_memory(ctx: Context) -> Figures:
    sizes = (5, 20) if ctx.quick else (20, 100)  # steps: a small run, then the stated one
    s = ctx.settings
    run_ids = {}
    for n in sizes:
        run_ids[n] = f"bench-memory-{os.getpid()}-{next(_ids)}"
        execute(replay_body, (n, RESULT, False), name="memory", run_id=run_ids[n],
                options=Options(durability="async"))
    close_store()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=s.database_url, ZART_SECRET=SECRET.decode(), ZART_SCHEMA=SCHEMA)

    def peak(n: int, mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", REPLAY, str(n), str(RESULT), mode,
                              run_ids[n]], cwd=REPO, env=env, check=True, capture_output=True,
                             text=True, timeout=600).stdout
        got = json.loads(out)
        return (got["after_kib"] - got["before_kib"]) / 1024

    small, n = sizes
    discard, keep, discard_small = peak(n, "discard"), peak(n, "keep"), peak(small, "discard")
    return {"steps": n, "result_mib": RESULT // MiB, "stored_mib": n * RESULT // MiB,
            "replay_peak_mib_discarding": round(discard, 1),
            "replay_peak_mib_keeping_all": round(keep, 1),
            "discarding_peak_in_results": round(discard / (RESULT / MiB), 2),
            f"replay_peak_mib_discarding_{small * RESULT // MiB}mib_stored": round(discard_small, 1)}
