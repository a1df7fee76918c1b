"""report.html (flows/report_html.py) and its data (auditview/).

What the page says about a run is tested on the pages a real pipeline run
published (the session fixture `real_run` of tests/conftest.py: a generated inbox,
a PARTIAL date re-run, a STALE date). The evidence, chains and the resistance to
hostile text are tested on a small hand-built warehouse (tests/builders.py) whose
findings carry such text, rendered with a summary.json the real run wrote.
"""
from __future__ import annotations

import html
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import polars as pl
import pytest

from contracts.codes import PROVINCE_NAMES, RULES
from tests.builders import (BENEFICIARY, SHARER, D, add, both_sides, establish, person, settlement,
                            transfer, warehouse)
from auditview import AuditConfig, day_over_day, mask_certno, mask_text, report_data
from transforms.context import RunContext
from transforms.findings import exception_id

P = D - timedelta(days=1)                 # the previous processed date
THIRD = "33000000000000000003"            # a third person (Zhejiang), forwards and cycles
FOURTH = "32000000000000000004"
EVIL = '</script><img src=x onerror="alert(1)"><script>alert(2)</script>'
FORMULA = '=HYPERLINK("http://evil.example/x","click")'
CERTNO = "440106198001011234"             # looks like a resident ID: must never appear in full


def _finding(d: date, rule: str, province: str, record_id: str, *, dataset: str,
             sharer=None, beneficiary=None, amount=None, detail="", source_file=None,
             source_row=None) -> dict:
    r = RULES[rule]
    return {"exception_id": exception_id(rule, d.isoformat(), province, record_id),
            "business_date": d, "rule_code": rule, "rule_name": r.name, "severity": r.severity,
            "province": province, "dataset": dataset, "record_id": record_id,
            "sharer_psn_no": sharer, "beneficiary_psn_no": beneficiary,
            "amount": Decimal(amount) if amount is not None else None, "detail": detail,
            "source_file": source_file, "source_row": source_row}


