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

Speed (a national day has tens of thousands of findings, 16 cells each): the
workbook is laid out by xlsxwriter (sheets, header rows, widths, frozen panes,
filters, formats), the data rows of the findings sheets are built as sheet XML
by vectorised polars expressions (masking, the quote prefix, XML escaping as
xlsxwriter does it) and put into the sheets' <sheetData> after xlsxwriter has
written the file. Text cells are inline strings, amounts and rows numbers.
"""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter

from contracts.codes import FAMILIES, PROVINCE_NAMES, RULES
from contracts.reports import DISPLAY_ELLIPSIS, DISPLAY_TEXT_MAX, RERUN_IDS_SHOWN, shorten_for_display
from contracts.summary import STALE, RunSummary
from contracts.summary import parse as parse_summary
from auditview import mask_text

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
        self.money_text = f({"valign": "top", "align": "right"})   # beyond Excel's 15 digits
        self.int = f({"num_format": "0", "valign": "top"})
        self.count = f({"num_format": "#,##0", "valign": "top"})
        self.title = f({"bold": True, "font_size": 14, "font_color": "#1F4E79"})
        self.label = f({"bold": True, "font_color": "#34495E"})
        self.error = f({"font_color": "#B03A2E", "bold": True})
        self.ok = f({"font_color": "#1E8449", "bold": True})
        # the data formats of the findings sheets are in the rows written after close:
        # give them their style index now, so that styles.xml holds them
        for fmt in (self.text, self.text_q, self.wrap, self.wrap_q, self.money, self.money_text,
                    self.int):
            fmt._get_xf_index()
        self.pending: list[tuple] = []

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
        if abs(d) >= EXACT_IN_EXCEL:   # a double (and Excel's 15 digits) would lose the cents
            ws.write_string(r, c, str(d), self.money_text)
            return
        # the last formatting step: Excel holds a double; up to 15 digits are exact to the cent
        ws.write_number(r, c, float(d), self.money)


# Excel keeps 15 significant digits: an amount of 14 or more integer digits and its cents
# is written as its exact text instead (DECIMAL(18,2) allows 16 integer digits).
EXACT_IN_EXCEL = Decimal(10) ** 13
_BEYOND_EXCEL_RE = r"^-?[0-9]{14,}"
_CANDIDATE_ID = r"\d{15}"                        # may hold a resident ID (mask_text decides)
_FORMULA_RE = r"^[=+\-@\t\r]"                     # needs_escape, vectorised
_CONTROL_RE = r"[\x00-\x08\x0b-\x1f]"
_CONTROL_CHARS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20))]
XLS_STRMAX = 32767


def _letter(c: int) -> str:
    out = ""
    c += 1
    while c:
        c, r = divmod(c - 1, 26)
        out = chr(65 + r) + out
    return out


def _text_expr(frame: pl.DataFrame, key: str) -> pl.Expr:
    """The column as the text written (masked, '' for null), like _Book.string."""
    if key == "rule_zh":
        return (pl.col("rule_code").cast(pl.String)
                .replace_strict({c: r.zh for c, r in RULES.items()}, default="", return_dtype=pl.String)
                if "rule_code" in frame.columns else pl.lit(""))
    if key == "rule_name":
        name = pl.col("rule_name").cast(pl.String) if "rule_name" in frame.columns else pl.lit(None, pl.String)
        known = (pl.col("rule_code").cast(pl.String)
                 .replace_strict({c: r.name for c, r in RULES.items()}, default=None, return_dtype=pl.String)
                 if "rule_code" in frame.columns else pl.lit(None, pl.String))
        return pl.when((name.is_null() | (name == "")) & known.is_not_null()).then(known).otherwise(name)
    if key == "province_name":
        return (pl.col("province").cast(pl.String)
                .replace_strict({c: v[0] for c, v in PROVINCE_NAMES.items()}, default="",
                                return_dtype=pl.String)
                if "province" in frame.columns else pl.lit(""))
    if key not in frame.columns:
        return pl.lit("")
    dtype = frame.schema[key]
    if dtype == pl.String:
        return pl.col(key)
    if dtype == pl.Datetime:
        return pl.col(key).dt.strftime("%Y-%m-%d %H:%M:%S")
    if dtype in (pl.Date, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32,
                 pl.UInt64, pl.Boolean):
        return pl.col(key).cast(pl.String)
    return pl.col(key).map_elements(_text, return_dtype=pl.String)


SHORTENED = ("detail", "record_id", "source_file")  # long text cut for display


def _shorten_column(col: pl.Series) -> pl.Series:
    """shorten_for_display, vectorised (the full text stays in exceptions.csv / .parquet)."""
    long = col.str.len_chars() > DISPLAY_TEXT_MAX
    if not long.any():
        return col
    return pl.select(pl.when(long).then(col.str.slice(0, DISPLAY_TEXT_MAX) + DISPLAY_ELLIPSIS)
                     .otherwise(col)).to_series()


def _mask_column(col: pl.Series) -> pl.Series:
    """mask_text on the values that may hold a resident ID (the others are kept as they are)."""
    hits = col.filter(col.str.contains(_CANDIDATE_ID)).unique()
    if hits.is_empty():
        return col
    return col.replace({v: mask_text(v) for v in hits.to_list()})


def _xml_text(col: pl.Series) -> pl.Series:
    """xlsxwriter's escaping of a shared string: _xHHHH_ escapes, control characters, & < >."""
    col = col.str.slice(0, XLS_STRMAX)
    if col.str.contains(r"_x[0-9a-fA-F]{4}_").any():
        col = col.str.replace_all(r"(_x[0-9a-fA-F]{4}_)", "_x005F$1")
    if col.str.contains(_CONTROL_RE).any():
        for ch in _CONTROL_CHARS:
            col = col.str.replace_all(ch, f"_x{ord(ch):04X}_", literal=True)
    if col.str.contains("[\ufffe\uffff]").any():
        col = (col.str.replace_all("\ufffe", "_xFFFE_", literal=True)
               .str.replace_all("\uffff", "_xFFFF_", literal=True))
    return (col.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True))


