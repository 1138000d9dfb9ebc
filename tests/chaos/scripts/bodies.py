"""Durable bodies the chaos suites kill, race and starve, run as subprocesses.

``python -m tests.chaos.scripts.bodies MODE RUN_ID LOG [options]`` executes run RUN_ID
and prints one JSON line (result, attached, report) on success:

- ``mixed``: ``--steps`` sequential steps ``s-{i}`` in ``--blocks`` blocks, each block
  followed by a fan-out of ``--children`` children ``c-{block}-{j}`` and a wait
  (the crash suite's 200-step run).
- ``fan``: ``--children`` children ``f-{j}``, each taking ``--child-ms`` milliseconds.
- ``seq``: ``--steps`` sequential steps, each taking ``--step-ms`` milliseconds; the
  body (not the step) writes ``done NAME`` after each step returned, so that a test
  knows which completions the body saw committed.
- ``large``: one step ``blob`` returning ``--mb`` MiB of random bytes (stored in chunks).

Every execution of a step or a child appends ``NAME ATTEMPT PID`` to LOG *before* it
returns (O_APPEND, one write: lines of processes never mix): the side effects that the
suites count. The functions live in this importable module, so that workers load
children by reference and a re-execution finds the same code fingerprints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from tests.fanout.helpers import note
from zart_nb import context, durable, schedule, step, wait


def _effect(log: str) -> None:
    ctx = context()
    note(log, f"{ctx.step} {ctx.attempt} {os.getpid()} {threading.get_ident()}")


# -- the mixed run ----------------------------------------------------------------------
@step("s-{i}")
def seq_step(log, i, ms=3):
    _effect(log)
    time.sleep((ms + i % 4) / 1000)  # 3-6 ms of work: kills land in work and in commits
    return i * 7 % 101


@step("c-{block}-{j}")
def child(log, block, j, ms=10):
    _effect(log)
    time.sleep(ms / 1000)
    return block * 1000 + j


def plan(steps: int, blocks: int, children: int) -> list[tuple[range, int]]:
    """The mixed run's shape: per block, the sequential steps and the number of children."""
    per = steps // blocks
    return [(range(b * per, steps if b == blocks - 1 else (b + 1) * per), children)
            for b in range(blocks)]


@durable("chaos-mixed")
def mixed(log, steps, blocks, children):
    total = 0
    fanned = []
    for b, (indices, n) in enumerate(plan(steps, blocks, children)):
        for i in indices:
            total += seq_step(log, i)
        fanned.append(sum(wait([schedule(child, log, b, j) for j in range(n)])))
    return [total, fanned]


def mixed_expected(steps: int, blocks: int, children: int) -> list:
    """What an uninterrupted ``mixed`` run returns, computed without the engine."""
    total = sum(i * 7 % 101 for i in range(steps))
    return [total, [sum(b * 1000 + j for j in range(n))
                    for b, (_, n) in enumerate(plan(steps, blocks, children))]]


# -- a plain fan-out ------------------------------------------------------------------------
@step("f-{j}")
def fan_child(log, j, ms):
    _effect(log)
    if ms:
        time.sleep(ms / 1000)
    return j * j


@durable("chaos-fan")
def fan(log, children, ms):
    return sum(wait([schedule(fan_child, log, j, ms) for j in range(children)]))


def fan_expected(children: int) -> int:
    return sum(j * j for j in range(children))


# -- sequential, with the body's own record of what came back committed ---------------------
@step("q-{i}")
def slow_step(log, i, ms):
    _effect(log)
    time.sleep(ms / 1000)
    return i + 1


@durable("chaos-seq")
def seq(log, steps, ms):
    out = []
    for i in range(steps):
        out.append(slow_step(log, i, ms))
        note(log, f"done q-{i}")
    return sum(out)


def seq_expected(steps: int) -> int:
    return sum(i + 1 for i in range(steps))


# -- one large result ------------------------------------------------------------------------
@step("blob")
def blob(log, mb):
    _effect(log)
    return os.urandom(mb << 20)  # incompressible: a few seconds to store


@durable("chaos-large")
def large(log, mb):
    return len(blob(log, mb))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["mixed", "fan", "seq", "large"])
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--child-ms", type=float, default=0.0)
    parser.add_argument("--step-ms", type=float, default=50.0)
    parser.add_argument("--mb", type=int, default=400)
    args = parser.parse_args(argv)
    if args.mode == "mixed":
        outcome = mixed.execute((args.log, args.steps, args.blocks, args.children),
                                run_id=args.run_id)
    elif args.mode == "fan":
        outcome = fan.execute((args.log, args.children, args.child_ms), run_id=args.run_id)
    elif args.mode == "large":
        outcome = large.execute((args.log, args.mb), run_id=args.run_id)
    else:
        outcome = seq.execute((args.log, args.steps, args.step_ms), run_id=args.run_id)
    print(json.dumps({"result": outcome.value, "attached": outcome.attached,
                      "replayed": len(outcome.report.replayed),
                      "executed": len(outcome.report.executed),
                      "retried": outcome.report.retried}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
