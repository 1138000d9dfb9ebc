"""Errors whose text PostgreSQL cannot store: a NUL character in an exception's message.

A text value cannot hold NUL. A step or a child that raises such an exception still
fails with its own exception; the message and traceback are stored with the NUL written
``\\x00``. Before, the step's failure was a StoreError, and the worker that tried to
store the child's failure crashed.
"""

from __future__ import annotations

import threading

import pytest

from tests.chaos.figures import record
from tests.helpers import execute
from zart_nb import run, schedule, step, wait

BAD = "before\x00after"


@step("nul-step")
def raise_nul():
    raise ValueError(BAD)


def raise_nul_child(i):
    raise ValueError(BAD)


def test_a_step_raising_a_nul_message_fails_with_its_own_error(zart_env, sql):
    with pytest.raises(ValueError, match="before") as caught:
        execute(lambda: raise_nul(), name="nul-error")
    assert str(caught.value) == BAD
    row = sql("SELECT status, error, traceback FROM steps WHERE name = 'nul-step'")[0]
    assert row["status"] == "failed" and row["error"] == "ValueError: before\\x00after"
    assert "ValueError: before\\x00after" in row["traceback"]
    record("badinput", "NUL in the message of a step's exception",
           outcome=f"the step fails with its own error; stored as {row['error']}")


def test_a_child_raising_a_nul_message_fails_and_its_worker_goes_on(env, workers, sql):
    env(ZART_WORKERS=0)
    worker = workers.start(1)

    def body():
        return wait([schedule(raise_nul_child, 1), schedule(lambda: 7)], return_exceptions=True)

    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(out=execute(body, name="nul-child")))
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), workers.output(worker)
    error, seven = box["out"].value
    assert type(error) is ValueError and str(error) == BAD and seven == 7
    row = sql("SELECT status, error, traceback FROM steps WHERE name = 'raise_nul_child-0'")[0]
    assert row["status"] == "failed" and row["error"] == "ValueError: before\\x00after"
    assert worker.poll() is None, workers.output(worker)
    # and it goes on working
    assert execute(lambda: wait(schedule(lambda: 8)), name="after").value == 8
    assert {r["worker"].split(":")[1] for r in sql(
        "SELECT worker FROM steps WHERE kind = 'child' AND status = 'completed'")} == \
        {str(worker.pid)}
    assert run("nul-child").status == "completed"
    record("badinput", "NUL in the message of a child's exception",
           outcome=f"the child fails with its own error; stored as {row['error']}; "
                   "the worker goes on")
