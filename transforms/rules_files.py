"""rules.md §1, the file rule judged after intake: F06 UNKNOWN_PERSON.

F01-F05 are recorded by the intake (contracts/inbox.py); F06 needs the persons of
every province of D, so it is judged here, on the loaded rows of D.

Reading (docs/spec-readings.md item 5): every psn_no a record names is looked at;
persons' own rows are never F06; one finding per record naming every unknown
person; province = the file's. record_id per item 3: relationships event_id,
transfers transfer_id (each side is its own record), settlements setl_id,
balances `psn_no:sharer_psn_no` (QUOTA) or `psn_no:PERSONAL`.
"""
from __future__ import annotations

import duckdb

from transforms.context import RunContext
from transforms.findings import record

# One row per (record, role, psn_no) it names, across the four datasets.
_NAMED_PERSONS = """
    SELECT 'relationships' AS dataset, file_province, event_id AS record_id,
           sharer_psn_no, beneficiary_psn_no, CAST(NULL AS DECIMAL(18,2)) AS amount,
           source_file, source_row, role,
           CASE role WHEN 'sharer' THEN sharer_psn_no ELSE beneficiary_psn_no END AS psn
    FROM d_relationships, (VALUES ('sharer'), ('beneficiary')) r(role)
    UNION ALL
    SELECT 'transfers', file_province, transfer_id,
           sharer_psn_no, beneficiary_psn_no, amount,
           source_file, source_row, role,
           CASE role WHEN 'sharer' THEN sharer_psn_no ELSE beneficiary_psn_no END
    FROM d_transfers, (VALUES ('sharer'), ('beneficiary')) r(role)
    UNION ALL
    SELECT 'settlements', file_province, setl_id,
           NULL, psn_no, wallet_pay,
           source_file, source_row, 'beneficiary', psn_no
    FROM d_settlements
    UNION ALL
    SELECT 'balances', file_province,
           psn_no || ':' || CASE account WHEN 'QUOTA' THEN sharer_psn_no ELSE 'PERSONAL' END,
           CASE account WHEN 'QUOTA' THEN sharer_psn_no ELSE psn_no END,
           CASE account WHEN 'QUOTA' THEN psn_no END,
           NULL, source_file, source_row,
           CASE account WHEN 'QUOTA' THEN 'beneficiary' ELSE 'account holder' END, psn_no
    FROM d_balances
    UNION ALL
    SELECT 'balances', file_province, psn_no || ':' || sharer_psn_no,
           sharer_psn_no, psn_no, NULL, source_file, source_row, 'sharer', sharer_psn_no
    FROM d_balances WHERE account = 'QUOTA' AND sharer_psn_no IS NOT NULL
"""


def f06_unknown_person(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """F06 UNKNOWN_PERSON: "a record refers to a psn_no that is not known on D".

    Known on D = delivered by some processed date up to D (the known_persons view).
    """
    record(con, "F06", f"""
        WITH named AS ({_NAMED_PERSONS}),
        unknown AS (
            SELECT n.* FROM named n
            WHERE n.psn IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM known_persons k WHERE k.psn_no = n.psn)
        )
        SELECT file_province AS province, dataset, record_id,
               any_value(sharer_psn_no) AS sharer_psn_no,
               any_value(beneficiary_psn_no) AS beneficiary_psn_no,
               any_value(amount) AS amount,
               'Not known on ' || strftime(CAST($d AS DATE), '%Y-%m-%d') || ' (no persons record up to that date): '
                 || string_agg(role || ' ' || psn, ', ' ORDER BY role DESC, psn) || '.' AS detail,
               source_file, source_row
        FROM unknown
        GROUP BY file_province, dataset, record_id, source_file, source_row
    """, {"d": ctx.business_date})


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    f06_unknown_person(con, ctx)
