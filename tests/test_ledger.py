"""The quota ledger of rules.md §6, at its boundaries, and fast path == reference engine."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import (BENEFICIARY, D, SHARER, add, balance, context, findings,
                            institution, record_ids, settlement, transfer, ts, warehouse)
from transforms import ledger, rules_persons, rules_settlements

SHARER2 = "44000000000000000003"
SHARER3 = "11000000000000000005"
D1 = D + timedelta(days=1)
GEN = f"G:{BENEFICIARY}:{SHARER}"


def run_day(con, day=D, genesis=True, mode="hybrid"):
    ctx = context(con, day, genesis)
    rules_persons.run(con, ctx)        # S07 holds, as in the nightly order
    rules_settlements.run(con, ctx)
    ledger.run(con, ctx, mode=mode)
    return ctx


def both_modes(build, days=((D, True),)):
    """Run the same inputs through both modes; assert equal; return the hybrid warehouse."""
    snaps = []
    for mode in ("reference", "hybrid"):
        con = warehouse()
        build(con)
        for day, genesis in days:
            run_day(con, day, genesis, mode)
        snaps.append((snapshot(con), sorted((f["rule_code"], f["record_id"], f["detail"])
                                            for f in findings(con))))
    assert snaps[0] == snaps[1]
    return con


def snapshot(con):
    return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
            for t in ledger.OUTPUT_TABLES}


def rows(con, sql, *params):
    return con.execute(sql, list(params)).fetchall()


def lots(con, day=D):
    return dict(rows(con, "SELECT lot_id, remaining FROM lots WHERE business_date = ?", day))


def consumed(con, setl_id):
    return rows(con, "SELECT lot_id, amount FROM consumptions WHERE setl_id = ? ORDER BY seq", setl_id)


def outcome(con, setl_id, day=D):
    return rows(con, "SELECT outcome FROM settlement_outcomes WHERE setl_id = ? AND business_date = ?",
                setl_id, day)[0][0]


def base(con, day=D):
    add(con, "institutions", institution(day=day), day)


def in_lot(con, tid, amount, at, sharer=SHARER, day=D, status="SUCCESS"):
    add(con, "transfers", transfer(tid, amount, side="IN", sharer=sharer, at=at, day=day,
                                   status=status), day)


def dissolve_event(con, event_id, at, sharer=SHARER, valid=True, day=D):
    con.execute("INSERT INTO relation_events VALUES (?, ?, 'R1', 'DISSOLVE', ?, ?, ?, ?)",
                [day, event_id, sharer, BENEFICIARY, ts(at, day), valid])


# ---------------------------------------------------------------- FIFO and S18

def test_fifo_genesis_lots_by_sharer_then_transfers_and_spend_crosses_lots():
    def build(con):
        base(con)
        add(con, "balances", [balance(BENEFICIARY, "QUOTA", "100.00", "0", sharer=SHARER2),
                              balance(BENEFICIARY, "QUOTA", "50.00", "0", sharer=SHARER)])
        in_lot(con, "T2", "300.00", "09:00:00")
        in_lot(con, "T1", "200.00", "09:00:00")
        add(con, "settlements", settlement("S1", "400.00", at="10:00:00"))
    con = both_modes(build)
    assert consumed(con, "S1") == [(GEN, Decimal("50.00")),
                                   (f"G:{BENEFICIARY}:{SHARER2}", Decimal("100.00")),
                                   ("T1", Decimal("200.00")), ("T2", Decimal("50.00"))]
    assert lots(con)["T2"] == Decimal("250.00") and lots(con)[GEN] == Decimal("0.00")
    assert outcome(con, "S1") == "SETTLED"


def test_transfer_at_the_same_second_ranks_before_the_settlement():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "10:00:00")
        add(con, "settlements", settlement("S1", "100.00", at="10:00:00"))
    con = both_modes(build)
    assert outcome(con, "S1") == "SETTLED"


def test_s18_exactly_the_remaining_quota_passes_and_a_fen_more_fails_consuming_nothing():
    def build(con):
        base(con)
        in_lot(con, "T1", "300.00", "09:00:00")
        add(con, "settlements", [settlement("S1", "200.00", at="10:00:00"),
                                 settlement("S2", "100.01", at="11:00:00"),
                                 settlement("S3", "100.00", at="12:00:00")])
    con = both_modes(build)
    assert record_ids(con, "S18") == ["S2"]
    assert outcome(con, "S2") == "HELD" and consumed(con, "S2") == []
    assert outcome(con, "S3") == "SETTLED" and lots(con)["T1"] == Decimal("0.00")
    (f,) = findings(con, "S18")
    assert f["amount"] == Decimal("100.01") and "100.00" in f["detail"]


def test_a_later_transfer_does_not_fund_an_earlier_settlement():
    def build(con):
        base(con)
        add(con, "settlements", settlement("S1", "10.00", at="09:00:00"))
        in_lot(con, "T1", "100.00", "10:00:00")
    con = both_modes(build)
    assert record_ids(con, "S18") == ["S1"] and lots(con)["T1"] == Decimal("100.00")


def test_failed_in_transfer_creates_no_lot():
    con = warehouse()
    base(con)
    in_lot(con, "T1", "100.00", "09:00:00", status="FAILED")
    run_day(con)
    assert lots(con) == {}


def test_held_settlement_consumes_nothing():
    def build(con):
        base(con)
        in_lot(con, "T1", "300.00", "09:00:00")
        add(con, "settlements", [settlement("S1", "100.00", expense_type="CASH_WITHDRAWAL"),
                                 settlement("S2", "100.00", personal_burden="50.00")])
    con = both_modes(build)
    assert outcome(con, "S1") == outcome(con, "S2") == "HELD"
    assert lots(con)["T1"] == Decimal("300.00") and findings(con, "S18") == []


# ---------------------------------------------------------------- refunds

def _spent(con):
    base(con)
    in_lot(con, "T1", "100.00", "08:00:00")
    in_lot(con, "T2", "100.00", "08:30:00")
    add(con, "settlements", settlement("S1", "150.00", at="09:00:00"))


def refund(setl_id, orig, amount, at="15:00:00", day=D):
    return settlement(setl_id, amount, status="REFUND", orig_setl_id=orig, at=at, day=day)


def test_partial_refund_goes_to_the_most_recently_consumed_lot_first():
    def build(con):
        _spent(con)
        add(con, "settlements", [refund("R1", "S1", "30.00", at="15:00:00"),
                                 refund("R2", "S1", "40.00", at="16:00:00")])
    con = both_modes(build)
    assert rows(con, "SELECT setl_id, lot_id, amount, to_sharer FROM refund_returns ORDER BY setl_id, lot_id") == [
        ("R1", "T2", Decimal("30.00"), False),
        ("R2", "T1", Decimal("20.00"), False), ("R2", "T2", Decimal("20.00"), False)]
    assert lots(con) == {"T1": Decimal("20.00"), "T2": Decimal("100.00")}
    assert outcome(con, "R1") == outcome(con, "R2") == "REFUNDED"


def test_full_refund_then_any_more_is_s20():
    def build(con):
        _spent(con)
        add(con, "settlements", [refund("R1", "S1", "150.00"), refund("R2", "S1", "0.01", at="16:00:00")])
    con = both_modes(build)
    assert lots(con) == {"T1": Decimal("100.00"), "T2": Decimal("100.00")}
    assert record_ids(con, "S20") == ["R2"] and "fully refunded" in findings(con, "S20")[0]["detail"]


def test_over_refund_is_s20_and_gives_nothing_back():
    def build(con):
        _spent(con)
        add(con, "settlements", [refund("R1", "S1", "100.00"), refund("R2", "S1", "50.01", at="16:00:00")])
    con = both_modes(build)
    assert record_ids(con, "S20") == ["R2"] and outcome(con, "R2") == "HELD"
    assert rows(con, "SELECT count(*) FROM refund_returns WHERE setl_id = 'R2'") == [(0,)]


def test_refund_of_a_held_or_unknown_settlement_or_one_not_yet_settled_is_s20():
    def build(con):
        _spent(con)
        add(con, "settlements", [settlement("S9", "10.00", personal_burden="5.00", at="09:30:00"),
                                 refund("R1", "S9", "5.00"), refund("R2", "NOPE", "5.00"),
                                 refund("R3", "S4", "5.00", at="10:00:00"),
                                 settlement("S4", "10.00", at="11:00:00")])
    con = both_modes(build)
    assert record_ids(con, "S20") == ["R1", "R2", "R3"]


def test_refund_of_another_persons_settlement_is_s20_and_held():
    """rules.md §6: a REFUND is valid only if orig_setl_id is a settled NORMAL settlement
    "of the same psn_no"; S20: "refund ... of another person's settlement"."""
    other = "41000000000000000009"
    def build(con):
        _spent(con)
        add(con, "settlements", settlement("R1", "10.00", psn_no=other, status="REFUND",
                                           orig_setl_id="S1", at="15:00:00"))
    con = both_modes(build)
    assert record_ids(con, "S20") == ["R1"]
    assert outcome(con, "R1") == "HELD"
    assert rows(con, "SELECT count(*) FROM refund_returns") == [(0,)]


def test_refund_of_an_earlier_dates_settlement_and_lots_carried_to_the_next_day():
    def build(con):
        _spent(con)
        base(con, D1)
        add(con, "settlements", [refund("R1", "S1", "60.00", day=D1)], D1)
        in_lot(con, "T3", "5.00", "07:00:00", day=D1)
    con = both_modes(build, days=((D, True), (D1, False)))
    assert lots(con, D) == {"T1": Decimal("0.00"), "T2": Decimal("50.00")}
    assert lots(con, D1) == {"T1": Decimal("10.00"), "T2": Decimal("100.00"), "T3": Decimal("5.00")}
    assert outcome(con, "R1", D1) == "REFUNDED"


D2, D3 = D + timedelta(days=2), D + timedelta(days=3)


def test_an_emptied_lot_is_not_carried_forward_yet_a_refund_days_later_refills_it():
    def build(con):
        _spent(con)                                    # S1 empties T1 and leaves T2 50.00
        for day in (D1, D2):
            base(con, day)
        add(con, "settlements", [refund("R1", "S1", "60.00", day=D2)], D2)
    con = both_modes(build, days=((D, True), (D1, False), (D2, False)))
    assert lots(con, D1) == {"T2": Decimal("50.00")}   # T1 emptied on D: its row of D stands
    assert rows(con, "SELECT lot_id, amount, to_sharer FROM refund_returns ORDER BY lot_id") == [
        ("T1", Decimal("10.00"), False), ("T2", Decimal("50.00"), False)]
    assert lots(con, D2) == {"T1": Decimal("10.00"), "T2": Decimal("100.00")}


def test_a_dissolution_closes_an_emptied_lot_and_a_later_refund_to_it_goes_to_the_sharer():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "08:00:00", sharer=SHARER2)
        in_lot(con, "T2", "100.00", "08:30:00", sharer=SHARER)
        add(con, "settlements", settlement("S1", "100.00", at="09:00:00"))   # empties T1
        for day in (D1, D2, D3):
            base(con, day)
        dissolve_event(con, "E1", "12:00:00", sharer=SHARER2, day=D2)
        add(con, "settlements", [refund("R1", "S1", "40.00", day=D3)], D3)
    con = both_modes(build, days=((D, True), (D1, False), (D2, False), (D3, False)))
    assert rows(con, "SELECT business_date, event_id, lot_id, sharer_psn_no, amount "
                     "FROM dissolution_returns ORDER BY business_date") == [
        (D2, "E1", "T1", SHARER2, Decimal("0.00")), (D3, "R1", "T1", SHARER2, Decimal("40.00"))]
    assert rows(con, "SELECT lot_id, amount, to_sharer FROM refund_returns") == [
        ("T1", Decimal("40.00"), True)]
    assert lots(con, D3) == {"T2": Decimal("100.00")}


def test_a_lot_emptied_again_after_a_refill_is_dormant_from_its_latest_emptying():
    def build(con):
        _spent(con)                                    # T1 0.00, T2 50.00
        base(con, D1)
        add(con, "settlements", [refund("R1", "S1", "60.00", at="10:00:00", day=D1),   # T1 10, T2 100
                                 settlement("S2", "110.00", at="11:00:00", day=D1)], D1)  # empties both
        base(con, D2)
        add(con, "settlements", [refund("R2", "S2", "30.00", day=D2)], D2)
    con = both_modes(build, days=((D, True), (D1, False), (D2, False)))
    assert lots(con, D1) == {"T1": Decimal("0.00"), "T2": Decimal("0.00")}
    assert lots(con, D2) == {"T2": Decimal("30.00")}   # S2 took T1 10 then T2 100: T2 first back


def test_refunds_of_one_original_on_later_dates_add_up_across_the_dates():
    """rules.md §6: a REFUND is valid only if wallet_pay "does not exceed what is still
    unrefunded" of the original, whichever earlier dates refunded part of it."""
    def build(con):
        _spent(con)                                    # S1 150.00: T1 100.00, T2 50.00
        for day in (D1, D2, D3):
            base(con, day)
        add(con, "settlements", [refund("R1", "S1", "100.00", day=D1)], D1)
        add(con, "settlements", [refund("R2", "S1", "50.00", day=D3),
                                 refund("R3", "S1", "0.01", at="16:00:00", day=D3)], D3)
    con = both_modes(build, days=((D, True), (D1, False), (D2, False), (D3, False)))
    assert outcome(con, "R1", D1) == outcome(con, "R2", D3) == "REFUNDED"
    assert record_ids(con, "S20") == ["R3"] and "fully refunded" in findings(con, "S20")[0]["detail"]
    assert lots(con, D3) == {"T1": Decimal("100.00"), "T2": Decimal("100.00")}


