"""Settings, read once from the ``ZART_*`` environment; the only module that reads it.

=========================  ==========================================================
``ZART_DATABASE_URL``      any PostgreSQL 14+; unset: the embedded server under home
``ZART_HOME``              embedded server, key file (default ``~/.zart``)
``ZART_SECRET``            HMAC key for payloads (default: ``$ZART_HOME/secret.key``)
``ZART_SCHEMA``            PostgreSQL schema of the tables (default ``zart``)
``ZART_LEASE_SECONDS``     run and child leases (default 30); heartbeats every third
``ZART_WORKERS``           size of the local worker pool a waiting body starts (default 2)
``ZART_NAMESPACE``         the worker namespace children are queued under (default ``default``)
``ZART_MAX_RESULT_BYTES``  refuse results that pickle to more bytes than this (default: none)
``ZART_EXECUTOR``          where waiting bodies run their children by default (see below);
                           unset or ``off``: zart-nb's workers (the PostgreSQL queue)
=========================  ==========================================================

``ZART_EXECUTOR`` names an executor by a string, since an environment variable cannot
hold one: ``dask://HOST:PORT`` (a Dask scheduler; ``dask://tls://…`` for another
protocol), ``ray`` or ``ray://HOST:PORT`` (Ray), ``loky[:N]``, ``processes[:N]`` (a
``ProcessPoolExecutor``), ``threads[:N]`` (a ``ThreadPoolExecutor`` in the body's
process), ``off``. The engine connects to it, or starts it, when a body first waits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import UsageError

_EXECUTOR = re.compile(r"(?P<kind>off|loky|processes|threads)(?::(?P<workers>[1-9]\d{0,4}))?"
                       r"|dask://(?P<dask>\S+)|ray(?P<ray>://\S+)?")


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor named by a string (``ZART_EXECUTOR``, or a string passed as one)."""

    kind: str  # off, dask, ray, loky, processes, threads
    address: str | None = None  # dask, ray
    workers: int | None = None  # loky, processes, threads (None: the executor's default)

    def __str__(self) -> str:
        if self.kind == "dask":
            return f"dask://{(self.address or '').removeprefix('tcp://')}"
        if self.kind == "ray":
            return self.address or "ray"
        return self.kind + (f":{self.workers}" if self.workers else "")


def parse_executor(text: str, *, what: str = "ZART_EXECUTOR") -> ExecutorSpec:
    """The executor ``text`` names; a UsageError says what is accepted."""
    m = _EXECUTOR.fullmatch(text.strip())
    if m is None:
        raise UsageError(f"{what}={text!r} names no executor: use dask://HOST:PORT, ray, "
                         "ray://HOST:PORT, loky[:N], processes[:N], threads[:N] or off")
    if m["dask"]:
        address = m["dask"] if "://" in m["dask"] else f"tcp://{m['dask']}"
        return ExecutorSpec("dask", address=address)
    if m["kind"] is None:
        return ExecutorSpec("ray", address=f"ray{m['ray']}" if m["ray"] else None)
    return ExecutorSpec(m["kind"], workers=int(m["workers"]) if m["workers"] else None)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    home: Path = field(default_factory=lambda: Path("~/.zart").expanduser())
    secret: bytes | None = None
    schema: str = "zart"
    lease_seconds: float = 30.0
    workers: int = 2
    namespace: str = "default"
    executor: ExecutorSpec | None = None
    max_result_bytes: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ZART_HOME") or "~/.zart").expanduser()
        secret = env.get("ZART_SECRET")
        return cls(
            database_url=env.get("ZART_DATABASE_URL") or None,
            home=home,
            secret=secret.encode() if secret else None,
            schema=env.get("ZART_SCHEMA") or "zart",
            lease_seconds=_number(env, "ZART_LEASE_SECONDS", 30.0, float),
            workers=_number(env, "ZART_WORKERS", 2, int),
            namespace=env.get("ZART_NAMESPACE") or "default",
            executor=parse_executor(env["ZART_EXECUTOR"]) if env.get("ZART_EXECUTOR") else None,
            max_result_bytes=_number(env, "ZART_MAX_RESULT_BYTES", 0, int) or None,
        )

    def evolve(self, **changes: Any) -> Settings:
        return replace(self, **changes)


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], key: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(key)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{key}={raw!r} is not a number") from None
    if value < 0:
        raise UsageError(f"{key}={raw!r} must not be negative")
    return value


_current: Settings | None = None


def settings() -> Settings:
    """The process's settings, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def configure(new: Settings | None) -> None:
    """Replace the process's settings (tests, the CLI's ``--dsn``); None re-reads the env."""
    global _current
    _current = new
