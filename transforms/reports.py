"""Report frames of one business date and the run summary (pure: warehouse in, frames out).

Everything here is deterministic: the same warehouse state gives the same
frames in the same row order and the same CSV bytes (no timestamps inside).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from contracts import summary as summary_contract
from contracts.codes import RULES
from contracts.summary import REJECTING_RULES
from transforms.context import RunContext

MONEY = pl.Decimal(18, 2)

EXCEPTION_COLUMNS: dict[str, pl.DataType] = {
    "exception_id": pl.Utf8, "business_date": pl.Date, "rule_code": pl.Utf8,
    "rule_name": pl.Utf8, "severity": pl.Utf8, "province": pl.Utf8, "dataset": pl.Utf8,
    "record_id": pl.Utf8, "sharer_psn_no": pl.Utf8, "beneficiary_psn_no": pl.Utf8,
    "amount": MONEY, "detail": pl.Utf8, "source_file": pl.Utf8, "source_row": pl.Int64,
}
SETTLEMENT_COLUMNS: dict[str, pl.DataType] = {
    "business_date": pl.Date, "payer_province": pl.Utf8, "payee_province": pl.Utf8,
    "expense_type": pl.Utf8, "settled_amount": MONEY, "refunded_amount": MONEY,
    "net_amount": MONEY, "settlement_count": pl.Int64, "refund_count": pl.Int64,
    "cross_province": pl.Boolean,
}
POSITION_COLUMNS: dict[str, pl.DataType] = {
    "business_date": pl.Date, "province": pl.Utf8, "receivable": MONEY,
    "payable": MONEY, "net": MONEY,
}
# Row order of each report: its key, then every other column as a tie-break.
EXCEPTION_ORDER = ("rule_code", "province", "record_id", "dataset", "source_file",
                   "source_row", "exception_id", "sharer_psn_no", "beneficiary_psn_no",
                   "amount", "detail")
SETTLEMENT_ORDER = ("payer_province", "payee_province", "expense_type")
POSITION_ORDER = ("province",)



def _shape(df: pl.DataFrame, columns: dict[str, pl.DataType], order) -> pl.DataFrame:
    """Exactly `columns`, in that order and with those types, sorted by `order`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"report frame lacks columns {missing}")
    out = df.select([pl.col(c).cast(t) for c, t in columns.items()])
    return out.sort(list(order), nulls_last=True, maintain_order=True)


