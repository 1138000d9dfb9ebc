"""Writes the example notebooks of notebooks/ from the cell texts below (nbformat).

    python notebooks/build.py            # (re)write every .ipynb next to this file
    python notebooks/build.py --check    # exit 1 if a notebook on disk differs

The notebooks are committed without outputs and with stable cell ids, so that a
change to an example is a readable diff of this file. Edit the text here, run the
script, commit both. ``tests/notebooks/`` executes every notebook with a real kernel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text: str) -> tuple[str, str]:
    return ("markdown", dedent(text).strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", dedent(text).strip("\n"))


LOAD = code("%load_ext zart_nb")

# ---------------------------------------------------------------------------------------
QUICKSTART = [
    md("""
    # 1. Quickstart: a durable cell

    A `%%zart_durable` cell is a **durable body**: every `@step` it calls is
    checkpointed into PostgreSQL as soon as it returns. Execute the cell again (after a
    crash, an interrupt, a kernel restart, or tomorrow) and the completed steps are
    **replayed** from the journal instead of running again.

    This is zart's *user onboarding* example: three steps in a row.

    First load the extension. It prints where runs are stored: without configuration,
    an embedded PostgreSQL under `~/.zart`; set `ZART_DATABASE_URL` to use your own server.
    """),
    LOAD,
    md("""
    A step is an ordinary function with `@step`. The name defaults to the function's
    name. Outside a durable body a step is just its function, so you can still call it
    (and unit-test it) directly. The `time.sleep` calls stand in for slow work: a
    database write, an API call.
    """),
    code("""
    import time
    from zart_nb import step

    DELAY = 0.3   # seconds each step takes; set 3 to have time to interrupt one

    @step
    def create_user(email):
        print(f"creating user {email} ...")
        time.sleep(DELAY)
        return {"id": "u-42", "email": email}

    @step
    def setup_account(user_id):
        print(f"setting up the account of {user_id} ...")
        time.sleep(DELAY)
        return {"account": f"acct-{user_id}", "plan": "free"}

    @step
    def send_welcome_email(email):
        print(f"sending the welcome email to {email} ...")
        time.sleep(DELAY)
        return "sent"
    """),
    md("""
    Now the durable body. `user-onboarding` is the durable name, and also the run id.
    Each line that calls a step is a checkpoint (`# ✓ persisted`). The last expression
    is the run's result.

    The first time, the steps print what they do, and the line after the cell says
    `0 replayed, 3 executed`.
    """),
    code("""
    %%zart_durable user-onboarding
    user = create_user("ada@example.com")        # ✓ persisted
    account = setup_account(user["id"])          # ✓ persisted
    email_status = send_welcome_email(user["email"])  # ✓ persisted
    account
    """),
    md("""
    The variables the cell bound are ordinary notebook variables:
    """),
    code("""
    print(user, account, email_status)
    """),
    md("""
    ## Now try it

    * **Restart the kernel and run all cells again.** Nothing is recomputed: the steps
      print nothing, the cell ends in a second with `3 replayed, 0 executed`, and
      `user`, `account` and `email_status` are back.
    * **Interrupt it half-way.** Set `DELAY = 3` and run that cell. Run the durable
      cell with `--restart` added to its first line (a fresh generation of the run) and
      press ■ (interrupt) while the second step sleeps. Remove `--restart` and run the
      cell again: `create_user` is replayed, the rest runs.
    * **Change a step.** Edit the message of `setup_account`, run its cell and the
      durable cell again: only that step runs again (`2 replayed, 0 executed, 1
      re-executed because they changed (setup_account)`). `DELAY` is a value, not
      code: changing it re-runs nothing.

    `%zart_runs` lists the runs in the database:
    """),
    code("%zart_runs --limit 5"),
]

# ---------------------------------------------------------------------------------------
FAN_OUT = [
    md("""
    # 2. Fan-out: `schedule` and `wait`

    When steps are independent, run them in parallel. `schedule(step, *args)` queues a
    **child**: a row in PostgreSQL that any worker process can claim. `wait(handles)`
    suspends the body until every child finished and returns their results **in the
    order of the handles**, whichever finished first.

    While the body waits, a live progress widget shows every child. It is backed by the
    database, so it comes back after a restart and in other notebooks too.

    Who runs the children? A waiting body starts a small local pool of worker
    processes (`ZART_WORKERS`, default 2). On other machines, `zart-nb worker` joins in.
    """),
    LOAD,
    code("""
    import random
    import time
    from zart_nb import schedule, step, wait

    @step
    def load_config():
        return {"timeout_ms": 250, "region": "eu-west"}

    @step("check-{service}")            # one child per service: check-svc-00, check-svc-01, ...
    def check_service(service, config):
        time.sleep(random.uniform(0.02, 0.08))    # pretend to call the service
        latency = random.randint(5, 300)
        return {"service": service, "latency_ms": latency, "ok": latency < config["timeout_ms"]}

    @step
    def summarize(results):
        slow = [r["service"] for r in results if not r["ok"]]
        return {"checked": len(results), "slow": slow}

    services = [f"svc-{i:02d}" for i in range(50)]
    """),
    md("""
    Sequential, then parallel, then sequential again (zart's *mixing sequential and
    parallel*). The functions are defined in this notebook: they travel to the workers
    by value (cloudpickle, in signed envelopes).
    """),
    code("""
    %%zart_durable health-check
    config = load_config()                                        # phase 1: sequential
    handles = [schedule(check_service, s, config) for s in services]  # phase 2: fan-out
    results = wait(handles)                                       # live progress below
    report = summarize(results)                                   # phase 3: sequential
    report["checked"], len(report["slow"])
    """),
    md("""
    The results come back in the order of `services`, not in the order the workers
    finished them:
    """),
    code("""
    assert [r["service"] for r in results] == services
    print("first three:", results[:3])
    print("slow services:", report["slow"])
    """),
    md("""
    ## Now try it

    * **Restart the kernel and run all.** The 50 children are loaded from the database;
      the widget shows them as replayed and no worker runs anything.
    * **Kill it mid-way.** Run the durable cell with `--restart` and restart the kernel
      while the bar moves. Run all again: finished children are loaded, the queued ones
      are picked up where they were.
    * **More workers.** `%%zart_durable health-check --restart --workers 4` starts a pool
      of 4 processes for this cell; `zart-nb worker --concurrency 8` in a terminal (same
      `ZART_DATABASE_URL`) adds a worker from outside.
    * **Failures.** Make `check_service` raise for one service: `wait` raises that
      child's error (fail-fast); `wait(handles, return_exceptions=True)` returns the
      errors in place instead. The widget shows the failed child and its traceback.
    """),
]

# ---------------------------------------------------------------------------------------
# The durable cell of notebook 3; it appears twice: the second copy shows the replay.
REPORT_BATCH = """
%%zart_durable report-batch
reports = fetch_reports("q3")                         # ✓ the list itself is persisted

