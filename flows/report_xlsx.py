"""exceptions.xlsx of outputs.md: the findings in a workbook for auditors.

    write(path, exceptions, summary) -> None

Sheets: a summary sheet (run facts, amounts, findings per rule with Chinese and
English rule names) and one sheet per rule family F, S, X, B (every rule code of
the family, also when there is no finding). Headers are bilingual
("规则代码 Rule code"), the header row is frozen and filtered, columns have
sensible widths, amounts are numbers formatted '#,##0.00'.

Untrusted text never becomes a formula: the workbook is opened with
strings_to_formulas=False, every text cell is written with write_string, and
text beginning with = + - @ (or tab / carriage return) also gets Excel's
quote prefix so that editing the cell keeps it text. Resident ID numbers in
free text are masked (first 6 + last 4).

The rows are the exceptions frame that becomes exceptions.csv / .parquet,
in its order, so the workbook never disagrees with them.
"""
from __future__ import annotations

import os
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter

from contracts.codes import FAMILIES, PROVINCE_NAMES, RULES
from transforms.audit_view import mask_text

MAX_ROWS = 1_048_576 - 1  # Excel rows per sheet, header excluded

SUMMARY_SHEET = "汇总 Summary"
FAMILY_SHEETS = {
    "F": "F 文件与记录 Files and rows",
    "S": "S 共济规则 Sharing rules",
    "X": "X 双边核对 Two-sided matching",
    "B": "B 余额核对 Balances",
}

# (frame column or derived key, header, width, kind)
COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("exception_id", "异常编号 Exception ID", 19, "text"),
    ("business_date", "业务日期 Business date", 13, "text"),
    ("rule_code", "规则代码 Rule code", 10, "text"),
    ("rule_zh", "规则名称 Rule (中文)", 22, "text"),
    ("rule_name", "规则名 Rule name", 24, "text"),
    ("severity", "级别 Severity", 10, "text"),
    ("province", "省份 Province", 9, "text"),
    ("province_name", "省份名称 Province name", 14, "text"),
    ("dataset", "数据集 Dataset", 13, "text"),
    ("record_id", "记录标识 Record ID", 28, "text"),
    ("sharer_psn_no", "共济人编号 Sharer psn_no", 23, "text"),
    ("beneficiary_psn_no", "被共济人编号 Beneficiary psn_no", 23, "text"),
    ("amount", "金额(元) Amount (yuan)", 15, "money"),
    ("detail", "说明 Detail", 80, "text"),
    ("source_file", "来源文件 Source file", 30, "text"),
    ("source_row", "来源行 Source row", 10, "int"),
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def needs_escape(text: str) -> bool:
    return text.startswith(_FORMULA_START)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class _Book:
    def __init__(self, path: Path):
        self.wb = xlsxwriter.Workbook(str(path), {
            "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
            "constant_memory": False,
        })
        f = self.wb.add_format
        self.header = f({"bold": True, "bg_color": "#1F4E79", "font_color": "#FFFFFF",
                         "text_wrap": True, "valign": "vcenter", "border": 1, "border_color": "#9DB3C8"})
        self.text = f({"valign": "top"})
        self.text_q = f({"valign": "top", "quote_prefix": True})
        self.wrap = f({"valign": "top", "text_wrap": True})
        self.wrap_q = f({"valign": "top", "text_wrap": True, "quote_prefix": True})
        self.money = f({"num_format": "#,##0.00", "valign": "top"})
        self.int = f({"num_format": "0", "valign": "top"})
        self.count = f({"num_format": "#,##0", "valign": "top"})
        self.title = f({"bold": True, "font_size": 14, "font_color": "#1F4E79"})
        self.label = f({"bold": True, "font_color": "#34495E"})
        self.error = f({"font_color": "#B03A2E", "bold": True})
        self.ok = f({"font_color": "#1E8449", "bold": True})

    def string(self, ws, r: int, c: int, value: Any, wrap: bool = False) -> None:
        s = mask_text(_text(value))
        if needs_escape(s):
            ws.write_string(r, c, s, self.wrap_q if wrap else self.text_q)
        else:
            ws.write_string(r, c, s, self.wrap if wrap else self.text)

    def money_cell(self, ws, r: int, c: int, value: Any) -> None:
        if value is None:
            ws.write_blank(r, c, None, self.money)
            return
        d = Decimal(str(value)).quantize(Decimal("0.01"))
        # the last formatting step: Excel holds a double; two decimals are exact to the cent
        ws.write_number(r, c, float(d), self.money)