def _money_text(frame: pl.DataFrame, key: str) -> pl.Series:
    """Amounts as exact decimal text with two decimals (null stays null)."""
    if key not in frame.columns:
        return pl.Series(key, [None] * frame.height, dtype=pl.String)
    col = frame.get_column(key)
    if isinstance(col.dtype, pl.Decimal) and (col.dtype.scale or 0) <= 2:
        return col.cast(pl.Decimal(38, 2)).cast(pl.String)
    return col.map_elements(lambda v: str(Decimal(str(v)).quantize(Decimal("0.01"))),
                            return_dtype=pl.String)


def _int_text(frame: pl.DataFrame, key: str) -> pl.Series:
    if key not in frame.columns:
        return pl.Series(key, [None] * frame.height, dtype=pl.String)
    col = frame.get_column(key)
    if col.dtype.is_integer():
        return col.cast(pl.String)
    return col.map_elements(lambda v: str(int(v)), return_dtype=pl.String)


def sheet_rows_xml(frame: pl.DataFrame, styles: dict[str, int], first_row: int = 2) -> str:
    """The <row> elements of the findings in `frame` (Excel rows from first_row), as XML text.

    styles: xf index of 'text', 'text_q', 'wrap', 'wrap_q', 'money', 'money_text', 'int'.
    """
    if frame.height == 0:
        return ""
    n = frame.height
    rownum = pl.int_range(first_row, first_row + n, eager=True).cast(pl.String)
    texts = frame.select([_text_expr(frame, key).alias(key) for key, _h, _w, kind in COLUMNS
                          if kind == "text"])
    cells: dict[str, pl.Series] = {}
    for c, (key, _h, _w, kind) in enumerate(COLUMNS):
        ref = _letter(c)
        if kind == "text":
            raw = _mask_column(texts.get_column(key).fill_null(""))
            if key in SHORTENED:
                raw = _shorten_column(raw)
            quoted = raw.str.contains(_FORMULA_RE)
            esc = _xml_text(raw)
            preserve = esc.str.contains(r"^\s|\s$")
            plain, q = ("wrap", "wrap_q") if key == "detail" else ("text", "text_q")
            df = pl.DataFrame({"r": rownum, "t": esc, "q": quoted, "p": preserve})
            cells[key] = df.select(pl.concat_str([
                pl.lit(f'<c r="{ref}'), pl.col("r"), pl.lit('" s="'),
                pl.when(pl.col("q")).then(pl.lit(str(styles[q]))).otherwise(pl.lit(str(styles[plain]))),
                pl.lit('" t="inlineStr"><is><t'),
                pl.when(pl.col("p")).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit("")),
                pl.lit(">"), pl.col("t"), pl.lit("</t></is></c>")])).to_series()
        else:
            v = _money_text(frame, key) if kind == "money" else _int_text(frame, key)
            s = str(styles["money" if kind == "money" else "int"])
            exact = (pl.lit(kind == "money") & pl.col("v").str.contains(_BEYOND_EXCEL_RE)).fill_null(False)
            df = pl.DataFrame({"r": rownum, "v": v})
            cells[key] = df.select(
                pl.when(pl.col("v").is_null())
                .then(pl.concat_str([pl.lit(f'<c r="{ref}'), pl.col("r"), pl.lit(f'" s="{s}"/>')]))
                .when(exact)   # as money_cell: the exact text where a double loses the cents
                .then(pl.concat_str([pl.lit(f'<c r="{ref}'), pl.col("r"),
                                     pl.lit(f'" s="{styles.get("money_text", s)}" t="inlineStr"><is><t>'),
                                     pl.col("v"), pl.lit("</t></is></c>")]))
                .otherwise(pl.concat_str([pl.lit(f'<c r="{ref}'), pl.col("r"), pl.lit(f'" s="{s}"><v>'),
                                          pl.col("v"), pl.lit("</v></c>")]))).to_series()
    spans = f"1:{len(COLUMNS)}"
    rows = pl.DataFrame({"r": rownum, **{k: v for k, v in cells.items()}}).select(
        pl.concat_str([pl.lit('<row r="'), pl.col("r"), pl.lit(f'" spans="{spans}">'),
                       *[pl.col(k) for k, _h, _w, _t in COLUMNS], pl.lit("</row>")]))
    return rows.to_series().str.join("").item()


