"""The auditors' view: its settings, masking of resident ID numbers and the formatting of
cells (money as text with two decimals, province labels).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contracts.codes import PROVINCE_NAMES
from contracts.privacy import scrub_text
from contracts.reports import shorten_for_display

CENT = Decimal("0.01")

# Columns of the exceptions report (outputs.md), in order.
EXCEPTION_COLUMNS = (
    "exception_id", "business_date", "rule_code", "rule_name", "severity", "province",
    "dataset", "record_id", "sharer_psn_no", "beneficiary_psn_no", "amount", "detail",
    "source_file", "source_row",
)
# Compact row layout of findings embedded in the page.
FINDING_FIELDS = (
    "exception_id", "rule_code", "severity", "province", "dataset", "record_id",
    "sharer_psn_no", "beneficiary_psn_no", "amount", "detail", "source_file", "source_row",
)


@dataclass(frozen=True)
class AuditConfig:
    """Volume caps, so that the page stays small on a national day."""
    evidence_per_rule: int = 20      # findings per rule with drill-down evidence
    largest_cases: int = 25          # largest findings by |amount| (also evidenced)
    families: int = 10               # sharers with a family view
    family_rows: int = 100           # rows per table of one family
    evidence_rows: int = 50          # rows per evidence table
    max_findings: int = 20000        # findings embedded for filter and search
    day_over_day_rows: int = 500     # rows listed per new / recurring / resolved


# --------------------------------------------------------------------------- masking

_CERTNO_RE = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")


def mask_certno(certno: str | None) -> str | None:
    """First 6 and last 4 characters, the rest as '*' (440106********123X)."""
    if certno is None:
        return None
    s = str(certno)
    if len(s) <= 10:
        return "*" * len(s)
    return s[:6] + "*" * (len(s) - 10) + s[-4:]


def display_text(text: str | None) -> str | None:
    """Free text as the auditors' views show it: masked, and shortened past
    contracts.reports.DISPLAY_TEXT_MAX (the full value stays in the CSV / Parquet)."""
    return shorten_for_display(scrub_text(mask_text(text)))


def mask_text(text: str | None) -> str | None:
    """Mask every resident-ID-like token (18 characters: 17 digits and a digit or X; legacy 15 digits) in free text."""
    if text is None:
        return None
    return _CERTNO_RE.sub(lambda m: mask_certno(m.group(0)), str(text))


def _mask_raw(raw: str | None) -> str | None:
    """A quarantined row as JSON text: mask its certno field whatever its shape, then the text."""
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError):
        return mask_text(raw)
    if isinstance(obj, dict):
        for k in list(obj):
            if str(k).strip().lower().lstrip("\ufeff") == "certno" and obj[k] is not None:
                obj[k] = mask_certno(str(obj[k]))
        return mask_text(json.dumps(obj, ensure_ascii=False))
    return mask_text(raw)


# --------------------------------------------------------------------------- formatting

def money(value: Any) -> str | None:
    """A Decimal (or int / numeric string) as a string with exactly two decimals."""
    if value is None:
        return None
    if isinstance(value, float):  # never expected; refuse silently-wrong money
        raise TypeError("money must not be a float")
    return str(Decimal(str(value)).quantize(CENT))


def _cell(column: str, value: Any) -> Any:
    """A warehouse value as an evidence cell shows it: masked, money as text, long text cut."""
    if value is None:
        return None
    if column == "certno":
        return mask_certno(value)
    if column in ("raw",):
        return shorten_for_display(_mask_raw(value))
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return value
    return display_text(str(value))


def province_label(code: str | None) -> str:
    if code is None:
        return ""
    zh, en = PROVINCE_NAMES.get(code, ("", ""))
    return f"{code} {zh} {en}".strip()
