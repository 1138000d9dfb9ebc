"""Async children the worker processes import (this module is on their path): each
appends a line to a side-effect log, so that the tests count how often it ran."""

from __future__ import annotations

import asyncio
import os

from tests.fanout.helpers import note
from zart_nb import context, step


@step("square-{i}")
async def square(log: str, i: int) -> tuple[int, int, str]:
    note(log, f"square-{i} pid={os.getpid()} attempt={context().attempt}")
    await asyncio.sleep(0.05)
    return i * i, os.getpid(), type(asyncio.get_running_loop()).__name__


@step("loop-{i}")
async def loop_id(i: int) -> tuple[int, int]:
    """Which event loop (and process) ran this child."""
    await asyncio.sleep(0.01)
    return os.getpid(), id(asyncio.get_running_loop())


@step(timeout=0.3)
async def stuck(log: str) -> None:
    try:
        await asyncio.sleep(30)
    finally:
        note(log, "stuck cleaned up")


@step(retry=2)
async def flaky(log: str) -> str:
    attempt = context().attempt
    note(log, f"flaky attempt={attempt}")
    if attempt < 2:
        raise ConnectionError("first attempt fails")
    return f"ok at attempt {attempt}"
