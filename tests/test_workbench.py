"""The auditors' workbench (`recon audit`, issue 14), without a browser.

The reports it reads come from a real pipeline run: `recon generate` writes a
small inbox (300 persons, 3 days) and the plain run reconciles it. One
province's delivered closing balance of one (beneficiary, sharer) pair is
raised by 25.00 on each of the three dates (manifest sha256 updated, as a
province would deliver it), so that the run itself publishes a QUOTA_BALANCE_BREAK
(B01) of the same pair on three dates: the recurring case.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

START = date(2026, 11, 20)
DATES = [START + timedelta(days=i) for i in range(3)]
BUMP = Decimal("25.00")
PASSWORD = "correct-horse-1"


@dataclass
class Published:
    out: Path
    province: str           # the beneficiary's province of the tampered pair
    pair: str               # "<beneficiary_psn_no>:<sharer_psn_no>"
    other_province: str     # a province with cases, not the pair's


def _tamper_pairs(inbox: Path) -> tuple[str, str, str]:
    """A QUOTA pair delivered on every date by a utf-8 province: raise its closing balance."""
    seen: dict[tuple[str, str, str], int] = {}
    for d in DATES:
        for folder in sorted((inbox / d.isoformat()).iterdir()):
            m, b = folder / "manifest.json", folder / "balances.csv"
            if not (m.is_file() and b.is_file()):
                continue
            if json.loads(m.read_text(encoding="utf-8")).get("encoding") != "utf-8" \
                    or b.read_bytes().startswith(b"\xef\xbb\xbf"):
                continue
            for r in csv.DictReader(io.StringIO(b.read_text(encoding="utf-8"))):
                if r["account"] == "QUOTA":
                    k = (folder.name, r["psn_no"], r["sharer_psn_no"])
                    seen[k] = seen.get(k, 0) + 1
    prov, ben, sharer = sorted(k for k, n in seen.items() if n == len(DATES))[0]
    for d in DATES:
        folder = inbox / d.isoformat() / prov
        b = folder / "balances.csv"
        rows = list(csv.reader(io.StringIO(b.read_text(encoding="utf-8"))))
        head = rows[0]
        for r in rows[1:]:
            if r[head.index("psn_no")] == ben and r[head.index("sharer_psn_no")] == sharer \
                    and r[head.index("account")] == "QUOTA":
                i = head.index("closing_balance")
                r[i] = str(Decimal(r[i]) + BUMP)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        b.write_bytes(buf.getvalue().encode("utf-8"))
        m = folder / "manifest.json"
        man = json.loads(m.read_text(encoding="utf-8"))
        man["files"]["balances.csv"]["sha256"] = hashlib.sha256(b.read_bytes()).hexdigest()
        m.write_text(json.dumps(man, indent=2), encoding="utf-8")
    return prov, ben, sharer


def build_three_dates(base: Path) -> Published:
    """`recon generate` + the plain run of three dates, with the recurring balance break."""
    from flows.cli import main
    inbox, out, wh = base / "inbox", base / "reports", base / "warehouse.duckdb"
    assert main(["generate", "--out", str(inbox), "--start", START.isoformat(), "--days", "3",
                 "--persons", "300", "--seed", "7"]) == 0
    prov, ben, sharer = _tamper_pairs(inbox)
    assert main(["backfill", "--start", DATES[0].isoformat(), "--end", DATES[-1].isoformat(),
                 "--inbox", str(inbox), "--out", str(out), "--warehouse", str(wh),
                 "--orchestrator", "plain"]) == 0
    import polars as pl
    found = pl.concat([pl.read_parquet(out / d.isoformat() / "exceptions.parquet") for d in DATES])
    pair = f"{ben}:{sharer}"
    b01 = found.filter((pl.col("rule_code") == "B01") & (pl.col("record_id") == pair))
    assert b01.height == 3, "the tampered pair must be a B01 finding on each of the three dates"
    others = sorted(set(found.filter(pl.col("province") != prov)["province"].to_list()))
    return Published(out, prov, pair, others[0])


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    return build_three_dates(tmp_path_factory.mktemp("workbench-run"))


# --------------------------------------------------------------------------- helpers

def make_app(published: Published, tmp: Path, users=(), limit="5000.00", out: Path | None = None):
    from workbench import auth, settings as S
    from workbench.app import create_app
    from workbench.store import connect
    st = S.load(out=out or published.out, db=tmp / "wb.sqlite",
                env={"RECON_AUDIT_SUPERVISOR_LIMIT": limit, "RECON_AUDIT_MAX_FAILED_LOGINS": "3"})
    con = connect(st.db)
    for name, role, prov in users:
        auth.add_user(con, name, role, prov, PASSWORD)
    return create_app(st, con), con


def client(app, name: str, password: str = PASSWORD):
    """A TestClient logged in as `name`, and its CSRF token."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    c = TestClient(app)
    r = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = c.post("/login", data={"csrf": token, "name": name, "password": password, "next": "/cases"})
    if r.status_code != 200 or "/cases" not in str(r.url):
        return c, None
    return c, re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


def case_of(c, rule: str, province: str | None = None, subject: str | None = None) -> dict:
    rows = c.get("/api/cases", params={"rule": rule, **({"province": province} if province else {})}).json()["cases"]
    rows = [r for r in rows if subject is None or r["subject"] == subject]
    assert rows, (rule, province, subject)
    return rows[0]


ALL = [("sup", "supervisor", None), ("aud", "auditor", None)]


# --------------------------------------------------------------------------- keying

