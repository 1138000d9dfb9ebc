"""Small helpers shared by the test suites."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def execute(body: Callable[..., Any], args: tuple = (), kwargs: dict | None = None, *,
            name: str, run_id: str | None = None, options: Any = None,
            replay_completed: bool = False, wait: bool = True, restart: bool = False) -> Any:
    """Execute ``body`` as a run through the engine's operations (``replay`` when
    ``replay_completed``, else ``execute``), from the plain arguments tests have."""
    from zart_nb.engine import execute as engine
    from zart_nb.engine.model import Options

    request = engine.RunRequest(body, name, name if run_id is None else run_id, tuple(args),
                                kwargs or {}, options or Options())
    if replay_completed:
        return engine.replay(request, restart=restart)
    return engine.execute(request, restart=restart, wait=wait)


def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
          every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(every)


class Workers:
    """External ``python -m zart_nb.engine.worker`` processes; stopped at the end."""

    def __init__(self, logs: Path, env: dict | None = None) -> None:
        self.logs = logs
        self.env = env  # None: this process's environment at each start
        self.procs: list[subprocess.Popen] = []
        self.killed: list[int] = []

    def start(self, concurrency: int = 2, *extra: str) -> subprocess.Popen:
        out = open(self.logs / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115 (the worker's stdout)
        proc = subprocess.Popen(
            [sys.executable, "-m", "zart_nb.engine.worker", "--concurrency", str(concurrency),
             *extra], cwd=REPO, env=self.env or os.environ.copy(), stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return (self.logs / f"worker-{self.procs.index(proc)}.log").read_text()

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.append(proc.pid)

    def stop(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
