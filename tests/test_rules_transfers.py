"""rules.md §4 on SUCCESS OUT transfers: S05, S08-S13 (S06 is in test_rules_persons.py)."""
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms import rules_files, rules_persons, rules_relationships, rules_transfers as rt
from tests.builders import (BENEFICIARY, D, SHARER, add, balance, context, dissolve,
                            establish, findings, person, record_ids, transfer, ts, warehouse)

PREV = D - timedelta(days=1)
UPSTREAM = "32000000000000000003"   # someone who shares with our sharer


def p(i: int) -> str:
    """A psn_no for graph tests: 44 followed by 18 digits."""
    return f"44{i:018d}"


def family(con, day=PREV, **sharer_kw):
    add(con, "persons", [person(SHARER, **sharer_kw, day=day),
                         person(BENEFICIARY, birth="19550101", insutype="390", day=day),
                         person(UPSTREAM, birth="19550101", day=day)], day)


def judge(con, day=D, genesis=True):
    """F06, S06/S07 and the relationship rules of `day` (writes relation_events), as the nightly run."""
    ctx = context(con, day, genesis)
    rules_files.run(con, ctx)
    rules_persons.run(con, ctx)
    rules_relationships.run(con, ctx)
    return ctx


def related(con, **sharer_kw):
    """Sharer and beneficiary with relation R1 established (valid) on D-1, D bound next."""
    family(con, **sharer_kw)
    add(con, "relationships", establish("E0", day=PREV), PREV)
    judge(con, PREV)


def day_with(transfers, opening="10000.00", genesis=True, **sharer_kw):
    """A clean relationship, the given transfers on D and the sharer's PERSONAL opening balance."""
    con = warehouse()
    related(con, **sharer_kw)
    add(con, "transfers", transfers)
    if opening is not None:
        add(con, "balances", balance(SHARER, opening=opening, closing="0.00"))
    return con, judge(con, genesis=genesis)


# --- S08 -----------------------------------------------------------------------

def test_2000_00_passes_2000_01_is_over_the_limit():
    con, ctx = day_with([transfer("T1", amount="2000.00", at="09:00:00"),
                         transfer("T2", amount="2000.01", at="10:00:00")])
    rt.s08_over_amount_limit(con, ctx)
    (f,) = findings(con, "S08")
    assert f["record_id"] == "T2" and f["amount"] == Decimal("2000.01")
    assert f["province"] == "44" and f["dataset"] == "transfers"
    assert "2000.01 exceeds the limit of 2000.00" in f["detail"]


def test_s08_judges_success_out_records_only():
    con, ctx = day_with([transfer("T1", amount="3000.00", status="FAILED"),
                         transfer("T2", amount="3000.00", side="IN")])
    rt.s08_over_amount_limit(con, ctx)
    assert findings(con, "S08") == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("4000.00"), places=2),
                min_size=1, max_size=6))
def test_s08_flags_exactly_the_amounts_over_the_limit(amounts):
    con, ctx = day_with([transfer(f"T{i}", amount=str(a), at=f"10:00:{i:02d}")
                         for i, a in enumerate(amounts)])
    rt.s08_over_amount_limit(con, ctx)
    assert record_ids(con, "S08") == sorted(f"T{i}" for i, a in enumerate(amounts)
                                            if a > Decimal("2000.00"))


# --- S09 -----------------------------------------------------------------------

def test_third_transfer_passes_fourth_is_over_the_daily_count():
    con, ctx = day_with([transfer(f"T{i}", at=f"1{i}:00:00") for i in range(1, 5)])
    rt.s09_over_daily_count(con, ctx)
    (f,) = findings(con, "S09")
    assert f["record_id"] == "T4" and "number 4" in f["detail"] and "at most 3" in f["detail"]


def test_daily_count_orders_by_time_then_transfer_id():
    # Same second for all four: transfer_id decides, so TD is the 4th.
    con, ctx = day_with([transfer(t, at="10:00:00") for t in ("TD", "TB", "TA", "TC")]
                        + [transfer("TX", status="FAILED", at="09:00:00")])
    rt.s09_over_daily_count(con, ctx)
    assert record_ids(con, "S09") == ["TD"]


def test_daily_count_is_per_sharer():
    con, ctx = day_with([transfer(f"T{i}", at=f"1{i}:00:00") for i in range(1, 4)]
                        + [transfer(f"U{i}", sharer=UPSTREAM, at=f"1{i}:00:00") for i in range(1, 4)])
    rt.s09_over_daily_count(con, ctx)
    assert findings(con, "S09") == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=8))
