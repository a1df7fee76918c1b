"""The workbench web application (FastAPI, Jinja2 templates, no JavaScript framework).

Pages: /login, / (my open cases, ageing, largest open amounts), /cases (filters,
bulk actions), /cases/{id} (sightings per date with the report's evidence, amount
over time, event trail, actions), exports, and each date's report.html.
JSON API: /api/cases, /api/cases/{id}, POST /api/cases/{id}/{action}, POST /api/bulk.

Every page and API call needs a session; every change (POST) needs the session's
CSRF token (form field `csrf` or header X-CSRF-Token) and is checked against the
user's role and province scope on the server (cases.act). Forms are parsed from
the urlencoded body with urllib.parse (no extra dependency).
"""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse,
                               RedirectResponse, Response)

from contracts.codes import PROVINCE_NAMES, RULES
from auditview import mask_text
from workbench import auth, cases as C, exports
from workbench.ingest import DATE_RE, ingest
from workbench.settings import Settings
from workbench.exports import SHANGHAI
from workbench.store import connect

TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "wb_session"
LOGIN_COOKIE = "wb_login"
MAX_FORM_BYTES = 1 << 20
PAGE_ROWS = 500
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; sandbox allow-scripts allow-popups")


class NeedLogin(Exception):
    pass


def fmt_money(v) -> str:
    if v is None or v == "":
        return "—"
    try:
        return f"{Decimal(str(v)).quantize(Decimal('0.01')):,.2f}"
    except ArithmeticError:
        return str(v)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.ChainableUndefined)
    env.filters["money"] = fmt_money
    env.filters["mask"] = lambda s: "" if s is None else mask_text(str(s))
    env.filters["prov"] = lambda p: f"{p} {PROVINCE_NAMES.get(p, ('', ''))[0]}".strip() if p else ""
    env.filters["prov_en"] = lambda p: PROVINCE_NAMES.get(p, ("", ""))[1] if p else ""
    env.filters["rule_zh"] = lambda c: RULES[c].zh if c in RULES else ""
    env.filters["rule_en"] = lambda c: RULES[c].en if c in RULES else ""
    env.filters["decision"] = lambda d: " ".join(C.DECISIONS.get(d, ("", ""))) if d else ""
    env.filters["tojson_text"] = lambda v: json.dumps(v, ensure_ascii=False) if v else ""
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["local"] = local_time
    env.filters["drawing"] = chain_drawing
    return env


def chain_drawing(chain: dict) -> dict:
    """Node positions of a chain (left to right) or a cycle (on a circle), and its edges as
    lines between them, for the inline SVG of the case page."""
    import math
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
    return {"width": width, "height": height, "nodes": [{"id": n, "x": x, "y": y} for n, (x, y) in pos.items()],
            "edges": edges}


