"""The DuckDB warehouse seen from the orchestration: locks, open, order of dates,
run records, STALE marking, the status a reader sees, and recovery of a publish
that was interrupted.

Run guarantees (outputs.md) and how they are kept (docs/run-folders.md):

- **One run at a time.** `run_lock(warehouse)` takes an exclusive, non-blocking
  `fcntl.flock` on `<warehouse>.lock` *before* DuckDB is opened. A second run
  stops with `RunLockedError` (exit 2). The kernel drops the lock when the
  process dies, SIGKILL included, so a killed run never blocks the next.
- **One warehouse per `<out>`.** `out_lock(out, ...)` flocks
  `<out>/.recon-warehouse`, the file that binds `<out>` to the identity of one
  warehouse (a UUID kept inside it, so copies and moves keep it): a run of any
  other warehouse into that `<out>` stops with one sentence (exit 2), and two
  runs never stage into one `<out>` at once.
- **Atomic warehouse writes.** Every write of a date D happens inside one
  DuckDB transaction, committed last.
- **Atomic reports.** Reports are written into `<out>/.staging/<run_id>/<D>/`,
  then a journal `<out>/.staging/<run_id>.json` is written (atomically), *then*
  the warehouse commits, *then* the staged folder is swapped into `<out>/<D>`.
  `recover(con, out)` runs under both locks before every run: a journal whose
  run_id is the committed `runs.run_id` of its date is rolled forward; any
  other journal and every stray staging entry is discarded.
- **Nothing under `<out>` is trusted.** Journal names and contents must be run
  ids of the form `new_run_id` makes (`RUN_ID`); a path is only removed or
  replaced after `lstat` shows it is a real folder or file directly inside
  `<out>/.staging` (or `<out>/<D>`); a symbolic link is only ever unlinked,
  never followed.
- **`recon status` is read-only.** It reads `<warehouse>.status.json`, which
  every run writes atomically after recovery and after its publish, and probes
  the run lock with a momentary shared lock (a run waits `LOCK_GRACE_S` for
  such a probe) - it never opens DuckDB while a run may hold it, never takes
  the run lock, and creates no file.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import duckdb

from contracts.errors import InputError, RunLockedError
from contracts.privacy import scrub_json
from transforms.context import ADDED_LATER, DATE_PARTITIONED, create_warehouse
from contracts.resources import release_cached_blocks  # noqa: F401 - run_date calls it between steps

STAGING = ".staging"
BINDING = ".recon-warehouse"
STATUS_SUFFIX = ".status.json"
STATUS_FILE_MAX = 256 * 1024 * 1024  # bytes: decades of dates, never a planted flood
JOURNAL_MAX = 65536  # bytes: a journal names one run and its date
COMPLETE, PARTIAL, STALE = "COMPLETE", "PARTIAL", "STALE"
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
# The run ids flows.nightly.new_run_id makes: <D>-<YYYYMMDDTHHMMSS>-<8 hex>.
RUN_ID = re.compile(r"(\d{4}-\d{2}-\d{2})-\d{8}T\d{6}-[0-9a-f]{8}")
# How long a run waits for a lock held by a status probe (which holds it for microseconds)
# before deciding that another run holds it.
LOCK_GRACE_S = 1.0
# Faults of the machine, not of the data: retrying cannot help, the operator must act.
ENVIRONMENT_FAULTS = {errno.ENOSPC: "free space there", errno.EDQUOT: "raise the quota there",
                      errno.EFBIG: "free space there", errno.EACCES: "give recon access to it",
                      errno.EPERM: "give recon access to it",
                      errno.EROFS: "mount it writable or choose another folder"}
# OSErrors that say something about the path, not about the moment: never retried either.
_DETERMINISTIC = {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}


# --------------------------------------------------------------------------- environment faults

def environment_fault(e: BaseException) -> int | None:
    """The errno of a disk-full / permission / read-only fault behind `e`, else None.
    Polars and DuckDB report such faults as their own errors, with the OS text."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno if e.errno in ENVIRONMENT_FAULTS else None
    if type(e).__module__.split(".")[0] not in ("polars", "duckdb", "_duckdb"):
        return None  # another error that merely quotes such a text is not a fault
    text = str(e)
    for n in ENVIRONMENT_FAULTS:
        if f"(os error {n})" in text or os.strerror(n) in text:
            return n
    return None


