"""Canonical hashes of values: the same value hashes alike in every process.

A hash is computed from a canonical encoding of the value, never from a pickle or a
repr, which follow the process: a set's order follows PYTHONHASHSEED, a dict's its
insertions, a default repr holds a memory address. The encoding:

- every value starts with a tag naming its kind and every variable-length part is
  length-prefixed, so that two different values never encode alike;
- ``None``, bool, int, float (by ``repr``: ``-0.0`` and ``0.0`` differ, every NaN is one
  NaN), complex, str, bytes, bytearray and memoryview each have their own tag, so that
  ``1``, ``1.0`` and ``True`` differ;
- tuples and lists (distinct tags) by their items in order; dicts, sets and frozensets
  whatever the order of their items: sorted by the items themselves when all are str,
  all int or all bytes, else by the digests of the items;
- datetimes and times with their time zone and fold; dates, timedeltas, Decimal, UUID,
  paths, Enum members, ranges, slices, compiled regexes, ``functools.partial``;
- numpy arrays by dtype, shape and a hash of their buffer; pandas objects column by
  column from their buffers (``array_hash``);
- instances of classes written in Python by their type's module and qualname and their
  ``__dict__`` and ``__slots__``; anything else through ``copyreg``'s table or
  ``__reduce_ex__(5)``, its parts hashed the same way;
- functions, classes and code objects through the ``function``/``cls``/``code`` hooks,
  which ``engine.fingerprint`` fills in with code fingerprints.

A value met twice is hashed twice, so that a value built from objects shared in memory
hashes like the same value built from copies (results loaded from the journal are
copies). A container met again on the path from the root (a cycle) is encoded as a
back-reference to its depth on that path.

What has no canonical form and does not reduce (a generator, a lock, a socket) is
refused with the path to it (``strict``), or described by its type alone (lenient):
see ``ValueHasher.digest``.

This module holds the walk over a value and the hot kinds (and a shortcut for the
plain arguments of a step call); ``value_kinds`` encodes the other kinds.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import functools
import pickle
import re
import types
import uuid
import weakref
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from ..errors import PayloadError
from . import value_kinds as kinds
from .array_hash import array_kind
from .value_kinds import Unhashable, blake, one_sortable_type, type_path

# A buffer larger than this is hashed on its own (no copy into the encoding) and only
# its digest joins the encoding; smaller ones are copied, which is cheaper than a hash.
_LARGE = 1 << 14
Encoder = Callable[[Any, Any], None]  # (walk, value): appends the value's encoding


class ValueHasher:
    """Hashes values canonically. Subclasses say how code is hashed (the hooks)."""

    def digest(self, value: Any, *, strict: bool = True, what: str = "value") -> bytes:
        """The 16-byte blake2b of ``value``'s canonical encoding.

        ``strict``: a part that has no canonical form and does not reduce raises a
        PayloadError naming its path from ``what`` (``arguments[0][1]: cannot pickle
        'generator'``). Otherwise it is hashed as its type alone: stable, blind to a
        change inside it.
        """
        parts: list[bytes] = []
        if _plain(value, parts, 0):
            return blake(b"".join(parts)).digest()
        walk = Walk(self, strict)
        try:
            walk.feed(value)
        except Unhashable as exc:
            name = exc.value.__class__.__qualname__
            module = exc.value.__class__.__module__
            if module != "builtins":
                name = f"{module}.{name}"
            path = what + "".join(reversed(exc.segments))
            reason = f"{path}: cannot pickle '{name}'"
            if not exc.segments:
                reason += f" ({exc.cause})"
            raise PayloadError(reason) from None
        except RecursionError:
            raise PayloadError(f"{what}: nested too deeply to be hashed") from None
        except Exception as exc:  # a library's own object that broke while being read
            raise PayloadError(f"{what}: cannot be hashed ({type(exc).__name__}: {exc})") from None
        return walk.finish()

    def call_digest(self, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                    what: str = "arguments") -> bytes:
        """``digest((args, kwargs))`` (strict), with the common call's shortcut taken
        first: a step's arguments are hashed on every replayed call."""
        parts = [b"t2;"]
        if _plain(args, parts, 1):
            if not kwargs:  # as _plain encodes an empty dict
                parts.append(b"d0;")
                return blake(b"".join(parts)).digest()
            if _plain(kwargs, parts, 1):
                return blake(b"".join(parts)).digest()
        return self.digest((args, kwargs), what=what)

    # -- hooks: how code is hashed (engine.fingerprint gives them code fingerprints) --

    def function(self, fn: types.FunctionType) -> bytes:
        return f"{fn.__module__}.{fn.__qualname__}".encode()

    def cls(self, cls: type) -> bytes:
        return type_path(cls).encode()

    def code(self, code: types.CodeType) -> bytes:
        raise TypeError("code objects are hashed by engine.fingerprint")


