"""The column rules of ../shared/spec/inbox.md, written once, used three ways.

Every rule of a data file is one `ColumnRule`: the column it is about, a short
description, a polars expression that is True where a row *passes*, and a
polars expression giving the reason text where it fails. The same table is used

1. by the intake, which evaluates every rule over a whole file in one polars
   select (`row_valid()`), then, for the failing rows only, each rule's flag
   (`rule_flags()`) and reason (`reasons_from_flags()`; `row_checks()` is the
   same in one expression), so that each invalid row gets *every* broken rule
   in its F04 detail (rules.md §1), vectorised, with no Python loop over rows;
2. by `text_schema()` to build the pandera DataFrameSchema of a delivered file
   (all columns text, one pa.Check per rule wrapping the very same expression),
   so pandera is the contract of record and cannot drift from the reasons;
3. by `LOADED_SCHEMAS`, the typed pandera schemas of the rows that reach the
   warehouse (DECIMAL(18,2) money, Shanghai wall-time timestamps, dates,
   booleans), checked again on the typed values (`LOADED_SCHEMAS_ONE_PASS`: the
   same rules in one check, which the intake runs first).

Rules are judged on the *canonical text* of a field: CSV text as delivered, or
Parquet native values turned into the same text (docs/spec-readings.md item 2).
An empty field is null. A rule about a value passes on null; the separate
"is missing" rule catches a required null, so a row never gets two reasons
for one fault. Cross-column rules pass when an input they need is unreadable
for the same reason.

Every column declares its longest field (`Col.max_chars`); the file, record,
header and Parquet limits are the MAX_* constants below. They bound what a run
holds in memory (docs/spec-readings.md item 7j).

A rule's expressions may use the helper columns of `typed_helpers()`
(`<col>#v`: the typed value, null where the text does not parse; `<col>#fmt`
and for money `#dec`, `#two`: whether the text has the form, so that each
pattern is matched once per row), which the intake adds before evaluating the
rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date
from pathlib import Path
from typing import Callable

import pandera.polars as pa
import polars as pl

from contracts import codes
from contracts.certno import CHECK_CHARS, WEIGHTS

SHANGHAI = "Asia/Shanghai"

# ---------------------------------------------------------------- size limits
# Declared maxima (docs/spec-readings.md "Size limits"). Memory of a run is
# bounded by these, never by what a province sends.

# Every column of the five data files holds an id, a code, a number, a date or
# a timestamp: the longest legitimate value is a timestamp with nanoseconds and
# an offset (35 characters). 64 leaves room for longer ids of a province.
MAX_ID_CHARS = 64
# A data file: a national day's biggest file (Guangdong's transfers of a 5M-row
# day, about 1M rows of ~200 bytes = ~200 MB) with a margin of five.
MAX_DATA_FILE_BYTES = 1 << 30
# One CSV record (a row with all its fields): every field at its limit, quoted,
# with separators, is below 2 KiB, so a longer record cannot hold a valid row.
# Records up to this size are parsed (an over-long field is then F04); the CSV
# reader works in blocks of this size and refuses the file (F03) when a record
# does not fit in two of them, before any field of it is materialised.
MAX_RECORD_BYTES = 1 << 20
# A header row: the contract's columns plus extra ones (ignored), at most this many.
# Every header field becomes a column of the CSV reader, so this bounds its memory.
MAX_HEADER_FIELDS = 1000
# A Parquet file is compressed: what it unpacks to is bounded too.
MAX_PARQUET_UNPACKED_BYTES = 4 * MAX_DATA_FILE_BYTES
# Reference files: free-text region names.
MAX_NAME_CHARS = 200
# Display in the auditors' views (report.html, exceptions.xlsx): longer text is
# shortened there, the full value stays in exceptions.csv/parquet.
MAX_DETAIL_DISPLAY_CHARS = 300
MAX_RECORD_ID_DISPLAY_CHARS = MAX_ID_CHARS
MONEY = pl.Decimal(18, 2)
TIMESTAMP = pl.Datetime("us")

# Patterns use [0-9], never \d: polars' regex engine treats \d as any Unicode digit.
RE_PSN = r"^[0-9]{20}$"
RE_CERTNO = r"^[0-9]{17}[0-9X]$"
RE_ADMDVS = r"^[0-9]{6}$"
RE_FIXMEDINS = r"^[HP][0-9]{11}$"
RE_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
RE_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
RE_TWO_DECIMALS = r"^-?[0-9]+(\.[0-9]{1,2})?$"
RE_MONEY = r"^-?[0-9]{1,16}(\.[0-9]{1,2})?$"  # fits DECIMAL(18,2)
RE_TS_NAIVE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?$"
RE_TS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"


@dataclass(frozen=True)
class Env:
    """What a rule may depend on besides the row: the business date D and the
    province PP of the folder the file came from."""
    business_date: date
    province: str


@dataclass(frozen=True)
class Col:
    """One column of a data file: its kind decides its parse and its rules."""
    name: str
    kind: str            # id psn certno code admdvs province date bool money timestamp
    required: bool = True
    codes: tuple[str, ...] = ()
    sign: str = ""       # '>0' or '>=0' for money
    max_chars: int = MAX_ID_CHARS   # the longest field accepted (characters of its canonical text)

    @property
    def dtype(self) -> pl.DataType:
        return {"date": pl.Date(), "bool": pl.Boolean(), "money": MONEY,
                "timestamp": TIMESTAMP}.get(self.kind, pl.String())


def _c(*a, **k) -> Col:
    return Col(*a, **k)


DATASET_COLUMNS: dict[str, tuple[Col, ...]] = {
    "persons": (
        _c("psn_no", "psn"), _c("certno", "certno"),
        _c("insutype", "code", codes=codes.INSUTYPES),
        _c("insu_status", "code", codes=codes.INSU_STATUSES),
        _c("insu_admdvs", "admdvs"), _c("as_of", "date"),
    ),
    "relationships": (
        _c("event_id", "id"), _c("relation_id", "id"),
        _c("event_type", "code", codes=codes.EVENT_TYPES),
        _c("sharer_psn_no", "psn"), _c("beneficiary_psn_no", "psn"),
        _c("beneficiary_province", "province"),
        _c("relation_code", "code", codes=codes.RELATION_CODES),
        _c("commitment_signed", "bool", required=False),   # required for ESTABLISH (cross rule)
        _c("channel", "code", codes=codes.CHANNELS), _c("event_time", "timestamp"),
    ),
    "transfers": (
        _c("transfer_id", "id"), _c("side", "code", codes=codes.SIDES), _c("relation_id", "id"),
        _c("sharer_psn_no", "psn"), _c("beneficiary_psn_no", "psn"),
        _c("sharer_province", "province"), _c("beneficiary_province", "province"),
        _c("amount", "money", sign=">0"),
        _c("status", "code", codes=codes.TRANSFER_STATUSES), _c("transfer_time", "timestamp"),
    ),
    "settlements": (
        _c("setl_id", "id"), _c("psn_no", "psn"),
        _c("status", "code", codes=codes.SETTLEMENT_STATUSES),
        _c("orig_setl_id", "id", required=False),           # REFUND only (cross rule)
        _c("expense_type", "code", codes=codes.EXPENSE_TYPES),
        # by expense_type (cross rule); no pattern here (reading 7l): an odd code is unknown, S15
        _c("fixmedins_code", "id", required=False),
        _c("total_amount", "money"), _c("personal_burden", "money", sign=">=0"),
        _c("wallet_pay", "money", sign=">0"), _c("setl_time", "timestamp"),
    ),
    "balances": (
        _c("psn_no", "psn"), _c("account", "code", codes=codes.ACCOUNTS),
        _c("sharer_psn_no", "psn", required=False),         # QUOTA only (cross rule)
        _c("sharer_province", "province", required=False),  # QUOTA only (cross rule)
        _c("opening_balance", "money", sign=">=0"), _c("closing_balance", "money", sign=">=0"),
    ),
}

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    ds: tuple(c.name for c in cols) for ds, cols in DATASET_COLUMNS.items()}

# Keys of rules.md F05 and record ids of docs/spec-readings.md item 3.
ID_COLUMN = {"persons": "psn_no", "relationships": "event_id", "transfers": "transfer_id",
             "settlements": "setl_id", "balances": "psn_no"}
KEY_COLUMNS = {"persons": ("psn_no",), "relationships": ("event_id",),
               "transfers": ("transfer_id", "side"), "settlements": ("setl_id",),
               "balances": ("psn_no", "account", "sharer_psn_no")}
# The amount a finding of the dataset carries (outputs.md "the record's amount").
AMOUNT_COLUMN = {"transfers": "amount", "settlements": "wallet_pay"}


def v(col: str) -> pl.Expr:
    """The typed value helper column of `col` (see typed_helpers)."""
    return pl.col(f"{col}#v")


def shown(col: str) -> pl.Expr:
    """A field as quoted in a reason: at most 40 characters, so a huge field
    cannot blow up a finding."""
    c = pl.col(col)
    return pl.when(c.str.len_chars() > 40).then(c.str.slice(0, 40) + "…").otherwise(c)


def masked(col: str) -> pl.Expr:
    """A certno as it may appear in text: first 6 and last 4 characters only
    (docs/spec-readings.md item 14)."""
    c = pl.col(col)
    return pl.when(c.str.len_chars() > 10).then(
        c.str.slice(0, 6) + "********" + c.str.slice(-4)).otherwise(pl.lit("**********"))


def _q(col: str, certno: bool = False) -> pl.Expr:
    """`col 'value'` for a reason text. A NUL byte of the value is written `\\x00`: raw,
    it would cut the finding's detail short in the CSV readers auditors use."""
    value = masked(col) if certno else shown(col)
    return pl.lit(f"{col} '") + value.str.replace_all("\x00", "\\x00", literal=True) + pl.lit("'")


