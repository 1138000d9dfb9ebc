"""Fixtures of the bad-input suite: SQL on the test database, no local pool left."""

from __future__ import annotations


def steps_of(sql, run_id: str) -> dict[str, str]:
    """name -> status of the run's current generation."""
    return {r["name"]: r["status"] for r in sql(
        "SELECT s.name, s.status FROM steps s JOIN runs r USING (run_id) "
        "WHERE s.run_id = %s AND s.generation = r.generation", run_id)}
