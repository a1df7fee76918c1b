"""report.html in a real browser: headless Chromium, network off.

Chromium is driven through the DevTools protocol (websockets, installed with
prefect): the page is loaded from file://, its JavaScript runs, and the test
asserts that

  * the page made no network request: the DevTools Network events of the
    page are only its own file:// document, and in the browser's net log no
    request carries the traffic annotation of page requests (learnt from a
    control page that does request http://control-probe.invalid/), while every
    remote request the browser itself attempts (updates, sign-in) fails with
    the network off (--proxy-server=127.0.0.1:9, host resolver mapped to
    NOTFOUND),
  * no JavaScript error was thrown,
  * the numbers shown equal summary.json (after the JavaScript ran),
  * filtering and the drill-down to evidence work,
  * the header of a PARTIAL date names its missing provinces and rejected files,
    the header of a STALE date says STALE and the command that clears it,

on the pages a real pipeline run published (`real_run` of tests/conftest.py), and
saves screenshots: the overview, a drill-down and the headers of the PARTIAL and
the STALE date, copied to benchmarks/out/ (git-ignored) and, when
RECON_SCREENSHOT_TO_DOCS=1, to docs/ (report-screenshot.png, report-drilldown.png,
report-header-partial.png, report-header-stale.png).

Skips, with the reason, only when Chromium is not installed
(scripts/ensure_chromium.sh installs it as root).

Take the screenshots for docs/:
    RECON_SCREENSHOT_TO_DOCS=1 .venv/bin/python -m pytest -q tests/test_report_browser.py
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in (os.environ.get("RECON_CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)

NETWORK_OFF = (
    "--proxy-server=127.0.0.1:9",                   # nothing may leave through a proxy...
    "--host-resolver-rules=MAP * ~NOTFOUND",        # ...nor resolve a host name
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-default-apps", "--disable-extensions", "--no-pings", "--disable-quic",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
)


class Browser:
    """Headless Chromium and one page, over the DevTools protocol."""

    def __init__(self, workdir: Path, width: int = 1440, height: int = 1900):
        from websockets.sync.client import connect
        self.workdir = workdir
        self.profile = workdir / "profile"
        self.netlog = workdir / "netlog.json"
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self.profile}", f"--log-net-log={self.netlog}",
                "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                f"--window-size={width},{height}", *NETWORK_OFF, "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                self.proc.kill()
                raise RuntimeError(f"chromium did not start: {err}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=20,
                          proxy=None)
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Page.enable", "Network.enable", "Runtime.enable", "Log.enable"):
            self.call(m, session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False,
             timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            raw = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            m = json.loads(raw)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if m.get("method") == method:
                return m
            self.events.append(m)

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True}, session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired")
        deadline = time.monotonic() + 30
        while self.eval("document.body && document.body.getAttribute('data-ready')") != "1":
            if time.monotonic() > deadline:
                raise AssertionError("the page's JavaScript never finished (no data-ready)")
            time.sleep(0.1)

    def screenshot(self, path: Path, full_height: int | None = None) -> None:
        params = {"format": "png"}
        if full_height:
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": 1440, "height": full_height, "scale": 1})
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def js_errors(self) -> list:
        errs = [e["params"] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        errs += [e["params"]["entry"] for e in self.events if e.get("method") == "Log.entryAdded"
                 and e["params"]["entry"].get("level") == "error"]
        return errs

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.ws.close()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


CONTROL_HOST = "control-probe.invalid"
CONTROL_PAGE = f"""<!DOCTYPE html><html><body data-ready="1">
<img src="http://{CONTROL_HOST}/probe.png"><script>fetch("https://{CONTROL_HOST}/probe.json").catch(() => 0)</script>
</body></html>"""


def netlog_requests(path: Path) -> list[dict]:
    """URL requests in the browser's net log: url, traffic annotation, net errors.

    The log is JSON, unterminated when the browser did not close it.
    """
    text = path.read_text(encoding="utf-8", errors="replace").rstrip()
    if not text.endswith("}"):
        text = text.rstrip(",") + "]}"
    try:
        log = json.loads(text)
    except ValueError:
        log = json.loads(text[: text.rfind("},") + 1] + "]}")
    by_source: dict[int, dict] = {}
    for ev in log.get("events", []):
        p = ev.get("params") or {}
        sid = ev.get("source", {}).get("id")
        r = by_source.setdefault(sid, {"url": None, "annotation": None, "errors": set()})
        if "url" in p and r["url"] is None:
            r["url"] = p["url"]
        if "traffic_annotation" in p:
            r["annotation"] = p["traffic_annotation"]
        if isinstance(p.get("net_error"), int) and p["net_error"] < 0:
            r["errors"].add(p["net_error"])
    # URL_REQUEST sources carry the traffic annotation; CORS bookkeeping sources repeat
    # the url without one and are left out
    return [r for r in by_source.values() if r["url"] and r["annotation"] is not None]


def assert_no_network(requests: list[dict]) -> None:
    """Calibrated by the control page: its requests show which traffic annotation a
    page's own requests carry; no other request may carry it, and every remote
    request the browser itself attempted (updates, sign-in) must have failed."""
    remote = [r for r in requests if str(r["url"]).startswith(("http:", "https:", "ws:", "wss:"))]
    control = [r for r in remote if CONTROL_HOST in r["url"]]
    assert control, "the control page's requests are not in the net log: the check would be blind"
    page_annotations = {r["annotation"] for r in control}
    from_pages = [r["url"] for r in remote
                  if r["annotation"] in page_annotations and CONTROL_HOST not in r["url"]]
    assert from_pages == [], f"report.html made network requests: {from_pages[:5]}"
    escaped = [r["url"] for r in remote if not r["errors"]]
    assert escaped == [], f"requests that did not fail with the network off: {escaped[:5]}"


DOM_NUMBERS = """(() => {
  const keyed = {};
  document.querySelectorAll('[data-summary-key]').forEach(e => keyed[e.dataset.summaryKey] = e.textContent.trim());
  const rules = {};
  document.querySelectorAll('[data-rule-count]').forEach(e => rules[e.dataset.ruleCount] = e.textContent.trim());
  const inv = {};
  document.querySelectorAll('[data-invariant]').forEach(e => inv[e.dataset.invariant] = e.textContent.trim());
  return {keyed, rules, inv,
          explorer: document.getElementById('explorer-count').textContent.trim(),
          rows: document.querySelectorAll('#explorer-table tbody tr').length,
          images: document.images.length,
          resources: performance.getEntriesByType('resource').length};
})()"""


def _summary_value(summary: dict, key: str):
    cur = summary
    for part in key.split("."):
        # a renamed summary.json field fails here; a list is indexed by position
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def check_numbers(dom: dict, summary: dict) -> None:
    """Every number the page labels with data-summary-key is summary.json's own."""
    for key, text in dom["keyed"].items():
        value = _summary_value(summary, key)
        if key.startswith("amounts."):
            assert Decimal(text.replace(",", "")) == Decimal(value), key
        elif isinstance(value, list):
            assert text == str(len(value)) or all(v in text for v in value), key
        else:
            assert text.replace(",", "") == str(value), (key, text, value)
    per_rule = summary["findings"]["per_rule"]
    for code, n in per_rule.items():
        assert int(dom["rules"][code].replace(",", "")) == n, code
    for inv in summary["invariants"]:
        assert ("passed" in dom["inv"][inv["name"]]) == bool(inv["passed"]), inv["name"]


