"""Reconcile one business date, all in the warehouse: rules -> ledger -> balances -> clearing.

The intake (transforms.intake.stage) has already put D's loaded rows in the
warehouse and F01-F05 findings in d_findings. Each step is also a Prefect task
of its own in flows/nightly.py; this function runs them in the same order
without Prefect (tests, benchmarks).
"""
from __future__ import annotations

import duckdb

from transforms import (balances, clearing, findings, ledger, rules_files, rules_matching,
                        rules_persons, rules_relationships, rules_settlements, rules_transfers)
from transforms.context import RunContext, materialize_known_persons

STEPS = (
    ("amounts_fit", clearing.check_amounts_fit),       # D's totals fit DECIMAL(18,2), else exit 2
    ("known_persons", materialize_known_persons),      # persons known on D, looked up once
    ("rules_files", rules_files.run),                  # F06
    ("rules_persons", rules_persons.run),              # S06, S07 (before relationships: validity reads them)
    ("rules_relationships", rules_relationships.run),  # S01-S04, S21, relation_events
    ("rules_transfers", rules_transfers.run),          # S05, S08-S13
    ("rules_matching", rules_matching.run),            # X01-X04
    ("rules_settlements", rules_settlements.run),      # S14-S17
    ("ledger", ledger.run),                            # §6: lots, FIFO, S18, S20
    ("balances", balances.run),                        # B01, B02
    ("clearing", clearing.run),                        # §8 flows
)


def reconcile(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    for _name, step in STEPS:
        step(con, ctx)
    findings.finalize(con, ctx.d)
