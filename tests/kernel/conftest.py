"""Kernels for the kernel tests: real ipykernel processes with this test's ``ZART_*``.

``kernels(...)`` starts a kernel (ipc transport, ``%load_ext zart_nb`` run after every
start and restart) whose environment is ``os.environ`` as the ``zart_env`` fixture set
it: the kernel uses the test's own database, home and secret. All are shut down at
the end of the test. ``ip`` is an in-process IPython shell with the extension loaded,
one per test module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .driver import KernelDriver

STARTUP = "%load_ext zart_nb"


@pytest.fixture
def kernels(zart_env, tmp_path: Path) -> Iterator[Callable[..., KernelDriver]]:
    started: list[KernelDriver] = []

    def start(startup: str | None = STARTUP, env: dict | None = None, **kwargs) -> KernelDriver:
        kd = KernelDriver(env={**os.environ, **(env or {})}, startup_code=startup,
                          transport="ipc", cwd=str(tmp_path), **kwargs)
        started.append(kd)
        return kd.start()

    yield start
    for kd in started:
        kd.shutdown()


@pytest.fixture
def kernel(kernels) -> KernelDriver:
    return kernels()


@pytest.fixture(scope="module")
def ip():
    """A shell of the module's own, cleared afterwards: IPython's shell is a process-wide
    singleton that later tests (which look for a front-end) must not find."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "zart_nb")
    yield shell
    shell.run_line_magic("unload_ext", "zart_nb")
    shell.cleanup()
    InteractiveShell.clear_instance()