def exceptions_report(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> pl.DataFrame:
    """One row per finding of D (outputs.md "exceptions columns"), deterministic order."""
    cols = ", ".join(EXCEPTION_COLUMNS)
    df = con.sql(f"SELECT {cols} FROM findings WHERE business_date = $d",
                 params={"d": ctx.business_date}).pl()
    if df.height == 0:
        df = pl.DataFrame(schema=EXCEPTION_COLUMNS)
    return _shape(df, EXCEPTION_COLUMNS, EXCEPTION_ORDER)


def settlement_report(frame: pl.DataFrame) -> pl.DataFrame:
    """The clearing's settlement frame in the report's columns and order."""
    if frame.height == 0:
        frame = pl.DataFrame(schema=SETTLEMENT_COLUMNS)
    return _shape(frame, SETTLEMENT_COLUMNS, SETTLEMENT_ORDER)


def positions_report(frame: pl.DataFrame) -> pl.DataFrame:
    """The clearing's positions frame in the report's columns and order."""
    if frame.height == 0:
        frame = pl.DataFrame(schema=POSITION_COLUMNS)
    return _shape(frame, POSITION_COLUMNS, POSITION_ORDER)


def csv_bytes(df: pl.DataFrame) -> bytes:
    """UTF-8 CSV with a header row; DECIMAL(18,2) prints exactly two decimals,
    dates ISO, booleans true/false, null as an empty field, '\\n' line ends."""
    for name, dtype in df.schema.items():
        if dtype == pl.Float32 or dtype == pl.Float64:
            raise TypeError(f"column {name} is a float; money must be DECIMAL(18,2)")
    return df.write_csv(line_terminator="\n").encode("utf-8")


# --------------------------------------------------------------------------- summary parts

def findings_per_rule(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> dict[str, int]:
    """Count of findings of D for every rule code of the catalogue (zeros included)."""
    counts = dict(con.execute(
        "SELECT rule_code, count(*) FROM findings WHERE business_date = ? GROUP BY rule_code",
        [ctx.business_date]).fetchall())
    return {code: int(counts.get(code, 0)) for code in RULES}


def findings_by_rule_and_province(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> list[dict]:
    """Rows (rule_code, rule_name, severity, province, findings) for the table artifact."""
    rows = con.execute(
        "SELECT rule_code, rule_name, severity, province, count(*) FROM findings "
        "WHERE business_date = ? GROUP BY ALL ORDER BY rule_code, province",
        [ctx.business_date]).fetchall()
    return [dict(zip(("rule_code", "rule_name", "severity", "province", "findings"), r))
            for r in rows]


def file_loads(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> list[dict]:
    """Per data file: rows read / loaded / quarantined, rejection, sha256."""
    cols = ("province", "dataset", "source_file", "sha256", "encoding", "rows_read",
            "rows_loaded", "rows_quarantined", "rejected", "reject_rule", "reject_reason")
    rows = con.execute(f"SELECT {', '.join(cols)} FROM file_loads WHERE business_date = ? "
                       "ORDER BY province, dataset, source_file", [ctx.business_date]).fetchall()
    return [dict(zip(cols, r)) for r in rows]


def partial_reasons(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> list[dict]:
    """Why D is PARTIAL: every F01 (province missing) and F02/F03 (file rejected)
    finding of D, as (rule_code, province, file, reason)."""
    rows = con.execute(
        "SELECT rule_code, province, record_id, detail FROM findings "
        "WHERE business_date = ? AND rule_code IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY rule_code, province, record_id", [ctx.business_date, list(REJECTING_RULES)]
    ).fetchall()
    return [{"rule_code": code, "province": prov, "file": None if code == "F01" else rec,
             "reason": detail} for code, prov, rec, detail in rows]


def run_status(per_rule: dict[str, int]) -> str:
    """COMPLETE, or PARTIAL when a live province is missing or a file was rejected."""
    return "PARTIAL" if any(per_rule[c] for c in REJECTING_RULES) else "COMPLETE"


def changes(previous_run_id: str | None, previous_ids: set[str], current_ids: set[str]) -> dict:
    """Which findings are new and which disappeared compared with the previous run of D."""
    if previous_run_id is None:
        return {"previous_run_id": None, "new": [], "disappeared": [],
                "note": "first run of this date"}
    return {"previous_run_id": previous_run_id,
            "new": sorted(current_ids - previous_ids),
            "disappeared": sorted(previous_ids - current_ids)}


def jsonable(value: Any) -> Any:
    """Decimal -> '123.45' (never float), dates -> ISO text, recursively."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        raise TypeError("a float reached the run summary; money must be Decimal")
    return value


def summary(*, ctx: RunContext, run_id: str, status: str, provinces_expected: list[str],
            provinces_delivered: list[str], files: list[dict], per_rule: dict[str, int],
            amounts: dict, invariants: list[dict], input_sha256: dict[str, str],
            code_version: str, started: datetime, finished: datetime, changes_: dict,
            genesis: bool, reasons: list[dict]) -> dict:
    """summary.json of outputs.md (plus run_id, genesis, why PARTIAL and the changes since
    the last run), checked against contracts/summary.py and returned as its JSON dict."""
    return summary_contract.dump(summary_contract.parse(jsonable({
        "business_date": ctx.d,
        "status": status,
        "run_id": run_id,
        "genesis": genesis,
        "provinces": {
            "expected": sorted(provinces_expected),
            "delivered": sorted(provinces_delivered),
            "missing": sorted(set(provinces_expected) - set(provinces_delivered)),
        },
        "files": files,
        "partial_because": reasons,
        "findings": {"total": sum(per_rule.values()), "per_rule": per_rule},
        "amounts": amounts,
        "invariants": invariants,
        "all_invariants_passed": all(bool(i["passed"]) for i in invariants),
        "input_sha256": dict(sorted(input_sha256.items())),
        "policy_version": ctx.policy.version,
        "code_version": code_version,
        "started_at": started,
        "finished_at": finished,
        "changes_since_previous_run": changes_,
    })))


def markdown_summary(s: summary_contract.RunSummary) -> str:
    """The run summary as the markdown of the Prefect artifact."""
    p = s.provinces
    lines = [f"# Reconciliation {s.business_date.isoformat()}: {s.status}", "",
             f"run `{s.run_id}` · policy `{s.policy_version}` · code `{s.code_version}`", "",
             f"Provinces expected {len(p.expected)}, delivered {len(p.delivered)}"
             + (f", missing {', '.join(p.missing)}" if p.missing else "")]
    if s.why():
        lines += ["", f"**Why {s.status}:** {s.why()}"]
    lines += ["", "## Amounts", "", "| amount | yuan |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s.amounts]
    lines += ["", "## Invariants", "", "| invariant | passed | value | detail |", "|---|---|---|---|"]
    for inv in s.invariants:
        lines.append(f"| {inv.name} | {'yes' if inv.passed else '**NO**'} | {inv.value} | {inv.detail} |")
    lines += ["", "## Findings per rule", "", "| rule | name | findings |", "|---|---|---:|"]
    lines += [f"| {code} | {RULES[code].name} | {n} |" for code, n in s.findings.per_rule.items() if n]
    ch = s.changes_since_previous_run
    if ch.previous_run_id:
        lines += ["", f"Since run `{ch.previous_run_id}`: {len(ch.new)} new findings "
                  f"({', '.join(ch.new[:20]) or 'none'}), {len(ch.disappeared)} disappeared "
                  f"({', '.join(ch.disappeared[:20]) or 'none'})."]
    return "\n".join(lines) + "\n"
