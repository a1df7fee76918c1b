"""`recon audit`: serve the workbench; `recon audit user add`: add a user.

Kept light: argparse only at import time; the web stack is imported when serving.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from contracts.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--port", default=None,
                   help="TCP port on 127.0.0.1, a whole number (RECON_AUDIT_PORT, default 8765)")
    p.add_argument("--out", default=env("RECON_OUT", "data/reports"),
                   help="the published reports folder, read only (RECON_OUT, default data/reports)")
    p.add_argument("--db", default=None,
                   help="the workbench's SQLite database file (RECON_AUDIT_DB, default "
                        "<out>/../<out name>-workbench.sqlite, e.g. data/reports-workbench.sqlite)")
    sub = p.add_subparsers(dest="audit_command", metavar="user")
    u = sub.add_parser("user", help="manage workbench users: `recon audit user add NAME --role ROLE`")
    usub = u.add_subparsers(dest="user_command", metavar="add")
    usub.required = True
    a = usub.add_parser("add", help="add a user (the password is asked twice, or read from stdin)")
    a.add_argument("name", help="user name: 1-64 letters, digits, '_', '.', '-' or Chinese characters")
    a.add_argument("--role", required=True, choices=("auditor", "supervisor"),
                   help="auditor, or supervisor (reopens decided cases, decides above the limit "
                        "RECON_AUDIT_SUPERVISOR_LIMIT, default 5000.00 yuan); required")
    a.add_argument("--province", default=None,
                   help="province code PP (e.g. 44): the user sees and acts on that province's "
                        "cases only (default: all provinces)")
    a.add_argument("--out", default=argparse.SUPPRESS,
                   help="as `recon audit --out` (RECON_OUT, default data/reports)")
    a.add_argument("--db", default=argparse.SUPPRESS,
                   help="as `recon audit --db` (RECON_AUDIT_DB, default beside <out>)")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input instead of asking "
                        "(default: ask twice on the terminal)")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("Password 密码: ")
        again = getpass.getpass("Again 再次输入: ")
    except EOFError:
        raise InputError("no password was given (use --password-stdin to pipe one)") from None
    if again != first:
        raise InputError("the two passwords differ")
    return first


def open_db(st):
    """The workbench's database, or one sentence naming the file (exit 2) when it cannot be
    opened as one (a CSV file, a folder, a place that cannot be written)."""
    import sqlite3

    from workbench.store import connect
    try:
        return connect(st.db)
    except (sqlite3.DatabaseError, OSError) as e:
        raise InputError(f"the workbench database {st.db} cannot be opened as a SQLite database "
                         f"({str(e).rstrip('.') or type(e).__name__}); point --db (RECON_AUDIT_DB) "
                         "at a SQLite file or a new file name") from None


def run(a) -> int:
    from workbench import settings as S
    st = S.load(out=a.out, db=a.db, port=a.port)
    if getattr(a, "audit_command", None) == "user":
        from workbench import auth
        con = open_db(st)
        try:
            auth.add_user(con, a.name, a.role, a.province, _password(a.password_stdin))
        finally:
            con.close()
        scope = f"province {a.province}" if a.province else "all provinces"
        print(f"Added {a.role} {a.name} ({scope}) to {st.db}.")
        return 0
    if not st.out.is_dir():
        raise InputError(f"the reports folder {st.out} does not exist; point --out (RECON_OUT) at "
                         "the folder the runs publish to")
    return serve(st)


def serve(st) -> int:
    import socket

    import uvicorn

    from workbench.app import create_app
    from workbench.settings import HOST
    con = open_db(st)            # a database that cannot be opened: its own sentence first
    with socket.socket() as s:   # one sentence instead of uvicorn's traceback
        try:
            s.bind((HOST, st.port))
        except OSError:
            con.close()
            raise InputError(f"port {st.port} on {HOST} is in use; choose another with --port") from None
    app = create_app(st, con)
    print(f"Auditors' workbench on http://{HOST}:{st.port}/ reading {st.out}, cases in {st.db}; "
          "Ctrl-C stops.", flush=True)
    uvicorn.run(app, host=HOST, port=st.port, log_level="warning")
    return 0