def transient_oserror(e: BaseException) -> bool:
    """May retrying help? Only for an OSError that is neither an environment fault
    nor a fact about the path."""
    return (isinstance(e, OSError) and environment_fault(e) is None
            and e.errno not in _DETERMINISTIC)


def fault_sentence(e: BaseException, path: str | os.PathLike | None = None) -> str:
    """One sentence naming the path and the cause of an environment fault."""
    n = environment_fault(e)
    path = getattr(e, "filename", None) or path
    where = f" at {path}" if path else ""
    return (f"{os.strerror(n)} ({errno.errorcode.get(n, n)}){where}; "
            f"{ENVIRONMENT_FAULTS[n]} and run again.")


def as_fault(e: BaseException, path: Path) -> OSError:
    """An environment fault `e` met while writing `path`, as an OSError naming the path."""
    n = environment_fault(e)
    return OSError(n, os.strerror(n), str(path))


# --------------------------------------------------------------------------- lock / open

def _flock_with_grace(fd: int, message: str) -> None:
    deadline = time.monotonic() + LOCK_GRACE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RunLockedError(message) from None
            time.sleep(0.02)


@contextlib.contextmanager
def run_lock(warehouse: Path, label: str = "run") -> Iterator[None]:
    """Hold the exclusive run lock of `warehouse` (file `<warehouse>.lock`); `label`
    (e.g. "run of 2026-11-21") is what `recon status` shows meanwhile."""
    warehouse = Path(warehouse)
    try:
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{warehouse}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
    except OSError as e:
        if environment_fault(e) is not None:
            raise
        raise InputError(f"Cannot create the run lock next to the warehouse {warehouse}: "
                         f"{e.strerror or e}.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):   # a FIFO or a device planted in its place
        os.close(fd)
        raise InputError(f"The run lock {warehouse}.lock is not a regular file; remove it.")
    try:
        _flock_with_grace(fd, f"Another recon run is using the warehouse {warehouse}; "
                              "wait for it to finish and try again.")
        os.ftruncate(fd, 0)
        since = datetime.now(SHANGHAI)  # the zone of every time recon shows
        os.pwrite(fd, f"{label} (pid {os.getpid()}, since {since:%Y-%m-%d %H:%M:%S} Asia/Shanghai)\n"
                  .encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def run_in_progress(warehouse: Path) -> str | None:
    """What holds the run lock of `warehouse` now ("run of D (pid …)"), None when nothing.
    Probes with a momentary shared lock; never creates the lock file."""
    try:
        fd = os.open(f"{warehouse}.lock", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            first = "".join(c for c in (text.splitlines() or [""])[0] if c.isprintable())
            return first or "run"  # the file is as untrusted as the folder: no escapes shown
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def open_warehouse(warehouse: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the DuckDB warehouse with every table of the contract."""
    warehouse = Path(warehouse)
    if read_only and not warehouse.exists():
        con = duckdb.connect()  # nothing processed yet: an empty in-memory warehouse
        create_warehouse(con)
        return con
    wal = warehouse.with_name(warehouse.name + ".wal")
    st = _lstat(wal)
    if st is not None and not stat.S_ISREG(st.st_mode):   # DuckDB would write through a link
        raise InputError(f"The warehouse's write-ahead log {wal} is not a regular file; "
                         f"remove it (recon never makes it a link or a folder).")
    try:
        con = duckdb.connect(str(warehouse), read_only=read_only)
    except duckdb.Error as e:
        if environment_fault(e) is not None:
            raise as_fault(e, warehouse) from None
        first = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip("!. ")
        raise InputError(f"The warehouse {warehouse} cannot be opened ({first}).") from None
    con.execute("SET enable_progress_bar = false")  # a nightly log is read later, not watched
    try:
        _set_resources(con, warehouse)
    except InputError:
        con.close()
        raise
    try:
        _check_is_a_warehouse(con, warehouse)
    except InputError:
        con.close()
        raise
    if not read_only:
        create_warehouse(con)
        if not con.execute("SELECT count(*) FROM warehouse_identity").fetchone()[0]:
            con.execute("INSERT INTO warehouse_identity VALUES (?, current_timestamp)",
                        [uuid.uuid4().hex])
    return con


@functools.lru_cache(maxsize=1)
def _contract_columns() -> dict[str, list[str]]:
    """Every table of contracts/warehouse.sql with its columns, in order."""
    mem = duckdb.connect()
    try:
        create_warehouse(mem)
        return _columns(mem)
    finally:
        mem.close()


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "ORDER BY table_name, column_index").fetchall():
        out.setdefault(table, []).append(column)
    return out


def _check_is_a_warehouse(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """Refuse (exit 2, nothing written) a DuckDB database that is not a recon warehouse:
    one holding tables but no warehouse_identity, a view of a contract table's name, or a
    contract table with other columns than the contract's. An empty database becomes one."""
    present = _columns(con)
    views = {v for (v,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal "
        "AND database_name = current_database()").fetchall()}
    if not present and not views:
        return
    contract = _contract_columns()
    foreign = sorted(views & set(contract))
    if not {"warehouse_identity", "runs"} & set(present):   # every recon warehouse has one of them
        foreign = foreign or sorted(present)[:3] or sorted(views)[:3]
    for table, columns in present.items():
        want = contract.get(table)
        if want is not None and columns != [c for c in want if c in columns or
                                            (table, c) not in ADDED_LATER]:
            foreign.append(table)
    if foreign:
        raise InputError(f"The warehouse {warehouse} is a DuckDB database but not a recon "
                         f"warehouse (it holds {', '.join(foreign[:3])} of another shape); "
                         f"give --warehouse a new file or one recon made.")


def _set_resources(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """Memory limit and spill folder (contracts/resources.py): a large day spills instead of
    growing; no row-group merging at checkpoints: a late date commits as fast as an early one."""
    from contracts import resources
    _set_memory_limit(con, resources.memory_limit())
    con.execute(f"SET temp_directory = {sql_string(resources.temp_directory(warehouse))}")
    con.execute(f"SET max_vacuum_tasks = {int(resources.MAX_VACUUM_TASKS)}")  # a date's own row groups


def size_for_day(con: duckdb.DuckDBPyConnection, declared_rows: int) -> None:
    """Raise the connection's memory limit for a large day (contracts/resources.py:
    day_memory_limit), before its intake; the limit cached blocks are released to follows."""
    from contracts import resources
    limit = resources.day_memory_limit(declared_rows)
    if limit is not None:
        _set_memory_limit(con, limit)


def _set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """The connection's memory limit, recorded where release_cached_blocks
    (contracts/resources.py) restores it from after each eviction of cached blocks."""
    from contracts import resources
    con.execute(f"SET memory_limit = {sql_string(limit)}")
    con.execute(f"SET VARIABLE {resources.MEMORY_LIMIT_VARIABLE} = {sql_string(limit)}")


def sql_string(value: str) -> str:
    """`value` as a SQL string literal, for the statements that take no parameters
    (SET, COPY ... TO)."""
    return "'" + str(value).replace("'", "''") + "'"


def warehouse_id(con: duckdb.DuckDBPyConnection) -> str:
    """The identity of the warehouse (made when it was created; copies keep it)."""
    return con.execute("SELECT min(warehouse_id) FROM warehouse_identity").fetchone()[0]


def refuse_a_bound_out(out: Path, warehouse: Path) -> None:
    """Before a new warehouse is made: an `<out>` that already holds a binding belongs to
    another warehouse (out_lock would refuse it only once the new one exists; a refused
    run creates nothing). Read without the lock: a binding, once written, stays."""
    p = Path(out) / BINDING
    try:
        if not _is_real_dir(Path(out)) or not stat.S_ISREG(os.lstat(p).st_mode):
            return
        bound = _parse_binding(read_regular(p, 65536).encode("utf-8"))
    except (OSError, ValueError):
        return   # out_lock says what is wrong with it
    if bound is not None:
        raise InputError(f"The reports folder {out} holds the reports of another warehouse "
                         f"({bound.get('warehouse', 'unknown')}), so {warehouse} cannot "
                         f"publish there; give each warehouse its own --out, or remove {p} "
                         "if that warehouse no longer exists.")


def refuse_a_foreign_database(warehouse: Path) -> None:
    """Before the run lock is made beside a file that no recon run has locked yet: refuse
    (one sentence, nothing written) a file DuckDB cannot open or a database that is not a
    recon warehouse."""
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as e:
        if environment_fault(e) is not None:
            return   # the run says it, as for any warehouse
        first = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip("!. ")
        raise InputError(f"The warehouse {warehouse} cannot be opened ({first}).") from None
    try:
        _check_is_a_warehouse(con, warehouse)
    finally:
        con.close()


def _parse_binding(text: bytes) -> dict | None:
    if not text.strip():
        return None
    try:
        b = json.loads(text.decode("utf-8"))
        if isinstance(b, dict) and isinstance(b.get("warehouse_id"), str):
            return b
    except ValueError:
        pass
    return {"warehouse_id": None, "warehouse": "unknown"}


@contextlib.contextmanager
def out_lock(out: Path, identity: str, warehouse: Path) -> Iterator[None]:
    """Hold `<out>` for the warehouse `identity`: flock `<out>/.recon-warehouse` and bind
    `<out>` to that warehouse on its first run; refuse an `<out>` bound to another."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"The reports folder {out} is not a folder; "
                         "point --out (RECON_OUT) at a folder.") from None
    if not stat.S_ISDIR(os.stat(out).st_mode):
        raise InputError(f"The reports folder {out} is not a folder; "
                         "point --out (RECON_OUT) at a folder.")
    p = out / BINDING
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise InputError(f"{p} is a symbolic link, which recon never follows; "
                         "remove it and run again.") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{p} is not a file; remove it and run again.")
        _flock_with_grace(fd, f"Another recon run is publishing into {out}; "
                              "wait for it to finish and try again.")
        bound = _parse_binding(os.pread(fd, 65536, 0))
        if bound is None:
            data = json.dumps({"warehouse_id": identity,
                               "warehouse": str(Path(warehouse).resolve())}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, data.encode("utf-8"), 0)
            os.fsync(fd)
        elif bound["warehouse_id"] != identity:
            raise InputError(f"The reports folder {out} holds the reports of another warehouse "
                             f"({bound.get('warehouse', 'unknown')}), so {warehouse} cannot "
                             f"publish there; give each warehouse its own --out, or remove {p} "
                             "if that warehouse no longer exists.")
        yield
    finally:
        os.close(fd)


# The tables that name a run or this warehouse (the run log, the status copies of its
# summaries, its identity, its reports folder): two warehouses that reconciled the same
# dates the same way differ in these only. Comparisons of warehouses leave them out.
WAREHOUSE_OWN_TABLES = ("runs", "run_status_copies", "warehouse_identity", "reports_folder")


def bind_reports_folder(con: duckdb.DuckDBPyConnection, out: Path, warehouse: Path) -> None:
    """Refuse a second `<out>` for this warehouse (InputError, one sentence): STALE marks and
    re-runs land in one reports folder only. The folder recorded last stays bound while it
    exists and still names this very warehouse (the binding out_lock wrote there); a folder
    moved away or removed gives way. So does any folder of a copy of a warehouse (its
    reports' binding names the original): a copy is not held to one folder."""
    here = os.path.realpath(out)
    row = con.execute("SELECT path FROM reports_folder ORDER BY bound_at DESC LIMIT 1").fetchone()
    if row is not None and row[0] != here and _names_this_warehouse(Path(row[0]), con, warehouse):
        raise InputError(f"The warehouse {warehouse} publishes its reports to {row[0]}; a run into "
                         f"{out} would leave the reports there out of date. Use --out {row[0]} "
                         "(RECON_OUT), or move that folder to the new place first.")
    if row is None or row[0] != here:
        con.execute("DELETE FROM reports_folder")
        con.execute("INSERT INTO reports_folder VALUES (?, current_timestamp)", [here])


def _names_this_warehouse(folder: Path, con: duckdb.DuckDBPyConnection, warehouse: Path) -> bool:
    """Does `folder` still hold a binding to this warehouse: its identity, and its path?"""
    try:
        p = folder / BINDING
        if not _is_real_dir(folder) or not stat.S_ISREG(os.lstat(p).st_mode):
            return False
        bound = _parse_binding(read_regular(p, 65536).encode("utf-8"))
    except (OSError, ValueError):   # not readable as a binding: it binds nothing
        return False
    return (bound is not None and bound.get("warehouse_id") == warehouse_id(con)
            and bound.get("warehouse") == str(Path(warehouse).resolve()))


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


def check_genesis(d: date, folders: list[date]) -> bool:
    """outputs.md "Order" when no earlier date was processed: D runs only as genesis, the
    first date folder of the inbox. Returns True, or raises InputError naming D-1."""
    if folders and d == min(folders):
        return True
    first = min(folders).isoformat() if folders else None
    hint = (f" (the first date of the inbox is {first})" if first and first != d.isoformat()
            else "")
    raise InputError(f"{(d - timedelta(days=1)).isoformat()} has not been processed yet, so "
                     f"{d.isoformat()} cannot be reconciled{hint}.")


def check_order(con: duckdb.DuckDBPyConnection, d: date, folders: list[date],
                where: tuple | None = None) -> bool:
    """outputs.md "Order": may D run now? Returns genesis (True when the ledger opens
    from balances.csv). Raises InputError naming the date that must come first."""
    from transforms.archive import refuses_rerun
    archived = refuses_rerun(con, d)
    if archived:
        raise InputError(archived)
    done = {r["business_date"]: r["status"] for r in runs(con)}
    earlier = [x for x in done if x < d]
    prev = d - timedelta(days=1)
    if not earlier:
        return check_genesis(d, folders)
    if prev not in done and prev not in folders:
        raise InputError(f"{prev.isoformat()} has not been processed and the inbox has no folder "
                         f"for it, so {d.isoformat()} cannot be reconciled until {prev.isoformat()} "
                         f"is delivered and run.")
    if prev not in done:
        raise InputError(f"{prev.isoformat()} has not been processed yet, so {d.isoformat()} "
                         "cannot be reconciled; run that date first.")
    if done[prev] == STALE:
        # outputs.md only asks that D-1 was processed, and a STALE date was; D then
        # opens from D-1's closing state as it stands, so say how to bring it up to date.
        from contracts.summary import clear_command
        first_stale = min(x for x, s in done.items() if s == STALE)
        print(f"recon: warning: {prev.isoformat()} is STALE because an earlier date was re-run; "
              f"{d.isoformat()} opens from its current closing state. "
              f"`{clear_command(first_stale, d, where)}` brings the range up to date.",
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


# --------------------------------------------------------------------------- status (read-only)

def status_file(warehouse: Path) -> Path:
    return Path(f"{warehouse}{STATUS_SUFFIX}")


# Kept out of the status file: per-file hashes, exception id lists and the scorecard (contracts.summary.HEAVY).
from contracts.summary import HEAVY as _HEAVY  # noqa: E402 - the contract says what is heavy


def write_status_file(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """Publish the runs of the warehouse beside it, atomically, for `recon status`.

    A day's cost must not grow with history: each run's summary is copied for the file
    (without HEAVY, scrubbed, compact JSON) once, into run_status_copies, by the first
    write after the run; every write then joins the stored texts of every run. Only the
    fields a run changes later (status: STALE) are made on each write."""
    copies = _status_copies(con)
    rows = con.execute("SELECT business_date, run_id, status, started_at, finished_at "
                       "FROM runs ORDER BY business_date").fetchall()
    entries = []
    for d, run_id, status, started, finished in rows:
        head = json.dumps(scrub_json({"business_date": d.isoformat(), "run_id": run_id,
                                      "status": status, "started_at": started.isoformat(),
                                      "finished_at": finished.isoformat()}), ensure_ascii=False)
        entries.append(f'{head[:-1]}, "summary": {copies[run_id]}}}')
    # Beside the warehouse, but an output all the same: no full resident ID in it.
    ident = json.dumps(scrub_json(warehouse_id(con)), ensure_ascii=False)
    from transforms.archive import archive_boundary
    boundary = archive_boundary(con)   # dates before it can no longer be re-run
    archived = json.dumps(boundary.isoformat() if boundary else None)
    text = ('{"warehouse_id": ' + ident + ', "archived_before": ' + archived + ', "runs": [\n'
            + ",\n".join(entries) + "\n]}\n")
    write_bytes_atomic(status_file(warehouse), text.encode("utf-8"))
    release_cached_blocks(con)  # the stored copies of every run: not needed by the run


def _status_copies(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """run_id -> the status file's text of its summary, made (and stored) for the runs
    that have none yet; a copy of a run no longer recorded is dropped. If the warehouse
    cannot be written, the copies made here serve this write only."""
    made = {}
    for run_id, summary_json in con.execute(
            "SELECT run_id, summary_json FROM runs "
            "WHERE run_id NOT IN (SELECT run_id FROM run_status_copies)").fetchall():
        try:
            s = json.loads(summary_json)
        except ValueError:
            s = {}
        s = s if isinstance(s, dict) else {}
        made[run_id] = json.dumps(scrub_json({k: v for k, v in s.items() if k not in _HEAVY}),
                                  ensure_ascii=False)
    try:
        con.execute("DELETE FROM run_status_copies WHERE run_id NOT IN (SELECT run_id FROM runs)")
        if made:
            con.executemany("INSERT INTO run_status_copies VALUES (?, ?)", list(made.items()))
    except duckdb.Error:
        pass  # a read-only or full disk: the file is still written from `made`
    stored = dict(con.execute("SELECT c.run_id, c.summary_text FROM run_status_copies c "
                              "JOIN runs r USING (run_id)").fetchall())
    return {**stored, **made}


def read_regular(path: Path, limit: int) -> str:
    """The text of `path` if it is a regular file of at most `limit` bytes (a planted
    FIFO, device or folder never blocks or floods the reader); else ValueError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise ValueError(f"{path} is not a regular file of at most {limit} bytes")
        with open(fd, "rb", closefd=False) as f:
            return f.read(limit + 1).decode("utf-8")
    finally:
        os.close(fd)


def _status_rows(obj) -> list[dict]:
    """The runs of a status file, checked (the file is as untrusted as <out>)."""
    out = []
    for r in obj["runs"]:
        if not (RUN_ID.fullmatch(r["run_id"]) and r["status"] in (COMPLETE, PARTIAL, STALE)):
            raise ValueError(f"bad row {r.get('business_date')}")
        out.append({"business_date": date.fromisoformat(r["business_date"]),
                    "run_id": r["run_id"], "status": r["status"],
                    "started_at": datetime.fromisoformat(r["started_at"]),
                    "finished_at": datetime.fromisoformat(r["finished_at"]),
                    "summary": r["summary"] if isinstance(r.get("summary"), dict) else {}})
    return sorted(out, key=lambda r: r["business_date"])


def _rows_from_warehouse(warehouse: Path) -> tuple[list[dict], date | None]:
    """A warehouse written before status files existed, read read-only: its runs and
    its archive boundary."""
    from transforms.archive import archive_boundary
    con = open_warehouse(warehouse, read_only=True)
    try:
        rows = con.execute("SELECT business_date, run_id, status, started_at, finished_at, "
                           "summary_json FROM runs ORDER BY business_date").fetchall()
        boundary = archive_boundary(con)
    finally:
        con.close()
    return [{"business_date": d, "run_id": i, "status": s, "started_at": a, "finished_at": f,
             "summary": {k: v for k, v in json.loads(j).items() if k not in _HEAVY}}
            for d, i, s, a, f, j in rows], boundary


def interrupted_runs(out: Path) -> list[tuple[str, date]]:
    """(run_id, D) of each valid journal left in `<out>/.staging` (read-only)."""
    root = staging_root(out)
    if not _is_real_dir(root):
        return []
    found = []
    with os.scandir(root) as it:
        for entry in it:
            meta = _read_journal(root, entry)
            if meta:
                found.append(meta)
    return sorted(found, key=lambda m: m[1])


def require_warehouse(warehouse: Path) -> None:
    """InputError (one sentence) unless `warehouse` is an existing file: the commands that
    only read or rework what runs wrote never create an empty warehouse."""
    warehouse = Path(warehouse)
    if warehouse.is_dir():
        raise InputError(f"{warehouse} is a folder, not a warehouse; check --warehouse "
                         "(RECON_WAREHOUSE).")
    if not warehouse.is_file():
        raise InputError(f"There is no warehouse at {warehouse}; check --warehouse "
                         "(RECON_WAREHOUSE), or run a date first to create it.")


def _archived_before(obj: dict) -> date | None:
    """The archive boundary a status file records (None: nothing archived, or a status
    file written before archives existed)."""
    from contracts.dates import iso_date
    v = obj.get("archived_before")
    if v is None:
        return None
    if iso_date(v) is None:
        raise ValueError("bad archived_before")
    return iso_date(v)


def status_snapshot(paths) -> dict:
    """What `recon status` shows, read without the run lock and without writing a file:
    {"warehouse", "run_in_progress" (None or what runs), "runs" (rows of `runs()` plus
    the committed "summary" without hashes and id lists), "stale" ((first, last) or None),
    "interrupted" ([(run_id, D)] awaiting the next run's recovery), "source"}."""
    warehouse, out = Path(paths.warehouse), Path(paths.out)
    require_warehouse(warehouse)
    busy = run_in_progress(warehouse)
    rows, source, archived = None, "status file", None
    try:
        obj = json.loads(read_regular(status_file(warehouse), STATUS_FILE_MAX))
        rows, archived = _status_rows(obj), _archived_before(obj)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        rows = None
    if rows is None:
        if busy:
            raise RunLockedError(f"A {busy} is in progress on {warehouse}, which has no status "
                                 "file yet; ask again when it has finished.")
        rows, archived, source = *_rows_from_warehouse(warehouse), "warehouse"
    for r in rows:
        r["archived"] = archived is not None and r["business_date"] < archived
    stale = [r["business_date"] for r in rows if r["status"] == STALE]
    return {"warehouse": str(warehouse), "run_in_progress": busy, "runs": rows,
            "stale": (min(stale), max(r["business_date"] for r in rows)) if stale else None,
            "interrupted": interrupted_runs(out), "source": source}


# --------------------------------------------------------------------------- journal / recovery

def staging_root(out: Path) -> Path:
    return Path(out) / STAGING


def journal_path(out: Path, run_id: str) -> Path:
    return staging_root(out) / f"{_checked(run_id)}.json"


def _checked(run_id: str) -> str:
    if not RUN_ID.fullmatch(str(run_id)):
        raise ValueError(f"{run_id!r} is not a recon run id")
    return run_id


def _lstat(p: Path) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def _is_real_dir(p: Path) -> bool:
    st = _lstat(p)
    return st is not None and stat.S_ISDIR(st.st_mode)  # lstat: a link is never a folder


def remove_path(p: Path) -> None:
    """Remove `p` itself: a folder with its content (links inside are unlinked, never
    followed), anything else (a symbolic link included) by unlink."""
    st = _lstat(p)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def ensure_staging_root(out: Path) -> Path:
    """`<out>/.staging` as a real folder (anything else of that name is removed first)."""
    root = staging_root(out)
    if _lstat(root) is not None and not _is_real_dir(root):
        remove_path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not _is_real_dir(root):
        raise InputError(f"{root} cannot be made a folder of recon's own; remove it and run again.")
    return root


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to a new temp file beside `path`, fsync, rename over `path`, fsync
    the folder. The temp file is created exclusively: a planted link is never followed."""
    write_bytes_atomic(path, (json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False)
                              + "\n").encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """write_json_atomic's write, of bytes already made."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if environment_fault(e) is not None and not getattr(e, "filename", None):
            raise as_fault(e, path) from None
        raise
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
    ensure_staging_root(out)
    write_json_atomic(p, {"run_id": run_id, "business_date": d.isoformat(),
                          "staged": f"{run_id}/{d.isoformat()}"})
    return p


def _read_journal(root: Path, entry: os.DirEntry) -> tuple[str, date] | None:
    """(run_id, D) of a journal entry of `<out>/.staging`, None unless it is a small
    regular file named `<run_id>.json` whose content names that run and its date."""
    m = RUN_ID.fullmatch(entry.name[:-5]) if entry.name.endswith(".json") else None
    if not m or not entry.is_file(follow_symlinks=False):
        return None
    try:
        meta = json.loads(read_regular(Path(entry.path), JOURNAL_MAX))
        run_id, d = meta["run_id"], date.fromisoformat(meta["business_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run_id != entry.name[:-5] or m.group(1) != d.isoformat():
        return None
    return run_id, d


def check_swappable(out: Path, d: date) -> None:
    """Raise the OSError swap_into_place would meet (EACCES, naming the folder) while the
    run can still roll back: moving <out>/<D> aside writes in <out> and, since it moves to
    another folder, in <out>/<D> itself (its '..')."""
    out = Path(out)
    target = out / d.isoformat()
    st = _lstat(target)
    folders = [out] + ([target] if st is not None and stat.S_ISDIR(st.st_mode) else [])
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK, follow_symlinks=False):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))


def swap_into_place(out: Path, run_id: str, d: date, kill_at=None) -> None:
    """Move `<out>/.staging/<run_id>/<D>` to `<out>/<D>`; the old folder goes aside first.

    Safe to call again after an interruption at any point (used by recovery). Only a
    real folder is moved in; whatever `<out>/<D>` was (a link included) is moved aside
    by rename, which never follows it."""
    out = Path(out)
    work = staging_root(out) / _checked(run_id)
    staged, old, target = work / d.isoformat(), work / "old", out / d.isoformat()
    if _is_real_dir(staging_root(out)) and _is_real_dir(work) and _is_real_dir(staged):
        if _lstat(target) is not None:
            remove_path(old)
            os.rename(target, old)
            if kill_at:
                kill_at("mid_publish")
        os.rename(staged, target)
        fsync_dir(out)


def finish_run(out: Path, run_id: str) -> None:
    """Drop the run's staging folder and journal (journal last)."""
    root = staging_root(out)
    if not _is_real_dir(root):
        return
    remove_path(root / _checked(run_id))
    remove_path(journal_path(out, run_id))
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty


def recover(con: duckdb.DuckDBPyConnection, out: Path, where: tuple | None = None) -> list[str]:
    """Bring `<out>` in line with the committed warehouse after an interrupted run.
    `where` (inbox, out, warehouse) goes into the STALE dates' clear command.

    Must be called under both locks. Returns a line per action taken."""
    root = staging_root(out)
    actions: list[str] = []
    if _lstat(root) is not None and not _is_real_dir(root):
        remove_path(root)  # a link is unlinked, its target left alone
        actions.append(f"removed {root}, which was not a folder of recon's own")
    if not _is_real_dir(root):
        sync_stale_summaries(con, out, where)
        return actions
    committed = {r["business_date"]: r["run_id"] for r in runs(con)}
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        meta = _read_journal(root, entry)
        if meta is None:
            remove_path(Path(entry.path))
            actions.append(f"discarded {entry.path}, which is not a journal of recon")
            continue
        run_id, d = meta
        if committed.get(d) == run_id:
            swap_into_place(out, run_id, d)
            sync_stale_summaries(con, out, where)
            finish_run(out, run_id)
            actions.append(f"completed the publish of {d.isoformat()} (run {run_id})")
        else:
            finish_run(out, run_id)
            actions.append(f"discarded the uncommitted run {run_id} of {d.isoformat()}")
    if _is_real_dir(root):
        with os.scandir(root) as it:
            leftovers = [Path(e.path) for e in it]
        for leftover in leftovers:  # no journal: never committed
            remove_path(leftover)
        with contextlib.suppress(OSError):
            root.rmdir()
    sync_stale_summaries(con, out, where)
    return actions


def sync_stale_summaries(con: duckdb.DuckDBPyConnection, out: Path, where: tuple | None = None) -> None:
    """Make the summary.json of every STALE date say so (atomically, idempotent; only
    a real summary.json in a real `<out>/<D>` folder is rewritten), with the command that
    clears them on `where` (inbox, out, warehouse)."""
    from contracts.summary import clear_command
    from flows.report_stale import mark_date_stale  # summary.json, report.html, xlsx say STALE
    clear = stale_ranges(con)
    for r in runs(con):
        if r["status"] != STALE:
            continue
        folder = Path(out) / r["business_date"].isoformat()
        p = folder / "summary.json"
        st = _lstat(p)
        if not _is_real_dir(folder) or st is None or not stat.S_ISREG(st.st_mode):
            continue
        if clear and mark_date_stale(folder, clear_command(*clear, where=where)):
            continue
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(s, dict) or s.get("status") == STALE:
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
