"""``%zart_resume``: find the stored cell of an unfinished ``%%zart_durable`` run."""

from __future__ import annotations

from .. import codec
from ..engine.runs import Run
from ..errors import PayloadError, UsageError
from ..store.records import StoredBody
from .durable_cell import CellBody, DurableRequest


def resume_request(run_id: str) -> tuple[str, DurableRequest]:
    """(the cell's source, the request that executes it again as run ``run_id``, with the
    options and ``--on-failure`` handler it was started with)."""
    stored = Run(run_id).stored_body()
    if stored.status == "completed":
        raise UsageError(f"run {run_id!r} is completed: nothing to resume "
                         f"(%zart_attach {run_id} returns its result)")
    if stored.status == "cancelled":
        raise UsageError(f"run {run_id!r} was cancelled; to execute it again, run its cell "
                         f"with %%zart_durable {stored.name} --run {run_id} --restart")
    body, on_failure = _body_of(stored)
    if not isinstance(body, CellBody) or not stored.body_source:
        raise UsageError(f"run {run_id!r} was not started by a %%zart_durable cell; resume "
                         "it from the script or notebook that started it")
    request = DurableRequest(name=stored.name, run_id=run_id,
                             on_change=stored.options.get("on_change", "rerun"),
                             on_failure=on_failure if callable(on_failure) else None)
    return stored.body_source, request


def _body_of(stored: StoredBody) -> tuple[object, object]:
    """(body, on_failure) as the run keeps them; (None, None) when it keeps none."""
    if stored.body is None:
        return None, None
    try:
        body, on_failure = codec.decode(stored.body, what=f"body of run {stored.run_id!r}")
    except PayloadError as exc:
        raise UsageError(f"run {stored.run_id!r}: its stored body cannot be loaded here: {exc}") from None
    return body, on_failure