def build_sample():
    """(con, ctx, summary, exceptions, settlement, positions) of date D, with D-1 processed."""
    con = warehouse()
    ppl = [person(SHARER, "19600101"), person(BENEFICIARY, "19900101", insutype="390"),
           person(THIRD, "19650101"), person(FOURTH, "19700101")]
    for day in (P, D):
        add(con, "persons", [dict(p, as_of=day) for p in ppl], day)
    add(con, "relationships", [establish("E1", "R1"),
                               establish("E2", "R2", sharer=BENEFICIARY, beneficiary=THIRD,
                                         relation_code="COUSIN"),
                               establish("E3", "R3", sharer=THIRD, beneficiary=SHARER,
                                         relation_code="SIBLING")], P)
    con.execute("INSERT INTO relation_events SELECT business_date, event_id, relation_id, event_type, "
                "sharer_psn_no, beneficiary_psn_no, event_time, event_id <> 'E2' FROM relationships")
    # D: the sharer sends five transfers (T1 over the limit, T5 the 4th+ of the day)
    tr = []
    for i, (amt, at) in enumerate([("2500.00", "09:00:00"), ("300.00", "09:10:00"),
                                   ("200.00", "09:20:00"), ("100.00", "09:30:00"),
                                   ("150.00", "09:40:00")], start=1):
        tr += both_sides(f"T{i}", amount=amt, at=at)
    # cycle SHARER -> BENEFICIARY (T1) -> THIRD (T6) -> SHARER (T7)
    tr += both_sides("T6", amount="400.00", sharer=BENEFICIARY, beneficiary=THIRD,
                     relation_id="R2", at="10:00:00")
    tr += both_sides("T7", amount="350.00", sharer=THIRD, beneficiary=SHARER,
                     relation_id="R3", at="11:00:00")
    tr.append(transfer("T8", amount="80.00", side="OUT", sharer=FOURTH, beneficiary=THIRD))
    add(con, "transfers", tr, D)
    add(con, "settlements", [settlement("S1", "120.00"),
                             settlement("S2", "60.00", expense_type="CASH_WITHDRAWAL"),
                             settlement("S3", "10.00", status="REFUND", orig_setl_id="NOPE")], D)
    con.execute("""INSERT INTO settlement_outcomes VALUES
        (DATE '2026-11-20', 'S1', ?, '41', 'NORMAL', 'OUTPATIENT', NULL, 120.00, 'SETTLED'),
        (DATE '2026-11-20', 'S2', ?, '41', 'NORMAL', 'CASH_WITHDRAWAL', NULL, 60.00, 'HELD'),
        (DATE '2026-11-20', 'S3', ?, '41', 'REFUND', 'OUTPATIENT', 'NOPE', 10.00, 'HELD')""",
                [BENEFICIARY] * 3)
    con.execute("""INSERT INTO lots VALUES
        (DATE '2026-11-20', 'T1', ?, '41', ?, '44', false, TIMESTAMP '2026-11-20 09:00:00', 'T1',
         2500.00, 2380.00)""", [BENEFICIARY, SHARER])
    con.execute("INSERT INTO consumptions VALUES (DATE '2026-11-20', 'S1', 'T1', 1, 120.00, '44', '41')")
    con.execute("""INSERT INTO quarantine VALUES (DATE '2026-11-20', '44', 'persons',
        '2026-11-20/44/persons.csv', 7, 'row:7', 'F04', 'certno: bad check character', ?)""",
                [json.dumps({"psn_no": "4400000000000000009", "certno": "44010619800101123"})])
    con.execute("""INSERT INTO file_loads VALUES (DATE '2026-11-20', '44', 'persons',
        '2026-11-20/44/persons.csv', 'ab', 'utf-8', 10, 9, 1, false, NULL, NULL)""")
    con.execute("""INSERT INTO balances VALUES (DATE '2026-11-20', '41', ?, 'QUOTA', ?, '44',
        0.00, 2300.00, '2026-11-20/41/balances.csv', 1)""", [BENEFICIARY, SHARER])

    f = []
    tf = "2026-11-20/44/transfers.csv"
    f.append(_finding(D, "S08", "44", "T1", dataset="transfers", sharer=SHARER, beneficiary=BENEFICIARY,
                      amount="2500.00", detail="amount 2500.00 > max 2000.00", source_file=tf, source_row=1))
    f.append(_finding(D, "S09", "44", "T4", dataset="transfers", sharer=SHARER, beneficiary=BENEFICIARY,
                      amount="100.00", detail="4th SUCCESS OUT transfer of the day (max 3)",
                      source_file=tf, source_row=7))
    f.append(_finding(D, "S09", "44", "T5", dataset="transfers", sharer=SHARER, beneficiary=BENEFICIARY,
                      amount="150.00", detail=EVIL, source_file=tf, source_row=9))
    f.append(_finding(D, "S13", "44", "T7", dataset="transfers", sharer=THIRD, beneficiary=SHARER,
                      amount="350.00",
                      detail=f"cycle {SHARER} -> {BENEFICIARY} -> {THIRD} -> {SHARER}",
                      source_file="2026-11-20/33/transfers.csv", source_row=3))
    f.append(_finding(D, "S12", "41", "T6", dataset="transfers", sharer=BENEFICIARY, beneficiary=THIRD,
                      amount="400.00", detail=f"received from upstream sharers {SHARER}",
                      source_file="2026-11-20/41/transfers.csv", source_row=2))
    f.append(_finding(D, "X01", "32", "T8", dataset="transfers", sharer=FOURTH, beneficiary=THIRD,
                      amount="80.00", detail=FORMULA, source_file="2026-11-20/32/transfers.csv",
                      source_row=1))
    f.append(_finding(D, "S14", "41", "S2", dataset="settlements", beneficiary=BENEFICIARY,
                      amount="60.00", detail="+expense_type CASH_WITHDRAWAL is not eligible",
                      source_file="2026-11-20/41/settlements.csv", source_row=2))
    f.append(_finding(D, "S20", "41", "S3", dataset="settlements", beneficiary=BENEFICIARY,
                      amount="10.00", detail="-refund of unknown settlement NOPE",
                      source_file="2026-11-20/41/settlements.csv", source_row=3))
    f.append(_finding(D, "F04", "44", "row:7", dataset="persons",
                      detail=f"@certno {CERTNO} has a bad check character",
                      source_file="2026-11-20/44/persons.csv", source_row=7))
    f.append(_finding(D, "B01", "41", f"{BENEFICIARY}:{SHARER}", dataset="balances",
                      sharer=SHARER, beneficiary=BENEFICIARY, amount="-80.00",
                      detail="delivered 2300.00, computed 2380.00",
                      source_file="2026-11-20/41/balances.csv", source_row=1))
    f.append(_finding(D, "F01", "54", "54", dataset="manifest", detail="province 54 delivered nothing"))
    prev = [
        _finding(P, "F01", "54", "54", dataset="manifest", detail="province 54 delivered nothing"),
        _finding(P, "B01", "41", f"{BENEFICIARY}:{SHARER}", dataset="balances", sharer=SHARER,
                 beneficiary=BENEFICIARY, amount="-5.00", detail="delivered 0.00, computed 5.00"),
        _finding(P, "F01", "65", "65", dataset="manifest", detail="province 65 delivered nothing"),
    ]
    add(con, "findings", prev + f)  # business_date of each dict wins over the default
    con.execute("INSERT INTO runs VALUES (DATE '2026-11-19', 'r1', 'COMPLETE', now()::TIMESTAMP, "
                "now()::TIMESTAMP, 'x', '{}')")

    exceptions = pl.from_arrow(con.sql("SELECT * FROM findings WHERE business_date = ? "
                                       "ORDER BY rule_code, province, record_id",
                                       params=[D]).to_arrow_table())
    counts = {}
    for r in f:
        counts[r["rule_code"]] = counts.get(r["rule_code"], 0) + 1
    summary = {
        "business_date": D.isoformat(), "status": "PARTIAL",
        "provinces_expected": ["32", "33", "41", "44", "54"],
        "provinces_delivered": ["32", "33", "41", "44"],
        "files": {"2026-11-20/44/persons.csv": {"rows_read": 10, "rows_loaded": 9, "rows_quarantined": 1}},
        "findings_per_rule": counts,
        "amounts": {"settled": "120.00", "held": "60.00", "refunded": "0.00"},
        "invariants": [
            {"name": "rows", "passed": True, "value": "0"},
            {"name": "quota", "passed": True, "opening": "0.00", "closing": "2380.00"},
            {"name": "clearing", "passed": True, "value": "0.00"},
            {"name": "settlements", "passed": True, "settled": "120.00", "held": "60.00",
             "wallet_pay": "180.00"},
        ],
        "new_findings": [], "disappeared_findings": [],
        "policy_version": "2024-gbf-38@abc", "code_version": "0.1.0+test",
        "started_at": "2026-11-21T02:30:00+08:00", "finished_at": "2026-11-21T02:31:10+08:00",
    }
    settlement_frame = pl.DataFrame({
        "business_date": [D], "payer_province": ["44"], "payee_province": ["41"],
        "expense_type": ["OUTPATIENT"], "settled_amount": [Decimal("120.00")],
        "refunded_amount": [Decimal("0.00")], "net_amount": [Decimal("120.00")],
        "settlement_count": [1], "refund_count": [0], "cross_province": [True],
    }, schema_overrides={c: pl.Decimal(18, 2) for c in ("settled_amount", "refunded_amount", "net_amount")})
    positions = pl.DataFrame({
        "business_date": [D, D], "province": ["41", "44"],
        "receivable": [Decimal("120.00"), Decimal("0.00")],
        "payable": [Decimal("0.00"), Decimal("120.00")],
        "net": [Decimal("120.00"), Decimal("-120.00")],
    }, schema_overrides={c: pl.Decimal(18, 2) for c in ("receivable", "payable", "net")})
    ctx = RunContext.for_date(D, genesis=False)
    return con, ctx, summary, exceptions, settlement_frame, positions


