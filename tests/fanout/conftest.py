"""Fixtures of the fan-out tests: SQL on the test database, external worker processes,
short leases, and a local pool that never outlives its test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from zart_nb.config import configure
from zart_nb.store.connection import close_store

REPO = Path(__file__).resolve().parents[2]


def reset_settings() -> None:
    close_store()
    configure(None)


class Workers:
    """External ``python -m zart_nb.engine.worker`` processes, stopped after the test."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, concurrency: int = 2, *extra: str) -> subprocess.Popen:
        log = open(self.logs / f"worker-{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "zart_nb.engine.worker", "--concurrency", str(concurrency),
             *extra], cwd=REPO, env=os.environ.copy(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return (self.logs / f"worker-{self.procs.index(proc)}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(zart_env, tmp_path) -> Iterator[Workers]:
    logs = tmp_path / "workers"
    logs.mkdir()
    pool = Workers(logs)
    yield pool
    pool.stop()