def shape(col: str, form: str = "fmt") -> pl.Expr:
    """A form helper column of `col` (see typed_helpers): True where the text has
    the form, null where the field is empty."""
    return pl.col(f"{col}#{form}")


def _certno_check(c: pl.Expr) -> pl.Expr:
    """The GB 11643 check character of the first 17 characters (meaningful where
    they are digits). Digits are read as bytes ('0' is 48): a byte is one
    integer operation, where a one-character slice parsed as a number is a
    string built per digit and row (the costliest helper of a national day)."""
    b = c.cast(pl.Binary)
    total = pl.sum_horizontal([(b.bin.get(i, null_on_oob=True).cast(pl.Int32) - 48) * w
                               for i, w in enumerate(WEIGHTS)])
    return (total % 11).replace_strict(dict(enumerate(CHECK_CHARS)), default=None,
                                       return_dtype=pl.String)


@lru_cache(maxsize=None)  # expressions are immutable: build once per dataset
def typed_helpers(dataset: str) -> tuple[pl.Expr, ...]:
    """Expressions adding, in one select, `<col>#v` for every non-text column (the
    parsed value, null where the text does not have the right form) and the
    form helpers `<col>#fmt` (money also `#dec`, `#two`) that the rules read.
    Parsing is guarded by the pattern first, because polars casts are lenient
    ('0.001' -> 0.00). Each pattern is matched once per row: the rules and the
    parse read the same helper (polars evaluates the repeated expression once)."""
    out = []
    for col in DATASET_COLUMNS[dataset]:
        n, c = col.name, pl.col(col.name)
        if col.kind == "money":
            money = c.str.contains(RE_MONEY)
            out += [c.str.contains(RE_DECIMAL).alias(f"{n}#dec"),
                    c.str.contains(RE_TWO_DECIMALS).alias(f"{n}#two"), money.alias(f"{n}#fmt")]
            e = pl.when(money).then(c).cast(MONEY, strict=False)
        elif col.kind == "date":
            e = pl.when(c.str.contains(RE_DATE)).then(c).str.to_date("%Y-%m-%d", strict=False)
        elif col.kind == "bool":
            e = pl.when(c == "true").then(True).when(c == "false").then(False)
        elif col.kind == "timestamp":
            good = c.str.contains(RE_TS)
            out.append(good.alias(f"{n}#fmt"))
            # Z can only be the last character of a text matching RE_TS.
            e = (pl.when(good).then(c.str.replace("Z", "+00:00", literal=True))
                 .str.to_datetime(TS_FORMAT, strict=False, time_unit="us")
                 .dt.convert_time_zone(SHANGHAI).dt.replace_time_zone(None))
        elif col.kind == "admdvs":
            out.append(c.str.contains(RE_ADMDVS).alias(f"{n}#fmt"))
            continue
        elif col.kind == "certno":
            good = c.str.contains(RE_CERTNO)
            out.append(good.alias(f"{n}#fmt"))
            out.append(pl.when(good).then(_certno_check(c)).alias(f"{n}#check"))
            # Year 0000 does not exist in the Gregorian calendar (1 BC is followed by
            # AD 1), though polars' proleptic %Y reads it: not a real date.
            # Birth dates are nearly all distinct: polars' cache of converted values costs more
            # than it saves here (as_of, one date per file, keeps it).
            out.append(pl.when(good & (c.str.slice(6, 4) != "0000")).then(c.str.slice(6, 8))
                       .str.to_date("%Y%m%d", strict=False, cache=False).alias(f"{n}#birth"))
            continue
        else:
            continue
        out.append(e.alias(f"{n}#v"))
    return tuple(out)


