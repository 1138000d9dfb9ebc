"""``python -m tests.executors.scripts.fan EXECUTOR RUN_ID LOG N DELAY``: executes run
RUN_ID of a durable fan-out of N children (``bodies.record``) on the executor named
EXECUTOR (``dask://HOST:PORT``); prints one JSON line: the result and the report."""

from __future__ import annotations

import json
import sys

from zart_nb import durable

from .. import bodies


@durable("executor-fan")
def fan(log: str, n: int, delay: float, executor: str) -> list:
    return bodies.fan(log, n, delay, executor=executor)


def main(argv: list[str]) -> int:
    executor, run_id, log, n, delay = argv
    outcome = fan.execute((log, int(n), float(delay), executor), run_id=run_id)
    print(json.dumps({"result": outcome.value, "replayed": outcome.report.replayed,
                      "executed": outcome.report.executed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
