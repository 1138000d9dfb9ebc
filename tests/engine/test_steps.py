"""Steps inside a durable body: names, templates, retries, timeouts, outcomes, payloads."""

from __future__ import annotations

import random
import threading
import time

import pytest

from zart_nb import (
    DuplicateStepName,
    Err,
    Failed,
    Ok,
    RetryPolicy,
    StepFailed,
    StepTimedOut,
    TemplateError,
    UsageError,
    capture,
    context,
    durable,
    now,
    run,
    step,
)
from zart_nb.engine import execution
from zart_nb.engine.model import StepContext
from zart_nb.store import sql

from .helpers import replay

# -- outside a body --------------------------------------------------------------------

def test_a_step_outside_a_body_is_its_plain_function():
    calls = []

    @step("add-{a}")
    def add(a, b=1):
        calls.append(context())
        return a + b

    assert add(2) == 3
    assert add.named("x")(2, b=5) == 7
    assert add.outcome(1) == Ok(2)
    assert calls[0].run_id is None and calls[0].attempt == 1
    assert add.__name__ == "add" and add.__doc__ is None

    @step
    def broken():
        raise KeyError("k")

    assert isinstance(broken.outcome().error, KeyError)
    assert broken.or_default(0)() == 0
    with pytest.raises(KeyError):
        broken()
    assert capture("c", lambda: 42) == 42


# -- names -----------------------------------------------------------------------------

def test_templates_and_named_calls_name_the_steps(zart_env):
    @step("process-report-{index}")
    def process_report(index, report, *, scale=2):
        return report * scale

    @step("notify")
    def notify(who):
        return f"sent to {who}"

    @step
    def plain():
        return "p"

    @durable("names")
    def body():
        out = [process_report(i, r) for i, r in enumerate([10, 20])]
        out.append(process_report(index="kw", report=1, scale=3))
        out.append(notify.named("notify-team")("team"))
        out.append(plain())
        return out

    assert body() == [20, 40, 3, "sent to team", "p"]
    assert [s["name"] for s in run("names").steps] == [
        "process-report-0", "process-report-1", "process-report-kw", "notify-team", "plain"]


def test_an_unknown_template_parameter_names_the_template(zart_env):
    @step("fetch-{batch}-{nope}")
    def fetch(batch):
        return batch

    @durable("bad-template")
    def body():
        return fetch("q3")

    with pytest.raises(TemplateError) as caught:
        body()
    assert "fetch-{batch}-{nope}" in str(caught.value)
    assert "'nope'" in str(caught.value) and "batch" in str(caught.value)
    with pytest.raises(UsageError, match="non-empty"):
        fetch.named("")


def test_a_duplicate_step_name_names_both_call_sites(zart_env):
    @step("load")
    def load(x):
        return x

    @durable("dupes")
    def body():
        load(1)
        load(2)  # same name again: a silent wrong result on replay if it were allowed

    with pytest.raises(DuplicateStepName) as caught:
        body()
    message = str(caught.value)
    first_line = body.fn.__code__.co_firstlineno + 2
    assert f"test_steps.py:{first_line}" in message
    assert f"test_steps.py:{first_line + 1}" in message
    assert "'load'" in message


def test_call_sites_are_right_whatever_path_of_zart_nb_the_calls_took(zart_env):
    # call_site tries the depth it found last; calls that enter zart_nb by paths of
    # other depths (a capture, .named, .outcome, a helper of the user's) must not
    # take a frame of ours or of the wrong caller for the user's line.
    @step("load")
    def load(x):
        return x

    def helper():
        return load.named("deep")(3)

    @durable("sites")
    def body():
        load(1)
        capture("moment", lambda: 0)
        helper()
        load.outcome(2)  # 'load' again: first at the line of load(1)

    with pytest.raises(DuplicateStepName) as caught:
        body()
    first_line = body.fn.__code__.co_firstlineno + 2
    assert f"first at {__file__}:{first_line}, again at {__file__}:{first_line + 3}" \
        in str(caught.value)

    @durable("sites-2")
    def body_2():
        helper()
        load(1)
        helper()  # 'deep' again: both times from the helper's line

    with pytest.raises(DuplicateStepName) as caught:
        body_2()
    line = helper.__code__.co_firstlineno + 1
    assert f"first at {__file__}:{line}, again at {__file__}:{line}" in str(caught.value)

    def nested(levels):
        if levels:
            return nested(levels - 1)  # user frames where a deeper path's guess lands
        return capture("moment", lambda: 0)

    @durable("sites-3")
    def body_3():
        load(1)
        nested(4)
        capture("moment", lambda: 0)

    with pytest.raises(DuplicateStepName) as caught:
        body_3()
    line = nested.__code__.co_firstlineno + 3
    assert f"first at {__file__}:{line}, again" in str(caught.value)


