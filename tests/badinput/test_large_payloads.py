"""Large results stored in chunks, damaged or refused: never unpickled, nothing half-written.

The stored value ends with a ``CreatesDir``, whose unpickling makes a directory: it
proves whether anything was unpickled. Chunks and manifests are altered with SQL, as
someone with write access to the database could; bombs are built with the test's own
secret, as a writer holding the key could.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zstandard

from tests.chaos.figures import record
from tests.engine.helpers import replay
from tests.helpers import execute
from zart_nb import PayloadError, StepFailed, StoreError, codec, manifest, run, schedule, step, wait
from zart_nb.manifest import MAX_CHUNK, ZSTD, Chunk, Stream
from zart_nb.store import payloads as results
from zart_nb.store.connection import get_store

from .conftest import steps_of

MiB = 1 << 20


class CreatesDir:
    """Unpickling this calls ``os.mkdir(path)``: the directory appearing proves an unpickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def noise(size: int = 9 * MiB) -> bytes:
    return random.Random(size).randbytes(size)  # incompressible: chunks stored raw


def checkpoint(run_id: str, value) -> None:
    """A completed run whose step ``big`` returned ``value`` (stored in chunks)."""

    @step("big")
    def big():
        return value

    execute(lambda: len(big()), name=run_id)


def stored_manifest(sql, run_id: str) -> tuple[bytes, manifest.Manifest]:
    digest = sql("SELECT result_hash FROM steps WHERE run_id = %s AND name = 'big'",
                 run_id)[0]["result_hash"]
    data = sql("SELECT data FROM payloads WHERE hash = %s", digest)[0]["data"]
    return digest, manifest.open_manifest(data)


def test_an_intact_large_payload_is_unpickled(zart_env, tmp_path):
    """Control for the refusals below: the stored value does act when it is read."""
    witness = tmp_path / "unpickled"
    checkpoint("control", [noise(), CreatesDir(witness)])

    run("control").step_result("big")

    assert witness.exists()


def test_an_altered_chunk_is_refused_and_never_unpickled(zart_env, sql, tmp_path):
    witness = tmp_path / "unpickled-a"
    checkpoint("altered-chunk", [noise(), CreatesDir(witness)])
    _, found = stored_manifest(sql, "altered-chunk")
    last = found.streams[0].chunks[-1].hash  # holds the CreatesDir: 'a' -> '`' below
    data = bytes(sql("SELECT data FROM chunks WHERE hash = %s", last)[0]["data"])
    at = data.rindex(b"unpickled-a") + len("unpickled-")
    sql("UPDATE chunks SET data = %s WHERE hash = %s", data[:at] + b"`" + data[at + 1:], last)

    with pytest.raises(PayloadError) as caught:
        run("altered-chunk").step_result("big")
    message = str(caught.value)
    assert message.startswith("result of step 'big' of run 'altered-chunk': payload ")
    assert f"chunk {last.hex()} does not match its manifest (altered); refused" in message
    with pytest.raises(PayloadError, match="altered"):  # replay refuses it too
        replay(lambda: len(step("big")(lambda: None)()), name="altered-chunk",
               run_id="altered-chunk", on_change="ignore")
    assert list(tmp_path.iterdir()) == []
    record("badinput", "a chunk of a large result altered in the database",
           outcome=f"PayloadError: {message}")


def test_an_altered_manifest_is_refused_and_never_unpickled(zart_env, sql, tmp_path):
    witness = tmp_path / "unpickled"
    checkpoint("altered-manifest", [CreatesDir(witness), noise()])
    digest = sql("SELECT result_hash FROM steps WHERE run_id = 'altered-manifest'")[0]["result_hash"]
    data = bytearray(sql("SELECT data FROM payloads WHERE hash = %s", digest)[0]["data"])
    data[-1] ^= 0x01  # the last chunk's compression flag
    sql("UPDATE payloads SET data = %s WHERE hash = %s", bytes(data), digest)

    with pytest.raises(PayloadError) as caught:
        run("altered-manifest").step_result("big")
    assert "signature does not match" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    record("badinput", "the manifest of a large result altered in the database",
           outcome=f"PayloadError: {caught.value}")


def test_a_missing_chunk_is_refused_before_anything_is_unpickled(zart_env, sql, tmp_path):
    witness = tmp_path / "unpickled"
    checkpoint("missing-chunk", [CreatesDir(witness), noise()])  # the witness comes first
    _, found = stored_manifest(sql, "missing-chunk")
    gone = found.streams[0].chunks[-1].hash
    sql("DELETE FROM chunks WHERE hash = %s", gone)

    with pytest.raises(PayloadError) as caught:
        run("missing-chunk").step_result("big")
    message = str(caught.value)
    assert f"1 of its 3 chunks are missing (first: {gone.hex()}); refused, not unpickled" in message
    assert list(tmp_path.iterdir()) == []
    record("badinput", "a chunk of a large result deleted from the database",
           outcome=f"PayloadError: {message}")


