"""Results and arguments that cannot be stored: a clear error naming the step, a journal
that stays consistent, and a body that completes once the mistake is fixed."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.chaos.figures import record
from tests.helpers import execute
from zart_nb import PayloadError, StepFailed, schedule, step, wait

from .conftest import steps_of

MiB = 1 << 20


def test_unpicklable_result_fails_its_step_then_the_fixed_body_completes(zart_env, sql):
    state = {"bad": True}

    @step("load")
    def load():
        return [1, 2, 3]

    @step("open-lock")
    def open_lock(items):
        return threading.Lock() if state["bad"] else sum(items)

    def body():
        return open_lock(load()) * 2

    with pytest.raises(StepFailed) as caught:
        execute(body, name="unpicklable-result")
    message = str(caught.value)
    assert caught.value.reason == "not_picklable" and caught.value.step == "open-lock"
    assert message.startswith("step 'open-lock': result: cannot pickle '_thread.lock'")
    assert steps_of(sql, "unpicklable-result") == {"load": "completed", "open-lock": "failed"}
    record("badinput", "unpicklable result (threading.Lock)", outcome=f"StepFailed: {message}")

    state["bad"] = False
    out = execute(body, name="unpicklable-result")
    assert out.value == 12 and out.report.replayed == ["load"]
    assert out.report.retried == ["open-lock"]


def test_unpicklable_argument_is_refused_before_the_step_runs(zart_env, sql):
    ran = []

    @step("total-{label}")
    def total(label, values):
        ran.append(label)
        return sum(values)

    def body(fixed):
        squares = (i * i for i in range(4))
        return total("squares", list(squares) if fixed else squares)

    with pytest.raises(PayloadError) as caught:
        execute(body, (False,), name="unpicklable-arg")
    message = str(caught.value)
    assert message == "step 'total-squares': arguments[0][1]: cannot pickle 'generator'"
    assert ran == [] and steps_of(sql, "unpicklable-arg") == {}
    record("badinput", "unpicklable argument (a generator)", outcome=f"PayloadError: {message}")

    assert execute(body, (True,), name="unpicklable-arg").value == 14


def test_a_lambda_capturing_a_socket_as_a_result_and_as_a_child(zart_env, sql, monkeypatch):
    monkeypatch.setenv("ZART_WORKERS", "1")
    from zart_nb.config import configure
    from zart_nb.store.connection import close_store

    close_store()
    configure(None)
    sock = socket.socket()
    try:
        @step("connector")
        def connector():
            return lambda: sock.fileno()

        with pytest.raises(StepFailed) as caught:
            execute(lambda: connector(), name="socket-result")
        assert str(caught.value) == ("step 'connector': result.<closure sock>: cannot pickle "
                                     "'socket.socket'")
        assert steps_of(sql, "socket-result") == {"connector": "failed"}
        record("badinput", "a lambda capturing a socket, returned by a step",
               outcome=f"StepFailed: {caught.value}")

        def fan(fixed):
            if fixed:
                return wait([schedule(lambda port: port + 1, 8000)])
            return wait([schedule(lambda: sock.fileno())])

        with pytest.raises(PayloadError) as caught:
            execute(fan, (False,), name="socket-child")
        message = str(caught.value)
        assert message.startswith("child '<lambda>-0': function.<closure sock>: cannot pickle "
                                  "'socket.socket'"), message
        assert steps_of(sql, "socket-child") == {}  # nothing queued
        record("badinput", "a lambda capturing a socket, scheduled as a child",
               outcome=f"PayloadError: {message}")
        assert execute(fan, (True,), name="socket-child").value == [8001]
    finally:
        sock.close()


def big_result(zart_env, sql, size: int, run_id: str):
    state = {"size": size}

    @step("before")
    def before():
        return "small"

    @step("huge")
    def huge():
        return b"\x07" * state["size"]

    def body():
        return before(), len(huge())

    payloads = sql("SELECT count(*) AS n FROM payloads")[0]["n"]
    try:
        out = execute(body, name=run_id)
    except StepFailed as exc:  # refused (the other outcome of this probe is stored)
        assert exc.reason == "not_picklable" and exc.step == "huge"  # noqa: PT017
        assert steps_of(sql, run_id) == {"before": "completed", "huge": "failed"}
        assert sql("SELECT count(*) AS n FROM payloads")[0]["n"] == payloads  # nothing half-written
        state["size"] = 1000  # the fix: a smaller result
        again = execute(body, name=run_id)
        assert again.value == ("small", 1000) and again.report.replayed == ["before"]
        return f"StepFailed: {exc}"
    assert out.value == ("small", size)
    assert execute(body, name=run_id).value == ("small", size)  # and it replays
    return "stored and replayed"


def test_a_100_mib_result_is_stored_and_replayed(zart_env, sql):
    outcome = big_result(zart_env, sql, 100 * MiB, "big-100")
    assert outcome == "stored and replayed"
    record("badinput", "a 100 MiB result", outcome=outcome)


@pytest.mark.slow
def test_a_300_mib_result_is_stored_and_replayed(zart_env, sql):
    outcome = big_result(zart_env, sql, 300 * MiB, "big-300")
    assert outcome == "stored and replayed"
    record("badinput", "a 300 MiB result", outcome=outcome)


@pytest.mark.slow
def test_a_1_gib_result_is_stored_and_replayed(zart_env, sql):
    # over PostgreSQL's 1 GiB per value: stored in chunks
    outcome = big_result(zart_env, sql, 1 << 30, "big-1g")
    assert outcome == "stored and replayed"
    record("badinput", "a 1 GiB result", outcome=outcome)
