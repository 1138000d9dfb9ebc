"""A durable body whose step returns a large frame, executed by the tests in subprocesses.

``python -m tests.engine.scripts.large_body RUN_ID ROWS USE`` executes run RUN_ID (again,
when it completed, as the notebook front does): a small step ``count``, then, when USE is
1, the step ``frame`` (a frame of ROWS rows, stored in chunks). With USE 0 the body never
asks for the frame. Prints one JSON line: the steps replayed and executed, and whether
the frame the body got equals one built here.
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from tests.frames import sample_frame
from tests.helpers import execute
from zart_nb import step


@step("count")
def count(rows):
    return rows


@step("frame")
def frame(rows):
    return sample_frame(rows, seed=11)


def body(rows, use):
    n = count(rows)
    if not use:
        return {"rows": n, "equal": None}
    got = frame(rows)
    pd.testing.assert_frame_equal(got, sample_frame(rows, seed=11), check_exact=True)
    return {"rows": n, "equal": True}


def main(argv: list[str]) -> int:
    run_id, rows, use = argv[0], int(argv[1]), argv[2] == "1"
    out = execute(body, (rows, use), name="large-frame", run_id=run_id, replay_completed=True)
    print(json.dumps({"value": out.value, "replayed": out.report.replayed,
                      "executed": out.report.executed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