def test_a_warehouse_that_carried_its_emptied_lots_is_taken_over_without_losing_one():
    con = warehouse()
    _spent(con)                                        # T1 emptied on D
    for day in (D1, D2):
        base(con, day)
    add(con, "settlements", [refund("R1", "S1", "60.00", day=D2)], D2)
    run_day(con, D, True)
    con.execute("DELETE FROM emptied_lots")            # as written before emptied_lots existed
    run_day(con, D1, False)
    assert lots(con, D1) == {"T1": Decimal("0.00"), "T2": Decimal("50.00")}
    assert rows(con, "SELECT business_date, lot_id FROM emptied_lots") == [(D1, "T1")]
    run_day(con, D2, False)
    assert lots(con, D2) == {"T1": Decimal("10.00"), "T2": Decimal("100.00")}


def test_rerun_of_d_starts_from_d_minus_1_and_ignores_later_dates():
    con = warehouse()
    _spent(con)
    base(con, D1)
    add(con, "settlements", [refund("R1", "S1", "150.00", day=D1)], D1)
    run_day(con, D, True)
    run_day(con, D1, False)
    before = snapshot(con)
    run_day(con, D, True)      # re-run D: D1's refund must not be seen
    assert lots(con, D) == {"T1": Decimal("0.00"), "T2": Decimal("50.00")}
    run_day(con, D1, False)
    assert snapshot(con) == before