def _rows_of(exceptions: pl.DataFrame | None) -> list[dict]:
    if exceptions is None or exceptions.height == 0:
        return []
    return list(exceptions.iter_rows(named=True))


def _derived(row: dict) -> dict:
    rule = RULES.get(str(row.get("rule_code")))
    p = row.get("province")
    out = dict(row)
    out["rule_zh"] = rule.zh if rule else ""
    if not out.get("rule_name") and rule:
        out["rule_name"] = rule.name
    out["province_name"] = PROVINCE_NAMES.get(str(p), ("", ""))[0] if p is not None else ""
    return out


def _write_findings_sheet(book: _Book, name: str, rows: list[dict]) -> None:
    ws = book.wb.add_worksheet(name)
    ws.set_row(0, 32)
    for c, (_key, header, width, _kind) in enumerate(COLUMNS):
        ws.write_string(0, c, header, book.header)
        ws.set_column(c, c, width)
    for r, row in enumerate(rows, start=1):
        row = _derived(row)
        for c, (key, _h, _w, kind) in enumerate(COLUMNS):
            v = row.get(key)
            if kind == "money":
                book.money_cell(ws, r, c, v)
            elif kind == "int":
                if v is None:
                    ws.write_blank(r, c, None, book.int)
                else:
                    ws.write_number(r, c, int(v), book.int)
            else:
                book.string(ws, r, c, v, wrap=(key == "detail"))
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(rows), 1), len(COLUMNS) - 1)


