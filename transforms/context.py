"""The run context of one business date and the views every rule reads.

`bind_date(con, ctx)` creates TEMP views over the warehouse so that rule SQL
reads `d_transfers` instead of repeating `WHERE business_date = ...`:

    d_persons d_relationships d_transfers d_settlements d_balances
    d_institutions d_regions   the rows loaded for D
    known_persons              latest record of every person delivered on any
                               processed date <= D (rules.md F06 "known on D")
    policy_near_relatives      relation_code of the near relatives in force on D
    d_findings                 TEMP table collecting the findings of this run
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from contracts.policy import Policy, policy_for

WAREHOUSE_DDL = Path(__file__).resolve().parent.parent / "contracts" / "warehouse.sql"

# Tables whose rows belong to one business date: a run of D replaces them.
DATE_PARTITIONED = (
    "persons", "relationships", "transfers", "settlements", "balances",
    "regions", "institutions", "quarantine", "file_loads", "relation_events",
    "findings", "lots", "consumptions", "refund_returns", "settlement_outcomes",
    "dissolution_returns", "clearing_flows",
)


@dataclass(frozen=True)
class RunContext:
    business_date: date
    policy: Policy
    genesis: bool  # no earlier date processed: the ledger opens from balances.csv

    @classmethod
    def for_date(cls, business_date: date, genesis: bool) -> "RunContext":
        return cls(business_date, policy_for(business_date), genesis)

    @property
    def d(self) -> str:
        return self.business_date.isoformat()


def create_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet."""
    con.execute(WAREHOUSE_DDL.read_text(encoding="utf-8"))


def bind_date(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Create the TEMP views of D and an empty d_findings table."""
    d = ctx.d
    for t in ("persons", "relationships", "transfers", "settlements", "balances",
              "institutions", "regions"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW d_{t} AS "
                    f"SELECT * FROM {t} WHERE business_date = DATE '{d}'")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW known_persons AS
        SELECT * FROM persons WHERE business_date <= DATE '{d}'
        QUALIFY row_number() OVER (PARTITION BY psn_no
                                   ORDER BY business_date DESC, file_province, source_row) = 1
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE policy_near_relatives (relation_code VARCHAR)")
    con.executemany("INSERT INTO policy_near_relatives VALUES (?)",
                    [(c,) for c in ctx.policy.near_relatives])
    from transforms.findings import create_findings_table
    create_findings_table(con)
