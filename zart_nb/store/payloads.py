"""Where an encoded value is stored, and results of any size.

Small values (a step's arguments, errors, a small result) are envelopes placed in their
row when under ``INLINE_LIMIT``, else once per content in the payloads table, in the
statement that commits the row (``place``).

A result is encoded here (``encode``, ``zart_nb.payload_codec``). A small one comes back
as its envelope, placed as above. A large one is written at once, in a transaction of
its own on a pooled connection: the chunks the database does not have yet, then its
manifest in ``payloads`` and the chunks it names in ``payload_chunks``; it comes back as
the manifest's address, which the step's commit names. A pickle that fails halfway, or
a server that dies mid-write, rolls that transaction back: no chunk is left, and no
manifest names a chunk that is not there.

That transaction commits without waiting for the WAL flush. The commit naming the
manifest comes after it and waits for the flush, and PostgreSQL flushes its WAL in
order, so once the step is durable its payload is too. A crash in between loses both,
or leaves a payload no step names, which gc removes.

gc and a payload being written meet on rows, not tables: the writer marks every chunk
it reuses as used now and keeps it locked until it commits, and marks a manifest it
stores again as written now. gc skips locked chunks, rechecks the age of rows changed
under it, and leaves alone payloads and chunks younger than ``UNREFERENCED_GRACE_S``,
which covers the moment between a payload's commit and its step's.

``value`` reads a stored value back (a manifest's chunks one after the other, each
checked against the manifest before it is used); ``export`` writes it to a file
without unpickling it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, BinaryIO

from .. import codec, payload_codec, pickle_export
from ..errors import PayloadError, StoreError
from ..payload_codec import human_size
from . import sql
from .connection import Store
from .records import Placed
from .sql import Connection

INLINE_LIMIT = 16 * 1024  # larger values go to the payloads table, stored once
UNREFERENCED_GRACE_S = 3600  # gc keeps unreferenced payloads and chunks at least this long
DISK_FULL = "53100"

GET = sql.query("get_payload")
WITHOUT_FLUSH = sql.query("commit_without_flush")
TOUCH_CHUNKS = sql.query("touch_chunks")
INSERT_CHUNK = sql.query("insert_chunk")
INSERT_MANIFEST = sql.query("insert_manifest")
MISSING_CHUNKS = sql.query("missing_chunks")
GET_CHUNK = sql.query("get_chunk")


def place(data: bytes) -> Placed:
    """An envelope placed: inline when small, else whole in payloads."""
    if len(data) <= INLINE_LIMIT:
        return Placed(data, None, None, len(data))
    return Placed(None, codec.digest(data), data, len(data))


def encode(store: Store, value: Any, *, what: str = "result", owner: str = "") -> Placed:
    """Pickle ``value`` and place it; a large one is stored at once, in chunks.

    Raises PayloadError naming ``owner`` when it does not pickle or is over
    ``ZART_MAX_RESULT_BYTES``, StoreError naming ``owner`` and the size when the
    database refuses it (a full disk) or goes away.
    """
    limit = store.settings.max_result_bytes
    scalar = codec.dumps_scalar(value)
    if scalar is not None and (limit is None or len(scalar) <= limit):
        return Placed(codec.seal(scalar), None, None, len(scalar))
    return _stored(store, owner or what, lambda sink: payload_codec.dump(
        value, sink, what=what, owner=owner, limit=limit))


def encode_pickle(store: Store, body: bytes, *, what: str = "result", owner: str = "") -> Placed:
    """The same for a pickle made elsewhere (a child run on an executor), not unpickled."""
    return _stored(store, owner or what, lambda sink: payload_codec.dump_pickle(
        body, sink, what=what, owner=owner, limit=store.settings.max_result_bytes))


def value(conn: Connection, inline: bytes | None, digest: bytes | None, *,
          what: str = "payload") -> Any:
    """The stored value: ``inline``, or the payload at ``digest`` (whole or in chunks)."""
    if digest is None:
        return codec.decode(_inline(inline, what), what=what)
    data, named = _payload(conn, digest, what)
    return payload_codec.load(data, _Reader(conn), what=named)


def export(conn: Connection, inline: bytes | None, digest: bytes | None, out: BinaryIO, *,
           what: str = "payload") -> str:
    """Write the stored value to ``out`` without unpickling it (``pickle_export``);
    returns what the file holds: ``bytes``, ``str`` or ``pickle``."""
    if digest is None:
        return pickle_export.export(_inline(inline, what), _Reader(conn), out, what=what)
    data, named = _payload(conn, digest, what)
    return pickle_export.export(data, _Reader(conn), out, what=named)


def _stored(store: Store, owner: str,
            dump: Callable[[_Writer], payload_codec.Dumped]) -> Placed:
    writer = _Writer(store)
    try:
        with writer:
            dumped = dump(writer)
            if not dumped.is_manifest:
                placed = place(dumped.data)
                return Placed(placed.inline, placed.hash, placed.data, dumped.size)
            address = codec.digest(dumped.data)
            writer.finish(address, dumped)
    except payload_codec.SinkFailed as exc:
        error = exc.__cause__
        if not isinstance(error, StoreError):
            raise (error or exc) from None
        raise _write_error(error, owner, exc.size) from error
    return Placed(None, address, None, dumped.size)


def _inline(inline: bytes | None, what: str) -> bytes:
    if inline is None:
        raise PayloadError(f"{what}: nothing is stored")
    return inline


def _payload(conn: Connection, digest: bytes, what: str) -> tuple[bytes, str]:
    """The payload at ``digest`` (an envelope or a manifest), and its name for errors."""
    named = f"payload {digest.hex()}" if what == "payload" else f"{what}: payload {digest.hex()}"
    data: bytes | None = sql.value(conn, GET, {"hash": digest}, binary=True)
    if data is None:
        raise PayloadError(f"{named} is missing")
    return data, named


class _Writer:
    """The sink of one large payload: a transaction on a pooled connection, opened by
    its first chunk (a small payload never takes a connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stack = ExitStack()
        self._conn: Connection | None = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        try:
            return self._stack.__exit__(*exc_info)  # commits, or rolls back on an error
        except StoreError:
            if exc_info[0] is None:
                raise
            return None  # the rollback failed too (the server is gone): the first error stands

    def _transaction(self) -> Connection:
        if self._conn is None:
            self._conn = self._stack.enter_context(self.store.connection())
            self._stack.enter_context(sql.transaction(self._conn))
            sql.execute(self._conn, WITHOUT_FLUSH)
        return self._conn

    def known(self, hashes: Sequence[bytes]) -> set[bytes]:
        return set(sql.column(self._transaction(), TOUCH_CHUNKS, {"hashes": list(hashes)}))

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        sql.execute(self._transaction(), INSERT_CHUNK, {"hash": digest, "data": data})

    def finish(self, address: bytes, dumped: payload_codec.Dumped) -> None:
        try:
            sql.execute(self._transaction(), INSERT_MANIFEST, {
                "hash": address, "data": dumped.data, "size": dumped.size,
                "chunks": list(dumped.chunks)})
        except StoreError as exc:
            raise payload_codec.SinkFailed(dumped.size) from exc


class _Reader:
    """The chunks of stored payloads, read on ``conn``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def missing(self, hashes: Sequence[bytes]) -> list[bytes]:
        return sql.column(self.conn, MISSING_CHUNKS, {"hashes": list(hashes)})

    def fetch(self, digest: bytes) -> bytes | None:
        data: bytes | None = sql.value(self.conn, GET_CHUNK, {"hash": digest}, binary=True)
        return data


def _write_error(error: StoreError, owner: str, size: int) -> StoreError:
    """The error of a large payload the database did not take, naming its owner and size."""
    if error.sqlstate == DISK_FULL:
        said = (str(error.__cause__ or error).strip().splitlines() or ["disk full"])[0]
        return StoreError(f"{owner}: the database's disk is full: cannot store its "
                          f"{human_size(size)} result ({said}); free space on the server, "
                          "then execute it again", sqlstate=error.sqlstate)
    if sql.lost(error.sqlstate):
        return StoreError(f"{owner}: {error}, while storing its {human_size(size)} result",
                          sqlstate=error.sqlstate)
    return StoreError(f"{owner}: its {human_size(size)} result was refused: {error}",
                      sqlstate=error.sqlstate)
