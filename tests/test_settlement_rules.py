"""S14-S17 of rules.md §6 (S07 on settlements is in test_rules_persons.py)."""
from __future__ import annotations

from datetime import timedelta

from tests.builders import (BENEFICIARY, D, add, context, findings, institution, person,
                            record_ids, settlement, warehouse)
from transforms import rules_settlements


def judge(*rows, institutions=(institution(),), persons=()):
    con = warehouse()
    add(con, "institutions", list(institutions))
    if persons:
        add(con, "persons", list(persons))
    if rows:
        add(con, "settlements", list(rows))
    ctx = context(con)
    rules_settlements.run(con, ctx)
    return con


def test_clean_settlement_has_no_finding():
    con = judge(settlement("S1"), persons=[person(BENEFICIARY)])
    assert findings(con) == []


def test_s14_ineligible_expense():
    con = judge(settlement("S1", expense_type="CASH_WITHDRAWAL"),
                settlement("S2", expense_type="OUTPATIENT"))
    assert record_ids(con, "S14") == ["S1"]


def test_s15_designated_to_d_passes_d_minus_1_fails_from_d_plus_1_fails():
    con = judge(settlement("S1", fixmedins_code="H41000000001"),
                settlement("S2", fixmedins_code="H41000000002"),
                settlement("S3", fixmedins_code="H41000000003"),
                institutions=[institution("H41000000001", designated_to=D),
                              institution("H41000000002", designated_to=D - timedelta(days=1)),
                              institution("H41000000003", designated_from=D + timedelta(days=1))])
    assert record_ids(con, "S15") == ["S2", "S3"]


def test_s15_wrong_type_and_unknown_institution():
    con = judge(settlement("S1", expense_type="INPATIENT", fixmedins_code="P41000000001"),
                settlement("S2", expense_type="PHARMACY", fixmedins_code="H41000000001"),
                settlement("S3", fixmedins_code="H49999999999"),
                settlement("S4", expense_type="PHARMACY", fixmedins_code="P41000000001"),
                settlement("S5", expense_type="LTC_PREMIUM", fixmedins_code=None),
                institutions=[institution(), institution("P41000000001", "PHARMACY")])
    assert record_ids(con, "S15") == ["S1", "S2", "S3"]
    assert "unknown" in findings(con, "S15")[2]["detail"]


def test_s16_premium_must_be_paid_in_full():
    con = judge(settlement("S1", "100.00", expense_type="RESIDENT_PREMIUM", fixmedins_code=None,
                           personal_burden="100.00"),
                settlement("S2", "99.99", expense_type="LTC_PREMIUM", fixmedins_code=None,
                           personal_burden="100.00"),
                settlement("S3", "100.01", expense_type="RESIDENT_PREMIUM", fixmedins_code=None,
                           personal_burden="100.00"))
    assert record_ids(con, "S16") == ["S2", "S3"] and record_ids(con, "S17") == []


def test_s17_wallet_pay_equal_to_burden_passes_a_fen_more_fails():
    con = judge(settlement("S1", "50.00", personal_burden="50.00"),
                settlement("S2", "50.01", personal_burden="50.00"),
                settlement("R1", "50.01", personal_burden="50.00", status="REFUND", orig_setl_id="S1"))
    assert record_ids(con, "S17") == ["S2"]
    (f,) = findings(con, "S17")
    assert f["amount"] == __import__("decimal").Decimal("50.01") and f["source_row"] == 2


def test_s17_zero_burden_and_ineligible_types_get_s14_and_s17_not_s15():
    con = judge(settlement("S1", "0.01", personal_burden="0.00"),
                settlement("S2", "20.00", personal_burden="10.00", expense_type="NON_MEDICAL_GOODS"),
                settlement("S3", "10.00", expense_type="RESIDENT_PREMIUM", fixmedins_code=None,
                           personal_burden="10.00"))
    assert record_ids(con, "S17") == ["S1", "S2"] and record_ids(con, "S14") == ["S2"]
    assert record_ids(con, "S15") == [] and record_ids(con, "S16") == []


def test_s15_institution_clause_holds_for_ineligible_types_too_premiums_exempt():
    """'or the institution is unknown or not designated on D' names no expense type:
    a purchase at an unknown shop is S14 and S15; a premium has no institution."""
    con = judge(settlement("S1", expense_type="NON_MEDICAL_GOODS", fixmedins_code="P41999999999"),
                settlement("S2", expense_type="NON_MEDICAL_GOODS", fixmedins_code="H41000000001"),
                settlement("S3", expense_type="LTC_PREMIUM", fixmedins_code=None))
    assert record_ids(con, "S15") == ["S1"]
    assert record_ids(con, "S14") == ["S1", "S2"]
