"""``python -m zart_nb.demo`` (``make demo``) tells its story and exits 0."""

from __future__ import annotations

import subprocess
import sys

from .helpers import REPO


def test_demo_kills_the_run_resumes_it_and_gets_the_same_result(zart_env):
    done = subprocess.run([sys.executable, "-m", "zart_nb.demo"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "killed pid" in out and "with SIGKILL in the middle of process-report-2" in out
    assert ("replayed from the journal, not run again: fetch-reports, process-report-0, "
            "process-report-1") in out
    assert "executing process-report-2 (attempt 2" in out
    assert "every completed step ran once: yes" in out
    assert "identical: yes" in out
    assert "ZART_DATABASE_URL" in out  # the test database, never the developer's ~/.zart
