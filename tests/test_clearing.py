"""Clearing of rules.md §8: flows, settlement.csv and positions.csv frames, invariants."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import (D, add, context, institution, settlement,
                            transfer, warehouse)
from transforms import clearing, ledger, rules_settlements

SHARER_BJ = "11000000000000000005"
SHARER_HN = "41000000000000000007"
D1 = D + timedelta(days=1)


def run(con, day=D, genesis=True):
    ctx = context(con, day, genesis)
    rules_settlements.run(con, ctx)
    ledger.run(con, ctx)
    clearing.run(con, ctx)
    return ctx


def scenario(con):
    add(con, "institutions", [institution(), institution("P41000000001", "PHARMACY")])
    add(con, "transfers", [transfer("T1", "100.00", side="IN", at="08:00:00"),
                           transfer("T2", "100.00", side="IN", sharer=SHARER_BJ, at="08:30:00"),
                           transfer("T3", "100.00", side="IN", sharer=SHARER_HN, at="08:40:00")])
    add(con, "settlements", [
        settlement("S1", "150.00", at="09:00:00"),                       # 100 from 44, 50 from 11
        settlement("S2", "60.00", expense_type="PHARMACY", fixmedins_code="P41000000001",
                   at="10:00:00"),                                       # 50 from 11, 10 from 41
        settlement("S3", "10.00", personal_burden="5.00", at="10:30:00"),  # held (S17)
        settlement("R1", "70.00", status="REFUND", orig_setl_id="S1", at="11:00:00"),  # 50 to 11, 20 to 44
        settlement("R2", "5.00", status="REFUND", orig_setl_id="S3", at="11:30:00"),   # S20
    ])


def test_settlement_frame_shows_settled_refunded_net_and_counts():
    con = warehouse()
    scenario(con)
    ctx = run(con)
    df = clearing.settlement_report(con, ctx)
    assert df.columns == ["business_date", "payer_province", "payee_province", "expense_type",
                          "settled_amount", "refunded_amount", "net_amount", "settlement_count",
                          "refund_count", "cross_province"]
    assert df.schema["net_amount"] == pl.Decimal(18, 2)
    got = [(r["payer_province"], r["payee_province"], r["expense_type"], r["settled_amount"],
            r["refunded_amount"], r["net_amount"], r["settlement_count"], r["refund_count"],
            r["cross_province"]) for r in df.iter_rows(named=True)]
    assert got == [
        ("11", "41", "OUTPATIENT", Decimal("50.00"), Decimal("50.00"), Decimal("0.00"), 1, 1, True),
        ("11", "41", "PHARMACY", Decimal("50.00"), Decimal("0.00"), Decimal("50.00"), 1, 0, True),
        ("41", "41", "PHARMACY", Decimal("10.00"), Decimal("0.00"), Decimal("10.00"), 1, 0, False),
        ("44", "41", "OUTPATIENT", Decimal("100.00"), Decimal("20.00"), Decimal("80.00"), 1, 1, True),
    ]


def test_positions_frame_and_net_sums_to_zero():
    con = warehouse()
    scenario(con)
    ctx = run(con)
    df = clearing.positions_report(con, ctx)
    got = {r["province"]: (r["receivable"], r["payable"], r["net"]) for r in df.iter_rows(named=True)}
    assert got == {"11": (Decimal("0.00"), Decimal("50.00"), Decimal("-50.00")),
                   "41": (Decimal("140.00"), Decimal("10.00"), Decimal("130.00")),
                   "44": (Decimal("0.00"), Decimal("80.00"), Decimal("-80.00"))}
    assert sum(df["net"].to_list()) == 0


def test_amounts_and_all_four_invariants_pass():
    con = warehouse()
    scenario(con)
    ctx = run(con)
    a = clearing.amounts(con, ctx)
    assert (a["settled"], a["held"], a["refunded"], a["refund_held"]) == (
        Decimal("210.00"), Decimal("10.00"), Decimal("70.00"), Decimal("5.00"))
    inv = clearing.invariants(con, ctx)
    assert [i["name"] for i in inv] == ["files", "quota", "clearing", "settlements"]
    assert all(i["passed"] for i in inv), inv


def test_invariants_detect_a_broken_ledger_and_a_bad_file_count():
    con = warehouse()
    scenario(con)
    ctx = run(con)
    con.execute("UPDATE lots SET remaining = remaining + 0.01 WHERE lot_id = 'T1'")
    con.execute("DELETE FROM settlement_outcomes WHERE setl_id = 'S3'")
    con.execute(f"INSERT INTO file_loads VALUES (DATE '{ctx.d}', '41', 'settlements', "
                f"'{ctx.d}/41/settlements.csv', NULL, 'utf-8', 6, 5, 0, FALSE, NULL, NULL)")
    inv = {i["name"]: i for i in clearing.invariants(con, ctx)}
    assert not inv["quota"]["passed"] and inv["quota"]["value"] == Decimal("-0.01")
    assert not inv["settlements"]["passed"] and inv["settlements"]["value"] == Decimal("-10.00")
    assert not inv["files"]["passed"] and inv["clearing"]["passed"]


def test_refund_of_an_earlier_dates_settlement_flows_back_with_its_expense_type():
    con = warehouse()
    scenario(con)
    run(con)
    add(con, "institutions", institution(day=D1), D1)
    add(con, "settlements", settlement("R9", "10.00", status="REFUND", orig_setl_id="S2",
                                       expense_type="OUTPATIENT", day=D1), D1)
    ctx = run(con, D1, genesis=False)
    df = clearing.settlement_report(con, ctx)
    assert df.select("payer_province", "payee_province", "expense_type", "refunded_amount",
                     "net_amount").rows() == [("41", "41", "PHARMACY", Decimal("10.00"), Decimal("-10.00"))]


def test_reports_are_identical_on_rerun():
    con = warehouse()
    scenario(con)
    ctx = run(con)
    first = (clearing.settlement_report(con, ctx), clearing.positions_report(con, ctx))
    ctx = run(con)
    assert first[0].equals(clearing.settlement_report(con, ctx))
    assert first[1].equals(clearing.positions_report(con, ctx))


PROVS = ("11", "41", "44", "65")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lots=st.lists(st.tuples(st.sampled_from(PROVS), st.sampled_from(PROVS), st.integers(1, 500)),
                     min_size=1, max_size=6),
       spends=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 400)), max_size=6),
       refunds=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 300)), max_size=3))
def test_positions_always_sum_to_zero(lots, spends, refunds):
    con = warehouse()
    add(con, "institutions", institution())
    bens = sorted({b for _, b, _ in lots})
    for i, (sp, bp, f) in enumerate(lots):
        add(con, "transfers", transfer(f"T{i}", f"{f // 100}.{f % 100:02d}", side="IN",
                                       sharer=sp + "000000000000000001",
                                       beneficiary=bp + "000000000000000002", at="08:00:00"))
    rows = []
    for i, (j, f) in enumerate(spends):
        rows.append(settlement(f"S{i}", f"{f // 100}.{f % 100:02d}",
                               psn_no=bens[j % len(bens)] + "000000000000000002", at="09:00:00"))
    for i, (j, f) in enumerate(refunds):
        if spends:
            k = j % len(spends)
            rows.append(settlement(f"R{i}", f"{f // 100}.{f % 100:02d}", status="REFUND",
                                   psn_no=rows[k]["psn_no"], orig_setl_id=f"S{k}", at="10:00:00"))
    if rows:
        add(con, "settlements", rows)
    ctx = run(con)
    pos = clearing.positions_report(con, ctx)
    assert sum(pos["net"].to_list(), Decimal("0.00")) == Decimal("0.00")
    assert all(i["passed"] for i in clearing.invariants(con, ctx))
