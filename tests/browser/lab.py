"""JupyterLab on 127.0.0.1 and Debian's chromium through Playwright, for the browser tests.

Adapted from the project's recipe ``browser_test.py``: isolated config, settings,
workspace and runtime directories; a token; no call to the internet (news, update
check, extension manager); the server's kernels get this process's environment (the
test's ``ZART_*``). Chromium is ``/usr/bin/chromium``, never a downloaded build.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A ``jupyter lab`` server of this test: ``start()``, ``api()``, ``stop()``."""

    def __init__(self, root: Path, work: Path, token: str) -> None:
        self.root, self.work, self.token = root, work, token
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def api(self, path: str, method: str = "GET", body=None, timeout: float = 10):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def start(self, timeout: float = 60) -> Lab:
        env = dict(os.environ)
        for key, sub in (("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("JUPYTER_RUNTIME_DIR", "runtime")):
            env[key] = str(self.work / sub)
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        notes = self.work / "settings" / "@jupyterlab" / "apputils-extension"
        notes.mkdir(parents=True, exist_ok=True)
        (notes / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser",
               "--port", str(self.port), "--ip", "127.0.0.1",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.port_retries=0", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--expose-app-in-browser"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = self.work / "server.log"
        self._log_file = open(self.log, "w")  # noqa: SIM115 (the server's stdout while it lives)
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}): "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                self.api("/api/status", timeout=2)
                return self
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = []
        with contextlib.suppress(Exception):
            pids = [k.get("pid") for k in self.api("/api/kernels")]  # usually absent
        with contextlib.suppress(Exception):
            self.api("/api/shutdown", method="POST", timeout=5)  # stops its kernels too
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in pids:
            if pid and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        self.proc = None
        self._log_file.close()


KERNEL_STATE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.status + '/' + k.connectionStatus : 'nokernel';
}"""


def kernel_idle(page, timeout: float = 60, ok=("idle/connected",)) -> None:
    """Wait for the session's kernel itself (the toolbar's indicator says idle too early)."""
    deadline = time.monotonic() + timeout
    while (state := page.evaluate(KERNEL_STATE_JS)) not in ok:
        if time.monotonic() > deadline:
            raise TimeoutError(f"kernel not idle after {timeout} s (state {state})")
        time.sleep(0.05)


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()
