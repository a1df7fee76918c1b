"""The workbench web application (FastAPI, Jinja2 templates, one small script).

Pages: /login, / (my open cases, ageing, largest open amounts, exports), /cases
(filters, bulk actions), /cases/{id} (sightings per date with the report's
evidence, amount over time, event trail, actions), exports, each date's report.html.
JSON API: GET /api/cases, GET /api/cases/{id}, POST /api/cases/{id}/{action}, POST /api/bulk.

Every page and API call needs a session; every change (POST) needs the session's
CSRF token (form field `csrf` or header X-CSRF-Token) and is checked against the
user's role and province scope on the server (cases.act). Helpers: workbench/web.py.
"""
from __future__ import annotations

import secrets
import sqlite3
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse,
                               RedirectResponse, Response)

from contracts.dates import iso_date
from workbench import auth, cases as C, exports
from workbench.masking import masked
from workbench.settings import Settings
from workbench.store import connect
from workbench.web import (COOKIE, LOGIN_COOKIE, TEMPLATES, NeedLogin, Workbench, body, check_csrf,
                           fields, filters_of, one, public, safe_next, set_cookie)

PAGE_ROWS = 500
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# a date's report.html runs its own inline script, sandboxed: no cookie, no request, no form
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; sandbox allow-scripts allow-popups")
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

router = APIRouter()


def wb(request: Request) -> Workbench:
    return request.app.state.wb


def create_app(settings: Settings, con: sqlite3.Connection | None = None) -> FastAPI:
    """The application; `con` defaults to the settings' database (created in WAL mode)."""
    app = FastAPI(title="共济稽核工作台 Auditors' workbench", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.wb = Workbench(settings, con or connect(settings.db))
    app.include_router(router)
    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(C.ActionError, refused)
    app.middleware("http")(security_headers)
    app.state.wb.refresh()
    return app


async def need_login(request: Request, exc: NeedLogin):
    if request.url.path.startswith("/api/") or request.method != "GET":
        return JSONResponse({"error": "login required 需要登录"}, status_code=401)
    return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)


async def refused(request: Request, exc: C.ActionError):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return wb(request).page("error.html", code=exc.status, status=exc.status, message=str(exc))


async def security_headers(request: Request, call_next):
    resp = await call_next(request)
    resp.headers["Content-Security-Policy"] = REPORT_CSP if request.url.path.startswith("/reports/") else CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Cache-Control"] = "no-store"
    return resp


# --------------------------------------------------------------------------- login

def _login_form(request: Request, next_page: str, message: str = "", status: int = 200) -> HTMLResponse:
    """The login page with a fresh login CSRF token (double submit: cookie and form field)."""
    token = secrets.token_urlsafe(24)
    resp = wb(request).page("login.html", code=status, csrf=token, next=safe_next(next_page),
                            message=message, user=None, problems=[])
    set_cookie(resp, LOGIN_COOKIE, token, 600)
    return resp


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/"):
    return _login_form(request, next)


@router.post("/login")
async def login_post(request: Request):
    w, f = wb(request), await body(request)
    if not auth.csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), one(f, "csrf")):
        raise C.ActionError(403, "缺少或错误的 CSRF 令牌 Missing or wrong CSRF token: reload the login page.")
    st = w.settings
    user, why = auth.login(w.con, one(f, "name"), one(f, "password"), st.max_failed_logins,
                           st.lockout_minutes)
    if user is None:
        return _login_form(request, one(f, "next"), why, 401)
    resp = RedirectResponse(safe_next(one(f, "next")), status_code=303)
    set_cookie(resp, COOKIE, auth.new_session(w.con, user.name, st.session_hours), st.session_hours * 3600)
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


@router.post("/logout")
async def logout(request: Request):
    w = wb(request)
    s = w.who(request)
    check_csrf(request, s, await body(request))
    auth.end_session(w.con, s.sid_hash)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# --------------------------------------------------------------------------- pages

