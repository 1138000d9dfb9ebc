"""A step cell's checkpoint: which of the variables it wrote are stored, how they come
back, and why a cell cannot have one (it then runs again on restore).

A checkpoint (the journal entry's value, a dict, signed and pickled once by the engine)
holds the groups of variables the cell wrote, their values in place (one pickle for the
whole cell, so that names sharing objects share them again once restored, and nothing
is pickled or signed twice), the names it deleted, its recorded outputs, its last
expression's value (or its display bundle when that does not pickle), when it ran and
for how long. A cell that cannot be checkpointed stores only the reason,
``runs_on_restore``: it runs every time.

Records of version 1 (before mutations were seen) kept one signed pickle per variable.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..errors import PayloadError
from .cell_state import Changes

RECORD_VERSION = 2


@dataclass
class Chosen:
    """The variables of one cell to store, in groups; or the reason none can be."""

    groups: list[tuple[str, ...]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # `with … as NAME` resources left out
    not_checkpointable: str | None = None

    @property
    def names(self) -> list[str]:
        return [name for names in self.groups for name in names]

    def values(self, ns: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
        return [(names, tuple(ns[n] for n in names)) for names in self.groups]


def choose(ns: dict[str, Any], changes: Changes, *, exclude: Iterable[str] = (),
           never_store: Iterable[str] = ()) -> Chosen:
    """The groups of ``changes`` to store; a value of a type listed in ``never_store``, or
    on a GPU, makes the cell not checkpointable."""
    excluded, listed = set(exclude), set(never_store)
    out = Chosen()
    for group in changes.groups:
        names = tuple(n for n in group if n not in excluded)
        for name in names:
            why = unstorable(ns[name], listed)
            if why is not None:
                out.not_checkpointable = f"{name} is not checkpointable: {why}"
                return out
        if names:
            out.groups.append(names)
    return out


def sort_out(ns: dict[str, Any], chosen: Chosen, resources: Iterable[str]) -> Chosen:
    """When the checkpoint did not pickle: each variable on its own. A resource a ``with``
    block bound (a closed file) is left out; another one makes the cell not checkpointable."""
    resource = set(resources)
    out = Chosen()
    for names in chosen.groups:
        kept = []
        for name in names:
            try:
                codec.encode(ns[name], what=name)
            except PayloadError as exc:
                if name not in resource:
                    why = str(exc).removeprefix(f"{name}: ")
                    return Chosen(not_checkpointable=f"{name} is not checkpointable: {why}")
                out.skipped.append(name)
                continue
            kept.append(name)
        if kept:
            out.groups.append(tuple(kept))
    return out


def unstorable(value: Any, listed: set[str]) -> str | None:
    """Why ``value`` is never stored though it may pickle: its type is listed by the user
    (``%config ZartMagics.never_store``), or it lives on a GPU (a CUDA tensor)."""
    cls = type(value)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if path in listed:
        return f"{path} is in ZartMagics.never_store"
    if (cls.__module__ or "").split(".")[0] in ("torch", "cupy"):
        device = getattr(value, "device", None)
        if getattr(value, "is_cuda", False) is True or getattr(device, "type", None) == "cuda":
            return f"{path} on a CUDA device"
    return None


def only_imports(values: Iterable[Any]) -> bool:
    """True when every value is a module, or a library's function or class: what an
    import binds, which pickles as a reference (running the cell costs the same, and
    brings back what else it set: ``sys.path``, options, seeds)."""
    seen = False
    for value in values:
        seen = True
        if isinstance(value, types.ModuleType):
            continue
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)) \
                and getattr(value, "__module__", "__main__") != "__main__":
            continue
        return False
    return seen


def decode_values(record: dict[str, Any], wanted: Iterable[str] | None, what: str) -> dict[str, Any]:
    """The variables of a checkpoint (all, or those of ``wanted`` it has)."""
    want = None if wanted is None else set(wanted)
    out: dict[str, Any] = {}
    for names, values in record.get("groups") or ():
        out.update(zip(names, values, strict=True))
    for name, envelope in (record.get("vars") or {}).items():  # version 1: one per variable
        if want is None or name in want:
            out[name] = codec.decode(envelope, what=f"variable {name!r} of {what}")
    return out if want is None else {n: v for n, v in out.items() if n in want}


def stored_names(record: dict[str, Any]) -> list[str]:
    """The variables a checkpoint holds."""
    names = [name for group, _ in record.get("groups") or () for name in group]
    return names + list(record.get("vars") or {})
