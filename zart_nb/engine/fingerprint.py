"""Fingerprints of a step's code and arguments: functions of code and values only.

A code fingerprint hashes the structure of the function's code objects (bytecode,
names, variable names, free and cell variables, argument counts, the flags that change
behaviour, the exception table, constants), recursively through the nested functions,
lambdas and comprehensions it defines; its default values, keyword defaults and
closure cells by value; and, recursively, the functions and classes defined in the
notebook or in the user's own modules that it reaches through its globals. It leaves
out file names and line numbers, which ipykernel changes on every restart, and library
code (stdlib, site-packages, zart_nb itself), whose code is the installed package's
business. Constants and values are hashed canonically (``value_hash``): a set literal,
a frozenset default or an ``object()`` sentinel hashes alike in every process.

An argument fingerprint hashes the call's ``(args, kwargs)`` canonically, functions by
their code fingerprint. An argument that has no canonical form and does not pickle (a
generator, a lock) is refused, as before: it cannot be told changed or unchanged.

Every fingerprint starts with the byte of its scheme (``SCHEME``), so that one written
by another scheme is recognised: the 16-byte fingerprints of scheme 1 (hashes of
``repr`` and pickles) have no such byte. The text hash of a ``%%zart_step`` cell never
depended on the process and keeps its 16-byte scheme-1 form.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import PayloadError
from .value_hash import ValueHasher
from .value_kinds import type_path

SCHEME = 2
_LEGACY_SIZE = 16  # scheme 1: a bare 16-byte blake2b
_PREFIX = bytes([SCHEME])
_LIBRARY_ROOTS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})
# the flags of a code object that change what it does (not CO_NESTED, CO_OPTIMIZED…)
_FLAGS = (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR | inspect.CO_COROUTINE
          | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE)


def scheme_of(fp: bytes) -> int:
    """The scheme that wrote a fingerprint: 1 for the bare 16-byte hashes, else its first byte."""
    return 1 if len(fp) == _LEGACY_SIZE else fp[0]


def comparable(recorded: bytes, current: bytes) -> bool:
    """Whether two fingerprints were written by one scheme (only those can be compared)."""
    return scheme_of(recorded) == scheme_of(current)


def code_fingerprint(fn: Callable[..., Any]) -> bytes:
    """Fingerprint of ``fn``'s code and of the notebook code it reaches.

    Computed once per function per process: the cached one holds while the function's
    code and defaults, those of the functions it reaches, and the globals that bind
    them stay the same objects.
    """
    if type(fn) is not types.FunctionType:  # a plain function has no .fn (a costly miss)
        fn = _unwrap(fn)
    cacheable = isinstance(fn, _CACHEABLE)
    if cacheable:
        cached = _cache.get(fn)
        if cached is not None and cached.holds(fn):
            fingerprint: bytes = cached.fingerprint
            return fingerprint
    walk = _CodeWalk()
    fingerprint = _PREFIX + walk.root(fn)
    if cacheable:
        _cache[fn] = _Cached(fingerprint, walk, fn)
    return fingerprint


def arguments_fingerprint(args: tuple[Any, ...], kwargs: dict[str, Any], *, kind: str,
                          name: str) -> bytes:
    """Fingerprint of a call's arguments; an argument without a canonical form is
    refused with a PayloadError naming the ``kind`` ("step", "child"), ``name`` and
    the argument's path."""
    try:
        return _PREFIX + _VALUES.call_digest(args, kwargs)
    except PayloadError as exc:
        raise PayloadError(f"{kind} {name!r}: {exc}") from None


def value_fingerprint(value: Any) -> bytes:
    """Fingerprint of any value: a part without a canonical form counts by its type
    (a change inside it is not seen), so that this never fails."""
    try:
        return _PREFIX + _VALUES.digest(value, strict=False)
    except PayloadError:  # nested too deeply, or broke while being read
        return _PREFIX + hashlib.blake2b(type_path(type(value)).encode(), digest_size=16).digest()


def strict_value_fingerprint(value: Any, *, what: str) -> bytes:
    """Fingerprint of a value that has a canonical form all through; a part without one
    is refused with a PayloadError naming its path from ``what`` (``cfg['db']: cannot
    pickle 'sqlite3.Connection'``), since a change inside it could not be seen."""
    return _PREFIX + _VALUES.digest(value, what=what)


