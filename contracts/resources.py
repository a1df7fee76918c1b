"""DuckDB resources of the warehouse connection (issue 12).

A large day must spill to disk instead of growing: DuckDB's own default memory
limit is 80 % of the machine's RAM, far above the 1.5 GiB a national day may
take. Each value can be overridden by its environment variable; a bad value is
refused in one sentence naming the variable.

    RECON_DUCKDB_MEMORY_LIMIT     a DuckDB size such as 1GB, 800MB, 2.5GiB; default
                                  MEMORY_LIMIT, LARGE_DAY_MEMORY_LIMIT for a large day
    RECON_DUCKDB_TEMP_DIRECTORY   where DuckDB spills; default '<warehouse>.tmp'
                                  beside the warehouse (DuckDB's default)
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import duckdb

from contracts.errors import InputError

MEMORY_LIMIT = "1GB"
# A day larger than the national day (issue 12 target 2) gets more: DuckDB's working set
# (the hash tables over the day's persons and events) grows with the day, and at 1GB a
# day of ten national days' volume (54.5M rows) spills in every rule and in the insert
# (374 s), against 261 s at 2GB with the same peak RSS (4,443 and 4,550 MiB, the intake's
# frames being the peak; docs/performance.md). The national day (5.4M rows) keeps 1GB and
# its 1.5 GiB peak. Sized by the rows the manifests declare, known before the intake;
# RECON_DUCKDB_MEMORY_LIMIT, when set, stands for every day.
LARGE_DAY_ROWS = 12_000_000
LARGE_DAY_MEMORY_LIMIT = "2GB"

# Provinces whose intake (read, decode, validate) runs ahead of the one being
# inserted into the warehouse. Each is staged and freed as soon as its turn
# comes, so a run holds about this many provinces plus one, never the nation.
PROVINCES_IN_FLIGHT = 2
# Row groups merged by a checkpoint (DuckDB's max_vacuum_tasks; its default is 100). Each
# run appends its date's rows as new row groups; DuckDB then merges the small ones of
# every table a few dates later, and each such checkpoint rewrites about two row groups
# of the largest tables (0.5 CPU s for lots at 100,000 persons, every other date): the
# commit of a late date cost up to 3x an early one. Without merges, every date keeps row
# groups of its own (which the business_date filters skip whole), and a re-run's deleted
# rows still go: a row group whose rows are all deleted is dropped at the checkpoint.
MAX_VACUUM_TASKS = 0
# What transforms/buffer_pool.py leaves cached of the warehouse file's blocks when it
# evicts the rest between steps (bytes): DuckDB keeps every block a query read until the
# memory limit is reached, so a run's memory would grow with the dates its reads touch.
CACHED_BLOCKS_KEPT = 16 * 2**20
# The connection variable in which open_warehouse records the memory limit, so that an
# eviction (which lowers the limit for a moment) restores exactly it.
MEMORY_LIMIT_VARIABLE = "recon_memory_limit"
MEMORY_LIMIT_ENV = "RECON_DUCKDB_MEMORY_LIMIT"
TEMP_DIRECTORY_ENV = "RECON_DUCKDB_TEMP_DIRECTORY"

_SIZE = re.compile(r"^\d{1,6}(\.\d{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def memory_limit(environ: Mapping[str, str] = os.environ) -> str:
    """The memory limit of the warehouse connection, as DuckDB spells a size."""
    value = environ.get(MEMORY_LIMIT_ENV, "").strip() or MEMORY_LIMIT
    if not _SIZE.match(value):
        raise InputError(f"{MEMORY_LIMIT_ENV}={value[:40]!r} is not a size such as 1GB or 800MB.")
    return value


def day_memory_limit(declared_rows: int, environ: Mapping[str, str] = os.environ) -> str | None:
    """The memory limit for a day whose manifests declare `declared_rows` input rows:
    LARGE_DAY_MEMORY_LIMIT past LARGE_DAY_ROWS, else None (the connection's limit stands);
    always None when RECON_DUCKDB_MEMORY_LIMIT is set (the operator's limit stands)."""
    if environ.get(MEMORY_LIMIT_ENV, "").strip() or declared_rows <= LARGE_DAY_ROWS:
        return None
    return LARGE_DAY_MEMORY_LIMIT


def temp_directory(warehouse: Path, environ: Mapping[str, str] = os.environ) -> str:
    """Where the warehouse connection spills: the variable, else '<warehouse>.tmp'."""
    value = environ.get(TEMP_DIRECTORY_ENV, "").strip()
    if "\x00" in value:
        raise InputError(f"{TEMP_DIRECTORY_ENV} holds a NUL character.")
    return value or f"{Path(warehouse)}.tmp"


# --------------------------------------------------------------------------- cached blocks
#
# A day's cost must not grow with history, and memory is part of the cost. DuckDB keeps
# every block of the warehouse file that a query read in its buffer pool until the
# memory limit is reached (MEMORY_LIMIT above), so a run's memory grows with
# the blocks of every date its reads touch: the ledger's reads over earlier dates, the
# look-back windows, the auditors' page. Each date keeps row groups of its own (no
# merging at checkpoints), so a small table read over 40 dates costs 40 blocks of
# 256 KiB, however few rows it holds: day 40 of 100,000 persons held 180 MiB of the
# file's blocks at its end against 36 MiB on day 5.
#
# Those blocks are a cache: DuckDB evicts them first when it needs room, and reads them
# again from the file when a query needs them. Lowering the memory limit below what
# is in use and restoring it evicts them now, persistent blocks before anything else
# (temporary tables and the transaction's own rows stay; checked in
# tests/test_resources.py), in about 10 ms. Results do not change.

def release_cached_blocks(con: duckdb.DuckDBPyConnection) -> None:
    """Evict the warehouse file's cached blocks when more than twice
    CACHED_BLOCKS_KEPT of them are held, keeping about CACHED_BLOCKS_KEPT;
    then restore the memory limit. Costs about 1 ms when there is nothing to evict.

    Only a connection opened as a warehouse (flows.warehouse.open_warehouse records
    its memory limit in the variable MEMORY_LIMIT_VARIABLE) is touched: a
    connection of a test or a caller with its own limit is left as it is. Call it
    between queries, never while another thread uses the connection."""
    limit, cached, other = con.execute(f"""
        SELECT getvariable('{MEMORY_LIMIT_VARIABLE}'),
               coalesce(sum(memory_usage_bytes) FILTER (WHERE tag = 'BASE_TABLE'), 0),
               coalesce(sum(memory_usage_bytes) FILTER (WHERE tag <> 'BASE_TABLE'), 0)
        FROM duckdb_memory()""").fetchall()[0]
    if not limit or cached <= 2 * CACHED_BLOCKS_KEPT:
        return
    try:
        con.execute(f"SET memory_limit = '{int(other) + CACHED_BLOCKS_KEPT}B'")
    except duckdb.OutOfMemoryException:
        pass  # blocks in use cannot go: what could go has gone, the rest stays
    finally:
        con.execute(f"SET memory_limit = '{limit}'")
