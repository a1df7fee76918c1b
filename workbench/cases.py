"""Cases: their current state (folded from events), the lists people work from, and
the actions on a case with who may take them.

Current state is never stored: state_of() folds a case's events in order
(assigned -> assignee; decided -> status decided with its decision; reopened ->
open again). A case is "no longer seen" when its last sighting is before the
latest published date; it stays open until someone decides it.

The amount of a case: for each record of the case, the amount of its latest
sighting, summed. A balance break (B01/B02) is one record that persists, so it
counts once at its latest value; a re-sharer's transfers (S11/S12) are distinct
records, so they add up.

Age of an open case: days from its first appearance to the latest published
business date (reproducible from the reports, whatever day the page is read).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from workbench.masking import mask
from workbench.store import append_event, transaction

DECISIONS = {
    "recovered": ("已追回", "Recovered"),
    "confirmed_violation": ("确认违规", "Confirmed violation"),
    "false_positive": ("误报", "False positive"),
    "explained": ("已说明", "Explained"),
}
AGE_BUCKETS = (("0-7", 0, 7), ("8-30", 8, 30), (">30", 31, None))
MAX_COMMENT = 4000
CENT = Decimal("0.01")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    province: str | None

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"

    def may_see(self, province: str) -> bool:
        return self.province is None or self.province == province


class ActionError(Exception):
    """A refused action: status is the HTTP status, str() the bilingual sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _loads(text: str | None) -> dict:
    try:
        v = json.loads(text) if text else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def fold(events: list[sqlite3.Row]) -> dict:
    """The current state of a case from its events, in event order."""
    st = {"status": "open", "decision": None, "amount_recovered": None, "assignee": None,
          "decided_by": None, "decided_at": None, "reason": None, "comments": 0}
    for e in events:
        after = _loads(e["after"])
        if e["kind"] == "assigned":
            st["assignee"] = after.get("assignee")
        elif e["kind"] == "decided":
            st.update(status="decided", decision=after.get("decision"),
                      amount_recovered=after.get("amount_recovered"), decided_by=e["actor"],
                      decided_at=e["at"], reason=after.get("reason"))
        elif e["kind"] == "reopened":
            st.update(status="open", decision=None, amount_recovered=None, decided_by=None,
                      decided_at=None, reason=None)
        elif e["kind"] == "commented":
            st["comments"] += 1
    return st


def latest_date(con: sqlite3.Connection) -> str | None:
    """The latest published date the workbench has read: a date folder it could never read
    (or one removed from <out>) is a problem banner only, never "the latest"."""
    return con.execute("SELECT max(business_date) FROM report_dates WHERE status IS NOT NULL"
                       ).fetchone()[0]


def _age_bucket(age: int) -> str:
    for label, lo, hi in AGE_BUCKETS:
        if age >= lo and (hi is None or age <= hi):
            return label
    return AGE_BUCKETS[0][0]


def all_cases(con: sqlite3.Connection, user: User, only: str | None = None) -> list[dict]:
    """Every case the user may see (or only the case `only`), with its derived facts and state."""
    where, params = [], []
    if user.province is not None:
        where.append("c.province = ?")
        params.append(user.province)
    if only is not None:
        where.append("c.case_id = ?")
        params.append(only)
    scope = (" WHERE " + " AND ".join(where)) if where else ""
    one = " WHERE case_id = ?" if only is not None else ""
    one_params = (only,) if only is not None else ()
    cases = {r["case_id"]: dict(r) for r in con.execute(
        "SELECT c.*, min(s.business_date) AS first_seen, max(s.business_date) AS last_seen, "
        "count(DISTINCT s.business_date) AS n_dates, max(s.severity) AS severity "
        f"FROM cases c LEFT JOIN sightings s USING (case_id){scope} GROUP BY c.case_id", params)}
    amounts: dict[str, Decimal] = {}
    for r in con.execute(
            "SELECT case_id, amount FROM (SELECT case_id, amount, row_number() OVER "
            f"(PARTITION BY case_id, record_id ORDER BY business_date DESC) AS n FROM sightings{one}) "
            "WHERE n = 1 AND amount IS NOT NULL", one_params):
        if r["case_id"] in cases:
            amounts[r["case_id"]] = amounts.get(r["case_id"], Decimal("0")) + Decimal(r["amount"])
    events: dict[str, list] = {}
    for e in con.execute("SELECT case_id, kind, actor, at, after FROM events "
                         f"WHERE kind IN ('assigned', 'decided', 'reopened', 'commented'){one.replace(' WHERE', ' AND')} "
                         "ORDER BY event_id", one_params):
        if e["case_id"] in cases:
            events.setdefault(e["case_id"], []).append(e)
    latest = latest_date(con)
    out = []
    for cid, c in cases.items():
        c.update(fold(events.get(cid, [])))
        c["amount"] = amounts.get(cid)
        c["no_longer_seen"] = bool(latest and (c["last_seen"] or "") < latest)
        first = c["first_seen"] or latest
        c["age"] = (date.fromisoformat(latest) - date.fromisoformat(first)).days if latest and first else 0
        c["age_bucket"] = _age_bucket(c["age"])
        out.append(c)
    return out


