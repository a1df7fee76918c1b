"""rules.md §1 F06 UNKNOWN_PERSON (spec-readings items 3 and 5)."""
from datetime import timedelta
from decimal import Decimal

from transforms import rules_files
from transforms.context import materialize_known_persons
from tests.builders import (BENEFICIARY, D, SHARER, add, balance, both_sides, context, establish,
                            findings, person, settlement, warehouse)

PREV = D - timedelta(days=1)
STRANGER = "33000000000000000009"


def _judged(con, day, materialized: bool) -> list[dict]:
    ctx = context(con, day)
    if materialized:
        materialize_known_persons(con, ctx)
    rules_files.run(con, ctx)
    return sorted(findings(con, "F06"), key=lambda f: (f["record_id"], f["source_file"], f["source_row"]))


def f06(con, day=D):
    """F06 of `day`, judged on the views of bind_date, then again as the nightly run
    judges it (after materialize_known_persons has made known_persons and
    unknown_persons tables): both must give the same findings."""
    by_view = _judged(con, day, materialized=False)
    by_table = _judged(con, day, materialized=True)
    assert by_table == by_view
    return {(f["dataset"], f["record_id"]): f for f in by_table}


def test_records_naming_only_known_persons_have_no_f06():
    con = warehouse()
    add(con, "persons", [person(SHARER), person(BENEFICIARY, insutype="390")])
    add(con, "relationships", establish("E1"))
    add(con, "transfers", both_sides("T1"))
    add(con, "settlements", settlement("S1"))
    add(con, "balances", [balance(SHARER), balance(BENEFICIARY, account="QUOTA", sharer=SHARER)])
    assert f06(con) == {}


def test_every_dataset_names_its_unknown_persons():
    con = warehouse()
    add(con, "persons", person(SHARER))
    add(con, "relationships", establish("E1"))
    add(con, "transfers", both_sides("T1"))
    add(con, "settlements", settlement("S1"))
    add(con, "balances", [balance(BENEFICIARY, account="QUOTA", sharer=SHARER, opening="5.00"),
                          balance(BENEFICIARY)])
    out = f06(con)
    rows = findings(con, "F06")
    assert sorted((f["dataset"], f["record_id"]) for f in rows) == [
        ("balances", f"{BENEFICIARY}:{SHARER}"), ("balances", f"{BENEFICIARY}:PERSONAL"),
        ("relationships", "E1"), ("settlements", "S1"), ("transfers", "T1"), ("transfers", "T1"),
    ]
    # both sides of T1 are records of their own files: one finding each
    assert sorted(f["province"] for f in rows if f["dataset"] == "transfers") == ["41", "44"]
    s1 = out[("settlements", "S1")]
    assert (s1["province"], s1["beneficiary_psn_no"], s1["amount"]) == ("41", BENEFICIARY, Decimal("100.00"))
    assert BENEFICIARY in out[("relationships", "E1")]["detail"]


def test_one_finding_per_record_naming_every_unknown_person():
    con = warehouse()
    add(con, "relationships", establish("E1"))
    (f,) = f06(con).values()
    assert SHARER in f["detail"] and BENEFICIARY in f["detail"]
    assert f["detail"].index("sharer") < f["detail"].index("beneficiary")
    assert (f["province"], f["source_row"]) == ("44", 1)


def test_quota_row_with_an_unknown_sharer_is_f06():
    con = warehouse()
    add(con, "persons", person(BENEFICIARY, insutype="390"))
    add(con, "balances", balance(BENEFICIARY, account="QUOTA", sharer=STRANGER))
    (f,) = f06(con).values()
    assert f["record_id"] == f"{BENEFICIARY}:{STRANGER}" and STRANGER in f["detail"]
    assert BENEFICIARY not in f["detail"]


def test_a_person_delivered_on_an_earlier_date_is_known():
    con = warehouse()
    add(con, "persons", [person(SHARER, day=PREV), person(BENEFICIARY, insutype="390", day=PREV)], PREV)
    add(con, "relationships", establish("E1"))
    assert f06(con) == {}


def test_only_the_person_never_delivered_is_named_beside_one_delivered_earlier():
    con = warehouse()
    add(con, "persons", person(SHARER, day=PREV), PREV)
    add(con, "relationships", establish("E1"))
    add(con, "transfers", both_sides("T1"))
    out = f06(con)
    assert sorted(out) == [("relationships", "E1"), ("transfers", "T1")]
    for f in out.values():
        assert BENEFICIARY in f["detail"] and SHARER not in f["detail"]


def test_a_person_delivered_only_on_a_later_date_is_unknown_on_a_rerun():
    con = warehouse()
    add(con, "persons", [person(SHARER), person(BENEFICIARY, insutype="390")], D)
    add(con, "relationships", establish("E1", day=PREV), PREV)
    assert list(f06(con, PREV)) == [("relationships", "E1")]


def test_persons_rows_themselves_are_never_f06():
    con = warehouse()
    add(con, "persons", person(SHARER))
    assert f06(con) == {}
