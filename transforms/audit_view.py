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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

import duckdb
import polars as pl

from contracts.codes import FAMILIES, PROVINCE_NAMES, RULES
from contracts.policy import Policy, policy_for
from transforms.findings import exception_id

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


def _table(con: duckdb.DuckDBPyConnection, key: str, zh: str, en: str, sql: str,
           params: list, limit: int) -> dict | None:
    """Run a SELECT; return {key, zh, en, columns, rows, more} or None when empty."""
    try:
        cur = con.execute(f"SELECT * FROM ({sql}) LIMIT {int(limit) + 1}", params)
    except duckdb.CatalogException:
        return None
    cols = [c[0] for c in cur.description]
    rows = cur.fetchall()
    if not rows:
        return None
    more = len(rows) > limit
    rows = rows[:limit]
    return {"key": key, "zh": zh, "en": en, "columns": cols,
            "rows": [[_cell(c, v) for c, v in zip(cols, r)] for r in rows], "more": more}


def province_label(code: str | None) -> str:
    if code is None:
        return ""
    zh, en = PROVINCE_NAMES.get(code, ("", ""))
    return f"{code} {zh} {en}".strip()


# --------------------------------------------------------------------------- frames

def _exception_rows(exceptions: pl.DataFrame) -> list[dict]:
    if exceptions is None or exceptions.height == 0:
        return []
    cols = [c for c in EXCEPTION_COLUMNS if c in exceptions.columns]
    return list(exceptions.select(cols).iter_rows(named=True))


def _abs_amount(row: dict) -> Decimal:
    a = row.get("amount")
    return abs(Decimal(str(a))) if a is not None else Decimal("-1")


def _by_amount(rows: Iterable[dict]) -> list[dict]:
    """Rows ordered by |amount| descending (no amount last), then exception_id."""
    return sorted(rows, key=lambda r: (-_abs_amount(r), str(r.get("exception_id"))))


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
            r.get("dataset"), mask_text(r.get("record_id")), r.get("sharer_psn_no"),
            r.get("beneficiary_psn_no"), money(r.get("amount")), mask_text(r.get("detail")),
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
            v = con.execute(sql, [d]).fetchone()[0]
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
    prev_rows: list[tuple] = []
    if prev is not None:
        prev_rows = con.execute(
            "SELECT exception_id, rule_code, severity, province, record_id, sharer_psn_no, "
            "beneficiary_psn_no, amount, detail FROM findings WHERE business_date = ? "
            "ORDER BY rule_code, province, record_id", [prev]).fetchall()
    d_iso = d.isoformat()
    rekeyed = {}
    for pr in prev_rows:
        rekeyed[exception_id(pr[1], d_iso, pr[3], pr[4])] = pr
    recurring = [e for e in current if e in rekeyed]
    new = [e for e in current if e not in rekeyed] if prev is not None else []
    resolved = [k for k in rekeyed if k not in current]

    by_rule: dict[str, dict[str, int]] = {}
    for e in new:
        by_rule.setdefault(current[e]["rule_code"], {"new": 0, "recurring": 0, "resolved": 0})["new"] += 1
    for e in recurring:
        by_rule.setdefault(current[e]["rule_code"], {"new": 0, "recurring": 0, "resolved": 0})["recurring"] += 1
    for k in resolved:
        by_rule.setdefault(rekeyed[k][1], {"new": 0, "recurring": 0, "resolved": 0})["resolved"] += 1

    def _ordered(ids: list[str]) -> list[str]:
        return [str(r["exception_id"]) for r in _by_amount(current[i] for i in ids)][:limit]

    resolved_rows = []
    for k in resolved[:limit]:
        pr = rekeyed[k]
        resolved_rows.append({
            "exception_id": pr[0], "rekeyed_id": k, "rule_code": pr[1], "severity": pr[2],
            "province": pr[3], "record_id": mask_text(pr[4]), "sharer_psn_no": pr[5],
            "beneficiary_psn_no": pr[6], "amount": money(pr[7]), "detail": mask_text(pr[8]),
        })
    return {
        "previous_date": prev.isoformat() if prev else None,
        "counts": {"new": len(new), "recurring": len(recurring), "resolved": len(resolved)},
        "by_rule": by_rule,
        "new": _ordered(new), "recurring": _ordered(recurring), "resolved": resolved_rows,
        "truncated": max(len(new), len(recurring), len(resolved)) > limit,
    }


