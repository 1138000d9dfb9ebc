"""The fixed catalogue of values and functions whose stored payloads and fingerprints are
kept in tests/golden/ (written by ``python -m tests.golden.generate``).

Never edit an entry in place: the golden files hold what this catalogue gave when they
were written. Add entries, then regenerate (which is a deliberate migration when an
existing entry's payload or fingerprint changes: see test_golden.py).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import math
import re
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

SENTINEL = object()


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    tags: frozenset

    def norm(self):
        return math.hypot(self.x, self.y) + len({t for t in self.tags if t in {"a", "b"}})


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.links: list = []


def frame() -> pd.DataFrame:
    # strings stored by Python whether or not pyarrow is installed (pandas' default storage
    # follows it), as in the golden pickle
    text = pd.StringDtype("python", na_value=np.nan)
    columns = ["id", "price", "sku", "kind", "at", "n"]
    return pd.DataFrame({
        "id": np.arange(8, dtype=np.int64), "price": np.linspace(0.5, 4.0, 8),
        "sku": pd.array([f"sku-{i % 3}" for i in range(8)], dtype=text),
        "kind": pd.Categorical(["x", "y", "x", "z", "y", "x", "z", "x"],
                               categories=pd.Index(["x", "y", "z"], dtype=text)),
        "at": pd.date_range("2024-03-30", periods=8, freq="h", tz="Europe/Paris"),
        "n": pd.array([1, None, 3, 4, 5, None, 7, 8], dtype="Int64"),
    }, columns=pd.Index(columns, dtype=text))


def cycle() -> Node:
    a, b = Node("a"), Node("b")
    a.links.append(b)
    b.links.append(a)
    return a


def values() -> dict[str, Any]:
    """Values whose fingerprints do not depend on the Python version."""
    return {
        "none": None, "true": True, "int": 7, "big-int": -(10 ** 40), "float": 0.1,
        "negative-zero": -0.0, "nan": math.nan, "complex": 1 - 2j, "str": "zart é ✓",
        "bytes": b"\x00\xffzart", "bytearray": bytearray(b"ab"), "tuple": (1, "a", None),
        "list": [1, [2, [3.5]]], "dict": {"b": 1, "a": {"c": [1, 2]}},
        "mixed-keys": {1: "a", "1": "b", (2,): None, None: 0},
        "set": {"alpha", "beta", "gamma", "delta"}, "frozenset": frozenset({1, "one", (2, "two")}),
        "dict-of-sets": {"x": {"p", "q"}, "y": frozenset({"r", "s", "t"}), "z": set()},
        "datetime-tz": datetime.datetime(2024, 10, 27, 2, 30, fold=1,
                                         tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
        "date": datetime.date(2024, 2, 29), "time": datetime.time(23, 59, 59, 999),
        "timedelta": datetime.timedelta(days=-1, seconds=5), "decimal": decimal.Decimal("12.50"),
        "uuid": uuid.UUID(int=42), "path": PurePosixPath("/data/in.csv"), "enum": Shade.DARK,
        "range": range(1, 10, 3), "slice": slice(None, 5, 2), "regex": re.compile(r"\d+", re.I),
        "dataclass": Point(3, 4.0, frozenset({"a", "c"})),
        "ordered-dict": collections.OrderedDict([("b", 2), ("a", 1)]),
        "counter": collections.Counter("mississippi"), "cycle": cycle(), "sentinel": SENTINEL,
        "numpy-f8": np.arange(12, dtype=np.float64).reshape(3, 4),
        "numpy-fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "numpy-object": np.array([{"a", "b"}, None, "x"], dtype=object),
        "dataframe": frame(), "series": frame()["price"].rename("cost"),
        "multi-index": frame().set_index(["sku", "id"]).index,
    }


def uses_set_literal(word):
    return word in {"alpha", "beta", "gamma"}


def frozenset_default(word, allowed=frozenset({"a", "b", "c"})):
    return word in allowed


def sentinel_default(word, missing=SENTINEL):
    return missing is SENTINEL


def regex_default(text, pattern=re.compile(r"(a|b)+", re.M)):
    return pattern.match(text)


def calls_helper(word):
    return uses_set_literal(word) and frozenset_default(word)


def comprehension(words):
    key = lambda w: w in {"k1", "k2"}  # noqa: E731
    return {w: [c for c in w if c in {"a", "e"}] for w in words if key(w)}


def make_closure():
    tags = {"t1", "t2", "t3"}

    def closure(word):
        return word in tags

    return closure


def scale(x, factor=1):
    return x * factor


def functions() -> dict[str, Callable]:
    """Code whose fingerprints follow the Python version's bytecode."""
    return {
        "set-literal": uses_set_literal, "frozenset-default": frozenset_default,
        "sentinel-default": sentinel_default, "regex-default": regex_default,
        "helper": calls_helper, "comprehension": comprehension, "closure": make_closure(),
        "partial": functools.partial(scale, factor={"f": {1, 2}}),
        "method": Point(1, 2.0, frozenset()).norm, "class": Point,
    }


def payloads() -> dict[str, Any]:
    """Values stored as signed payloads (by reference: this module's own classes and
    functions; by value: a local closure)."""
    chosen = ["none", "str", "big-int", "dict-of-sets", "mixed-keys", "datetime-tz", "decimal",
              "enum", "dataclass", "ordered-dict", "numpy-f8", "numpy-object", "dataframe"]
    out = {name: values()[name] for name in chosen}
    out["function-by-reference"] = scale
    out["closure-by-value"] = make_closure()
    return out
