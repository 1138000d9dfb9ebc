"""Automatic cells and changes in place in this process (IPython's InteractiveShell, a real
PostgreSQL): which cells become step cells, the input fingerprint's form, what a cell
wrote as seen by value, aliases kept and relinked, the cells that run on restore."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from zart_nb.notebook.auto_cells import automatic
from zart_nb.notebook.cell_state import (
    ABSENT,
    Inputs,
    Snapshot,
    changed_inputs,
    key_fingerprints,
    observe,
    read_inputs,
    relink,
)


def run(ip, cell: str, **kw):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = ip.run_cell(cell, store_history=True, **kw)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("cell", "expected"), [
    ("x = 1", True),
    ("   \n", False),
    ("# a comment only", False),
    ("%%time\ntotal = sum(range(3))", True),
    ("%%capture out\nprint(1)", True),
    ("%%bash\necho hi", False),
    ("%%zart_step load\nx = 1", False),
    ("%%zart_always\nx = 1", False),
    ("%pip install something", False),
    ("!ls\n%who", False),
    ("files = !ls", False),
    ("%matplotlib inline\nimport os", True),
    ("%zart_run other\nx = 1", False),
    ("await asyncio.sleep(0)", False),
    ("async def f():\n    await g()", True),
    ("x = (", False),
])
def test_which_cells_are_automatic(cell, expected):
    assert automatic(TransformerManager().transform_cell(cell)) is expected


def test_the_input_key_keeps_each_names_fingerprint():
    inputs = Inputs({"df": b"\x01" * 16, "é": b"\x02" * 16, "gone": ABSENT})
    key = inputs.key()
    assert key_fingerprints(key) == inputs.fingerprints
    later = Inputs({"df": b"\x03" * 16, "é": b"\x02" * 16, "new": b"\x04" * 16})
    assert changed_inputs(key, later) == ["df", "gone", "new"]
    assert key_fingerprints(Inputs().key()) == {} and key_fingerprints(key[:17]) is None
    assert changed_inputs(b"\x02" * 17, later) == []  # an older form: no names to give


def visible(name: str) -> bool:
    return not name.startswith("_")


def test_changes_in_place_and_aliases_are_seen_by_value():
    class Model:
        def __init__(self):
            self.fitted = False

    m1, m2 = Model(), Model()
    ns = {"models": [m1, m2], "m1": m1, "m2": m2, "xs": [1], "alias": None, "tmp": 3,
          "big": list(range(100))}
    ns["alias"] = ns["xs"]
    inputs = read_inputs(ns, ["models", "xs", "big"], visible)
    before = Snapshot(ns, visible)
    for m in ns["models"]:  # the cell: fit through the container, append, delete, bind
        m.fitted = True
    ns["xs"].append(2)
    del ns["tmp"]
    ns["fresh"] = {"holds": m2}
    changes = observe(ns, visible, before, inputs, binds=["fresh"])
    assert changes.mutated == ["models", "xs"]  # big was read and left as it was
    assert changes.deleted == ["tmp"]
    assert changes.groups == [["alias", "xs"], ["fresh", "m1", "m2", "models"]]
    assert changes.rebound == ["fresh"]


def test_a_restored_object_is_put_where_the_replaced_one_was_held():
    class Box:
        pass

    old, new = [1], [1, 2]
    box = Box()
    box.items = old
    ns = {"xs": new, "d": {"k": old}, "rows": [old, 5], "box": box}
    relink(ns, {"xs": old})
    assert ns["d"]["k"] is new and ns["rows"][0] is new and box.items is new


def test_cells_that_cannot_be_checkpointed_run_on_restore(ip, zart_env):
    run(ip, "%zart_run inproc-auto")
    ip.run_line_magic("config", "ZartMagics.never_store = ['collections.OrderedDict']")
    try:
        _, out, _ = run(ip, "%%zart_step listed\nimport collections\n"
                            "ordered = collections.OrderedDict(a=1)\nn = 2")
        assert ("ran because ordered is not checkpointable: collections.OrderedDict is in "
                "ZartMagics.never_store; it runs again on every restore") in out
    finally:
        ip.run_line_magic("config", "ZartMagics.never_store = []")
    _, out, _ = run(ip, "%%zart_step imports\nimport random")
    assert "ran because it only imports" in out
    for _ in range(2):  # the seed is set again each time: the cell is never restored
        _, out, _ = run(ip, "%%zart_step seed\nrandom.seed(3)")
        assert "ran because it changes no variable and shows nothing" in out
    _, out, _ = run(ip, "%%zart_step draw\nimport random\nx = random.random()")
    assert "ran and was checkpointed" in out


def test_automatic_cells_in_process_named_by_text_without_an_id(ip, zart_env):
    run(ip, "%zart_run inproc-auto-2")
    run(ip, "%zart_auto on")
    try:
        result, out, err = run(ip, "counter = [0]\ncounter")
        assert result.success, err
        assert out.startswith("zart: this front-end sends no cell ids: automatic cells are named by a "
                              "hash of their text (this one: text-")
        result, out, _ = run(ip, "counter[0] += 1\ncounter", cell_id="bump")
        assert result.result == [1] and "(counter changed in place)" in out
        assert "this front-end" not in out  # said once
        result, out, _ = run(ip, "counter[0] += 1\ncounter", cell_id="bump")
        assert result.result == [2] and "ran because an input changed (counter)" in out
        result, out, _ = run(ip, "counter = [0]\ncounter")
        assert out.startswith("zart: cell restored") and result.result == [0]
        result, out, _ = run(ip, "counter[0] += 1\ncounter", cell_id="bump")
        assert result.result == [1] and out.startswith("zart: cell ran because an input changed")
        result, out, _ = run(ip, "silent_value = 5", silent=True)  # no pre_run_cell: as it is
        assert result.success and out == "" and ip.user_ns["silent_value"] == 5
    finally:
        run(ip, "%zart_auto off")
    assert run(ip, "plain = 1")[1] == ""


def test_a_checkpoint_that_no_longer_loads_makes_the_cell_run(ip, zart_env, tmp_path, monkeypatch):
    import importlib
    import sys

    module = tmp_path / "zart_shapes_mod.py"
    module.write_text("class Thing:\n    pass\n\ndef factory():\n    return Thing()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run(ip, "%zart_run inproc-reload")
    cell = "%%zart_step make\nimport zart_shapes_mod\nobj = zart_shapes_mod.factory()"
    assert "ran and was checkpointed" in run(ip, cell)[1]
    module.write_text("class Shape:\n    pass\n\ndef factory():\n    return Shape()\n")
    importlib.invalidate_caches()
    del sys.modules["zart_shapes_mod"]  # as after a restart: the new module is imported
    result, out, err = run(ip, cell)
    assert result.success, err
    assert "ran because its checkpoint could not be loaded (AttributeError: " in out
    assert type(ip.user_ns["obj"]).__name__ == "Shape"
    sys.modules.pop("zart_shapes_mod", None)
