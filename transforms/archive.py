"""`recon archive --before B`: the warehouse rows that no rule and no report reads any more.

outputs.md (command table): "move warehouse rows that no rule reads any more to per-date
Parquet that stays queryable". Which rows those are follows from what each reader reads
(docs/performance.md, "A day's cost does not grow with history" and "Archive"):

- `lots`: a run of D opens from the lots of D-1; the auditors' page of D shows the lots
  of D and D-1. So the lots of every date before B move but the last one, which a run
  of B reads.
- `balances`: a run of D reads D's; the auditors' page of D shows those of D-1 and D.
  The same: every date before B but the last.
- `quarantine`, `file_loads`: read only for their own date's reports and summary.

Nothing else moves: settlements (the auditors' page shows a refund's original of any
earlier date), transfers (the family view finds a lot's sharer by its SUCCESS IN
transfer), persons (the person registry points at each person's latest record),
relationships and relation_events (a relationship established long ago is still
active), the compact ledger tables (a refund may name an original of any earlier
date), findings (the workbench's cases across dates).

A date before B can no longer be re-run (its closing state left the warehouse):
`refuses_rerun` says so in one sentence; the dates from B on run as before. Pure SQL
over the connection: which folder the rows go to is flows/archive.py's decision.
"""
from __future__ import annotations

from datetime import date

import duckdb

# table -> the processed dates before B whose rows stay (a run of B reads them)
ARCHIVED_TABLES = {"lots": 1, "balances": 1, "quarantine": 0, "file_loads": 0}


def dates_to_move(con: duckdb.DuckDBPyConnection, table: str, before: date) -> list[date]:
    """The dates of `table` before B whose rows move, oldest first."""
    keep = ARCHIVED_TABLES[table]
    dates = [d for (d,) in con.execute(
        f"SELECT DISTINCT business_date FROM {table} WHERE business_date < ? ORDER BY 1",
        [before]).fetchall()]
    return dates[:len(dates) - keep] if keep else dates


def rows_of(table: str, d: date) -> str:
    """The rows of D of `table`, in the order they were written (a query COPY can take:
    it has no parameters)."""
    if table not in ARCHIVED_TABLES or not isinstance(d, date):
        raise KeyError(f"{table} on {d!r} is not archived")
    return f"SELECT * FROM {table} WHERE business_date = DATE '{d.isoformat()}' ORDER BY rowid"


def delete_moved(con: duckdb.DuckDBPyConnection, table: str, dates: list[date]) -> int:
    """Delete the rows of `dates` from `table` (their Parquet is in place); returns the rows."""
    if not dates:
        return 0
    return con.execute(f"DELETE FROM {table} WHERE business_date IN (SELECT unnest(?::DATE[]))",
                       [dates]).fetchone()[0]


def record_archive(con: duckdb.DuckDBPyConnection, before: date, rows: int) -> None:
    con.execute("INSERT INTO archives VALUES (?, current_timestamp, ?)", [before, rows])


def archive_boundary(con: duckdb.DuckDBPyConnection) -> date | None:
    """The latest B of `recon archive --before B`, if any."""
    return con.execute("SELECT max(archived_before) FROM archives").fetchone()[0]


def refuses_rerun(con: duckdb.DuckDBPyConnection, d: date) -> str | None:
    """Why D cannot run, if it lies before the archive boundary; None otherwise."""
    boundary = archive_boundary(con)
    if boundary is None or d >= boundary:
        return None
    return (f"{d.isoformat()} lies before {boundary.isoformat()}, the boundary of `recon archive "
            f"--before {boundary.isoformat()}`: the closing lots it would open from and its own "
            "quarantined rows and file loads have moved to the archive, so it cannot be re-run.")
