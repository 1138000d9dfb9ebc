"""Fingerprints of a step's code, stable across kernel restarts.

The hash covers the bytecode, constants and names of the function and, recursively,
of the notebook/script-defined functions it calls through its globals. It leaves out
file names and line numbers, which ipykernel changes on every restart (each cell is
compiled from a new temporary file), and library functions, whose code is the
installed package's business.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

_LIBRARY_ROOTS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})

# fn -> (its code, [(globals, name, bound object, dependency, its code)], fingerprint)
_Deps = list[tuple[dict[str, Any], str, Any, types.FunctionType, types.CodeType]]
_cache: weakref.WeakKeyDictionary[types.FunctionType, tuple[types.CodeType, _Deps, bytes]] = \
    weakref.WeakKeyDictionary()


def code_fingerprint(fn: Callable[..., Any]) -> bytes:
    """16-byte hash of ``fn``'s code and of the user functions it calls."""
    fn = _unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        return hashlib.blake2b(repr(getattr(fn, "__qualname__", fn)).encode(), digest_size=16).digest()
    cached = _cache.get(fn)
    if cached is not None and cached[0] is fn.__code__ and all(
            g.get(name) is bound and dep.__code__ is code for g, name, bound, dep, code in cached[1]):
        return cached[2]
    h = hashlib.blake2b(digest_size=16)
    deps: _Deps = []
    _feed_function(h, fn, deps, {fn})
    fp = h.digest()
    _cache[fn] = (fn.__code__, deps, fp)
    return fp


def _unwrap(fn: Any) -> Any:
    inner = getattr(fn, "fn", None)  # a StepFunction
    return inner if callable(inner) else fn


def _feed_function(h: Any, fn: types.FunctionType, deps: _Deps, seen: set[types.FunctionType]) -> None:
    _feed_code(h, fn.__code__)
    for value in fn.__defaults__ or ():
        h.update(repr(value).encode())
    for name in _global_names(fn.__code__):
        dep = _unwrap(fn.__globals__.get(name))
        if isinstance(dep, types.FunctionType) and _is_user_code(dep) and dep not in seen:
            seen.add(dep)
            deps.append((fn.__globals__, name, fn.__globals__.get(name), dep, dep.__code__))
            h.update(name.encode())
            _feed_function(h, dep, deps, seen)


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(" ".join(code.co_names).encode())
    h.update(" ".join(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _is_user_code(fn: types.FunctionType) -> bool:
    module_name = fn.__module__ or ""
    if module_name == "__main__":
        return True
    if module_name.split(".")[0] == "zart_nb":
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None) or fn.__code__.co_filename
    return not path.startswith(_LIBRARY_ROOTS)