def one_case(con: sqlite3.Connection, user: User, cid: str) -> dict:
    """The case if the user may see it; 404 otherwise (another province's case does not exist for them)."""
    row = con.execute("SELECT province FROM cases WHERE case_id = ?", (str(cid),)).fetchone()
    if row is None or not user.may_see(row["province"]):
        raise ActionError(404, "没有这个案件 No such case.")
    return all_cases(con, user, only=str(cid))[0]


def filter_cases(cases: list[dict], user: User, rule: str = "", province: str = "",
                 status: str = "", assignee: str = "", date_from: str = "", date_to: str = "",
                 sightings: dict[str, list[str]] | None = None, sort: str = "amount") -> list[dict]:
    """Filters of the case list; date range: the case was seen on a date within it."""
    out = []
    for c in cases:
        if rule and c["rule_code"] != rule:
            continue
        if province and c["province"] != province:
            continue
        if status == "open" and c["status"] != "open":
            continue
        if status == "decided" and c["status"] != "decided":
            continue
        if status == "no_longer_seen" and not (c["status"] == "open" and c["no_longer_seen"]):
            continue
        if assignee == "me" and c["assignee"] != user.name:
            continue
        if assignee == "none" and c["assignee"]:
            continue
        if assignee not in ("", "me", "none") and c["assignee"] != assignee:
            continue
        if (date_from or date_to) and sightings is not None:
            days = sightings.get(c["case_id"], [])
            if not any((not date_from or d >= date_from) and (not date_to or d <= date_to) for d in days):
                continue
        out.append(c)
    if sort == "age":
        out.sort(key=lambda c: (-c["age"], c["case_id"]))
    elif sort == "last_seen":
        out.sort(key=lambda c: (c["last_seen"] or "", c["case_id"]), reverse=True)
    else:
        out.sort(key=lambda c: (-(abs(c["amount"]) if c["amount"] is not None else Decimal(-1)),
                                c["case_id"]))
    return out


def sighting_dates(con: sqlite3.Connection) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in con.execute("SELECT DISTINCT case_id, business_date FROM sightings ORDER BY business_date"):
        out.setdefault(r[0], []).append(r[1])
    return out


def ageing(cases: list[dict]) -> list[dict]:
    """Open cases per (province, rule) by age bucket."""
    cells: dict[tuple, dict] = {}
    for c in cases:
        if c["status"] != "open":
            continue
        k = (c["province"], c["rule_code"])
        row = cells.setdefault(k, {"province": k[0], "rule_code": k[1], "total": 0,
                                   **{b[0]: 0 for b in AGE_BUCKETS}})
        row[c["age_bucket"]] += 1
        row["total"] += 1
    return [cells[k] for k in sorted(cells)]


def events_of(con: sqlite3.Connection, cid: str) -> list[dict]:
    return [{**dict(r), "before": _loads(r["before"]), "after": _loads(r["after"])}
            for r in con.execute("SELECT * FROM events WHERE case_id = ? ORDER BY event_id", (cid,))]


def all_events(con: sqlite3.Connection) -> list[dict]:
    return [{**dict(r), "before": _loads(r["before"]), "after": _loads(r["after"])}
            for r in con.execute("SELECT * FROM events ORDER BY event_id")]


def sightings_of(con: sqlite3.Connection, cid: str) -> list[dict]:
    out = []
    for r in con.execute("SELECT * FROM sightings WHERE case_id = ? ORDER BY business_date, finding_no",
                         (cid,)):
        d = dict(r)
        d["evidence"] = _loads(d["evidence"]) if d["evidence"] else None
        out.append(d)
    return out


