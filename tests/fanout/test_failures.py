"""Children that raise: retried with backoff by the workers, then failed for good, under
both ``wait`` modes (fail-fast, and exceptions returned in place); attempts kept."""

from __future__ import annotations

import time

import pytest

from tests.helpers import execute
from zart_nb import StepFailed, StepFunction, run, schedule, wait

from .helpers import lines
from .scripts import bodies


def three_children(log, failing, return_exceptions=False):
    handles = [schedule(bodies.record, log, 1), schedule(failing, log, 2),
               schedule(bodies.record, log, 3)]
    return wait(handles, return_exceptions=return_exceptions)


CASES = {  # the failing child: its name, how many times it runs, what wait() gives
    "plain": (bodies.refuse, "refuse-0", 1, ValueError),
    "retried": (bodies.retried_refuse, "retried-2", 3, StepFailed),
}


def check_attempts(sql, log, name: str, tries: int) -> None:
    assert sorted(int(attempt) for child, attempt, _ in lines(log) if child == name) == \
        list(range(1, tries + 1))
    history = run("failing").attempts(name)
    assert [(a["attempt"], a["status"]) for a in history] == [(i, "failed") for i in
                                                              range(1, tries + 1)]
    assert all("ValueError: child 2 refuses" in a["error"] for a in history)
    row = sql("SELECT status, attempts, error, error_kind, traceback FROM steps WHERE name = %s",
              name)[0]
    assert row["status"] == "failed" and row["attempts"] == tries
    assert "child 2 refuses" in row["error"] and "ValueError: child 2 refuses" in row["traceback"]
    assert "zart_nb" not in row["traceback"]  # from the user's code on
    assert row["error_kind"] == ("framework" if tries > 1 else "business")


@pytest.mark.parametrize("case", CASES)
def test_fail_fast_raises_the_failed_childs_error_naming_it(env, sql, tmp_path, case):
    env(ZART_WORKERS=1)
    failing, name, tries, kind = CASES[case]
    log = tmp_path / "effects.log"
    with pytest.raises(kind) as info:
        execute(three_children, (str(log), failing), name="failing", run_id="failing")

    error = info.value
    assert f"child step {name!r} of run 'failing'" in "\n".join(error.__notes__)
    if kind is StepFailed:  # retries exhausted: a framework failure carrying the last error
        assert error.reason == "retries_exhausted" and error.step == name
        assert f"failed after {tries} attempts; last: ValueError: child 2 refuses" in str(error)
    else:  # the child's own exception, as it raised it
        assert str(error) == "child 2 refuses"
    check_attempts(sql, log, name, tries)
    assert run("failing").status == "failed"


@pytest.mark.parametrize("case", CASES)
def test_return_exceptions_gives_the_error_in_place_and_the_other_results(env, sql, tmp_path,
                                                                           case):
    env(ZART_WORKERS=1)
    failing, name, tries, kind = CASES[case]
    log = tmp_path / "effects.log"
    outcome = execute(three_children, (str(log), failing, True), name="failing", run_id="failing")

    first, error, third = outcome.value
    assert (first, third) == (1, 9)
    assert type(error) is kind and "child 2 refuses" in str(error)
    check_attempts(sql, log, name, tries)
    assert run("failing").status == "completed"


def test_a_short_retry_delay_is_honoured_not_rounded_up_to_the_slow_poll(env, tmp_path):
    env(ZART_WORKERS=1)
    log = tmp_path / "effects.log"
    begun = time.monotonic()
    with pytest.raises(StepFailed):
        execute(three_children, (str(log), bodies.retried_refuse), name="failing",
                run_id="failing")

    assert time.monotonic() - begun < 3.5  # two retries 0.1 s apart, not 2 s polls each


def test_the_stored_error_of_exhausted_retries_keeps_its_last_error_as_cause(env, tmp_path):
    env(ZART_WORKERS=1)
    outcome = execute(three_children, (str(tmp_path / "log"), bodies.retried_refuse, True),
                      name="failing", run_id="failing")
    error = outcome.value[1]

    assert isinstance(error, StepFailed)
    assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == "child 2 refuses"


def test_a_childs_traceback_names_its_file_and_line_even_when_pickled_by_value(env, sql):
    """cloudpickle rebuilds a function it pickled by value (a lambda, a function of a
    script or a notebook) with "<dynamic-code>" as its file; the worker puts the name
    back. A child that passed its timeout shows where the deadline found it."""
    env(ZART_WORKERS=1)

    def stuck():
        time.sleep(30)

    def body():
        return wait([schedule(lambda: 1 / 0),
                     schedule(StepFunction(stuck, "stuck", timeout=0.3))],
                    return_exceptions=True)

    execute(body, name="by-value", run_id="by-value")
    stored = {r["name"]: r["traceback"] for r in sql("SELECT name, traceback FROM steps")}
    assert stored["<lambda>-0"].splitlines()[1:3] == [
        f'  File "{__file__}", line {body.__code__.co_firstlineno + 1}, in <lambda>',
        "    return wait([schedule(lambda: 1 / 0),"]
    assert stored["stuck-0"].splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{__file__}", line {stuck.__code__.co_firstlineno + 1}, in stuck',
        "    time.sleep(30)",
        "zart_nb.StepTimedOut: child 'stuck-0' timed out after 0.3 s"]
