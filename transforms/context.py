"""The run context of one business date and the views every rule reads.

`bind_date(con, ctx)` creates TEMP views over the warehouse so that rule SQL
reads `d_transfers` instead of repeating `WHERE business_date = ...`:

    d_persons d_relationships d_transfers d_settlements d_balances
    d_institutions d_regions   the rows loaded for D
    known_persons              latest record of every person delivered on any
                               processed date <= D (rules.md F06 "known on D")
    unknown_persons            psn_no named by a record of D and not known on D
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
    "dissolution_returns", "clearing_flows", "emptied_lots",
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
    """Create every warehouse table that does not exist yet, and bring the tables of an
    older warehouse up to this contract."""
    con.execute(WAREHOUSE_DDL.read_text(encoding="utf-8"))
    _add_settlement_provinces(con)


# The columns a warehouse of an earlier version lacks, which _add_settlement_provinces adds
# (flows/warehouse.py accepts a warehouse without them as one of recon's).
ADDED_LATER = frozenset({("consumptions", "province"), ("refund_returns", "orig_business_date"),
                         ("refund_returns", "orig_province")})


def _add_settlement_provinces(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse made before a settlement was keyed by (date, province, setl_id) has
    consumptions without `province` and refund_returns without `orig_business_date`,
    `orig_province`: add them and fill them as that warehouse's runs read them (by
    setl_id of the date; the latest date for a refund's original)."""
    columns = set(con.execute(
        "SELECT table_name || '.' || column_name FROM duckdb_columns() "
        "WHERE table_name IN ('consumptions', 'refund_returns') AND NOT internal").fetchall())
    columns = {c for (c,) in columns}
    if {"consumptions.province", "refund_returns.orig_province"} <= columns:
        return
    # One transaction: a migration cut short must not leave the new columns empty (and
    # never filled, since they then exist).
    con.execute("BEGIN TRANSACTION")
    try:
        _migrate_settlement_provinces(con, columns)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _migrate_settlement_provinces(con: duckdb.DuckDBPyConnection, columns: set[str]) -> None:
    if "consumptions.province" not in columns:
        con.execute("ALTER TABLE consumptions ADD COLUMN province VARCHAR")
        con.execute("""
            UPDATE consumptions c SET province = o.province FROM settlement_outcomes o
            WHERE o.business_date = c.business_date AND o.setl_id = c.setl_id
              AND o.status = 'NORMAL' AND o.outcome = 'SETTLED'""")
    if "refund_returns.orig_province" not in columns:
        con.execute("ALTER TABLE refund_returns ADD COLUMN orig_business_date DATE")
        con.execute("ALTER TABLE refund_returns ADD COLUMN orig_province VARCHAR")
        con.execute("""
            UPDATE refund_returns r SET orig_business_date = o.business_date,
                                        orig_province = o.province
            FROM (SELECT r2.business_date AS d, r2.orig_setl_id, s.business_date, s.province
                  FROM (SELECT DISTINCT business_date, orig_setl_id FROM refund_returns) r2
                  JOIN settlement_outcomes s
                    ON s.setl_id = r2.orig_setl_id AND s.business_date <= r2.business_date
                   AND s.status = 'NORMAL' AND s.outcome = 'SETTLED'
                  QUALIFY row_number() OVER (PARTITION BY r2.business_date, r2.orig_setl_id
                                             ORDER BY s.business_date DESC, s.province) = 1) o
            WHERE o.d = r.business_date AND o.orig_setl_id = r.orig_setl_id""")


# One row per (record of D, role, psn_no) it names, across the four datasets: what F06
# judges, and whom materialize_known_persons looks up.
NAMED_PERSONS = """
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


def bind_date(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Create the TEMP views of D and an empty d_findings table."""
    d = ctx.d
    for t in ("persons", "relationships", "transfers", "settlements", "balances",
              "institutions", "regions"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW d_{t} AS "
                    f"SELECT * FROM {t} WHERE business_date = DATE '{d}'")
    _drop_temp(con, "known_persons")  # a previous run on this connection may have materialised it
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW known_persons AS
        SELECT * FROM persons WHERE business_date <= DATE '{d}'
        QUALIFY row_number() OVER (PARTITION BY psn_no
                                   ORDER BY business_date DESC, file_province, source_row) = 1
    """)
    _drop_temp(con, "unknown_persons")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW unknown_persons AS
        SELECT DISTINCT n.psn AS psn_no FROM ({NAMED_PERSONS}) n
        WHERE n.psn IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM known_persons k WHERE k.psn_no = n.psn)
    """)
    con.execute("CREATE OR REPLACE TEMP TABLE policy_near_relatives (relation_code VARCHAR)")
    con.executemany("INSERT INTO policy_near_relatives VALUES (?)",
                    [(c,) for c in ctx.policy.near_relatives])
    from transforms.findings import create_findings_table
    create_findings_table(con)


