"""The progress widget in a real browser: JupyterLab, Debian's chromium, Playwright.

The user's own path: a notebook whose ``%%zart_durable`` cell fans out 200 children (one
fails while a flag file exists). Run from Lab's menu, the widget appears by itself
(``%load_ext zart_nb`` registered it), renders from the anywidget ESM, moves live and
reaches 100 %; clicking the failed child shows its traceback and its Retry button re-runs
it through a custom message. The kernel is restarted from Lab's toolbar, the cell runs
again, and the widget shows every child replayed. Screenshots go to
``test-output/browser/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from .lab import CHROME_ARGS, CHROMIUM, Lab, kernel_idle, menu

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-output" / "browser"
N = 200
SETUP_CELL = """\
%load_ext zart_nb
import os, time
from zart_nb import schedule, wait

FLAG = os.path.abspath("fail-child-7")

def work(i, flag):
    time.sleep(0.01 + (i % 11) / 1000)
    if i == 7 and os.path.exists(flag):
        raise ValueError(f"child {i} fails while {flag} exists")
    return i
"""
FANOUT_CELL = f"""\
%%zart_durable browser-fanout
results = wait([schedule(work, i, FLAG) for i in range({N})], return_exceptions=True)
total = sum(r for r in results if isinstance(r, int))
print("total", total)
"""
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {},
               "outputs": [], "source": source}
              for cell_id, source in (("setup", SETUP_CELL), ("fanout", FANOUT_CELL))],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}
WIDGET = ".jp-OutputArea-output .zart-progress"
BIG = 10_000
BIG_NOTEBOOK = {**NOTEBOOK, "cells": [{
    "cell_type": "code", "execution_count": None, "id": "big", "metadata": {}, "outputs": [],
    "source": "import zart_nb\nzart_nb.run('big').progress()"}]}
# A run of 10,000 children in every state, written straight into the journal: the
# engine would take a minute to run them, and only the widget is under test here.
BIG_RUN = """
INSERT INTO runs (run_id, name, status, started_at)
VALUES ('big', 'big-batch', 'waiting', now() - interval '83 s');
INSERT INTO steps (run_id, generation, name, kind, status, seq, attempts, error, traceback, finished_at)
SELECT 'big', 1, 'check-' || i, 'child',
       CASE WHEN i % 997 = 0 THEN 'failed' WHEN i < 6000 THEN 'completed'
            WHEN i < 6016 THEN 'running' ELSE 'scheduled' END,
       i, CASE WHEN i BETWEEN 6016 AND 6040 OR i % 997 = 0 THEN 1 ELSE 0 END,
       CASE WHEN i % 997 = 0 THEN 'TimeoutError: service ' || i || ' did not answer' END,
       CASE WHEN i % 997 = 0 THEN 'Traceback (most recent call last):
  ...
TimeoutError' END,
       CASE WHEN i < 6000 THEN now() END