def test_refund_to_a_lot_closed_by_dissolution_goes_back_to_the_sharer():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "08:00:00", sharer=SHARER)
        in_lot(con, "T2", "100.00", "08:30:00", sharer=SHARER2)
        add(con, "settlements", [settlement("S1", "150.00", at="09:00:00"),
                                 refund("R1", "S1", "120.00", at="15:00:00")])
        dissolve_event(con, "E1", "12:00:00", sharer=SHARER2)
    con = both_modes(build)
    assert rows(con, "SELECT lot_id, amount, to_sharer FROM refund_returns ORDER BY lot_id") == [
        ("T1", Decimal("70.00"), False), ("T2", Decimal("50.00"), True)]
    assert rows(con, "SELECT event_id, lot_id, sharer_psn_no, amount FROM dissolution_returns "
                     "ORDER BY event_id") == [("E1", "T2", SHARER2, Decimal("50.00")),
                                              ("R1", "T2", SHARER2, Decimal("50.00"))]
    assert lots(con) == {"T1": Decimal("70.00")}


def test_refund_on_a_later_day_to_a_lot_dissolved_earlier_goes_to_the_sharer():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "08:00:00", sharer=SHARER2)
        add(con, "settlements", settlement("S1", "40.00", at="09:00:00"))
        dissolve_event(con, "E1", "12:00:00", sharer=SHARER2)
        base(con, D1)
        add(con, "settlements", [refund("R1", "S1", "40.00", day=D1)], D1)
    con = both_modes(build, days=((D, True), (D1, False)))
    assert rows(con, "SELECT lot_id, amount, to_sharer FROM refund_returns") == [
        ("T1", Decimal("40.00"), True)]
    assert rows(con, "SELECT sharer_psn_no, amount FROM dissolution_returns WHERE business_date = ?",
                D1) == [(SHARER2, Decimal("40.00"))]


