"""exceptions.xlsx (flows/report_xlsx.py), read back with openpyxl.

What the workbook says about a run is tested on the workbooks a real pipeline run
published (`real_run` of tests/conftest.py); escaping and number formats also on a
hand-built frame of hostile text, written with a summary.json of that real run.
"""
from __future__ import annotations

import zipfile
from datetime import date
from decimal import Decimal

import openpyxl
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codes import RULES
from flows.report_xlsx import COLUMNS, FAMILY_SHEETS, SUMMARY_SHEET, needs_escape, write
from transforms.findings import exception_id

D = date(2026, 11, 20)
HEADERS = [h for _k, h, _w, _t in COLUMNS]
SCHEMA = {"exception_id": pl.String, "business_date": pl.Date, "rule_code": pl.String,
          "rule_name": pl.String, "severity": pl.String, "province": pl.String,
          "dataset": pl.String, "record_id": pl.String, "sharer_psn_no": pl.String,
          "beneficiary_psn_no": pl.String, "amount": pl.Decimal(18, 2), "detail": pl.String,
          "source_file": pl.String, "source_row": pl.Int32}


def frame(rows: list[dict]) -> pl.DataFrame:
    full = []
    for i, r in enumerate(rows, start=1):
        code = r["rule_code"]
        base = {"business_date": D, "rule_name": RULES[code].name, "severity": RULES[code].severity,
                "province": "44", "dataset": "transfers", "record_id": f"T{i}",
                "sharer_psn_no": "44000000000000000001", "beneficiary_psn_no": "41000000000000000002",
                "amount": None, "detail": "", "source_file": "2026-11-20/44/transfers.csv",
                "source_row": i}
        base.update(r)
        base["exception_id"] = exception_id(code, D.isoformat(), base["province"], base["record_id"])
        full.append(base)
    return pl.DataFrame(full, schema=SCHEMA)


ROWS = [
    {"rule_code": "S08", "amount": Decimal("2500.00"), "detail": "amount 2500.00 > max 2000.00"},
    {"rule_code": "S09", "amount": Decimal("1234567.5"), "detail": "=HYPERLINK(\"http://evil\",\"x\")"},
    {"rule_code": "S12", "amount": Decimal("0.01"), "detail": "+1+cmd|' /C calc'!A0"},
    {"rule_code": "X01", "amount": Decimal("80.00"), "detail": "-2+3"},
    {"rule_code": "X03", "amount": Decimal("-80.10"), "detail": "@SUM(A1:A2)",
     "record_id": "=1+1"},
    {"rule_code": "B01", "amount": Decimal("-5.00"), "dataset": "balances",
     "record_id": "41000000000000000002:44000000000000000001", "detail": "delivered 0.00"},
    {"rule_code": "F04", "dataset": "persons", "record_id": "row:7", "amount": None,
     "detail": "certno 44010619800101123X fails its check character", "source_row": 7},
    {"rule_code": "F01", "dataset": "manifest", "record_id": "54", "province": "54",
     "sharer_psn_no": None, "beneficiary_psn_no": None, "source_file": None, "source_row": None,
     "detail": "\tprovince 54 delivered nothing"},
]
@pytest.fixture(scope="module")
def book(tmp_path_factory, real_run):
    path = tmp_path_factory.mktemp("xlsx") / "exceptions.xlsx"
    summary = dict(real_run.summary(D), policy_version="=evil()")  # a formula-like text
    write(path, frame(ROWS), summary)
    return path, openpyxl.load_workbook(path)


def test_sheets_summary_first_then_one_per_family(book):
    _, wb = book
    assert wb.sheetnames == [SUMMARY_SHEET] + [FAMILY_SHEETS[f] for f in "FSXB"]
    assert all(len(n) <= 31 for n in wb.sheetnames)


def test_family_sheets_hold_their_rows_with_bilingual_headers(book):
    _, wb = book
    expected = {"F": ["F01", "F04"], "S": ["S08", "S09", "S12"], "X": ["X01", "X03"], "B": ["B01"]}
    for fam, codes in expected.items():
        ws = wb[FAMILY_SHEETS[fam]]
        header = [c.value for c in ws[1]]
        assert header == HEADERS
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in h) and any(ch.isascii() and ch.isalpha()
                                                                      for ch in h) for h in header)
        codes_in_sheet = [ws.cell(r, 3).value for r in range(2, ws.max_row + 1)]
        assert sorted(codes_in_sheet) == sorted(codes)
        for r in range(2, ws.max_row + 1):
            code = ws.cell(r, 3).value
            assert ws.cell(r, 4).value == RULES[code].zh
            assert ws.cell(r, 5).value == RULES[code].name


