"""The auditors' view of one business date: pure queries that build report data.

`report_data(con, business_date, exceptions, settlement, positions, config)`
returns one JSON-ready dict that flows/report_html.py renders. It reads the
warehouse (never writes) and the very report frames that become the CSV/Parquet
files, so the page never disagrees with them:

    findings        the exceptions frame, compact (columns + rows), capped at
                    config.max_findings with every rule kept represented
    rules           per rule: counts, amount, day-over-day counts
    heatmap         province x rule counts
    clearing        payer x payee net amounts (settlement frame) and positions
    largest         exception_ids of the largest cases by |amount|
    evidence        per exception_id (top N per rule + largest cases): the
                    records involved, the policy limit it broke, the chain or
                    cycle for S12/S13
    families        one entry per sharer (top N by finding amount): the person,
                    relationships, transfers sent and received, the
                    beneficiaries' spending, remaining quota
    day_over_day    vs the previous processed date, by exception_id

Money stays Decimal until it is written as a string with two decimals.
Resident ID numbers (certno) are masked to the first 6 and last 4 characters
everywhere, free text included (`mask_text`).
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, Iterable

import duckdb
import polars as pl

from contracts.codes import FAMILIES, PROVINCE_NAMES, RULES
from contracts.reports import shorten_for_display
from contracts.policy import Policy, policy_for

CENT = Decimal("0.01")

# Columns of the exceptions report (outputs.md), in order.
EXCEPTION_COLUMNS = (
    "exception_id", "business_date", "rule_code", "rule_name", "severity", "province",
    "dataset", "record_id", "sharer_psn_no", "beneficiary_psn_no", "amount", "detail",
    "source_file", "source_row",
)
# Compact row layout of findings embedded in the page.
FINDING_FIELDS = (
    "exception_id", "rule_code", "severity", "province", "dataset", "record_id",
    "sharer_psn_no", "beneficiary_psn_no", "amount", "detail", "source_file", "source_row",
)


@dataclass(frozen=True)
class AuditConfig:
    """Volume caps, so that the page stays small on a national day."""
    evidence_per_rule: int = 20      # findings per rule with drill-down evidence
    largest_cases: int = 25          # largest findings by |amount| (also evidenced)
    families: int = 10               # sharers with a family view
    family_rows: int = 100           # rows per table of one family
    evidence_rows: int = 50          # rows per evidence table
    max_findings: int = 20000        # findings embedded for filter and search
    day_over_day_rows: int = 500     # rows listed per new / recurring / resolved


# --------------------------------------------------------------------------- masking

_CERTNO_RE = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")


def mask_certno(certno: str | None) -> str | None:
    """First 6 and last 4 characters, the rest as '*' (440106********123X)."""
    if certno is None:
        return None
    s = str(certno)
    if len(s) <= 10:
        return "*" * len(s)
    return s[:6] + "*" * (len(s) - 10) + s[-4:]


def display_text(text: str | None) -> str | None:
    """Free text as the auditors' views show it: masked, and shortened past
    contracts.reports.DISPLAY_TEXT_MAX (the full value stays in the CSV / Parquet)."""
    return shorten_for_display(mask_text(text))


def mask_text(text: str | None) -> str | None:
    """Mask every resident-ID-like token (18 characters: 17 digits and a digit or X; legacy 15 digits) in free text."""
    if text is None:
        return None
    return _CERTNO_RE.sub(lambda m: mask_certno(m.group(0)), str(text))


def _mask_raw(raw: str | None) -> str | None:
    """A quarantined row as JSON text: mask its certno field whatever its shape, then the text."""
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError):
        return mask_text(raw)
    if isinstance(obj, dict):
        for k in list(obj):
            if str(k).strip().lower().lstrip("\ufeff") == "certno" and obj[k] is not None:
                obj[k] = mask_certno(str(obj[k]))
        return mask_text(json.dumps(obj, ensure_ascii=False))
    return mask_text(raw)


# --------------------------------------------------------------------------- formatting

def money(value: Any) -> str | None:
    """A Decimal (or int / numeric string) as a string with exactly two decimals."""
    if value is None:
        return None
    if isinstance(value, float):  # never expected; refuse silently-wrong money
        raise TypeError("money must not be a float")
    return str(Decimal(str(value)).quantize(CENT))


def _cell(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column == "certno":
        return mask_certno(value)
    if column in ("raw",):
        return _mask_raw(value)
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return value
    return mask_text(str(value))


def province_label(code: str | None) -> str:
    if code is None:
        return ""
    zh, en = PROVINCE_NAMES.get(code, ("", ""))
    return f"{code} {zh} {en}".strip()


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
    """Per rule of the catalogue: zh/en names, family, severity, count, amount (+ day over day)."""
    count: dict[str, int] = {}
    amount: dict[str, Decimal] = {}
    for r in rows:
        code = str(r.get("rule_code"))
        count[code] = count.get(code, 0) + 1
        if r.get("amount") is not None:
            amount[code] = amount.get(code, Decimal("0")) + Decimal(str(r["amount"]))
    codes = list(RULES) + sorted(set(count) - set(RULES))
    by_rule = (dod or {}).get("by_rule", {})
    out = []
    for code in codes:
        rule = RULES.get(code)
        out.append({
            "code": code, "family": code[:1],
            "name": rule.name if rule else "", "zh": rule.zh if rule else "",
            "en": rule.en if rule else "", "severity": rule.severity if rule else "",
            "count": count.get(code, 0),
            "amount": money(amount[code]) if code in amount else None,
            "new": by_rule.get(code, {}).get("new"),
            "recurring": by_rule.get(code, {}).get("recurring"),
            "resolved": by_rule.get(code, {}).get("resolved"),
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


def day_over_day(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict],
                 limit: int = 500) -> dict:
    """New, recurring and resolved findings of D against the previous processed date.

    exception_id embeds the business date, so a finding of the previous date P is
    re-keyed to D: exception_id(rule_code, D, province, record_id). It recurs when
    that id is among D's, is resolved when it is not; D's others are new.
    """
    prev = previous_date(con, d)
    current = {str(r["exception_id"]): r for r in rows}
    d_iso = d.isoformat()
    # (re-keyed id, rule_code, rowid) of P's findings; the columns only for the rows listed
    rekeyed: dict[str, tuple] = {}
    if prev is not None:
        for k, code, rowid in con.execute(
                "SELECT left(sha256(rule_code || '|' || ? || '|' || province || '|' || record_id), 16), "
                "rule_code, rowid FROM findings WHERE business_date = ? "
                "ORDER BY rule_code, province, record_id", [d_iso, prev]).fetchall():
            rekeyed[k] = (code, rowid)
    recurring = [e for e in current if e in rekeyed]
    new = [e for e in current if e not in rekeyed] if prev is not None else []
    resolved = [k for k in rekeyed if k not in current]

    by_rule: dict[str, dict[str, int]] = {}
    for e in new:
        by_rule.setdefault(current[e]["rule_code"], {"new": 0, "recurring": 0, "resolved": 0})["new"] += 1
    for e in recurring:
        by_rule.setdefault(current[e]["rule_code"], {"new": 0, "recurring": 0, "resolved": 0})["recurring"] += 1
    for k in resolved:
        by_rule.setdefault(rekeyed[k][0], {"new": 0, "recurring": 0, "resolved": 0})["resolved"] += 1

    def _ordered(ids: list[str]) -> list[str]:
        return [str(r["exception_id"]) for r in _by_amount(current[i] for i in ids)][:limit]

    listed = resolved[:limit]
    by_rowid: dict[int, tuple] = {}
    if listed:
        by_rowid = {r[0]: r[1:] for r in con.execute(
            "SELECT rowid, exception_id, rule_code, severity, province, record_id, sharer_psn_no, "
            "beneficiary_psn_no, amount, detail FROM findings WHERE business_date = ? "
            "AND rowid IN (SELECT unnest(?::BIGINT[]))",
            [prev, [rekeyed[k][1] for k in listed]]).fetchall()}
    resolved_rows = []
    for k in listed:
        pr = by_rowid[rekeyed[k][1]]
        resolved_rows.append({
            "exception_id": pr[0], "rekeyed_id": k, "rule_code": pr[1], "severity": pr[2],
            "province": pr[3], "record_id": display_text(pr[4]), "sharer_psn_no": pr[5],
            "beneficiary_psn_no": pr[6], "amount": money(pr[7]), "detail": display_text(pr[8]),
        })
    return {
        "previous_date": prev.isoformat() if prev else None,
        "counts": {"new": len(new), "recurring": len(recurring), "resolved": len(resolved)},
        "by_rule": by_rule,
        "new": _ordered(new), "recurring": _ordered(recurring), "resolved": resolved_rows,
        "truncated": max(len(new), len(recurring), len(resolved)) > limit,
    }


# --------------------------------------------------------------------------- batched queries
#
# Evidence and family views are gathered in batch: every kind of evidence table is one
# query for all the findings (or sharers) that want it, joined against their keys
# (passed as list parameters and unnested); the rows are then grouped by key in Python,
# and the transfers of the window are read once (_Transfers). A national day evidences
# hundreds of findings: a few queries each cost tens of seconds.

_PSN_RE = re.compile(r"(?<!\d)\d{20}(?!\d)")
_PARAM_RE = re.compile(r"\$([a-z_0-9]+)")


def _make_table(key: str, zh: str, en: str, columns: list[str], rows: list[tuple],
                limit: int) -> dict | None:
    """{key, zh, en, columns, rows, more} of at most `limit` rows (cells formatted), or None."""
    if not rows:
        return None
    return {"key": key, "zh": zh, "en": en, "columns": columns,
            "rows": [[_cell(c, v) for c, v in zip(columns, r)] for r in rows[:limit]],
            "more": len(rows) > limit}


_SQL_TYPES = {pl.String: "VARCHAR", pl.Int64: "BIGINT"}


def _with_keys(sql: str, params: dict, keys: list[tuple], types: tuple) -> tuple[str, dict]:
    """`sql` with {keys} as a relation (k0, k1, ...) of `keys`, passed as list parameters."""
    cols = ", ".join(f"unnest($__k{i}::{_SQL_TYPES[t]}[]) AS k{i}" for i, t in enumerate(types))
    text = sql.replace("{keys}", f"(SELECT {cols})").replace(
        "{transfers}", params.get("__transfers") or "transfers")
    used = {p: params[p] for p in dict.fromkeys(_PARAM_RE.findall(text)) if not p.startswith("__k")}
    for i in range(len(types)):
        used[f"__k{i}"] = [k[i] for k in keys]
    return text, used


def _batch(con: duckdb.DuckDBPyConnection, sql: str, params: dict, keys: Iterable[tuple],
           types: tuple, cap: int, out_keys: int | None = None
           ) -> tuple[list[str], dict[tuple, list[tuple]]] | None:
    """Run `sql` once for many keys; return (columns, rows by key), None when a table is missing.

    `sql` reads the keys as the relation {keys} (columns k0, k1, ... of polars `types`)
    and yields __k0, __k1, ... first and __n (the 1-based rank of the row within its
    key, in the table's order) last; at most `cap` rows per key are fetched, in order.
    Keys holding None are skipped (they match nothing, as `= NULL` would). `out_keys`:
    how many __k columns the SQL yields (default: one per key column).
    """
    keys = [k for k in dict.fromkeys(keys) if all(x is not None for x in k)]
    if not keys:
        return [], {}
    arity = len(types)
    nk = arity if out_keys is None else out_keys
    text, used = _with_keys(sql, params, keys, types)
    try:
        order = ", ".join(f"__k{i}" for i in range(nk))
        cur = con.execute(f"SELECT * FROM ({text}) WHERE __n <= {int(cap)} ORDER BY {order}, __n",
                          used)
        cols = [c[0] for c in cur.description][nk:-1]
        grouped: dict[tuple, list[tuple]] = {}
        for r in cur.fetchall():
            grouped.setdefault(r[:nk], []).append(r[nk:-1])
        return cols, grouped
    except duckdb.CatalogException:
        return None


# Evidence tables: kind -> (key, zh, en, key types, SQL over {keys}).
_S = pl.String
_EVIDENCE_KINDS: dict[str, tuple[str, str, str, tuple, str]] = {
    "transfer": ("transfer", "转账记录(双边)", "Transfer records (both sides)", (_S,), """
        SELECT k.k0 AS __k0, t.transfer_id, t.side, t.status, t.relation_id, t.sharer_psn_no,
               t.beneficiary_psn_no, t.sharer_province, t.beneficiary_province, t.amount,
               t.transfer_time, t.source_file, t.source_row,
               row_number() OVER (PARTITION BY k.k0 ORDER BY t.side DESC, t.source_file,
                                  t.source_row) AS __n
        FROM {transfers} t JOIN {keys} k ON t.transfer_id = k.k0 WHERE t.business_date = $day"""),
    "relation": ("relation", "共济关系事件", "Relationship events", (_S,), """
        SELECT t.k0 AS __k0, r.business_date, r.event_id, r.event_type, r.relation_code,
               r.commitment_signed, r.sharer_psn_no, r.beneficiary_psn_no, r.event_time, e.valid,
               row_number() OVER (PARTITION BY t.k0 ORDER BY r.event_time, r.event_id) AS __n
        FROM relationships r
        JOIN (SELECT DISTINCT k.k0, x.relation_id FROM {transfers} x JOIN {keys} k
                ON x.transfer_id = k.k0 WHERE x.business_date = $day) t
          ON t.relation_id = r.relation_id
        LEFT JOIN relation_events e ON e.event_id = r.event_id AND e.business_date = r.business_date
        WHERE r.business_date <= $day"""),
    "sharer_out": ("sharer_out", "共济人当日成功转出(按时间)",
                   "Sharer's SUCCESS OUT transfers of the day, in order", (_S,), """
        SELECT sharer_psn_no AS __k0,
               row_number() OVER w AS n, transfer_id, beneficiary_psn_no, amount,
               sum(amount) OVER w AS running_sum, transfer_time,
               row_number() OVER w AS __n
        FROM {transfers} WHERE business_date = $day AND side = 'OUT' AND status = 'SUCCESS'
          AND sharer_psn_no IN (SELECT k0 FROM {keys})
        WINDOW w AS (PARTITION BY sharer_psn_no ORDER BY transfer_time, transfer_id)"""),
    "personal": ("personal", "共济人个人账户余额", "Sharer's personal account", (_S,), """
        SELECT psn_no AS __k0, psn_no, account, opening_balance, closing_balance, source_file,
               source_row,
               row_number() OVER (PARTITION BY psn_no ORDER BY source_file, source_row) AS __n
        FROM balances WHERE business_date = $day AND account = 'PERSONAL'
          AND psn_no IN (SELECT k0 FROM {keys})"""),
    "held_quota": ("held_quota", "共济人期初持有的受让额度",
                   "Quota the sharer held at 00:00 (lots received)", (_S,), """
        SELECT beneficiary_psn_no AS __k0, lot_id, sharer_psn_no AS from_sharer, payer_province,
               original_amount, remaining,
               row_number() OVER (PARTITION BY beneficiary_psn_no ORDER BY lot_id) AS __n
        FROM lots WHERE business_date = $lots_before AND remaining > 0
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    "received_today": ("received_today", "共济人当日收到的转账",
                       "SUCCESS IN transfers to the sharer on D", (_S,), """
        SELECT beneficiary_psn_no AS __k0, transfer_id, sharer_psn_no AS from_sharer, amount,
               transfer_time,
               row_number() OVER (PARTITION BY beneficiary_psn_no
                                  ORDER BY transfer_time, transfer_id) AS __n
        FROM {transfers} WHERE business_date = $day AND side = 'IN' AND status = 'SUCCESS'
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    "settlement": ("settlement", "结算记录", "Settlement record", (_S,), """
        SELECT setl_id AS __k0, setl_id, status, orig_setl_id, psn_no, expense_type,
               fixmedins_code, total_amount, personal_burden, wallet_pay, setl_time, source_file,
               source_row,
               row_number() OVER (PARTITION BY setl_id ORDER BY source_file, source_row) AS __n
        FROM settlements WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})"""),
    "outcome": ("outcome", "结算结果", "Outcome", (_S,), """
        SELECT setl_id AS __k0, setl_id, status, wallet_pay, outcome,
               row_number() OVER (PARTITION BY setl_id ORDER BY status, outcome) AS __n
        FROM settlement_outcomes
        WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})"""),
    "original": ("original", "被退费的原结算", "The settlement refunded", (_S,), """
        SELECT q.k0 AS __k0, s.business_date, s.setl_id, s.status, s.expense_type, s.wallet_pay,
               o.outcome,
               row_number() OVER (PARTITION BY q.k0 ORDER BY s.business_date) AS __n
        FROM settlements s
        LEFT JOIN settlement_outcomes o USING (business_date, setl_id)
        JOIN (SELECT DISTINCT setl_id AS k0, orig_setl_id FROM settlements
              WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})) q
          ON s.setl_id = q.orig_setl_id
        WHERE s.business_date <= $day"""),
    "earlier_refunds": ("earlier_refunds", "原结算已有的退费", "Refunds of that settlement", (_S,), """
        SELECT q.k0 AS __k0, s.business_date, s.setl_id, s.wallet_pay, s.setl_time,
               row_number() OVER (PARTITION BY q.k0
                                  ORDER BY s.business_date, s.setl_time, s.setl_id) AS __n
        FROM settlements s
        JOIN (SELECT DISTINCT setl_id AS k0, orig_setl_id FROM settlements
              WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})) q
          ON s.orig_setl_id = q.orig_setl_id
        WHERE s.business_date <= $day AND s.status = 'REFUND'"""),
    "institution": ("institution", "定点机构", "Institution", (_S,), """
        SELECT q.k0 AS __k0, i.fixmedins_code, i.fixmedins_type, i.admdvs, i.designated_from,
               i.designated_to,
               row_number() OVER (PARTITION BY q.k0 ORDER BY i.fixmedins_code) AS __n
        FROM institutions i
        JOIN (SELECT DISTINCT setl_id AS k0, fixmedins_code FROM settlements
              WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})) q
          ON i.fixmedins_code = q.fixmedins_code
        WHERE i.business_date = $day"""),
    "opening_lots": ("opening_lots", "被共济人期初额度(按扣款顺序)",
                     "Beneficiary's quota lots at 00:00, in consumption order", (_S,), """
        SELECT beneficiary_psn_no AS __k0, lot_id, sharer_psn_no, payer_province,
               original_amount, remaining,
               row_number() OVER (PARTITION BY beneficiary_psn_no
                                  ORDER BY genesis DESC, CASE WHEN genesis THEN sharer_psn_no END,
                                           transfer_time, transfer_id) AS __n
        FROM lots WHERE business_date = $lots_before
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    "day_events": ("day_events", "被共济人当日额度变动", "Beneficiary's quota movements on D",
                   (_S,), """
        SELECT __k0, "at", event, quota_in, wallet_pay, outcome,
               row_number() OVER (PARTITION BY __k0 ORDER BY "at", event) AS __n
        FROM (
          SELECT beneficiary_psn_no AS __k0, transfer_time AS "at", 'IN ' || transfer_id AS event,
                 amount AS quota_in, NULL::DECIMAL(18,2) AS wallet_pay, NULL AS outcome
          FROM {transfers} WHERE business_date = $day AND side = 'IN' AND status = 'SUCCESS'
            AND beneficiary_psn_no IN (SELECT k0 FROM {keys})
          UNION ALL
          SELECT s.psn_no, s.setl_time, s.status || ' ' || s.setl_id, NULL, s.wallet_pay, o.outcome
          FROM settlements s LEFT JOIN settlement_outcomes o USING (business_date, setl_id)
          WHERE s.business_date = $day AND s.psn_no IN (SELECT k0 FROM {keys}))"""),
    "consumed": ("consumed", "扣减的额度批次", "Lots consumed", (_S,), """
        SELECT setl_id AS __k0, seq, lot_id, payer_province, amount,
               row_number() OVER (PARTITION BY setl_id ORDER BY seq) AS __n
        FROM consumptions WHERE business_date = $day AND setl_id IN (SELECT k0 FROM {keys})"""),
    "event": ("event", "共济关系事件", "Relationship event", (_S,), """
        SELECT event_id AS __k0, event_id, relation_id, event_type, relation_code,
               commitment_signed, channel, sharer_psn_no, beneficiary_psn_no, beneficiary_province,
               event_time, source_file, source_row,
               row_number() OVER (PARTITION BY event_id ORDER BY source_file, source_row) AS __n
        FROM relationships WHERE business_date = $day AND event_id IN (SELECT k0 FROM {keys})"""),
    "history": ("history", "该关系的历史事件", "History of the relationship", (_S,), """
        SELECT q.k0 AS __k0, e.business_date, e.event_id, e.event_type, e.event_time, e.valid,
               row_number() OVER (PARTITION BY q.k0 ORDER BY e.event_time, e.event_id) AS __n
        FROM relation_events e
        JOIN (SELECT DISTINCT event_id AS k0, relation_id FROM relationships
              WHERE business_date = $day AND event_id IN (SELECT k0 FROM {keys})) q
          ON e.relation_id = q.relation_id
        WHERE e.business_date <= $day"""),
    "balance": ("balance", "报送的额度余额", "Delivered quota balance", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, b.business_date, b.psn_no, b.account, b.sharer_psn_no,
               b.opening_balance, b.closing_balance, b.source_file, b.source_row,
               row_number() OVER (PARTITION BY k.k0, k.k1
                                  ORDER BY b.business_date DESC, b.source_file, b.source_row) AS __n
        FROM balances b JOIN {keys} k ON b.psn_no = k.k0 AND b.sharer_psn_no = k.k1
        WHERE b.business_date BETWEEN $day_before AND $day AND b.account = 'QUOTA'"""),
    "computed": ("computed", "计算的额度批次(日终)", "Computed lots (closing)", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, l.business_date, l.lot_id, l.original_amount,
               l.remaining,
               row_number() OVER (PARTITION BY k.k0, k.k1
                                  ORDER BY l.business_date DESC, l.lot_id) AS __n
        FROM lots l JOIN {keys} k ON l.beneficiary_psn_no = k.k0 AND l.sharer_psn_no = k.k1
        WHERE l.business_date IN ($day, $lots_before)"""),
    "computed_total": ("computed_total", "计算的期末额度合计", "Computed closing quota", (_S, _S), """
        SELECT __k0, __k1, business_date, remaining,
               row_number() OVER (PARTITION BY __k0, __k1 ORDER BY business_date DESC) AS __n
        FROM (SELECT k.k0 AS __k0, k.k1 AS __k1, l.business_date, sum(l.remaining) AS remaining
              FROM lots l JOIN {keys} k ON l.beneficiary_psn_no = k.k0 AND l.sharer_psn_no = k.k1
              WHERE l.business_date IN ($day, $lots_before)
              GROUP BY k.k0, k.k1, l.business_date)"""),
    "quarantine": ("quarantine", "隔离的记录", "Quarantined row", (_S, pl.Int64), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, q.source_file, q.source_row, q.record_id, q.rule_code,
               q.reasons, q.raw,
               row_number() OVER (PARTITION BY k.k0, k.k1 ORDER BY q.rule_code, q.record_id) AS __n
        FROM quarantine q JOIN {keys} k ON q.source_file = k.k0 AND q.source_row = k.k1
        WHERE q.business_date = $day"""),
    "file": ("file", "文件装载", "File load", (_S,), """
        SELECT source_file AS __k0, source_file, dataset, encoding, rows_read, rows_loaded,
               rows_quarantined, rejected, reject_rule, reject_reason,
               row_number() OVER (PARTITION BY source_file ORDER BY dataset) AS __n
        FROM file_loads WHERE business_date = $day AND source_file IN (SELECT k0 FROM {keys})"""),
    "files": ("files", "该省文件装载", "File loads of the province", (_S,), """
        SELECT province AS __k0, source_file, dataset, rows_read, rows_loaded, rows_quarantined,
               rejected, reject_rule, reject_reason,
               row_number() OVER (PARTITION BY province ORDER BY source_file) AS __n
        FROM file_loads WHERE business_date = $day AND province IN (SELECT k0 FROM {keys})"""),
}

_PERSONS_SQL = """
    SELECT psn_no AS __k0, psn_no, certno, insutype, insu_status, insu_admdvs, birth_date, sex,
           business_date AS delivered_on, 1 AS __n
    FROM persons WHERE business_date <= $day AND psn_no IN (SELECT k0 FROM {keys})
    QUALIFY row_number() OVER (PARTITION BY psn_no
                               ORDER BY business_date DESC, file_province, source_row) = 1"""


# kinds that read transfers: by transfer id (of D) and by person
_TRANSFER_KINDS = {"transfer", "relation", "sharer_out", "received_today", "day_events"}


class _Gather:
    """Requests for evidence tables, answered in batch: one query per kind of table.

    want(kind, *key) and persons(psn_nos) return a reference; run() queries; table(ref)
    gives the table dict (or None when there is no row), shared by equal references.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, lim: int,
                 transfers: _Transfers | None = None):
        self.con, self.d, self.lim = con, d, lim
        self.transfers = transfers
        self.wanted: dict[str, set[tuple]] = {}
        self.psn_nos: set[str] = set()
        self.results: dict[str, tuple | None] = {}
        self.people: dict[str, tuple] | None = None
        self.cache: dict[tuple, dict | None] = {}

    def want(self, kind: str, *key) -> tuple | None:
        if any(k is None for k in key):
            return None
        self.wanted.setdefault(kind, set()).add(key)
        return ("t", kind, key)

    def persons(self, psn_nos: Iterable[str | None]) -> tuple | None:
        ps = tuple(p for p in dict.fromkeys(psn_nos) if p)
        if not ps:
            return None
        self.psn_nos.update(ps)
        return ("p", ps)

    def run(self) -> None:
        con, d = self.con, self.d
        if not self.wanted and not self.psn_nos:
            return
        lots_before = None
        if {"held_quota", "opening_lots", "computed", "computed_total"} & set(self.wanted):
            try:
                lots_before = con.execute("SELECT max(business_date) FROM lots WHERE business_date < ?",
                                          [d]).fetchall()[0][0]
            except duckdb.CatalogException:
                lots_before = None
        params = {"day": d, "day_before": d - timedelta(days=1), "lots_before": lots_before}
        if self.transfers is not None and _TRANSFER_KINDS & set(self.wanted):
            params["__transfers"] = self.transfers.fetch()
        for kind, keys in self.wanted.items():
            _k, _zh, _en, types, sql = _EVIDENCE_KINDS[kind]
            self.results[kind] = _batch(con, sql, params, keys, types, self.lim + 1)
        if self.psn_nos:
            got = _batch(con, _PERSONS_SQL, params, [(p,) for p in self.psn_nos], (_S,), 1)
            if got is None:
                self.people = None
            else:
                cols, by = got
                self.people_cols = cols
                self.people = {k[0]: [_cell(c, v) for c, v in zip(cols, rows[0])]
                               for k, rows in by.items()}

    def table(self, ref: tuple | None) -> dict | None:
        if ref is None:
            return None
        if ref in self.cache:
            return self.cache[ref]
        if ref[0] == "p":
            out = None
            if self.people:
                rows = [self.people[p] for p in sorted(set(ref[1])) if p in self.people]
                if rows:
                    out = {"key": "persons", "zh": "人员", "en": "Persons",
                           "columns": list(self.people_cols), "rows": rows[:self.lim],
                           "more": len(rows) > self.lim}
        else:
            _t, kind, key = ref
            tkey, zh, en, _types, _sql = _EVIDENCE_KINDS[kind]
            got = self.results.get(kind)
            out = None
            if got is not None:
                cols, by = got
                out = _make_table(tkey, zh, en, cols, by.get(key, []), self.lim)
        self.cache[ref] = out
        return out


