"""Intake of one business date: bytes and manifests -> typed frames, quarantine, F01-F05.

`load_province` is pure CPU work on one province's delivery (no DuckDB, no
shared state), so the orchestration runs the 31 provinces in threads; polars
and pyarrow release the GIL while they parse and validate. `stage` then writes
everything of D into the warehouse in a handful of set-based INSERTs.

What happens to a data file, in order (rules.md §1):

1. manifest: not UTF-8 JSON, not an object, another province or date, or a
   `files` that is not an object -> F03 on `manifest.json`, the province
   delivers nothing (every expected file gets a rejected file_loads row).
   A name in `files` that is not one of the ten contract names -> F03 on that
   name; it is never opened.
2. F02: the stem is not listed, listed twice (.csv and .parquet), listed with
   an unreadable rows/sha256, absent, refused (link out of the folder), sha256
   differs, or the parsed data-row count differs -> rejected whole.
3. F03: cannot be decoded with the declared encoding, not CSV/Parquet, a
   header without a required column (or naming it twice), an unsupported
   Parquet type -> rejected whole.
4. F04: each row breaking a column rule (contracts/inbox.py), with every
   reason; a CSV row with the wrong number of fields is quarantined here too
   (kinder than rejecting the file; the parser skips it and carries on).
5. F05: among the valid rows, every later occurrence of a key.

A rejected file has rows_read = rows_loaded = rows_quarantined = 0 (nothing of
it entered the pipeline; the reason says what was seen), so the accounting
identity rows_read = rows_loaded + rows_quarantined holds for every file.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pandera.polars as pa
import polars as pl
import pyarrow as paw
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from contracts import codes
from contracts.inbox import (AMOUNT_COLUMN, DATA_FILE_NAMES, DATASET_COLUMNS, ID_COLUMN, KEY_COLUMNS,
                             LOADED_SCHEMAS, LOADED_SCHEMAS_ONE_PASS, MANIFEST, MAX_HEADER_FIELDS,
                             MAX_PARQUET_UNPACKED_BYTES, MAX_RECORD_BYTES, MONEY, RE_PSN,
                             REQUIRED_COLUMNS, SHANGHAI, Env, InboxDate, ProvinceDelivery, derived_columns, key_label,
                             loaded_columns, reasons_from_flags, record_id_expr, row_valid, rule_flags,
                             typed_helpers)
from transforms.context import RunContext
from transforms.findings import FINDING_COLUMNS

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030"}
BOM = b"\xef\xbb\xbf"

FINDINGS_SCHEMA = {
    "rule_code": pl.String(), "province": pl.String(), "dataset": pl.String(),
    "record_id": pl.String(), "sharer_psn_no": pl.String(), "beneficiary_psn_no": pl.String(),
    "amount": MONEY, "detail": pl.String(), "source_file": pl.String(), "source_row": pl.Int32(),
}
QUARANTINE_SCHEMA = {
    "business_date": pl.Date(), "file_province": pl.String(), "dataset": pl.String(),
    "source_file": pl.String(), "source_row": pl.Int32(), "record_id": pl.String(),
    "rule_code": pl.String(), "reasons": pl.String(), "raw": pl.String(),
}
FILE_LOADS_SCHEMA = {
    "province": pl.String(), "dataset": pl.String(), "source_file": pl.String(),
    "sha256": pl.String(), "encoding": pl.String(), "rows_read": pl.Int64(),
    "rows_loaded": pl.Int64(), "rows_quarantined": pl.Int64(), "rejected": pl.Boolean(),
    "reject_rule": pl.String(), "reject_reason": pl.String(),
}


class FileRejected(Exception):
    """A data file that cannot be read at all (F03). `reason` completes the
    sentence '<file name> ...'."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ParsedFile:
    """A file as canonical text: the required columns (String, null = empty
    field) plus source_row (1-based data row), and the rows the CSV parser had
    to skip (data row, text, why), which are quarantined, with the fields of each
    that stand at a required column's place in the header (its record_id reads them)."""
    frame: pl.DataFrame
    bad_rows: list[tuple[int, str, str]] = field(default_factory=list)
    bad_fields: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.bad_rows)


@dataclass
class FileStat:
    """One row of the warehouse table file_loads."""
    province: str
    dataset: str
    source_file: str
    sha256: str | None
    encoding: str | None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rejected: bool = False
    reject_rule: str | None = None
    reject_reason: str | None = None


# The parts of a province's load, timed for the benchmarks (ProvinceIntake.seconds).
INTAKE_PARTS = ("read, sha256, manifest", "decode + parse", "validate (F04, F05)",
                "contract of the loaded rows (pandera)")


@dataclass
class ProvinceIntake:
    province: str
    business_date: date
    frames: dict[str, pl.DataFrame]   # dataset -> loaded rows (contracts.inbox.loaded_columns)
    quarantine: pl.DataFrame          # QUARANTINE_SCHEMA
    findings: pl.DataFrame            # FINDINGS_SCHEMA (F02-F05 of this province)
    files: list[FileStat]
    sha256: dict[str, str]            # source_file -> hex of the bytes read
    contract_checked: bool = False    # frames passed LOADED_SCHEMAS (check_loaded)
    seconds: dict[str, float] = field(default_factory=dict)  # part of the load -> its seconds

    @property
    def persons(self) -> pl.DataFrame:
        return self.frames["persons"]

    @property
    def relationships(self) -> pl.DataFrame:
        return self.frames["relationships"]

    @property
    def transfers(self) -> pl.DataFrame:
        return self.frames["transfers"]

    @property
    def settlements(self) -> pl.DataFrame:
        return self.frames["settlements"]

    @property
    def balances(self) -> pl.DataFrame:
        return self.frames["balances"]


# ------------------------------------------------------------------ decoding and parsing

def decode_csv_text(data: bytes, encoding: str) -> bytes:
    """The file as UTF-8 bytes without BOM, decoded with the declared encoding.
    Python's codecs do the work: DuckDB cannot read GB18030 offline."""
    enc = ENCODINGS.get(str(encoding).strip().lower())
    if enc is None:
        raise FileRejected(f"cannot be decoded: the manifest declares encoding {str(encoding)[:30]!r}, "
                           "not utf-8 or gb18030")
    if data.isascii():   # the same text in UTF-8 and GB18030 (both extend ASCII), and no BOM
        return data
    if enc == "utf-8":
        if data.startswith(BOM):
            data = data[len(BOM):]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FileRejected(f"cannot be decoded as utf-8 (invalid byte at offset {e.start})") from None
        return data
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as e:
        raise FileRejected(f"cannot be decoded as gb18030 (invalid byte at offset {e.start})") from None
    return text.lstrip("\ufeff").encode("utf-8")


