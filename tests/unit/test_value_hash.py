"""Value fingerprints: equal values hash alike whatever their order, sharing or process;
different values differ; what has no canonical form is refused (arguments) or counted
by its type (cell inputs)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import math
import pathlib
import re
import subprocess
import sys
import uuid
import zoneinfo
from pathlib import Path

import pytest

from zart_nb.engine.fingerprint import SCHEME, arguments_fingerprint, value_fingerprint
from zart_nb.engine.value_hash import ValueHasher, Walk
from zart_nb.errors import PayloadError

REPO = Path(__file__).resolve().parents[2]
fp = value_fingerprint


@dataclasses.dataclass
class Point:
    x: int
    tags: set = dataclasses.field(default_factory=set)


class Slotted:
    __slots__ = ("__b", "a")

    def __init__(self, a, b=None):
        self.a = a
        if b is not None:
            self.__b = b


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Node:
    def __init__(self, name):
        self.name = name
        self.children = []


def test_a_fingerprint_carries_its_scheme():
    assert fp(1)[0] == SCHEME and len(fp(1)) == 17
    assert arguments_fingerprint((1,), {}, kind="step", name="s")[0] == SCHEME


@pytest.mark.parametrize(("a", "b"), [
    (1, 1.0), (1, True), (0, False), (0.0, -0.0), (0, None), ("1", 1), ("a", b"a"),
    (b"a", bytearray(b"a")), (b"a", memoryview(b"a")), ((1,), [1]), (set(), frozenset()),
    ({}, set()), ((), []), ((1, 2), (2, 1)), ([1, [2]], [[1], 2]), ({"a": 1}, {"a": 1.0}),
    ({"a": 1}, {"b": 1}), ({1: "a"}, {"1": "a"}), ({"a", "b"}, {"a", "c"}), (1 + 2j, 1 + 3j),
    (decimal.Decimal("1.0"), decimal.Decimal("1.00")), (Color.RED, Color.BLUE), (Color.RED, 1),
    (range(3), range(4)), (slice(1, 2), slice(1, 3)), (pathlib.PurePosixPath("a"),
                                                      pathlib.PureWindowsPath("a")),
    (uuid.UUID(int=1), uuid.UUID(int=2)), (Point(1), Point(2)), (Point(1, {"a"}), Point(1, {"b"})),
    (Slotted(1), Slotted(1, 2)), (Slotted(1, 2), Slotted(1, 3)),
    (re.compile("a"), re.compile("a", re.I)), (re.compile("a"), re.compile("b")),
    (collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)),
    (collections.OrderedDict(a=1), {"a": 1}), (collections.Counter("ab"), collections.Counter("abb")),
    (collections.defaultdict(list), collections.defaultdict(set)), (10 ** 5000, 10 ** 5000 + 1),
    ("é", "e\u0301"), ("\ud800", "\ud801"), (datetime.timedelta(1), datetime.timedelta(0, 1)),
    (datetime.date(2024, 1, 1), datetime.datetime(2024, 1, 1)), (..., None), (len, max),
    (math, collections), (int, float),
], ids=lambda v: type(v).__name__)
def test_different_values_differ(a, b):
    assert fp(a) != fp(b)


@pytest.mark.parametrize("make", [
    lambda: {"alpha", "beta", "gamma", 1, 2.5, (3, "x"), frozenset({"p"})},
    lambda: {"k": {"a", "b"}, "j": [frozenset({"x", "y"})], 3: None},
    lambda: [Point(1, {"z", "y", "x"}), Slotted({"s", "t"}, 2)],
    lambda: (float("nan"), -0.0, 10 ** 100, -(10 ** 5000), "\ud800", b"\x00" * 20000),
    lambda: datetime.datetime(2024, 3, 31, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    lambda: (decimal.Decimal("-0.00"), uuid.UUID(int=7), Path("/tmp/x"), range(1, 9, 2),
             slice(None, 3), Color.BLUE, re.compile(r"\d+", re.M), b"x", bytearray(b"y")),
], ids=["sets", "dict-of-sets", "objects", "scalars", "datetime", "others"])
def test_equal_values_built_apart_hash_alike(make):
    assert fp(make()) == fp(make())


def test_set_and_dict_order_does_not_count():
    words = [f"w{i}" for i in range(50)]
    assert fp(set(words)) == fp(set(reversed(words)))  # noqa: C414 (built in another order)
    assert fp({w: i for i, w in enumerate(words)}) == fp(dict(reversed(
        [(w, i) for i, w in enumerate(words)])))
    mixed = [1, "a", (2, "b"), None, 2.5]
    assert fp({k: str(k) for k in mixed}) == fp({k: str(k) for k in reversed(mixed)})
    assert fp(frozenset(mixed)) == fp(frozenset(reversed(mixed)))
    assert fp(collections.Counter(words)) == fp(collections.Counter(reversed(words)))


def test_nan_is_one_value_and_negative_zero_another():
    assert fp(float("nan")) == fp(-float("nan")) == fp(math.inf - math.inf)
    assert fp([0.0]) != fp([-0.0])


def test_shared_objects_hash_like_copies():
    row = {"region": "a", "tags": {"x", "y"}}
    shared = [row, row, (row,)]
    copies = [{"region": "a", "tags": {"y", "x"}}, {"region": "a", "tags": {"x", "y"}},
              ({"region": "a", "tags": {"x", "y"}},)]
    assert fp(shared) == fp(copies)
    p = Point(1, {"a"})
    assert fp({"one": p, "two": p}) == fp({"one": Point(1, {"a"}), "two": Point(1, {"a"})})


def test_cycles_terminate_and_are_told_apart():
    a: list = []
    a.append(a)
    b: list = []
    b.append(b)
    assert fp(a) == fp(b)
    assert fp(a) != fp([[]])
    d: dict = {"k": 1}
    d["self"] = d
    e: dict = {"self": None, "k": 1}
    e["self"] = e
    assert fp(d) == fp(e)
    parent = Node("p")
    parent.children.append(parent)
    other = Node("p")
    other.children.append(other)
    assert fp(parent) == fp(other) != fp(Node("p"))
    deeper: list = [[]]
    deeper[0].append(deeper)  # points two levels up, not one
    assert fp(deeper) != fp(a)


def test_time_zones_and_folds_count():
    paris = datetime.datetime(2024, 6, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    fixed = datetime.datetime(2024, 6, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert paris == fixed and fp(paris) != fp(fixed)
    assert fp(paris.replace(tzinfo=None)) != fp(paris)
    assert fp(paris.replace(fold=1)) != fp(paris)
    assert fp(datetime.time(1, tzinfo=datetime.timezone.utc)) != fp(datetime.time(1))


def test_functions_by_their_code_partials_and_methods_by_their_parts():
    def make(offset):
        return lambda x: x + offset

    assert fp(make(1)) == fp(make(1)) != fp(make(2))
    assert fp(functools.partial(max, 1)) == fp(functools.partial(max, 1)) != fp(functools.partial(max, 2))
    assert fp(functools.partial(max, key=len)) != fp(functools.partial(max, key=abs))
    assert fp(Point(1).__eq__) == fp(Point(1).__eq__) != fp(Point(2).__eq__)
    assert fp([].append) == fp([].append) != fp([1].append)


def test_arguments_without_a_canonical_form_are_refused_with_their_path():
    gen = (i for i in range(3))
    with pytest.raises(PayloadError) as caught:
        arguments_fingerprint((1, [2, gen]), {}, kind="step", name="s")
    assert str(caught.value) == "step 's': arguments[0][1][1]: cannot pickle 'generator'"

    import threading
    with pytest.raises(PayloadError, match=r"^step 's': arguments\[1\]\['lock'\]: cannot pickle "
                                          r"'_thread.lock'$"):
        arguments_fingerprint((), {"lock": threading.Lock()}, kind="step", name="s")
    node = Node("n")
    node.children.append(gen)
    with pytest.raises(PayloadError, match=r"arguments\[0\]\[0\]\.children\[0\]: cannot pickle"):
        arguments_fingerprint((node,), {}, kind="step", name="s")


def test_cell_inputs_count_what_has_no_canonical_form_by_its_type():
    import threading

    assert fp(threading.Lock()) == fp(threading.Lock()) != fp(threading.RLock())
    assert fp({"lock": threading.Lock(), "n": 1}) != fp({"lock": threading.Lock(), "n": 2})
    assert fp(object()) == fp(object())  # a sentinel is the same sentinel in every process


@pytest.mark.parametrize("plain", [
    ((1, "a", 2.5, None, True, [1, {"k": "v"}]), {"b": (1,), "a": {}}),
    ((), {}), ((7,), {}), (({"z", "y", "x"}, frozenset({3, 1, 2}), set()), {"k": [{"s"}]}),
    ((-(10 ** 5000), "\ud800", float("nan"), -0.0), {}),
])
def test_the_shortcut_for_plain_arguments_encodes_as_the_general_walk(plain):
    walk = Walk(ValueHasher(), strict=True)
    walk.feed(plain)
    assert (arguments_fingerprint(*plain, kind="step", name="s") == fp(plain)
            == bytes([SCHEME]) + walk.finish())


def test_the_common_call_is_hashed_like_any_value():
    def fp_of(args, kwargs):
        return arguments_fingerprint(args, kwargs, kind="step", name="s")

    assert fp_of((1, 2), {}) != fp_of((1, 2.0), {})
    assert fp_of((1,), {"a": 1}) != fp_of((1, 1), {})


SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from tests.unit.test_value_hash import Point, Slotted, Color
from zart_nb.engine.fingerprint import value_fingerprint
values = [{{"alpha", "beta", "gamma", "delta"}}, {{k: {{k, k * 2}} for k in ("x", "y", "z")}},
          frozenset({{("a", 1), ("b", 2)}}), Point(3, {{"p", "q", "r"}}), Slotted({{"s", "t"}}),
          Color.RED, {{1, "one", (2, "two")}}, object()]
print(" ".join(value_fingerprint(v).hex() for v in values))
"""


