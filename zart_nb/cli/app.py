"""The root of the ``zart-nb`` command: error mapping, output helpers, shared options.

Exit codes: 0 success, 1 a failed operation (a ``ZartError`` that is not a usage
error: the database, a payload, a failed run), 2 bad usage (click's usage errors and
``zart_nb.errors.UsageError``, which includes an unknown run id). An error is one line
on stderr, ``zart-nb: error: ...``; the library's errors already carry redacted DSNs.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import IO, Any, TypeVar

import click
from rich.console import Console

from ..config import configure, settings
from ..durations import parse_duration
from ..engine.model import RUN_STATUSES, TERMINAL_STATUSES
from ..errors import UsageError, ZartError

PROG = "zart-nb"
ENDED = TERMINAL_STATUSES
STATUSES = RUN_STATUSES
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """An error shown as one line, ``zart-nb: error: message``, with its exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: error: {self.format_message()}", file=file or sys.stderr)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ZartGroup(click.Group):
    """A group that turns the library's exceptions into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UsageError as exc:
            raise CliError(one_line(exc), 2) from None
        except ZartError as exc:
            raise CliError(one_line(exc), 1) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # stdout closed early (| head): click exits quietly
                raise
            raise CliError(one_line(exc), 1) from None


def use_dsn(dsn: str | None) -> None:
    """Make ``dsn`` the database of this process when it was given as ``--dsn``.

    A value that click took from ZART_DATABASE_URL is already in the settings; applying
    it again would override a ``--dsn`` given before the subcommand.
    """
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("dsn") if ctx is not None else None
    if dsn and source in (None, click.core.ParameterSource.COMMANDLINE):
        configure(settings().evolve(database_url=dsn))
        os.environ["ZART_DATABASE_URL"] = dsn  # for the processes it starts (demo, workers)


def dsn_option(fn: F) -> F:
    return click.option(
        "--dsn", metavar="URL", envvar="ZART_DATABASE_URL", show_envvar=True,
        help="PostgreSQL to use; unset: the embedded server under ZART_HOME.")(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON, for scripts.")(fn)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def console() -> Console:
    return Console(soft_wrap=False, highlight=False)


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    end = end or datetime.now(start.tzinfo)
    return max(0.0, (end - start).total_seconds())


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


class Duration(click.ParamType[float, Any]):
    """A duration such as ``30d``, ``12h``, ``45m``, ``90s`` or ``1d12h``, in seconds (a
    unit is required: ``--older-than 30`` would be ambiguous)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value).strip(), unit_required=True)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


@click.group(cls=ZartGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zart-nb", prog_name=PROG)
@dsn_option
def cli(dsn: str | None) -> None:
    """zart-nb: durable execution for notebooks; runs, workers and the database."""
    use_dsn(dsn)
