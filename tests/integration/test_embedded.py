"""The embedded PostgreSQL under ZART_HOME: one server per home, however it is reached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from zart_nb.errors import UsageError
from zart_nb.store import embedded
from zart_nb.store.schema import migrations

OPEN_STORE = """
import json, os
from zart_nb.store import embedded
from zart_nb.store.connection import Store
store = Store().open()
with store.connection() as conn:
    versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
print(json.dumps({"postmaster": embedded.server_pid(store.settings.home), "versions": versions}))
store.close()
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """An empty ZART_HOME whose server, if a test starts one, is stopped afterwards."""
    path = tmp_path / "zart-home"
    yield path
    embedded.stop(path)


def test_two_processes_on_an_empty_home_share_one_server_and_one_schema(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZART_")}
    env.update(ZART_HOME=str(home), ZART_SECRET="not-used-here")
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    postmaster = embedded.server_pid(home)
    assert postmaster is not None
    assert [r["postmaster"] for r in results] == [postmaster, postmaster]
    with psycopg.connect(embedded.server_url(home)) as conn:
        rows = conn.execute("SELECT version, count(*) FROM zart.schema_migrations "
                            "GROUP BY version ORDER BY version").fetchall()
    assert rows == [(m.version, 1) for m in migrations()]


def test_warm_lookup_finds_the_running_server(home):
    url = embedded.server_url(home)
    pid = embedded.server_pid(home)

    assert embedded.server_url(home) == url
    assert embedded.server_pid(home) == pid


def test_stale_pid_file_of_a_live_foreign_process_is_replaced(home):
    embedded.server_url(home)
    pid_file = embedded.pgdata_dir(home) / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    old_pid = embedded.server_pid(home)
    assert embedded.stop(home)
    assert not pid_file.exists()
    # a crash leaves the file behind, and its pid may since belong to another program
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")

    url = embedded.server_url(home)

    new_pid = embedded.server_pid(home)
    assert new_pid not in (None, os.getpid(), old_pid)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_home_that_cannot_be_created_is_a_usage_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home"  # ENOTDIR even for root, which chmod would not stop

    with pytest.raises(UsageError) as caught:
        embedded.server_url(home)
    assert str(home) in str(caught.value)
    assert "ZART_HOME" in str(caught.value)


def test_stop_without_a_server_says_so(tmp_path):
    assert embedded.stop(tmp_path / "never-started") is False
