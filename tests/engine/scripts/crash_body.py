"""A durable body of numbered steps that the crash tests kill and execute again.

``python -m tests.engine.scripts.crash_body RUN_ID LOG [--n N] [--die-in STEP]
[--die-after STEP] [--linger S] [--step-sleep S]`` executes run RUN_ID: a ``fetch``
step, then ``process-{i}`` for each fetched item. Every step body appends one line
``NAME attempt=K`` to LOG (the side effects the tests count). ``--die-in STEP`` kills
the process with SIGKILL inside STEP after its side effect (``--linger`` seconds
later); ``--die-after STEP`` kills it in the body right after STEP returned. On
success it prints one JSON line: the result and whether it attached to another
process's execution.

The tests import this module too, to execute the same run in their own process: the
step functions are the same code, so their fingerprints match and replay applies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from zart_nb import context, durable, step

CONFIG = {"log": None, "die_in": None, "die_after": None, "linger": 0.0, "step_sleep": 0.0,
          "marker": None}


def note(line: str) -> None:
    with open(CONFIG["log"], "a") as f:
        f.write(line + "\n")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@step("fetch")
def fetch(n):
    note(f"fetch attempt={context().attempt}")
    if CONFIG["die_in"] == "fetch":
        time.sleep(CONFIG["linger"])
        die()
    return [f"report-{i}" for i in range(n)]


@step("process-{i}")
def process(i, item):
    name = f"process-{i}"
    note(f"{name} attempt={context().attempt}")
    if CONFIG["die_in"] == name:
        time.sleep(CONFIG["linger"])
        die()
    time.sleep(CONFIG["step_sleep"])
    return f"{item}:{i * i}"


@durable("crash")
def body(n):
    items = fetch(n)
    if CONFIG["die_after"] == "fetch":
        die()
    out = []
    for i, item in enumerate(items):
        out.append(process(i, item))
        if CONFIG["die_after"] == f"process-{i}":
            die()
    return out


def expected(n: int) -> list[str]:
    """What an uninterrupted run returns, computed without the engine."""
    return [f"report-{i}:{i * i}" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--die-in")
    parser.add_argument("--die-after")
    parser.add_argument("--linger", type=float, default=0.0)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args(argv)
    CONFIG.update(log=args.log, die_in=args.die_in, die_after=args.die_after,
                  linger=args.linger, step_sleep=args.step_sleep)
    outcome = body.execute((args.n,), run_id=args.run_id)
    print(json.dumps({"result": outcome.value, "attached": outcome.attached,
                      "replayed": outcome.report.replayed,
                      "executed": outcome.report.executed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