def _header_width_bound(utf8: bytes) -> int:
    """An upper bound of the header's field count, so every column can be read as
    text (pyarrow wants types by name). The header ends at the first line end (LF,
    CR or CRLF, as the CSV parser reads them) with an even number of quotes before
    it; look at no more than one record."""
    head = utf8[:MAX_RECORD_BYTES]
    # The next LF and the next CR (-1: none left). Each is searched again only once
    # passed, so a file with one kind of line end is not scanned for the other each time.
    lf, cr = head.find(b"\n"), head.find(b"\r")
    for _ in range(1000):
        if lf < 0 and cr < 0:
            break
        end = cr if lf < 0 or 0 <= cr < lf else lf
        if head.count(b'"', 0, end) % 2 == 0:
            return head.count(b",", 0, end) + 1
        if lf == end:
            lf = head.find(b"\n", end + 1)
        if cr == end:
            cr = head.find(b"\r", end + 1)
    return head.count(b",") + 1


def _check_header(names: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise FileRejected("lacks the required column" + ("s " if len(missing) > 1 else " ")
                           + ", ".join(missing))
    twice = [c for c in required if names.count(c) > 1]
    if twice:
        raise FileRejected("names the column " + ", ".join(twice) + " more than once")


def _nulls_for_empty(frame: pl.DataFrame, cols) -> pl.DataFrame:
    return frame.with_columns([pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in cols])


def parse_csv(utf8: bytes, required: tuple[str, ...]) -> ParsedFile:
    """RFC 4180 CSV, every column read as text (no reader ever guesses a type).

    Rows with the wrong number of fields are skipped by the parser and returned
    in bad_rows with their data-row number (pyarrow numbers records, not lines,
    and does not count blank lines, so number - 1 is the data row)."""
    utf8, width = _csv_within_limits(utf8)
    table, skipped = _read_csv_table(utf8, width)
    names = _csv_header(table, required)
    if any(n is None for n, *_ in skipped):
        raise FileRejected("has malformed rows whose position cannot be told")
    return _csv_rows(table, names, required, skipped)


def _csv_within_limits(utf8: bytes) -> tuple[bytes, int]:
    """The CSV ready for the parser and its header's width bound; FileRejected (F03) past the limits."""
    if not utf8.lstrip(b"\r\n\t "):   # lstrip copies nothing when the file starts with text
        raise FileRejected("is empty (no header row)")
    first_line = utf8[: MAX_RECORD_BYTES + 1]
    if len(utf8) > MAX_RECORD_BYTES and b"\n" not in first_line and b"\r" not in first_line:
        raise FileRejected(f"has a header line longer than the limit of {MAX_RECORD_BYTES} bytes")
    if not utf8.endswith((b"\n", b"\r")) and b"\n" not in utf8 and b"\r" not in utf8:
        # A header-only file (0 data rows) whose one line has no line end: pyarrow
        # reads it as an empty block and fails, though it is a valid 0-row CSV.
        utf8 = utf8 + b"\n"
    width = _header_width_bound(utf8)
    if width > MAX_HEADER_FIELDS:
        raise FileRejected(f"has a header line of {width - 1} commas, more than the limit of "
                           f"{MAX_HEADER_FIELDS} fields")
    return utf8, width


SINGLE_THREADED_BELOW = 1 << 20   # bytes of CSV text


def _read_csv_table(utf8: bytes, width: int) -> tuple[paw.Table, list[tuple[int | None, int, int, str]]]:
    """The whole file as a text table, header row included, and the rows the parser skipped."""
    quoted = b'"' in utf8
    skipped: list[tuple[int | None, int, int, str]] = []

    def on_bad(row) -> str:
        skipped.append((row.number, row.expected_columns, row.actual_columns, row.text[:1000]))
        return "skip"

    def read(block_size: int | None, threads: bool = True):
        skipped.clear()
        # Blocks of MAX_RECORD_BYTES: a record that does not fit is refused below,
        # so no field larger than the limit is ever built.
        ro = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=threads,
                              block_size=block_size or MAX_RECORD_BYTES)
        return pcsv.read_csv(
            io.BytesIO(utf8), read_options=ro,
            # Without a quote character no value can hold a newline, and the
            # parser is twice as fast when it need not look for one.
            parse_options=pcsv.ParseOptions(newlines_in_values=quoted, invalid_row_handler=on_bad),
            convert_options=pcsv.ConvertOptions(
                column_types={f"f{i}": paw.string() for i in range(width)},
                strings_can_be_null=False, quoted_strings_can_be_null=False))

    try:
        try:
            # A small file reads as fast on one thread; and a process that ends right after
            # a threaded read (a refused reference file: exit 2) can abort while pyarrow's
            # thread pool is still starting beside polars' (SIGABRT, "terminate called").
            table = read(None, threads=len(utf8) >= SINGLE_THREADED_BELOW)
        except paw.ArrowInvalid as e:
            if "straddl" in str(e):
                raise FileRejected(f"has a record longer than the limit of {MAX_RECORD_BYTES} bytes "
                                   "(a field far beyond its column's limit)") from None
            raise
        if skipped:   # malformed rows are numbered only by a single-threaded read
            table = read(len(utf8) + 1 if len(utf8) < (1 << 31) - 1 else None, threads=False)
    except (paw.ArrowInvalid, paw.ArrowNotImplementedError, paw.ArrowTypeError, OSError) as e:
        raise FileRejected(f"is not a readable CSV file ({str(e).splitlines()[0][:120]})") from None
    return table, skipped


def _csv_header(table: paw.Table, required: tuple[str, ...]) -> list[str]:
    """The column names of the header row, which must name every required column once."""
    if table.num_rows == 0:
        raise FileRejected("is empty (no header row)")
    if any(t != paw.string() for t in table.schema.types):
        raise FileRejected("has a header that cannot be read as CSV")
    names = [table.column(i)[0].as_py() for i in range(table.num_columns)]
    _check_header(names, required)
    return names


