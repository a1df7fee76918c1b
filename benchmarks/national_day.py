"""National-day benchmark (issue 3, item 7; issue 12, target 1).

    .venv/bin/python benchmarks/national_day.py            # or: make bench

1. generates a national day with `synth.generate` (all 31 provinces; GB18030,
   UTF-8 and Parquet deliveries) at full scale and at one tenth of it;
2. measures the floor: the time DuckDB needs merely to scan every input file
   once (materialising all columns as text). DuckDB cannot decode GB18030
   offline, so those files are transcoded to UTF-8 *before* the clock starts:
   the floor is the stricter for it;
3. reconciles the day with the plain orchestration (`flows.nightly.run_date_plain`:
   intake, rules, ledger, clearing, every report) in a fresh subprocess, and
   reads its wall time and peak memory (VmHWM of the child); steps 2 and 3
   are alternated three times (--repeat) and the medians reported, since timings on
   a shared 2-core machine wander by 10-15 % from run to run;
4. prints rows, seconds, rows per second, peak memory, the ratio to the floor,
   the growth from one tenth to full scale (target: at most 11x for 10x rows), and
   the seconds of each stage of the full-scale run (the executor's step timings),
   so that the next bottleneck is visible. Targets (issue 12): <= 2.5x the floor,
   peak RSS <= 1.5 GiB.

Nothing here is a test: it prints figures. Generated data goes to benchmarks/out/
(git-ignored) and is reused when its parameters have not changed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DAY = date(2026, 11, 20)


def ensure_inbox(persons: int, seed: int) -> Path:
    inbox = OUT / f"inbox-{persons}-{seed}"
    marker = inbox / ".complete"
    if marker.exists():
        return inbox
    shutil.rmtree(inbox, ignore_errors=True)
    from synth.generate import generate
    t0 = time.perf_counter()
    generate(inbox, DAY, 1, persons, seed)
    print(f"  generated {persons:,} persons in {time.perf_counter() - t0:.1f} s -> {inbox}")
    marker.write_text("ok")
    return inbox


def input_files(inbox: Path) -> list[tuple[Path, str]]:
    """Every data file of the day with its manifest encoding."""
    files = []
    for manifest in sorted((inbox / DAY.isoformat()).glob("*/manifest.json")):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        for name in m["files"]:
            p = manifest.parent / name
            if p.exists():
                files.append((p, m.get("encoding", "utf-8")))
    return files


def input_rows(inbox: Path) -> int:
    total = 0
    for manifest in (inbox / DAY.isoformat()).glob("*/manifest.json"):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        total += sum(int(f.get("rows", 0)) for f in m["files"].values())
    return total


def scan_floor(inbox: Path) -> float:
    """Seconds for DuckDB to read every input file once, all columns as text."""
    tmp = Path(tempfile.mkdtemp(prefix="floor-", dir=OUT))
    plan = []
    for i, (path, encoding) in enumerate(input_files(inbox)):
        if path.suffix == ".csv" and encoding.lower() != "utf-8":
            utf8 = tmp / f"{i}.csv"  # transcoded outside the timed region
            utf8.write_text(path.read_bytes().decode(encoding), encoding="utf-8")
            path = utf8
        plan.append(path)
    con = duckdb.connect()
    t0 = time.perf_counter()
    for i, path in enumerate(plan):
        if path.suffix == ".parquet":
            src = f"read_parquet('{path}')"
        else:
            src = f"read_csv('{path}', all_varchar = true, header = true)"
        con.execute(f"CREATE OR REPLACE TEMP TABLE scan_{i % 4} AS SELECT * FROM {src}")
    elapsed = time.perf_counter() - t0
    con.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return elapsed


def run_code(inbox: Path, work: Path) -> str:
    """The child's program: reconcile DAY of `inbox` into `work` on the plain path, then
    print its peak RSS (PEAK_KIB) and the executor's step timings (STEPS, JSON)."""
    return (
        "import json, sys; from datetime import date; from pathlib import Path;"
        "from flows.nightly import Paths, PlainExecutor, run_date;"
        "ex = PlainExecutor();"
        f"run_date(Paths.of(Path({str(inbox)!r}), Path({str(work / 'reports')!r}), "
        f"Path({str(work / 'warehouse.duckdb')!r})), date.fromisoformat({DAY.isoformat()!r}), ex);"
        # VmHWM: this process's own high-water mark since exec. ru_maxrss would carry the
        # parent's RSS over the fork (Linux keeps it across exec): a benchmark that had just
        # generated the inbox in-process reported its 2.3 GiB as the run's peak.
        "import resource, os;"
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')] "
        "if os.path.exists('/proc/self/status') else [];"
        "print('PEAK_KIB', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss);"
        "print('STEPS', json.dumps(ex.timings))"
    )


