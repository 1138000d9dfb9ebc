"""How each kind of value beyond the hot ones is encoded (see ``value_hash``).

Each encoder ``kind(walk, value)`` appends the value's tag and parts to the walk's
encoding, through the walk's own primitives (``Encoding``): library scalars (datetimes
with their zone, Decimal, UUID, paths, enums, ranges, slices, regexes, partials),
code (through the hasher's hooks), subclasses of the builtin containers, instances of
classes written in Python (type, ``__dict__``, slots) and, for the rest, what
``copyreg`` or ``__reduce_ex__(5)`` gives, hashed part by part.
"""

from __future__ import annotations

import copyreg
import datetime
import decimal
import enum
import functools
import hashlib
import re
import struct
import types
import uuid
import weakref
from collections import OrderedDict
from pathlib import PurePath
from typing import Any, Protocol

DIGEST_SIZE = 16
HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class created at run time
IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: set on C types, never on Python classes
_POINTER = struct.calcsize("P")
_SORTABLE = (str, int, bytes)  # exact types whose order is total and process-independent
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ABSENT = object()


def blake(data: Any = b"") -> hashlib.blake2b:
    """The hash of the scheme: blake2b with 16-byte digests."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE)


def type_path(t: type) -> str:
    """``module.qualname`` of a class: how it is named in every process."""
    return f"{t.__module__}.{t.__qualname__}"


class Unhashable(Exception):
    """Raised through the walk (strict mode): ``value`` has no canonical form."""

    def __init__(self, value: Any, cause: BaseException) -> None:
        super().__init__()
        self.value = value
        self.cause = cause
        self.segments: list[str] = []  # the path to it, innermost first


class Encoding(Protocol):
    """What an encoder uses of ``value_hash.Walk``."""

    parts: list[bytes]
    path: dict[int, int]
    buffers: dict[int, tuple[Any, bytes]]
    hasher: Any

    def feed(self, v: Any) -> None: ...
    def text(self, s: str) -> None: ...
    def items(self, v: Any) -> None: ...
    def sequence(self, tag: bytes, v: Any) -> None: ...
    def mapping(self, tag: bytes, v: dict[Any, Any]) -> None: ...
    def unordered(self, tag: bytes, v: Any) -> None: ...
    def buffer(self, tag: bytes, data: Any) -> None: ...
    def back_reference(self, key: int) -> bool: ...
    def unhashable(self, v: Any, cause: BaseException) -> None: ...


def one_sortable_type(items: Any) -> bool:
    """True when every item is of one of str/int/bytes: sorted order is canonical."""
    kinds = {type(item) for item in items}
    return len(kinds) == 1 and kinds.pop() in _SORTABLE


def scalar_repr(walk: Encoding, v: complex) -> None:
    walk.parts.append(b"c%a;" % v)


def raw_bytes(walk: Encoding, v: bytes) -> None:
    walk.buffer(b"b", v)


def raw_bytearray(walk: Encoding, v: bytearray) -> None:
    walk.buffer(b"B", v)


def raw_memoryview(walk: Encoding, v: memoryview) -> None:
    walk.parts.append(b"v")
    walk.text(f"{v.format}{v.shape}")
    walk.buffer(b"", v if v.c_contiguous else v.tobytes())


def pickle_buffer(walk: Encoding, v: Any) -> None:
    walk.buffer(b"pb", v.raw())


def a_set(walk: Encoding, v: Any) -> None:
    walk.unordered(b"e", v)


def a_frozenset(walk: Encoding, v: Any) -> None:
    walk.unordered(b"z", v)


def singleton(walk: Encoding, v: Any) -> None:
    walk.parts.append(b"." if v is Ellipsis else b"!")


def a_datetime(walk: Encoding, v: datetime.datetime) -> None:
    walk.parts.append(b"Y%d;" % v.fold)
    walk.text(v.isoformat())
    tzinfo(walk, v.tzinfo)


def a_time(walk: Encoding, v: datetime.time) -> None:
    walk.parts.append(b"H%d;" % v.fold)
    walk.text(v.isoformat())
    tzinfo(walk, v.tzinfo)


def tzinfo(walk: Encoding, tz: Any) -> None:
    if tz is None:
        walk.parts.append(b"-")
        return
    described = str(tz)  # ZoneInfo: its key; timezone: UTC+02:00; pytz: its zone
    if _ADDRESS.search(described):
        described = ""  # a default repr: the type alone
    walk.text(type_path(type(tz)))
    walk.text(described)


def a_date(walk: Encoding, v: datetime.date) -> None:
    walk.parts.append(b"a")
    walk.text(v.isoformat())


def a_timedelta(walk: Encoding, v: datetime.timedelta) -> None:
    walk.parts.append(b"q%d,%d,%d;" % (v.days, v.seconds, v.microseconds))


def a_decimal(walk: Encoding, v: decimal.Decimal) -> None:
    walk.parts.append(b"x")
    walk.text(str(v))


def a_uuid(walk: Encoding, v: uuid.UUID) -> None:
    walk.parts.append(b"u" + v.bytes)


def a_range(walk: Encoding, v: range) -> None:
    walk.parts.append(b"r%d,%d,%d;" % (v.start, v.stop, v.step))


def a_slice(walk: Encoding, v: slice) -> None:
    walk.parts.append(b"/")
    walk.items((v.start, v.stop, v.step))


def a_pattern(walk: Encoding, v: re.Pattern[Any]) -> None:
    walk.parts.append(b"X%d;" % v.flags)
    walk.feed(v.pattern)


def a_partial(walk: Encoding, v: functools.partial[Any]) -> None:
    walk.parts.append(b"P")
    walk.feed(v.func)
    walk.feed(v.args)
    walk.feed(v.keywords)
    walk.feed(getattr(v, "__dict__", None) or None)


def a_module(walk: Encoding, v: types.ModuleType) -> None:
    walk.parts.append(b"M")
    walk.text(v.__name__)


def a_function(walk: Encoding, v: types.FunctionType) -> None:
    walk.parts.append(b"y")
    text_bytes(walk, walk.hasher.function(v))


def a_class(walk: Encoding, v: type) -> None:
    walk.parts.append(b"C")
    text_bytes(walk, walk.hasher.cls(v))


def a_code(walk: Encoding, v: types.CodeType) -> None:
    walk.parts.append(b"k")
    text_bytes(walk, walk.hasher.code(v))


def text_bytes(walk: Encoding, b: bytes) -> None:
    """Length-prefixed bytes: what a code hook gave."""
    walk.parts.append(b"%d:" % len(b))
    walk.parts.append(b)


def a_builtin(walk: Encoding, v: Any) -> None:
    owner = getattr(v, "__self__", None)
    if owner is None or isinstance(owner, types.ModuleType):
        walk.parts.append(b"G")
        walk.text(f"{getattr(v, '__module__', None) or getattr(owner, '__name__', '')}."
                  f"{v.__qualname__}")
    else:  # a method of an object: the object and the method's name
        walk.parts.append(b"W")
        walk.feed(owner)
        walk.text(v.__name__)


def a_method(walk: Encoding, v: types.MethodType) -> None:
    walk.parts.append(b"m")
    walk.feed(v.__self__)
    walk.feed(v.__func__)


def an_enum(walk: Encoding, v: enum.Enum) -> None:
    walk.parts.append(b"n")
    walk.text(type_path(type(v)))
    walk.feed(v.name)
    walk.feed(v.value)


def a_path(walk: Encoding, v: PurePath) -> None:
    walk.parts.append(b"p")
    walk.text(type_path(type(v)))
    walk.text(str(v))


def seq_subclass(walk: Encoding, v: Any) -> None:
    """A list or tuple subclass (a namedtuple): its type and its items."""
    walk.parts.append(b"L")
    walk.text(type_path(type(v)))
    walk.sequence(b"l" if isinstance(v, list) else b"t", v)
    instance_dict(walk, v)


def map_subclass(walk: Encoding, v: dict[Any, Any]) -> None:
    """A dict subclass: unordered (Counter, defaultdict with its factory), but an
    OrderedDict's order is part of its value."""
    walk.parts.append(b"K")
    walk.text(type_path(type(v)))
    if isinstance(v, OrderedDict):
        walk.sequence(b"l", list(v.items()))
    else:
        walk.mapping(b"d", v)
    walk.feed(getattr(v, "default_factory", None))
    instance_dict(walk, v)