def test_s09_flags_exactly_the_transfers_after_the_third(seconds):
    # transfer i at second seconds[i]; ties are broken by transfer_id.
    ids = [f"T{i}" for i in range(len(seconds))]
    con, ctx = day_with([transfer(t, at=f"10:00:0{s}") for t, s in zip(ids, seconds)])
    rt.s09_over_daily_count(con, ctx)
    ordered = [t for _, t in sorted(zip(seconds, ids))]
    assert record_ids(con, "S09") == sorted(ordered[3:])
    assert len(record_ids(con, "S09")) == max(0, len(ids) - 3)


# --- S10 / S11 -------------------------------------------------------------------

def balance_rules(con, ctx):
    rt.stage_excess(con, ctx)
    rt.s10_insufficient_balance(con, ctx)
    rt.s11_resharing(con, ctx)
    return record_ids(con, "S10"), record_ids(con, "S11")


def test_running_sum_equal_to_the_opening_balance_passes():
    con, ctx = day_with([transfer("T1", amount="600.00", at="09:00:00"),
                         transfer("T2", amount="400.00", at="10:00:00")], opening="1000.00")
    assert balance_rules(con, ctx) == ([], [])


def test_running_sum_one_fen_over_the_opening_balance_is_s10():
    con, ctx = day_with([transfer("T1", amount="600.00", at="09:00:00"),
                         transfer("T2", amount="400.01", at="10:00:00")], opening="1000.00")
    assert balance_rules(con, ctx) == (["T2"], [])
    (f,) = findings(con, "S10")
    assert "1000.01" in f["detail"] and "1000.00" in f["detail"] and "by 0.01" in f["detail"]


def test_every_transfer_past_the_balance_gets_one_finding():
    con, ctx = day_with([transfer("T1", amount="600.00", at="09:00:00"),
                         transfer("T2", amount="600.00", at="10:00:00"),
                         transfer("T3", amount="100.00", at="11:00:00")], opening="1000.00")
    assert balance_rules(con, ctx) == (["T2", "T3"], [])


def test_absent_personal_row_is_a_zero_balance():
    con, ctx = day_with([transfer("T1", amount="0.01")], opening=None)
    assert balance_rules(con, ctx) == (["T1"], [])


def test_failed_transfers_do_not_count_in_the_running_sum():
    con, ctx = day_with([transfer("T1", amount="900.00", at="09:00:00", status="FAILED"),
                         transfer("T2", amount="1000.00", at="10:00:00")], opening="1000.00")
    assert balance_rules(con, ctx) == ([], [])


def test_quota_held_at_genesis_makes_the_excess_s11():
    con = warehouse()
    related(con)
    add(con, "transfers", transfer("T1", amount="500.00"))
    add(con, "balances", [balance(SHARER, opening="100.00", closing="0.00"),
                          balance(SHARER, account="QUOTA", opening="400.00", closing="0.00",
                                  sharer=UPSTREAM)])
    ctx = judge(con, genesis=True)
    assert balance_rules(con, ctx) == ([], ["T1"])
    (f,) = findings(con, "S11")
    assert "400.00 in 1 lot(s) at 00:00" in f["detail"]


def test_quota_balance_of_zero_at_genesis_is_no_held_quota():
    con = warehouse()
    related(con)
    add(con, "transfers", transfer("T1", amount="500.00"))
    add(con, "balances", [balance(SHARER, opening="100.00", closing="0.00"),
                          balance(SHARER, account="QUOTA", opening="0.00", closing="50.00",
                                  sharer=UPSTREAM)])
    ctx = judge(con, genesis=True)
    assert balance_rules(con, ctx) == (["T1"], [])


def lot(remaining, beneficiary=SHARER, sharer=UPSTREAM, lot_id="L1"):
    return {"lot_id": lot_id, "beneficiary_psn_no": beneficiary, "beneficiary_province": beneficiary[:2],
            "sharer_psn_no": sharer, "payer_province": sharer[:2], "genesis": False,
            "transfer_time": ts("09:00:00", PREV), "transfer_id": lot_id,
            "original_amount": Decimal("500.00"), "remaining": Decimal(remaining)}


