"""Alerts that reach people (issue 11, item 4): one message per event to every
configured channel (apprise URLs: `mailto://`, `json://`, `ntfy://`, ...).

Events, each with the business date, what happened and the report's path:

    run FAILED                  the one-sentence error
    invariant broken            the run failed because an invariant of rules.md §8 broke
    missing at deadline         live provinces still without a complete folder
    completed by late delivery  a re-run received provinces missing at the previous run
    ERROR findings spike        ERROR findings above a multiple of their 7-day median
    daily digest                only when asked for (a clean day is otherwise silent)

A channel that cannot be reached never fails the run: it is logged and the run
goes on. URLs may carry passwords, so only their scheme is ever logged.
"""
from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

from contracts.errors import InputError
from contracts.summary import SummaryCore

log = logging.getLogger("recon")

FAILED = "run FAILED"
INVARIANT = "invariant broken"
MISSING = "provinces missing at deadline"
LATE = "completed by late delivery"
SPIKE = "ERROR findings spike"
DIGEST = "daily digest"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] + "://…" if "://" in url else "(not a URL)"


def check_channels(urls) -> None:
    """Refuse (exit 2) a channel apprise does not understand, before any run starts."""
    import apprise
    quiet = logging.getLogger("apprise")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # apprise would log the URL, password and all
    try:
        for url in urls:
            if not apprise.Apprise().add(url):
                raise InputError(f"The alert channel {_scheme(url)} is not a URL apprise understands.")
    finally:
        quiet.setLevel(level)


def one_sentence(e: BaseException) -> str:
    """The error as the CLI shows it: our own errors are one sentence already; anything
    else is its type and the first line of its message (tracebacks stay in the logs)."""
    from flows.nightly import RunFailed
    first = (str(e).strip().splitlines() or [""])[0][:300]
    if not isinstance(e, (InputError, RunFailed)):
        step = getattr(e, "recon_step", None)
        first = f"internal error{f' in step {step}' if step else ''}, {type(e).__name__}" \
                + (f": {first}" if first else "")
    text = " ".join(first.split())
    return text if text.endswith((".", "?", "!")) else text + "."


class Alerter:
    """Sends one message per event to every channel; `sent` keeps (event, title) in order."""

    def __init__(self, urls=(), out: Path | str = "data/reports"):
        self.urls = tuple(urls or ())
        self.out = Path(out)
        self.sent: list[tuple[str, str]] = []
        if self.urls:
            check_channels(self.urls)

    def report(self, d: date) -> str:
        return str((self.out / d.isoformat() / "report.html").resolve())

    def send(self, event: str, d: date, what: str, kind: str = "warning") -> None:
        """One message: title `recon <D>: <event>`, body date / what happened / report."""
        title = f"recon {d.isoformat()}: {event}"
        body = (f"Business date: {d.isoformat()}\nWhat happened: {what}\n"
                f"Report: {self.report(d)}\n")
        log.warning("alert: %s — %s", title, what)
        self.sent.append((event, title))
        if not self.urls:
            return
        import apprise
        for url in self.urls:
            channel = apprise.Apprise()
            channel.add(url)
            try:
                ok = channel.notify(title=title, body=body, notify_type=apprise.NotifyType(kind))
            except Exception as e:  # noqa: BLE001 - an alert channel never fails the run
                log.warning("alert channel %s failed: %s", _scheme(url), type(e).__name__)
                continue
            if not ok:
                log.warning("alert channel %s did not accept the message %r", _scheme(url), title)

    # ------------------------------------------------------------------ events

    def run_failed(self, d: date, e: BaseException) -> None:
        from flows.nightly import RunFailed
        sentence = one_sentence(e)
        if isinstance(e, RunFailed) and "invariant" in str(e):
            self.send(INVARIANT, d, f"an invariant broke, so nothing was published: {sentence}",
                      "failure")
        else:
            self.send(FAILED, d, f"the run of {d.isoformat()} FAILED: {sentence}", "failure")

    def missing_at_deadline(self, d: date, provinces: list[str], deadline: datetime) -> None:
        self.send(MISSING, d, f"province(s) {', '.join(provinces)} had not delivered a complete "
                  f"folder by the deadline {deadline.isoformat()}; {d.isoformat()} is reconciled "
                  "without them (PARTIAL) and re-run when they deliver.")

    def late_delivery(self, d: date, provinces: list[str], before: str | None, after: str) -> None:
        self.send(LATE, d, f"province(s) {', '.join(provinces)} delivered late; the re-run of "
                  f"{d.isoformat()} is {after} (was {before}).", "success")

    def error_spike(self, d: date, errors: int, median: float, threshold: float) -> None:
        self.send(SPIKE, d, f"{errors} ERROR findings, above {threshold:g} (the alert multiple of "
                  f"their median {median:g} over the previous processed dates).")

    def digest(self, d: date, s: SummaryCore) -> None:
        """The day in one line, from its summary (contracts/summary.py)."""
        missing = s.provinces.missing
        self.send(DIGEST, d, f"{s.status}: {s.findings.total} findings, settled "
                  f"{s.amounts.settled:.2f}"
                  + (f", missing {', '.join(missing)}" if missing else "") + ".", "info")
