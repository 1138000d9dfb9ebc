"""Results of any size: pickled as a stream into chunks, read back as a stream.

``dump(value, sink)`` pickles with protocol 5 into a file that keeps the pickle in memory
while it is small: a value that pickles to at most ``SPILL`` bytes becomes a format-1
envelope, as ``codec.encode`` makes them (stored inline or whole: replay reads it as it
always did). Past ``SPILL`` the pickle spills into chunks of ``CHUNK`` bytes: the main stream
as it is written, and each out-of-band buffer (numpy, pandas and pyarrow hand theirs to
pickle as ``PickleBuffer``) straight from its memory, sliced, never copied. Each chunk is
compressed with zstd when that saves at least an eighth of it, addressed by the SHA-256
of what is stored, and sent to the sink only when the store does not have it yet (one
look-up per batch). The result is a signed manifest (``zart_nb.manifest``) naming the
chunks in order.

``load(data, source)`` checks the manifest's signature, that every chunk exists, then
unpickles from a file that fetches the main stream chunk after chunk; each out-of-band
buffer is read into its final memory (a bytearray of its size, filled chunk by chunk)
when the unpickler asks for it. Every chunk's hash is checked against the manifest
before it is decompressed or handed to the unpickler.

Neither side holds the whole pickle plus a copy of it: memory beyond the value itself
is a few chunks.
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import cloudpickle
import zstandard

from . import codec, manifest
from .errors import PayloadError
from .manifest import RAW, ZSTD, Chunk, Stream

CHUNK = 4 << 20  # bytes of pickle per chunk (docs/performance.md: why 4 MiB)
SPILL = CHUNK  # a pickle up to this size is stored whole, as a format-1 envelope
LEVEL = 1  # zstd level (docs/performance.md: why 1)
MIN_SAVING = 8  # keep a compressed chunk when it saves at least 1/8 of its size
PROBE = 64 << 10  # a chunk whose first PROBE bytes do not compress is stored raw untried
MIN_OUT_OF_BAND = 64 << 10  # smaller buffers stay in the main stream
BATCH = 8  # chunks per look-up of what the store already has
_PROTOCOL = 5


class ChunkSink(Protocol):
    """Where ``dump`` sends the chunks of a large payload (a transaction of the store)."""

    def known(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Which of ``hashes`` the store has already, kept for this payload."""

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        """Store one chunk under its hash."""


class ChunkSource(Protocol):
    """Where ``load`` reads chunks from."""

    def missing(self, hashes: Sequence[bytes]) -> list[bytes]:
        """The ones of ``hashes`` the store does not have."""

    def fetch(self, digest: bytes) -> bytes | None:
        """The stored bytes of one chunk, None when it is gone."""


class SinkFailed(Exception):
    """The sink raised while a large payload was written (``__cause__``); ``size`` is the
    whole pickle's size, counted to the end. Only the store sees it: it turns it into an
    error naming the owner and the size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass(frozen=True)
class Dumped:
    data: bytes  # a format-1 envelope, or the signed manifest of the chunks sent
    size: int  # bytes of the pickle (main stream and out-of-band buffers)
    chunks: tuple[bytes, ...] = ()  # the chunks the manifest names; empty for an envelope

    @property
    def is_manifest(self) -> bool:
        return bool(self.chunks)


def dump(value: Any, sink: ChunkSink, *, what: str = "value", owner: str = "",
         limit: int | None = None) -> Dumped:
    """Pickle ``value``: whole when small, else in chunks sent to ``sink``.

    Raises PayloadError naming ``owner`` when the value does not pickle (the part at fault
    named as by ``codec.encode``) or pickles to more than ``limit`` bytes (its size counted
    to the end, nothing more sent); SinkFailed when the sink failed.
    """
    out = _SpillingFile(sink, limit)
    pickler = _Pickler(out, protocol=_PROTOCOL, buffer_callback=out.buffer)
    try:
        pickler.dump(value)
    except Exception as exc:  # pickling raises many kinds of errors
        reason = codec.unpicklable_reason(value, what, exc)
        raise PayloadError(f"{owner}: {reason}" if owner else reason) from None
    dumped = out.finish(what, owner)
    if dumped is None:  # small after all, but with buffers held out of band: in band now
        in_band = io.BytesIO()
        _Pickler(in_band, protocol=_PROTOCOL).dump(value)
        body = in_band.getvalue()
        dumped = Dumped(codec.seal(body), len(body))
    return dumped


def dump_pickle(body: bytes, sink: ChunkSink, *, what: str = "value", owner: str = "",
                limit: int | None = None) -> Dumped:
    """A pickle made elsewhere (a child run on an executor), stored as ``dump`` stores a
    value's: whole when small, else its bytes cut into chunks sent to ``sink``."""
    out = _SpillingFile(sink, limit)
    out.write(body)
    dumped = out.finish(what, owner)
    assert dumped is not None  # no buffer was held out of band
    return dumped


