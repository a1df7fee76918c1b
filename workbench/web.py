"""What the workbench's pages and API share: the Workbench (database, settings, templates),
the signed-in user of a request, form and JSON bodies, CSRF, filters, and the
template filters (money, masking, province and rule names, Shanghai time, chain drawing).
"""
from __future__ import annotations

import json
import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from contracts import summary as S
from contracts.codes import PROVINCE_NAMES, RULES
from workbench.masking import mask
from workbench import auth, cases as C
from workbench.exports import SHANGHAI
from contracts.dates import iso_date
from workbench.ingest import REMOVED, ingest
from workbench.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "wb_session"
LOGIN_COOKIE = "wb_login"
MAX_FORM_BYTES = 1 << 20
ACTION_FIELDS = ("assignee", "comment", "decision", "amount_recovered", "reason")
FILTERS = ("rule", "province", "status", "assignee", "date_from", "date_to", "sort")
PUBLIC = ("case_id", "rule_code", "province", "subject", "key_kind", "first_seen", "last_seen",
          "n_dates", "status", "decision", "amount_recovered", "assignee", "decided_by",
          "decided_at", "no_longer_seen", "age", "age_bucket", "severity")


class NeedLogin(Exception):
    """No valid session: a page redirects to /login, the API answers 401."""


@dataclass
class Signed:
    user: C.User
    csrf: str
    sid_hash: str


class Workbench:
    """The state of one running workbench (one SQLite connection: the routes are async and
    run one at a time on the event loop)."""

    def __init__(self, settings: Settings, con: sqlite3.Connection):
        self.settings, self.con, self.out = settings, con, Path(settings.out)
        self.env = templates()

    def refresh(self) -> None:
        ingest(self.con, self.out)

    def who(self, request: Request) -> Signed:
        s = auth.session(self.con, request.cookies.get(COOKIE))
        if s is None:
            raise NeedLogin()
        return Signed(*s)

    def page(self, name: str, code: int = 200, **ctx) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**ctx), status_code=code)

    def common(self, s: Signed) -> dict:
        """What every signed-in page shows: the user, the CSRF token, names, report problems,
        and the run status of the dates (STALE, PARTIAL) with why, from their summary.json."""
        latest = C.latest_date(self.con)
        dates = date_statuses(self.con, s.user)
        return {"user": s.user, "csrf": s.csrf, "rules": RULES, "provinces": PROVINCE_NAMES,
                "decisions": C.DECISIONS, "latest": latest, "date_status": dates,
                "latest_status": dates.get(latest) if latest else None,
                "problems": [{**dict(r), "removed": r["problem"] == REMOVED} for r in self.con.execute(
                    "SELECT business_date, problem FROM report_dates WHERE problem IS NOT NULL "
                    "ORDER BY business_date")]}

    def listed(self, user: C.User, f: dict) -> list[dict]:
        rows = C.all_cases(self.con, user)
        days = C.sighting_dates(self.con) if (f.get("date_from") or f.get("date_to")) else None
        return C.filter_cases(rows, user, rule=f.get("rule", ""), province=f.get("province", ""),
                              status=f.get("status", ""), assignee=f.get("assignee", ""),
                              date_from=f.get("date_from", ""), date_to=f.get("date_to", ""),
                              sightings=days, sort=f.get("sort") or "amount")

    def act(self, s: Signed, cid: str, f: dict) -> int:
        return C.act(self.con, s.user, cid, one(f, "action"), fields(f), self.settings.supervisor_limit)


def date_statuses(con: sqlite3.Connection, user: C.User | None = None) -> dict[str, dict]:
    """{date: {status, why}} of every date read whose run is not COMPLETE: STALE (an
    earlier date was re-run; why holds the command that clears it) or PARTIAL. A
    province-scoped user reads the reasons of their own province only, and how many
    other provinces' reasons there are (which provinces missed or broke a delivery is
    the national operators' business)."""
    return {r["business_date"]: {"status": r["status"], "why": _why_for(r, user)}
            for r in con.execute("SELECT business_date, status, status_why, status_reasons "
                                 "FROM report_dates WHERE status IN ('STALE', 'PARTIAL') "
                                 "ORDER BY business_date")}


def _why_for(row: sqlite3.Row, user: C.User | None) -> str:
    if user is None or user.province is None:
        return row["status_why"] or ""
    try:
        parts = json.loads(row["status_reasons"] or "")
        reasons = S.parse_reasons(parts["partial_because"])
    except (ValueError, TypeError, KeyError, S.SummaryError):
        # a date read by an earlier workbench (read again at the next refresh)
        return "(原因见全国报告 the reasons are in the national report)"
    own = [r for r in reasons if user.may_see(r.province)]
    why = S.why(row["status"], parts.get("status_before_stale"), parts.get("stale_clear_command"), own)
    if len(own) < len(reasons):
        others = len({r.province for r in reasons if not user.may_see(r.province)})
        why = "; ".join(x for x in (why, f"and {others} other province(s) missing or with a "
                                         "rejected file") if x)
    return mask(why)


