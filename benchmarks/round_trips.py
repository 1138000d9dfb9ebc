"""round_trips: the statements the server executes for one execution of a 1-step run.

Counted by PostgreSQL itself (pg_stat_statements, on an embedded server of its own that
preloads it), for two executions through the public API: a new run (claim, one step, the
end) and the same run executed again once completed (its stored result returned). The
pool's check of a connection it hands out is an empty query, which pg_stat_statements
does not count.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from zart_nb import durable, step
from zart_nb.config import Settings, configure
from zart_nb.store import embedded
from zart_nb.store.connection import close_store, get_store

from .common import SECRET, Context, Figures, benchmark

COUNT = """
SELECT query, calls FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT ILIKE '%pg_stat_statements%'
ORDER BY calls DESC, query
"""


@step("only")
def only_step() -> int:
    return 1


@durable("round-trips")
def one_step_body() -> int:
    result: int = only_step()
    return result


def _server_with_statement_counts(home: Path) -> str:
    url = embedded.server_url(home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'top'")
    embedded.stop(home)
    url = embedded.server_url(home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return url


def _counted(url: str, action: Any) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        action()
        rows = conn.execute(COUNT).fetchall()
    return {"statements": sum(calls for _, calls in rows),
            "by_query": [f"{calls}x {' '.join(query.split())[:80]}" for query, calls in rows]}


@benchmark("round_trips")
def round_trips(ctx: Context) -> Figures:
    home = Path(tempfile.mkdtemp(prefix="zart-rt-"))
    try:
        url = _server_with_statement_counts(home)
        configure(Settings(database_url=url, secret=SECRET, schema="zart_rt"))
        get_store()  # migrated and the pool open before anything is counted
        new = _counted(url, lambda: one_step_body())
        again = _counted(url, lambda: one_step_body())
        return {"new_run": new, "completed_run_again": again}
    finally:
        close_store()
        configure(ctx.settings if "settings" in ctx.__dict__ else None)
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)