def _unwrap(fn: Any) -> Any:
    inner = getattr(fn, "fn", None)  # a StepFunction
    return inner if callable(inner) else fn


class _ArgumentHasher(ValueHasher):
    """Values in arguments: user functions and classes by their code fingerprints."""

    def function(self, fn: types.FunctionType) -> bytes:
        return code_fingerprint(fn) if _is_user_code(fn) else super().function(fn)

    def cls(self, cls: type) -> bytes:
        return code_fingerprint(cls) if _is_user_class(cls) else super().cls(cls)

    def code(self, code: types.CodeType) -> bytes:
        return _CodeWalk().code_digest(code)


_VALUES = _ArgumentHasher()


class _CodeWalk(ValueHasher):
    """One code fingerprint: the code of a function or class and of the notebook
    functions and classes it reaches, each hashed once (met again: by reference).
    Records what must stay the same for the fingerprint to hold."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.functions: list[tuple[Any, Any, Any, Any]] = []  # (fn, its code, defaults, kwdefaults)
        self.bindings: list[tuple[dict[str, Any], str, Any]] = []  # (globals, name, object bound there)
        self.classes: list[tuple[type, dict[str, Any]]] = []  # (class, a copy of its namespace)

    def root(self, fn: Any) -> bytes:
        """16-byte digest of a step's callable."""
        if isinstance(fn, types.FunctionType):
            return self.function_digest(fn, force=True)
        if isinstance(fn, type):
            return self.class_digest(fn, force=True)
        if isinstance(fn, functools.partial):  # the function and the arguments it fixes
            parts = b"P" + self.root(fn.func) + self.digest((fn.args, fn.keywords), strict=False)
        elif isinstance(fn, types.MethodType):  # the object's class and the method's code
            owner = fn.__self__ if isinstance(fn.__self__, type) else type(fn.__self__)
            func = fn.__func__
            code = (self.function_digest(func, force=True) if isinstance(func, types.FunctionType)
                    else self.digest(func, strict=False))
            parts = b"m" + type_path(owner).encode() + code
        elif isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            parts = b"b" + self.digest(fn, strict=False)
        else:  # a callable object: its class's code and its own state
            parts = b"o" + self.class_digest(type(fn), force=True) + self.digest(fn, strict=False)
        return hashlib.blake2b(parts, digest_size=16).digest()

    # -- hooks: code met inside defaults, closures and constants -------------------

    def function(self, fn: types.FunctionType) -> bytes:
        return self.function_digest(fn)

    def cls(self, cls: type) -> bytes:
        return self.class_digest(cls)

    def code(self, code: types.CodeType) -> bytes:
        return self.code_digest(code)

    # -- the parts ------------------------------------------------------------------

    def function_digest(self, fn: types.FunctionType, *, force: bool = False) -> bytes:
        name = f"{fn.__module__}.{fn.__qualname__}".encode()
        if not force and not _is_user_code(fn):
            return b"lib:" + name
        if id(fn) in self.seen:
            return b"ref:" + name
        self.seen.add(id(fn))
        self.functions.append((fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__))
        h = hashlib.blake2b(digest_size=16)
        h.update(self.code_digest(fn.__code__))
        for value in fn.__defaults__ or ():
            h.update(self.default(fn, value))
        for key, value in sorted((fn.__kwdefaults__ or {}).items()):
            h.update(key.encode() + b"=" + self.default(fn, value))
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # a cell not filled yet
                h.update(b"<empty>")
                continue
            h.update(self.default(fn, contents))
        namespace = fn.__globals__
        for global_name in dict.fromkeys(_global_names(fn.__code__)):
            bound = namespace.get(global_name)
            dep = _unwrap(bound)
            if isinstance(dep, types.FunctionType) and _is_user_code(dep):
                digest = self.function_digest(dep)
            elif isinstance(dep, type) and _is_user_class(dep):
                digest = self.class_digest(dep)
            else:
                continue
            self.bindings.append((namespace, global_name, bound))
            h.update(global_name.encode() + b"=" + digest)
        return h.digest()

    def default(self, fn: types.FunctionType, value: Any) -> bytes:
        """A default or closure value, by value; an ``object()`` sentinel is the same
        sentinel in every process: named by the global that binds it."""
        if type(value) is object:
            name = next((k for k, v in fn.__globals__.items() if v is value), "")
            return b"sentinel:" + name.encode()
        return self.digest(value, strict=False)

    def class_digest(self, cls: type, *, force: bool = False) -> bytes:
        name = type_path(cls).encode()
        if not force and not _is_user_class(cls):
            return b"lib:" + name
        if id(cls) in self.seen:
            return b"ref:" + name
        self.seen.add(id(cls))
        namespace = dict(vars(cls))
        self.classes.append((cls, namespace))
        h = hashlib.blake2b(name, digest_size=16)
        for base in cls.__bases__:
            h.update(self.class_digest(base))
        for attr in sorted(namespace):
            value = namespace[attr]
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = (value.fget, value.fset, value.fdel)
            elif not isinstance(value, (types.FunctionType, type)) and attr.startswith("_"):
                continue  # dunders, caches (abc's, dataclass fields): not the class's code
            h.update(attr.encode() + b"=" + self.digest(value, strict=False))
        return h.digest()

    def code_digest(self, code: types.CodeType) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        h.update(b"%d,%d,%d,%d;" % (code.co_argcount, code.co_posonlyargcount,
                                    code.co_kwonlyargcount, code.co_flags & _FLAGS))
        for text in (code.co_name, *code.co_names, "|", *code.co_varnames, "|",
                     *code.co_freevars, "|", *code.co_cellvars):
            data = text.encode("utf-8", "surrogatepass")
            h.update(b"%d:" % len(data) + data)
        h.update(b"%d:" % len(code.co_code) + code.co_code)
        table = getattr(code, "co_exceptiontable", b"")
        h.update(b"%d:" % len(table) + table)
        h.update(self.digest(code.co_consts, strict=False))  # nested code: code_digest
        return h.digest()


