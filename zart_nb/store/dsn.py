"""DSNs as they may be shown: never with a password."""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return _URL_PASSWORD.sub(r"\1***@", dsn)
    if params.get("password"):
        if "://" in dsn:
            return _URL_PASSWORD.sub(r"\1***@", dsn)
        params["password"] = "***"
        return make_conninfo("", **params)
    return dsn


def split_password(dsn: str) -> tuple[str, str | None]:
    """(``dsn`` as key=value conninfo without its password, the password): for programs
    that take the password from the environment (psql's PGPASSWORD), never argv."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    return make_conninfo("", **params), None if password is None else str(password)
