"""Unsigned, tampered and foreign-signed payloads in the journal (DESIGN.md §2.9).

Every payload here, once unpickled, would create a file: the tests prove that it is
refused with a PayloadError *before* unpickling (the file never appears), wherever it
sits: an inline step result, an out-of-line payload, a child's task, an event, a run's
result. After each, the journal stays usable: forgetting the damaged step (or
re-executing the body) completes the run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import subprocess
import sys
import time

import pytest

from tests.chaos.figures import record
from tests.engine.helpers import REPO, replay
from tests.helpers import execute
from zart_nb import PayloadError, codec, run, schedule, send_event, step, wait_for_event


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing proves an unpickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "unpickled.txt"
    proof = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(CreatesFile(str(proof)))).close()  # the payload is live
    assert proof.exists()
    yield path
    assert not path.exists(), "a refused payload was unpickled"


def evil(marker) -> bytes:
    return pickle.dumps(CreatesFile(str(marker)), protocol=5)


def kinds(marker, genuine: bytes) -> dict[str, bytes]:
    """The three bad envelopes: no envelope, a genuine one's body swapped, another key's."""
    header = genuine[:len(codec._HEADER)]
    mac_end = len(header) + 32
    foreign = hmac.new(b"someone-else-s-secret-0123456789", header + evil(marker),
                       hashlib.sha256).digest()
    return {
        "unsigned": evil(marker),
        "tampered": genuine[:mac_end] + evil(marker),
        "other-secret": header + foreign + evil(marker),
    }


REFUSALS = {
    "unsigned": "not a zart-nb payload (unsigned); refused",
    "tampered": "signature does not match",
    "other-secret": "signature does not match",
}


@step("small")
def small():
    return "fine"


@step("large")
def large():
    return b"L" * 50_000  # over the inline limit: stored in payloads


def body():
    return small(), len(large())


@pytest.mark.parametrize("kind", ["unsigned", "tampered", "other-secret"])
@pytest.mark.parametrize("where", ["inline step result", "out-of-line payload"])
def test_a_bad_step_result_is_refused_never_unpickled(zart_env, sql, marker, kind, where):
    run_id = f"tamper-{kind}-{where.split()[0]}"
    assert execute(body, name=run_id).value == ("fine", 50_000)
    if where == "inline step result":
        genuine = sql("SELECT result FROM steps WHERE run_id = %s AND name = 'small'", run_id)[0]["result"]
        sql("UPDATE steps SET result = %s WHERE run_id = %s AND name = 'small'",
            kinds(marker, genuine)[kind], run_id)
        damaged = "small"
    else:
        digest = sql("SELECT result_hash FROM steps WHERE run_id = %s AND name = 'large'",
                     run_id)[0]["result_hash"]
        genuine = sql("SELECT data FROM payloads WHERE hash = %s", digest)[0]["data"]
        sql("UPDATE payloads SET data = %s WHERE hash = %s", kinds(marker, genuine)[kind], digest)
        damaged = "large"

    with pytest.raises(PayloadError) as caught:
        replay(body, name=run_id, run_id=run_id)
    message = str(caught.value)
    assert message.startswith(f"result of step {damaged!r}: ") and REFUSALS[kind] in message
    if where == "out-of-line payload":
        sql("DELETE FROM payloads WHERE hash = %s", digest)  # the damaged copy goes with the fix
    record("badinput", f"{kind} payload as an {where}", outcome=f"PayloadError: {message}")

    # the fix: forget the damaged step; the next execution runs it again and completes
    run(run_id).rerun([damaged])
    again = replay(body, name=run_id, run_id=run_id)
    assert again.value == ("fine", 50_000) and again.report.executed == [damaged]


def test_a_tampered_event_and_run_result_are_refused(zart_env, sql, marker):
    def waiter():
        return wait_for_event("approval")

    execute(lambda: "done", name="tamper-result")
    sql("UPDATE runs SET result = %s WHERE run_id = 'tamper-result'", evil(marker))
    with pytest.raises(PayloadError, match="result of run 'tamper-result': not a zart-nb payload"):
        run("tamper-result").result()
    record("badinput", "unsigned payload as a run's result",
           outcome="PayloadError: result of run 'tamper-result': not a zart-nb payload "
                   "(unsigned); refused")

    execute(lambda: 1, name="tamper-event")  # the run exists
    send_event("tamper-event", "approval", {"ok": True})
    genuine = sql("SELECT payload FROM events WHERE run_id = 'tamper-event'")[0]["payload"]
    sql("UPDATE events SET payload = %s WHERE run_id = 'tamper-event'",
        kinds(marker, genuine)["tampered"])
    with pytest.raises(PayloadError, match="event 'approval': signature does not match"):
        replay(waiter, name="tamper-event", run_id="tamper-event")
    # the fix: the event is deleted and sent again
    sql("DELETE FROM events WHERE run_id = 'tamper-event'")
    send_event("tamper-event", "approval", {"ok": True})
    assert replay(waiter, name="tamper-event", run_id="tamper-event").value == {"ok": True}


def square(x):
    return x * x


def test_a_tampered_child_task_is_refused_by_the_worker(zart_env, sql, marker, monkeypatch):
    monkeypatch.setenv("ZART_WORKERS", "0")
    from zart_nb.config import configure
    from zart_nb.store.connection import close_store

    close_store()
    configure(None)

    def fan():
        schedule(square, 7)  # queued when the body ends, never waited for
        return "queued"

    assert execute(fan, name="tamper-task").value == "queued"
    genuine = sql("SELECT task FROM steps WHERE run_id = 'tamper-task'")[0]["task"]
    sql("UPDATE steps SET task = %s WHERE run_id = 'tamper-task'",
        kinds(marker, genuine)["tampered"])
    worker = subprocess.Popen([sys.executable, "-m", "zart_nb.engine.worker"], cwd=REPO,
                              env=os.environ.copy(), stdin=subprocess.DEVNULL)
    try:
        row = _until_finished(sql, "tamper-task")
        assert row["status"] == "failed"
        assert row["error"].startswith("StepFailed: child 'square-0': signature does not match")
        record("badinput", "tampered child task (the worker's input)", outcome=row["error"])
        # the fix: executing the body again queues a fresh task
        replay(fan, name="tamper-task", run_id="tamper-task")
        assert _until_finished(sql, "tamper-task")["status"] == "completed"
        assert run("tamper-task").step_result("square-0") == 49
    finally:
        worker.terminate()
        worker.wait(15)


def _until_finished(sql, run_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = sql("SELECT status, error FROM steps WHERE run_id = %s", run_id)[0]
        if row["status"] in ("completed", "failed"):
            return row
        time.sleep(0.05)
    raise AssertionError("the child did not finish")