def store_manifest(sql, stored: bytes, chunk: Chunk) -> bytes:
    """A signed manifest of one chunk (as a writer holding the key could make), stored."""
    sql("INSERT INTO chunks (hash, data) VALUES (%s, %s)", chunk.hash, stored)
    data = manifest.seal([Stream(chunk.raw_size, (chunk,))])
    digest = codec.digest(data)
    sql("INSERT INTO payloads (hash, data, size) VALUES (%s, %s, %s)", digest, data,
        chunk.raw_size)
    return digest


def read(digest: bytes):
    with get_store().connection() as conn:
        return results.value(conn, None, digest, what="result of step 'bomb'")


def test_a_chunk_claiming_more_than_a_chunk_may_hold_is_refused_unread(zart_env, sql):
    claimed = MAX_CHUNK + 1
    stored = zstandard.ZstdCompressor().compress(bytes(claimed))  # 2 KiB of zstd
    digest = store_manifest(sql, stored, Chunk(manifest.chunk_hash(stored), claimed,
                                               len(stored), ZSTD))

    with pytest.raises(PayloadError) as caught:
        read(digest)
    assert (f"chunk 0 of stream 0 claims {claimed:,} bytes, more than a chunk may hold "
            f"({MAX_CHUNK:,}); refused, not decompressed") in str(caught.value)
    record("badinput", "a decompression bomb: a 2 KiB chunk claiming 64 MiB + 1",
           outcome=f"PayloadError: {caught.value}")


def test_a_chunk_decompressing_to_more_than_it_claims_is_refused(zart_env, sql):
    stored = zstandard.ZstdCompressor().compress(bytes(100 * MiB))  # 3 KiB inflating to 100 MiB
    digest = store_manifest(sql, stored, Chunk(manifest.chunk_hash(stored), MiB, len(stored),
                                               ZSTD))

    with pytest.raises(PayloadError) as caught:
        read(digest)
    assert "does not decompress to the 1,048,576 bytes its manifest says; refused" in \
        str(caught.value)
    record("badinput", "a decompression bomb: a chunk claiming 1 MiB, inflating to 100 MiB",
           outcome=f"PayloadError: {caught.value}")


class FailsToPickle:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


def test_a_result_failing_to_pickle_halfway_leaves_no_chunk_behind(zart_env, sql):
    state = {"bad": True}
    array = np.arange(5 * 1024 * 1024, dtype=np.float64)  # 40 MiB: chunks sent before the failure

    @step("halfway")
    def halfway():
        return [array, FailsToPickle()] if state["bad"] else [array]

    def body():
        return len(halfway())

    with pytest.raises(StepFailed) as caught:
        execute(body, name="halfway")
    message = str(caught.value)
    assert caught.value.reason == "not_picklable"
    assert message.startswith("step 'halfway': result[1]: cannot pickle")
    assert steps_of(sql, "halfway") == {"halfway": "failed"}
    assert sql("SELECT count(*) AS n FROM chunks")[0]["n"] == 0
    assert sql("SELECT count(*) AS n FROM payloads")[0]["n"] == 0
    record("badinput", "a large result that fails to pickle after 40 MiB",
           outcome=f"StepFailed: {message}; no chunk left behind")

    state["bad"] = False
    assert execute(body, name="halfway").value == 1
    assert sql("SELECT count(*) AS n FROM chunks")[0]["n"] == 10 + 1  # the array, the main stream


def test_a_result_over_the_configured_ceiling_is_refused_naming_step_and_size(zart_env, env,
                                                                               sql):
    env(ZART_MAX_RESULT_BYTES=8 * MiB)
    state = {"size": 9 * MiB}

    @step("before")
    def before():
        return "small"

    @step("huge")
    def huge():
        return noise(state["size"])

    def body():
        return before(), len(huge())

    with pytest.raises(StepFailed) as caught:
        execute(body, name="over-ceiling")
    message = str(caught.value)
    assert message == ("step 'huge': result pickles to 9.0 MiB, more than ZART_MAX_RESULT_BYTES "
                       "(8.0 MiB); return a smaller value (or its path in a file or an object "
                       "store), or raise the limit")
    assert steps_of(sql, "over-ceiling") == {"before": "completed", "huge": "failed"}
    assert sql("SELECT count(*) AS n FROM chunks")[0]["n"] == 0
    assert sql("SELECT count(*) AS n FROM payloads")[0]["n"] == 0
    record("badinput", "a 9 MiB result over ZART_MAX_RESULT_BYTES=8 MiB",
           outcome=f"StepFailed: {message}")

    state["size"] = 7 * MiB
    out = execute(body, name="over-ceiling")
    assert out.value == ("small", 7 * MiB) and out.report.replayed == ["before"]