def load(data: bytes | memoryview, source: ChunkSource, *, what: str = "payload") -> Any:
    """The value in ``data`` (an envelope, or a manifest whose chunks come from ``source``);
    nothing is unpickled that was not verified."""
    if codec.envelope_format(data) != codec.MANIFEST_FORMAT:
        return codec.decode(data, what=what)
    found = _checked_manifest(data, source, what)
    chunks = _Chunks(source, what, prefetch=True)
    main = _StreamReader(found.streams[0], chunks)
    buffers = _buffers(found.streams[1:], chunks)
    try:
        return pickle.Unpickler(main, buffers=buffers).load()
    finally:
        chunks.close()


def streams(data: bytes | memoryview, source: ChunkSource, *,
            what: str = "payload") -> tuple[Any, Iterator[tuple[int, Iterator[memoryview]]]]:
    """The verified parts of a stored pickle, to read it without unpickling it: its main
    stream as a file, and its out-of-band buffers in order, each as (size, its pieces)."""
    if codec.envelope_format(data) != codec.MANIFEST_FORMAT:
        return io.BytesIO(codec.open_envelope(data, what=what)), iter(())
    found = _checked_manifest(data, source, what)
    chunks = _Chunks(source, what)
    buffers = ((s.raw_size, (chunks.raw(c) for c in s.chunks)) for s in found.streams[1:])
    return _StreamReader(found.streams[0], chunks), buffers


def _checked_manifest(data: bytes | memoryview, source: ChunkSource, what: str) -> manifest.Manifest:
    """The manifest in ``data``, signed, well formed, and every chunk it names there."""
    found = manifest.open_manifest(data, what=what)
    hashes = found.hashes()
    absent = source.missing(hashes)
    if absent:
        raise PayloadError(f"{what}: {len(absent)} of its {len(hashes)} chunks are missing "
                           f"(first: {absent[0].hex()}); refused, not unpickled")
    return found


# -- writing -----------------------------------------------------------------------------
class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    """cloudpickle, with numpy's datetime64 and timedelta64 arrays out of band too.

    numpy pickles those in band, as a copy of their bytes (their dtype carries a unit), so
    a frame's timestamps would cost a copy on each side and ride in the main stream. They
    are pickled as their int64 view instead, which numpy sends out of band, and viewed back
    as their dtype when loaded (``numpy.ndarray.view``: nothing of zart-nb in the pickle).
    """

    def reducer_override(self, obj: Any) -> Any:
        numpy = sys.modules.get("numpy")  # a value holding an array has numpy imported
        if numpy is not None and type(obj) is numpy.ndarray and obj.dtype.kind in "mM":
            return numpy.ndarray.view, (obj.view(numpy.int64), obj.dtype)
        return super().reducer_override(obj)


class _Packer:
    """The stored form of a chunk: zstd when it pays, else the raw bytes (not copied)."""

    def __init__(self) -> None:
        self._zstd: zstandard.ZstdCompressor | None = None  # made by the first chunk

    def pack(self, raw: memoryview) -> tuple[Chunk, bytes | memoryview]:
        if self._zstd is None:
            self._zstd = zstandard.ZstdCompressor(level=LEVEL)
        size = raw.nbytes
        stored: bytes | memoryview = raw
        compression = RAW
        probe_pays = size < 2 * PROBE or _pays(len(self._zstd.compress(raw[:PROBE])), PROBE)
        if probe_pays:
            packed = self._zstd.compress(raw)
            if _pays(len(packed), size):
                stored, compression = packed, ZSTD
        return Chunk(manifest.chunk_hash(stored), size, len(stored), compression), stored


