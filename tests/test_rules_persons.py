"""rules.md §3 Persons: S06 (ESTABLISH events, SUCCESS OUT transfers) and S07
(ESTABLISH events, NORMAL care settlements), and their effect on relationship validity."""
from datetime import timedelta
from decimal import Decimal

from tests.builders import (BENEFICIARY, D, SHARER, add, context, establish, findings,
                            institution, person, record_ids, settlement, transfer, warehouse)
from transforms import reconcile, rules_files, rules_persons, rules_relationships

PREV = D - timedelta(days=1)


def family(con, sharer_birth="19800101", beneficiary_birth="19550101", sharer_male=True,
           beneficiary_male=True, day=D, **sharer_kw):
    """A sharer (employee, ACTIVE) and a beneficiary (resident, ACTIVE) delivered on `day`."""
    add(con, "persons", [
        person(SHARER, birth=sharer_birth, male=sharer_male, day=day, **sharer_kw),
        person(BENEFICIARY, birth=beneficiary_birth, male=beneficiary_male, insutype="390", day=day),
    ], day)


def judge(con, day=D):
    """F06, S06/S07, then the relationship rules of `day` (validity reads S06/S07), as nightly."""
    ctx = context(con, day)
    rules_files.run(con, ctx)
    rules_persons.run(con, ctx)
    rules_relationships.run(con, ctx)
    return ctx


def relation_events(con, day=D):
    return dict(con.execute("SELECT event_id, valid FROM relation_events WHERE business_date = ?",
                            [day]).fetchall())


def codes(con):
    return sorted({f["rule_code"] for f in findings(con)})


def test_persons_run_before_relationships_in_the_nightly_steps():
    names = [name for name, _ in reconcile.STEPS]
    assert names.index("rules_files") < names.index("rules_persons") < names.index("rules_relationships")
    assert names.index("rules_persons") < names.index("ledger")


# --- S06, S07 on ESTABLISH events ------------------------------------------------

def test_resident_sharer_is_s06_and_invalid():
    con = warehouse()
    family(con, insutype="390")
    add(con, "relationships", establish("E1"))
    judge(con)
    assert record_ids(con, "S06") == ["E1"]
    assert relation_events(con) == {"E1": False}


def test_suspended_employee_sharer_is_s06():
    con = warehouse()
    family(con, status="SUSPENDED")
    add(con, "relationships", establish("E1"))
    judge(con)
    (f,) = findings(con, "S06")
    assert "insutype 310 with insu_status SUSPENDED" in f["detail"]


def test_beneficiary_not_active_is_s07_resident_active_is_fine():
    for status, expected in (("ACTIVE", []), ("SUSPENDED", ["E1"]), ("TERMINATED", ["E1"])):
        con = warehouse()
        add(con, "persons", [person(SHARER), person(BENEFICIARY, birth="19550101",
                                                    insutype="390", status=status)])
        add(con, "relationships", establish("E1"))
        judge(con)
        assert record_ids(con, "S07") == expected


def test_persons_are_judged_on_their_latest_record_up_to_d():
    con = warehouse()
    family(con, day=PREV)                    # ACTIVE on D-1
    add(con, "persons", person(SHARER, status="TERMINATED"), D)   # terminated on D
    add(con, "relationships", establish("E1"))
    judge(con)
    assert record_ids(con, "S06") == ["E1"]


def test_a_rerun_of_an_earlier_date_ignores_later_person_records():
    con = warehouse()
    family(con, day=PREV)
    add(con, "persons", person(SHARER, status="TERMINATED"), D)
    add(con, "relationships", establish("E0", day=PREV), PREV)
    judge(con, PREV)
    assert findings(con) == []
    assert relation_events(con, PREV) == {"E0": True}


def test_unknown_sharer_is_not_judged_for_s06():
    con = warehouse()
    add(con, "persons", person(BENEFICIARY, insutype="390"))
    add(con, "relationships", establish("E1", relation_code="SIBLING"))
    judge(con)
    assert codes(con) == ["F06"]


# --- S06 on transfers ---------------------------------------------------------------

def test_sharer_no_longer_active_on_d_is_s06_on_the_transfer():
    con = warehouse()
    family(con, day=PREV)                                    # a clean relation R1 on D-1
    add(con, "relationships", establish("E0", day=PREV), PREV)
    judge(con, PREV)
    add(con, "persons", person(SHARER, status="SUSPENDED"))
    add(con, "transfers", [transfer("T1"), transfer("T2", status="FAILED")])
    ctx = context(con)
    rules_files.run(con, ctx)
    rules_persons.s06_sharer_not_employee(con, ctx)
    (f,) = findings(con, "S06")
    assert (f["record_id"], f["dataset"], f["amount"]) == ("T1", "transfers", Decimal("500.00"))


# --- S07 on settlements ---------------------------------------------------------------

def judge_settlements(*rows, institutions=(institution(),), persons=()):
    con = warehouse()
    add(con, "institutions", list(institutions))
    if persons:
        add(con, "persons", list(persons))
    if rows:
        add(con, "settlements", list(rows))
    ctx = context(con)
    rules_persons.run(con, ctx)
    return con


def test_s07_not_active_beneficiary_only_for_care_types_and_only_normal():
    con = judge_settlements(
        settlement("S1"), settlement("S2", expense_type="PHARMACY", fixmedins_code="P41000000001"),
        settlement("S3", expense_type="RESIDENT_PREMIUM", fixmedins_code=None),
        settlement("R1", status="REFUND", orig_setl_id="S0"),
        institutions=[institution(), institution("P41000000001", "PHARMACY")],
        persons=[person(BENEFICIARY, status="SUSPENDED")])
    assert record_ids(con, "S07") == ["S1", "S2"]
    (f, _) = findings(con, "S07")
    assert f["province"] == "41" and f["dataset"] == "settlements" and "SUSPENDED" in f["detail"]


def test_s07_unknown_person_is_not_judged():
    con = judge_settlements(settlement("S1"))
    assert record_ids(con, "S07") == []
