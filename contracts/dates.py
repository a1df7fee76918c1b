"""Business dates as recon writes and reads them: YYYY-MM-DD in ASCII digits, nothing else.

One reading for every place a date comes from outside as text: the command line, the
inbox's and <out>'s folder names, the status file, a clear command. Python 3.11's
`date.fromisoformat` alone would also take 20260103 and 2026W014.
"""
from __future__ import annotations

import re
from datetime import date

ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_date(text: object) -> date | None:
    """The date `text` writes as YYYY-MM-DD; None when it is anything else (or no real date)."""
    if not isinstance(text, str) or not ISO_DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:   # 2026-02-30
        return None
