"""Fixtures of the engine tests: SQL on the test database, short leases."""

from __future__ import annotations

import pytest


@pytest.fixture
def short_lease(env) -> float:
    """Leases of 2 s (heartbeat every 0.67 s) for this process and the ones it spawns."""
    env(ZART_LEASE_SECONDS=2)
    return 2.0
