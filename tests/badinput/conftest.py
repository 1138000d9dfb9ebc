"""Fixtures of the bad-input suite: SQL on the test database, no local pool left."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from zart_nb.engine.worker import stop_local_pools


@pytest.fixture(autouse=True)
def _no_pool_left() -> Iterator[None]:
    yield
    stop_local_pools()


@pytest.fixture
def sql(zart_env) -> Callable[..., list[dict]]:
    """``sql(query, *params)``: rows of a query on the test database, in zart's schema."""

    def run(query: str, *params: Any) -> list[dict]:
        with psycopg.connect(zart_env.database_url, autocommit=True,
                             options="-c search_path=zart", row_factory=dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    return run


def steps_of(sql, run_id: str) -> dict[str, str]:
    """name -> status of the run's current generation."""
    return {r["name"]: r["status"] for r in sql(
        "SELECT s.name, s.status FROM steps s JOIN runs r USING (run_id) "
        "WHERE s.run_id = %s AND s.generation = r.generation", run_id)}
