"""``%load_ext zart_nb`` (or the "Python 3 (zart durable)" kernel): registers the magics
and says, in one line, which database the kernel's runs go to. Nothing connects yet:
the store opens at the first magic that needs it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..config import settings
from ..errors import UsageError
from ..store.dsn import redact
from ..version import __version__
from . import progress
from .awaiting import Transformer, awaiting_cells
from .magics import ZartMagics

_loaded: dict[int, tuple[ZartMagics, Transformer]] = {}


def banner() -> str:
    """One line: zart-nb's version and where runs are stored (password redacted)."""
    try:
        s = settings()
    except UsageError as exc:
        return f"zart-nb {__version__}: configuration error: {exc}"
    if s.database_url:
        where = redact(s.database_url)
    else:
        home = s.home
        with contextlib.suppress(ValueError):
            home = Path("~") / home.relative_to(Path.home())
        where = f"embedded PostgreSQL in {home}"
    return f"zart-nb {__version__}: runs are stored in {where} (schema {s.schema})"


def load(ipython: Any) -> None:
    magics = ZartMagics(shell=ipython)
    ipython.register_magics(magics)
    transformer = awaiting_cells(ipython)  # zart cells that await are awaited by IPython
    ipython.input_transformers_post.append(transformer)
    _loaded[id(ipython)] = (magics, transformer)
    progress.register(ipython)  # a body waiting for children shows their live progress
    print(banner(), flush=True)


def unload(ipython: Any) -> None:
    loaded = _loaded.pop(id(ipython), None)
    if loaded is None:
        return
    magics, transformer = loaded
    magics.stop()
    if transformer in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(transformer)
    if not _loaded:
        progress.unregister()
    table = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        for name in list(table[kind]):
            if name.startswith("zart_"):
                del table[kind][name]
