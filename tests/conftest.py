"""Test-suite root: fixture plugins, and an environment free of the developer's ``ZART_*``.

The scrub runs at import, before any zart_nb module reads the environment, so that a
developer's own ZART_DATABASE_URL or ZART_SECRET can never leak into a test (or a test
write into the developer's database). ``ZART_TEST_DATABASE_URL`` is the one variable
kept: it chooses the server the tests use (see ``tests/fix_db.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

for _key in [k for k in os.environ if k.startswith("ZART_") and k != "ZART_TEST_DATABASE_URL"]:
    del os.environ[_key]

pytest_plugins = ["tests.fix_db"]


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test starts and ends without a cached Settings, an open Store or a local pool."""
    from zart_nb.config import configure
    from zart_nb.engine.worker import stop_local_pools
    from zart_nb.store.connection import close_store

    yield
    stop_local_pools()  # the pool a waiting body starts never outlives its test
    close_store()
    configure(None)