# ---------------------------------------------------------------- dissolutions

def test_dissolution_returns_the_remaining_of_every_lot_of_that_sharer_only():
    def build(con):
        base(con)
        add(con, "balances", balance(BENEFICIARY, "QUOTA", "30.00", "0", sharer=SHARER))
        in_lot(con, "T1", "100.00", "08:00:00", sharer=SHARER)
        in_lot(con, "T2", "100.00", "08:30:00", sharer=SHARER2)
        add(con, "settlements", settlement("S1", "50.00", at="09:00:00"))
        dissolve_event(con, "E1", "12:00:00", sharer=SHARER)
        dissolve_event(con, "E2", "12:00:00", sharer=SHARER2, valid=False)   # S21: no effect
        in_lot(con, "T3", "10.00", "13:00:00", sharer=SHARER)                # after: a new lot
    con = both_modes(build)
    assert rows(con, "SELECT lot_id, amount FROM dissolution_returns ORDER BY lot_id") == [
        (GEN, Decimal("0.00")), ("T1", Decimal("80.00"))]
    assert lots(con) == {"T2": Decimal("100.00"), "T3": Decimal("10.00")}


def test_settlement_after_dissolution_in_the_same_second_cannot_use_it_but_before_can():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "08:00:00")
        dissolve_event(con, "E1", "12:00:00")
        add(con, "settlements", [settlement("S1", "60.00", at="12:00:00"),   # NORMAL ranks first
                                 settlement("S2", "10.00", at="12:00:01")])
    con = both_modes(build)
    assert outcome(con, "S1") == "SETTLED" and record_ids(con, "S18") == ["S2"]
    assert rows(con, "SELECT amount FROM dissolution_returns") == [(Decimal("40.00"),)]


