"""%%zart_step cells in a real kernel, "run all" before and after a restart: the second
time they are restored (not run), their variables back and their outputs shown again;
a changed upstream cell runs again and so does the downstream cell that reads it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def notebook(log: Path, base: int = 10) -> list[str]:
    return [
        "%zart_run nbtest",
        f"%%zart_step load\nLOG = {str(log)!r}\nwith open(LOG, 'a') as f:\n    f.write('load\\n')\n"
        f"base = {base}\nprint('loaded', base)\nbase",
        "%%zart_step other\nwith open(LOG, 'a') as f:\n    f.write('other\\n')\nlabel = 'fixed'\n",
        "%%zart_step double\nfrom IPython.display import HTML, display\n"
        "with open(LOG, 'a') as f:\n    f.write('double\\n')\ndoubled = base * 2\n"
        "display(HTML(f'<b>{doubled}</b>'))\nprint('doubled', doubled)\n",
    ]


def run_all(kd, cells: list[str]) -> list:
    return [kd.execute(cell, timeout=60, check=True) for cell in cells]


def runs_of(log: Path) -> Counter:
    return Counter(log.read_text().split())


def test_run_all_restart_run_all_restores(kernel, tmp_path: Path):
    log = tmp_path / "ran.txt"
    first = run_all(kernel, notebook(log))
    assert runs_of(log) == Counter(load=1, other=1, double=1)
    assert "checkpointed in run 'nbtest'" in first[1].stdout
    assert first[1].result == {"text/plain": "10"}
    assert any(o["output_type"] == "display_data" and o["data"].get("text/html") == "<b>20</b>"
               for o in first[3].outputs)

    kernel.restart()
    assert kernel.execute("'base' in globals()", check=True).result == {"text/plain": "False"}
    second = run_all(kernel, notebook(log))
    assert runs_of(log) == Counter(load=1, other=1, double=1)  # nothing ran again
    load, other, double = second[1:]
    assert load.stdout.startswith("zart: step cell 'load' restored (ran ")
    assert "variables: LOG, base" in load.stdout.splitlines()[0]
    assert "loaded 10" in load.stdout  # its output, shown again
    assert load.result == {"text/plain": "10"}  # and its Out[]
    assert other.stdout.startswith("zart: step cell 'other' restored")
    assert double.stdout.startswith("zart: step cell 'double' restored")
    assert any(o["output_type"] == "display_data" and o["data"].get("text/html") == "<b>20</b>"
               for o in double.outputs)
    r = kernel.execute("base, doubled, label", check=True)
    assert r.result == {"text/plain": "(10, 20, 'fixed')"}

    # the upstream cell changes: it runs again, and so does the cell that reads `base`
    third = run_all(kernel, notebook(log, base=11))
    load, other, double = third[1:]
    assert "ran because its code changed" in load.stdout
    assert other.stdout.startswith("zart: step cell 'other' restored")
    assert "ran because an input changed (base)" in double.stdout
    assert runs_of(log) == Counter(load=2, other=1, double=2)
    assert kernel.execute("doubled", check=True).result == {"text/plain": "22"}

    # and once more after a restart: all restored, with the new values
    kernel.restart()
    run_all(kernel, notebook(log, base=11))
    assert runs_of(log) == Counter(load=2, other=1, double=2)
    assert kernel.execute("base, doubled", check=True).result == {"text/plain": "(11, 22)"}


def test_load_variables_from_another_kernel(kernels, tmp_path: Path):
    log = tmp_path / "ran.txt"
    producer = kernels()
    run_all(producer, notebook(log))
    consumer = kernels()
    r = consumer.execute("%zart_load nbtest base doubled", check=True)
    assert "loaded 2 variables from run 'nbtest': base, doubled" in r.stdout
    assert consumer.execute("base + doubled", check=True).result == {"text/plain": "30"}
    r = consumer.execute("%zart_load nbtest nosuchvar")
    assert r.status == "error" and "stored no variable 'nosuchvar'" in r.stderr