def _pays(packed: int, size: int) -> bool:
    return packed <= size - size // MIN_SAVING


class _Uploader:
    """Sends chunks to the sink in batches: one look-up per batch, new chunks only, each
    chunk of the payload once."""

    def __init__(self, sink: ChunkSink) -> None:
        self.sink = sink
        self.packer = _Packer()
        self.pending: dict[bytes, bytes | memoryview] = {}
        self.sent: set[bytes] = set()
        self.named: dict[bytes, None] = {}  # every chunk of the manifest, in order

    def add(self, raw: memoryview) -> Chunk:
        chunk, stored = self.packer.pack(raw)
        self.named[chunk.hash] = None
        if chunk.hash not in self.sent and chunk.hash not in self.pending:
            self.pending[chunk.hash] = stored
            if len(self.pending) >= BATCH:
                self.flush()
        return chunk

    def flush(self) -> None:
        if not self.pending:
            return
        known = self.sink.known(list(self.pending))
        for digest, stored in self.pending.items():
            if digest not in known:
                self.sink.put(digest, stored)
            self.sent.add(digest)
        self.pending = {}


class _StreamCutter:
    """The main stream cut into chunks as the pickler writes it."""

    def __init__(self, uploader: _Uploader) -> None:
        self.uploader = uploader
        self.buf = bytearray()
        self.chunks: list[Chunk] = []
        self.size = 0

    def write(self, view: memoryview) -> None:
        self.size += view.nbytes
        if self.buf:
            room = CHUNK - len(self.buf)
            self.buf += view[:room]
            view = view[room:]
            if len(self.buf) < CHUNK:
                return
            self._emit(memoryview(self.buf))
            self.buf = bytearray()  # the full one is now the chunk's: not reused
        while view.nbytes >= CHUNK:
            self._emit(view[:CHUNK])  # straight from the pickler's own bytes object
            view = view[CHUNK:]
        if view.nbytes:
            self.buf += view

    def close(self) -> Stream:
        if self.buf:
            self._emit(memoryview(self.buf))
            self.buf = bytearray()
        return Stream(self.size, tuple(self.chunks))

    def _emit(self, view: memoryview) -> None:
        self.chunks.append(self.uploader.add(view))


