"""The auditors' workbench in a real browser: headless Chromium over the DevTools
protocol (the Browser of tests/test_report_browser.py), against `recon audit`'s
application served by uvicorn on 127.0.0.1, over the reports of a real
three-date run (tests/test_workbench.py: build_three_dates).

An auditor logs in, filters the case list, opens the balance break seen on three
dates, comments, decides it as recovered, and checks the event trail and the
export; a change without the CSRF token is refused; a provincial auditor of
another province can neither see nor change that case, in the pages or through
the API directly. Screenshots of the case list and the case page are saved to
benchmarks/out/ and, with RECON_SCREENSHOT_TO_DOCS=1, to docs/workbench-*.png.

Skips, with the reason, only when Chromium is not installed
(scripts/ensure_chromium.sh installs it as root).
"""
from __future__ import annotations

import base64
import csv
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.test_report_browser import CHROMIUM, ROOT, Browser
from tests.test_workbench import DATES, PASSWORD, build_three_dates, make_app


class Server:
    """The workbench app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the workbench did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _ready(b: Browser) -> None:
    deadline = time.monotonic() + 30
    while b.eval("document.readyState === 'complete' && document.body && "
                 "document.body.getAttribute('data-ready')") != "1":
        if time.monotonic() > deadline:
            raise AssertionError("the page did not load")
        time.sleep(0.05)


def go(b: Browser, js: str) -> None:
    """Run `js`, which navigates (a click or a form submit), and wait for the new page."""
    b.events.clear()
    b.eval(js)
    b.wait_event("Page.loadEventFired")
    _ready(b)


def log_in(b: Browser, base: str, name: str) -> None:
    b.open(f"{base}/")
    assert b.eval("location.pathname") == "/login"
    go(b, f"""(() => {{ document.getElementById('name').value = {name!r};
        document.getElementById('password').value = {PASSWORD!r};
        document.getElementById('login-form').submit(); }})()""")
    assert b.eval("location.pathname") == "/", b.eval("document.body.innerText.slice(0, 300)")


def log_out(b: Browser) -> None:
    go(b, "document.querySelector('form[action=\"/logout\"]').submit()")
    assert b.eval("location.pathname") == "/login"


def fetch(b: Browser, path: str, method: str = "GET", body: str | None = None,
          token: str | None = None, as_base64: bool = False) -> dict:
    """A request from the page itself (its session cookie), as a script on it would send."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-CSRF-Token"] = token
    reader = ("r.arrayBuffer().then(a => { let s = ''; new Uint8Array(a).forEach(x => s += "
              "String.fromCharCode(x)); return btoa(s); })") if as_base64 else "r.text()"
    return b.eval(f"""fetch({path!r}, {{method: {method!r}, headers: {headers!r},
        body: {('null' if body is None else repr(body))}, credentials: 'same-origin'}})
        .then(r => {reader}.then(t => ({{status: r.status, text: t}})))""")


def events_of(con, cid: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT kind FROM events WHERE case_id = ? ORDER BY event_id", (cid,))]


def _publish(shots: dict[str, Path]) -> None:
    targets = [ROOT / "benchmarks" / "out"]
    if os.environ.get("RECON_SCREENSHOT_TO_DOCS") == "1":
        targets.append(ROOT / "docs")
    for t in targets:
        t.mkdir(parents=True, exist_ok=True)
        for name, src in shots.items():
            shutil.copyfile(src, t / name)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian packages chromium "
                    "and chromium-driver; run scripts/ensure_chromium.sh as root)")
