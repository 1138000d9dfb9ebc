"""Fixtures of the chaos suites that need a PostgreSQL server of their own to stop."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Workers
from zart_nb.store import embedded

from .helpers import own_env


@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    """``(ZART_HOME, url)`` of an embedded server of this test's own, never the session's
    (stopping or crashing it harms no other test); removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="zart-chaos-"))  # short: the socket lives in it
    try:
        yield home, embedded.server_url(home)
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def own_workers(own_server, tmp_path: Path) -> Iterator[Workers]:
    """External worker processes on the server of ``own_server`` (leases of 2 s),
    stopped after the test."""
    home, url = own_server
    logs = tmp_path / "workers"
    logs.mkdir()
    pool = Workers(logs, env=own_env(home, url, ZART_LEASE_SECONDS="2"))
    yield pool
    pool.stop()
