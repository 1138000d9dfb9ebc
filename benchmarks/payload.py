"""A signed payload's round trip through PostgreSQL against the same bytes sent raw.

zart: ``codec.encode`` + INSERT into ``payloads`` + SELECT + ``codec.decode``.
raw:  INSERT + SELECT of the same bytes into a plain bytea table.
codec_only: encode + decode alone, to show where the difference goes.
Both are binary parameters and binary results, in the same run, on the same server.
The raw table is a regular one (not TEMP) with the same storage as ``payloads``, so
that both pay the same WAL and TOAST costs and the ratio is the store's overhead.
"""

from __future__ import annotations

import os

from zart_nb import codec
from zart_nb.store.connection import Store

from .common import Context, Figures, benchmark, best_of

MB = 1024 * 1024
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS raw_payloads (id integer PRIMARY KEY, data bytea NOT NULL);
ALTER TABLE raw_payloads ALTER COLUMN data SET STORAGE EXTERNAL;
"""


@benchmark("payload_roundtrip")
def payload_roundtrip(ctx: Context) -> Figures:
    sizes = [1, 10] if ctx.quick else [1, 10, 100]
    runs = 1 if ctx.quick else 3
    store = Store(ctx.settings, max_size=1).open()
    try:
        with store.connection() as conn:
            conn.execute(RAW_TABLE.encode())
            return {f"{size}MB": _measure(conn, os.urandom(size * MB), runs) for size in sizes}
    finally:
        store.close()


def _measure(conn, value: bytes, runs: int) -> Figures:
    def zart() -> None:
        data = codec.encode(value)
        key = codec.digest(data)
        conn.execute("INSERT INTO payloads (hash, data, size) VALUES (%b, %b, %s)", (key, data, len(data)))
        row = conn.execute("SELECT data FROM payloads WHERE hash = %b", (key,), binary=True).fetchone()
        assert codec.decode(row[0]) == value

    def raw() -> None:
        conn.execute("INSERT INTO raw_payloads (id, data) VALUES (1, %b)", (value,))
        row = conn.execute("SELECT data FROM raw_payloads WHERE id = 1", binary=True).fetchone()
        assert row[0] == value

    def empty() -> None:
        conn.execute("TRUNCATE payloads, raw_payloads CASCADE")  # and the chunk lists

    zart_s = best_of(runs, zart, reset=empty)
    raw_s = best_of(runs, raw, reset=empty)
    codec_s = best_of(runs, lambda: codec.decode(codec.encode(value)))
    size_mb = len(value) / MB
    return {
        "zart_s": round(zart_s, 4),
        "zart_mb_per_s": round(size_mb / zart_s, 1),
        "raw_s": round(raw_s, 4),
        "raw_mb_per_s": round(size_mb / raw_s, 1),
        "zart_over_raw": round(zart_s / raw_s, 2),
        "codec_only_s": round(codec_s, 4),  # encode + decode without the database: the overhead's share
    }
