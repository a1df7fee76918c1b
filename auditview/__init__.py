"""The auditors' view of one business date: read-only queries that build the data of
report.html (and the masking the auditors' reports share).

`report_data(con, business_date, exceptions, settlement, positions, config)`
returns one JSON-ready dict that flows/report_html.py renders. It reads the
warehouse (never writes) and the very report frames that become the CSV/Parquet
files, so the page never disagrees with them:

    findings        the exceptions frame, compact (columns + rows), capped at
                    config.max_findings with every rule kept represented
    rules           per rule: counts, amount, day-over-day counts
    heatmap         province x rule counts
    clearing        payer x payee net amounts (settlement frame) and positions
    largest         exception_ids of the largest cases by |amount|
    evidence        per exception_id (top N per rule + largest cases): the
                    records involved, the policy limit it broke, the chain or
                    cycle for S12/S13
    families        one entry per sharer (top N by finding amount): the person,
                    relationships, transfers sent and received, the
                    beneficiaries' spending, remaining quota
    day_over_day    vs the previous processed date, by exception_id

Money stays Decimal until it is written as a string with two decimals.
Resident ID numbers (certno) are masked to the first 6 and last 4 characters
everywhere, free text included (`mask_text`).

Modules: text (settings, masking, cell formatting), frames (the report frames as
the page shows them, day over day), queries (batched evidence queries), evidence,
families, report (`report_data`, all together).
"""
from auditview.evidence import evidence, evidence_for, evidence_of
from auditview.frames import compact_findings, day_over_day, heatmap, previous_date, rule_table
from auditview.report import report_data, warehouse_totals
from auditview.text import (EXCEPTION_COLUMNS, FINDING_FIELDS, AuditConfig, display_text,
                            mask_certno, mask_text, money, province_label)

__all__ = ["AuditConfig", "EXCEPTION_COLUMNS", "FINDING_FIELDS", "compact_findings",
           "day_over_day", "display_text", "evidence", "evidence_for", "evidence_of", "heatmap",
           "mask_certno", "mask_text", "money", "previous_date", "province_label", "report_data",
           "rule_table", "warehouse_totals"]
