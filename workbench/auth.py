"""Users, passwords, logins, sessions and CSRF tokens of the workbench.

Passwords: hashlib.scrypt (n=2**14, r=8, p=1, 16-byte random salt), stored as
`scrypt$n$r$p$salt$hash`, compared in constant time.

Lockout: after max_failed_logins failed attempts in a row for a name (known or
not, so that probing tells nothing), that name is refused for lockout_minutes
after the last failure, even with the right password. Every attempt is a row of
the append-only logins table.

Sessions: a random id (secrets.token_urlsafe(32)) sent as a cookie signed with
HMAC-SHA256 under the workbench's own secret; the server keeps only its sha256,
with the user, a random CSRF token and the expiry. Logout ends it server-side.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
from datetime import datetime, timedelta, timezone

from contracts.codes import PROVINCE_NAMES
from contracts.errors import InputError
from workbench.cases import User
from workbench.store import meta, now_utc, transaction

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
ROLES = ("auditor", "supervisor")
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{1,64}$")
MIN_PASSWORD = 8


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, h = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(bytes.fromhex(h)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), h)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def add_user(con: sqlite3.Connection, name: str, role: str, province: str | None, password: str) -> None:
    """`recon audit user add`: a new user (a name is never reused)."""
    if not NAME_RE.match(name or ""):
        raise InputError("a user name is 1 to 64 letters, digits, '_', '.', '-' or Chinese characters")
    if role not in ROLES:
        raise InputError(f"the role must be auditor or supervisor, not {role!r}")
    if province is not None and province not in PROVINCE_NAMES:
        raise InputError(f"{province!r} is not a province code (11 .. 65)")
    if len(password or "") < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    with transaction(con):
        if con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise InputError(f"the user {name} already exists")
        con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                    (name, role, province, hash_password(password), now_utc()))


def user(con: sqlite3.Connection, name: str) -> User | None:
    r = con.execute("SELECT name, role, province FROM users WHERE name = ?", (name,)).fetchone()
    return User(r["name"], r["role"], r["province"]) if r else None


def user_names(con: sqlite3.Connection) -> list[dict]:
    return [dict(r) for r in con.execute("SELECT name, role, province FROM users ORDER BY name")]


def locked_until(con: sqlite3.Connection, name: str, max_failed: int, minutes: int) -> datetime | None:
    """When the name's lockout ends (None when it is not locked out)."""
    rows = con.execute("SELECT ok, at FROM logins WHERE name = ? ORDER BY login_id DESC LIMIT ?",
                       (name, max_failed)).fetchall()
    if len(rows) < max_failed or any(r["ok"] for r in rows):
        return None
    until = datetime.fromisoformat(rows[0]["at"]) + timedelta(minutes=minutes)
    return until if until > datetime.now(timezone.utc) else None


def login(con: sqlite3.Connection, name: str, password: str, max_failed: int, minutes: int
          ) -> tuple[User | None, str]:
    """(user, '') on success; (None, the bilingual reason) otherwise. Every attempt is recorded."""
    name = (name or "")[:64]
    until = locked_until(con, name, max_failed, minutes)
    if until is not None:
        with transaction(con):
            con.execute("INSERT INTO logins (name, at, ok) VALUES (?, ?, 0)", (name, now_utc()))
        return None, (f"登录失败次数过多,账户已锁定至 {until.isoformat(timespec='minutes')} "
                      f"Too many failed logins: locked until {until.isoformat(timespec='minutes')}.")
    row = con.execute("SELECT password FROM users WHERE name = ?", (name,)).fetchone()
    ok = bool(row) and check_password(password or "", row["password"])
    if not row:
        check_password(password or "", _dummy_hash())  # the same work: no timing hint
    with transaction(con):
        con.execute("INSERT INTO logins (name, at, ok) VALUES (?, ?, ?)", (name, now_utc(), int(ok)))
    if not ok:
        return None, "用户名或密码错误 Wrong name or password."
    return user(con, name), ""


# --------------------------------------------------------------------------- sessions

def _secret(con: sqlite3.Connection) -> bytes:
    return bytes.fromhex(meta(con, "session_secret", lambda: secrets.token_hex(32)))


def _sign(con: sqlite3.Connection, sid: str) -> str:
    return hmac.new(_secret(con), sid.encode("ascii"), hashlib.sha256).hexdigest()


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("ascii")).hexdigest()


def new_session(con: sqlite3.Connection, name: str, hours: int) -> str:
    """A new session of `name`; returns the cookie value (id.signature)."""
    sid = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    with transaction(con):
        con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, NULL)",
                    (_sid_hash(sid), name, secrets.token_urlsafe(32), now.isoformat(timespec="seconds"),
                     (now + timedelta(hours=hours)).isoformat(timespec="seconds")))
    return f"{sid}.{_sign(con, sid)}"


def session(con: sqlite3.Connection, cookie: str | None) -> tuple[User, str, str] | None:
    """(user, csrf token, sid hash) of a valid, unexpired, not ended session cookie; else None."""
    if not cookie or cookie.count(".") != 1:
        return None
    sid, sig = cookie.split(".")
    try:
        sid.encode("ascii")
    except UnicodeEncodeError:
        return None
    if not _same(_sign(con, sid), sig):   # a non-ASCII signature is simply wrong
        return None
    r = con.execute("SELECT name, csrf, expires_at, ended_at FROM sessions WHERE sid_hash = ?",
                    (_sid_hash(sid),)).fetchone()
    if r is None or r["ended_at"] or datetime.fromisoformat(r["expires_at"]) <= datetime.now(timezone.utc):
        return None
    u = user(con, r["name"])
    return (u, r["csrf"], _sid_hash(sid)) if u else None


def end_session(con: sqlite3.Connection, sid_hash: str) -> None:
    with transaction(con):
        con.execute("UPDATE sessions SET ended_at = ? WHERE sid_hash = ?", (now_utc(), sid_hash))


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two texts, whatever characters they hold (compare_digest
    refuses str with non-ASCII characters: compare their UTF-8 bytes)."""
    return hmac.compare_digest(str(a).encode("utf-8", "surrogatepass"),
                               str(b).encode("utf-8", "surrogatepass"))


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """The token given is the expected one (an absent or non-ASCII token is simply wrong)."""
    return bool(expected) and bool(given) and _same(expected, given)
