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
- numpy arrays by dtype, shape and a hash of their buffer (no copy when C-contiguous;
  object arrays item by item); pandas frames, series, indexes and arrays column by
  column, from their buffers and public parts (never from pandas' own hash functions,
  whose results pandas does not promise to keep). Neither library is imported here:
  they are recognised by their types' modules and taken from ``sys.modules``;
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
"""

from __future__ import annotations

import copyreg
import datetime
import decimal
import enum
import functools
import hashlib
import pickle
import re
import struct
import sys
import types
import uuid
import weakref
from collections import OrderedDict
from pathlib import PurePath
from typing import Any, Callable

from ..errors import PayloadError

DIGEST_SIZE = 16
# A buffer larger than this is hashed on its own (no copy into the encoding) and only
# its digest joins the encoding; smaller ones are copied, which is cheaper than a hash.
_LARGE = 1 << 14
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class created at run time
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: set on C types, never on Python classes
_POINTER = struct.calcsize("P")
_SORTABLE = (str, int, bytes)  # exact types whose order is total and process-independent
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _blake(data: Any = b"") -> Any:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE)


def type_path(t: type) -> str:
    """``module.qualname`` of a class: how it is named in every process."""
    return f"{t.__module__}.{t.__qualname__}"


class _Unhashable(Exception):
    """Raised through the walk (strict mode): ``value`` has no canonical form."""

    def __init__(self, value: Any, cause: BaseException) -> None:
        super().__init__()
        self.value = value
        self.cause = cause
        self.segments: list[str] = []  # the path to it, innermost first


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
            return _blake(b"".join(parts)).digest()
        walk = _Walk(self, strict)
        try:
            walk.feed(value)
        except _Unhashable as exc:
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

    def call_digest(self, args: tuple, kwargs: dict, *, what: str = "arguments") -> bytes:
        """``digest((args, kwargs))`` (strict), with the common call's shortcut taken
        first: a step's arguments are hashed on every replayed call."""
        parts = [b"t2;"]
        if _plain(args, parts, 1) and _plain(kwargs, parts, 1):
            return _blake(b"".join(parts)).digest()
        return self.digest((args, kwargs), what=what)

    # -- hooks: how code is hashed (engine.fingerprint gives them code fingerprints) --

    def function(self, fn: types.FunctionType) -> bytes:
        return f"{fn.__module__}.{fn.__qualname__}".encode()

    def cls(self, cls: type) -> bytes:
        return type_path(cls).encode()

    def code(self, code: types.CodeType) -> bytes:
        raise TypeError("code objects are hashed by engine.fingerprint")


