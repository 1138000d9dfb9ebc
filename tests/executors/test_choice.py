"""Which executor a wait uses (its own, the body's, the process's default, ZART_EXECUTOR,
else zart-nb's workers), what a bad one says, a cancel while children run on an
executor, and zart-nb's workers competing with an executor for the same children."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.helpers import execute, until
from zart_nb import RunFailed, UsageError, run, schedule, wait
from zart_nb.config import ExecutorSpec, Settings, parse_executor
from zart_nb.engine import backends
from zart_nb.engine import execute as engine

from . import bodies


def workers_of(sql) -> set[str]:
    """Who committed the children: the body for its executor, or zart-nb's workers."""
    return {"executor" if r["worker"].startswith("executor:") else "zart-worker"
            for r in sql("SELECT worker FROM steps WHERE kind = 'child'")}


def local_worker_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "zart_nb.engine.worker" in " ".join(p.cmdline())]


@pytest.mark.parametrize(("text", "spec"), [
    ("dask://10.0.0.5:8786", ExecutorSpec("dask", address="tcp://10.0.0.5:8786")),
    ("dask://tls://scheduler:8786", ExecutorSpec("dask", address="tls://scheduler:8786")),
    ("ray", ExecutorSpec("ray")), ("ray://head:10001", ExecutorSpec("ray", address="ray://head:10001")),
    ("loky", ExecutorSpec("loky")), ("loky:4", ExecutorSpec("loky", workers=4)),
    ("processes:2", ExecutorSpec("processes", workers=2)), ("threads", ExecutorSpec("threads")),
    (" off ", ExecutorSpec("off")),
])
def test_executor_names(text, spec):
    assert parse_executor(text) == spec
    assert Settings.from_env({"ZART_EXECUTOR": text}).executor == spec


@pytest.mark.parametrize("text", ["dask", "dask://", "loky:0", "threads:x", "spark://h:1", "ray:"])
def test_a_bad_executor_name_says_what_is_accepted(text):
    with pytest.raises(UsageError, match=r"ZART_EXECUTOR=.* names no executor: use dask://HOST:PORT"):
        Settings.from_env({"ZART_EXECUTOR": text})


def test_a_wait_given_something_that_is_no_executor_says_so_and_changes_nothing(env, sql, tmp_path):
    env(ZART_WORKERS=0)
    bodies.EXECUTOR["executor"] = 42
    with pytest.raises(UsageError, match=r"executor must be a concurrent\.futures\.Executor, a "
                                         r"Dask client or a name .* not int"):
        execute(bodies.fan, (str(tmp_path / "log"), 3), name="fan", run_id="bad")
    assert {r["status"] for r in sql("SELECT status FROM steps")} == {"scheduled"}
    assert run("bad").status == "failed"


def test_the_wait_then_the_body_then_the_default_then_the_environment(env, sql, tmp_path):
    env(ZART_WORKERS=1, ZART_EXECUTOR="threads:2")
    log = str(tmp_path / "log")

    def fan(body, run_id: str, executor=None) -> set[str]:
        sql("DELETE FROM steps")
        engine.execute(engine.RunRequest(body, "fan", run_id, (log, 3), executor=executor))
        return workers_of(sql)

    assert fan(bodies.fan_default, "from-env") == {"executor"}
    backends.set_default("off")  # %zart_executor off
    with ThreadPoolExecutor(1) as pool:
        assert fan(bodies.fan_default, "from-body", executor=pool) == {"executor"}  # --executor
        assert fan(bodies.fan_default, "from-default") == {"zart-worker"}  # beats the env
        bodies.EXECUTOR["executor"] = "off"
        assert fan(bodies.fan, "from-wait", executor=pool) == {"zart-worker"}  # beats --executor


def test_with_an_executor_configured_no_local_worker_pool_starts(env, sql, tmp_path):
    env(ZART_WORKERS=2, ZART_EXECUTOR="threads:2")
    # more children than one insert batch: the first batches are queued while the body
    # still schedules, where the local pool would start
    outcome = execute(bodies.fan_default, (str(tmp_path / "log"), 2500), name="fan", run_id="many")
    assert len(outcome.value) == 2500
    assert workers_of(sql) == {"executor"}
    assert local_worker_processes() == []


def test_a_cancel_stops_the_wait_and_gives_back_what_never_started(env, sql, tmp_path):
    env(ZART_WORKERS=0, ZART_LEASE_SECONDS=3)
    log = tmp_path / "log"
    with ThreadPoolExecutor(1) as pool:
        bodies.EXECUTOR["executor"] = pool
        box: dict = {}

        def body() -> None:
            try:
                execute(bodies.fan, (str(log), 20, 0.3), name="fan", run_id="doomed")
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=body)
        thread.start()
        until(lambda: sql("SELECT 1 FROM steps WHERE status = 'completed'"), what="a child done")
        assert run("doomed").cancel()
        thread.join(30)
    assert isinstance(box.get("error"), RunFailed) and "cancelled" in str(box["error"])
    rows = sql("SELECT status, attempts, worker FROM steps")
    queued = [r for r in rows if r["status"] == "scheduled"]
    assert queued and all(r["attempts"] == 0 and r["worker"] is None for r in queued)
    assert len({r["status"] for r in rows} - {"scheduled", "completed", "running"}) == 0


def test_zart_workers_and_an_executor_share_the_children_each_committed_once(
        env, sql, workers, completions, tmp_path):
    env(ZART_WORKERS=0)
    workers.start(2)
    until(lambda: sql("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN%%zart_work%%'"),
          what="the worker to listen")
    log = tmp_path / "log"
    n = 1500  # the first 1,000 are queued while the body still schedules: the worker starts
    with ThreadPoolExecutor(2) as pool:
        bodies.EXECUTOR["executor"] = pool
        outcome = execute(bodies.fan, (str(log), n, 0.001), name="fan", run_id="shared")

    assert outcome.value == [i * i for i in range(n)]
    writes = Counter(completions())
    assert len(writes) == n and set(writes.values()) == {1}
    assert workers_of(sql) == {"executor", "zart-worker"}


def test_an_executor_outside_a_body_is_not_needed(tmp_path):
    # outside a durable body a child runs at once, as before: wait only collects
    handle = schedule(bodies.record, str(tmp_path / "log"), 3)
    assert wait(handle, executor="threads:1") == 9


def test_a_dask_scheduler_that_does_not_answer_is_one_line(env, sql, tmp_path):
    import dask
    import distributed  # noqa: F401  (its defaults enter dask's config before it changes)

    env(ZART_WORKERS=0)
    bodies.EXECUTOR["executor"] = "dask://127.0.0.1:1"  # nothing listens there
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(UsageError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1: "
                                            r"OSError: Timed out trying to connect"):
        execute(bodies.fan, (str(tmp_path / "log"), 2), name="fan", run_id="nowhere")
    assert {r["status"] for r in sql("SELECT status FROM steps")} == {"scheduled"}
