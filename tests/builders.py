"""Tiny builders for warehouse rows, so rule tests read like the spec's examples.

    con = warehouse()
    add(con, "persons", person("41000000000000000001", birth="19600101"), D)
    add(con, "transfers", transfer("T1", amount="2000.01"), D)

Defaults describe a clean, valid record; a test overrides only what it is about.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb

from contracts.certno import make_certno
from transforms.context import RunContext, bind_date, create_warehouse

D = date(2026, 11, 20)

SHARER = "44000000000000000001"      # employee in Guangdong
BENEFICIARY = "41000000000000000002"  # resident in Henan

_COLUMNS: dict[str, tuple[str, ...]] = {}


def warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    create_warehouse(con)
    return con


def columns(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, ...]:
    return tuple(r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall())


def add(con: duckdb.DuckDBPyConnection, table: str, rows, business_date: date = D) -> None:
    """Insert rows (dicts) into a warehouse table; business_date and lineage filled in.

    source_file is '<D>/<file_province>/<table>.csv'; source_row continues after the
    largest source_row already in the table for that source_file (so several add()
    calls to one table and date never collide on (source_file, source_row)), unless
    the row sets source_row itself.
    """
    if isinstance(rows, dict):
        rows = [rows]
    cols = columns(con, table)
    next_row: dict[str, int] = {}   # source_file -> last source_row used
    for row in rows:
        r = {"business_date": business_date,
             "source_file": f"{business_date.isoformat()}/{row.get('file_province', '00')}/{table}.csv"}
        r.update(row)
        if "source_row" not in row and "source_row" in cols:
            f = r["source_file"]
            if f not in next_row:
                next_row[f] = con.execute(
                    f"SELECT coalesce(max(source_row), 0) FROM {table} WHERE source_file = ?",
                    [f]).fetchone()[0]
            next_row[f] += 1
            r["source_row"] = next_row[f]
        values = [r.get(c) for c in cols]
        con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", values)


def ts(hhmmss: str, day: date = D) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s)


def person(psn_no: str, birth: str = "19800101", male: bool = True, insutype: str = "310",
           status: str = "ACTIVE", day: date = D, certno: str | None = None) -> dict:
    admdvs = psn_no[:2] + "0100"
    return {
        "file_province": psn_no[:2], "psn_no": psn_no,
        "certno": certno or make_certno(admdvs, birth, int(psn_no[-3:]), male),
        "insutype": insutype, "insu_status": status, "insu_admdvs": admdvs, "as_of": day,
        "birth_date": date(int(birth[:4]), int(birth[4:6]), int(birth[6:])),
        "sex": "M" if male else "F",
    }


def establish(event_id: str, relation_id: str = "R1", sharer: str = SHARER,
              beneficiary: str = BENEFICIARY, relation_code: str = "PARENT",
              signed: bool = True, at: str = "08:00:00", day: date = D,
              event_type: str = "ESTABLISH") -> dict:
    return {
        "file_province": sharer[:2], "event_id": event_id, "relation_id": relation_id,
        "event_type": event_type, "sharer_psn_no": sharer, "beneficiary_psn_no": beneficiary,
        "beneficiary_province": beneficiary[:2], "relation_code": relation_code,
        "commitment_signed": signed, "channel": "NATIONAL_APP", "event_time": ts(at, day),
    }


def dissolve(event_id: str, relation_id: str = "R1", at: str = "20:00:00", **kw) -> dict:
    return establish(event_id, relation_id, at=at, event_type="DISSOLVE", **kw)


def transfer(transfer_id: str, amount: str = "500.00", side: str = "OUT", relation_id: str = "R1",
             sharer: str = SHARER, beneficiary: str = BENEFICIARY, at: str = "10:00:00",
             status: str = "SUCCESS", day: date = D) -> dict:
    return {
        "file_province": sharer[:2] if side == "OUT" else beneficiary[:2],
        "transfer_id": transfer_id, "side": side, "relation_id": relation_id,
        "sharer_psn_no": sharer, "beneficiary_psn_no": beneficiary,
        "sharer_province": sharer[:2], "beneficiary_province": beneficiary[:2],
        "amount": Decimal(amount), "status": status, "transfer_time": ts(at, day),
    }


def both_sides(transfer_id: str, **kw) -> list[dict]:
    return [transfer(transfer_id, side="OUT", **kw), transfer(transfer_id, side="IN", **kw)]


def settlement(setl_id: str, wallet_pay: str = "100.00", psn_no: str = BENEFICIARY,
               expense_type: str = "OUTPATIENT", fixmedins_code: str | None = "H41000000001",
               personal_burden: str | None = None, total_amount: str | None = None,
               status: str = "NORMAL", orig_setl_id: str | None = None,
               at: str = "12:00:00", day: date = D) -> dict:
    burden = Decimal(personal_burden if personal_burden is not None else wallet_pay)
    return {
        "file_province": psn_no[:2], "setl_id": setl_id, "psn_no": psn_no, "status": status,
        "orig_setl_id": orig_setl_id, "expense_type": expense_type,
        "fixmedins_code": fixmedins_code,
        "total_amount": Decimal(total_amount) if total_amount is not None else burden * 2,
        "personal_burden": burden, "wallet_pay": Decimal(wallet_pay), "setl_time": ts(at, day),
    }


def balance(psn_no: str, account: str = "PERSONAL", opening: str = "10000.00",
            closing: str = "10000.00", sharer: str | None = None) -> dict:
    return {
        "file_province": psn_no[:2], "psn_no": psn_no, "account": account,
        "sharer_psn_no": sharer, "sharer_province": sharer[:2] if sharer else None,
        "opening_balance": Decimal(opening), "closing_balance": Decimal(closing),
    }


def institution(code: str = "H41000000001", kind: str = "HOSPITAL",
                designated_from: date = date(2020, 1, 1), designated_to: date | None = None,
                day: date = D) -> dict:
    return {"business_date": day, "fixmedins_code": code, "fixmedins_type": kind,
            "admdvs": "410100", "designated_from": designated_from,
            "designated_to": designated_to}


def context(con: duckdb.DuckDBPyConnection, day: date = D, genesis: bool = True) -> RunContext:
    ctx = RunContext.for_date(day, genesis)
    bind_date(con, ctx)
    return ctx


def findings(con: duckdb.DuckDBPyConnection, rule_code: str | None = None) -> list[dict]:
    """The findings recorded so far in this run (d_findings), as dicts."""
    sql = "SELECT * FROM d_findings" + (" WHERE rule_code = ?" if rule_code else "") \
        + " ORDER BY rule_code, record_id"
    cur = con.execute(sql, [rule_code] if rule_code else [])
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def record_ids(con: duckdb.DuckDBPyConnection, rule_code: str) -> list[str]:
    return [f["record_id"] for f in findings(con, rule_code)]
