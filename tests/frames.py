"""Data as data scientists have it, for the tests of large results: frames and arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

MiB = 1 << 20


def sample_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A frame with most of what pandas stores: ints, floats, strings, an ordered
    categorical, nullable ints, booleans, timestamps in a zone that changes its offset
    (DST) and a MultiIndex."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_arrays([rng.integers(0, 40, rows), np.arange(rows)],
                                      names=["shop", "row"])
    maybe = pd.array(rng.integers(0, 100, rows), dtype="Int64")
    maybe[::7] = pd.NA
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "qty": rng.integers(0, 1000, rows, dtype=np.int32),
        "price": np.round(rng.gamma(2.0, 20.0, rows), 2),
        "name": [f"item-{i % 997}" for i in range(rows)],
        "venue": pd.Categorical(rng.choice(["lse", "nyse", "xetra"], rows),
                                categories=["xetra", "nyse", "lse"], ordered=True),
        "maybe": maybe,
        "flag": rng.random(rows) < 0.5,
        "at": pd.date_range("2024-03-30 22:00", periods=rows, freq="s", tz="Europe/London"),
    }, index=index)


def big_array(dtype: str, nbytes: int = 5 * MiB, seed: int = 0) -> np.ndarray:
    """About ``nbytes`` of ``dtype``, with values that vary (not all zeros)."""
    dt = np.dtype(dtype)
    n = nbytes // dt.itemsize
    rng = np.random.default_rng(seed)
    if dt.kind in "Mm":
        return rng.integers(0, 10**15, n).astype(dt)
    if dt.kind in "US":
        return np.array([f"v{i % 9973}" for i in range(n)], dtype=dt)
    if dt.kind == "V":
        out = np.zeros(n, dtype=dt)
        for name in dt.names:
            out[name] = rng.integers(0, 1000, n)
        return out
    if dt.kind == "O":
        return np.array([(i, str(i)) for i in range(n // 2)] + [None], dtype=object)
    if dt.kind == "b":
        return rng.random(n) < 0.5
    return (rng.random(n) * 1000).astype(dt)
