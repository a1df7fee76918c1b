"""A date marked STALE says so wherever a reader looks (outputs.md "Order").

    mark_date_stale(folder, clear_with) -> bool

When a re-run of an earlier date marks D STALE, the reports of D stay as they were
published, except that summary.json, the header of report.html and the summary
sheet of exceptions.xlsx are re-rendered from the STALE summary (status, the status
before, the command that clears it). Each file is written aside and renamed into
place; summary.json goes last, so a run killed half-way is completed by the next
call (flows/warehouse.sync_stale_summaries calls this for every STALE date).
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import polars as pl

from contracts.summary import STALE, SummaryError, dump, load, mark_stale
from flows import report_html, report_xlsx

log = logging.getLogger("recon")


def mark_date_stale(folder: Path, clear_with: str) -> bool:
    """Make the reports in `folder` (one date) say STALE (idempotent); False when the
    folder holds no summary.json of this contract (nothing is touched then)."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    try:
        current = load(summary_path)
    except SummaryError as e:
        log.warning("not marked STALE: %s", e)
        return False
    stale = mark_stale(current, clear_with)
    if stale is current:  # marked already, and its command still covers the STALE range
        return True
    html = folder / "report.html"
    if _regular(html):
        report_html.restamp_header(html, stale)
    _restamp_workbook(folder, stale)
    from flows.warehouse import write_json_atomic
    write_json_atomic(summary_path, dump(stale))
    return True


def _regular(path: Path) -> bool:
    """A regular file itself, never a symlink followed (<out> is not trusted)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _restamp_workbook(folder: Path, stale) -> None:
    """Rebuild exceptions.xlsx from the published exceptions.parquet and the STALE summary."""
    book, rows = folder / "exceptions.xlsx", folder / "exceptions.parquet"
    if not (_regular(book) and _regular(rows)):
        return
    try:
        frame = pl.read_parquet(rows)
    except Exception as e:  # noqa: BLE001 - a damaged file: keep the workbook as it is
        log.warning("exceptions.xlsx of %s not marked STALE: %s", folder.name, type(e).__name__)
        return
    report_xlsx.write(book, frame, stale)
