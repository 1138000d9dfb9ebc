"""Large results through the store: stored in chunks and read back equal, whatever they hold.

Each value here pickles to more than ``payload_codec.SPILL``, so that it takes the chunked
path (the tests check that it did); the arrays and frames come back with their dtypes,
shapes, memory layout, categories, time zones and indexes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.frames import MiB, big_array, sample_frame
from zart_nb import codec, manifest, payload_codec
from zart_nb.store import payloads as results
from zart_nb.store.connection import get_store


class Stored:
    """A large value as stored: its manifest's ``address`` and signed bytes (``data``),
    and the ``size`` of its pickle."""

    def __init__(self, address: bytes, data: bytes, size: int) -> None:
        self.address, self.data, self.size = address, data, size


def store_large(value):
    """``value`` stored as chunks and a manifest; (the Stored, the value read back)."""
    store = get_store()
    placed = results.encode(store, value, owner="test")
    assert placed.hash is not None and placed.data is None, "a large value is stored in chunks"
    with store.connection() as conn:
        data = conn.execute("SELECT data FROM payloads WHERE hash = %s", (placed.hash,)).fetchone()[0]
        return Stored(placed.hash, bytes(data), placed.size), results.value(conn, None, placed.hash)


def chunk_rows(sql) -> dict[bytes, int]:
    return {bytes(r["hash"]): r["size"] for r in sql("SELECT hash, length(data) AS size FROM chunks")}


DTYPES = ["bool", "int8", "uint16", "int32", "int64", "float16", "float32", "float64",
          ">f8", "complex128", "datetime64[ns]", "timedelta64[us]", "U7", "S5",
          "i4,f8", "object"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_arrays_of_every_kind_of_dtype_round_trip(zart_env, dtype):
    array = big_array(dtype)

    _, back = store_large(array)

    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_arrays_of_any_layout_and_size_round_trip_inside_a_large_value(zart_env):
    matrix = np.random.default_rng(1).random((900, 700))  # 5 MB
    value = {"matrix": matrix, "strided": matrix[::3, ::2], "fortran": np.asfortranarray(matrix),
             "transposed": matrix.T, "zero_d": np.array(2.5), "empty": np.zeros((0, 4), "i2"),
             "scalar": np.float32(1.5)}

    _, back = store_large(value)

    for key, array in value.items():
        assert type(back[key]) is type(array) and back[key].dtype == array.dtype, key
        np.testing.assert_array_equal(back[key], array)
    assert back["fortran"].flags.f_contiguous and back["transposed"].shape == (700, 900)
    assert back["zero_d"].shape == ()


def test_a_frame_round_trips_with_dtypes_categories_time_zone_and_multi_index(zart_env):
    frame = sample_frame(300_000)

    encoded, back = store_large(frame)

    pd.testing.assert_frame_equal(back, frame, check_dtype=True, check_index_type=True,
                                  check_categorical=True, check_exact=True)
    assert back["venue"].cat.ordered and list(back["venue"].cat.categories) == ["xetra", "nyse", "lse"]
    assert str(back["at"].dt.tz) == "Europe/London"
    assert back.index.names == ["shop", "row"]
    assert encoded.size > payload_codec.SPILL


def test_a_pyarrow_table_round_trips(zart_env):
    n = 400_000
    table = pa.table({"x": pa.array(np.arange(n)), "y": pa.array(np.random.default_rng(2).random(n)),
                      "s": pa.array([f"s{i % 101}" for i in range(n)]),
                      "d": pa.array(pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"))})

    _, back = store_large(table)

    assert back.schema == table.schema and back.equals(table)


def test_nested_structures_holding_arrays_and_frames_round_trip(zart_env):
    frame = sample_frame(50_000, seed=3)
    value = {"runs": [(i, np.full(200_000, i, dtype=np.int16)) for i in range(3)],
             "frames": {"a": frame, "b": frame.head(10)}, "note": "kept", "n": None}

    _, back = store_large(value)

    assert [i for i, _ in back["runs"]] == [0, 1, 2]
    for (_, array), (_, original) in zip(back["runs"], value["runs"], strict=True):
        np.testing.assert_array_equal(array, original)
    pd.testing.assert_frame_equal(back["frames"]["a"], frame)
    pd.testing.assert_frame_equal(back["frames"]["b"], frame.head(10))
    assert back["note"] == "kept" and back["n"] is None


def test_a_value_met_twice_in_memory_comes_back_shared(zart_env):
    array = big_array("float64")
    _, back = store_large([array, array])
    assert back[0] is back[1]


def test_small_values_stay_format_1_envelopes_byte_for_byte(zart_env):
    store = get_store()
    for value in (1, "text", b"x" * 100_000, np.arange(1000), big_array("int8", 3 * MiB)):
        placed = results.encode(store, value)
        envelope = placed.inline if placed.inline is not None else placed.data
        assert envelope is not None, "a small value is not stored in chunks"
        assert envelope == codec.encode(value)


def test_compressible_chunks_are_compressed_and_random_ones_stored_raw(zart_env, sql):
    ramp = np.arange(3_000_000, dtype=np.int64)  # 24 MB, compresses well
    noise = np.random.default_rng(5).bytes(12 * MiB)  # does not

    ramp_encoded, _ = store_large(ramp)
    noise_encoded, back = store_large(noise)

    sizes = chunk_rows(sql)
    ramp_chunks = manifest.open_manifest(ramp_encoded.data).streams[1].chunks
    assert {c.compression for c in ramp_chunks} == {manifest.ZSTD}
    assert sum(sizes[c.hash] for c in ramp_chunks) < ramp.nbytes / 3
    noise_stream = manifest.open_manifest(noise_encoded.data).streams[0]  # bytes: in-band
    assert {c.compression for c in noise_stream.chunks} == {manifest.RAW}
    assert sum(sizes[c.hash] for c in noise_stream.chunks) == noise_stream.raw_size > len(noise)
    assert back == noise


def test_equal_buffers_are_stored_once_and_storing_again_sends_nothing(zart_env, sql):
    frame = sample_frame(200_000, seed=4)
    first, _ = store_large(frame)
    stored = chunk_rows(sql)

    again, _ = store_large(frame.copy())
    assert again.address == first.address and chunk_rows(sql) == stored

    twice, back = store_large((frame, frame.copy()))
    named = manifest.open_manifest(twice.data)
    entries = [c.hash for s in named.streams for c in s.chunks]
    assert len(set(entries)) < len(entries)  # the second copy's buffers are the first's chunks
    new = set(chunk_rows(sql)) - set(stored)
    assert new and new <= {c.hash for c in named.streams[0].chunks}  # only the main stream's
    pd.testing.assert_frame_equal(back[1], frame)


def test_a_format_1_payload_written_before_chunks_existed_still_reads(zart_env, sql):
    old = codec.encode({"written": "by zart-nb before issue 13", "data": list(range(5000))})
    digest = codec.digest(old)
    sql("INSERT INTO payloads (hash, data, size) VALUES (%s, %s, %s)", digest, old, len(old))

    with get_store().connection() as conn:
        assert results.value(conn, None, digest)["written"] == "by zart-nb before issue 13"


def round_trip_through_a_step(run_id: str, make):
    """``make()`` returned by a step of a run, then that run replayed: (value, replayed)."""
    from tests.engine.helpers import replay
    from tests.helpers import execute
    from zart_nb import step

    @step("large")
    def large():
        return make()

    def body():
        return type(large()).__name__

    kept = []

    def keeping():
        kept.append(large())
        return type(kept[-1]).__name__

    execute(body, name=run_id)
    out = replay(keeping, name=run_id, run_id=run_id)
    assert out.report.replayed == ["large"]
    return kept[0]


@pytest.mark.slow
def test_a_1_6_gb_array_round_trips_intact(zart_env):
    array = np.random.default_rng(16).random(200_000_000)  # 1.6 GB, over PostgreSQL's 1 GiB
    back = round_trip_through_a_step("array-1.6g", lambda: array)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


@pytest.mark.slow
def test_a_3_gb_frame_round_trips_intact(zart_env):
    from benchmarks.large_results import make_value, size_of

    frame = make_value("frame", 104_000_000)  # 29 bytes a row: 3.0 GB
    assert size_of(frame) > 3_000_000_000
    back = round_trip_through_a_step("frame-3g", lambda: frame)
    assert list(back.dtypes) == list(frame.dtypes) and back.shape == frame.shape
    assert back.equals(frame)