processed = []
for i, report in enumerate(reports):
    processed.append(process_report(i, report))       # process-report-0, -1, ...

for i, p in enumerate(processed):
    if p["flagged"]:
        notify_stakeholder.named(f"notify-{i}")("team@example.com", p["title"])  # ... named per call

flagged = sum(p["flagged"] for p in processed)
{"total": len(processed), "flagged": flagged}
"""

LOOPS = [
    md("""
    # 3. Durable loops

    A loop over a collection is an ordinary `for` loop. The one rule: **every step name
    in a run must be unique**, because a step is found again in the journal by its name.
    Two ways to get unique names:

    * a **name template**: `@step("process-report-{index}")` fills `{index}` from the
      call's arguments: `process-report-0`, `process-report-1`, ...
    * a **call-site name**: `notify_stakeholder.named(f"notify-{i}")(...)`, for a step
      with a fixed name called in a loop.

    A second call under the same name in one execution is an error that names both call
    sites, never a silently wrong result.
    """),
    LOAD,
    md("""
    **Fetch inside a step.** When a loop iterates over external data (database rows, an
    API response), fetch the list inside a step. On replay the step returns the *same*
    list, even if the underlying data changed meanwhile, so the loop finds the same
    step names with the same arguments.

    Here `fetch_reports` returns different numbers on every call, like a table that
    other people keep writing to.
    """),
    code("""
    import random
    import time
    from zart_nb import step

    @step("fetch-reports")
    def fetch_reports(batch):
        time.sleep(0.2)                                   # the query
        return [{"id": f"{batch}-{i}", "title": f"Report {i}", "value": round(random.uniform(60, 100), 1)}
                for i in range(8)]

    @step("process-report-{index}")
    def process_report(index, report):
        time.sleep(0.05)
        score = int(report["value"] * 10)
        return {"id": report["id"], "title": report["title"], "score": score, "flagged": score < 800}

    @step("notify-stakeholder")                           # a fixed name ...
    def notify_stakeholder(email, title):
        print(f"notifying {email} about {title}")
        return True
    """),
    code(REPORT_BATCH),
    md("""
    Outside a durable body, `fetch_reports` is just its function: every call gives new
    numbers.
    """),
    code("""
    print("in the run:     ", [r["value"] for r in reports])
    print("a fresh fetch:  ", [r["value"] for r in fetch_reports("q3")])
    """),
    md("""
    The cell below is a copy of the durable cell. Running it (like re-running the cell
    above, or running the notebook again after a restart) replays `report-batch`: the
    same reports, the same scores, nobody is notified twice.
    """),
    code(REPORT_BATCH),
    md("""
    ## Now try it

    * Remove `.named(f"notify-{i}")`: with two flagged reports the second
      `notify-stakeholder` call is refused, naming both call sites.
    * Change the threshold in `process_report` (`score < 900`), run its cell and the
      durable cell: the `process-report-*` steps run again because their code changed (on
      their *stored* inputs: `fetch-reports` is replayed), and only the newly flagged
      reports are notified.
    * Run it with `--restart` to fetch a fresh batch.
    """),
]

# ---------------------------------------------------------------------------------------
STEP_CELLS = [
    md("""
    # 4. Step cells: a notebook that survives a restart

    `%%zart_durable` makes *one* cell durable. **Step cells** make the notebook itself
    durable: each `%%zart_step NAME` cell is one checkpoint of the *notebook run*.

    * The first time, the cell runs; the variables it binds and its outputs (printed
      text, tables, plots) are stored.
    * Executed again with the same code and the same inputs (after a restart, with
      "Run all"), the cell **does not run**: its variables come back and its outputs are
      shown again, marked as restored.
    * When the cell's code changed, or a variable it reads changed, it runs again. So a
      change upstream is followed downstream, and the cells it does not affect stay
      restored.
    """),
    LOAD,
    md("""
    `%zart_run NAME` names the notebook run that the following step cells belong to
    (without it, the notebook's file name).
    """),
    code("%zart_run step-cells-demo"),
    code("""
    import time
    from IPython.display import HTML, display

    n_reports = 6    # try 9: "load" and "score" run again; the others stay restored
    """),
    code("""
    %%zart_step load
    time.sleep(0.3)                        # pretend this is a slow query
    reports = [{"id": i, "value": 70 + 5 * i} for i in range(n_reports)]
    print(f"loaded {len(reports)} reports")
    """),
    code("""
    %%zart_step contacts
    time.sleep(0.3)                        # does not read n_reports: unaffected by it
    team = ["ada@example.com", "grace@example.com"]
    print(f"{len(team)} contacts")
    """),
    code("""
    %%zart_step score
    time.sleep(0.3)
    scores = {r["id"]: r["value"] * 10 for r in reports}
    flagged = [i for i, s in scores.items() if s < 900]
    rows = "".join(f"<tr><td>{i}</td><td>{s}</td><td>{'⚑' if i in flagged else ''}</td></tr>"
                   for i, s in scores.items())
    display(HTML(f"<table><tr><th>report</th><th>score</th><th>flagged</th></tr>{rows}</table>"))
    flagged
    """),
    code("""
    %%zart_step notify
    messages = [f"to {who}: report {i} is flagged" for i in flagged for who in team]
    print(f"{len(messages)} messages")
    """),
    md("""
    A plain cell (not a step cell) runs every time. The variables are here whether the
    step cells ran or were restored:
    """),
    code("""
    print("reports:", len(reports), "| flagged:", flagged, "| messages:", len(messages))
    """),
    md("""
    ## Now try it

    * **Restart the kernel and run all.** Each step cell says `restored` and shows its
      output again, in no time.
    * **Change `n_reports`** to 9 and run all: `load` runs (its input changed), then
      `score` (`reports` changed). `contacts` stays restored, and so does `notify`:
      `score` ran again but gave the same `flagged`, so nothing `notify` reads changed.
      Try 12 instead: now `flagged` changes too, and `notify` follows.
    * **Change a cell's code**, e.g. the threshold in `score` to `s < 800`: that cell
      runs again, and `notify` follows because `flagged` changed.
    * `%zart_run step-cells-demo --restart` starts the notebook run afresh.
    * In another notebook, `%zart_load step-cells-demo flagged team` loads the stored
      variables without running anything.
    """),
]

# ---------------------------------------------------------------------------------------
SHARED_STEPS = code("""
import os
import time
from pathlib import Path
from zart_nb import step

# Every step that really executes appends a line here, so that you can count them.
LOG = Path(os.environ.get("ZART_HOME", "~/.zart")).expanduser() / "share-a-run.log"

def side_effect(what):
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as f:
        f.write(f"{os.getpid()} {what}\\n")

@step("load-region-{region}")
def load_region(region):
    print(f"[pid {os.getpid()}] loading {region} ...")
    side_effect(region)
    time.sleep(0.5)
    return {"region": region, "sales": 100 * (len(region) + 1)}

@step
def total(rows):
    side_effect("total")
    return sum(r["sales"] for r in rows)
""")

SHARED_BODY = code("""
%%zart_durable shared-sales
rows = [load_region(r) for r in ["north", "south", "east", "west"]]
grand_total = total(rows)
grand_total
""")

SHARE_TRY = md("""
## Now try it

Open `05-share-a-run-a.ipynb` and `05-share-a-run-b.ipynb` side by side. Run the
durable cell with `--restart` in one (a fresh generation of the run) and, while it
loads the regions, run the other one's. Only one kernel prints `loading …`; the other
says `attached to run 'shared-sales' owned by …`, and both end with the same `rows` and
`grand_total`. Count the lines of the log to see that every step ran once:
""")

SHARE_LOG = code("""
print(LOG.read_text() if LOG.exists() else "(no step executed yet)")
""")

SHARE_A = [
    md("""
    # 5a. Sharing a run between notebooks (first notebook)

    Two notebooks (`05-share-a-run-a` and `05-share-a-run-b`) contain **the same**
    `%%zart_durable` cell, with the same run id, on the same database. Whichever runs
    it first **executes** the run; the other **attaches** to the live run instead of
    executing it a second time: it shows its progress, waits for the end, then replays
    the journal locally. Both end with the same variables.

    If the run already ended, the second notebook simply replays it.
    """),
    LOAD,
    md("The steps must be the same in both notebooks (same code, so the same fingerprints):"),
    SHARED_STEPS,
    SHARED_BODY,
    code("""
    print(rows)
    print("grand total:", grand_total)
    """),
    SHARE_TRY,
    SHARE_LOG,
]

SHARE_B = [
    md("""
    # 5b. Sharing a run between notebooks (second notebook)

    This notebook is a twin of `05-share-a-run-a.ipynb`. Run it while the other one is
    in its durable cell: this kernel attaches to the run, waits, and ends with the same
    `rows` and `grand_total` without executing a single step. Run it after the other
    one finished: it replays the run.
    """),
    LOAD,
    SHARED_STEPS,
    SHARED_BODY,
    code("""
    print(rows)
    print("grand total:", grand_total)
    """),
    md("""
    Anyone can look at the run, from any notebook or script: its status and steps.
    """),
    code("""
    from zart_nb import run
    shared = run("shared-sales")
    print(shared.status, [s["name"] for s in shared.steps])
    """),
    SHARE_TRY,
    SHARE_LOG,
]

# ---------------------------------------------------------------------------------------
APPROVAL_A = [
    md("""
    # 6a. An approval flow: waiting for an event

    A durable body can wait for something that happens outside it: a person's
    approval, a webhook, another pipeline. `wait_for_event("approval", timeout=…)`
    suspends the body until **event** `approval` is sent to its run, from another
    notebook (`%zart_event`), a script (`zart_nb.send_event`) or the command line.

    The wait is durable too: its deadline is stored, and an event sent while this
    kernel was down is kept and found when the cell runs again.

    **How to use this pair:** run all cells here. The durable cell stops at
    `wait_for_event`. Then open `06-approval-b.ipynb` and run it: it approves, and the
    cell below finishes with the approver's answer.
    """),
    LOAD,
    code("""
    import time
    from zart_nb import EventTimeout, step, wait_for_event

    @step
    def prepare_release(version):
        time.sleep(0.2)
        return {"version": version, "changes": 12}

    @step
    def deploy(release, approval):
        time.sleep(0.2)
        return f"deployed {release['version']} (approved by {approval['by']})"

    @step
    def archive(release, reason):
        return f"{release['version']} not deployed: {reason}"
    """),
    code("""
    %%zart_durable release --run release-2024-06
    release = prepare_release("2.4.0")
    print(f"release {release['version']} is ready; waiting for an approval ...", flush=True)
    try:
        approval = wait_for_event("approval", timeout=600)   # 10 minutes to answer
    except EventTimeout:
        approval = {"approved": False, "by": None, "note": "nobody answered in time"}

    if approval["approved"]:
        outcome = deploy(release, approval)
    else:
        outcome = archive(release, approval.get("note", "rejected"))
    outcome
    """),
    code("""
    print("approval:", approval)
    print("outcome: ", outcome)
    """),
    md("""
    ## Now try it

    * **Restart the kernel while the cell waits**, then run all again: the release is
      replayed, and the wait goes on with what is left of its 10 minutes.
    * Send the event *before* running the durable cell again: it is kept, and the cell
      goes straight through.
    * An event is immutable once sent: a second `approval` for the same run is refused.
      Run the durable cell with `--restart` to ask again.
    """),
]

APPROVAL_B = [
    md("""
    # 6b. An approval flow: answering

    `06-approval-a.ipynb` is waiting in `wait_for_event("approval")` of run
    `release-2024-06`. This notebook answers it. (Run the first notebook first:
    otherwise `run("release-2024-06")` below says that the run does not exist.)

    Run it once per approval: the answer is an event, and events are immutable, so a
    second run of this notebook is refused at `%zart_event`.
    """),
    LOAD,
    code("""
    from zart_nb import EventAlreadySent, run, send_event

    waiting = run("release-2024-06")
    print("run release-2024-06 is", waiting.status)
    """),
    md("""
    `%zart_event RUN NAME EXPR` sends event `NAME` with the value of the Python
    expression `EXPR` (evaluated here) as its payload. The first notebook's
    `wait_for_event` returns that payload.
    """),
    code("""
    %zart_event release-2024-06 approval {"approved": True, "by": "grace", "note": "ship it"}
    """),
    md("""
    From Python (a script, a test, a web hook), the same is `send_event(run_id, name,
    payload)`. Events are immutable once sent, so a second answer is refused:
    """),
    code("""
    try:
        send_event("release-2024-06", "approval", {"approved": False, "by": "mallory"})
    except EventAlreadySent as exc:
        print("refused:", exc)
    """),
    md("""
    The run goes on in the first notebook's kernel. Its result, from here:
    """),
    code("""
    print(waiting.result(timeout=60))
    """),
]

# ---------------------------------------------------------------------------------------
ERRORS = [
    md("""
    # 7. Error handling: outcomes, retries, timeouts, `on_failure`

    zart tells two kinds of failure apart:

    * **`Err(error)`**: the step raised its own exception: a *business* error
      (invalid input, a refused payment). Retrying would not help.
    * **`Failed(error)`**: the *framework* gave up on the step: retries exhausted,
      timed out, the worker died, the result could not be stored.

    Calling a step the normal way raises on either. `step.outcome(...)` returns
    `Ok(value)`, `Err(error)` or `Failed(error)` instead, for a `match`.
    A failed step is stored with its error; running the cell again retries it, while
    completed steps replay.
    """),
    LOAD,
    code("""
    import time
    from zart_nb import Err, Failed, Ok, RetryPolicy, step

    @step("parse-{text}")                 # one step per input text
    def parse_amount(text):
        return round(float(text), 2)     # ValueError for "n/a": a business error

    calls = {"flaky": 0}

    @step(retry=RetryPolicy.fixed(3, delay=0.1))   # retry=3 alone waits 1 s, 2 s, 4 s
    def flaky_fetch():
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError(f"attempt {calls['flaky']}: connection reset")
        return {"rate": 1.08}

    @step(retry=RetryPolicy.fixed(1, delay=0.1))
    def service_down():
        raise ConnectionError("503 Service Unavailable")

    @step(timeout=0.5)                   # seconds
    def slow_lookup():
        for _ in range(50):
            time.sleep(0.1)
        return "too late"

    def describe(outcome):
        match outcome:
            case Ok(value):
                return f"Ok: {value!r}"
            case Err(error):
                return f"Err (business): {type(error).__name__}: {error}"
            case Failed(error):
                return f"Failed (framework): {type(error).__name__}: {error}"
    """),
    md("""
    Five steps, five outcomes. `flaky_fetch` fails twice and succeeds on its third
    attempt, so it is `Ok`; `service_down` fails on every attempt, so it is `Failed`.
    """),
    code("""
    %%zart_durable error-handling
    outcomes = {
        "parse 12.5": parse_amount.outcome("12.5"),
        "parse n/a": parse_amount.outcome("n/a"),
        "flaky": flaky_fetch.outcome(),
        "down": service_down.outcome(),
        "slow": slow_lookup.outcome(),
    }
    for label, outcome in outcomes.items():
        print(f"{label:11} -> {describe(outcome)}")
    """),
    md("""
    **Defaults for business errors.** `or_default(value)` and `or_else(handler)` turn an
    `Err` into a value. A framework failure still raises: a default must not hide a
    service that is down.
    """),
    code("""
    %%zart_durable defaults
    amounts = [parse_amount.or_default(0.0)(t) for t in ["3.50", "oops", "1.25"]]
    fixed = parse_amount.named("parse-retyped").or_else(lambda e: f"could not read it ({e})")("1,5")
    print("amounts:", amounts, "| total:", sum(amounts))
    print("retyped:", fixed)
    """),
    md("""
    **`on_failure`.** When the body itself fails, `--on-failure FUNC` calls
    `FUNC(input, error)`; its return value becomes the run's result. It runs inside the
    run, so it may call steps (to clean up, to notify someone).
    """),
    code("""
    @step
    def charge_card(amount):
        raise RuntimeError("card declined")

    def refund_and_report(input, error):
        return {"charged": False, "reason": str(error)}
    """),
    code("""
    %%zart_durable checkout --on-failure refund_and_report
    charge_card(42.0)
    {"charged": True}
    """),
    md("""
    ## Now try it

    * Run the `error-handling` cell again: `parse 12.5` and `flaky` replay, the failed
      steps run again (a failed step is retried by the next execution).
    * Call `service_down()` in the durable cell without `.outcome`: the cell stops with
      `StepFailed`, its cause (the `ConnectionError`) attached.
    * `from zart_nb import run; run("error-handling").steps` lists each step with its
      status, attempts and error.
    """),
]

# ---------------------------------------------------------------------------------------
ASYNC = [
    md("""
    # 8. Async: `await` in durable cells

    The clients of today's notebooks are async: `httpx.AsyncClient`, `AsyncOpenAI`,
    `AsyncAnthropic`, database drivers. A `%%zart_durable` cell may use top-level
    `await` like any cell: it becomes an **async durable body**, run on the kernel's own
    event loop. A `@step` on an `async def` is awaited; `asyncio.gather` runs several
    at once, and each is committed as soon as it completes (those that complete together
    share one commit).

    Names come from the step's template (`fetch-{city}`), never from the order in which
    the steps complete, so a restart replays exactly the same steps.
    """),
    LOAD,
    code("""
    import asyncio
    import random
    from zart_nb import sleep, step

    @step("fetch-{city}")
    async def fetch_forecast(city):
        print(f"fetching {city} ...")
        await asyncio.sleep(random.uniform(0.2, 0.4))   # stands for `await client.get(...)`
        return {"city": city, "high": 10 + len(city)}

    @step
    async def summarize(forecasts):
        return max(forecasts, key=lambda f: f["high"])["city"]

    cities = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Perth"]
    """),
    md("""
    Six fetches of about 0.3 s each run concurrently: the cell takes well under the
    1.8 s they would take one after the other.
    """),
    code("""
    %%zart_durable weather
    forecasts = await asyncio.gather(*(fetch_forecast(c) for c in cities))
    await sleep("cool-down", 0.2)          # a durable sleep, awaited
    warmest = await summarize(forecasts)
    warmest
    """),
    code("""
    print([f["city"] for f in forecasts])   # in the order of `cities`, whoever finished first
    """),
    md("""
    ## Now try it

    * **Restart the kernel and run all.** Every step and the sleep replay from the
      journal: nothing is fetched again, and `forecasts` and `warmest` come back.
    * **Interrupt it.** Run the cell with `--restart` and press the stop button while it
      fetches: the steps that completed are kept; run the cell again to fetch the rest.
    * **A sync step in an async cell** still works: it runs in place (and holds the
      event loop while it does; `await asyncio.to_thread(...)` inside an async step
      keeps the loop free for blocking calls).
    * **Children may be async too:** `await wait([schedule(fetch_forecast, c) for c in
      cities])` runs them on the workers, each on an event loop of its worker thread.
    * **Forgot an `await`?** A step or sleep that is never awaited does not run; the cell
      says which when it ends.
    """),
]

EXECUTORS = [
    md("""
    # 9. Fan-out on your own cluster: Dask, or any executor

    By default the children of a fan-out are rows that zart-nb's own workers claim (the
    local pool, `zart-nb worker` on other machines). If you already run a cluster, a
    Dask cluster here, let **it** compute: pass it to `wait(handles, executor=...)`, to
    the cell with `--executor`, or to the whole kernel with `%zart_executor`.

    Durability does not move. The children are still rows in PostgreSQL; the waiting
    body claims them, sends them to the cluster, and commits each result as it comes
    back. Restart the kernel mid-way: the children that finished are loaded, only the
    others are sent again. The cluster's workers need no database and no zart-nb secret.
    """),
    LOAD,
    md("""
    A Dask cluster of two worker processes on this machine. Yours could be
    `Client("tcp://scheduler:8786")`, a dask-jobqueue cluster on Slurm, Kubernetes or
    Coiled: anything a `distributed.Client` connects to.
    """),
    code("""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    print(client)
    """),
    code("""
    import time
    from zart_nb import context, schedule, step, wait

    @step("score-{i}")                  # defined in the notebook: sent to Dask by value
    def score(i):
        time.sleep(0.05)                # the work
        return {"i": i, "score": (i * 37) % 101, "attempt": context().attempt}
    """),
    md("""
    `--executor client` sends this cell's children to the cluster. The progress widget
    is the same as with zart-nb's workers, with the current rate and the time left.
    """),
    code("""
    %%zart_durable scoring --executor client
    scores = wait([schedule(score, i) for i in range(120)])
    best = max(scores, key=lambda s: s["score"])
    best
    """),
    md("""
    Each child's row says who committed it: the body, as the cluster's worker.
    """),
    code("""
    from zart_nb import run

    steps = run("scoring").steps
    print(len(scores), "scores;", sum(s["status"] == "completed" for s in steps), "committed by",
          {s["worker"].split(":")[0] for s in steps})
    """),
    md("""
    `%zart_executor client` makes the cluster this kernel's default for every durable
    body that names none (`%zart_executor off` goes back to zart-nb's workers). In a
    script or a worker, `ZART_EXECUTOR=dask://scheduler:8786` does the same.
    """),
    code("%zart_executor client"),
    md("""
    ## Now try it

    * **Restart the kernel and run all.** `scoring` replays: no child is sent to the
      cluster, the widget shows them all replayed.
    * **Kill the kernel mid-way.** Run the durable cell with `--restart`, restart the
      kernel while the bar moves, run all again: the finished children are loaded, the
      others go to the cluster again (their attempt counted).
    * **Kill a Dask worker** while the bar moves (`kill -9` in a terminal, one of the pids
      that `client.run(os.getpid)` lists; its nanny starts a new one): the tasks it held
      are computed again, and every result is committed once.
    * **Other executors**: `--executor "loky:4"`, a `ProcessPoolExecutor`, ipyparallel's
      `rc.executor()`, `zart_nb.ray_executor()`.

    The cluster stops with the kernel; to stop it now:
    """),
    code("""
    client.close()
    cluster.close()
    """),
]

DURABLE_KERNEL = [
    md("""
    # 10. The durable kernel: every cell checkpointed by itself

    In the **Python 3 (zart durable)** kernel (`zart-nb install-kernel`), every plain
    cell is a step cell of the notebook run, named by its Jupyter cell id: no magic to
    write, no name to choose. "Restart Kernel and Run All Cells" then restores each cell
    (its variables, printed text, tables, plots and `Out[n]`) instead of running it.

    * What a cell changes **in place** is seen by value: `model.fit(X, y)`,
      `df.drop(columns=[...], inplace=True)`, `history.append(x)`, `cfg.update(...)`,
      `obj.attr = v`, or a change through a container. It is stored with the cell, so
      the restored notebook equals the one that ran.
    * A cell whose code changed runs again, and so does every cell that reads a value it
      changed. The others stay restored. The line `zart: cell …` under each cell says
      which happened, and why.
    * A value that cannot be stored (a connection, an open file, a thread) makes its
      cell run on every restore, and the cells that use it follow.

    In a plain Python 3 kernel, as here, `%zart_auto on` does the same.
    """),
    LOAD,
    code("""
    %zart_auto on
    %zart_run durable-kernel-demo
    """),
    md("""
    A cell that only imports runs again on restore: it is cheap, and brings back what
    else it set (`sys.path`, options, random seeds).
    """),
    code("""
    import sqlite3
    import time
    import numpy as np
    import pandas as pd
    """),
    md("A slow cell: the second time, it is restored in no time."),
    code("""
    time.sleep(1)                                    # pretend this is a slow query
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(1000, 3)), columns=["x1", "x2", "noise"])
    df["y"] = 3 * df["x1"] - 2 * df["x2"] + 1
    print(f"loaded {len(df)} rows")
    """),
    code("""
    class LinearModel:
        \"\"\"A least-squares fit, scikit-learn style: fit() changes the model in place.\"\"\"

        def __init__(self):
            self.coef_ = None

        def fit(self, X, y):
            A = np.column_stack([X, np.ones(len(X))])
            self.coef_ = np.linalg.lstsq(A, y, rcond=None)[0]
            return self

        def score(self, X, y):
            A = np.column_stack([X, np.ones(len(X))])
            residual = y - A @ self.coef_
            return 1 - residual.var() / y.var()

    model = LinearModel()
    history = []
    settings = {"features": ["x1", "x2"]}
    """),
    md("These cells bind nothing new: they change `model`, `df`, `history` and `settings` in place."),
    code("""
    model.fit(df[settings["features"]].to_numpy(), df["y"].to_numpy())
    """),
    code("""
    del df["noise"]
    history.append(round(float(model.score(df[settings["features"]].to_numpy(), df["y"].to_numpy())), 6))
    settings.update(fitted=True)
    df.shape
    """),
    md("""
    A connection cannot be stored: this cell runs on every restore, and so does the
    next one, which uses it.
    """),
    code("""
    db = sqlite3.connect(":memory:")
    """),
    code("""
    db.execute("CREATE TABLE coef (i INTEGER, value REAL)")
    db.executemany("INSERT INTO coef VALUES (?, ?)", enumerate(model.coef_.round(3).tolist()))
    stored = db.execute("SELECT count(*) FROM coef").fetchone()[0]
    """),
    code("""
    from IPython.display import HTML, display

    rows = "".join(f"<tr><td>{i}</td><td>{c:.3f}</td></tr>" for i, c in enumerate(model.coef_))
    display(HTML(f"<table><tr><th>i</th><th>coefficient</th></tr>{rows}</table>"))
    print("columns:", list(df.columns), "| history:", history, "| settings:", settings,
          "| stored:", stored)
    """),
    md("""
    ## Now try it

    * **Kernel → Restart Kernel and Run All Cells.** Each cell says `restored` and shows
      its output again; the slow cell takes no time. The imports and the two cells of the
      connection say why they ran.
    * **Change a cell**, e.g. `settings = {"features": ["x1"]}`: that cell runs, then the
      fit and the score (they read `settings`), and the table; `df`'s cell stays restored.
    * Run the `history.append` cell twice: it runs the second time (it read a `history`
      that had changed) and `history` holds two scores, as in any kernel.
    * `%%zart_always` on the first line makes a cell run every time (a clock, a fresh
      download); `%zart_auto off` turns automatic cells off.
    """),
]

NOTEBOOKS = {
    "01-quickstart.ipynb": QUICKSTART,
    "02-fan-out.ipynb": FAN_OUT,
    "03-durable-loops.ipynb": LOOPS,
    "04-step-cells.ipynb": STEP_CELLS,
    "05-share-a-run-a.ipynb": SHARE_A,
    "05-share-a-run-b.ipynb": SHARE_B,
    "06-approval-a.ipynb": APPROVAL_A,
    "06-approval-b.ipynb": APPROVAL_B,
    "07-error-handling.ipynb": ERRORS,
    "08-async.ipynb": ASYNC,
    "09-executors.ipynb": EXECUTORS,
    "10-durable-kernel.ipynb": DURABLE_KERNEL,
}


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives no diff
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(cells: list[tuple[str, str]]) -> str:
    return nbformat.writes(notebook(cells)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / name
        text = render(cells)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python notebooks/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