# The person's latest record first: the order that decides which record is "the" record.
_LATEST = "business_date DESC, file_province, source_row"


def materialize_known_persons(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Replace the known_persons and unknown_persons views, once D's rows are staged:
    known_persons by a view over D's persons plus small TEMP tables, unknown_persons by
    a TEMP table.

    Same rows as the view of bind_date for every person a record of D names: D's own
    persons.csv (inbox.md: it lists every person referenced on D) plus, for
    persons named on D but not delivered on D, their latest earlier record. The
    person registry (person_latest: the date of every person's latest record) says
    which date holds it, so only those dates of persons are read and the cost of a
    day does not grow with the persons history. Only a re-run of an earlier date,
    whose registry entry may lie after D, looks the history up, for those persons.

    D's persons are not copied: known_persons reads them where they stand in the
    warehouse (compressed), beside the few rows that differ from them (a psn_no
    delivered twice, a person known from an earlier date). A TEMP copy of every
    person of D cost more than the rules that read it at ten national days' volume.
    """
    d = ctx.d
    _drop_temp(con, "known_persons")
    # a psn_no delivered by two provinces is rare: rank only those rows (a window over
    # the whole nation's persons costs more than the rest of this lookup)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kp_repeated AS
        SELECT psn_no FROM persons WHERE business_date = DATE '{d}'
        GROUP BY psn_no HAVING count(*) > 1""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kp_repeated_first AS
        SELECT p.* FROM persons p SEMI JOIN kp_repeated USING (psn_no)
        WHERE p.business_date = DATE '{d}'
        QUALIFY row_number() OVER (PARTITION BY p.psn_no ORDER BY p.file_province, p.source_row) = 1""")
    _drop_temp(con, "kp_today")
    con.execute(f"""
        CREATE TEMP VIEW kp_today AS   -- the record of D of every person delivered on D
        SELECT p.* FROM persons p ANTI JOIN kp_repeated USING (psn_no)
        WHERE p.business_date = DATE '{d}'
        UNION ALL SELECT * FROM kp_repeated_first""")
    maintain_person_registry(con, ctx, today="kp_today")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kp_missing AS   -- named on D, not delivered on D
        -- the anti join first, DISTINCT after: only the few persons not delivered are
        -- deduplicated (an EXCEPT groups every person named on D, which spills at 10x)
        SELECT DISTINCT n.psn AS psn_no FROM ({NAMED_PERSONS}) n
        ANTI JOIN (SELECT psn_no FROM persons WHERE business_date = DATE '{d}') k ON k.psn_no = n.psn
        WHERE n.psn IS NOT NULL""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kp_latest AS
        SELECT r.psn_no, r.business_date FROM person_latest r SEMI JOIN kp_missing m USING (psn_no)""")
    dates = _date_list(con.execute(f"SELECT DISTINCT business_date FROM kp_latest "
                                   f"WHERE business_date < DATE '{d}'").fetchall())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE kp_earlier AS   -- their latest record before D
        SELECT p.* FROM persons p JOIN kp_latest k USING (psn_no, business_date)
        WHERE p.business_date IN ({dates}) AND k.business_date < DATE '{d}'
        QUALIFY row_number() OVER (PARTITION BY p.psn_no ORDER BY p.file_province, p.source_row) = 1""")
    # A re-run of an earlier D: a person whose latest record lies after D is looked up
    # in the history before D (those persons only; never on a run of the latest date).
    if con.execute(f"SELECT count(*) FROM kp_latest WHERE business_date > DATE '{d}'").fetchone()[0]:
        con.execute(f"""
            INSERT INTO kp_earlier
            SELECT p.* FROM persons p
            SEMI JOIN (SELECT psn_no FROM kp_latest WHERE business_date > DATE '{d}') a USING (psn_no)
            WHERE p.business_date < DATE '{d}'
            QUALIFY row_number() OVER (PARTITION BY p.psn_no ORDER BY {_LATEST}) = 1""")
    con.execute("CREATE TEMP VIEW known_persons AS SELECT * FROM kp_today UNION ALL SELECT * FROM kp_earlier")
    # Named on D, neither delivered on D nor earlier: F06's persons, kept so that F06
    # reads this small table instead of repeating the anti join over every person of D.
    _drop_temp(con, "unknown_persons")
    con.execute("""
        CREATE TEMP TABLE unknown_persons AS
        SELECT psn_no FROM kp_missing ANTI JOIN kp_earlier USING (psn_no)""")
    for t in ("kp_latest", "kp_missing"):
        con.execute(f"DROP TABLE temp.{t}")