# --------------------------------------------------------------------------- evidence

def _limits(rule: str, policy: Policy | None) -> list[dict]:
    if policy is None:
        return []
    pv = {"policy": policy.id}
    if rule == "S01":
        return [{"zh": "近亲属范围", "en": "Near relatives", "value": " ".join(policy.near_relatives), **pv}]
    if rule == "S08":
        return [{"zh": "单笔转账上限", "en": "Max amount of one transfer",
                 "value": money(policy.max_transfer_amount), **pv}]
    if rule == "S09":
        return [{"zh": "每日转出笔数上限", "en": "Max SUCCESS OUT transfers per sharer per day",
                 "value": str(policy.max_daily_out_transfers), **pv}]
    if rule == "S12":
        return [{"zh": "转手回溯窗口(天)", "en": "Forwarding look-back window (days)",
                 "value": str(policy.forwarding_window_days), **pv}]
    if rule == "S13":
        return [{"zh": "最长循环(笔)", "en": "Longest cycle searched (transfers)",
                 "value": str(policy.max_cycle_length), **pv},
                {"zh": "回溯窗口(天)", "en": "Look-back window (days)",
                 "value": str(policy.forwarding_window_days), **pv}]
    return []


def _is_chain(f: dict) -> bool:
    return (f.get("rule_code") in ("S12", "S13") and f.get("dataset") == "transfers"
            and bool(f.get("sharer_psn_no")))