def _csv_rows(table: paw.Table, names: list[str], required: tuple[str, ...],
              skipped: list[tuple[int, int, int, str]]) -> ParsedFile:
    """The data rows of the required columns with their data-row numbers, the skipped rows as bad rows."""
    data = table.slice(1).select([f"f{names.index(c)}" for c in required]).rename_columns(list(required))
    frame = _nulls_for_empty(pl.from_arrow(data), required)
    total = frame.height + len(skipped)
    bad = [(n - 1, text, f"the row has {act} fields, the header has {exp}")
           for n, exp, act, text in skipped]
    fields = [_fields_at(text, names, required) for _n, _exp, _act, text in skipped]
    if bad:
        rows = pl.int_range(1, total + 1, dtype=pl.Int32, eager=True)
        rows = rows.filter(~rows.is_in(pl.Series([b[0] for b in bad], dtype=pl.Int32).implode()))
    else:
        rows = pl.int_range(1, total + 1, dtype=pl.Int32, eager=True)
    return ParsedFile(frame.with_columns(rows.alias("source_row")), bad, fields)


def _fields_at(text: str, names: list[str], required: tuple[str, ...]) -> dict[str, str | None]:
    """The fields of a row with the wrong field count that stand where the header puts
    each required column (None where the row is too short or the field empty): rules.md
    F04 takes "the row's id column if readable (non-empty)", and it is, where it stands."""
    try:
        row = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:   # the kept text is cut at 1,000 characters, maybe inside quotes
        row = []
    at = {c: names.index(c) for c in required}
    return {c: (row[i] or None) if i < len(row) else None for c, i in at.items()}


def _canonical_text(s: pl.Series) -> pl.Series:
    """A Parquet column as the text a CSV would hold (docs/spec-readings.md item 2):
    decimals/integers as digits, timestamps with tz as ISO 8601 in +08:00,
    timestamps without tz without offset (so the offset rule catches them),
    dates YYYY-MM-DD, booleans true/false. Floats are refused: money is never
    a binary float."""
    t = s.dtype
    if t == pl.String:
        return s
    if t == pl.Null or isinstance(t, (pl.Categorical, pl.Enum)):
        return s.cast(pl.String)
    if t.is_integer():
        return s.cast(pl.String)
    if isinstance(t, pl.Decimal):
        txt = s.cast(pl.String)
        # 12.3000 (scale 4) is 12.30: drop zeros beyond the second decimal only.
        return txt.str.replace(r"^(-?[0-9]+\.[0-9]{2}[0-9]*?)0+$", "${1}") if (t.scale or 0) > 2 else txt
    if t == pl.Boolean:
        return pl.select(pl.when(s).then(pl.lit("true")).when(~s).then(pl.lit("false"))).to_series()
    if t == pl.Date:
        return s.dt.to_string("%Y-%m-%d")
    if isinstance(t, pl.Datetime):
        if t.time_zone is None:
            return s.dt.to_string("%Y-%m-%dT%H:%M:%S%.f")
        return s.dt.convert_time_zone(SHANGHAI).dt.to_string("%Y-%m-%dT%H:%M:%S%.f%:z")
    raise FileRejected(f"has column {s.name} of type {t}, which is not text, decimal, integer, "
                       "boolean, date or timestamp")


def _read_parquet_bounded(data: bytes, required: tuple[str, ...]) -> paw.Table:
    """The required columns of a Parquet file, read so that memory stays bounded by
    the limits however well the file compresses: the footer's unpacked size first,
    then text columns as dictionaries (each distinct value once), whose longest value
    and total decoded size are checked before any is decoded."""
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        meta, schema = pf.metadata, pf.schema_arrow
    except Exception as e:  # noqa: BLE001 - any reader failure means "not Parquet"
        raise FileRejected(f"is not a readable Parquet file ({type(e).__name__})") from None
    _check_header(list(schema.names), required)
    unpacked = sum(max(meta.row_group(i).total_byte_size, 0) for i in range(meta.num_row_groups))
    if unpacked > MAX_PARQUET_UNPACKED_BYTES:
        raise FileRejected(f"unpacks to {unpacked} bytes, more than the limit of "
                           f"{MAX_PARQUET_UNPACKED_BYTES} bytes")
    text = [n for n in required if _is_text(schema.field(n).type)]
    try:
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=text).read(columns=list(required))
    except Exception as e:  # noqa: BLE001 - any reader failure means "not Parquet"
        raise FileRejected(f"is not a readable Parquet file ({type(e).__name__})") from None
    decoded = 0
    for name in text:
        col = table.column(name)
        for chunk in col.chunks:
            if not paw.types.is_dictionary(chunk.type):
                continue
            lengths = pc.binary_length(chunk.dictionary)
            longest = pc.max(lengths).as_py() or 0
            if longest > MAX_RECORD_BYTES:
                raise FileRejected(f"has a value of {longest} bytes in column {name}, beyond the "
                                   f"record limit of {MAX_RECORD_BYTES} bytes")
            decoded += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
        if decoded > MAX_PARQUET_UNPACKED_BYTES:
            raise FileRejected(f"unpacks to more than {decoded} bytes of text, more than the limit of "
                               f"{MAX_PARQUET_UNPACKED_BYTES} bytes")
        if paw.types.is_dictionary(col.type):
            _check_utf8(name, [chunk.dictionary for chunk in col.chunks])   # each distinct value once
            table = table.set_column(table.schema.get_field_index(name), name,
                                     col.cast(col.type.value_type))
        else:
            _check_utf8(name, col.chunks)
    for name in required:   # a column stored as a dictionary of text (read as one)
        col = table.column(name)
        if name not in text and paw.types.is_dictionary(col.type):
            _check_utf8(name, [chunk.dictionary for chunk in col.chunks])
    return table


def _check_utf8(name: str, arrays: list) -> None:
    """FileRejected (F03 "cannot be decoded") when a text array holds bytes that are not
    UTF-8. Parquet readers take a string column's bytes as they are; the first to look
    at them would be the warehouse, which refuses them in the middle of the run."""
    for arr in arrays:
        if paw.types.is_string(arr.type) or paw.types.is_large_string(arr.type):
            try:
                arr.validate(full=True)
            except paw.ArrowInvalid:
                raise FileRejected(f"cannot be decoded: column {name} holds text that is not "
                                   "valid UTF-8") from None


def _is_text(t: paw.DataType) -> bool:
    return (paw.types.is_string(t) or paw.types.is_large_string(t) or paw.types.is_binary(t)
            or paw.types.is_large_binary(t))


