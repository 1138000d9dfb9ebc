"""A cell's code: compiled once, split at its last expression, and what names it reads/binds.

``CellCode`` turns a cell's text (after IPython's input transformations, so ``!ls``
and line magics inside work) into two code objects: the statements, executed in the
user's namespace, and the final expression, evaluated for the cell's value, as
IPython does for ``Out[n]``. A cell that uses top-level ``await`` compiles to code
objects that make coroutines (as IPython compiles such cells): ``arun`` awaits them.

``reads`` are the names the cell takes from the namespace: referenced before the cell
binds them (in order of execution, statement by statement), plus the module-level
names that functions and comprehensions of the cell use. ``binds`` are the names the
cell's top level assigns, imports, defines or deletes. Both are over-approximations on
purpose: a name wrongly taken as read only costs a re-execution, one missed would
replay a stale cell. What a cell changes in place (``df["x"] = …``, ``lst.append(x)``)
is not guessed from the syntax: ``cell_state`` sees it by value, fingerprinting the
names the cell reads before and after it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import symtable
import types
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# set while a cell's own text goes through IPython's transformers (not a cell executing)
_compiling: ContextVar[bool] = ContextVar("zart_compiling", default=False)


@dataclass
class CellCode:
    """The compiled cell; ``source`` is the user's text, ``python`` what was compiled."""

    source: str
    python: str
    body: types.CodeType
    last: types.CodeType | None
    silent: bool  # ends with ';': the value is not shown
    reads: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    resources: set[str] = field(default_factory=set)  # bound by ``with … as NAME``

    @property
    def code_fp(self) -> bytes:
        """Fingerprint of the cell's code: its text, without trailing blanks per line."""
        text = "\n".join(line.rstrip() for line in self.source.strip().splitlines())
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    @property
    def is_async(self) -> bool:
        """The cell uses top-level ``await`` (``async for``, ``async with``)."""
        return any(_makes_coroutine(code) for code in (self.body, self.last) if code is not None)

    def run(self, namespace: dict[str, Any]) -> Any:
        """Execute the cell in ``namespace``; the last expression's value (or None)."""
        __tracebackhide__ = True
        exec(self.body, namespace)
        if self.last is None:
            return None
        value = eval(self.last, namespace)
        return None if self.silent else value

    async def arun(self, namespace: dict[str, Any]) -> Any:
        """``run`` for a cell that awaits, on the running event loop."""
        __tracebackhide__ = True
        if _makes_coroutine(self.body):
            await eval(self.body, namespace)
        else:
            exec(self.body, namespace)
        if self.last is None:
            return None
        value = eval(self.last, namespace)
        if _makes_coroutine(self.last):
            value = await value
        return None if self.silent else value


def compile_cell(source: str, shell: Any = None, *, filename: str | None = None,
                 python: str | None = None) -> CellCode:
    """Compile ``source``; with an IPython ``shell``, transformed and cached for tracebacks.
    ``python``: the cell already transformed (an automatic cell's).

    A SyntaxError propagates as is (the user's cell has it, IPython shows it).
    """
    if python is None:
        python = transform(shell, source) if shell is not None else source
    if filename is None:
        if shell is not None:
            # run_cell counts the cell before executing it: this cell is the one before
            number = max(1, shell.execution_count - 1)
            filename = shell.compile.cache(python, number, raw_code=source)
        else:
            filename = "<zart cell>"
    tree = ast.parse(python, filename=filename)
    last = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):
        tree.body.pop()
        expr = ast.Expression(final.value)
        last = compile(expr, filename, "eval", flags=TOP_LEVEL_AWAIT)
    body = compile(tree, filename, "exec", flags=TOP_LEVEL_AWAIT)
    silent = python.rstrip().endswith(";")
    reads, binds = analyse(python)
    return CellCode(source, python, body, last, silent, reads, binds, with_targets(tree))


TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def awaits(python: str) -> bool:
    """``python`` (a transformed cell) uses top-level ``await``: run as a coroutine."""
    try:
        return _makes_coroutine(compile(python, "<cell>", "exec", flags=TOP_LEVEL_AWAIT))
    except (SyntaxError, ValueError):
        return False


def _makes_coroutine(code: types.CodeType) -> bool:
    return bool(code.co_flags & inspect.CO_COROUTINE)


def transform(shell: Any, source: str) -> str:
    """IPython's transformation of a cell's text (magics, ``!``), as a cell's own text:
    ``compiling()`` tells the automatic cells' transformer that this is no execution."""
    token = _compiling.set(True)
    try:
        python: str = shell.transform_cell(source)
    finally:
        _compiling.reset(token)
    return python


def compiling() -> bool:
    """True while zart transforms a cell's text that is not being executed as a cell."""
    return _compiling.get()


# -- which names a cell reads and binds -------------------------------------------

def analyse(python: str) -> tuple[list[str], list[str]]:
    """(names read from the namespace, names bound) by ``python`` (valid source)."""
    tree = ast.parse(python)
    reads: list[str] = []
    bound: set[str] = set()
    for stmt in tree.body:
        for name in sorted(_reads_of(stmt) - bound - set(reads)):
            if _first_use(stmt, name) == "read":
                reads.append(name)
        bound |= _stores(stmt)
    binds = sorted(_stores_all(tree))
    return reads, binds


def with_targets(tree: ast.AST) -> set[str]:
    """Names bound by ``with … as NAME``: files, locks, connections, usually."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    found |= {n.id for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name)}
    return found


def _reads_of(node: ast.AST | None) -> set[str]:
    """Names ``node`` (a statement or an expression) takes from the module namespace,
    its own nested functions, lambdas and comprehensions included (their locals not)."""
    if node is None:
        return set()
    table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_referenced()} | _nested_globals(table)


def _nested_globals(table: symtable.SymbolTable) -> set[str]:
    found: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                found.add(sym.get_name())
        found |= _nested_globals(child)
    return found


def _target_reads(node: ast.AST | None) -> set[str]:
    """Names an assignment target reads: ``a`` in ``a[i] = …`` (and ``i``)."""
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _mentions(stmt: ast.stmt, name: str) -> bool:
    return name in _reads_of(stmt) or name in _stores(stmt)


def _first_use(stmt: ast.stmt, name: str) -> str:
    """"read" when executing ``stmt`` may read ``name`` before binding it, else "bound"."""
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        target_reads = set().union(*(_target_reads(t) for t in targets))
        return "read" if name in _reads_of(stmt.value) | target_reads else "bound"
    if isinstance(stmt, ast.AugAssign):
        return "read"
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        if name in _reads_of(stmt.iter):
            return "read"
        if name in _stores(ast.Expr(stmt.target)) and name not in _target_reads(stmt.target):
            return "bound"
        return _first_in(stmt.body + stmt.orelse, name)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            if name in _reads_of(item.context_expr):
                return "read"
            if item.optional_vars is not None and name in _stores(ast.Expr(item.optional_vars)):
                return "bound"
        return _first_in(stmt.body, name)
    if isinstance(stmt, (ast.If, ast.While)):
        if name in _reads_of(stmt.test):
            return "read"
        return _first_in(stmt.body + stmt.orelse, name)
    if isinstance(stmt, ast.Try):
        return _first_in(stmt.body, name)
    # imports, definitions (decorators, defaults and the globals their bodies use), others
    return "read" if name in _reads_of(stmt) else "bound"


def _first_in(stmts: list[ast.stmt], name: str) -> str:
    for stmt in stmts:
        if _mentions(stmt, name):
            return _first_use(stmt, name)
    return "read"


def _stores(stmt: ast.stmt) -> set[str]:
    """Names bound at the cell's top level by ``stmt`` (not inside functions/classes)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.add(node.id)
        elif isinstance(node, ast.NamedExpr):
            found.add(node.target.id)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found.add(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return found


def _stores_all(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for stmt in tree.body:
        found |= _stores(stmt)
    return found
