"""Settlement checks of rules.md §6: S14-S17.

(S07 on settlements is judged with the ESTABLISH half in transforms/rules_persons.py.)

All four are judged on NORMAL settlements only (docs/spec-readings.md item 7:
a refund gives money back and is judged by S20 alone, in transforms/ledger.py).
A NORMAL settlement with any of them (or S07, F06) is held by the ledger.

province: the settlement's file province; dataset 'settlements'; record_id setl_id.
"""
from __future__ import annotations

import duckdb

from contracts.codes import INELIGIBLE_EXPENSE_TYPES, PREMIUM_EXPENSE_TYPES
from transforms.context import RunContext
from transforms.findings import record

# The FINDING_COLUMNS of a settlement record `s`, with a detail expression.
_SELECT = """
    SELECT s.file_province AS province, 'settlements' AS dataset, s.setl_id AS record_id,
           NULL::VARCHAR AS sharer_psn_no, s.psn_no AS beneficiary_psn_no,
           s.wallet_pay AS amount, {detail} AS detail,
           s.source_file AS source_file, s.source_row AS source_row
"""


def _in_list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def s14_ineligible_expense(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S14 INELIGIBLE_EXPENSE: "NORMAL settlement with an ineligible expense_type"."""
    detail = "'expense_type ' || s.expense_type || ' may not be paid from shared quota'"
    record(con, "S14", _SELECT.format(detail=detail) + f"""
        FROM d_settlements s
        WHERE s.status = 'NORMAL' AND s.expense_type IN ({_in_list(INELIGIBLE_EXPENSE_TYPES)})
    """)


def s15_not_designated(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S15 NOT_DESIGNATED: "OUTPATIENT/INPATIENT not at a HOSPITAL, PHARMACY not at a
    PHARMACY, or the institution is unknown or not designated on D".

    Designated on D: designated_from <= D and (designated_to is null or >= D),
    from the reference institutions loaded for D. NORMAL settlements only. The
    type test concerns the three medical types; "unknown or not designated"
    concerns every settlement made at an institution (premiums have none).
    """
    detail = """
        CASE
          WHEN i.fixmedins_code IS NULL THEN
            'institution ' || coalesce(s.fixmedins_code, '(none)') || ' is unknown'
          WHEN s.expense_type IN ('OUTPATIENT', 'INPATIENT') AND i.fixmedins_type <> 'HOSPITAL' THEN
            s.expense_type || ' at ' || s.fixmedins_code || ', a ' || i.fixmedins_type || ', not a HOSPITAL'
          WHEN s.expense_type = 'PHARMACY' AND i.fixmedins_type <> 'PHARMACY' THEN
            'PHARMACY at ' || s.fixmedins_code || ', a ' || i.fixmedins_type || ', not a PHARMACY'
          ELSE 'institution ' || s.fixmedins_code || ' is designated from ' ||
               CAST(i.designated_from AS VARCHAR) || ' to ' ||
               coalesce(CAST(i.designated_to AS VARCHAR), 'open') || ', not on ' || $d
        END"""
    record(con, "S15", _SELECT.format(detail=detail) + """
        FROM d_settlements s
        LEFT JOIN d_institutions i ON i.fixmedins_code = s.fixmedins_code
        WHERE s.status = 'NORMAL'
          AND s.fixmedins_code IS NOT NULL
          AND (i.fixmedins_code IS NULL
               OR (s.expense_type IN ('OUTPATIENT', 'INPATIENT') AND i.fixmedins_type <> 'HOSPITAL')
               OR (s.expense_type = 'PHARMACY' AND i.fixmedins_type <> 'PHARMACY')
               OR NOT (i.designated_from <= CAST($d AS DATE)
                       AND (i.designated_to IS NULL OR i.designated_to >= CAST($d AS DATE))))
    """, {"d": ctx.d})


def s16_partial_premium(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S16 PARTIAL_PREMIUM: "RESIDENT_PREMIUM or LTC_PREMIUM with wallet_pay different
    from personal_burden (premiums are paid in full)"."""
    detail = ("s.expense_type || ' wallet_pay ' || CAST(s.wallet_pay AS VARCHAR) || "
              "' differs from the premium due ' || CAST(s.personal_burden AS VARCHAR)")
    record(con, "S16", _SELECT.format(detail=detail) + f"""
        FROM d_settlements s
        WHERE s.status = 'NORMAL' AND s.expense_type IN ({_in_list(PREMIUM_EXPENSE_TYPES)})
          AND s.wallet_pay <> s.personal_burden
    """)


def s17_over_burden(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S17 OVER_BURDEN: "other types: wallet_pay > personal_burden"."""
    detail = ("'wallet_pay ' || CAST(s.wallet_pay AS VARCHAR) || ' exceeds the personal burden ' || "
              "CAST(s.personal_burden AS VARCHAR) || ' of ' || s.expense_type")
    record(con, "S17", _SELECT.format(detail=detail) + f"""
        FROM d_settlements s
        WHERE s.status = 'NORMAL' AND s.expense_type NOT IN ({_in_list(PREMIUM_EXPENSE_TYPES)})
          AND s.wallet_pay > s.personal_burden
    """)


RULES = (s14_ineligible_expense, s15_not_designated,
         s16_partial_premium, s17_over_burden)


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    for rule in RULES:
        rule(con, ctx)
