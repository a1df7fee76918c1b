"""The DuckDB warehouse seen from the orchestration: lock, open, order of dates,
run records, STALE marking, and recovery of a publish that was interrupted.

Run guarantees (outputs.md) and how they are kept:

- **One run at a time.** `run_lock(warehouse)` takes an exclusive, non-blocking
  `fcntl.flock` on `<warehouse>.lock` *before* DuckDB is opened. A second run
  stops at once with `RunLockedError` (exit 2). The kernel drops the lock when
  the process dies, SIGKILL included, so a killed run never blocks the next.
- **Atomic warehouse writes.** Every write of a date D (its loaded rows, the
  findings, the ledger, the clearing, the `runs` row and the STALE marks of
  later dates) happens inside one DuckDB transaction, committed last.
- **Atomic reports.** Reports are written into `<out>/.staging/<run_id>/<D>/`,
  then a journal `<out>/.staging/<run_id>.json` is written (atomically) naming
  the run, *then* the warehouse commits, *then* the staged folder is swapped
  into `<out>/<D>`. `recover(con, out)` runs under the lock before every run:
  a journal whose run_id is the committed `runs.run_id` of its date is rolled
  forward (the swap is completed); any other journal and every stray staging
  folder is discarded (the warehouse never committed it, and `<out>/<D>` was
  never touched before the commit).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterator

import duckdb

from contracts.errors import InputError, RunLockedError
from transforms.context import DATE_PARTITIONED, create_warehouse

STAGING = ".staging"
COMPLETE, PARTIAL, STALE = "COMPLETE", "PARTIAL", "STALE"


# --------------------------------------------------------------------------- lock / open

@contextlib.contextmanager
def run_lock(warehouse: Path) -> Iterator[None]:
    """Hold the exclusive run lock of `warehouse` (file `<warehouse>.lock`)."""
    warehouse = Path(warehouse)
    try:
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{warehouse}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise InputError(f"Cannot create the run lock next to the warehouse {warehouse}: "
                         f"{e.strerror or e}.") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"Another recon run is using the warehouse {warehouse}; "
                                 "wait for it to finish and try again.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def open_warehouse(warehouse: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the DuckDB warehouse with every table of the contract."""
    warehouse = Path(warehouse)
    if read_only and not warehouse.exists():
        con = duckdb.connect()  # nothing processed yet: an empty in-memory warehouse
        create_warehouse(con)
        return con
    try:
        con = duckdb.connect(str(warehouse), read_only=read_only)
    except duckdb.Error as e:
        first = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip("!. ")
        raise InputError(f"The warehouse {warehouse} cannot be opened ({first}).") from None
    con.execute("SET enable_progress_bar = false")  # a nightly log is read later, not watched
    if not read_only:
        create_warehouse(con)
    return con


# --------------------------------------------------------------------------- run records

def runs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every processed date, oldest first: business_date, run_id, status, times."""
    rows = con.execute("SELECT business_date, run_id, status, started_at, finished_at "
                       "FROM runs ORDER BY business_date").fetchall()
    return [dict(zip(("business_date", "run_id", "status", "started_at", "finished_at"), r))
            for r in rows]


def run_of(con: duckdb.DuckDBPyConnection, d: date) -> dict | None:
    for r in runs(con):
        if r["business_date"] == d:
            return r
    return None


def check_order(con: duckdb.DuckDBPyConnection, d: date, folders: list[date]) -> bool:
    """outputs.md "Order": may D run now? Returns genesis (True when the ledger opens
    from balances.csv). Raises InputError naming the date that must come first."""
    done = {r["business_date"]: r["status"] for r in runs(con)}
    earlier = [x for x in done if x < d]
    prev = d - timedelta(days=1)
    if not earlier:
        if folders and d == min(folders):
            return True
        first = min(folders).isoformat() if folders else None
        hint = (f" (the first date of the inbox is {first})" if first and first != d.isoformat()
                else "")
        raise InputError(f"{prev.isoformat()} has not been processed yet, so {d.isoformat()} "
                         f"cannot be reconciled{hint}.")
    if prev not in done:
        raise InputError(f"{prev.isoformat()} has not been processed yet, so {d.isoformat()} "
                         "cannot be reconciled; run that date first.")
    if done[prev] == STALE:
        # outputs.md only asks that D-1 was processed, and a STALE date was; D then
        # opens from D-1's closing state as it stands, so say how to bring it up to date.
        first_stale = min(x for x, s in done.items() if s == STALE)
        print(f"recon: warning: {prev.isoformat()} is STALE because an earlier date was re-run; "
              f"{d.isoformat()} opens from its current closing state. `recon backfill --start "
              f"{first_stale.isoformat()} --end {d.isoformat()}` brings the range up to date.",
              file=sys.stderr)
    return False


def previous_findings(con: duckdb.DuckDBPyConnection, d: date) -> tuple[str | None, set[str]]:
    """(run_id, exception ids) of the run of D now in the warehouse (None, set()) if none."""
    r = run_of(con, d)
    if r is None:
        return None, set()
    ids = {row[0] for row in con.execute(
        "SELECT exception_id FROM findings WHERE business_date = ?", [d]).fetchall()}
    return r["run_id"], ids


def delete_date(con: duckdb.DuckDBPyConnection, d: date) -> None:
    """Remove every row of D from the date-partitioned tables (inside the run's transaction)."""
    for t in DATE_PARTITIONED:
        con.execute(f"DELETE FROM {t} WHERE business_date = ?", [d])


def record_run(con: duckdb.DuckDBPyConnection, d: date, run_id: str, status: str,
               started: datetime, finished: datetime, input_digest: str, summary: dict) -> list[date]:
    """Write the runs row of D and mark every later processed date STALE.
    Returns the dates newly marked STALE."""
    con.execute("DELETE FROM runs WHERE business_date = ?", [d])
    con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [d, run_id, status, started.replace(tzinfo=None), finished.replace(tzinfo=None),
                 input_digest, json.dumps(summary, ensure_ascii=False, sort_keys=True)])
    stale = [r[0] for r in con.execute(
        "SELECT business_date FROM runs WHERE business_date > ? AND status <> ? "
        "ORDER BY business_date", [d, STALE]).fetchall()]
    con.execute("UPDATE runs SET status = ? WHERE business_date > ?", [STALE, d])
    return stale


