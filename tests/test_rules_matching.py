"""rules.md §5 two-sided matching X01-X04, all provinces of D together."""
from datetime import timedelta
from decimal import Decimal

from transforms import rules_matching
from tests.builders import BENEFICIARY, SHARER, add, both_sides, context, findings, transfer, ts, warehouse


def match(rows):
    con = warehouse()
    add(con, "transfers", rows)
    ctx = context(con)
    rules_matching.run(con, ctx)
    return con


def codes(con):
    return sorted((f["rule_code"], f["record_id"]) for f in findings(con))


def test_both_sides_alike_match_cleanly():
    con = match(both_sides("T1") + both_sides("T2", status="FAILED"))
    assert findings(con) == []


def test_out_without_in_is_x01_in_the_out_files_province():
    con = match([transfer("T1", side="OUT")])
    (f,) = findings(con, "X01")
    assert (f["record_id"], f["province"], f["amount"]) == ("T1", "44", Decimal("500.00"))
    assert f["source_file"].endswith("/44/transfers.csv")


def test_in_without_out_is_x02_in_the_in_files_province():
    con = match([transfer("T1", side="IN")])
    (f,) = findings(con, "X02")
    assert (f["record_id"], f["province"], f["dataset"]) == ("T1", "41", "transfers")


def test_failed_records_are_matched_too():
    con = match([transfer("T1", side="OUT", status="FAILED"), transfer("T2", side="IN", status="FAILED")])
    assert codes(con) == [("X01", "T1"), ("X02", "T2")]


def test_amounts_differing_by_one_fen_is_x03_in_the_out_province():
    con = match([transfer("T1", side="OUT", amount="500.00"), transfer("T1", side="IN", amount="500.01")])
    (f,) = findings(con)
    assert (f["rule_code"], f["province"]) == ("X03", "44")
    assert "500.00" in f["detail"] and "500.01" in f["detail"]


def test_each_compared_field_differing_is_x04():
    changes = {
        "relation_id": "R2", "sharer_psn_no": "44000000000000000099",
        "beneficiary_psn_no": "41000000000000000099", "sharer_province": "45",
        "beneficiary_province": "42", "status": "FAILED", "transfer_time": ts("10:00:01"),
    }
    for field, value in changes.items():
        out, in_ = both_sides("T1")
        in_[field] = value
        con = match([out, in_])
        assert codes(con) == [("X04", "T1")], field
        (f,) = findings(con)
        assert f["province"] == "44" and field in f["detail"], field


def test_x04_detail_lists_every_differing_field():
    out, in_ = both_sides("T1")
    in_.update(status="FAILED", relation_id="R2")
    (f,) = findings(match([out, in_]))
    assert "relation_id OUT R1 vs IN R2" in f["detail"] and "status OUT SUCCESS vs IN FAILED" in f["detail"]


def test_x04_detail_shows_the_fraction_of_a_second_that_differs():
    """The detail gives the values compared: half a second apart must not read alike."""
    out, in_ = both_sides("T1")
    in_["transfer_time"] = ts("10:00:00") + timedelta(microseconds=500_000)
    (f,) = findings(match([out, in_]))
    assert "transfer_time OUT 2026-11-20 10:00:00 vs IN 2026-11-20 10:00:00.500000" in f["detail"]


def test_amount_and_field_mismatch_can_both_fire():
    out, in_ = both_sides("T1")
    in_.update(amount=Decimal("499.99"), transfer_time=ts("11:00:00"))
    con = match([out, in_])
    assert codes(con) == [("X03", "T1"), ("X04", "T1")]


def test_matching_is_across_provinces_not_within_a_file():
    # OUT in Guangdong's file, IN in Henan's file: one pair, no finding.
    out, in_ = both_sides("T1", sharer=SHARER, beneficiary=BENEFICIARY)
    assert out["file_province"] == "44" and in_["file_province"] == "41"
    assert findings(match([out, in_])) == []


def test_other_dates_are_not_matched():
    from datetime import timedelta
    from tests.builders import D
    con = warehouse()
    add(con, "transfers", transfer("T1", side="OUT"))
    add(con, "transfers", transfer("T1", side="IN", day=D - timedelta(days=1)), D - timedelta(days=1))
    ctx = context(con)
    rules_matching.run(con, ctx)
    assert codes(con) == [("X01", "T1")]


def test_an_in_side_delivered_twice_gives_one_finding_per_out_record():
    # T1's IN side comes from Henan (amount 600) and again from Jiangsu (amount 700,
    # beneficiary_province 32): one X03 and one X04 on the OUT record, naming both.
    out, in_ = both_sides("T1")
    in_.update(amount=Decimal("600.00"))
    stray = dict(in_, file_province="32", beneficiary_province="32", amount=Decimal("700.00"))
    con = match([out, in_, stray])
    assert codes(con) == [("X03", "T1"), ("X04", "T1")]
    x03, x04 = findings(con)
    assert x03["province"] == "44" and x03["amount"] == Decimal("500.00")
    assert "600.00 (41)" in x03["detail"] and "700.00 (32)" in x03["detail"]
    assert "beneficiary_province OUT 41 vs IN 32" in x04["detail"]