@pytest.fixture
def small_disk(pg_server, zart_env, sql):
    """A 24 MiB tmpfs tablespace; ``small_disk(table)`` moves a table onto it,
    ``small_disk()`` moves it back (needs root and the embedded server)."""
    if os.geteuid() != 0 or pg_server.home is None:
        pytest.skip("needs root (to mount a tmpfs) and the embedded server")
    mount = Path(tempfile.mkdtemp(prefix="zart-small-disk-"))  # the server's user can reach it
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)]).returncode:
        mount.rmdir()
        pytest.skip("cannot mount a tmpfs here")
    space = f"small_disk_{os.getpid()}"
    moved = []

    def move(table: str | None = None) -> None:
        if table is None:
            for name in moved:
                sql(f"ALTER TABLE {name} SET TABLESPACE pg_default")
            moved.clear()
        else:
            sql(f"ALTER TABLE {table} SET TABLESPACE {space}")
            moved.append(table)

    try:
        os.chown(mount, os.stat(pg_server.home / "pgdata").st_uid, -1)
        sql(f"CREATE TABLESPACE {space} LOCATION '{mount}'")
        yield move
        move()
        sql(f"DROP TABLESPACE {space}")
    finally:
        subprocess.run(["umount", "-l", str(mount)])
        mount.rmdir()


def test_a_full_disk_under_a_large_result_names_the_step_and_the_size(small_disk, sql):
    small_disk("chunks")

    @step("before")
    def before():
        return "small"

    @step("huge")
    def huge():
        return noise(40 * MiB)

    def body():
        return before(), len(huge())

    with pytest.raises(StoreError) as caught:
        execute(body, name="disk-full")
    message = str(caught.value)
    assert message.startswith("step 'huge': the database's disk is full: cannot store its "
                              "40.0 MiB result (could not extend file"), message
    assert steps_of(sql, "disk-full") == {"before": "completed"}
    assert sql("SELECT count(*) AS n FROM chunks")[0]["n"] == 0
    record("badinput", "a 40 MiB result on a disk with 24 MiB free", outcome=f"StoreError: {message}")

    small_disk()  # space is freed: executing again stores it
    out = execute(body, name="disk-full")
    assert out.value == ("small", 40 * MiB) and out.report.replayed == ["before"]


def test_a_full_disk_under_whole_payloads_names_the_step_and_the_size(small_disk, sql):
    small_disk("payloads")

    @step("part-{i}")
    def part(i):
        return random.Random(i).randbytes(3 * MiB)  # stored whole, in payloads

    def body():
        return sum(len(part(i)) for i in range(10))

    with pytest.raises(StoreError) as caught:
        execute(body, name="disk-full-whole")
    message = str(caught.value)
    done = steps_of(sql, "disk-full-whole")
    failing = f"part-{len(done)}"
    assert message.startswith(f"run 'disk-full-whole': the database's disk is full: cannot "
                              f"store the 3.0 MiB result of step '{failing}'; free space"), message
    assert 4 <= len(done) < 8 and set(done.values()) == {"completed"}
    record("badinput", "3 MiB results, one after the other, on a disk with 24 MiB free",
           outcome=f"StoreError: {message}")

    small_disk()
    out = execute(body, name="disk-full-whole")
    assert out.value == 30 * MiB and len(out.report.replayed) == len(done)


def forty_mib(seed):
    return random.Random(seed).randbytes(40 * MiB)


def test_a_full_disk_under_a_child_s_result_fails_that_child_naming_it_and_the_size(
        small_disk, env, sql):
    env(ZART_WORKERS=1)
    small_disk("chunks")

    def fan():
        return wait([schedule(forty_mib, 1)])

    with pytest.raises(StepFailed) as caught:
        execute(fan, name="disk-full-child")
    assert caught.value.reason == "not_stored" and caught.value.step == "forty_mib-0"
    assert str(caught.value).startswith("child 'forty_mib-0': the database's disk is full: "
                                        "cannot store its 40.0 MiB result")
    assert sql("SELECT count(*) AS n FROM chunks")[0]["n"] == 0
    record("badinput", "a child's 40 MiB result on a disk with 24 MiB free",
           outcome=f"StepFailed: {caught.value}")

    small_disk()
    run("disk-full-child").retry_step("forty_mib-0")
    assert [len(v) for v in execute(fan, name="disk-full-child").value] == [40 * MiB]
