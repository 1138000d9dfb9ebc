"""``%zart_runs``: the runs table, as HTML for Jupyter with a plain-text fallback."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

COLUMNS = ("run id", "name", "status", "steps", "owner", "started", "duration")


def rows_of(runs: list[dict[str, Any]], now: datetime | None = None) -> list[tuple[str, ...]]:
    now = now or datetime.now(timezone.utc)
    out: list[tuple[str, ...]] = []
    for r in runs:
        started = r.get("started_at")
        end = r.get("finished_at") or (now if r.get("status") in ("running", "waiting") else None)
        took = duration((end - started).total_seconds()) if started and end else ""
        out.append((
            str(r["run_id"]), str(r.get("name") or ""), str(r.get("status") or ""),
            f"{r.get('steps_done', 0)}/{r.get('steps_total', 0)}",
            str(r.get("owner") or ""),
            started.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if started else "",
            took,
        ))
    return out


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 07 s``, ``2 h 05 min``: for runs tables and progress lines."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def as_text(rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "no runs"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, rows)])


_STATUS_COLOURS = {"completed": "#2e7d32", "failed": "#c62828", "cancelled": "#6d4c41",
                   "running": "#1565c0", "waiting": "#6a1b9a", "pending": "#616161"}


def as_html(rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "<p><em>no runs</em></p>"
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for r in rows:
        cells = []
        for i, value in enumerate(r):
            text = html.escape(value)
            if COLUMNS[i] == "status":
                colour = _STATUS_COLOURS.get(value, "inherit")
                text = f"<span style='color:{colour};font-weight:bold'>{text}</span>"
            cells.append(f"<td style='text-align:left'>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class='zart-runs'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def bundle(runs: list[dict[str, Any]]) -> dict[str, str]:
    rows = rows_of(runs)
    return {"text/html": as_html(rows), "text/plain": as_text(rows)}
