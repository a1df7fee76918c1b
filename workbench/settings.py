"""Settings of the workbench: command-line options, else RECON_AUDIT_* variables, else defaults.

| setting | variable | default |
|---|---|---|
| port | RECON_AUDIT_PORT | 8765 |
| reports folder | RECON_OUT | data/reports |
| database | RECON_AUDIT_DB | <out>/../<out folder name>-workbench.sqlite |
| supervisor limit (yuan) | RECON_AUDIT_SUPERVISOR_LIMIT | 5000.00: a decision on a case whose amount is above it needs a supervisor |
| failed logins before lockout | RECON_AUDIT_MAX_FAILED_LOGINS | 5 |
| lockout (minutes) | RECON_AUDIT_LOCKOUT_MINUTES | 15 |
| session lifetime (hours) | RECON_AUDIT_SESSION_HOURS | 8 |

The database is never inside <out> nor a folder (check_db_place); a file that is not a
SQLite database is refused when it is opened (cli.open_db). The server listens on
127.0.0.1 only (outputs.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from contracts.errors import InputError

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_SUPERVISOR_LIMIT = Decimal("5000.00")
DEFAULT_MAX_FAILED_LOGINS = 5
DEFAULT_LOCKOUT_MINUTES = 15
DEFAULT_SESSION_HOURS = 8


@dataclass(frozen=True)
class Settings:
    out: Path
    db: Path
    port: int = DEFAULT_PORT
    supervisor_limit: Decimal = DEFAULT_SUPERVISOR_LIMIT
    max_failed_logins: int = DEFAULT_MAX_FAILED_LOGINS
    lockout_minutes: int = DEFAULT_LOCKOUT_MINUTES
    session_hours: int = DEFAULT_SESSION_HOURS


def default_db(out: Path) -> Path:
    """Beside <out>, never inside it (the runs own <out>): data/reports -> data/reports-workbench.sqlite."""
    out = Path(out)
    name = out.resolve().name or "reports"
    return out.resolve().parent / f"{name}-workbench.sqlite"


def check_db_place(out: Path, db: Path) -> None:
    """The database is a file beside <out>, never inside it (the runs own <out>) and never
    a folder: one sentence naming the file otherwise (exit 2)."""
    o, d = Path(out).resolve(), Path(db).resolve()
    if d == o or d.is_relative_to(o):
        raise InputError(f"the workbench database {db} is inside the reports folder {out}, which "
                         "belongs to the runs; put it beside it (--db, RECON_AUDIT_DB)")
    if d.is_dir():
        raise InputError(f"the workbench database {db} is a folder, not a file; point --db "
                         "(RECON_AUDIT_DB) at a SQLite file")


def _int(name: str, value, low: int) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise InputError(f"{name} must be a whole number, not {value!r}") from None
    if n < low:
        raise InputError(f"{name} must be at least {low}, not {n}")
    return n


def _money(name: str, value) -> Decimal:
    try:
        d = Decimal(str(value)).quantize(Decimal("0.01"))
        if not d.is_finite():   # NaN would pass quantize and then fail every comparison
            raise ValueError
    except (InvalidOperation, ValueError):
        raise InputError(f"{name} must be an amount in yuan such as 5000.00, not {value!r}") from None
    if d < 0:
        raise InputError(f"{name} must not be negative")
    return d


def load(out=None, db=None, port=None, env=None) -> Settings:
    """Options given win over RECON_AUDIT_* variables, which win over the defaults."""
    env = os.environ if env is None else env
    out = Path(out or env.get("RECON_OUT") or "data/reports")
    db = Path(db or env.get("RECON_AUDIT_DB") or default_db(out))
    port = _int("RECON_AUDIT_PORT (--port)", port if port is not None
                else env.get("RECON_AUDIT_PORT", DEFAULT_PORT), 1)
    if port > 65535:
        raise InputError(f"the port must be at most 65535, not {port}")
    check_db_place(out, db)
    return Settings(
        out=out, db=db, port=port,
        supervisor_limit=_money("RECON_AUDIT_SUPERVISOR_LIMIT",
                                env.get("RECON_AUDIT_SUPERVISOR_LIMIT", DEFAULT_SUPERVISOR_LIMIT)),
        max_failed_logins=_int("RECON_AUDIT_MAX_FAILED_LOGINS",
                               env.get("RECON_AUDIT_MAX_FAILED_LOGINS", DEFAULT_MAX_FAILED_LOGINS), 1),
        lockout_minutes=_int("RECON_AUDIT_LOCKOUT_MINUTES",
                             env.get("RECON_AUDIT_LOCKOUT_MINUTES", DEFAULT_LOCKOUT_MINUTES), 1),
        session_hours=_int("RECON_AUDIT_SESSION_HOURS",
                           env.get("RECON_AUDIT_SESSION_HOURS", DEFAULT_SESSION_HOURS), 1),
    )