class _SpillingFile:
    """The pickler's file: in memory while small, then chunks, then (over the limit or
    once the sink failed) only counting, so that the error can say the whole size."""

    SMALL, LARGE, COUNTING = range(3)

    def __init__(self, sink: ChunkSink, limit: int | None) -> None:
        self.mode = self.SMALL
        self.limit = limit
        self.size = 0
        self.pieces: list[bytes | memoryview] = []
        self.held: list[memoryview] = []  # out-of-band buffers met while small: not copied
        self.uploader = _Uploader(sink)  # used from the spill on (small pickles: never)
        self.main = _StreamCutter(self.uploader)
        self.buffers: list[Stream] = []
        self.streams: list[Stream] = []  # main stream first, once closed
        self.failure: BaseException | None = None

    def write(self, data: Any) -> None:
        view = _bytes_view(data)
        self.size += view.nbytes
        if self.mode == self.SMALL:
            self.pieces.append(data if isinstance(data, bytes) else view)
            if self._over_limit() or self.size <= SPILL:
                return
            self._spill()
        elif self.mode == self.LARGE and not self._over_limit():
            self._guard(self.main.write, view)

    def buffer(self, buf: pickle.PickleBuffer) -> bool:
        """buffer_callback: True keeps ``buf`` in the main stream (in-band); False sends it
        out of band: held (small mode), to chunks straight from its memory, or counted."""
        raw = buf.raw()
        if self.mode != self.COUNTING and raw.nbytes < MIN_OUT_OF_BAND:
            return True
        self.size += raw.nbytes
        if self.mode == self.COUNTING or self._over_limit():
            return False
        if self.mode == self.SMALL:
            self.held.append(raw)
            if self.size > SPILL:
                self._spill()
        else:
            self._guard(self._send_buffer, raw)
        return False

    def finish(self, what: str, owner: str) -> Dumped | None:
        """What was pickled; None for a small pickle whose buffers were held out of band
        (the caller pickles it again, in band)."""
        if self.limit is not None and self.size > self.limit:
            reason = (f"{what} pickles to {human_size(self.size)}, more than "
                      f"ZART_MAX_RESULT_BYTES ({human_size(self.limit)}); return a smaller "
                      "value (or its path in a file or an object store), or raise the limit")
            raise PayloadError(f"{owner}: {reason}" if owner else reason)
        if self.mode == self.SMALL:
            if self.held:
                return None
            first = self.pieces[0]
            body = first if len(self.pieces) == 1 and isinstance(first, bytes) else b"".join(self.pieces)
            return Dumped(codec.seal(body), self.size)
        if self.mode == self.LARGE:
            self._guard(self._close)
        if self.failure is not None:
            raise SinkFailed(self.size) from self.failure
        return Dumped(manifest.seal(self.streams), self.size, tuple(self.uploader.named))

    def _close(self) -> None:
        self.streams = [self.main.close(), *self.buffers]
        self.uploader.flush()

    def _spill(self) -> None:
        self.mode = self.LARGE
        pieces, self.pieces = self.pieces, []
        held, self.held = self.held, []
        for piece in pieces:
            self._guard(self.main.write, _bytes_view(piece))
        for raw in held:
            self._guard(self._send_buffer, raw)

    def _send_buffer(self, raw: memoryview) -> None:
        chunks = [self.uploader.add(raw[at:at + CHUNK]) for at in range(0, raw.nbytes, CHUNK)]
        self.buffers.append(Stream(raw.nbytes, tuple(chunks)))

    def _over_limit(self) -> bool:
        if self.limit is not None and self.size > self.limit:
            self.mode = self.COUNTING
            self.pieces, self.held = [], []
            return True
        return False

    def _guard(self, send: Callable[..., None], *args: Any) -> None:
        """Run a step that reaches the sink; a failure switches to counting."""
        if self.mode != self.LARGE:
            return
        try:
            send(*args)
        except Exception as exc:  # the database's errors, whatever they are
            self.failure = exc
            self.mode = self.COUNTING


