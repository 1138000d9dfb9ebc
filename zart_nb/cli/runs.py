"""``zart-nb runs``: list, show and steer runs (thin calls into the Run API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..engine.model import TERMINAL_STATUSES
from ..engine.runs import Run
from ..engine.runs import runs as list_runs
from ..errors import UsageError
from .app import (
    STATUSES,
    CliError,
    ZartGroup,
    console,
    human_seconds,
    json_option,
    print_json,
    seconds_between,
    when,
)

_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
          "waiting": "blue", "pending": "white", "scheduled": "white"}


def _status(text: str) -> str:
    return f"[{_STYLE.get(text, 'white')}]{text}[/]"


@click.group("runs", cls=ZartGroup)
def runs_group() -> None:
    """List, inspect and steer runs."""


@runs_group.command("list", short_help="Runs, newest first.")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--name", metavar="NAME", help="Only runs of this durable name.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many runs, newest first.")
@json_option
def list_cmd(status: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """Runs, newest first: status, steps done/total, owner, start, duration."""
    rows = list_runs(status=status, name=name, limit=limit)
    items = [_run_summary(r) for r in rows]
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no runs")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("RUN", "NAME", "STATUS", "STEPS", "OWNER", "STARTED", "DURATION"):
        table.add_column(column, no_wrap=column != "NAME")
    for row, item in zip(rows, items, strict=False):
        table.add_row(escape(item["run_id"]), escape(item["name"]), _status(item["status"]),
                      f"{item['steps_done']}/{item['steps_total']}", escape(item["owner"] or ""),
                      when(row["started_at"]), human_seconds(item["duration_s"]))
    console().print(table)


def _run_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": row["run_id"], "name": row["name"], "status": row["status"],
        "generation": row["generation"], "steps_done": row["steps_done"],
        "steps_total": row["steps_total"], "owner": row["owner"],
        "created_at": row["created_at"], "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "duration_s": seconds_between(row["started_at"], row["finished_at"]),
        "error": row["error"],
    }


@runs_group.command("show", short_help="One run and its steps.")
@click.argument("run_id")
@json_option
def show_cmd(run_id: str, as_json: bool) -> None:
    """One run and its steps: status, attempts, durations, errors."""
    run = Run(run_id)
    row = run.row()
    steps = run.steps
    history = run.attempts()
    by_step: dict[str, list[dict[str, Any]]] = {}
    for attempt in history:
        by_step.setdefault(attempt.pop("name"), []).append(attempt)
    info = _run_summary(row) | {"steps_failed": row["steps_failed"],
                                "steps": [_step_item(s, by_step.get(s["name"], [])) for s in steps]}
    if as_json:
        print_json(info)
        return
    _print_run(info, row)


def _step_item(step: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": step["name"], "kind": step["kind"], "status": step["status"],
        "attempts": step["attempts"], "max_attempts": step["max_attempts"],
        "duration_s": (seconds_between(step["started_at"], step["finished_at"])
                       if step["status"] in ("completed", "failed", "running") else None),
        "started_at": step["started_at"], "finished_at": step["finished_at"],
        "worker": step["worker"], "result_size": step["result_size"],
        "error": step["error"], "error_kind": step["error_kind"], "traceback": step["traceback"],
        "history": [{k: a[k] for k in ("attempt", "status", "error", "worker", "started_at",
                                       "finished_at")} for a in attempts],
    }


def _print_run(info: dict[str, Any], row: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    out.print(f"[bold]run[/] {escape(info['run_id'])}   [bold]name[/] {escape(info['name'])}   "
              f"[bold]status[/] {_status(info['status'])}   [bold]generation[/] {info['generation']}")
    out.print(f"started {when(row['started_at'])}   finished {when(row['finished_at']) or '-'}   "
              f"duration {human_seconds(info['duration_s']) or '-'}")
    out.print(f"steps {info['steps_done']}/{info['steps_total']} completed, "
              f"{info['steps_failed']} failed   owner {escape(info['owner'] or '-')}")
    if info["error"]:
        out.print(f"error: {info['error']}", markup=False)
    if not info["steps"]:
        return
    table = Table(box=None, header_style="bold")
    for column in ("STEP", "KIND", "STATUS", "ATTEMPTS", "DURATION", "WORKER", "ERROR"):
        table.add_column(column, no_wrap=column not in ("STEP", "ERROR"))
    for step in info["steps"]:
        error = (step["error"] or "").strip().splitlines()
        table.add_row(escape(step["name"]), step["kind"], _status(step["status"]),
                      f"{step['attempts']}/{step['max_attempts']}",
                      human_seconds(step["duration_s"]), escape(step["worker"] or ""),
                      escape(error[0]) if error else "")
    out.print()
    out.print(table)
    for step in info["steps"]:
        if step["history"]:
            out.print()
            out.print(f"[bold]{escape(step['name'])}[/]: attempt history")
            for a in step["history"]:
                out.print(f"  #{a['attempt']} {a['status']}: {a['error'] or ''}", markup=False)


@runs_group.command("cancel", short_help="Cancel a run.")
@click.argument("run_id")
def cancel_cmd(run_id: str) -> None:
    """Cancel a run: its body stops at its next step; unclaimed children are not run."""
    run = Run(run_id)
    if run.cancel():
        click.echo(f"cancelled run {run_id!r}")
        return
    status = run.status
    if status == "cancelled":
        click.echo(f"run {run_id!r} was already cancelled")
        return
    raise UsageError(f"run {run_id!r} already ended ({status}); there is nothing to cancel")


@runs_group.command("restart", short_help="Start a run afresh (new generation).")
@click.argument("run_id")
def restart_cmd(run_id: str) -> None:
    """Start a run afresh in a new generation; the old steps stay as history."""
    generation = Run(run_id).restart()
    click.echo(f"run {run_id!r} restarted as generation {generation}: its next execution "
               "starts from the first step")


@runs_group.command("rerun", short_help="Run some steps again at the next execution.")
@click.argument("run_id")
@click.argument("steps", nargs=-1, required=True)
def rerun_cmd(run_id: str, steps: tuple[str, ...]) -> None:
    """Forget STEPS of a run so that its next execution runs them again."""
    gone = Run(run_id).rerun(list(steps))
    click.echo(f"run {run_id!r}: {', '.join(gone)} will run again at the next execution")


@runs_group.command("retry-step", short_help="Retry a failed step.")
@click.argument("run_id")
@click.argument("step")
def retry_step_cmd(run_id: str, step: str) -> None:
    """Run a failed STEP again (a child at once by a worker, a step at the next execution)."""
    Run(run_id).retry_step(step)
    click.echo(f"run {run_id!r}: step {step!r} will be retried")


@runs_group.command("result", short_help="An ended run's result.")
@click.argument("run_id")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              metavar="FILE", help="Write the value to FILE instead of printing its repr: bytes "
              "as they are, str as UTF-8, anything else as a pickle; streamed, never unpickled.")
@click.option("--wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait up to SECONDS for a run that has not ended.")
def result_cmd(run_id: str, out: Path | None, wait: float | None) -> None:
    """The result of an ended run: its repr on stdout, or its value in FILE."""
    run = Run(run_id)
    if wait is None:
        status = run.status
        if status not in TERMINAL_STATUSES:
            raise CliError(f"run {run_id!r} is {status} and has no result yet "
                           "(--wait SECONDS to wait for it)", 1)
    try:
        if out is None:
            click.echo(repr(run.result(timeout=wait)))
            return
        partial = out.with_name(f".{out.name}.partial")  # FILE appears whole, or not at all
        try:
            with partial.open("wb") as file:
                kind = run.save_result(file, timeout=wait)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    except TimeoutError as exc:
        raise CliError(str(exc), 1) from None
    click.echo(f"wrote the result of run {run_id!r} ({kind}) to {out}", err=True)
