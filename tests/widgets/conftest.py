"""Fixtures of the widget tests: a local worker pool that never outlives its test, and a
body executed in a thread while the test watches its progress."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zart_nb.config import configure
from zart_nb.engine.worker import stop_local_pools
from zart_nb.store.connection import close_store


@pytest.fixture
def workers(zart_env, monkeypatch) -> Iterator[int]:
    """Two local workers, started by the first body that waits (``ZART_WORKERS``); leases
    of 3 s, so that a body notices a cancel within a second."""
    monkeypatch.setenv("ZART_WORKERS", "2")
    monkeypatch.setenv("ZART_LEASE_SECONDS", "3")
    close_store()
    configure(None)
    yield 2
    stop_local_pools()


class Background:
    """A body called in a thread; ``result()`` joins it and returns or raises."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs) -> None:
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 60.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the body did not end within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def background() -> Callable[..., Background]:
    return Background

