"""What a cell reads from the notebook's namespace, and what it changes there, seen by value.

Before a cell runs, ``read_inputs`` fingerprints the value of every name it reads: the
names of ``CellCode.reads``, plus the globals that the notebook's own functions and
classes among them use (calling ``f()`` reads what ``f`` reads). Each value is hashed
canonically (``engine.fingerprint``: arrays and frames from their buffers), an instance
of a notebook class with its class's code. ``Inputs.key()`` is the checkpoint's input
fingerprint, and keeps each name's own so that a change can be named.

After the cell, ``observe`` says what it wrote:

- the names it binds: its code assigns them, or their binding changed (a magic,
  ``exec``, ``globals()``); and the names it deleted;
- the names it read whose fingerprint changed: changed in place (``model.fit(X)``,
  ``df.drop(columns=[...], inplace=True)``, ``xs.append(x)``, ``cfg.update(...)``,
  ``obj.a = v``, through a container). Never guessed from the syntax;
- the other names whose objects the written values hold (``models = [m1, m2]``, then a
  loop fitting ``models`` changed ``m1`` too): stored in one group with them, so that
  they share those objects again once restored.

A read value without a canonical form all through (a connection, a lock, an open file)
has a fingerprint that no change alters: ``Inputs.opaque`` names it, and the cell runs
again on restore, since it may change it unseen. ``relink`` puts a restored object
back where the old one was held (``d = {"k": xs}`` before a cell changed ``xs``).
"""

from __future__ import annotations

import dis
import functools
import gc
import hashlib
import itertools
import sys
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engine.fingerprint import strict_value_fingerprint, value_fingerprint
from ..engine.steps import StepFunction
from ..errors import PayloadError

Visible = Callable[[str], bool]  # a name the cell machinery stores, fingerprints and restores

ABSENT = hashlib.blake2b(b"zart:absent", digest_size=16).digest()
_HEAD = 17  # a key starts with the fingerprint of all names (scheme byte + 16)
_NAMED = b"N"  # then this mark, then each name's (a former key has neither)
_ATOMS = (int, float, complex, str, bytes, bool, type(None), range)
_NOT_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
# objects of these libraries hold their data in buffers: never another name's object
_OPAQUE_LIBRARIES = {"numpy", "pandas", "polars", "pyarrow", "torch", "scipy"}
ALIAS_BUDGET = 50_000  # objects visited when looking for names sharing a written value
ALIAS_ITEMS = 10_000  # items of one container looked at
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME", "DELETE_NAME"}


# -- what a cell reads ----------------------------------------------------------------

@dataclass
class Inputs:
    """The fingerprints of the values a cell reads, before it runs."""

    fingerprints: dict[str, bytes] = field(default_factory=dict)  # name -> 16 bytes
    opaque: dict[str, str] = field(default_factory=dict)  # name -> why it has no fingerprint

    def key(self) -> bytes:
        """The checkpoint's input fingerprint: one over all names, then each name's own."""
        items = sorted(self.fingerprints.items())
        parts = [value_fingerprint(tuple(items)), _NAMED]
        for name, fp in items:
            raw = name.encode("utf-8", "surrogatepass")
            parts.append(len(raw).to_bytes(2, "big") + raw + fp)
        return b"".join(parts)


def key_fingerprints(key: bytes | None) -> dict[str, bytes] | None:
    """Each name's fingerprint in a key made by ``Inputs.key`` (None for another form)."""
    if key is None or key[_HEAD:_HEAD + 1] != _NAMED:
        return None
    found: dict[str, bytes] = {}
    i = _HEAD + 1
    while i < len(key):
        size = int.from_bytes(key[i:i + 2], "big")
        fp = key[i + 2 + size:i + 18 + size]
        if len(fp) != 16:
            return None
        found[key[i + 2:i + 2 + size].decode("utf-8", "surrogatepass")] = fp
        i += 18 + size
    return found


def changed_inputs(recorded: bytes | None, now: Inputs) -> list[str]:
    """The names whose fingerprint differs from the recorded key's (none known: [])."""
    old = key_fingerprints(recorded)
    if old is None:
        return []
    return sorted(n for n in set(old) | set(now.fingerprints) if old.get(n) != now.fingerprints.get(n))