def set_subclass(walk: Encoding, v: Any) -> None:
    walk.parts.append(b"V")
    walk.text(type_path(type(v)))
    walk.unordered(b"e", v)
    instance_dict(walk, v)


def instance_dict(walk: Encoding, v: Any) -> None:
    state = getattr(v, "__dict__", None)
    walk.feed(state or None)


def plain_object(walk: Encoding, v: Any) -> None:
    """An instance of a class written in Python: its type, ``__dict__`` and slots."""
    wrapped = wrapped_function(v)
    if wrapped is not None:
        return wrapper(walk, v, wrapped)
    key = id(v)
    if walk.back_reference(key):
        return
    walk.path[key] = len(walk.path)
    t = type(v)
    walk.parts.append(b"o")
    walk.text(type_path(t))
    name = "__dict__"
    try:
        state = getattr(v, "__dict__", None)
        if state is not None:
            walk.mapping(b"d", state)
        for name in slot_names(t):
            value = getattr(v, name, _ABSENT)
            if value is _ABSENT:
                walk.parts.append(b"_")
            else:
                walk.feed(value)
    except Unhashable as exc:
        if name == "__dict__" and exc.segments and exc.segments[-1].startswith("["):
            exc.segments[-1] = "." + exc.segments[-1][2:-2]  # .attr, not ['attr']
        else:
            exc.segments.append(f".{name}")
        raise
    del walk.path[key]