def reconcile(inbox: Path) -> tuple[float, float, dict, float]:
    """(wall seconds, peak RSS in MiB, step seconds, CPU seconds) of reconciling the day
    in a fresh process. CPU seconds (all threads) tell a busy machine from a slow run."""
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT))
    code = run_code(inbox, work)
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"the reconciliation failed: {proc.stderr.strip().splitlines()[-1:]}")
    peak_kib = int(next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_KIB")).split()[1])
    steps = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("STEPS "))[6:])
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, peak_kib / 1024, steps, cpu


def measure(persons: int, seed: int, repeat: int) -> dict:
    """Floor and run, alternated `repeat` times on the same files: this machine's
    timings wander by 10-15 % from one run to the next, so the medians are reported
    (with the range), and the peak memory is the largest of the runs."""
    inbox = ensure_inbox(persons, seed)
    rows = input_rows(inbox)
    floors, walls, peaks, steps, cpus, loads = [], [], [], [], [], []
    for _ in range(repeat):
        loads.append(os.getloadavg()[0])
        floors.append(scan_floor(inbox))
        wall, peak, step, cpu = reconcile(inbox)
        loads.append(os.getloadavg()[0])
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(peak)
        steps.append(step)
    names = list(steps[0])
    return {"persons": persons, "rows": rows, "floor_s": statistics.median(floors),
            "wall_s": statistics.median(walls), "peak_mib": max(peaks),
            "floors": floors, "walls": walls, "cpus": cpus, "loads": loads,
            "steps": {n: statistics.median(s.get(n, 0.0) for s in steps) for n in names}}


# The stages of a run as the executor names its steps (flows/nightly.py).
# The intake streams: each province is inserted while the next ones load (threads), so
# "stage" is the intake's wall clock; the insert alone is stage minus the time it
# waited for a load ("warehouse insert" below).
STAGES = (
    ("inbox listing and manifests", ("list_date_folders", "read_inbox")),
    ("intake: loads and inserts overlapped (wall)", ("stage",)),
    ("  loads (per province, summed over the threads)", ("load_province",)),
    ("    read, sha256, manifest", ("load_province: read, sha256, manifest",)),
    ("    decode + parse", ("load_province: decode + parse",)),
    ("    validate (F04, F05)", ("load_province: validate (F04, F05)",)),
    ("    contract of the loaded rows (pandera)", ("load_province: contract of the loaded rows (pandera)",)),
    ("  waiting for a province to load", ("load_province (waited)",)),
    ("  warehouse insert", ("#insert",)),
    ("amounts fit DECIMAL(18,2)", ("amounts_fit",)),
    ("known persons", ("known_persons",)),
    ("rules_files", ("rules_files",)), ("rules_persons", ("rules_persons",)),
    ("rules_relationships", ("rules_relationships",)), ("rules_transfers", ("rules_transfers",)),
    ("rules_matching", ("rules_matching",)), ("rules_settlements", ("rules_settlements",)),
    ("ledger", ("ledger",)), ("balances", ("balances",)), ("clearing", ("clearing",)),
    ("findings", ("finalize",)),
    ("report frames + summary", ("report_frames", "summary_parts")),
    ("reports written (csv, json, html, xlsx)", ("stage_reports",)),
    ("publish", ("publish",)),
)


