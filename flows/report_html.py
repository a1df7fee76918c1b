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
from transforms.audit_view import AuditConfig, mask_text, money, report_data

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

def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, (list, tuple, set)):
        return sorted(str(x) for x in v)
    return []


def _count(v: Any) -> int | None:
    if isinstance(v, (list, tuple, set)):
        return len(v)
    if isinstance(v, int):
        return v
    return None


def _files(summary: dict) -> list[dict]:
    files = summary.get("files")
    rows = []
    if isinstance(files, dict):
        for name, f in sorted(files.items()):
            if isinstance(f, dict):
                rows.append({"file": name, **f})
    elif isinstance(files, list):
        for f in files:
            if isinstance(f, dict):
                rows.append(dict(f))
    out = []
    for f in rows:
        name = f.get("file") or f.get("source_file") or f.get("name") or ""
        read, loaded, quar = f.get("rows_read"), f.get("rows_loaded"), f.get("rows_quarantined")
        out.append({"file": name, "read": read, "loaded": loaded, "quarantined": quar,
                    "rejected": f.get("rejected"),
                    "ok": (read == (loaded or 0) + (quar or 0)) if isinstance(read, int) else None})
    return out


def _invariants(summary: dict) -> list[dict]:
    inv = summary.get("invariants") or []
    if isinstance(inv, dict):
        inv = [{"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in inv.items()]
    out = []
    for i in inv:
        if not isinstance(i, dict):
            continue
        extra = {k: v for k, v in i.items() if k not in ("name", "passed")}
        out.append({"name": i.get("name", ""), "passed": i.get("passed"),
                    "values": "; ".join(f"{k} = {v}" for k, v in extra.items())})
    return out


AMOUNT_LABELS = {
    "settled": ("已结算", "Settled"), "held": ("挂起", "Held"), "refunded": ("已退费", "Refunded"),
    "cleared": ("已清算", "Cleared"), "transferred": ("已转账", "Transferred"),
    "wallet_pay_normal": ("正常结算钱包支付", "Wallet pay of NORMAL settlements"),
}


def _cards(summary: dict, data: dict) -> list[dict]:
    amounts = summary.get("amounts") if isinstance(summary.get("amounts"), dict) else {}
    wt = data.get("warehouse_totals") or {}
    cards = []
    if wt:
        cards.append({"zh": "成功转账", "en": "Transfers (SUCCESS)", "value": fmt_money(wt.get("transfers_amount")),
                      "sub": f'{wt.get("transfers_success", 0):,} 笔 transfers · {wt.get("transfers_cross", 0):,} 跨省 cross-province · '
                             f'{wt.get("transfers_failed", 0):,} 失败 failed', "key": None})
    for k in ("settled", "held", "refunded"):
        zh, en = AMOUNT_LABELS[k]
        cards.append({"zh": zh, "en": en, "value": fmt_money(amounts.get(k)), "key": f"amounts.{k}",
                      "sub": None})
    for k, v in amounts.items():
        if k in ("settled", "held", "refunded"):
            continue
        zh, en = AMOUNT_LABELS.get(k, ("", k.replace("_", " ").capitalize()))
        cards.append({"zh": zh, "en": en, "value": fmt_money(v), "key": f"amounts.{k}", "sub": None})
    cl = data.get("clearing") or {}
    cards.append({"zh": "跨省清算净额", "en": "Cleared across provinces", "key": None,
                  "value": fmt_money(cl.get("cross_province_net")),
                  "sub": f'本省内 same province {fmt_money(cl.get("same_province_net"))}'})
    return cards


# --------------------------------------------------------------------------- render

def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.ChainableUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(con: duckdb.DuckDBPyConnection, ctx, summary: dict, exceptions: pl.DataFrame,
           settlement: pl.DataFrame | None, positions: pl.DataFrame | None,
           config: AuditConfig | None = None) -> str:
    """The page as a string. `ctx` is a transforms.context.RunContext (business_date, policy)."""
    summary = summary or {}
    business_date: date = getattr(ctx, "business_date", None) or date.fromisoformat(str(summary["business_date"]))
    policy = getattr(ctx, "policy", None)
    data = report_data(con, business_date, exceptions, settlement, positions, policy, config)

    fpr = summary.get("findings_per_rule") if isinstance(summary.get("findings_per_rule"), dict) else {}
    frame_counts = {r["code"]: r["count"] for r in data["rules"] if r["count"]}
    summary_counts = {k: int(v) for k, v in fpr.items() if v}
    disagree = bool(fpr) and summary_counts != frame_counts

    expected = summary.get("provinces_expected")
    delivered = summary.get("provinces_delivered")
    missing = sorted(set(_as_list(expected)) - set(_as_list(delivered)))
    rules_by_code = {r["code"]: r for r in data["rules"]}
    largest = []
    index = {row[0]: row for row in data["findings"]["rows"]}
    for e in data["largest"]:
        row = index.get(e)
        if row:
            largest.append(dict(zip(data["findings"]["fields"], row)))

    findings_total = sum(summary_counts.values()) if fpr else data["findings_total"]
    errors = sum(r["count"] for r in data["rules"] if r["severity"] == "ERROR")
    warnings = sum(r["count"] for r in data["rules"] if r["severity"] == "WARNING")

    page_meta = {
        "rules": {c: {"zh": r.zh, "en": r.en, "name": r.name, "severity": r.severity}
                  for c, r in RULES.items()},
        "provinces": {c: list(v) for c, v in PROVINCE_NAMES.items()},
        "families": {k: list(v) for k, v in FAMILIES.items()},
    }
    tmpl = _env().get_template("report.html.j2")
    return tmpl.render(
        d=business_date.isoformat(),
        summary=summary,
        status=str(summary.get("status", "UNKNOWN")),
        policy_version=summary.get("policy_version") or (policy.version if policy else ""),
        code_version=summary.get("code_version", ""),
        started_at=summary.get("started_at", ""), finished_at=summary.get("finished_at", ""),
        expected_count=_count(expected), delivered_count=_count(delivered), missing=missing,
        invariants=_invariants(summary), files=_files(summary),
        cards=_cards(summary, data),
        findings_total=findings_total, errors=errors, warnings=warnings,
        fpr=fpr, rules=data["rules"], rules_by_code=rules_by_code, disagree=disagree,
        frame_total=data["findings_total"],
        families=FAMILIES, family_colours=FAMILY_COLOURS,
        bars=Markup(svg_rule_bars(data["rules"])),
        heat=Markup(svg_heatmap(data["heatmap"], data["rules"])),
        matrix=Markup(svg_clearing_matrix(data["clearing"])),
        positions_svg=Markup(svg_positions(data["clearing"]["positions"])),
        clearing=data["clearing"],
        largest=largest, dod=data["day_over_day"],
        rerun_new=summary.get("new_findings") or [], rerun_gone=summary.get("disappeared_findings") or [],
        province_label=lambda p: (f'{p} {PROVINCE_NAMES.get(p, ("", ""))[0]}' if p else ""),
        fmt_money=fmt_money, mask_text=mask_text,
        embedded=data["findings_embedded"], capped=data["findings_embedded"] < data["findings_total"],
        config=data["config"],
        window_days=(data["policy"] or {}).get("forwarding_window_days", 30),
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


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