class _Walk:
    """One hashing of one value: the encoding so far, the containers on the path."""

    __slots__ = ("hasher", "strict", "parts", "path", "buffers")

    def __init__(self, hasher: ValueHasher, strict: bool) -> None:
        self.hasher = hasher
        self.strict = strict
        self.parts: list = []
        self.path: dict[int, int] = {}  # id of a container on the path -> its depth
        self.buffers: dict[int, tuple] = {}  # id of an array -> (the array, its buffer's digest)

    def finish(self) -> bytes:
        return _blake(b"".join(self.parts)).digest()

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

    def items(self, v) -> None:
        i = 0
        try:
            for i, item in enumerate(v):
                self.feed(item)
        except _Unhashable as exc:
            exc.segments.append(f"[{i}]")
            raise

    def sequence(self, tag: bytes, v) -> None:
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

    def mapping(self, tag: bytes, v: dict) -> None:
        """A dict whatever its insertion order."""
        key = id(v)
        if self.back_reference(key):
            return
        self.path[key] = len(self.path)
        k = None
        try:
            if not v:
                self.parts.append(tag + b"0;")
            elif _one_sortable_type(v):
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
        except _Unhashable as exc:
            exc.segments.append(f"[{k!r}]")
            raise
        del self.path[key]

    def unordered(self, tag: bytes, v) -> None:
        """A set or frozenset whatever its iteration order."""
        if not v:
            self.parts.append(tag + b"0;")
        elif _one_sortable_type(v):
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
            return _blake(b"".join(self.parts)).digest()
        finally:
            self.parts = outer

    def text(self, s: str) -> None:
        e = s.encode("utf-8", "surrogatepass")
        self.parts.append(b"%d:" % len(e))
        self.parts.append(e)

    def buffer(self, tag: bytes, data) -> None:
        """Raw bytes (anything with the buffer protocol, C-contiguous)."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if len(view) > _LARGE:
            self.parts.append(tag + b"#" + _blake(view).digest())
        else:
            self.parts.append(tag + b"%d:" % len(view))
            self.parts.append(bytes(view))

    def unhashable(self, v: Any, cause: BaseException) -> None:
        if self.strict:
            raise _Unhashable(v, cause)
        self.parts.append(b"?")
        self.text(type_path(type(v)))

    # -- kinds beyond the hot ones ------------------------------------------------

    def scalar_repr(self, v) -> None:  # complex
        self.parts.append(b"c%a;" % v)

    def raw_bytes(self, v: bytes) -> None:
        self.buffer(b"b", v)

    def raw_bytearray(self, v: bytearray) -> None:
        self.buffer(b"B", v)

    def raw_memoryview(self, v: memoryview) -> None:
        self.parts.append(b"v")
        self.text(f"{v.format}{v.shape}")
        self.buffer(b"", v if v.c_contiguous else v.tobytes())

    def pickle_buffer(self, v) -> None:
        self.buffer(b"pb", v.raw())

    def a_set(self, v) -> None:
        self.unordered(b"e", v)

    def a_frozenset(self, v) -> None:
        self.unordered(b"z", v)

    def singleton(self, v) -> None:
        self.parts.append(b"." if v is Ellipsis else b"!")

    def a_datetime(self, v: datetime.datetime) -> None:
        self.parts.append(b"Y%d;" % v.fold)
        self.text(v.isoformat())
        self.tzinfo(v.tzinfo)

    def a_time(self, v: datetime.time) -> None:
        self.parts.append(b"H%d;" % v.fold)
        self.text(v.isoformat())
        self.tzinfo(v.tzinfo)

    def tzinfo(self, tz) -> None:
        if tz is None:
            self.parts.append(b"-")
            return
        described = str(tz)  # ZoneInfo: its key; timezone: UTC+02:00; pytz: its zone
        if _ADDRESS.search(described):
            described = ""  # a default repr: the type alone
        self.text(type_path(type(tz)))
        self.text(described)

    def a_date(self, v: datetime.date) -> None:
        self.parts.append(b"a")
        self.text(v.isoformat())

    def a_timedelta(self, v: datetime.timedelta) -> None:
        self.parts.append(b"q%d,%d,%d;" % (v.days, v.seconds, v.microseconds))

    def a_decimal(self, v: decimal.Decimal) -> None:
        self.parts.append(b"x")
        self.text(str(v))

    def a_uuid(self, v: uuid.UUID) -> None:
        self.parts.append(b"u" + v.bytes)

    def a_range(self, v: range) -> None:
        self.parts.append(b"r%d,%d,%d;" % (v.start, v.stop, v.step))

    def a_slice(self, v: slice) -> None:
        self.parts.append(b"/")
        self.items((v.start, v.stop, v.step))

    def a_pattern(self, v: re.Pattern) -> None:
        self.parts.append(b"X%d;" % v.flags)
        self.feed(v.pattern)

    def a_partial(self, v: functools.partial) -> None:
        self.parts.append(b"P")
        self.feed(v.func)
        self.feed(v.args)
        self.feed(v.keywords)
        self.feed(getattr(v, "__dict__", None) or None)

    def a_module(self, v: types.ModuleType) -> None:
        self.parts.append(b"M")
        self.text(v.__name__)

    def a_function(self, v: types.FunctionType) -> None:
        self.parts.append(b"y")
        self.text_bytes(self.hasher.function(v))

    def a_class(self, v: type) -> None:
        self.parts.append(b"C")
        self.text_bytes(self.hasher.cls(v))

    def a_code(self, v: types.CodeType) -> None:
        self.parts.append(b"k")
        self.text_bytes(self.hasher.code(v))

    def text_bytes(self, b: bytes) -> None:
        self.parts.append(b"%d:" % len(b))
        self.parts.append(b)

    def a_builtin(self, v) -> None:
        owner = getattr(v, "__self__", None)
        if owner is None or isinstance(owner, types.ModuleType):
            self.parts.append(b"G")
            self.text(f"{getattr(v, '__module__', None) or getattr(owner, '__name__', '')}."
                      f"{v.__qualname__}")
        else:  # a method of an object: the object and the method's name
            self.parts.append(b"W")
            self.feed(owner)
            self.text(v.__name__)

    def a_method(self, v: types.MethodType) -> None:
        self.parts.append(b"m")
        self.feed(v.__self__)
        self.feed(v.__func__)

    def an_enum(self, v: enum.Enum) -> None:
        self.parts.append(b"n")
        self.text(type_path(type(v)))
        self.feed(v.name)
        self.feed(v.value)

    def a_path(self, v: PurePath) -> None:
        self.parts.append(b"p")
        self.text(type_path(type(v)))
        self.text(str(v))

    def seq_subclass(self, v) -> None:
        """A list or tuple subclass (a namedtuple): its type and its items."""
        self.parts.append(b"L")
        self.text(type_path(type(v)))
        self.sequence(b"l" if isinstance(v, list) else b"t", v)
        self.instance_dict(v)

    def map_subclass(self, v: dict) -> None:
        """A dict subclass: unordered (Counter, defaultdict with its factory), but an
        OrderedDict's order is part of its value."""
        self.parts.append(b"K")
        self.text(type_path(type(v)))
        if isinstance(v, OrderedDict):
            self.sequence(b"l", list(v.items()))
        else:
            self.mapping(b"d", v)
        self.feed(getattr(v, "default_factory", None))
        self.instance_dict(v)

    def set_subclass(self, v) -> None:
        self.parts.append(b"V")
        self.text(type_path(type(v)))
        self.unordered(b"e", v)
        self.instance_dict(v)

    def instance_dict(self, v) -> None:
        state = getattr(v, "__dict__", None)
        self.feed(state or None)

    def plain_object(self, v) -> None:
        """An instance of a class written in Python: its type, ``__dict__`` and slots."""
        wrapped = _wrapped(v)
        if wrapped is not None:
            return self.wrapper(v, wrapped)
        key = id(v)
        if self.back_reference(key):
            return
        self.path[key] = len(self.path)
        t = type(v)
        self.parts.append(b"o")
        self.text(type_path(t))
        name = "__dict__"
        try:
            state = getattr(v, "__dict__", None)
            if state is not None:
                self.mapping(b"d", state)
            for name in _slots(t):
                value = getattr(v, name, _ABSENT)
                if value is _ABSENT:
                    self.parts.append(b"_")
                else:
                    self.feed(value)
        except _Unhashable as exc:
            if name == "__dict__" and exc.segments and exc.segments[-1].startswith("["):
                exc.segments[-1] = "." + exc.segments[-1][2:-2]  # .attr, not ['attr']
            else:
                exc.segments.append(f".{name}")
            raise
        del self.path[key]

    def wrapper(self, v, wrapped) -> None:
        """A callable wrapping a function (``functools.wraps``, a step): its type and
        what it wraps; its other attributes are the wrapper's caches."""
        self.parts.append(b"w")
        self.text(type_path(type(v)))
        self.feed(wrapped)

    def reduced(self, v) -> None:
        """Anything else: what pickle would store, hashed part by part."""
        wrapped = _wrapped(v)
        if wrapped is not None:
            return self.wrapper(v, wrapped)
        key = id(v)
        if self.back_reference(key):
            return
        reducer = copyreg.dispatch_table.get(type(v))
        try:
            rv = reducer(v) if reducer is not None else v.__reduce_ex__(5)
        except Exception as exc:  # a reducer refuses with any kind of error
            return self.unhashable(v, exc)
        if isinstance(rv, str):  # a global: named by its module and name
            self.parts.append(b"g")
            self.text(f"{getattr(v, '__module__', None) or type(v).__module__}.{rv}")
            return
        self.path[key] = len(self.path)
        self.parts.append(b"@%d;" % len(rv))
        try:
            self.global_ref(rv[0])
            self.feed(rv[1])
            for i, part in enumerate(rv[2:5], start=2):
                self.feed(list(part) if i > 2 and part is not None else part)
        except _Unhashable as exc:
            exc.segments.append(f"<{type(v).__qualname__} state>")
            raise
        del self.path[key]

    def global_ref(self, c) -> None:
        """The callable of a reduce value: a class or function named by where it lives."""
        qualname = getattr(c, "__qualname__", None)
        module = getattr(c, "__module__", None)
        if isinstance(qualname, str) and isinstance(module, str):
            self.parts.append(b"g")
            self.text(f"{module}.{qualname}")
        else:
            self.feed(c)

    # -- numpy and pandas, recognised without importing them ----------------------

    def ndarray(self, a) -> None:
        np = sys.modules["numpy"]
        self.parts.append(b"A")
        self.text(str(a.dtype.descr) if a.dtype.fields else a.dtype.str)
        self.parts.append(b"%a;" % (a.shape,))
        if a.dtype.hasobject:
            try:
                self.items(a.flat)
            except _Unhashable as exc:
                exc.segments.append(".flat")
                raise
            return
        known = self.buffers.get(id(a))
        if known is None:  # the array is kept with its digest: its id stays its own
            known = self.buffers[id(a)] = (a, _array_digest(np, a))
        self.parts.append(known[1])

    def numpy_scalar(self, v) -> None:
        self.parts.append(b"a")
        self.text(v.dtype.str)
        self.buffer(b"", v.tobytes())

    def pandas(self, v) -> None:
        pd = sys.modules["pandas"]
        if isinstance(v, pd.DataFrame):
            self.parts.append(b"PF%d;" % v.shape[1])
            self.pandas(v.columns)
            self.pandas(v.index)
            for i in range(v.shape[1]):
                self.pandas_values(v.iloc[:, i])
        elif isinstance(v, pd.Series):
            self.parts.append(b"PS")
            self.feed(v.name)
            self.pandas(v.index)
            self.pandas_values(v)
        elif isinstance(v, pd.RangeIndex):
            self.parts.append(b"PR%d,%d,%d;" % (v.start, v.stop, v.step))
            self.feed(v.name)
        elif isinstance(v, pd.MultiIndex):
            self.parts.append(b"PM")
            self.feed(list(v.names))
            for level in v.levels:
                self.pandas(level)
            for codes in v.codes:
                self.ndarray(codes)
        elif isinstance(v, pd.Index):
            self.parts.append(b"PI")
            self.text(type_path(type(v)))
            self.feed(v.name)
            self.pandas_values(v)
        else:  # an ExtensionArray
            self.pandas_array(v)

    def pandas_values(self, v) -> None:
        """The values of a Series or Index: numpy buffers as they are, else its array."""
        if isinstance(v.dtype, sys.modules["numpy"].dtype):
            self.pandas_ndarray(v.to_numpy())
        else:
            self.pandas_array(v.array)

    def pandas_ndarray(self, a) -> None:
        """An ndarray from pandas: a text column is hashed from its joined text (C
        loops), not string by string."""
        pd = sys.modules["pandas"]
        if a.dtype.hasobject and a.ndim == 1 and pd.api.types.infer_dtype(a, skipna=False) == "string":
            np = sys.modules["numpy"]
            h = _blake()
            h.update(np.fromiter(map(len, a), dtype=np.int64, count=len(a)))
            h.update("".join(a).encode("utf-8", "surrogatepass"))
            self.parts.append(b"Ps%d;" % len(a) + h.digest())
        else:
            self.ndarray(a)

    def pandas_array(self, arr) -> None:
        """A pandas ExtensionArray, from its public parts: a categorical's categories and
        codes, the integers behind datetimes and periods, values and mask of nullable
        numbers, else its values as numpy gives them."""
        pd = sys.modules["pandas"]
        np = sys.modules["numpy"]
        self.parts.append(b"PA")
        self.text(str(arr.dtype))
        if isinstance(arr, pd.Categorical):
            self.parts.append(b"%d;" % arr.ordered)
            self.pandas(arr.categories)
            self.ndarray(arr.codes)
        elif isinstance(arr, (pd.arrays.DatetimeArray, pd.arrays.TimedeltaArray, pd.arrays.PeriodArray)):
            self.ndarray(arr.asi8)
        elif isinstance(arr, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)):
            self.ndarray(arr.isna())
            self.ndarray(arr.to_numpy(dtype=arr.dtype.numpy_dtype, na_value=arr.dtype.numpy_dtype.type(0)))
        else:
            self.pandas_ndarray(np.asarray(arr))


