"""A durable body made of the step shapes people write, run as a notebook runs (``__main__``).

``python -m tests.engine.scripts.catalogue_body RUN_ID LOG`` executes run RUN_ID with
``replay_completed=True`` (what a notebook does when a cell runs again) and prints one
JSON line: the report (replayed, executed, changed, retried) and the result. Every step
body appends its name to LOG, so that the test counts executions. Executed again in a
fresh process under another PYTHONHASHSEED, every step must replay: their fingerprints
hold set literals, frozensets, sentinels, closures, partials, methods, regexes,
dataclasses, arrays and frames whose order or address depends on the process.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import functools
import json
import re
import sys
import uuid
import zoneinfo
from collections import Counter
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from tests.helpers import execute
from zart_nb import schedule, step, wait

LOG = sys.argv[2] if len(sys.argv) > 2 else "/dev/null"
SENTINEL = object()
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


def note(name: str) -> None:
    with open(LOG, "a") as f:
        f.write(name + "\n")


def is_greek(word):  # a notebook helper holding a set literal
    return word in {"alpha", "beta", "gamma", "delta"}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Order:
    id: int
    tags: set
    meta: dict


@dataclasses.dataclass
class Scorer:
    weights: dict

    def score(self, word):
        return self.weights.get(word, 0) + len({c for c in word})  # noqa: C416 (a shape under test)


class Slotted:
    __slots__ = ("labels", "name")

    def __init__(self, name, labels):
        self.name = name
        self.labels = labels


# -- the steps -------------------------------------------------------------------

@step("set-literal")
def set_literal(word):
    note("set-literal")
    return word in {"alpha", "beta", "gamma"}


@step("frozenset-default")
def frozenset_default(word, allowed=frozenset({"alpha", "omega", "kappa"})):
    note("frozenset-default")
    return word in allowed


@step("sentinel-default")
def sentinel_default(word, missing=SENTINEL):
    note("sentinel-default")
    return missing is SENTINEL


@step("helper-set")
def helper_set(word):
    note("helper-set")
    return is_greek(word)


@step("set-arg")
def set_arg(words):
    note("set-arg")
    return sorted(words)


@step("dict-of-sets-arg")
def dict_of_sets_arg(groups):
    note("dict-of-sets-arg")
    return {k: len(v) for k, v in sorted(groups.items())}


@step("comprehension-lambda")
def comprehension_lambda(words):
    note("comprehension-lambda")
    keep = lambda w: w[0] in {"a", "b", "g"}  # noqa: E731
    return [[c for c in w if c in {"a", "e"}] for w in words if keep(w)]


def weigh(word, weights):
    return weights.get(word, 0)


@step("partial-arg")
def partial_arg(fn, word):
    note("partial-arg")
    return fn(word)


@step("bound-method-arg")
def bound_method_arg(fn, word):
    note("bound-method-arg")
    return fn(word)


@step("regex-default")
def regex_default(text, pattern=re.compile(r"(alpha|beta)\d+", re.IGNORECASE)):
    note("regex-default")
    return bool(pattern.match(text))


@step("dataclass-arg")
def dataclass_arg(order):
    note("dataclass-arg")
    return order.id


@step("numpy-arg")
def numpy_arg(array):
    note("numpy-arg")
    return float(array.sum())


@step("dataframe-arg")
def dataframe_arg(frame):
    note("dataframe-arg")
    return int(frame["qty"].sum())


@step("dict-insertion-order")
def dict_insertion_order(lengths):
    note("dict-insertion-order")
    return sum(lengths.values())


@step("datetime-tz-arg")
def datetime_tz_arg(when):
    note("datetime-tz-arg")
    return when.isoformat()


@step("enum-arg")
def enum_arg(color):
    note("enum-arg")
    return color.value


def make_closure_step():
    vowels = {"a", "e", "i", "o", "u"}

    @step("closure-set")
    def closure_set(word):
        note("closure-set")
        return sum(c in vowels for c in word)

    return closure_set


closure_set = make_closure_step()


@step("kwonly-dict-of-sets")
def kwonly_dict_of_sets(word, *, table={"x": {"p", "q"}, "y": frozenset({"r", "s"})}):  # noqa: B006
    note("kwonly-dict-of-sets")
    return len(table)


def _partial_target(word, vocabulary):
    note("partial-step")
    return word in vocabulary


partial_step = step("partial-step")(functools.partial(_partial_target, vocabulary={"alpha", "tau"}))


class WordCounter:
    def __init__(self):
        self.seen = {"start"}

    def count(self, word):
        note("method-step")
        return len(word) + len({"one", "two"})


method_step = step("method-step")(WordCounter().count)


@step("class-arg")
def class_arg(kind):
    note("class-arg")
    return kind.__name__


@step("slots-arg")
def slots_arg(obj):
    note("slots-arg")
    return obj.name


@step("frozenset-keys-arg")
def frozenset_keys_arg(table):
    note("frozenset-keys-arg")
    return len(table)


@step("mixed-set-arg")
def mixed_set_arg(items):
    note("mixed-set-arg")
    return len(items)


@step("decimal-uuid-path-arg")
def decimal_uuid_path_arg(amount, ident, path):
    note("decimal-uuid-path-arg")
    return str(amount)


@step("object-array-arg")
def object_array_arg(array):
    note("object-array-arg")
    return len(array)


@step("lambda-default")
def lambda_default(word, test=lambda w: w in {"alpha", "zeta"}):
    note("lambda-default")
    return test(word)


@step("counter-arg")
def counter_arg(counts):
    note("counter-arg")
    return counts.most_common(1)[0][1]


@step("sentinel-in-tuple-default")
def sentinel_in_tuple_default(word, options=(SENTINEL, {"k": {"v1", "v2"}})):
    note("sentinel-in-tuple-default")
    return options[0] is SENTINEL


@step("child-set-arg")
def child_in_worker(words):
    note("child-set-arg")
    return sorted(words)


STEP_SHAPES = [
    "set-literal", "frozenset-default", "sentinel-default", "helper-set", "set-arg",
    "dict-of-sets-arg", "comprehension-lambda", "partial-arg", "bound-method-arg",
    "regex-default", "dataclass-arg", "numpy-arg", "dataframe-arg", "dict-insertion-order",
    "datetime-tz-arg", "enum-arg", "closure-set", "kwonly-dict-of-sets", "partial-step",
    "method-step", "class-arg", "slots-arg", "frozenset-keys-arg", "mixed-set-arg",
    "decimal-uuid-path-arg", "object-array-arg", "lambda-default", "counter-arg",
    "sentinel-in-tuple-default", "child-set-arg-0",
]


def frame():
    n = 1000
    return pd.DataFrame({
        "id": np.arange(n), "price": np.linspace(1.0, 2.0, n), "qty": np.arange(n) % 7,
        "sku": [f"sku-{i % 13}" for i in range(n)],
        "kind": pd.Categorical([WORDS[i % 3] for i in range(n)]),
        "at": pd.date_range("2024-03-30", periods=n, freq="h", tz="Europe/Paris"),
    })


def body():
    words = set(WORDS)  # iterated below: its order follows the hash seed
    scorer = Scorer({w: i for i, w in enumerate(sorted(words))})
    out = [
        set_literal("beta"),
        frozenset_default("omega"),
        sentinel_default("x"),
        helper_set("gamma"),
        set_arg(words),
        dict_of_sets_arg({w[0]: {w, w.upper()} for w in words}),
        comprehension_lambda(sorted(words)),
        partial_arg(functools.partial(weigh, weights={w: len(w) for w in words}), "beta"),
        bound_method_arg(scorer.score, "delta"),
        regex_default("Alpha42"),
        dataclass_arg(Order(7, {"rush", "gift", "fragile"}, {"by": {"mail", "air"}})),
        numpy_arg(np.arange(10_000, dtype=np.float64).reshape(100, 100)),
        dataframe_arg(frame()),
        dict_insertion_order({w: len(w) for w in words}),
        datetime_tz_arg(datetime.datetime(2024, 10, 27, 2, 30, fold=1,
                                          tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))),
        enum_arg(Color.BLUE),
        closure_set("epsilon"),
        kwonly_dict_of_sets("x"),
        partial_step("tau"),
        method_step("words"),
        class_arg(Order),
        slots_arg(Slotted("s", frozenset(words))),
        frozenset_keys_arg({frozenset({"a", "b"}): 1, frozenset({"c", "d", "e"}): 2}),
        mixed_set_arg({1, "one", (2, "two"), 3.5, None, frozenset({"x"})}),
        decimal_uuid_path_arg(decimal.Decimal("12.50"), uuid.UUID(int=42),
                              PurePosixPath("/data/in.csv")),
        object_array_arg(np.array([set(words), {"k": frozenset(words)}, None], dtype=object)),
        lambda_default("zeta"),
        counter_arg(Counter(w[0] for w in words)),
        sentinel_in_tuple_default("x"),
    ]
    out.append(wait(schedule(child_in_worker, words)))
    return out


def main() -> int:
    outcome = execute(body, name="catalogue", run_id=sys.argv[1], replay_completed=True)
    report = outcome.report
    print(json.dumps({"replayed": report.replayed, "executed": report.executed,
                      "changed": report.changed, "retried": report.retried,
                      "result": repr(outcome.value)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
