"""``zart-nb gc``: remove old ended runs, their journal and the payloads nobody needs.

Runs go in batches, one transaction each, oldest first. A batch locks only the ended
runs it removes (``FOR UPDATE SKIP LOCKED``: a run someone is restarting right now is
skipped); pending, running and waiting runs are never selected. Each transaction also
holds a lock on the payloads table that makes concurrent step commits with large
results wait for the few milliseconds of the batch, so that a payload gc removes can
never be the one a commit is reusing at that moment. Then the chunks of large payloads
that no manifest names any more go, in batches too (store/payloads.py says how a
payload being written keeps its chunks). Payloads and chunks written within the last
hour are kept whatever the cutoff.
"""

from __future__ import annotations

import click

from ..durations import format_duration
from ..store import gc
from ..store.connection import get_store
from .app import ENDED, Duration, console, json_option, print_json


@click.command("gc", short_help="Remove old ended runs and unreferenced payloads and chunks.")
@click.option("--older-than", "older_than", type=Duration(), required=True, metavar="DURATION",
              help="Remove runs that ended longer ago than this: 30d, 12h, 45m, 90s, 1d12h.")
@click.option("--status", "statuses", type=click.Choice(ENDED), multiple=True,
              help="Only runs that ended with this status (repeatable; default: all three).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True, metavar="N",
              help="Runs removed per transaction.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@json_option
def gc_cmd(older_than: float, statuses: tuple[str, ...], batch_size: int, dry_run: bool,
           as_json: bool) -> None:
    """Remove runs that ended long ago, with their steps, attempts, events and payloads."""
    chosen = sorted(set(statuses or ENDED))
    totals = {"runs": 0, "steps": 0, "payloads": 0, "chunks": 0}
    with get_store().connection() as conn:
        if dry_run:
            preview = gc.preview(conn, chosen, older_than)
            totals = {"runs": preview.runs, "steps": preview.steps, "payloads": preview.payloads,
                      "chunks": preview.chunks}
        else:
            while True:
                batch = gc.remove_runs(conn, chosen, older_than, batch_size)
                totals["runs"] += batch.runs
                totals["steps"] += batch.steps
                totals["payloads"] += batch.payloads
                if batch.runs < batch_size:
                    break
            while True:
                swept = gc.remove_orphan_payloads(conn, older_than, batch_size)
                totals["payloads"] += swept
                if swept < batch_size:
                    break
            while True:
                swept = gc.remove_orphan_chunks(conn, older_than, batch_size)
                totals["chunks"] += swept
                if swept < batch_size:
                    break
    report = {"dry_run": dry_run, "older_than_s": int(older_than), "statuses": chosen, **totals}
    if as_json:
        print_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    console().print(f"{verb} {totals['runs']} runs, {totals['steps']} steps, "
                    f"{totals['payloads']} payloads and {totals['chunks']} chunks "
                    f"({', '.join(chosen)}; ended more than "
                    f"{format_duration(older_than)} ago)", markup=False)
