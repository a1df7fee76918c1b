"""Evidence of a finding: the records involved (batched queries, one per kind of table),
the policy limit it broke, and the chain or cycle of S12/S13.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from contracts.policy import Policy

from auditview.frames import _by_amount
from auditview.queries import _Gather, _PSN_RE, _Transfers
from auditview.text import AuditConfig, _cell, money

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


def _plan_file(g: _Gather, f: dict) -> list:
    """A file finding (F01-F05, manifest): the quarantined row and the file's load."""
    plan = []
    src, row = f.get("source_file"), f.get("source_row")
    if src and row is not None:
        plan.append(g.want("quarantine", src, int(row)))
    plan.append(g.want("file", src) if src else g.want("files", f.get("province")))
    return plan


def _plan_transfer(g: _Gather, rule: str, rid: str | None, sharer: str | None) -> list:
    plan = [g.want("transfer", rid)]
    if rule == "S05":
        plan.append(g.want("relation", rid))
    if rule == "S06":
        plan.append(g.persons([sharer]))
    if rule in ("S09", "S10", "S11") and sharer:
        plan.append(g.want("sharer_out", sharer))
    if rule in ("S10", "S11") and sharer:
        plan.append(g.want("personal", sharer))
    if rule == "S11" and sharer:
        plan += [g.want("held_quota", sharer), g.want("received_today", sharer)]
    if rule in ("S12", "S13") and sharer:
        plan.append("chain")
    return plan


def _plan_settlement(g: _Gather, rule: str, rid: str | None, ben: str | None,
                     province: str | None) -> list:
    """A settlement is (date, province, setl_id): every table of it is keyed by both."""
    plan = [g.want("settlement", rid, province), g.want("outcome", rid, province)]
    if rule == "S20":
        plan += [g.want("original", rid, province), g.want("earlier_refunds", rid, province)]
    if rule == "S15":
        plan.append(g.want("institution", rid, province))
    if rule in ("S07", "F06"):
        plan.append(g.persons([ben]))
    if rule == "S18" and ben:
        plan += [g.want("opening_lots", ben), g.want("day_events", ben)]
    return plan + [g.want("consumed", rid, province)]


def _plan(g: _Gather, f: dict) -> list:
    """The evidence tables of one finding, in order, as references (or 'chain')."""
    rule = str(f.get("rule_code"))
    dataset = str(f.get("dataset"))
    sharer, ben = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    rid = f.get("record_id")
    rid = None if rid is None else str(rid)
    if rule in ("F01", "F02", "F03", "F04", "F05") or dataset == "manifest":
        plan = _plan_file(g, f)
    elif dataset == "transfers":
        plan = _plan_transfer(g, rule, rid, sharer)
    elif dataset == "settlements":
        province = f.get("province")
        plan = _plan_settlement(g, rule, rid, ben, None if province is None else str(province))
    elif dataset == "relationships":
        plan = [g.want("event", rid), g.persons([sharer, ben]), g.want("history", rid)]
    elif dataset == "balances":
        b, _, s = str(rid).partition(":")
        plan = [g.want("balance", b, s), g.want("computed", b, s), g.want("computed_total", b, s)]
    else:
        plan = [g.persons([sharer, ben])]
    if rule == "F06":
        plan.append(g.persons([sharer, ben]))
    return plan


def _window_start(d: date, policy: Policy | None) -> date:
    return d - timedelta(days=(policy.forwarding_window_days if policy else 30) - 1)


def _chain_persons(f: dict) -> list[str]:
    named = _PSN_RE.findall(f.get("detail") or "")
    return [p for p in dict.fromkeys(named + [f.get("sharer_psn_no"), f.get("beneficiary_psn_no")]) if p]


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


def _forwarding(f: dict, named: list[str], t, window: _Window) -> tuple[list, list]:
    """S12: (nodes, pairs) of upstream senders -> sharer -> beneficiary."""
    sharer, beneficiary = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
    upstream = [p for p in dict.fromkeys(named) if p not in (sharer, beneficiary)]
    if not upstream and t is not None:
        upstream = sorted({r[0] for r in window.in_to.get(sharer, ())
                           if r[0] != beneficiary and r[4] < t})
    nodes = list(dict.fromkeys(upstream + [sharer, beneficiary]))
    return nodes, [(u, sharer) for u in upstream] + [(sharer, beneficiary)]


def _cycle(f: dict, named: list[str]) -> tuple[list, list]:
    """S13: (nodes, pairs) of the cycle named in the detail, closed by this transfer."""
    sharer, beneficiary = f.get("sharer_psn_no"), f.get("beneficiary_psn_no")
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
    pairs = [(cyc[i], cyc[(i + 1) % len(cyc)]) for i in range(len(cyc))] if len(cyc) >= 2 else []
    return cyc, pairs


def _chain_edges(f: dict, pairs: list, edges_rows: list) -> list[dict]:
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
                      "this": a == f.get("sharer_psn_no") and b == f.get("beneficiary_psn_no")})
    return edges


def _chain_table(edges_rows: list, lim: int) -> dict | None:
    if not edges_rows:
        return None
    return {"key": "chain_transfers", "zh": "链条中的转账(窗口内)",
            "en": "Transfers along the chain (window)",
            "columns": ["transfer_id", "sharer_psn_no", "beneficiary_psn_no", "amount",
                        "transfer_time"],
            "rows": [[r[2], r[0], r[1], money(r[3]), _cell("t", r[4])] for r in edges_rows[:lim]],
            "more": len(edges_rows) > lim}


def _chain(d: date, f: dict, policy: Policy | None, lim: int, window: _Window) -> dict | None:
    """S12: upstream senders -> sharer -> beneficiary; S13: the cycle named in the detail.

    The detail text names the persons (20-digit psn_no) of the chain in order; the
    edges are drawn with the SUCCESS transfers of the window between them (one row
    per transfer, the OUT side when both were delivered).
    """
    t = window.own.get(f["record_id"])
    named = _PSN_RE.findall(f.get("detail") or "")
    if f["rule_code"] == "S12":
        (nodes, pairs), kind = _forwarding(f, named, t, window), "forwarding"
    else:
        (nodes, pairs), kind = _cycle(f, named), "cycle"
    if not pairs:
        return None
    edges_rows = sorted((r for p in dict.fromkeys(pairs) for r in window.by_pair.get(p, ())
                         if t is None or r[4] <= t), key=lambda r: (r[4], r[2]))
    return {"kind": kind, "nodes": nodes, "edges": _chain_edges(f, pairs, edges_rows),
            "window_from": _window_start(d, policy).isoformat(),
            "table": _chain_table(edges_rows, lim)}


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
