"""Start-up of the embedded PostgreSQL: first use of a fresh ZART_HOME, then warm.

Each start is measured in a new process, as a kernel or worker would meet it: from
importing zart-nb until the first query answered. First start includes initdb.
Warm start finds the running server through ``postmaster.pid``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from zart_nb.store import embedded

from .common import Context, Figures, benchmark

START = """
import json, sys, time
from pathlib import Path
start = time.perf_counter()
import psycopg
from zart_nb.store import embedded
url = embedded.server_url(Path(sys.argv[1]))
with psycopg.connect(url) as conn:
    conn.execute("SELECT 1")
print(json.dumps(time.perf_counter() - start))
"""


@benchmark("embedded_start")
def embedded_start(ctx: Context) -> Figures:
    home = ctx.temp_home()
    try:
        first = _start_in_new_process(home)
        warm = [_start_in_new_process(home) for _ in range(1 if ctx.quick else 3)]
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)
    return {"first_start_s": round(first, 3), "warm_start_s": round(min(warm), 4)}


def _start_in_new_process(home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    out = subprocess.run([sys.executable, "-c", START, str(home)], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return json.loads(out)
