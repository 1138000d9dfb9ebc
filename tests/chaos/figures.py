"""Figures the chaos and bad-input suites measure, for ``python -m tests.chaos.report``.

A test calls ``record(suite, case, **figures)``. When ``CHAOS_FIGURES`` names a file
(the report sets it when it runs the suites), each call appends one JSON line to it;
otherwise nothing is written, so ``make test`` leaves the work tree clean.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

ENV = "CHAOS_FIGURES"


def record(suite: str, case: str, **figures: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"suite": suite, "case": case, "at": time.time(), **figures},
                      default=str, ensure_ascii=False)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
