"""Capacity plan from measurements (issue 13, item 4; docs/capacity.md).

    .venv/bin/python benchmarks/capacity.py stages   [--persons 250000]
    .venv/bin/python benchmarks/capacity.py backfill [--persons 250000 --days 7]

`stages` generates one day and measures, in fresh processes:
  1. the intake of every province alone on one core (POLARS_MAX_THREADS=1, as a Dask
     worker of one thread runs it): read, decode, validate, F01-F05, and the write of
     its rows as Parquet (flows.distributed.intake_to_parquet);
  2. the driver's stages of the same day as `--task-runner dask` runs them: the staged
     Parquet loaded into the warehouse, rules, ledger, clearing, reports, publish;
then prints seconds per million input rows of every stage, the largest provinces, and
the plan: wall time of one national day (the 2.5M-person day of `make bench`) and of a
365-day national backfill for 1, 4, 16 and 64 workers, and the worker count at which
the single-writer warehouse (the driver) becomes the limit.

`backfill` generates N days and times `recon backfill` three ways: the plain
orchestrator, Prefect with threads (what Prefect alone costs), and `--task-runner dask`
(LocalCluster sized to the machine, against a `prefect server` started beforehand as in
operations, or PREFECT_API_URL's); prints wall and CPU seconds and the load average
around each, checks that all publish the plain run's reports and warehouse rows, and
prints why the pipelined backfill is or is not faster here.

Nothing here is a test: it prints figures. Data goes to benchmarks/out/ (git-ignored).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
START = date(2026, 11, 20)
SEED = 20261120
NATIONAL_PERSONS = 2_500_000        # the national day of `make bench` (README "Benchmarks")
WORKERS = (1, 4, 16, 64)
BACKFILL_DAYS = 365
RESULTS = ("exceptions.csv", "settlement.csv", "positions.csv")
ONE_CORE = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}  # as a Dask worker of one thread
SCALES = (1, 10)                    # today's national volume, and ten times it

# Driver stages as the executor names its steps (flows/nightly.py, transforms/reconcile.py).
DRIVER_STAGES = (
    ("inbox listing and manifests", ("list_date_folders", "read_inbox")),
    ("warehouse load of the staged Parquet", ("stage",)),
    ("rules", ("amounts_fit", "known_persons", "rules_files", "rules_persons", "rules_relationships",
               "rules_transfers", "rules_matching", "rules_settlements")),
    ("ledger + balances", ("ledger", "balances")),
    ("clearing + findings", ("clearing", "finalize")),
    ("report frames + summary", ("report_frames", "summary_parts")),
    ("reports written + publish", ("stage_reports", "publish")),
)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def ensure_inbox(persons: int, days: int) -> Path:
    national = OUT / f"inbox-{persons}-{SEED}"   # benchmarks/national_day.py's, same day and seed
    if days == 1 and (national / ".complete").exists():
        return national
    inbox = OUT / f"capacity-{days}x{persons}-{SEED}"
    if (inbox / ".complete").exists():
        return inbox
    shutil.rmtree(inbox, ignore_errors=True)
    from synth.generate import generate
    t0 = time.perf_counter()
    generate(inbox, START, days, persons, SEED)
    print(f"  generated {days} day(s) x {persons:,} persons in {time.perf_counter() - t0:.0f} s "
          f"-> {inbox}", flush=True)
    (inbox / ".complete").write_text("ok")
    return inbox


def run_child(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh Python; it prints one line RESULT <json>."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.exit(f"the measurement failed: {proc.stderr.strip()[-2000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


# --------------------------------------------------------------------------- stages

INTAKE_CODE = """
import json, tempfile, time
from datetime import date
from flows.inbox import read_inbox_date
from flows.distributed import write_staged
from transforms.intake import load_province
d = date.fromisoformat({day!r})
inbox = read_inbox_date({inbox!r}, d)
run = tempfile.mkdtemp(dir={tmp!r})
write_staged(load_province(inbox.deliveries[0], d), run)   # warm-up: imports, first calls
out = {{}}
for x in inbox.deliveries:
    t0 = time.perf_counter(); i = load_province(x, d); t1 = time.perf_counter()
    write_staged(i, run); t2 = time.perf_counter()
    rows = sum(f.rows_read for f in i.files)
    out[x.province] = {{"rows": rows, "intake_s": t1 - t0, "parquet_s": t2 - t1}}
