"""The step shapes people write replay in a fresh process whatever its hash seed.

A catalogue body (tests/engine/scripts/catalogue_body.py: set literals, frozenset and
sentinel defaults, helpers, closures, partials, methods, regexes, dataclasses, arrays,
frames, dicts built in another order, zoned datetimes, enums, a child …) runs in one
subprocess, then again in fresh subprocesses under other PYTHONHASHSEED values: every
step replays, none runs again (counted in a side-effect file and in the report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from .helpers import REPO, log_lines
from .scripts.catalogue_body import STEP_SHAPES


def run_catalogue(run_id: str, log, seed: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.scripts.catalogue_body", run_id, str(log)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": seed, "ZART_WORKERS": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_no_step_of_the_catalogue_runs_again_under_other_hash_seeds(zart_env, tmp_path):
    log = tmp_path / "effects.log"
    first = run_catalogue("catalogue", log, "0")
    assert sorted(first["executed"]) == sorted(STEP_SHAPES) and not first["replayed"]
    ran = Counter(log_lines(log))
    assert ran == Counter({name.removesuffix("-0"): 1 for name in STEP_SHAPES})

    for seed in ("1", "12345", "random", "0"):
        again = run_catalogue("catalogue", log, seed)
        assert again["executed"] == again["changed"] == again["retried"] == [], (seed, again)
        assert sorted(again["replayed"]) == sorted(STEP_SHAPES), seed
        assert again["result"] == first["result"]
    assert Counter(log_lines(log)) == ran  # nothing ran twice
