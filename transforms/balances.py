"""Balances of rules.md §7: B01, B02, per (beneficiary, sharer) pair.

computed: sum(remaining) of the pair's open lots (lots of D, or of D-1 for B02);
delivered: the QUOTA row of balances.csv (an absent row is 0). Compared over
the union of pairs. amount = delivered - computed (spec-readings item 11).

Reading: a pair is judged only when the beneficiary's province delivered a
balances file for D that was loaded (rows in d_balances, or a file_loads row of
dataset 'balances' not rejected). A province that delivered nothing (F01) or
whose balances file was rejected (F02/F03) has no delivered view to compare;
its breaks are already reported by those findings.
"""
from __future__ import annotations

from datetime import timedelta

import duckdb

from transforms.context import RunContext
from transforms.findings import record


def _break_sql(lots_date: str, delivered_col: str, d: str, what: str) -> str:
    return f"""
        WITH comp AS (
            SELECT beneficiary_psn_no AS b, sharer_psn_no AS s,
                   min(beneficiary_province) AS bp, sum(remaining) AS amt
            FROM lots WHERE business_date = DATE '{lots_date}'
            GROUP BY beneficiary_psn_no, sharer_psn_no),
        deliv AS (
            SELECT psn_no AS b, sharer_psn_no AS s, file_province AS bp,
                   {delivered_col} AS amt, source_file, source_row
            FROM d_balances WHERE account = 'QUOTA' AND sharer_psn_no IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY psn_no, sharer_psn_no
                                       ORDER BY file_province, source_file, source_row) = 1),
        judged AS (
            SELECT file_province AS p FROM d_balances
            UNION
            SELECT province FROM file_loads
            WHERE business_date = DATE '{d}' AND dataset = 'balances' AND NOT rejected)
        SELECT coalesce(deliv.bp, comp.bp) AS province, 'balances' AS dataset,
               coalesce(deliv.b, comp.b) || ':' || coalesce(deliv.s, comp.s) AS record_id,
               coalesce(deliv.s, comp.s) AS sharer_psn_no,
               coalesce(deliv.b, comp.b) AS beneficiary_psn_no,
               CAST(coalesce(deliv.amt, 0) - coalesce(comp.amt, 0) AS DECIMAL(18,2)) AS amount,
               'delivered {what} ' || CAST(CAST(coalesce(deliv.amt, 0) AS DECIMAL(18,2)) AS VARCHAR)
                 || CASE WHEN deliv.b IS NULL THEN ' (no row)' ELSE '' END
                 || ' differs from the computed ' || CAST(CAST(coalesce(comp.amt, 0) AS DECIMAL(18,2)) AS VARCHAR)
                 || ' (sum of the pair''s open lots after {lots_date})' AS detail,
               deliv.source_file AS source_file, deliv.source_row AS source_row
        FROM comp FULL JOIN deliv ON comp.b = deliv.b AND comp.s = deliv.s
        WHERE coalesce(deliv.amt, 0) <> coalesce(comp.amt, 0)
          AND coalesce(deliv.bp, comp.bp) IN (SELECT p FROM judged)"""


def b01_quota_balance_break(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """B01 QUOTA_BALANCE_BREAK: "the computed remaining quota of the pair at 24:00 of D
    differs from the delivered closing_balance (an absent row is 0)"."""
    record(con, "B01", _break_sql(ctx.d, "closing_balance", ctx.d, "closing_balance"))


def b02_opening_balance_break(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """B02 OPENING_BALANCE_BREAK: "not genesis, and the delivered opening_balance differs
    from the computed closing of D-1"."""
    if ctx.genesis:
        return
    prev = (ctx.business_date - timedelta(days=1)).isoformat()
    record(con, "B02", _break_sql(prev, "opening_balance", ctx.d, "opening_balance"))


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    b01_quota_balance_break(con, ctx)
    b02_opening_balance_break(con, ctx)
