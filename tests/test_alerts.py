"""Alerts (issue 11, item 4): one message per event, with the date, what happened and
the report's path, delivered through apprise to a local SMTP sink (mailto://) and a
local HTTP endpoint (json://), both on 127.0.0.1 inside the test. A clean day sends
nothing unless the daily digest is asked for."""
from __future__ import annotations

import contextlib
import email
import json
import socketserver
import threading
from datetime import date, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contracts.errors import InputError
from contracts.summary import Findings, SummaryCore
from flows import operations as ops
from flows.alerts import DIGEST, FAILED, INVARIANT, SPIKE, Alerter
from flows.nightly import Paths, PlainExecutor, RunFailed, run_date
from transforms.operations import error_counts, error_spike

D1 = date(2026, 11, 20)


# --------------------------------------------------------------------------- sinks

class _Sink:
    def __init__(self, url: str):
        self.url, self.messages = url, []


@contextlib.contextmanager
def http_sink():
    """An HTTP endpoint on 127.0.0.1 that keeps every JSON body posted to it;
    `.url` is the apprise json:// URL that reaches it."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            bodies.append(json.loads(self.rfile.read(n)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sink = _Sink(f"json://127.0.0.1:{server.server_address[1]}/alerts")
    sink.messages = bodies
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def smtp_sink():
    """A minimal SMTP server on 127.0.0.1 (HELO/EHLO, MAIL, RCPT, DATA, QUIT) keeping
    every message as an email.message; `.url` is the apprise mailto:// URL."""
    mails: list = []

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write((line + "\r\n").encode())

        def handle(self):
            self.reply("220 sink ready")
            while True:
                line = self.rfile.readline().decode("utf-8", "replace").strip()
                if not line:
                    return
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250 sink")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    data = []
                    while (ln := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                        data.append(ln[1:] if ln.startswith(b"..") else ln)
                    mails.append(email.message_from_bytes(b"".join(data), policy=policy.default))
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # HELO, MAIL, RCPT, RSET, NOOP
                    self.reply("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    sink = _Sink(f"mailto://127.0.0.1:{port}?from=recon@example.org&to=ops@example.org"
                 "&mode=insecure")
    sink.messages = mails
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- channels

def test_a_run_failure_reaches_the_smtp_and_http_channels_once_each(tmp_path):
    with smtp_sink() as mail, http_sink() as web:
        alerter = Alerter([mail.url, web.url], tmp_path / "reports")
        alerter.run_failed(D1, RuntimeError("the warehouse disk is full"))
    report = str((tmp_path / "reports" / "2026-11-20" / "report.html").resolve())
    [m] = mail.messages
    assert m["Subject"] == f"recon 2026-11-20: {FAILED}"
    body = m.get_body().get_content()
    assert "Business date: 2026-11-20" in body
    assert "the run of 2026-11-20 FAILED: internal error, RuntimeError: the warehouse disk is full." in body
    assert f"Report: {report}" in body
    [j] = web.messages
    assert j["title"] == f"recon 2026-11-20: {FAILED}"
    assert j["type"] == "failure"
    assert f"Report: {report}" in j["message"]


def test_a_failure_is_told_in_one_sentence_without_the_traceback():
    from flows.alerts import one_sentence
    e = ValueError("Binder Error: column x not found\nLINE 1: SELECT x FROM t\n       ^")
    e.recon_step = "rules-transfers"
    assert one_sentence(e) == ("internal error in step rules-transfers, ValueError: "
                               "Binder Error: column x not found.")
    assert one_sentence(InputError("The inbox has no folder for business date 2026-11-20.")) == \
        "The inbox has no folder for business date 2026-11-20."


def test_a_broken_invariant_is_its_own_event():
    with http_sink() as web:
        Alerter([web.url]).run_failed(D1, RunFailed(
            "the invariant(s) conservation failed on 2026-11-20, so nothing was published."))
    assert [m["title"] for m in web.messages] == [f"recon 2026-11-20: {INVARIANT}"]
    assert "conservation failed" in web.messages[0]["message"]


def test_an_unreachable_channel_does_not_fail_the_run_and_a_bad_url_is_refused():
    alerter = Alerter(["json://127.0.0.1:9/nothing-listens-here"])
    alerter.run_failed(D1, RuntimeError("boom"))        # logged, not raised
    assert alerter.sent == [(FAILED, f"recon 2026-11-20: {FAILED}")]
    with pytest.raises(InputError, match=r"The alert channel nosuch://… is not a URL"):
        Alerter(["nosuch://secret:password@host"])


# --------------------------------------------------------------------------- events of a night

def _day(root: Path, d: date) -> None:
    from tests.test_operations import guangdong, henan
    guangdong(root, d)
    henan(root, d)


def test_a_clean_day_sends_nothing_unless_the_daily_digest_is_asked_for(tmp_path):
    from tests.inbox_builders import write_reference
    paths = Paths.of(tmp_path / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    write_reference(paths.inbox)
    _day(paths.inbox, D1)
    _day(paths.inbox, D1 + timedelta(days=1))
    run = lambda d: run_date(paths, d, PlainExecutor(max_workers=2))  # noqa: E731
    with http_sink() as web:
        ops.nightly_run(paths, ops.OpsConfig(alerts=(web.url,)), run, until=D1)
        assert web.messages == []
        ops.nightly_run(paths, ops.OpsConfig(alerts=(web.url,), digest=True), run,
                        until=D1 + timedelta(days=1))
    [m] = web.messages
    assert m["title"] == f"recon 2026-11-21: {DIGEST}"
    assert m["message"].splitlines()[1].startswith("What happened: COMPLETE: ")


def _summary(d: str, **per_rule) -> SummaryCore:
    """Only what error_spike reads of a summary (the rest is not built)."""
    return SummaryCore.model_construct(business_date=date.fromisoformat(d),
                                       findings=Findings(total=sum(per_rule.values()),
                                                         per_rule=per_rule))


def test_error_findings_above_the_multiple_of_their_median_spike():
    """S08 is an ERROR rule, S02's severity is read from the rule catalogue too."""
    from contracts.codes import RULES
    err = next(c for c, r in RULES.items() if r.severity == "ERROR")
    warn = next(c for c, r in RULES.items() if r.severity == "WARNING")
    history = [_summary(f"2026-11-{10 + i}", **{err: n, warn: 500}) for i, n in
               enumerate([4, 5, 6, 5, 4, 100, 5, 5])]          # the 8th-oldest is outside 7 days
    assert error_counts(history[:2])["errors"].to_list() == [4, 5]
    assert error_spike(_summary("2026-11-20", **{err: 16, warn: 9999}), history, 3.0, 7, 3) == \
        {"errors": 16, "median": 5.0, "threshold": 15.0}
    assert error_spike(_summary("2026-11-20", **{err: 15}), history, 3.0, 7, 3) is None
    assert error_spike(_summary("2026-11-20", **{err: 99}), history[:2], 3.0, 7, 3) is None
    zero = [_summary(f"2026-11-1{i}") for i in range(5)]           # median 0 counts as 1
    assert error_spike(_summary("2026-11-20", **{err: 3}), zero, 3.0, 7, 3) is None
    assert error_spike(_summary("2026-11-20", **{err: 4}), zero, 3.0, 7, 3)["threshold"] == 3.0


def test_an_error_spike_reaches_the_channel_with_its_numbers():
    with http_sink() as web:
        Alerter([web.url]).error_spike(D1, errors=16, median=5.0, threshold=15.0)
    [m] = web.messages
    assert m["title"] == f"recon 2026-11-20: {SPIKE}"
    assert "16 ERROR findings, above 15" in m["message"] and "median 5" in m["message"]
