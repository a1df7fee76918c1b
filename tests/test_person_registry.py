"""The person registry: F06's "known on D" without reading the whole persons history.

Invariant after every run: person_latest holds the date of the latest record of
every psn_no over all processed dates (docs/performance.md). These tests build the history the
way runs leave it (rows of several dates), then check the registry and known_persons
against the definition (the view over the whole history)."""
from datetime import timedelta

from tests.builders import BENEFICIARY, D, SHARER, add, context, person, transfer, warehouse
from transforms.context import maintain_person_registry, materialize_known_persons

D0, D1, D2 = D - timedelta(days=2), D - timedelta(days=1), D

LATEST_BY_DEFINITION = """
    SELECT psn_no, max(business_date) FROM persons GROUP BY psn_no ORDER BY psn_no"""


def registry(con) -> list[tuple]:
    return con.execute("SELECT psn_no, business_date FROM person_latest ORDER BY psn_no").fetchall()


def run_fold(con, day):
    """What a run of `day` does to the registry (after its rows are staged)."""
    maintain_person_registry(con, context(con, day, genesis=False))


def test_registry_holds_each_persons_latest_record_over_the_processed_dates():
    con = warehouse()
    add(con, "persons", person(SHARER, status="SUSPENDED", day=D0), D0)
    add(con, "persons", person(BENEFICIARY, day=D0), D0)
    run_fold(con, D0)
    add(con, "persons", person(SHARER, status="ACTIVE", day=D1), D1)
    run_fold(con, D1)
    assert registry(con) == con.execute(LATEST_BY_DEFINITION).fetchall() == [
        (BENEFICIARY, D0), (SHARER, D1)]


def test_rerun_of_a_date_that_no_longer_delivers_a_person_falls_back_to_the_earlier_record():
    """Re-run of D1 whose persons.csv now omits SHARER: his record of D0 is the latest again."""
    con = warehouse()
    add(con, "persons", person(SHARER, status="SUSPENDED", day=D0), D0)
    run_fold(con, D0)
    add(con, "persons", [person(SHARER, status="TERMINATED", day=D1), person(BENEFICIARY, day=D1)], D1)
    run_fold(con, D1)
    con.execute("DELETE FROM persons WHERE business_date = ?", [D1])   # what delete_date does
    add(con, "persons", person(BENEFICIARY, day=D1), D1)
    run_fold(con, D1)
    assert registry(con) == con.execute(LATEST_BY_DEFINITION).fetchall() == [
        (BENEFICIARY, D1), (SHARER, D0)]


def test_rerun_of_an_earlier_date_never_sees_a_later_dates_record():
    """D2 is processed (SHARER TERMINATED there); a re-run of D1 names SHARER without
    delivering him: known on D1 is his D0 record, as the definition says."""
    con = warehouse()
    add(con, "persons", person(SHARER, status="SUSPENDED", day=D0), D0)
    run_fold(con, D0)
    add(con, "persons", person(BENEFICIARY, day=D1), D1)
    run_fold(con, D1)
    add(con, "persons", person(SHARER, status="TERMINATED", day=D2), D2)
    run_fold(con, D2)
    add(con, "transfers", transfer("T1"), D1)
    ctx = context(con, D1, genesis=False)
    view = con.execute("SELECT psn_no, business_date, insu_status FROM known_persons "
                       "ORDER BY psn_no").fetchall()
    materialize_known_persons(con, ctx)
    table = con.execute("SELECT psn_no, business_date, insu_status FROM known_persons "
                        "ORDER BY psn_no").fetchall()
    assert table == view == [(BENEFICIARY, D1, "ACTIVE"), (SHARER, D0, "SUSPENDED")]
    assert registry(con) == con.execute(LATEST_BY_DEFINITION).fetchall()


def test_a_warehouse_made_before_the_registry_is_folded_in_once():
    """History loaded without the registry (an older warehouse): the first run folds
    every date in, and a person known only from then is known on D."""
    con = warehouse()
    add(con, "persons", person(SHARER, status="SUSPENDED", day=D0), D0)
    add(con, "persons", person(BENEFICIARY, day=D1), D1)
    add(con, "persons", person(BENEFICIARY, day=D2), D2)
    add(con, "transfers", transfer("T1"), D2)
    materialize_known_persons(con, context(con, D2, genesis=False))
    assert con.execute("SELECT psn_no, business_date FROM known_persons ORDER BY 1").fetchall() == [
        (BENEFICIARY, D2), (SHARER, D0)]
    assert registry(con) == con.execute(LATEST_BY_DEFINITION).fetchall()


def test_a_person_delivered_by_two_provinces_on_his_latest_date_is_known_by_the_lower_province():
    """The registry keeps only the date; the record of that date is chosen as on D itself:
    the lower province code, then the lower row."""
    con = warehouse()
    add(con, "persons", [{**person(SHARER, status="SUSPENDED", day=D1), "file_province": "65"},
                         {**person(SHARER, day=D1), "file_province": "11"}], D1)
    run_fold(con, D1)
    add(con, "persons", person(BENEFICIARY, day=D2), D2)
    add(con, "transfers", transfer("T1"), D2)
    ctx = context(con, D2, genesis=False)
    view = con.execute("SELECT psn_no, insu_status, file_province FROM known_persons ORDER BY 1").fetchall()
    materialize_known_persons(con, ctx)
    table = con.execute("SELECT psn_no, insu_status, file_province FROM known_persons ORDER BY 1").fetchall()
    assert table == view == [(BENEFICIARY, "ACTIVE", BENEFICIARY[:2]), (SHARER, "ACTIVE", "11")]