_ABSENT = object()
_PLAIN_DEPTH = 4


def _plain(v: Any, parts: list, depth: int) -> bool:
    """The fast path: encode ``v`` into ``parts`` as ``_Walk`` would, when it is made of
    str, int, float, bool and None in tuples, lists, sets of str or int and str-keyed
    dicts (a step's usual arguments); False as soon as it is not (``parts`` is then to be thrown away). No
    cycle can go unnoticed: one would go deeper than ``_PLAIN_DEPTH``."""
    append = parts.append
    t = type(v)
    if t is tuple or t is list or t is set or t is frozenset:
        if depth > _PLAIN_DEPTH:
            return False
        if t is tuple or t is list:
            append((b"t%d;" if t is tuple else b"l%d;") % len(v))
        elif not v or _one_sortable_type(v):  # a set of str or of int: sorted, as unordered() does
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
        if depth > _PLAIN_DEPTH or not _one_sortable_type(v) or type(next(iter(v))) is not str:
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


def _one_sortable_type(items) -> bool:
    """True when every item is of one of str/int/bytes: sorted order is canonical."""
    kinds = {type(item) for item in items}
    return len(kinds) == 1 and kinds.pop() in _SORTABLE


def _wrapped(v) -> Any:
    """The function a callable object wraps (``__wrapped__``), or None."""
    if not callable(v):
        return None
    try:
        wrapped = v.__dict__.get("__wrapped__")
    except AttributeError:
        return None
    return wrapped if callable(wrapped) else None