def _bytes_view(data: Any) -> memoryview:
    if isinstance(data, pickle.PickleBuffer):
        return data.raw()
    view = memoryview(data)
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def human_size(size: int) -> str:
    """``1.6 GiB``, ``230.4 MiB``, ``512 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):,.1f} {unit}"
    return f"{size} bytes"


# -- reading -----------------------------------------------------------------------------
class _Chunks:
    """Verified chunks: fetched, checked against their manifest entry, decompressed.

    With ``prefetch``, fetching and checking happen on a thread of their own, one chunk
    ahead of the one being used: the server reads the next chunk while this process
    decompresses or copies the current one. Only that thread uses the source until
    ``close``.
    """

    AHEAD = 2  # chunks fetched ahead at most (their memory is the cost)

    def __init__(self, source: ChunkSource, what: str, *, prefetch: bool = False) -> None:
        self.source = source
        self.what = what
        self._zstd = zstandard.ZstdDecompressor()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="zart-chunks") if prefetch else None
        self._ahead: dict[bytes, Future[bytes]] = {}

    def close(self) -> None:
        """Wait for the fetching thread to be done with the source."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._ahead.clear()

    def raw(self, chunk: Chunk, following: Chunk | None = None) -> memoryview:
        stored = self._fetch(chunk, following)
        if chunk.compression == RAW:
            return memoryview(stored)
        target = bytearray(chunk.raw_size)
        self._inflate(chunk, stored, memoryview(target))
        return memoryview(target)

    def fill(self, chunk: Chunk, target: memoryview, following: Chunk | None = None) -> None:
        stored = self._fetch(chunk, following)
        if chunk.compression == RAW:
            target[:] = stored
        else:
            self._inflate(chunk, stored, target)

    def _fetch(self, chunk: Chunk, following: Chunk | None) -> bytes:
        """``chunk``'s verified stored bytes; ``following`` is fetched meanwhile."""
        if self._pool is None:
            return self._verified(chunk)
        future = self._ahead.pop(chunk.hash, None) or self._pool.submit(self._verified, chunk)
        if following is not None and following.hash not in self._ahead:
            if len(self._ahead) >= self.AHEAD:
                del self._ahead[next(iter(self._ahead))]  # a guess that was wrong
            self._ahead[following.hash] = self._pool.submit(self._verified, following)
        return future.result()

    def _verified(self, chunk: Chunk) -> bytes:
        stored = self.source.fetch(chunk.hash)
        if stored is None:
            raise PayloadError(f"{self.what}: chunk {chunk.hash.hex()} is missing; refused")
        if len(stored) != chunk.stored_size or manifest.chunk_hash(stored) != chunk.hash:
            raise PayloadError(f"{self.what}: chunk {chunk.hash.hex()} does not match its "
                               "manifest (altered); refused, not unpickled")
        return stored

    def _inflate(self, chunk: Chunk, stored: bytes, target: memoryview) -> None:
        """Decompress into ``target``, exactly its size: never allocates what the chunk
        claims, and refuses one that would decompress to more."""
        reader = self._zstd.stream_reader(stored)
        filled = 0
        while filled < chunk.raw_size:
            n = reader.readinto(target[filled:])
            if n == 0:
                break
            filled += n
        if filled != chunk.raw_size or reader.read(1):
            raise PayloadError(f"{self.what}: chunk {chunk.hash.hex()} does not decompress to "
                               f"the {chunk.raw_size:,} bytes its manifest says; refused")


class _StreamReader:
    """The main stream as the file the unpickler reads, one chunk in memory at a time."""

    def __init__(self, stream: Stream, chunks: _Chunks) -> None:
        self._stream = stream.chunks
        self._next = 0  # the index of the chunk to read next
        self._chunks = chunks
        self._data = memoryview(b"")
        self._at = 0

    def _advance(self) -> bool:
        if self._next == len(self._stream):
            return False
        chunk, self._next = self._stream[self._next], self._next + 1
        following = self._stream[self._next] if self._next < len(self._stream) else None
        self._data, self._at = self._chunks.raw(chunk, following), 0
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        filled = 0
        while filled < view.nbytes:
            if self._at == self._data.nbytes and not self._advance():
                break
            n = min(view.nbytes - filled, self._data.nbytes - self._at)
            view[filled:filled + n] = self._data[self._at:self._at + n]
            self._at += n
            filled += n
        return filled

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = [bytes(self._data[self._at:])]
            while self._advance():
                parts.append(bytes(self._data))
            self._at = self._data.nbytes
            return b"".join(parts)
        if self._data.nbytes - self._at >= size:
            start, self._at = self._at, self._at + size
            return bytes(self._data[start:self._at])
        out = bytearray(size)
        return bytes(out[:self.readinto(out)])

    def readline(self) -> bytes:
        """A line (protocol 0's text opcodes; never met in what dump writes)."""
        parts = []
        while self._at < self._data.nbytes or self._advance():
            rest = bytes(self._data[self._at:])
            end = rest.find(b"\n")
            if end >= 0:
                self._at += end + 1
                parts.append(rest[:end + 1])
                break
            parts.append(rest)
            self._at = self._data.nbytes
        return b"".join(parts)


def _buffers(streams: Sequence[Stream], chunks: _Chunks) -> Iterator[bytearray]:
    """Each out-of-band buffer in its final memory, read when the unpickler asks for it."""
    order = [c for s in streams for c in s.chunks]  # to know which chunk follows
    index = 0
    for stream in streams:
        target = bytearray(stream.raw_size)
        with memoryview(target) as view:
            at = 0
            for chunk in stream.chunks:
                index += 1
                following = order[index] if index < len(order) else None
                chunks.fill(chunk, view[at:at + chunk.raw_size], following)
                at += chunk.raw_size
        yield target