# --------------------------------------------------------------------------- evidence

_PSN_RE = re.compile(r"(?<!\d)\d{20}(?!\d)")


def _persons(con, d: date, psn_nos: list[str], limit: int) -> dict | None:
    psn_nos = [p for p in dict.fromkeys(psn_nos) if p]
    if not psn_nos:
        return None
    return _table(con, "persons", "人员", "Persons", """
        SELECT psn_no, certno, insutype, insu_status, insu_admdvs, birth_date, sex,
               business_date AS delivered_on
        FROM persons WHERE business_date <= ? AND list_contains(?, psn_no)
        QUALIFY row_number() OVER (PARTITION BY psn_no
                                   ORDER BY business_date DESC, file_province, source_row) = 1
        ORDER BY psn_no""", [d, psn_nos], limit)


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


def _transfer_evidence(con, d: date, f: dict, policy: Policy | None, lim: int,
                       window: list[tuple] | None = None) -> tuple[list, dict | None]:
    rule = f["rule_code"]
    tid = f["record_id"]
    tables = [_table(con, "transfer", "转账记录(双边)", "Transfer records (both sides)", """
        SELECT transfer_id, side, status, relation_id, sharer_psn_no, beneficiary_psn_no,
               sharer_province, beneficiary_province, amount, transfer_time, source_file, source_row
        FROM transfers WHERE business_date = ? AND transfer_id = ?
        ORDER BY side DESC, source_file, source_row""", [d, tid], lim)]
    sharer, beneficiary = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    chain = None
    if rule in ("S05",):
        tables.append(_table(con, "relation", "共济关系事件", "Relationship events", """
            SELECT r.business_date, r.event_id, r.event_type, r.relation_code, r.commitment_signed,
                   r.sharer_psn_no, r.beneficiary_psn_no, r.event_time, e.valid
            FROM relationships r
            JOIN (SELECT DISTINCT relation_id FROM transfers
                  WHERE business_date = ? AND transfer_id = ?) t USING (relation_id)
            LEFT JOIN relation_events e
              ON e.event_id = r.event_id AND e.business_date = r.business_date
            WHERE r.business_date <= ?
            ORDER BY r.event_time, r.event_id""", [d, tid, d], lim))
    if rule in ("S06",):
        tables.append(_persons(con, d, [sharer], lim))
    if rule in ("S09", "S10", "S11") and sharer:
        tables.append(_table(con, "sharer_out", "共济人当日成功转出(按时间)",
                             "Sharer's SUCCESS OUT transfers of the day, in order", """
            SELECT row_number() OVER (ORDER BY transfer_time, transfer_id) AS n,
                   transfer_id, beneficiary_psn_no, amount,
                   sum(amount) OVER (ORDER BY transfer_time, transfer_id) AS running_sum,
                   transfer_time
            FROM transfers WHERE business_date = ? AND side = 'OUT' AND status = 'SUCCESS'
              AND sharer_psn_no = ?
            ORDER BY transfer_time, transfer_id""", [d, sharer], lim))
    if rule in ("S10", "S11") and sharer:
        tables.append(_table(con, "personal", "共济人个人账户余额", "Sharer's personal account", """
            SELECT psn_no, account, opening_balance, closing_balance, source_file, source_row
            FROM balances WHERE business_date = ? AND psn_no = ? AND account = 'PERSONAL'""",
                             [d, sharer], lim))
    if rule == "S11" and sharer:
        tables.append(_table(con, "held_quota", "共济人期初持有的受让额度",
                             "Quota the sharer held at 00:00 (lots received)", """
            SELECT lot_id, sharer_psn_no AS from_sharer, payer_province, original_amount, remaining
            FROM lots WHERE business_date = (SELECT max(business_date) FROM lots WHERE business_date < ?)
              AND beneficiary_psn_no = ? AND remaining > 0 ORDER BY lot_id""", [d, sharer], lim))
        tables.append(_table(con, "received_today", "共济人当日收到的转账",
                             "SUCCESS IN transfers to the sharer on D", """
            SELECT transfer_id, sharer_psn_no AS from_sharer, amount, transfer_time
            FROM transfers WHERE business_date = ? AND side = 'IN' AND status = 'SUCCESS'
              AND beneficiary_psn_no = ? ORDER BY transfer_time, transfer_id""", [d, sharer], lim))
    if rule in ("S12", "S13") and sharer:
        chain = _chain(con, d, f, policy, lim, window)
        if chain and chain.get("table"):
            tables.append(chain.pop("table"))
    return tables, chain


