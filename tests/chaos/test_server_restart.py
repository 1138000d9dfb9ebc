"""The PostgreSQL server stopped in the middle of a run and started again.

Runs against an embedded server of its own (a temporary ZART_HOME), never the session's
server. What happens is recorded for docs/reliability.md: the body in flight fails with
a StoreError that names the (redacted) server, because its connection is gone; executing
the run again once the server is back resumes it: every step whose return the body saw
(its commit waited for the WAL flush) is replayed, not run again.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import until
from zart_nb.store import embedded

from .figures import record
from .helpers import executions, finish, log_records, own_env, spawn_body
from .scripts.bodies import seq_expected


def body_env(home: Path, url: str) -> dict:
    return own_env(home, url, ZART_LEASE_SECONDS="3")


def done_steps(log: Path) -> list[str]:
    return [r[1] for r in log_records(log) if r[0] == "done"]


def server_restart(own_server, tmp_path, *, steps: int, stop_after: int, down_s: float) -> dict:
    home, url = own_server
    env = body_env(home, url)
    log = tmp_path / "effects.log"
    body = spawn_body("seq", "through-restart", log, "--steps", str(steps), "--step-ms", "100",
                      env=env)
    until(lambda: len(done_steps(log)) >= stop_after or body.poll() is not None, 60,
          f"{stop_after} steps done")
    stopped = time.monotonic()
    embedded.stop(home)
    until(lambda: body.poll() is not None or time.monotonic() - stopped > down_s, 60)
    exited_s = time.monotonic() - stopped if body.poll() is not None else None
    time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
    url_again = embedded.server_url(home)
    _, stderr = body.communicate(timeout=120)
    seen_done = done_steps(log)

    if body.returncode == 0:
        behaviour = "continued"
        message = ""
    else:
        behaviour = "failed"
        message = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1]
        assert message.startswith("zart_nb.StoreError: "), stderr[-3000:]
        assert str(home) in message and "while writing step 'q-" in message, message
        assert "During handling" not in stderr, stderr[-3000:]  # one error, not a cascade
        assert url_again == url
    # executing the run again resumes it with nothing lost
    resumed = finish(spawn_body("seq", "through-restart", log, "--steps", str(steps),
                                "--step-ms", "100", env=body_env(home, url_again)))
    assert resumed["result"] == seq_expected(steps)
    counts = executions(log_records(log))
    assert set(counts) == {f"q-{i}" for i in range(steps)}
    for name in seen_done:  # the body saw it return: committed, never run again
        assert counts[name] == 1, (name, counts[name])
    assert all(c <= 2 for c in counts.values())
    assert resumed["replayed"] >= len(seen_done)
    return {"behaviour": behaviour, "message": message, "server_down_s": down_s,
            "steps": steps, "done_before_failure": len(seen_done),
            "replayed_on_resume": resumed["replayed"],
            "re_executed": sorted(n for n, c in counts.items() if c > 1),
            "body_failed_after_s": None if exited_s is None else round(exited_s, 2)}


def test_server_stopped_and_started_mid_run(own_server, tmp_path):
    figures = server_restart(own_server, tmp_path, steps=20, stop_after=5, down_s=1.0)
    assert figures["behaviour"] == "failed"  # the documented behaviour; see the module doc
    record("server", "restart_short", **figures)


@pytest.mark.slow
def test_server_down_for_10_s_mid_run(own_server, tmp_path):
    figures = server_restart(own_server, tmp_path, steps=60, stop_after=25, down_s=10.0)
    assert figures["behaviour"] == "failed"
    record("server", "restart_long", **figures)


def writing_chunks(url: str) -> bool:
    """Whether a session is inside the transaction that writes a large result's chunks."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE query LIKE 'INSERT INTO chunks%%'").fetchone()[0] > 0


def test_a_server_stopped_while_a_large_result_is_written_keeps_no_chunk_of_it(own_server,
                                                                             tmp_path):
    home, url = own_server
    log = tmp_path / "effects.log"
    body = spawn_body("large", "large-through-restart", log, "--mb", "600",
                      env=body_env(home, url))
    until(lambda: body.poll() is not None or writing_chunks(url), 60, "chunks being written")
    embedded.stop(home)
    _, stderr = body.communicate(timeout=120)
    assert body.returncode != 0
    message = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1]
    assert message.startswith("zart_nb.StoreError: step 'blob': lost the database "), stderr[-3000:]
    assert "while storing its 600.0 MiB result" in message, message

    url_again = embedded.server_url(home)
    with psycopg.connect(url_again, options="-c search_path=zart") as conn:
        def count(query: str) -> int:
            return conn.execute(query).fetchone()[0]

        assert count("SELECT count(*) FROM chunks") == 0
        assert count("SELECT count(*) FROM payload_chunks pc WHERE NOT EXISTS "
                     "(SELECT 1 FROM chunks c WHERE c.hash = pc.chunk)") == 0
        assert count("SELECT count(*) FROM steps WHERE status = 'completed'") == 0
    resumed = finish(spawn_body("large", "large-through-restart", log, "--mb", "600",
                                env=body_env(home, url_again)))
    assert resumed["result"] == 600 << 20
    assert executions(log_records(log))["blob"] == 2  # the step in flight ran again
    record("server", "a large result being written", message=message,
           behaviour="failed; nothing of the result kept; executed again, stored")
