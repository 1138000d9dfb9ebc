"""Names as data: SQL metacharacters and unicode in run ids, step and event names work
as themselves; NUL and over-long names are refused clearly; duplicate names and bad
templates name the mistake. After each refusal the run completes once it is fixed."""

from __future__ import annotations

import pytest

from tests.chaos.figures import record
from tests.helpers import execute
from zart_nb import (
    DuplicateStepName,
    TemplateError,
    UsageError,
    run,
    send_event,
    step,
    wait_for_event,
)

from .conftest import steps_of

NAMES = {
    "sql": "'; DROP TABLE runs; --",
    "quotes": 'a"b\'c\\d%s%(x)s{0}$1',
    "emoji": "report 📈🔥 ✓",
    "rtl": "דוח-שבועי مرحبا",
    "mixed": "ﬁ\u200bzero-width\u00a0nbsp\ttab\nnewline",
}


@step("echo")
def echo(value):
    return value


@pytest.mark.parametrize("label", list(NAMES))
def test_metacharacters_and_unicode_are_names_like_any_other(zart_env, sql, label):
    name = NAMES[label]
    event = f"{name} (event)"

    def body(waits):
        first = echo.named(name)(label)
        return (first, wait_for_event(event)) if waits else first

    assert execute(body, (False,), name=name, run_id=name).value == label
    send_event(name, event, {"payload": name})
    out = execute(body, (True,), name=name, run_id=name, replay_completed=True)
    assert out.value == (label, {"payload": name})
    assert out.report.replayed == [name] and out.report.executed == [event]
    assert sql("SELECT count(*) AS n FROM runs")[0]["n"] == 1  # the table is still there
    assert steps_of(sql, name) == {name: "completed", event: "completed"}
    assert run(name).status == "completed" and run(name).step_result(name) == label
    record("badinput", f"run id, step and event name: {label} {name!r}",
           outcome="works: stored, replayed and found as itself")


@pytest.mark.parametrize("where", ["run id", "step name", "event name"])
def test_a_nul_character_is_refused_clearly(zart_env, sql, where):
    bad = "before\x00after"

    def body(fixed):
        name = "before-after" if fixed else bad
        if where == "step name":
            return echo.named(name)(1)
        return echo(1)

    def attempt():
        if where == "run id":
            execute(body, (False,), name="nul", run_id=bad)
        elif where == "step name":
            execute(body, (False,), name="nul-step")
        else:
            execute(body, (True,), name="nul-event")
            send_event("nul-event", bad)

    with pytest.raises(UsageError) as caught:
        attempt()
    message = str(caught.value)
    assert message == f"{where} 'before\\x00after' contains a NUL character"
    record("badinput", f"NUL in a {where}", outcome=f"UsageError: {message}")
    if where == "step name":
        assert execute(body, (True,), name="nul-step").value == 1
    if where == "run id":
        assert execute(body, (True,), name="nul", run_id="before-after").value == 1


@pytest.mark.parametrize("kind", ["repeated", "random"])
def test_a_run_id_of_10000_characters_is_refused_clearly(zart_env, sql, kind):
    import random

    rng = random.Random(10_000)
    long_id = "r" * 10_000 if kind == "repeated" else "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10_000))
    with pytest.raises(UsageError) as caught:
        execute(lambda: echo(1), name="long", run_id=long_id)
    message = str(caught.value)
    assert message.endswith("... is 10000 bytes long; at most 1000 (it is a key of the "
                            "journal's indexes)")
    assert sql("SELECT count(*) AS n FROM runs")[0]["n"] == 0  # nothing half-created
    record("badinput", f"a run id of 10,000 characters ({kind})", outcome=f"UsageError: {message}")
    # at the limit, it works
    assert execute(lambda: echo(1), name="long", run_id=long_id[:1000]).value == 1


def test_an_over_long_step_name_is_refused_and_the_run_goes_on(zart_env, sql):
    def body(length):
        return echo.named("s" * length)(1)

    with pytest.raises(UsageError, match=r"step name 's+'... is 5000 bytes long; at most 1000"):
        execute(body, (5000,), name="long-step")
    assert execute(body, (1000,), name="long-step").value == 1


def test_duplicate_names_name_both_call_sites(zart_env, sql):
    state = {"fixed": False}

    @step("load")
    def load(part):
        return part

    def body():
        a = load("a")
        b = load("b") if not state["fixed"] else load.named("load-b")("b")
        return a + b

    with pytest.raises(DuplicateStepName) as caught:
        execute(body, name="dup")
    message = str(caught.value)
    assert "step name 'load' is used twice in one execution of run 'dup'" in message
    assert message.count("test_names.py:") == 2  # both call sites
    assert steps_of(sql, "dup") == {"load": "completed"}  # the first stays good
    record("badinput", "the same step name twice in one execution",
           outcome="DuplicateStepName: " + message.split(": first at")[0] + ": first at FILE:LINE, "
                   "again at FILE:LINE; give each call its own name …")
    state["fixed"] = True
    out = execute(body, name="dup")
    assert out.value == "ab" and out.report.replayed == ["load"]


@pytest.mark.parametrize("template", ["part-{missing}", "part-{0}", "part-{part", "part-{part.x}"])
def test_bad_templates_are_refused_before_the_step_runs(zart_env, sql, template):
    ran = []

    def make(tpl):
        @step(tpl)
        def part(part):
            ran.append(part)
            return part * 2
        return part

    state = {"template": template}

    def body():
        return make(state["template"])(21)

    with pytest.raises(TemplateError) as caught:
        execute(body, name="template")
    message = str(caught.value)
    assert message.startswith(f"step name template {template!r} of ") and "(parameters: part)" in message
    assert ran == [] and steps_of(sql, "template") == {}
    record("badinput", f"bad step-name template {template!r}", outcome=f"TemplateError: {message}")
    state["template"] = "part-{part}"
    assert execute(body, name="template").value == 42
    assert steps_of(sql, "template") == {"part-21": "completed"}
