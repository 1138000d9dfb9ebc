"""``zart-nb runs`` and ``zart-nb event`` on runs executed in this process."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from tests.frames import sample_frame
from zart_nb import run

from .bodies import failed_run, summing, value
from .conftest import assert_one_line_error, zart


def test_list_shows_runs_as_a_table_and_as_json(zart_env):
    summing(3, run_id="sum-a")
    failed_run("fail-a")

    table = zart("runs", "list")
    assert table.code == 0, table
    assert "sum-a" in table.out and "fail-a" in table.out
    assert "completed" in table.out and "failed" in table.out

    listed = zart("runs", "list", "--json")
    assert listed.code == 0, listed
    by_id = {r["run_id"]: r for r in listed.json()}
    assert by_id["sum-a"]["status"] == "completed"
    assert by_id["sum-a"]["steps_done"] == by_id["sum-a"]["steps_total"] == 1
    assert by_id["fail-a"]["status"] == "failed"

    only_failed = zart("runs", "list", "--status", "failed", "--json").json()
    assert [r["run_id"] for r in only_failed] == ["fail-a"]
    by_name = zart("runs", "list", "--name", "cli-sum", "--limit", "1", "--json").json()
    assert [r["run_id"] for r in by_name] == ["sum-a"]


def test_show_gives_steps_with_status_attempts_and_errors(zart_env):
    failed_run("fail-b")

    text = zart("runs", "show", "fail-b")
    assert text.code == 0, text
    assert "double" in text.out and "explode" in text.out
    assert text.out.count("kaboom [x]") == 3  # run error, step row, attempt history

    shown = zart("runs", "show", "fail-b", "--json")
    assert shown.code == 0, shown
    info = shown.json()
    assert info["status"] == "failed"
    steps = {s["name"]: s for s in info["steps"]}
    assert steps["double"]["status"] == "completed"
    assert steps["double"]["attempts"] == 1
    assert steps["double"]["duration_s"] >= 0
    assert steps["explode"]["status"] == "failed"
    assert "kaboom" in steps["explode"]["error"]
    assert "ValueError" in steps["explode"]["traceback"]


def test_unknown_run_is_a_usage_error_in_one_line(zart_env):
    for args in (["runs", "show", "nope"], ["runs", "cancel", "nope"],
                 ["runs", "result", "nope"], ["event", "send", "nope", "go"]):
        assert_one_line_error(zart(*args), 2, "'nope'", "does not exist")


def test_cancel_restart_rerun_and_retry_step(zart_env, sql):
    sql.execute("INSERT INTO runs (run_id, name, status) VALUES ('live', 'cli-x', 'pending')")
    done = zart("runs", "cancel", "live")
    assert done.code == 0, done
    assert run("live").status == "cancelled"
    assert zart("runs", "cancel", "live").code == 0  # already cancelled: nothing to do

    summing(4, run_id="sum-c")
    assert_one_line_error(zart("runs", "cancel", "sum-c"), 2, "completed")

    rerun = zart("runs", "rerun", "sum-c", "double")
    assert rerun.code == 0, rerun
    assert run("sum-c").status == "pending"
    assert [s["name"] for s in run("sum-c").steps] == []
    assert_one_line_error(zart("runs", "rerun", "sum-c", "nosuch"), 2, "nosuch")
    assert zart("runs", "rerun", "sum-c").code == 2  # STEP... is required

    restarted = zart("runs", "restart", "sum-c")
    assert restarted.code == 0, restarted
    assert run("sum-c").generation == 2

    failed_run("fail-c")
    assert_one_line_error(zart("runs", "retry-step", "fail-c", "double"), 2, "only a failed step")
    retried = zart("runs", "retry-step", "fail-c", "explode")
    assert retried.code == 0, retried
    assert run("fail-c").status == "pending"
    assert "explode" not in [s["name"] for s in run("fail-c").steps]


def test_result_prints_the_repr_or_writes_the_value(zart_env, tmp_path):
    value({"a": [1, 2]}, run_id="v-dict")
    value(b"\x00raw", run_id="v-bytes")
    value("héllo", run_id="v-str")

    printed = zart("runs", "result", "v-dict")
    assert printed.code == 0, printed
    assert printed.out.strip() == repr({"a": [1, 2]})

    for run_id, expected in (("v-bytes", b"\x00raw"), ("v-str", "héllo".encode())):
        out = tmp_path / f"{run_id}.out"
        assert zart("runs", "result", run_id, "--out", str(out)).code == 0
        assert out.read_bytes() == expected
    out = tmp_path / "dict.pickle"
    assert zart("runs", "result", "v-dict", "--out", str(out)).code == 0
    assert pickle.loads(out.read_bytes()) == {"a": [1, 2]}


def test_result_of_a_failed_or_unfinished_run_is_a_failed_operation(zart_env, sql):
    failed_run("fail-r")
    assert_one_line_error(zart("runs", "result", "fail-r"), 1, "fail-r", "failed")

    sql.execute("INSERT INTO runs (run_id, name, status) VALUES ('busy', 'cli-x', 'running')")
    assert_one_line_error(zart("runs", "result", "busy"), 1, "no result yet")
    assert_one_line_error(zart("runs", "result", "busy", "--wait", "0.2"), 1, "still running")


def test_event_send_once_then_already_sent(zart_env, sql):
    summing(1, run_id="ev")

    sent = zart("event", "send", "ev", "approve", "--json", '{"by": "ann", "ok": true}')
    assert sent.code == 0, sent
    from zart_nb import codec

    payload = sql.execute("SELECT payload FROM events WHERE run_id = 'ev'").fetchone()[0]
    assert codec.decode(payload) == {"by": "ann", "ok": True}

    assert_one_line_error(zart("event", "send", "ev", "approve"), 2, "already sent")
    assert zart("event", "send", "ev", "other", "--json", "{nope").code == 2


def test_result_out_streams_a_large_result_without_unpickling_it(zart_env, tmp_path):
    frame = sample_frame(200_000)
    cases = {
        "x-frame": (frame, "pickle"),
        "x-bytes": (bytes(range(256)) * 40_000, "bytes"),  # 10 MB: in chunks, in band
        "x-bytearray": (bytearray(b"\x01\x02") * 3_000_000, "bytes"),  # out of band
        "x-str": ("é" * 3_000_000, "str"),
        "x-tuple": ((b"\x00" * 5_000_000, 7), "pickle"),  # starts like a bytes result
        "x-small": ({"a": np.arange(3)}, "pickle"),
    }
    for run_id, (stored, kind) in cases.items():
        value(stored, run_id=run_id)
        out = tmp_path / f"{run_id}.out"
        done = zart("runs", "result", run_id, "--out", str(out))
        assert done.code == 0, done
        assert f"({kind}) to {out}" in done.err
        data = out.read_bytes()
        if kind == "pickle":
            back = pickle.loads(data)  # plain pickle, buffers in band
            if isinstance(stored, pd.DataFrame):
                pd.testing.assert_frame_equal(back, stored)
            elif run_id == "x-small":
                np.testing.assert_array_equal(back["a"], stored["a"])
            else:
                assert back == stored
        else:
            assert data == (stored.encode() if kind == "str" else bytes(stored))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{r}.out" for r in cases)


def test_result_out_of_a_failed_run_writes_no_file(zart_env, tmp_path):
    failed_run("fail-out")
    out = tmp_path / "never.out"
    assert_one_line_error(zart("runs", "result", "fail-out", "--out", str(out)), 1, "failed")
    assert list(tmp_path.iterdir()) == []