def fingerprint(name: str, value: Any) -> tuple[bytes, str | None]:
    """(16-byte fingerprint of ``value``, None), or (its fingerprint by type where it has
    no canonical form, the reason naming the part: ``conn: cannot pickle '...'``)."""
    why = None
    try:
        fp = strict_value_fingerprint(value, what=name)
    except PayloadError as exc:
        fp, why = value_fingerprint(value), str(exc)
    cls = type(value)
    if cls.__module__ == "__main__":  # a notebook class's instance: its class's code counts
        return hashlib.blake2b(fp + value_fingerprint(cls), digest_size=16).digest(), why
    return fp[1:], why


def read_inputs(ns: dict[str, Any], reads: Iterable[str], visible: Visible) -> Inputs:
    """Fingerprint the values of ``reads`` and of the globals their functions use."""
    inputs = Inputs()
    for name in effective_reads(ns, reads, visible):
        if name not in ns:
            inputs.fingerprints[name] = ABSENT
            continue
        fp, why = fingerprint(name, ns[name])
        inputs.fingerprints[name] = fp
        if why is not None:
            inputs.opaque[name] = why
    return inputs


def effective_reads(ns: dict[str, Any], reads: Iterable[str], visible: Visible) -> list[str]:
    """``reads``, plus the globals of the notebook that the functions and classes among
    them (and the classes of instances among them) use, and so on."""
    found = dict.fromkeys(name for name in reads if visible(name))
    todo = list(found)
    while todo:
        for name in globals_used(ns.get(todo.pop()), ns):
            if name not in found and name in ns and visible(name):
                found[name] = None
                todo.append(name)
    return sorted(found)


def globals_used(value: Any, ns: dict[str, Any]) -> Iterator[str]:
    """Global names that the notebook's code in ``value`` may read."""
    if isinstance(value, StepFunction):
        value = value.fn
    if isinstance(value, functools.partial):
        value = value.func
    if isinstance(value, types.FunctionType):
        if value.__globals__ is ns:
            yield from _code_names(value.__code__)
        return
    cls = value if isinstance(value, type) else type(value)
    for klass in cls.__mro__:
        if klass.__module__ != "__main__":
            continue
        for member in vars(klass).values():
            for fn in (member, getattr(member, "__func__", None), getattr(member, "fget", None),
                       getattr(member, "fset", None)):
                if isinstance(fn, types.FunctionType) and fn.__globals__ is ns:
                    yield from _code_names(fn.__code__)


