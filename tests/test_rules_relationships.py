"""rules.md §2 on relationship events: S01-S04, S21 and relation_events.

S06/S07 (and their effect on validity) are tested in test_rules_persons.py."""
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.certno import make_certno
from transforms import rules_files, rules_persons, rules_relationships
from tests.builders import (BENEFICIARY, D, SHARER, add, context, dissolve, establish, findings,
                            person, record_ids, warehouse)

PREV = D - timedelta(days=1)


def family(con, sharer_birth="19800101", beneficiary_birth="19550101", sharer_male=True,
           beneficiary_male=True, day=D, **sharer_kw):
    """A sharer (employee, ACTIVE) and a beneficiary (resident, ACTIVE) delivered on `day`."""
    add(con, "persons", [
        person(SHARER, birth=sharer_birth, male=sharer_male, day=day, **sharer_kw),
        person(BENEFICIARY, birth=beneficiary_birth, male=beneficiary_male, insutype="390", day=day),
    ], day)


def judge(con, day=D):
    """Run F06, S06/S07 and the relationship rules of `day`, as the nightly run does.

    rules_persons comes before rules_relationships: validity reads S06/S07."""
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


# --- a clean relationship ------------------------------------------------------

def test_parent_established_with_signed_letter_is_valid_and_has_no_findings():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", relation_code="PARENT"))
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"E1": True}


# --- S01 -----------------------------------------------------------------------

def test_sibling_under_the_2021_policy_is_not_a_near_relative():
    day = date(2023, 5, 1)
    con = warehouse()
    family(con, day=day)
    add(con, "relationships", establish("E1", relation_code="SIBLING", day=day), day)
    judge(con, day)
    assert record_ids(con, "S01") == ["E1"]
    (f,) = findings(con, "S01")
    assert "2021-gbf-14" in f["detail"] and "SIBLING" in f["detail"]
    assert relation_events(con, day) == {"E1": False}


def test_sibling_from_2024_07_01_is_a_near_relative():
    day = date(2024, 7, 1)
    con = warehouse()
    family(con, day=day)
    add(con, "relationships", establish("E1", relation_code="SIBLING", day=day), day)
    judge(con, day)
    assert findings(con) == []
    assert relation_events(con, day) == {"E1": True}


def test_not_near_relative_codes_get_s01_only_even_with_implausible_ages():
    con = warehouse()
    family(con, sharer_birth="19800101", beneficiary_birth="19800101")
    add(con, "relationships", [establish("E1", relation_code="COUSIN"),
                               establish("E2", relation_id="R2", relation_code="PARENT_IN_LAW")])
    judge(con)
    assert codes(con) == ["S01"]
    assert record_ids(con, "S01") == ["E1", "E2"]


def test_grandparent_under_the_2021_policy_gets_s01_not_s02():
    day = date(2023, 5, 1)
    con = warehouse()
    family(con, sharer_birth="19800101", beneficiary_birth="19800101", day=day)
    add(con, "relationships", establish("E1", relation_code="GRANDPARENT_PATERNAL", day=day), day)
    judge(con, day)
    assert codes(con) == ["S01"]


# --- S02 -----------------------------------------------------------------------

def s02_ids(sharer_birth, beneficiary_birth, relation_code, sharer_male=True, beneficiary_male=True):
    con = warehouse()
    family(con, sharer_birth, beneficiary_birth, sharer_male, beneficiary_male)
    add(con, "relationships", establish("E1", relation_code=relation_code))
    judge(con)
    return record_ids(con, "S02")


def test_parent_exactly_15_years_older_passes_one_day_less_fails():
    # b(t) + 150000 == b(s): 19650101 + 150000 = 19800101
    assert s02_ids("19800101", "19650101", "PARENT") == []
    assert s02_ids("19791231", "19650101", "PARENT") == ["E1"]


def test_child_exactly_15_years_younger_passes_one_day_less_fails():
    assert s02_ids("19800101", "19950101", "CHILD") == []
    assert s02_ids("19800101", "19941231", "CHILD") == ["E1"]


def test_grandparent_exactly_30_years_older_passes_one_day_less_fails():
    for code in ("GRANDPARENT_PATERNAL", "GRANDPARENT_MATERNAL"):
        assert s02_ids("19800101", "19500101", code) == []
        assert s02_ids("19791231", "19500101", code) == ["E1"]


