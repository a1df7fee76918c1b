"""Findings: how a rule records what it found, and how findings become report rows.

A rule is a function `sNN_rule_name(con, ctx)` that calls `record(...)` with a
SELECT yielding FINDING_COLUMNS. `finalize(con, ctx)` stamps business_date,
rule_name, severity and the stable exception_id (outputs.md) and writes the
`findings` table of D.
"""
from __future__ import annotations

import duckdb

from contracts.codes import RULES

# What a rule's SELECT must yield, in this order.
FINDING_COLUMNS = (
    "province", "dataset", "record_id", "sharer_psn_no", "beneficiary_psn_no",
    "amount", "detail", "source_file", "source_row",
)

_FINDINGS_DDL = """
CREATE OR REPLACE TEMP TABLE d_findings (
    rule_code VARCHAR NOT NULL, province VARCHAR NOT NULL, dataset VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL, sharer_psn_no VARCHAR, beneficiary_psn_no VARCHAR,
    amount DECIMAL(18,2), detail VARCHAR NOT NULL, source_file VARCHAR, source_row INTEGER
)"""


def create_findings_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_FINDINGS_DDL)


def record(con: duckdb.DuckDBPyConnection, rule_code: str, select_sql: str,
           params: dict | None = None) -> int:
    """Append the rows of `select_sql` (yielding FINDING_COLUMNS) as findings of `rule_code`.

    Returns the number of findings recorded.
    """
    if rule_code not in RULES:
        raise KeyError(f"unknown rule code {rule_code}")
    cols = ", ".join(FINDING_COLUMNS)
    before = con.execute("SELECT count(*) FROM d_findings").fetchone()[0]
    con.execute(
        f"INSERT INTO d_findings (rule_code, {cols}) "
        f"SELECT '{rule_code}', {cols} FROM ({select_sql})",
        params or {},
    )
    return con.execute("SELECT count(*) FROM d_findings").fetchone()[0] - before


def exception_id_sql(rule: str, d: str, province: str, record_id: str) -> str:
    """SQL for outputs.md's exception_id: sha256 of 'rule|date|province|record_id', 16 hex."""
    return f"left(sha256({rule} || '|' || {d} || '|' || {province} || '|' || {record_id}), 16)"


def finalize(con: duckdb.DuckDBPyConnection, business_date: str) -> None:
    """Replace D's rows of `findings` with d_findings, stamped for the report."""
    con.execute("CREATE OR REPLACE TEMP TABLE rule_catalogue "
                "(rule_code VARCHAR, rule_name VARCHAR, severity VARCHAR)")
    con.executemany("INSERT INTO rule_catalogue VALUES (?, ?, ?)",
                    [(r.code, r.name, r.severity) for r in RULES.values()])
    con.execute("DELETE FROM findings WHERE business_date = ?", [business_date])
    eid = exception_id_sql("f.rule_code", "CAST(DATE '%s' AS VARCHAR)" % business_date,
                           "f.province", "f.record_id")
    con.execute(f"""
        INSERT INTO findings
        SELECT {eid}, DATE '{business_date}', f.rule_code, c.rule_name, c.severity,
               f.province, f.dataset, f.record_id, f.sharer_psn_no, f.beneficiary_psn_no,
               f.amount, f.detail, f.source_file, f.source_row
        FROM d_findings f JOIN rule_catalogue c USING (rule_code)
    """)


def exception_id(rule_code: str, business_date: str, province: str, record_id: str) -> str:
    """Python twin of exception_id_sql, for tests and reports."""
    import hashlib
    key = f"{rule_code}|{business_date}|{province}|{record_id}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
