"""Large results through the engine: steps, children and the run's own result, across
processes; stored once per content; read only when the body asks for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import psycopg

from tests.frames import sample_frame
from tests.helpers import execute
from zart_nb import manifest, run, schedule, step, wait

from .helpers import REPO

ROWS = 300_000  # about 15 MB of frame: stored in chunks


def large_body(run_id: str, use: bool, seed: int) -> dict:
    """``tests/engine/scripts/large_body.py`` in a fresh process with its own hash seed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.scripts.large_body", run_id, str(ROWS),
         "1" if use else "0"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": str(seed)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_frame_stored_by_one_process_is_read_by_another_only_when_the_body_asks(zart_env):
    first = large_body("lazy", use=True, seed=1)
    assert first["executed"] == ["count", "frame"] and first["value"]["equal"]

    # The chunks are locked away: a process that read them would block here (and time out).
    with psycopg.connect(zart_env.database_url) as guard:
        guard.execute("LOCK TABLE zart.chunks IN ACCESS EXCLUSIVE MODE")
        second = large_body("lazy", use=False, seed=2)
    assert second["replayed"] == ["count"] and second["executed"] == []

    third = large_body("lazy", use=True, seed=3)
    assert third["replayed"] == ["count", "frame"] and third["executed"] == []
    assert third["value"] == {"rows": ROWS, "equal": True}


def test_two_steps_returning_equal_frames_store_one_payload_and_its_chunks_once(zart_env, sql):
    @step("morning")
    def morning():
        return sample_frame(ROWS, seed=5)

    @step("evening")
    def evening():
        return sample_frame(ROWS, seed=5)

    out = execute(lambda: (len(morning()), len(evening())), name="twice")

    assert out.value == (ROWS, ROWS)
    hashes = {r["result_hash"] for r in sql("SELECT result_hash FROM steps WHERE run_id = 'twice'")}
    assert len(hashes) == 1
    data = sql("SELECT data FROM payloads")
    assert len(data) == 1
    named = manifest.open_manifest(data[0]["data"]).hashes()
    assert sorted(r["hash"] for r in sql("SELECT hash FROM chunks")) == sorted(named)


def noise_array(i: int) -> np.ndarray:
    return np.random.default_rng(i).random(800_000)  # 6.4 MB each


def test_children_and_the_run_itself_return_large_results(zart_env, env):
    env(ZART_WORKERS=1)

    def fan():
        arrays = wait([schedule(noise_array, i) for i in range(3)])
        return {"first": arrays[0], "frame": pd.DataFrame({"x": arrays[1], "y": arrays[2]})}

    out = execute(fan, name="large-fan")

    for i, name in enumerate(["noise_array-0", "noise_array-1", "noise_array-2"]):
        np.testing.assert_array_equal(run("large-fan").step_result(name), noise_array(i))
    stored = run("large-fan").result()
    np.testing.assert_array_equal(stored["first"], noise_array(0))
    pd.testing.assert_frame_equal(stored["frame"], out.value["frame"])