def _findings_sheet(book: "_Book", name: str, frame: pl.DataFrame) -> None:
    """The sheet with its header, widths, frozen header and filter; rows are added after close."""
    ws = book.wb.add_worksheet(name)
    ws.set_row(0, 32)
    for c, (_key, header, width, _kind) in enumerate(COLUMNS):
        ws.write_string(0, c, header, book.header)
        ws.set_column(c, c, width)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(frame.height, 1), len(COLUMNS) - 1)
    book.pending.append((ws, frame))


_DIMENSION_RE = re.compile(rb'<dimension ref="[^"]*"/>')


def _fill_rows(path: Path, book: "_Book") -> None:
    """Put the data rows of the findings sheets into the file xlsxwriter wrote."""
    pending = [(ws, frame) for ws, frame in book.pending if frame.height]
    if not pending:
        return
    styles = {k: getattr(book, k).xf_index
              for k in ("text", "text_q", "wrap", "wrap_q", "money", "money_text", "int")}
    by_part = {f"xl/worksheets/sheet{ws.index + 1}.xml": frame for ws, frame in pending}
    out = path.with_name(path.name + ".rows")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED,
                                                        compresslevel=1) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            frame = by_part.get(info.filename)
            if frame is not None:
                rows = sheet_rows_xml(frame, styles).encode("utf-8")
                last = _letter(len(COLUMNS) - 1)
                data = _DIMENSION_RE.sub(f'<dimension ref="A1:{last}{frame.height + 1}"/>'.encode(),
                                         data, count=1)
                head, sep, tail = data.partition(b"</sheetData>")
                if not sep:
                    raise RuntimeError(f"no sheetData in {info.filename}")
                data = head + rows + sep + tail
            zi = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = info.external_attr
            zout.writestr(zi, data, compresslevel=1 if frame is not None else None)
    os.replace(out, path)