@dataclass(frozen=True)
class ColumnRule:
    """One rule of inbox.md. `ok(env)` is True where the row passes (null
    counts as pass); `reason(env)` is the text for a failing row."""
    dataset: str
    column: str          # the column the rule is about ('' = the row as a whole)
    description: str
    ok: Callable[[Env], pl.Expr]
    reason: Callable[[Env], pl.Expr]


def _column_rules(dataset: str, col: Col) -> list[ColumnRule]:
    """The rules of one column: its length limit, required, then the rules of its kind (_KIND_RULES)."""
    n = col.name
    c = pl.col(n)
    R = lambda desc, ok, reason: ColumnRule(dataset, n, desc, ok, reason)  # noqa: E731
    rules: list[ColumnRule] = []
    limit = col.max_chars
    rules.append(R(f"{n} is at most {limit} characters",
                   lambda e: c.is_null() | (c.str.len_chars() <= limit),
                   lambda e: pl.lit(f"{n} is ") + c.str.len_chars().cast(pl.String)
                   + pl.lit(f" characters long, more than the limit of {limit}")))
    if col.required:
        rules.append(R(f"{n} is required", lambda e: c.is_not_null(),
                       lambda e: pl.lit(f"{n} is missing")))
    kind_rules = _KIND_RULES.get(col.kind)
    if kind_rules is not None:
        rules += kind_rules(col, R)
    return rules


# A kind's rules: (column, R) -> rules, where R(description, ok, reason) makes a
# ColumnRule of that column.
_RuleMaker = Callable[[str, Callable[[Env], pl.Expr], Callable[[Env], pl.Expr]], ColumnRule]


