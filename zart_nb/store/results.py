"""Results in the database: small ones whole, large ones as chunks and a manifest.

``encode`` pickles a result (``zart_nb.payload_codec``). A small one comes back as its
envelope, which the step commit stores inline or whole in ``payloads`` in the statement
that commits the step, as before. A large one is written here, in a transaction of its
own on a pooled connection: the chunks the database does not have yet, then its manifest
in ``payloads`` and the chunks it names in ``payload_chunks``; it comes back as the
manifest's address, which the step commit names. A pickle that fails halfway, or a
server that dies mid-write, rolls that transaction back: no chunk is left, and no
manifest names a chunk that is not there.

That transaction commits without waiting for the WAL flush. The step commit naming the
manifest comes after it and waits for the flush, and PostgreSQL flushes its WAL in
order, so once the step is durable its payload is too. A crash in between loses both,
or leaves a payload no step names, which gc removes.

gc and a payload being written meet on rows, not tables: the writer marks every chunk
it reuses as used now and keeps it locked until it commits, and marks a manifest it
stores again as written now. gc skips locked chunks, rechecks the age of rows changed
under it, and leaves alone payloads and chunks younger than ``UNREFERENCED_GRACE_S``,
which covers the moment between a payload's commit and its step's.

``value`` reads a stored result back; a manifest's chunks are fetched one after the
other, each checked against the manifest before it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO

import psycopg

from .. import codec, payload_codec, pickle_export
from ..errors import PayloadError, StoreError
from ..payload_codec import human_size
from . import queries
from .connection import Store, redact

UNREFERENCED_GRACE_S = 3600  # gc keeps unreferenced payloads and chunks at least this long


@dataclass(frozen=True)
class Encoded:
    """A pickled result: its envelope (small), or the manifest already stored (large)."""

    data: bytes
    size: int  # bytes of the pickle
    address: bytes | None = None  # the stored manifest's hash; None for an envelope


def encode(store: Store, value: Any, *, what: str = "result", owner: str = "") -> Encoded:
    """Pickle ``value``; a large one is stored at once, in chunks.

    Raises PayloadError naming ``owner`` when it does not pickle or is over
    ``ZART_MAX_RESULT_BYTES``, StoreError naming ``owner`` and the size when the
    database refuses it (a full disk) or goes away.
    """
    writer = _Writer(store)
    try:
        with writer:
            dumped = payload_codec.dump(value, writer, what=what, owner=owner,
                                        limit=store.settings.max_result_bytes)
            if not dumped.is_manifest:
                return Encoded(dumped.data, dumped.size)
            address = codec.digest(dumped.data)
            writer.finish(address, dumped)
    except payload_codec.SinkFailed as exc:
        error = exc.__cause__
        if not isinstance(error, psycopg.Error):
            raise (error or exc) from None  # the store's own error (no connection), worded
        raise _write_error(store, error, owner or what, exc.size) from error
    return Encoded(dumped.data, dumped.size, address)


def value(conn: psycopg.Connection, inline: bytes | None, digest: bytes | None, *,
          what: str = "payload") -> Any:
    """The stored result: ``inline``, or the payload at ``digest`` (whole or in chunks)."""
    if digest is None:
        return codec.decode(_inline(inline, what), what=what)
    data, named = _stored(conn, digest, what)
    return payload_codec.load(data, _Reader(conn), what=named)


def export(conn: psycopg.Connection, inline: bytes | None, digest: bytes | None,
           out: BinaryIO, *, what: str = "payload") -> str:
    """Write the stored result to ``out`` without unpickling it (``pickle_export``);
    returns what the file holds: ``bytes``, ``str`` or ``pickle``."""
    if digest is None:
        return pickle_export.export(_inline(inline, what), _Reader(conn), out, what=what)
    data, named = _stored(conn, digest, what)
    return pickle_export.export(data, _Reader(conn), out, what=named)


def _inline(inline: bytes | None, what: str) -> bytes:
    if inline is None:
        raise PayloadError(f"{what}: nothing is stored")
    return inline


def _stored(conn: psycopg.Connection, digest: bytes, what: str) -> tuple[bytes, str]:
    """The payload at ``digest`` (an envelope or a manifest), and its name for errors."""
    named = f"payload {digest.hex()}" if what == "payload" else f"{what}: payload {digest.hex()}"
    row = queries.execute(conn, "get_payload", binary=True, hash=digest).fetchone()
    if row is None:
        raise PayloadError(f"{named} is missing")
    return row["data"], named


class _Writer:
    """The sink of one large payload: a transaction on a pooled connection, opened by
    its first chunk (a small payload never takes a connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stack = ExitStack()
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._stack.__exit__(*exc_info)  # commits, or rolls back on an error

    def _transaction(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self._stack.enter_context(self.store.connection())
            self._stack.enter_context(self._conn.transaction())
            queries.execute(self._conn, "commit_without_flush")
        return self._conn

    def known(self, hashes: Sequence[bytes]) -> set[bytes]:
        rows = queries.all_rows(self._transaction(), "touch_chunks", hashes=list(hashes))
        return {row["hash"] for row in rows}

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        queries.execute(self._transaction(), "insert_chunk", hash=digest, data=data)

    def finish(self, address: bytes, dumped: payload_codec.Dumped) -> None:
        try:
            queries.execute(self._transaction(), "insert_manifest", hash=address,
                            data=dumped.data, size=dumped.size, chunks=list(dumped.chunks))
        except psycopg.Error as exc:
            raise payload_codec.SinkFailed(dumped.size) from exc


class _Reader:
    """The chunks of stored payloads, read on ``conn``."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def missing(self, hashes: Sequence[bytes]) -> list[bytes]:
        rows = queries.all_rows(self.conn, "missing_chunks", hashes=list(hashes))
        return [row["hash"] for row in rows]

    def fetch(self, digest: bytes) -> bytes | None:
        row = queries.execute(self.conn, "get_chunk", binary=True, hash=digest).fetchone()
        return None if row is None else row["data"]


def _write_error(store: Store, error: psycopg.Error, owner: str, size: int) -> StoreError:
    """The error of a large payload the database did not take, naming its owner and size."""
    if isinstance(error, psycopg.errors.DiskFull):
        return StoreError(f"{owner}: the database's disk is full: cannot store its "
                          f"{human_size(size)} result ({_first_line(error)}); free space on "
                          f"the server {redact(store.dsn)}, then execute it again")
    if isinstance(error, psycopg.OperationalError):
        return StoreError(f"{owner}: lost the database {redact(store.dsn)} while storing its "
                          f"{human_size(size)} result: {_first_line(error)}")
    return StoreError(f"{owner}: the database refused its {human_size(size)} result: "
                      f"{_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
