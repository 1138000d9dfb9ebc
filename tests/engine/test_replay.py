"""Executing a body again: what replays, what runs again, and code/argument changes."""

from __future__ import annotations

import pytest

from tests.helpers import execute
from zart_nb import CodeChanged, durable, run, step
from zart_nb.engine.fingerprint import code_fingerprint

from .helpers import replay


class Outage(Exception):
    pass


def test_fetch_inside_a_step_returns_the_same_list_on_replay(zart_env):
    source = {"reports": ["r1", "r2", "r3"]}
    down = {"yes": True}

    @step("fetch-reports")
    def fetch_reports(batch):
        return list(source["reports"])

    @step("process-report-{index}")
    def process_report(index, report):
        if index == 2 and down["yes"]:
            raise Outage("service down")
        return report.upper()

    @durable("seed")
    def report_batch(batch):
        reports = fetch_reports(batch)
        return [process_report(i, r) for i, r in enumerate(reports)]

    with pytest.raises(Outage):
        report_batch("q3")
    source["reports"] = ["changed", "meanwhile"]  # the source moved on
    down["yes"] = False

    assert report_batch("q3") == ["R1", "R2", "R3"]
    assert report_batch.last_report.replayed == ["fetch-reports", "process-report-0",
                                                 "process-report-1"]
    assert report_batch.last_report.executed == ["process-report-2"]


def test_a_failed_step_is_stored_with_its_error_and_retried_next_time(zart_env):
    calls = []

    @step("load")
    def load():
        calls.append("load")
        return [1, 2]

    @step("charge")
    def charge(items):
        calls.append("charge")
        if len(calls) < 3:
            raise Outage(f"gateway refused {items}")
        return sum(items)

    @durable("failing")
    def body():
        return charge(load())

    with pytest.raises(Outage):
        body()
    r = run("failing")
    assert r.status == "failed"
    failed = {s["name"]: s for s in r.steps}["charge"]
    assert failed["status"] == "failed" and failed["error_kind"] == "business"
    assert "Outage: gateway refused [1, 2]" in failed["traceback"]
    assert 'raise Outage(f"gateway refused {items}")' in failed["traceback"]
    assert "zart_nb" not in failed["traceback"]  # from the user's code on
    with pytest.raises(Outage, match="gateway refused"):
        r.step_result("charge")  # the pickled exception, as raised

    assert body() == 3
    assert calls == ["load", "charge", "charge"]
    assert body.last_report.replayed == ["load"]
    assert body.last_report.retried == ["charge"]
    assert {s["name"]: s["attempts"] for s in run("failing").steps} == {"load": 1, "charge": 2}


def test_on_failure_turns_the_error_into_the_result(zart_env):
    seen = []

    def fallback(data, error):
        seen.append((data, error))
        return {"partial": data["id"], "error": str(error)}

    @step("work")
    def work(data):
        raise Outage("down")

    @durable("handled", on_failure=fallback)
    def body(data):
        return work(data)

    assert body({"id": 7}) == {"partial": 7, "error": "down"}
    assert seen[0][0] == {"id": 7} and isinstance(seen[0][1], Outage)
    r = run("handled")
    assert r.status == "completed"
    assert r.result(timeout=1) == {"partial": 7, "error": "down"}


# -- code and argument changes ---------------------------------------------------------

def make_steps():
    """Two versions of the step "compute" (same name, different code) and its consumers."""

    @step("compute")
    def compute_v1(x):
        return x + 1

    @step("compute")
    def compute_v2(x):
        return x + 100

    @step("double")
    def double(y):
        calls.append("double")
        return y * 2

    @step("unrelated")
    def unrelated():
        calls.append("unrelated")
        return "u"

    calls: list[str] = []
    return compute_v1, compute_v2, double, unrelated, calls


def body_with(compute, double, unrelated, x=1):
    def body():
        return double(compute(x)), unrelated()
    return body


def test_changed_code_reruns_the_step_and_its_changed_downstream(zart_env):
    v1, v2, double, unrelated, calls = make_steps()
    assert code_fingerprint(v1) != code_fingerprint(v2)
    assert replay(body_with(v1, double, unrelated), name="chg", run_id="rerun").value == (4, "u")

    again = replay(body_with(v2, double, unrelated), name="chg", run_id="rerun")

    assert again.value == (202, "u")
    assert again.report.changed == ["compute", "double"]  # double's argument changed with it
    assert again.report.replayed == ["unrelated"]
    assert calls == ["double", "unrelated", "double"]


