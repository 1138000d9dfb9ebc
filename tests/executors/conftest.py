"""Fixtures of the executor tests: one real Dask ``LocalCluster`` for the session (worker
processes, as users run them), a client of it per test, and the completions counter.

The cluster's scheduler reports a task lost with its worker at once
(``allowed-failures: 0``), so that the engine's own resubmission (its attempt counted)
is what a killed worker exercises; with Dask's default (3) Dask itself reruns the task
first, and zart-nb sees nothing. Worker processes are restarted by their nannies after
a kill, so the cluster serves every test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

COUNT_COMPLETIONS = [  # every write of a child's result, counted by PostgreSQL itself
    "CREATE TABLE completions (name text, worker text, attempts integer)",
    """CREATE FUNCTION count_completion() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO completions VALUES (NEW.name, NEW.worker, NEW.attempts); RETURN NULL; END $$""",
    """CREATE TRIGGER count_completion AFTER INSERT OR UPDATE ON steps FOR EACH ROW
       WHEN (NEW.kind = 'child' AND NEW.status = 'completed') EXECUTE FUNCTION count_completion()""",
]


@pytest.fixture(autouse=True)
def _forget_executors() -> Iterator[None]:
    """The bodies' executor and the process's default never outlive a test."""
    from zart_nb.engine import backends

    from . import bodies

    yield
    bodies.EXECUTOR.clear()
    backends.set_default(None)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    import dask
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)  # a killed worker is expected
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    yield cluster
    cluster.close()


@pytest.fixture
def dask_client(dask_cluster) -> Iterator[Any]:
    from distributed import Client

    client = Client(dask_cluster)
    client.wait_for_workers(2)
    yield client
    client.close()


@pytest.fixture
def completions(sql):
    """``completions()``: the names whose result was written, once per write."""
    for statement in COUNT_COMPLETIONS:
        sql(statement)
    return lambda: [r["name"] for r in sql("SELECT name FROM completions")]
