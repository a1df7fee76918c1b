"""report.html of outputs.md: one self-contained, bilingual page per business date.

    write(path, con, ctx, summary, exceptions, settlement, positions) -> None
    render(con, ctx, summary, exceptions, settlement, positions, config=None) -> str

Self-contained: CSS, JavaScript, data and charts are inline (no CDN, no network).
Charts are SVG generated here (bars per rule family, province x rule heat map,
payer x payee clearing matrix, positions); the findings explorer, drill-down to
evidence, chain drawings and the family view are vanilla JavaScript over a JSON
block (<script type="application/json">) whose text is escaped so that no
delivered string can close the block or inject markup. Every number labelled
with data-summary-key is summary.json's own value (tests compare them).
"""
from __future__ import annotations

import html
import json
import math
import os
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import polars as pl
from markupsafe import Markup

from contracts.codes import FAMILIES, PROVINCE_NAMES, RULES
from contracts.reports import RERUN_IDS_SHOWN
from contracts.summary import RunSummary
from contracts.summary import parse as parse_summary
from auditview import AuditConfig, display_text, mask_text, report_data

TEMPLATES = Path(__file__).resolve().parent / "templates"

FAMILY_COLOURS = {"F": "#6b7a8f", "S": "#c0392b", "X": "#d68910", "B": "#1f6fb2"}


# --------------------------------------------------------------------------- helpers

