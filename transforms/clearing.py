"""Clearing of rules.md §8: flows between provinces, the settlement and positions
report frames, the amounts of the run summary and the four invariants.

A flow row of clearing_flows keeps the orientation of the settlement it belongs to:
payer = the lot's payer province (the sharer's), payee = the settlement's province
(the beneficiary's). kind SETTLE: a settled NORMAL settlement, per consumed lot.
kind REFUND: a valid refund, per lot it gave back to (to the lot or, the lot being
closed, to the sharer), with the payer/payee and expense_type of the original
(spec-readings item 13); its amount is positive and is *subtracted*: it is the
opposite flow. settlement.csv therefore shows settled and refunded side by side and
net = settled - refunded; positions take the net.
"""
from __future__ import annotations

from decimal import Decimal

import duckdb
import polars as pl

from contracts.codes import DATASETS
from contracts.errors import InputError
from transforms.context import RunContext
from transforms.ledger import opening_lots_sql

ZERO = Decimal("0.00")


# The largest amount a DECIMAL(18,2) column of the warehouse and the reports holds.
DECIMAL_18_2_MAX = Decimal("9999999999999999.99")


def check_amounts_fit(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Refuse D (InputError, exit 2) when its amounts add up beyond DECIMAL(18,2).

    Every amount loaded fits DECIMAL(18,2) (F04), but the run adds them up: every
    total it computes (quota, wallet_pay settled / held / refunded, flows, positions,
    balance differences) is at most the sum of D's transfer amounts, wallet_pay and
    delivered balances plus the opening quota, so when that sum fits, no step can
    overflow. A sum beyond it is no real day (ten million billion yuan): such a
    delivery cannot be processed at all (outputs.md, exit 2)."""
    total = con.execute(f"""
        SELECT coalesce((SELECT sum(CAST(amount AS DECIMAL(38,2))) FROM d_transfers), 0)
             + coalesce((SELECT sum(CAST(wallet_pay AS DECIMAL(38,2))) FROM d_settlements), 0)
             + coalesce((SELECT sum(CAST(opening_balance AS DECIMAL(38,2)) + closing_balance)
                         FROM d_balances), 0)
             + coalesce((SELECT sum(CAST(remaining AS DECIMAL(38,2)))
                         FROM ({opening_lots_sql(ctx)})), 0)""").fetchone()[0]
    if total > DECIMAL_18_2_MAX:
        raise InputError(
            f"The amounts of {ctx.d} add up to {total} yuan (transfers, wallet_pay, balances and "
            f"the opening quota), more than the {DECIMAL_18_2_MAX} that the reports' amounts hold; "
            f"correct the delivery and run {ctx.d} again.")


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Replace clearing_flows of D from D's consumptions and refund_returns."""
    d = ctx.d
    con.execute(f"DELETE FROM clearing_flows WHERE business_date = DATE '{d}'")
    con.execute(f"""
        INSERT INTO clearing_flows
        SELECT DATE '{d}', c.setl_id, 'SETTLE', c.payer_province, o.province, o.expense_type,
               CAST(sum(c.amount) AS DECIMAL(18,2))
        FROM consumptions c
        JOIN settlement_outcomes o
          ON o.business_date = c.business_date AND o.setl_id = c.setl_id AND o.province = c.province
         AND o.status = 'NORMAL' AND o.outcome = 'SETTLED'
        WHERE c.business_date = DATE '{d}'
        GROUP BY c.setl_id, c.payer_province, o.province, o.expense_type""")
    # A refund's flows take the payee and expense_type of the very settlement it
    # reverses: (orig_business_date, orig_province, orig_setl_id) of refund_returns.
    con.execute(f"""
        INSERT INTO clearing_flows
        WITH r AS (SELECT * FROM refund_returns WHERE business_date = DATE '{d}'),
        orig AS (
            SELECT business_date, province, setl_id, expense_type FROM settlement_outcomes
            WHERE business_date IN (SELECT orig_business_date FROM r)
              AND status = 'NORMAL' AND outcome = 'SETTLED'
              AND setl_id IN (SELECT orig_setl_id FROM r))
        SELECT DATE '{d}', r.setl_id, 'REFUND', r.payer_province, o.province, o.expense_type,
               CAST(sum(r.amount) AS DECIMAL(18,2))
        FROM r JOIN orig o
          ON o.setl_id = r.orig_setl_id AND o.business_date = r.orig_business_date
         AND o.province = r.orig_province
        GROUP BY r.setl_id, r.payer_province, o.province, o.expense_type""")


_SETTLEMENT_SQL = """
    SELECT CAST($d AS DATE) AS business_date, payer_province, payee_province, expense_type,
           CAST(coalesce(sum(amount) FILTER (WHERE kind = 'SETTLE'), 0) AS DECIMAL(18,2)) AS settled_amount,
           CAST(coalesce(sum(amount) FILTER (WHERE kind = 'REFUND'), 0) AS DECIMAL(18,2)) AS refunded_amount,
           CAST(coalesce(sum(amount) FILTER (WHERE kind = 'SETTLE'), 0)
                - coalesce(sum(amount) FILTER (WHERE kind = 'REFUND'), 0) AS DECIMAL(18,2)) AS net_amount,
           CAST(count(DISTINCT setl_id) FILTER (WHERE kind = 'SETTLE') AS BIGINT) AS settlement_count,
           CAST(count(DISTINCT setl_id) FILTER (WHERE kind = 'REFUND') AS BIGINT) AS refund_count,
           payer_province <> payee_province AS cross_province
    FROM clearing_flows WHERE business_date = CAST($d AS DATE)
    GROUP BY payer_province, payee_province, expense_type
"""


def settlement_report(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> pl.DataFrame:
    """settlement.csv of outputs.md: one row per (payer, payee, expense_type) with flows on D,
    sorted by payer_province, payee_province, expense_type."""
    return con.sql(f"SELECT * FROM ({_SETTLEMENT_SQL.replace('$d', repr(ctx.d))}) "
                   "ORDER BY payer_province, payee_province, expense_type").pl()


def positions_report(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> pl.DataFrame:
    """positions.csv of outputs.md: one row per province with any flow, sorted by province.
    receivable = net flows in as payee, payable = net flows out as payer."""
    s = _SETTLEMENT_SQL.replace('$d', repr(ctx.d))
    return con.sql(f"""
        WITH s AS ({s}),
        legs AS (
            SELECT payee_province AS province, net_amount AS receivable, 0::DECIMAL(18,2) AS payable FROM s
            UNION ALL
            SELECT payer_province, 0::DECIMAL(18,2), net_amount FROM s)
        SELECT CAST({ctx.d!r} AS DATE) AS business_date, province,
               CAST(sum(receivable) AS DECIMAL(18,2)) AS receivable,
               CAST(sum(payable) AS DECIMAL(18,2)) AS payable,
               CAST(sum(receivable) - sum(payable) AS DECIMAL(18,2)) AS net
        FROM legs GROUP BY province ORDER BY province""").pl()


def amounts(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> dict[str, Decimal]:
    """The money of D for summary.json, each a Decimal with two places."""
    d = ctx.d
    row = con.execute(f"""
        SELECT
          (SELECT sum(wallet_pay) FROM settlement_outcomes WHERE business_date = DATE '{d}'
             AND status = 'NORMAL' AND outcome = 'SETTLED'),
          (SELECT sum(wallet_pay) FROM settlement_outcomes WHERE business_date = DATE '{d}'
             AND status = 'NORMAL' AND outcome = 'HELD'),
          (SELECT sum(wallet_pay) FROM settlement_outcomes WHERE business_date = DATE '{d}'
             AND status = 'REFUND' AND outcome = 'REFUNDED'),
          (SELECT sum(wallet_pay) FROM settlement_outcomes WHERE business_date = DATE '{d}'
             AND status = 'REFUND' AND outcome = 'HELD'),
          (SELECT sum(wallet_pay) FROM d_settlements WHERE status = 'NORMAL'),
          (SELECT sum(amount) FROM d_transfers WHERE side = 'IN' AND status = 'SUCCESS'),
          (SELECT sum(amount) FROM d_transfers WHERE side = 'OUT' AND status = 'SUCCESS'),
          (SELECT sum(remaining) FROM ({opening_lots_sql(ctx)})),
          (SELECT sum(amount) FROM consumptions WHERE business_date = DATE '{d}'),
          (SELECT sum(amount) FROM refund_returns WHERE business_date = DATE '{d}'),
          (SELECT sum(amount) FROM refund_returns WHERE business_date = DATE '{d}' AND to_sharer),
          (SELECT sum(amount) FROM dissolution_returns WHERE business_date = DATE '{d}'),
          (SELECT sum(remaining) FROM lots WHERE business_date = DATE '{d}'),
          (SELECT sum(amount) FROM clearing_flows WHERE business_date = DATE '{d}' AND kind = 'SETTLE'),
          (SELECT sum(amount) FROM clearing_flows WHERE business_date = DATE '{d}' AND kind = 'REFUND'),
          (SELECT sum(amount) FROM clearing_flows WHERE business_date = DATE '{d}' AND kind = 'SETTLE'
             AND payer_province <> payee_province)
    """).fetchone()
    names = ("settled", "held", "refunded", "refund_held", "normal_wallet_pay", "transfers_in",
             "transfers_out", "opening_lots", "consumed", "refund_returned", "refund_to_sharer",
             "returned_to_sharers", "closing_lots", "cleared_settle", "cleared_refund",
             "cleared_cross_province")
    out = {n: Decimal(v if v is not None else 0).quantize(ZERO) for n, v in zip(names, row)}
    out["dissolution_returned"] = out["returned_to_sharers"] - out["refund_to_sharer"]
    return out


def _file_invariant(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> dict:
    d = ctx.d
    # rows loaded / quarantined as the tables hold them, against file_loads' rows_read.
    counts = " UNION ALL ".join(
        f"SELECT source_file, count(*) AS n FROM {t} WHERE business_date = DATE '{d}' GROUP BY source_file"
        for t in DATASETS)
    rows = con.execute(f"""
        WITH loaded AS ({counts}),
        quarantined AS (SELECT source_file, count(*) AS n FROM quarantine
                        WHERE business_date = DATE '{d}' GROUP BY source_file)
        SELECT f.source_file, f.rows_read, f.rows_loaded, f.rows_quarantined, f.rejected,
               coalesce(l.n, 0), coalesce(q.n, 0)
        FROM file_loads f
        LEFT JOIN loaded l ON l.source_file = f.source_file
        LEFT JOIN quarantined q ON q.source_file = f.source_file
        WHERE f.business_date = DATE '{d}'
        ORDER BY f.source_file""").fetchall()
    bad = []
    for src, read, loaded, quar, rejected, loaded_n, quar_n in rows:
        if read != loaded + quar:
            bad.append(f"{src}: read {read} != loaded {loaded} + quarantined {quar}")
        elif not rejected and (loaded_n != loaded or quar_n != quar):
            bad.append(f"{src}: file_loads says loaded {loaded} / quarantined {quar}, "
                       f"tables hold {loaded_n} / {quar_n}")
    total_read = sum(r[1] for r in rows)
    detail = (f"{len(rows)} files, {total_read} rows read, every row loaded or quarantined"
              if not bad else "; ".join(bad))
    return {"name": "files", "value": len(bad), "detail": detail, "passed": not bad}


def invariants(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> list[dict]:
    """The four invariants of rules.md §8, each computed from the data:
    {name, value, detail, passed}."""
    a = amounts(con, ctx)
    out = [_file_invariant(con, ctx)]

    lhs = (a["opening_lots"] + a["transfers_in"] - a["consumed"] + a["refund_returned"]
           - a["returned_to_sharers"])
    diff = lhs - a["closing_lots"]
    out.append({"name": "quota", "value": diff, "passed": diff == 0, "detail": (
        f"opening lots {a['opening_lots']} + SUCCESS IN {a['transfers_in']} - consumed {a['consumed']} "
        f"+ refunded {a['refund_returned']} - returned by dissolutions {a['returned_to_sharers']} "
        f"= {lhs}; closing lots {a['closing_lots']}")})

    pos = positions_report(con, ctx)
    total = sum((Decimal(v) for v in pos["net"].to_list()), ZERO).quantize(ZERO)
    out.append({"name": "clearing", "value": total, "passed": total == 0,
                "detail": f"net positions of {pos.height} provinces sum to {total}"})

    diff = a["settled"] + a["held"] - a["normal_wallet_pay"]
    out.append({"name": "settlements", "value": diff, "passed": diff == 0, "detail": (
        f"settled {a['settled']} + held {a['held']} = {a['settled'] + a['held']}; "
        f"wallet_pay of NORMAL settlements loaded {a['normal_wallet_pay']}")})
    return out
