"""The decided cases of a period, for the audit file: xlsx and CSV.

A case belongs to the period when its decision (the latest `decided` event of a
case still decided) was taken on a date within it, in Asia/Shanghai time.

The workbook keeps the conventions of exceptions.xlsx (flows/report_xlsx.py):
bilingual headers, header row frozen and filtered, amounts as numbers formatted
'#,##0.00', text never a formula (strings_to_formulas off, write_string, quote
prefix for text starting = + - @), resident IDs masked. The CSV has the same
columns (English header), amounts as exact decimal text, and formula-like text
prefixed with ' so that a spreadsheet does not evaluate it.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import xlsxwriter

from contracts.codes import PROVINCE_NAMES, RULES
from flows.report_xlsx import needs_escape
from workbench.masking import mask
from workbench.cases import DECISIONS

SHANGHAI = timezone(timedelta(hours=8))

COLUMNS = (  # key, header, width, kind
    ("case_id", "案件编号 Case ID", 19, "text"),
    ("rule_code", "规则代码 Rule code", 10, "text"),
    ("rule_zh", "规则名称 Rule (中文)", 22, "text"),
    ("rule_name", "规则名 Rule name", 24, "text"),
    ("severity", "级别 Severity", 10, "text"),
    ("province", "省份 Province", 9, "text"),
    ("province_name", "省份名称 Province name", 14, "text"),
    ("subject", "对象 Subject (record, pair, sharer or cycle)", 36, "text"),
    ("first_seen", "首次出现 First seen", 13, "text"),
    ("last_seen", "最后出现 Last seen", 13, "text"),
    ("n_dates", "出现天数 Dates seen", 10, "int"),
    ("amount", "金额(元) Amount (yuan)", 15, "money"),
    ("decision", "处理结论 Decision", 24, "text"),
    ("amount_recovered", "追回金额(元) Amount recovered", 15, "money"),
    ("decided_by", "处理人 Decided by", 14, "text"),
    ("decided_at", "处理时间 Decided at (Asia/Shanghai)", 20, "text"),
    ("reason", "说明 Reason", 50, "text"),
    ("assignee", "负责人 Assignee", 14, "text"),
)


def local_date(at: str) -> date:
    """The Asia/Shanghai date of a stored UTC instant."""
    return datetime.fromisoformat(at).astimezone(SHANGHAI).date()


def decided_on(case: dict) -> date | None:
    if case.get("status") != "decided" or not case.get("decided_at"):
        return None
    return local_date(case["decided_at"])


def decided_in(cases: list[dict], start: date | None, end: date | None) -> list[dict]:
    out = [c for c in cases if decided_on(c) is not None
           and (start is None or decided_on(c) >= start) and (end is None or decided_on(c) <= end)]
    return sorted(out, key=lambda c: (c["decided_at"], c["case_id"]))


def _values(c: dict) -> dict:
    rule = RULES.get(c["rule_code"])
    d = DECISIONS.get(c.get("decision") or "", ("", ""))
    at = datetime.fromisoformat(c["decided_at"]).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    return {**c, "rule_zh": rule.zh if rule else "", "rule_name": rule.name if rule else "",
            "province_name": PROVINCE_NAMES.get(c["province"], ("", ""))[0],
            "decision": f"{c.get('decision')} {d[0]} {d[1]}".strip(), "decided_at": at}


def _text(v) -> str:
    return "" if v is None else mask(str(v))


def write_xlsx(path: Path, cases: list[dict], title: str) -> None:
    wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False})
    header = wb.add_format({"bold": True, "bg_color": "#1F4E79", "font_color": "#FFFFFF",
                            "text_wrap": True, "valign": "vcenter", "border": 1})
    text = wb.add_format({"valign": "top"})
    text_q = wb.add_format({"valign": "top", "quote_prefix": True})
    money = wb.add_format({"num_format": "#,##0.00", "valign": "top"})
    whole = wb.add_format({"num_format": "0", "valign": "top"})
    ws = wb.add_worksheet("已处理案件 Decided cases")
    ws.set_row(0, 32)
    for i, (_k, h, w, _t) in enumerate(COLUMNS):
        ws.write_string(0, i, h, header)
        ws.set_column(i, i, w)
    for r, c in enumerate(cases, start=1):
        v = _values(c)
        for i, (k, _h, _w, kind) in enumerate(COLUMNS):
            x = v.get(k)
            if kind == "money":
                if x is None:
                    ws.write_blank(r, i, None, money)
                else:  # the last formatting step: two decimals are exact to the cent in a double
                    ws.write_number(r, i, float(Decimal(str(x)).quantize(Decimal("0.01"))), money)
            elif kind == "int":
                ws.write_number(r, i, int(x or 0), whole)
            else:
                s = _text(x)
                ws.write_string(r, i, s, text_q if needs_escape(s) else text)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(cases), 1), len(COLUMNS) - 1)
    wb.set_properties({"title": title})
    wb.close()


def csv_text(cases: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([k for k, _h, _w, _t in COLUMNS])
    for c in cases:
        v = _values(c)
        row = []
        for k, _h, _w, kind in COLUMNS:
            x = v.get(k)
            if kind == "money":
                row.append("" if x is None else str(Decimal(str(x)).quantize(Decimal("0.01"))))
            elif kind == "int":
                row.append(str(int(x or 0)))
            else:
                s = _text(x)
                row.append("'" + s if needs_escape(s) else s)
        w.writerow(row)
    return buf.getvalue()


def events_csv(events: list[dict]) -> str:
    """The event trail (who, when, before, after), as stored."""
    import json
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["event_id", "case_id", "at", "actor", "kind", "before", "after", "hash"])
    for e in events:
        cells = [e["event_id"], e["case_id"], e["at"], e["actor"], e["kind"],
                 json.dumps(e["before"], ensure_ascii=False) if e["before"] else "",
                 json.dumps(e["after"], ensure_ascii=False) if e["after"] else "", e["hash"]]
        w.writerow([("'" + s if needs_escape(s) else s) for s in (mask(str(x)) for x in cells)])
    return buf.getvalue()