@functools.lru_cache(maxsize=4096)
def _code_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and the code nested in it) loads, stores or deletes:
    ``self.df`` reads no global ``df``."""
    names = [ins.argval for ins in dis.get_instructions(code) if ins.opname in _GLOBAL_OPS]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_code_names(const))
    return tuple(dict.fromkeys(names))


# -- what a cell changed --------------------------------------------------------------

class Snapshot:
    """Which object each visible name is bound to before a cell (no value kept alive)."""

    def __init__(self, ns: dict[str, Any], visible: Visible) -> None:
        self.bound: dict[str, tuple[int, weakref.ref[Any] | None]] = {}
        for name, value in ns.items():
            if visible(name):
                try:
                    ref: weakref.ref[Any] | None = weakref.ref(value)
                except TypeError:
                    ref = None
                self.bound[name] = (id(value), ref)

    def rebound(self, ns: dict[str, Any], visible: Visible) -> tuple[set[str], set[str]]:
        """(names bound to another object now, or new; names gone)."""
        changed = set()
        for name, value in ns.items():
            if not visible(name):
                continue
            was = self.bound.get(name)
            if was is None or was[0] != id(value) or (was[1] is not None and was[1]() is not value):
                changed.add(name)
        return changed, {name for name in self.bound if name not in ns}


@dataclass
class Changes:
    """What one cell wrote: groups of names stored together, and the names it deleted."""

    groups: list[list[str]]
    deleted: list[str]
    mutated: list[str]  # read, and changed in place
    rebound: list[str]  # bound to another object (the others' objects changed in place)

    @property
    def written(self) -> list[str]:
        return [name for group in self.groups for name in group]


def observe(ns: dict[str, Any], visible: Visible, before: Snapshot, inputs: Inputs,
            binds: Iterable[str]) -> Changes:
    """What the cell that ran since ``before`` was taken wrote (see the module's text)."""
    rebound, deleted = before.rebound(ns, visible)
    written = {name for name in binds if name in ns and visible(name)} | rebound
    bound = sorted(written)
    mutated = []
    for name, fp in inputs.fingerprints.items():
        if name in written or name not in ns or name in inputs.opaque or fp == ABSENT:
            continue
        if fingerprint(name, ns[name])[0] != fp:
            mutated.append(name)
    written.update(mutated)
    return Changes(alias_groups(ns, visible, written), sorted(deleted), sorted(mutated), bound)


def alias_groups(ns: dict[str, Any], visible: Visible, written: set[str]) -> list[list[str]]:
    """``written`` and the names whose objects their values hold, grouped by what they
    share (each group is stored as one pickle, which keeps the sharing)."""
    targets: dict[int, list[str]] = {}
    for name, value in ns.items():
        if visible(name) and not isinstance(value, _ATOMS + _NOT_SHARED):
            targets.setdefault(id(value), []).append(name)
    parent = {name: name for name in written}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    budget = [ALIAS_BUDGET]
    for name in sorted(written):
        value = ns[name]
        if isinstance(value, _ATOMS + _NOT_SHARED):
            continue
        for other in targets.get(id(value), []) + sorted(_reached_names(value, targets, budget)):
            parent.setdefault(other, other)
            parent[root(other)] = root(name)
    groups: dict[str, list[str]] = {}
    for name in sorted(parent):
        groups.setdefault(root(name), []).append(name)
    return sorted(groups.values())


def _reached_names(value: Any, targets: dict[int, list[str]], budget: list[int]) -> set[str]:
    """Names (of ``targets``) whose objects ``value`` holds, through containers and
    objects' attributes; the walk stops when ``budget`` (shared) runs out."""
    found: set[str] = set()
    seen = {id(value)}
    stack = [value]
    while stack and budget[0] > 0:
        budget[0] -= 1
        for child in _children(stack.pop()):
            if isinstance(child, _ATOMS) or id(child) in seen:
                continue
            seen.add(id(child))
            found.update(targets.get(id(child), ()))
            stack.append(child)
    return found


def _children(obj: Any) -> Iterable[Any]:
    if isinstance(obj, (list, tuple, set, frozenset)):
        return itertools.islice(obj, ALIAS_ITEMS)
    if isinstance(obj, dict):
        return itertools.islice(obj.values(), ALIAS_ITEMS)
    if isinstance(obj, _NOT_SHARED) or (type(obj).__module__ or "").split(".")[0] in _OPAQUE_LIBRARIES:
        return ()
    try:
        state = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return ()
    return itertools.islice(state.values(), ALIAS_ITEMS) if isinstance(state, dict) else ()


# -- putting restored objects where the old ones were held ------------------------------

def relink(ns: dict[str, Any], replaced: dict[str, Any]) -> None:
    """The names of ``replaced`` (name -> the object it was bound to until now) are bound
    to restored objects whose originals the cell changed in place: a list, dict or
    object's attribute that held an old object holds the restored one instead, as it
    held the one the cell changed."""
    olds = {id(old): ns[name] for name, old in replaced.items()
            if not isinstance(old, _ATOMS + _NOT_SHARED) and ns.get(name) is not old
            and sys.getrefcount(old) > 3}
    if not olds:
        return
    held = [old for old in replaced.values() if id(old) in olds]
    for holder in gc.get_referrers(*held):
        if any(holder is ours for ours in (ns, replaced, held)) \
                or isinstance(holder, (tuple, types.FrameType)):
            continue
        if isinstance(holder, list):
            for i, item in enumerate(holder):
                if id(item) in olds:
                    holder[i] = olds[id(item)]
            continue
        state = holder if isinstance(holder, dict) else getattr(holder, "__dict__", None)
        if isinstance(state, dict):
            for key, item in list(state.items()):
                if id(item) in olds:
                    state[key] = olds[id(item)]
