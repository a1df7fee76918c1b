"""rules.md §3 Persons: S06 (sharers) and S07 (beneficiaries), each judged in one place.

| code | condition | record_id |
|---|---|---|
| S06 SHARER_NOT_EMPLOYEE | the sharer of an ESTABLISH event or of a SUCCESS OUT transfer is not insutype 310 with insu_status ACTIVE on D | event_id / transfer_id |
| S07 BENEFICIARY_NOT_INSURED | the beneficiary of an ESTABLISH event, or the psn_no of an OUTPATIENT, INPATIENT or PHARMACY settlement, is not ACTIVE on D (premium payments are exempt) | event_id / setl_id |

Each rule records one set of findings per dataset it covers:

- relationships: record_id event_id, province the file's (the sharer's),
  amount NULL, lineage of the event row;
- transfers: record_id transfer_id, province the sharer's (the OUT file's),
  amount the transfer amount, lineage of the OUT row;
- settlements: record_id setl_id, province the file's, sharer NULL,
  beneficiary the psn_no, amount wallet_pay, lineage of the settlement row;
  NORMAL settlements only (docs/spec-readings.md item 7).

"On D" is the person's latest record up to D (`known_persons`). A person who is
not known on D is F06's business (rules.md §1) and is not judged here.

Runs right after rules_files and before rules_relationships: the validity of an
ESTABLISH (rules_relationships) and the holding of a settlement (ledger) read
the S06/S07 findings from d_findings.
"""
from __future__ import annotations

import duckdb

from contracts.codes import EMPLOYEE_INSUTYPE
from transforms.context import RunContext
from transforms.findings import record

# S07 on settlements: the care types whose psn_no must be ACTIVE.
CARE_EXPENSE_TYPES = ("OUTPATIENT", "INPATIENT", "PHARMACY")


def s06_sharer_not_employee(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S06 SHARER_NOT_EMPLOYEE: "the sharer of an ESTABLISH event or of a SUCCESS OUT
    transfer is not insutype 310 with insu_status ACTIVE on D".

    record_id: event_id (dataset relationships) / transfer_id (dataset transfers).
    Not judged for a sharer who is not known on D.
    """
    params = {"employee": EMPLOYEE_INSUTYPE, "d": ctx.business_date}
    # ESTABLISH events of D.
    record(con, "S06", """
        SELECT r.file_province AS province, 'relationships' AS dataset, r.event_id AS record_id,
               r.sharer_psn_no, r.beneficiary_psn_no, CAST(NULL AS DECIMAL(18,2)) AS amount,
               'Sharer ' || r.sharer_psn_no || ' is insutype ' || s.insutype || ' with insu_status '
                 || s.insu_status || ' on ' || strftime(CAST($d AS DATE), '%Y-%m-%d')
                 || '; a sharer must be insutype ' || $employee || ' and ACTIVE.' AS detail,
               r.source_file, r.source_row
        FROM d_relationships r
        JOIN known_persons s ON s.psn_no = r.sharer_psn_no
        WHERE r.event_type = 'ESTABLISH'
          AND NOT (s.insutype = $employee AND s.insu_status = 'ACTIVE')
    """, params)
    # SUCCESS OUT transfers of D.
    record(con, "S06", """
        SELECT o.sharer_province AS province, 'transfers' AS dataset, o.transfer_id AS record_id,
               o.sharer_psn_no, o.beneficiary_psn_no, o.amount,
               'Sharer ' || o.sharer_psn_no || ' is insutype ' || s.insutype || ' with insu_status '
                 || s.insu_status || ' on ' || strftime(CAST($d AS DATE), '%Y-%m-%d')
                 || '; a sharer must be insutype ' || $employee || ' and ACTIVE.' AS detail,
               o.source_file, o.source_row
        FROM d_transfers o
        JOIN known_persons s ON s.psn_no = o.sharer_psn_no
        WHERE o.side = 'OUT' AND o.status = 'SUCCESS'
          AND NOT (s.insutype = $employee AND s.insu_status = 'ACTIVE')
    """, params)


def s07_beneficiary_not_insured(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S07 BENEFICIARY_NOT_INSURED: "the beneficiary of an ESTABLISH event, or the psn_no
    of an OUTPATIENT, INPATIENT or PHARMACY settlement, is not ACTIVE on D (premium
    payments are exempt)".

    record_id: event_id (dataset relationships) / setl_id (dataset settlements).
    Settlements: NORMAL ones only (spec-readings item 7; a refund is S20's). Not
    judged for a person who is not known on D.
    """
    # ESTABLISH events of D.
    record(con, "S07", """
        SELECT r.file_province AS province, 'relationships' AS dataset, r.event_id AS record_id,
               r.sharer_psn_no, r.beneficiary_psn_no, CAST(NULL AS DECIMAL(18,2)) AS amount,
               'Beneficiary ' || r.beneficiary_psn_no || ' has insu_status ' || t.insu_status
                 || ' on ' || strftime(CAST($d AS DATE), '%Y-%m-%d') || '; it must be ACTIVE.' AS detail,
               r.source_file, r.source_row
        FROM d_relationships r
        JOIN known_persons t ON t.psn_no = r.beneficiary_psn_no
        WHERE r.event_type = 'ESTABLISH' AND t.insu_status <> 'ACTIVE'
    """, {"d": ctx.business_date})
    # NORMAL OUTPATIENT / INPATIENT / PHARMACY settlements of D.
    care = ", ".join(f"'{v}'" for v in CARE_EXPENSE_TYPES)
    record(con, "S07", f"""
        SELECT s.file_province AS province, 'settlements' AS dataset, s.setl_id AS record_id,
               NULL::VARCHAR AS sharer_psn_no, s.psn_no AS beneficiary_psn_no,
               s.wallet_pay AS amount,
               'psn_no ' || s.psn_no || ' has insu_status ' || k.insu_status
                 || ' (insutype ' || k.insutype || ') on ' || $d || ', not ACTIVE; '
                 || s.expense_type || ' settlement paid by the wallet' AS detail,
               s.source_file AS source_file, s.source_row AS source_row
        FROM d_settlements s JOIN known_persons k ON k.psn_no = s.psn_no
        WHERE s.status = 'NORMAL'
          AND s.expense_type IN ({care})
          AND k.insu_status <> 'ACTIVE'
    """, {"d": ctx.d})


RULES = (s06_sharer_not_employee, s07_beneficiary_not_insured)


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    for rule in RULES:
        rule(con, ctx)