# Dates and timestamps are read for years 1 to 9999 (what YYYY-MM-DD can write): the raw
# Arrow values (days, or units since 1970-01-01 UTC) from 0001-01-01 to 9999-12-31 inclusive.
_FIRST_DAY = date(1, 1, 1).toordinal() - date(1970, 1, 1).toordinal()
_LAST_DAY = date(9999, 12, 31).toordinal() - date(1970, 1, 1).toordinal()
_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def _check_temporal_range(table: paw.Table) -> None:
    """FileRejected (F03) when a date or timestamp column holds a value outside the years
    1 to 9999, judged on the raw Arrow values: polars panics on such a date (a Rust panic
    message on stderr) and silently wraps a timestamp in seconds it cannot hold in ms."""
    for f in table.schema:
        t = f.type
        if paw.types.is_date32(t):
            lo, hi, raw = _FIRST_DAY, _LAST_DAY, paw.int32()
        elif paw.types.is_date64(t):
            lo, hi, raw = _FIRST_DAY * 86_400_000, (_LAST_DAY + 1) * 86_400_000 - 1, paw.int64()
        elif paw.types.is_timestamp(t):
            per_day = 86_400 * _PER_SECOND[t.unit]
            lo, hi, raw = _FIRST_DAY * per_day, (_LAST_DAY + 1) * per_day - 1, paw.int64()
        else:
            continue
        col = table.column(f.name)
        values = pc.min_max(paw.chunked_array([c.view(raw) for c in col.chunks], raw))
        low, high = values["min"].as_py(), values["max"].as_py()
        if low is not None and (low < lo or high > hi):
            raise FileRejected(f"has column {f.name} with a value outside the years 1 to 9999")


def parse_parquet(data: bytes, required: tuple[str, ...]) -> ParsedFile:
    table = _read_parquet_bounded(data, required)
    _check_temporal_range(table)
    for i, f in enumerate(table.schema):
        if paw.types.is_decimal256(f.type):
            # polars cannot take a 256-bit decimal (it panics): a decimal is still a
            # decimal (docs/spec-readings.md item 2), so narrow it when its values fit.
            try:
                narrow = table.column(i).cast(paw.decimal128(min(f.type.precision, 38), f.type.scale))
            except (paw.ArrowInvalid, paw.ArrowNotImplementedError):
                raise FileRejected(f"has column {f.name} of type {f.type} whose values do not fit "
                                   "38 digits") from None
            table = table.set_column(i, f.name, narrow)
        elif paw.types.is_timestamp(f.type) and f.type.tz is not None and f.type.tz != "UTC":
            # The same instants in UTC: polars knows no fixed offset such as +05:45.
            table = table.set_column(i, f.name, table.column(i).cast(paw.timestamp(f.type.unit, "UTC")))
    try:
        frame = pl.from_arrow(table, rechunk=True)
    except (Exception, pl.exceptions.PanicException) as e:  # noqa: BLE001 - a panic must not end the run
        raise FileRejected(f"has columns that cannot be read ({type(e).__name__})") from None
    try:
        frame = pl.DataFrame([_canonical_text(frame[c]).alias(c) for c in required])
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as e:
        # polars panics rather than raise on some values (a date32 far beyond year 9999,
        # refused before by _check_temporal_range): a finding, never the end of the run
        raise FileRejected(f"has values that cannot be read as text ({type(e).__name__})") from None
    frame = _nulls_for_empty(frame, required)
    return ParsedFile(frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int32)
                                         .alias("source_row")))


# ------------------------------------------------------------------ validation

def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def empty_loaded(dataset: str) -> pl.DataFrame:
    return _empty(loaded_columns(dataset))


def _person_col(c: str) -> pl.Expr:
    """A psn_no for a finding's sharer/beneficiary column: only when it looks like one."""
    return pl.when(pl.col(c).str.contains(RE_PSN)).then(pl.col(c))


def _finding_people(dataset: str) -> list[pl.Expr]:
    if dataset in ("transfers", "relationships"):
        return [_person_col("sharer_psn_no").alias("sharer_psn_no"),
                _person_col("beneficiary_psn_no").alias("beneficiary_psn_no")]
    if dataset == "settlements":
        return [pl.lit(None, pl.String).alias("sharer_psn_no"),
                _person_col("psn_no").alias("beneficiary_psn_no")]
    if dataset == "balances":
        quota = pl.col("account") == "QUOTA"
        return [pl.when(quota).then(_person_col("sharer_psn_no")).otherwise(_person_col("psn_no"))
                .alias("sharer_psn_no"),
                pl.when(quota).then(_person_col("psn_no")).alias("beneficiary_psn_no")]
    return [pl.lit(None, pl.String).alias("sharer_psn_no"),
            pl.lit(None, pl.String).alias("beneficiary_psn_no")]


def _later_duplicates(valid: pl.DataFrame, dataset: str) -> pl.DataFrame | None:
    """The valid rows whose key already occurred in an earlier valid row (F05), with
    record_id = the key and the reason naming the kept row; None when no key
    repeats. A 64-bit hash of the key finds the few candidates fast; the exact
    comparison runs on those only, so a hash collision can never make a row a
    duplicate."""
    keys = list(KEY_COLUMNS[dataset])
    cand = valid.filter(pl.struct(keys).hash().is_duplicated())
    if cand.height == 0:
        return None
    cand = cand.with_columns(
        pl.struct(keys).is_first_distinct().alias("#first"),
        pl.col("source_row").min().over(keys).alias("#first_row"),
        key_label(dataset).alias("record_id"))
    return cand.filter(~pl.col("#first")).with_columns(
        pl.format("{} repeats the key of row {}, which is kept", pl.col("record_id"),
                  pl.col("#first_row")).alias("reasons"))