def test_values_hash_alike_in_processes_with_other_hash_seeds():
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        done = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO))], cwd=REPO,
                              capture_output=True, text=True, check=True, timeout=60,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs


# -- numpy and pandas --------------------------------------------------------------

def test_numpy_arrays_by_dtype_shape_and_buffer():
    np = pytest.importorskip("numpy")
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    assert fp(a) == fp(a.copy()) == fp(np.asfortranarray(a))  # memory order does not count
    assert fp(a[:, ::2]) == fp(np.ascontiguousarray(a[:, ::2]))  # nor strides
    assert fp(a) != fp(a.reshape(6, 4)) != fp(a.astype(np.float32))
    changed = a.copy()
    changed[3, 5] = -1
    assert fp(changed) != fp(a)
    assert fp(np.float64(1.0)) != fp(1.0) and fp(np.int64(1)) != fp(np.int32(1))
    objects = np.array([{"b", "a"}, None, "x"], dtype=object)
    assert fp(objects) == fp(np.array([{"a", "b"}, None, "x"], dtype=object))
    big = np.zeros(3 << 20, dtype=np.uint8)
    shared = {"left": big, "right": big}
    assert fp(shared) == fp({"left": big.copy(), "right": big.copy()})
    day = "datetime64[D]"
    assert fp(np.array("2024-01-01", dtype=day)) != fp(np.array("2024-01-02", dtype=day))


