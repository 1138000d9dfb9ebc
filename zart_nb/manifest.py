"""The manifest of a large payload: which chunks, in which order, hold its pickle.

A large result is stored as content-addressed chunks and one manifest listing them. The
manifest travels in the signed envelope of ``zart_nb.codec`` (format 2), so what it says
is as trustworthy as a small payload's pickle: a chunk is used only when the SHA-256 of
its stored bytes is the one the manifest names, and it is decompressed only when the
manifest says it holds at most ``MAX_CHUNK`` bytes (a small chunk claiming a huge size,
a decompression bomb, is refused before anything is allocated).

Body layout, little-endian::

    u32 number of streams
    per stream:  u64 raw size | u32 number of chunks
    per chunk:   32-byte SHA-256 of the stored bytes | u32 raw size | u32 stored size
                 | u8 compression (0 none, 1 zstd)

Stream 0 is the pickle's main stream; stream k > 0 is its k-th out-of-band buffer (pickle
protocol 5), in the order the unpickler asks for them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from . import codec
from .errors import PayloadError

RAW, ZSTD = 0, 1
MAX_CHUNK = 64 << 20  # the most a chunk may claim to hold; writers cut far smaller ones
HASH_SIZE = 32

_COUNT = struct.Struct("<I")
_STREAM = struct.Struct("<QI")
_CHUNK = struct.Struct(f"<{HASH_SIZE}sIIB")


def chunk_hash(stored: bytes | memoryview) -> bytes:
    """The address of a chunk: SHA-256 of its stored bytes (hardware-accelerated on x86
    and ARM, faster there than BLAKE2)."""
    return hashlib.sha256(stored).digest()


@dataclass(frozen=True)
class Chunk:
    hash: bytes
    raw_size: int
    stored_size: int
    compression: int


@dataclass(frozen=True)
class Stream:
    raw_size: int
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class Manifest:
    streams: tuple[Stream, ...]

    @property
    def size(self) -> int:
        """Bytes of the pickle: its main stream and every out-of-band buffer."""
        return sum(s.raw_size for s in self.streams)

    def hashes(self) -> list[bytes]:
        """The distinct chunks it names, in order of first use."""
        return list(dict.fromkeys(c.hash for s in self.streams for c in s.chunks))


def seal(streams: list[Stream]) -> bytes:
    """The signed manifest (a format-2 envelope) of ``streams``."""
    parts = [_COUNT.pack(len(streams))]
    for stream in streams:
        parts.append(_STREAM.pack(stream.raw_size, len(stream.chunks)))
        parts.extend(_CHUNK.pack(c.hash, c.raw_size, c.stored_size, c.compression)
                     for c in stream.chunks)
    return codec.seal(b"".join(parts), codec.MANIFEST_FORMAT)


def open_manifest(data: bytes | memoryview, *, what: str = "payload") -> Manifest:
    """The manifest in ``data`` once its signature checked out; refuses a malformed one,
    and one claiming chunks larger than ``MAX_CHUNK``."""
    body = codec.open_envelope(data, what=what, fmt=codec.MANIFEST_FORMAT)
    try:
        return _parse(body, what)
    except struct.error:
        raise PayloadError(f"{what}: truncated manifest; refused") from None


def _parse(body: bytes | memoryview, what: str) -> Manifest:
    (count,), at = _COUNT.unpack_from(body), _COUNT.size
    streams = []
    for s in range(count):
        raw_size, n = _STREAM.unpack_from(body, at)
        at += _STREAM.size
        chunks = []
        for i in range(n):
            chunk = Chunk(*_CHUNK.unpack_from(body, at))
            at += _CHUNK.size
            _check(chunk, f"{what}: chunk {i} of stream {s}")
            chunks.append(chunk)
        if sum(c.raw_size for c in chunks) != raw_size:
            raise PayloadError(f"{what}: stream {s} of the manifest does not add up; refused")
        streams.append(Stream(raw_size, tuple(chunks)))
    if at != len(body):
        raise PayloadError(f"{what}: manifest has trailing bytes; refused")
    return Manifest(tuple(streams))


def _check(chunk: Chunk, where: str) -> None:
    if chunk.raw_size > MAX_CHUNK:
        raise PayloadError(f"{where} claims {chunk.raw_size:,} bytes, more than a chunk may "
                           f"hold ({MAX_CHUNK:,}); refused, not decompressed")
    if chunk.compression == RAW:
        valid = chunk.stored_size == chunk.raw_size
    elif chunk.compression == ZSTD:
        valid = 0 < chunk.stored_size <= chunk.raw_size
    else:
        raise PayloadError(f"{where} uses compression {chunk.compression}, unknown to this "
                           "zart-nb; refused")
    if not valid:
        raise PayloadError(f"{where}: stored size {chunk.stored_size:,} does not fit raw size "
                           f"{chunk.raw_size:,}; refused")