def _psn_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A person number (psn_no of an insured person, a sharer or a beneficiary): 20 digits."""
    n = col.name
    c = pl.col(n)
    return [R(f"{n} is 20 digits", lambda e: c.is_null() | c.str.contains(RE_PSN),
              lambda e: _q(n) + " is not 20 digits")]


def _certno_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """An identity card number: 17 digits and a GB 11643 check character, a birth date not after D."""
    n = col.name
    c = pl.col(n)
    return [
        R(f"{n} is 17 digits and a check character",
          lambda e: c.is_null() | shape(n),
          lambda e: _q(n, True) + " is not 17 digits followed by a digit or X"),
        R(f"{n} has a valid GB 11643 check character",
          lambda e: pl.col(f"{n}#check").is_null() | (pl.col(f"{n}#check") == c.str.slice(17, 1)),
          lambda e: _q(n, True) + " has a wrong check character (expected "
          + pl.col(f"{n}#check") + ")"),
        R(f"{n} holds a real birth date",
          lambda e: ~shape(n).fill_null(False) | pl.col(f"{n}#birth").is_not_null(),
          lambda e: _q(n, True) + " holds no real birth date"),
        R(f"{n} birth date is not after D",
          lambda e: pl.col(f"{n}#birth").is_null() | (pl.col(f"{n}#birth") <= e.business_date),
          lambda e: _q(n, True) + pl.lit(f" has a birth date after {e.business_date.isoformat()}")),
    ]


def _code_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A coded value (insutype, event_type, side, status, ...): one of its code list, case-sensitive."""
    n = col.name
    c = pl.col(n)
    allowed = list(col.codes)
    return [R(f"{n} is one of {', '.join(col.codes)}",
              lambda e: c.is_null() | c.is_in(allowed),
              lambda e: _q(n) + f" is not a valid code (codes are case-sensitive)")]


def _admdvs_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """An administrative division: 6 digits, inside the province of the file."""
    n = col.name
    c = pl.col(n)
    return [R(f"{n} is 6 digits", lambda e: c.is_null() | shape(n),
              lambda e: _q(n) + " is not 6 digits"),
            R(f"{n} starts with the file's province",   # judged whatever the shape: F04 lists every rule
              lambda e: c.is_null() | c.str.starts_with(e.province),
              lambda e: _q(n) + pl.lit(f" is not in the file's province {e.province}"))]


def _province_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A province (of a sharer or a beneficiary): one of the 31 province codes."""
    n = col.name
    c = pl.col(n)
    return [R(f"{n} is a province code",
              lambda e: c.is_null() | c.is_in(list(codes.PROVINCES)),
              lambda e: _q(n) + " is not a province code")]


def _date_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A calendar date YYYY-MM-DD."""
    n = col.name
    c = pl.col(n)
    return [R(f"{n} is a date YYYY-MM-DD", lambda e: c.is_null() | v(n).is_not_null(),
              lambda e: _q(n) + " is not a date YYYY-MM-DD")]


def _bool_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A flag: true or false."""
    n = col.name
    c = pl.col(n)
    return [R(f"{n} is true or false", lambda e: c.is_null() | v(n).is_not_null(),
              lambda e: _q(n) + " is not true or false")]


def _money_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """An amount of money: at most 2 decimals, fits DECIMAL(18,2), and the column's sign."""
    n = col.name
    c = pl.col(n)
    dec = lambda: shape(n, "dec")          # noqa: E731
    two = lambda: shape(n, "two")          # noqa: E731
    rules = [R(f"{n} is a decimal number", lambda e: c.is_null() | dec(),
               lambda e: _q(n) + " is not a decimal number"),
             R(f"{n} has at most 2 decimals", lambda e: c.is_null() | ~dec() | two(),
               lambda e: _q(n) + " has more than 2 decimals" + _sign_of_text(col)),
             R(f"{n} fits DECIMAL(18,2)", lambda e: c.is_null() | ~two() | v(n).is_not_null(),
               lambda e: _q(n) + " is too large" + _sign_of_text(col))]
    if col.sign == ">0":
        rules.append(R(f"{n} > 0", lambda e: v(n).is_null() | (v(n) > 0),
                       lambda e: _q(n) + " is not > 0"))
    elif col.sign == ">=0":
        rules.append(R(f"{n} >= 0", lambda e: v(n).is_null() | (v(n) >= 0),
                       lambda e: _q(n) + " is negative"))
    return rules


def _sign_of_text(col: Col) -> pl.Expr:
    """The sign rule's reason for an amount that has no value (more than 2 decimals, or too
    large), read off its decimal text: F04 lists every broken rule. Built for failing rows
    only, so the national day's clean amounts pay nothing for it."""
    c = pl.col(col.name)
    nonzero = c.str.strip_chars("-0.").str.len_bytes() > 0   # the text of a decimal number
    negative = c.str.starts_with("-") & nonzero
    if col.sign == ">0":
        broken, says = negative | ~nonzero, " is not > 0"
    elif col.sign == ">=0":
        broken, says = negative, " is negative"
    else:
        return pl.lit("")
    return pl.when(broken).then(pl.lit("; ") + _q(col.name) + says).otherwise(pl.lit(""))


