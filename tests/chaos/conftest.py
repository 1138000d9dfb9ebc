"""Fixtures of the chaos suites: SQL on the test database, external workers."""

from __future__ import annotations

from typing import Iterator

import pytest

from .helpers import Workers


@pytest.fixture
def workers(zart_env, tmp_path) -> Iterator[Workers]:
    logs = tmp_path / "workers"
    logs.mkdir()
    pool = Workers(logs)
    yield pool
    pool.stop()
