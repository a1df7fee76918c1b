"""Reads what the runs publish under <out> into the workbench's cases.

For every folder <out>/<YYYY-MM-DD>/ with exceptions.parquet: the findings become
sightings of their cases (keys.case_key); a case is created, with a `created`
event, the first time its key is seen. summary.json, read through
contracts/summary.py, gives the run's status (a summary that does not match the
contract is a problem of that date, never a guessed status), and report.html the drill-down evidence it embedded (only for the findings the page
evidences: the top ones per rule and the largest).

Idempotent: a date whose files did not change is skipped; a date whose files did
change (a re-run) has its sightings replaced as a whole, in one transaction, so
a finding is never counted twice. A finding that disappears from a re-run date
leaves its case in place (its events stay), only with fewer sightings.

<out> is not trusted: only real folders named like a date are read (no symlinks),
a file that cannot be read or lacks a column is reported as a problem of that
date and its earlier sightings are kept, and every resident ID in text is masked
before it is stored.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from workbench.masking import mask
from contracts import summary as summary_contract
from contracts.dates import iso_date
from workbench import keys
from workbench.store import SIGHTING_COLUMNS, append_event, now_utc, transaction

FILES = ("exceptions.parquet", "summary.json", "report.html")
REQUIRED = ("exception_id", "business_date", "rule_code", "rule_name", "severity", "province",
            "dataset", "record_id", "sharer_psn_no", "beneficiary_psn_no", "amount", "detail",
            "source_file", "source_row")
MAX_REPORT_BYTES = 512 * 1024 * 1024   # a national day's page is tens of MB
MAX_SUMMARY_BYTES = 64 << 20           # a summary lists a few hundred files (as flows.operations)
_DATA_OPEN = '<script type="application/json" id="report-data">'


@dataclass
class IngestResult:
    ingested: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


def published_dates(out: Path) -> list[tuple[str, Path]]:
    """(YYYY-MM-DD, folder) of every published date under <out>, in date order."""
    out = Path(out)
    try:
        if not out.is_dir():
            return []
        entries = list(out.iterdir())
    except OSError:   # <out> cannot be listed: nothing is published, as far as we can tell
        return []
    found = []
    for entry in entries:
        try:   # a folder recon cannot enter (permissions) is no published date: never a 500
            if iso_date(entry.name) is None or entry.is_symlink() or not entry.is_dir():
                continue
            p = entry / "exceptions.parquet"
            if p.is_file() and not p.is_symlink():
                found.append((entry.name, entry))
        except OSError:
            continue
    return sorted(found)


def _fingerprint(folder: Path) -> str:
    parts = []
    for name in FILES:
        p = folder / name
        try:
            st = p.stat() if not p.is_symlink() else None
        except OSError:
            st = None
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}" if st else f"{name}:-")
    return ";".join(parts)


def _sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for name in FILES:
        p = folder / name
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _money(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        raise ValueError("amount is a binary float, not a decimal")
    try:
        d = Decimal(str(v)).quantize(Decimal("0.01"))
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite():
        raise ValueError(f"amount {str(v)[:40]!r} is not a number")
    return str(d)


def read_findings(folder: Path, day: str) -> list[dict]:
    """The findings of exceptions.parquet as dicts; ValueError with one sentence when unusable."""
    import polars as pl
    try:
        frame = pl.read_parquet(folder / "exceptions.parquet")
    except Exception as e:  # noqa: BLE001 - hostile file: one sentence, no crash
        raise ValueError(f"exceptions.parquet cannot be read ({type(e).__name__})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"exceptions.parquet lacks column(s) {', '.join(missing)}")
    rows = []
    for r in frame.select(REQUIRED).iter_rows(named=True):
        if str(r["business_date"]) != day:
            raise ValueError(f"exceptions.parquet holds a finding of {r['business_date']}, not {day}")
        if not r["exception_id"] or not r["rule_code"] or r["province"] is None:
            raise ValueError("exceptions.parquet has a finding without exception_id, rule_code or province")
        row = {k: (None if r[k] is None else str(r[k])) for k in REQUIRED}
        row["amount"] = _money(r["amount"])
        try:
            row["source_row"] = None if r["source_row"] is None else int(r["source_row"])
        except (TypeError, ValueError):
            raise ValueError("exceptions.parquet has a source_row that is not a number") from None
        rows.append(row)
    return rows


def read_evidence(folder: Path) -> dict[str, dict]:
    """The drill-down evidence embedded in report.html, by exception_id ({} when absent)."""
    p = folder / "report.html"
    try:
        if not p.is_file() or p.is_symlink() or p.stat().st_size > MAX_REPORT_BYTES:
            return {}
        text = p.read_text(encoding="utf-8", errors="replace")
        i = text.find(_DATA_OPEN)
        if i < 0:
            return {}
        i += len(_DATA_OPEN)
        j = text.find("</script>", i)
        data = json.loads(text[i:j])
        ev = data.get("evidence") if isinstance(data, dict) else None
        if not isinstance(ev, dict):
            return {}
        return {str(k)[:64]: clean_evidence(v) for k, v in ev.items() if isinstance(v, dict)}
    except (OSError, ValueError, RecursionError):
        return {}


def _s(v, n: int = 2000) -> str | None:
    return None if v is None else str(v)[:n]


def clean_evidence(ev: dict) -> dict:
    """The evidence of one finding in the shape the case page shows, every value a short
    string (a report.html from a hostile <out> cannot break or bloat the page)."""
    tables = []
    for t in ev.get("tables") or []:
        if not isinstance(t, dict) or not isinstance(t.get("columns"), list) \
                or not isinstance(t.get("rows"), list):
            continue
        tables.append({"zh": _s(t.get("zh"), 100), "en": _s(t.get("en"), 100),
                       "columns": [_s(c, 100) for c in t["columns"][:40]],
                       "rows": [[_s(v) for v in r[:40]] for r in t["rows"][:200] if isinstance(r, list)],
                       "more": bool(t.get("more"))})
    limits = [{k: _s(x.get(k), 200) for k in ("zh", "en", "value", "policy")}
              for x in (ev.get("limits") or []) if isinstance(x, dict)][:10]
    out: dict = {"tables": tables, "limits": limits}
    ch = ev.get("chain")
    if isinstance(ch, dict) and isinstance(ch.get("nodes"), list):
        out["chain"] = {
            "kind": "cycle" if ch.get("kind") == "cycle" else "forwarding",
            "window_from": _s(ch.get("window_from"), 20),
            "nodes": [_s(x, 40) for x in ch["nodes"][:20]],
            "edges": [{"from": _s(e.get("from"), 40), "to": _s(e.get("to"), 40),
                       "count": _s(e.get("count"), 10), "amount": _s(e.get("amount"), 30),
                       "last": _s(e.get("last"), 30), "this": bool(e.get("this")),
                       "transfer_ids": [_s(x, 40) for x in (e.get("transfer_ids") or [])[:10]
                                        if isinstance(e.get("transfer_ids"), list)]}
                      for e in (ch.get("edges") or [])[:40] if isinstance(e, dict)]}
    return out


def read_status(folder: Path, day: str) -> tuple[str, str, str]:
    """The status of the date from its summary.json, read through contracts/summary.py;
    ValueError with one sentence when the file is absent, not a regular file, too big,
    of another date or not of that contract (a renamed field is never guessed at).
    Returns (status, why, reasons): why is the summary's own line for a STALE date (with
    the command that clears it) or a PARTIAL one, '' when COMPLETE; reasons the same as
    JSON by province (status_reasons), from which a province-scoped user's line is made."""
    p = folder / "summary.json"
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > MAX_SUMMARY_BYTES:
            raise ValueError("summary.json is missing or not a regular file of a sensible size")
        s = summary_contract.parse(json.loads(p.read_text(encoding="utf-8")), "summary.json")
    except OSError as e:
        raise ValueError(f"summary.json cannot be read ({type(e).__name__})") from None
    except summary_contract.SummaryError as e:  # it may quote a key of the hostile file
        raise ValueError(mask(str(e).rstrip("."))) from None
    except (ValueError, RecursionError):
        raise ValueError("summary.json is not JSON") from None
    if s.business_date.isoformat() != day:
        raise ValueError(f"summary.json is the summary of {s.business_date.isoformat()}, not {day}")
    reasons = {"status_before_stale": s.status_before_stale,
               "stale_clear_command": s.stale_clear_command,
               "partial_because": [r.model_dump() for r in s.partial_because]}
    return s.status, mask(s.why()) or "", mask(json.dumps(reasons, ensure_ascii=False))


