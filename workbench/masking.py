"""How the workbench masks free text (docs/workbench.md "Who may do what").

The project's rule is contracts/privacy.py's scrub_text: a resident ID number (17
digits and its GB 11643 check character) is masked wherever it occurs, letters glued
to it included (`ID110100198603155536` -> `ID110100********5536`). The auditors'
views' mask_text is applied after it, so that what it has always masked (any
18-character ID-like token, a legacy 15-digit number standing alone) stays masked.
Every text the workbench stores (findings, evidence, subjects, comments, reasons,
the summary's reason) or shows goes through mask().
"""
from __future__ import annotations

from auditview import mask_text


def mask(text) -> str | None:
    """`text` with every resident ID number masked (None stays None)."""
    if text is None:
        return None
    from contracts.privacy import scrub_text   # polars comes with it: import when needed
    return mask_text(scrub_text(str(text)))


def masked(obj):
    """`obj` (JSON-like: dicts, lists, text) with every text masked as `mask` does."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {k: masked(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [masked(v) for v in obj]
    return obj
