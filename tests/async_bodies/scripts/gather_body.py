"""An async durable body that gathers steps of different lengths, run with ``asyncio.run``.

``python -m tests.async_bodies.scripts.gather_body RUN_ID LOG [--n N] [--die-at S]``
executes run RUN_ID: ``asyncio.gather`` of N steps ``fetch-{i}``, step i lasting
0.1 * (i + 1) s, then a ``total`` step. Every step body appends ``NAME start`` when it
starts and ``NAME done`` when it returns to LOG (the side effects the tests count).
``--die-at S`` SIGKILLs the process S seconds after the gather started: the short steps
are committed by then, the long ones are in flight. On success it prints one JSON line:
the result, and the steps the execution replayed and executed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from zart_nb import durable, step

CONFIG: dict = {"log": None, "die_at": None}


def note(line: str) -> None:
    with open(CONFIG["log"], "a") as f:
        f.write(line + "\n")


@step("fetch-{i}")
async def fetch(i: int) -> int:
    note(f"fetch-{i} start")
    await asyncio.sleep(0.1 * (i + 1))
    note(f"fetch-{i} done")
    return i * i


@step("total")
async def total(values: list[int]) -> int:
    note("total start")
    note("total done")
    return sum(values)


async def die_in(seconds: float) -> None:
    await asyncio.sleep(seconds)
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@durable("gather")
async def body(n: int) -> int:
    killer = asyncio.create_task(die_in(CONFIG["die_at"])) if CONFIG["die_at"] else None
    values = await asyncio.gather(*(fetch(i) for i in range(n)))
    if killer is not None:
        killer.cancel()
    return await total(values)


def expected(n: int) -> int:
    return sum(i * i for i in range(n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--die-at", type=float)
    args = parser.parse_args(argv)
    CONFIG.update(log=args.log, die_at=args.die_at)
    outcome = asyncio.run(body.execute_async((args.n,), run_id=args.run_id))
    print(json.dumps({"result": outcome.value, "replayed": outcome.report.replayed,
                      "executed": outcome.report.executed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
