"""Write the reports of D aside, then move them into place (outputs.md "Atomic").

`stage_reports` writes every file of `<out>/<D>/` into the run's staging folder
`<out>/.staging/<run_id>/<D>/` and fsyncs them. Nothing under `<out>/<D>` is
touched until the warehouse has committed the run; then
`flows.warehouse.swap_into_place` moves the folder in. See flows/warehouse.py
for the journal that makes an interrupted swap recoverable.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import stat
from pathlib import Path

import duckdb
import polars as pl

from contracts.privacy import scrub_frame, scrub_json, scrub_text
from flows import report_html, report_xlsx
from flows.warehouse import (_lstat, as_fault, ensure_staging_root, environment_fault,
                             finish_run, fsync_dir, remove_path, staging_root,
                             write_json_atomic)
from transforms.context import RunContext
from transforms.reports import csv_bytes


REPORT_FILES = ("exceptions.parquet", "exceptions.csv", "settlement.parquet", "settlement.csv",
                "positions.csv", "summary.json", "report.html", "exceptions.xlsx")


def staged_dir(out: Path, run_id: str, business_date: str) -> Path:
    return staging_root(out) / run_id / business_date


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a failed write() does not name its file
        raise (as_fault(e, path) if environment_fault(e) else e) from None


def _write_parquet(path: Path, df: pl.DataFrame) -> None:
    # No statistics of time, no row-group split that depends on threads: same frame, same bytes.
    try:
        df.write_parquet(path, compression="zstd", statistics=True, row_group_size=1_000_000)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    except Exception as e:  # polars says "No space left on device (os error 28)" without a path
        if environment_fault(e) is not None:
            raise as_fault(e, path) from None
        raise


def stage_reports(out: Path, run_id: str, con: duckdb.DuckDBPyConnection, ctx: RunContext,
                  frames: dict[str, pl.DataFrame], summary: dict) -> Path:
    """Write every report of D into the staging folder of the run; returns that folder.

    A failed attempt leaves no staging behind (a retry starts afresh); a disk-full,
    permission or read-only fault comes out as an OSError naming the path."""
    d = staged_dir(out, run_id, ctx.d)
    ensure_staging_root(out)
    remove_path(d.parent)
    d.mkdir(parents=True)
    try:
        _write_reports(d, con, ctx, frames, summary)
    except BaseException as e:
        finish_run(out, run_id)  # no staging left behind (the journal is not written yet)
        if environment_fault(e) is not None and not getattr(e, "filename", None):
            raise as_fault(e, d) from None
        raise
    missing = missing_reports(d, run_id)
    if missing:
        from flows.nightly import RunFailed
        finish_run(out, run_id)
        raise RunFailed(f"the reports of {ctx.d} could not all be staged in {d} "
                        f"({', '.join(missing)}), so nothing was published.")
    return d


def missing_reports(folder: Path, run_id: str) -> list[str]:
    """What keeps `folder` from being the complete reports of run `run_id`: each report
    of outputs.md that is not a regular file there, or a summary.json of another run."""
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return [f"{folder} is not a folder"]
    missing = []
    for name in REPORT_FILES:
        f = _lstat(folder / name)
        if f is None or not stat.S_ISREG(f.st_mode):
            missing.append(f"{name} missing")
    if "summary.json missing" not in missing:
        try:
            written = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            written = None
        if written != run_id:
            missing.append(f"summary.json is not of run {run_id}")
    return missing


def _write_reports(d: Path, con: duckdb.DuckDBPyConnection, ctx: RunContext,
                   frames: dict[str, pl.DataFrame], summary: dict) -> None:
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