@pytest.fixture(scope="module")
def sample(real_run):
    """The hand-built frames of D with the summary.json the real run wrote for D."""
    con, ctx, _hand_made, exceptions, settlement_frame, positions = build_sample()
    assert real_run.dates[0] == D
    return con, ctx, real_run.summary(D), exceptions, settlement_frame, positions


@pytest.fixture(scope="module")
def page(sample):
    from flows.report_html import render
    return render(*sample)


def _data_block(page: str, block_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>', page, re.S)
    assert m, block_id
    return json.loads(m.group(1))


class _Collect(HTMLParser):
    """Collects tags and the text of elements carrying data-summary-key / data-rule-count."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.keyed: dict[str, str] = {}
        self.rule_counts: dict[str, str] = {}
        self._open: list[tuple[str, str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "input", "img", "rect", "path", "line"):
            self._open.append((tag, a.get("data-summary-key"), a.get("data-rule-count")))
            if a.get("data-summary-key"):
                self.keyed[a["data-summary-key"]] = ""
            if a.get("data-rule-count"):
                self.rule_counts[a["data-rule-count"]] = ""

    def handle_endtag(self, tag):
        while self._open:
            t, _, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _t, key, rc in self._open:
            if key:
                self.keyed[key] += data
            if rc:
                self.rule_counts[rc] += data


def _parse(page: str) -> _Collect:
    p = _Collect()
    p.feed(page)
    return p


# --------------------------------------------------------------------------- masking

def test_mask_certno_keeps_first_six_and_last_four():
    assert mask_certno("44010619800101123X") == "440106********123X"
    assert mask_certno("12345") == "*****"
    assert mask_certno(None) is None


def test_mask_text_masks_ids_but_not_psn_no_or_amounts():
    text = f"certno 44010619800101123X and {CERTNO}; psn {SHARER}; amount 2000.00; T123"
    out = mask_text(text)
    assert "44010619800101123X" not in out and CERTNO not in out
    assert "440106********123X" in out and "440106********1234" in out
    assert SHARER in out and "2000.00" in out


# --------------------------------------------------------------------------- report data

def test_report_data_evidence_limits_and_chain(sample):
    con, ctx, summary, exceptions, settlement_frame, positions = sample
    data = report_data(con, D, exceptions, settlement_frame, positions, ctx.policy)
    ids = {r["rule_code"] + ":" + r["record_id"]: r["exception_id"] for r in exceptions.iter_rows(named=True)}
    ev = data["evidence"][ids["S08:T1"]]
    assert ev["limits"][0]["value"] == "2000.00"
    transfer_table = next(t for t in ev["tables"] if t["key"] == "transfer")
    assert {r[1] for r in transfer_table["rows"]} == {"OUT", "IN"}
    s09 = data["evidence"][ids["S09:T5"]]
    out = next(t for t in s09["tables"] if t["key"] == "sharer_out")
    assert [r[1] for r in out["rows"]] == ["T1", "T2", "T3", "T4", "T5"]
    assert out["rows"][-1][4] == "3250.00"           # running sum, two decimals
    cyc = data["evidence"][ids["S13:T7"]]["chain"]
    assert cyc["kind"] == "cycle"
    assert set(cyc["nodes"]) == {SHARER, BENEFICIARY, THIRD}
    counts = {(e["from"], e["to"]): e["count"] for e in cyc["edges"]}
    assert counts == {(SHARER, BENEFICIARY): 5, (BENEFICIARY, THIRD): 1, (THIRD, SHARER): 1}
    assert [e for e in cyc["edges"] if e["this"]] == [next(e for e in cyc["edges"]
                                                          if e["from"] == THIRD and e["to"] == SHARER)]
    fw = data["evidence"][ids["S12:T6"]]["chain"]
    assert fw["kind"] == "forwarding" and fw["nodes"] == [SHARER, BENEFICIARY, THIRD]
    q = data["evidence"][ids["F04:row:7"]]
    raw = next(t for t in q["tables"] if t["key"] == "quarantine")["rows"][0][5]
    assert "44010619800101123" not in raw and "440106*******1123" in raw
    s14 = data["evidence"][ids["S14:S2"]]
    assert next(t for t in s14["tables"] if t["key"] == "outcome")["rows"][0][3] == "HELD"


def test_report_data_day_over_day_by_exception_id(sample):
    con, ctx, *_rest = sample
    exceptions = sample[3]
    rows = list(exceptions.iter_rows(named=True))
    dod = day_over_day(con, D, rows)
    assert dod["previous_date"] == P.isoformat()
    assert dod["counts"] == {"new": len(rows) - 2, "recurring": 2, "resolved": 1}
    recurring = {r["exception_id"] for r in rows if r["rule_code"] in ("F01", "B01")}
    assert set(dod["recurring"]) == recurring
    assert [r["record_id"] for r in dod["resolved"]] == ["65"]
    assert dod["resolved"][0]["rekeyed_id"] == exception_id("F01", D.isoformat(), "65", "65")
    assert dod["by_rule"]["F01"] == {"new": 0, "recurring": 1, "resolved": 1}


def test_day_over_day_without_previous_date():
    con = warehouse()
    dod = day_over_day(con, D, [])
    assert dod["previous_date"] is None and dod["counts"] == {"new": 0, "recurring": 0, "resolved": 0}


def _by_rule_cells(page: str) -> dict[str, dict[str, int]]:
    """The By rule table as the page shows it: per rule, Count, New, Recurring and Resolved
    (a blank New / Recurring / Resolved cell is 0, as on every date)."""
    table = {}
    for code, row in re.findall(r'<tr class="rule-row[^"]*" data-rule="(\w+)">(.*?)</tr>', page, re.S):
        count, _amount, *dod = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', row)
        table[code] = dict(zip(("count", "new", "recurring", "resolved"),
                               (int(c.strip().replace(",", "") or 0) for c in (count, *dod))))
    return table


def test_by_rule_new_and_recurring_make_up_the_count_and_on_the_first_date_every_finding_is_new(
        real_run):
    for d in real_run.dates:
        page = (real_run.folder(d) / "report.html").read_text(encoding="utf-8")
        table = _by_rule_cells(page)
        assert set(table) >= set(RULES)
        per_rule = real_run.summary(d)["findings"]["per_rule"]
        for code, row in table.items():   # every finding of D is either new or recurring
            assert row["count"] == per_rule.get(code, 0), (d, code)
            assert row["new"] + row["recurring"] == row["count"], (d, code, row)
        if d == real_run.dates[0]:         # no earlier processed date
            assert "No earlier processed date: every finding is new." in page
            assert {c: (r["new"], r["recurring"], r["resolved"]) for c, r in table.items()} == \
                {c: (r["count"], 0, 0) for c, r in table.items()}
            assert any(r["count"] for r in table.values())
        else:                              # the panel's cards are the table's column totals
            for kind in ("new", "recurring", "resolved"):
                card = re.search(rf'data-dod-count="{kind}">(\d+)<', page).group(1)
                assert int(card) == sum(r[kind] for r in table.values()), (d, kind)


def test_family_view_of_the_top_sharer(sample):
    con, ctx, summary, exceptions, s, p = sample
    data = report_data(con, D, exceptions, s, p, ctx.policy, AuditConfig(families=2))
    fams = data["families"]
    assert len(fams) == 2
    top = fams[0]
    assert top["sharer"] == SHARER   # 2500 + 100 + 150 + 80 (B01 |amount|)
    assert top["finding_amount"] == "2830.00"
    ben = next(b for b in top["beneficiaries"] if b["psn_no"] == BENEFICIARY)
    assert ben == {"psn_no": BENEFICIARY, "sent_count": 5, "sent": "3250.00", "spent": "120.00",
                   "remaining": "2380.00"}
    assert [r["psn_no"] for r in top["received_from"]] == [THIRD]
    persons = next(t for t in top["tables"] if t["key"] == "persons")
    certnos = [r[1] for r in persons["rows"]]
    assert certnos and all("*" * 8 in c for c in certnos)


def test_findings_cap_keeps_every_rule(sample):
    con, ctx, summary, exceptions, s, p = sample
    data = report_data(con, D, exceptions, s, p, ctx.policy,
                       AuditConfig(max_findings=10, evidence_per_rule=0, largest_cases=0,
                                   day_over_day_rows=0))
    codes = {r[1] for r in data["findings"]["rows"]}
    assert codes == set(exceptions["rule_code"].to_list())
    assert data["findings_total"] == exceptions.height
    assert data["findings_embedded"] == 10 < exceptions.height   # S09 keeps its larger one
    s09 = [r for r in data["findings"]["rows"] if r[1] == "S09"]
    assert [r[8] for r in s09] == ["150.00"]


def test_evidence_volume_is_capped(sample):
    con, ctx, summary, exceptions, s, p = sample
    data = report_data(con, D, exceptions, s, p, ctx.policy,
                       AuditConfig(evidence_per_rule=1, largest_cases=2))
    per_rule = {}
    for e in data["evidence"]:
        code = next(r["rule_code"] for r in exceptions.iter_rows(named=True) if r["exception_id"] == e)
        per_rule[code] = per_rule.get(code, 0) + 1
    assert len(data["largest"]) == 2
    assert sum(per_rule.values()) <= len(set(exceptions["rule_code"].to_list())) + 2


# --------------------------------------------------------------------------- the page

def test_page_is_self_contained(page):
    tags = _parse(page).tags
    for tag, a in tags:
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
        if tag == "script":
            assert "src" not in a
        for k in ("src", "href", "action", "xlink:href"):
            v = a.get(k)
            if v is not None:
                assert v.startswith("#"), (tag, k, v)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page.replace(
        'http://evil.example', ''))  # the only URL is inside escaped finding data
    assert "default-src 'none'" in page


def test_untrusted_text_cannot_inject_markup(page):
    assert "<img" not in page
    assert page.count("</script>") == 3          # data, meta, code: nothing from the input
    assert "onerror" in page                     # the text is there, but only escaped JSON
    data = _data_block(page, "report-data")
    details = [r[9] for r in data["findings"]["rows"]]
    assert EVIL in details                       # round-trips exactly through the JSON block
    largest_html = page.split('id="largest"')[1].split("</section>")[0]
    assert "&lt;/script&gt;&lt;img" in largest_html


def test_certno_never_in_full(page):
    assert CERTNO not in page
    assert "44010619800101123" not in page
    assert "440106********1234" in page


def _summary_value(summary: dict, key: str):
    """The value of a dotted data-summary-key in summary.json (KeyError when absent)."""
    cur = summary
    for part in key.split("."):
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def _shown(value) -> str:
    if isinstance(value, list):
        return str(len(value))
    return str(value)


def test_every_number_labelled_on_the_page_is_summary_json_s_own(real_run):
    for d in real_run.dates:
        page = (real_run.folder(d) / "report.html").read_text(encoding="utf-8")
        summary = real_run.summary(d)
        keyed = _parse(page).keyed
        assert {"status", "business_date", "findings.total", "provinces.expected",
                "provinces.delivered", "provinces.missing", "amounts.settled"} <= set(keyed)
        for key, text in keyed.items():
            value = _summary_value(summary, key)      # a renamed field fails here
            if key.startswith("amounts."):
                assert Decimal(text.replace(",", "")) == Decimal(value), key
            elif key == "provinces.missing":
                assert all(p in text for p in value) and (value or "none" in text), key
            else:
                assert text.replace(",", "").strip() == _shown(value), (d, key, text)


def test_the_transfer_and_clearing_cards_count_the_records_their_amounts_are_made_of(real_run):
    import duckdb
    con = duckdb.connect(str(real_run.warehouse), read_only=True)
    try:
        for d in real_run.dates:
            page = (real_run.folder(d) / "report.html").read_text(encoding="utf-8")
            t = pl.DataFrame(con.execute(
                "SELECT side, status, sharer_province <> beneficiary_province AS cross, amount "
                "FROM transfers WHERE business_date = ?", [d]).fetchall(),
                schema=["side", "status", "cross", "amount"], orient="row")
            for side in ("OUT", "IN"):
                mine = t.filter(pl.col("side") == side)
                ok = mine.filter(pl.col("status") == "SUCCESS")
                want = (f"{ok.height:,} 笔 {side} records · {ok['cross'].sum():,} 跨省 cross-province · "
                        f"{mine.filter(pl.col('status') == 'FAILED').height:,} 失败 FAILED")
                assert want in page, (d, side)
                key = "transfers_out" if side == "OUT" else "transfers_in"   # the card's amount
                assert Decimal(real_run.summary(d)["amounts"][key]) == sum(ok["amount"], Decimal(0))
            settlement = pl.read_csv(real_run.folder(d) / "settlement.csv", infer_schema=False)
            cross = sum((Decimal(r["net_amount"]) for r in settlement.iter_rows(named=True)
                         if r["cross_province"] == "true"), Decimal(0))
            net = re.search(r"退费后净额 net of refunds ([\d,.-]+)", page).group(1)
            assert Decimal(net.replace(",", "")) == cross, d
    finally:
        con.close()


def test_the_scorecard_panel_lists_summary_json_s_provinces_worst_first(real_run):
    summary = real_run.summary(real_run.partial)
    card = summary["delivery_scorecard"]
    page = (real_run.folder(real_run.partial) / "report.html").read_text(encoding="utf-8")
    panel = page.split('<section id="deliveries">')[1].split("</section>")[0]
    keyed = _parse(panel).keyed
    shown = [keyed[f"delivery_scorecard.provinces.{i}.province"] for i in range(len(card["provinces"]))]
    assert shown == [r["province"] for r in card["provinces"]]
    before = card["provinces"][:shown.index(real_run.withdrawn)]
    assert all(r["missing"] >= 1 for r in before)  # worst first: only other missing provinces
    assert keyed[f"delivery_scorecard.provinces.{shown.index(real_run.withdrawn)}.missing"] == "1"
    rows = re.findall(r'<tr data-province="(\d+)">.*?</tr>', panel)
    assert rows == shown
    per_10k = [r["quarantined_per_10k"] for r in card["provinces"]]
    cells = re.findall(r'<td class="num">([^<]*)</td></tr>', panel)
    assert cells == ["—" if v is None else f"{v:.1f}" for v in per_10k]


def test_page_counts_provinces_nested_under_provinces(real_run):
    keyed = _parse((real_run.folder(real_run.partial) / "report.html")
                   .read_text(encoding="utf-8")).keyed
    summary = real_run.summary(real_run.partial)
    assert keyed["provinces.expected"] == str(len(summary["provinces"]["expected"])) != "—"
    assert keyed["provinces.delivered"] == str(len(summary["provinces"]["delivered"]))


def _header(page: str) -> str:
    return page.split("<!--recon:header-->")[1].split("<!--/recon:header-->")[0]


def test_partial_page_names_missing_provinces_and_rejected_files_at_the_top(real_run):
    summary = real_run.summary(real_run.partial)
    header = _header((real_run.folder(real_run.partial) / "report.html").read_text(encoding="utf-8"))
    assert summary["status"] == "PARTIAL" and real_run.withdrawn in summary["provinces"]["missing"]
    for p in summary["provinces"]["missing"]:
        assert f'data-partial-rule="F01" data-province="{p}"' in header
        assert PROVINCE_NAMES[p][0] in header
    rejected = [f for f in summary["files"] if f["rejected"]]
    assert rejected
    for f in rejected:
        assert f'data-partial-rule="{f["reject_rule"]}" data-province="{f["province"]}"' in header
        assert html.escape(f["reject_reason"].rstrip(".")) in header


def test_rerun_new_and_disappeared_exception_ids_are_listed(real_run):
    summary = real_run.summary(real_run.partial)
    ch = summary["changes_since_previous_run"]
    assert ch["previous_run_id"] == real_run.first_summary["run_id"]
    assert ch["new"] and ch["disappeared"]       # the withdrawn province: F01 new, its findings gone
    page = (real_run.folder(real_run.partial) / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'<li data-rerun="new">([0-9a-f]{16})</li>', page) == ch["new"]
    assert re.findall(r'<li data-rerun="disappeared">([0-9a-f]{16})</li>', page) == ch["disappeared"]


def test_stale_page_says_stale_with_the_command_that_clears_it(real_run):
    summary = real_run.summary(real_run.stale)
    page = (real_run.folder(real_run.stale) / "report.html").read_text(encoding="utf-8")
    keyed = _parse(_header(page)).keyed
    from contracts.summary import clear_command
    clear = clear_command(real_run.stale, real_run.stale, (real_run.inbox, real_run.out, real_run.warehouse))
    assert summary["status"] == "STALE" and summary["stale_clear_command"] == clear
    assert keyed["status"] == "STALE" and keyed["stale_clear_command"] == clear
    assert keyed["status_before_stale"] == summary["status_before_stale"] == "PARTIAL"
    assert 'id="stale"' in page and page.count("<!--recon:header-->") == 1


def test_count_cross_check_reads_the_summary_s_findings_per_rule(sample):
    from flows.report_html import render
    con, ctx, summary, exceptions, s, p = sample
    counts = {code: 0 for code in RULES}
    for code in exceptions["rule_code"].to_list():
        counts[code] += 1
    agree = dict(summary, findings={"total": exceptions.height, "per_rule": counts})
    wrong = dict(summary, findings={"total": exceptions.height + 7,
                                    "per_rule": dict(counts, S08=counts["S08"] + 7)})
    assert 'id="disagree"' not in render(con, ctx, agree, exceptions, s, p)
    assert 'id="disagree"' in render(con, ctx, wrong, exceptions, s, p)


def test_a_summary_that_breaks_its_contract_is_refused(sample):
    from contracts.summary import SummaryError
    from flows.report_html import render
    con, ctx, summary, exceptions, s, p = sample
    flat = {k: v for k, v in summary.items() if k != "provinces"}
    flat.update(provinces_expected=summary["provinces"]["expected"])
    with pytest.raises(SummaryError, match="provinces"):
        render(con, ctx, flat, exceptions, s, p)


def test_long_detail_and_record_id_are_shortened_on_the_page(sample):
    from contracts.reports import DISPLAY_TEXT_MAX
    from flows.report_html import render
    con, ctx, summary, exceptions, s, p = sample
    long = exceptions.with_columns(pl.lit("x" * (DISPLAY_TEXT_MAX * 20)).alias("detail"),
                                   pl.lit("r" * (DISPLAY_TEXT_MAX * 20)).alias("record_id"))
    page = render(con, ctx, summary, long, s, p)
    assert "x" * (DISPLAY_TEXT_MAX + 1) not in page and "r" * (DISPLAY_TEXT_MAX + 1) not in page
    assert "x" * DISPLAY_TEXT_MAX in page and "full text in exceptions.csv" in page


def test_bilingual_headings_and_rule_names(page):
    for zh, en in (("运行状态与不变量", "Run status and invariants"), ("总额", "Totals"),
                   ("按规则类别", "Findings by rule family"), ("省际清算", "Inter-province clearing"),
                   ("金额最大的案件", "Largest cases by amount"), ("与上一处理日对比", "Day over day"),
                   ("家庭视图", "Family view"), ("异常明细", "Findings")):
        assert zh in page and en in page
    for code in ("S08", "S13", "X01", "B01", "F04"):
        assert RULES[code].zh in page and RULES[code].en in page


def test_charts_are_inline_svg(page):
    assert page.count("<svg") >= 4
    assert 'data-province="44" data-rule="S09"' in page        # heat map cell
    assert "44 广东 → 41 河南: 120.00" in page                   # clearing matrix tooltip


def test_largest_cases_ordered_by_amount(sample, page):
    section = page.split('id="largest"')[1].split("</section>")[0]
    ids = re.findall(r'data-eid="([0-9a-f]{16})"', section)
    amounts = {r["exception_id"]: abs(r["amount"]) for r in sample[3].iter_rows(named=True)
               if r["amount"] is not None}
    assert ids and [amounts[i] for i in ids] == sorted(amounts.values(), reverse=True)


def test_empty_day_and_nothing_left_aside(tmp_path, real_run):
    from flows.report_html import write
    con = warehouse()
    ctx = RunContext.for_date(D, genesis=True)
    empty = pl.DataFrame(schema={"exception_id": pl.String, "business_date": pl.Date,
                                 "rule_code": pl.String, "rule_name": pl.String,
                                 "severity": pl.String, "province": pl.String,
                                 "dataset": pl.String, "record_id": pl.String,
                                 "sharer_psn_no": pl.String, "beneficiary_psn_no": pl.String,
                                 "amount": pl.Decimal(18, 2), "detail": pl.String,
                                 "source_file": pl.String, "source_row": pl.Int32})
    out = tmp_path / "r" / "report.html"
    write(out, con, ctx, real_run.summary(D), empty, None, None)
    text = out.read_text(encoding="utf-8")
    assert "无异常 No findings." in text
    assert list(out.parent.iterdir()) == [out]   # nothing left aside


def test_js_has_no_inner_html():
    from flows.report_html import TEMPLATES
    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert "</script" not in js.lower()


def test_settlement_evidence_of_s18_and_batched_equals_one_by_one(sample):
    """S18's quota movements (its SQL once failed to parse: `at` is a keyword), and a finding
    evidenced alone gets the same tables as in the batch of all."""
    from auditview import evidence_for, evidence_of
    con, ctx, *_rest = sample
    s18 = _finding(D, "S18", "41", "S1", dataset="settlements", beneficiary=BENEFICIARY,
                   amount="120.00", detail="quota short")
    ev = evidence_for(con, D, s18, ctx.policy)
    keys = [t["key"] for t in ev["tables"]]
    assert keys[:2] == ["settlement", "outcome"] and "day_events" in keys and keys[-1] == "consumed"
    events = next(t for t in ev["tables"] if t["key"] == "day_events")
    assert events["columns"][:2] == ["at", "event"]
    assert [r[1] for r in events["rows"]][:2] == ["IN T1", "IN T2"]
    rows = list(sample[3].iter_rows(named=True)) + [s18]
    batch = evidence_of(con, D, rows, ctx.policy)
    for f, e in zip(rows, batch):
        assert e == evidence_for(con, D, f, ctx.policy), f["rule_code"]


def test_a_huge_field_of_a_quarantined_row_does_not_swell_the_page(tmp_path):
    """The issue's 50 MB field on an invalid row made report.html 157 MB: every text the page
    shows, evidence included, is cut at DISPLAY_TEXT_MAX (the CSV keeps the full value)."""
    from contracts.reports import DISPLAY_TEXT_MAX
    from flows import nightly
    from tests.inbox_builders import clean_day, person_row, write_province
    inbox = tmp_path / "inbox"
    clean_day(inbox, D)
    huge = "Z" * 2_000_000
    write_province(inbox, D, "44", persons=[person_row(),
                                            person_row(psn_no="44000000000000000009", insutype=huge)])
    paths = nightly.Paths.of(inbox, tmp_path / "out", tmp_path / "w.duckdb")
    nightly.run_date(paths, D, nightly.PlainExecutor())
    page = (tmp_path / "out" / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert len(page) < 2_000_000 and "Z" * (DISPLAY_TEXT_MAX + 1) not in page


def test_a_stale_date_is_marked_once_not_rewritten_by_each_later_re_run(real_run):
    """A backfill re-runs the STALE dates one by one: the reports of those still STALE keep
    the command of their marking (still right: it re-runs them in order) and are not
    rewritten after every date."""
    from datetime import timedelta

    from flows.report_stale import mark_date_stale
    folder = real_run.folder(real_run.stale)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    later = (real_run.stale + timedelta(days=1)).isoformat()   # the first STALE date moved on
    assert mark_date_stale(folder, f"recon backfill --start {later} --end {real_run.stale.isoformat()}")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert f"--start {real_run.stale.isoformat()} --end {real_run.stale.isoformat()} " in \
        real_run.summary(real_run.stale)["stale_clear_command"]


def test_the_drill_down_of_a_settlement_shows_that_provinces_settlement_only():
    """spec-readings 49: two provinces may deliver the same setl_id. Henan's S1 is held
    (S14); Guangdong's S1 settled from lot T2. Henan's evidence names neither Guangdong's
    row, nor its outcome, nor the lot it consumed."""
    from tests.test_clearing import KIN_GD, run
    from transforms import findings as findings_mod
    con = build_warehouse_with_two_s1()
    ctx = run(con)
    findings_mod.finalize(con, ctx.d)
    exceptions = pl.from_arrow(con.sql("SELECT * FROM findings").to_arrow_table())
    (s14,) = [r for r in exceptions.iter_rows(named=True) if r["rule_code"] == "S14"]
    assert (s14["province"], s14["record_id"]) == ("41", "S1")
    data = report_data(con, D, exceptions, pl.DataFrame(), pl.DataFrame(), ctx.policy)
    tables = {t["key"]: t["rows"] for t in data["evidence"][s14["exception_id"]]["tables"]}
    assert [r[3] for r in tables["settlement"]] == [BENEFICIARY]          # psn_no: Henan's only
    assert [r[3] for r in tables["outcome"]] == ["HELD"]
    assert tables.get("consumed", []) == []
    assert KIN_GD not in json.dumps(tables)


def build_warehouse_with_two_s1():
    from tests.builders import institution, transfer, warehouse
    from tests.test_clearing import KIN_GD
    con = warehouse()
    add(con, "institutions", [institution(), institution("H44000000001")])
    add(con, "transfers", [transfer("T1", "300.00", side="IN", at="08:00:00"),
                           transfer("T2", "300.00", side="IN", beneficiary=KIN_GD, at="08:00:00")])
    add(con, "settlements", [settlement("S1", "100.00", expense_type="CASH_WITHDRAWAL"),
                             settlement("S1", "100.00", psn_no=KIN_GD, fixmedins_code="H44000000001")])
    return con
