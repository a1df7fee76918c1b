"""How a finding is keyed to a case across business dates (docs/workbench.md).

exception_id embeds the business date, so it changes every night; a case needs
a key that stays the same while the same problem keeps appearing:

- most rules: rule_code | province | record_id. rules.md gives each rule's
  record_id: a file name (F02, F03), a province (F01), a row or record key
  (F04-F06), an event, transfer or settlement id. A rejected file or a missing
  province that recurs is the same case; a record id is the same record.
- B01 / B02: rule_code | province | the pair. record_id is already
  `<beneficiary_psn_no>:<sharer_psn_no>`, and province is the beneficiary's: a
  balance break of the same pair that persists night after night is one case.
- S11 (re-sharing) and S12 (forwarding): rule_code | province | sharer. Their
  record_id is the transfer_id, which is new every night, but what is audited
  is the person who passes received quota on (再共济): every night's transfers
  of that sharer belong to the one case, each a record of it.
- S13 (cycle): rule_code | province | the cycle. Its record_id is the closing
  transfer; the cycle is the persons named in the detail, in order, rotated to
  start at the smallest psn_no, so the same ring closed again on a later night,
  whoever closes it, is the same case (within the province of the sharer who
  closed it, so that province scope stays exact).

The key text itself may hold identifiers, so the case id is the first 16 hex
characters of its sha256, and only the masked subject is shown.
"""
from __future__ import annotations

import hashlib
import re

_PSN_RE = re.compile(r"(?<!\d)\d{20}(?!\d)")

PAIR_RULES = ("B01", "B02")
SHARER_RULES = ("S11", "S12")
CYCLE_RULES = ("S13",)


def cycle_of(detail: str | None) -> tuple[str, ...]:
    """The persons of the cycle named in an S13 detail, rotated to start at the smallest."""
    named = _PSN_RE.findall(detail or "")
    if len(named) >= 2 and named[0] == named[-1]:
        named = named[:-1]
    ring = list(dict.fromkeys(named))
    if len(ring) < 2:
        return ()
    i = ring.index(min(ring))
    return tuple(ring[i:] + ring[:i])


def case_key(rule_code: str, province: str, record_id: str | None, sharer_psn_no: str | None,
             detail: str | None) -> tuple[str, str, str]:
    """(key_kind, subject, key text) of one finding."""
    rule, prov = str(rule_code), str(province)
    rid = "" if record_id is None else str(record_id)
    if rule in PAIR_RULES:
        kind, subject = "pair", rid
    elif rule in SHARER_RULES and sharer_psn_no:
        kind, subject = "sharer", str(sharer_psn_no)
    elif rule in CYCLE_RULES and cycle_of(detail):
        kind, subject = "cycle", "→".join(cycle_of(detail))
    else:
        kind, subject = "record", rid
    return kind, subject, f"{rule}|{prov}|{kind}|{subject}"


def case_id(key_text: str) -> str:
    return hashlib.sha256(key_text.encode("utf-8")).hexdigest()[:16]
