"""Golden payloads and fingerprints: what an older zart-nb stored must still read the same.

tests/golden/payloads.json holds signed envelopes of the catalogue's values
(tests/golden/catalogue.py) and tests/golden/fingerprints.json their fingerprints and
those of the catalogue's functions, as ``python -m tests.golden.generate`` wrote them.
Users' journals hold such payloads and fingerprints: if this test fails, a change made
the current code read a stored payload differently or hash a value or function
differently, and replaying their runs would re-execute completed steps or refuse their
results. Such a change must be a deliberate migration: a new payload format version or
fingerprint scheme (``codec.FORMAT_VERSION``, ``engine.fingerprint.SCHEME``) with what
replay does with the old one decided and written down in docs/decisions.md, and only
then the golden files regenerated. Never regenerate them to make this test pass.

Code fingerprints follow the bytecode, and payloads refuse another Python (DESIGN.md
2.9): under another Python than the golden files' these parts check that refusal, and
the files are regenerated when the project moves to that Python.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from zart_nb import codec
from zart_nb.config import Settings, configure
from zart_nb.engine.fingerprint import SCHEME, code_fingerprint, value_fingerprint
from zart_nb.errors import PayloadError

from . import catalogue
from .generate import FINGERPRINTS, PAYLOADS, PYTHON, SECRET

STORED = json.loads(FINGERPRINTS.read_text())
STORED_PAYLOADS = json.loads(PAYLOADS.read_text())
SAME_PYTHON = STORED["python"] == PYTHON


@pytest.fixture(autouse=True)
def test_secret():
    configure(Settings(secret=SECRET))


def same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return True
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and all(
            x == y for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=False))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_the_catalogue_is_the_one_the_files_were_written_from():
    assert STORED["scheme"] == SCHEME
    assert sorted(STORED["values"]) == sorted(catalogue.values())
    assert sorted(STORED["code"]) == sorted(catalogue.functions())
    assert sorted(STORED_PAYLOADS["payloads"]) == sorted(catalogue.payloads())
    assert STORED_PAYLOADS["format"] == codec.FORMAT_VERSION


@pytest.mark.parametrize("name", sorted(STORED["values"]))
def test_values_keep_their_fingerprints(name):
    assert value_fingerprint(catalogue.values()[name]).hex() == STORED["values"][name]


@pytest.mark.parametrize("name", sorted(STORED["code"]))
def test_code_keeps_its_fingerprints(name):
    if not SAME_PYTHON:
        pytest.skip(f"code fingerprints follow Python {STORED['python']}'s bytecode; this is "
                    f"Python {PYTHON}, whose payloads are refused anyway")
    assert code_fingerprint(catalogue.functions()[name]).hex() == STORED["code"][name]


@pytest.mark.parametrize("name", sorted(STORED_PAYLOADS["payloads"]))
def test_stored_payloads_decode_to_the_catalogue(name):
    data = bytes.fromhex(STORED_PAYLOADS["payloads"][name])
    if not SAME_PYTHON:
        with pytest.raises(PayloadError, match=f"written by Python {STORED_PAYLOADS['python']}"):
            codec.decode(data)
        return
    value = codec.decode(data)
    expected = catalogue.payloads()[name]
    if callable(expected):
        assert value(3) == expected(3) and value("t2") == expected("t2")
    else:
        assert same(expected, value)
        # and a value loaded from the journal hashes as the one that was stored
        assert value_fingerprint(value) == value_fingerprint(expected)


def test_the_fingerprints_do_not_depend_on_the_hash_seed():
    for seed in ("1", "random"):
        done = subprocess.run([sys.executable, "-m", "tests.golden.generate", "--print"],
                              capture_output=True, text=True, check=True, timeout=120,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
                              cwd=FINGERPRINTS.parents[2])
        assert json.loads(done.stdout) == STORED
