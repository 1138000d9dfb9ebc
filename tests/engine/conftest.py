"""Fixtures of the engine tests: SQL on the test database, short leases."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from zart_nb.config import configure
from zart_nb.store.connection import close_store


@pytest.fixture
def sql(zart_env) -> Callable[..., list[dict]]:
    """``sql(query, *params)``: rows of a query on the test database, in zart's schema."""

    def run(query: str, *params: Any) -> list[dict]:
        with psycopg.connect(zart_env.database_url, autocommit=True,
                             options="-c search_path=zart", row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    return run


@pytest.fixture
def short_lease(zart_env, monkeypatch) -> Iterator[float]:
    """Leases of 2 s (heartbeat every 0.67 s) for this process and the ones it spawns."""
    monkeypatch.setenv("ZART_LEASE_SECONDS", "2")
    close_store()
    configure(None)
    yield 2.0
