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

from transforms.context import NAMED_PERSONS, RunContext
from transforms.findings import record


def f06_unknown_person(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """F06 UNKNOWN_PERSON: "a record refers to a psn_no that is not known on D".

    Known on D = delivered by some processed date up to D (known_persons). The persons
    named on D and not known on D are few (unknown_persons, context.py): the records
    naming them are found by a semi join against that small set, not by an anti join
    of every record against every person of D (a hash table of every person, which
    spills at ten national days' volume; materialize_known_persons has made that
    anti join once already).
    """
    record(con, "F06", f"""
        WITH unknown AS (
            SELECT n.* FROM ({NAMED_PERSONS}) n
            SEMI JOIN unknown_persons u ON u.psn_no = n.psn
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