def _esc(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def fmt_money(value: Any) -> str:
    """'1234567.5' -> '1,234,567.50' (Decimal all the way; '—' when absent)."""
    if value is None or value == "":
        return "—"
    try:
        d = Decimal(str(value)).quantize(Decimal("0.01"))
    except Exception:  # not a number: show it as given (escaped by the template)
        return str(value)
    return f"{d:,.2f}"


def short_money(d: Decimal) -> str:
    """Compact label for chart cells: 1234 -> 1.2k, 2500000 -> 2.5M."""
    a = abs(d)
    sign = "-" if d < 0 else ""
    if a >= Decimal("1000000"):
        return f"{sign}{(a / Decimal(1000000)).quantize(Decimal('0.1'))}M"
    if a >= Decimal("1000"):
        return f"{sign}{(a / Decimal(1000)).quantize(Decimal('0.1'))}k"
    return f"{sign}{a.quantize(Decimal('1'))}"


def _json_for_script(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>', '&', U+2028/9 raw."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _get(d: dict | None, *keys, default=None):
    cur: Any = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def _heat_colour(n: int, top: int) -> str:
    if n <= 0:
        return "#f4f6f8"
    t = math.log1p(n) / math.log1p(max(top, 1))
    # from light amber to deep red
    r = int(253 + (165 - 253) * t)
    g = int(224 + (15 - 224) * t)
    b = int(178 + (21 - 178) * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def _flow_colour(v: Decimal, top: Decimal) -> str:
    if v == 0 or top == 0:
        return "#f4f6f8"
    t = math.log1p(float(abs(v))) / math.log1p(float(top))  # colour only, never money
    if v > 0:
        r, g, b = int(222 + (20 - 222) * t), int(235 + (90 - 235) * t), int(247 + (160 - 247) * t)
    else:
        r, g, b = int(253 + (190 - 253) * t), int(219 + (60 - 219) * t), int(199 + (40 - 199) * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def _prov_short(code: str) -> str:
    zh, en = PROVINCE_NAMES.get(code, ("", ""))
    return f"{code} {zh}".strip()


# --------------------------------------------------------------------------- SVG charts

def svg_rule_bars(rules: list[dict]) -> str:
    """Horizontal bars: findings per rule, grouped by family (rules with findings)."""
    rows = [r for r in rules if r["count"]]
    if not rows:
        return '<p class="muted">无异常 No findings.</p>'
    top = max(r["count"] for r in rows)
    label_w, bar_w, row_h, pad = 210, 300, 21, 6
    groups: list[tuple[str, list[dict]]] = []
    for fam in FAMILIES:
        g = [r for r in rows if r["family"] == fam]
        if g:
            groups.append((fam, g))
    other = [r for r in rows if r["family"] not in FAMILIES]
    if other:
        groups.append(("?", other))
    height = sum(len(g) * row_h + 26 for _, g in groups) + pad
    width = label_w + bar_w + 56
    out = [f'<svg class="chart fit" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="Findings per rule">']
    y = pad
    for fam, g in groups:
        zh, en = FAMILIES.get(fam, ("其他", "Other"))
        out.append(f'<text x="0" y="{y + 14}" class="svg-h">{_esc(fam)} · {_esc(zh)} {_esc(en)}</text>')
        y += 22
        colour = FAMILY_COLOURS.get(fam, "#888")
        for r in g:
            w = max(2, round(bar_w * r["count"] / top))
            out.append(
                f'<g class="bar" data-rule="{_esc(r["code"])}" tabindex="0">'
                f'<title>{_esc(r["code"])} {_esc(r["zh"])} {_esc(r["en"])}: {r["count"]}</title>'
                f'<text x="0" y="{y + 14}" class="svg-l">{_esc(r["code"])} {_esc(r["zh"])}</text>'
                f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 7}" rx="2" fill="{colour}"/>'
                f'<text x="{label_w + w + 6}" y="{y + 14}" class="svg-n">{r["count"]:,}</text></g>')
            y += row_h
        y += 4
    out.append("</svg>")
    return "".join(out)


def svg_heatmap(hm: dict, rules: list[dict]) -> str:
    """Province x rule heat map of finding counts (cells clickable: filter the explorer)."""
    provinces, codes = hm["provinces"], hm["rules"]
    if not provinces:
        return '<p class="muted">无异常 No findings.</p>'
    counts = {(p, c): n for p, c, n in hm["cells"]}
    top = max(counts.values())
    cw, ch, left, head = 34, 20, 120, 46
    width = left + cw * len(codes) + 60
    height = head + ch * len(provinces) + 8
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="Findings by province and rule">']
    for j, c in enumerate(codes):
        x = left + j * cw + cw / 2
        fam = c[:1]
        out.append(f'<text x="{x}" y="{head - 10}" class="svg-c" text-anchor="middle" '
                   f'fill="{FAMILY_COLOURS.get(fam, "#333")}">{_esc(c)}</text>')
    for i, p in enumerate(provinces):
        y = head + i * ch
        out.append(f'<text x="{left - 8}" y="{y + 14}" class="svg-l" text-anchor="end">'
                   f'{_esc(_prov_short(p))}</text>')
        for j, c in enumerate(codes):
            n = counts.get((p, c), 0)
            x = left + j * cw
            colour = _heat_colour(n, top)
            rule = RULES.get(c)
            tip = f'{p} {PROVINCE_NAMES.get(p, ("", ""))[0]} × {c} {rule.zh if rule else ""}: {n}'
            attrs = f' class="cell" data-province="{_esc(p)}" data-rule="{_esc(c)}" tabindex="0"' if n else ""
            out.append(f'<g{attrs}><title>{_esc(tip)}</title>'
                       f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" rx="2" fill="{colour}"/>')
            if n:
                fg = "#fff" if math.log1p(n) / math.log1p(max(top, 1)) > 0.55 else "#3a2a1a"
                out.append(f'<text x="{x + cw / 2}" y="{y + 14}" class="svg-v" text-anchor="middle" '
                           f'fill="{fg}">{n}</text>')
            out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def svg_clearing_matrix(clearing: dict) -> str:
    """Payer (rows, the sharer's province) x payee (columns) net clearing amounts."""
    provs = clearing["provinces"]
    if not provs:
        return '<p class="muted">当日无清算 No clearing flows on this date.</p>'
    net = {(f["payer"], f["payee"]): Decimal(f["net"]) for f in clearing["flows"]}
    top = max((abs(v) for v in net.values()), default=Decimal("0"))
    cw, ch, left, head = 44, 20, 92, 44
    width = max(left + cw * len(provs) + 10, 330)
    height = head + ch * len(provs) + 10
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="Inter-province clearing matrix">']
    out.append(f'<text x="{left}" y="12" class="svg-s">收款省(被共济人) payee → </text>')
    for j, p in enumerate(provs):
        out.append(f'<text x="{left + j * cw + cw / 2}" y="{head - 8}" class="svg-c" '
                   f'text-anchor="middle">{_esc(p)}</text>')
    for i, a in enumerate(provs):
        y = head + i * ch
        out.append(f'<text x="{left - 6}" y="{y + 14}" class="svg-l" text-anchor="end">'
                   f'{_esc(_prov_short(a))}</text>')
        for j, b in enumerate(provs):
            x = left + j * cw
            v = net.get((a, b))
            if v is None:
                out.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="#f7f8fa"/>')
                continue
            t = math.log1p(float(abs(v))) / math.log1p(float(top)) if top else 0
            fg = "#fff" if t > 0.6 else "#1b2733"
            diag = ' stroke="#888" stroke-dasharray="2 2"' if a == b else ""
            out.append(f'<g><title>{_esc(_prov_short(a))} → {_esc(_prov_short(b))}: '
                       f'{_esc(fmt_money(v))}</title>'
                       f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" rx="2" '
                       f'fill="{_flow_colour(v, top)}"{diag}/>'
                       f'<text x="{x + cw / 2}" y="{y + 14}" class="svg-v" text-anchor="middle" '
                       f'fill="{fg}">{_esc(short_money(v))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def svg_positions(positions: list[dict]) -> str:
    """Diverging bars of each province's net position (receivable − payable)."""
    if not positions:
        return ""
    vals = [(p["province"], Decimal(p["net"] or "0")) for p in positions]
    top = max((abs(v) for _, v in vals), default=Decimal("0")) or Decimal("1")
    half, row_h, left = 180, 18, 100
    width = left + 2 * half + 110
    height = row_h * len(vals) + 10
    mid = left + half
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="Net positions">',
           f'<line x1="{mid}" y1="0" x2="{mid}" y2="{height}" stroke="#9aa5b1"/>']
    for i, (p, v) in enumerate(vals):
        y = i * row_h + 4
        w = max(1, int(half * abs(v) / top)) if v else 0   # pixel width only
        x = mid if v >= 0 else mid - w
        colour = "#1f6fb2" if v >= 0 else "#c0392b"
        out.append(f'<g><title>{_esc(_prov_short(p))}: {_esc(fmt_money(v))}</title>'
                   f'<text x="{left - 6}" y="{y + 12}" class="svg-l" text-anchor="end">{_esc(_prov_short(p))}</text>'
                   f'<rect x="{x}" y="{y + 2}" width="{w}" height="{row_h - 5}" fill="{colour}" rx="2"/>'
                   f'<text x="{mid + half + 8}" y="{y + 12}" class="svg-n">{_esc(fmt_money(v))}</text></g>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- summary

def _files(s: RunSummary) -> list[dict]:
    return [{"file": f.source_file, "read": f.rows_read, "loaded": f.rows_loaded,
             "quarantined": f.rows_quarantined, "rejected": f.rejected,
             "ok": f.rows_read == f.rows_loaded + f.rows_quarantined} for f in s.files]


def _invariants(s: RunSummary) -> list[dict]:
    return [{"name": i.name, "passed": i.passed, "values": f"value = {i.value}; {i.detail}"}
            for i in s.invariants]


AMOUNT_LABELS = {
    "settled": ("已结算", "Settled"), "held": ("挂起", "Held"), "refunded": ("已退费", "Refunded"),
    "refund_held": ("退费挂起", "Refunds held"),
    "normal_wallet_pay": ("正常结算钱包支付", "Wallet pay of NORMAL settlements"),
    "transfers_in": ("转入", "Transfers in"), "transfers_out": ("转出", "Transfers out"),
}
HEADLINE_AMOUNTS = ("settled", "held", "refunded", "refund_held")


def _cards(s: RunSummary, data: dict) -> list[dict]:
    """The totals cards. Each card's figure is summary.json's own (its key says which);
    the line under it counts the loaded records the figure is made of."""
    wt = data["warehouse_totals"]
    cards = []
    if wt:
        for side, zh, en, key in (("out", "成功转出", "Transfers out (SUCCESS)", "transfers_out"),
                                  ("in", "成功转入", "Transfers in (SUCCESS)", "transfers_in")):
            n = wt[side]
            cards.append({"zh": zh, "en": en, "value": fmt_money(getattr(s.amounts, key)),
                          "key": f"amounts.{key}",
                          "sub": f'{n["success"]:,} 笔 {side.upper()} records · {n["cross"]:,} 跨省 cross-province · '
                                 f'{n["failed"]:,} 失败 FAILED'})
    amounts = dict(s.amounts)
    for k in HEADLINE_AMOUNTS:
        zh, en = AMOUNT_LABELS[k]
        cards.append({"zh": zh, "en": en, "value": fmt_money(amounts[k]), "key": f"amounts.{k}",
                      "sub": None})
    cl = data["clearing"]
    cards.append({"zh": "跨省清算(结算)", "en": "Cleared across provinces (settled)",
                  "key": "amounts.cleared_cross_province",
                  "value": fmt_money(amounts["cleared_cross_province"]),
                  "sub": f'退费后净额 net of refunds {fmt_money(cl["cross_province_net"])} · '
                         f'本省内净额 same province net {fmt_money(cl["same_province_net"])}'})
    return cards


def shorten(text: Any) -> str:
    """Long text (detail, record_id, file names) cut for display; the full value stays in
    exceptions.csv / .parquet (contracts.reports.DISPLAY_TEXT_MAX)."""
    return display_text("" if text is None else str(text))


def _page_header_env():
    return _env().get_template("report_header.html.j2")


def render_header(summary: RunSummary | dict) -> str:
    """The header of the page (status, why PARTIAL, STALE and how to clear it) from
    summary.json alone: also re-rendered when the date is marked STALE later."""
    s = summary if isinstance(summary, RunSummary) else parse_summary(summary)
    return _page_header_env().render(s=s, province_label=_province_label, shorten=shorten)


def _province_label(p: str) -> str:
    return f'{p} {PROVINCE_NAMES.get(p, ("", ""))[0]}'.strip() if p else ""


# --------------------------------------------------------------------------- render

def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.ChainableUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(con: duckdb.DuckDBPyConnection, ctx, summary: RunSummary | dict, exceptions: pl.DataFrame,
           settlement: pl.DataFrame | None, positions: pl.DataFrame | None,
           config: AuditConfig | None = None) -> str:
    """The page as a string. `ctx` is a transforms.context.RunContext (business_date, policy);
    `summary` is summary.json as the run writes it (contracts/summary.py)."""
    s = summary if isinstance(summary, RunSummary) else parse_summary(summary)
    business_date: date = ctx.business_date
    data = report_data(con, business_date, exceptions, settlement, positions, ctx.policy, config)

    frame_counts = {r["code"]: r["count"] for r in data["rules"]}
    summary_counts = {code: s.findings.per_rule[code] if code in s.findings.per_rule else 0
                      for code in frame_counts}
    disagree = (summary_counts != frame_counts or s.findings.total != data["findings_total"]
                or set(s.findings.per_rule) - set(frame_counts))
    index = {row[0]: row for row in data["findings"]["rows"]}
    largest = [dict(zip(data["findings"]["fields"], index[e])) for e in data["largest"] if e in index]
    page_meta = {
        "rules": {c: {"zh": r.zh, "en": r.en, "name": r.name, "severity": r.severity}
                  for c, r in RULES.items()},
        "provinces": {c: list(v) for c, v in PROVINCE_NAMES.items()},
        "families": {k: list(v) for k, v in FAMILIES.items()},
    }
    tmpl = _env().get_template("report.html.j2")
    return tmpl.render(
        d=business_date.isoformat(), s=s, header=Markup(render_header(s)),
        policy_version=s.policy_version, code_version=s.code_version,
        invariants=_invariants(s), files=_files(s), cards=_cards(s, data),
        findings_total=s.findings.total,
        errors=sum(r["count"] for r in data["rules"] if r["severity"] == "ERROR"),
        warnings=sum(r["count"] for r in data["rules"] if r["severity"] == "WARNING"),
        summary_counts=summary_counts, rules=data["rules"],
        rules_by_code={r["code"]: r for r in data["rules"]}, disagree=disagree,
        frame_total=data["findings_total"], families=FAMILIES, family_colours=FAMILY_COLOURS,
        bars=Markup(svg_rule_bars(data["rules"])),
        heat=Markup(svg_heatmap(data["heatmap"], data["rules"])),
        matrix=Markup(svg_clearing_matrix(data["clearing"])),
        positions_svg=Markup(svg_positions(data["clearing"]["positions"])),
        clearing=data["clearing"], largest=largest, dod=data["day_over_day"],
        ch=s.changes_since_previous_run, rerun_cap=RERUN_IDS_SHOWN,
        province_label=_province_label, fmt_money=fmt_money, mask_text=mask_text, shorten=shorten,
        embedded=data["findings_embedded"], capped=data["findings_embedded"] < data["findings_total"],
        config=data["config"], window_days=data["policy"]["forwarding_window_days"],
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
        data_json=Markup(_json_for_script(data)),
        meta_json=Markup(_json_for_script(page_meta)),
    )


def write(path, con: duckdb.DuckDBPyConnection, ctx, summary: dict, exceptions: pl.DataFrame,
          settlement: pl.DataFrame | None, positions: pl.DataFrame | None,
          config: AuditConfig | None = None) -> None:
    """Render and write report.html (written aside, then renamed into place)."""
    path = Path(path)
    text = render(con, ctx, summary, exceptions, settlement, positions, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


HEADER_START, HEADER_END = "<!--recon:header-->", "<!--/recon:header-->"


def restamp_header(path, summary: RunSummary) -> bool:
    """Re-render the header of a published report.html from `summary` (a date marked
    STALE), written aside and renamed into place. False when the page has no header
    markers (not a page of this program): it is then left as it is."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.count(HEADER_START) != 1 or text.count(HEADER_END) != 1:
        return False
    head, rest = text.split(HEADER_START)
    _old, tail = rest.split(HEADER_END)
    _write_aside(path, head + HEADER_START + render_header(summary) + HEADER_END + tail)
    return True


def _write_aside(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