def _timestamp_rules(col: Col, R: _RuleMaker) -> list[ColumnRule]:
    """A point in time: ISO 8601 with an offset, a real instant, on D in Asia/Shanghai."""
    n = col.name
    c = pl.col(n)
    return [
        R(f"{n} is ISO 8601 with an offset", lambda e: c.is_null() | shape(n),
          lambda e: pl.when(c.str.contains(RE_TS_NAIVE))
          .then(_q(n) + " has no offset")
          .otherwise(_q(n) + " is not an ISO 8601 timestamp with offset")),
        R(f"{n} is a real instant",
          lambda e: ~shape(n).fill_null(False) | v(n).is_not_null(),
          lambda e: _q(n) + " is not a valid timestamp"),
        R(f"{n} falls on D in Asia/Shanghai",
          lambda e: v(n).is_null() | (v(n).dt.date() == e.business_date),
          lambda e: _q(n) + pl.lit(f" is not on {e.business_date.isoformat()} in Asia/Shanghai")),
    ]


# Col.kind -> the rules of that kind (kind "id" has only the length and required rules).
_KIND_RULES: dict[str, Callable[[Col, _RuleMaker], list[ColumnRule]]] = {
    "psn": _psn_rules, "certno": _certno_rules, "code": _code_rules, "admdvs": _admdvs_rules,
    "province": _province_rules, "date": _date_rules,
    "bool": _bool_rules, "money": _money_rules, "timestamp": _timestamp_rules,
}


def _row_rules(dataset: str) -> list[ColumnRule]:
    """Rules that read several columns of a row."""
    col = pl.col
    R = lambda column, desc, ok, reason: ColumnRule(dataset, column, desc, ok, reason)  # noqa: E731
    if dataset == "persons":
        return [R("as_of", "as_of = D", lambda e: v("as_of").is_null() | (v("as_of") == e.business_date),
                  lambda e: _q("as_of") + pl.lit(f" is not {e.business_date.isoformat()}"))]
    if dataset == "relationships":
        return [R("commitment_signed", "commitment_signed is required for ESTABLISH",
                  lambda e: (col("event_type") != "ESTABLISH").fill_null(True) | col("commitment_signed").is_not_null(),
                  lambda e: pl.lit("commitment_signed is missing for ESTABLISH"))]
    if dataset == "transfers":
        return [
            R("sharer_province", "sharer_province = PP when side is OUT",
              lambda e: (col("side") != "OUT").fill_null(True) | col("sharer_province").is_null()
              | (col("sharer_province") == e.province),
              lambda e: _q("sharer_province") + pl.lit(f" is not the file's province {e.province} on an OUT record")),
            R("beneficiary_province", "beneficiary_province = PP when side is IN",
              lambda e: (col("side") != "IN").fill_null(True) | col("beneficiary_province").is_null()
              | (col("beneficiary_province") == e.province),
              lambda e: _q("beneficiary_province") + pl.lit(f" is not the file's province {e.province} on an IN record")),
        ]
    if dataset == "settlements":
        inst = list(codes.INSTITUTION_EXPENSE_TYPES)
        prem = list(codes.PREMIUM_EXPENSE_TYPES)
        return [
            R("total_amount", "total_amount >= personal_burden",
              lambda e: (v("total_amount") >= v("personal_burden")).fill_null(True),
              lambda e: _q("total_amount") + " is less than " + _q("personal_burden")),
            R("orig_setl_id", "orig_setl_id is required for REFUND",
              lambda e: (col("status") != "REFUND").fill_null(True) | col("orig_setl_id").is_not_null(),
              lambda e: pl.lit("orig_setl_id is missing for a REFUND")),
            R("orig_setl_id", "orig_setl_id is null for NORMAL",
              lambda e: (col("status") != "NORMAL").fill_null(True) | col("orig_setl_id").is_null(),
              lambda e: _q("orig_setl_id") + " is given for a NORMAL settlement"),
            R("fixmedins_code", "fixmedins_code is required for institution expense types",
              lambda e: ~col("expense_type").is_in(inst).fill_null(False) | col("fixmedins_code").is_not_null(),
              lambda e: pl.lit("fixmedins_code is missing for expense_type ") + col("expense_type")),
            R("fixmedins_code", "fixmedins_code is null for premiums",
              lambda e: ~col("expense_type").is_in(prem).fill_null(False) | col("fixmedins_code").is_null(),
              lambda e: _q("fixmedins_code") + " is given for expense_type " + col("expense_type")),
        ]
    if dataset == "balances":
        out = [R(n, f"{n} is required for QUOTA",
                 lambda e, n=n: (col("account") != "QUOTA").fill_null(True) | col(n).is_not_null(),
                 lambda e, n=n: pl.lit(f"{n} is missing for a QUOTA row"))
               for n in ("sharer_psn_no", "sharer_province")]
        # inbox.md: sharer_psn_no is "null for PERSONAL"; sharer_province is only
        # "required for QUOTA", so a PERSONAL row may carry one (reading 7d).
        out.append(R("sharer_psn_no", "sharer_psn_no is null for PERSONAL",
                     lambda e: (col("account") != "PERSONAL").fill_null(True) | col("sharer_psn_no").is_null(),
                     lambda e: _q("sharer_psn_no") + " is given for a PERSONAL row"))
        return out
    return []