def test_lot_with_remaining_quota_at_midnight_makes_the_excess_s11():
    con = warehouse()
    related(con)
    add(con, "lots", lot("0.01"), PREV)
    add(con, "transfers", transfer("T1", amount="500.00"))
    add(con, "balances", balance(SHARER, opening="100.00"))
    ctx = judge(con, genesis=False)
    assert balance_rules(con, ctx) == ([], ["T1"])


def test_lot_used_up_at_midnight_leaves_s10():
    con = warehouse()
    related(con)
    add(con, "lots", [lot("0.00"), lot("300.00", beneficiary=BENEFICIARY, sharer=SHARER, lot_id="L2")], PREV)
    add(con, "transfers", transfer("T1", amount="500.00"))
    add(con, "balances", balance(SHARER, opening="100.00"))
    ctx = judge(con, genesis=False)
    assert balance_rules(con, ctx) == (["T1"], [])


def test_lots_of_other_dates_than_d_minus_1_are_not_the_opening():
    con = warehouse()
    related(con)
    add(con, "lots", lot("300.00"), PREV - timedelta(days=1))
    add(con, "lots", lot("300.00"), D)          # D's own closing from an earlier run of D
    add(con, "transfers", transfer("T1", amount="500.00"))
    add(con, "balances", balance(SHARER, opening="100.00"))
    ctx = judge(con, genesis=False)
    assert balance_rules(con, ctx) == (["T1"], [])


def test_in_transfer_earlier_that_day_makes_the_excess_s11():
    con, ctx = day_with([transfer("TIN", side="IN", sharer=UPSTREAM, beneficiary=SHARER,
                                  relation_id="R7", amount="800.00", at="09:59:59"),
                         transfer("T1", amount="500.00", at="10:00:00")], opening="100.00")
    assert balance_rules(con, ctx) == ([], ["T1"])
    (f,) = findings(con, "S11")
    assert "TIN at 09:59:59" in f["detail"]


def test_in_transfer_at_the_same_second_is_not_strictly_before():
    con, ctx = day_with([transfer("TIN", side="IN", sharer=UPSTREAM, beneficiary=SHARER,
                                  relation_id="R7", amount="800.00", at="10:00:00"),
                         transfer("T1", amount="500.00", at="10:00:00")], opening="100.00")
    assert balance_rules(con, ctx) == (["T1"], [])


def test_failed_in_transfer_is_not_received_quota():
    con, ctx = day_with([transfer("TIN", side="IN", sharer=UPSTREAM, beneficiary=SHARER,
                                  relation_id="R7", amount="800.00", at="09:00:00", status="FAILED"),
                         transfer("T1", amount="500.00", at="10:00:00")], opening="100.00")
    assert balance_rules(con, ctx) == (["T1"], [])


# --- S05 -----------------------------------------------------------------------

def s05(con, ctx):
    rt.s05_no_valid_relationship(con, ctx)
    return {f["record_id"]: f["detail"] for f in findings(con, "S05")}


def test_transfer_on_an_active_relation_is_fine():
    con, ctx = day_with([transfer("T1")])
    assert s05(con, ctx) == {}


def test_unknown_relation_id_is_s05():
    con, ctx = day_with([transfer("T1", relation_id="R9")])
    assert "R9 is unknown" in s05(con, ctx)["T1"]


def test_relation_established_on_a_later_date_is_unknown_on_a_rerun():
    con = warehouse()
    family(con)
    add(con, "transfers", transfer("T1", day=PREV), PREV)
    add(con, "relationships", establish("E1"))      # established on D
    judge(con)
    ctx = judge(con, PREV)                         # re-run of D-1
    assert "unknown" in s05(con, ctx)["T1"]


def test_invalid_relation_is_s05():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", signed=False, at="08:00:00"))
    add(con, "transfers", transfer("T1", at="10:00:00"))
    ctx = judge(con)
    assert "not valid" in s05(con, ctx)["T1"]


