"""The workbench's own database: SQLite in WAL mode, beside <out> (never the warehouse).

Tables:
    cases      one row per case, written once (key, rule, province, subject)
    sightings  the findings of the published reports, per business date, that belong to
               a case: a mirror of exceptions.parquet, one row per finding keyed by
               (business_date, finding_no: its position in the file) -- exception_id
               alone is not unique (docs/spec-readings.md item 15) -- replaced as a
               whole when a date is re-published (so re-ingesting never duplicates)
    events     every change to a case (created, assigned, commented, decided, reopened):
               who, when, before, after; append-only, enforced by triggers, and
               hash-chained so that a row changed outside SQLite shows in verify_events()
    report_dates  per published date: its files' fingerprint, the run's status (STALE,
               PARTIAL, COMPLETE) and why, its findings, and a problem when the date
               cannot be read or was removed from <out> (status NULL: it was never read,
               or no longer counts; such a date is never "the latest published date")
    users, logins, sessions, meta

The current state of a case (status, decision, assignee) is never stored: it is
folded from its events (cases.state_of).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

SIGHTINGS = """CREATE TABLE IF NOT EXISTS sightings (
    business_date TEXT NOT NULL, exception_id TEXT NOT NULL, case_id TEXT NOT NULL
        REFERENCES cases(case_id),
    rule_code TEXT NOT NULL, rule_name TEXT, severity TEXT, province TEXT NOT NULL,
    dataset TEXT, record_id TEXT, sharer_psn_no TEXT, beneficiary_psn_no TEXT,
    amount TEXT, detail TEXT, source_file TEXT, source_row INTEGER, evidence TEXT,
    finding_no INTEGER NOT NULL,
    PRIMARY KEY (business_date, finding_no))"""
SIGHTINGS_INDEX = "CREATE INDEX IF NOT EXISTS sightings_case ON sightings (case_id, business_date)"
SIGHTING_COLUMNS = ("business_date", "exception_id", "case_id", "rule_code", "rule_name", "severity",
                    "province", "dataset", "record_id", "sharer_psn_no", "beneficiary_psn_no",
                    "amount", "detail", "source_file", "source_row", "evidence")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS report_dates (
    business_date TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, content_sha256 TEXT NOT NULL,
    status TEXT, findings INTEGER NOT NULL, ingested_at TEXT NOT NULL, problem TEXT,
    status_why TEXT, status_reasons TEXT);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, key_kind TEXT NOT NULL, rule_code TEXT NOT NULL,
    province TEXT NOT NULL, subject TEXT NOT NULL, created_at TEXT NOT NULL);
{SIGHTINGS};
{SIGHTINGS_INDEX};
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL REFERENCES cases(case_id),
    at TEXT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL,
    before TEXT, after TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_case ON events (case_id, event_id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('auditor', 'supervisor')),
    province TEXT, password TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logins (
    login_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, at TEXT NOT NULL,
    ok INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS logins_name ON logins (name, login_id);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES users(name), csrf TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT);
"""

# Nothing that records what people did may be rewritten or removed.
APPEND_ONLY = ("events", "cases", "logins")
TRIGGERS = "".join(f"""
CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} are append-only: nothing is updated in place'); END;
CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} are append-only: nothing is deleted'); END;
""" for t in APPEND_ONLY)

GENESIS_HASH = "0" * 64


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the database in WAL mode with its schema and triggers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA busy_timeout=30000")
    _migrate_sightings(con)
    con.executescript(SCHEMA + TRIGGERS)
    _migrate_report_dates(con)
    return con


def _migrate_report_dates(con: sqlite3.Connection) -> None:
    """report_dates of an earlier workbench lack status_why (why a date is STALE or
    PARTIAL, from its summary.json) or status_reasons (those reasons by province, so that
    a province-scoped user reads only their own): add them and have every date read again."""
    def missing() -> list[str]:
        have = [r[1] for r in con.execute("PRAGMA table_info(report_dates)")]
        return [c for c in ("status_why", "status_reasons") if c not in have]
    if not missing():
        return
    with transaction(con):   # checked again under the write lock: another process may have
        for column in missing():   # migrated in between
            con.execute(f"ALTER TABLE report_dates ADD COLUMN {column} TEXT")
        con.execute("UPDATE report_dates SET fingerprint = '', content_sha256 = ''")


def _migrate_sightings(con: sqlite3.Connection) -> None:
    """A database of an earlier workbench keyed sightings by (business_date, exception_id),
    so two findings sharing an id kept one sighting. Rebuild the table keyed by the
    finding's position (the kept rows numbered in exception_id order) and have every
    date read again at the next ingest, which restores the lost findings (a date that
    can no longer be read keeps its rows, as for any problem)."""
    cols = [r[1] for r in con.execute("PRAGMA table_info(sightings)")]
    if not cols or "finding_no" in cols:
        return
    with transaction(con):
        if "finding_no" in [r[1] for r in con.execute("PRAGMA table_info(sightings)")]:
            return   # another process migrated it in between
        con.execute("DROP INDEX IF EXISTS sightings_case")
        con.execute("ALTER TABLE sightings RENAME TO sightings_v1")
        con.execute(SIGHTINGS)
        con.execute(SIGHTINGS_INDEX)
        cols = ", ".join(SIGHTING_COLUMNS)
        con.execute(f"INSERT INTO sightings ({cols}, finding_no) SELECT {cols}, row_number() OVER "
                    "(PARTITION BY business_date ORDER BY exception_id) - 1 FROM sightings_v1")
        con.execute("DROP TABLE sightings_v1")
        con.execute("UPDATE report_dates SET fingerprint = '', content_sha256 = ''")


class transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time, all or nothing."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, exc, tb):
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _event_hash(prev: str, case_id: str, at: str, actor: str, kind: str,
                before: str | None, after: str | None) -> str:
    body = json.dumps([prev, case_id, at, actor, kind, before, after], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append_event(con: sqlite3.Connection, case_id: str, actor: str, kind: str,
                 before: dict | None, after: dict | None, at: str | None = None) -> int:
    """Append one event (inside the caller's transaction); returns its event_id."""
    at = at or now_utc()
    b = None if before is None else json.dumps(before, ensure_ascii=False, sort_keys=True)
    a = None if after is None else json.dumps(after, ensure_ascii=False, sort_keys=True)
    row = con.execute("SELECT hash FROM events ORDER BY event_id DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS_HASH
    h = _event_hash(prev, case_id, at, actor, kind, b, a)
    cur = con.execute("INSERT INTO events (case_id, at, actor, kind, before, after, prev_hash, hash) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (case_id, at, actor, kind, b, a, prev, h))
    return int(cur.lastrowid)


def verify_events(con: sqlite3.Connection) -> list[int]:
    """event_ids whose hash does not follow from their content and the previous event's hash."""
    bad, prev = [], GENESIS_HASH
    for r in con.execute("SELECT * FROM events ORDER BY event_id"):
        if r["prev_hash"] != prev or r["hash"] != _event_hash(
                prev, r["case_id"], r["at"], r["actor"], r["kind"], r["before"], r["after"]):
            bad.append(int(r["event_id"]))
        prev = r["hash"]
    return bad


def meta(con: sqlite3.Connection, key: str, make) -> str:
    """The value of `key`, created once with make() (e.g. the session signing secret)."""
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row:
        return row[0]
    con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, make()))
    return con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
