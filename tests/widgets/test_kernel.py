"""The widget in a real kernel (jupyter_client) and in a notebook executed by nbclient:
what a front-end receives through the kernel's comm messages, and what is saved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .mirror import PROGRESS_ID, WidgetKernel

pytestmark = pytest.mark.kernel

SETUP = """\
import time
from zart_nb import durable, schedule, wait
from zart_nb.notebook import progress
progress.register(get_ipython())   # what %load_ext zart_nb does once wired

def nap(i):
    time.sleep(0.03)
    return i

@durable("kernel-fanout")
def fanout(n):
    return sum(wait([schedule(nap, i) for i in range(n)]))
"""
N = 80


@pytest.fixture
def kernel(zart_env, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ZART_WORKERS", "2")
    kd = WidgetKernel(env=dict(os.environ), startup_code="%load_ext zart_nb",
                      transport="ipc", cwd=str(tmp_path))
    kd.start()
    yield kd
    kd.shutdown()


def test_comm_messages_follow_a_fanout_and_end_on_the_final_state(kernel):
    kernel.execute(SETUP, check=True)
    t0 = time.monotonic()
    cell = kernel.execute(f"print(fanout({N}))", timeout=120, check=True)
    kernel.drain(1.0)
    seconds = time.monotonic() - t0
    assert cell.stdout.strip() == str(sum(range(N)))
    [model] = kernel.widgets.progress_models()
    state = kernel.widgets.state(model)
    assert (state["status"], state["total"], state["finished"]) == ("completed", N, N)
    assert state["states"] == "c" * N and state["counts"]["completed"] == N
    assert state["live"] is False and state["run_id"] == "kernel-fanout"
    finished = kernel.widgets.values(model, "finished")
    assert len({f for f in finished if 0 < f < N}) >= 2, f"no live progress: {finished}"
    assert finished == sorted(finished)
    updates = kernel.widgets.updates(model)
    assert len(updates) <= 10 * seconds + 3, f"{len(updates)} updates in {seconds:.1f} s"
    # the cell shows the widget, and its text/plain ends as the final line
    assert cell.widget_views == [model]
    texts = [o["data"]["text/plain"] for o in cell.outputs
             if o["output_type"] in ("display_data", "update_display_data")]
    assert texts[-1].startswith(f"kernel-fanout [{'#' * 24}] {N}/{N} 100%")
    assert not kernel.widgets.models[model]["closed"]

    # run again: the completed run is not executed; its progress shows it all replayed
    again = kernel.execute("progress.show_for_run('kernel-fanout', replayed_before='now')",
                           check=True)
    kernel.drain(0.5)
    [_, replay] = kernel.widgets.progress_models()
    assert kernel.widgets.state(replay)["counts"]["replayed"] == N
    assert again.widget_views == [replay]


def test_nbclient_saves_the_final_state_with_the_notebook(zart_env, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ZART_WORKERS", "2")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext zart_nb"),
                nbformat.v4.new_code_cell(SETUP),
                nbformat.v4.new_code_cell(f"fanout({N})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    client = NotebookClient(nb, kernel_name="python3", store_widget_state=True, timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    saved = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    states = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    [model_id] = [k for k, m in states.items() if m["state"].get("_anywidget_id") == PROGRESS_ID]
    final = states[model_id]["state"]
    assert (final["status"], final["total"], final["finished"]) == ("completed", N, N)
    assert final["states"] == "c" * N
    outputs = saved.cells[2].outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views[0].data["application/vnd.jupyter.widget-view+json"]["model_id"] == model_id
    assert views[0].data["text/plain"].startswith(f"kernel-fanout [{'#' * 24}] {N}/{N} 100%")
