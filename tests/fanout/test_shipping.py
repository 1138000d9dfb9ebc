"""Functions travel by value: one defined in ``__main__`` (a notebook, a script) runs on a
worker that never saw it; a module the workers cannot import fails with a message that
names it and says how to ship it, and ``zart_nb.ship`` makes it work."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import uuid

import cloudpickle
import pytest

from tests.helpers import execute
from zart_nb import StepFailed, schedule, ship, wait

SCRIPT = """
import json
from zart_nb import durable, schedule, wait

OFFSET = 1

def triple(x):  # defined in __main__: no worker can import it
    return x * 3 + OFFSET

@durable("notebook")
def body(n):
    return wait([schedule(triple, i) for i in range(n)])

print(json.dumps(body(4, run_id="from-main")))
"""


def test_a_function_defined_in_main_runs_on_a_separate_worker(env, workers, sql, tmp_path):
    env(ZART_WORKERS=0)
    worker = workers.start(1)
    script = tmp_path / "notebook_like.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 4, 7, 10]
    ran_on = {r["worker"].split(":")[-2] for r in sql("SELECT worker FROM steps WHERE kind = 'child'")}
    assert ran_on == {str(worker.pid)}


@pytest.fixture
def local_module(tmp_path, monkeypatch):
    """A module importable by this process only (its folder is on this sys.path alone)."""
    name = f"local_helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        def twice(x):
            return 2 * x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    if name in cloudpickle.list_registry_pickle_by_value():
        cloudpickle.unregister_pickle_by_value(module)
    sys.modules.pop(name, None)


def twice_five(module):
    return wait(schedule(module.twice, 5))


def test_a_module_the_worker_cannot_import_fails_clearly_until_shipped(env, workers,
                                                                       local_module):
    env(ZART_WORKERS=0)
    workers.start(1)
    with pytest.raises(StepFailed) as info:
        execute(twice_five, (local_module,), name="ship", run_id="unshipped")
    message = str(info.value)
    assert info.value.reason == "not_loadable" and info.value.step == "twice-0"
    assert f"No module named {local_module.__name__!r}" in message
    assert "zart_nb.ship(module)" in message and "install that module on the workers" in message

    ship(local_module)
    assert execute(twice_five, (local_module,), name="ship", run_id="shipped").value == 10
