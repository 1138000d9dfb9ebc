"""What a user sees in a real kernel for mistakes, the run magics, and the installed
"Python 3 (zart durable)" kernel (which loads the extension by itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from zart_nb.notebook.kernelspec import install

pytestmark = pytest.mark.kernel

MISTAKES = [
    ("%%zart_durable n --bogus\nx = 1", "unrecognized arguments: --bogus"),
    ("%%zart_durable\nx = 1", "the following arguments are required: NAME"),
    ("%zart_event some-run approval (1 +", "EXPR '(1 +' does not evaluate"),
    ("%zart_event some-run approval undefined_thing", "NameError"),
    ("%zart_attach no-such-run", "run 'no-such-run' does not exist"),
    ("%zart_resume no-such-run", "run 'no-such-run' does not exist"),
    ("%zart_load no-such-run", "run 'no-such-run' does not exist"),
    ("%%zart_durable n --timeout soon\nx = 1", "--timeout 'soon' is not a duration"),
]


def test_mistakes_are_one_line_without_traceback(kernel):
    for cell, reason in MISTAKES:
        r = kernel.execute(cell)
        assert r.status == "error", cell
        assert r.reply["ename"] == "UsageError"
        assert r.error is None or not r.error["traceback"], (cell, r.error)
        text = r.stderr
        assert text.startswith("UsageError: %"), (cell, text)
        first, usage = text.strip().splitlines()
        assert reason in first, (cell, first)
        assert usage.startswith("usage: %")
        assert "zart_nb/" not in text and "Traceback" not in text


def test_duplicate_step_name_is_one_line(kernel):
    kernel.execute("from zart_nb import step\n@step('same')\ndef f(x):\n    return x", check=True)
    r = kernel.execute("%%zart_durable dup\nf(1)\nf(2)")
    assert r.status == "error"
    assert r.stderr.startswith("UsageError: step name 'same' is used twice")
    assert len(r.stderr.strip().splitlines()) == 1


def test_user_error_traceback_shows_the_cell_not_the_library(kernel):
    r = kernel.execute("%%zart_durable boom\nx = 1\nraise ValueError('bad input')")
    assert r.status == "error" and r.error["ename"] == "ValueError"
    text = "\n".join(r.error["traceback"])
    assert "bad input" in text and "zart_nb/engine" not in text


def test_runs_table_event_and_attach(kernel):
    kernel.execute("from zart_nb import wait_for_event", check=True)
    kernel.execute("%%zart_durable quick\n41 + 1", check=True)
    r = kernel.execute("%zart_runs", check=True)
    table = next(o for o in r.outputs if o["output_type"] == "display_data")["data"]
    assert "<table" in table["text/html"] and "quick" in table["text/html"]
    assert "run id" in table["text/plain"] and "completed" in table["text/plain"]
    r = kernel.execute("%zart_attach quick", check=True)
    assert r.result == {"text/plain": "42"} and "attached to run 'quick'" in r.stdout
    r = kernel.execute("%zart_event quick approval {'ok': True}", check=True)
    assert "event 'approval' sent to run 'quick'" in r.stdout
    r = kernel.execute("%zart_event quick approval 1")
    assert r.status == "error" and "already sent" in r.stderr
    r = kernel.execute("%zart_resume quick")
    assert r.status == "error" and "is completed: nothing to resume" in r.stderr


def test_resume_reexecutes_the_stored_cell(kernels, tmp_path: Path):
    marker = tmp_path / "go"
    first = kernels()
    cell = (f"%%zart_durable resumable\nimport os\nfrom zart_nb import step\n"
            f"@step\ndef check():\n    if not os.path.exists({str(marker)!r}):\n"
            f"        raise RuntimeError('not yet')\n    return 'went'\ncheck()\n")
    r = first.execute(cell)
    assert r.status == "error" and r.error["ename"] == "RuntimeError"
    marker.write_text("go")
    other = kernels()
    r = other.execute("%zart_resume resumable", timeout=60, check=True)
    assert "resuming run 'resumable' (durable 'resumable')" in r.stdout
    assert r.result == {"text/plain": "'went'"}


def test_installed_kernel_loads_the_extension(kernels, tmp_path: Path):
    path = Path(install(prefix=str(tmp_path / "prefix"), name="zart-test"))
    spec = json.loads((path / "kernel.json").read_text())
    assert spec["argv"][-2:] == ["--ext=zart_nb", "--ZartMagics.auto_cells=True"]
    assert spec["display_name"] == "Python 3 (zart durable)"
    assert (path / "logo-64x64.png").read_bytes().startswith(b"\x89PNG")
    ksm = KernelSpecManager(kernel_dirs=[str(path.parent)])
    kd = kernels(startup=None, kernel_name="zart-test", kernel_spec_manager=ksm,
                 env={"JPY_SESSION_NAME": "/home/someone/analysis.ipynb"})
    r = kd.execute("%zart_run", check=True)  # no %load_ext: the kernel loaded it
    assert "step cells of this notebook belong to run 'analysis.ipynb'" in r.stdout
    r = kd.execute("%%zart_durable from-spec\n6 * 7", check=True)
    assert r.result == {"text/plain": "42"}
    # automatic step cells are on: a plain cell is checkpointed, and restored once more
    r = kd.execute("answer = 6 * 7\nanswer", check=True)
    assert r.stdout.startswith("zart: this front-end sends no cell ids")
    assert "zart: cell ran and was checkpointed in run 'analysis.ipynb'; 1 variable: answer" in r.stdout
    r = kd.execute("answer = 6 * 7\nanswer", check=True)
    assert r.stdout.startswith("zart: cell restored") and r.result == {"text/plain": "42"}


SQUARE = "from zart_nb import step, schedule, wait\n@step('sq-{i}')\ndef sq(i):\n    return i * i\n"


def test_timeout_cancels_the_run(kernel):
    kernel.execute("import time\nfrom zart_nb import step\n@step('tick-{i}')\n"
                   "def tick(i):\n    time.sleep(0.2)\n    return i", check=True)
    r = kernel.execute("%%zart_durable slow --timeout 1s\nfor i in range(50):\n    tick(i)\n",
                       timeout=60)
    assert r.status == "error"
    assert "was cancelled: it passed its --timeout of 1s" in r.error["evalue"]
    assert len(r.error["traceback"]) == 1
    r = kernel.execute("from zart_nb import Run\nRun('slow').status", check=True)
    assert r.result == {"text/plain": "'cancelled'"}


def test_fan_out_with_a_local_pool_and_worker_magic(kernel):
    kernel.execute(SQUARE, check=True)
    r = kernel.execute("%%zart_durable fan --workers 2\nwait([schedule(sq, i) for i in range(6)])",
                       timeout=90, check=True)
    assert r.result == {"text/plain": "[0, 1, 4, 9, 16, 25]"}
    r = kernel.execute("%zart_worker start -n 1", check=True)
    assert "worker pool started: 1 process" in r.stdout
    r = kernel.execute("%zart_worker status", check=True)
    assert "alive" in r.stdout
    r = kernel.execute("%zart_worker stop", check=True)
    assert "worker pool stopped" in r.stdout


def test_detach_hands_the_cell_to_the_workers(kernel):
    kernel.execute(SQUARE + "offset = 100", check=True)
    r = kernel.execute("%%zart_durable det --detach --workers 1\nvalues = [sq(i) for i in range(3)]\n"
                       "sum(values) + offset", timeout=60, check=True)
    assert "handed to the workers" in r.stdout and r.result is None
    r = kernel.execute("%zart_attach det --timeout 60s", timeout=90, check=True)
    assert r.result == {"text/plain": "105"}
    # executed here once it ended: its steps replay and its variables come back
    r = kernel.execute("%%zart_durable det\nvalues = [sq(i) for i in range(3)]\nsum(values) + offset",
                       timeout=60, check=True)
    assert "3 replayed, 0 executed" in r.stdout and r.result == {"text/plain": "105"}
    assert kernel.execute("values", check=True).result == {"text/plain": "[0, 1, 4]"}
