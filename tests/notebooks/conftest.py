"""Executing the example notebooks of notebooks/ as a user would: nbclient, a real
``python3`` kernel (the notebooks load the extension themselves), a real PostgreSQL.

``run_notebook`` executes one notebook in a fresh kernel whose environment is
``os.environ`` as ``zart_env`` set it (this test's own database, home and secret), with
the widget state saved like Jupyter saves it. The executed copy is written under the
test's ``tmp_path``, never into notebooks/.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Executed:
    """An executed notebook, with helpers to read what its cells showed."""

    def __init__(self, nb: nbformat.NotebookNode, path: Path) -> None:
        self.nb = nb
        self.path = path

    def cell(self, starts_with: str, nth: int = 0) -> nbformat.NotebookNode:
        found = [c for c in self.nb.cells if c.cell_type == "code" and c.source.startswith(starts_with)]
        assert len(found) > nth, f"{self.path.name}: no code cell #{nth} starting with {starts_with!r}"
        return found[nth]

    def text(self, starts_with: str, nth: int = 0) -> str:
        """Everything the cell printed or showed as text/plain, ANSI colours removed."""
        return cell_text(self.cell(starts_with, nth))

    def result(self, starts_with: str, nth: int = 0) -> str | None:
        for o in self.cell(starts_with, nth).outputs:
            if o.output_type == "execute_result":
                return o.data["text/plain"]
        return None

    def errors(self) -> list[str]:
        return [f"{o.ename}: {ANSI.sub('', o.evalue)}" for c in self.nb.cells if c.cell_type == "code"
                for o in c.outputs if o.output_type == "error"]

    def widget_states(self) -> dict:
        saved = nbformat.read(self.path, as_version=4)  # what is on disk, as a viewer sees it
        return saved.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def cell_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.append("\n".join(o.traceback))
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"] + "\n")
    return ANSI.sub("", "".join(parts))


@pytest.fixture
def run_notebook(zart_env, tmp_path: Path) -> Callable[..., Executed]:
    """``run_notebook("01-quickstart.ipynb", edit=None)``: execute it in a fresh kernel.

    ``edit(nb)`` may change the notebook before it runs (a user editing a cell). Cell
    errors do not stop the notebook (``allow_errors``): the test asserts on them.
    """
    numbers = itertools.count(1)
    cwd = tmp_path / "cwd"  # the kernel's working directory (the notebook's folder)
    cwd.mkdir()

    def run(name: str, edit: Callable[[nbformat.NotebookNode], None] | None = None,
            timeout: int = 120) -> Executed:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        if edit is not None:
            edit(nb)
        out = tmp_path / f"{Path(name).stem}-executed-{next(numbers)}.ipynb"
        client = NotebookClient(nb, kernel_name="python3", timeout=timeout, allow_errors=True,
                                store_widget_state=True,
                                resources={"metadata": {"path": str(cwd)}})
        try:
            # asyncio.run, not client.execute(): the loop is closed even in a thread
            asyncio.run(client.async_execute())
        finally:
            nbformat.write(nb, out)
        return Executed(nb, out)

    return run