def test_frozen_header_filter_and_widths(book):
    _, wb = book
    for fam in "FSXB":
        ws = wb[FAMILY_SHEETS[fam]]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:P")
        widths = {k: ws.column_dimensions[k].width for k in ("A", "J", "M", "N")}
        assert widths["N"] >= 60 and 10 <= widths["M"] <= 25 and widths["A"] >= 16


def test_amounts_are_numbers_with_two_decimals(book):
    _, wb = book
    ws = wb[FAMILY_SHEETS["S"]]
    by_code = {ws.cell(r, 3).value: ws.cell(r, 13) for r in range(2, ws.max_row + 1)}
    assert by_code["S09"].data_type == "n" and by_code["S09"].value == 1234567.5
    assert by_code["S12"].value == pytest.approx(0.01)
    for cell in by_code.values():
        assert cell.number_format == "#,##0.00"
    assert Decimal(str(wb[FAMILY_SHEETS["X"]].cell(3, 13).value)).quantize(Decimal("0.01")) in (
        Decimal("-80.10"), Decimal("80.00"))
    f04 = wb[FAMILY_SHEETS["F"]]
    amounts = [f04.cell(r, 13).value for r in range(2, f04.max_row + 1)]
    assert amounts == [None, None]                 # no amount stays empty, not 0
    assert isinstance(f04.cell(2, 16).value, (int, type(None)))


def test_amounts_beyond_excels_fifteen_digits_keep_their_cents_as_exact_text(tmp_path, real_run):
    """DECIMAL(18,2) allows 16 integer digits; Excel holds 15 significant digits."""
    path = tmp_path / "exceptions.xlsx"
    write(path, frame([{"rule_code": "S08", "amount": Decimal("1234567890123456.78")},
                       {"rule_code": "S08", "amount": Decimal("-9999999999999.99")}]),
          real_run.summary(D))
    wb = openpyxl.load_workbook(path)
    ws = wb[FAMILY_SHEETS["S"]]
    big, edge = ws.cell(2, 13), ws.cell(3, 13)
    assert (big.data_type, big.value) == ("s", "1234567890123456.78")
    assert edge.data_type == "n" and Decimal(repr(edge.value)) == Decimal("-9999999999999.99")
    summary_values = [c.value for row in wb[SUMMARY_SHEET].iter_rows() for c in row]
    assert "1224567890123456.79" in summary_values     # S08's sum and the total, exact


def test_formula_like_text_is_written_as_text(book):
    path, wb = book
    seen = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and needs_escape(cell.value):
                    assert cell.data_type == "s", (ws.title, cell.coordinate, cell.value)
                    assert cell.quotePrefix, (ws.title, cell.coordinate)
                    seen += 1
    assert seen >= 6    # four details, a record_id, a tab-led detail, the policy version
    # and in the file itself: not a single formula element
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name)


def test_certno_masked(book):
    path, wb = book
    ws = wb[FAMILY_SHEETS["F"]]
    details = [ws.cell(r, 14).value for r in range(2, ws.max_row + 1)]
    assert any("440106********123X" in d for d in details)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            assert b"44010619800101123X" not in z.read(name)


def _facts(path) -> dict[str, str]:
    ws = openpyxl.load_workbook(path)[SUMMARY_SHEET]
    return {ws.cell(r, 1).value: ws.cell(r, 2).value for r in range(1, ws.max_row + 1)
            if ws.cell(r, 1).value is not None}