@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request):
    w = wb(request)
    s = w.who(request)
    w.refresh()
    rows = C.all_cases(w.con, s.user)
    mine = C.filter_cases(rows, s.user, status="open", assignee="me")
    largest = [c for c in C.filter_cases(rows, s.user, status="open") if c["amount"] is not None][:20]
    return w.page("dashboard.html", mine=mine, ageing=C.ageing(rows), largest=largest,
                  buckets=[b[0] for b in C.AGE_BUCKETS], total=len(rows),
                  open_count=sum(c["status"] == "open" for c in rows), **w.common(s))


@router.get("/cases", response_class=HTMLResponse)
async def case_list(request: Request):
    w = wb(request)
    s = w.who(request)
    w.refresh()
    f = filters_of(request)
    rows = w.listed(s.user, f)
    return w.page("cases.html", cases=rows[:PAGE_ROWS], count=len(rows), f=f,
                  users=auth.user_names(w.con), query=urlencode({k: v for k, v in f.items() if v}),
                  **w.common(s))


@router.post("/cases/bulk", response_class=HTMLResponse)
async def case_bulk(request: Request):
    w, f = wb(request), await body(request)
    s = w.who(request)
    check_csrf(request, s, f)
    params = fields(f)
    params["reason"] = params["reason"] or params["comment"]   # one text box on the list
    results = C.act_many(w.con, s.user, [str(x) for x in f.get("case_id", [])], one(f, "action"),
                         params, w.settings.supervisor_limit)
    back = one(f, "back")
    return w.page("bulk.html", results=results, back=back if back.startswith("?") else "", **w.common(s))


def _series(by_date: dict[str, list]) -> list[tuple[str, Decimal, bool]]:
    """(date, amount of the case's findings that date, whether any had an amount)."""
    return [(d, sum((Decimal(x["amount"]) for x in xs if x["amount"] is not None), Decimal("0")),
             any(x["amount"] is not None for x in xs)) for d, xs in sorted(by_date.items())]


@router.get("/cases/{cid}", response_class=HTMLResponse)
async def case_page(request: Request, cid: str):
    w = wb(request)
    s = w.who(request)
    c = C.one_case(w.con, s.user, cid)
    by_date: dict[str, list] = {}
    for x in C.sightings_of(w.con, cid):
        by_date.setdefault(x["business_date"], []).append(x)
    series = _series(by_date)
    top = max((abs(a) for _d, a, has in series if has), default=Decimal("0"))
    return w.page("case.html", c=c, by_date=sorted(by_date.items()), series=series, top=top,
                  events=C.events_of(w.con, cid), users=auth.user_names(w.con),
                  limit=w.settings.supervisor_limit, message="", **w.common(s))


@router.post("/cases/{cid}/act")
async def case_act(request: Request, cid: str):
    w, f = wb(request), await body(request)
    s = w.who(request)
    check_csrf(request, s, f)
    w.act(s, cid, f)
    return RedirectResponse(f"/cases/{quote(cid, safe='')}#events", status_code=303)


@router.get("/reports/{day}/report.html")
async def report(request: Request, day: str):
    w = wb(request)
    s = w.who(request)
    if s.user.province is not None:
        # the date's report.html is the national report (every province's findings):
        # a province-scoped user sees their province's cases only (docs/workbench.md)
        raise C.ActionError(403, "全国报告仅限全国用户 The national report is for national users only: "
                                 "your cases show their findings.")
    folder = w.out / day
    p = folder / "report.html"
    if iso_date(day) is None or folder.is_symlink() or p.is_symlink() or not p.is_file():
        raise C.ActionError(404, "没有这一天的报告 No report for that date.")
    return FileResponse(p, media_type="text/html; charset=utf-8")


@router.post("/refresh")
async def refresh_now(request: Request):
    w = wb(request)
    check_csrf(request, w.who(request), await body(request))
    w.refresh()
    return RedirectResponse("/", status_code=303)