def _store_date(con: sqlite3.Connection, day: str, rows: list[dict], evidence: dict,
                fingerprint: str, sha: str, status: str | None, why: str | None = None,
                reasons: str | None = None) -> None:
    at = now_utc()
    with transaction(con):
        con.execute("DELETE FROM sightings WHERE business_date = ?", (day,))
        for n, r in enumerate(rows):
            kind, subject, text = keys.case_key(r["rule_code"], r["province"], r["record_id"],
                                                r["sharer_psn_no"], r["detail"])
            cid = keys.case_id(text)
            if con.execute("SELECT 1 FROM cases WHERE case_id = ?", (cid,)).fetchone() is None:
                con.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?)",
                            (cid, kind, r["rule_code"], r["province"], mask(subject), at))
                append_event(con, cid, "system", "created", None,
                             {"status": "open", "first_seen": day, "rule_code": r["rule_code"],
                              "province": r["province"]}, at)
            ev = evidence.get(r["exception_id"])
            # one sighting per finding: exception_id is not unique (spec-readings item 15)
            con.execute(
                f"INSERT INTO sightings ({', '.join(SIGHTING_COLUMNS)}, finding_no) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (day, r["exception_id"], cid, r["rule_code"], r["rule_name"], r["severity"],
                 r["province"], r["dataset"], mask(r["record_id"]), r["sharer_psn_no"],
                 r["beneficiary_psn_no"], r["amount"], mask(r["detail"]),
                 mask(r["source_file"]), r["source_row"],
                 None if ev is None else mask(json.dumps(ev, ensure_ascii=False)), n))
        con.execute("INSERT OR REPLACE INTO report_dates (business_date, fingerprint, content_sha256, "
                    "status, findings, ingested_at, problem, status_why, status_reasons) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (day, fingerprint, sha, status, len(rows), at, why or None, reasons))


def _note_problem(con: sqlite3.Connection, day: str, fingerprint: str, sha: str, problem: str) -> None:
    with transaction(con):
        old = con.execute("SELECT status, findings, ingested_at, status_why, status_reasons "
                          "FROM report_dates WHERE business_date = ?", (day,)).fetchone()
        con.execute("INSERT OR REPLACE INTO report_dates (business_date, fingerprint, content_sha256, "
                    "status, findings, ingested_at, problem, status_why, status_reasons) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (day, fingerprint, sha, old["status"] if old else None,
                     old["findings"] if old else 0, old["ingested_at"] if old else now_utc(), problem,
                     old["status_why"] if old else None, old["status_reasons"] if old else None))