FROM generate_series(0, %s - 1) AS i;
"""


@pytest.fixture
def lab(zart_env, tmp_path: Path, monkeypatch):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (make browser-deps)")
    monkeypatch.setenv("ZART_WORKERS", "2")
    root = tmp_path / "root"
    root.mkdir()
    (root / "fanout.ipynb").write_text(json.dumps(NOTEBOOK))
    (root / "big.ipynb").write_text(json.dumps(BIG_NOTEBOOK))
    server = Lab(root, tmp_path / "lab", secrets.token_hex(16)).start()
    yield server
    server.stop()


@pytest.fixture
def shots(request) -> Path:
    """test-output/browser/<test name>/, emptied first."""
    folder = SHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def page(lab, tmp_path: Path, shots: Path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, args=CHROME_ARGS,
            viewport={"width": 1200, "height": 900})
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        pg.on("console", lambda m: errors.append(m.text[:300])
              if m.type == "error" and "zart" in m.text.lower() else None)
        pg.errors = errors
        try:
            yield pg
        except BaseException:
            pg.screenshot(path=str(shots / "FAILED.png"))
            raise
        finally:
            ctx.close()


def run_cell(page) -> None:
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output').length === 0")
    menu(page, "Run", "Run All Cells")


def widget_state(page) -> dict:
    return page.locator(WIDGET).first.evaluate(
        """e => ({...e.dataset,
                  counts: Object.fromEntries([...e.querySelectorAll('.zp-count')]
                                              .map(c => [c.dataset.state, +c.dataset.count])),
                  pct: e.querySelector('.zp-pct').textContent,
                  pace: e.querySelector('.zp-pace').textContent})""")


def test_progress_widget_live_retry_and_replay_after_restart(lab, page, shots):
    flag = lab.root / "fail-child-7"
    flag.touch()
    page.goto(f"{lab.base}/lab/tree/fanout.ipynb?token={lab.token}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    kernel_idle(page)

    # first run: the widget appears while the children run and ends at 100 %
    t0 = time.monotonic()
    run_cell(page)
    page.wait_for_selector(WIDGET, timeout=60_000)
    seen, paces, mid_shot = [], [], False
    while time.monotonic() - t0 < 60:
        state = widget_state(page)
        seen.append(int(state["finished"]))
        paces.append((float(state.get("rate", 0)), float(state.get("eta", -1)),
                      state["pace"], state["status"]))
        if not mid_shot and N // 5 < seen[-1] < N * 4 // 5:
            page.locator(WIDGET).screenshot(path=str(shots / "0-running.png"))
            mid_shot = True
        if state["status"] == "completed" and state["percent"] == "100":
            break
        time.sleep(0.05)
    assert state["status"] == "completed" and state["percent"] == "100", state
    assert state["total"] == str(N) and state["counts"]["failed"] == 1
    assert state["counts"]["completed"] == N - 1 and state["counts"]["replayed"] == 0
    assert len({f for f in seen if 0 < f < N}) >= 2, f"the bar did not move live: {seen}"
    assert any(rate > 0 and eta > 0 and "children/s" in text and "left" in text
               for rate, eta, text, status in paces if status != "completed"), paces
    assert "children/s" in state["pace"] and "left" not in state["pace"]  # the average
    assert page.locator(f"{WIDGET} canvas.zp-grid").count() == 1
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea')]"
                           f".some(o => o.innerText.includes('total {sum(range(N)) - 7}'))",
                           timeout=30_000)
    kernel_idle(page)

    # the failed child: one click shows its error and traceback, Retry re-runs it
    page.locator(f"{WIDGET} .zp-failed-item").first.click()
    detail = page.locator(f"{WIDGET} .zp-detail")
    detail.locator(".zp-traceback").wait_for(timeout=15_000)
    assert detail.locator(".zp-detail-name").inner_text() == "work-7"
    assert "ValueError" in detail.locator(".zp-traceback").inner_text()
    page.screenshot(path=str(shots / "1-first-run-failed-child.png"), full_page=True)
    page.locator(WIDGET).screenshot(path=str(shots / "1-widget.png"))
    flag.unlink()
    detail.locator(".zp-retry").click()
    page.wait_for_function(  # queued again, then run by the kernel's workers
        f"() => {{ const e = document.querySelector('{WIDGET}');"
        " const f = e.querySelector('.zp-count-failed');"
        f" return f && f.dataset.count === '0' && e.dataset.finished === '{N}'; }}",
        timeout=30_000)
    assert "queued again" in page.locator(f"{WIDGET} .zp-message").inner_text()
    page.locator(WIDGET).screenshot(path=str(shots / "2-after-retry.png"))

    # restart the kernel from the toolbar, run the cell again: everything is replayed
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:restart-kernel"]').click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    dialog.locator("button.jp-mod-accept").click()
    time.sleep(0.5)
    kernel_idle(page)
    t1 = time.monotonic()
    run_cell(page)
    page.wait_for_selector(f"{WIDGET}[data-status='completed']", timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea')]"
                           f".some(o => o.innerText.includes('total {sum(range(N))}'))",
                           timeout=30_000)
    replay_seconds = time.monotonic() - t1
    assert f"run 'browser-fanout': {N} replayed, 0 executed" in page.locator(
        ".jp-NotebookPanel").inner_text()
    state = widget_state(page)
    assert state["percent"] == "100" and state["counts"]["replayed"] == N, state
    assert state["counts"]["failed"] == 0 and state["counts"]["completed"] == 0
    assert replay_seconds < 20, f"the replay took {replay_seconds:.1f} s"
    page.locator(WIDGET).screenshot(path=str(shots / "3-replayed-after-restart.png"))
    page.screenshot(path=str(shots / "3-notebook.png"), full_page=True)
    assert page.locator(WIDGET).count() == 1
    assert not page.errors, page.errors


def test_ten_thousand_children_render_as_one_canvas(zart_env, lab, page, shots):
    with psycopg.connect(zart_env.database_url, autocommit=True,
                         options="-c search_path=zart") as conn:
        conn.execute(BIG_RUN.replace("%s", str(BIG)))
    page.goto(f"{lab.base}/lab/tree/big.ipynb?token={lab.token}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    kernel_idle(page)
    t0 = time.monotonic()
    run_cell(page)
    page.wait_for_selector(f"{WIDGET}[data-total='{BIG}']", timeout=60_000)
    shown_in = time.monotonic() - t0
    state = widget_state(page)
    failed = len(range(0, BIG, 997))
    assert state["counts"] == {"completed": 6000 - 7, "replayed": 0, "running": 16,
                               "retrying": 25, "scheduled": BIG - 6016 - 25 - 4,
                               "failed": failed}, state["counts"]
    assert state["status"] == "waiting" and state["finished"] == str(6000 - 7 + failed)
    canvas = page.locator(f"{WIDGET} canvas.zp-grid")
    assert canvas.count() == 1 and page.locator(f"{WIDGET} *").count() < 200, "one node per child?"
    box, panel = canvas.bounding_box(), page.locator(WIDGET).bounding_box()
    assert box["x"] + box["width"] <= panel["x"] + panel["width"], "the grid overflows"
    # drawn: child 0 (failed) is red, child 1 (completed) green, the last (scheduled) grey
    pixels = canvas.evaluate("""c => {
        const ctx = c.getContext('2d'), d = window.devicePixelRatio || 1;
        const cell = (i) => { const cols = Math.floor((c.width / d + 1) / 5);
            const x = (i % cols) * 5 + 1, y = Math.floor(i / cols) * 5 + 1;
            return Array.from(ctx.getImageData(x * d, y * d, 1, 1).data.slice(0, 3)); };
        return [cell(0), cell(1), cell(LAST)]; }""".replace("LAST", str(BIG - 1)))
    assert pixels == [[0xe5, 0x39, 0x35], [0x43, 0xa0, 0x47], [0xcf, 0xd8, 0xdc]], pixels
    # the child under a click: its name, error and traceback from the kernel
    canvas.click(position={"x": 2, "y": 2})  # child 0 fails (0 % 997 == 0)
    detail = page.locator(f"{WIDGET} .zp-detail .zp-detail-name")
    detail.wait_for(timeout=15_000)
    assert detail.inner_text() == "check-0"
    page.locator(WIDGET).screenshot(path=str(shots / "4-ten-thousand.png"))
    assert shown_in < 15, f"the widget took {shown_in:.1f} s to show"
    assert not page.errors, page.errors
