"""A real IPython kernel driven the way a Jupyter front-end drives it (jupyter_client).

Adapted from the project's recipe ``kernel_driver.py`` (its library part; the widget
mirror, demos and CLI left out, a ``kernel_spec_manager`` added for kernels installed
into a prefix). It starts a kernel process, executes cells, collects what a front-end
sees on IOPub (stream, execute_result, display_data, error), interrupts the kernel,
SIGKILLs it mid-cell (a crash) and restarts it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_client import KernelManager

WIDGET_TARGET = "jupyter.widget"
WIDGET_CONTROL_TARGET = "jupyter.widget.control"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


class KernelDied(RuntimeError):
    """The kernel process went away while we were waiting for a cell."""


class CellFailed(AssertionError):
    """check=True and the cell did not finish with status 'ok'."""


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
@dataclass
class CellResult:
    code: str
    msg_id: str
    kernel_pid: int | None = None
    status: str = "running"  # running | ok | error | aborted | died | timeout
    execution_count: int | None = None
    outputs: list = field(default_factory=list)  # nbformat-like dicts
    comm_msgs: list = field(default_factory=list)  # comm_open/comm_msg/comm_close
    raw: list = field(default_factory=list)  # every iopub msg for this cell
    reply: dict | None = None  # execute_reply content
    t_submit: float = field(default_factory=time.monotonic)
    t_done: float | None = None
    _idle: bool = False

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def duration(self) -> float | None:
        return None if self.t_done is None else self.t_done - self.t_submit

    def _stream(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs
                       if o["output_type"] == "stream" and o["name"] == name)

    @property
    def stdout(self) -> str:
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        return self._stream("stderr")

    @property
    def error(self) -> dict | None:
        for o in self.outputs:
            if o["output_type"] == "error":
                return o
        return None

    @property
    def result(self) -> dict | None:
        """data dict of the execute_result (Out[n]), if any."""
        for o in self.outputs:
            if o["output_type"] == "execute_result":
                return o["data"]
        return None

    @property
    def widget_views(self) -> list:
        """model_ids of widgets displayed by this cell."""
        return [o["data"][WIDGET_VIEW_MIME]["model_id"] for o in self.outputs
                if o["output_type"] == "display_data" and WIDGET_VIEW_MIME in o["data"]]

    def summary(self) -> dict:
        return {
            "status": self.status, "execution_count": self.execution_count,
            "kernel_pid": self.kernel_pid,
            "duration_s": None if self.duration is None else round(self.duration, 3),
            "stdout": self.stdout, "stderr": self.stderr,
            "result": self.result,
            "error": None if not self.error else
            {"ename": self.error["ename"], "evalue": self.error["evalue"]},
            "display_data": [sorted(o["data"]) for o in self.outputs
                             if o["output_type"] == "display_data"],
            "widget_views": self.widget_views,
            "n_comm_msgs": len(self.comm_msgs),
        }


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
class KernelDriver:
    """One real kernel process plus a blocking client, frontend-style."""

    def __init__(self, kernel_name: str = "python3", cwd: str | None = None,
                 env: dict | None = None, startup_code: str | None = None,
                 startup_timeout: float = 60.0, log: Callable[[str], None] | None = None,
                 transport: str = "tcp", kernel_spec_manager=None):
        self.kernel_name = kernel_name
        self.kernel_spec_manager = kernel_spec_manager
        self.transport = transport  # "ipc" = unix sockets, no ipykernel-7 TCP warning
        self.cwd = cwd
        self.env = env
        self.startup_code = startup_code
        self.startup_timeout = startup_timeout
        self.km: KernelManager | None = None
        self.kc = None
        self.unclaimed: list = []  # iopub msgs whose parent is no cell we track
        self._cells: dict[str, CellResult] = {}
        self._log = log or (lambda s: None)
        self.restarts = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> KernelDriver:
        km_kw: dict[str, Any] = {"kernel_name": self.kernel_name, "transport": self.transport}
        if self.kernel_spec_manager is not None:
            km_kw["kernel_spec_manager"] = self.kernel_spec_manager
        if self.transport == "ipc":  # socket files are named relative to cwd
            self._ipc_dir = tempfile.mkdtemp(prefix="kd-ipc-")
            km_kw["ip"] = os.path.join(self._ipc_dir, "kernel")
        self.km = KernelManager(**km_kw)
        kw: dict[str, Any] = {}
        if self.cwd:
            kw["cwd"] = self.cwd
        if self.env is not None:
            kw["env"] = {**os.environ, **self.env}
        t0 = time.monotonic()
        self.km.start_kernel(**kw)
        self._connect()
        self._log(f"kernel started pid={self.pid} in {time.monotonic() - t0:.2f}s")
        self._run_startup()
        return self

    def _connect(self) -> None:
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self.startup_timeout)

    def _run_startup(self) -> None:
        if self.startup_code:
            self.execute(self.startup_code, timeout=self.startup_timeout, check=True)

    @property
    def pid(self) -> int | None:
        p = getattr(self.km, "provisioner", None) if self.km else None
        proc = getattr(p, "process", None)
        return proc.pid if proc is not None else None

    def is_alive(self) -> bool:
        return bool(self.km) and self.km.is_alive()

    def interrupt(self) -> None:
        """What the stop button does: SIGINT to the kernel's process group."""
        self.km.interrupt_kernel()

    def kill_hard(self, group: bool = False, wait: float = 10.0) -> int:
        """Simulate a crash: SIGKILL the kernel pid (or its process group)."""
        pid = self.pid
        if pid is None:
            raise RuntimeError("no kernel process")
        if group:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while self.km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._log(f"SIGKILLed kernel pid={pid}")
        return pid

    def restart(self, now: bool = True, fresh_widgets: bool = True) -> None:
        """Restart the kernel (works after kill_hard too), reconnect, rerun startup.

        Any cell still marked running is marked 'died'.
        """
        old = self.pid
        for r in self._cells.values():
            if not r.done:
                r.status, r.t_done = "died", time.monotonic()
        if self.kc is not None:
            self.kc.stop_channels()
        t0 = time.monotonic()
        self.km.restart_kernel(now=now)
        self._connect()
        self.restarts += 1
        self._log(f"kernel restarted pid {old} -> {self.pid} in {time.monotonic() - t0:.2f}s")
        self._run_startup()

    def shutdown(self) -> None:
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                if self.km.has_kernel:
                    self.km.shutdown_kernel(now=not self.km.is_alive())
            finally:
                self.km = None
                if getattr(self, "_ipc_dir", None):
                    shutil.rmtree(self._ipc_dir, ignore_errors=True)

    def __enter__(self) -> KernelDriver:
        return self.start() if self.km is None else self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- execution ---------------------------------------------------------
    def submit(self, code: str, store_history: bool = True,
               stop_on_error: bool = True, cell_id: str | None = None) -> CellResult:
        """Send an execute_request; returns the (running) CellResult handle.

        cell_id: sent as the request's metadata ``cellId``, as JupyterLab, Notebook 7
        and VS Code do for every cell they execute."""
        if cell_id is None:
            msg_id = self.kc.execute(code, store_history=store_history,
                                     stop_on_error=stop_on_error, allow_stdin=False)
        else:
            content = {"code": code, "silent": False, "store_history": store_history,
                       "user_expressions": {}, "allow_stdin": False, "stop_on_error": stop_on_error}
            msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        r = CellResult(code=code, msg_id=msg_id, kernel_pid=self.pid)
        self._cells[msg_id] = r
        return r

    def collect(self, r: CellResult, timeout: float = 60.0,
                on_msg: Callable[[dict, CellResult], None] | None = None,
                stop_when: Callable[[CellResult], bool] | None = None,
                check: bool = False) -> CellResult:
        """Pump IOPub/shell until the cell is done (idle + execute_reply).

        stop_when(result) -> True returns early with status still 'running'
        (call collect again to continue).  If the kernel process dies the
        result gets status 'died'; on timeout, status 'timeout'.
        """
        deadline = time.monotonic() + timeout
        while not r.done:
            if stop_when is not None and stop_when(r):
                return r
            self._pump_shell()
            if r._idle and r.reply is not None:
                break
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._dispatch(msg, on_msg)
                continue
            if not self.km.is_alive():
                r.status, r.t_done = "died", time.monotonic()
                break
            if time.monotonic() > deadline:
                r.status, r.t_done = "timeout", time.monotonic()
                break
        if r.status == "running":
            st = (r.reply or {}).get("status", "ok")
            r.status, r.t_done = st, time.monotonic()
            r.execution_count = (r.reply or {}).get("execution_count", r.execution_count)
        if check and r.status != "ok":
            raise CellFailed(f"cell status={r.status}: {r.summary()}")
        return r

    def execute(self, code: str, timeout: float = 60.0, check: bool = False,
                on_msg: Callable[[dict, CellResult], None] | None = None,
                cell_id: str | None = None) -> CellResult:
        return self.collect(self.submit(code, cell_id=cell_id), timeout=timeout, on_msg=on_msg,
                            check=check)

    def drain(self, seconds: float = 0.2) -> int:
        """Process IOPub messages that arrive within `seconds` (e.g. widget
        updates from background threads after the cell finished)."""
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            self._dispatch(msg, None)
            n += 1
        return n

    def _pump_shell(self) -> None:
        while True:
            try:
                msg = self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                return
            pid = msg.get("parent_header", {}).get("msg_id")
            r = self._cells.get(pid)
            if r is not None and msg["msg_type"] == "execute_reply":
                r.reply = msg["content"]
                r.execution_count = msg["content"].get("execution_count")

    def _dispatch(self, msg: dict, on_msg) -> None:
        mt = msg["msg_type"]
        c = msg["content"]
        r = self._cells.get(msg.get("parent_header", {}).get("msg_id"))
        if r is None:
            self.unclaimed.append(msg)
            return
        r.raw.append(msg)
        if mt == "status":
            if c["execution_state"] == "idle":
                r._idle = True
        elif mt == "execute_input":
            r.execution_count = c.get("execution_count")
        elif mt == "stream":
            r.outputs.append({"output_type": "stream", "name": c["name"], "text": c["text"]})
        elif mt in ("display_data", "update_display_data"):
            r.outputs.append({"output_type": mt, "data": c["data"],
                              "metadata": c.get("metadata", {}),
                              "transient": c.get("transient", {})})
        elif mt == "execute_result":
            r.outputs.append({"output_type": "execute_result", "data": c["data"],
                              "metadata": c.get("metadata", {}),
                              "execution_count": c.get("execution_count")})
        elif mt == "error":
            r.outputs.append({"output_type": "error", "ename": c["ename"],
                              "evalue": c["evalue"], "traceback": c["traceback"]})
        elif mt == "clear_output":
            r.outputs.append({"output_type": "clear_output", "wait": c.get("wait", False)})
        elif mt.startswith("comm_"):
            r.comm_msgs.append({"msg_type": mt, "comm_id": c.get("comm_id"),
                                "target_name": c.get("target_name"),
                                "data": c.get("data"), "metadata": msg.get("metadata"),
                                "n_buffers": len(msg.get("buffers") or []),
                                "t": time.monotonic()})
        if on_msg is not None:
            on_msg(msg, r)