def test_rerun_replaces_the_days_rows():
    con = warehouse()
    _spent(con)
    run_day(con)
    first = snapshot(con)
    run_day(con)
    assert snapshot(con) == first


# ---------------------------------------------------------------- property: fast + slow == reference

BENS = ("41000000000000000002", "41000000000000000004", "42000000000000000006")
SHARERS = (SHARER, SHARER2, SHARER3)
TIMES = ("08:00:00", "09:00:00", "10:00:00", "12:00:00")
fen = st.integers(min_value=1, max_value=300)


def _yuan(f: int) -> str:
    return f"{f // 100}.{f % 100:02d}"


day_events = st.fixed_dictionaries({
    "lots": st.lists(st.tuples(st.sampled_from(BENS), st.sampled_from(SHARERS), fen,
                               st.sampled_from(TIMES), st.booleans()), max_size=6),
    "setl": st.lists(st.tuples(st.sampled_from(BENS), fen, st.sampled_from(TIMES), st.booleans()),
                     max_size=7),
    "refunds": st.lists(st.tuples(st.integers(0, 13), fen, st.sampled_from(TIMES)), max_size=3),
    "diss": st.lists(st.tuples(st.sampled_from(BENS), st.sampled_from(SHARERS),
                               st.sampled_from(TIMES), st.booleans()), max_size=2),
})


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genesis=st.lists(st.tuples(st.sampled_from(BENS), st.sampled_from(SHARERS), fen),
                        max_size=4, unique_by=lambda t: (t[0], t[1])),
       days=st.lists(day_events, min_size=1, max_size=3))
