"""DuckDB resources of the warehouse connection (issue 12).

A large day must spill to disk instead of growing: DuckDB's own default memory
limit is 80 % of the machine's RAM, far above the 1.5 GiB a national day may
take. Each value can be overridden by its environment variable; a bad value is
refused in one sentence naming the variable.

    RECON_DUCKDB_MEMORY_LIMIT     a DuckDB size such as 1GB, 800MB, 2.5GiB
    RECON_DUCKDB_TEMP_DIRECTORY   where DuckDB spills; default '<warehouse>.tmp'
                                  beside the warehouse (DuckDB's default)
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from contracts.errors import InputError

MEMORY_LIMIT = "1GB"
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
MEMORY_LIMIT_ENV = "RECON_DUCKDB_MEMORY_LIMIT"
TEMP_DIRECTORY_ENV = "RECON_DUCKDB_TEMP_DIRECTORY"

_SIZE = re.compile(r"^\d{1,6}(\.\d{1,3})?\s?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def memory_limit(environ: Mapping[str, str] = os.environ) -> str:
    """The memory limit of the warehouse connection, as DuckDB spells a size."""
    value = environ.get(MEMORY_LIMIT_ENV, "").strip() or MEMORY_LIMIT
    if not _SIZE.match(value):
        raise InputError(f"{MEMORY_LIMIT_ENV}={value[:40]!r} is not a size such as 1GB or 800MB.")
    return value


def temp_directory(warehouse: Path, environ: Mapping[str, str] = os.environ) -> str:
    """Where the warehouse connection spills: the variable, else '<warehouse>.tmp'."""
    value = environ.get(TEMP_DIRECTORY_ENV, "").strip()
    if "\x00" in value:
        raise InputError(f"{TEMP_DIRECTORY_ENV} holds a NUL character.")
    return value or f"{Path(warehouse)}.tmp"