def test_invalid_second_establish_makes_the_next_transfer_s05():
    """rules.md §2: "the latest [ESTABLISH] at or before t defines its sharer,
    beneficiary and validity at t"."""
    con = warehouse()
    related(con)                                                  # E0 valid on D-1
    add(con, "relationships", establish("E1", signed=False, at="09:00:00"))   # S03
    add(con, "transfers", [transfer("T1", at="08:59:59"), transfer("T2", at="09:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert sorted(out) == ["T2"]
    assert "latest ESTABLISH E1" in out["T2"] and "not valid" in out["T2"]


def test_valid_establish_after_an_invalid_one_clears_s05():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", signed=False, at="08:00:00"),
                               establish("E2", at="09:00:00")])
    add(con, "transfers", [transfer("T1", at="08:30:00"), transfer("T2", at="09:00:00")])
    ctx = judge(con)
    assert sorted(s05(con, ctx)) == ["T1"]


def test_invalid_relation_is_active_so_a_transfer_before_its_dissolve_is_only_not_valid():
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E1", signed=False, at="08:00:00"),
                               dissolve("X1", at="10:00:00")])
    add(con, "transfers", [transfer("T1", at="09:00:00"), transfer("T2", at="10:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert "not valid" in out["T1"]
    assert "dissolved by X1" in out["T2"]          # X1 was effective: no S21
    assert record_ids(con, "S21") == []


def test_latest_establish_naming_another_beneficiary_makes_the_old_pair_s05():
    con = warehouse()
    related(con)                                                  # E0: SHARER -> BENEFICIARY
    add(con, "relationships", establish("E1", beneficiary=UPSTREAM, relation_code="SIBLING",
                                        at="09:00:00"))
    add(con, "transfers", [transfer("T1", at="08:00:00"), transfer("T2", at="10:00:00"),
                           transfer("T3", beneficiary=UPSTREAM, at="10:00:01")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert sorted(out) == ["T2"]
    assert f"links sharer {SHARER} to beneficiary {UPSTREAM} (ESTABLISH E1)" in out["T2"]


def test_relation_established_after_the_transfer_time_is_s05():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", at="10:00:01"))
    add(con, "transfers", transfer("T1", at="10:00:00"))
    ctx = judge(con)
    assert "first ESTABLISH is at 2026-11-20 10:00:01" in s05(con, ctx)["T1"]


def test_relation_established_at_the_transfer_second_is_active():
    con = warehouse()
    family(con)
    add(con, "relationships", establish("E1", at="10:00:00"))
    add(con, "transfers", transfer("T1", at="10:00:00"))
    ctx = judge(con)
    assert s05(con, ctx) == {}


def test_dissolved_relation_is_s05_from_the_dissolve_second_on():
    con = warehouse()
    related(con)
    add(con, "relationships", dissolve("X1", at="10:00:00"))
    add(con, "transfers", [transfer("T1", at="09:59:59"), transfer("T2", at="10:00:00"),
                           transfer("T3", at="11:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert sorted(out) == ["T2", "T3"]
    assert "dissolved by X1 at 2026-11-20 10:00:00" in out["T3"]


def test_ineffective_dissolve_does_not_end_the_relation():
    con = warehouse()
    related(con)
    add(con, "relationships", [dissolve("X1", relation_id="R1", at="09:00:00"),
                               dissolve("X2", relation_id="R1", at="10:00:00"),
                               establish("E2", at="10:30:00")])
    add(con, "transfers", [transfer("T1", at="09:30:00"), transfer("T2", at="11:00:00")])
    ctx = judge(con)
    assert sorted(s05(con, ctx)) == ["T1"]    # X2 is S21; E2 re-establishes for T2


def test_establishes_at_the_same_second_are_decided_by_the_greater_event_id():
    """Reading 30d: "ESTABLISHes at the same second are ordered by event_id"; the
    later (greater id) is the latest at or before t, whichever the loader saw first."""
    con = warehouse()
    family(con)
    add(con, "relationships", [establish("E2", signed=False, at="09:00:00"),       # S03
                               establish("E1", at="09:00:00"),
                               establish("E3", relation_id="R2", at="09:00:00"),
                               establish("E4", relation_id="R2", signed=False, at="09:00:00")])
    add(con, "transfers", [transfer("T1", at="09:00:00"), transfer("T2", relation_id="R2", at="09:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert sorted(out) == ["T1", "T2"]
    assert "latest ESTABLISH E2" in out["T1"] and "latest ESTABLISH E4" in out["T2"]


def test_establish_and_dissolve_at_the_transfer_second_leave_it_dissolved():
    """Reading 26: at one second the ESTABLISH comes first and the DISSOLVE ends it."""
    con = warehouse()
    family(con)
    add(con, "relationships", [dissolve("X1", at="10:00:00"), establish("E1", at="10:00:00")])
    add(con, "transfers", [transfer("T1", at="09:59:59"), transfer("T2", at="10:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert record_ids(con, "S21") == []                  # X1 is effective
    assert "first ESTABLISH is at 2026-11-20 10:00:00" in out["T1"]
    assert "dissolved by X1 at 2026-11-20 10:00:00" in out["T2"]


def test_relation_dissolved_on_an_earlier_date_is_s05_and_re_established_is_not():
    con = warehouse()
    related(con)                                         # E0 on D-1
    add(con, "relationships", dissolve("X1", at="20:00:00", day=PREV), PREV)
    judge(con, PREV)
    add(con, "relationships", establish("E1", at="12:00:00"))
    add(con, "transfers", [transfer("T1", at="11:59:59"), transfer("T2", at="12:00:00")])
    ctx = judge(con)
    out = s05(con, ctx)
    assert sorted(out) == ["T1"]
    assert "dissolved by X1 at 2026-11-19 20:00:00" in out["T1"]


def test_mismatched_sharer_or_beneficiary_is_s05():
    con, ctx = day_with([transfer("T1", beneficiary=UPSTREAM), transfer("T2", sharer=UPSTREAM)])
    out = s05(con, ctx)
    assert sorted(out) == ["T1", "T2"]
    assert f"not the transfer's {SHARER} to {UPSTREAM}" in out["T1"]


def test_s05_judges_success_out_only():
    con, ctx = day_with([transfer("T1", relation_id="R9", status="FAILED"),
                         transfer("T2", relation_id="R9", side="IN")])
    assert s05(con, ctx) == {}


# --- S12 -----------------------------------------------------------------------

def forwarding(received_day, received_at="09:00:00", upstream=UPSTREAM, sent_at="10:00:00"):
    con = warehouse()
    related(con)
    add(con, "transfers", transfer("TIN", side="IN", sharer=upstream, beneficiary=SHARER,
                                   relation_id="R7", at=received_at, day=received_day), received_day)
    add(con, "transfers", transfer("T1", at=sent_at))
    ctx = judge(con)
    rt.s12_forwarding(con, ctx)
    return findings(con, "S12")


def test_quota_received_on_d_minus_29_and_passed_on_is_forwarding():
    (f,) = forwarding(D - timedelta(days=29))
    assert f["record_id"] == "T1" and f["province"] == "44"
    assert UPSTREAM in f["detail"] and "TIN" in f["detail"] and "2026-10-22..2026-11-20" in f["detail"]


def test_quota_received_on_d_minus_30_is_outside_the_window():
    assert forwarding(D - timedelta(days=30)) == []


def test_received_at_the_same_second_is_not_strictly_earlier():
    assert forwarding(D, received_at="10:00:00") == []
    assert len(forwarding(D, received_at="09:59:59")) == 1


def test_quota_received_from_the_beneficiary_is_a_round_trip_not_forwarding():
    assert forwarding(PREV, upstream=BENEFICIARY) == []


def test_forwarding_names_every_upstream_sharer():
    con = warehouse()
    related(con)
    other = "33000000000000000004"
    add(con, "transfers", [transfer("TA", side="IN", sharer=UPSTREAM, beneficiary=SHARER, at="08:00:00"),
                           transfer("TB", side="IN", sharer=other, beneficiary=SHARER, at="08:30:00"),
                           transfer("TC", side="IN", sharer=other, beneficiary=SHARER, at="09:00:00",
                                    status="FAILED"),
                           transfer("T1", at="10:00:00")])
    ctx = judge(con)
    rt.s12_forwarding(con, ctx)
    (f,) = findings(con, "S12")
    assert UPSTREAM in f["detail"] and other in f["detail"] and "TC" not in f["detail"]


# --- S13 -----------------------------------------------------------------------

def cycle_con(edges):
    """edges: (transfer_id, sharer, beneficiary, day offset from D, HH:MM:SS), OUT side only."""
    con = warehouse()
    for tid, a, b, off, at in edges:
        day = D - timedelta(days=off)
        add(con, "transfers", transfer(tid, sharer=a, beneficiary=b, at=at, day=day), day)
    ctx = context(con)
    rt.s13_cycle(con, ctx)
    return {f["record_id"]: f["detail"] for f in findings(con, "S13")}


def test_round_trip_a_to_b_to_a_is_a_cycle():
    a, b = p(1), p(2)
    out = cycle_con([("T1", a, b, 1, "10:00:00"), ("T7", b, a, 0, "09:00:00")])
    assert list(out) == ["T7"]
    assert out["T7"].endswith(f"{a}→{b} (T1 2026-11-19 10:00:00) → {a} (T7 2026-11-20 09:00:00).")
    assert "cycle of 2" in out["T7"]


def test_six_cycle_is_found_seven_cycle_is_not():
    six = [(f"S{i}", p(i), p((i + 1) % 6), 5 - i, "10:00:00") for i in range(6)]
    assert list(cycle_con(six)) == ["S5"]
    seven = [(f"S{i}", p(i), p((i + 1) % 7), 6 - i, "10:00:00") for i in range(7)]
    assert cycle_con(seven) == {}


def test_times_out_of_order_are_not_a_cycle():
    a, b, c = p(1), p(2), p(3)
    # a→b at 10:00, b→c at 09:00 (earlier), c→a at 11:00 closes nothing.
    assert cycle_con([("T1", a, b, 0, "10:00:00"), ("T2", b, c, 0, "09:00:00"),
                      ("T3", c, a, 0, "11:00:00")]) == {}
    # equal times are not "later than the previous" either
    assert cycle_con([("T1", a, b, 0, "10:00:00"), ("T2", b, a, 0, "10:00:00")]) == {}


def test_cycle_edges_must_all_lie_within_the_window():
    a, b = p(1), p(2)
    assert cycle_con([("T1", a, b, 30, "10:00:00"), ("T2", b, a, 0, "09:00:00")]) == {}
    assert list(cycle_con([("T1", a, b, 29, "10:00:00"), ("T2", b, a, 0, "09:00:00")])) == ["T2"]


def test_cycle_closed_on_an_earlier_date_is_not_reported_again():
    a, b = p(1), p(2)
    assert cycle_con([("T1", a, b, 2, "10:00:00"), ("T2", b, a, 1, "09:00:00")]) == {}


def test_failed_and_in_side_records_are_not_edges():
    a, b = p(1), p(2)
    con = warehouse()
    add(con, "transfers", transfer("T1", sharer=a, beneficiary=b, at="08:00:00", status="FAILED"))
    add(con, "transfers", transfer("T0", side="IN", sharer=a, beneficiary=b, at="08:00:00"))
    add(con, "transfers", transfer("T2", sharer=b, beneficiary=a, at="09:00:00"))
    ctx = context(con)
    rt.s13_cycle(con, ctx)
    assert findings(con, "S13") == []


def test_the_shortest_then_earliest_cycle_is_named_once():
    a, b, c = p(1), p(2), p(3)
    out = cycle_con([
        ("T1", a, b, 3, "10:00:00"), ("T2", b, c, 2, "10:00:00"),   # a→b→c …
        ("T3", a, c, 2, "08:00:00"),                                   # a→c directly, later start
        ("T4", a, c, 1, "08:00:00"),
        ("T9", c, a, 0, "10:00:00"),                                   # … →a closes both
    ])
    assert list(out) == ["T9"]
    assert "cycle of 2" in out["T9"] and "(T3 " in out["T9"] and "T1" not in out["T9"]


def test_a_cycle_through_a_busy_graph_is_found():
    # A hub sending to many, only one of whom sends back to its sender chain.
    hub = p(0)
    edges = [(f"H{i}", hub, p(100 + i), 3, f"10:{i:02d}:00") for i in range(50)]
    edges += [(f"B{i}", p(100 + i), p(200 + i), 2, "10:00:00") for i in range(50)]
    edges += [("C1", p(200 + 7), hub, 0, "12:00:00"), ("C2", p(200 + 8), p(300), 0, "12:00:00")]
    out = cycle_con(edges)
    assert list(out) == ["C1"]
    assert "cycle of 3" in out["C1"] and "(H7 " in out["C1"]


def test_a_transfer_id_repeated_by_another_province_does_not_share_the_cycle():
    # T9 closes a→b→a; another province delivers an unrelated OUT record also named T9.
    a, b, x, y = p(1), p(2), "32000000000000000011", "32000000000000000012"
    con = warehouse()
    add(con, "transfers", transfer("T1", sharer=a, beneficiary=b, at="10:00:00", day=PREV), PREV)
    add(con, "transfers", [transfer("T9", sharer=b, beneficiary=a, at="09:00:00"),
                           transfer("T9", sharer=x, beneficiary=y, at="09:30:00")])
    ctx = context(con)
    rt.s13_cycle(con, ctx)
    (f,) = findings(con, "S13")
    assert f["record_id"] == "T9" and f["province"] == "44" and f["sharer_psn_no"] == b
