"""%%zart_step cells whose inputs are sets, dicts of sets, sentinels, frozensets, dicts
built in the hash seed's order, notebook functions and DataFrames are restored, not run,
after a kernel restart and in new kernels with other PYTHONHASHSEED values; an input
that really changed still makes its cell run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

READERS = ["uses_sets", "uses_sentinel", "uses_frame", "uses_order"]


def notebook(log: Path) -> list[str]:
    def effect(name: str) -> str:
        return f"with open(LOG, 'a') as f:\n    f.write('{name}\\n')\n"

    return [
        "%zart_run fpcells",
        "import numpy as np\nimport pandas as pd",
        f"%%zart_step data\nLOG = {str(log)!r}\n" + effect("data") +
        "TAGS = {'alpha', 'beta', 'gamma', 'delta', 'epsilon'}\n"
        "GROUPS = {'x': {'a', 'b', 'c'}, 'y': {'d', 'e'}, 'z': set()}\n"
        "MISSING = object()\n"
        "FROZEN = frozenset({'p', 'q', 'r', 's'})\n"
        "ORDER = {w: len(w) for w in TAGS}\n"
        "def helper(w):\n    return w in {'k1', 'k2', 'k3'}\n"
        "df = pd.DataFrame({'qty': np.arange(50) % 7, 'sku': [f's{i % 5}' for i in range(50)],\n"
        "                   'kind': pd.Categorical(['a', 'b'] * 25),\n"
        "                   'at': pd.date_range('2024-01-01', periods=50, tz='Europe/Paris')})\n",
        "%%zart_step uses_sets\n" + effect("uses_sets") +
        "n = len(TAGS) + sum(len(v) for v in GROUPS.values()) + len(FROZEN)\n",
        "%%zart_step uses_sentinel\n" + effect("uses_sentinel") +
        "flag = MISSING is not None and 'p' in FROZEN\n",
        "%%zart_step uses_frame\n" + effect("uses_frame") + "total = int(df['qty'].sum())\n",
        "%%zart_step uses_order\n" + effect("uses_order") +
        "m = sum(ORDER.values()) + helper('k1')\n",
    ]


def run_all(kd, cells: list[str]) -> list:
    return [kd.execute(cell, timeout=120, check=True) for cell in cells]


def runs_of(log: Path) -> Counter:
    return Counter(log.read_text().split())


def assert_all_restored(results: list) -> None:
    for name, result in zip(["data", *READERS], results[2:], strict=False):
        assert result.stdout.startswith(f"zart: step cell '{name}' restored"), result.stdout


def test_cells_reading_sets_sentinels_and_frames_are_restored_under_other_hash_seeds(
        kernels, tmp_path: Path):
    log = tmp_path / "ran.txt"
    cells = notebook(log)
    first = kernels(env={"PYTHONHASHSEED": "0"})
    run_all(first, cells)
    assert runs_of(log) == Counter(["data", *READERS])
    values = first.execute("n, flag, total, m", check=True).result

    first.restart()  # a new process: other addresses, the same seed
    assert_all_restored(run_all(first, cells))
    first.shutdown()
    for seed in ("1", "12345"):
        kd = kernels(env={"PYTHONHASHSEED": seed})
        assert_all_restored(run_all(kd, cells))
        assert kd.execute("n, flag, total, m", check=True).result == values
        kd.shutdown()
    assert runs_of(log) == Counter(["data", *READERS])  # nothing ran again

    # an input that changed is still seen: its readers run, the others are restored
    kd = kernels(env={"PYTHONHASHSEED": "random"})
    run_all(kd, cells)
    kd.execute("GROUPS['y'].add('f')", check=True)
    again = [kd.execute(cell, timeout=120, check=True) for cell in cells[3:]]
    assert "ran because an input changed (GROUPS)" in again[0].stdout
    assert all(r.stdout.startswith("zart: step cell") and "restored" in r.stdout for r in again[1:])
    assert runs_of(log) == Counter(["data", *READERS, "uses_sets"])