@router.get("/static/wb.js")
async def script():
    return FileResponse(TEMPLATES / "wb.js", media_type="text/javascript; charset=utf-8")


# --------------------------------------------------------------------------- exports

def _period(request: Request) -> tuple[date | None, date | None, str]:
    q = request.query_params
    try:
        start = date.fromisoformat(q["from"]) if q.get("from") else None
        end = date.fromisoformat(q["to"]) if q.get("to") else None
    except ValueError:
        raise C.ActionError(400, "日期格式应为 YYYY-MM-DD Dates are YYYY-MM-DD.") from None
    return start, end, f"{start or 'start'}_{end or 'end'}"


def _attachment(data, media: str, name: str) -> Response:
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/cases/{cid}/events.csv")
async def case_events(request: Request, cid: str):
    w = wb(request)
    C.one_case(w.con, w.who(request).user, cid)
    return _attachment(exports.events_csv(C.events_of(w.con, cid)), CSV, f"case-{cid}-events.csv")


@router.get("/export/decided.csv")
async def export_csv(request: Request):
    w = wb(request)
    start, end, label = _period(request)
    rows = exports.decided_in(C.all_cases(w.con, w.who(request).user), start, end)
    return _attachment(exports.csv_text(rows), CSV, f"decided-{label}.csv")


@router.get("/export/decided.xlsx")
async def export_xlsx(request: Request):
    w = wb(request)
    start, end, label = _period(request)
    rows = exports.decided_in(C.all_cases(w.con, w.who(request).user), start, end)
    with tempfile.TemporaryDirectory(prefix="wb-export-") as tmp:
        p = Path(tmp) / "decided.xlsx"
        exports.write_xlsx(p, rows, f"已处理案件 Decided cases {label}")
        data = p.read_bytes()
    return _attachment(data, XLSX, f"decided-{label}.xlsx")


@router.get("/export/events.csv")
async def export_events(request: Request):
    w = wb(request)
    start, end, label = _period(request)
    visible = {c["case_id"] for c in C.all_cases(w.con, w.who(request).user)}
    rows = [e for e in C.all_events(w.con) if e["case_id"] in visible
            and (start is None or exports.local_date(e["at"]) >= start)
            and (end is None or exports.local_date(e["at"]) <= end)]
    return _attachment(exports.events_csv(rows), CSV, f"events-{label}.csv")


# --------------------------------------------------------------------------- JSON API

@router.get("/api/cases")
async def api_cases(request: Request):
    w = wb(request)
    s = w.who(request)
    w.refresh()
    return {"cases": [public(c) for c in w.listed(s.user, filters_of(request))]}


@router.get("/api/cases/{cid}")
async def api_case(request: Request, cid: str):
    w = wb(request)
    c = C.one_case(w.con, w.who(request).user, cid)
    sights = [{k: v for k, v in x.items() if k != "evidence"} for x in C.sightings_of(w.con, cid)]
    # masked again on the way out: a database written before the stronger masking keeps
    # its text (events are append-only), and the pages and exports mask what they show too
    return masked({"case": public(c), "sightings": sights, "events": C.events_of(w.con, cid)})


@router.post("/api/cases/{cid}/{action}")
async def api_act(request: Request, cid: str, action: str):
    w, f = wb(request), await body(request)
    s = w.who(request)
    check_csrf(request, s, f)
    event_id = C.act(w.con, s.user, cid, action, fields(f), w.settings.supervisor_limit)
    return {"event_id": event_id, "case": public(C.one_case(w.con, s.user, cid))}


@router.post("/api/bulk")
async def api_bulk(request: Request):
    w, f = wb(request), await body(request)
    s = w.who(request)
    check_csrf(request, s, f)
    results = C.act_many(w.con, s.user, [str(x) for x in f.get("case_ids", [])], one(f, "action"),
                         fields(f), w.settings.supervisor_limit)
    return {"results": [{"case_id": c, "ok": ok, "error": e} for c, ok, e in results]}