def validate_rows(dataset: str, parsed: ParsedFile, env: Env, source_file: str
                  ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(loaded, quarantine, findings) of one readable file, all set-based.

    F04 first: every rule of contracts/inbox.py in one select; then F05 among
    the valid rows (docs/spec-readings.md item 4), the first valid occurrence kept."""
    df = (parsed.frame.lazy()
          .with_columns(typed_helpers(dataset))
          .with_columns(row_valid(dataset, env))
          .collect())
    invalid = _f04_rows(df.filter(~pl.col("#valid")), dataset, env)
    valid = df.filter(pl.col("#valid"))
    dup = _later_duplicates(valid, dataset)
    if dup is not None:
        # a filter keeps the file order and costs far less than an anti join
        valid = valid.filter(~pl.col("source_row").is_in(dup["source_row"].implode()))
    q_parts, f_parts = _held_back(dataset, env, source_file, invalid, dup, parsed)
    loaded = _loaded_rows(valid, dataset, env, source_file)
    if not q_parts:
        return loaded, _empty(QUARANTINE_SCHEMA), _empty(FINDINGS_SCHEMA)
    # a row is F04, F05 or ragged, never two: source_row orders them all
    return (loaded,
            pl.concat(q_parts, how="vertical").sort("source_row").collect(),
            pl.concat(f_parts, how="vertical").sort("source_row").collect())


def _f04_rows(invalid: pl.DataFrame, dataset: str, env: Env) -> pl.DataFrame:
    """The rows breaking a column rule (F04), with their record_id and every reason."""
    if invalid.height:
        invalid = invalid.with_columns(rule_flags(dataset, env))
        held = invalid.select(pl.col(f"#ok{i}").all() for i in range(len(rule_flags(dataset, env)))).row(0)
        broken = tuple(i for i, ok in enumerate(held) if not ok)   # only these build a reason
        invalid = invalid.with_columns(reasons_from_flags(dataset, env, broken), record_id_expr(dataset))
    return invalid


def _file_row(source_file: str) -> list[pl.Expr]:
    """Where a row came from: its source_file and source_row."""
    return [pl.lit(source_file).alias("source_file"), pl.col("source_row")]


def _quarantine_rows(frame: pl.LazyFrame, rule: str, dataset: str, env: Env,
                     source_file: str) -> pl.LazyFrame:
    """Held-back rows (F04 or F05) as quarantine rows, the raw fields as JSON."""
    return frame.select(
        pl.lit(env.business_date).alias("business_date"), pl.lit(env.province).alias("file_province"),
        pl.lit(dataset).alias("dataset"), *_file_row(source_file), pl.col("record_id"),
        pl.lit(rule).alias("rule_code"), pl.col("reasons"),
        pl.struct(list(REQUIRED_COLUMNS[dataset])).struct.json_encode().alias("raw"))


def _finding_rows(frame: pl.LazyFrame, rule: str, dataset: str, env: Env,
                  source_file: str) -> pl.LazyFrame:
    """Held-back rows (F04 or F05) as findings naming the row's sharer, beneficiary and amount."""
    amount_col = AMOUNT_COLUMN.get(dataset)
    amount = pl.col(f"{amount_col}#v") if amount_col else pl.lit(None, MONEY)
    return frame.select(
        pl.lit(rule).alias("rule_code"), pl.lit(env.province).alias("province"),
        pl.lit(dataset).alias("dataset"), pl.col("record_id"), *_finding_people(dataset),
        amount.cast(MONEY).alias("amount"), pl.col("reasons").alias("detail"), *_file_row(source_file))


def _ragged_rows(parsed: ParsedFile, dataset: str, env: Env,
                 source_file: str) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The CSV rows with the wrong number of fields (F04) as (quarantine, findings) parts;
    record_id as any F04 row's, from the fields where the header puts them."""
    bad_rows = parsed.bad_rows
    id_columns = ("psn_no", "account", "sharer_psn_no") if dataset == "balances" else (ID_COLUMN[dataset],)
    fields = parsed.bad_fields or [{} for _ in bad_rows]
    ragged = pl.LazyFrame({
        "source_row": [b[0] for b in bad_rows],
        "line": [b[1] for b in bad_rows],
        "reasons": [b[2] for b in bad_rows],
        **{c: [f.get(c) for f in fields] for c in id_columns}},
        schema={"source_row": pl.Int32, "line": pl.String, "reasons": pl.String,
                **{c: pl.String for c in id_columns}})
    ragged = ragged.with_columns(record_id_expr(dataset))
    return (ragged.select(
                pl.lit(env.business_date).alias("business_date"), pl.lit(env.province).alias("file_province"),
                pl.lit(dataset).alias("dataset"), *_file_row(source_file), pl.col("record_id"),
                pl.lit("F04").alias("rule_code"), pl.col("reasons"),
                pl.struct("line").struct.json_encode().alias("raw")),
            ragged.select(
                pl.lit("F04").alias("rule_code"), pl.lit(env.province).alias("province"),
                pl.lit(dataset).alias("dataset"), pl.col("record_id"),
                pl.lit(None, pl.String).alias("sharer_psn_no"), pl.lit(None, pl.String).alias("beneficiary_psn_no"),
                pl.lit(None, MONEY).alias("amount"), pl.col("reasons").alias("detail"), *_file_row(source_file)))


def _held_back(dataset: str, env: Env, source_file: str, invalid: pl.DataFrame,
               dup: pl.DataFrame | None, parsed: ParsedFile
               ) -> tuple[list[pl.LazyFrame], list[pl.LazyFrame]]:
    """The quarantine and finding parts of a file's held-back rows: F04, F05, ragged."""
    # Only the parts that have rows, each built lazily and collected once: most
    # files have none or a handful, and an eager select per part and rule costs
    # more than those rows.
    q_parts: list[pl.LazyFrame] = []
    f_parts: list[pl.LazyFrame] = []
    for frame, rule in ((invalid, "F04"), (dup, "F05")):
        if frame is not None and frame.height:
            q_parts.append(_quarantine_rows(frame.lazy(), rule, dataset, env, source_file))
            f_parts.append(_finding_rows(frame.lazy(), rule, dataset, env, source_file))
    if parsed.bad_rows:
        q_ragged, f_ragged = _ragged_rows(parsed, dataset, env, source_file)
        q_parts.append(q_ragged)
        f_parts.append(f_ragged)
    return q_parts, f_parts


def _loaded_rows(valid: pl.DataFrame, dataset: str, env: Env, source_file: str) -> pl.DataFrame:
    """The rows that pass, typed as the warehouse takes them (loaded_columns), with their lineage."""
    typed = {c.name: (pl.col(f"{c.name}#v") if c.dtype != pl.String() else pl.col(c.name)).alias(c.name)
             for c in DATASET_COLUMNS[dataset]}
    return valid.select(
        pl.lit(env.business_date).alias("business_date"), pl.lit(env.province).alias("file_province"),
        *typed.values(), *derived_columns(dataset), *_file_row(source_file),
    ).cast(loaded_columns(dataset))     # rows are in file order already: filters keep order


# ------------------------------------------------------------------ the manifest

class ManifestInvalid(Exception):
    pass


@dataclass
class Manifest:
    encoding: object
    files: dict


def parse_manifest(raw: bytes, province: str, business_date: date) -> Manifest:
    """The manifest, or ManifestInvalid with a sentence. `files` null = no files."""
    try:
        text = raw.decode("utf-8-sig")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ManifestInvalid("manifest.json is not UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest.json is not a JSON object")
    for key, want, whose in (("province", province, "the folder's "),
                             ("business_date", business_date.isoformat(), "")):
        if key not in doc:
            raise ManifestInvalid(f"manifest.json has no {key}; it must be {whose}{want}")
        if not isinstance(doc[key], str):
            raise ManifestInvalid(f"manifest.json gives {key} as {_json_kind(doc[key])}, "
                                  f"not the text \"{want}\"")
        if doc[key] != want:
            raise ManifestInvalid(f"manifest.json names {key} {str(doc[key])[:20]!r}, "
                                  f"not {whose}{want}")
    files = doc.get("files")
    if files is None:
        files = {}
    if not isinstance(files, dict):
        raise ManifestInvalid("manifest.json has a files entry that is not an object")
    return Manifest(doc.get("encoding"), files)


def _json_kind(value: object) -> str:
    """What a JSON value that is not a string is, for a sentence: `a number (44)`, `null`."""
    if value is None:
        return "null"
    kind = ("a boolean" if isinstance(value, bool) else "a number" if isinstance(value, (int, float))
            else "an array" if isinstance(value, list) else "an object")
    try:
        shown = json.dumps(value, ensure_ascii=True)
    except (ValueError, RecursionError):   # a number of thousands of digits; a deep nesting
        shown = ""
    if not shown or len(shown) > 20:
        return kind
    return f"{kind} ({shown})"


def _entry(entry) -> tuple[int, str] | None:
    """(rows, sha256) of a manifest file entry, None when it is not readable."""
    if not isinstance(entry, dict):
        return None
    rows, sha = entry.get("rows"), entry.get("sha256")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        return None
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
        return None
    return rows, sha.lower()


def declared_rows(deliveries: list[ProvinceDelivery], business_date: date) -> int:
    """The data rows the provinces' manifests declare for D (what sizes the run's memory
    before anything is read); a manifest or entry that cannot be read counts 0 (its
    finding comes with the intake)."""
    total = 0
    for delivery in deliveries:
        if delivery.manifest_bytes is None:
            continue
        try:
            files = parse_manifest(delivery.manifest_bytes, delivery.province, business_date).files
        except ManifestInvalid:
            continue
        total += sum(e[0] for e in map(_entry, files.values()) if e is not None)
    return total


# ------------------------------------------------------------------ one province

def load_province(delivery: ProvinceDelivery, business_date: date) -> ProvinceIntake:
    """Everything one province delivered for D: loaded frames, quarantine, F02-F05,
    file stats and checksums. Pure (no DuckDB); never raises on bad content."""
    load = _ProvinceLoad(delivery, business_date)
    if delivery.manifest_bytes is None:      # no manifest: F01 (stage), nothing is opened
        return load.result()
    manifest = _manifest_or_nothing(load)
    if manifest is None:
        return load.result()
    _note_foreign_names(load, manifest)
    for ds in codes.DATASETS:
        _load_file(load, manifest, ds)
    return load.result()


class _ProvinceLoad:
    """One province's load of D as it goes: what it gathered so far, and the seconds of each part."""

    def __init__(self, delivery: ProvinceDelivery, business_date: date):
        self.delivery = delivery
        self.business_date = business_date
        self.pp = delivery.province
        self.d = business_date.isoformat()
        self.env = Env(business_date, self.pp)
        self.frames = {ds: empty_loaded(ds) for ds in codes.DATASETS}
        self.quarantines: list[pl.DataFrame] = []
        self.finds: list[pl.DataFrame] = []
        self.notes: list[dict] = []
        self.stats: list[FileStat] = []
        self.sums: dict[str, str] = {}
        self.seconds = dict.fromkeys(INTAKE_PARTS, 0.0)   # what the benchmark prints per stage
        self.clock = time.perf_counter()

    def lap(self, part: str) -> None:
        """Book the seconds since the last lap to one part of the load."""
        now = time.perf_counter()
        self.seconds[part] += now - self.clock
        self.clock = now

    def note(self, rule: str, record_id: str, detail: str, dataset: str = "manifest",
             name: str | None = None) -> None:
        """A finding about the delivery or a whole file (F02, F03), not about a row."""
        self.notes.append({"rule_code": rule, "province": self.pp, "dataset": dataset,
                           "record_id": record_id, "detail": detail,
                           "source_file": f"{self.d}/{self.pp}/{name}" if name else None})

    def reject(self, stat: FileStat, name: str, rule: str, detail: str) -> None:
        """A data file rejected whole (F02, F03): its file_loads row says why, and a finding."""
        stat.rejected, stat.reject_rule, stat.reject_reason = True, rule, detail
        self.note(rule, name, detail + ".", dataset=stat.dataset, name=name)

    def keep(self, stat: FileStat, rows_read: int, loaded: pl.DataFrame, quarantine: pl.DataFrame,
             found: pl.DataFrame) -> None:
        """A file that was read: its loaded rows, quarantine and findings (F04, F05), and their counts."""
        self.frames[stat.dataset] = loaded
        self.quarantines.append(quarantine)
        self.finds.append(found)
        stat.rows_read = rows_read
        stat.rows_loaded = loaded.height
        stat.rows_quarantined = quarantine.height

    def result(self) -> ProvinceIntake:
        """The province's intake, its loaded rows checked against their contract (pandera)."""
        extra = _notes_frame(self.notes)
        intake = ProvinceIntake(
            self.pp, self.business_date, self.frames,
            pl.concat([_empty(QUARANTINE_SCHEMA), *self.quarantines], how="vertical"),
            pl.concat([extra, *self.finds], how="vertical"), self.stats, self.sums)
        self.lap("read, sha256, manifest")
        check_loaded(intake)   # here, on the loading thread, not on the warehouse's
        intake.contract_checked = True
        self.lap("contract of the loaded rows (pandera)")
        intake.seconds = self.seconds
        return intake


def _notes_frame(notes: list[dict]) -> pl.DataFrame:
    """The findings about the delivery and whole files (F02, F03) as rows of FINDINGS_SCHEMA."""
    extra = pl.DataFrame(notes, schema={k: FINDINGS_SCHEMA[k] for k in
                                        ("rule_code", "province", "dataset", "record_id",
                                         "detail", "source_file")})
    return extra.with_columns(pl.lit(None, pl.String).alias("sharer_psn_no"),
                              pl.lit(None, pl.String).alias("beneficiary_psn_no"),
                              pl.lit(None, MONEY).alias("amount"),
                              pl.lit(None, pl.Int32).alias("source_row")).select(list(FINDINGS_SCHEMA))


def _manifest_or_nothing(load: _ProvinceLoad) -> Manifest | None:
    """The province's manifest; None when invalid (F03: the province delivers nothing)."""
    pp, d = load.pp, load.d
    try:
        if load.delivery.manifest_problem:
            raise ManifestInvalid(load.delivery.manifest_problem)
        return parse_manifest(load.delivery.manifest_bytes, pp, load.business_date)
    except ManifestInvalid as e:
        why = f"{e}; the province delivers nothing for {d}"
        load.note("F03", MANIFEST, why + ".", name=MANIFEST)
        for ds in codes.DATASETS:
            load.stats.append(FileStat(pp, ds, f"{d}/{pp}/{ds}.csv", None, None, rejected=True,
                                       reject_rule="F03", reject_reason=why))
        return None


def _note_foreign_names(load: _ProvinceLoad, manifest: Manifest) -> None:
    """F03 on each name in the manifest that is not a data file of the inbox contract (never opened)."""
    for name in manifest.files:
        if name not in DATA_FILE_NAMES:
            shown = str(name)[:100]
            load.note("F03", shown, f"manifest.json names {shown!r}, which is not a data file of the "
                      "inbox contract; it was not opened.")


def _load_file(load: _ProvinceLoad, manifest: Manifest, ds: str) -> None:
    """One dataset's file of the province: its file_loads row and, past F02 and F03, its rows."""
    listed = [n for n in (f"{ds}.csv", f"{ds}.parquet") if n in manifest.files]
    name = listed[0] if listed else f"{ds}.csv"
    is_csv = name.endswith(".csv")
    stat = FileStat(load.pp, ds, f"{load.d}/{load.pp}/{name}", None,
                    _shown_encoding(manifest.encoding) if is_csv else None)
    load.stats.append(stat)
    entry = _manifest_entry(load, manifest, stat, name, listed)
    if entry is None:
        return
    want_rows, want_sha = entry
    data = _checked_bytes(load, stat, name, want_sha)
    if data is None:
        return
    load.lap("read, sha256, manifest")
    try:
        parsed = _parse_file(data, ds, is_csv, manifest.encoding)
    except FileRejected as e:
        load.reject(stat, name, "F03", f"{name} {e.reason}")
        return
    finally:
        del data
        load.lap("decode + parse")
    if parsed.rows_read != want_rows:
        load.reject(stat, name, "F02", f"{name} has {parsed.rows_read} data rows, manifest.json says {want_rows}")
        return
    loaded, quarantine, found = validate_rows(ds, parsed, load.env, stat.source_file)
    load.lap("validate (F04, F05)")
    load.keep(stat, parsed.rows_read, loaded, quarantine, found)


def _shown_encoding(encoding: object) -> str:
    """The encoding a CSV's file_loads row shows: the canonical name, else the declared text."""
    return ENCODINGS.get(str(encoding).strip().lower(), str(encoding)[:30])


def _manifest_entry(load: _ProvinceLoad, manifest: Manifest, stat: FileStat, name: str,
                    listed: list[str]) -> tuple[int, str] | None:
    """(rows, sha256) the manifest declares for the dataset's file; None when F02 rejects it."""
    ds = stat.dataset
    if not listed:
        load.reject(stat, name, "F02", f"manifest.json does not list a {ds} file")
        return None
    if len(listed) > 1:
        load.reject(stat, name, "F02", f"manifest.json lists both {ds}.csv and {ds}.parquet")
        return None
    entry = _entry(manifest.files[name])
    if entry is None:
        load.reject(stat, name, "F02", f"manifest.json has no readable rows and sha256 for {name}")
    return entry


def _checked_bytes(load: _ProvinceLoad, stat: FileStat, name: str, want_sha: str) -> bytes | None:
    """The file's bytes, sha256 recorded; None when absent, refused, oversize or not as declared."""
    got = load.delivery.read(name)
    if got.status == "absent":
        load.reject(stat, name, "F02", f"{name} is listed in manifest.json but absent")
        return None
    if got.status == "oversize":
        load.reject(stat, name, "F03", f"{got.detail}; it was not read")
        return None
    if got.status != "ok":
        load.reject(stat, name, "F02", f"{name} was not opened: {got.detail}")
        return None
    data = got.data
    sha = hashlib.sha256(data).hexdigest()
    stat.sha256 = sha
    load.sums[stat.source_file] = sha
    if sha != want_sha:
        load.reject(stat, name, "F02", f"sha256 of {name} is {sha[:12]}…, manifest.json says {want_sha[:12]}…")
        return None
    return data


def _parse_file(data: bytes, ds: str, is_csv: bool, encoding: object) -> ParsedFile:
    """The file's required columns as canonical text (a CSV in the declared encoding, or Parquet)."""
    required = REQUIRED_COLUMNS[ds]
    if is_csv:
        return parse_csv(decode_csv_text(data, encoding), required)
    return parse_parquet(data, required)


# ------------------------------------------------------------------ into the warehouse

STAGED_TABLES = ("persons", "relationships", "transfers", "settlements", "balances",
                 "regions", "institutions", "quarantine", "file_loads")


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame,
            columns: list[str] | None = None) -> None:
    """One set-based INSERT of a whole frame, read by DuckDB from the frame's Arrow
    buffers (no row loop, no copy in Python).

    The rows are handed over by a replacement scan of this local variable, not by
    `register`: a registered view dropped inside the run's transaction lives on
    until COMMIT (DuckDB keeps dropped catalog entries for its MVCC), and with it
    every province's rows, which made the nation's frames the run's peak memory."""
    if frame.height == 0:
        return
    cols = ", ".join(columns or frame.columns)
    # Strings as Arrow string views, which is how polars holds them: no copy into
    # one contiguous buffer, and DuckDB reads views with less work (about 10 % of
    # a national day's insert CPU).
    _recon_intake_rows = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # noqa: F841 - DuckDB finds it by name
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _recon_intake_rows")


