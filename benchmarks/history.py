"""Months-of-history benchmark (issue 12, target 3).

    .venv/bin/python benchmarks/history.py                 # or: make bench-history
    .venv/bin/python benchmarks/history.py --quick         # 15 days x 50,000 persons
    HISTORY_DAYS=30 HISTORY_PERSONS=100000 make bench-history
    .venv/bin/python benchmarks/history.py --work DIR --stop-after 30   # then again without
                                                   # --stop-after: one run in two parts

1. generates N consecutive days at P persons with `synth.generate` (once; reused from
   benchmarks/out/ while its parameters and the sources of synth/ are unchanged);
2. reconciles them in order through ONE warehouse, each day in a fresh child process
   (the plain orchestration, every report included), and prints per day: wall
   seconds, peak RSS of the child (ru_maxrss), input rows, warehouse size after the
   day, and the slowest steps;
3. compares the last 5 days with days 2-6 (day 1 is genesis: it loads the whole
   population and opening balances, so it is not a steady-state day). Target: time
   and peak memory of the last 5 within 15 % of days 2-6.

The nation is a steady one (`python -m synth.generate --steady`): the default nation
fills up (its daily input grows ~60 % over 60 days), which would hide what history
alone does to a day; `--growing` measures the default nation.

Nothing here is a test: it prints figures. Timings on a shared 2-core machine
wander by 10-15 %; the comparison uses medians of five days.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
START = date(2026, 9, 1)

CHILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path
from flows import warehouse as wh
from flows.nightly import Paths, PlainExecutor, run_date
inbox, out, warehouse, d = sys.argv[1:5]
cpu = {}
peak = {}   # step -> MiB by which it raised the process's peak RSS

def _maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def _add(name, t0):
    cpu[name] = cpu.get(name, 0.0) + time.process_time() - t0

class CpuExecutor(PlainExecutor):
    # CPU seconds of the process per step: exact for the steps the run calls one after
    # the other; load_province runs on threads beside stage, so stage holds both.
    def call(self, step, *args):
        t0, m0 = time.process_time(), _maxrss()
        try:
            return super().call(step, *args)
        finally:
            if step.name != "load_province":
                _add(step.name, t0)
                if _maxrss() > m0:
                    peak[step.name] = peak.get(step.name, 0.0) + _maxrss() - m0

def timed(name, fn):
    def wrapper(*a, **k):
        t0 = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            _add(name, t0)
    return wrapper

for name in ("write_status_file", "recover", "record_run", "delete_date", "check_order",
             "previous_findings", "finish_run", "write_journal"):
    setattr(wh, name, timed(name, getattr(wh, name)))
wh.open_warehouse = timed("open_warehouse", wh.open_warehouse)
import flows.operations as _ops
_ops.with_scorecard = timed("with_scorecard", _ops.with_scorecard)
# The COMMIT: from the end of record_run to the kill point after it; the connection's
# close (a checkpoint): from the end of the last finish_run to the return of run_date.
ends = {}
def _ended(name, fn):
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        finally:
            ends[name] = time.process_time()
    return wrapper
wh.record_run = _ended("record_run", wh.record_run)
wh.finish_run = _ended("finish_run", wh.finish_run)
import flows.nightly as _nightly
_kill = _nightly.kill_point
def kill_point(name):
    if name == "after_commit" and "record_run" in ends:
        _add("commit", ends["record_run"])
    return _kill(name)
_nightly.kill_point = kill_point
ex = CpuExecutor()
summary = run_date(Paths.of(Path(inbox), Path(out), Path(warehouse)), date.fromisoformat(d), ex)
if "finish_run" in ends:
    _add("close (checkpoint)", ends["finish_run"])
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT " + json.dumps({"status": summary.get("status"), "timings": getattr(ex, "timings", {}),
                              "cpu_steps": cpu, "peak_steps": peak,
                              "peak_kib": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def generator_digest() -> str:
    """sha256 of the generator's sources: an inbox made by another generator is not reused."""
    h = hashlib.sha256()
    for src in sorted((ROOT / "synth").glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()


def ensure_inbox(days: int, persons: int, seed: int, steady: bool = True) -> Path:
    inbox = OUT / (f"history-{days}x{persons}-{seed}" + ("-steady" if steady else ""))
    marker = inbox / ".complete"
    digest = generator_digest()
    if marker.exists() and marker.read_text() == digest:
        return inbox
    shutil.rmtree(inbox, ignore_errors=True)
    from synth.generate import STEADY_SHARE, generate
    t0 = time.perf_counter()
    generate(inbox, START, days, persons, seed, steady=STEADY_SHARE if steady else None)
    print(f"generated {days} days x {persons:,} persons in {time.perf_counter() - t0:.0f} s -> {inbox}",
          flush=True)
    marker.write_text(digest)
    return inbox


def input_rows(inbox: Path, d: date) -> int:
    total = 0
    for manifest in (inbox / d.isoformat()).glob("*/manifest.json"):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        total += sum(int(f.get("rows", 0)) for f in m["files"].values())
    return total


def warehouse_mb(warehouse: Path) -> float:
    return sum(p.stat().st_size for p in warehouse.parent.glob(warehouse.name + "*")
               if p.is_file()) / 1e6


def run_day(inbox: Path, out: Path, warehouse: Path, d: date) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(inbox), str(out), str(warehouse),
                           d.isoformat()], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "RECON_ORCHESTRATOR": "plain"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"the run of {d} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    return {"wall_s": wall, "cpu_s": r["cpu_s"], "peak_mib": r["peak_kib"] / 1024, "timings": r["timings"],
            "cpu_steps": r.get("cpu_steps", {}), "peak_steps": r.get("peak_steps", {}),
            "status": r["status"]}


