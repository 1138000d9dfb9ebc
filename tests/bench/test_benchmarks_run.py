"""``python -m benchmarks --quick`` runs and prints JSON (no timing is asserted: CI
machines vary; the figures are published by ``python -m tests.chaos.report``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAST = ["sequential_steps", "commit_statement", "replay_rate", "payload_roundtrip", "restart_to_first_step",
        "replay_memory", "fingerprint_cost", "executor_dask_trivial"]


def test_quick_benchmarks_print_json(db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env["ZART_DATABASE_URL"] = db_url  # the test's database; tables in schema zart_bench
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", *FAST],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["quick"] is True and sorted(report["results"]) == sorted(FAST)
    for name, figures in report["results"].items():
        assert figures, name
        flat = [v for f in figures.values() for v in f.values()] \
            if all(isinstance(f, dict) for f in figures.values()) else list(figures.values())
        assert all(isinstance(v, (int, float, str)) for v in flat), (name, figures)


def test_notebook_restore_quick_prints_json(db_url):
    """The durable kernel's benchmark at its quick size: real kernels, a real database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env["ZART_DATABASE_URL"] = db_url
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "notebook_restore"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)["results"]["notebook_restore"]
    assert figures["cells"] == 3 and figures["restored_cells_s"] > 0 and figures["raw_load_s"] > 0
    assert all(isinstance(v, (int, float)) for v in figures.values()), figures


def test_every_registered_benchmark_can_be_chosen():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "no-such-benchmark"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    for name in [*FAST, "embedded_start", "notebook_restore", "large_results",
                 "large_results_tuning"]:  # the refusal lists every registered benchmark
        assert repr(name) in done.stderr
