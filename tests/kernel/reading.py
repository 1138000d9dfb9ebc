"""Reading what a durable cell left behind: its side-effect log and its summary line."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path


def counts(log: Path) -> Counter:
    """How many times each number was written to the side-effect log."""
    return Counter(int(x) for x in log.read_text().split()) if log.exists() else Counter()


def summary(stdout: str, name: str) -> tuple[int, int]:
    """(replayed, executed) from the line a ``%%zart_durable`` cell prints at its end."""
    m = re.search(rf"zart: run '{name}': (?:attached, then replayed here: )?(\d+) replayed, "
                  rf"(\d+) executed", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))
