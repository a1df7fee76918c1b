"""Write the reports of D aside, then move them into place (outputs.md "Atomic").

`stage_reports` writes every file of `<out>/<D>/` into the run's staging folder
`<out>/.staging/<run_id>/<D>/` and fsyncs them. Nothing under `<out>/<D>` is
touched until the warehouse has committed the run; then
`flows.warehouse.swap_into_place` moves the folder in. See flows/warehouse.py
for the journal that makes an interrupted swap recoverable.
"""
from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import duckdb
import polars as pl

from contracts.privacy import scrub_frame, scrub_json, scrub_text
from flows import report_html, report_xlsx
from flows.warehouse import fsync_dir, staging_root, write_json_atomic
from transforms.context import RunContext
from transforms.reports import csv_bytes


REPORT_FILES = ("exceptions.parquet", "exceptions.csv", "settlement.parquet", "settlement.csv",
                "positions.csv", "summary.json", "report.html", "exceptions.xlsx")


def staged_dir(out: Path, run_id: str, business_date: str) -> Path:
    return staging_root(out) / run_id / business_date


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_parquet(path: Path, df: pl.DataFrame) -> None:
    # No statistics of time, no row-group split that depends on threads: same frame, same bytes.
    df.write_parquet(path, compression="zstd", statistics=True, row_group_size=1_000_000)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def stage_reports(out: Path, run_id: str, con: duckdb.DuckDBPyConnection, ctx: RunContext,
                  frames: dict[str, pl.DataFrame], summary: dict) -> Path:
    """Write every report of D into the staging folder of the run; returns that folder."""
    d = staged_dir(out, run_id, ctx.d)
    d.mkdir(parents=True, exist_ok=False)
    # No full resident ID in any written text (contracts/privacy.py); the page reads the
    # warehouse by the raw record ids, so it gets the raw findings and is scrubbed as text.
    raw_exceptions = frames["exceptions"]
    exceptions, settlement, positions = (scrub_frame(frames[k]) for k in
                                         ("exceptions", "settlement", "positions"))
    summary = scrub_json(summary)
    _write_parquet(d / "exceptions.parquet", exceptions)
    _write_bytes(d / "exceptions.csv", csv_bytes(exceptions))
    _write_parquet(d / "settlement.parquet", settlement)
    _write_bytes(d / "settlement.csv", csv_bytes(settlement))
    _write_bytes(d / "positions.csv", csv_bytes(positions))
    # The auditors' views are built from the very frames written above, so they never disagree.
    # The workbook is pure Python while the page mostly waits on DuckDB: build both at once.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        workbook = pool.submit(report_xlsx.write, d / "exceptions.xlsx", exceptions, summary)
        report_html.write(d / "report.html", con, ctx, summary, raw_exceptions, settlement, positions)
        page = (d / "report.html").read_text(encoding="utf-8")
        if (clean := scrub_text(page)) != page:
            _write_bytes(d / "report.html", clean.encode("utf-8"))
        workbook.result()
    write_json_atomic(d / "summary.json", summary)
    for f in d.iterdir():
        f.chmod(0o644)  # reports are for every reader of <out>, whatever a writer chose
    fsync_dir(d)
    fsync_dir(d.parent)
    return d