def test_fast_path_plus_sequential_engine_equals_reference(genesis, days):
    def build(con):
        add(con, "balances", [balance(b, "QUOTA", _yuan(f), "0", sharer=s) for b, s, f in genesis])
        setl_ids = []
        for k, ev in enumerate(days):
            day = D + timedelta(days=k)
            base(con, day)
            add(con, "transfers", [
                transfer(f"T{k}_{i}", _yuan(f), side="IN", sharer=s, beneficiary=b, at=t, day=day,
                         status="SUCCESS" if ok else "FAILED")
                for i, (b, s, f, t, ok) in enumerate(ev["lots"])], day)
            rows_ = []
            for i, (b, f, t, clean) in enumerate(ev["setl"]):
                sid = f"S{k}_{i}"
                setl_ids.append((sid, b))
                rows_.append(settlement(sid, _yuan(f), psn_no=b, at=t, day=day,
                                        personal_burden=None if clean else "0.00"))
            for i, (j, f, t) in enumerate(ev["refunds"]):
                orig, b = setl_ids[j] if j < len(setl_ids) else ("UNKNOWN", BENS[0])
                rows_.append(settlement(f"R{k}_{i}", _yuan(f), psn_no=b, status="REFUND",
                                        orig_setl_id=orig, at=t, day=day))
            add(con, "settlements", rows_, day)
            for i, (b, s, t, valid) in enumerate(ev["diss"]):
                con.execute("INSERT INTO relation_events VALUES (?, ?, 'R', 'DISSOLVE', ?, ?, ?, ?)",
                            [day, f"E{k}_{i}", s, b, ts(t, day), valid])
    con = both_modes(build, days=[(D + timedelta(days=k), k == 0) for k in range(len(days))])
    # The quota identity holds on every day (spec-readings item 12).
    for k in range(len(days)):
        day = D + timedelta(days=k)
        ctx = context(con, day, k == 0)
        from transforms.clearing import invariants
        quota = [i for i in invariants(con, ctx) if i["name"] == "quota"][0]
        assert quota["passed"], quota


# ---------------------------------------------------------------- review: edge cases of the brief

def test_refund_in_the_same_second_as_its_original_is_valid():
    def build(con):
        base(con)
        in_lot(con, "T1", "100.00", "08:00:00")
        add(con, "settlements", [settlement("S1", "60.00", at="09:00:00"),
                                 refund("R1", "S1", "60.00", at="09:00:00")])   # NORMAL ranks first
    con = both_modes(build)
    assert outcome(con, "R1") == "REFUNDED" and record_ids(con, "S20") == []
    assert lots(con) == {"T1": Decimal("100.00")}


def test_two_sharers_one_dissolved_then_refund_of_an_earlier_days_spend_across_both():
    def build(con):
        base(con)
        add(con, "balances", balance(BENEFICIARY, "QUOTA", "50.00", "0", sharer=SHARER2))
        in_lot(con, "T1", "100.00", "08:00:00", sharer=SHARER)
        add(con, "settlements", [settlement("S1", "120.00", at="09:00:00"),  # 50 genesis, 70 T1
                                 refund("R0", "S1", "10.00", at="09:00:00")])  # back to T1
        base(con, D1)
        dissolve_event(con, "E1", "10:00:00", sharer=SHARER, day=D1)         # closes T1 (40)
        add(con, "settlements", [refund("R1", "S1", "110.00", at="11:00:00", day=D1),
                                 settlement("S2", "40.00", at="12:00:00", day=D1)], D1)
    con = both_modes(build, days=((D, True), (D1, False)))
    g2 = f"G:{BENEFICIARY}:{SHARER2}"
    assert rows(con, "SELECT lot_id, amount, to_sharer FROM refund_returns "
                     "WHERE setl_id = 'R1' ORDER BY lot_id") == [
        (g2, Decimal("50.00"), False), ("T1", Decimal("60.00"), True)]
    assert lots(con, D1) == {g2: Decimal("10.00")}
    assert outcome(con, "S2", D1) == "SETTLED" and findings(con) == []