print("RESULT " + json.dumps(out))
"""

DRIVER_CODE = """
import json, tempfile
from datetime import date
from pathlib import Path
from flows.nightly import Paths, run_date
from flows.distributed import StagingExecutor, run_folder
work = Path(tempfile.mkdtemp(dir={tmp!r}))
paths = Paths.of({inbox!r}, work / "reports", work / "w.duckdb")
with run_folder(paths) as run:
    ex = StagingExecutor(run, max_workers=1)   # the loads are not what is measured here
    run_date(paths, date.fromisoformat({day!r}), ex)
print("RESULT " + json.dumps(ex.timings))
"""


def measure_day(persons: int) -> dict:
    inbox = ensure_inbox(persons, 1)
    tmp = tempfile.mkdtemp(prefix="capacity-", dir=OUT)
    try:
        fmt = dict(day=START.isoformat(), inbox=str(inbox), tmp=tmp)
        provinces = run_child(INTAKE_CODE.format(**fmt), ONE_CORE)
        driver = run_child(DRIVER_CODE.format(**fmt))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = sum(p["rows"] for p in provinces.values())
    costs = {"worker: read, decode, validate, F01-F05": sum(p["intake_s"] for p in provinces.values()),
             "worker: write the staged rows as Parquet": sum(p["parquet_s"] for p in provinces.values())}
    for label, names in DRIVER_STAGES:
        costs[f"driver: {label}"] = sum(driver.get(n, 0.0) for n in names)
    return {"persons": persons, "rows": rows, "provinces": provinces, "costs": costs}


def fit(small: dict, full: dict) -> dict:
    """Per stage: fixed seconds per day + seconds per million rows, from two scales (a
    small day is dominated by fixed costs per file and per statement)."""
    out = {}
    for label in full["costs"]:
        q1, q2 = small["costs"][label], full["costs"][label]
        per_row = max(0.0, (q2 - q1) / (full["rows"] - small["rows"]))
        out[label] = {"fixed_s": max(0.0, q2 - per_row * full["rows"]), "s_per_mrow": per_row * 1e6,
                      "small_s": q1, "full_s": q2}
    return out


def plan(small: dict, full: dict, scale: int = 1) -> dict:
    """The capacity model (docs/capacity.md "The model"), scaled to `scale` x the
    national day."""
    f = fit(small, full)
    national_rows = scale * full["rows"] * NATIONAL_PERSONS / full["persons"]

    def at(prefix: str) -> float:
        return sum(v["fixed_s"] + v["s_per_mrow"] * national_rows / 1e6
                   for k, v in f.items() if k.startswith(prefix))

    intake_day, driver_day = at("worker:"), at("driver:")
    largest = max(p["rows"] for p in full["provinces"].values()) / full["rows"]
    rows = []
    for w in WORKERS:
        intake_wall = max(intake_day / w, intake_day * largest)  # a province is one task
        backfill = BACKFILL_DAYS * max(intake_wall, driver_day) + min(intake_wall, driver_day)
        rows.append({"workers": w, "intake_wall_s": intake_wall, "day_s": intake_wall + driver_day,
                     "backfill_h": backfill / 3600,
                     "bound": "workers (intake)" if intake_wall > driver_day else "driver (warehouse)"})
    return {"fit": f, "scale": scale, "largest_share": largest, "national_rows": national_rows,
            "driver_day_s": driver_day, "intake_day_s": intake_day,
            "writer_limit_workers": intake_day / driver_day, "rows": rows}


def print_stages(small: dict, full: dict) -> None:
    p = plan(small, full)  # the fit is the same at every scale
    print(f"\ncapacity: days of {small['persons']:,} and {full['persons']:,} persons "
          f"({small['rows']:,} and {full['rows']:,} input rows); {os.cpu_count()} cores, "
          f"load {load()}")
    print(f"\n{'stage':<58} {'small s':>8} {'full s':>8} {'fixed s':>8} {'s/M rows':>9}")
    for label, v in p["fit"].items():
        print(f"  {label:<56} {v['small_s']:>8.2f} {v['full_s']:>8.2f} {v['fixed_s']:>8.2f} "
              f"{v['s_per_mrow']:>9.2f}")
    print("  (worker stages on one core, POLARS_MAX_THREADS=1; driver stages on every core)")
    n = len(full["provinces"])
    print(f"\nper province ({n} provinces; worker seconds on one core, full day)")
    top = sorted(full["provinces"].items(), key=lambda kv: -kv[1]["rows"])
    for pp, x in top[:5] + top[-2:]:
        print(f"  {pp}  {x['rows']:>10,} rows  {x['intake_s'] + x['parquet_s']:>6.2f} s  "
              f"({x['rows'] / full['rows']:.1%} of the day)")
    plans = [plan(small, full, k) for k in SCALES]
    for q in plans:
        print(f"\nplan for {q['scale']} x the national day ({q['scale'] * NATIONAL_PERSONS:,} persons"
              f" = {q['national_rows'] / 1e6:.2f}M input rows): driver {q['driver_day_s']:.0f} s "
              f"per day, worker intake {q['intake_day_s']:.0f} core-seconds per day, largest "
              f"province {q['largest_share']:.1%}")
        print(f"{'workers':>8} {'intake wall':>12} {'one day':>9} {'365-day backfill':>17}  bound by")
        for r in q["rows"]:
            print(f"{r['workers']:>8} {r['intake_wall_s']:>10.0f} s {r['day_s']:>7.0f} s "
                  f"{r['backfill_h']:>15.1f} h  {r['bound']}")
        print(f"the single-writer driver is the limit from {q['writer_limit_workers']:.1f} "
              "worker(s) on")
    print("RESULT " + json.dumps({"small": small, "full": full, "plans": plans}))
    print("\n" + markdown(p, plans))


def markdown(p: dict, plans: list[dict]) -> str:
    """The tables of docs/capacity.md, from this run's figures."""
    out = ["| stage | fixed s per day | s per million rows |", "|---|---|---|"]
    out += [f"| {label} | {v['fixed_s']:.2f} | {v['s_per_mrow']:.2f} |" for label, v in p["fit"].items()]
    out += ["", "| volume | workers | intake wall | one day | 365-day backfill | bound by |",
            "|---|---|---|---|---|---|"]
    for q in plans:
        for r in q["rows"]:
            out.append(f"| {q['scale']}x national ({q['national_rows'] / 1e6:.1f}M rows) | "
                       f"{r['workers']} | {r['intake_wall_s']:.0f} s | {r['day_s']:.0f} s | "
                       f"{r['backfill_h']:.1f} h | {r['bound']} |")
    return "\n".join(out)