# --------------------------------------------------------------------------- actions

def _amount(text: str) -> Decimal:
    try:
        d = Decimal(str(text).strip().replace(",", ""))
        exact = d.is_finite() and d == d.quantize(CENT)   # quantize refuses 1e400: not an amount
    except (InvalidOperation, ValueError):
        raise ActionError(400, "追回金额不是金额 The amount recovered is not an amount.") from None
    if not exact or d <= 0:
        raise ActionError(400, "追回金额须大于零且最多两位小数 The amount recovered must be above zero "
                               "with at most two decimals.")
    return d.quantize(CENT)


def _check_user(con: sqlite3.Connection, name: str, case_province: str) -> None:
    row = con.execute("SELECT province FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ActionError(400, f"没有这个用户 No such user: {name[:60]}.")
    if row["province"] is not None and row["province"] != case_province:
        raise ActionError(400, f"{name[:60]} 只能处理本省案件 may only work on cases of province "
                               f"{row['province']}.")


def act(con: sqlite3.Connection, user: User, cid: str, action: str, params: dict,
        supervisor_limit: Decimal) -> int:
    """Apply one action to one case, if the user may; returns the new event_id.

    action: assign (assignee), comment (comment), decide (decision, amount_recovered
    for recovered, reason), reopen (reason). Province scope is checked here, on the
    server, whatever the caller sent: another province's case is 404.
    """
    with transaction(con):
        case = one_case(con, user, cid)
        # free text is stored masked: no full resident ID in the trail (as in the reports)
        p = {k: ("" if v is None else mask(str(v))) for k, v in params.items()}
        if action == "assign":
            who = p.get("assignee", "").strip()
            if who:
                _check_user(con, who, case["province"])
            if (case["assignee"] or "") == who:
                raise ActionError(409, "已分配给此人 Already assigned to that person.")
            return append_event(con, cid, user.name, "assigned", {"assignee": case["assignee"]},
                                {"assignee": who or None})
        if action == "comment":
            text = p.get("comment", "").strip()
            if not text:
                raise ActionError(400, "意见为空 The comment is empty.")
            if len(text) > MAX_COMMENT:
                raise ActionError(400, f"意见过长 The comment is longer than {MAX_COMMENT} characters.")
            return append_event(con, cid, user.name, "commented", None, {"comment": text})
        if action == "decide":
            if case["status"] != "open":
                raise ActionError(409, "案件已处理,需主管重新打开 The case is decided; a supervisor "
                                       "must reopen it first.")
            decision = p.get("decision", "")
            if decision not in DECISIONS:
                raise ActionError(400, "处理结论无效 Unknown decision.")
            after = {"status": "decided", "decision": decision, "reason": p.get("reason", "").strip()[:MAX_COMMENT]}
            recovered = None
            if decision == "recovered":
                recovered = _amount(p.get("amount_recovered", ""))
                after["amount_recovered"] = str(recovered)
            largest = max(abs(case["amount"] or Decimal("0")), recovered or Decimal("0"))
            if largest > supervisor_limit and not user.supervisor:
                raise ActionError(403, f"金额超过 {supervisor_limit} 元,须由主管处理 Above "
                                       f"{supervisor_limit} yuan only a supervisor decides.")
            return append_event(con, cid, user.name, "decided",
                                {"status": "open", "decision": None}, after)
        if action == "reopen":
            if not user.supervisor:
                raise ActionError(403, "只有主管可以重新打开 Only a supervisor reopens a decided case.")
            if case["status"] != "decided":
                raise ActionError(409, "案件未处理 The case is not decided.")
            return append_event(con, cid, user.name, "reopened",
                                {"status": "decided", "decision": case["decision"],
                                 "amount_recovered": case["amount_recovered"]},
                                {"status": "open", "reason": p.get("reason", "").strip()[:MAX_COMMENT]})
        raise ActionError(400, "未知操作 Unknown action.")


def act_many(con: sqlite3.Connection, user: User, cids: list[str], action: str, params: dict,
             supervisor_limit: Decimal) -> list[tuple[str, bool, str]]:
    """A bulk action: each case on its own (one refusal does not stop the others)."""
    done = []
    for cid in dict.fromkeys(cids):
        try:
            act(con, user, cid, action, params, supervisor_limit)
            done.append((cid, True, ""))
        except ActionError as e:
            done.append((cid, False, str(e)))
    return done