def check_report(report: Path, summary_path: Path, exceptions, shots: Path) -> dict:
    """Open a published report in headless Chromium, assert, and save screenshots in `shots`."""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    work = Path(tempfile.mkdtemp(prefix="recon-browser-"))
    control = work / "control.html"
    control.write_text(CONTROL_PAGE, encoding="utf-8")
    browser = Browser(work)
    try:
        browser.open(control.as_uri())
        time.sleep(0.5)
        browser.events.clear()
        browser.open(report.resolve().as_uri())
        dom = browser.eval(DOM_NUMBERS)
        check_numbers(dom, summary)
        total = summary["findings"]["total"]
        # the JavaScript counted the embedded findings itself
        assert int(dom["explorer"].replace(",", "")) == total
        assert dom["rows"] == min(total, 100)

        # filter by the rule with the most findings, then search by a person of it
        rule, count = max(summary["findings"]["per_rule"].items(), key=lambda kv: kv[1])
        n = browser.eval(f"""(() => {{ const s = document.getElementById('f-rule'); s.value = '{rule}';
            s.dispatchEvent(new Event('change')); return document.getElementById('explorer-count').textContent; }})()""")
        assert int(n.replace(",", "")) == count
        psn = next(x for x in exceptions["sharer_psn_no"].to_list() if x)
        n = browser.eval(f"""(() => {{ document.getElementById('f-reset').click();
            const q = document.getElementById('f-q'); q.value = '{psn}';
            q.dispatchEvent(new Event('input')); return new Promise(r => setTimeout(() =>
              r(document.getElementById('explorer-count').textContent), 400)); }})()""")
        assert int(n.replace(",", "")) >= 1
        browser.eval("document.getElementById('f-reset').click()")

        browser.eval("window.scrollTo(0, 0)")
        shots.mkdir(parents=True, exist_ok=True)
        overview = shots / "report.png"
        browser.screenshot(overview)

        # drill down: the evidence of the largest finding of a sharing rule
        drawer = browser.eval("""(() => {
            const rows = [...document.querySelectorAll('#explorer-table tbody tr')];
            const row = rows.find(tr => tr.cells[0].textContent.trim().startsWith('S')) || rows[0];
            const code = row.cells[0].textContent.trim().slice(0, 3);
            row.click();
            const d = document.getElementById('drawer');
            return {code, hidden: d.hidden, title: document.getElementById('drawer-title').textContent,
                    tables: d.querySelectorAll('table').length,
                    text: document.getElementById('drawer-body').textContent};
        })()""")
        assert drawer["hidden"] is False and drawer["title"].startswith(drawer["code"]), drawer
        assert drawer["tables"] >= 1 or drawer["text"], drawer
        drill = shots / "report-drilldown.png"
        browser.screenshot(drill)

        # no network: the page asked for nothing but its own file
        assert dom["images"] == 0 and dom["resources"] == 0, (dom["images"], dom["resources"])
        requests = browser.requests()
        assert requests and all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
        assert browser.js_errors() == [], browser.js_errors()
    finally:
        browser.close()
    assert_no_network(netlog_requests(browser.netlog))
    shutil.rmtree(work, ignore_errors=True)
    return {"overview": overview, "drilldown": drill, "requests": requests}


