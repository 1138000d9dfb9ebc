"""Helpers of the fan-out tests: side-effect logs, subprocess bodies, polling the database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from tests.helpers import REPO, execute


def note(log: str | Path, line: str) -> None:
    """Append one line to a side-effect log (O_APPEND: lines of processes never mix)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def runs_per_child(log: Path) -> Counter:
    """How many times each child's body ran (first word of each line)."""
    return Counter(words[0] for words in lines(log))



class InThread:
    """``execute(body, …)`` on a thread of its own; ``result()`` joins it."""

    def __init__(self, body, *args, run_id: str) -> None:
        self.box: dict = {}
        self.thread = threading.Thread(target=self._run, args=(body, args, run_id))
        self.thread.start()

    def _run(self, body, args, run_id) -> None:
        try:
            self.box["value"] = execute(body, args, name=body.__name__, run_id=run_id).value
        except BaseException as exc:
            self.box["error"] = exc

    def result(self, timeout: float = 30.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the body did not end"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["value"]


def spawn_script(*args: str, **kw) -> subprocess.Popen:
    """``python -m tests.fanout.scripts.<args>`` in the repository, this environment."""
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def kill(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGKILL ``proc``; its output so far."""
    proc.kill()
    out, err = proc.communicate()
    return out or "", err or ""