RULES: dict[str, tuple[ColumnRule, ...]] = {
    ds: tuple(r for c in cols for r in _column_rules(ds, c)) + tuple(_row_rules(ds))
    for ds, cols in DATASET_COLUMNS.items()
}


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP)
def rule_flags(dataset: str, env: Env) -> tuple[pl.Expr, ...]:
    """One boolean column `#ok<i>` per rule (True = passes), for the rows that fail
    row_valid: their reasons are written from these (see reasons_from_flags)."""
    return tuple(r.ok(env).fill_null(True).alias(f"#ok{i}") for i, r in enumerate(RULES[dataset]))


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP)
def row_valid(dataset: str, env: Env) -> pl.Expr:
    """`#valid`: True where the row passes every rule. The whole file gets this one
    column; the per-rule flags (rule_flags) are built only for the rows where it is
    False, so a national day does not materialise a flag per rule and row."""
    return pl.all_horizontal([r.ok(env).fill_null(True) for r in RULES[dataset]]).alias("#valid")


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP, rules)
def reasons_from_flags(dataset: str, env: Env, broken: tuple[int, ...] | None = None) -> pl.Expr:
    """'; '-joined reasons of the rules whose `#ok<i>` flag is False, in rule order.
    `broken`: the rules some row breaks (None = all); the others give no reason, and
    leaving them out spares building every reason expression for a handful of rows."""
    rules = RULES[dataset]
    return pl.concat_str(
        [pl.when(~pl.col(f"#ok{i}")).then(rules[i].reason(env))
         for i in (range(len(rules)) if broken is None else broken)],
        separator="; ", ignore_nulls=True,
    ).alias("reasons")


def row_checks(dataset: str, env: Env) -> pl.Expr:
    """One expression: '; '-joined reasons of every rule the row breaks, '' if none."""
    return pl.concat_str(
        [pl.when(~r.ok(env).fill_null(True)).then(r.reason(env)) for r in RULES[dataset]],
        separator="; ", ignore_nulls=True,
    ).alias("reasons")


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP)
def record_id_expr(dataset: str) -> pl.Expr:
    """record_id of a row (docs/spec-readings.md item 3), from the text columns.
    Readable = the id column exists and is non-empty; otherwise `row:<n>`."""
    row = pl.lit("row:") + pl.col("source_row").cast(pl.String)
    if dataset == "balances":
        psn, acct, sharer = pl.col("psn_no"), pl.col("account"), pl.col("sharer_psn_no")
        return (pl.when(psn.is_null()).then(row)
                .when(acct == "PERSONAL").then(psn + ":PERSONAL")
                .when(sharer.is_not_null()).then(psn + ":" + sharer)
                .otherwise(row)).alias("record_id")
    return pl.coalesce(pl.col(ID_COLUMN[dataset]), row).alias("record_id")


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP)
def key_label(dataset: str) -> pl.Expr:
    """The F05 record_id: the key (transfers `transfer_id:side`, balances as above)."""
    if dataset == "transfers":
        return (pl.col("transfer_id") + ":" + pl.col("side")).alias("record_id")
    return record_id_expr(dataset)


@lru_cache(maxsize=None)  # expressions are immutable: build once per (dataset, D, PP)
def derived_columns(dataset: str) -> tuple[pl.Expr, ...]:
    """Columns the warehouse keeps beyond the delivered ones (persons: birth_date, sex)."""
    if dataset == "persons":
        return (pl.col("certno#birth").alias("birth_date"),
                pl.when(pl.col("certno").str.slice(16, 1).cast(pl.Int32, strict=False) % 2 == 1)
                .then(pl.lit("M")).otherwise(pl.lit("F")).alias("sex"))
    return ()


# ---------------------------------------------------------------- pandera contracts

def _check(rule: ColumnRule, env: Env) -> pa.Check:
    ok = rule.ok(env).fill_null(True)
    return pa.Check(lambda data, ok=ok: data.lazyframe.select(ok), name=rule.description,
                    error=rule.description)


def text_schema(dataset: str, env: Env) -> pa.DataFrameSchema:
    """The pandera contract of a delivered file as canonical text, for date D and
    province PP: every column String and nullable (required-ness is a rule with
    its own reason), one Check per ColumnRule. It must be validated on a frame
    that already carries `typed_helpers(dataset)`; it accepts exactly the rows
    `row_checks` gives no reason for (tests/test_intake.py asserts this)."""
    by_col: dict[str, list[pa.Check]] = {}
    frame_checks = []
    names = set(REQUIRED_COLUMNS[dataset])
    for r in RULES[dataset]:
        # Rules reading only their own column (+ its helpers) sit on the column; others on the frame.
        (by_col.setdefault(r.column, []) if r.column in names else frame_checks).append(_check(r, env))
    return pa.DataFrameSchema(
        {c.name: pa.Column(pl.String, nullable=True, checks=by_col.get(c.name, []))
         for c in DATASET_COLUMNS[dataset]},
        checks=frame_checks, strict=False, name=f"{dataset} (text)")


