"""The real ``zart-nb`` command in a subprocess, against the test's own database.

The ``zart_env`` fixture puts ZART_DATABASE_URL, ZART_HOME and ZART_SECRET in
``os.environ``; the subprocess inherits them, so runs created here by executing
``@durable`` bodies in the test process are the ones the command sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def zart(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run ``zart-nb ARGS`` (``python -m zart_nb.cli``) and capture what it says."""
    done = subprocess.run([sys.executable, "-m", "zart_nb.cli", *args], capture_output=True,
                          text=True, env=os.environ.copy() if env is None else env,
                          timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("zart-nb: error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def sql(zart_env):
    """An autocommit connection on the test database, search_path on zart's schema."""
    with psycopg.connect(zart_env.database_url, autocommit=True,
                         options="-c search_path=zart") as conn:
        yield conn