def local_time(at: str | None) -> str:
    """A stored UTC instant as Asia/Shanghai wall time (business dates are Shanghai days)."""
    if not at:
        return ""
    try:
        return datetime.fromisoformat(at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(at)


def create_app(settings: Settings, con: sqlite3.Connection | None = None) -> FastAPI:
    """The application; `con` defaults to the settings' database (created in WAL mode)."""
    con = con or connect(settings.db)
    env = _env()
    app = FastAPI(title="共济稽核工作台 Auditors' workbench", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.con, app.state.settings = con, settings
    out = Path(settings.out)

    def refresh() -> None:
        ingest(con, out)

    # ------------------------------------------------------------------ helpers

    def who(request: Request):
        s = auth.session(con, request.cookies.get(COOKIE))
        if s is None:
            raise NeedLogin()
        return s

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        text = env.get_template(name).render(request_path=request.url.path, **ctx)
        return HTMLResponse(text, status_code=status)

    async def form(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise C.ActionError(413, "请求过大 The request is too large.")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise C.ActionError(400, "请求不是 JSON The request body is not JSON.") from None
            if not isinstance(data, dict):
                raise C.ActionError(400, "请求不是对象 The request body is not an object.")
            return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
        return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def one(f: dict, key: str) -> str:
        v = f.get(key) or [""]
        return "" if v[0] is None else str(v[0])

    def check_csrf(request: Request, token: str, f: dict) -> None:
        given = request.headers.get("x-csrf-token") or one(f, "csrf")
        if not auth.csrf_ok(token, given):
            raise C.ActionError(403, "缺少或错误的 CSRF 令牌 Missing or wrong CSRF token: "
                                     "the change was refused.")

    def common(request: Request, u, token) -> dict:
        return {"user": u, "csrf": token, "rules": RULES, "provinces": PROVINCE_NAMES,
                "decisions": C.DECISIONS, "latest": C.latest_date(con),
                "problems": [dict(r) for r in con.execute(
                    "SELECT business_date, problem FROM report_dates WHERE problem IS NOT NULL")]}

    def filters_of(request: Request) -> dict:
        q = request.query_params
        f = {k: (q.get(k) or "").strip()[:40] for k in
             ("rule", "province", "status", "assignee", "date_from", "date_to", "sort")}
        for k in ("date_from", "date_to"):
            if f[k] and not DATE_RE.match(f[k]):
                f[k] = ""
        return f

    def listed(u, f: dict) -> list[dict]:
        rows = C.all_cases(con, u)
        days = C.sighting_dates(con) if (f.get("date_from") or f.get("date_to")) else None
        return C.filter_cases(rows, u, rule=f.get("rule", ""), province=f.get("province", ""),
                              status=f.get("status", ""), assignee=f.get("assignee", ""),
                              date_from=f.get("date_from", ""), date_to=f.get("date_to", ""),
                              sightings=days, sort=f.get("sort") or "amount")

    def public(c: dict) -> dict:
        keep = ("case_id", "rule_code", "province", "subject", "key_kind", "first_seen", "last_seen",
                "n_dates", "status", "decision", "amount_recovered", "assignee", "decided_by",
                "decided_at", "no_longer_seen", "age", "age_bucket", "severity")
        d = {k: c.get(k) for k in keep}
        d["amount"] = None if c.get("amount") is None else str(c["amount"])
        return d

    @app.exception_handler(NeedLogin)
    async def _need_login(request: Request, exc: NeedLogin):
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": "login required 需要登录"}, status_code=401)
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)

    @app.exception_handler(C.ActionError)
    async def _refused(request: Request, exc: C.ActionError):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return HTMLResponse(env.get_template("error.html").render(message=str(exc), status=exc.status),
                            status_code=exc.status)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        resp = await call_next(request)
        if request.url.path.startswith("/reports/"):
            resp.headers["Content-Security-Policy"] = REPORT_CSP
        else:
            resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def set_cookie(resp: Response, name: str, value: str, max_age: int | None = None) -> None:
        resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", path="/")

    # ------------------------------------------------------------------ login

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/"):
        token = secrets.token_urlsafe(24)
        resp = page(request, "login.html", csrf=token, next=_safe_next(next), message="", user=None)
        set_cookie(resp, LOGIN_COOKIE, token, 600)
        return resp

    @app.post("/login")
    async def login_post(request: Request):
        f = await form(request)
        if not auth.csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), one(f, "csrf")):
            raise C.ActionError(403, "缺少或错误的 CSRF 令牌 Missing or wrong CSRF token: reload the "
                                     "login page.")
        s = app.state.settings
        u, why = auth.login(con, one(f, "name"), one(f, "password"), s.max_failed_logins,
                            s.lockout_minutes)
        if u is None:
            token = secrets.token_urlsafe(24)
            resp = page(request, "login.html", status=401, csrf=token, next=_safe_next(one(f, "next")),
                        message=why, user=None)
            set_cookie(resp, LOGIN_COOKIE, token, 600)
            return resp
        resp = RedirectResponse(_safe_next(one(f, "next")), status_code=303)
        set_cookie(resp, COOKIE, auth.new_session(con, u.name, s.session_hours), s.session_hours * 3600)
        resp.delete_cookie(LOGIN_COOKIE, path="/")
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        u, token, sid = who(request)
        check_csrf(request, token, await form(request))
        auth.end_session(con, sid)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    async def dashboard(request: Request):
        u, token, _ = who(request)
        refresh()
        rows = C.all_cases(con, u)
        mine = C.filter_cases(rows, u, status="open", assignee="me")
        largest = [c for c in C.filter_cases(rows, u, status="open") if c["amount"] is not None][:20]
        return page(request, "dashboard.html", mine=mine, ageing=C.ageing(rows), largest=largest,
                    buckets=[b[0] for b in C.AGE_BUCKETS], total=len(rows),
                    open_count=sum(c["status"] == "open" for c in rows), **common(request, u, token))

    @app.get("/cases", response_class=HTMLResponse)
    async def case_list(request: Request):
        u, token, _ = who(request)
        refresh()
        f = filters_of(request)
        rows = listed(u, f)
        return page(request, "cases.html", cases=rows[:PAGE_ROWS], count=len(rows), f=f,
                    users=auth.user_names(con), query=urlencode({k: v for k, v in f.items() if v}),
                    results=[], **common(request, u, token))

    @app.post("/cases/bulk", response_class=HTMLResponse)
    async def case_bulk(request: Request):
        u, token, _ = who(request)
        f = await form(request)
        check_csrf(request, token, f)
        params = {k: one(f, k) for k in ("assignee", "comment", "decision", "amount_recovered", "reason")}
        params["reason"] = params["reason"] or params["comment"]   # one text box on the list
        results = C.act_many(con, u, f.get("case_id", []), one(f, "action"), params,
                             app.state.settings.supervisor_limit)
        back = one(f, "back")
        resp = page(request, "bulk.html", results=results, back=back if back.startswith("?") else "",
                    **common(request, u, token))
        return resp

    @app.get("/cases/{cid}", response_class=HTMLResponse)
    async def case_page(request: Request, cid: str):
        u, token, _ = who(request)
        c = C.one_case(con, u, cid)
        sights = C.sightings_of(con, cid)
        by_date: dict[str, list] = {}
        for s in sights:
            by_date.setdefault(s["business_date"], []).append(s)
        series = [(d, sum((Decimal(s["amount"]) for s in ss if s["amount"] is not None), Decimal("0")),
                   any(s["amount"] is not None for s in ss)) for d, ss in sorted(by_date.items())]
        top = max((abs(a) for _d, a, has in series if has), default=Decimal("0"))
        return page(request, "case.html", c=c, by_date=sorted(by_date.items()), series=series, top=top,
                    events=C.events_of(con, cid), users=auth.user_names(con),
                    limit=app.state.settings.supervisor_limit, message=request.query_params.get("m", "")[:200],
                    **common(request, u, token))

    @app.post("/cases/{cid}/act")
    async def case_act(request: Request, cid: str):
        u, token, _ = who(request)
        f = await form(request)
        check_csrf(request, token, f)
        C.act(con, u, cid, one(f, "action"), {k: one(f, k) for k in (
            "assignee", "comment", "decision", "amount_recovered", "reason")},
              app.state.settings.supervisor_limit)
        return RedirectResponse(f"/cases/{quote(cid, safe='')}#events", status_code=303)

    @app.get("/cases/{cid}/events.csv")
    async def case_events(request: Request, cid: str):
        u, _token, _ = who(request)
        C.one_case(con, u, cid)
        return PlainTextResponse(exports.events_csv(C.events_of(con, cid)), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="case-{cid}-events.csv"'})

    def _period(request: Request) -> tuple[date | None, date | None, str]:
        q = request.query_params
        try:
            start = date.fromisoformat(q["from"]) if q.get("from") else None
            end = date.fromisoformat(q["to"]) if q.get("to") else None
        except ValueError:
            raise C.ActionError(400, "日期格式应为 YYYY-MM-DD Dates are YYYY-MM-DD.") from None
        label = f"{start or 'start'}_{end or 'end'}"
        return start, end, label

    @app.get("/export/decided.csv")
    async def export_csv(request: Request):
        u, _t, _ = who(request)
        start, end, label = _period(request)
        rows = exports.decided_in(C.all_cases(con, u), start, end)
        return PlainTextResponse(exports.csv_text(rows), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="decided-{label}.csv"'})

    @app.get("/export/decided.xlsx")
    async def export_xlsx(request: Request):
        u, _t, _ = who(request)
        start, end, label = _period(request)
        rows = exports.decided_in(C.all_cases(con, u), start, end)
        with tempfile.TemporaryDirectory(prefix="wb-export-") as tmp:
            p = Path(tmp) / "decided.xlsx"
            exports.write_xlsx(p, rows, f"已处理案件 Decided cases {label}")
            data = p.read_bytes()
        return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="decided-{label}.xlsx"'})

    @app.get("/export/events.csv")
    async def export_events(request: Request):
        u, _t, _ = who(request)
        start, end, label = _period(request)
        visible = {c["case_id"] for c in C.all_cases(con, u)}
        rows = [e for e in C.all_events(con) if e["case_id"] in visible
                and (start is None or exports.local_date(e["at"]) >= start)
                and (end is None or exports.local_date(e["at"]) <= end)]
        return PlainTextResponse(exports.events_csv(rows), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="events-{label}.csv"'})

    @app.get("/reports/{day}/report.html")
    async def report(request: Request, day: str):
        who(request)
        p = out / day / "report.html"
        if not DATE_RE.match(day) or not p.is_file() or p.is_symlink() or (out / day).is_symlink():
            raise C.ActionError(404, "没有这一天的报告 No report for that date.")
        return FileResponse(p, media_type="text/html; charset=utf-8")

    @app.post("/refresh")
    async def refresh_now(request: Request):
        u, token, _ = who(request)
        check_csrf(request, token, await form(request))
        refresh()
        return RedirectResponse("/", status_code=303)

    @app.get("/static/wb.js")
    async def script():
        return FileResponse(TEMPLATES / "wb.js", media_type="text/javascript; charset=utf-8")

    # ------------------------------------------------------------------ JSON API

    @app.get("/api/cases")
    async def api_cases(request: Request):
        u, _t, _ = who(request)
        refresh()
        return {"cases": [public(c) for c in listed(u, filters_of(request))]}

    @app.get("/api/cases/{cid}")
    async def api_case(request: Request, cid: str):
        u, _t, _ = who(request)
        c = C.one_case(con, u, cid)
        sights = [{k: v for k, v in s.items() if k != "evidence"} for s in C.sightings_of(con, cid)]
        return {"case": public(c), "sightings": sights, "events": C.events_of(con, cid)}

    @app.post("/api/cases/{cid}/{action}")
    async def api_act(request: Request, cid: str, action: str):
        u, token, _ = who(request)
        f = await form(request)
        check_csrf(request, token, f)
        event_id = C.act(con, u, cid, action, {k: one(f, k) for k in (
            "assignee", "comment", "decision", "amount_recovered", "reason")},
                         app.state.settings.supervisor_limit)
        return {"event_id": event_id, "case": public(C.one_case(con, u, cid))}

    @app.post("/api/bulk")
    async def api_bulk(request: Request):
        u, token, _ = who(request)
        f = await form(request)
        check_csrf(request, token, f)
        results = C.act_many(con, u, [str(x) for x in f.get("case_ids", [])], one(f, "action"),
                             {k: one(f, k) for k in ("assignee", "comment", "decision",
                                                     "amount_recovered", "reason")},
                             app.state.settings.supervisor_limit)
        return {"results": [{"case_id": c, "ok": ok, "error": e} for c, ok, e in results]}

    refresh()
    return app


def _safe_next(n: str | None) -> str:
    """Only a path of this site (no scheme, no //host) may be the page after login."""
    n = n or "/"
    return n if re.match(r"^/(?![/\\])[\w\-./?=&%]*$", n) else "/"