def _window_start(d: date, policy: Policy | None) -> date:
    return d - timedelta(days=(policy.forwarding_window_days if policy else 30) - 1)


def _chain_persons(f: dict) -> list[str]:
    named = _PSN_RE.findall(f.get("detail") or "")
    return [p for p in dict.fromkeys(named + [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")]) if p]


def window_transfers(con, d: date, policy: Policy | None, persons: list[str]) -> list[tuple]:
    """SUCCESS transfers of the window that touch any of `persons`, one scan for many chains.

    Rows: (sharer, beneficiary, transfer_id, amount, transfer_time, side), every side."""
    if not persons:
        return []
    return con.execute("""
        SELECT sharer_psn_no, beneficiary_psn_no, transfer_id, amount, transfer_time, side
        FROM transfers
        WHERE business_date BETWEEN ? AND ? AND status = 'SUCCESS'
          AND (list_contains(?, sharer_psn_no) OR list_contains(?, beneficiary_psn_no))""",
        [_window_start(d, policy), d, persons, persons]).fetchall()


def _chain(con, d: date, f: dict, policy: Policy | None, lim: int,
           window: list[tuple] | None = None) -> dict | None:
    """S12: upstream senders -> sharer -> beneficiary; S13: the cycle named in the detail.

    The detail text names the persons (20-digit psn_no) of the chain in order; the
    edges are drawn with the SUCCESS transfers of the window between them (one row
    per transfer, the OUT side when both were delivered). `window` is the result of
    window_transfers() for a set of persons including this chain's (else queried).
    """
    start = _window_start(d, policy)
    sharer, beneficiary = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    if window is None:
        window = window_transfers(con, d, policy, _chain_persons(f))
    by_id: dict[str, tuple] = {}
    for r in window:   # one row per transfer, OUT preferred
        if r[2] not in by_id or r[5] == "OUT":
            by_id[r[2]] = r
    own = [r[4] for r in window if r[2] == f["record_id"] and r[4] is not None]
    t = min(own) if own else None
    named = _PSN_RE.findall(f.get("detail") or "")
    if f["rule_code"] == "S12":
        upstream = [p for p in dict.fromkeys(named) if p not in (sharer, beneficiary)]
        if not upstream and t is not None:
            upstream = sorted({r[0] for r in window if r[5] == "IN" and r[1] == sharer
                               and r[0] != beneficiary and r[4] < t})
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
    wanted = set(pairs)
    edges_rows = sorted((r for r in by_id.values() if (r[0], r[1]) in wanted
                         and (t is None or r[4] <= t)), key=lambda r: (r[4], r[2]))
    edges = []
    for a, b in pairs:
        ts = [r for r in edges_rows if r[0] == a and r[1] == b]
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


def _settlement_evidence(con, d: date, f: dict, lim: int) -> list:
    sid = f["record_id"]
    rule = f["rule_code"]
    tables = [_table(con, "settlement", "结算记录", "Settlement record", """
        SELECT setl_id, status, orig_setl_id, psn_no, expense_type, fixmedins_code,
               total_amount, personal_burden, wallet_pay, setl_time, source_file, source_row
        FROM settlements WHERE business_date = ? AND setl_id = ?""", [d, sid], lim),
        _table(con, "outcome", "结算结果", "Outcome", """
        SELECT setl_id, status, wallet_pay, outcome FROM settlement_outcomes
        WHERE business_date = ? AND setl_id = ?""", [d, sid], lim)]
    if rule == "S20":
        tables.append(_table(con, "original", "被退费的原结算", "The settlement refunded", """
            SELECT s.business_date, s.setl_id, s.status, s.expense_type, s.wallet_pay, o.outcome
            FROM settlements s
            LEFT JOIN settlement_outcomes o USING (business_date, setl_id)
            WHERE s.business_date <= ? AND s.setl_id IN
                  (SELECT orig_setl_id FROM settlements WHERE business_date = ? AND setl_id = ?)
            ORDER BY s.business_date""", [d, d, sid], lim))
        tables.append(_table(con, "earlier_refunds", "原结算已有的退费", "Refunds of that settlement", """
            SELECT business_date, setl_id, wallet_pay, setl_time FROM settlements
            WHERE business_date <= ? AND status = 'REFUND' AND orig_setl_id IN
                  (SELECT orig_setl_id FROM settlements WHERE business_date = ? AND setl_id = ?)
            ORDER BY business_date, setl_time, setl_id""", [d, d, sid], lim))
    if rule == "S15":
        tables.append(_table(con, "institution", "定点机构", "Institution", """
            SELECT i.fixmedins_code, i.fixmedins_type, i.admdvs, i.designated_from, i.designated_to
            FROM institutions i WHERE i.business_date = ? AND i.fixmedins_code IN
                 (SELECT fixmedins_code FROM settlements WHERE business_date = ? AND setl_id = ?)""",
                             [d, d, sid], lim))
    if rule in ("S07", "F06"):
        tables.append(_persons(con, d, [f.get("beneficiary_psn_no")], lim))
    if rule == "S18" and f.get("beneficiary_psn_no"):
        tables.append(_table(con, "opening_lots", "被共济人期初额度(按扣款顺序)",
                             "Beneficiary's quota lots at 00:00, in consumption order", """
            SELECT lot_id, sharer_psn_no, payer_province, original_amount, remaining
            FROM lots WHERE business_date = (SELECT max(business_date) FROM lots WHERE business_date < ?)
              AND beneficiary_psn_no = ?
            ORDER BY genesis DESC, CASE WHEN genesis THEN sharer_psn_no END, transfer_time, transfer_id""",
                             [d, f["beneficiary_psn_no"]], lim))
        tables.append(_table(con, "day_events", "被共济人当日额度变动",
                             "Beneficiary's quota movements on D", """
            SELECT * FROM (
              SELECT transfer_time AS "at", 'IN ' || transfer_id AS event, amount AS quota_in,
                     NULL::DECIMAL(18,2) AS wallet_pay, NULL AS outcome
              FROM transfers WHERE business_date = ? AND side = 'IN' AND status = 'SUCCESS'
                AND beneficiary_psn_no = ?
              UNION ALL
              SELECT s.setl_time, s.status || ' ' || s.setl_id, NULL, s.wallet_pay, o.outcome
              FROM settlements s LEFT JOIN settlement_outcomes o USING (business_date, setl_id)
              WHERE s.business_date = ? AND s.psn_no = ?)
            ORDER BY "at", event""", [d, f["beneficiary_psn_no"], d, f["beneficiary_psn_no"]], lim))
    tables.append(_table(con, "consumed", "扣减的额度批次", "Lots consumed", """
        SELECT seq, lot_id, payer_province, amount FROM consumptions
        WHERE business_date = ? AND setl_id = ? ORDER BY seq""", [d, sid], lim))
    return tables


def _relationship_evidence(con, d: date, f: dict, lim: int) -> list:
    eid = f["record_id"]
    return [
        _table(con, "event", "共济关系事件", "Relationship event", """
            SELECT event_id, relation_id, event_type, relation_code, commitment_signed, channel,
                   sharer_psn_no, beneficiary_psn_no, beneficiary_province, event_time,
                   source_file, source_row
            FROM relationships WHERE business_date = ? AND event_id = ?""", [d, eid], lim),
        _persons(con, d, [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")], lim),
        _table(con, "history", "该关系的历史事件", "History of the relationship", """
            SELECT e.business_date, e.event_id, e.event_type, e.event_time, e.valid
            FROM relation_events e WHERE e.business_date <= ? AND e.relation_id IN
                 (SELECT relation_id FROM relationships WHERE business_date = ? AND event_id = ?)
            ORDER BY e.event_time, e.event_id""", [d, d, eid], lim),
    ]


def _balance_evidence(con, d: date, f: dict, lim: int) -> list:
    rid = str(f["record_id"])
    ben, _, sharer = rid.partition(":")
    tables = [_table(con, "balance", "报送的额度余额", "Delivered quota balance", """
        SELECT business_date, psn_no, account, sharer_psn_no, opening_balance, closing_balance,
               source_file, source_row
        FROM balances WHERE business_date BETWEEN ? AND ? AND psn_no = ? AND sharer_psn_no = ?
          AND account = 'QUOTA' ORDER BY business_date DESC""",
        [d - timedelta(days=1), d, ben, sharer], lim)]
    tables.append(_table(con, "computed", "计算的额度批次(日终)", "Computed lots (closing)", """
        SELECT business_date, lot_id, original_amount, remaining FROM lots
        WHERE business_date IN (?, (SELECT max(business_date) FROM lots WHERE business_date < ?))
          AND beneficiary_psn_no = ? AND sharer_psn_no = ?
        ORDER BY business_date DESC, lot_id""", [d, d, ben, sharer], lim))
    tables.append(_table(con, "computed_total", "计算的期末额度合计", "Computed closing quota", """
        SELECT business_date, sum(remaining) AS remaining FROM lots
        WHERE business_date IN (?, (SELECT max(business_date) FROM lots WHERE business_date < ?))
          AND beneficiary_psn_no = ? AND sharer_psn_no = ?
        GROUP BY business_date ORDER BY business_date DESC""", [d, d, ben, sharer], lim))
    return tables


def _file_evidence(con, d: date, f: dict, lim: int) -> list:
    tables = []
    if f.get("source_file") and f.get("source_row") is not None:
        tables.append(_table(con, "quarantine", "隔离的记录", "Quarantined row", """
            SELECT source_file, source_row, record_id, rule_code, reasons, raw FROM quarantine
            WHERE business_date = ? AND source_file = ? AND source_row = ?""",
                             [d, f["source_file"], f["source_row"]], lim))
    if f.get("source_file"):
        tables.append(_table(con, "file", "文件装载", "File load", """
            SELECT source_file, dataset, encoding, rows_read, rows_loaded, rows_quarantined,
                   rejected, reject_rule, reject_reason
            FROM file_loads WHERE business_date = ? AND source_file = ?""",
                             [d, f["source_file"]], lim))
    else:
        tables.append(_table(con, "files", "该省文件装载", "File loads of the province", """
            SELECT source_file, dataset, rows_read, rows_loaded, rows_quarantined, rejected,
                   reject_rule, reject_reason
            FROM file_loads WHERE business_date = ? AND province = ? ORDER BY source_file""",
                             [d, f.get("province")], lim))
    return tables


def evidence_for(con: duckdb.DuckDBPyConnection, d: date, f: dict, policy: Policy | None,
                 lim: int = 50, window: list[tuple] | None = None) -> dict:
    """The evidence of one finding: records involved, limit broken, chain/cycle."""
    rule = str(f.get("rule_code"))
    dataset = str(f.get("dataset"))
    chain = None
    if rule in ("F04", "F05") or dataset == "manifest" or rule in ("F01", "F02", "F03"):
        tables = _file_evidence(con, d, f, lim)
    elif dataset == "transfers":
        tables, chain = _transfer_evidence(con, d, f, policy, lim, window)
    elif dataset == "settlements":
        tables = _settlement_evidence(con, d, f, lim)
    elif dataset == "relationships":
        tables = _relationship_evidence(con, d, f, lim)
    elif dataset == "balances":
        tables = _balance_evidence(con, d, f, lim)
    else:
        tables = [_persons(con, d, [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")], lim)]
    if rule == "F06":
        tables.append(_persons(con, d, [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")], lim))
    out = {"tables": [t for t in tables if t], "limits": _limits(rule, policy)}
    if chain:
        out["chain"] = chain
    return out


def evidence(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict], policy: Policy | None,
             config: AuditConfig) -> tuple[dict[str, dict], list[str]]:
    """Evidence for the top N findings per rule and the largest cases; returns (evidence, largest)."""
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
    chains = [r for r in chosen.values() if r.get("rule_code") in ("S12", "S13")
              and r.get("dataset") == "transfers" and r.get("sharer_psn_no")]
    persons = sorted({p for r in chains for p in _chain_persons(r)})
    window = window_transfers(con, d, policy, persons) if chains else []
    return ({e: evidence_for(con, d, r, policy, config.evidence_rows, window)
             for e, r in chosen.items()}, largest)


# --------------------------------------------------------------------------- families

def families(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict], policy: Policy | None,
             config: AuditConfig) -> list[dict]:
    """Family views of the top N sharers by the total |amount| of their findings."""
    score: dict[str, Decimal] = {}
    nfind: dict[str, int] = {}
    for r in rows:
        s = r.get("sharer_psn_no")
        if not s:
            continue
        score[s] = score.get(s, Decimal("0")) + max(_abs_amount(r), Decimal("0"))
        nfind[s] = nfind.get(s, 0) + 1
    top = sorted(score, key=lambda s: (-score[s], -nfind[s], s))[:config.families]
    window = policy.forwarding_window_days if policy else 30
    start = d - timedelta(days=window - 1)
    lim = config.family_rows
    out = []
    for s in top:
        involved = [str(r["exception_id"]) for r in rows
                    if s in (r.get("sharer_psn_no"), r.get("beneficiary_psn_no"))]
        bens = [r[0] for r in con.execute("""
            SELECT DISTINCT beneficiary_psn_no FROM (
              SELECT beneficiary_psn_no FROM relationships WHERE business_date <= ? AND sharer_psn_no = ?
              UNION ALL
              SELECT beneficiary_psn_no FROM transfers
              WHERE business_date BETWEEN ? AND ? AND sharer_psn_no = ?
              UNION ALL
              SELECT beneficiary_psn_no FROM lots WHERE business_date = ? AND sharer_psn_no = ?)
            ORDER BY 1""", [d, s, start, d, s, d, s]).fetchall()]
        sent = con.execute("""
            SELECT beneficiary_psn_no, count(*), sum(amount) FROM (
              SELECT * FROM transfers
              WHERE business_date BETWEEN ? AND ? AND sharer_psn_no = ? AND status = 'SUCCESS'
              QUALIFY row_number() OVER (PARTITION BY transfer_id ORDER BY side DESC) = 1)
            GROUP BY 1 ORDER BY 1""", [start, d, s]).fetchall()
        received = con.execute("""
            SELECT sharer_psn_no, count(*), sum(amount) FROM (
              SELECT * FROM transfers
              WHERE business_date BETWEEN ? AND ? AND beneficiary_psn_no = ? AND status = 'SUCCESS'
              QUALIFY row_number() OVER (PARTITION BY transfer_id ORDER BY side) = 1)
            GROUP BY 1 ORDER BY 1""", [start, d, s]).fetchall()
        remaining = dict(con.execute("""
            SELECT beneficiary_psn_no, sum(remaining) FROM lots
            WHERE business_date = ? AND sharer_psn_no = ? GROUP BY 1""", [d, s]).fetchall())
        spent = dict(con.execute("""
            SELECT s.psn_no, sum(c.amount) FROM consumptions c
            JOIN settlements s ON s.business_date = c.business_date AND s.setl_id = c.setl_id
            JOIN (SELECT DISTINCT lot_id, beneficiary_psn_no, sharer_psn_no FROM lots
                  WHERE sharer_psn_no = ?) l
              ON l.lot_id = c.lot_id AND l.beneficiary_psn_no = s.psn_no
            WHERE c.business_date BETWEEN ? AND ? GROUP BY 1""", [s, start, d]).fetchall())
        tables = [
            _persons(con, d, [s] + bens + [r[0] for r in received], lim),
            _table(con, "relationships", "共济关系事件", "Relationship events", """
                SELECT r.business_date, r.event_id, r.relation_id, r.event_type, r.relation_code,
                       r.commitment_signed, r.beneficiary_psn_no, r.event_time, e.valid
                FROM relationships r LEFT JOIN relation_events e
                  ON e.business_date = r.business_date AND e.event_id = r.event_id
                WHERE r.business_date <= ? AND r.sharer_psn_no = ?
                ORDER BY r.event_time DESC, r.event_id LIMIT ?""", [d, s, lim], lim),
            _table(con, "transfers", "转出与转入(窗口内)", "Transfers sent and received (window)", """
                SELECT transfer_time, transfer_id,
                       CASE WHEN sharer_psn_no = ? THEN 'OUT' ELSE 'IN' END AS direction,
                       sharer_psn_no, beneficiary_psn_no, amount, status
                FROM transfers
                WHERE business_date BETWEEN ? AND ? AND (sharer_psn_no = ? OR beneficiary_psn_no = ?)
                QUALIFY row_number() OVER (PARTITION BY transfer_id ORDER BY side DESC) = 1
                ORDER BY transfer_time DESC, transfer_id LIMIT ?""", [s, start, d, s, s, lim], lim),
            _table(con, "spending", "被共济人的结算(窗口内)", "Beneficiaries' settlements (window)", """
                SELECT s.business_date, s.setl_time, s.setl_id, s.psn_no, s.status, s.expense_type,
                       s.fixmedins_code, s.wallet_pay, o.outcome,
                       (SELECT sum(c.amount) FROM consumptions c
                        JOIN (SELECT DISTINCT lot_id FROM lots WHERE sharer_psn_no = ?) l USING (lot_id)
                        WHERE c.business_date = s.business_date AND c.setl_id = s.setl_id)
                         AS from_this_sharer
                FROM settlements s LEFT JOIN settlement_outcomes o USING (business_date, setl_id)
                WHERE s.business_date BETWEEN ? AND ? AND list_contains(?, s.psn_no)
                ORDER BY s.setl_time DESC, s.setl_id LIMIT ?""", [s, start, d, bens, lim], lim),
        ]
        out.append({
            "sharer": s, "province": s[:2] if s else None,
            "finding_amount": money(score[s]), "finding_count": nfind[s],
            "involved": involved[:lim],
            "beneficiaries": [{"psn_no": b,
                               "sent_count": next((r[1] for r in sent if r[0] == b), 0),
                               "sent": money(next((r[2] for r in sent if r[0] == b), Decimal("0"))),
                               "spent": money(spent.get(b, Decimal("0"))),
                               "remaining": money(remaining.get(b, Decimal("0")))}
                              for b in bens[:lim]],
            "received_from": [{"psn_no": r[0], "count": r[1], "amount": money(r[2])}
                              for r in received[:lim]],
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
    ev, largest = evidence(con, d, rows, policy, config)
    compact, total = compact_findings(rows, config.max_findings)
    embedded = {r[0] for r in compact["rows"]}
    # a finding that is evidenced, largest or listed day over day is always embedded
    index = {str(r["exception_id"]): r for r in rows}
    extra = [e for e in list(ev) + dod["new"] + dod["recurring"] if e not in embedded]
    for e in dict.fromkeys(extra):
        r = index[e]
        compact["rows"].append([
            r.get("exception_id"), r.get("rule_code"), r.get("severity"), r.get("province"),
            r.get("dataset"), mask_text(r.get("record_id")), r.get("sharer_psn_no"),
            r.get("beneficiary_psn_no"), money(r.get("amount")), mask_text(r.get("detail")),
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
        "families": families(con, d, rows, policy, config),
        "day_over_day": dod,
        "warehouse_totals": warehouse_totals(con, d),
        "config": config.__dict__.copy(),
    }
