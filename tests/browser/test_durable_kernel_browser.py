"""The durable kernel in a real browser: JupyterLab, Debian's chromium, Playwright.

A notebook in the "Python 3 (zart durable)" kernel (installed into a prefix the server
reads) runs once; then the menu "Kernel → Restart Kernel and Run All Cells…" restores
every cell: its text, HTML, image and ``Out[n]`` are shown again, a value changed in
place (``rows.append``) is back, and no cell ran again (each appends a line to a file
when it runs). Every wait is on a condition of the page or of the kernel, with generous
limits: the machine is shared and may be slow. Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import Counter
from pathlib import Path

import pytest

from zart_nb.notebook.kernelspec import install

from .lab import CHROME_ARGS, CHROMIUM, Lab, kernel_idle, menu

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-output" / "browser"
KERNEL = "zart-durable-browser"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGP4z8AARwzEcQCukw/x0F8jngAAAABJRU5ErkJggg=="
CELLS = [
    ("setup", "import os\nLOG = os.path.abspath('ran.txt')\n\ndef mark(name):\n"
              "    with open(LOG, 'a') as f:\n        f.write(name + '\\n')"),
    ("load", "mark('load')\nrows = list(range(10))\nprint('loaded', len(rows), 'rows')"),
    ("html", "mark('html')\nfrom IPython.display import HTML, display\n"
             "display(HTML(f'<b class=\"zart-total\">total {sum(rows)}</b>'))"),
    ("mutate", "mark('mutate')\nrows.append(100)\nlen(rows)"),
    ("image", f"mark('image')\nimport base64\nfrom IPython.display import Image\n"
              f"Image(data=base64.b64decode({PNG!r}))"),
]
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": cid, "metadata": {},
               "outputs": [], "source": src} for cid, src in CELLS],
    "metadata": {"kernelspec": {"display_name": "Python 3 (zart durable)", "language": "python",
                                "name": KERNEL}},
    "nbformat": 4, "nbformat_minor": 5,
}
OUTPUTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(
    c => c.querySelector('.jp-OutputArea') ? c.querySelector('.jp-OutputArea').innerText : '')"""


@pytest.fixture
def lab(zart_env, tmp_path: Path, monkeypatch):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (make browser-deps)")
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), name=KERNEL)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    root = tmp_path / "root"
    root.mkdir()
    (root / "durable.ipynb").write_text(json.dumps(NOTEBOOK))
    server = Lab(root, tmp_path / "lab", secrets.token_hex(16)).start()
    yield server
    server.stop()


@pytest.fixture
def page(lab, tmp_path: Path, request):
    from playwright.sync_api import sync_playwright

    shots = SHOTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, args=CHROME_ARGS,
            viewport={"width": 1200, "height": 1100})
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.shots = shots
        try:
            yield pg
        except BaseException:
            pg.screenshot(path=str(shots / "FAILED.png"), full_page=True)
            raise
        finally:
            ctx.close()


def wait_for_outputs(page, every: str, timeout_ms: int = 180_000) -> list[str]:
    """Wait until every code cell's output holds ``every`` (a DOM condition)."""
    page.wait_for_function(f"() => ({OUTPUTS_JS})().every(t => t.includes({every!r}))",
                           timeout=timeout_ms)
    return page.evaluate(OUTPUTS_JS)


def marks(lab: Lab) -> Counter:
    log = lab.root / "ran.txt"
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_restart_and_run_all_from_the_menu_restores_every_cell(lab, page):
    page.goto(f"{lab.base}/lab/tree/durable.ipynb?token={lab.token}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
    kernel_idle(page, timeout=120)
    menu(page, "Run", "Run All Cells")
    first = wait_for_outputs(page, "zart: cell")
    kernel_idle(page, timeout=120)
    assert marks(lab) == Counter(["load", "html", "mutate", "image"])
    assert "zart: cell ran and was checkpointed" in first[1] and "loaded 10 rows" in first[1]
    assert "(rows changed in place)" in first[3]
    page.screenshot(path=str(page.shots / "0-first-run.png"), full_page=True)

    menu(page, "Kernel", "Restart Kernel and Run All Cells…")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=60_000)
    dialog.locator("button.jp-mod-accept").click()
    outputs = wait_for_outputs(page, "zart: cell restored")
    kernel_idle(page, timeout=120)
    page.screenshot(path=str(page.shots / "1-restored.png"), full_page=True)

    assert marks(lab) == Counter(["load", "html", "mutate", "image"])  # no cell ran again
    assert "loaded 10 rows" in outputs[1]
    assert page.locator(".jp-OutputArea-output .zart-total").inner_text() == "total 45"
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    assert cells.nth(3).locator(".jp-OutputArea-output").last.inner_text().strip() == "11"
    assert cells.nth(4).locator(".jp-OutputArea-output img").count() == 1
    prompt = cells.nth(3).locator(".jp-OutputArea-prompt").last.inner_text()
    assert prompt.startswith("[") and prompt != "[ ]:"  # an Out[n] of this kernel's execution