# -- capture, now, context -------------------------------------------------------------

def test_capture_now_and_context_are_replayed(zart_env):
    seen = []

    @step("inside")
    def inside():
        seen.append(context())
        return 1

    def body():
        outer = context()
        return (capture("pick", lambda: random.random()), now("started"), inside(),
                outer.run_id, outer.durable_name)

    first = replay(body, name="ctx", run_id="ctx-1").value
    time.sleep(0.01)
    again = replay(body, name="ctx", run_id="ctx-1")

    assert again.value == first
    assert first[3:] == ("ctx-1", "ctx")
    assert again.report.replayed == ["pick", "started", "inside"]
    assert seen == [StepContext("ctx-1", "ctx", "inside", 1)]
    with pytest.raises(UsageError):
        replay(lambda: capture("", int), name="ctx", run_id="ctx-2")


# -- retries ---------------------------------------------------------------------------

def test_retries_keep_the_history_of_each_failed_attempt(zart_env):
    tries = []

    @step("flaky", retry=RetryPolicy.fixed(3, delay=0.01))
    def flaky():
        tries.append(context().attempt)
        if len(tries) < 3:
            raise ConnectionError(f"try {len(tries)} failed")
        return "finally"

    @durable("retries")
    def body():
        return flaky()

    assert body() == "finally"
    assert tries == [1, 2, 3]
    history = run("retries").attempts("flaky")
    assert [(h["attempt"], h["status"]) for h in history] == [(1, "failed"), (2, "failed")]
    assert history[0]["error"] == "ConnectionError: try 1 failed"
    (row,) = run("retries").steps
    assert row["status"] == "completed" and row["attempts"] == 3 and row["max_attempts"] == 4


def test_exhausted_retries_are_a_framework_failure(zart_env):
    @step("hopeless", retry=RetryPolicy.fixed(2, delay=0))
    def hopeless():
        raise ValueError("no")

    @durable("exhausted")
    def body():
        return hopeless.outcome()

    result = body()
    assert isinstance(result, Failed)
    assert isinstance(result.error, StepFailed) and result.error.reason == "retries_exhausted"
    assert result.error.step == "hopeless"
    assert isinstance(result.error.__cause__, ValueError)
    assert [h["attempt"] for h in run("exhausted").attempts("hopeless")] == [1, 2, 3]