def wrapper(walk: Encoding, v: Any, wrapped: Any) -> None:
    """A callable wrapping a function (``functools.wraps``, a step): its type and
    what it wraps; its other attributes are the wrapper's caches."""
    walk.parts.append(b"w")
    walk.text(type_path(type(v)))
    walk.feed(wrapped)


def reduced(walk: Encoding, v: Any) -> None:
    """Anything else: what pickle would store, hashed part by part."""
    wrapped = wrapped_function(v)
    if wrapped is not None:
        return wrapper(walk, v, wrapped)
    key = id(v)
    if walk.back_reference(key):
        return
    reducer = copyreg.dispatch_table.get(type(v))
    try:
        rv = reducer(v) if reducer is not None else v.__reduce_ex__(5)
    except Exception as exc:  # a reducer refuses with any kind of error
        return walk.unhashable(v, exc)
    if isinstance(rv, str):  # a global: named by its module and name
        walk.parts.append(b"g")
        walk.text(f"{getattr(v, '__module__', None) or type(v).__module__}.{rv}")
        return
    walk.path[key] = len(walk.path)
    walk.parts.append(b"@%d;" % len(rv))
    try:
        global_ref(walk, rv[0])
        walk.feed(rv[1])
        for i, part in enumerate(rv[2:5], start=2):
            walk.feed(list(part) if i > 2 and part is not None else part)
    except Unhashable as exc:
        exc.segments.append(f"<{type(v).__qualname__} state>")
        raise
    del walk.path[key]


def global_ref(walk: Encoding, c: Any) -> None:
    """The callable of a reduce value: a class or function named by where it lives."""
    qualname = getattr(c, "__qualname__", None)
    module = getattr(c, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        walk.parts.append(b"g")
        walk.text(f"{module}.{qualname}")
    else:
        walk.feed(c)


def wrapped_function(v: Any) -> Any:
    """The function a callable object wraps (``__wrapped__``), or None."""
    if not callable(v):
        return None
    try:
        wrapped = v.__dict__.get("__wrapped__")
    except AttributeError:
        return None
    return wrapped if callable(wrapped) else None


_slot_cache: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


def slot_names(t: type) -> tuple[str, ...]:
    """Attribute names of ``t``'s ``__slots__`` along its MRO (mangled as Python does)."""
    names = _slot_cache.get(t)
    if names is None:
        found = []
        for klass in t.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot in ("__dict__", "__weakref__"):
                    continue
                if slot.startswith("__") and not slot.endswith("__"):
                    slot = f"_{klass.__name__.lstrip('_')}{slot}"
                found.append(slot)
        names = _slot_cache[t] = tuple(sorted(set(found)))
    return names


def written_in_python(t: type) -> bool:
    """Instances keep all their state in ``__dict__`` and slots, and pickle by default.

    Classes written in Python are heap types that stay mutable, and their instances
    are no larger than an object with its slots, dict and weakref pointers; a C type
    (a lock, a socket's base) fails one of these, and goes through its reduce, which
    refuses what has hidden state."""
    return (all(k.__flags__ & HEAP_TYPE and not k.__flags__ & IMMUTABLE_TYPE
                for k in t.__mro__[:-1])
            and t.__basicsize__ <= object.__basicsize__ + _POINTER * (len(slot_names(t)) + 2)
            and _same(t.__reduce_ex__, object.__reduce_ex__) and _same(t.__reduce__, object.__reduce__)
            and getattr(t, "__getstate__", None) is getattr(object, "__getstate__", None))


def _same(a: object, b: object) -> bool:
    """``a is b``, for attributes the type checker types differently on a class and on object."""
    return a is b
