"""``python -m zart_nb.demo`` (``make demo``): a durable run survives ``kill -9``.

A child process starts a durable run of eight steps (fetch the reports, process each,
summarise), each taking 0.3 s. The demo kills it with SIGKILL in the middle of a step,
then starts a second process that executes the same run again: the steps completed
before the kill are replayed from PostgreSQL without running, the rest run, and the
result is compared with one computed without the engine.

It uses the database zart-nb would use anyway: ``ZART_DATABASE_URL`` if set, else the
embedded PostgreSQL under ``ZART_HOME`` (default ``~/.zart``). Each invocation makes a
new run (its id has a timestamp), so the demo can be run again and again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from . import context, durable, step

REPORTS = [("north", 120), ("south", 80), ("east", 95), ("west", 110), ("central", 70),
           ("islands", 30)]
STEP_SECONDS = 0.3
KILL_IN = "process-report-2"
_effects: Path | None = None  # the child's side-effect log: one line per step execution


# -- the durable run (executed in the child processes) ---------------------------------

def side_effect(name: str) -> None:
    attempt = context().attempt
    again = f" (attempt {attempt}: it was in flight when the last process died)" if attempt > 1 else ""
    print(f"     executing {name}{again}", flush=True)
    assert _effects is not None  # set by child()
    with open(_effects, "a") as f:
        f.write(name + "\n")
    time.sleep(STEP_SECONDS)


@step("fetch-reports")
def fetch_reports(batch: str) -> list[tuple[str, int]]:
    side_effect("fetch-reports")
    return list(REPORTS)  # fetched inside a step: a replay sees this same list


@step("process-report-{index}")
def process_report(index: int, report: tuple[str, int]) -> str:
    side_effect(f"process-report-{index}")
    return summarise_one(report)


@step("summarise")
def summarise(lines: list[str]) -> dict[str, Any]:
    side_effect("summarise")
    return total_of(lines)


@durable("report-batch")
def report_batch(batch: str) -> dict[str, Any]:
    reports = fetch_reports(batch)
    processed = [process_report(i, r) for i, r in enumerate(reports)]
    summary: dict[str, Any] = summarise(processed)
    return summary


# -- the same computation without the engine, for the comparison ---------------------

def summarise_one(report: tuple[str, int]) -> str:
    region, sales = report
    return f"{region}: {sales * 1.2:.1f}"


def total_of(lines: list[str]) -> dict[str, Any]:
    return {"reports": lines, "total": round(sum(float(x.split(": ")[1]) for x in lines), 1)}


def reference() -> dict[str, Any]:
    return total_of([summarise_one(r) for r in REPORTS])


# -- the two processes and the story around them -------------------------------------

def child(run_id: str, effects: str) -> int:
    global _effects
    _effects = Path(effects)
    outcome = report_batch.execute(("q3",), run_id=run_id)
    print("REPORT " + json.dumps({"result": outcome.value, "replayed": outcome.report.replayed,
                                  "executed": outcome.report.executed}), flush=True)
    return 0


def spawn(run_id: str, effects: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "zart_nb.demo", "--child", run_id, str(effects)],
                            stdout=subprocess.PIPE, text=True, bufsize=1)


def first_process(run_id: str, effects: Path) -> None:
    proc = spawn(run_id, effects)
    assert proc.stdout is not None  # a pipe
    print(f"1) A process (pid {proc.pid}) starts the run; each step takes {STEP_SECONDS} s.")
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.strip().startswith(f"executing {KILL_IN}"):
            time.sleep(STEP_SECONDS / 2)
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait()
    print(f"   >> killed pid {proc.pid} with SIGKILL in the middle of {KILL_IN}\n")


def second_process(run_id: str, effects: Path) -> dict[str, Any]:
    proc = spawn(run_id, effects)
    assert proc.stdout is not None  # a pipe
    print(f"2) A new process (pid {proc.pid}) executes the same run again.")
    report: dict[str, Any] | None = None
    for line in proc.stdout:
        if line.startswith("REPORT "):
            report = json.loads(line[len("REPORT "):])
        else:
            print(line, end="", flush=True)
    proc.stdout.close()
    if proc.wait() != 0 or report is None:
        raise SystemExit(f"the second process failed (exit code {proc.returncode})")
    print(f"   replayed from the journal, not run again: {', '.join(report['replayed'])}")
    print(f"   executed now:                             {', '.join(report['executed'])}\n")
    return report


def database() -> str:
    from .config import settings
    from .store.connection import get_store, redact

    s = settings()
    where = f"ZART_DATABASE_URL ({redact(s.database_url)})" if s.database_url else \
        f"the embedded PostgreSQL under {s.home}"
    get_store()  # start the embedded server (once) before the children need it
    return where


def main() -> int:
    run_id = f"demo-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    print("zart-nb demo: a durable run that survives kill -9")
    print(f"   database: {database()}")
    print(f"   run id:   {run_id}\n")
    with tempfile.TemporaryDirectory(prefix="zart-demo-") as tmp:
        effects = Path(tmp) / "side-effects.log"
        first_process(run_id, effects)
        report = second_process(run_id, effects)
        runs = effects.read_text().splitlines()

    print("3) Check")
    twice = sorted({name for name in runs if runs.count(name) > 1})
    once = all(runs.count(name) == 1 for name in set(runs) - set(twice))
    print(f"   side effects: {len(runs)} executions of {len(set(runs))} steps; "
          f"every completed step ran once: {'yes' if once else 'NO'}"
          + (f"; in flight at the kill, so ran twice: {', '.join(twice)}" if twice else ""))
    expected = reference()
    print(f"   result:    {json.dumps(report['result'])}")
    print(f"   expected:  {json.dumps(expected)}  (computed without the engine)")
    same = report["result"] == expected and once and bool(report["replayed"])
    print(f"   identical: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2], sys.argv[3]))
    sys.exit(main())