def maintain_person_registry(con: duckdb.DuckDBPyConnection, ctx: RunContext,
                             today: str | None = None) -> None:
    """Fold D's persons (and any processed date not folded yet) into the registry.

    Invariant after every committed run: person_latest holds, for every psn_no of
    persons, the latest date on which persons holds a record of it. A re-run of D
    first takes D out: a person whose entry is D but whom D no longer delivers falls
    back to his latest other date (a lookup of those persons only); then D, and any
    processed date not folded yet (all dates of a warehouse made before the
    registry, once), are folded in. Runs inside the run's transaction: a failed run
    leaves the registry as it was. `today`: a table already holding D's persons
    (known_persons before the lookups), used when only D is new.
    """
    d = ctx.d
    if con.execute("SELECT count(*) FROM person_latest_dates WHERE business_date = DATE "
                   f"'{d}'").fetchone()[0]:
        _unfold_date(con, d)
    if con.execute("SELECT count(*) FROM person_latest_dates").fetchone()[0]:
        # D, and any processed date not folded yet (none in practice: every run folds its
        # date inside its own transaction); never a scan of the persons history
        pending = sorted({ctx.business_date} | {r[0] for r in con.execute("""
            SELECT business_date FROM runs
            WHERE business_date NOT IN (SELECT business_date FROM person_latest_dates)""").fetchall()})
    else:  # a registry never folded: every date of persons, once (reads the whole history)
        pending = sorted({ctx.business_date} | {r[0] for r in con.execute(
            "SELECT DISTINCT business_date FROM persons").fetchall()})
    dates = _date_list([(x,) for x in pending])
    if today is not None and pending == [ctx.business_date]:
        con.execute(f"CREATE OR REPLACE TEMP TABLE reg_new AS SELECT psn_no, business_date FROM {today}")
    else:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE reg_new AS
            SELECT psn_no, max(business_date) AS business_date FROM persons
            WHERE business_date IN ({dates}) GROUP BY psn_no""")
    con.execute("""
        UPDATE person_latest r SET business_date = n.business_date FROM reg_new n
        WHERE r.psn_no = n.psn_no AND r.business_date < n.business_date""")
    con.execute("INSERT INTO person_latest SELECT psn_no, business_date FROM reg_new "
                "ANTI JOIN person_latest USING (psn_no)")
    con.execute(f"INSERT INTO person_latest_dates SELECT UNNEST([{dates}])")
    con.execute("DROP TABLE temp.reg_new")


def _unfold_date(con: duckdb.DuckDBPyConnection, d: str) -> None:
    """Take D out of the registry before D's persons are folded in again."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE reg_orphans AS
        SELECT psn_no FROM person_latest WHERE business_date = DATE '{d}'
        EXCEPT SELECT psn_no FROM persons WHERE business_date = DATE '{d}'""")
    con.execute(f"DELETE FROM person_latest_dates WHERE business_date = DATE '{d}'")
    if con.execute("SELECT count(*) FROM reg_orphans").fetchone()[0]:
        con.execute("DELETE FROM person_latest WHERE psn_no IN (SELECT psn_no FROM reg_orphans)")
        con.execute(f"""
            INSERT INTO person_latest
            SELECT p.psn_no, max(p.business_date) FROM persons p
            SEMI JOIN reg_orphans o ON p.psn_no = o.psn_no
            WHERE p.business_date <> DATE '{d}'
              AND p.business_date IN (SELECT business_date FROM person_latest_dates)
            GROUP BY p.psn_no""")
    con.execute("DROP TABLE temp.reg_orphans")


def _date_list(rows: list[tuple]) -> str:
    """An SQL list of DATE literals (NULL when empty: `IN (NULL)` matches nothing)."""
    return ", ".join(f"DATE '{r[0].isoformat()}'" for r in rows) or "NULL"


def _drop_temp(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a TEMP view or table of that name, whichever it is."""
    if con.execute("SELECT 1 FROM duckdb_views() WHERE temporary AND view_name = ?", [name]).fetchone():
        con.execute(f"DROP VIEW temp.{name}")
    if con.execute("SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = ?", [name]).fetchone():
        con.execute(f"DROP TABLE temp.{name}")
