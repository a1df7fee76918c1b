"""`recon archive --before B` (outputs.md, command table): move the warehouse rows that no
rule reads any more (transforms/archive.py says which) to per-date Parquet beside the
warehouse, where DuckDB still queries them:

    <warehouse>.archive/<table>/<YYYY-MM-DD>.parquet      (every column of the table)
    SELECT * FROM read_parquet('data/warehouse.duckdb.archive/lots/*.parquet')

Nothing is lost on the way: each date's file is written aside, read back and counted
against the warehouse, then renamed into place; only when every file is in place are the
rows deleted, in one transaction that also records B. A run killed before that commit
leaves every row in the warehouse (a second `recon archive` writes the files again).

The archive folder is not trusted (docs/run-folders.md): recon creates it and its table
folders itself, refuses a link or a non-folder of those names, and writes only files of
its own names. B must lie at least the nightly look-back before the latest processed
date (`--lookback-days`, RECON_LOOKBACK_DAYS, default 30), so the nightly catch-up does not
reach an archived date (and skips one if its look-back is widened later: flows/operations.py),
and no date before B may be STALE (it could never be brought up to date).
"""
from __future__ import annotations

import os
import stat
import uuid
from datetime import date, timedelta
from pathlib import Path

from contracts.errors import InputError
from flows import warehouse as wh
from flows.nightly import Paths
from transforms import archive

ARCHIVE_SUFFIX = ".archive"


def archive_root(warehouse: Path) -> Path:
    """<warehouse>.archive, a real folder of recon's own (made if absent)."""
    return _own_folder(Path(f"{Path(warehouse)}{ARCHIVE_SUFFIX}"))


def _own_folder(folder: Path) -> Path:
    if wh._lstat(folder) is None:
        folder.mkdir(mode=0o755)
    if not wh._is_real_dir(folder):
        raise InputError(f"{folder} is not a folder of recon's own (a link or a file has that "
                         "name); move it away and run `recon archive` again.")
    return folder


def archive_before(paths: Paths, before: date, lookback_days: int) -> dict[str, int]:
    """Move the rows of every date before B that no rule reads any more; returns the rows
    moved per table. Under the warehouse's run lock: no run writes meanwhile."""
    with wh.run_lock(paths.warehouse, f"archive before {before.isoformat()}"):
        con = wh.open_warehouse(paths.warehouse)
        try:
            _check_boundary(con, before, lookback_days, paths.where)
            plan = {t: archive.dates_to_move(con, t, before) for t in archive.ARCHIVED_TABLES}
            if not any(plan.values()):   # no boundary either: every date still re-runs
                return {t: 0 for t in plan}
            root = archive_root(paths.warehouse)
            for table, dates in plan.items():
                folder = _own_folder(root / table)
                for d in dates:
                    _write_date(con, folder, table, d)
            con.execute("BEGIN TRANSACTION")
            try:
                moved = {t: archive.delete_moved(con, t, dates) for t, dates in plan.items()}
                archive.record_archive(con, before, sum(moved.values()))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("CHECKPOINT")   # the deleted rows' row groups leave the file now
            wh.write_status_file(con, paths.warehouse)
            return moved
        finally:
            con.close()


def _check_boundary(con, before: date, lookback_days: int, where: tuple) -> None:
    from contracts.summary import clear_command
    latest = con.execute("SELECT max(business_date) FROM runs").fetchone()[0]
    if latest is None:
        raise InputError(f"The warehouse has no processed date, so nothing before "
                         f"{before.isoformat()} can be archived.")
    stale = con.execute("SELECT min(business_date) FROM runs WHERE status = ? AND business_date < ?",
                        [wh.STALE, before]).fetchone()[0]
    if stale is not None:   # it could never be brought up to date once archived
        raise InputError(f"{stale.isoformat()} is STALE and lies before {before.isoformat()}; bring "
                         f"it up to date first (`{clear_command(stale, latest, where)}`), then archive.")
    last_allowed = latest - timedelta(days=lookback_days)
    if before > last_allowed:
        raise InputError(f"--before {before.isoformat()} is within the nightly look-back of "
                         f"{lookback_days} days before the latest processed date "
                         f"{latest.isoformat()}, which the catch-up may re-run; archive before "
                         f"{last_allowed.isoformat()} at the latest.")


def _write_date(con, folder: Path, table: str, d: date) -> None:
    """The rows of D of `table` as <folder>/<D>.parquet: written aside, counted, renamed."""
    final = folder / f"{d.isoformat()}.parquet"
    aside = folder / f".{d.isoformat()}.{uuid.uuid4().hex}.parquet"
    con.execute(f"COPY ({archive.rows_of(table, d)}) TO {wh.sql_string(aside)} "
                "(FORMAT parquet, COMPRESSION zstd)")
    try:
        wrote = con.execute("SELECT count(*) FROM read_parquet(?)", [str(aside)]).fetchone()[0]
        want = con.execute(f"SELECT count(*) FROM {table} WHERE business_date = ?", [d]).fetchone()[0]
        if wrote != want:
            raise InputError(f"The archive of {table} on {d.isoformat()} holds {wrote} rows where "
                             f"the warehouse has {want}; nothing was moved.")
        st = wh._lstat(final)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise InputError(f"{final} is not a file of recon's own (a link or a folder has that "
                             "name); move it away and run `recon archive` again.")
        os.replace(aside, final)   # a file of an archive killed before its commit: replaced
    finally:
        if wh._lstat(aside) is not None:
            wh.remove_path(aside)