def _summary_sheet(book: _Book, summary: dict, rows: list[dict]) -> None:
    ws = book.wb.add_worksheet(SUMMARY_SHEET)
    ws.set_column(0, 0, 30)
    ws.set_column(1, 1, 24)
    ws.set_column(2, 2, 34)
    ws.set_column(3, 3, 12)
    ws.set_column(4, 6, 16)
    d = summary.get("business_date") or (rows[0].get("business_date") if rows else "")
    ws.write_string(0, 0, f"共济对账异常汇总 Exceptions summary {_text(d)}", book.title)

    facts = [
        ("业务日期 Business date", _text(d)),
        ("状态 Status", _text(summary.get("status", ""))),
        ("政策版本 Policy version", _text(summary.get("policy_version", ""))),
        ("程序版本 Code version", _text(summary.get("code_version", ""))),
        ("开始 Started at", _text(summary.get("started_at", ""))),
        ("结束 Finished at", _text(summary.get("finished_at", ""))),
    ]
    for key, zh_en in (("provinces_expected", "应报送省份 Provinces expected"),
                       ("provinces_delivered", "已报送省份 Provinces delivered")):
        v = summary.get(key)
        if isinstance(v, (list, tuple, set)):
            facts.append((zh_en, f"{len(v)}: " + " ".join(sorted(str(x) for x in v))))
        elif v is not None:
            facts.append((zh_en, _text(v)))
    r = 2
    for label, value in facts:
        ws.write_string(r, 0, label, book.label)
        book.string(ws, r, 1, value)
        r += 1

    amounts = summary.get("amounts") if isinstance(summary.get("amounts"), dict) else {}
    if amounts:
        r += 1
        ws.write_string(r, 0, "金额 Amounts (元 yuan)", book.label)
        r += 1
        names = {"settled": "已结算 Settled", "held": "挂起 Held", "refunded": "已退费 Refunded"}
        for k, v in amounts.items():
            ws.write_string(r, 0, names.get(k, k), book.text)
            try:
                book.money_cell(ws, r, 1, v)
            except Exception:  # not a number: keep it as text
                book.string(ws, r, 1, v)
            r += 1

    invariants = summary.get("invariants") or []
    if isinstance(invariants, list) and invariants:
        r += 1
        ws.write_string(r, 0, "不变量 Invariants", book.label)
        r += 1
        for inv in invariants:
            if not isinstance(inv, dict):
                continue
            book.string(ws, r, 0, inv.get("name", ""))
            passed = inv.get("passed")
            ws.write_string(r, 1, "通过 passed" if passed else "未通过 FAILED",
                            book.ok if passed else book.error)
            extra = "; ".join(f"{k} = {v}" for k, v in inv.items() if k not in ("name", "passed"))
            book.string(ws, r, 2, extra)
            r += 1

    # findings per rule, from the rows (the same rows as the family sheets)
    r += 1
    ws.write_string(r, 0, "各规则异常 Findings per rule", book.label)
    r += 1
    head = ("规则代码 Rule code", "规则名 Rule name", "规则名称 Rule (中文 / English)",
            "级别 Severity", "类别 Family", "数量 Count", "金额(元) Amount")
    top = r
    for c, h in enumerate(head):
        ws.write_string(r, c, h, book.header)
    counts: dict[str, int] = {}
    sums: dict[str, Decimal] = {}
    for row in rows:
        code = str(row.get("rule_code"))
        counts[code] = counts.get(code, 0) + 1
        if row.get("amount") is not None:
            sums[code] = sums.get(code, Decimal("0")) + Decimal(str(row["amount"]))
    codes = list(RULES) + sorted(set(counts) - set(RULES))
    for code in codes:
        r += 1
        rule = RULES.get(code)
        book.string(ws, r, 0, code)
        book.string(ws, r, 1, rule.name if rule else "")
        book.string(ws, r, 2, f"{rule.zh} / {rule.en}" if rule else "")
        book.string(ws, r, 3, rule.severity if rule else "")
        fam = FAMILIES.get(code[:1], ("", ""))
        book.string(ws, r, 4, f"{code[:1]} {fam[0]} {fam[1]}")
        ws.write_number(r, 5, counts.get(code, 0), book.count)
        book.money_cell(ws, r, 6, sums.get(code, Decimal("0")))
    r += 1
    ws.write_string(r, 0, "合计 Total", book.label)
    ws.write_number(r, 5, len(rows), book.count)
    book.money_cell(ws, r, 6, sum(sums.values(), Decimal("0")))
    ws.set_column(5, 5, 12)
    ws.set_column(6, 6, 18)
    ws.autofilter(top, 0, r - 1, len(head) - 1)
    ws.freeze_panes(1, 0)
    ws.activate()


def write(path, exceptions: pl.DataFrame, summary: dict | None) -> None:
    """Write exceptions.xlsx (aside, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = _rows_of(exceptions)
    fd, tmp = tempfile.mkstemp(prefix=".exceptions-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    try:
        book = _Book(Path(tmp))
        _summary_sheet(book, summary or {}, rows)
        for fam, sheet in FAMILY_SHEETS.items():
            fam_rows = [r for r in rows if str(r.get("rule_code", ""))[:1] == fam]
            parts = [fam_rows[i:i + MAX_ROWS] for i in range(0, len(fam_rows), MAX_ROWS)] or [[]]
            for n, part in enumerate(parts):
                _write_findings_sheet(book, sheet if n == 0 else f"{sheet[:26]} ({n + 1})", part)
        other = [r for r in rows if str(r.get("rule_code", ""))[:1] not in FAMILY_SHEETS]
        if other:
            _write_findings_sheet(book, "其他 Other", other)
        book.wb.close()
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
