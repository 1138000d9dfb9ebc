"""Automatic step cells in real kernels, executed with cell ids as JupyterLab sends them.

Every plain cell of a notebook of in-place changes (a scikit-learn fit, ``drop(...,
inplace=True)``, ``append``, ``update``, an attribute set, a change through a container
and through an alias) is checkpointed by itself; after a restart, "run all" restores every
value as a plain kernel computes it, with no cell running again (side effects counted in
a file). An edited middle cell runs again with the cells that read what it changed, and
only those; a connection runs on every restore and so do the cells that use it; moved
cells keep their checkpoints; a cell run twice, or after its upstream ran again, gives
what plain Jupyter gives; an interrupted or killed cell is not checkpointed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

AUTO = "%load_ext zart_nb\n%zart_auto on"


def mutation_notebook(log: Path, drop: str = "c") -> list[tuple[str, str]]:
    """(cell id, source): the notebook of in-place changes."""
    return [
        ("imports", "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import Ridge"),
        ("helpers", f"LOG = {str(log)!r}\n\ndef mark(name):\n    with open(LOG, 'a') as f:\n"
                    "        f.write(name + '\\n')"),
        ("data", "mark('data')\nrng = np.random.default_rng(7)\nX = rng.normal(size=(300, 3))\n"
                 "df = pd.DataFrame(X, columns=['a', 'b', 'c'])\n"
                 "y = X @ np.array([1.0, 2.0, 3.0]) + 0.5\ndf['y'] = y\n"
                 "results = []\ncfg = {'alpha': 1.0}\nprint('rows', len(df))"),
        ("model", "mark('model')\nmodel = Ridge(alpha=cfg['alpha'])"),
        ("fit", "mark('fit')\nmodel.fit(df[['a', 'b', 'c']], df['y'])"),
        ("drop", f"mark('drop')\ndf.drop(columns=[{drop!r}], inplace=True)\ndf.shape"),
        ("score", "mark('score')\nresults.append(round(float(model.score(X, y)), 6))"),
        ("update", "mark('update')\ncfg.update(beta=2, alpha=cfg['alpha'] * 10)"),
        ("box", "mark('box')\nclass Box:\n    def __init__(self):\n        self.items = []\n"
                "box = Box()\nholder = {'inner': results, 'box': box}\nalias = results"),
        ("attr", "mark('attr')\nbox.label = 'set'\nbox.items.append(len(df.columns))"),
        ("through", "mark('through')\nholder['inner'].append(99)\nholder['box'].items.append(7)"),
        ("show", "from IPython.display import HTML, display\nmark('show')\n"
                 "display(HTML(f'<b>{len(results)} results</b>'))\nprint('coef', model.coef_.round(3))"),
    ]


SUMMARY = ("repr((list(df.columns), df.shape, results, alias is results, holder['inner'] is results,"
           " sorted(cfg.items()), box.label, box.items, holder['box'] is box,"
           " isinstance(box, Box), model.coef_.round(6).tolist(), round(model.intercept_, 6)))")


def run_all(kd, cells: list[tuple[str, str]], **kw) -> dict[str, object]:
    return {cid: kd.execute(src, timeout=120, check=True, cell_id=cid, **kw) for cid, src in cells}


def marks(log: Path) -> Counter:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def first_line(result) -> str:
    return result.stdout.splitlines()[0] if result.stdout else ""


def test_mutations_are_restored_as_a_plain_kernel_computes_them(kernels, tmp_path: Path):
    plain_log, log = tmp_path / "plain.txt", tmp_path / "ran.txt"
    plain = kernels(startup=None)
    run_all(plain, mutation_notebook(plain_log))
    expected = plain.execute(SUMMARY, check=True).result
    plain.shutdown()
    assert marks(plain_log) == Counter(["data", "model", "fit", "drop", "score", "update", "box",
                                        "attr", "through", "show"])

    kd = kernels(startup=AUTO)
    cells = mutation_notebook(log)
    first = run_all(kd, cells)
    assert kd.execute(SUMMARY, check=True).result == expected
    assert marks(log) == marks(plain_log)
    assert "zart: cell ran and was checkpointed in run 'notebook'" in first["fit"].stdout
    assert "(model changed in place)" in first["fit"].stdout
    assert "(df changed in place)" in first["drop"].stdout
    assert "(cfg changed in place)" in first["update"].stdout
    # `through` changed results and box through holder; alias is results too
    assert "4 variables: alias, box, holder, results (holder changed in place)" in first["through"].stdout

    kd.restart()
    again = run_all(kd, cells)
    assert kd.execute(SUMMARY, check=True).result == expected
    assert marks(log) == marks(plain_log)  # no cell ran again
    assert first_line(again["imports"]).startswith("zart: cell ran because it only imports")
    for cid in [c for c, _ in cells][1:]:
        assert first_line(again[cid]).startswith("zart: cell restored (ran "), (cid, again[cid].stdout)
    assert "rows 300" in again["data"].stdout  # outputs shown again
    assert again["drop"].result == first["drop"].result == {"text/plain": "(300, 3)"}
    assert again["fit"].result == first["fit"].result  # Out[n]: the fitted model's repr
    assert any(o["output_type"] == "display_data" and o["data"].get("text/html") == "<b>2 results</b>"
               for o in again["show"].outputs)

    # an edited middle cell runs again, and so do the cells whose inputs it changed
    edited = mutation_notebook(log, drop="b")
    kd.restart()
    third = run_all(kd, edited)
    assert "ran because its code changed" in third["drop"].stdout
    ran = {cid for cid, r in third.items() if "zart: cell ran" in r.stdout}
    # attr reads df; what attr then wrote (box.items == [3]) is as before: through is restored
    assert ran == {"imports", "drop", "attr"}, ran
    assert marks(log) == marks(plain_log) + Counter(["drop", "attr"])
    assert "ran because an input changed (df)" in third["attr"].stdout
    plain = kernels(startup=None)
    run_all(plain, mutation_notebook(tmp_path / "plain2.txt", drop="b"))
    assert kd.execute(SUMMARY, check=True).result == plain.execute(SUMMARY, check=True).result


def test_a_connection_runs_on_every_restore_and_its_readers_follow(kernels, tmp_path: Path):
    log, db = tmp_path / "ran.txt", tmp_path / "app.db"
    cells = [
        ("setup", f"import sqlite3\nLOG = {str(log)!r}\ndef mark(name):\n"
                  "    with open(LOG, 'a') as f:\n        f.write(name + '\\n')"),
        ("connect", f"mark('connect')\nconn = sqlite3.connect({str(db)!r})"),
        ("table", "mark('table')\nconn.execute('CREATE TEMP TABLE t (x)')\n"
                  "conn.execute('INSERT INTO t VALUES (1), (2)')"),
        ("count", "mark('count')\nn = conn.execute('SELECT count(*) FROM t').fetchone()[0]\nn"),
        ("other", "mark('other')\nsquares = [i * i for i in range(5)]"),
        ("double", "mark('double')\ntwice = n * 2"),
    ]
    kd = kernels(startup=AUTO)
    first = run_all(kd, cells)
    assert first["connect"].stdout.startswith("zart: cell ran because conn is not checkpointable: ")
    assert "sqlite3.Connection" in first["connect"].stdout
    assert "it runs again on every restore" in first["connect"].stdout
    assert first["table"].stdout.startswith("zart: cell ran because it reads conn, whose changes "
                                            "cannot be seen")
    kd.restart()
    again = run_all(kd, cells)  # the temp table exists again only because `table` ran again
    assert again["count"].result == {"text/plain": "2"}
    for cid in ("connect", "table", "count"):
        assert first_line(again[cid]).startswith("zart: cell ran because"), again[cid].stdout
    assert first_line(again["other"]).startswith("zart: cell restored")
    assert first_line(again["double"]).startswith("zart: cell restored")  # n is the same
    assert marks(log) == Counter(connect=2, table=2, count=2, other=1, double=1)
    assert kd.execute("twice, squares[-1]", check=True).result == {"text/plain": "(4, 16)"}


def test_moved_cells_keep_their_checkpoints_and_reruns_give_plain_values(kernels, tmp_path: Path):
    log = tmp_path / "ran.txt"
    helpers = (f"LOG = {str(log)!r}\ndef mark(name):\n    with open(LOG, 'a') as f:\n"
               "        f.write(name + '\\n')")
    a = ("a", "mark('a')\nxs = [1]")
    b = ("b", "mark('b')\nxs.append(len(xs) + 1)\nxs")
    c = ("c", "mark('c')\nlabel = 'fixed'")
    kd = kernels(startup=AUTO)
    kd.execute(helpers, check=True, cell_id="helpers")
    for cid, src in (a, b, c):
        kd.execute(src, check=True, cell_id=cid)
    # b executed twice in a row: it read [1, 2] the second time, so it runs, as in plain Jupyter
    r = kd.execute(b[1], check=True, cell_id="b")
    assert r.result == {"text/plain": "[1, 2, 3]"} and "ran because an input changed (xs)" in r.stdout
    # a executed again is restored (xs = [1]); b's checkpoint read [1, 2]: b runs, gives [1, 2]
    assert first_line(kd.execute(a[1], check=True, cell_id="a")).startswith("zart: cell restored")
    assert kd.execute(b[1], check=True, cell_id="b").result == {"text/plain": "[1, 2]"}

    # moved: c now comes first, and the cells keep their ids
    kd.restart()
    kd.execute(helpers, check=True, cell_id="helpers")
    results = {cid: kd.execute(src, check=True, cell_id=cid) for cid, src in (c, a, b)}
    assert all(first_line(r).startswith("zart: cell restored") for r in results.values()), results
    assert kd.execute("xs, label", check=True).result == {"text/plain": "([1, 2], 'fixed')"}
    assert marks(log) == Counter(a=1, b=3, c=1)


def test_interrupted_and_killed_cells_are_not_checkpointed(kernels, tmp_path: Path):
    log, flag = tmp_path / "ran.txt", tmp_path / "go"
    helpers = (f"import os, time\nLOG = {str(log)!r}\ndef mark(name):\n    with open(LOG, 'a') as f:\n"
               "        f.write(name + '\\n')")
    first = ("first", "mark('first')\nbase = 10")
    slow = ("slow", f"mark('slow')\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\n"
                    "result = base * 2\nresult")
    kd = kernels(startup=AUTO)
    kd.execute(helpers, check=True, cell_id="helpers")
    kd.execute(first[1], check=True, cell_id="first")
    handle = kd.submit(slow[1], cell_id="slow")
    kd.collect(handle, stop_when=lambda r: marks(log)["slow"] == 1, timeout=60)
    kd.interrupt()
    r = kd.collect(handle, timeout=60)
    assert r.status == "error" and r.error["ename"] == "KeyboardInterrupt"
    assert "zart: cell interrupted; it is not checkpointed" in r.stdout

    handle = kd.submit(slow[1], cell_id="slow")
    kd.collect(handle, stop_when=lambda r: marks(log)["slow"] == 2, timeout=60)
    kd.kill_hard()
    assert kd.collect(handle, timeout=30).status == "died"
    kd.restart()
    kd.execute(helpers, check=True, cell_id="helpers")
    assert first_line(kd.execute(first[1], check=True, cell_id="first")).startswith("zart: cell restored")
    flag.touch()
    r = kd.execute(slow[1], check=True, cell_id="slow", timeout=60)
    assert "zart: cell ran and was checkpointed" in r.stdout and r.result == {"text/plain": "20"}
    assert marks(log) == Counter(first=1, slow=3)


def test_always_cells_auto_off_and_magic_cells_are_left_as_they_are(kernels, tmp_path: Path):
    kd = kernels(startup=AUTO)
    r = kd.execute("%%zart_always\nimport time\nstamp = time.monotonic_ns()\nstamp", check=True,
                   cell_id="clock")
    again = kd.execute("%%zart_always\nimport time\nstamp = time.monotonic_ns()\nstamp", check=True,
                       cell_id="clock")
    assert "zart:" not in r.stdout + again.stdout and r.result != again.result
    assert "zart:" not in kd.execute("%who_ls", check=True, cell_id="who").stdout
    assert "zart:" not in kd.execute("%%bash\necho hi", check=True, cell_id="sh").stdout
    assert "zart:" not in kd.execute("   \n", check=True, cell_id="empty").stdout
    r = kd.execute("%%time\ntotal = sum(range(10))", check=True, cell_id="timed")
    assert "zart: cell ran and was checkpointed" in r.stdout and "1 variable: total" in r.stdout
    r = kd.execute("%zart_auto off", check=True, cell_id="off")
    assert "automatic step cells are off" in r.stdout
    assert "zart:" not in kd.execute("y = 1", check=True, cell_id="plain").stdout


def test_a_second_kernel_on_the_notebook_run_restores_what_the_first_stored(kernels, tmp_path: Path):
    log = tmp_path / "ran.txt"
    cells = mutation_notebook(log)
    first = kernels(startup=AUTO)
    run_all(first, cells)
    expected = first.execute(SUMMARY, check=True).result
    second = kernels(startup=AUTO)  # another notebook window on the same run
    restored = run_all(second, cells)
    assert all(first_line(r).startswith("zart: cell restored") for cid, r in restored.items()
               if cid != "imports"), {cid: first_line(r) for cid, r in restored.items()}
    assert second.execute(SUMMARY, check=True).result == expected
    assert marks(log) == Counter(["data", "model", "fit", "drop", "score", "update", "box",
                                  "attr", "through", "show"])


def test_objects_held_elsewhere_follow_a_change_in_place_not_a_rebinding(kernels, tmp_path: Path):
    cells = [("a", "xs = [1]\nd = {'k': xs}"),
             ("b", "xs.append(2)"),  # d is not read: it holds xs, changed in place
             ("c", "ys = [0]\nholder = {'y': ys}"),
             ("e", "ys = ys + [1]")]  # a new list: holder keeps the old one
    check = "(d['k'] is xs, d, xs, holder['y'] is ys, holder, ys)"
    plain = kernels(startup=None)
    run_all(plain, cells)
    expected = plain.execute(check, check=True).result
    assert expected == {"text/plain": "(True, {'k': [1, 2]}, [1, 2], False, {'y': [0]}, [0, 1])"}
    kd = kernels(startup=AUTO)
    run_all(kd, cells)
    kd.restart()
    restored = run_all(kd, cells)
    assert all(first_line(r).startswith("zart: cell restored") for r in restored.values())
    assert kd.execute(check, check=True).result == expected