class Walk:
    """One hashing of one value: the encoding so far, the containers on the path."""

    __slots__ = ("buffers", "hasher", "parts", "path", "strict")

    def __init__(self, hasher: ValueHasher, strict: bool) -> None:
        self.hasher = hasher
        self.strict = strict
        self.parts: list[bytes] = []
        self.path: dict[int, int] = {}  # id of a container on the path -> its depth
        self.buffers: dict[int, tuple[Any, bytes]] = {}  # id of an array -> (the array, its buffer's digest)

    def finish(self) -> bytes:
        return blake(b"".join(self.parts)).digest()

    # -- the dispatch -------------------------------------------------------------

    def feed(self, v: Any) -> None:
        t = type(v)
        parts = self.parts
        if t is str:
            e = v.encode("utf-8", "surrogatepass")
            parts.append(b"s%d:" % len(e))
            parts.append(e)
        elif t is int:
            parts.append(b"i%x;" % v)  # hex: not bound by the limit on decimal digits
        elif v is None:
            parts.append(b"N")
        elif t is tuple:
            parts.append(b"t%d;" % len(v))
            self.items(v)
        elif t is float:
            parts.append(b"f%a;" % v)
        elif t is bool:
            parts.append(b"T" if v else b"F")
        elif t is dict:
            self.mapping(b"d", v)
        elif t is list:
            self.sequence(b"l", v)
        else:
            handler = _EXACT.get(t)
            if handler is None:
                handler = _kind(t)
            handler(self, v)

    def items(self, v: Any) -> None:
        index = 0
        try:
            for item in v:
                self.feed(item)
                index += 1
        except Unhashable as exc:
            exc.segments.append(f"[{index}]")
            raise

    def sequence(self, tag: bytes, v: Any) -> None:
        key = id(v)
        if self.back_reference(key):
            return
        self.path[key] = len(self.path)
        self.parts.append(tag + b"%d;" % len(v))
        self.items(v)
        del self.path[key]

    def back_reference(self, key: int) -> bool:
        depth = self.path.get(key)
        if depth is None:
            return False
        self.parts.append(b"R%d;" % (len(self.path) - depth))
        return True

    def mapping(self, tag: bytes, v: dict[Any, Any]) -> None:
        """A dict whatever its insertion order."""
        key = id(v)
        if self.back_reference(key):
            return
        self.path[key] = len(self.path)
        k = None
        try:
            if not v:
                self.parts.append(tag + b"0;")
            elif one_sortable_type(v):
                self.parts.append(tag + b"%d;" % len(v))
                for k in sorted(v):
                    self.feed(k)
                    self.feed(v[k])
            else:
                digests = []
                for k, value in v.items():
                    digests.append(self.sub(k, value))
                digests.sort()
                self.parts.append(tag.upper() + b"%d;" % len(v))
                self.parts.extend(digests)
        except Unhashable as exc:
            exc.segments.append(f"[{k!r}]")
            raise
        del self.path[key]

    def unordered(self, tag: bytes, v: Any) -> None:
        """A set or frozenset whatever its iteration order."""
        if not v:
            self.parts.append(tag + b"0;")
        elif one_sortable_type(v):
            self.parts.append(tag + b"%d;" % len(v))
            self.items(sorted(v))
        else:
            digests = sorted(self.sub(item) for item in v)
            self.parts.append(tag.upper() + b"%d;" % len(v))
            self.parts.extend(digests)

    def sub(self, *values: Any) -> bytes:
        """Digest of ``values`` encoded on their own (items sorted by their digests)."""
        outer = self.parts
        self.parts = []
        try:
            for value in values:
                self.feed(value)
            return blake(b"".join(self.parts)).digest()
        finally:
            self.parts = outer

    def text(self, s: str) -> None:
        """A length-prefixed string (the walk's way of writing names and texts)."""
        e = s.encode("utf-8", "surrogatepass")
        self.parts.append(b"%d:" % len(e))
        self.parts.append(e)

    def buffer(self, tag: bytes, data: Any) -> None:
        """Raw bytes (anything with the buffer protocol, C-contiguous)."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if len(view) > _LARGE:
            self.parts.append(tag + b"#" + blake(view).digest())
        else:
            self.parts.append(tag + b"%d:" % len(view))
            self.parts.append(bytes(view))

    def unhashable(self, v: Any, cause: BaseException) -> None:
        if self.strict:
            raise Unhashable(v, cause)
        self.parts.append(b"?")
        self.text(type_path(type(v)))


_EXACT: dict[type, Encoder] = {
    complex: kinds.scalar_repr,
    bytes: kinds.raw_bytes,
    bytearray: kinds.raw_bytearray,
    memoryview: kinds.raw_memoryview,
    set: kinds.a_set,
    frozenset: kinds.a_frozenset,
    type(Ellipsis): kinds.singleton,
    type(NotImplemented): kinds.singleton,
    datetime.datetime: kinds.a_datetime,
    datetime.date: kinds.a_date,
    datetime.time: kinds.a_time,
    datetime.timedelta: kinds.a_timedelta,
    decimal.Decimal: kinds.a_decimal,
    uuid.UUID: kinds.a_uuid,
    range: kinds.a_range,
    slice: kinds.a_slice,
    re.Pattern: kinds.a_pattern,
    functools.partial: kinds.a_partial,
    types.ModuleType: kinds.a_module,
    types.FunctionType: kinds.a_function,
    types.CodeType: kinds.a_code,
    types.BuiltinFunctionType: kinds.a_builtin,
    types.MethodType: kinds.a_method,
    type: kinds.a_class,
    pickle.PickleBuffer: kinds.pickle_buffer,
}
# encoders of the other types, found once per type
_kinds: weakref.WeakKeyDictionary[type, Callable[..., None]] = weakref.WeakKeyDictionary()


def _kind(t: type) -> Encoder:
    handler = _kinds.get(t)
    if handler is None:
        handler = _classify(t)
        with contextlib.suppress(TypeError):  # a type without weak references: classified each time
            _kinds[t] = handler
    return handler


def _classify(t: type) -> Encoder:
    if issubclass(t, type):
        return kinds.a_class
    if issubclass(t, enum.Enum):
        return kinds.an_enum
    if issubclass(t, PurePath):
        return kinds.a_path
    handler = array_kind(t)
    if handler is not None:
        return handler
    if issubclass(t, (list, tuple)):
        return kinds.seq_subclass
    if issubclass(t, dict):
        return kinds.map_subclass
    if issubclass(t, (set, frozenset)):
        return kinds.set_subclass
    if kinds.written_in_python(t):
        return kinds.plain_object
    return kinds.reduced


_PLAIN_DEPTH = 4


def _plain(v: Any, parts: list[bytes], depth: int) -> bool:
    """The fast path: encode ``v`` into ``parts`` as ``Walk`` would, when it is made of
    str, int, float, bool and None in tuples, lists, sets of str or int and str-keyed
    dicts (a step's usual arguments); False as soon as it is not (``parts`` is then to
    be thrown away). No cycle can go unnoticed: one would go deeper than ``_PLAIN_DEPTH``."""
    append = parts.append
    t = type(v)
    if t is tuple or t is list or t is set or t is frozenset:
        if depth > _PLAIN_DEPTH:
            return False
        if t is tuple or t is list:
            append((b"t%d;" if t is tuple else b"l%d;") % len(v))
        elif not v or one_sortable_type(v):  # a set of str or of int: sorted, as unordered() does
            append((b"e%d;" if t is set else b"z%d;") % len(v))
            v = sorted(v)
        else:
            return False
        for item in v:
            kind = type(item)
            if kind is int:
                append(b"i%x;" % item)
            elif kind is str:
                e = item.encode("utf-8", "surrogatepass")
                append(b"s%d:" % len(e))
                append(e)
            elif kind is dict and not item:
                append(b"d0;")
            elif not _plain(item, parts, depth + 1):
                return False
        return True
    if t is dict:
        if not v:
            append(b"d0;")
            return True
        if depth > _PLAIN_DEPTH or not one_sortable_type(v) or type(next(iter(v))) is not str:
            return False
        append(b"d%d;" % len(v))
        for k in sorted(v):
            e = k.encode("utf-8", "surrogatepass")
            append(b"s%d:" % len(e))
            append(e)
            if not _plain(v[k], parts, depth + 1):
                return False
        return True
    if t is str:
        e = v.encode("utf-8", "surrogatepass")
        append(b"s%d:" % len(e))
        append(e)
    elif t is int:
        append(b"i%x;" % v)
    elif v is None:
        append(b"N")
    elif t is float:
        append(b"f%a;" % v)
    elif t is bool:
        append(b"T" if v else b"F")
    else:
        return False
    return True