def test_summary_sheet_states_summary_json_s_facts(real_run):
    d = real_run.dates[0]
    summary = real_run.summary(d)
    path = real_run.folder(d) / "exceptions.xlsx"
    facts = _facts(path)
    assert facts["业务日期 Business date"] == summary["business_date"]
    assert facts["状态 Status"] == summary["status"]
    assert facts["应报送省份 Provinces expected"].startswith(f'{len(summary["provinces"]["expected"])}: ')
    assert facts["已报送省份 Provinces delivered"].startswith(f'{len(summary["provinces"]["delivered"])}: ')
    ws = openpyxl.load_workbook(path)[SUMMARY_SHEET]
    cells = {(c.row, c.column): c for row in ws.iter_rows() for c in row if c.value is not None}
    settled = next(ws.cell(c.row, 2) for c in cells.values() if c.value == "已结算 Settled")
    assert Decimal(str(settled.value)).quantize(Decimal("0.01")) == Decimal(summary["amounts"]["settled"])
    assert settled.number_format == "#,##0.00"
    header = next(c for c in cells.values() if c.value == "规则代码 Rule code")
    table = {ws.cell(r, 1).value: ws.cell(r, 6).value
             for r in range(header.row + 1, header.row + 1 + len(RULES))}
    assert table == summary["findings"]["per_rule"]
    rows = sum(openpyxl.load_workbook(path)[FAMILY_SHEETS[f]].max_row - 1 for f in "FSXB")
    assert rows == real_run.exceptions(d).height == summary["findings"]["total"]


def test_summary_sheet_of_a_partial_date_names_provinces_and_rejected_files(real_run):
    summary = real_run.summary(real_run.partial)
    facts = _facts(real_run.folder(real_run.partial) / "exceptions.xlsx")
    missing = facts["未报送省份 Provinces missing"]
    assert real_run.withdrawn in missing.split() and "54" in missing.split()
    for f in (f for f in summary["files"] if f["rejected"]):
        label = f'拒收文件 Rejected file ({f["reject_rule"]})'
        assert facts[label].startswith(f'{f["province"]}/') and f["reject_reason"] in facts[label]
    ch = summary["changes_since_previous_run"]
    assert facts["新出现 New since then"] == f'{len(ch["new"])}: ' + " ".join(ch["new"])
    assert facts["消失 Disappeared since then"] == f'{len(ch["disappeared"])}: ' + " ".join(ch["disappeared"])


def test_summary_sheet_of_a_stale_date_says_stale_and_how_to_clear_it(real_run):
    facts = _facts(real_run.folder(real_run.stale) / "exceptions.xlsx")
    assert facts["状态 Status"] == "STALE"
    assert facts["原状态 Status before STALE"] == "PARTIAL"
    assert f"recon backfill --start {real_run.stale.isoformat()} --end {real_run.stale.isoformat()}" in facts["已过期 STALE"]


def test_long_detail_is_shortened_in_the_workbook(tmp_path, real_run):
    from contracts.reports import DISPLAY_TEXT_MAX
    path = tmp_path / "exceptions.xlsx"
    write(path, frame([{"rule_code": "S08", "detail": "y" * (DISPLAY_TEXT_MAX * 10)}]),
          real_run.summary(D))
    cell = openpyxl.load_workbook(path)[FAMILY_SHEETS["S"]].cell(2, 14).value
    assert cell.startswith("y" * DISPLAY_TEXT_MAX) and "y" * (DISPLAY_TEXT_MAX + 1) not in cell
    assert "full text in exceptions.csv" in cell


def test_empty_frame(tmp_path, real_run):
    path = tmp_path / "exceptions.xlsx"
    write(path, pl.DataFrame(schema=SCHEMA), real_run.summary(D))
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [SUMMARY_SHEET] + [FAMILY_SHEETS[f] for f in "FSXB"]
    assert [c.value for c in wb[FAMILY_SHEETS["S"]][1]] == HEADERS
    assert [p.name for p in tmp_path.iterdir()] == ["exceptions.xlsx"]   # nothing left aside


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=6))
def test_any_detail_round_trips_as_text(tmp_path_factory, real_run, details):
    path = tmp_path_factory.mktemp("h") / "x.xlsx"
    rows = [{"rule_code": "S08", "amount": Decimal("1.00"), "detail": d} for d in details]
    write(path, frame(rows), real_run.summary(D))
    ws = openpyxl.load_workbook(path)[FAMILY_SHEETS["S"]]
    got = [ws.cell(r, 14).value or "" for r in range(2, ws.max_row + 1)]
    from auditview import mask_text
    import re
    illegal = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
    for want, cell_value in zip(details, got):
        want = mask_text(want)
        if illegal.search(want) or "\r" in want:
            continue   # control characters are not representable in XML; xlsxwriter escapes them
        assert cell_value == want
