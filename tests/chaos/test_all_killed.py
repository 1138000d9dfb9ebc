"""Everything killed at random: the body, the workers and the PostgreSQL server.

A run of sequential steps and fan-outs (the crash suite's ``mixed`` run) is executed by
a body subprocess whose children run on three external workers (2 threads each, leases
of 2 s), against an embedded server of the test's own. When its side-effect log
reaches random lines, one of these happens (in a shuffled order, so many of each):

- the body is killed (SIGKILL), and executed again;
- a worker is killed (SIGKILL), and a replacement started, as a supervisor would;
- the server is crashed (``pg_ctl -m immediate``: the next start recovers from the
  WAL) or stopped (``-m fast``), left down 0.2-2.5 s and started again. The body fails
  with a StoreError and is executed again; the workers stay.

Checked (DESIGN.md §2.1, §2.7):
- the final result equals an uninterrupted run's; every child completed (none lost);
- no step or child committed at an event ever runs again afterwards (the journal is
  read after each event, then the log's length: a commit read was of an execution
  logged before);
- a step or child runs a second time only across an event (an execution before it,
  the next one after);
- every worker alive before a server outage, and not killed since, is alive at the
  end, the same process, and claims children: fan-outs are run until each of their
  pids has run one (at most 20).

The figures: events of each kind, executions, re-executions, and how long each worker
took, after the server was ready again, to be back on it (its log says when).
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from pathlib import Path

import pytest

from zart_nb.store import embedded

from .figures import record
from .helpers import (
    back_times,
    committed,
    executions,
    finish,
    journal,
    kill_body,
    log_records,
    own_env,
    spawn_body,
)
from .scripts.bodies import fan_expected, mixed_expected, plan


class Driver:
    """The body process of the run, executed again whenever it ended without a result."""

    def __init__(self, env: dict, log: Path, args: tuple[str, ...]) -> None:
        self.env, self.log, self.args = env, log, args
        self.failures: list[str] = []
        self.proc = self.spawn()

    def spawn(self):
        return spawn_body("mixed", "everything", self.log, *self.args, env=self.env)

    def alive(self) -> bool:
        """True while the body runs; a body that failed (the server went away) or was
        killed is executed again. False once it returned the result."""
        if self.proc.poll() is None:
            return True
        if self.proc.returncode == 0:
            return False
        _, stderr = self.proc.communicate()
        if self.proc.returncode > 0:  # not killed by us: the database went away
            last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1]
            assert last.startswith("zart_nb.StoreError: "), stderr[-3000:]
            self.failures.append(last)
        self.proc = self.spawn()
        return True


def everything_killed(own_server, workers, tmp_path, *, steps: int, blocks: int,
                      children: int, kinds: dict[str, int], seed: int) -> dict:
    home, url = own_server
    rng = random.Random(seed)
    env = own_env(home, url, ZART_LEASE_SECONDS="2")
    args = ("--steps", str(steps), "--blocks", str(blocks), "--children", str(children))
    log = tmp_path / "effects.log"
    units = steps + blocks * children  # side-effect lines of an uninterrupted run
    events = [kind for kind, n in kinds.items() for _ in range(n)]
    rng.shuffle(events)
    points = sorted(rng.sample(range(units // 20, units * 19 // 20), len(events)))
    for _ in range(3):
        workers.start(2)
    started = time.monotonic()
    body = Driver(env, log, args)
    cuts: list[int] = []  # log lines when each event struck
    snapshots: list[tuple[int, set[str]]] = []  # (log lines, names committed) after each
    outages: list[tuple[float, float, set]] = []  # (stopped, ready again, workers before)
    done = dict.fromkeys(kinds, 0)
    for point, kind in zip(points, events, strict=True):
        while len(log_records(log)) < point and body.alive():
            time.sleep(0.003)
        if not body.alive():
            break  # finished before the point
        time.sleep(rng.uniform(0, 0.012))
        # the log's length once the event struck: an execution logged before it may
        # run again after it
        if kind == "body":
            kill_body(body.proc)
            cuts.append(len(log_records(log)))
            body.proc = body.spawn()
        elif kind == "worker":
            workers.kill(rng.choice(workers.alive()))
            cuts.append(len(log_records(log)))
            workers.start(2)
        else:
            before = set(workers.alive())
            stopped = time.time()
            assert embedded.stop(home, mode="immediate" if kind == "crash" else "fast")
            cuts.append(len(log_records(log)))
            time.sleep(rng.uniform(0.2, 2.5))
            assert embedded.server_url(home) == url
            outages.append((stopped, time.time(), before))
        done[kind] += 1
        names = committed(url, "everything")  # the journal first, then the log's length
        snapshots.append((len(log_records(log)), names))
    while body.alive():
        time.sleep(0.01)
    final = finish(body.proc)
    elapsed = time.monotonic() - started

    # the result, and no child lost
    assert final["result"] == mixed_expected(steps, blocks, children)
    records = [r for r in log_records(log) if r[0] != "done"]
    counts = executions(records)
    expected = {f"s-{i}" for i in range(steps)} | {
        f"c-{b}-{j}" for b, (_, n) in enumerate(plan(steps, blocks, children)) for j in range(n)}
    assert set(counts) == expected
    rows = [r for r in journal(url, "everything") if r["kind"] == "child"]
    assert len(rows) == blocks * children and {r["status"] for r in rows} == {"completed"}
    # nothing committed at an event runs again afterwards
    for cut, names in snapshots:
        again = [r[0] for r in records[cut:] if r[0] in names]
        assert not again, f"committed steps or children executed again: {again[:10]}"
    # a second execution only across an event
    positions: dict[str, list[int]] = {}
    for index, r in enumerate(records):
        positions.setdefault(r[0], []).append(index)
    for name, where in positions.items():
        for first, second in itertools.pairwise(where):
            assert any(first < cut <= second for cut in cuts), \
                f"{name} executed twice without an event in between ({first}, {second})"

    # every worker alive before an outage and not killed since: alive, and working
    killed = set(workers.killed)
    survivors = {p for _, _, before in outages for p in before if p.pid not in killed}
    dead = [workers.output(p) for p in survivors if p.poll() is not None]
    assert not dead, "\n\n".join(dead)
    seen: set[int] = set()
    for round_ in range(20):
        fan_log = tmp_path / f"after-{round_}.log"
        out = finish(spawn_body("fan", f"after-{round_}", fan_log, "--children",
                                str(2 * len(workers.alive())), "--child-ms", "300", env=env))
        assert out["result"] == fan_expected(2 * len(workers.alive()))
        seen |= {int(r[2]) for r in log_records(fan_log)}
        if {p.pid for p in survivors} <= seen:
            break
    assert {p.pid for p in survivors} <= seen, "a worker that lived through an outage stopped working"

    # how long each worker took to be back once the server was ready again (pg_ctl
    # reports it ready a moment after it accepts connections: at least 0)
    recovery = []
    for stopped, ready, before in outages:
        for proc in before:
            back = [t for t in back_times(workers.output(proc)) if t > stopped]
            if proc.pid not in killed or back:
                assert back, workers.output(proc)
                recovery.append(max(0.0, back[0] - ready))
    re_run = sorted(n for n, c in counts.items() if c > 1)
    return {"steps": steps, "children": blocks * children,
            "body_kills": done["body"], "worker_kills": done["worker"],
            "server_crashes": done["crash"], "server_stops": done["stop"],
            "body_failed_on_outage": len(body.failures),
            "executions": sum(counts.values()), "re_executed": len(re_run),
            "max_executions": max(counts.values()),
            "workers_through_outages": len(survivors),
            "recover_median_s": round(statistics.median(recovery), 2) if recovery else None,
            "recover_max_s": round(max(recovery), 2) if recovery else None,
            "seconds": round(elapsed, 1), "seed": seed}


@pytest.mark.slow
def test_body_workers_and_server_killed_at_random(own_server, own_workers, tmp_path):
    figures = everything_killed(own_server, own_workers, tmp_path, steps=200, blocks=5,
                                children=40, seed=11,
                                kinds={"body": 5, "worker": 5, "crash": 4, "stop": 2})
    record("everything", "everything_killed", **figures)