def test_grandchild_exactly_30_years_younger_passes_one_day_less_fails():
    for code in ("GRANDCHILD_SON", "GRANDCHILD_DAUGHTER"):
        assert s02_ids("19600101", "19900101", code) == []
        assert s02_ids("19600101", "19891231", code) == ["E1"]


def test_spouse_male_of_age_on_his_22nd_birthday_not_the_day_before():
    # D = 2026-11-20; the female spouse is well of age.
    assert s02_ids("20041120", "19900101", "SPOUSE", beneficiary_male=False) == []
    assert s02_ids("20041121", "19900101", "SPOUSE", beneficiary_male=False) == ["E1"]


def test_spouse_female_of_age_on_her_20th_birthday_not_the_day_before():
    assert s02_ids("19900101", "20061120", "SPOUSE", beneficiary_male=False) == []
    assert s02_ids("19900101", "20061121", "SPOUSE", beneficiary_male=False) == ["E1"]


def test_spouse_age_test_uses_each_spouses_own_sex():
    # Born 2006-11-20: exactly 20 on D. Of age as a woman, not as a man.
    assert s02_ids("20061120", "19900101", "SPOUSE", sharer_male=False) == []
    assert s02_ids("20061120", "19900101", "SPOUSE", sharer_male=True) == ["E1"]


def test_spouse_detail_names_the_spouse_under_age():
    con = warehouse()
    family(con, "19900101", "20061121", beneficiary_male=False)
    add(con, "relationships", establish("E1", relation_code="SPOUSE"))
    judge(con)
    (f,) = findings(con, "S02")
    assert "beneficiary (F) b = 20061121" in f["detail"] and "sharer" not in f["detail"].split(":", 1)[1]


def test_sibling_has_no_age_test():
    assert s02_ids("19800101", "20100101", "SIBLING") == []


def test_parent_detail_shows_the_comparison():
    con = warehouse()
    family(con, "19791231", "19650101")
    add(con, "relationships", establish("E1", relation_code="PARENT"))
    judge(con)
    (f,) = findings(con, "S02")
    assert f["detail"] == ("PARENT needs b(beneficiary) + 150000 <= b(sharer): "
                           "19650101 + 150000 = 19800101 > 19791231.")
    assert (f["province"], f["dataset"], f["sharer_psn_no"]) == ("44", "relationships", SHARER)
    assert relation_events(con) == {"E1": False}


# --- S03, S04 ------------------------------------------------------------------

def test_unsigned_commitment_is_s03_and_invalid():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", signed=False))
    judge(con)
    assert codes(con) == ["S03"]
    assert relation_events(con) == {"E1": False}


def test_dissolve_needs_no_commitment_letter():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1"), dissolve("X1", signed=False)])
    judge(con)
    assert findings(con) == []


def test_same_psn_no_is_self_sharing():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", beneficiary=SHARER, relation_code="SIBLING"))
    judge(con)
    assert record_ids(con, "S04") == ["E1"]


def test_same_certno_under_two_psn_no_is_self_sharing_and_detail_masks_it():
    con = warehouse()
    certno = make_certno("440100", "19800101", 1, True)
    add(con, "persons", [person(SHARER, certno=certno),
                         person(BENEFICIARY, certno=certno, insutype="390")])
    add(con, "relationships", establish("E1", relation_code="SIBLING"))
    judge(con)
    (f,) = findings(con, "S04")
    assert certno not in f["detail"]
    assert certno[:6] + "********" + certno[-4:] in f["detail"]


# --- unknown persons (F06) ----------------------------------------------------

def test_unknown_beneficiary_gets_f06_no_s02_s07_and_is_not_valid():
    con = warehouse()
    add(con, "persons", person(SHARER))
    add(con, "relationships", establish("E1", relation_code="PARENT"))
    judge(con)
    assert codes(con) == ["F06"]
    assert relation_events(con) == {"E1": False}


def test_persons_known_from_an_earlier_date_are_known():
    con = warehouse()
    family(con, day=PREV)
    add(con, "relationships", establish("E1"))
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"E1": True}


# --- S21 and the effect of DISSOLVE -----------------------------------------------

def test_dissolve_of_an_unknown_relation_is_s21():
    con = warehouse()
    family(con)
    add(con, "relationships", dissolve("X1", relation_id="R9"))
    judge(con)
    (f,) = findings(con, "S21")
    assert f["record_id"] == "X1" and "no ESTABLISH at or before" in f["detail"]
    assert relation_events(con) == {"X1": False}


