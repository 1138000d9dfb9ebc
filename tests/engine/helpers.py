"""Helpers of the engine tests: replaying a run, crash subprocesses, side-effect logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zart_nb.engine.execute import BodyResult
from zart_nb.engine.model import Options

from ..helpers import execute

REPO = Path(__file__).resolve().parents[2]


def replay(body: Callable, *args: Any, name: str, run_id: str, on_change: str = "rerun",
           **kwargs: Any) -> BodyResult:
    """Execute ``body`` for ``run_id`` even when the run completed: every step is looked up
    in the journal again (what the notebook front does when a cell is run again)."""
    return execute(body, args, kwargs, name=name, run_id=run_id,
                   options=Options(on_change=on_change), replay_completed=True)


def crash_body(run_id: str, log: Path, *extra: str, check: bool = False,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Execute ``tests/engine/scripts/crash_body.py`` for ``run_id`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "tests.engine.scripts.crash_body", run_id, str(log), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=check,
        env=env or os.environ.copy())


def spawn_crash_body(run_id: str, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.scripts.crash_body", run_id, str(log), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(path: Path, line: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.02)
    raise AssertionError(f"{line!r} did not appear in {path} within {timeout} s")


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def executions(path: Path) -> dict[str, int]:
    """How many times each step's body ran, from the side-effect log."""
    counts: dict[str, int] = {}
    for line in log_lines(path):
        name = line.split()[0]
        counts[name] = counts.get(name, 0) + 1
    return counts
