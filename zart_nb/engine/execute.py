"""Executing a durable body: ownership of its run, the heartbeat, replay, the outcome.

One body executes a run at a time. The executing process owns the run through a lease
in PostgreSQL that a heartbeat renews. Another process that executes the same run
while the lease is live attaches: it waits for the owner's outcome (or gets RunBusy
when it asked not to wait). A dead owner is replaced at once when it ran on this host
and its pid is gone, otherwise when its lease expires.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from .. import codec
from ..errors import PayloadError, RunBusy, RunFailed, RunNotFound, StoreError, Suspend, UsageError
from ..store import queries, results
from ..store.connection import Store, get_store
from ..store.notify import listener
from .journal import Execution, _current, check_name, encode_error, one_line, split_payload
from .model import ON_CHANGE_POLICIES, Report

HOST = socket.gethostname()


@dataclass
class BodyResult:
    run_id: str
    value: Any
    report: Report
    attached: bool = False  # the outcome of another process's execution
    detached: bool = False  # handed to the workers: nothing ran here


@dataclass(frozen=True)
class Options:
    on_change: str = "rerun"
    durability: str = "sync"
    namespace: str | None = None

    def __post_init__(self) -> None:
        if self.on_change not in ON_CHANGE_POLICIES:
            raise UsageError(f"on_change must be one of {', '.join(ON_CHANGE_POLICIES)}, "
                             f"not {self.on_change!r}")
        if self.durability not in ("sync", "async"):
            raise UsageError(f"durability must be 'sync' or 'async', not {self.durability!r}")


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute(body: Callable[..., Any], args: tuple = (), kwargs: dict | None = None, *,
            name: str, run_id: str | None = None, options: Options = Options(),
            on_failure: Callable[[Any, BaseException], Any] | None = None,
            restart: bool = False, wait: bool = True, replay_completed: bool = False,
            body_source: str | None = None, store: Store | None = None,
            on_attach: Callable[[dict], None] | None = None, detach: bool = False,
            keep_body: bool = False) -> BodyResult:
    """Execute ``body(*args, **kwargs)`` as run ``run_id`` (default: ``name``).

    ``replay_completed``: a completed run is executed again, all its steps replayed
    (the notebook front does this to bring a cell's variables back); otherwise its
    stored result is returned without running the body.
    ``detach``: the run is handed to the workers, which execute the stored body (it
    must pickle); this returns at once, and ``Run(run_id).result()`` waits for it.
    ``keep_body``: store the pickled body without detaching (the notebook front keeps
    its cell's for ``%zart_resume``). Not by default: a function defined in a notebook
    pickles by value, with every global it reads, at every execution.
    """
    kwargs = kwargs or {}
    run_id = name if run_id is None else run_id
    _check_id("run id", run_id)
    _check_id("durable name", name)
    store = store or get_store()
    namespace = options.namespace or store.settings.namespace
    owner = new_owner()
    run_input = codec.encode((args, kwargs), what="input", owner=f"run {run_id!r}")
    stored_body = _encode_body(body, on_failure, required=detach) if detach or keep_body else None
    with store.connection() as conn:
        queries.execute(conn, "insert_run", run_id=run_id, name=name, namespace=namespace,
                        input=run_input, body=stored_body, body_source=body_source,
                        options=json.dumps({"on_change": options.on_change,
                                            "durability": options.durability}),
                        status="pending")
        if detach:
            if restart:
                queries.one(conn, "restart_run", run_id=run_id)
            if queries.one(conn, "detach_run", run_id=run_id, body=stored_body,
                           input=run_input) is None:
                raise RunBusy(f"run {run_id!r} is completed or being executed; it was not "
                              "handed to the workers")
            return BodyResult(run_id, None, Report(), detached=True)
        if restart and queries.one(conn, "restart_run", run_id=run_id) is None:
            raise RunBusy(f"run {run_id!r} is being executed by another process; "
                          "it cannot be restarted until that ends")
        owned, row = _acquire(store, conn, run_id, owner, wait=wait, reopen=replay_completed,
                              on_attach=on_attach)
    if not owned:  # ended elsewhere, or completed before
        if row["input"] is not None and bytes(row["input"]) != run_input:
            warnings.warn(f"run {run_id!r} was executed with other arguments; this returns its "
                          "stored outcome (restart=True, or another run_id, runs it anew)",
                          stacklevel=3)
        return BodyResult(run_id, stored_outcome(store, row), Report(), attached=True)
    return _run_body(store, body, args, kwargs, name=name, run_id=run_id, owner=owner,
                     generation=row["generation"], options=options, namespace=namespace,
                     on_failure=on_failure)


def _check_id(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, not {value!r}")
    check_name(what, value)


def _encode_body(body: Callable, on_failure: Callable | None, *, required: bool) -> bytes | None:
    """The body and its on_failure handler as the workers (detach, resume) will load them."""
    try:
        return codec.encode((body, on_failure), what="body")
    except PayloadError as exc:
        if required:
            raise PayloadError(f"a detached body must pickle: {exc}") from None
        return None  # resume falls back to the stored source


def _acquire(store: Store, conn, run_id: str, owner: str, *, wait: bool, reopen: bool,
             on_attach) -> tuple[bool, dict]:
    """(True, the claimed run) or (False, the final row of a run that ended)."""
    notes = listener(store)
    attached = False
    while True:
        token = notes.token(run_id)
        row = queries.one(conn, "get_run_row", run_id=run_id)
        if row is None:
            raise RunNotFound(f"run {run_id!r} does not exist")
        if row["status"] == "cancelled":
            raise RunFailed(f"run {run_id!r} was cancelled; restart it to execute it again")
        if row["status"] == "completed" and not (reopen and not attached):
            return False, row
        if attached and row["status"] == "failed" and row["owner"] is None:
            return False, row
        claimed = queries.one(conn, "claim_run", run_id=run_id, owner=owner, host=HOST,
                              pid=os.getpid(), lease=store.settings.lease_seconds,
                              dead_owner=_dead_owner(row), reopen=reopen and not attached)
        if claimed is not None:
            return True, claimed
        if not wait:
            raise RunBusy(f"run {run_id!r} is being executed by {row['owner']}; "
                          "attach to it to follow it")
        if not attached and on_attach is not None:
            on_attach(row)
        attached = True
        notes.wait(run_id, token, timeout=min(5.0, store.settings.lease_seconds / 3))


def _dead_owner(row: dict) -> str | None:
    """The owner of ``row`` when it ran on this host and its process is gone."""
    owner, pid = row.get("owner"), row.get("owner_pid")
    if owner and pid and row.get("owner_host") == HOST and not psutil.pid_exists(pid):
        return owner
    return None


def _run_body(store: Store, body, args, kwargs, *, name, run_id, owner, generation, options,
              namespace, on_failure) -> BodyResult:
    with store.connection() as conn:
        ex = Execution(store, conn, run_id=run_id, name=name, generation=generation, owner=owner,
                       on_change=options.on_change, namespace=namespace)
        ex.load()
        if options.durability == "async":
            queries.execute(conn, "set_durability", value="off")
        heartbeat = Heartbeat(store, ex)
        token = _current.set(ex)
        try:
            try:
                value = body(*args, **kwargs)
                if ex.children is not None:
                    ex.children.flush(ex)  # scheduled and never waited for: still queued
            except StoreError:
                raise  # the database failed: nothing more can be stored (released below)
            except Exception as exc:
                if on_failure is None:
                    _finish(ex, "failed", error=exc)
                    raise
                value = on_failure(_input_of(args, kwargs), exc)
            _finish(ex, "completed", value=value)
            return BodyResult(run_id, value, ex.report)
        except Suspend as stop:
            _release(ex, str(stop))
            if ex.stop_reason == "cancelled" or _was_cancelled(ex):
                raise RunFailed(f"run {run_id!r} was cancelled") from None
            raise StoreError(f"run {run_id!r}: {stop}") from None
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, lost database
            _release(ex, f"interrupted: {one_line(exc)}")
            raise
        finally:
            _current.reset(token)
            heartbeat.stop()
            ex.close()
            if options.durability == "async":
                queries.execute(conn, "set_durability", value="on")


def execute_claimed(store: Store, row: dict, owner: str) -> BodyResult:
    """Execute a detached run that a worker claimed (``row`` from claim_detached_run)."""
    body, on_failure = codec.decode(row["body"], what=f"body of run {row['run_id']!r}")
    args, kwargs = codec.decode(row["input"], what=f"input of run {row['run_id']!r}")
    opts = row["options"]
    options = Options(on_change=opts.get("on_change", "rerun"),
                      durability=opts.get("durability", "sync"), namespace=row["namespace"])
    return _run_body(store, body, args, kwargs, name=row["name"], run_id=row["run_id"],
                     owner=owner, generation=row["generation"], options=options,
                     namespace=row["namespace"], on_failure=on_failure)


def _input_of(args: tuple, kwargs: dict) -> Any:
    """The run's input as ``on_failure`` sees it: the one argument, or (args, kwargs)."""
    if len(args) == 1 and not kwargs:
        return args[0]
    if not args and not kwargs:
        return None
    return (args, kwargs)


def _finish(ex: Execution, status: str, *, value: Any = None, error: BaseException | None = None) -> None:
    result = digest = data = None
    if status == "completed":
        stored = results.encode(ex.store, value, what="result", owner=f"run {ex.run_id!r}")
        result, digest, data = split_payload(stored)
    with ex.lock:
        row = queries.one(ex.conn, "finish_run", run_id=ex.run_id, owner=ex.owner, status=status,
                          result=result, hash=digest, data=data,
                          error=None if error is None else one_line(error),
                          error_payload=None if error is None else encode_error(error))
    if row is None:
        raise Suspend(ex.stop_reason or f"run {ex.run_id!r} is no longer owned by this process")


def _release(ex: Execution, reason: str) -> None:
    try:
        with ex.lock:
            queries.execute(ex.conn, "release_run", run_id=ex.run_id, owner=ex.owner, error=reason)
    except Exception:  # the database may be what failed; the lease will expire
        pass


def _was_cancelled(ex: Execution) -> bool:
    """A cancel that came after the heartbeat last looked: the run's row tells."""
    try:
        with ex.lock:
            row = queries.one(ex.conn, "run_status", run_id=ex.run_id)
    except Exception:
        return False
    return row is not None and row["status"] == "cancelled"


def stored_outcome(store: Store, row: dict) -> Any:
    """The value of an ended run, or its error raised."""
    if row["status"] == "completed":
        what = f"result of run {row['run_id']!r}"
        if row["result_hash"] is None:
            return codec.decode(row["result"], what=what)
        with store.connection() as conn:
            return results.value(conn, None, row["result_hash"], what=what)
    error: BaseException | None = None
    if row.get("error_payload") is not None:
        try:
            error = codec.decode(row["error_payload"], what=f"error of run {row['run_id']!r}")
        except PayloadError:
            error = None
    message = f"run {row['run_id']!r} {row['status']}: {row.get('error') or 'no error recorded'}"
    raise RunFailed(message) from error


class Heartbeat:
    """Renews the run's lease every third of its length; notices cancels and lost leases."""

    def __init__(self, store: Store, ex: Execution) -> None:
        self.store = store
        self.ex = ex
        self.lease = store.settings.lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="zart-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.lease / 3):
            try:
                with self.store.connection() as conn:
                    row = queries.one(conn, "renew_run_lease", run_id=self.ex.run_id,
                                      owner=self.ex.owner, lease=self.lease)
            except Exception:  # database unreachable: keep trying until the lease is gone
                if time.monotonic() - last_ok > self.lease:
                    self.ex.stop_reason = "lost its lease (the database is unreachable)"
                continue
            last_ok = time.monotonic()
            if row is None:
                self.ex.stop_reason = "another process took the run over (this one lost its lease)"
            elif row["status"] == "cancelled":
                self.ex.stop_reason = "cancelled"
