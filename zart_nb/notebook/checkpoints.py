"""A step cell's checkpoint: the values it wrote, encoded and decoded, and why a cell
cannot have one (it then runs again on restore).

A checkpoint (the journal entry's value, a dict) holds the groups of variables the
cell wrote (each group one signed pickle of a tuple of values, so that names sharing
objects share them again once restored), the names it deleted, its recorded outputs,
its last expression's value (or its display bundle when that does not pickle), when
it ran and for how long. A cell that cannot be checkpointed stores only the reason,
``runs_on_restore``: it runs every time.

Records of version 1 (before mutations were seen) kept one pickle per variable.
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
class Encoded:
    """The variables of one cell, encoded; or the reason they cannot be."""

    groups: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # `with … as NAME` resources left out
    not_checkpointable: str | None = None

    @property
    def names(self) -> list[str]:
        return [name for names, _ in self.groups for name in names]


def encode_changes(ns: dict[str, Any], changes: Changes, *, exclude: Iterable[str] = (),
                   resources: Iterable[str] = (), never_store: Iterable[str] = ()) -> Encoded:
    """Encode each group of ``changes``; a value that does not pickle (or is of a type
    listed in ``never_store``, or lives on a GPU) makes the cell not checkpointable,
    except the resources a ``with`` block bound (a closed file): those are left out."""
    excluded, resource, listed = set(exclude), set(resources), set(never_store)
    out = Encoded()
    for group in changes.groups:
        names = [n for n in group if n not in excluded]
        for name in names:
            why = unstorable(ns[name], listed)
            if why is not None:
                out.not_checkpointable = f"{name} is not checkpointable: {why}"
                return out
        try:
            envelope = codec.encode(tuple(ns[n] for n in names), what="variables")
        except PayloadError:
            kept = []
            for name in names:
                try:
                    codec.encode(ns[name], what=name)
                except PayloadError as exc:
                    if name in resource:
                        out.skipped.append(name)
                        continue
                    why = str(exc).removeprefix(f"{name}: ")
                    out.not_checkpointable = f"{name} is not checkpointable: {why}"
                    return out
                kept.append(name)
            names = kept
            if not names:
                continue
            envelope = codec.encode(tuple(ns[n] for n in names), what="variables")
        if names:
            out.groups.append((tuple(names), envelope))
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
    """The variables of a checkpoint (all, or those of ``wanted`` it has), unpickled."""
    want = None if wanted is None else set(wanted)
    out: dict[str, Any] = {}
    for names, envelope in record.get("groups") or ():
        if want is not None and not want.intersection(names):
            continue
        values = codec.decode(envelope, what=f"variables {', '.join(names)} of {what}")
        out.update(zip(names, values, strict=True))
    for name, envelope in (record.get("vars") or {}).items():  # version 1: one per variable
        if want is None or name in want:
            out[name] = codec.decode(envelope, what=f"variable {name!r} of {what}")
    return out if want is None else {n: v for n, v in out.items() if n in want}


def stored_names(record: dict[str, Any]) -> list[str]:
    """The variables a checkpoint holds, without unpickling them."""
    names = [name for group, _ in record.get("groups") or () for name in group]
    return names + list(record.get("vars") or {})