# ------------------------------------ rulings of 2026-12-02: the whole night on a DISSOLVE

def night(con, *, established_signed=True, dissolves=(), closing="0.00"):
    """A sharer, a beneficiary, relation R1 established at 08:00, 300.00 sent at 10:00,
    100.00 spent at 12:00, the given DISSOLVE rows at 20:00 and the delivered QUOTA
    closing of the pair; every step of the nightly reconciliation runs."""
    from tests.builders import both_sides, dissolve, establish, person
    from transforms import clearing
    from transforms.reconcile import reconcile
    base(con)
    add(con, "persons", [person(SHARER), person(BENEFICIARY, birth="19550101", insutype="390")])
    add(con, "relationships", [establish("E1", signed=established_signed, at="08:00:00")]
        + [dissolve(eid, at="20:00:00", **kw) for eid, kw in dissolves])
    add(con, "transfers", both_sides("T1", amount="300.00", at="10:00:00"))
    add(con, "settlements", settlement("S1", "100.00", at="12:00:00"))
    add(con, "balances", [balance(SHARER, opening="10000.00", closing="9700.00"),
                          balance(BENEFICIARY, "QUOTA", "0.00", closing, sharer=SHARER)])
    ctx = context(con)
    reconcile(con, ctx)
    return {i["name"]: i["passed"] for i in clearing.invariants(con, ctx)}


def test_dissolve_of_an_invalid_relationship_closes_its_lots_and_returns_the_quota():
    """rules.md §6: "DISSOLVE of an active relationship (valid or not, see §2): every lot
    of that sharer in that beneficiary's wallet is closed; its remaining quota goes back
    to the sharer"."""
    con = warehouse()
    invariants = night(con, established_signed=False, dissolves=[("X1", {})], closing="0.00")
    assert sorted({f["rule_code"] for f in findings(con)}) == ["S03", "S05"]   # no S21, no B01
    assert rows(con, "SELECT event_id, lot_id, amount FROM dissolution_returns") == [
        ("X1", "T1", Decimal("200.00"))]
    assert lots(con) == {}
    assert outcome(con, "S1") == "SETTLED"
    assert invariants == {"files": True, "quota": True, "clearing": True, "settlements": True}


def test_a_delivered_balance_still_holding_the_dissolved_quota_is_b01():
    con = warehouse()
    night(con, established_signed=False, dissolves=[("X1", {})], closing="200.00")
    (f,) = findings(con, "B01")
    assert f["amount"] == Decimal("200.00")


def test_dissolve_naming_other_persons_is_s21_and_closes_no_lot():
    """rules.md §6: a DISSOLVE "whose sharer_psn_no or beneficiary_psn_no differ from the
    relationship's, gets S21 and does nothing"."""
    con = warehouse()
    invariants = night(con, closing="200.00", dissolves=[
        ("X1", {"beneficiary": SHARER}),                          # the sharer written twice
        ("X2", {"sharer": BENEFICIARY, "beneficiary": SHARER}),   # the two persons swapped
    ])
    assert record_ids(con, "S21") == ["X1", "X2"]
    assert sorted({f["rule_code"] for f in findings(con)}) == ["S21"]
    assert rows(con, "SELECT count(*) FROM dissolution_returns") == [(0,)]
    assert lots(con) == {"T1": Decimal("200.00")}
    assert all(invariants.values())