def _plan(g: _Gather, f: dict) -> list:
    """The evidence tables of one finding, in order, as references (or 'chain')."""
    rule = str(f.get("rule_code"))
    dataset = str(f.get("dataset"))
    sharer, ben = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    rid = f.get("record_id")
    rid = None if rid is None else str(rid)
    plan: list = []
    if rule in ("F04", "F05") or dataset == "manifest" or rule in ("F01", "F02", "F03"):
        src, row = f.get("source_file"), f.get("source_row")
        if src and row is not None:
            plan.append(g.want("quarantine", src, int(row)))
        if src:
            plan.append(g.want("file", src))
        else:
            plan.append(g.want("files", f.get("province")))
    elif dataset == "transfers":
        plan.append(g.want("transfer", rid))
        if rule == "S05":
            plan.append(g.want("relation", rid))
        if rule == "S06":
            plan.append(g.persons([sharer]))
        if rule in ("S09", "S10", "S11") and sharer:
            plan.append(g.want("sharer_out", sharer))
        if rule in ("S10", "S11") and sharer:
            plan.append(g.want("personal", sharer))
        if rule == "S11" and sharer:
            plan.append(g.want("held_quota", sharer))
            plan.append(g.want("received_today", sharer))
        if rule in ("S12", "S13") and sharer:
            plan.append("chain")
    elif dataset == "settlements":
        plan += [g.want("settlement", rid), g.want("outcome", rid)]
        if rule == "S20":
            plan += [g.want("original", rid), g.want("earlier_refunds", rid)]
        if rule == "S15":
            plan.append(g.want("institution", rid))
        if rule in ("S07", "F06"):
            plan.append(g.persons([ben]))
        if rule == "S18" and ben:
            plan += [g.want("opening_lots", ben), g.want("day_events", ben)]
        plan.append(g.want("consumed", rid))
    elif dataset == "relationships":
        plan += [g.want("event", rid), g.persons([sharer, ben]), g.want("history", rid)]
    elif dataset == "balances":
        b, _, s = str(rid).partition(":")
        plan += [g.want("balance", b, s), g.want("computed", b, s), g.want("computed_total", b, s)]
    else:
        plan.append(g.persons([sharer, ben]))
    if rule == "F06":
        plan.append(g.persons([sharer, ben]))
    return plan


