"""Source lines that travel with a function to another process, for its tracebacks.

A worker runs a child's function unpickled from the task. cloudpickle rebuilds a
function defined in a notebook (or a script, or a shipped module) from its code, naming
its file ``<dynamic-code>``; and a notebook cell's "file" exists only in the kernel's
linecache. The child's traceback would show neither the cell nor its lines. So the body
ships, with such a function, the file name of each code object and the source lines
of the ones no file holds (``with_sources``); unpickling it puts the names back and the
lines into the worker's linecache (``restored``).
"""

from __future__ import annotations

import linecache
import os
import types
from typing import Any

DYNAMIC_CODE = "<dynamic-code>"  # cloudpickle's file name for code pickled by value

Origins = dict[tuple[str, int], str]  # (qualified name, first line) -> file name
Sources = dict[str, dict[int, str]]  # file name -> {line number: text}


def with_sources(fn: Any) -> Any:
    """``fn``, or ``fn`` wrapped so that unpickling it anywhere restores its file names
    and the source lines no file holds (see ``restored``)."""
    if not isinstance(fn, types.FunctionType):
        return fn
    origins: Origins = {}
    sources: Sources = {}
    for code in _codes(_functions_of(fn)):
        origins[(code.co_qualname, code.co_firstlineno)] = code.co_filename
        if not os.path.exists(code.co_filename):
            lines = linecache.getlines(code.co_filename)
            if lines:
                span = range(code.co_firstlineno, _last_line(code) + 1)
                sources.setdefault(code.co_filename, {}).update(
                    {n: lines[n - 1] for n in span if 0 < n <= len(lines)})
    return _Shipped(fn, origins, sources)


class _Shipped:
    """A function to pickle with its origins: unpickled, it is the function itself."""

    def __init__(self, fn: types.FunctionType, origins: Origins, sources: Sources) -> None:
        self.fn, self.origins, self.sources = fn, origins, sources

    def __reduce__(self) -> tuple[Any, ...]:
        return (restored, (self.fn, self.origins, self.sources))


def restored(fn: types.FunctionType, origins: Origins, sources: Sources) -> types.FunctionType:
    """``fn`` (just unpickled) with the file names of its code put back, and ``sources``
    in this process's linecache (for lines no file of this machine holds)."""
    for filename, lines in sources.items():
        _remember(filename, lines)
    for function in _functions_of(fn):
        code = _renamed(function.__code__, origins)
        if code is not function.__code__:
            function.__code__ = code
    return fn


def _functions_of(fn: types.FunctionType) -> list[types.FunctionType]:
    """``fn`` and the functions of its module it calls through its globals, recursively
    (the helpers a notebook function uses come from the same cells)."""
    found = [fn]
    seen = {id(fn)}
    for function in found:
        for name in _names(function.__code__):
            other = function.__globals__.get(name)
            other = getattr(other, "fn", other)  # a StepFunction
            if (isinstance(other, types.FunctionType) and id(other) not in seen
                    and other.__module__ == fn.__module__):
                seen.add(id(other))
                found.append(other)
    return found


def _names(code: types.CodeType) -> set[str]:
    return {name for c in _codes_of(code) for name in c.co_names}


def _codes(functions: list[types.FunctionType]) -> list[types.CodeType]:
    return [code for fn in functions for code in _codes_of(fn.__code__)]


def _codes_of(code: types.CodeType) -> list[types.CodeType]:
    """``code`` and the code nested in it (functions, lambdas, comprehensions, classes)."""
    found = [code]
    for c in found:
        found.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return found


def _last_line(code: types.CodeType) -> int:
    return max((line for c in _codes_of(code) for _, _, line in c.co_lines() if line),
               default=code.co_firstlineno)


def _renamed(code: types.CodeType, origins: Origins) -> types.CodeType:
    if code.co_filename != DYNAMIC_CODE:
        return code
    consts = tuple(_renamed(k, origins) if isinstance(k, types.CodeType) else k
                   for k in code.co_consts)
    filename = origins.get((code.co_qualname, code.co_firstlineno), DYNAMIC_CODE)
    return code.replace(co_filename=filename, co_consts=consts)


def _remember(filename: str, lines: dict[int, str]) -> None:
    """Add ``lines`` to linecache's entry for ``filename``, unless a real file holds it."""
    if os.path.exists(filename):
        return
    entry = linecache.cache.get(filename)
    known = list(entry[2]) if entry is not None and len(entry) == 4 and entry[1] is None else []
    size = max([len(known), *lines])
    known += ["\n"] * (size - len(known))
    for number, text in lines.items():
        known[number - 1] = text
    # mtime None: linecache.checkcache leaves the entry alone (no file to compare with)
    linecache.cache[filename] = (sum(map(len, known)), None, known, filename)
