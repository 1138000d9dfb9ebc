"""Fixtures of the chaos suites: SQL on the test database, external workers."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from zart_nb.config import configure
from zart_nb.engine.worker import stop_local_pools
from zart_nb.store.connection import close_store

from .helpers import Workers


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


@pytest.fixture
def env(zart_env, monkeypatch) -> Callable[..., None]:
    """``env(ZART_WORKERS=0, ...)``: set for this process and the processes it spawns."""

    def set_env(**values: Any) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))
        close_store()
        configure(None)

    return set_env


@pytest.fixture
def workers(zart_env, tmp_path) -> Iterator[Workers]:
    logs = tmp_path / "workers"
    logs.mkdir()
    pool = Workers(logs)
    yield pool
    pool.stop()
