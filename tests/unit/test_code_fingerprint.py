"""Code fingerprints: the structure of the code and the values it holds, never the
process, the file name or the line; computed once per function while nothing it
depends on is replaced. And what replay does with a fingerprint of the old scheme."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zart_nb.engine.execution import what_changed
from zart_nb.engine.fingerprint import SCHEME, code_fingerprint, comparable, scheme_of
from zart_nb.store.records import JournalEntry

REPO = Path(__file__).resolve().parents[2]


def compiled(source: str, filename: str = "<cell-1>", namespace: dict | None = None) -> dict:
    """Execute ``source`` as a notebook cell would be (module ``__main__``)."""
    ns = {"__name__": "__main__"} if namespace is None else namespace
    exec(compile(source, filename, "exec"), ns)
    return ns


SHAPES = {
    "set literal": "def f(w):\n    return w in {'alpha', 'beta', 'gamma'}\n",
    "frozenset default": "def f(w, allowed=frozenset({'a', 'b', 'c'})):\n    return w in allowed\n",
    "sentinel default": "MISSING = object()\ndef f(w, d=MISSING):\n    return d is MISSING\n",
    "regex default": "import re\ndef f(w, p=re.compile('a+b', re.I)):\n    return p.match(w)\n",
    "kw-only dict of sets": "def f(*, groups={'x': {'a', 'b'}, 'y': {'c'}}):\n    return groups\n",
    "helper with a set": "def helper(w):\n    return w in {'q', 'r', 's'}\n"
                         "def f(w):\n    return helper(w)\n",
    "nested comprehension and lambda": (
        "def f(ws):\n    key = lambda w: w in {'k1', 'k2'}\n"
        "    return [[c for c in w if c in {'a', 'e'}] for w in ws if key(w)]\n"),
    "closure over a set": "def make():\n    tags = {'t1', 't2', 't3'}\n"
                          "    def f(w):\n        return w in tags\n    return f\nf = make()\n",
    "notebook class": "class Model:\n    labels = ('a', 'b')\n    def fit(self, x):\n"
                      "        return {'fitted', 'yes'}\n"
                      "def f(x):\n    return Model().fit(x)\n",
    "partial": "import functools\ndef g(w, allowed):\n    return w in allowed\n"
               "f = functools.partial(g, allowed={'m', 'n'})\n",
    "bound method": "class C:\n    def run(self, w):\n        return w in {'u', 'v'}\nf = C().run\n",
    "recursive closure": "def make():\n    def f(n):\n        return f(n - 1) if n else {'z', 'w'}\n"
                         "    return f\nf = make()\n",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_code_fingerprint_is_the_same_in_processes_with_other_hash_seeds(shape):
    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              "from zart_nb.engine.fingerprint import code_fingerprint\n"
              f"exec(compile({SHAPES[shape]!r}, '<cell>', 'exec'))\n"
              "print(code_fingerprint(f).hex())\n")
    seen = set()
    for seed in ("0", "1", "12345", "random"):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, timeout=60, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        seen.add(done.stdout.strip())
    assert len(seen) == 1, seen
    # and in this process, as the same source compiled from another cell at another line
    again = compiled("\n" * 17 + SHAPES[shape], "/tmp/ipykernel_99/cell-7.py")
    assert code_fingerprint(again["f"]).hex() in seen
    assert scheme_of(code_fingerprint(again["f"])) == SCHEME


@pytest.mark.parametrize(("before", "after"), [
    ("def f(w):\n    return w in {'a', 'b'}\n", "def f(w):\n    return w in {'a', 'c'}\n"),
    ("def f(w, x=frozenset({1})):\n    return x\n", "def f(w, x=frozenset({2})):\n    return x\n"),
    ("def f(w, *, x=1):\n    return x\n", "def f(w, *, x=1.0):\n    return x\n"),
    ("A = object()\nB = object()\ndef f(w, x=A):\n    return x\n",
     "A = object()\nB = object()\ndef f(w, x=B):\n    return x\n"),
    ("import re\ndef f(p=re.compile('a')):\n    return p\n",
     "import re\ndef f(p=re.compile('a', re.M)):\n    return p\n"),
    ("def f(xs):\n    return [x for x in xs]\n", "def f(xs):\n    return [x + 0 for x in xs]\n"),
    ("def f(*args):\n    return args\n", "def f(args):\n    return args\n"),
    ("def f():\n    yield 1\n", "def f():\n    return 1\n"),
    ("def f():\n    try:\n        return 1\n    except ValueError:\n        return 2\n",
     "def f():\n    try:\n        return 1\n    except KeyError:\n        return 2\n"),
    ("def make(n):\n    def f():\n        return n\n    return f\nf = make(1)\n",
     "def make(n):\n    def f():\n        return n\n    return f\nf = make(2)\n"),
    ("def h():\n    return 1\ndef f():\n    return h()\n",
     "def h():\n    return 2\ndef f():\n    return h()\n"),
    ("class M:\n    def go(self):\n        return 1\ndef f():\n    return M().go()\n",
     "class M:\n    def go(self):\n        return 2\ndef f():\n    return M().go()\n"),
    ("class M:\n    limit = 5\ndef f():\n    return M.limit\n",
     "class M:\n    limit = 6\ndef f():\n    return M.limit\n"),
    ("import functools\ndef g(a):\n    return a\nf = functools.partial(g, 1)\n",
     "import functools\ndef g(a):\n    return a\nf = functools.partial(g, 2)\n"),
], ids=["set literal", "frozenset default", "kw default 1 vs 1.0", "another sentinel",
        "regex flags", "comprehension", "varargs flag", "generator flag", "exception table",
        "closure cell", "helper", "notebook class method", "notebook class attribute", "partial"])
def test_a_change_in_the_code_or_its_values_is_a_change(before, after):
    assert code_fingerprint(compiled(before)["f"]) != code_fingerprint(compiled(after)["f"])


def test_library_code_is_named_not_hashed():
    ns = compiled("import json\ndef f(x):\n    return json.dumps(x)\n")
    assert code_fingerprint(ns["f"]) == code_fingerprint(compiled(
        "import json\ndef f(x):\n    return json.dumps(x)\n")["f"])
    assert code_fingerprint(functools.partial(max, 1)) != code_fingerprint(functools.partial(min, 1))
    assert code_fingerprint(len) != code_fingerprint(max)


def test_the_fingerprint_is_cached_until_code_defaults_or_a_helper_change():
    ns = compiled("def h(x):\n    return x\ndef f(x, k=1):\n    return h(x)\n")
    f = ns["f"]
    first = code_fingerprint(f)
    assert code_fingerprint(f) is first  # computed once

    f.__defaults__ = (2,)
    second = code_fingerprint(f)
    assert second != first

    ns["h"] = compiled("def h(x):\n    return x + 1\n")["h"]  # the helper rebound
    third = code_fingerprint(f)
    assert third not in (first, second)

    ns["h"].__code__ = compiled("def h(x):\n    return x + 2\n")["h"].__code__  # replaced in place
    assert code_fingerprint(f) not in (first, second, third)

    f.__code__ = compiled("def f(x, k=1):\n    return -h(x)\n")["f"].__code__
    assert code_fingerprint(f) != third


def test_a_sentinel_default_is_named_by_its_global():
    one = compiled("MISSING = object()\ndef f(x=MISSING):\n    return x\n")
    two = compiled("MISSING = object()\ndef f(x=MISSING):\n    return x\n")
    assert one["MISSING"] is not two["MISSING"]
    assert code_fingerprint(one["f"]) == code_fingerprint(two["f"])


def test_compiled_regex_and_methods_as_steps():
    ns = compiled("class C:\n    def run(self, w):\n        return w\n")
    a, b = ns["C"](), ns["C"]()
    assert code_fingerprint(a.run) == code_fingerprint(b.run)  # class and function, not the object
    assert code_fingerprint(re.compile("a").match) != code_fingerprint(re.compile("a").search)


# -- the scheme: a fingerprint written before this scheme --------------------------

class entry:
    """A journal entry recorded with these fingerprints; ``.change`` asks what changed."""

    def __init__(self, code_fp: bytes | None, args_fp: bytes | None) -> None:
        self.recorded = JournalEntry(name="s", kind="step", status="completed", seq=1,
                                     code_fp=code_fp, args_fp=args_fp, result=None,
                                     result_hash=None, error=None, error_kind=None,
                                     error_payload=None, traceback=None, attempts=1,
                                     not_before=None)

    def change(self, code_fp: bytes, args_fp: bytes, inputs: str = "arguments") -> str | None:
        return what_changed(self.recorded, code_fp, args_fp, inputs)


def test_an_old_scheme_fingerprint_counts_as_unchanged():
    new_code, new_args = bytes([SCHEME]) + b"c" * 16, bytes([SCHEME]) + b"a" * 16
    old = b"o" * 16  # scheme 1: a bare 16-byte hash
    assert scheme_of(old) == 1 and not comparable(old, new_code)
    assert entry(old, old).change(new_code, new_args) is None
    assert entry(old, new_args).change(new_code, new_args) is None
    assert entry(new_code, old).change(new_code, new_args) is None
    # fingerprints of one scheme are compared
    assert entry(bytes([SCHEME]) + b"x" * 16, new_args).change(new_code, new_args) == "code"
    assert entry(new_code, bytes([SCHEME]) + b"y" * 16).change(new_code, new_args) == "arguments"
    # a step cell's code (its text hash) keeps its 16-byte form: compared as before
    assert entry(b"t" * 16, new_args).change(b"u" * 16, new_args, inputs="inputs") == "code"
    assert entry(b"t" * 16, old).change(b"t" * 16, new_args, inputs="inputs") is None
