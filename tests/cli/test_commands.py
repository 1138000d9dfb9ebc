"""``zart-nb worker``, ``install-kernel``, help texts and bad usage."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading

import pytest

from zart_nb.config import configure
from zart_nb.store.connection import close_store

from .bodies import fan
from .conftest import zart


def test_help_names_the_environment_variables():
    assert "ZART_DATABASE_URL" in zart("--help").out
    worker = zart("worker", "--help").out
    for var in ("ZART_DATABASE_URL", "ZART_NAMESPACE"):
        assert var in worker
    assert "ZART_DATABASE_URL" in zart("db", "migrate", "--help").out


@pytest.mark.parametrize("args", [
    ["worker", "--concurrency", "0"],
    ["worker", "--concurrency", "many"],
    ["runs", "list", "--limit", "0"],
    ["runs", "list", "--status", "sleeping"],
    ["runs", "frobnicate"],
    ["install-kernel", "--user", "--sys-prefix"],
])
def test_bad_usage_exits_2_without_a_traceback(args):
    result = zart(*args)
    assert result.code == 2, result
    assert "Traceback" not in result.err


def test_worker_executes_children_and_exits_0_on_sigterm(zart_env, monkeypatch):
    monkeypatch.setenv("ZART_WORKERS", "0")  # no local pool: only the CLI worker runs children
    configure(None)
    close_store()
    with subprocess.Popen([sys.executable, "-m", "zart_nb.cli", "worker", "--concurrency", "2"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            banner = _read_line(proc.stderr, timeout=20)
            assert "zart-nb worker" in banner and "concurrency 2" in banner, banner

            outcome: list = []
            body = threading.Thread(target=lambda: outcome.append(fan(4, run_id="fan")),
                                    daemon=True)
            body.start()
            body.join(30)
            assert outcome == [[0, 1, 4, 9]]
            workers = {s["worker"] for s in run_show("fan")["steps"]}
            assert len(workers) == 1 and f":{proc.pid}:" in workers.pop()

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, proc.stderr.read()
            assert "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def run_show(run_id: str) -> dict:
    shown = zart("runs", "show", run_id, "--json")
    assert shown.code == 0, shown
    return shown.json()


def _read_line(stream, timeout: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return stream.readline()


def test_install_kernel_into_a_prefix(tmp_path):
    result = zart("install-kernel", "--prefix", str(tmp_path), "--name", "zart-cli-test")
    assert result.code == 0, result
    spec = tmp_path / "share" / "jupyter" / "kernels" / "zart-cli-test" / "kernel.json"
    argv = json.loads(spec.read_text())["argv"]
    assert argv[0] == sys.executable
    assert any("zart_nb" in a for a in argv)


def test_version():
    result = zart("--version")
    assert result.code == 0 and "zart-nb" in result.out


def test_console_script_is_the_same_command():
    script = os.path.join(os.path.dirname(sys.executable), "zart-nb")
    if not os.path.exists(script):
        pytest.skip("zart-nb console script not installed in this environment")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "runs" in done.stdout


def test_demo_runs_against_the_given_database(zart_env):
    env = {k: v for k, v in os.environ.items() if k != "ZART_DATABASE_URL"}
    result = zart("--dsn", zart_env.database_url, "demo", env=env)
    assert result.code == 0, result
    assert "identical: yes" in result.out
    demo_runs = zart("runs", "list", "--name", "report-batch", "--json").json()
    assert [r["status"] for r in demo_runs] == ["completed"]  # --dsn reached its processes
