"""The durable kernel's "Restart and Run All", in a real kernel driven like JupyterLab.

notebook_restore: a notebook of 10 cells (quick: 3), each computing for 2 s (quick:
0.2 s) and binding about 50 MB (quick: 5 MB): a frame, an array and a fitted
scikit-learn model, the frame made from the previous cell's. It is executed in real
kernels (jupyter_client, cell ids sent as JupyterLab sends them), timed from this side:
``plain_run_all_s``, a plain kernel computing every cell; ``durable_first_run_s``, the
same with automatic step cells on (every cell runs and is checkpointed);
``restore_run_all_s``, the durable kernel restarted and every cell executed again, each
restored (its first cell, the imports, takes ``imports_cell_s`` and is left out of the
comparison); ``raw_load_s``, a fresh kernel that imported the same libraries reading
the same stored pickles from PostgreSQL (the journal, then one SELECT per cell) and
unpickling them, without any check: the floor a restore could reach. ``restore_over_raw_load`` is the
ratio of the restored cells' time to it (aim: 1.2);
``checkpoint_overhead_s_per_cell`` is the median, over cells, of a durable cell's time
minus the same cell's in the plain kernel. ``mutation_check_1gb_s`` is what seeing a
change in place costs a cell that reads a 1 GB frame and leaves it unchanged: the
frame's fingerprint taken again after the cell (the one before is its input
fingerprint, which every step cell takes), in this process; ``frame_sum_1gb_s``, a
``df.sum()`` of that frame, gives the scale (--quick: 64 MB). Times are medians of 3
repeats (1 with --quick).
"""

from __future__ import annotations

import os
import queue
import statistics
import tempfile
import time
from typing import Any

from .common import Context, Figures, benchmark

MB = 1 << 20
REPEATS, QUICK_REPEATS = 3, 1
DURABLE = "%load_ext zart_nb\n%zart_auto on\n%zart_run {run}"


def cells(n: int, seconds: float, mb: int) -> list[str]:
    """The notebook: an imports cell, then ``n`` cells of ``seconds`` of work binding ``mb``."""
    rows = mb * MB // 2 // (8 * 8)  # half the bytes in a frame of 8 float columns
    out = ["import time\nimport numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import Ridge\n"
           "def work(seconds):\n    deadline = time.perf_counter() + seconds\n"
           "    m = np.eye(64)\n    while time.perf_counter() < deadline:\n        m = np.tanh(m @ m)\n"
           f"frame_0 = pd.DataFrame(np.zeros(({rows}, 8)), columns=list('abcdefgh'))"]
    for i in range(1, n + 1):
        out.append(
            f"work({seconds})\nrng = np.random.default_rng({i})\n"
            f"frame_{i} = frame_{i - 1} * 0.5 + rng.normal(size=frame_{i - 1}.shape)\n"
            f"array_{i} = rng.normal(size={mb * MB // 2 // 8})\n"
            f"model_{i} = Ridge().fit(frame_{i}[list('abcdefg')].to_numpy()[:10000], "
            f"frame_{i}['h'].to_numpy()[:10000])\n"
            f"print('cell {i}', round(float(frame_{i}['a'].mean()), 4))")
    return out


# The raw load: the same cells' pickles (the variables each checkpoint holds) kept in a
# plain bytea column (STORAGE EXTERNAL, as large_results' raw side), one SELECT and
# pickle.loads each. RAW_SETUP copies them there (pickled as zart-nb pickles them, by
# cloudpickle), untimed, through zart-nb's own reads.
RAW_SETUP = """
import cloudpickle, psycopg
from zart_nb.config import settings
from zart_nb.store import journal, payloads, runs
with psycopg.connect(settings().database_url, options=f"-c search_path={{settings().schema}}",
                     autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS raw_cells (name text PRIMARY KEY, data bytea)")
    conn.execute("ALTER TABLE raw_cells ALTER COLUMN data SET STORAGE EXTERNAL")
    conn.execute("TRUNCATE raw_cells")
    generation = runs.get(conn, {run!r}).generation
    for entry in journal.load(conn, {run!r}, generation):
        record = payloads.value(conn, entry.result, entry.result_hash)
        pickled = cloudpickle.dumps(record.get("groups") or (), protocol=5)
        conn.execute("INSERT INTO raw_cells VALUES (%s, %s)", (entry.name, pickled))
"""
RAW_LOAD = """
import pickle, time, psycopg
import numpy, pandas, sklearn.linear_model  # imported before, as the notebook's first cell does
from zart_nb.config import settings
t0 = time.perf_counter()
with psycopg.connect(settings().database_url, options=f"-c search_path={{settings().schema}}") as conn:
    loaded = {{}}
    for (data,) in conn.execute("SELECT data FROM raw_cells", binary=True):
        for names, values in pickle.loads(data):
            loaded.update(zip(names, values))
raw_seconds = time.perf_counter() - t0
"""


