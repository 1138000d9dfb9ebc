"""``%zart_resume``: find the stored cell of an unfinished ``%%zart_durable`` run."""

from __future__ import annotations

import json

from .. import codec
from ..engine.runs import Run
from ..errors import PayloadError, UsageError
from .durable_cell import CellBody, DurableRequest


def resume_request(run_id: str) -> tuple[str, DurableRequest]:
    """(the cell's source, the request that executes it again as run ``run_id``)."""
    row = Run(run_id).row()
    status = row["status"]
    if status == "completed":
        raise UsageError(f"run {run_id!r} is completed: nothing to resume "
                         f"(%zart_attach {run_id} returns its result)")
    if status == "cancelled":
        raise UsageError(f"run {run_id!r} was cancelled; to execute it again, run its cell "
                         f"with %%zart_durable {row['name']} --run {run_id} --restart")
    body = None
    if row.get("body") is not None:
        try:
            body = codec.decode(row["body"], what=f"body of run {run_id!r}")
            if isinstance(body, tuple):  # (body, on_failure)
                body = body[0]
        except PayloadError as exc:
            raise UsageError(f"run {run_id!r}: its stored body cannot be loaded here: {exc}") from None
    if not isinstance(body, CellBody) or not row.get("body_source"):
        raise UsageError(f"run {run_id!r} was not started by a %%zart_durable cell; resume "
                         "it from the script or notebook that started it")
    options = row.get("options") or {}
    if isinstance(options, str):
        options = json.loads(options)
    request = DurableRequest(name=row["name"], run_id=run_id,
                             on_change=options.get("on_change", "rerun"))
    return row["body_source"], request
