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
   reads its wall time and peak memory (ru_maxrss of the child); steps 2 and 3
   are alternated three times (--repeat) and the medians reported, since timings on
   a shared 2-core machine wander by 10-15 % from run to run;
4. prints rows, seconds, rows per second, peak memory, the ratio to the floor,
   and the growth from one tenth to full scale (target: at most 11x for 10x rows).

Nothing here is a test: it prints figures. Generated data goes to benchmarks/out/
(git-ignored) and is reused when its parameters have not changed.
"""
from __future__ import annotations

import argparse
import json
import os
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


def reconcile(inbox: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of reconciling the day in a fresh process."""
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT))
    code = (
        "import sys; from datetime import date; from pathlib import Path;"
        "from flows.nightly import run_date_plain;"
        f"run_date_plain(Path({str(inbox)!r}), Path({str(work / 'reports')!r}), "
        f"Path({str(work / 'warehouse.duckdb')!r}), date.fromisoformat({DAY.isoformat()!r}));"
        "import resource; print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"the reconciliation failed: {proc.stderr.strip().splitlines()[-1:]}")
    peak_kib = int(next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_KIB")).split()[1])
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, peak_kib / 1024


def measure(persons: int, seed: int, repeat: int) -> dict:
    """Floor and run, alternated `repeat` times on the same files: this machine's
    timings wander by 10-15 % from one run to the next, so the medians are reported
    (with the range), and the peak memory is the largest of the runs."""
    inbox = ensure_inbox(persons, seed)
    rows = input_rows(inbox)
    floors, walls, peaks = [], [], []
    for _ in range(repeat):
        floors.append(scan_floor(inbox))
        wall, peak = reconcile(inbox)
        walls.append(wall)
        peaks.append(peak)
    return {"persons": persons, "rows": rows, "floor_s": statistics.median(floors),
            "wall_s": statistics.median(walls), "peak_mib": max(peaks),
            "floors": floors, "walls": walls}


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
              f"run {', '.join(f'{x:.1f}' for x in r['walls'])} s")
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