def test_workbench_in_headless_chromium(tmp_path, monkeypatch):
    published = build_three_dates(tmp_path / "run")
    app, con = make_app(published, tmp_path, [("wang", "auditor", None),
                                              ("zhao", "supervisor", None),
                                              ("li", "auditor", published.other_province)])
    server = Server(app)
    # the report test's browser with the network off, except the workbench on 127.0.0.1
    import tests.test_report_browser as report_browser
    monkeypatch.setattr(report_browser, "NETWORK_OFF", tuple(
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
        if a.startswith("--host-resolver-rules") else a for a in report_browser.NETWORK_OFF))
    browser = Browser(tmp_path / "browser", width=1440, height=1000)
    shots: dict[str, Path] = {}
    try:
        base = server.base
        log_in(browser, base, "wang")

        # the case list, then filtered to the balance breaks of the province
        browser.open(f"{base}/cases?status=open")
        shots["workbench-cases.png"] = tmp_path / "cases.png"
        browser.screenshot(shots["workbench-cases.png"])
        go(browser, f"""(() => {{ document.getElementById('f-rule').value = 'B01';
            document.getElementById('f-province').value = {published.province!r};
            document.getElementById('filter-form').submit(); }})()""")
        rows = browser.eval("""[...document.querySelectorAll('#case-table tbody tr[data-case]')].map(tr =>
            ({id: tr.dataset.case, text: tr.innerText}))""")
        assert rows and all("B01" in r["text"] for r in rows)
        mine = [r for r in rows if published.pair.split(":")[0] in r["text"]]
        assert len(mine) == 1, rows
        cid = mine[0]["id"]

        # the recurring case: three dates, each with its finding and its date's report
        go(browser, f"document.querySelector('a[href=\"/cases/{cid}\"]').click()")
        assert browser.eval("document.getElementById('case-id').textContent") == cid
        seen = browser.eval("[...document.querySelectorAll('.sighting')].map(e => e.dataset.date)")
        assert seen == [d.isoformat() for d in DATES]
        links = browser.eval("[...document.querySelectorAll('a.report-link')].map(a => a.getAttribute('href'))")
        assert links == [f"/reports/{d.isoformat()}/report.html" for d in DATES]
        assert "3" in browser.eval("document.getElementById('case-seen').textContent")
        # the date's report.html opens from the workbench, its script running (sandboxed)
        finding = browser.eval("document.querySelector('.sighting td.mono a').getAttribute('href')")
        browser.open(base + finding)
        assert browser.eval("document.getElementById('drawer').hidden") is False
        browser.open(f"{base}/cases/{cid}")

        # comment, then decide as recovered
        go(browser, """(() => { document.getElementById('comment-text').value =
            '省医保局已核实 Province confirmed the delivered balance was wrong';
            document.getElementById('comment-submit').click(); })()""")
        go(browser, """(() => { document.getElementById('decision').value = 'recovered';
            document.getElementById('amount-recovered').value = '25.00';
            document.getElementById('decide-reason').value = 'corrected delivery';
            document.getElementById('decide-submit').click(); })()""")
        status = browser.eval("document.getElementById('case-status').innerText")
        assert "decided" in status and "25.00" in status
        trail = browser.eval("[...document.querySelectorAll('#event-table tbody tr')].map(tr => tr.dataset.kind)")
        assert trail == ["created", "commented", "decided"]
        assert browser.eval("document.querySelector('#event-table tbody tr:last-child').innerText").count("wang") == 1
        shots["workbench-case.png"] = tmp_path / "case.png"
        browser.eval("window.scrollTo(0, 0)")
        browser.screenshot(shots["workbench-case.png"])

        # the event trail and the decided cases, exported
        trail_csv = fetch(browser, f"/cases/{cid}/events.csv")
        assert trail_csv["status"] == 200
        assert [r["kind"] for r in csv.DictReader(io.StringIO(trail_csv["text"]))] == trail
        exported = fetch(browser, "/export/decided.csv?from=2000-01-01")
        rows = list(csv.DictReader(io.StringIO(exported["text"])))
        assert [(r["case_id"], r["amount_recovered"], r["decided_by"]) for r in rows] == [(cid, "25.00", "wang")]
        xlsx = fetch(browser, "/export/decided.xlsx?from=2000-01-01", as_base64=True)
        book = tmp_path / "decided.xlsx"
        book.write_bytes(base64.b64decode(xlsx["text"]))
        import openpyxl
        ws = openpyxl.load_workbook(book).active
        assert ws.cell(2, 1).value == cid and ws.max_row == 2

        assert js_errors_free(browser)

        # a change without the CSRF token is refused; with it, accepted
        token = browser.eval("document.querySelector('input[name=csrf]').value")
        before = events_of(con, cid)
        assert fetch(browser, f"/api/cases/{cid}/comment", "POST", '{"comment": "no token"}')["status"] == 403
        assert events_of(con, cid) == before
        assert fetch(browser, f"/api/cases/{cid}/comment", "POST", '{"comment": "with token"}',
                     token)["status"] == 200
        log_out(browser)

        # a provincial auditor of another province: not in the list, not on a page, not by the API
        log_in(browser, base, "li")
        browser.open(f"{base}/cases")
        listed = browser.eval("[...document.querySelectorAll('tr[data-case]')].map(tr => tr.dataset.case)")
        assert listed and cid not in listed
        browser.open(f"{base}/cases/{cid}")
        assert browser.eval("document.getElementById('error-status').textContent") == "404"
        browser.open(f"{base}/cases")
        token = browser.eval("document.querySelector('input[name=csrf]').value")
        before = events_of(con, cid)
        assert fetch(browser, f"/api/cases/{cid}")["status"] == 404
        for action, body in (("comment", '{"comment": "x"}'), ("reopen", "{}"),
                             ("assign", '{"assignee": "li"}')):
            assert fetch(browser, f"/api/cases/{cid}/{action}", "POST", body, token)["status"] == 404
        assert events_of(con, cid) == before
    finally:
        browser.close()
        server.stop()
    for p in shots.values():
        assert p.stat().st_size > 10_000
    _publish(shots)


def js_errors_free(b: Browser) -> bool:
    errs = b.js_errors()
    assert errs == [], errs
    return True
