"""All together: `report_data`, the one JSON-ready dict that flows/report_html.py renders.
"""
from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from contracts.codes import FAMILIES
from contracts.policy import Policy, policy_for

from auditview.evidence import _window_start, evidence
from auditview.families import _top_sharers, families
from auditview.frames import (_exception_rows, clearing_view, compact_findings, day_over_day,
                              heatmap, rule_table)
from auditview.queries import _Transfers
from auditview.text import AuditConfig, display_text, money

# --------------------------------------------------------------------------- totals

def warehouse_totals(con: duckdb.DuckDBPyConnection, d: date) -> dict:
    """The transfer and settlement records of D as loaded, counted per side: the OUT
    records as the sharers' provinces sent them, the IN records as the beneficiaries'
    provinces did. The SUCCESS amounts of each side are summary.json's transfers_out and
    transfers_in (transforms/clearing.amounts), so the page's counts and its amounts
    speak of the same records."""
    try:
        t = con.execute("""
            SELECT side, count(*) FILTER (WHERE status = 'SUCCESS'),
                   count(*) FILTER (WHERE status = 'FAILED'),
                   count(*) FILTER (WHERE status = 'SUCCESS' AND sharer_province <> beneficiary_province)
            FROM transfers WHERE business_date = ? GROUP BY side""", [d]).fetchall()
        s = con.execute("""SELECT count(*) FILTER (WHERE status = 'NORMAL'),
                                  count(*) FILTER (WHERE status = 'REFUND')
                           FROM settlements WHERE business_date = ?""", [d]).fetchone()
    except duckdb.CatalogException:
        return {}
    sides = {side: {"success": ok, "failed": failed, "cross": cross} for side, ok, failed, cross in t}
    none = {"success": 0, "failed": 0, "cross": 0}
    return {"out": sides.get("OUT", none), "in": sides.get("IN", none),
            "settlements_normal": s[0], "settlements_refund": s[1]}


# --------------------------------------------------------------------------- all together

def _embed(compact: dict, rows: list[dict], ids: list[str]) -> None:
    """Add the findings `ids` to the compact findings of the page when not there yet."""
    embedded = {r[0] for r in compact["rows"]}
    index = {str(r["exception_id"]): r for r in rows}
    for e in dict.fromkeys(e for e in ids if e not in embedded):
        r = index[e]
        compact["rows"].append([
            r.get("exception_id"), r.get("rule_code"), r.get("severity"), r.get("province"),
            r.get("dataset"), display_text(r.get("record_id")), r.get("sharer_psn_no"),
            r.get("beneficiary_psn_no"), money(r.get("amount")), display_text(r.get("detail")),
            r.get("source_file"), r.get("source_row")])


def _policy_view(policy: Policy | None) -> dict | None:
    if policy is None:
        return None
    return {"id": policy.id, "title": policy.title,
            "max_transfer_amount": money(policy.max_transfer_amount),
            "max_daily_out_transfers": policy.max_daily_out_transfers,
            "forwarding_window_days": policy.forwarding_window_days,
            "max_cycle_length": policy.max_cycle_length}


def report_data(con: duckdb.DuckDBPyConnection, business_date: date,
                exceptions: pl.DataFrame, settlement: pl.DataFrame | None = None,
                positions: pl.DataFrame | None = None, policy: Policy | None = None,
                config: AuditConfig | None = None) -> dict:
    """Everything the HTML report shows beyond summary.json, as one JSON-ready dict."""
    config = config or AuditConfig()
    d = business_date
    if policy is None:
        try:
            policy = policy_for(d)
        except ValueError:
            policy = None
    rows = _exception_rows(exceptions)
    dod = day_over_day(con, d, rows, config.day_over_day_rows)
    # one scan of the window's transfers serves the evidence and the family views
    transfers = _Transfers(con, d, _window_start(d, policy))
    top = _top_sharers(rows, config)
    transfers.need(persons=top[0])
    try:
        ev, largest = evidence(con, d, rows, policy, config, transfers)
        fams = families(con, d, rows, policy, config, transfers, top)
    finally:
        transfers.close()
    compact, total = compact_findings(rows, config.max_findings)
    # a finding that is evidenced, largest or listed day over day is always embedded
    _embed(compact, rows, list(ev) + dod["new"] + dod["recurring"])
    return {
        "business_date": d.isoformat(),
        "policy": _policy_view(policy),
        "findings": compact, "findings_total": total,
        "findings_embedded": len(compact["rows"]),
        "rules": rule_table(rows, dod),
        "families_catalogue": {k: {"zh": v[0], "en": v[1]} for k, v in FAMILIES.items()},
        "heatmap": heatmap(rows),
        "clearing": clearing_view(settlement, positions),
        "largest": largest,
        "evidence": ev,
        "families": fams,
        "day_over_day": dod,
        "warehouse_totals": warehouse_totals(con, d),
        "config": config.__dict__.copy(),
    }
