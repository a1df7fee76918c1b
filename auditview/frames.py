"""The auditors' view of the report frames: compact findings, per-rule table, heat map,
clearing matrix, and the day-over-day comparison by exception_id.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from operator import itemgetter
from typing import Iterable

import duckdb
import polars as pl

from contracts.codes import RULES

from auditview.text import EXCEPTION_COLUMNS, FINDING_FIELDS, display_text, money

# --------------------------------------------------------------------------- frames

def _exception_rows(exceptions: pl.DataFrame) -> list[dict]:
    """The findings as dicts, in the frame's order; each also carries "_rank", its place
    in the order of _by_amount (|amount| descending, no amount last, then exception_id),
    computed once here so that the many orderings of a national day cost nothing."""
    if exceptions is None or exceptions.height == 0:
        return []
    cols = [c for c in EXCEPTION_COLUMNS if c in exceptions.columns]
    frame = exceptions.select(cols)
    if "amount" in cols and "exception_id" in cols:
        order = (frame.select(pl.col("amount").abs().alias("a"), pl.col("exception_id").cast(pl.String))
                 .with_row_index("i")
                 .sort(["a", "exception_id"], descending=[True, False], nulls_last=True,
                       maintain_order=True)
                 .get_column("i"))
        frame = frame.with_columns(order.arg_sort().alias("_rank"))
    return list(frame.iter_rows(named=True))


_NO_AMOUNT = Decimal("1")


def _amount_key(r: dict) -> tuple:
    a = r.get("amount")
    if a is None:
        return (_NO_AMOUNT, str(r.get("exception_id")))
    return (-(abs(a) if isinstance(a, Decimal) else abs(Decimal(str(a)))), str(r.get("exception_id")))


def _by_amount(rows: Iterable[dict]) -> list[dict]:
    """Rows ordered by |amount| descending (no amount last), then exception_id."""
    rows = list(rows)
    if all("_rank" in r for r in rows):   # ranked once by _exception_rows
        return sorted(rows, key=itemgetter("_rank"))
    return sorted(rows, key=_amount_key)


def compact_findings(rows: list[dict], cap: int) -> tuple[dict, int]:
    """The findings as columns + row arrays; capped so that every rule stays represented.

    Returns (compact, total). Within a rule the largest |amount| are kept first.
    """
    total = len(rows)
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(str(r.get("rule_code")), []).append(r)
    for code in by_rule:
        by_rule[code] = _by_amount(by_rule[code])
    if total > cap:
        sizes = sorted(len(v) for v in by_rule.values())
        k = 0
        lo, hi = 0, max(sizes)
        while lo < hi:  # largest k with sum(min(n, k)) <= cap
            mid = (lo + hi + 1) // 2
            if sum(min(n, mid) for n in sizes) <= cap:
                lo = mid
            else:
                hi = mid - 1
        k = max(1, lo)  # at least one finding of every rule, even past the cap
        by_rule = {c: v[:k] for c, v in by_rule.items()}
    kept = [r for code in sorted(by_rule) for r in by_rule[code]]
    out = []
    for r in kept:
        out.append([
            r.get("exception_id"), r.get("rule_code"), r.get("severity"), r.get("province"),
            r.get("dataset"), display_text(r.get("record_id")), r.get("sharer_psn_no"),
            r.get("beneficiary_psn_no"), money(r.get("amount")), display_text(r.get("detail")),
            r.get("source_file"), r.get("source_row"),
        ])
    return {"fields": list(FINDING_FIELDS), "rows": out}, total


def rule_table(rows: list[dict], dod: dict | None = None) -> list[dict]:
    """Per rule of the catalogue: zh/en names, family, severity, count, amount (+ day over day:
    new, recurring and resolved against the previous processed date; on a date without one,
    every finding is new)."""
    count: dict[str, int] = {}
    amount: dict[str, Decimal] = {}
    for r in rows:
        code = str(r.get("rule_code"))
        count[code] = count.get(code, 0) + 1
        if r.get("amount") is not None:
            amount[code] = amount.get(code, Decimal("0")) + Decimal(str(r["amount"]))
    codes = list(RULES) + sorted(set(count) - set(RULES))
    by_rule = (dod or {}).get("by_rule", {})
    if dod is not None and dod.get("previous_date") is None:
        # no earlier processed date: every finding is new, none recurs or is resolved
        by_rule = {code: {"new": n, "recurring": 0, "resolved": 0} for code, n in count.items()}
    out = []
    for code in codes:
        rule = RULES.get(code)
        out.append({
            "code": code, "family": code[:1],
            "name": rule.name if rule else "", "zh": rule.zh if rule else "",
            "en": rule.en if rule else "", "severity": rule.severity if rule else "",
            "count": count.get(code, 0),
            "amount": money(amount[code]) if code in amount else None,
            # with a day over day, a rule it does not name has 0 of each (None: not compared)
            "new": by_rule.get(code, {}).get("new", 0) if dod is not None else None,
            "recurring": by_rule.get(code, {}).get("recurring", 0) if dod is not None else None,
            "resolved": by_rule.get(code, {}).get("resolved", 0) if dod is not None else None,
        })
    return out


def heatmap(rows: list[dict]) -> dict:
    """Counts of findings per (province, rule_code), provinces and rules with findings only."""
    cells: dict[tuple[str, str], int] = {}
    for r in rows:
        k = (str(r.get("province")), str(r.get("rule_code")))
        cells[k] = cells.get(k, 0) + 1
    provinces = sorted({p for p, _ in cells})
    order = {c: i for i, c in enumerate(RULES)}
    rules = sorted({c for _, c in cells}, key=lambda c: (order.get(c, 999), c))
    return {"provinces": provinces, "rules": rules,
            "cells": [[p, c, n] for (p, c), n in sorted(cells.items())]}


def clearing_view(settlement: pl.DataFrame | None, positions: pl.DataFrame | None) -> dict:
    """Payer x payee net amounts from the settlement frame, positions as delivered."""
    flows: dict[tuple[str, str], dict[str, Decimal]] = {}
    if settlement is not None and settlement.height:
        for r in settlement.iter_rows(named=True):
            k = (str(r["payer_province"]), str(r["payee_province"]))
            f = flows.setdefault(k, {"settled": Decimal("0"), "refunded": Decimal("0"),
                                     "net": Decimal("0")})
            f["settled"] += Decimal(str(r.get("settled_amount") or 0))
            f["refunded"] += Decimal(str(r.get("refunded_amount") or 0))
            f["net"] += Decimal(str(r.get("net_amount") or 0))
    provinces = sorted({p for k in flows for p in k})
    cross = sum((f["net"] for (a, b), f in flows.items() if a != b), Decimal("0"))
    same = sum((f["net"] for (a, b), f in flows.items() if a == b), Decimal("0"))
    pos = []
    if positions is not None and positions.height:
        for r in positions.sort("province").iter_rows(named=True):
            pos.append({"province": r["province"], "receivable": money(r.get("receivable")),
                        "payable": money(r.get("payable")), "net": money(r.get("net"))})
    return {
        "provinces": provinces,
        "flows": [{"payer": a, "payee": b, "settled": money(f["settled"]),
                   "refunded": money(f["refunded"]), "net": money(f["net"])}
                  for (a, b), f in sorted(flows.items())],
        "cross_province_net": money(cross), "same_province_net": money(same),
        "positions": pos,
    }


# --------------------------------------------------------------------------- day over day

def previous_date(con: duckdb.DuckDBPyConnection, d: date) -> date | None:
    """The latest processed date before D (runs; else findings, for a bare warehouse)."""
    for sql in ("SELECT max(business_date) FROM runs WHERE business_date < ?",
                "SELECT max(business_date) FROM findings WHERE business_date < ?"):
        try:
            v = con.execute(sql, [d]).fetchall()[0][0]
        except duckdb.CatalogException:
            v = None
        if v is not None:
            return v
    return None


def _previous_rekeyed(con: duckdb.DuckDBPyConnection, d: date, prev: date | None) -> dict[str, tuple]:
    """The findings of the previous date P re-keyed to D: {id on D: (rule_code, rowid)}."""
    if prev is None:
        return {}
    return {k: (code, rowid) for k, code, rowid in con.execute(
        "SELECT left(sha256(rule_code || '|' || ? || '|' || province || '|' || record_id), 16), "
        "rule_code, rowid FROM findings WHERE business_date = ? "
        "ORDER BY rule_code, province, record_id", [d.isoformat(), prev]).fetchall()}


def _counts_by_rule(current: dict, rekeyed: dict, new, recurring, resolved) -> dict:
    by_rule: dict[str, dict[str, int]] = {}
    for kind, rules in (("new", [current[e]["rule_code"] for e in new]),
                        ("recurring", [current[e]["rule_code"] for e in recurring]),
                        ("resolved", [rekeyed[k][0] for k in resolved])):
        for code in rules:
            by_rule.setdefault(code, {"new": 0, "recurring": 0, "resolved": 0})[kind] += 1
    return by_rule


def _resolved_rows(con: duckdb.DuckDBPyConnection, prev: date | None, rekeyed: dict,
                   listed: list[str]) -> list[dict]:
    """The previous date's findings that D no longer has, as the page lists them."""
    if not listed:
        return []
    by_rowid = {r[0]: r[1:] for r in con.execute(
        "SELECT rowid, exception_id, rule_code, severity, province, record_id, sharer_psn_no, "
        "beneficiary_psn_no, amount, detail FROM findings WHERE business_date = ? "
        "AND rowid IN (SELECT unnest(?::BIGINT[]))",
        [prev, [rekeyed[k][1] for k in listed]]).fetchall()}
    rows = []
    for k in listed:
        pr = by_rowid[rekeyed[k][1]]
        rows.append({
            "exception_id": pr[0], "rekeyed_id": k, "rule_code": pr[1], "severity": pr[2],
            "province": pr[3], "record_id": display_text(pr[4]), "sharer_psn_no": pr[5],
            "beneficiary_psn_no": pr[6], "amount": money(pr[7]), "detail": display_text(pr[8]),
        })
    return rows


