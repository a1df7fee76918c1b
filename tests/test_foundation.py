"""The shared contracts: policy versions, certno check characters, exception ids."""
from datetime import date
from decimal import Decimal

import pytest

from contracts.certno import check_char, is_valid, make_certno
from contracts.codes import RULES
from contracts.policy import policy_for
from transforms.findings import exception_id, finalize, record
from tests.builders import D, context, warehouse


def test_policy_2021_allows_only_spouse_parent_child():
    assert policy_for(date(2023, 5, 1)).near_relatives == ("SPOUSE", "PARENT", "CHILD")


def test_policy_switches_on_2024_07_01_to_all_near_relatives():
    assert "SIBLING" not in policy_for(date(2024, 6, 30)).near_relatives
    p = policy_for(date(2024, 7, 1))
    assert "SIBLING" in p.near_relatives and len(p.near_relatives) == 8
    assert p.max_transfer_amount == Decimal("2000.00") and p.max_daily_out_transfers == 3


@pytest.mark.parametrize("day", [date(2021, 1, 5), date(2000, 1, 1), date(1, 1, 1)])
def test_every_date_before_2024_07_01_is_judged_by_the_2021_policy(day):
    """rules.md: "Before 2024-07-01 (国办发〔2021〕14号) only SPOUSE, PARENT and CHILD were
    allowed; other values were the same." A date before 2021-04-13 is no exception."""
    assert policy_for(day) == policy_for(date(2024, 6, 30))
    assert policy_for(day).near_relatives == ("SPOUSE", "PARENT", "CHILD")


def test_certno_check_character_known_example():
    # The GB 11643 textbook example 11010519491231002X.
    assert check_char("11010519491231002") == "X"
    assert is_valid("11010519491231002X") and not is_valid("110105194912310021")


def test_make_certno_is_valid_and_carries_sex():
    c = make_certno("440106", "19850612", 123, male=False)
    assert is_valid(c) and int(c[16]) % 2 == 0


def test_exception_id_sql_equals_python():
    con = warehouse()
    ctx = context(con)
    record(con, "S08", "SELECT '44' AS province, 'transfers' AS dataset, 'T1' AS record_id, "
                       "NULL AS sharer_psn_no, NULL AS beneficiary_psn_no, 2000.01 AS amount, "
                       "'x' AS detail, NULL AS source_file, NULL AS source_row")
    finalize(con, ctx.d)
    (eid, name, sev), = con.execute("SELECT exception_id, rule_name, severity FROM findings").fetchall()
    assert eid == exception_id("S08", D.isoformat(), "44", "T1")
    assert (name, sev) == (RULES["S08"].name, "ERROR")


def _known_persons_view_and_table(con, columns: str) -> tuple[list, list]:
    """known_persons as the view sees it, then as materialize_known_persons stores it."""
    from transforms.context import materialize_known_persons
    ctx = context(con)
    query = f"SELECT {columns} FROM known_persons ORDER BY 1"
    view = con.execute(query).fetchall()
    materialize_known_persons(con, ctx)
    return view, con.execute(query).fetchall()


def test_known_persons_table_equals_the_view_for_every_person_named_on_d():
    """F06's 'known on D': delivered on some processed date <= D, latest record wins;
    a later date's record (a re-run of an earlier D) is never seen."""
    from datetime import timedelta
    from tests.builders import BENEFICIARY, SHARER, add, person, transfer
    earlier, later = D - timedelta(days=3), D + timedelta(days=1)
    con = warehouse()
    add(con, "persons", person(SHARER, status="SUSPENDED", day=earlier), earlier)   # not delivered on D
    add(con, "persons", person(SHARER, status="TERMINATED", day=later), later)      # after D: unseen
    add(con, "persons", person(BENEFICIARY, insutype="390"), D)
    add(con, "transfers", transfer("T1"), D)
    view, table = _known_persons_view_and_table(con, "psn_no, insu_status, business_date")
    assert table == view == [(BENEFICIARY, "ACTIVE", D), (SHARER, "SUSPENDED", earlier)]


def test_known_persons_of_a_psn_no_delivered_by_two_provinces_on_d_is_the_first_by_province():
    """The same person in two provinces' persons.csv of D: the record of the lower
    province code (then the lower row) is the one the rules see, as in the view."""
    from tests.builders import BENEFICIARY, SHARER, add, person, transfer
    con = warehouse()
    add(con, "persons", {**person(SHARER, status="SUSPENDED"), "file_province": "65"}, D)
    add(con, "persons", {**person(SHARER), "file_province": "11"}, D)
    add(con, "persons", {**person(SHARER, status="TERMINATED"), "file_province": "11"}, D)
    add(con, "persons", person(BENEFICIARY, insutype="390"), D)
    add(con, "transfers", transfer("T1"), D)
    view, table = _known_persons_view_and_table(con, "psn_no, insu_status, file_province")
    assert table == view == [(BENEFICIARY, "ACTIVE", BENEFICIARY[:2]), (SHARER, "ACTIVE", "11")]