# --------------------------------------------------------------------------- backfill

def timed(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and CPU seconds (user + system of the command and of every process it
    waited for: the LocalCluster's workers, not a Prefect server started beforehand)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), proc


@contextlib.contextmanager
def prefect_server(home: Path):
    """`prefect server start` on a free port of 127.0.0.1, as in operations (README): the
    dask backfill is timed against a running server, not Prefect's temporary API."""
    if os.environ.get("PREFECT_API_URL"):
        yield {"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start",
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{api}/health", timeout=2).status == 200:
                    break
            time.sleep(0.5)
        else:
            sys.exit("prefect server start did not answer within 150 s")
        yield {"PREFECT_API_URL": api, "PREFECT_HOME": str(home), SERVER_PID: str(server.pid)}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


SERVER_PID = "_server_pid"   # in the dict prefect_server yields; never passed to a run


def server_cpu(api: dict) -> float | None:
    """CPU seconds (user + system) the Prefect server started here has used so far: it
    shares the two cores with the run (None for a server of PREFECT_API_URL's)."""
    from prefect_overhead import server_cpu as cpu_of   # benchmarks/ is sys.path[0]
    pid = api.get(SERVER_PID)
    return cpu_of(int(pid)) if pid else None


def backfill(persons: int, days: int, workers: int | None, runs: tuple[str, ...]) -> None:
    inbox = ensure_inbox(persons, days)
    tmp = Path(tempfile.mkdtemp(prefix="capacity-backfill-", dir=OUT))
    try:
        (tmp / "prefect").mkdir()
        with prefect_server(tmp / "prefect") as api:
            compare(inbox, tmp, persons, days, workers, api, runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


RUNS = (  # name, recon options, whether it talks to the Prefect server
    ("plain", ["--orchestrator", "plain"], False),
    ("prefect", ["--orchestrator", "prefect", "--task-runner", "threads"], True),
    ("dask", ["--orchestrator", "prefect", "--task-runner", "dask"], True),
)


def compare(inbox: Path, tmp: Path, persons: int, days: int, workers: int | None,
            api: dict, runs: tuple[str, ...] = tuple(r[0] for r in RUNS)) -> None:
    """The same backfill plain, under Prefect with threads (what Prefect alone costs) and
    pipelined on Dask; the reports and warehouse rows of each compared with plain's.
    `runs`: the ways to time, each NAME or NAME@VAR=VALUE@... (a variant of a way with
    more environment, e.g. dask@RECON_DASK_WORKERS=2), in the order given."""
    end = START + timedelta(days=days - 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if workers:
        env["RECON_DASK_WORKERS"] = str(workers)
    recon = str(Path(sys.executable).parent / "recon")
    common = ["backfill", "--start", START.isoformat(), "--end", end.isoformat(), "--inbox", str(inbox)]
    ways = {name: (extra, needs_api) for name, extra, needs_api in RUNS}
    figures = {}
    for i, spec in enumerate(runs):
        way, *assignments = spec.split("@")
        extra, needs_api = ways[way]
        more = dict(x.split("=", 1) for x in assignments)
        name = spec if spec not in figures else f"{spec}#{i}"
        folder = f"run{i}"
        before, code, server0 = load(), code_digest(), server_cpu(api)
        api_env = {k: v for k, v in api.items() if k != SERVER_PID} if needs_api else {}
        wall, cpu, proc = timed([recon, *common, "--out", str(tmp / folder), "--warehouse",
                                 str(tmp / f"{folder}.duckdb"), *extra], {**env, **api_env, **more})
        server = server_cpu(api) - server0 if server0 is not None else None
        if proc.returncode != 0:
            sys.exit(f"{name} backfill failed: {proc.stderr.strip()[-1500:]}")
        figures[name] = {"wall_s": wall, "cpu_s": cpu, "load_before": before,
                         "load_after": load(), "folder": folder,
                         "code": code, "code_after": code_digest(), "server_cpu_s": server}
        on_server = f" + server {server:4.1f} s CPU" if server is not None else ""
        print(f"  {name:<8} {wall:7.1f} s wall  {cpu:7.1f} s CPU{on_server}  (load before {before}, "
              f"after {figures[name]['load_after']})", flush=True)
        if way == "dask":
            figures[name]["timeline"] = timeline(api["PREFECT_API_URL"], START, end)
            print_timeline(figures[name]["timeline"])
    codes = {f[k] for f in figures.values() for k in ("code", "code_after")}
    if len(codes) > 1:   # a shared working tree: someone edited the code meanwhile
        print("WARNING: the source files (flows, transforms, contracts) changed during the "
              "benchmark, so the ways ran different code: compare neither times nor results")
    dates = [(START + timedelta(days=i)).isoformat() for i in range(days)]
    if "plain" in figures:
        reference = figures["plain"]["folder"]
        for name in [n for n in figures if n != "plain"]:
            folder = figures[name]["folder"]
            figures[name]["same_reports"] = all(
                (tmp / reference / d / n).read_bytes() == (tmp / folder / d / n).read_bytes()
                for d in dates for n in RESULTS)
            figures[name]["same_rows"] = (rows_digest(tmp / f"{reference}.duckdb")
                                          == rows_digest(tmp / f"{folder}.duckdb"))
            print(f"  {name}: the same reports and warehouse rows as plain: "
                  f"{figures[name]['same_reports'] and figures[name]['same_rows']}")
    cores = len(os.sched_getaffinity(0))
    n_workers = workers or max(1, cores - 1)
    if not {name for name, _, _ in RUNS} <= set(figures):   # --runs: the figures only
        print("RESULT " + json.dumps({"persons": persons, "days": days, "cores": cores,
                                      "workers": n_workers, "runs": figures}))
        return
    plain_s, dask_s = figures["plain"]["wall_s"], figures["dask"]["wall_s"]
    print(f"\n{days}-day backfill of {persons:,} persons on {cores} cores ({n_workers} dask worker(s)): "
          f"plain {plain_s:.1f} s, prefect+threads {figures['prefect']['wall_s']:.1f} s, dask "
          f"{dask_s:.1f} s ({dask_s / plain_s:.2f}x plain); dask's reports and warehouse rows the "
          f"same as plain's: {figures['dask']['same_reports'] and figures['dask']['same_rows']}")
    print("why: " + why(figures, cores, n_workers))
    print("RESULT " + json.dumps({"persons": persons, "days": days, "cores": cores,
                                  "workers": n_workers, "runs": figures}))


def timeline(api: str, start: date, end: date) -> list[dict]:
    """Per date of the last dask backfill, seconds from the flow run's start: where and
    when its provinces loaded (recon-<D>-intake), when the driver began and ended staging
    them, and when the date was published (its task runs)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId,
                                                FlowRunFilter, FlowRunFilterId, FlowRunFilterName)
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        [run] = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"backfill-{start}-{end}"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        tasks = c.read_task_runs(flow_run_filter=flow_filter)
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    t0 = run.start_time.timestamp()
    by_name: dict[str, list] = {}
    for t in sorted(tasks, key=lambda t: t.start_time or t.expected_start_time):
        by_name.setdefault(t.name, []).append(t)
    out = []
    for i in range((end - start).days + 1):
        d = (start + timedelta(days=i)).isoformat()
        table = next((a.data for a in artifacts if a.key == f"recon-{d}-intake"), "[]")
        loads = json.loads(table) if isinstance(table, str) else table
        when = [(datetime.fromisoformat(x["started"]).timestamp(),
                 datetime.fromisoformat(x["finished"]).timestamp()) for x in loads]
        stage, publish = by_name.get("stage", [])[i:i + 1], by_name.get("publish", [])[i:i + 1]
        out.append({"date": d, "where": sorted({str(x["worker"]) for x in loads})[:3],
                    "provinces": len(loads),   # and how many the driver's threads loaded
                    "by_driver": sum(str(x["worker"]).startswith("ThreadPool") for x in loads),
                    "loads_from": min(w[0] for w in when) - t0, "loads_to": max(w[1] for w in when) - t0,
                    "stage_from": stage[0].start_time.timestamp() - t0 if stage else None,
                    "stage_to": stage[0].end_time.timestamp() - t0 if stage else None,
                    "published": publish[0].end_time.timestamp() - t0 if publish else None})
    return out


def print_timeline(rows: list[dict]) -> None:
    print("\ndask timeline (s from the backfill flow run's start): provinces loaded, staged, published")
    for r in rows:
        print(f"  {r['date']}  loads {r['loads_from']:6.1f}-{r['loads_to']:6.1f}, "
              f"{r['by_driver']:2d} of {r['provinces']} by the driver  stage {r['stage_from']:6.1f}-"
              f"{r['stage_to']:6.1f}  published {r['published']:6.1f}")


def code_digest() -> str:
    """sha256 over the program's source files (what a run imports), to tell whether all
    ways ran the same code."""
    import hashlib
    h = hashlib.sha256()
    for path in sorted(p for d in ("flows", "transforms", "contracts") for p in (ROOT / d).rglob("*")
                       if p.suffix in (".py", ".toml") and p.is_file()):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def rows_digest(warehouse: Path) -> dict[str, tuple]:
    """Row count and an order-independent sum of row hashes of every table but those that
    name the run and the warehouse (flows.warehouse.WAREHOUSE_OWN_TABLES); in SQL, because a
    week at this scale is millions of rows (tests/test_dask.py compares the rows themselves)."""
    import duckdb

    from flows.warehouse import WAREHOUSE_OWN_TABLES
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [t for (t,) in con.execute(
                      "SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()
                  if t not in WAREHOUSE_OWN_TABLES]
        return {t: con.execute(f'SELECT count(*), sum(hash(t)::HUGEINT) FROM "{t}" t').fetchone()
                for t in sorted(tables)}
    finally:
        con.close()


def why(f: dict, cores: int, workers: int) -> str:
    """Why the pipelined backfill is or is not faster here, from this run's figures."""
    plain, prefect, dask = (f[k]["wall_s"] for k in ("plain", "prefect", "dask"))
    cpu = {k: f[k]["cpu_s"] for k in f}
    busy = float(f["dask"]["load_before"].split()[0])
    extra = cpu["dask"] - cpu["prefect"]
    said = (f"Prefect's task runs (prefect+threads) cost {prefect - plain:+.1f} s wall and "
            f"{cpu['prefect'] - cpu['plain']:+.1f} CPU s over plain; dask {dask - prefect:+.1f} s wall "
            f"and {extra:+.1f} CPU s over prefect+threads (" +
            ("its cluster, the staged rows written as Parquet and loaded back, Dask's own event "
             "loops" if extra > 0 else "the intake on the worker, the Parquet round trip and the "
             "cluster together cost less CPU than the intake on the driver's threads") + "). ")
    server = {k: f[k].get("server_cpu_s") for k in ("prefect", "dask")}
    if None not in server.values():
        said += (f"The Prefect server, on the same cores here, used {server['prefect']:.1f} CPU s "
                 f"for prefect+threads (14 task runs a date) and {server['dask']:.1f} for dask (5 "
                 "a date: the rule, ledger and clearing steps are one task run, `reconcile`). ")
    rows = f["dask"].get("timeline") or []
    took = sum(r["by_driver"] for r in rows[1:])
    share = (f" The driver loaded D1 itself while the cluster started, and {took} of the "
             f"{sum(r['provinces'] for r in rows[1:])} provinces of the later dates (those the "
             "worker had not begun when their date came)." if rows else "")
    if dask < plain:
        return said + (f"The {workers} worker(s) load later dates while the driver reconciles "
                       "earlier ones, so a day's intake hides behind the driver's work of the day "
                       "before, and that more than pays for Prefect and Dask here." + share)
    if busy >= cores:
        return said + (f"The load average was {busy:.1f} on {cores} cores (other work), so no "
                       "core stood idle for the pipeline to use: each backfill got about "
                       f"{cpu['plain'] / plain:.1f} (plain) and {cpu['dask'] / dask:.1f} (dask) "
                       "cores, and wall time followed CPU time, where dask does more work than "
                       "plain. Pipelining only hides the intake (on one core, behind the driver) "
                       "when a core is free; on a busy 2-core machine it cannot pay for Prefect "
                       "and Dask." + share)
    return said + (f"Pipelining hides at most the intake behind the driver's work, and on {cores} "
                   "cores the plain path already loads the provinces on every core; that gain is "
                   "smaller than what Prefect and Dask cost on the driver's cores." + share)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("stages", "backfill"))
    ap.add_argument("--persons", type=int, default=250_000)
    ap.add_argument("--days", type=int, default=7, help="days of the backfill (default 7)")
    ap.add_argument("--workers", type=int, default=None,
                    help="LocalCluster workers of the dask backfill (default: recon's, one per "
                         "CPU but one)")
    ap.add_argument("--runs", default=",".join(r[0] for r in RUNS),
                    help="backfill: the ways to time, in order, of plain, prefect, dask, each "
                         "optionally with more environment: dask@RECON_DASK_WORKERS=2 (default "
                         "plain,prefect,dask; the verdict needs those three)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.what == "stages":
        print_stages(measure_day(a.persons // 10), measure_day(a.persons))
    else:
        backfill(a.persons, a.days, a.workers, tuple(a.runs.split(",")))


if __name__ == "__main__":
    main()
