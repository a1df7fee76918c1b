"""National-day benchmark (issue 3, item 7).

    .venv/bin/python benchmarks/national_day.py            # or: make bench

1. generates a national day with `synth.generate` (all 31 provinces; GB18030,
   UTF-8 and Parquet deliveries) at full scale and at one tenth of it;
2. measures the floor: the time DuckDB needs merely to scan every input file
   once (materialising all columns as text). DuckDB cannot decode GB18030
   offline, so those files are transcoded to UTF-8 *before* the clock starts:
   the floor is the stricter for it;
3. reconciles the day with the plain orchestration (`flows.nightly.run_date_plain`:
   intake, rules, ledger, clearing, every report) in a fresh subprocess, and
   reads its wall time and peak memory (ru_maxrss of the child);
4. prints rows, seconds, rows per second, peak memory, the ratio to the floor,
   and the growth from one tenth to full scale (target: at most 11x for 10x rows).

Nothing here is a test: it prints figures. Generated data goes to benchmarks/out/
(git-ignored) and is reused when its parameters have not changed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def reconcile(inbox: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of reconciling the day in a fresh process."""
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT))
    code = (
        "import sys; from datetime import date; from pathlib import Path;"
        "from flows.nightly import run_date_plain;"
        f"run_date_plain(Path({str(inbox)!r}), Path({str(work / 'reports')!r}), "
        f"Path({str(work / 'warehouse.duckdb')!r}), date.fromisoformat({DAY.isoformat()!r}))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"the reconciliation failed: {proc.stderr.strip().splitlines()[-1:]}")
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, max(peak_kib, before) / 1024


def measure(persons: int, seed: int) -> dict:
    inbox = ensure_inbox(persons, seed)
    rows = input_rows(inbox)
    floor = scan_floor(inbox)
    wall, peak = reconcile(inbox)
    return {"persons": persons, "rows": rows, "floor_s": floor, "wall_s": wall, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=int(os.environ.get("BENCH_PERSONS", 2_500_000)),
                    help="persons of the full-scale day (default sized for >= 5M input rows)")
    ap.add_argument("--seed", type=int, default=20261120)
    ap.add_argument("--no-scale-check", action="store_true", help="skip the 1/10 run")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RECON_ORCHESTRATOR", "plain")

    runs = []
    if not args.no_scale_check:
        runs.append(measure(args.persons // 10, args.seed))
    runs.append(measure(args.persons, args.seed))

    print(f"\nnational day benchmark ({os.cpu_count()} cores)")
    print(f"{'persons':>10} {'input rows':>12} {'floor s':>8} {'run s':>8} {'x floor':>8} "
          f"{'rows/s':>10} {'peak MiB':>9}")
    for r in runs:
        print(f"{r['persons']:>10,} {r['rows']:>12,} {r['floor_s']:>8.1f} {r['wall_s']:>8.1f} "
              f"{r['wall_s'] / r['floor_s']:>8.2f} {r['rows'] / r['wall_s']:>10,.0f} "
              f"{r['peak_mib']:>9,.0f}")
    if len(runs) == 2:
        small, full = runs
        print(f"growth: {full['rows'] / small['rows']:.1f}x rows took "
              f"{full['wall_s'] / small['wall_s']:.1f}x time (target <= 11x for 10x rows)")
    full = runs[-1]
    print(f"targets: >= 5,000,000 rows: {'yes' if full['rows'] >= 5_000_000 else 'NO'}; "
          f"<= 4x floor: {'yes' if full['wall_s'] <= 4 * full['floor_s'] else 'NO'}; "
          f"< 4 GiB: {'yes' if full['peak_mib'] < 4096 else 'NO'}")


if __name__ == "__main__":
    main()
