"""Children and durable bodies of the fan-out tests, run in this process or as scripts.

Children take the side-effect log as an argument: they run in worker processes, which
share nothing with the test but the database and the file system. Each run of a child
appends ``NAME ATTEMPT PID`` to the log.

``python -m tests.fanout.scripts.bodies fan RUN_ID LOG [--n N] [--delay S]`` executes
run RUN_ID of ``fan``; ``… sleep RUN_ID`` executes ``sleeper``. On success each prints
one JSON line: the result and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from zart_nb import RetryPolicy, StepFunction, context, durable, schedule, sleep, wait

from ..helpers import note


def record(log, i, delay=0.0):
    """A child: notes that it ran, takes ``delay`` seconds, returns ``i * i``."""
    ctx = context()
    note(log, f"{ctx.step} {ctx.attempt} {os.getpid()}")
    if delay:
        time.sleep(delay)
    return i * i


def refuse(log, i):
    """A child that always raises (its own, business error)."""
    ctx = context()
    note(log, f"{ctx.step} {ctx.attempt} {os.getpid()}")
    raise ValueError(f"child {i} refuses")


# retried twice, 0.1 s apart, then failed for good
retried_refuse = StepFunction(refuse, "retried-{i}", retry=RetryPolicy.fixed(2, delay=0.1))


@durable("fan")
def fan(log, n, delay=0.0):
    handles = [schedule(record, log, i, delay) for i in range(n)]
    return wait(handles)


@durable("sleeper")
def sleeper(seconds):
    sleep("nap", seconds)
    return "woke"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fan", "sleep"])
    parser.add_argument("run_id")
    parser.add_argument("log", nargs="?")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.mode == "fan":
        outcome = fan.execute((args.log, args.n, args.delay), run_id=args.run_id)
    else:
        outcome = sleeper.execute((args.seconds,), run_id=args.run_id)
    print(json.dumps({"result": outcome.value, "replayed": outcome.report.replayed,
                      "executed": outcome.report.executed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