def f01_findings(inbox: InboxDate) -> pl.DataFrame:
    """F01 MISSING_EXPORT: a live province with no folder or no manifest for D."""
    d = inbox.business_date.isoformat()
    return pl.DataFrame({
        "rule_code": ["F01"] * len(inbox.missing),
        "province": list(inbox.missing), "dataset": ["manifest"] * len(inbox.missing),
        "record_id": list(inbox.missing),
        "sharer_psn_no": [None] * len(inbox.missing), "beneficiary_psn_no": [None] * len(inbox.missing),
        "amount": [None] * len(inbox.missing),
        "detail": [inbox.missing_detail.get(p, f"province {p} is live on {d} but delivered nothing")
                   .capitalize() + "." for p in inbox.missing],
        "source_file": [f"{d}/{p}/{MANIFEST}" for p in inbox.missing],
        "source_row": [None] * len(inbox.missing),
    }, schema=FINDINGS_SCHEMA)


def stage(con: duckdb.DuckDBPyConnection, ctx: RunContext, inbox: InboxDate,
          intakes: Iterable[ProvinceIntake]) -> None:
    """Replace D's intake partition of the warehouse and record F01-F05 in d_findings.

    `intakes` may be a list or a stream: each province is inserted as it comes
    and dropped before the next is taken, so a run holds the provinces in
    flight, not the nation (issue 12). Provinces staged elsewhere (a Dask worker's
    Parquet) are files, not rows in memory: consecutive ones are inserted together,
    one statement per table (stage_staged). A stream must come in province order;
    a list is sorted here. Rows reach every table in the same order either way
    (F01 first, then province by province).

    The caller owns the transaction (a run is atomic) and has run
    create_warehouse and bind_date."""
    d = ctx.business_date
    for t in STAGED_TABLES:
        con.execute(f"DELETE FROM {t} WHERE business_date = ?", [d])
    ref = inbox.reference
    _insert(con, "regions", ref.regions.with_columns(pl.lit(d).alias("business_date")))
    _insert(con, "institutions", ref.institutions.with_columns(pl.lit(d).alias("business_date")))
    _insert(con, "d_findings", f01_findings(inbox), ["rule_code", *FINDING_COLUMNS])
    if isinstance(intakes, (list, tuple)):
        intakes = sorted(intakes, key=lambda i: i.province)
    staged: list = []   # provinces staged elsewhere, one after the other: inserted together
    for intake in intakes:
        if _is_staged(intake):
            staged.append(intake)   # files, not rows in memory: holding them costs nothing
            continue
        stage_staged(con, d, staged)
        staged = []
        stage_province(con, d, intake)
        del intake   # its rows are in the warehouse: free them before the next one arrives
    stage_staged(con, d, staged)


