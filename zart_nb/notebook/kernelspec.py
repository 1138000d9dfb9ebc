"""The "Python 3 (zart durable)" kernelspec: ipykernel with ``--ext=zart_nb``.

The spec is generated, not copied: ``kernel/kernel.template.json`` gets this Python's
path and zart-nb's version, and is installed with the logos through jupyter_client's
``KernelSpecManager`` (``--user``, ``--sys-prefix`` or ``--prefix``). IPython maps
``--ext`` to ``extra_extensions``, so the kernel loads the extension at start.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ..errors import UsageError
from ..version import __version__

KERNEL_NAME = "zart"
TEMPLATE = "kernel.template.json"
LOGOS = ("logo-32x32.png", "logo-64x64.png")


def kernel_dict(python: str | None = None) -> dict[str, Any]:
    """The kernel.json content for ``python`` (default: this interpreter)."""
    template = (resources.files("zart_nb") / "kernel" / TEMPLATE).read_text()
    spec: dict[str, Any] = json.loads(template)
    spec["argv"] = [python or sys.executable if arg == "{python}" else arg for arg in spec["argv"]]
    spec["metadata"]["zart_nb"]["version"] = __version__
    return spec


def write_spec(directory: Path, python: str | None = None) -> Path:
    """Write kernel.json and the logos into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(kernel_dict(python), indent=2) + "\n")
    source = resources.files("zart_nb") / "kernel"
    for logo in LOGOS:
        with resources.as_file(source / logo) as path:
            shutil.copyfile(path, directory / logo)
    return directory


def install(user: bool = False, prefix: str | None = None, sys_prefix: bool = False,
            name: str = KERNEL_NAME) -> str:
    """Install the kernelspec; returns the directory it was installed into.

    ``user``: the user's Jupyter data dir; ``sys_prefix``: this environment
    (``sys.prefix``); ``prefix``: ``PREFIX/share/jupyter/kernels``; none of them: the
    system-wide location (which needs the rights to write there).
    """
    if sum(bool(x) for x in (user, prefix, sys_prefix)) > 1:
        raise UsageError("choose one of --user, --sys-prefix and --prefix")
    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory(prefix="zart-kernelspec-") as tmp:
        source = write_spec(Path(tmp) / name)
        try:
            return KernelSpecManager().install_kernel_spec(str(source), kernel_name=name,
                                                           user=user, prefix=prefix)
        except PermissionError as exc:
            raise UsageError(f"cannot install the kernel into {exc.filename}: permission denied; "
                             "use --user or --sys-prefix") from None