def test_pandas_frames_series_and_indexes():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")

    def frame():
        return pd.DataFrame({
            "id": np.arange(6), "price": np.linspace(0, 1, 6), "name": list("abcdef"),
            "kind": pd.Categorical(list("xyxyxz")),
            "at": pd.date_range("2024-01-01", periods=6, tz="Europe/Paris"),
            "n": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
            "mixed": [1, "a", None, 2.5, {"s", "t"}, (1,)]})

    df = frame()
    assert fp(df) == fp(frame()) == fp(df.copy())
    for column, value in [("price", 9.5), ("name", "z"), ("kind", "y"), ("n", 7), ("mixed", "b"),
                          ("at", pd.Timestamp("2020-01-01", tz="Europe/Paris"))]:
        changed = frame()
        changed.loc[2, column] = value
        assert fp(changed) != fp(df), column
    assert fp(df[["price", "id"]]) != fp(df[["id", "price"]])
    assert fp(df.set_axis(list("ghijkl"))) != fp(df)
    assert fp(frame().assign(at=lambda f: f["at"].dt.tz_convert("UTC"))) != fp(df)
    assert fp(df["price"]) != fp(df["price"].rename("cost"))
    indexed = df.set_index(["name", "id"])
    assert fp(indexed) == fp(frame().set_index(["name", "id"])) != fp(df.set_index(["id", "name"]))
    assert fp(pd.Categorical(["a", "b"], ordered=True)) != fp(pd.Categorical(["a", "b"]))