def _facts(s: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows of the run facts: status, why PARTIAL / STALE, provinces."""
    p = s.provinces
    facts = [("业务日期 Business date", s.business_date.isoformat()), ("状态 Status", s.status)]
    if s.status == STALE:
        facts += [("原状态 Status before STALE", str(s.status_before_stale)),
                  ("已过期 STALE", "an earlier date was re-run after this one; clear with "
                                  f"`{s.stale_clear_command}`")]
    facts += [("应报送省份 Provinces expected", f"{len(p.expected)}: " + " ".join(p.expected)),
              ("已报送省份 Provinces delivered", f"{len(p.delivered)}: " + " ".join(p.delivered)),
              ("未报送省份 Provinces missing", " ".join(
                  f"{x} {PROVINCE_NAMES.get(x, ('', ''))[0]}".strip() for x in p.missing) or "无 none")]
    facts += [("拒收文件 Rejected file (" + r.rule_code + ")",
               shorten_for_display(f"{r.province}/{r.file}: {r.reason}")) for r in s.rejected_files]
    ch = s.changes_since_previous_run
    if ch.previous_run_id:
        facts += [("上次运行 Previous run of this date", ch.previous_run_id),
                  ("新出现 New since then", f"{len(ch.new)}: " + " ".join(ch.new[:RERUN_IDS_SHOWN])),
                  ("消失 Disappeared since then",
                   f"{len(ch.disappeared)}: " + " ".join(ch.disappeared[:RERUN_IDS_SHOWN]))]
    facts += [("政策版本 Policy version", s.policy_version), ("程序版本 Code version", s.code_version),
              ("运行 Run", s.run_id), ("开始 Started at", s.started_at.isoformat()),
              ("结束 Finished at", s.finished_at.isoformat())]
    return facts


def _amounts_and_invariants(book: _Book, ws, r: int, s: RunSummary) -> int:
    """The amounts and the invariants of summary.json from row r; returns the next row."""
    r += 1
    ws.write_string(r, 0, "金额 Amounts (元 yuan)", book.label)
    r += 1
    names = {"settled": "已结算 Settled", "held": "挂起 Held", "refunded": "已退费 Refunded"}
    for k, v in s.amounts:
        ws.write_string(r, 0, names.get(k, k), book.text)
        book.money_cell(ws, r, 1, v)
        r += 1
    r += 1
    ws.write_string(r, 0, "不变量 Invariants", book.label)
    r += 1
    for inv in s.invariants:
        book.string(ws, r, 0, inv.name)
        ws.write_string(r, 1, "通过 passed" if inv.passed else "未通过 FAILED",
                        book.ok if inv.passed else book.error)
        book.string(ws, r, 2, f"value = {inv.value}; {inv.detail}")
        r += 1
    return r


def _per_rule(frame: pl.DataFrame) -> tuple[dict[str, int], dict[str, Decimal]]:
    """(count, amount) of the rows of each rule code, from the rows themselves."""
    counts: dict[str, int] = {}
    sums: dict[str, Decimal] = {}
    if not frame.height:
        return counts, sums
    code = (pl.col("rule_code").cast(pl.String).fill_null("None") if "rule_code" in frame.columns
            else pl.lit("None"))
    amount = pl.col("amount") if "amount" in frame.columns else pl.lit(None)
    per_rule = frame.select(code.alias("code"), amount.alias("amount")).group_by("code").agg(
        pl.len().alias("n"), pl.col("amount").count().alias("m"), pl.col("amount").alias("a"))
    for c, n, m, amounts in per_rule.iter_rows():
        counts[c] = n
        if m:
            sums[c] = sum((Decimal(str(a)) for a in amounts if a is not None), Decimal("0"))
    return counts, sums


def _rule_table(book: _Book, ws, r: int, frame: pl.DataFrame) -> None:
    """Findings per rule (every rule of the catalogue, Chinese and English names) from row r."""
    r += 1
    ws.write_string(r, 0, "各规则异常 Findings per rule", book.label)
    r += 1
    head = ("规则代码 Rule code", "规则名 Rule name", "规则名称 Rule (中文 / English)",
            "级别 Severity", "类别 Family", "数量 Count", "金额(元) Amount")
    top = r
    for c, h in enumerate(head):
        ws.write_string(r, c, h, book.header)
    counts, sums = _per_rule(frame)
    for code in list(RULES) + sorted(set(counts) - set(RULES)):
        r += 1
        rule = RULES.get(code)
        fam = FAMILIES.get(code[:1], ("", ""))
        for c, text in enumerate((code, rule.name if rule else "",
                                  f"{rule.zh} / {rule.en}" if rule else "",
                                  rule.severity if rule else "", f"{code[:1]} {fam[0]} {fam[1]}")):
            book.string(ws, r, c, text)
        ws.write_number(r, 5, counts.get(code, 0), book.count)
        book.money_cell(ws, r, 6, sums.get(code, Decimal("0")))
    r += 1
    ws.write_string(r, 0, "合计 Total", book.label)
    ws.write_number(r, 5, frame.height, book.count)
    book.money_cell(ws, r, 6, sum(sums.values(), Decimal("0")))
    ws.autofilter(top, 0, r - 1, len(head) - 1)


def _summary_sheet(book: _Book, s: RunSummary, frame: pl.DataFrame) -> None:
    """Run facts (why PARTIAL / STALE, provinces), amounts, invariants, findings per rule."""
    ws = book.wb.add_worksheet(SUMMARY_SHEET)
    for first, last, width in ((0, 0, 30), (1, 1, 24), (2, 2, 34), (3, 3, 12), (4, 4, 16),
                               (5, 5, 12), (6, 6, 18)):
        ws.set_column(first, last, width)
    ws.write_string(0, 0, f"共济对账异常汇总 Exceptions summary {s.business_date.isoformat()}", book.title)
    r = 2
    for label, value in _facts(s):
        ws.write_string(r, 0, label, book.label)
        book.string(ws, r, 1, value)
        r += 1
    r = _amounts_and_invariants(book, ws, r, s)
    _rule_table(book, ws, r, frame)
    ws.freeze_panes(1, 0)
    ws.activate()


def write(path, exceptions: pl.DataFrame, summary: RunSummary | dict) -> None:
    """Write exceptions.xlsx (aside, then renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = exceptions if exceptions is not None else pl.DataFrame()
    fd, tmp = tempfile.mkstemp(prefix=".exceptions-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    try:
        book = _Book(Path(tmp))
        _summary_sheet(book, summary if isinstance(summary, RunSummary) else parse_summary(summary),
                       frame)
        family = (pl.col("rule_code").cast(pl.String).fill_null("").str.slice(0, 1)
                  if "rule_code" in frame.columns else pl.lit(""))
        fam_of = frame.select(family.alias("f")).get_column("f") if frame.height else None
        for fam, sheet in FAMILY_SHEETS.items():
            fam_rows = frame.filter(fam_of == fam) if frame.height else frame
            parts = [fam_rows.slice(i, MAX_ROWS) for i in range(0, fam_rows.height, MAX_ROWS)] \
                or [fam_rows.clear()]
            for n, part in enumerate(parts):
                _findings_sheet(book, sheet if n == 0 else f"{sheet[:26]} ({n + 1})", part)
        if frame.height:
            other = frame.filter(~fam_of.is_in(list(FAMILY_SHEETS)))
            if other.height:
                _findings_sheet(book, "其他 Other", other)
        book.wb.close()
        _fill_rows(Path(tmp), book)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".rows").unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