def test_balance_break_of_the_same_pair_on_three_dates_is_one_case(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    c, _ = client(app, "aud")
    case = case_of(c, "B01", published.province, published.pair)
    assert case["n_dates"] == 3
    assert (case["first_seen"], case["last_seen"]) == (DATES[0].isoformat(), DATES[-1].isoformat())
    detail = c.get(f"/api/cases/{case['case_id']}").json()
    assert [s["business_date"] for s in detail["sightings"]] == [d.isoformat() for d in DATES]
    # three exception ids (the date is part of them), one case
    assert len({s["exception_id"] for s in detail["sightings"]}) == 3
    # one record that persists: the case amount is its latest amount, not the sum of three
    assert Decimal(case["amount"]) == Decimal(detail["sightings"][-1]["amount"])
    assert not case["no_longer_seen"]


def test_resharing_by_the_same_sharer_on_later_dates_is_one_case():
    from workbench.keys import case_key
    a = case_key("S11", "44", "TP20261120000001", "44000100100000000056", "")
    b = case_key("S11", "44", "TP20261122000009", "44000100100000000056", "")
    other = case_key("S11", "44", "TP20261122000010", "44000100100000000057", "")
    assert a == b and a != other
    assert case_key("S12", "44", "TP1", "44000100100000000056", "")[0] == "sharer"


def test_a_cycle_closed_again_by_another_member_is_the_same_case():
    from workbench.keys import case_key
    d1 = ("Transfer TP1 closes a cycle of 3 SUCCESS transfers within 2026-10-22..2026-11-20 (at most 6): "
          "23000100100000000007→31000100100000000154 (TP0 ...) → 51000100100000000084 (TP1 ...) → "
          "23000100100000000007 (TP2 ...).")
    d2 = ("Transfer TP9 closes a cycle of 3 SUCCESS transfers within 2026-10-23..2026-11-21 (at most 6): "
          "31000100100000000154→51000100100000000084 (TP7 ...) → 23000100100000000007 (TP8 ...) → "
          "31000100100000000154 (TP9 ...).")
    reversed_ring = ("... 23000100100000000007→51000100100000000084 (TP7) → 31000100100000000154 (TP8) → "
                     "23000100100000000007 (TP9).")
    k1, k2 = case_key("S13", "51", "TP1", "51", d1), case_key("S13", "51", "TP9", "31", d2)
    assert k1 == k2 and k1[0] == "cycle"
    assert case_key("S13", "51", "TP9", "23", reversed_ring) != k1   # the other direction is another ring


def test_other_findings_are_keyed_by_rule_province_and_record():
    from workbench.keys import case_key
    assert case_key("F02", "54", "settlements.csv", None, "x") == case_key("F02", "54", "settlements.csv", None, "y")
    assert case_key("F02", "54", "settlements.csv", None, "") != case_key("F02", "63", "settlements.csv", None, "")
    assert case_key("S08", "11", "TP1", "s", "") != case_key("S09", "11", "TP1", "s", "")


# --------------------------------------------------------------------------- ingest

def _copy_out(published: Published, tmp: Path) -> Path:
    out = tmp / "reports"
    shutil.copytree(published.out, out, ignore=shutil.ignore_patterns(".*"))
    return out


def test_reingesting_a_rerun_date_replaces_its_sightings_never_duplicates(published, tmp_path):
    import polars as pl
    from workbench.ingest import ingest
    out = _copy_out(published, tmp_path)
    app, con = make_app(published, tmp_path, ALL, out=out)
    n_before = con.execute("SELECT count(*) FROM sightings").fetchone()[0]
    published_rows = sum(pl.read_parquet(out / d.isoformat() / "exceptions.parquet").height for d in DATES)
    assert n_before == published_rows
    assert ingest(con, out).ingested == []                    # nothing changed: nothing read again
    # a re-run of the last date publishes one finding fewer (the balance break was corrected)
    last = out / DATES[-1].isoformat() / "exceptions.parquet"
    frame = pl.read_parquet(last)
    frame.filter(~((pl.col("rule_code") == "B01") & (pl.col("record_id") == published.pair))).write_parquet(last)
    res = ingest(con, out)
    assert res.ingested == [DATES[-1].isoformat()]
    assert con.execute("SELECT count(*) FROM sightings").fetchone()[0] == published_rows - 1
    dup = con.execute("SELECT count(*) FROM (SELECT business_date, exception_id FROM sightings "
                      "GROUP BY 1, 2 HAVING count(*) > 1)").fetchone()[0]
    assert dup == 0
    c, _ = client(app, "aud")
    case = case_of(c, "B01", published.province, published.pair)
    # the finding stopped appearing: the case stays open, marked no longer seen
    assert case["n_dates"] == 2 and case["last_seen"] == DATES[1].isoformat()
    assert case["status"] == "open" and case["no_longer_seen"]
    listed = c.get("/api/cases", params={"status": "no_longer_seen"}).json()["cases"]
    assert case["case_id"] in [r["case_id"] for r in listed]


def test_a_hostile_reports_folder_gives_a_problem_not_a_crash(published, tmp_path):
    from workbench.ingest import ingest
    from workbench.store import connect
    out = _copy_out(published, tmp_path)
    bad = out / "2026-11-23"
    bad.mkdir()
    (bad / "exceptions.parquet").write_bytes(b"PAR1 not really")
    (out / "2026-11-24").symlink_to(out / DATES[0].isoformat())      # a symlinked date is not read
    (out / "not-a-date").mkdir()
    con = connect(tmp_path / "wb.sqlite")
    res = ingest(con, out)
    assert sorted(res.ingested) == [d.isoformat() for d in DATES]
    assert list(res.problems) == ["2026-11-23"] and "cannot be read" in res.problems["2026-11-23"]
    assert con.execute("SELECT count(*) FROM sightings WHERE business_date = '2026-11-24'").fetchone()[0] == 0


def test_a_published_amount_that_is_not_a_finite_number_is_a_problem_of_its_date():
    from workbench.ingest import _money
    assert _money("12.5") == "12.50" and _money(None) is None
    for bad in ("NaN", "sNaN", "Infinity", "1e400", "twelve"):
        with pytest.raises(ValueError, match="is not a number"):
            _money(bad)


# --------------------------------------------------------------------------- events

def test_events_are_append_only(published, tmp_path):
    from workbench.store import verify_events
    app, con = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    case = case_of(c, "B01", published.province, published.pair)
    assert c.post(f"/api/cases/{case['case_id']}/comment", json={"comment": "first look"},
                  headers={"X-CSRF-Token": token}).status_code == 200
    for sql in ("UPDATE events SET actor = 'mallory'", "DELETE FROM events",
                "UPDATE cases SET province = '11'", "DELETE FROM logins"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    assert verify_events(con) == []
    # even past the triggers (someone editing the file), the hash chain shows the change
    con.execute("DROP TRIGGER events_no_update")
    eid = con.execute("SELECT max(event_id) FROM events").fetchone()[0]
    con.execute("UPDATE events SET after = '{\"comment\": \"nothing to see\"}' WHERE event_id = ?", (eid,))
    assert verify_events(con) == [eid]


def test_every_change_is_an_event_with_who_when_before_after(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    h = {"X-CSRF-Token": token}
    assert c.post(f"/api/cases/{cid}/assign", json={"assignee": "aud"}, headers=h).status_code == 200
    assert c.post(f"/api/cases/{cid}/comment", json={"comment": "ID 110101199003077777 seen"},
                  headers=h).status_code == 200
    r = c.post(f"/api/cases/{cid}/decide", json={"decision": "recovered", "amount_recovered": "25.00"}, headers=h)
    assert r.status_code == 200 and r.json()["case"]["status"] == "decided"
    events = c.get(f"/api/cases/{cid}").json()["events"]
    assert [e["kind"] for e in events] == ["created", "assigned", "commented", "decided"]
    assign, comment, decide = events[1:]
    assert assign["actor"] == "aud" and assign["before"] == {"assignee": None} and assign["after"] == {"assignee": "aud"}
    assert "110101********7777" in comment["after"]["comment"]       # masked before it is stored
    assert "110101199003077777" not in json.dumps(events)
    assert decide["before"]["status"] == "open" and decide["after"]["amount_recovered"] == "25.00"
    trail = c.get(f"/cases/{cid}/events.csv").text.splitlines()
    assert trail[0].startswith("event_id,case_id,at,actor,kind,before,after")
    assert len(trail) == 5


# --------------------------------------------------------------------------- roles

def test_only_a_supervisor_reopens_a_decided_case(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    a, at = client(app, "aud")
    cid = case_of(a, "B01", published.province, published.pair)["case_id"]
    assert a.post(f"/api/cases/{cid}/decide", json={"decision": "explained", "reason": "late file"},
                  headers={"X-CSRF-Token": at}).status_code == 200
    assert a.post(f"/api/cases/{cid}/decide", json={"decision": "false_positive"},
                  headers={"X-CSRF-Token": at}).status_code == 409
    r = a.post(f"/api/cases/{cid}/reopen", json={}, headers={"X-CSRF-Token": at})
    assert r.status_code == 403 and "supervisor" in r.json()["error"]
    s, st = client(app, "sup")
    r = s.post(f"/api/cases/{cid}/reopen", json={"reason": "new evidence"}, headers={"X-CSRF-Token": st})
    assert r.status_code == 200 and r.json()["case"]["status"] == "open"


def test_a_decision_above_the_limit_needs_a_supervisor(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL, limit="10.00")
    a, at = client(app, "aud")
    case = case_of(a, "B01", published.province, published.pair)
    assert abs(Decimal(case["amount"])) > Decimal("10.00")
    r = a.post(f"/api/cases/{case['case_id']}/decide", json={"decision": "confirmed_violation"},
               headers={"X-CSRF-Token": at})
    assert r.status_code == 403 and "10.00" in r.json()["error"]
    s, st = client(app, "sup")
    assert s.post(f"/api/cases/{case['case_id']}/decide", json={"decision": "confirmed_violation"},
                  headers={"X-CSRF-Token": st}).status_code == 200


def test_recovered_needs_an_amount_in_yuan(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    a, at = client(app, "aud")
    cid = case_of(a, "B01", published.province, published.pair)["case_id"]
    for bad in ("", "abc", "-5", "1.234", "NaN", "1e400", "sNaN"):
        r = a.post(f"/api/cases/{cid}/decide", json={"decision": "recovered", "amount_recovered": bad},
                   headers={"X-CSRF-Token": at})
        assert r.status_code == 400, bad


# --------------------------------------------------------------------------- scope

def test_provincial_auditor_neither_sees_nor_changes_another_provinces_case(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL + [("prov", "auditor", published.other_province)])
    a, _ = client(app, "aud")
    cid = case_of(a, "B01", published.province, published.pair)["case_id"]
    p, pt = client(app, "prov")
    seen = p.get("/api/cases").json()["cases"]
    assert seen and {r["province"] for r in seen} == {published.other_province}
    assert cid not in p.get("/cases").text
    r = p.get(f"/cases/{cid}")
    assert r.status_code == 404 and '<h1 id="error-status">404</h1>' in r.text
    assert p.get(f"/api/cases/{cid}").status_code == 404
    assert p.get(f"/cases/{cid}/events.csv").status_code == 404
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    h = {"X-CSRF-Token": pt}
    for action, body in (("comment", {"comment": "x"}), ("assign", {"assignee": "prov"}),
                         ("decide", {"decision": "false_positive"})):
        assert p.post(f"/api/cases/{cid}/{action}", json=body, headers=h).status_code == 404
    assert p.post(f"/cases/{cid}/act", data={"csrf": pt, "action": "decide",
                                            "decision": "false_positive"}).status_code == 404
    r = p.post("/api/bulk", json={"case_ids": [cid], "action": "comment", "comment": "x"}, headers=h)
    assert r.json()["results"][0]["ok"] is False
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == before
    # and a case of their own province they may work on
    own = seen[0]["case_id"]
    assert p.post(f"/api/cases/{own}/comment", json={"comment": "mine"}, headers=h).status_code == 200


def test_a_case_is_assigned_only_to_someone_who_may_see_it(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL + [("prov", "auditor", published.other_province)])
    s, st = client(app, "sup")
    cid = case_of(s, "B01", published.province, published.pair)["case_id"]
    r = s.post(f"/api/cases/{cid}/assign", json={"assignee": "prov"}, headers={"X-CSRF-Token": st})
    assert r.status_code == 400


# --------------------------------------------------------------------------- login, sessions, CSRF

def test_no_page_without_login(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    c = TestClient(app, follow_redirects=False)
    for path in ("/", "/cases", "/cases/0123456789abcdef", "/export/decided.csv",
                 "/export/decided.xlsx", f"/reports/{DATES[0].isoformat()}/report.html"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert c.get("/api/cases").status_code == 401
    assert c.post("/api/cases/0123456789abcdef/comment", json={"comment": "x"}).status_code == 401
    c.cookies.set("wb_session", "forged.0000")
    assert c.get("/api/cases").status_code == 401


def test_lockout_after_repeated_failed_logins(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)      # RECON_AUDIT_MAX_FAILED_LOGINS=3
    for _ in range(3):
        assert client(app, "aud", "wrong-password")[1] is None
    c, token = client(app, "aud")                       # the right password, but locked out
    assert token is None
    r = c.get("/login")
    t = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = c.post("/login", data={"csrf": t, "name": "aud", "password": PASSWORD})
    assert r.status_code == 401 and "locked" in r.text
    assert client(app, "sup")[1] is not None            # other users are not affected
    ok = con.execute("SELECT ok FROM logins WHERE name = 'aud' ORDER BY login_id").fetchall()
    assert [x[0] for x in ok] == [0, 0, 0, 0, 0]


def test_a_change_without_the_csrf_token_is_refused(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert c.post(f"/cases/{cid}/act", data={"action": "comment", "comment": "x"}).status_code == 403
    assert c.post(f"/cases/{cid}/act", data={"csrf": "guess", "action": "comment",
                                            "comment": "x"}).status_code == 403
    assert c.post(f"/api/cases/{cid}/comment", json={"comment": "x"}).status_code == 403
    assert c.post("/cases/bulk", data={"case_id": cid, "action": "comment", "comment": "x"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == before
    # the login form has its own token
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    assert TestClient(app).post("/login", data={"name": "aud", "password": PASSWORD}).status_code == 403


def test_logout_ends_the_session_on_the_server(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cookie = c.cookies.get("wb_session")
    assert c.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    c.cookies.set("wb_session", cookie)                 # replaying the old cookie
    assert c.get("/api/cases").status_code == 401


def test_passwords_are_stored_hashed_and_users_added_by_the_command(published, tmp_path, monkeypatch):
    from flows.cli import main
    db = tmp_path / "cli.sqlite"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-password\n"))
    assert main(["audit", "--out", str(published.out), "--db", str(db), "user", "add", "li.ming",
                 "--role", "auditor", "--province", published.province, "--password-stdin"]) == 0
    row = sqlite3.connect(db).execute("SELECT role, province, password FROM users").fetchone()
    assert row[:2] == ("auditor", published.province)
    assert row[2].startswith("scrypt$") and "s3cret" not in row[2]
    from workbench.auth import check_password
    assert check_password("s3cret-password", row[2]) and not check_password("s3cret-passwore", row[2])
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-password\n"))
    assert main(["audit", "--out", str(published.out), "--db", str(db), "user", "add", "x",
                 "--role", "boss", "--password-stdin"]) == 2


# --------------------------------------------------------------------------- settings

def test_settings_come_from_options_then_recon_audit_variables_then_defaults(tmp_path):
    from contracts.errors import InputError
    from workbench import settings as S
    st = S.load(out=tmp_path / "reports", env={})
    assert st.port == S.DEFAULT_PORT and st.db == tmp_path / "reports-workbench.sqlite"
    assert st.supervisor_limit == S.DEFAULT_SUPERVISOR_LIMIT
    env = {"RECON_AUDIT_PORT": "9001", "RECON_AUDIT_DB": str(tmp_path / "x.sqlite"),
           "RECON_AUDIT_SUPERVISOR_LIMIT": "100", "RECON_OUT": str(tmp_path / "o")}
    st = S.load(env=env)
    assert (st.port, st.db, st.out, st.supervisor_limit) == (9001, tmp_path / "x.sqlite", tmp_path / "o",
                                                              Decimal("100.00"))
    assert S.load(port="9002", env=env).port == 9002
    for bad in ({"RECON_AUDIT_PORT": "http"}, {"RECON_AUDIT_PORT": "70000"},
                {"RECON_AUDIT_SUPERVISOR_LIMIT": "lots"}, {"RECON_AUDIT_SUPERVISOR_LIMIT": "NaN"},
                {"RECON_AUDIT_SUPERVISOR_LIMIT": "1e400"}, {"RECON_AUDIT_MAX_FAILED_LOGINS": "0"}):
        with pytest.raises(InputError):
            S.load(out=tmp_path, env=bad)


def test_evidence_from_a_hostile_report_is_reduced_to_short_text():
    from workbench.ingest import clean_evidence
    ev = clean_evidence({"tables": [{"zh": "x", "columns": ["a"], "rows": [["<b>" * 1000], "oops"]},
                                    "not a table", {"columns": "no"}],
                         "chain": {"kind": "evil", "nodes": ["1", {"x": 1}], "edges": ["bad", {"from": 1}]},
                         "limits": "nope"})
    assert len(ev["tables"]) == 1 and ev["tables"][0]["rows"] == [[("<b>" * 1000)[:2000]]]
    assert ev["chain"]["kind"] == "forwarding" and ev["chain"]["edges"][0]["from"] == "1"
    assert ev["limits"] == []


# --------------------------------------------------------------------------- lists and exports

def test_lists_my_open_cases_ageing_and_largest_amounts(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    c.post(f"/api/cases/{cid}/assign", json={"assignee": "aud"}, headers={"X-CSRF-Token": token})
    mine = c.get("/api/cases", params={"assignee": "me", "status": "open"}).json()["cases"]
    assert [r["case_id"] for r in mine] == [cid]
    case = mine[0]
    assert case["age"] == (DATES[-1] - DATES[0]).days and case["age_bucket"] == "0-7"
    page = c.get("/").text
    assert 'id="ageing"' in page and 'id="largest"' in page and cid in page
    by_amount = c.get("/api/cases", params={"status": "open", "sort": "amount"}).json()["cases"]
    amounts = [abs(Decimal(r["amount"])) for r in by_amount if r["amount"] is not None]
    assert amounts == sorted(amounts, reverse=True)
    first_day = c.get("/api/cases", params={"date_from": DATES[0].isoformat(),
                                            "date_to": DATES[0].isoformat()}).json()["cases"]
    assert first_day and all(r["first_seen"] == DATES[0].isoformat() for r in first_day)


def test_bulk_action_on_a_filtered_list(published, tmp_path):
    app, con = make_app(published, tmp_path, ALL)
    c, token = client(app, "sup")
    rows = c.get("/api/cases", params={"province": published.province}).json()["cases"]
    r = c.post("/cases/bulk", data={"csrf": token, "action": "assign", "assignee": "aud",
                                   "case_id": [x["case_id"] for x in rows]})
    assert r.status_code == 200
    after = c.get("/api/cases", params={"province": published.province, "assignee": "aud"}).json()["cases"]
    assert len(after) == len(rows)


def test_decided_cases_of_a_period_export_as_xlsx_and_csv(published, tmp_path):
    import openpyxl
    app, _ = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    c.post(f"/api/cases/{cid}/decide", json={"decision": "recovered", "amount_recovered": "1234.5",
                                             "reason": "=HYPERLINK(\"http://x\")"},
           headers={"X-CSRF-Token": token})
    from workbench.exports import SHANGHAI
    from datetime import datetime
    today = datetime.now(SHANGHAI).date().isoformat()
    text = c.get("/export/decided.csv", params={"from": "2000-01-01", "to": "2999-12-31"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["case_id"] for r in rows] == [cid]
    assert rows[0]["amount_recovered"] == "1234.50" and rows[0]["reason"].startswith("'=")
    assert c.get("/export/decided.csv", params={"to": "2000-01-01"}).text.count("\n") == 1
    data = c.get("/export/decided.xlsx", params={"from": "2000-01-01"}).content
    p = tmp_path / "decided.xlsx"
    p.write_bytes(data)
    ws = openpyxl.load_workbook(p).active
    head = [x.value for x in ws[1]]
    assert head[0] == "案件编号 Case ID" and "追回金额(元) Amount recovered" in head
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    rec = ws.cell(2, head.index("追回金额(元) Amount recovered") + 1)
    assert rec.value == 1234.5 and rec.number_format == "#,##0.00"
    reason = ws.cell(2, head.index("说明 Reason") + 1)
    assert reason.data_type == "s" and reason.value.startswith("=") and reason.quotePrefix
    # the event trail of the period, every visible case
    trail = list(csv.DictReader(io.StringIO(c.get("/export/events.csv", params={"from": today}).text)))
    assert [(e["case_id"], e["kind"]) for e in trail if e["actor"] == "aud"] == [(cid, "decided")]


def test_case_page_shows_the_findings_per_date_with_their_report(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    c, _ = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    page = c.get(f"/cases/{cid}").text
    for d in DATES:
        assert f'href="/reports/{d.isoformat()}/report.html#finding=' in page
        r = c.get(f"/reports/{d.isoformat()}/report.html")
        assert r.status_code == 200 and "sandbox" in r.headers["content-security-policy"]
    assert page.count('class="card sighting"') == 3
    assert "balances.csv" in page                      # source file of the finding
    assert c.get("/reports/../../etc/passwd").status_code == 404


def test_case_page_draws_the_chain_or_cycle_of_the_reports_evidence(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    c, _ = client(app, "aud")
    for rule, kind in (("S13", "cycle"), ("S12", "forwarding")):
        cases = c.get("/api/cases", params={"rule": rule}).json()["cases"]
        assert cases, rule
        pages = [c.get(f"/cases/{x['case_id']}").text for x in cases]
        drawn = [p for p in pages if f'class="chain-drawing"' in p and f'aria-label="{kind}"' in p]
        assert drawn, rule                        # the report evidences its top findings per rule
        assert drawn[0].count('class="edge"') >= 2 and drawn[0].count('class="node"') >= 2
        assert "转账记录(双边)" in drawn[0]           # both sides of the transfer


def test_balance_break_case_shows_the_delivered_and_computed_balances(published, tmp_path):
    app, _ = make_app(published, tmp_path, ALL)
    c, _ = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    page = c.get(f"/cases/{cid}").text
    assert "Delivered quota balance" in page and "Computed lots (closing)" in page


def _restore_balance(inbox: Path, d: date, province: str, pair: str) -> None:
    """The province's corrected delivery of date d: the pair's closing balance without the bump."""
    ben, sharer = pair.split(":")
    folder = inbox / d.isoformat() / province
    b = folder / "balances.csv"
    rows = list(csv.reader(io.StringIO(b.read_text(encoding="utf-8"))))
    head = rows[0]
    for r in rows[1:]:
        if r[head.index("psn_no")] == ben and r[head.index("sharer_psn_no")] == sharer:
            i = head.index("closing_balance")
            r[i] = str(Decimal(r[i]) - BUMP)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    b.write_bytes(buf.getvalue().encode("utf-8"))
    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    man["files"]["balances.csv"]["sha256"] = hashlib.sha256(b.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(man, indent=2), encoding="utf-8")


def test_a_real_rerun_of_a_corrected_date_replaces_its_sightings(published, tmp_path):
    import polars as pl
    from flows.cli import main
    from workbench.ingest import ingest
    shutil.copytree(published.out.parent, tmp_path / "run")   # inbox, warehouse, reports: our own
    run = Published(tmp_path / "run" / published.out.name, published.province, published.pair,
                    published.other_province)
    app, con = make_app(run, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", run.province, run.pair)["case_id"]
    c.post(f"/api/cases/{cid}/assign", json={"assignee": "aud"}, headers={"X-CSRF-Token": token})
    # the province corrects its last delivery; the operator re-runs that date
    inbox, last = run.out.parent / "inbox", DATES[-1]
    _restore_balance(inbox, last, run.province, run.pair)
    assert main(["run", "--date", last.isoformat(), "--inbox", str(inbox), "--out", str(run.out),
                 "--warehouse", str(run.out.parent / "warehouse.duckdb"), "--orchestrator", "plain"]) == 0
    assert ingest(con, run.out).ingested == [last.isoformat()]
    published_rows = sum(pl.read_parquet(run.out / d.isoformat() / "exceptions.parquet").height for d in DATES)
    assert con.execute("SELECT count(*) FROM sightings").fetchone()[0] == published_rows
    case = c.get(f"/api/cases/{cid}").json()
    assert [s["business_date"] for s in case["sightings"]] == [d.isoformat() for d in DATES[:2]]
    assert case["case"]["no_longer_seen"] and case["case"]["status"] == "open"
    assert case["case"]["assignee"] == "aud"              # what people did stays


# --------------------------------------------------------------------------- review fixes

def _raw_client(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, follow_redirects=False, raise_server_exceptions=False)


def test_a_session_cookie_or_csrf_token_with_non_ascii_characters_is_refused_not_a_crash(
        published, tmp_path):
    """No page without a login; without the session's token a change is refused with 403
    and nothing is written, whatever characters the cookie or token hold."""
    app, con = make_app(published, tmp_path, ALL)
    raw = _raw_client(app)
    r = raw.get("/", headers={"Cookie": "wb_session=a.\u00e9".encode("latin-1")})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert raw.get("/api/cases", headers={"Cookie": "wb_session=\u00e9.\u00e9".encode("latin-1")}).status_code == 401
    # the login form's own token
    logins = con.execute("SELECT count(*) FROM logins").fetchone()[0]
    raw.get("/login")
    r = raw.post("/login", data={"csrf": "\u00e9", "name": "sup", "password": "x"})
    assert r.status_code == 403
    assert con.execute("SELECT count(*) FROM logins").fetchone()[0] == logins
    # a signed-in user's changes
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    r = c.post(f"/api/cases/{cid}/comment", json={"comment": "x"}, headers={"X-CSRF-Token": "\u00e9".encode("latin-1")})
    assert r.status_code == 403
    r = c.post(f"/api/cases/{cid}/comment", content=b'{"comment": "x", "csrf": "\\u00e9\\ud800"}',
               headers={"Content-Type": "application/json"})
    assert r.status_code == 403
    r = c.post(f"/cases/{cid}/act", data={"csrf": "\u00e9", "action": "comment", "comment": "x"})
    assert r.status_code == 403
    assert c.post("/logout", data={"csrf": "\u4e2d"}).status_code == 403
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == before


def test_a_province_scoped_user_may_not_read_the_national_report(published, tmp_path):
    """Province scope holds for every page, export and API call: a date's report.html
    holds every province's findings, so it is for national users only."""
    app, _ = make_app(published, tmp_path, ALL + [("prov", "auditor", published.province)])
    p, _ = client(app, "prov")
    for d in DATES:
        r = p.get(f"/reports/{d.isoformat()}/report.html")
        assert r.status_code == 403 and "report-data" not in r.text
    cid = case_of(p, "B01", published.province, published.pair)["case_id"]
    page = p.get(f"/cases/{cid}").text
    assert page.count('class="card sighting"') == 3 and "/reports/" not in page
    n, _ = client(app, "aud")
    assert n.get(f"/reports/{DATES[0].isoformat()}/report.html").status_code == 200


def _second_finding_with_the_same_id(out: Path, day: date) -> tuple[str, int]:
    """Spec-readings item 15: two F04 `row:<n>` findings in different files of one province
    share an exception_id. Add such a twin of one finding of `day` (another source file)."""
    import polars as pl
    p = out / day.isoformat() / "exceptions.parquet"
    frame = pl.read_parquet(p)
    twin = frame.head(1).with_columns(pl.lit("settlements.csv").alias("source_file"),
                                      (pl.col("source_row").fill_null(0) + 1).alias("source_row"))
    pl.concat([frame, twin]).write_parquet(p)
    return frame["exception_id"][0], frame.height + 1


def test_two_findings_sharing_an_exception_id_are_two_sightings(published, tmp_path):
    """Every finding of exceptions.parquet is a sighting; the two of one id show beside it."""
    import polars as pl
    out = _copy_out(published, tmp_path)
    eid, height = _second_finding_with_the_same_id(out, DATES[-1])
    app, con = make_app(published, tmp_path, ALL, out=out)
    n = con.execute("SELECT count(*) FROM sightings WHERE business_date = ?",
                    (DATES[-1].isoformat(),)).fetchone()[0]
    assert n == height == con.execute("SELECT findings FROM report_dates WHERE business_date = ?",
                                      (DATES[-1].isoformat(),)).fetchone()[0]
    total = sum(pl.read_parquet(out / d.isoformat() / "exceptions.parquet").height for d in DATES)
    assert con.execute("SELECT count(*) FROM sightings").fetchone()[0] == total
    cid = con.execute("SELECT case_id FROM sightings WHERE exception_id = ?", (eid,)).fetchone()[0]
    c, _ = client(app, "aud")
    twins = [s for s in c.get(f"/api/cases/{cid}").json()["sightings"] if s["exception_id"] == eid]
    assert len(twins) == 2 and len({(s["source_file"], s["source_row"]) for s in twins}) == 2
    page = c.get(f"/cases/{cid}").text
    assert "settlements.csv" in page


def test_a_workbench_database_of_the_earlier_schema_is_migrated_and_read_again(published, tmp_path):
    """Sightings were keyed (business_date, exception_id): opening such a database rebuilds
    them per finding and reads every date again, so the lost twin comes back."""
    from workbench.ingest import ingest
    from workbench.store import connect
    out = _copy_out(published, tmp_path)
    db = tmp_path / "old.sqlite"
    con = connect(db)
    ingest(con, out)
    n_cases = con.execute("SELECT count(*) FROM cases").fetchone()[0]
    # the table as the earlier workbench made it
    old = con.execute("SELECT * FROM sightings").fetchall()
    cols = [k for k in old[0].keys() if k != "finding_no"]
    con.execute("DROP TABLE sightings")
    con.execute("""CREATE TABLE sightings (
        business_date TEXT NOT NULL, exception_id TEXT NOT NULL, case_id TEXT NOT NULL
            REFERENCES cases(case_id),
        rule_code TEXT NOT NULL, rule_name TEXT, severity TEXT, province TEXT NOT NULL,
        dataset TEXT, record_id TEXT, sharer_psn_no TEXT, beneficiary_psn_no TEXT,
        amount TEXT, detail TEXT, source_file TEXT, source_row INTEGER, evidence TEXT,
        PRIMARY KEY (business_date, exception_id))""")
    con.execute("CREATE INDEX sightings_case ON sightings (case_id, business_date)")
    con.executemany(f"INSERT INTO sightings VALUES ({','.join('?' * len(cols))})",
                    [tuple(r[k] for k in cols) for r in old])
    con.close()
    eid, height = _second_finding_with_the_same_id(out, DATES[0])
    con = connect(db)
    assert "finding_no" in [r[1] for r in con.execute("PRAGMA table_info(sightings)")]
    assert con.execute("SELECT count(*) FROM sightings").fetchone()[0] == len(old)   # nothing lost
    assert sorted(ingest(con, out).ingested) == [d.isoformat() for d in DATES]     # read again
    assert con.execute("SELECT count(*) FROM sightings WHERE exception_id = ?", (eid,)).fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM sightings").fetchone()[0] == len(old) + 1
    assert con.execute("SELECT count(*) FROM cases").fetchone()[0] == n_cases
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sightings_case'").fetchone()[0] == 1


def test_report_dates_without_status_reasons_gain_them_and_every_date_is_read_again(
        published, tmp_path):
    from workbench.ingest import ingest
    from workbench.store import connect
    db = tmp_path / "old.sqlite"
    con = connect(db)
    ingest(con, published.out)
    con.execute("ALTER TABLE report_dates DROP COLUMN status_reasons")   # as an earlier workbench
    con.close()
    con = connect(db)
    assert "status_reasons" in [r[1] for r in con.execute("PRAGMA table_info(report_dates)")]
    assert sorted(ingest(con, published.out).ingested) == [d.isoformat() for d in DATES]
    assert con.execute("SELECT count(*) FROM report_dates WHERE status_reasons IS NULL").fetchone()[0] == 0


def _mark_stale(out: Path, day: date, clear_with: str) -> None:
    """What a re-run of an earlier date does to the summary.json of a later date."""
    from contracts import summary as S
    p = out / day.isoformat() / "summary.json"
    p.write_text(json.dumps(S.dump(S.mark_stale(S.load(p), clear_with)), indent=2), encoding="utf-8")


def test_the_dashboard_and_case_pages_say_when_a_date_is_stale_or_partial(published, tmp_path):
    """A date's status comes from its summary.json: the overview says when the latest
    date's findings are out of date (with the command that clears it), and a case page
    marks each date it shows that is STALE or PARTIAL."""
    from contracts import summary as S
    out = _copy_out(published, tmp_path)
    app, con = make_app(published, tmp_path, ALL, out=out)
    c, token = client(app, "aud")
    statuses = {d: S.load(out / d.isoformat() / "summary.json").status for d in DATES}
    page = c.get("/").text
    if statuses[DATES[-1]] == "PARTIAL":
        assert 'id="latest-status"' in page and "PARTIAL" in page
    else:
        assert 'id="latest-status"' not in page
    clear = (f"recon backfill --start {DATES[-1].isoformat()} --end {DATES[-1].isoformat()} "
             "--inbox x --out y")
    _mark_stale(out, DATES[-1], clear)
    c.post("/refresh", data={"csrf": token})
    assert con.execute("SELECT status FROM report_dates WHERE business_date = ?",
                       (DATES[-1].isoformat(),)).fetchone()[0] == "STALE"
    page = c.get("/").text
    banner = page[page.index('id="latest-status"'):]
    banner = banner[:banner.index("</div>")]
    assert "STALE" in banner and "out of date" in banner and clear in banner
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    page = c.get(f"/cases/{cid}").text
    cards = page.split('class="card sighting"')[1:]
    assert len(cards) == 3
    assert "STALE" in cards[-1] and clear in cards[-1]
    for d, card in zip(DATES[:2], cards[:2]):
        assert ("PARTIAL" in card) == (statuses[d] == "PARTIAL") and "STALE" not in card


def test_a_province_scoped_user_reads_why_a_date_is_partial_for_their_province_only(
        published, tmp_path):
    """Which other provinces missed or broke a delivery is the national operators' business:
    a scoped user reads their own province's reasons and how many other provinces there are."""
    from contracts import summary as S
    out = _copy_out(published, tmp_path)
    p = out / DATES[-1].isoformat() / "summary.json"
    doc = S.dump(S.load(p))
    doc.update(status="PARTIAL", partial_because=[
        {"rule_code": "F01", "province": "54", "file": None, "reason": "province 54 delivered nothing."},
        {"rule_code": "F03", "province": "63", "file": "settlements.csv", "reason": "cannot be decoded."},
        {"rule_code": "F02", "province": published.province, "file": "balances.csv",
         "reason": "balances.csv has 3 data rows, manifest.json says 4."}])
    p.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    app, _ = make_app(published, tmp_path, ALL + [("prov", "auditor", published.province)], out=out)
    banners = {}
    for name in ("aud", "prov"):
        c, _ = client(app, name)
        page = c.get("/").text
        banner = page[page.index('id="latest-status"'):]
        banners[name] = banner[:banner.index("</div>")]
    assert "54 (F01)" in banners["aud"] and "63/settlements.csv" in banners["aud"]
    assert f"{published.province}/balances.csv rejected" in banners["prov"]
    assert "54" not in banners["prov"] and "63/" not in banners["prov"]
    assert "and 2 other province(s)" in banners["prov"]


def test_an_unreadable_or_removed_date_does_not_move_the_latest_date(published, tmp_path):
    """An unreadable date folder is a problem banner only: it is not the latest published
    date, so cases are not 'no longer seen' and ages do not grow. A date folder removed
    from <out> stops counting and is shown as removed."""
    out = _copy_out(published, tmp_path)
    app, con = make_app(published, tmp_path, ALL, out=out)
    c, token = client(app, "aud")
    before = case_of(c, "B01", published.province, published.pair)
    bad = out / (DATES[-1] + timedelta(days=1)).isoformat()
    bad.mkdir()
    (bad / "exceptions.parquet").write_text("x")
    c.post("/refresh", data={"csrf": token})
    page = c.get("/").text
    assert f"<b>{DATES[-1].isoformat()}</b>" in page and bad.name in page     # the banner
    case = case_of(c, "B01", published.province, published.pair)
    assert not case["no_longer_seen"] and case["age"] == before["age"] == (DATES[-1] - DATES[0]).days
    assert not any(r["no_longer_seen"] for r in c.get("/api/cases").json()["cases"]
                   if r["last_seen"] == DATES[-1].isoformat())
    # the last published date is missing from <out> (a publish moves it aside for a moment;
    # an unmounted <out> looks empty): a banner, and nothing the cases hold changes
    kept = con.execute("SELECT count(*) FROM sightings WHERE business_date = ?",
                       (DATES[-1].isoformat(),)).fetchone()[0]
    shutil.rmtree(out / DATES[-1].isoformat())
    c.post("/refresh", data={"csrf": token})
    assert con.execute("SELECT count(*) FROM sightings WHERE business_date = ?",
                       (DATES[-1].isoformat(),)).fetchone()[0] == kept > 0
    assert case_of(c, "B01", published.province, published.pair) == before
    assert "not found in the reports folder" in c.get("/").text
    # and a date that comes back is read again
    shutil.copytree(published.out / DATES[-1].isoformat(), out / DATES[-1].isoformat())
    c.post("/refresh", data={"csrf": token})
    assert case_of(c, "B01", published.province, published.pair)["n_dates"] == 3
    assert "not found in the reports folder" not in c.get("/").text


def test_a_date_folder_that_cannot_be_entered_is_no_server_error(published, tmp_path, monkeypatch):
    """Python 3.11's is_file() raises PermissionError for a folder it may not enter."""
    out = _copy_out(published, tmp_path)
    app, con = make_app(published, tmp_path, ALL, out=out)
    c, token = client(app, "aud")
    real = Path.is_file
    locked = out / DATES[-1].isoformat() / "exceptions.parquet"

    def is_file(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "is_file", is_file)
    c.post("/refresh", data={"csrf": token})
    for page in ("/", "/cases", "/api/cases"):
        assert c.get(page).status_code == 200


def test_a_resident_id_glued_to_letters_is_masked_in_what_is_stored_and_shown(published, tmp_path):
    """Free text is stored masked by the project's rule (contracts/privacy.py): letters
    glued to an ID do not protect it."""
    from contracts.privacy import is_resident_id
    from workbench.web import templates
    glued = "ID110100198603155536"
    assert is_resident_id(glued[2:])
    app, con = make_app(published, tmp_path, ALL)
    c, token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    h = {"X-CSRF-Token": token}
    assert c.post(f"/api/cases/{cid}/comment", json={"comment": f"see {glued}x"}, headers=h).status_code == 200
    assert c.post(f"/api/cases/{cid}/decide", json={"decision": "explained", "reason": glued},
                  headers=h).status_code == 200
    stored = json.dumps([tuple(r) for r in con.execute("SELECT before, after FROM events")])
    assert "198603155536" not in stored and "ID110100********5536" in stored
    for text in (c.get(f"/cases/{cid}").text, c.get(f"/cases/{cid}/events.csv").text,
                 c.get("/export/decided.csv").text, json.dumps(c.get(f"/api/cases/{cid}").json())):
        assert "198603155536" not in text
    assert templates().filters["mask"](f"x{glued}") == "xID110100********5536"


def test_a_database_that_is_a_folder_a_csv_or_inside_the_reports_is_refused_with_exit_2(
        published, tmp_path, monkeypatch, capsys):
    """Errors are one sentence with exit 2; the database lives beside <out>, never inside it."""
    from flows.cli import main
    (tmp_path / "afolder").mkdir()
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text("case_id,status\n1,open\n", encoding="utf-8")
    out = _copy_out(published, tmp_path)
    inside = out / "wb.sqlite"

    def served(*a, **k):
        raise AssertionError("the workbench was served")
    monkeypatch.setattr("uvicorn.run", served)   # a wrong answer fails, never hangs
    for db in (tmp_path / "afolder", csv_file, inside):
        for extra in ([], ["user", "add", "li", "--role", "auditor", "--password-stdin"]):
            monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-password\n"))
            assert main(["audit", "--out", str(out), "--db", str(db), "--port", "1", *extra]) == 2, (db, extra)
            err = capsys.readouterr().err
            assert str(db) in err and "Internal error" not in err and len(err.strip().splitlines()) == 1
    assert csv_file.read_text(encoding="utf-8") == "case_id,status\n1,open\n"
    assert not inside.exists()


def test_the_api_masks_text_an_older_database_stored_unmasked(published, tmp_path):
    """Events are append-only: a comment an older workbench stored with a weaker masking
    stays in the database, so the JSON API masks on the way out as the pages do."""
    from workbench.store import append_event, transaction
    app, con = make_app(published, tmp_path, ALL)
    c, _token = client(app, "aud")
    cid = case_of(c, "B01", published.province, published.pair)["case_id"]
    with transaction(con):
        append_event(con, cid, "aud", "commented", None, {"comment": "ID110100198603155536"})
    got = c.get(f"/api/cases/{cid}").text
    assert "198603155536" not in got and "110100********5536" in got