LINEAGE = {"business_date": pl.Date(), "file_province": pl.String(),
           "source_file": pl.String(), "source_row": pl.Int32()}


def loaded_columns(dataset: str) -> dict[str, pl.DataType]:
    """Column -> polars type of a loaded dataset, in warehouse order."""
    cols = {"business_date": pl.Date(), "file_province": pl.String()}
    cols.update({c.name: c.dtype for c in DATASET_COLUMNS[dataset]})
    if dataset == "persons":
        cols.update({"birth_date": pl.Date(), "sex": pl.String()})
    cols.update({"source_file": pl.String(), "source_row": pl.Int32()})
    return cols


def _value_rules(dataset: str) -> list[tuple[str, pa.Check, pl.Expr]]:
    """(column, pandera check, the same test as a polars expression) of the values
    that still hold on typed rows: code lists and signs. They guard the warehouse
    against a bug in the text path. Patterns (digits, check characters, offsets)
    are not repeated here: they are judged on the text by the same expressions as
    text_schema, and a regex pass over every row of the nation a second time
    would cost as much as scanning the inputs."""
    out = []
    for c in DATASET_COLUMNS[dataset]:
        x = pl.col(c.name)
        if c.kind in ("code", "province"):
            allowed = list(c.codes if c.kind == "code" else codes.PROVINCES)
            out.append((c.name, pa.Check.isin(allowed), x.is_in(allowed)))
        elif c.kind == "money" and c.sign == ">0":
            out.append((c.name, pa.Check.gt(0), x > 0))
        elif c.kind == "money" and c.sign == ">=0":
            out.append((c.name, pa.Check.ge(0), x >= 0))
    return out


def _row_rules_typed(dataset: str) -> list[tuple[str, pl.Expr]]:
    """(description, expression) of the cross-column rules that hold on typed rows."""
    if dataset == "settlements":
        return [("total_amount >= personal_burden", pl.col("total_amount") >= pl.col("personal_burden")),
                ("orig_setl_id given exactly for REFUND",
                 (pl.col("status") == "REFUND") == pl.col("orig_setl_id").is_not_null())]
    if dataset == "balances":
        return [("sharer_psn_no given exactly for QUOTA",
                 (pl.col("account") == "QUOTA") == pl.col("sharer_psn_no").is_not_null())]
    return []


def _required_loaded(dataset: str) -> list[str]:
    nullable = {c.name for c in DATASET_COLUMNS[dataset] if not c.required}
    return [n for n in loaded_columns(dataset) if n not in nullable]


def _loaded_schema(dataset: str) -> pa.DataFrameSchema:
    """The contract of the loaded rows, one pandera check per column rule: the
    one that names what is wrong."""
    checks: dict[str, list[pa.Check]] = {}
    for name, check, _expr in _value_rules(dataset):
        checks.setdefault(name, []).append(check)
    required = set(_required_loaded(dataset))
    return pa.DataFrameSchema(
        {n: pa.Column(t, nullable=n not in required, checks=checks.get(n, []))
         for n, t in loaded_columns(dataset).items()},
        checks=[pa.Check(lambda d, e=e: d.lazyframe.select(e), error=desc)
                for desc, e in _row_rules_typed(dataset)],
        strict=True, ordered=True, name=f"{dataset} (loaded)")


def _loaded_schema_one_pass(dataset: str) -> pa.DataFrameSchema:
    """The same contract as _loaded_schema, built from the same rules, checked in
    one pass over the rows: columns, order and types as there, and one check that
    every row holds every rule (required columns not null, values, cross rules).
    pandera runs each check of a schema as a query of its own, which on 31
    provinces x 5 files cost more than the checking itself; the intake runs this
    one and, only when it fails, _loaded_schema to say which rule failed."""
    holds = ([pl.col(n).is_not_null() for n in _required_loaded(dataset)]
             + [e.fill_null(True) for _n, _c, e in _value_rules(dataset)]
             + [e for _d, e in _row_rules_typed(dataset)])
    every = pl.all_horizontal(holds).fill_null(False)
    return pa.DataFrameSchema(
        {n: pa.Column(t, nullable=True) for n, t in loaded_columns(dataset).items()},
        checks=[pa.Check(lambda d, e=every: d.lazyframe.select(e),
                         error=f"every row holds the loaded contract of {dataset}")],
        strict=True, ordered=True, name=f"{dataset} (loaded, one pass)")


LOADED_SCHEMAS: dict[str, pa.DataFrameSchema] = {ds: _loaded_schema(ds) for ds in DATASET_COLUMNS}
LOADED_SCHEMAS_ONE_PASS: dict[str, pa.DataFrameSchema] = {
    ds: _loaded_schema_one_pass(ds) for ds in DATASET_COLUMNS}