class Kernel:
    """A real kernel, executing cells as JupyterLab does (with their cell ids)."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client import KernelManager

        self.dir = tempfile.mkdtemp(prefix="zart-bench-kernel-")
        self.km = KernelManager(kernel_name="python3", transport="ipc",
                                ip=os.path.join(self.dir, "kernel"))
        self.km.start_kernel(env={**os.environ, **env}, cwd=self.dir)
        self.connect()

    def connect(self) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def execute(self, code: str, cell_id: str | None = None, timeout: float = 600) -> float:
        """Run a cell; its wall time seen from here. A cell that fails raises."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content,
                                  metadata={"cellId": cell_id} if cell_id else {})
        start = time.perf_counter()
        self.kc.shell_channel.send(msg)
        msg_id, idle, reply, error = msg["header"]["msg_id"], False, None, None
        deadline = start + timeout
        while not (idle and reply is not None):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
            try:
                got = self.kc.get_iopub_msg(timeout=0.05)
                if got["parent_header"].get("msg_id") == msg_id:
                    if got["msg_type"] == "status" and got["content"]["execution_state"] == "idle":
                        idle = True
                    elif got["msg_type"] == "error":
                        error = f"{got['content']['ename']}: {got['content']['evalue']}"
            except queue.Empty:
                pass
            try:
                shell = self.kc.get_shell_msg(timeout=0)
                if shell["parent_header"].get("msg_id") == msg_id:
                    reply = shell["content"]
            except queue.Empty:
                pass
        elapsed = time.perf_counter() - start
        if error is not None or reply.get("status") != "ok":
            raise RuntimeError(f"cell failed: {error or reply}: {code[:80]!r}")
        return elapsed

    def value(self, expression: str) -> Any:
        """The value of ``expression`` in the kernel (a literal)."""
        import ast

        reply = self.kc.execute_interactive(f"print(repr({expression}))", timeout=60,
                                            output_hook=self._capture)
        assert reply["content"]["status"] == "ok"
        return ast.literal_eval(self._printed.pop())

    def _capture(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            self._printed = [*getattr(self, "_printed", []), msg["content"]["text"].strip()]

    def restart(self) -> None:
        self.kc.stop_channels()
        self.km.restart_kernel(now=True)
        self.connect()

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _kernel_env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    assert s.database_url is not None and s.secret is not None
    return {"ZART_DATABASE_URL": s.database_url, "ZART_SECRET": s.secret.decode(),
            "ZART_SCHEMA": s.schema}


def _run_all(kernel: Kernel, notebook: list[str]) -> list[float]:
    return [kernel.execute(code, cell_id=f"cell-{i}") for i, code in enumerate(notebook)]


@benchmark("notebook_restore")
def notebook_restore(ctx: Context) -> Figures:
    n, seconds, mb = (3, 0.2, 5) if ctx.quick else (10, 2.0, 50)
    repeats = QUICK_REPEATS if ctx.quick else REPEATS
    notebook = cells(n, seconds, mb)
    env = _kernel_env(ctx)
    plain_totals, durable_totals, restores, imports, raw_loads, overheads = [], [], [], [], [], []
    for k in range(repeats):
        run = f"bench-notebook-{k}"
        plain = Kernel(env)
        try:
            plain_cells = _run_all(plain, notebook)
        finally:
            plain.close()
        durable = Kernel(env)
        try:
            durable.execute(DURABLE.format(run=run))
            durable_cells = _run_all(durable, notebook)
            durable.restart()
            durable.execute(DURABLE.format(run=run))
            restored = _run_all(durable, notebook)
            imports.append(restored[0])
            restores.append(sum(restored[1:]))
        finally:
            durable.close()
        raw = Kernel(env)
        try:
            raw.execute(RAW_SETUP.format(run=run))
            raw.execute(RAW_LOAD.format(run=run))
            raw_loads.append(raw.value("raw_seconds"))
        finally:
            raw.close()
        plain_totals.append(sum(plain_cells))
        durable_totals.append(sum(durable_cells))
        overheads.extend(d - p for d, p in zip(durable_cells[1:], plain_cells[1:], strict=True))
    restore, raw_load = statistics.median(restores), statistics.median(raw_loads)
    figures: Figures = {
        "cells": n, "mb_per_cell": mb, "compute_s_per_cell": seconds,
        "plain_run_all_s": round(statistics.median(plain_totals), 3),
        "durable_first_run_s": round(statistics.median(durable_totals), 3),
        "restore_run_all_s": round(restore + statistics.median(imports), 3),
        "imports_cell_s": round(statistics.median(imports), 3),
        "restored_cells_s": round(restore, 3),
        "raw_load_s": round(raw_load, 3),
        "restore_over_raw_load": round(restore / raw_load, 2),
        "restore_over_recompute": round(restore / statistics.median(plain_totals), 3),
        "checkpoint_overhead_s_per_cell": round(statistics.median(overheads), 3),
    }
    figures.update(_mutation_check(64 if ctx.quick else 1024, repeats))
    return figures


def _mutation_check(mb: int, repeats: int) -> Figures:
    """One fingerprint of an unchanged frame of ``mb`` MB: the after-check of a cell."""
    import numpy as np
    import pandas as pd

    from zart_nb.notebook.cell_state import fingerprint

    columns = 16
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(mb * MB // (8 * columns), columns)))
    checks, sums = [], []
    before = fingerprint("df", frame)[0]
    for _ in range(repeats):
        start = time.perf_counter()
        after = fingerprint("df", frame)[0]
        checks.append(time.perf_counter() - start)
        assert after == before
        start = time.perf_counter()
        frame.sum()
        sums.append(time.perf_counter() - start)
    key = f"{mb // 1024}gb" if mb >= 1024 else f"{mb}mb"
    return {f"mutation_check_{key}_s": round(statistics.median(checks), 3),
            f"frame_sum_{key}_s": round(statistics.median(sums), 3),
            f"mutation_check_{key}_gb_per_s": round(mb / 1024 / statistics.median(checks), 2)}
