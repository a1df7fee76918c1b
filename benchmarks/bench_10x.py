"""Ten national days' volume in one day (issue 12, target 2).

    .venv/bin/python benchmarks/bench_10x.py                  # or: make bench-10x
    .venv/bin/python benchmarks/bench_10x.py --persons 2500000   # a national day's size, chunked

1. generates one business date of 25,000,000 persons (>= 50M input rows) with the
   streaming generator (`python -m synth.generate --chunk-persons N`: independent chunks
   of N persons appended to the same files, memory bounded by the chunk) in a child
   process, and reads its wall and CPU seconds and peak RSS. The inbox is kept in
   benchmarks/out/ (git-ignored) with those figures and reused while its parameters
   stand; a 10x inbox of other parameters is removed first, so only one is ever kept;
2. reconciles it with the plain orchestration (`flows.nightly.run_date`, every report
   included) in a fresh child process, sampling the child's RSS every second, and reads
   its wall and CPU seconds, peak RSS (ru_maxrss) and the executor's stage timings;
3. prints input rows, both sets of figures, the peak against 6 GiB and the time against
   11x the national day's (`make bench`; --national-seconds, default the quiet-machine
   median quoted in docs/performance.md).

Nothing here is a test: it prints figures. On a shared machine run it under the
benchmark lock (`flock /tmp/bench.lock ...`); `--generate-only` makes the inbox without
reconciling it, so that only the reconcile need hold the lock.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import national_day  # noqa: E402
from national_day import input_rows, print_steps  # noqa: E402  (same stage table as make bench)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DAY = date(2026, 11, 20)
PEAK_TARGET_MIB = 6 * 1024
TIME_TARGET = 11.0
NATIONAL_SECONDS = 36.1
# The 10x reconcile runs with the product's DuckDB memory_limit, as an operator's run
# would: 1GB, and LARGE_DAY_MEMORY_LIMIT (2GB) for a day whose manifests declare more
# than LARGE_DAY_ROWS rows, as this one does (contracts/resources.py); an operator's
# RECON_DUCKDB_MEMORY_LIMIT stands for every day, and --duckdb-memory-limit sets it here.
# Before S05 took the deciding event by an ASOF join (39db193), S05's window over
# transfers x relation_events failed to pin a block after 557 s at 1GB
# (docs/performance.md "Ten national days").
NATIONAL_SOURCE = ("make bench median on a quiet machine, docs/performance.md "
                   "(commit 53f2f1d, 2,500,000 persons, 5,447,416 rows)")


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Wall and CPU seconds, peak RSS (ru_maxrss, and the largest 1-second sample with
    when it happened) and stdout of one child process."""
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    samples: list[tuple[float, float]] = []

    def sample():
        status = Path(f"/proc/{proc.pid}/status")
        while proc.returncode is None:
            try:
                kib = next(int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS"))
                samples.append((time.perf_counter() - t0, kib / 1024))
            except (OSError, StopIteration, ValueError):
                break
            time.sleep(1.0)

    threading.Thread(target=sample, daemon=True).start()
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    err.seek(0)
    stderr = err.read().decode("utf-8", "replace")
    top = max(samples, key=lambda s: s[1]) if samples else (0.0, 0.0)
    return {"rc": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024, "sampled_peak_mib": top[1], "sampled_peak_at_s": top[0],
            "stdout": stdout, "stderr": stderr}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_inbox(persons: int, chunk: int, seed: int, keep_others: bool = False) -> tuple[Path, dict]:
    """The 10x inbox and the figures of its generation (from its marker when reused)."""
    inbox = OUT / f"inbox10x-{persons}-{seed}-c{chunk}"
    marker = inbox / ".complete"
    if marker.exists():
        gen = json.loads(marker.read_text())
        gen["reused"] = True
        return inbox, gen
    for old in [] if keep_others else OUT.glob("inbox10x-*"):  # only one 10x inbox is kept (~4 GB)
        shutil.rmtree(old, ignore_errors=True)
    print(f"generating {persons:,} persons in chunks of {chunk:,} -> {inbox} (load {load()})", flush=True)
    before = load()
    r = run_child([sys.executable, "-m", "synth.generate", "--out", str(inbox), "--start", DAY.isoformat(),
                   "--days", "1", "--persons", str(persons), "--seed", str(seed),
                   "--chunk-persons", str(chunk)])
    if r["rc"] != 0:
        sys.exit(f"the generator failed (exit {r['rc']}): {r['stderr'].strip().splitlines()[-3:]}")
    gen = {"persons": persons, "chunk_persons": chunk, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
           "peak_mib": r["peak_mib"], "load_before": before, "load_after": load(),
           "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "bytes": sum(p.stat().st_size for p in inbox.rglob("*") if p.is_file())}
    marker.write_text(json.dumps(gen))
    gen["reused"] = False
    return inbox, gen


def reconcile(inbox: Path, memory_limit: str | None = None) -> dict:
    """One reconcile of the day in a fresh process (as make bench runs it); `memory_limit`
    sets RECON_DUCKDB_MEMORY_LIMIT for it (None: the environment's, else the product's default)."""
    work = Path(tempfile.mkdtemp(prefix="run10x-", dir=OUT))
    code = national_day.run_code(inbox, work)
    env = dict(os.environ, RECON_ORCHESTRATOR="plain")
    if memory_limit:
        env["RECON_DUCKDB_MEMORY_LIMIT"] = memory_limit
    r = run_child([sys.executable, "-c", code], env)
    r["warehouse_mib"] = sum(p.stat().st_size for p in work.glob("warehouse.duckdb*") if p.is_file()) / 2**20
    shutil.rmtree(work, ignore_errors=True)
    if r["rc"] != 0:
        print(r["stderr"][-4000:], file=sys.stderr)
        print(f"the reconciliation FAILED (exit {r['rc']}) after {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, "
              f"peak RSS {r['peak_mib']:,.0f} MiB (largest sample {r['sampled_peak_mib']:,.0f} MiB "
              f"at {r['sampled_peak_at_s']:.0f} s)")
        sys.exit(1)
    r["steps"] = json.loads(next(x for x in r["stdout"].splitlines() if x.startswith("STEPS "))[6:])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=int(os.environ.get("BENCH10X_PERSONS", 25_000_000)))
    ap.add_argument("--chunk-persons", type=int, default=1_000_000,
                    help="persons per generator chunk (the generator's memory is bounded by it)")
    ap.add_argument("--seed", type=int, default=20261120)
    ap.add_argument("--national-seconds", type=float, default=NATIONAL_SECONDS,
                    help=f"the national day's reconcile seconds (default {NATIONAL_SECONDS}: {NATIONAL_SOURCE})")
    ap.add_argument("--measure-national", action="store_true",
                    help="reconcile make bench's national day (2,500,000 persons, unchunked) first, the same "
                         "way, and take the ratio against that run instead of --national-seconds")
    ap.add_argument("--duckdb-memory-limit", default=os.environ.get("RECON_DUCKDB_MEMORY_LIMIT") or None,
                    help="RECON_DUCKDB_MEMORY_LIMIT of the 10x reconcile, a DuckDB size such as 3GB "
                         "(default: the product's, 2GB for a day this large; the national day keeps "
                         "the environment's)")
    ap.add_argument("--generate-only", action="store_true", help="make (or find) the inbox and stop")
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the 10x inboxes of other parameters (by default they are removed)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    national_source = NATIONAL_SOURCE if args.national_seconds == NATIONAL_SECONDS else "--national-seconds"

    inbox, gen = ensure_inbox(args.persons, args.chunk_persons, args.seed, args.keep_others)
    rows = input_rows(inbox)
    print(f"\nten national days benchmark ({os.cpu_count()} cores)")
    print(f"  inbox: {inbox} ({gen['bytes'] / 2**30:.1f} GiB), {gen['persons']:,} persons, "
          f"{rows:,} input rows")
    print(f"  generation{' (earlier, reused)' if gen['reused'] else ''} at {gen['at']}: "
          f"{gen['wall_s']:.1f} s wall, CPU {gen['cpu_s']:.1f} s, peak RSS {gen['peak_mib']:,.0f} MiB "
          f"(chunks of {gen['chunk_persons']:,} persons); load average {gen['load_before']} -> {gen['load_after']}")
    if args.generate_only:
        return

    if args.measure_national:
        nat_inbox = national_day.ensure_inbox(2_500_000, args.seed)
        nat_before = load()
        n = reconcile(nat_inbox)
        args.national_seconds = n["wall_s"]
        national_source = (f"measured now on {nat_inbox.name}, {input_rows(nat_inbox):,} rows, "
                           f"RECON_DUCKDB_MEMORY_LIMIT={os.environ.get('RECON_DUCKDB_MEMORY_LIMIT', 'default')}: "
                           f"CPU {n['cpu_s']:.1f} s, "
                           f"peak RSS {n['peak_mib']:,.0f} MiB, load average {nat_before} -> {load()}")
        print(f"  national day: {n['wall_s']:.1f} s wall ({national_source})")

    before = load()
    r = reconcile(inbox, args.duckdb_memory_limit)
    after = load()
    ratio = r["wall_s"] / args.national_seconds
    print(f"  reconcile ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"RECON_DUCKDB_MEMORY_LIMIT={args.duckdb_memory_limit or 'unset, the product default'}): "
          f"{r['wall_s']:.1f} s wall, CPU {r['cpu_s']:.1f} s, {rows / r['wall_s']:,.0f} rows/s; "
          f"load average {before} -> {after}")
    print(f"  peak RSS {r['peak_mib']:,.0f} MiB (largest 1-s sample {r['sampled_peak_mib']:,.0f} MiB at "
          f"{r['sampled_peak_at_s']:.0f} s) against {PEAK_TARGET_MIB:,} MiB: "
          f"{'yes' if r['peak_mib'] <= PEAK_TARGET_MIB else 'NO'}; warehouse {r['warehouse_mib']:,.0f} MiB")
    print(f"  {ratio:.1f}x the national day's {args.national_seconds:.1f} s "
          f"({national_source}) "
          f"against <= {TIME_TARGET:.0f}x: {'yes' if ratio <= TIME_TARGET else 'NO'}")
    print_steps({"rows": rows, "steps": r["steps"], "wall_s": r["wall_s"]})
    print(f"targets: >= 50,000,000 rows: {'yes' if rows >= 50_000_000 else 'NO'}; "
          f"peak <= 6 GiB: {'yes' if r['peak_mib'] <= PEAK_TARGET_MIB else 'NO'}; "
          f"<= 11x the national day: {'yes' if ratio <= TIME_TARGET else 'NO'}")


if __name__ == "__main__":
    main()
