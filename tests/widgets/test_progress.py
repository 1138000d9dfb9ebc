"""The progress widget in this process, following real fan-outs on a real PostgreSQL."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import pytest

from tests.helpers import execute, until
from zart_nb import run
from zart_nb.engine import hooks
from zart_nb.errors import RunFailed, RunNotFound
from zart_nb.notebook import progress, tables
from zart_nb.notebook.progress import RunProgress, TextProgress
from zart_nb.notebook.progress_state import Pace, Snapshot, text_line

from . import bodies


def widget_for(run_id: str, timeout: float = 30.0) -> RunProgress:
    """The widget of a run that a body in a thread is about to create."""

    def attempt():
        try:
            return RunProgress(run_id)
        except RunNotFound:
            return None

    return until(attempt, timeout, f"run {run_id!r} to exist")


def count_syncs(widget: RunProgress) -> list[float]:
    """Times at which the widget sends its state to the front-end."""
    times: list[float] = []
    original = widget.send_state

    def send_state(key=None):
        times.append(time.monotonic())
        return original(key)

    widget.send_state = send_state
    return times


def test_widget_follows_a_fanout_to_its_end(workers, background):
    body = background(bodies.naps, 40, 0.03)
    widget = widget_for("naps")
    seen: list[tuple[int, int]] = []
    widget.observe(lambda change: seen.append((widget.finished, widget.total)), "finished")
    assert body.result() == sum(range(40))
    until(lambda: not widget.following, 10, "the follower to stop")
    assert (widget.status, widget.total, widget.finished) == ("completed", 40, 40)
    assert widget.counts["completed"] == 40 and widget.counts["failed"] == 0
    assert widget.states == "c" * 40
    assert widget.live is False and widget.elapsed > 0
    assert len({f for f, _ in seen if f < 40}) >= 2, f"no live progress seen: {seen}"
    assert seen == sorted(seen), "progress went backwards"
    assert widget.comm is not None, "the widget stays open, so the notebook saves its state"
    widget.close()


def test_updates_are_throttled_for_5000_fast_children(workers, background):
    body = background(bodies.quicks, 5000)
    widget = widget_for("quick")
    t0 = time.monotonic()
    syncs = count_syncs(widget)
    body.result(120)
    until(lambda: not widget.following, 15, "the follower to stop")
    seconds = time.monotonic() - t0
    assert widget.finished == widget.total == 5000
    assert len(syncs) <= 10 * seconds + 3, f"{len(syncs)} syncs in {seconds:.1f} s"
    gaps = [b - a for a, b in itertools.pairwise(syncs)]
    assert not gaps or min(gaps) >= 0.09, f"two syncs {min(gaps):.3f} s apart"
    widget.close()


def test_the_hook_shows_new_and_replayed_children_of_an_execution(workers, monkeypatch):
    shown: list = []

    def hook(run_id: str) -> None:
        progress._hook(run_id, mode="widget")
        shown.extend(progress._shown.values())

    monkeypatch.setattr(hooks, "show_progress", hook)
    assert bodies.naps(10, 0.0, run_id="again") == sum(range(10))
    first = shown[-1]
    until(lambda: not first.following, 10, "the first follower to stop")
    assert first.counts["completed"] == 10 and first.counts["replayed"] == 0
    # executing the completed run again with more children: 10 replayed, 5 executed
    out = execute(bodies.naps.fn, (15, 0.0), name="naps", run_id="again", replay_completed=True)
    assert out.value == sum(range(15)) and len(out.report.replayed) == 10
    second = shown[-1]
    assert second is not first
    until(lambda: not second.following, 10, "the second follower to stop")
    assert second.counts["replayed"] == 10 and second.counts["completed"] == 5
    assert second.states == "p" * 10 + "c" * 5
    for w in (first, second):
        w.close()


def test_a_finished_run_is_shown_and_not_followed(workers):
    bodies.naps(12, 0.0, run_id="done-before")
    widget = run("done-before").progress()
    assert isinstance(widget, RunProgress)
    assert widget.following is False
    assert widget.counts["completed"] == 12 and widget.finished == 12 and widget.status == "completed"
    replayed = RunProgress("done-before", replayed_before="now")
    assert replayed.counts["replayed"] == 12 and replayed.states == "p" * 12
    replayed.close()
    assert "[########################] 12/12 100%" in widget._repr_mimebundle_()[0]["text/plain"]
    widget.close()


def test_failed_child_detail_retry_and_cancel(workers, tmp_path: Path):
    flag = tmp_path / "fail"
    flag.touch()
    results = bodies.flakies(6, str(flag))
    assert isinstance(results[3], ValueError)
    widget = RunProgress("flaky", replayed_before="now")
    assert widget.counts["failed"] == 1 and widget.states[3] == "f"
    assert widget.failed == [{"index": 3, "name": "flaky-3", "error": widget.failed[0]["error"],
                              "attempts": 1}]
    assert "refuses" in widget.failed[0]["error"]
    widget._handle_front({"type": "inspect", "index": 3})
    assert widget.detail["name"] == "flaky-3" and widget.detail["status"] == "failed"
    assert "ValueError" in widget.detail["traceback"] and "refuses" in widget.detail["traceback"]
    flag.unlink()
    widget._handle_front({"type": "retry", "name": "flaky-3"})
    assert "queued again" in widget.message
    until(lambda: widget.finished == 6 and not widget.failed, 30, "the retried child to complete")
    assert widget.states == "pppcpp"  # replayed: completed before the widget; 3 ran since
    widget._handle_front({"type": "inspect", "index": 99})
    assert widget.detail == {}
    widget._handle_front({"type": "retry", "name": "flaky-0"})  # completed: refused, shown
    assert "only a failed step can be retried" in widget.message
    widget.close()


def test_cancel_from_the_widget_ends_the_run(workers, background):
    body = background(bodies.naps, 300, 0.05)
    widget = widget_for("naps")
    until(lambda: widget.counts.get("running"), 30, "children to run")
    widget._handle_front({"type": "cancel"})
    assert widget.message == "run cancelled"
    with pytest.raises(RunFailed, match="cancelled"):
        body.result()
    until(lambda: not widget.following, 15, "the follower to stop")
    assert widget.status == "cancelled" and widget.counts["scheduled"] > 0
    widget.close()


def test_closing_the_widget_stops_its_follower(workers, background):
    body = background(bodies.naps, 60, 0.05)
    widget = widget_for("naps")
    assert widget.following
    follower = widget._follower
    widget.close()
    follower.thread.join(5)
    assert not follower.thread.is_alive()
    body.result()


def test_text_progress_writes_few_lines(workers, background):
    body = background(bodies.naps, 100, 0.02)
    until(lambda: _exists("naps"), 30, "the run to exist")
    plain = io.StringIO()
    text = TextProgress("naps", stream=plain, every=10.0)
    body.result()
    text.join(15)
    lines = plain.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("naps [########################] 100/100 100%")
    assert lines[-1].endswith("completed")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_progress_rewrites_one_line_on_a_terminal(workers, background):
    body = background(bodies.naps, 100, 0.02)
    until(lambda: _exists("naps"), 30, "the run to exist")
    tty = Tty()
    t0 = time.monotonic()
    text = TextProgress("naps", stream=tty)
    body.result()
    text.join(15)
    seconds = time.monotonic() - t0
    out = tty.getvalue()
    assert out.count("\n") == 1 and out.endswith("completed\x1b[K\n")
    assert out.count("\r") <= 4 * seconds + 3
    assert text.lines == 1


def test_outside_jupyter_the_hook_shows_a_text_line(workers, monkeypatch, capsys):
    monkeypatch.setattr(hooks, "show_progress", progress._hook)  # what register() sets
    assert bodies.naps(30, 0.02, run_id="texted") == sum(range(30))
    # nobody holds the text display: it lives until the run ended, then prints its last line
    until(lambda: "30/30 100%" in capsys.readouterr().err, 15, "the final line")
    assert isinstance(progress.show_for_run("texted"), TextProgress)


def test_register_sets_and_clears_the_engine_hook():
    progress.register()
    try:
        assert hooks.show_progress is progress._hook
    finally:
        progress.unregister()
    assert hooks.show_progress is None


def test_text_line():
    snap = Snapshot(run_id="r1", name="batch", status="waiting", states="ccpfrys",
                    elapsed=75.0)
    assert text_line(snap, width=7) == (
        "r1 (batch) [####---] 4/7 57% | replayed 1, running 1, retrying 1, scheduled 1, "
        "failed 1 | 1 min 15 s waiting")


def test_runs_tables():
    rows = [{"run_id": "a<b", "name": "n", "status": "completed", "steps_done": 2,
             "steps_total": 2, "owner": None, "started_at": None, "finished_at": None}]
    assert "a&lt;b" in tables.as_html(tables.rows_of(rows))
    assert tables.as_text(tables.rows_of(rows)).splitlines()[2].startswith("a<b")


def _exists(run_id: str) -> bool:
    try:
        run(run_id)
    except RunNotFound:
        return False
    return True


def snap(states: str, status: str = "waiting") -> Snapshot:
    return Snapshot(run_id="r", name="r", status=status, states=states)


def test_the_pace_comes_from_the_snapshots_over_time():
    pace = Pace(window=10.0)
    # 20 children replayed before the display came: not speed
    assert pace.observe(snap("p" * 20 + "s" * 80), now=100.0).rate == 0
    assert pace.left is None and pace.text() == ""
    pace.observe(snap("p" * 20 + "c" * 10 + "s" * 70), now=101.0)
    assert (pace.rate, pace.left) == (10.0, 7.0)
    assert pace.text() == "10.0/s, ~7.0 s left"
    pace.observe(snap("p" * 20 + "c" * 30 + "r" * 2 + "s" * 48), now=102.0)
    assert (pace.rate, pace.left) == (15.0, 50 / 15)
    # the window keeps the last 10 s: the quick start is forgotten
    pace.observe(snap("p" * 20 + "c" * 30 + "f" + "s" * 49), now=112.0)
    assert pace.rate == 1 / 10 and pace.left == 49 / 0.1
    # a failed child retried (finished goes down) is no negative speed
    pace.observe(snap("p" * 20 + "c" * 30 + "y" + "s" * 49), now=113.0)
    assert pace.rate >= 0
    # ended: the average over what the display saw moving, nothing left
    pace.observe(snap("p" * 20 + "c" * 80, status="completed"), now=120.0)
    assert (pace.rate, pace.left) == (80 / 20, 0.0)
    assert pace.text() == "4.0/s"


def test_widget_shows_the_rate_and_time_left_of_a_fanout_on_an_executor(zart_env, background):
    body = background(bodies.naps_on_threads, 60, 0.05)
    widget = widget_for("naps-on-threads")
    seen: list[tuple[float, float, str]] = []
    widget.observe(lambda change: seen.append((widget.rate, widget.eta, widget.status)),
                   ["rate", "eta"])
    assert body.result() == sum(range(60))
    until(lambda: not widget.following, 10, "the follower to stop")
    assert (widget.status, widget.finished) == ("completed", 60)
    live = [(rate, eta) for rate, eta, status in seen if status != "completed"]
    assert any(rate > 0 and eta > 0 for rate, eta in live), seen  # measured while it ran
    assert widget.rate > 0 and widget.eta == 0  # the average, nothing left
    assert "/s |" in widget.text()
    widget.close()