def check_loaded(intake) -> None:
    """The contract of record at the warehouse door: pandera checks the typed rows
    (a failure here is a bug, not bad input). The one-pass schema checks them; when
    it fails, the rule-by-rule schema says which rule (and raises its error)."""
    for ds in codes.DATASETS:
        frame = intake.frames[ds]
        if frame.height:
            try:
                LOADED_SCHEMAS_ONE_PASS[ds].validate(frame)
            except pa.errors.SchemaError:
                LOADED_SCHEMAS[ds].validate(frame)
                raise


def _is_staged(intake) -> bool:
    """An intake staged elsewhere (a Dask worker's Parquet, flows/distributed.py): it
    inserts its own files (`insert_staged`), which it proves are the ones its worker
    wrote, after the worker checked them against the contract."""
    return hasattr(intake, "insert_staged")


def stage_province(con: duckdb.DuckDBPyConnection, d: date, intake) -> None:
    """One province's loaded rows, quarantine, file stats and F02-F05 into the
    warehouse: one INSERT per table. A ProvinceIntake of load_province had its rows
    checked on its own thread and hands over its frames' Arrow buffers; any other
    intake of frames is checked here."""
    if _is_staged(intake):
        stage_staged(con, d, [intake])
        return
    _stage_frames(con, intake)
    _insert_file_loads(con, d, [intake])


