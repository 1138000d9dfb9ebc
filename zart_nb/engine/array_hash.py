"""numpy arrays and pandas objects, hashed from their buffers (see ``value_hash``).

Neither library is imported here: their types are recognised by their modules' names
and the libraries taken from ``sys.modules`` (a value of theirs means they are loaded).
An array is its dtype, its shape and one blake2b pass over its buffer (no copy when it
is C-contiguous; other layouts are copied a few MiB at a time, in C order); an object
array goes item by item. pandas objects are hashed column by column from their buffers
and public parts, never from pandas' own hash functions, whose results pandas does not
promise to keep.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .value_kinds import Encoding, blake, type_path


def array_kind(t: type) -> Callable[[Encoding, Any], None] | None:
    """The encoder of a numpy or pandas type, or None."""
    root = (t.__module__ or "").split(".")[0]
    if root == "numpy":
        np = sys.modules.get("numpy")
        if np is not None and (t is np.ndarray or t is np.memmap):
            return ndarray
        if np is not None and issubclass(t, np.generic):
            return numpy_scalar
    elif root == "pandas":
        pd = sys.modules.get("pandas")
        if pd is not None and issubclass(t, (pd.DataFrame, pd.Series, pd.Index,
                                             pd.api.extensions.ExtensionArray)):
            return pandas
    return None


def ndarray(walk: Encoding, a: Any) -> None:
    np = sys.modules["numpy"]
    walk.parts.append(b"A")
    walk.text(str(a.dtype.descr) if a.dtype.fields else a.dtype.str)
    walk.parts.append(b"%a;" % (a.shape,))
    if a.dtype.hasobject:
        walk.items(a.flat)
        return
    known = walk.buffers.get(id(a))
    if known is None:  # the array is kept with its digest: its id stays its own
        known = walk.buffers[id(a)] = (a, buffer_digest(np, a))
    walk.parts.append(known[1])


def numpy_scalar(walk: Encoding, v: Any) -> None:
    walk.parts.append(b"a")
    walk.text(v.dtype.str)
    walk.buffer(b"", v.tobytes())


def pandas(walk: Encoding, v: Any) -> None:
    pd = sys.modules["pandas"]
    if isinstance(v, pd.DataFrame):
        walk.parts.append(b"PF%d;" % v.shape[1])
        pandas(walk, v.columns)
        pandas(walk, v.index)
        for i in range(v.shape[1]):
            pandas_values(walk, v.iloc[:, i])
    elif isinstance(v, pd.Series):
        walk.parts.append(b"PS")
        walk.feed(v.name)
        pandas(walk, v.index)
        pandas_values(walk, v)
    elif isinstance(v, pd.RangeIndex):
        walk.parts.append(b"PR%d,%d,%d;" % (v.start, v.stop, v.step))
        walk.feed(v.name)
    elif isinstance(v, pd.MultiIndex):
        walk.parts.append(b"PM")
        walk.feed(list(v.names))
        for level in v.levels:
            pandas(walk, level)
        for codes in v.codes:
            ndarray(walk, codes)
    elif isinstance(v, pd.Index):
        walk.parts.append(b"PI")
        walk.text(type_path(type(v)))
        walk.feed(v.name)
        pandas_values(walk, v)
    else:  # an ExtensionArray
        pandas_array(walk, v)


def pandas_values(walk: Encoding, v: Any) -> None:
    """The values of a Series or Index: numpy buffers as they are, else its array."""
    if isinstance(v.dtype, sys.modules["numpy"].dtype):
        pandas_ndarray(walk, v.to_numpy())
    else:
        pandas_array(walk, v.array)


def pandas_ndarray(walk: Encoding, a: Any) -> None:
    """An ndarray from pandas: a text column is hashed from its joined text (C
    loops), not string by string."""
    pd = sys.modules["pandas"]
    if a.dtype.hasobject and a.ndim == 1 and pd.api.types.infer_dtype(a, skipna=False) == "string":
        np = sys.modules["numpy"]
        h = blake()
        h.update(np.fromiter(map(len, a), dtype=np.int64, count=len(a)))
        h.update("".join(a).encode("utf-8", "surrogatepass"))
        walk.parts.append(b"Ps%d;" % len(a) + h.digest())
    else:
        ndarray(walk, a)


def pandas_array(walk: Encoding, arr: Any) -> None:
    """A pandas ExtensionArray, from its public parts: a categorical's categories and
    codes, the integers behind datetimes and periods, values and mask of nullable
    numbers, else its values as numpy gives them."""
    pd = sys.modules["pandas"]
    np = sys.modules["numpy"]
    walk.parts.append(b"PA")
    walk.text(str(arr.dtype))
    if isinstance(arr, pd.Categorical):
        walk.parts.append(b"%d;" % arr.ordered)
        pandas(walk, arr.categories)
        ndarray(walk, arr.codes)
    elif isinstance(arr, (pd.arrays.DatetimeArray, pd.arrays.TimedeltaArray, pd.arrays.PeriodArray)):
        ndarray(walk, arr.asi8)
    elif isinstance(arr, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)):
        ndarray(walk, arr.isna())
        ndarray(walk, arr.to_numpy(dtype=arr.dtype.numpy_dtype, na_value=arr.dtype.numpy_dtype.type(0)))
    else:
        pandas_ndarray(walk, np.asarray(arr))




def buffer_digest(np: Any, a: Any) -> bytes:
    """Digest of an array's items in C order: its buffer as it is when C-contiguous,
    else copied a few MiB of rows at a time."""
    h = blake()
    if a.nbytes:
        if a.flags.c_contiguous:
            h.update(a.reshape(-1).view(np.uint8))
        else:
            row_bytes = max(1, a[0].nbytes if a.ndim else a.nbytes)
            rows = max(1, (8 << 20) // row_bytes)
            for start in range(0, a.shape[0], rows):
                h.update(np.ascontiguousarray(a[start:start + rows]).reshape(-1).view(np.uint8))
    return h.digest()