def print_steps(r: dict) -> None:
    print(f"\nstages of the {r['rows']:,}-row day (median seconds of the runs):")
    steps = dict(r["steps"])
    steps["#insert"] = steps.get("stage", 0.0) - steps.get("load_province (waited)", 0.0)
    known = {n for _label, names in STAGES for n in names} | {"load_province (wall)"}
    for label, names in STAGES:
        print(f"  {label:<50} {sum(steps.get(n, 0.0) for n in names):>7.1f}")
    for n in sorted(set(steps) - known):
        print(f"  {n:<50} {steps[n]:>7.1f}")
    inside_stage = ("load_province", "load_province (wall)", "load_province (waited)", "#insert",
                    *(n for n in steps if n.startswith("load_province: ")))
    counted = sum(v for n, v in steps.items() if n not in inside_stage)
    print(f"  {'the rest (start-up, imports, locks, commit)':<50} {r['wall_s'] - counted:>7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=int(os.environ.get("BENCH_PERSONS", 2_500_000)),
                    help="persons of the full-scale day (default sized for >= 5M input rows)")
    ap.add_argument("--seed", type=int, default=20261120)
    ap.add_argument("--no-scale-check", action="store_true", help="skip the 1/10 run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per scale; medians are reported")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RECON_ORCHESTRATOR", "plain")

    runs = []
    if not args.no_scale_check:
        runs.append(measure(args.persons // 10, args.seed, args.repeat))
    runs.append(measure(args.persons, args.seed, args.repeat))

    print(f"\nnational day benchmark ({os.cpu_count()} cores; median of {args.repeat} runs)")
    print(f"{'persons':>10} {'input rows':>12} {'floor s':>8} {'run s':>8} {'x floor':>8} "
          f"{'rows/s':>10} {'peak MiB':>9}")
    for r in runs:
        print(f"{r['persons']:>10,} {r['rows']:>12,} {r['floor_s']:>8.1f} {r['wall_s']:>8.1f} "
              f"{r['wall_s'] / r['floor_s']:>8.2f} {r['rows'] / r['wall_s']:>10,.0f} "
              f"{r['peak_mib']:>9,.0f}")
        print(f"{'':>10} runs: floor {', '.join(f'{x:.1f}' for x in r['floors'])} s; "
              f"run {', '.join(f'{x:.1f}' for x in r['walls'])} s "
              f"(CPU {', '.join(f'{x:.1f}' for x in r['cpus'])} s); "
              f"load average {min(r['loads']):.1f}-{max(r['loads']):.1f}")
    if len(runs) == 2:
        small, full = runs
        print(f"growth: {full['rows'] / small['rows']:.1f}x rows took "
              f"{full['wall_s'] / small['wall_s']:.1f}x time (target <= 11x for 10x rows)")
    full = runs[-1]
    print_steps(full)
    print(f"targets: >= 5,000,000 rows: {'yes' if full['rows'] >= 5_000_000 else 'NO'}; "
          f"<= 2.5x floor: {'yes' if full['wall_s'] <= 2.5 * full['floor_s'] else 'NO'}; "
          f"peak <= 1.5 GiB: {'yes' if full['peak_mib'] <= 1536 else 'NO'}")
    print_bound(full)


def print_bound(r: dict) -> None:
    """What the run costs besides its intake: the seconds of every step after the intake
    (rules, ledger, clearing, reports, publish) and the rest (start-up, commit), as a
    multiple of the floor. Were reading, validating and inserting free, the run would
    still take this long: the ratio says what the intake alone cannot win back."""
    steps = r["steps"]
    intake = steps.get("stage", 0.0) + sum(steps.get(n, 0.0) for n in ("list_date_folders", "read_inbox"))
    after = r["wall_s"] - intake
    print(f"without its intake the run still takes {after:.1f} s = {after / r['floor_s']:.2f}x the floor "
          f"(the intake took {intake:.1f} s = {intake / r['floor_s']:.2f}x)")


if __name__ == "__main__":
    main()