def _stage_frames(con: duckdb.DuckDBPyConnection, intake) -> None:
    """The loaded rows, quarantine and F02-F05 of an intake held as frames (checked
    against the contract here unless load_province checked them on its thread)."""
    if not getattr(intake, "contract_checked", False):
        check_loaded(intake)
    for ds in codes.DATASETS:
        _insert(con, ds, intake.frames[ds])
    _insert(con, "quarantine", intake.quarantine)
    _insert(con, "d_findings", intake.findings, ["rule_code", *FINDING_COLUMNS])


def stage_staged(con: duckdb.DuckDBPyConnection, d: date, intakes: list) -> None:
    """The loaded rows, quarantine, file stats and F02-F05 of provinces staged elsewhere
    (consecutive in province order), in the columns of the contract: one INSERT per table
    for all of them. Each table gets its rows in the same order as province by province
    from frames."""
    if not intakes:
        return
    insert = type(intakes[0]).insert_staged
    for ds in codes.DATASETS:
        insert(con, intakes, ds, f"{ds}.parquet", list(loaded_columns(ds)))
    insert(con, intakes, "quarantine", "quarantine.parquet", list(QUARANTINE_SCHEMA))
    insert(con, intakes, "d_findings", "findings.parquet", ["rule_code", *FINDING_COLUMNS])
    _insert_file_loads(con, d, intakes)


def _insert_file_loads(con: duckdb.DuckDBPyConnection, d: date, intakes: list) -> None:
    """The file stats of `intakes` into file_loads, as rows of D."""
    _insert(con, "file_loads", file_loads_frame(intakes).with_columns(pl.lit(d).alias("business_date")),
            ["business_date", *FILE_LOADS_SCHEMA])


def file_loads_frame(intakes: list[ProvinceIntake]) -> pl.DataFrame:
    """File stats of all provinces (the file_loads columns but business_date),
    for the warehouse and the run summary."""
    rows = [dict(s.__dict__) for i in intakes for s in i.files]
    return pl.DataFrame(rows, schema=FILE_LOADS_SCHEMA)


__all__ = ["FileRejected", "FileStat", "ParsedFile", "ProvinceIntake", "decode_csv_text",
           "parse_csv", "parse_parquet", "validate_rows", "parse_manifest", "load_province",
           "stage", "stage_province", "stage_staged", "check_loaded", "f01_findings", "file_loads_frame"]