def slowest(timings: dict, n: int = 4) -> str:
    steps = sorted(((v, k) for k, v in timings.items() if not k.endswith("(wall)")), reverse=True)
    return ", ".join(f"{k} {v:.1f}" for v, k in steps[:n])


def print_cpu_steps(early: list[dict], late: list[dict]) -> None:
    """CPU seconds per step, median of days 2-6 against the last 5, largest growth first
    ("rest": the process's CPU outside the steps and the warehouse calls timed beside
    them: imports, start-up, the commit)."""
    def per_step(day: dict) -> dict:
        steps = dict(day.get("cpu_steps", {}))
        steps["rest"] = day["cpu_s"] - sum(steps.values())
        return steps
    e, l = [per_step(x) for x in early], [per_step(x) for x in late]
    names = sorted({k for x in e + l for k in x})
    rows = []
    for k in names:
        a = statistics.median(x.get(k, 0.0) for x in e)
        b = statistics.median(x.get(k, 0.0) for x in l)
        rows.append((b - a, k, a, b))
    print("cpu s per step, median days 2-6 -> last 5 (largest growth first):")
    for diff, k, a, b in sorted(rows, reverse=True):
        print(f"  {k:<22} {a:7.3f} -> {b:7.3f}  ({diff:+.3f})")
    print("peak RSS set by each step (MiB it raised the peak), median days 2-6 -> last 5:")
    for k in sorted({k for x in early + late for k in x.get("peak_steps", {})}):
        a = statistics.median(x.get("peak_steps", {}).get(k, 0.0) for x in early)
        b = statistics.median(x.get("peak_steps", {}).get(k, 0.0) for x in late)
        if a or b:
            print(f"  {k:<22} {a:7.0f} -> {b:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=int(os.environ.get("HISTORY_DAYS", 60)))
    ap.add_argument("--persons", type=int, default=int(os.environ.get("HISTORY_PERSONS", 250_000)))
    ap.add_argument("--seed", type=int, default=20260901)
    ap.add_argument("--quick", action="store_true", help="15 days x 50,000 persons")
    ap.add_argument("--json", type=Path, help="also write the per-day figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the warehouse and reports")
    ap.add_argument("--growing", action="store_true",
                    help="the default synthetic nation, whose daily volume grows ~60 %% over 60 days "
                         "(default: a steady nation, `recon generate --steady`)")
    ap.add_argument("--work", type=Path,
                    help="the run folder (warehouse, reports, days.json), kept; when it holds days "
                         "already, the run resumes after them (split a long run between lock holds)")
    ap.add_argument("--stop-after", type=int, metavar="DAY",
                    help="stop after this day (resume later with the same --work)")
    ap.add_argument("--generate-only", action="store_true",
                    help="only generate the inbox (it takes longer than the runs; not measured)")
    args = ap.parse_args()
    if args.quick:
        args.days, args.persons = 15, 50_000
    if args.days < 11:
        sys.exit("--days must be at least 11 (days 2-6 are compared with the last 5).")
    OUT.mkdir(parents=True, exist_ok=True)
    inbox = ensure_inbox(args.days, args.persons, args.seed, steady=not args.growing)
    if args.generate_only:
        return
    work = args.work or OUT / f"history-run-{os.getpid()}"
    done_file = work / "days.json"
    days = json.loads(done_file.read_text(encoding="utf-8")) if args.work and done_file.exists() else []
    if not days:
        shutil.rmtree(work, ignore_errors=True)
        (work / "reports").mkdir(parents=True)
    warehouse = work / "warehouse.duckdb"

    print(f"\nhistory benchmark: {args.days} days x {args.persons:,} persons "
          f"({'growing' if args.growing else 'steady'} nation), one warehouse "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start)")
    print(f"{'day':>4} {'date':>10} {'rows':>9} {'run s':>7} {'cpu s':>7} {'peak MiB':>9} {'wh MB':>8}  "
          "slowest steps (s)")
    for r in days:
        print(f"{r['day']:>4} {r['date']:>10} {r['rows']:>9,} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} "
              f"{r['peak_mib']:>9,.0f} {r['wh_mb']:>8,.0f}  (earlier)")
    for i in range(len(days), args.days):
        if args.stop_after and i + 1 > args.stop_after:
            print(f"stopped after day {args.stop_after}; resume with --work {work}")
            return
        d = START + timedelta(days=i)
        r = run_day(inbox, work / "reports", warehouse, d)
        r.update(day=i + 1, date=d.isoformat(), rows=input_rows(inbox, d), wh_mb=warehouse_mb(warehouse),
                 load=os.getloadavg()[0])
        days.append(r)
        print(f"{i + 1:>4} {d.isoformat():>10} {r['rows']:>9,} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} {r['peak_mib']:>9,.0f} "
              f"{r['wh_mb']:>8,.0f}  {slowest(r['timings'])}  [load {r['load']:.1f}]", flush=True)
        if args.work:
            done_file.write_text(json.dumps(days, indent=1), encoding="utf-8")

    early, late = days[1:6], days[-5:]
    t_early, t_late = (statistics.median(x["wall_s"] for x in s) for s in (early, late))
    c_early, c_late = (statistics.median(x["cpu_s"] for x in s) for s in (early, late))
    m_early, m_late = (statistics.median(x["peak_mib"] for x in s) for s in (early, late))
    r_early, r_late = (statistics.median(x["rows"] for x in s) for s in (early, late))
    print(f"\ndays 2-6: median {t_early:.1f} s ({c_early:.1f} s cpu), {m_early:,.0f} MiB, {r_early:,.0f} rows;"
          f"  last 5: median {t_late:.1f} s ({c_late:.1f} s cpu), {m_late:,.0f} MiB, {r_late:,.0f} rows")
    print(f"input rows {r_late / r_early - 1:+.0%}"
          + (" (the default nation's activity grows as relationships are established)" if args.growing else "")
          + f"; cpu time per input row {c_late / r_late / (c_early / r_early) - 1:+.0%}")
    print(f"cpu time {c_late / c_early - 1:+.0%}")
    print_cpu_steps(early, late)
    print(f"time {t_late / t_early - 1:+.0%}, peak memory {m_late / m_early - 1:+.0%} "
          f"(target: within +-15 %): "
          f"{'yes' if abs(t_late / t_early - 1) <= 0.15 and abs(m_late / m_early - 1) <= 0.15 else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(days, indent=1), encoding="utf-8")
    if args.keep or args.work:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
