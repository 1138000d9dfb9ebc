"""Runs: creating and claiming them, their leases, their end, and the operations that steer
them (cancel, restart, rerun, detach). Every function takes a connection, so that callers
compose transactions."""

from __future__ import annotations

import json
from typing import Any

from ..errors import RunBusy, RunNotFound, UsageError
from . import sql
from .records import Claim, RunRow, RunSummary, StepRow, StoredBody
from .sql import Connection

CLAIM = sql.query("claim_run")
KEEP_BODY = sql.query("keep_body")
GET = sql.query("get_run")
GET_DETAIL = sql.query("get_run_detail")
GET_BODY = sql.query("get_run_body")
STATUS = sql.query("run_status")
LIST = sql.query("list_runs")
RENEW = sql.query("renew_run_lease")
SET_STATUS = sql.query("set_run_status")
FINISH = sql.query("finish_run")
RELEASE = sql.query("release_run")
CANCEL = sql.query("cancel_run")
RESTART = sql.query("restart_run")
LOCK_IDLE = sql.query("lock_idle_run")
FORGET = sql.query("forget_steps")
REOPEN = sql.query("reopen_run")
RETRY_CHILD = sql.query("retry_child")
GET_STEP = sql.query("get_step")
DETACH = sql.query("detach_run")
CLAIM_DETACHED = sql.query("claim_detached_run")


def claim(conn: Connection, *, run_id: str, name: str, namespace: str, input: bytes,
          options: dict[str, Any], owner: str, host: str, pid: int, lease: float,
          reopen: bool, dead_owner: str | None = None) -> Claim | None:
    """Create run ``run_id`` owned by ``owner``, or take it over when its owner is gone;
    None when it exists and is owned by a live process, or ended (completed runs are
    taken only with ``reopen``; cancelled ones never)."""
    return sql.one(conn, CLAIM, {
        "run_id": run_id, "name": name, "namespace": namespace, "input": input,
        "options": json.dumps(options), "owner": owner, "host": host, "pid": pid,
        "lease": lease, "reopen": reopen, "dead_owner": dead_owner}, Claim)


def keep_body(conn: Connection, run_id: str, body: bytes | None, source: str | None) -> None:
    sql.execute(conn, KEEP_BODY, {"run_id": run_id, "body": body, "body_source": source})


def get(conn: Connection, run_id: str) -> RunRow | None:
    return sql.one(conn, GET, {"run_id": run_id}, RunRow)


def detail(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The run as stored with its counts of steps (done, failed, total), as a dict."""
    return sql.mapping(conn, GET_DETAIL, {"run_id": run_id})


def stored_body(conn: Connection, run_id: str) -> StoredBody | None:
    return sql.one(conn, GET_BODY, {"run_id": run_id}, StoredBody)


def status(conn: Connection, run_id: str) -> str | None:
    result: str | None = sql.value(conn, STATUS, {"run_id": run_id})
    return result


def listing(conn: Connection, *, status: str | None, name: str | None,
            limit: int) -> list[RunSummary]:
    return sql.every(conn, LIST, {"status": status, "name": name, "limit": limit}, RunSummary)


def renew_lease(conn: Connection, run_id: str, owner: str, lease: float) -> str | None:
    """Extend ``owner``'s lease; the run's status, or None when ``owner`` lost the run."""
    result: str | None = sql.value(conn, RENEW, {"run_id": run_id, "owner": owner, "lease": lease})
    return result


def set_status(conn: Connection, run_id: str, owner: str, status: str) -> None:
    sql.execute(conn, SET_STATUS, {"run_id": run_id, "owner": owner, "status": status})


def finish(conn: Connection, *, run_id: str, owner: str, status: str, result: bytes | None,
           hash: bytes | None, data: bytes | None, error: str | None,
           error_payload: bytes | None) -> bool:
    """End the run with its result or error; False when ``owner`` no longer owns it."""
    return sql.value(conn, FINISH, {
        "run_id": run_id, "owner": owner, "status": status, "result": result, "hash": hash,
        "data": data, "error": error, "error_payload": error_payload}) is not None


def release(conn: Connection, run_id: str, owner: str, reason: str) -> None:
    sql.execute(conn, RELEASE, {"run_id": run_id, "owner": owner, "error": reason})


def cancel(conn: Connection, run_id: str) -> bool:
    """True when the run was cancelled now; False when it had ended already."""
    return sql.value(conn, CANCEL, {"run_id": run_id}) is not None


def restart(conn: Connection, run_id: str) -> int | None:
    """Start a new generation; None when a live process executes the run."""
    generation: int | None = sql.value(conn, RESTART, {"run_id": run_id})
    return generation


def _lock_idle(conn: Connection, run_id: str, what: str) -> int:
    """Lock the run for a change of its journal; its generation. Raises when there is no
    such run, or when a live process executes it (the change would race the body)."""
    row = sql.mapping(conn, LOCK_IDLE, {"run_id": run_id})
    if row is None:
        raise RunNotFound(f"run {run_id!r} does not exist")
    if row["busy"]:
        raise RunBusy(f"run {run_id!r} is being executed; {what} once it ended (or cancel it)")
    generation: int = row["generation"]
    return generation


def rerun(conn: Connection, run_id: str, names: list[str]) -> list[str]:
    """Forget the named steps (kept as history) and reopen the run, in one transaction:
    an unknown name changes nothing."""
    with sql.transaction(conn):
        _lock_idle(conn, run_id, "rerun its steps")
        gone: list[str] = sql.column(conn, FORGET, {"run_id": run_id, "names": names})
        missing = [n for n in dict.fromkeys(names) if n not in gone]
        if missing:  # rolls the transaction back: nothing was forgotten
            raise UsageError(f"run {run_id!r} has no step {', '.join(map(repr, missing))}; "
                             "nothing was changed")
        sql.execute(conn, REOPEN, {"run_id": run_id})
    return gone


def retry_step(conn: Connection, run_id: str, name: str) -> None:
    """Run a failed step again (a child: queued now; a step: at the next execution), and
    reopen the run, in one transaction."""
    with sql.transaction(conn):
        generation = _lock_idle(conn, run_id, "retry its steps")
        step = sql.one(conn, GET_STEP, {"run_id": run_id, "name": name}, StepRow)
        if step is None:
            raise UsageError(f"run {run_id!r} has no step {name!r}")
        if step.status != "failed":
            raise UsageError(f"step {name!r} of run {run_id!r} is {step.status}; only a failed "
                             "step can be retried")
        if step.kind == "child":
            sql.execute(conn, RETRY_CHILD, {"run_id": run_id, "generation": generation,
                                            "name": name})
        else:
            sql.execute(conn, FORGET, {"run_id": run_id, "names": [name]})
        sql.execute(conn, REOPEN, {"run_id": run_id})


def detach(conn: Connection, *, run_id: str, name: str, namespace: str, input: bytes,
           body: bytes, source: str | None, options: dict[str, Any]) -> bool:
    """Hand the run to the workers (creating it if needed); False when it is completed or
    a live process executes it."""
    return sql.value(conn, DETACH, {
        "run_id": run_id, "name": name, "namespace": namespace, "input": input, "body": body,
        "body_source": source, "options": json.dumps(options)}) is not None


def claim_detached(conn: Connection, *, owner: str, host: str, pid: int, lease: float,
                   namespace: str) -> StoredBody | None:
    """A detached run for this worker to execute: pending, or whose worker died."""
    return sql.one(conn, CLAIM_DETACHED, {"owner": owner, "host": host, "pid": pid,
                                          "lease": lease, "namespace": namespace}, StoredBody)