def stale_ranges(con: duckdb.DuckDBPyConnection) -> tuple[date, date] | None:
    """(first STALE date, last processed date): the backfill that brings them up to date."""
    rs = runs(con)
    stale = [r["business_date"] for r in rs if r["status"] == STALE]
    if not stale:
        return None
    return min(stale), max(r["business_date"] for r in rs)


# --------------------------------------------------------------------------- journal / recovery

def staging_root(out: Path) -> Path:
    return Path(out) / STAGING


def journal_path(out: Path, run_id: str) -> Path:
    return staging_root(out) / f"{run_id}.json"


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to a temp file, fsync, rename over `path`, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    data = (json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode("utf-8")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_journal(out: Path, run_id: str, d: date) -> Path:
    """Record, before the warehouse commit, which staged folder belongs to which run."""
    p = journal_path(out, run_id)
    write_json_atomic(p, {"run_id": run_id, "business_date": d.isoformat(),
                          "staged": f"{run_id}/{d.isoformat()}"})
    return p


def swap_into_place(out: Path, run_id: str, d: date, kill_at=None) -> None:
    """Move `<out>/.staging/<run_id>/<D>` to `<out>/<D>`; the old folder goes aside first.

    Safe to call again after an interruption at any point (used by recovery)."""
    out = Path(out)
    work = staging_root(out) / run_id
    staged, old, target = work / d.isoformat(), work / "old", out / d.isoformat()
    if staged.exists():
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            os.rename(target, old)
            if kill_at:
                kill_at("mid_publish")
        os.rename(staged, target)
        fsync_dir(out)


def finish_run(out: Path, run_id: str) -> None:
    """Drop the run's staging folder and journal (journal last)."""
    work = staging_root(out) / run_id
    if work.exists():
        shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        journal_path(out, run_id).unlink()
    with contextlib.suppress(OSError):
        staging_root(out).rmdir()  # only when empty


def recover(con: duckdb.DuckDBPyConnection, out: Path) -> list[str]:
    """Bring `<out>` in line with the committed warehouse after an interrupted run.

    Must be called under the run lock. Returns a line per action taken."""
    root = staging_root(out)
    actions: list[str] = []
    if not root.exists():
        sync_stale_summaries(con, out)
        return actions
    committed = {r["business_date"].isoformat(): r["run_id"] for r in runs(con)}
    for j in sorted(root.glob("*.json")):
        try:
            meta = json.loads(j.read_text(encoding="utf-8"))
            run_id, d = meta["run_id"], meta["business_date"]
        except (OSError, ValueError, KeyError):
            j.unlink(missing_ok=True)
            continue
        if committed.get(d) == run_id:
            swap_into_place(out, run_id, date.fromisoformat(d))
            sync_stale_summaries(con, out)
            finish_run(out, run_id)
            actions.append(f"completed the publish of {d} (run {run_id})")
        else:
            finish_run(out, run_id)
            actions.append(f"discarded the uncommitted run {run_id} of {d}")
    for leftover in (root.iterdir() if root.exists() else ()):  # no journal: never committed
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()
    sync_stale_summaries(con, out)
    return actions


def sync_stale_summaries(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """Make the summary.json of every STALE date say so (atomically, idempotent)."""
    for r in runs(con):
        if r["status"] != STALE:
            continue
        p = Path(out) / r["business_date"].isoformat() / "summary.json"
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if s.get("status") == STALE:
            continue
        s["status_before_stale"] = s.get("status")
        s["status"] = STALE
        write_json_atomic(p, s)


def table_digest(con: duckdb.DuckDBPyConnection, tables=DATE_PARTITIONED) -> dict[str, str]:
    """Content hash of each table, independent of row order (tests, operations)."""
    import hashlib
    out = {}
    for t in tables:
        rows = sorted(repr(r) for r in con.execute(f"SELECT * FROM {t}").fetchall())
        out[t] = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
    return out