REMOVED = ("报告目录中暂未找到该日期 not found in the reports folder: its findings are kept as "
           "last read until it is published again")


def _note_removed(con: sqlite3.Connection, day: str) -> None:
    """A date folder that was read and is not in <out> now: a problem banner, nothing more.
    A publish moves <out>/<D> aside for a moment (and a killed run leaves it aside until
    the next run recovers), and an unmounted <out> looks empty: deleting the date's
    sightings then would change case amounts (and the supervisor limit's check) on a
    transient absence. Its sightings stay as last read; it is read again when it is back."""
    with transaction(con):
        con.execute("UPDATE report_dates SET fingerprint = '', content_sha256 = '', problem = ? "
                    "WHERE business_date = ?", (REMOVED, day))


def ingest(con: sqlite3.Connection, out: Path) -> IngestResult:
    """Bring the cases up to date with every date published under <out>."""
    res = IngestResult()
    dates = published_dates(out)
    if Path(out).is_dir():   # a reports folder that is not there (unmounted) removes nothing
        present = {d for d, _ in dates}
        for r in con.execute("SELECT business_date, problem FROM report_dates").fetchall():
            if r["business_date"] not in present and r["problem"] != REMOVED:
                _note_removed(con, r["business_date"])
                res.problems[r["business_date"]] = REMOVED
    for day, folder in dates:
        fp = _fingerprint(folder)
        known = con.execute("SELECT fingerprint, content_sha256 FROM report_dates WHERE business_date = ?",
                            (day,)).fetchone()
        if known and known["fingerprint"] == fp:
            res.unchanged.append(day)
            continue
        sha = _sha256(folder)
        if known and known["content_sha256"] == sha:
            with transaction(con):
                con.execute("UPDATE report_dates SET fingerprint = ? WHERE business_date = ?", (fp, day))
            res.unchanged.append(day)
            continue
        try:
            rows = read_findings(folder, day)
            status, why, reasons = read_status(folder, day)
        except ValueError as e:
            _note_problem(con, day, fp, sha, mask(str(e)))
            res.problems[day] = mask(str(e))
            continue
        _store_date(con, day, rows, read_evidence(folder), fp, sha, status, why, reasons)
        res.ingested.append(day)
    return res
