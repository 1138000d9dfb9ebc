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


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
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
