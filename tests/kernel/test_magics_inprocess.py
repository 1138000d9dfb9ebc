"""The magics in this process, through IPython's InteractiveShell (no kernel): argument
parsing, one-line errors, and the cell machinery on a real PostgreSQL."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from zart_nb.durations import parse_duration
from zart_nb.errors import UsageError
from zart_nb.notebook.cells import analyse


def run(ip, cell: str):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = ip.run_cell(cell)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1.5h", 5400),
                                           ("500ms", 0.5), ("12", 12), ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-3s", "0", "m"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text)


@pytest.mark.parametrize(("source", "reads", "binds"), [
    ("x = 1\ny = x + z", ["z"], ["x", "y"]),
    ("df = load()\ndf['a'] = 1\ndf", ["load"], ["df"]),
    ("x = x + 1", ["x"], ["x"]),
    ("for i in range(3):\n    print(i)", ["print", "range"], ["i"]),
    ("def f(df):\n    return df + g\ndf = f(1)\ndf", ["g"], ["df", "f"]),
    ("ys = [x for x in xs]\nx = 3", ["xs"], ["x", "ys"]),
    ("import os\nos.getcwd()", [], ["os"]),
    ("lst.append(1)", ["lst"], []),
    ("with open(p) as f:\n    t = f.read()", ["open", "p"], ["f", "t"]),
    ("obj.a += 1", ["obj"], []),  # a change in place is seen by value, not from the syntax
])
def test_reads_and_binds(source, reads, binds):
    assert analyse(source) == (reads, binds)


@pytest.mark.parametrize(("cell", "reason"), [
    ("%%zart_durable\nx = 1", "the following arguments are required: NAME"),
    ("%%zart_durable n --bogus\nx = 1", "unrecognized arguments: --bogus"),
    ("%%zart_durable n --timeout 5x\n1", "--timeout '5x' is not a duration"),
    ("%%zart_durable n --on-failure nope\n1", "--on-failure 'nope' does not evaluate"),
    ("%%zart_durable n --on-change sometimes\n1", "invalid choice: 'sometimes'"),
    ("%%zart_step\nx = 1", "the following arguments are required: NAME"),
    ("%zart_event r1", "missing NAME"),
    ("%zart_event", "missing ID and NAME"),
    ("%zart_event r1 e (1/0", "EXPR '(1/0' does not evaluate"),
    ("%zart_event r1 e undefined_name", "NameError"),
    ("%zart_worker fly", "invalid choice: 'fly'"),
    ("%zart_runs --limit 0", "--limit must be at least 1"),
    ("%%zart_durable n --executor nope\n1", "--executor 'nope' does not evaluate: NameError"),
    ("%%zart_durable n --executor 42\n1", "executor must be a concurrent.futures.Executor"),
    ("%%zart_durable n --executor \"'spark://x'\"\n1", "names no executor: use dask://HOST:PORT"),
    ("%%zart_durable n --detach --executor off\n1", "--executor cannot go with --detach"),
    ("%zart_executor nope", "EXPR 'nope' does not evaluate: NameError"),
    ("%zart_executor 'loky:0'", "executor='loky:0' names no executor"),
    ("%zart_executor loky:0", "EXPR 'loky:0' does not evaluate"),
    ("%zart_attach", "the following arguments are required: ID"),
])
def test_usage_errors_are_one_line_with_usage(ip, cell, reason):
    result, out, err = run(ip, cell)
    assert not result.success
    assert err.startswith("UsageError: %")
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert reason in lines[0]
    assert lines[1].startswith("usage: %")
    assert "Traceback" not in err + out


def test_unknown_run_is_a_usage_error(ip, zart_env):
    for cell in ("%zart_attach nosuch", "%zart_resume nosuch", "%zart_load nosuch",
                 "%zart_event nosuch approval 1"):
        result, _, err = run(ip, cell)
        assert not result.success
        assert err.startswith("UsageError: %"), (cell, err)
        assert "nosuch" in err and "does not exist" in err
        assert "Traceback" not in err


def test_durable_cell_binds_variables_and_replays(ip, zart_env, tmp_path: Path):
    log = tmp_path / "log.txt"
    ip.user_ns["LOG"] = str(log)
    setup = (
        "from zart_nb import step\n"
        "@step('add-{i}')\n"
        "def add(i):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write(f'{i}\\n')\n"
        "    return i * 10\n")
    assert run(ip, setup)[0].success
    cell = "%%zart_durable inproc\nvalues = [add(i) for i in range(3)]\ntotal = sum(values)\ntotal\n"
    result, out, err = run(ip, cell)
    assert result.success, err
    assert result.result == 30
    assert "zart: run 'inproc': 0 replayed, 3 executed" in out
    del ip.user_ns["values"], ip.user_ns["total"]
    result, out, err = run(ip, cell)
    assert result.success, err
    assert ip.user_ns["values"] == [0, 10, 20] and ip.user_ns["total"] == 30
    assert "3 replayed, 0 executed" in out
    assert log.read_text().split() == ["0", "1", "2"]


def test_cell_error_shows_the_users_traceback_only(ip, zart_env):
    result, _, _ = run(ip, "%%zart_durable boom\nx = 1\nraise ValueError('bad input')\n")
    assert not result.success
    assert isinstance(result.error_in_exec, ValueError)
    frames = []
    tb = result.error_in_exec.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    assert not any("/zart_nb/engine/" in f for f in frames), frames


def test_unpicklable_result_is_shown_and_stored_as_none(ip, zart_env):
    result, out, err = run(ip, "%%zart_durable lockrun\nimport threading\nthreading.Lock()\n")
    assert result.success, err
    assert "lock" in type(result.result).__name__.lower()
    assert "cannot be stored" in out
    from zart_nb import Run

    assert Run("lockrun").result() is None


def test_step_cell_stores_and_restores(ip, zart_env):
    assert run(ip, "%zart_run inproc-nb")[0].success
    cell = "%%zart_step first\nprint('hello')\na = 41\nb = a + 1\nb\n"
    result, out, err = run(ip, cell)
    assert result.success, err
    assert result.result == 42
    assert "checkpointed in run 'inproc-nb'" in out and "a, b" in out
    del ip.user_ns["a"], ip.user_ns["b"]
    result, out, err = run(ip, cell)
    assert result.success, err
    assert out.startswith("zart: step cell 'first' restored")
    assert "hello" in out
    assert ip.user_ns["a"] == 41 and result.result == 42


def test_unpicklable_variable_is_named(ip, zart_env):
    run(ip, "%zart_run inproc-nb2")
    cell = "%%zart_step lock\nimport threading\nguard = threading.Lock()\nn = 1\n"
    result, out, err = run(ip, cell)
    assert result.success, err
    assert "step cell 'lock' ran because guard is not checkpointable: " in out
    assert "cannot pickle '_thread.lock'" in out and out.strip().endswith("it runs again on every restore")
    result, out, err = run(ip, cell.replace("lock\n", "lock --exclude guard\n", 1))
    assert result.success, err
    assert "2 variables: n, threading" in out


def test_on_failure_handler_gives_the_result(ip, zart_env):
    run(ip, "def fallback(inp, err):\n    return f'recovered from {type(err).__name__}'")
    result, _, err = run(ip, "%%zart_durable flaky --on-failure fallback\nraise KeyError('x')\n")
    assert result.success, err
    from zart_nb import Run

    assert Run("flaky").result() == "recovered from KeyError"


def test_default_notebook_run_and_unstorable_value(ip, zart_env):
    ip.run_line_magic("zart_run", "")
    magics = ip.magics_manager.registry["ZartMagics"]
    magics.notebook_run = None
    ip.user_ns.pop("__session__", None)
    assert magics.current_run() == "notebook"
    ip.user_ns["__session__"] = "/work/analysis.ipynb"
    assert magics.current_run() == "analysis.ipynb"
    cell = "%%zart_step lockcell\nimport threading\nn = 1\nthreading.Lock()\n"
    first = run(ip, cell)
    assert first[0].success, first[2]
    again = run(ip, cell)
    assert again[0].success and "restored" in again[1]
    assert "lock" in repr(again[0].result).lower()  # shown as it was, though not stored
    ip.user_ns.pop("__session__")


def test_executor_magics_send_children_to_the_executor(ip, zart_env, monkeypatch, sql):
    from zart_nb.engine import backends

    monkeypatch.setenv("ZART_WORKERS", "0")  # no zart-nb worker: only an executor runs them
    run(ip, "from concurrent.futures import ThreadPoolExecutor\npool = ThreadPoolExecutor(2)\n"
            "from zart_nb import schedule, wait\ndef double(i):\n    return 2 * i\n")
    try:
        result, out, err = run(ip, "%%zart_durable doubles --executor pool\n"
                                   "wait([schedule(double, i) for i in range(5)])\n")
        assert result.success, err
        assert result.result == [0, 2, 4, 6, 8]
        result, out, _ = run(ip, "%zart_executor")
        assert out == "zart: children of durable bodies run on zart-nb's workers (the PostgreSQL queue)\n"
        result, out, err = run(ip, "%zart_executor pool")
        assert result.success and "children of durable bodies run on <concurrent.futures" in out
        result, out, err = run(ip, "%%zart_durable halves\n"
                                   "wait([schedule(double, i) for i in range(3)])\n")
        assert result.success and result.result == [0, 2, 4], err
        workers = {r["worker"].split(":")[0] for r in sql("SELECT worker FROM steps")}
        assert workers == {"executor"}
        result, out, _ = run(ip, "%zart_executor threads:3")  # a name, as written
        assert out == "zart: children of durable bodies run on threads:3\n"
        result, out, err = run(ip, "%%zart_durable thirds --executor threads:1\n"
                                   "wait([schedule(double, i) for i in range(2)])\n")
        assert result.success and result.result == [0, 2], err
        result, out, _ = run(ip, "%zart_executor off")
        assert out.endswith("run on zart-nb's workers (the PostgreSQL queue)\n")
    finally:
        backends.set_default(None)
        run(ip, "pool.shutdown()")
