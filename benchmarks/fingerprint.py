"""What fingerprints cost: every step call, replayed or not, hashes its code and arguments.

fingerprint_cost: microseconds per call (median of 5 repeats of many calls) of
  - ``args_*``: ``arguments_fingerprint`` of a trivial step's arguments (one int; three
    ints and strings) and of richer ones (a set of 100 strings, a dict of sets, a
    dataclass);
  - ``code_cached_us``: ``code_fingerprint`` of a function already fingerprinted in this
    process (the replay path); ``code_first_us``: the first time, for a function with a
    set literal, a frozenset default and a helper;
  - numpy and pandas (when installed): seconds to hash a float64 array (256 MB; quick:
    32 MB) next to one blake2b pass over its buffer (``array_over_blake2b``: the aim is
    1, no copy) and next to pickling it and hashing the pickle (the old way); the same
    for a DataFrame of ints, floats, a text column and a categorical (1 M rows; quick:
    100 k).
No database is involved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import statistics
import time
import types
from collections.abc import Callable
from typing import Any

from zart_nb.engine.fingerprint import arguments_fingerprint, code_fingerprint, value_fingerprint

from .common import Context, Figures, benchmark


@dataclasses.dataclass
class Order:
    id: int
    customer: str
    tags: set
    lines: list


def helper(word):
    return word in {"alpha", "beta", "gamma"}


def rich_step(word, allowed=frozenset({"a", "b", "c"})):
    return helper(word) and [c for c in word if c in allowed]


def args_fp(args: tuple[Any, ...]) -> bytes:
    """The fingerprint of a step's positional ``args``, as a call computes it."""
    return arguments_fingerprint(args, {}, kind="step", name="s")


def per_call_us(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of one call, in microseconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return round(statistics.median(samples), 2)


def median_s(fn: Callable[[], Any], repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def fresh_function() -> types.FunctionType:
    """A new function object with rich_step's code: not in the fingerprint cache."""
    return types.FunctionType(rich_step.__code__, rich_step.__globals__, "rich_step",
                              rich_step.__defaults__)


@benchmark("fingerprint_cost")
def fingerprint_cost(ctx: Context) -> Figures:
    calls = 20_000 if ctx.quick else 200_000
    words = {f"word-{i}" for i in range(100)}
    groups = {f"g{i}": {f"m{j}" for j in range(5)} for i in range(10)}
    order = Order(7, "acme", {"rush", "gift"}, [("sku-1", 2), ("sku-2", 1)])
    code_fingerprint(rich_step)
    figures: Figures = {
        "args_one_int_us": per_call_us(lambda: args_fp((7,)), calls),
        "args_trivial_us": per_call_us(lambda: args_fp((7, "x", 3)), calls),
        "args_set_of_100_str_us": per_call_us(lambda: args_fp((words,)), calls // 20),
        "args_dict_of_sets_us": per_call_us(lambda: args_fp((groups,)), calls // 20),
        "args_dataclass_us": per_call_us(lambda: args_fp((order,)), calls // 10),
        "code_cached_us": per_call_us(lambda: code_fingerprint(rich_step), calls),
        "code_first_us": per_call_us(lambda: code_fingerprint(fresh_function()), calls // 100),
    }
    figures.update(_buffers(ctx))
    return figures


def _buffers(ctx: Context) -> Figures:
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        return {"buffers": "numpy/pandas not installed"}
    size_mb = 32 if ctx.quick else 256
    array = np.random.default_rng(1).random(size_mb * (1 << 20) // 8)
    rows = 100_000 if ctx.quick else 1_000_000
    frame = pd.DataFrame({
        "id": np.arange(rows), "price": np.linspace(0, 1, rows), "qty": np.arange(rows) % 7,
        "sku": [f"sku-{i % 1000}" for i in range(rows)],
        "kind": pd.Categorical(np.array(["a", "b", "c"])[np.arange(rows) % 3]),
    })
    array_s = median_s(lambda: value_fingerprint(array))
    blake_s = median_s(lambda: hashlib.blake2b(array, digest_size=16).digest())
    pickled_s = median_s(lambda: hashlib.blake2b(pickle.dumps(array, protocol=5), digest_size=16).digest())
    frame_s = median_s(lambda: value_fingerprint(frame))
    frame_pickled_s = median_s(
        lambda: hashlib.blake2b(pickle.dumps(frame, protocol=5), digest_size=16).digest())
    return {
        "array_mb": size_mb,
        "array_s": round(array_s, 4),
        "array_gb_per_s": round(size_mb / 1024 / array_s, 2),
        "array_over_blake2b": round(array_s / blake_s, 2),
        "array_pickle_and_hash_s": round(pickled_s, 4),
        "frame_rows": rows,
        "frame_mb": round(frame.memory_usage(deep=True).sum() / (1 << 20), 1),
        "frame_s": round(frame_s, 4),
        "frame_pickle_and_hash_s": round(frame_pickled_s, 4),
    }