HEADER_BOX = """(() => { const h = document.querySelector('header.top');
  let bottom = h.getBoundingClientRect().bottom;
  for (const id of ['stale', 'why-partial']) { const e = document.getElementById(id);
    if (e) bottom = Math.max(bottom, e.getBoundingClientRect().bottom); }
  return Math.ceil(bottom) + 8; })()"""

HEADER_TEXT = """(() => { const out = {status: document.querySelector('header.top [data-summary-key=status]').textContent,
  partial: [...document.querySelectorAll('#why-partial li')].map(li => [li.dataset.partialRule, li.dataset.province, li.textContent]),
  stale: document.getElementById('stale') ? document.getElementById('stale').textContent : null};
  return out; })()"""


def check_header(report: Path, summary: dict, shot: Path) -> dict:
    """The header of a published page, as the browser shows it; screenshot of it."""
    work = Path(tempfile.mkdtemp(prefix="recon-header-"))
    browser = Browser(work, height=900)
    try:
        browser.open(report.resolve().as_uri())
        seen = browser.eval(HEADER_TEXT)
        browser.screenshot(shot, full_height=browser.eval(HEADER_BOX))
        assert browser.js_errors() == [], browser.js_errors()
    finally:
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    assert seen["status"] == summary["status"]
    return seen


def _publish(shots: dict) -> list[Path]:
    """Copy screenshots to benchmarks/out/ (git-ignored) and, on request, to docs/."""
    done = []
    targets = [ROOT / "benchmarks" / "out"]
    if os.environ.get("RECON_SCREENSHOT_TO_DOCS") == "1":
        targets.append(ROOT / "docs")
    for t in targets:
        t.mkdir(parents=True, exist_ok=True)
        for name, src in shots.items():
            shutil.copyfile(src, t / name)
            done.append(t / name)
    return done


NO_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian "
                                 "packages chromium and chromium-driver; run "
                                 "scripts/ensure_chromium.sh as root)")


@NO_CHROMIUM
def test_report_in_headless_chromium(tmp_path, real_run):
    d = real_run.partial
    result = check_report(real_run.folder(d) / "report.html", real_run.folder(d) / "summary.json",
                          real_run.exceptions(d), tmp_path)
    assert result["overview"].stat().st_size > 10_000
    _publish({"report-screenshot.png": result["overview"],
              "report-drilldown.png": result["drilldown"]})


@NO_CHROMIUM
def test_partial_and_stale_headers_as_the_browser_shows_them(tmp_path, real_run):
    partial = real_run.summary(real_run.partial)
    seen = check_header(real_run.folder(real_run.partial) / "report.html", partial,
                        tmp_path / "partial.png")
    f01 = [p for rule, p, _text in seen["partial"] if rule == "F01"]
    assert f01 == partial["provinces"]["missing"] and real_run.withdrawn in f01
    rejected = [(rule, p) for rule, p, _text in seen["partial"] if rule != "F01"]
    assert rejected == [(f["reject_rule"], f["province"]) for f in partial["files"] if f["rejected"]]
    stale = real_run.summary(real_run.stale)
    seen = check_header(real_run.folder(real_run.stale) / "report.html", stale,
                        tmp_path / "stale.png")
    assert seen["status"] == "STALE" and stale["stale_clear_command"] in seen["stale"]
    _publish({"report-header-partial.png": tmp_path / "partial.png",
              "report-header-stale.png": tmp_path / "stale.png"})
