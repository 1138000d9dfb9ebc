"""The small framework the benchmark modules share: a registry and a database to run on."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from zart_nb.config import Settings, configure
from zart_nb.store import embedded

Figures = dict[str, Any]
BenchmarkFn = Callable[["Context"], Figures]

REGISTRY: dict[str, BenchmarkFn] = {}

SECRET = b"benchmark-secret-0123456789abcdef"
SCHEMA = "zart_bench"  # dropped at the end, so that a shared server keeps nothing of ours


def benchmark(name: str) -> Callable[[BenchmarkFn], BenchmarkFn]:
    """Register ``fn(ctx) -> figures`` under ``name`` for ``python -m benchmarks``."""

    def register(fn: BenchmarkFn) -> BenchmarkFn:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = fn
        return fn

    return register


@dataclass
class Context:
    """What a benchmark runs against.

    ``settings`` point at ``ZART_DATABASE_URL`` when it is set, else at an embedded
    server in a temporary ZART_HOME, started on first use and stopped by ``close``.
    Tables go to schema ``zart_bench``, never to the user's own ``zart``.
    """

    quick: bool
    _home: Path | None = field(default=None, init=False)

    @cached_property
    def settings(self) -> Settings:
        url = os.environ.get("ZART_DATABASE_URL")
        if not url:
            self._home = self.temp_home()
            url = embedded.server_url(self._home)
        s = Settings(database_url=url, secret=SECRET, schema=SCHEMA)
        configure(s)
        return s

    def temp_home(self) -> Path:
        # short and outside pytest-like deep paths: the server's socket lives in it
        return Path(tempfile.mkdtemp(prefix="zart-bench-"))

    def close(self) -> None:
        if "settings" in self.__dict__:
            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        if self._home is not None:
            embedded.stop(self._home)
            shutil.rmtree(self._home, ignore_errors=True)


def timed(runs: int, fn: Callable[[], Any], *,
          reset: Callable[[], Any] | None = None) -> list[float]:
    """The seconds of ``runs`` timed calls of ``fn``; ``reset``, untimed, runs before each."""
    times = []
    for _ in range(runs):
        if reset is not None:
            reset()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def best_of(runs: int, fn: Callable[[], Any], *, reset: Callable[[], Any] | None = None) -> float:
    """The fastest of ``runs`` timed calls of ``fn`` (the least disturbed by the machine)."""
    return min(timed(runs, fn, reset=reset))


def median_of(runs: int, fn: Callable[[], Any], *, reset: Callable[[], Any] | None = None) -> float:
    """The median of ``runs`` timed calls of ``fn``: what the aims are read from, less
    flattering than the best."""
    return statistics.median(timed(runs, fn, reset=reset))