def _array_digest(np, a) -> bytes:
    """Digest of an array's items in C order: its buffer as it is when C-contiguous,
    else copied a few MiB of rows at a time."""
    h = _blake()
    if a.nbytes:
        if a.flags.c_contiguous:
            h.update(a.reshape(-1).view(np.uint8))
        else:
            row_bytes = max(1, a[0].nbytes if a.ndim else a.nbytes)
            rows = max(1, (8 << 20) // row_bytes)
            for start in range(0, a.shape[0], rows):
                h.update(np.ascontiguousarray(a[start:start + rows]).reshape(-1).view(np.uint8))
    return h.digest()


_slot_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _slots(t: type) -> tuple[str, ...]:
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


_EXACT: dict[type, Callable[[_Walk, Any], None]] = {
    complex: _Walk.scalar_repr,
    bytes: _Walk.raw_bytes,
    bytearray: _Walk.raw_bytearray,
    memoryview: _Walk.raw_memoryview,
    set: _Walk.a_set,
    frozenset: _Walk.a_frozenset,
    type(Ellipsis): _Walk.singleton,
    type(NotImplemented): _Walk.singleton,
    datetime.datetime: _Walk.a_datetime,
    datetime.date: _Walk.a_date,
    datetime.time: _Walk.a_time,
    datetime.timedelta: _Walk.a_timedelta,
    decimal.Decimal: _Walk.a_decimal,
    uuid.UUID: _Walk.a_uuid,
    range: _Walk.a_range,
    slice: _Walk.a_slice,
    re.Pattern: _Walk.a_pattern,
    functools.partial: _Walk.a_partial,
    types.ModuleType: _Walk.a_module,
    types.FunctionType: _Walk.a_function,
    types.CodeType: _Walk.a_code,
    types.BuiltinFunctionType: _Walk.a_builtin,
    types.MethodType: _Walk.a_method,
    type: _Walk.a_class,
    pickle.PickleBuffer: _Walk.pickle_buffer,
}
# kinds of the other types, found once per type
_kinds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kind(t: type) -> Callable[[_Walk, Any], None]:
    handler = _kinds.get(t)
    if handler is None:
        handler = _classify(t)
        try:
            _kinds[t] = handler
        except TypeError:  # a type that takes no weak reference: classified each time
            pass
    return handler


def _classify(t: type) -> Callable[[_Walk, Any], None]:
    module = t.__module__ or ""
    if issubclass(t, type):
        return _Walk.a_class
    if issubclass(t, enum.Enum):
        return _Walk.an_enum
    if issubclass(t, PurePath):
        return _Walk.a_path
    root = module.split(".")[0]
    if root == "numpy":
        np = sys.modules.get("numpy")
        if np is not None and (t is np.ndarray or t is np.memmap):
            return _Walk.ndarray
        if np is not None and issubclass(t, np.generic):
            return _Walk.numpy_scalar
    if root == "pandas":
        pd = sys.modules.get("pandas")
        if pd is not None and issubclass(t, (pd.DataFrame, pd.Series, pd.Index,
                                             pd.api.extensions.ExtensionArray)):
            return _Walk.pandas
    if issubclass(t, (list, tuple)):
        return _Walk.seq_subclass
    if issubclass(t, dict):
        return _Walk.map_subclass
    if issubclass(t, (set, frozenset)):
        return _Walk.set_subclass
    if _written_in_python(t):
        return _Walk.plain_object
    return _Walk.reduced


def _written_in_python(t: type) -> bool:
    """Instances keep all their state in ``__dict__`` and slots, and pickle by default.

    Classes written in Python are heap types that stay mutable, and their instances
    are no larger than an object with its slots, dict and weakref pointers; a C type
    (a lock, a socket's base) fails one of these, and goes through its reduce, which
    refuses what has hidden state."""
    return (all(k.__flags__ & _HEAP_TYPE and not k.__flags__ & _IMMUTABLE_TYPE
                for k in t.__mro__[:-1])
            and t.__basicsize__ <= object.__basicsize__ + _POINTER * (len(_slots(t)) + 2)
            and t.__reduce_ex__ is object.__reduce_ex__ and t.__reduce__ is object.__reduce__
            and getattr(t, "__getstate__", None) is getattr(object, "__getstate__", None))