def test_dissolve_of_a_relation_established_on_an_earlier_date_is_effective():
    con = warehouse()
    family(con, day=PREV)
    add(con, "relationships", establish("E1", day=PREV), PREV)
    judge(con, PREV)
    add(con, "relationships", dissolve("X1"))
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"X1": True}


def test_second_dissolve_is_s21_naming_the_first():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", at="08:00:00"), dissolve("X1", at="09:00:00"),
                               dissolve("X2", at="10:00:00")])
    judge(con)
    (f,) = findings(con, "S21")
    assert f["record_id"] == "X2" and "already dissolved by X1" in f["detail"]
    assert relation_events(con) == {"E1": True, "X1": True, "X2": False}


def test_dissolve_before_the_establish_is_s21():
    con = warehouse()
    family(con)
    add(con, "relationships", [dissolve("X1", at="07:59:59"), establish("E1", at="08:00:00")])
    judge(con)
    assert record_ids(con, "S21") == ["X1"]


def test_dissolve_at_the_same_second_as_the_establish_is_effective():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", at="08:00:00"), dissolve("X1", at="08:00:00")])
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"E1": True, "X1": True}


def test_dissolve_of_an_invalid_relation_is_effective_without_s21():
    """rules.md §2: "any loaded ESTABLISH event establishes its relation_id, valid or not
    (an invalid relationship is still active"; §6: "DISSOLVE of an active relationship
    (valid or not)" closes its lots."""
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", signed=False), dissolve("X1")])
    judge(con)
    assert codes(con) == ["S03"]
    assert relation_events(con) == {"E1": False, "X1": True}


def test_dissolve_of_a_relation_made_invalid_by_s06_on_an_earlier_date_is_effective():
    con = warehouse()
    family(con, day=PREV, insutype="390")            # a resident cannot share: S06
    add(con, "relationships", establish("E1", day=PREV), PREV)
    judge(con, PREV)
    family(con)
    add(con, "relationships", dissolve("X1"))
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"X1": True}


def test_dissolve_with_the_sharer_written_as_beneficiary_is_s21():
    """rules.md §6: a DISSOLVE "whose sharer_psn_no or beneficiary_psn_no differ from
    the relationship's, gets S21 and does nothing"."""
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", at="08:00:00"),
                               dissolve("X1", beneficiary=SHARER, at="09:00:00")])
    judge(con)
    (f,) = findings(con, "S21")
    assert f["record_id"] == "X1"
    assert f"links sharer {SHARER} to beneficiary {BENEFICIARY}" in f["detail"]
    assert relation_events(con) == {"E1": True, "X1": False}


def test_dissolve_with_the_two_persons_swapped_is_s21():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", at="08:00:00"),
                               dissolve("X1", sharer=BENEFICIARY, beneficiary=SHARER, at="09:00:00")])
    judge(con)
    assert record_ids(con, "S21") == ["X1"]
    assert relation_events(con) == {"E1": True, "X1": False}


def test_dissolve_naming_other_persons_leaves_the_relation_active_for_a_later_dissolve():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", at="08:00:00"),
                               dissolve("X1", beneficiary=SHARER, at="09:00:00"),
                               dissolve("X2", at="10:00:00")])
    judge(con)
    assert record_ids(con, "S21") == ["X1"]
    assert relation_events(con) == {"E1": True, "X1": False, "X2": True}


def test_latest_establish_defines_the_persons_a_dissolve_must_name():
    """rules.md §2: "the latest at or before t defines its sharer, beneficiary and
    validity at t"."""
    con = warehouse()
    family(con)
    other = "41000000000000000003"
    add(con, "persons", person(other, birth="19560101", insutype="390"))
    add(con, "relationships", [establish("E1", at="08:00:00"),
                               establish("E2", beneficiary=other, at="09:00:00"),
                               dissolve("X1", at="10:00:00"),              # names E1's pair
                               dissolve("X2", beneficiary=other, at="11:00:00")])
    judge(con)
    assert record_ids(con, "S21") == ["X1"]
    assert relation_events(con) == {"E1": True, "E2": True, "X1": False, "X2": True}


