"""``zart-nb worker``, ``event send``, ``install-kernel`` and ``demo``.

Each imports the layer it fronts only when it runs, so that ``zart-nb --help`` stays
fast and a missing optional part fails only its own command.
"""

from __future__ import annotations

import json
import os

import click

from ..config import settings
from ..engine.runs import send_event
from ..errors import UsageError
from ..store.connection import get_store, redact
from .app import CliError, ZartGroup, dsn_option, use_dsn


@click.command("worker", short_help="Execute fan-out children until SIGTERM.")
@dsn_option
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=4, show_default=True,
              metavar="N", help="Children executed at once, on threads of this process.")
@click.option("--namespace", "-n", metavar="NS", envvar="ZART_NAMESPACE", show_envvar=True,
              help="Take children queued under this namespace (default: 'default').")
def worker_cmd(dsn: str | None, concurrency: int, namespace: str | None) -> None:
    """Execute fan-out children (and detached bodies) from the database until SIGTERM."""
    use_dsn(dsn)
    s = settings()
    namespace = namespace or s.namespace
    from ..engine.worker import run_worker

    store = get_store()  # a database that is down fails here, before the banner
    click.echo(f"zart-nb worker: pid {os.getpid()}, concurrency {concurrency}, namespace "
               f"{namespace!r}, database {redact(store.dsn)}", err=True)
    run_worker(concurrency=concurrency, namespace=namespace)
    click.echo("zart-nb worker: stopped", err=True)


@click.group("event", cls=ZartGroup)
def event_group() -> None:
    """Events for runs waiting in wait_for_event."""


@event_group.command("send")
@click.argument("run_id")
@click.argument("name")
@click.option("--json", "payload", metavar="PAYLOAD",
              help="The event's payload as JSON (default: null).")
def event_send_cmd(run_id: str, name: str, payload: str | None) -> None:
    """Deliver event NAME to run RUN_ID; the first event of a name wins."""
    value = None
    if payload is not None:
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="'--json'") from None
    send_event(run_id, name, value)
    click.echo(f"sent event {name!r} to run {run_id!r}")


@click.command("install-kernel", short_help="Install the zart durable Jupyter kernel.")
@click.option("--user", is_flag=True, help="Install into the user's Jupyter data dir.")
@click.option("--sys-prefix", is_flag=True, help="Install into sys.prefix (this environment).")
@click.option("--prefix", metavar="PATH", help="Install under PATH/share/jupyter/kernels.")
@click.option("--name", metavar="NAME", default="zart", show_default=True, help="Kernel name.")
def install_kernel_cmd(user: bool, sys_prefix: bool, prefix: str | None, name: str) -> None:
    """Install the "Python 3 (zart durable)" Jupyter kernel for this Python.

    Without a location flag it goes to the system-wide kernels folder (which needs the
    rights to write there).
    """
    if sum((user, sys_prefix, prefix is not None)) > 1:
        raise UsageError("choose at most one of --user, --sys-prefix and --prefix")
    from ..notebook import kernelspec

    path = kernelspec.install(user=user, prefix=prefix, sys_prefix=sys_prefix, name=name)
    click.echo(f"installed kernel {name!r} in {path}")


@click.command("demo", short_help="Run the demo.")
def demo_cmd() -> None:
    """Run the demo: a durable body with steps and a fan-out, killed and replayed."""
    try:
        from .. import demo
    except ImportError as exc:
        raise CliError(f"the demo is not available: {exc}", 1) from None
    result = demo.main()
    if isinstance(result, int) and result:
        raise click.exceptions.Exit(result)