class _Cached:
    """A code fingerprint with what it depends on (the root function is the cache's
    key, held weakly: only its code and defaults are kept)."""

    __slots__ = ("bindings", "classes", "code", "defaults", "fingerprint", "functions", "kwdefaults")

    def __init__(self, fingerprint: bytes, walk: _CodeWalk, root: Any) -> None:
        self.fingerprint = fingerprint
        self.code = getattr(root, "__code__", None)
        self.defaults = getattr(root, "__defaults__", None)
        self.kwdefaults = getattr(root, "__kwdefaults__", None)
        self.functions = [f for f in walk.functions if f[0] is not root]
        self.bindings = walk.bindings
        self.classes = walk.classes

    def holds(self, root: Any) -> bool:
        if (getattr(root, "__code__", None) is not self.code
                or getattr(root, "__defaults__", None) is not self.defaults
                or getattr(root, "__kwdefaults__", None) is not self.kwdefaults):
            return False
        for fn, code, defaults, kwdefaults in self.functions:
            if (fn.__code__ is not code or fn.__defaults__ is not defaults
                    or fn.__kwdefaults__ is not kwdefaults):
                return False
        for namespace, name, bound in self.bindings:
            if namespace.get(name) is not bound:
                return False
        for cls, namespace in self.classes:
            current = vars(cls)
            if len(current) != len(namespace) or any(current.get(k) is not v for k, v in namespace.items()):
                return False
        return True


# Cached by the function (a class, or a callable object whose state may change, is
# hashed again each time: they are rare as steps and as arguments).
_CACHEABLE = (types.FunctionType, functools.partial, types.MethodType)
_cache: weakref.WeakKeyDictionary[Any, _Cached] = weakref.WeakKeyDictionary()


def _global_names(code: types.CodeType) -> Any:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _is_user_code(fn: types.FunctionType) -> bool:
    return _is_user_module(fn.__module__ or "", fn.__code__.co_filename)


def _is_user_class(cls: type) -> bool:
    return _is_user_module(cls.__module__ or "", None)


def _is_user_module(module_name: str, filename: str | None) -> bool:
    """Code of the notebook (``__main__``) or of the user's own modules, not of a library."""
    if module_name == "__main__":
        return True
    if module_name.split(".")[0] in ("zart_nb", "builtins"):
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or filename
    return bool(path) and not str(path).startswith(_LIBRARY_ROOTS)