def test_retry_policy_delays_are_pure_and_seeded():
    exp = RetryPolicy.exponential(5, delay=1, factor=2, max_delay=5, jitter=0)
    assert [exp.delay_before(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert RetryPolicy.fixed(3, delay=0.5).delay_before(3) == 0.5

    jittery = RetryPolicy.exponential(3, delay=10, jitter=0.1)
    a = [jittery.delay_before(n, random.Random(7)) for n in (1, 2, 3)]
    b = [jittery.delay_before(n, random.Random(7)) for n in (1, 2, 3)]
    assert a == b
    assert 9 <= a[0] <= 11 and 18 <= a[1] <= 22 and 36 <= a[2] <= 44

    assert RetryPolicy.coerce(3).max_attempts == 4
    assert RetryPolicy.coerce(None).max_attempts == 1
    for bad in (-1, True, "3"):
        with pytest.raises(UsageError):
            RetryPolicy.coerce(bad)
    with pytest.raises(UsageError):
        RetryPolicy(retries=1, jitter=2)


# -- timeouts --------------------------------------------------------------------------

def test_a_timeout_is_a_framework_failure_and_is_not_retried(zart_env):
    starts = []

    @step("slow", timeout=0.2, retry=RetryPolicy.fixed(3, delay=0))
    def slow():
        starts.append(time.monotonic())
        for _ in range(100):
            time.sleep(0.02)
        return "never"

    @durable("timeout")
    def body():
        return slow.or_default("fallback")()  # business errors only: a timeout still raises

    begun = time.monotonic()
    with pytest.raises(StepTimedOut) as caught:
        body()
    assert time.monotonic() - begun < 1.5
    assert caught.value.reason == "timed_out" and caught.value.step == "slow"
    assert len(starts) == 1
    (row,) = run("timeout").steps
    assert row["status"] == "failed" and row["error_kind"] == "framework"
    assert run("timeout").status == "failed"
    with pytest.raises(UsageError):
        step(timeout=-1)(lambda: None)


def test_a_timed_out_steps_traceback_shows_where_the_deadline_found_it(zart_env):
    @step("stuck", timeout=0.2)
    def stuck():
        time.sleep(30)

    with pytest.raises(StepTimedOut):
        durable("stuck")(lambda: stuck())()
    lines = run("stuck").steps[0]["traceback"].splitlines()
    assert lines[-3:] == [f'  File "{__file__}", line {stuck.fn.__code__.co_firstlineno + 2}, '
                          "in stuck", "    time.sleep(30)",
                          "zart_nb.StepTimedOut: step 'stuck' timed out after 0.2 s"]
    assert lines[0] == "Traceback (most recent call last):" and len(lines) == 4


# -- outcomes --------------------------------------------------------------------------

class Declined(Exception):
    pass


def test_every_outcome_form(zart_env):
    @step("pay-{n}")
    def pay(n):
        if n < 0:
            raise Declined(f"card declined for {n}")
        return n * 10

    handled = []

    @durable("outcomes")
    def body():
        results = {
            "ok": pay.outcome(1),
            "err": pay.outcome(-1),
            "default": pay.or_default(0)(-2),
            "default_ok": pay.or_default(0)(3),
            "else": pay.or_else(lambda e: handled.append(e) or "handled")(-4),
            "named": pay.named("pay-custom").outcome(5),
            "named_default": pay.named("pay-custom-2").or_default("d")(-6),
        }
        try:
            pay(-7)
        except Declined as exc:
            results["raised"] = str(exc)
        return results

    r = body()
    assert r["ok"] == Ok(10)
    assert isinstance(r["err"], Err) and isinstance(r["err"].error, Declined)
    assert r["default"] == 0 and r["default_ok"] == 30
    assert r["else"] == "handled" and isinstance(handled[0], Declined)
    assert r["named"] == Ok(50) and r["named_default"] == "d"
    assert r["raised"] == "card declined for -7"

    match r["err"]:
        case Err(error=Declined()):
            pass
        case _:
            pytest.fail("Err did not match")


def test_not_picklable_result_fails_the_step_and_the_journal_stays_consistent(zart_env):
    fixed = {"yes": False}

    @step("make-lock")
    def make_lock():
        return "a lock" if fixed["yes"] else {"lock": threading.Lock()}

    @step("before")
    def before():
        return "b"

    @durable("unpicklable")
    def body():
        return before(), make_lock()

    with pytest.raises(StepFailed) as caught:
        body()
    assert caught.value.reason == "not_picklable"
    assert "make-lock" in str(caught.value) and "lock" in str(caught.value)
    steps = {s["name"]: s["status"] for s in run("unpicklable").steps}
    assert steps == {"before": "completed", "make-lock": "failed"}

    fixed["yes"] = True
    assert body() == ("b", "a lock")
    assert body.last_report.replayed == ["before"]
    assert body.last_report.executed == ["make-lock"]


# -- payloads, durability, one query ---------------------------------------------------

def test_large_results_go_out_of_line_once_per_content(zart_env, sql):
    blob = bytes(range(256)) * 200  # 51 KB, beyond the 16 KB inline limit

    @step("big-{i}")
    def big(i):
        return blob

    @step("small")
    def small():
        return b"x" * 100

    def body():
        return [len(big(i)) for i in range(3)] + [len(small())]

    assert replay(body, name="large", run_id="large").value == [51200] * 3 + [100]
    rows = sql("SELECT name, result IS NULL AS out, result_hash FROM steps ORDER BY name")
    assert [r["out"] for r in rows] == [True, True, True, False]
    assert len({bytes(r["result_hash"]) for r in rows[:3]}) == 1
    assert sql("SELECT count(*) AS n FROM payloads")[0]["n"] == 1

    seen = []
    again = replay(lambda: seen.append(big(0)) or big(1), name="large", run_id="large")
    assert again.value == blob and seen == [blob]
    assert run("large").step_result("big-2") == blob


def test_asynchronous_durability_commits_and_restores_the_setting(zart_env):
    @step("s-{i}")
    def s(i):
        return i

    observed = []

    @durable("async-run", durability="async")
    def body():
        observed.append(execution.current().conn.execute("SHOW synchronous_commit").fetchone()[0])
        return sum(s(i) for i in range(20))

    assert body() == 190
    assert observed == ["off"]
    assert run("async-run").status == "completed"
    assert len(run("async-run").steps) == 20
    with pytest.raises(UsageError):
        durable("x", durability="maybe")


def test_replay_loads_the_journal_in_one_query(zart_env, monkeypatch):
    @step("s-{i}")
    def s(i):
        return i * 2

    def body():
        return sum(s(i) for i in range(200))

    assert replay(body, name="one-query", run_id="one-query").value == 39800

    issued = []
    original = sql.run_query

    def counting(conn, query, *args, **kwargs):
        issued.append(query.name)
        return original(conn, query, *args, **kwargs)

    monkeypatch.setattr(sql, "run_query", counting)
    again = replay(body, name="one-query", run_id="one-query")

    assert again.value == 39800 and len(again.report.replayed) == 200
    assert issued.count("load_journal") == 1
    assert len(issued) < 10, issued  # run bookkeeping only: nothing per step


def test_template_names_are_the_same_whatever_the_call_shape(zart_env):
    @step("t-{a}-{b}-{c}")
    def t(a, b=2, *, c=3):
        return a + b + c

    @durable("shapes")
    def body():
        # each shape twice: the second call of a shape takes the cached path
        return [t(1), t(10), t(1, 5), t(10, 5), t(a=7), t(a=8), t(1, c=9), t(2, c=9),
                t(b=0, a=4, c=0), t(b=0, a=5, c=0)]

    assert body() == [6, 15, 9, 18, 12, 13, 12, 13, 4, 5]
    assert [s["name"] for s in run("shapes").steps] == [
        "t-1-2-3", "t-10-2-3", "t-1-5-3", "t-10-5-3", "t-7-2-3", "t-8-2-3", "t-1-2-9",
        "t-2-2-9", "t-4-0-0", "t-5-0-0"]

    @step("v-{args}-{kw}")
    def v(*args, **kw):
        return len(args)

    @durable("shapes-var")
    def body2():
        return v(1, 2), v(3, x=1), v(3, x=2)

    assert body2() == (2, 1, 1)
    assert [s["name"] for s in run("shapes-var").steps] == [
        "v-(1, 2)-{}", "v-(3,)-{'x': 1}", "v-(3,)-{'x': 2}"]

    @durable("shapes-bad")
    def body3():
        t(1)
        return t(1, 2, 3)  # too many positional arguments: refused before running

    with pytest.raises(UsageError, match="too many positional"):
        body3()


class _Cfg:
    real = "attr"


@pytest.mark.parametrize("template", [
    "s-{i}", "{i}{i}-{j}", "{i:03d}-{j!r}", "{{lit}}-{i}}}", "{cfg[a]}-{obj.real}",
    "{i:>{w}}", "{}-{i}", "{0}", "x-{k}", "{j.real}-{cfg[a]:>5}"])
def test_a_template_fills_alike_by_its_rewritten_form_and_by_name(template):
    """Later calls of a shape fill the template rewritten by position (by_position);
    every name must be the one ``template.format`` gives with the bound arguments."""
    @step(template)
    def fn(i, j=1, *, cfg=None, obj=_Cfg, w=6):
        return i

    calls = [((5,), {"cfg": {"a": 1}}), ((6,), {"cfg": {"a": 2}}),
             ((5, 2.5), {"cfg": {"a": 1}, "w": 3}), ((7, 2), {"cfg": {"a": 3}, "w": 3}),
             ((), {"i": 1, "cfg": {"a": "b"}}), ((), {"i": 2, "cfg": {"a": "c"}})]
    for args, kwargs in calls:
        bound = {"i": None, "j": 1, "cfg": None, "obj": _Cfg, "w": 6, **kwargs}
        bound.update(zip(("i", "j"), args, strict=False))
        try:
            expected = template.format(**bound)
        except (KeyError, IndexError, AttributeError, ValueError):
            with pytest.raises(TemplateError):
                fn.resolve_name(template, args, kwargs)
            continue
        assert fn.resolve_name(template, args, kwargs) == expected


def test_a_template_that_fails_on_a_later_call_names_what_failed_then():
    @step("{cfg.real}")
    def fn(cfg):
        return cfg

    assert fn.resolve_name(fn.template, (3,), {}) == "3"  # the shape's rewritten form kept
    with pytest.raises(TemplateError, match="has no attribute 'real'"):
        fn.resolve_name(fn.template, ("text",), {})