def day_over_day(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict],
                 limit: int = 500) -> dict:
    """New, recurring and resolved findings of D against the previous processed date.

    exception_id embeds the business date, so a finding of the previous date P is
    re-keyed to D: exception_id(rule_code, D, province, record_id). It recurs when
    that id is among D's, is resolved when it is not; D's others are new.
    """
    prev = previous_date(con, d)
    current = {str(r["exception_id"]): r for r in rows}
    rekeyed = _previous_rekeyed(con, d, prev)
    recurring = [e for e in current if e in rekeyed]
    new = [e for e in current if e not in rekeyed] if prev is not None else []
    resolved = [k for k in rekeyed if k not in current]

    def _ordered(ids: list[str]) -> list[str]:
        return [str(r["exception_id"]) for r in _by_amount(current[i] for i in ids)][:limit]

    return {
        "previous_date": prev.isoformat() if prev else None,
        "counts": {"new": len(new), "recurring": len(recurring), "resolved": len(resolved)},
        "by_rule": _counts_by_rule(current, rekeyed, new, recurring, resolved),
        "new": _ordered(new), "recurring": _ordered(recurring),
        "resolved": _resolved_rows(con, prev, rekeyed, resolved[:limit]),
        "truncated": max(len(new), len(recurring), len(resolved)) > limit,
    }