def test_changed_code_under_error_is_refused_naming_the_step(zart_env):
    v1, v2, double, unrelated, _ = make_steps()
    replay(body_with(v1, double, unrelated), name="chg", run_id="error", on_change="error")

    with pytest.raises(CodeChanged) as caught:
        replay(body_with(v2, double, unrelated), name="chg", run_id="error", on_change="error")
    assert "'compute'" in str(caught.value) and "code" in str(caught.value)

    # the journal is untouched: the old code still replays
    same = replay(body_with(v1, double, unrelated), name="chg", run_id="error", on_change="error")
    assert same.value == (4, "u") and same.report.executed == []


def test_changed_code_under_ignore_replays_the_stored_result(zart_env):
    v1, v2, double, unrelated, calls = make_steps()
    replay(body_with(v1, double, unrelated), name="chg", run_id="ignore")

    again = replay(body_with(v2, double, unrelated), name="chg", run_id="ignore",
                   on_change="ignore")

    assert again.value == (4, "u")
    assert again.report.replayed == ["compute", "double", "unrelated"]
    assert calls == ["double", "unrelated"]


@pytest.mark.parametrize("policy", ["rerun", "error", "ignore"])
def test_changed_arguments_follow_the_policy(zart_env, policy):
    v1, _, double, unrelated, _ = make_steps()
    replay(body_with(v1, double, unrelated, x=1), name="chg", run_id=f"args-{policy}",
           on_change=policy)

    def again():
        return replay(body_with(v1, double, unrelated, x=5), name="chg", run_id=f"args-{policy}",
                      on_change=policy)

    if policy == "error":
        with pytest.raises(CodeChanged, match="arguments"):
            again()
    elif policy == "ignore":
        assert again().value == (4, "u")
    else:
        outcome = again()
        assert outcome.value == (12, "u")
        assert outcome.report.changed == ["compute", "double"]


def helper(x):
    return x * 3


def test_a_change_in_a_user_function_the_step_calls_is_a_code_change(zart_env, monkeypatch):
    @step("uses-helper")
    def uses_helper(x):
        return helper(x)

    def body():
        return uses_helper(2)

    assert replay(body, name="dep", run_id="dep").value == 6
    assert replay(body, name="dep", run_id="dep").report.replayed == ["uses-helper"]

    def helper_v2(x):
        return x * 4

    monkeypatch.setitem(globals(), "helper", helper_v2)
    again = replay(body, name="dep", run_id="dep")
    assert again.value == 8 and again.report.changed == ["uses-helper"]


def test_fingerprints_ignore_file_names_and_line_numbers():
    source = "def f(x):\n    return [x, 'a', helper(x)]\n"
    first, second = {"helper": helper}, {"helper": helper}
    exec(compile(source, "/tmp/ipykernel_1/cell-1.py", "exec"), first)
    exec(compile("\n" * 40 + source, "/tmp/ipykernel_2/cell-9.py", "exec"), second)
    assert code_fingerprint(first["f"]) == code_fingerprint(second["f"])

    third = {"helper": helper}
    exec(compile(source.replace("'a'", "'b'"), "/tmp/x.py", "exec"), third)
    assert code_fingerprint(first["f"]) != code_fingerprint(third["f"])



def test_a_step_fed_results_that_share_objects_replays_unchanged(zart_env):
    """Results used in the first execution share objects (pickle writes them once);
    results loaded from the journal are copies: their fingerprints must agree."""
    ran = []

    @step("load-{r}")
    def load(r):
        return {"region": r, "sales": 1}

    @step("total")
    def total(rows):
        ran.append(len(rows))
        return len(rows)

    def body():
        return total([load(r) for r in ["a", "b"]])

    first = execute(body, name="shared", replay_completed=True)
    again = execute(body, name="shared", replay_completed=True)

    assert ran == [2]
    assert first.report.executed == ["load-a", "load-b", "total"]
    assert again.report.replayed == ["load-a", "load-b", "total"] and not again.report.changed
