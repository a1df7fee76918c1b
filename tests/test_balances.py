"""B01 and B02 of rules.md §7."""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from tests.builders import (BENEFICIARY, D, SHARER, add, balance, context, findings, institution,
                            settlement, transfer, warehouse)
from transforms import balances, ledger, rules_settlements

SHARER2 = "44000000000000000003"
D1 = D + timedelta(days=1)
PAIR = f"{BENEFICIARY}:{SHARER}"


def run(con, day=D, genesis=True):
    ctx = context(con, day, genesis)
    rules_settlements.run(con, ctx)
    ledger.run(con, ctx)
    balances.run(con, ctx)
    return con


def setup(con, closing, day=D, opening="100.00"):
    add(con, "institutions", institution(day=day), day)
    add(con, "transfers", transfer("T" + day.isoformat(), "50.00", side="IN", day=day), day)
    add(con, "settlements", settlement("S" + day.isoformat(), "30.00", day=day), day)
    add(con, "balances", balance(BENEFICIARY, "QUOTA", opening, closing, sharer=SHARER), day)


def test_b01_exact_closing_has_no_finding():
    con = run_(closing="120.00")
    assert findings(con, "B01") == []


def run_(closing):
    con = warehouse()
    setup(con, closing)
    return run(con)


def test_b01_off_by_a_fen_fires_with_delivered_minus_computed():
    con = run_(closing="120.01")
    (f,) = findings(con, "B01")
    assert f["record_id"] == PAIR and f["amount"] == Decimal("0.01") and f["province"] == "41"
    assert f["dataset"] == "balances" and f["source_row"] == 1


def test_b01_absent_row_is_zero():
    con = warehouse()
    setup(con, "120.00")
    add(con, "transfers", transfer("TX", "7.00", side="IN", sharer=SHARER2))
    run(con)
    (f,) = findings(con, "B01")
    assert f["record_id"] == f"{BENEFICIARY}:{SHARER2}" and f["amount"] == Decimal("-7.00")


def test_b01_a_delivered_row_without_lots_is_compared_with_zero():
    con = warehouse()
    setup(con, "120.00")
    add(con, "balances", balance(BENEFICIARY, "QUOTA", "0.00", "3.00", sharer=SHARER2))
    run(con)
    assert [f["amount"] for f in findings(con, "B01")] == [Decimal("3.00")]


def test_province_without_a_balances_delivery_is_not_judged():
    con = warehouse()
    add(con, "transfers", transfer("T1", "50.00", side="IN"))
    run(con)
    assert findings(con, "B01") == []


def test_b02_fires_when_not_genesis_off_by_a_fen():
    con = warehouse()
    setup(con, "120.00")
    run(con)
    setup(con, "140.00", day=D1, opening="120.01")
    run(con, D1, genesis=False)
    (f,) = findings(con, "B02")
    assert f["record_id"] == PAIR and f["amount"] == Decimal("0.01") and "opening_balance" in f["detail"]
    assert findings(con, "B01") == []       # 120.00 + 50.00 - 30.00 = 140.00 as delivered


def test_b02_not_judged_at_genesis():
    con = warehouse()
    setup(con, "120.00")
    run(con)
    setup(con, "140.01", day=D1, opening="120.01")
    run(con, D1, genesis=True)               # opens from the delivered balances
    assert findings(con, "B02") == []
    assert findings(con, "B01") == []       # 120.01 + 50.00 - 30.00 = 140.01 as delivered


def test_b01_after_one_of_two_sharers_dissolved_its_pair_is_zero():
    con = warehouse()
    setup(con, "120.00")                                   # SHARER: 100 + 50 - 30 = 120
    add(con, "transfers", transfer("TX", "7.00", side="IN", sharer=SHARER2, at="09:00:00"))
    con.execute("INSERT INTO relation_events VALUES (?, 'E1', 'R2', 'DISSOLVE', ?, ?, ?, TRUE)",
                [D, SHARER2, BENEFICIARY, datetime(2026, 11, 20, 20, 0, 0)])
    add(con, "balances", balance(BENEFICIARY, "QUOTA", "0.00", "7.00", sharer=SHARER2))
    run(con)
    (f,) = findings(con, "B01")                            # the dissolved pair holds nothing
    assert f["record_id"] == f"{BENEFICIARY}:{SHARER2}" and f["amount"] == Decimal("7.00")


def test_f04_on_a_balances_row_is_keyed_by_its_pair_or_personal_else_by_row_number():
    """rules.md §1 F04 record_id: "balances rows use the key `psn_no:sharer_psn_no`
    (QUOTA) or `psn_no:PERSONAL`" when readable, else `row:<n>` (1-based data row)."""
    import json

    from flows.inbox import ProvinceDelivery
    from tests.inbox_builders import COLUMNS, balance_row, csv_bytes, manifest_for
    from transforms.intake import load_province
    ben = "44" + BENEFICIARY[2:]
    rows = [balance_row(ben, "QUOTA", closing="1.234", sharer=SHARER),        # QUOTA: pair
            balance_row(SHARER, opening="-1.00"),                              # PERSONAL
            balance_row(ben, "QUOTA", sharer=""),                              # QUOTA without sharer
            balance_row("", opening="-1.00"),                                  # no psn_no
            balance_row(SHARER, "QUOTA", sharer=SHARER2)]                      # clean
    files = {f"{ds}.csv": (len(rows) if ds == "balances" else 0,
                           csv_bytes(rows if ds == "balances" else [], COLUMNS[ds]))
             for ds in COLUMNS}
    delivery = ProvinceDelivery("44", D, manifest_bytes=json.dumps(manifest_for("44", D, files)).encode(),
                                files={n: b for n, (_r, b) in files.items()})
    it = load_province(delivery, D)
    f04 = [(f["record_id"], f["source_row"]) for f in it.findings.to_dicts() if f["rule_code"] == "F04"]
    assert f04 == [(f"{ben}:{SHARER}", 1), (f"{SHARER}:PERSONAL", 2), ("row:3", 3), ("row:4", 4)]
