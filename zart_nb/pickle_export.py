"""A stored result written to a file without being unpickled (``zart-nb runs result --out``).

The file holds what a user opens without zart-nb: a ``bytes`` (or ``bytearray``) result as
its bytes, a ``str`` as UTF-8, anything else as a standard pickle with every buffer in
band. The stored pickle is streamed: each out-of-band buffer (``NEXT_BUFFER``) becomes a
``BYTEARRAY8`` carrying its bytes, frames are dropped (they are optional), every other
opcode is copied as it is. Memory stays at a chunk or two, whatever the result's size.
Loading the pickle needs the modules its objects come from (numpy, pandas...), and
cloudpickle when it holds functions or classes defined in a notebook.
"""

from __future__ import annotations

import pickle
import pickletools
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from . import payload_codec
from .errors import PayloadError

_COUNTS = {  # argument kinds carrying a byte count, and how the count is written
    pickletools.TAKEN_FROM_ARGUMENT1: struct.Struct("<B"),
    pickletools.TAKEN_FROM_ARGUMENT4: struct.Struct("<i"),
    pickletools.TAKEN_FROM_ARGUMENT4U: struct.Struct("<I"),
    pickletools.TAKEN_FROM_ARGUMENT8U: struct.Struct("<Q"),
}
_BYTES = {pickle.SHORT_BINBYTES, pickle.BINBYTES, pickle.BINBYTES8, pickle.BYTEARRAY8}
_TEXT = {pickle.SHORT_BINUNICODE, pickle.BINUNICODE, pickle.BINUNICODE8}
_PIECE = payload_codec.CHUNK


def export(data: bytes | memoryview, source: payload_codec.ChunkSource, out: BinaryIO, *,
           what: str = "payload") -> str:
    """Write the value stored in ``data`` to ``out`` (a seekable file); returns what the
    file holds: ``bytes``, ``str`` or ``pickle``."""
    kind = _as_data(*payload_codec.streams(data, source, what=what), out)
    if kind is not None:
        return kind
    out.seek(0)
    out.truncate()  # not one bytes or str after all (a tuple starting with one): a pickle
    _as_pickle(*payload_codec.streams(data, source, what=what), out, what)
    return "pickle"


Buffers = Iterator[tuple[int, Iterator[memoryview]]]


def _as_data(main: Any, buffers: Buffers, out: BinaryIO) -> str | None:
    """Copy the value's own bytes when the pickle is a single bytes or str, else None."""
    if _opcode(main) != pickle.PROTO:
        return None
    main.read(1)
    code = _opcode(main)
    if code in _BYTES or code in _TEXT:
        count = _COUNTS[_argument(code).n]
        _copy(main, out, count.unpack(main.read(count.size))[0])
        kind = "str" if code in _TEXT else "bytes"
    elif code == pickle.NEXT_BUFFER:  # a bytearray, pickled out of band
        for piece in next(buffers)[1]:
            out.write(piece)
        kind = "bytes"
    else:
        return None
    code = _opcode(main)
    while code in (pickle.MEMOIZE, pickle.READONLY_BUFFER):
        code = _opcode(main)
    return kind if code == pickle.STOP else None


def _as_pickle(main: Any, buffers: Buffers, out: BinaryIO, what: str) -> None:
    while True:
        code = main.read(1)
        if not code:
            raise PayloadError(f"{what}: the stored pickle ends early")
        if code == pickle.FRAME:
            main.read(8)
            continue
        if code == pickle.NEXT_BUFFER:
            size, pieces = next(buffers)
            out.write(pickle.BYTEARRAY8 + struct.pack("<Q", size))
            for piece in pieces:
                out.write(piece)
            continue
        out.write(code)
        argument = _argument(code)
        if argument is not None:
            count = _COUNTS.get(argument.n)
            if count is None:  # a fixed size, or up to a newline: small, read by pickletools
                taken = _Recorder(main)
                argument.reader(taken)
                out.write(b"".join(taken.parts))
            else:
                head = main.read(count.size)
                out.write(head)
                _copy(main, out, count.unpack(head)[0])
        if code == pickle.STOP:
            return


def _opcode(main: Any) -> bytes:
    """The next opcode, frames skipped."""
    code: bytes = main.read(1)
    while code == pickle.FRAME:
        main.read(8)
        code = main.read(1)
    return code


def _argument(code: bytes) -> Any:
    try:
        return pickletools.code2op[code.decode("latin-1")].arg  # type: ignore[attr-defined]
    except KeyError:
        raise PayloadError(f"unknown pickle opcode {code!r}; not a pickle") from None


def _copy(main: Any, out: BinaryIO, size: int) -> None:
    while size > 0:
        piece = main.read(min(size, _PIECE))
        if not piece:
            raise PayloadError("the stored pickle ends early")
        out.write(piece)
        size -= len(piece)


class _Recorder:
    """The main stream as pickletools' argument readers see it, keeping what they read."""

    def __init__(self, main: Any) -> None:
        self.main = main
        self.parts: list[bytes] = []

    def read(self, size: int) -> bytes:
        piece: bytes = self.main.read(size)
        self.parts.append(piece)
        return piece

    def readline(self) -> bytes:
        piece: bytes = self.main.readline()
        self.parts.append(piece)
        return piece