async def body(request: Request) -> dict[str, list]:
    """A urlencoded form or a JSON object, as {name: [values]} (no extra dependency)."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise C.ActionError(413, "请求过大 The request is too large.")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            raise C.ActionError(400, "请求不是 JSON The request body is not JSON.") from None
        if not isinstance(data, dict):
            raise C.ActionError(400, "请求不是对象 The request body is not an object.")
        return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
    return parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


def one(f: dict, key: str) -> str:
    v = f.get(key) or [""]
    return "" if v[0] is None else str(v[0])


def fields(f: dict) -> dict[str, str]:
    return {k: one(f, k) for k in ACTION_FIELDS}


def check_csrf(request: Request, s: Signed, f: dict) -> None:
    """Every change carries the session's token (header X-CSRF-Token or form field csrf)."""
    if not auth.csrf_ok(s.csrf, request.headers.get("x-csrf-token") or one(f, "csrf")):
        raise C.ActionError(403, "缺少或错误的 CSRF 令牌 Missing or wrong CSRF token: "
                                 "the change was refused.")


def filters_of(request: Request) -> dict:
    q = request.query_params
    f = {k: (q.get(k) or "").strip()[:40] for k in FILTERS}
    for k in ("date_from", "date_to"):
        if f[k] and iso_date(f[k]) is None:
            f[k] = ""
    return f


def public(c: dict) -> dict:
    """A case as the API shows it (money as decimal text)."""
    d = {k: c.get(k) for k in PUBLIC}
    d["amount"] = None if c.get("amount") is None else str(c["amount"])
    return d


def set_cookie(resp: Response, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", path="/")


def safe_next(n: str | None) -> str:
    """Only a path of this site (no scheme, no //host) may be the page after login."""
    n = n or "/"
    return n if re.match(r"^/(?![/\\])[\w\-./?=&%]*$", n) else "/"


# --------------------------------------------------------------------------- template filters

def fmt_money(v) -> str:
    if v is None or v == "":
        return "—"
    try:
        return f"{Decimal(str(v)).quantize(Decimal('0.01')):,.2f}"
    except ArithmeticError:
        return str(v)


def local_time(at: str | None) -> str:
    """A stored UTC instant as Asia/Shanghai wall time (business dates are Shanghai days)."""
    if not at:
        return ""
    try:
        return datetime.fromisoformat(at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(at)


def chain_drawing(chain: dict) -> dict:
    """Node positions of a chain (left to right) or a cycle (on a circle), and its edges as
    curves between them, for the inline SVG of the case page."""
    nodes = [n for n in chain.get("nodes") or [] if n]
    if chain.get("kind") == "cycle":
        r, cx, cy = 110, 200, 140
        pos = {n: (cx + r * math.sin(2 * math.pi * i / len(nodes)),
                   cy - r * math.cos(2 * math.pi * i / len(nodes))) for i, n in enumerate(nodes)}
        width, height = 400, 280
    else:
        pos = {n: (90 + 210 * i, 50) for i, n in enumerate(nodes)}
        width, height = 180 + 210 * max(len(nodes) - 1, 0), 110
    edges = []
    for e in chain.get("edges") or []:
        a, b = pos.get(e.get("from")), pos.get(e.get("to"))
        if a and b:
            dx, dy = b[0] - a[0], b[1] - a[1]
            d = math.hypot(dx, dy) or 1
            k = 30 / d   # stop short of the node circles so that the arrow head shows
            x1, y1, x2, y2 = a[0] + dx * k, a[1] + dy * k, b[0] - dx * k, b[1] - dy * k
            # bend to the right of the direction of travel: A->B and B->A do not overlap
            qx, qy = (x1 + x2) / 2 - dy / d * 28, (y1 + y2) / 2 + dx / d * 28
            edges.append({"path": f"M {x1:.1f} {y1:.1f} Q {qx:.1f} {qy:.1f} {x2:.1f} {y2:.1f}",
                          "lx": qx, "ly": qy, "this": e.get("this"), "amount": e.get("amount")})
    return {"width": width, "height": height, "edges": edges,
            "nodes": [{"id": n, "x": x, "y": y} for n, (x, y) in pos.items()]}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.ChainableUndefined)
    env.filters.update({
        "money": fmt_money,
        "mask": lambda s: "" if s is None else mask(str(s)),
        "prov": lambda p: f"{p} {PROVINCE_NAMES.get(p, ('', ''))[0]}".strip() if p else "",
        "prov_en": lambda p: PROVINCE_NAMES.get(p, ("", ""))[1] if p else "",
        "rule_zh": lambda c: RULES[c].zh if c in RULES else "",
        "rule_en": lambda c: RULES[c].en if c in RULES else "",
        "decision": lambda d: " ".join(C.DECISIONS.get(d, ("", ""))) if d else "",
        "tojson_text": lambda v: json.dumps(v, ensure_ascii=False) if v else "",
        "q": lambda s: quote(str(s), safe=""),
        "local": local_time,
        "drawing": chain_drawing,
    })
    return env
