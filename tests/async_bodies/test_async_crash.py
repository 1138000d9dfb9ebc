"""An async body killed with SIGKILL in the middle of a gather, resumed in a fresh process
(another hash seed): each step committed before the kill runs exactly once, the ones in
flight run again, and the run ends with the result of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from zart_nb import run

from .scripts import gather_body

REPO = Path(__file__).resolve().parents[2]
N = 10


def gather_script(run_id: str, log: Path, *extra: str, seed: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.async_bodies.scripts.gather_body", run_id, str(log),
         "--n", str(N), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": seed})


def starts(log: Path) -> Counter:
    return Counter(line.split()[0] for line in log.read_text().splitlines()
                   if line.endswith(" start"))


def test_killed_mid_gather_resumes_running_only_the_steps_not_committed(zart_env, sql, tmp_path):
    log = tmp_path / "effects.log"
    killed = gather_script("mid-gather", log, "--die-at", "0.55", seed="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    committed = {r["name"] for r in sql("SELECT name FROM steps WHERE run_id = 'mid-gather' "
                                        "AND status = 'completed'")}
    fetches = {f"fetch-{i}" for i in range(N)}
    # the short steps were committed one by one as they completed, the long ones not yet
    assert committed and committed < fetches, committed
    assert starts(log) == Counter(fetches)  # every step had started: all were in flight

    resumed = gather_script("mid-gather", log, seed="2")

    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["result"] == uninterrupted()
    assert sorted(out["replayed"]) == sorted(committed)
    assert sorted(out["executed"]) == sorted(fetches - committed | {"total"})
    runs = starts(log)
    for name in fetches:
        assert runs[name] == (1 if name in committed else 2), (name, runs)
    assert runs["total"] == 1
    assert run("mid-gather").status == "completed"


def uninterrupted() -> int:
    return gather_body.expected(N)