def _window_start(d: date, policy: Policy | None) -> date:
    return d - timedelta(days=(policy.forwarding_window_days if policy else 30) - 1)


def _chain_persons(f: dict) -> list[str]:
    named = _PSN_RE.findall(f.get("detail") or "")
    return [p for p in dict.fromkeys(named + [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")]) if p]


class _Transfers:
    """The transfers of the window [start, D] that touch given persons (as either party)
    or are among D's given transfer ids: one scan of the warehouse for every evidence
    and family query about transfers, which then read it as {transfers}.

    need() what is wanted, fetch() once (registers the rows on the connection), close().
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, start: date):
        self.con, self.d, self.start = con, d, start
        self.persons: set[str] = set()
        self.ids: set[str] = set()
        self.name: str | None = None
        self._registered = False

    def need(self, persons: Iterable[str | None] = (), ids: Iterable[str | None] = ()) -> None:
        if self.name is not None:
            raise RuntimeError("transfers already fetched")
        self.persons.update(p for p in persons if p)
        self.ids.update(str(i) for i in ids if i is not None)

    def fetch(self) -> str:
        if self.name is None:
            text, used = _with_keys("""
                SELECT * FROM transfers
                WHERE business_date BETWEEN $start AND $day
                  AND (sharer_psn_no IN (SELECT k0 FROM {keys})
                       OR beneficiary_psn_no IN (SELECT k0 FROM {keys})
                       OR (business_date = $day AND transfer_id IN (SELECT unnest($ids::VARCHAR[]))))""",
                                    {"start": self.start, "day": self.d, "ids": sorted(self.ids)},
                                    [(p,) for p in sorted(self.persons)], (pl.String,))
            try:
                with warnings.catch_warnings():   # a small result: its extra copy is nothing
                    warnings.simplefilter("ignore", UserWarning)
                    # execute(), not sql(): it also ends a caller's unfinished result
                    table = self.con.execute(text, used).to_arrow_table()
            except duckdb.CatalogException:
                self.name = "transfers"      # no such table: every query about it finds none
                return self.name
            self.name = f"__audit_transfers_{id(self):x}"
            self.con.register(self.name, table)
            self._registered = True
        return self.name

    def window(self) -> list[tuple]:
        """SUCCESS rows (sharer, beneficiary, transfer_id, amount, transfer_time, side), every side."""
        try:
            return self.con.execute(f"""
                SELECT sharer_psn_no, beneficiary_psn_no, transfer_id, amount, transfer_time, side
                FROM {self.fetch()} WHERE status = 'SUCCESS'""").fetchall()
        except duckdb.CatalogException:
            return []

    def close(self) -> None:
        if self._registered:
            self.con.unregister(self.name)
            self._registered = False


class _Window:
    """window_transfers() indexed once for many chains."""

    def __init__(self, rows: list[tuple]):
        by_id: dict[str, tuple] = {}
        own: dict[str, Any] = {}
        self.in_to: dict[str, list[tuple]] = {}
        for r in rows:
            if r[2] not in by_id or r[5] == "OUT":   # one row per transfer, OUT preferred
                by_id[r[2]] = r
            if r[4] is not None and (r[2] not in own or r[4] < own[r[2]]):
                own[r[2]] = r[4]
            if r[5] == "IN":
                self.in_to.setdefault(r[1], []).append(r)
        self.own = own
        self.by_pair: dict[tuple, list[tuple]] = {}
        for r in by_id.values():
            self.by_pair.setdefault((r[0], r[1]), []).append(r)


def _chain(d: date, f: dict, policy: Policy | None, lim: int, window: _Window) -> dict | None:
    """S12: upstream senders -> sharer -> beneficiary; S13: the cycle named in the detail.

    The detail text names the persons (20-digit psn_no) of the chain in order; the
    edges are drawn with the SUCCESS transfers of the window between them (one row
    per transfer, the OUT side when both were delivered).
    """
    start = _window_start(d, policy)
    sharer, beneficiary = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    t = window.own.get(f["record_id"])
    named = _PSN_RE.findall(f.get("detail") or "")
    if f["rule_code"] == "S12":
        upstream = [p for p in dict.fromkeys(named) if p not in (sharer, beneficiary)]
        if not upstream and t is not None:
            upstream = sorted({r[0] for r in window.in_to.get(sharer, ())
                               if r[0] != beneficiary and r[4] < t})
        nodes = list(dict.fromkeys(upstream + [sharer, beneficiary]))
        pairs = [(u, sharer) for u in upstream] + [(sharer, beneficiary)]
        kind = "forwarding"
    else:
        cyc = list(named)
        if len(cyc) >= 2 and cyc[0] == cyc[-1]:
            cyc = cyc[:-1]
        cyc = list(dict.fromkeys(cyc))
        if len(cyc) < 2:
            cyc = [p for p in (sharer, beneficiary) if p]
        # rotate so that the transfer of this finding (sharer -> beneficiary) closes the cycle
        if sharer in cyc:
            i = cyc.index(sharer)
            cyc = cyc[i + 1:] + cyc[:i + 1]
        nodes = cyc
        pairs = [(cyc[i], cyc[(i + 1) % len(cyc)]) for i in range(len(cyc))] if len(cyc) >= 2 else []
        kind = "cycle"
    if not pairs:
        return None
    edges_rows = sorted((r for p in dict.fromkeys(pairs) for r in window.by_pair.get(p, ())
                         if t is None or r[4] <= t), key=lambda r: (r[4], r[2]))
    by_pair: dict[tuple, list[tuple]] = {}
    for r in edges_rows:
        by_pair.setdefault((r[0], r[1]), []).append(r)
    edges = []
    for a, b in pairs:
        ts = by_pair.get((a, b), [])
        edges.append({"from": a, "to": b, "count": len(ts),
                      "amount": money(sum((r[3] for r in ts), Decimal("0"))),
                      "last": _cell("t", ts[-1][4]) if ts else None,
                      "transfer_ids": [r[2] for r in ts][-5:],
                      "this": a == sharer and b == beneficiary})
    table = None
    if edges_rows:
        table = {"key": "chain_transfers", "zh": "链条中的转账(窗口内)",
                 "en": "Transfers along the chain (window)",
                 "columns": ["transfer_id", "sharer_psn_no", "beneficiary_psn_no", "amount",
                             "transfer_time"],
                 "rows": [[r[2], r[0], r[1], money(r[3]), _cell("t", r[4])]
                          for r in edges_rows[:lim]],
                 "more": len(edges_rows) > lim}
    return {"kind": kind, "nodes": nodes, "edges": edges, "window_from": start.isoformat(),
            "table": table}


def evidence_of(con: duckdb.DuckDBPyConnection, d: date, findings: list[dict],
                policy: Policy | None, lim: int = 50,
                transfers: _Transfers | None = None) -> list[dict]:
    """The evidence of each finding (records involved, limit broken, chain/cycle), in batch.

    `transfers`: a not yet fetched _Transfers shared with other views (else one of its own).
    """
    own = transfers is None
    if own:
        transfers = _Transfers(con, d, _window_start(d, policy))
    try:
        g = _Gather(con, d, lim, transfers)
        plans = [_plan(g, f) for f in findings]
        chains = [f for f in findings if _is_chain(f)]
        transfers.need(ids=[k[0] for kind in ("transfer", "relation") for k in g.wanted.get(kind, ())],
                       persons=[k[0] for kind in ("sharer_out", "received_today", "day_events")
                                for k in g.wanted.get(kind, ())]
                       + [p for f in chains for p in _chain_persons(f)])
        g.run()
        window = _Window(transfers.window()) if chains else None
    finally:
        if own:
            transfers.close()
    out = []
    for f, plan in zip(findings, plans):
        tables, chain = [], None
        for ref in plan:
            if ref == "chain":
                chain = _chain(d, f, policy, lim, window) if window is not None else None
                if chain and chain.get("table"):
                    tables.append(chain.pop("table"))
            else:
                tables.append(g.table(ref))
        e = {"tables": [t for t in tables if t], "limits": _limits(str(f.get("rule_code")), policy)}
        if chain:
            e["chain"] = chain
        out.append(e)
    return out


def evidence_for(con: duckdb.DuckDBPyConnection, d: date, f: dict, policy: Policy | None,
                 lim: int = 50) -> dict:
    """The evidence of one finding."""
    return evidence_of(con, d, [f], policy, lim)[0]


def _evidence_choice(rows: list[dict], config: AuditConfig) -> tuple[dict[str, dict], list[str]]:
    """The findings to evidence (top N per rule + the largest cases) and the largest cases."""
    largest = [str(r["exception_id"]) for r in _by_amount(r for r in rows if r.get("amount") is not None)
               ][:config.largest_cases]
    chosen: dict[str, dict] = {}
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(str(r.get("rule_code")), []).append(r)
    for code, rs in by_rule.items():
        for r in _by_amount(rs)[:config.evidence_per_rule]:
            chosen[str(r["exception_id"])] = r
    index = {str(r["exception_id"]): r for r in rows}
    for e in largest:
        chosen[e] = index[e]
    return chosen, largest


def evidence(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict], policy: Policy | None,
             config: AuditConfig, transfers: _Transfers | None = None
             ) -> tuple[dict[str, dict], list[str]]:
    """Evidence for the top N findings per rule and the largest cases; returns (evidence, largest)."""
    chosen, largest = _evidence_choice(rows, config)
    found = evidence_of(con, d, list(chosen.values()), policy, config.evidence_rows, transfers)
    return dict(zip(chosen, found)), largest


# --------------------------------------------------------------------------- families

def _keyed(con: duckdb.DuckDBPyConnection, sql: str, params: dict, keys: list[tuple],
           types: tuple) -> list[tuple]:
    """Rows of `sql` (reading the keys as {keys}: k0, k1, ...), all of them, as fetched."""
    if not keys:
        return []
    text, used = _with_keys(sql, params, keys, types)
    return con.execute(text, used).fetchall()


_FAMILY_TABLES: dict[str, tuple[str, str, str, tuple, str]] = {
    "relationships": ("relationships", "共济关系事件", "Relationship events", (_S,), """
        SELECT r.sharer_psn_no AS __k0, r.business_date, r.event_id, r.relation_id, r.event_type,
               r.relation_code, r.commitment_signed, r.beneficiary_psn_no, r.event_time, e.valid,
               row_number() OVER (PARTITION BY r.sharer_psn_no
                                  ORDER BY r.event_time DESC, r.event_id) AS __n
        FROM relationships r LEFT JOIN relation_events e
          ON e.business_date = r.business_date AND e.event_id = r.event_id
        WHERE r.business_date <= $day AND r.sharer_psn_no IN (SELECT k0 FROM {keys})"""),
    "transfers": ("transfers", "转出与转入(窗口内)", "Transfers sent and received (window)", (_S,), """
        SELECT __k0, transfer_time, transfer_id,
               CASE WHEN sharer_psn_no = __k0 THEN 'OUT' ELSE 'IN' END AS direction,
               sharer_psn_no, beneficiary_psn_no, amount, status,
               row_number() OVER (PARTITION BY __k0 ORDER BY transfer_time DESC, transfer_id) AS __n
        FROM (SELECT k.k0 AS __k0, t.* FROM {transfers} t JOIN {keys} k
                ON t.sharer_psn_no = k.k0 OR t.beneficiary_psn_no = k.k0
              WHERE t.business_date BETWEEN $start AND $day
              QUALIFY row_number() OVER (PARTITION BY k.k0, t.transfer_id ORDER BY t.side DESC) = 1)"""),
    "spending": ("spending", "被共济人的结算(窗口内)", "Beneficiaries' settlements (window)",
                 (_S, _S), """
        WITH sl AS (
          SELECT k.k0 AS __k0, s.business_date, s.setl_time, s.setl_id, s.psn_no, s.status,
                 s.expense_type, s.fixmedins_code, s.wallet_pay
          FROM settlements s JOIN {keys} k ON s.psn_no = k.k1
          WHERE s.business_date BETWEEN $start AND $day),
        fs AS (
          SELECT x.__k0, c.business_date, c.setl_id, sum(c.amount) AS amount
          FROM consumptions c
          JOIN (SELECT DISTINCT sharer_psn_no AS __k0, lot_id FROM lots
                WHERE sharer_psn_no IN (SELECT k0 FROM {keys})) l ON l.lot_id = c.lot_id
          JOIN (SELECT DISTINCT __k0, business_date, setl_id FROM sl) x
            ON x.__k0 = l.__k0 AND x.business_date = c.business_date AND x.setl_id = c.setl_id
          GROUP BY x.__k0, c.business_date, c.setl_id)
        SELECT sl.__k0, sl.business_date, sl.setl_time, sl.setl_id, sl.psn_no, sl.status,
               sl.expense_type, sl.fixmedins_code, sl.wallet_pay, o.outcome,
               fs.amount AS from_this_sharer,
               row_number() OVER (PARTITION BY sl.__k0 ORDER BY sl.setl_time DESC, sl.setl_id) AS __n
        FROM sl LEFT JOIN settlement_outcomes o
          ON o.business_date = sl.business_date AND o.setl_id = sl.setl_id
        LEFT JOIN fs ON fs.__k0 = sl.__k0 AND fs.business_date = sl.business_date
                    AND fs.setl_id = sl.setl_id"""),
}


def _top_sharers(rows: list[dict], config: AuditConfig) -> tuple[list[str], dict, dict]:
    """The top N sharers by the total |amount| of their findings: (top, score, count)."""
    score: dict[str, Decimal] = {}
    nfind: dict[str, int] = {}
    zero = Decimal("0")
    for r in rows:
        s = r.get("sharer_psn_no")
        if not s:
            continue
        a = r.get("amount")
        if a is not None:
            a = abs(a if isinstance(a, Decimal) else Decimal(str(a)))
        score[s] = score.get(s, zero) + (zero if a is None else a)
        nfind[s] = nfind.get(s, 0) + 1
    top = sorted(score, key=lambda s: (-score[s], -nfind[s], s))[:config.families]
    return top, score, nfind


def families(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict], policy: Policy | None,
             config: AuditConfig, transfers: _Transfers | None = None,
             top_sharers: tuple | None = None) -> list[dict]:
    """Family views of the top N sharers by the total |amount| of their findings (in batch).

    `transfers`: a _Transfers that already needs the top sharers (else one of its own);
    `top_sharers`: _top_sharers(rows, config) when already known.
    """
    top, score, nfind = top_sharers or _top_sharers(rows, config)
    if not top:
        return []
    start = _window_start(d, policy)
    own = transfers is None
    if own:
        transfers = _Transfers(con, d, start)
        transfers.need(persons=top)
    try:
        return _families(con, d, rows, top, score, nfind, start, config, transfers)
    finally:
        if own:
            transfers.close()


def _families(con, d: date, rows: list[dict], top: list[str], score: dict, nfind: dict,
              start: date, config: AuditConfig, transfers: _Transfers) -> list[dict]:
    lim = config.family_rows
    params = {"day": d, "start": start, "__transfers": transfers.fetch()}
    keys = [(s,) for s in top]
    top_set = set(top)
    involved: dict[str, list[str]] = {s: [] for s in top}
    for r in rows:
        for p in dict.fromkeys((r.get("sharer_psn_no"), r.get("beneficiary_psn_no"))):
            if p in top_set:
                involved[p].append(str(r["exception_id"]))

    bens: dict[str, list[str]] = {s: [] for s in top}
    for k, b in _keyed(con, """
            SELECT DISTINCT __k0, b FROM (
              SELECT sharer_psn_no AS __k0, beneficiary_psn_no AS b FROM relationships
              WHERE business_date <= $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
              UNION ALL
              SELECT sharer_psn_no, beneficiary_psn_no FROM {transfers}
              WHERE business_date BETWEEN $start AND $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
              UNION ALL
              SELECT sharer_psn_no, beneficiary_psn_no FROM lots
              WHERE business_date = $day AND sharer_psn_no IN (SELECT k0 FROM {keys}))
            ORDER BY 1, 2""", params, keys, (_S,)):
        bens[k].append(b)
    sent: dict[str, dict[str, tuple]] = {s: {} for s in top}
    for k, b, n, amount in _keyed(con, """
            SELECT __k0, beneficiary_psn_no, count(*), sum(amount) FROM (
              SELECT sharer_psn_no AS __k0, * FROM {transfers}
              WHERE business_date BETWEEN $start AND $day AND status = 'SUCCESS'
                AND sharer_psn_no IN (SELECT k0 FROM {keys})
              QUALIFY row_number() OVER (PARTITION BY sharer_psn_no, transfer_id
                                         ORDER BY side DESC) = 1)
            GROUP BY 1, 2""", params, keys, (_S,)):
        sent[k][b] = (n, amount)
    received: dict[str, list[tuple]] = {s: [] for s in top}
    for k, p, n, amount in _keyed(con, """
            SELECT __k0, sharer_psn_no, count(*), sum(amount) FROM (
              SELECT beneficiary_psn_no AS __k0, * FROM {transfers}
              WHERE business_date BETWEEN $start AND $day AND status = 'SUCCESS'
                AND beneficiary_psn_no IN (SELECT k0 FROM {keys})
              QUALIFY row_number() OVER (PARTITION BY beneficiary_psn_no, transfer_id
                                         ORDER BY side) = 1)
            GROUP BY 1, 2 ORDER BY 1, 2""", params, keys, (_S,)):
        received[k].append((p, n, amount))
    remaining: dict[str, dict[str, Any]] = {s: {} for s in top}
    for k, b, v in _keyed(con, """
            SELECT sharer_psn_no, beneficiary_psn_no, sum(remaining) FROM lots
            WHERE business_date = $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
            GROUP BY 1, 2""", params, keys, (_S,)):
        remaining[k][b] = v
    spent: dict[str, dict[str, Any]] = {s: {} for s in top}
    for k, b, v in _keyed(con, """
            SELECT l.__k0, s.psn_no, sum(c.amount) FROM consumptions c
            JOIN settlements s ON s.business_date = c.business_date AND s.setl_id = c.setl_id
            JOIN (SELECT DISTINCT lot_id, beneficiary_psn_no, sharer_psn_no AS __k0 FROM lots
                  WHERE sharer_psn_no IN (SELECT k0 FROM {keys})) l
              ON l.lot_id = c.lot_id AND l.beneficiary_psn_no = s.psn_no
            WHERE c.business_date BETWEEN $start AND $day GROUP BY 1, 2""", params, keys, (_S,)):
        spent[k][b] = v

    g = _Gather(con, d, lim)
    people = {s: g.persons([s] + bens[s] + [r[0] for r in received[s]]) for s in top}
    g.run()
    fetched: dict[str, tuple | None] = {}
    for kind, (_key, _zh, _en, types, sql) in _FAMILY_TABLES.items():
        fam_keys = [(s, b) for s in top for b in bens[s]] if len(types) == 2 else keys
        # the SQL of one family held LIMIT family_rows: at most that many rows, never "more"
        fetched[kind] = _batch(con, sql, params, fam_keys, types, lim, out_keys=1)
    out = []
    for s in top:
        tables = [g.table(people[s])]
        for kind, (tkey, zh, en, _types, _sql) in _FAMILY_TABLES.items():
            got = fetched[kind]
            tables.append(_make_table(tkey, zh, en, got[0], got[1].get((s,), []), lim)
                          if got is not None else None)
        out.append({
            "sharer": s, "province": s[:2] if s else None,
            "finding_amount": money(score[s]), "finding_count": nfind[s],
            "involved": involved[s][:lim],
            "beneficiaries": [{"psn_no": b,
                               "sent_count": sent[s].get(b, (0, Decimal("0")))[0],
                               "sent": money(sent[s].get(b, (0, Decimal("0")))[1]),
                               "spent": money(spent[s].get(b, Decimal("0"))),
                               "remaining": money(remaining[s].get(b, Decimal("0")))}
                              for b in bens[s][:lim]],
            "received_from": [{"psn_no": r[0], "count": r[1], "amount": money(r[2])}
                              for r in received[s][:lim]],
            "tables": [t for t in tables if t],
        })
    return out


# --------------------------------------------------------------------------- totals

def warehouse_totals(con: duckdb.DuckDBPyConnection, d: date) -> dict:
    """Transfers and settlements of D as loaded (one row per transfer, OUT side preferred)."""
    try:
        t = con.execute("""
            SELECT count(*) FILTER (WHERE status = 'SUCCESS'),
                   coalesce(sum(amount) FILTER (WHERE status = 'SUCCESS'), 0),
                   count(*) FILTER (WHERE status <> 'SUCCESS'),
                   count(*) FILTER (WHERE status = 'SUCCESS' AND sharer_province <> beneficiary_province),
                   coalesce(sum(amount) FILTER (WHERE status = 'SUCCESS'
                                                AND sharer_province <> beneficiary_province), 0)
            FROM (SELECT * FROM transfers WHERE business_date = ?
                  QUALIFY row_number() OVER (PARTITION BY transfer_id ORDER BY side DESC) = 1)""",
                        [d]).fetchone()
        s = con.execute("""SELECT count(*) FILTER (WHERE status = 'NORMAL'),
                                  count(*) FILTER (WHERE status = 'REFUND')
                           FROM settlements WHERE business_date = ?""", [d]).fetchone()
    except duckdb.CatalogException:
        return {}
    return {"transfers_success": t[0], "transfers_amount": money(t[1]), "transfers_failed": t[2],
            "transfers_cross": t[3], "transfers_cross_amount": money(t[4]),
            "settlements_normal": s[0], "settlements_refund": s[1]}


# --------------------------------------------------------------------------- all together

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
    embedded = {r[0] for r in compact["rows"]}
    # a finding that is evidenced, largest or listed day over day is always embedded
    index = {str(r["exception_id"]): r for r in rows}
    extra = [e for e in list(ev) + dod["new"] + dod["recurring"] if e not in embedded]
    for e in dict.fromkeys(extra):
        r = index[e]
        compact["rows"].append([
            r.get("exception_id"), r.get("rule_code"), r.get("severity"), r.get("province"),
            r.get("dataset"), display_text(r.get("record_id")), r.get("sharer_psn_no"),
            r.get("beneficiary_psn_no"), money(r.get("amount")), display_text(r.get("detail")),
            r.get("source_file"), r.get("source_row")])
    return {
        "business_date": d.isoformat(),
        "policy": {"id": policy.id, "title": policy.title,
                   "max_transfer_amount": money(policy.max_transfer_amount),
                   "max_daily_out_transfers": policy.max_daily_out_transfers,
                   "forwarding_window_days": policy.forwarding_window_days,
                   "max_cycle_length": policy.max_cycle_length} if policy else None,
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
