"""The layers of DESIGN.md section 4 point one way: store -> engine -> notebook and CLI.

A lower layer never imports a higher one, not even lazily inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "zart_nb"
FOUNDATION = {"zart_nb.config", "zart_nb.errors", "zart_nb.codec", "zart_nb.manifest",
              "zart_nb.payload_codec", "zart_nb.pickle_export"}
HIGHER = {  # a module in the key's layer may not import these
    "foundation": ("zart_nb.store", "zart_nb.engine", "zart_nb.notebook", "zart_nb.cli"),
    "store": ("zart_nb.engine", "zart_nb.notebook", "zart_nb.cli"),
    "engine": ("zart_nb.notebook", "zart_nb.cli"),
    "notebook": ("zart_nb.cli",),
}


def layer_of(module: str) -> str | None:
    if module in FOUNDATION:
        return "foundation"
    for layer in ("store", "engine", "notebook"):
        if module.startswith(f"zart_nb.{layer}"):
            return layer
    return None


def imported(path: Path, module: str) -> set[str]:
    """Absolute names of every zart_nb module ``path`` imports, wherever the import is."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("zart_nb")}


MODULES = sorted(
    (".".join(("zart_nb", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"), p)
    for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_a_higher_layer(module, path):
    layer = layer_of(module)
    if layer is None:
        return  # the package's front (__init__, cli, demo) may import any layer
    wrong = sorted(n for n in imported(path, module) if n.startswith(HIGHER[layer]))
    assert not wrong, f"{module} ({layer}) imports {wrong}"


def test_the_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..notebook.progress import RunProgress\n")
    assert "zart_nb.notebook.progress" in imported(probe, "zart_nb.engine.probe")


MODULE_NAMES = {m for m, _ in MODULES}
FRONTS = {"zart_nb", "zart_nb.demo"} | {m for m in MODULE_NAMES if m.startswith("zart_nb.cli")}


def module_edges(path: Path, module: str) -> tuple[set[str], dict[str, str]]:
    """(zart_nb modules ``path`` imports, local name -> module for the imported modules)."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    edges: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULE_NAMES:
                    edges.add(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in MODULE_NAMES:  # a module imported from its package
                    edges.add(target)
                    aliases[alias.asname or alias.name] = target
                elif base in MODULE_NAMES:
                    edges.add(base)
    return edges, aliases


GRAPH = {m: module_edges(p, m)[0] - {m} for m, p in MODULES}


def test_no_import_cycles_lazy_or_not():
    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in GRAPH.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in sorted(GRAPH) if m not in FRONTS and (c := cycle_from(m))]
    assert not cycles, cycles[0]


def test_only_the_front_imports_the_package_itself():
    wrong = sorted(m for m, targets in GRAPH.items() if "zart_nb" in targets and m not in FRONTS)
    assert not wrong, f"{wrong} import zart_nb's __init__ (its public surface)"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_private_name_crosses_a_module_boundary(module, path):
    _, aliases = module_edges(path, module)
    wrong = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("zart_nb")):
            wrong += [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            wrong.append(f"{node.value.id}.{node.attr}")
    assert not wrong, f"{module} uses private names of other modules: {wrong}"


def test_the_checks_see_cycles_and_private_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from . import execution\nfrom .steps import _TimedOut\nexecution._current\n")
    edges, aliases = module_edges(probe, "zart_nb.engine.probe")
    assert "zart_nb.engine.execution" in edges and aliases["execution"] == "zart_nb.engine.execution"
