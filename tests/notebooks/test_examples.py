"""Every example notebook executes cleanly in a real kernel, and shows what its text
promises: replay after a restart, fan-out results in order, loops that replay the same
data, step cells restored and followed downstream, one run shared by two notebooks,
an approval answered from another notebook, the three kinds of outcome, a cell that
awaits replayed by "Run all" in a fresh kernel."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from .conftest import NOTEBOOKS, WIDGET_VIEW, Executed

pytestmark = pytest.mark.kernel

PROGRESS_ID = "zart_nb.notebook.progress.RunProgress"  # anywidget's _anywidget_id

EXAMPLES = ["01-quickstart.ipynb", "02-fan-out.ipynb", "03-durable-loops.ipynb",
            "04-step-cells.ipynb", "05-share-a-run-a.ipynb", "05-share-a-run-b.ipynb",
            "06-approval-a.ipynb", "06-approval-b.ipynb", "07-error-handling.ipynb",
            "08-async.ipynb", "09-executors.ipynb", "10-durable-kernel.ipynb"]


def summary(text: str, run_id: str) -> str:
    """The line the durable cell printed after itself, without its ``zart: run 'X': ``."""
    found = re.findall(rf"^zart: run '{re.escape(run_id)}': (.*)$", text, re.M)
    assert len(found) == 1, f"no single summary line for run {run_id!r} in:\n{text}"
    return found[0]


def clean(executed: Executed) -> Executed:
    assert executed.errors() == [], f"{executed.path.name}: {executed.errors()}"
    return executed


# -- the files themselves ------------------------------------------------------------
@pytest.mark.timeout(60)
def test_the_notebooks_are_the_generated_ones_without_outputs():
    check = subprocess.run([sys.executable, str(NOTEBOOKS / "build.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXAMPLES)
    for name in EXAMPLES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0].source == "%load_ext zart_nb", name
        assert all(c.outputs == [] and c.execution_count is None for c in code), name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name


# -- 1. quickstart -----------------------------------------------------------------------
def test_quickstart_executed_again_replays_everything_then_only_a_changed_step(run_notebook):
    first = clean(run_notebook("01-quickstart.ipynb"))
    body = first.text("%%zart_durable")
    assert summary(body, "user-onboarding") == "0 replayed, 3 executed"
    assert body.count(" ...\n") == 3  # each step said what it did
    variables = first.text("print(user")
    assert "acct-u-42" in variables and "sent" in variables
    assert "user-onboarding" in first.text("%zart_runs")

    second = clean(run_notebook("01-quickstart.ipynb"))  # a fresh kernel: "restart, run all"
    body = second.text("%%zart_durable")
    assert summary(body, "user-onboarding") == "3 replayed, 0 executed"
    assert " ...\n" not in body  # no step ran
    assert second.text("print(user") == variables
    assert second.result("%%zart_durable") == first.result("%%zart_durable")

    def edit_a_step(nb):  # "Now try it": change a step, keep the others
        [cell] = [c for c in nb.cells if "def setup_account" in c.source]
        cell.source = cell.source.replace("setting up the account", "preparing the account")
        [cell] = [c for c in nb.cells if c.source.startswith("DELAY") or "DELAY = 0.3" in c.source]
        cell.source = cell.source.replace("DELAY = 0.3", "DELAY = 0.1")  # a value: no re-run

    third = clean(run_notebook("01-quickstart.ipynb", edit=edit_a_step))
    body = third.text("%%zart_durable")
    assert summary(body, "user-onboarding") == \
        "2 replayed, 0 executed, 1 re-executed because they changed (setup_account)"
    assert body.count(" ...\n") == 1 and "preparing the account of u-42" in body


# -- 2. fan-out --------------------------------------------------------------------------
def test_fan_out_returns_fifty_results_in_order_with_the_progress_widget(run_notebook):
    done = clean(run_notebook("02-fan-out.ipynb"))
    body = done.text("%%zart_durable")
    assert summary(body, "health-check") == "0 replayed, 52 executed"  # 50 children + 2 steps
    checked, slow = eval(done.result("%%zart_durable"))
    assert checked == 50 and 0 <= slow <= 50
    assert "first three: [{'service': 'svc-00'" in done.text('assert [r["service"]')

    [model_id] = [k for k, m in done.widget_states().items()
                  if m["state"].get("_anywidget_id") == PROGRESS_ID]
    final = done.widget_states()[model_id]["state"]
    assert (final["status"], final["total"], final["finished"]) == ("completed", 50, 50)
    views = [o.data[WIDGET_VIEW]["model_id"] for o in done.cell("%%zart_durable").outputs
             if WIDGET_VIEW in o.get("data", {})]
    assert views == [model_id]


# -- 3. durable loops --------------------------------------------------------------------
def test_durable_loops_replay_the_fetched_list_and_notify_once(run_notebook):
    done = clean(run_notebook("03-durable-loops.ipynb"))
    first, again = done.text("%%zart_durable", 0), done.text("%%zart_durable", 1)
    result = eval(done.result("%%zart_durable", 0))
    assert result["total"] == 8
    steps = 1 + 8 + result["flagged"]  # fetch, process-report-0..7, one notify-i per flagged
    assert summary(first, "report-batch") == f"0 replayed, {steps} executed"
    assert first.count("notifying team@example.com") == result["flagged"]
    assert summary(again, "report-batch") == f"{steps} replayed, 0 executed"
    assert "notifying" not in again
    assert done.result("%%zart_durable", 1) == done.result("%%zart_durable", 0)
    in_run, fresh = done.text("print(\"in the run").splitlines()
    assert in_run.split(":", 1)[1] != fresh.split(":", 1)[1]  # outside a body: new data


# -- 4. step cells -----------------------------------------------------------------------
STEP_CELLS = ("load", "contacts", "score", "notify")


def step_lines(executed: Executed) -> dict[str, str]:
    return {name: executed.text(f"%%zart_step {name}") for name in STEP_CELLS}


def test_step_cells_are_restored_after_a_restart_and_follow_an_upstream_change(run_notebook):
    first = clean(run_notebook("04-step-cells.ipynb"))
    for name, text in step_lines(first).items():
        assert f"zart: step cell '{name}' ran and was checkpointed in run 'step-cells-demo'" in text
    final = first.text('print("reports:')
    assert final == "reports: 6 | flagged: [0, 1, 2, 3] | messages: 8\n"
    assert any("text/html" in o.get("data", {}) for o in first.cell("%%zart_step score").outputs)

    again = clean(run_notebook("04-step-cells.ipynb"))  # restart, run all
    for name, text in step_lines(again).items():
        assert f"zart: step cell '{name}' restored" in text, text
        assert "checkpointed" not in text
    assert "loaded 6 reports" in again.text("%%zart_step load")  # its output, shown again
    assert any("text/html" in o.get("data", {}) for o in again.cell("%%zart_step score").outputs)
    assert again.result("%%zart_step score") == "[0, 1, 2, 3]"
    assert again.text('print("reports:') == final

    def more_reports(nb):
        [cell] = [c for c in nb.cells if "n_reports = 6" in c.source]
        cell.source = cell.source.replace("n_reports = 6", "n_reports = 9")

    changed = clean(run_notebook("04-step-cells.ipynb", edit=more_reports))
    lines = step_lines(changed)
    for name in ("load", "score"):  # load reads n_reports, score reads reports
        assert "checkpointed" in lines[name] and "ran because an input changed (" in lines[name], \
            lines[name]
    # contacts reads nothing that changed; score gave the same `flagged`, so notify neither
    for name in ("contacts", "notify"):
        assert f"zart: step cell '{name}' restored" in lines[name], lines[name]
    assert "loaded 9 reports" in lines["load"]
    assert changed.text('print("reports:') == "reports: 9 | flagged: [0, 1, 2, 3] | messages: 8\n"


# -- 5. one run, two notebooks -----------------------------------------------------------
def test_the_same_durable_cell_in_two_notebooks_executes_once(run_notebook, zart_env):
    log = Path(os.environ["ZART_HOME"]) / "share-a-run.log"
    executed: dict[str, Executed] = {}
    failures: list[BaseException] = []

    def execute(name: str) -> None:
        try:
            executed[name] = run_notebook(name)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=execute, args=(n,))
               for n in ("05-share-a-run-a.ipynb", "05-share-a-run-b.ipynb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    a, b = clean(executed["05-share-a-run-a.ipynb"]), clean(executed["05-share-a-run-b.ipynb"])

    lines = log.read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == ["east", "north", "south", "total", "west"]
    assert len({line.split()[0] for line in lines}) == 1  # one kernel executed every step

    bodies = {"a": a.text("%%zart_durable"), "b": b.text("%%zart_durable")}
    owners = [k for k, text in bodies.items() if "loading" in text]
    assert len(owners) == 1, bodies
    [other] = [k for k in bodies if k not in owners]
    assert summary(bodies[owners[0]], "shared-sales") == "0 replayed, 5 executed"
    assert re.fullmatch(r"(attached, then replayed here: )?5 replayed, 0 executed",
                        summary(bodies[other], "shared-sales"))
    assert a.result("%%zart_durable") == b.result("%%zart_durable") == "2200"
    assert a.text("print(rows)") == b.text("print(rows)")
    assert "completed" in b.text("from zart_nb import run")
    assert a.text("print(LOG") == b.text("print(LOG") and len(a.text("print(LOG").split()) == 10


# -- 6. an approval answered from another notebook ---------------------------------------
def test_an_approval_sent_from_one_notebook_completes_the_other(run_notebook, zart_env):
    from zart_nb import RunNotFound, run

    executed: list[Executed] = []
    failures: list[BaseException] = []

    def execute_a() -> None:
        try:
            executed.append(run_notebook("06-approval-a.ipynb"))
        except BaseException as exc:
            failures.append(exc)

    waiter = threading.Thread(target=execute_a)
    waiter.start()
    deadline = time.monotonic() + 60
    status = None
    while status != "waiting" and time.monotonic() < deadline and waiter.is_alive():
        with contextlib.suppress(RunNotFound):
            status = run("release-2024-06").status
        time.sleep(0.1)
    assert status == "waiting", f"notebook a never waited for its event: {failures}"

    b = clean(run_notebook("06-approval-b.ipynb"))
    waiter.join(60)
    assert not failures, failures
    [a] = executed
    clean(a)

    assert "run release-2024-06 is waiting" in b.text("from zart_nb import")
    assert "event 'approval' sent to run 'release-2024-06'" in b.text("%zart_event")
    assert "refused: event 'approval' was already sent" in b.text("try:")
    assert b.text("print(waiting.result") == "deployed 2.4.0 (approved by grace)\n"

    body = a.text("%%zart_durable")
    assert "waiting for an approval" in body
    assert summary(body, "release-2024-06") == "0 replayed, 3 executed"  # prepare, event, deploy
    assert a.result("%%zart_durable") == "'deployed 2.4.0 (approved by grace)'"
    assert "'approved': True, 'by': 'grace'" in a.text('print("approval:')


# -- 7. error handling -------------------------------------------------------------------
def test_error_handling_shows_each_kind_of_outcome(run_notebook):
    done = clean(run_notebook("07-error-handling.ipynb"))
    outcomes = done.text("%%zart_durable error-handling")
    expected = [
        "parse 12.5  -> Ok: 12.5",
        "parse n/a   -> Err (business): ValueError: could not convert string to float: 'n/a'",
        "flaky       -> Ok: {'rate': 1.08}",
        "down        -> Failed (framework): StepFailed: step 'service_down' failed after 2 attempts",
        "slow        -> Failed (framework): StepTimedOut: step 'slow_lookup' timed out after 0.5 s",
    ]
    lines = outcomes.splitlines()
    for want, got in zip(expected, lines, strict=False):
        assert got.startswith(want), (want, got)
    assert summary(outcomes, "error-handling") == "0 replayed, 5 executed"

    defaults = done.text("%%zart_durable defaults")
    assert "amounts: [3.5, 0.0, 1.25] | total: 4.75" in defaults
    assert "retyped: could not read it (could not convert string to float: '1,5')" in defaults
    assert done.result("%%zart_durable checkout") == "{'charged': False, 'reason': 'card declined'}"


# -- 8. async ----------------------------------------------------------------------------
def test_an_awaiting_cell_runs_then_replays_under_run_all(run_notebook):
    first = clean(run_notebook("08-async.ipynb"))
    body = first.text("%%zart_durable weather")
    assert summary(body, "weather") == "0 replayed, 8 executed"  # 6 fetches, the sleep, summarize
    assert body.count(" ...\n") == 6
    cities = first.text("print([f[")
    assert cities == "['Oslo', 'Lisbon', 'Nairobi', 'Lima', 'Osaka', 'Perth']\n"
    assert first.result("%%zart_durable weather") == "'Nairobi'"

    second = clean(run_notebook("08-async.ipynb"))  # a fresh kernel: "restart, run all"
    body = second.text("%%zart_durable weather")
    assert summary(body, "weather") == "8 replayed, 0 executed"
    assert " ...\n" not in body  # nothing fetched again
    assert second.text("print([f[") == cities
    assert second.result("%%zart_durable weather") == "'Nairobi'"


# -- 9. executors ------------------------------------------------------------------------
def test_a_fan_out_on_a_dask_cluster_reaches_100_percent_and_replays(run_notebook):
    done = clean(run_notebook("09-executors.ipynb"))
    body = done.text("%%zart_durable")
    assert summary(body, "scoring") == "0 replayed, 120 executed"
    assert eval(done.result("%%zart_durable")) == {"i": 30, "score": 100, "attempt": 1}
    assert done.text("from zart_nb import run") == "120 scores; 120 committed by {'executor'}\n"
    assert "children of durable bodies run on <Client: 'tcp://127.0.0.1" in done.text("%zart_executor")

    [model_id] = [k for k, m in done.widget_states().items()
                  if m["state"].get("_anywidget_id") == PROGRESS_ID]
    final = done.widget_states()[model_id]["state"]
    assert (final["status"], final["total"], final["finished"]) == ("completed", 120, 120)
    assert final["states"] == "c" * 120 and final["rate"] > 0 and final["eta"] == 0

    again = clean(run_notebook("09-executors.ipynb"))  # restart, run all: nothing sent
    assert summary(again.text("%%zart_durable"), "scoring") == "120 replayed, 0 executed"
    assert again.result("%%zart_durable") == done.result("%%zart_durable")


# -- 10. the durable kernel -----------------------------------------------------------------
CELLS_10 = {"imports": "import sqlite3", "load": "time.sleep(1)", "model": "class LinearModel",
           "fit": "model.fit(", "drop": "del df[", "connect": "db = sqlite3", "use": "db.execute(",
           "show": "from IPython.display"}


def zart_lines(executed: Executed) -> dict[str, str]:
    """The summary line each automatic cell printed (``zart: cell …``)."""
    found = {}
    for key, start in CELLS_10.items():
        lines = [line for line in executed.text(start).splitlines() if line.startswith("zart: cell")]
        assert len(lines) == 1, (key, executed.text(start))
        found[key] = lines[0]
    return found


def printed(executed: Executed) -> str:
    [line] = [x for x in executed.text("from IPython.display").splitlines() if x.startswith("columns:")]
    return line


def test_durable_kernel_restores_every_cell_and_follows_an_edit(run_notebook):
    first = clean(run_notebook("10-durable-kernel.ipynb"))
    lines = zart_lines(first)
    assert "this front-end sends no cell ids" in first.text("import sqlite3")  # nbclient sends none
    assert lines["imports"].startswith("zart: cell ran because it only imports")
    for key in ("load", "model", "fit", "drop", "show"):
        assert lines[key].startswith("zart: cell ran and was checkpointed in run 'durable-kernel-demo'"), \
            lines[key]
    assert "(model changed in place)" in lines["fit"]
    assert "(df, history, settings changed in place)" in lines["drop"]
    assert lines["connect"].startswith("zart: cell ran because db is not checkpointable: ")
    assert lines["use"].startswith("zart: cell ran because it reads db, whose changes cannot be seen")
    final = printed(first)
    assert final.startswith("columns: ['x1', 'x2', 'y'] | history: [1.0] | settings: ")
    assert "'fitted': True" in final and final.endswith("| stored: 3")

    again = clean(run_notebook("10-durable-kernel.ipynb"))  # a fresh kernel: restart, run all
    lines = zart_lines(again)
    for key in ("load", "model", "fit", "drop", "show"):
        assert lines[key].startswith("zart: cell restored (ran "), lines[key]
    for key in ("imports", "connect", "use"):
        assert lines[key].startswith("zart: cell ran because"), lines[key]
    assert "loaded 1000 rows" in again.text("time.sleep(1)")  # its output, shown again
    assert again.result("del df[") == first.result("del df[") == "(1000, 3)"
    assert again.result("model.fit(").startswith("<__main__.LinearModel at ")  # Out[n]: the model
    assert any("text/html" in o.get("data", {}) for o in again.cell("from IPython.display").outputs)
    assert printed(again) == final

    def one_feature(nb):
        [cell] = [c for c in nb.cells if c.source.startswith("class LinearModel")]
        cell.source = cell.source.replace('{"features": ["x1", "x2"]}', '{"features": ["x1"]}')

    edited = clean(run_notebook("10-durable-kernel.ipynb", edit=one_feature))
    lines = zart_lines(edited)
    assert lines["load"].startswith("zart: cell restored"), lines["load"]
    assert lines["model"].startswith("zart: cell ran and was checkpointed")  # a new text: a new cell
    for key in ("fit", "drop"):
        assert lines[key].startswith("zart: cell ran because an input changed (") and \
            "settings" in lines[key], lines[key]
    assert lines["show"].startswith("zart: cell ran because an input changed (")
    assert "'features': ['x1']" in edited.text("from IPython.display")
