"""Helpers of the chaos suites: body subprocesses, worker processes, logs, the journal."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import psycopg
from psycopg.rows import dict_row

from tests.fix_db import TEST_SECRET
from tests.helpers import REPO


def own_env(home: Path, url: str, **values: str) -> dict:
    """The environment of a process using the server of ``own_server``: its URL, home
    and the tests' secret, no local workers, and ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_DATABASE_URL=url, ZART_HOME=str(home), ZART_SECRET=TEST_SECRET,
               ZART_WORKERS="0", **values)
    return env


def spawn_body(mode: str, run_id: str, log: Path, *extra: str, env: dict | None = None,
               **popen) -> subprocess.Popen:
    """``python -m tests.chaos.scripts.bodies MODE RUN_ID LOG ...`` in the repository."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.scripts.bodies", mode, run_id, str(log), *extra],
        cwd=REPO, env={"PYTHONFAULTHANDLER": "1", **(env or os.environ)}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 120) -> dict:
    """The JSON line of a body that must succeed."""
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def log_records(log: Path) -> list[list[str]]:
    """``[name, attempt, pid, thread]`` per execution (and ``[done, name]`` lines)."""
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line]


def executions(records: list[list[str]]) -> Counter:
    return Counter(r[0] for r in records if r[0] != "done")


def wait_lines(log: Path, count: int, proc: subprocess.Popen | None = None,
               timeout: float = 60.0) -> bool:
    """Wait until LOG has ``count`` lines; False when ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= count:
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError(f"{log} did not reach {count} lines within {timeout} s")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def local_workers_of(pid: int) -> list[psutil.Process]:
    """Worker processes started by body ``pid`` (found even once re-parented)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "zart_nb.engine.worker" in cmd and "--parent" in cmd and str(pid) in cmd:
            found.append(proc)
    return found


def kill_body(proc: subprocess.Popen, url: str | None = None) -> None:
    """SIGKILL a body process, then wait until the local workers it started are gone
    (they get SIGTERM when it dies, finish what they started and exit)."""
    kids = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kids += local_workers_of(proc.pid)
    _, alive = psutil.wait_procs(kids, timeout=30)
    if alive:
        stuck = [_describe(p) for p in alive]
        activity = _activity(url) if url else []
        for p in alive:  # PYTHONFAULTHANDLER (spawn_body sets it): stacks to the pipe
            p.send_signal(signal.SIGABRT)
        psutil.wait_procs(alive, timeout=10)
        _, stderr = proc.communicate()
        raise AssertionError(f"workers of a killed body still alive after 30 s: {stuck}; "
                             f"database sessions: {activity}; their stacks: {stderr[-6000:]}")
    proc.communicate()  # its pipes, which its workers shared, are closed now


def _describe(p: psutil.Process) -> dict:
    try:
        return {"pid": p.pid, "status": p.status(), "threads": p.num_threads(),
                "cmdline": " ".join(p.cmdline()[-4:])}
    except psutil.Error as exc:
        return {"pid": p.pid, "error": str(exc)}


def _activity(url: str) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()


def journal(url: str, run_id: str) -> list[dict]:
    with psycopg.connect(url, autocommit=True, options="-c search_path=zart",
                         row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT s.name, s.kind, s.status, s.attempts, s.worker FROM steps s "
            "JOIN runs r ON r.run_id = s.run_id AND r.generation = s.generation "
            "WHERE s.run_id = %s", (run_id,)).fetchall()


def committed(url: str, run_id: str) -> set[str]:
    return {row["name"] for row in journal(url, run_id) if row["status"] == "completed"}




_BACK = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) zart-nb: .*"
                   r"(is back on|reached) the database", re.M)


def back_times(worker_log: str) -> list[float]:
    """When a worker's log says it was back on the database, or reached it for the first
    time (one started while the server was down), in epoch seconds."""
    return [datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for m in _BACK.finditer(worker_log)]
