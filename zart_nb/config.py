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
=========================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import UsageError


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    home: Path = field(default_factory=lambda: Path("~/.zart").expanduser())
    secret: bytes | None = None
    schema: str = "zart"
    lease_seconds: float = 30.0
    workers: int = 2
    namespace: str = "default"
    max_result_bytes: int | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
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
            max_result_bytes=_number(env, "ZART_MAX_RESULT_BYTES", None, int) or None,
        )

    def evolve(self, **changes) -> Settings:
        return replace(self, **changes)


def _number(env, key, default, kind):
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