def test_reestablished_relation_can_be_dissolved_again():
    con = warehouse()
    family(con)
    add(con, "relationships", [
        establish("E1", at="08:00:00"), dissolve("X1", at="09:00:00"),
        establish("E2", at="10:00:00"), dissolve("X2", at="11:00:00"),
    ])
    judge(con)
    assert findings(con) == []
    assert relation_events(con) == {"E1": True, "X1": True, "E2": True, "X2": True}


def test_dissolve_already_done_on_an_earlier_date_makes_todays_s21():
    con = warehouse()
    family(con, day=PREV)
    add(con, "relationships", [establish("E1", day=PREV, at="08:00:00"),
                               dissolve("X1", day=PREV, at="09:00:00")], PREV)
    judge(con, PREV)
    add(con, "relationships", dissolve("X2"))
    judge(con)
    assert record_ids(con, "S21") == ["X2"]


# --- relation_events bookkeeping --------------------------------------------------

def test_rerun_replaces_the_dates_relation_events():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1"))
    judge(con)
    judge(con)
    assert con.execute("SELECT count(*) FROM relation_events").fetchone()[0] == 1


def test_rerun_of_an_earlier_date_ignores_later_relation_events():
    con = warehouse()
    family(con, day=PREV)
    add(con, "relationships", establish("E1", day=PREV, at="08:00:00"), PREV)
    judge(con, PREV)
    add(con, "relationships", dissolve("X1"))          # D: dissolves E1
    judge(con)
    # A corrected delivery for D-1 replaces its folder: E1 and now also X0.
    con.execute("DELETE FROM relationships WHERE business_date = ?", [PREV])
    add(con, "relationships", [establish("E1", day=PREV, at="08:00:00"),
                               dissolve("X0", day=PREV, at="12:00:00")], PREV)
    judge(con, PREV)
    assert relation_events(con, PREV) == {"E1": True, "X0": True}   # X1 of D is not looked at
    assert findings(con) == []


# --- many events at once: each judged with its own two persons ---------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["PARENT", "CHILD", "SPOUSE"]),
                          st.integers(-2, 2), st.booleans(), st.booleans(), st.booleans()),
                min_size=1, max_size=40))
def test_every_establish_of_a_day_is_judged_on_its_own_sharer_and_beneficiary(events):
    """S02 and validity of many ESTABLISHes delivered in one file, in no particular
    order of their persons: each event's verdict follows the spec's formula on its own
    two persons (the lookups of sharers and beneficiaries are put side by side)."""
    con = warehouse()
    d_int = D.year * 10000 + D.month * 100 + D.day
    rows, persons, expected_s02, expected_valid = [], [], set(), {}
    for i, (code, days_off, s_male, t_male, t_known) in enumerate(events):
        sharer, beneficiary = f"44{i:018d}", f"41{i:018d}"
        # ages at the PARENT / CHILD / SPOUSE boundary, shifted by days_off
        s_birth, t_birth = {
            "PARENT": (date(1980, 1, 1) + timedelta(days=days_off), date(1965, 1, 1)),
            "CHILD": (date(1965, 1, 1), date(1980, 1, 1) + timedelta(days=days_off)),
            "SPOUSE": (date(2004, 11, 20) + timedelta(days=days_off), date(2006, 11, 20)),
        }[code]
        b = lambda x: x.year * 10000 + x.month * 100 + x.day
        bs, bt = b(s_birth), b(t_birth)
        persons.append(person(sharer, birth=s_birth.strftime("%Y%m%d"), male=s_male))
        if t_known:
            persons.append(person(beneficiary, birth=t_birth.strftime("%Y%m%d"), male=t_male,
                                  insutype="390"))
        rows.append(establish(f"E{i:03d}", f"R{i:03d}", sharer=sharer, beneficiary=beneficiary,
                              relation_code=code))
        of_age = lambda birth, male: birth + (220000 if male else 200000) <= d_int
        implausible = {"PARENT": not bt + 150000 <= bs, "CHILD": not bs + 150000 <= bt,
                       "SPOUSE": not (of_age(bs, s_male) and of_age(bt, t_male))}[code]
        if t_known and implausible:
            expected_s02.add(f"E{i:03d}")
        expected_valid[f"E{i:03d}"] = t_known and not implausible
    add(con, "persons", persons[::-1])          # persons in another order than the events
    add(con, "relationships", rows)
    judge(con)
    assert set(record_ids(con, "S02")) == expected_s02
    assert relation_events(con) == expected_valid