# Reference files (reference/): the typed frames read_inbox_date hands on.
REFERENCE_COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "regions": {"admdvs": pl.String(), "province": pl.String(), "name": pl.String(),
                "wallet_live_from": pl.Date()},
    "institutions": {"fixmedins_code": pl.String(), "fixmedins_type": pl.String(),
                     "admdvs": pl.String(), "designated_from": pl.Date(), "designated_to": pl.Date()},
}
REFERENCE_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "regions": pa.DataFrameSchema({
        "admdvs": pa.Column(pl.String, checks=pa.Check.str_matches(RE_ADMDVS), unique=True),
        "province": pa.Column(pl.String, checks=pa.Check.isin(list(codes.PROVINCES))),
        "name": pa.Column(pl.String, nullable=True, checks=pa.Check.str_length(max_value=MAX_NAME_CHARS)),
        "wallet_live_from": pa.Column(pl.Date, nullable=True),
    }, checks=[pa.Check(lambda d: d.lazyframe.select(
        pl.col("province") == pl.col("admdvs").str.slice(0, 2)), error="province = first 2 digits of admdvs")],
        strict=True, name="reference/regions.csv"),
    "institutions": pa.DataFrameSchema({
        "fixmedins_code": pa.Column(pl.String, checks=pa.Check.str_matches(RE_FIXMEDINS), unique=True),
        "fixmedins_type": pa.Column(pl.String, checks=pa.Check.isin(list(codes.INSTITUTION_TYPES))),
        "admdvs": pa.Column(pl.String, checks=pa.Check.str_matches(RE_ADMDVS)),
        "designated_from": pa.Column(pl.Date),
        "designated_to": pa.Column(pl.Date, nullable=True),
    }, checks=[pa.Check(lambda d: d.lazyframe.select(
        pl.col("fixmedins_code").str.slice(0, 1) == pl.col("fixmedins_type").str.slice(0, 1)),
        error="HOSPITAL codes start with H, PHARMACY codes with P")],
        strict=True, name="reference/institutions.csv"),
}


# ---------------------------------------------------------------- what the inbox reader hands on
# flows/inbox.py reads the disk and fills these; transforms/intake.py reads them.
# They live here so that transforms never import flows.

DATA_FILE_NAMES: tuple[str, ...] = tuple(
    f"{stem}.{ext}" for stem in codes.DATASETS for ext in ("csv", "parquet"))
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists five files; anything bigger is not one


@dataclass(frozen=True)
class FileRead:
    """The outcome of asking for one data file: its bytes, or why there are none.
    status: 'ok' | 'absent' | 'refused' (link out of the folder, not a regular
    file) | 'oversize' (larger than the declared limit; never read)."""
    status: str
    data: bytes | None = None
    detail: str = ""


@dataclass
class ProvinceDelivery:
    """One province folder of D. `manifest_bytes` is None when the folder has no
    manifest.json (rules.md F01). Data files are read on demand by `read`, one at
    a time, so the 31 provinces do not all sit in memory at once: `opener` is the
    reader flows/inbox.py hands over (None = nothing on disk); `files` lets a
    test or a caller hand over bytes without a disk."""
    province: str
    business_date: date
    folder: Path | None = None
    manifest_bytes: bytes | None = None
    manifest_problem: str = ""          # e.g. manifest.json too big / a link out of the folder
    files: dict[str, bytes] | None = None
    opener: Callable[[str], FileRead] | None = None

    def read(self, name: str) -> FileRead:
        """Bytes of one of the ten known data file names; any other name is refused
        without touching the disk. Handed-over bytes obey the size limit too."""
        if name not in DATA_FILE_NAMES:
            return FileRead("refused", detail=f"{name!r} is not a data file name of the inbox contract")
        if self.files is not None:
            if name not in self.files:
                return FileRead("absent")
            if len(self.files[name]) > MAX_DATA_FILE_BYTES:
                return FileRead("oversize", detail=oversize_detail(name))
            return FileRead("ok", self.files[name])
        if self.opener is None:
            return FileRead("absent")
        return self.opener(name)


def oversize_detail(name: str, limit: int | None = None) -> str:
    """Why a file larger than its limit was not read (the limit in bytes and MiB)."""
    limit = MAX_DATA_FILE_BYTES if limit is None else limit
    return f"{name} is larger than the limit of {limit} bytes ({limit / (1 << 20):g} MiB)"


@dataclass(frozen=True)
class Reference:
    """reference/ as typed frames (REFERENCE_COLUMNS)."""
    regions: pl.DataFrame
    institutions: pl.DataFrame


@dataclass
class InboxDate:
    business_date: date
    reference: Reference
    live_provinces: list[str]
    deliveries: list[ProvinceDelivery]
    missing: list[str] = field(default_factory=list)            # live, no folder or no manifest
    missing_detail: dict[str, str] = field(default_factory=dict)  # province -> what is missing
