"""``zart-nb gc``: old ended runs go with their journal and payloads; live ones stay."""

from __future__ import annotations

from zart_nb import run, send_event

from .bodies import big, failed_run, large, noise, summing
from .conftest import zart


def age(sql, run_id: str, days: int) -> None:
    """Make ``run_id`` look as if it ended ``days`` ago, its payloads and chunks written then."""
    sql.execute("UPDATE runs SET finished_at = now() - make_interval(days => %s) "
                "WHERE run_id = %s", (days, run_id))
    theirs = ("SELECT result_hash FROM steps WHERE run_id = %(run)s "
              "UNION SELECT result_hash FROM runs WHERE run_id = %(run)s")
    sql.execute(f"UPDATE payloads SET created_at = now() - make_interval(days => %(days)s) "
                f"WHERE hash IN ({theirs})", {"run": run_id, "days": days})
    sql.execute(f"UPDATE chunks SET used_at = now() - make_interval(days => %(days)s) "
                f"WHERE hash IN (SELECT chunk FROM payload_chunks WHERE payload IN ({theirs}))",
                {"run": run_id, "days": days})


def count(sql, query: str, *params) -> int:
    return sql.execute(query, params or None).fetchone()[0]


def test_gc_removes_old_ended_runs_and_keeps_live_ones_and_their_payloads(zart_env, sql):
    big(b"a", run_id="old-own")        # its payload is its own
    big(b"b", run_id="old-shared")     # its payload is shared with the live run
    big(b"b", run_id="live")
    failed_run("old-failed")
    summing(1, run_id="recent")
    send_event("old-own", "note", {"x": 1})
    for run_id in ("old-own", "old-shared", "live", "old-failed"):
        age(sql, run_id, 40)
    sql.execute("UPDATE runs SET status = 'running', finished_at = now() - interval '90 days' "
                "WHERE run_id = 'live'")  # even with an old finished_at: running is never removed
    sql.execute("INSERT INTO payloads (hash, data, size, created_at) VALUES "
                "('\\x01', 'x', 1, now() - interval '40 days'), ('\\x02', 'y', 1, now())")
    assert count(sql, "SELECT count(*) FROM payloads") == 4

    preview = zart("gc", "--older-than", "30d", "--dry-run", "--json")
    assert preview.code == 0, preview
    assert {k: preview.json()[k] for k in ("runs", "steps", "payloads")} == \
        {"runs": 3, "steps": 4, "payloads": 2}
    assert count(sql, "SELECT count(*) FROM runs") == 5  # a dry run removes nothing

    only_failed = zart("gc", "--older-than", "30d", "--status", "failed", "--json")
    assert only_failed.code == 0, only_failed
    assert only_failed.json()["runs"] == 1
    assert count(sql, "SELECT count(*) FROM steps WHERE run_id = 'old-failed'") == 0
    assert count(sql, "SELECT count(*) FROM step_attempts WHERE run_id = 'old-failed'") == 0

    removed = zart("gc", "--older-than", "30d", "--batch-size", "1")
    assert removed.code == 0, removed
    assert "removed 2 runs" in removed.out

    remaining = [r[0] for r in sql.execute("SELECT run_id FROM runs ORDER BY run_id")]
    assert remaining == ["live", "recent"]
    assert count(sql, "SELECT count(*) FROM steps WHERE run_id LIKE 'old-%'") == 0
    assert count(sql, "SELECT count(*) FROM events") == 0
    # the live run's payload stays, the old run's own and the old orphan go, a new orphan stays
    assert count(sql, "SELECT count(*) FROM payloads p WHERE EXISTS "
                 "(SELECT 1 FROM steps s WHERE s.run_id = 'live' AND s.result_hash = p.hash)") == 1
    assert count(sql, "SELECT count(*) FROM payloads") == 2
    assert count(sql, "SELECT count(*) FROM payloads WHERE hash = '\\x02'") == 1


def test_gc_refuses_a_bad_duration_or_status(zart_env):
    for args in (["--older-than", "30"], ["--older-than", "3 days"], ["--older-than", "-1d"],
                 ["--older-than", "1d", "--status", "running"], []):
        result = zart("gc", *args)
        assert result.code == 2, (args, result)
        assert "Traceback" not in result.err


def chunks_of(sql, run_id: str) -> set[bytes]:
    return {bytes(r[0]) for r in sql.execute(
        "SELECT pc.chunk FROM payload_chunks pc JOIN steps s ON s.result_hash = pc.payload "
        "WHERE s.run_id = %s", (run_id,))}


def test_gc_removes_the_chunks_no_manifest_names_and_keeps_the_others(zart_env, sql):
    large(1, run_id="old-own")      # its chunks are its own
    large(2, run_id="old-shared")   # its chunks are the live run's too
    large(2, run_id="live")
    own, shared = chunks_of(sql, "old-own"), chunks_of(sql, "live")
    assert len(own) == len(shared) == 3 and chunks_of(sql, "old-shared") == shared
    for run_id in ("old-own", "old-shared"):
        age(sql, run_id, 40)
    sql.execute("INSERT INTO chunks (hash, data, used_at) VALUES "
                "('\\x01', 'x', now() - interval '40 days'), ('\\x02', 'y', now())")
    assert count(sql, "SELECT count(*) FROM chunks") == 8

    preview = zart("gc", "--older-than", "30d", "--dry-run", "--json")
    assert preview.code == 0, preview
    assert {k: preview.json()[k] for k in ("runs", "payloads", "chunks")} == \
        {"runs": 2, "payloads": 1, "chunks": 4}

    removed = zart("gc", "--older-than", "30d")
    assert removed.code == 0, removed
    assert "removed 2 runs, 2 steps, 1 payloads and 4 chunks" in removed.out

    left = {bytes(r[0]) for r in sql.execute("SELECT hash FROM chunks")}
    assert left == shared | {b"\x02"}  # the old run's own and the old orphan went
    assert run("live").step_result("noise") == noise(2)  # and the live run still reads
