"""Automatic step cells (``%zart_auto on``, the default of the durable kernel): every plain
cell is a step cell of the notebook run, named by its Jupyter cell id.

IPython transforms a cell's text *before* it triggers ``pre_run_cell``: ipykernel's
``do_execute`` and ``InteractiveShell.run_cell`` both call ``transform_cell`` first, then
``run_cell_async``, which triggers the event with the cell id (``info.cell_id``). So the
transformer (the last of ``input_transformers_post``) cannot know the id: it replaces a
plain cell's Python with a call of ``%%zart_auto_cell`` (its body: a token) and keeps the Python under
that token. When the call executes, ``pre_run_cell`` has pushed the cell's
``ExecutionInfo``; the cell then runs, or is restored, through ``run_step_cell``, the
path of ``%%zart_step``, under the name the cell id gives.

Left as they are: empty cells; cells with a cell magic (``%%zart_step``,
``%%zart_always``, ``%%bash``…), except ``%%time`` and ``%%capture``, whose body is the
notebook's Python; cells made only of line magics and shell commands; cells using a
zart magic; cells with a top-level ``await``; silent executions (no ``pre_run_cell``:
their code runs as it is); cells executed from inside another cell.

A front-end that sends no cell id (nbclient, ``jupyter execute``, the console) gets cells
named by a hash of their text (``text-…``), said once: stable across restarts and
moves, but an edited cell is a new one to its checkpoint. Its position was not used: the
kernel sees executions, not the notebook, and "the third cell executed" changes with
every "run all" in one kernel.
"""

from __future__ import annotations

import ast
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from .cells import CellCode, analyse, compile_cell, compiling, transform
from .front import say
from .step_cells import StepRequest, run_step_cell

MAGIC = "zart_auto_cell"
BODY_MAGICS = ("time", "capture")  # cell magics whose body is the notebook's Python
_IPYTHON_CALLS = ("run_line_magic", "run_cell_magic", "system", "getoutput")
_KEPT = 256  # transformed cells kept by token (a cell transformed but never executed)


class AutoCells:
    """The automatic cells of one shell: its transformer, its event hooks, the cells'
    Python by token, and the execution that is under way (``pre_run_cell`` infos)."""

    def __init__(self, shell: Any, request: Callable[[str], StepRequest]) -> None:
        self.shell = shell
        self.request = request  # the StepRequest of a cell, given its name
        self.enabled = False
        self.executing: list[Any] = []  # ExecutionInfo of the cells under way, outermost first
        self.pending: OrderedDict[str, str] = OrderedDict()  # token -> the cell's Python
        self.said_fallback = False

    # -- switching ---------------------------------------------------------------------
    def enable(self) -> None:
        if self.enabled:
            return
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        self.shell.input_transformers_post.append(self.transformer)
        self.enabled = True

    def disable(self) -> None:
        if not self.enabled:
            return
        self.shell.events.unregister("pre_run_cell", self.pre_run_cell)
        self.shell.events.unregister("post_run_cell", self.post_run_cell)
        self.shell.input_transformers_post.remove(self.transformer)
        self.enabled = False
        self.executing.clear()

    # -- IPython's side ------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.executing.append(info)

    def post_run_cell(self, result: Any) -> None:
        info = getattr(result, "info", None)
        for i in range(len(self.executing) - 1, -1, -1):
            if self.executing[i] is info:
                del self.executing[i:]
                return

    def transformer(self, lines: list[str]) -> list[str]:
        """A plain cell becomes a call of ``%%zart_auto_cell``; other text stays."""
        if self.executing or compiling():
            return lines
        python = "".join(lines)
        if not automatic(python):
            return lines
        token = hashlib.blake2b(python.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        self.pending[token] = python
        self.pending.move_to_end(token)
        while len(self.pending) > _KEPT:
            self.pending.popitem(last=False)
        return [f"get_ipython().run_cell_magic({MAGIC!r}, '', {token!r})\n"]

    # -- the cell's execution --------------------------------------------------------------
    def run(self, token: str) -> Any:
        """Execute the automatic cell kept under ``token``: as a step cell, or as it is
        when no cell is under way (a silent execution)."""
        __tracebackhide__ = True
        python = self.pending.get(token)
        if python is None:
            raise UsageError(f"%%{MAGIC} {token}: no cell was transformed under this token "
                             "(it runs only as the code of an automatic cell)")
        info = self.executing[-1] if self.executing else None
        if info is None or info.raw_cell is None:
            return compile_cell(python, self.shell, python=python).run(self.shell.user_ns)
        raw = info.raw_cell
        cell = compile_cell(raw, self.shell, python=python)
        add_body_analysis(self.shell, cell)
        return run_step_cell(self.shell, raw, self.request(self.name_of(info)), cell=cell)

    def name_of(self, info: Any) -> str:
        """The cell id, or a hash of the cell's text where the front-end sent none."""
        cell_id = getattr(info, "cell_id", None)
        if isinstance(cell_id, str) and cell_id.strip():
            return cell_id
        text = "\n".join(line.rstrip() for line in info.raw_cell.strip().splitlines())
        name = "text-" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        if not self.said_fallback:
            self.said_fallback = True
            say(f"this front-end sends no cell ids: automatic cells are named by a hash of their "
                f"text (this one: {name}); an edited cell starts a new checkpoint")
        return name


# -- which cells are automatic ------------------------------------------------------------

def automatic(python: str) -> bool:
    """Whether a cell (as IPython transformed it) becomes an automatic step cell."""
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return False  # IPython shows the error as usual
    if not tree.body or _awaits(tree):
        return False
    calls = [ipython_call(stmt) for stmt in tree.body]
    for call in calls:
        if call is None:
            continue
        method, name = call
        if name.startswith("zart_") or (method == "run_cell_magic" and name not in BODY_MAGICS):
            return False
    if all(call is not None for call in calls):  # only magics and shell commands
        return len(calls) == 1 and calls[0] is not None and calls[0][0] == "run_cell_magic"
    return True


def ipython_call(stmt: ast.stmt) -> tuple[str, str] | None:
    """(method, magic name) when ``stmt`` is a magic or shell command as IPython wrote it
    (``get_ipython().run_line_magic('time', ...)``, ``x = get_ipython().getoutput(...)``)."""
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        return None
    owner = value.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
            and owner.func.id == "get_ipython" and value.func.attr in _IPYTHON_CALLS):
        return None
    first = value.args[0] if value.args else None
    name = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
    return value.func.attr, name if value.func.attr.startswith("run_") else ""


def _awaits(tree: ast.AST) -> bool:
    """A top-level ``await`` (``async for``, ``async with``): IPython runs such a cell itself."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)) or _awaits(node):
            return True
    return False


def add_body_analysis(shell: Any, cell: CellCode) -> None:
    """A ``%%time`` or ``%%capture`` cell reads and binds what its body does."""
    tree = ast.parse(cell.python)
    stmt = tree.body[0] if len(tree.body) == 1 else None
    call = ipython_call(stmt) if stmt is not None else None
    if call is None or call[0] != "run_cell_magic" or not isinstance(stmt, (ast.Expr, ast.Assign)):
        return
    assert isinstance(stmt.value, ast.Call)  # ipython_call said so
    body = stmt.value.args[2] if len(stmt.value.args) > 2 else None
    if not (isinstance(body, ast.Constant) and isinstance(body.value, str)):
        return
    reads, binds = analyse(transform(shell, body.value))
    cell.reads = sorted(set(cell.reads) | set(reads))
    cell.binds = sorted(set(cell.binds) | set(binds))
