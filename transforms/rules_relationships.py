"""rules.md §2 on relationship events: S01-S04 (ESTABLISH), S21 (DISSOLVE), relation_events.

After the findings, `run` writes D's rows of `relation_events`, which later rules
and later dates read:

- an ESTABLISH is **valid** when it has none of S01-S04, S06, S07 and no F06
  (rules.md §1: "a relationship with F06 is not valid"); S06 and S07 are
  judged in transforms/rules_persons.py, whose `run` must come first (their
  findings on the event row are read from d_findings);
- established and active are facts, valid is a verdict (rules.md §2): every
  loaded ESTABLISH establishes its relation_id, and the latest one at or
  before t defines its sharer, beneficiary and validity at t;
- a DISSOLVE is **effective** when the relationship is active at its time
  (valid or not) and it names the relationship's sharer and beneficiary;
  every other DISSOLVE gets S21 and does nothing (rules.md §6).

Every finding here: dataset 'relationships', record_id event_id, province the
file's (the sharer's province), amount NULL, lineage of the event row.
Rules that need a person's record (S02, S04 by certno) are not judged
for a person who is not known on D (F06 covers them).
"""
from __future__ import annotations

import duckdb

from transforms.context import RunContext
from transforms.findings import record



def kinship_gaps(ctx: RunContext) -> dict[str, int]:
    """S02's birth-date gaps from the policy, as YYYYMMDD integer offsets
    (N years = N * 10000: comparing YYYYMMDD integers compares dates)."""
    p = ctx.policy
    return {
        "parent_gap": p.min_parent_child_age_gap_years * 10000,      # PARENT / CHILD
        "grandparent_gap": p.min_grandparent_age_gap_years * 10000,  # GRANDPARENT_* / GRANDCHILD_*
        "male_marriage": p.marriageable_age_male * 10000,            # SPOUSE, male
        "female_marriage": p.marriageable_age_female * 10000,        # SPOUSE, female
    }

# The rules whose presence on an ESTABLISH event makes the relationship invalid.
INVALIDATING = ("S01", "S02", "S03", "S04", "S06", "S07", "F06")

_COMMON = """r.file_province AS province, 'relationships' AS dataset, r.event_id AS record_id,
             r.sharer_psn_no, r.beneficiary_psn_no, CAST(NULL AS DECIMAL(18,2)) AS amount"""
_LINEAGE = "r.source_file, r.source_row"


def mask_certno_sql(col: str) -> str:
    """SQL masking a certno to its first 6 and last 4 characters (spec-readings item 14)."""
    return f"(left({col}, 6) || repeat('*', greatest(length({col}) - 10, 0)) || right({col}, 4))"


def _yyyymmdd(col: str) -> str:
    """The date of a DATE or TIMESTAMP column as the integer YYYYMMDD (arithmetic, not
    strftime: formatting a string per row costs more than the whole S02 join)."""
    return f"(year({col}) * 10000 + month({col}) * 100 + day({col}))"


# D's events with `k`, the row's rowid in relationships: the key by which the narrow
# person lookups below are joined back to the few events a finding names.
_D_EVENTS = """(SELECT rowid AS k, * FROM relationships
               WHERE business_date = CAST($d AS DATE) AND event_type = 'ESTABLISH')"""


def _establish_persons(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """TEMP table d_establish_persons: one narrow row per ESTABLISH of D (k), with what
    S02, S04 and validity need of its sharer (s) and beneficiary (t) known on D:
    known, birth date as YYYYMMDD, sex, and a hash of the certno (NULL when not known).

    Why narrow, one side at a time, then side by side: at ten national days' volume D
    has millions of ESTABLISHes and tens of millions of persons. A lookup that carried
    every column of the event (or both persons at once) builds a hash table of several
    GB that spills (83 s); the events' keys alone fit in memory. Each side's rows are
    sorted by k, so the two sides are put side by side by position, without a third
    join (a mismatch of keys, which cannot happen, is an error, not a wrong verdict).
    The few events a finding names are joined back to their columns by k.
    """
    for side, psn, extra in (("s", "sharer_psn_no",
                              f", r.relation_code, {_yyyymmdd('r.event_time')} AS d_int"),
                             ("t", "beneficiary_psn_no", "")):
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE est_{side} AS
            SELECT r.k, p.psn_no IS NOT NULL AS known, {_yyyymmdd('p.birth_date')} AS b,
                   p.sex, hash(p.certno) AS certno_hash{extra}
            FROM {_D_EVENTS} r
            LEFT JOIN known_persons p ON p.psn_no = r.{psn}
            ORDER BY r.k
        """, {"d": ctx.business_date})
    con.execute("""
        CREATE OR REPLACE TEMP TABLE d_establish_persons AS
        SELECT CASE WHEN s.k = t.k THEN s.k
                    ELSE error('d_establish_persons: the sharer and beneficiary lookups are out of step') END AS k,
               s.relation_code, s.d_int,
               s.known AS s_known, s.b AS bs, s.sex AS sex_s, s.certno_hash AS s_certno_hash,
               t.known AS t_known, t.b AS bt, t.sex AS sex_t, t.certno_hash AS t_certno_hash
        FROM est_s s POSITIONAL JOIN est_t t
    """)
    con.execute("DROP TABLE temp.est_s")
    con.execute("DROP TABLE temp.est_t")


def s01_not_near_relative(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S01 NOT_NEAR_RELATIVE: "relation_code is not a near relative under the policy on D"."""
    record(con, "S01", f"""
        SELECT {_COMMON},
               'relation_code ' || r.relation_code || ' is not a near relative under policy '
                 || $policy_id || ' in force on ' || strftime(CAST($d AS DATE), '%Y-%m-%d')
                 || ' (near relatives: '
                 || (SELECT string_agg(relation_code, ' ' ORDER BY relation_code) FROM policy_near_relatives)
                 || ').' AS detail,
               {_LINEAGE}
        FROM d_relationships r
        WHERE r.event_type = 'ESTABLISH'
          AND r.relation_code NOT IN (SELECT relation_code FROM policy_near_relatives)
    """, {"policy_id": ctx.policy.id, "d": ctx.business_date})


def s02_kinship_implausible(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S02 KINSHIP_IMPLAUSIBLE: "the birth dates in the two certno contradict the relation".

    With b(x) the birth date of x as the integer YYYYMMDD and d the event date as
    YYYYMMDD (sharer s, beneficiary t): "PARENT needs `b(t) + 150000 <= b(s)`;
    CHILD needs `b(s) + 150000 <= b(t)`; GRANDPARENT_* needs `b(t) + 300000 <= b(s)`;
    GRANDCHILD_* needs `b(s) + 300000 <= b(t)`; SPOUSE needs each spouse of
    marriageable age on d: male `b + 220000 <= d`, female `b + 200000 <= d`;
    SIBLING has no age test. Codes that are not near relatives get S01 only."
    Judged only for codes that are near relatives under the policy on D, and only
    when both persons are known on D. Needs d_establish_persons (built by `run`).
    """
    record(con, "S02", f"""
        WITH ev AS (
            SELECT r.* FROM d_establish_persons r
            WHERE r.s_known AND r.t_known
              AND r.relation_code IN (SELECT relation_code FROM policy_near_relatives)
        ),
        judged AS (
            SELECT *,
                   bs + CASE sex_s WHEN 'M' THEN $male_marriage ELSE $female_marriage END AS s_of_age,
                   bt + CASE sex_t WHEN 'M' THEN $male_marriage ELSE $female_marriage END AS t_of_age
            FROM ev
        ),
        implausible AS (   -- few: joined back to their events' columns
            SELECT * FROM judged r
            WHERE (r.relation_code = 'PARENT' AND NOT r.bt + $parent_gap <= r.bs)
               OR (r.relation_code = 'CHILD' AND NOT r.bs + $parent_gap <= r.bt)
               OR (r.relation_code IN ('GRANDPARENT_PATERNAL', 'GRANDPARENT_MATERNAL')
                   AND NOT r.bt + $grandparent_gap <= r.bs)
               OR (r.relation_code IN ('GRANDCHILD_SON', 'GRANDCHILD_DAUGHTER')
                   AND NOT r.bs + $grandparent_gap <= r.bt)
               OR (r.relation_code = 'SPOUSE' AND (r.s_of_age > r.d_int OR r.t_of_age > r.d_int))
        )
        SELECT {_COMMON},
               CASE
                 WHEN r.relation_code = 'PARENT' THEN
                   'PARENT needs b(beneficiary) + ' || $parent_gap || ' <= b(sharer): '
                   || r.bt || ' + ' || $parent_gap || ' = ' || (r.bt + $parent_gap) || ' > ' || r.bs || '.'
                 WHEN r.relation_code = 'CHILD' THEN
                   'CHILD needs b(sharer) + ' || $parent_gap || ' <= b(beneficiary): '
                   || r.bs || ' + ' || $parent_gap || ' = ' || (r.bs + $parent_gap) || ' > ' || r.bt || '.'
                 WHEN r.relation_code IN ('GRANDPARENT_PATERNAL', 'GRANDPARENT_MATERNAL') THEN
                   r.relation_code || ' needs b(beneficiary) + ' || $grandparent_gap || ' <= b(sharer): '
                   || r.bt || ' + ' || $grandparent_gap || ' = ' || (r.bt + $grandparent_gap) || ' > ' || r.bs || '.'
                 WHEN r.relation_code IN ('GRANDCHILD_SON', 'GRANDCHILD_DAUGHTER') THEN
                   r.relation_code || ' needs b(sharer) + ' || $grandparent_gap || ' <= b(beneficiary): '
                   || r.bs || ' + ' || $grandparent_gap || ' = ' || (r.bs + $grandparent_gap) || ' > ' || r.bt || '.'
                 ELSE
                   'SPOUSE needs each spouse of marriageable age on ' || r.d_int
                   || ' (male b + ' || $male_marriage || ', female b + ' || $female_marriage || ' <= d): '
                   || concat_ws('; ',
                        CASE WHEN r.s_of_age > r.d_int THEN
                          'sharer (' || r.sex_s || ') b = ' || r.bs || ', ' || r.s_of_age || ' > ' || r.d_int END,
                        CASE WHEN r.t_of_age > r.d_int THEN
                          'beneficiary (' || r.sex_t || ') b = ' || r.bt || ', ' || r.t_of_age || ' > ' || r.d_int END)
                   || '.'
               END AS detail,
               {_LINEAGE}
        FROM (SELECT e.*, v.bs, v.bt, v.sex_s, v.sex_t, v.d_int, v.s_of_age, v.t_of_age
              FROM implausible v JOIN {_D_EVENTS} e ON e.k = v.k) r
    """, {"d": ctx.business_date, **kinship_gaps(ctx)})


def s03_no_commitment(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S03 NO_COMMITMENT: "commitment_signed is false".

    An ESTABLISH whose commitment_signed is missing counts as not signed.
    """
    record(con, "S03", f"""
        SELECT {_COMMON},
               'ESTABLISH of relation ' || r.relation_id || ' without a signed commitment letter (commitment_signed = '
                 || coalesce(CAST(r.commitment_signed AS VARCHAR), 'null') || ').' AS detail,
               {_LINEAGE}
        FROM d_relationships r
        WHERE r.event_type = 'ESTABLISH' AND r.commitment_signed IS NOT TRUE
    """)


def s04_self_sharing(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S04 SELF_SHARING: "sharer and beneficiary are the same psn_no or the same certno".

    The certno test is made when both persons are known on D. Needs
    d_establish_persons (built by `run`).
    """
    record(con, "S04", f"""
        WITH same_certno AS (   -- few: equal hashes, compared exactly below
            SELECT k FROM d_establish_persons WHERE s_certno_hash = t_certno_hash
        ),
        candidates AS (
            SELECT * FROM {_D_EVENTS} e
            WHERE e.sharer_psn_no = e.beneficiary_psn_no OR e.k IN (SELECT k FROM same_certno)
        )
        SELECT {_COMMON},
               CASE WHEN r.sharer_psn_no = r.beneficiary_psn_no
                    THEN 'Sharer and beneficiary are the same psn_no ' || r.sharer_psn_no || '.'
                    ELSE 'Sharer ' || r.sharer_psn_no || ' and beneficiary ' || r.beneficiary_psn_no
                         || ' have the same certno ' || {mask_certno_sql('s.certno')} || '.'
               END AS detail,
               {_LINEAGE}
        FROM candidates r
        LEFT JOIN known_persons s ON s.psn_no = r.sharer_psn_no
        LEFT JOIN known_persons t ON t.psn_no = r.beneficiary_psn_no
        WHERE r.sharer_psn_no = r.beneficiary_psn_no OR s.certno = t.certno
    """, {"d": ctx.business_date})


def _judge_events(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """TEMP table d_relation_events: every event of D with its validity / effect.

    ESTABLISH valid: none of INVALIDATING recorded on that row, both persons known.
    DISSOLVE effective (rules.md §2, §6): every ESTABLISH, valid or not, establishes
    its relation_id and the latest one at or before the DISSOLVE defines its persons.
    In the order (event_time, ESTABLISH before DISSOLVE, event_id) of the relation's
    events on dates <= D, the DISSOLVE is effective when an ESTABLISH precedes it, it
    names that ESTABLISH's sharer and beneficiary, and no earlier DISSOLVE after that
    ESTABLISH did (that one already dissolved it). Every other DISSOLVE is S21.
    """
    invalidating = ", ".join(f"'{c}'" for c in INVALIDATING)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE d_relation_events AS
        WITH invalidated AS (   -- the rows with an invalidating finding (few)
            SELECT DISTINCT source_file, source_row FROM d_findings
            WHERE dataset = 'relationships' AND rule_code IN ({invalidating})
        ),
        naming_unknown AS (   -- ESTABLISHes naming a person not known on D (few)
            SELECT k FROM d_establish_persons WHERE NOT (s_known AND t_known)
        ),
        est AS (
            SELECT r.*, i.source_file IS NULL AND u.k IS NULL AS valid
            FROM {_D_EVENTS} r
            LEFT JOIN invalidated i ON i.source_file = r.source_file AND i.source_row = r.source_row
            LEFT JOIN naming_unknown u ON u.k = r.k
        ),
        dissolved_ids AS (SELECT DISTINCT relation_id FROM d_relationships WHERE event_type = 'DISSOLVE'),
        chain AS (   -- every event of the relation_ids dissolved on D, earlier dates included
            SELECT event_id, relation_id, event_type, sharer_psn_no, beneficiary_psn_no, event_time,
                   NULL AS source_file, NULL AS source_row
            FROM relation_events
            WHERE business_date < CAST($d AS DATE) AND relation_id IN (SELECT relation_id FROM dissolved_ids)
            UNION ALL
            SELECT event_id, relation_id, event_type, sharer_psn_no, beneficiary_psn_no, event_time,
                   source_file, source_row
            FROM d_relationships WHERE relation_id IN (SELECT relation_id FROM dissolved_ids)
        ),
        segmented AS (   -- seg: how many ESTABLISHes up to here; 0 = not established yet
            SELECT *,
                   row_number() OVER w AS ord,
                   count(*) FILTER (WHERE event_type = 'ESTABLISH') OVER w AS seg
            FROM chain
            WINDOW w AS (PARTITION BY relation_id
                         ORDER BY event_time, CASE event_type WHEN 'ESTABLISH' THEN 0 ELSE 1 END,
                                  event_id, source_file, source_row
                         ROWS UNBOUNDED PRECEDING)
        ),
        with_est AS (    -- the segment's ESTABLISH is its first event
            SELECT *,
                   first_value(event_id) OVER s AS est_event_id,
                   first_value(sharer_psn_no) OVER s AS est_sharer,
                   first_value(beneficiary_psn_no) OVER s AS est_beneficiary,
                   seg > 0 AND event_type = 'DISSOLVE'
                     AND sharer_psn_no = first_value(sharer_psn_no) OVER s
                     AND beneficiary_psn_no = first_value(beneficiary_psn_no) OVER s AS names_its_persons
            FROM segmented
            WINDOW s AS (PARTITION BY relation_id, seg ORDER BY ord)
        ),
        judged AS (
            SELECT *,
                   min(ord) FILTER (WHERE names_its_persons) OVER s AS first_ord,
                   arg_min(event_id, ord) FILTER (WHERE names_its_persons) OVER s AS first_id,
                   arg_min(event_time, ord) FILTER (WHERE names_its_persons) OVER s AS first_time
            FROM with_est
            WINDOW s AS (PARTITION BY relation_id, seg)
        )
        SELECT e.business_date, e.file_province, e.event_id, e.relation_id, e.event_type,
               e.sharer_psn_no, e.beneficiary_psn_no, e.event_time, e.valid,
               CAST(NULL AS VARCHAR) AS reason, CAST(NULL AS VARCHAR) AS prev_event_id,
               CAST(NULL AS TIMESTAMP) AS prev_time, CAST(NULL AS VARCHAR) AS est_sharer,
               CAST(NULL AS VARCHAR) AS est_beneficiary, e.source_file, e.source_row
        FROM est e
        UNION ALL
        SELECT r.business_date, r.file_province, r.event_id, r.relation_id, r.event_type,
               r.sharer_psn_no, r.beneficiary_psn_no, r.event_time,
               coalesce(j.seg > 0 AND j.first_ord = j.ord, false),
               CASE WHEN j.seg = 0 THEN 'not established'
                    WHEN j.first_ord < j.ord THEN 'dissolved'
                    WHEN NOT j.names_its_persons THEN 'other persons' END,
               CASE WHEN j.first_ord < j.ord THEN j.first_id ELSE j.est_event_id END,
               CASE WHEN j.first_ord < j.ord THEN j.first_time END,
               j.est_sharer, j.est_beneficiary, r.source_file, r.source_row
        FROM d_relationships r
        JOIN judged j ON j.source_file = r.source_file AND j.source_row = r.source_row
        WHERE r.event_type = 'DISSOLVE'
    """, {"d": ctx.business_date})


def s21_dissolve_inactive(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S21 DISSOLVE_INACTIVE: "DISSOLVE of a relationship that is unknown or not active,
    or that names other persons than the relationship's".

    Active (rules.md §2): established at or before the DISSOLVE (by any ESTABLISH,
    valid or not) and not dissolved since; the relationship's persons are those of
    its latest ESTABLISH. Needs d_relation_events (built by `run`).
    """
    record(con, "S21", f"""
        SELECT {_COMMON},
               'DISSOLVE of relation ' || r.relation_id || ' at '
                 || strftime(r.event_time, '%Y-%m-%d %H:%M:%S') || ': '
                 || CASE r.reason
                      WHEN 'not established' THEN
                        'the relationship is not active: it has no ESTABLISH at or before that time.'
                      WHEN 'dissolved' THEN
                        'the relationship is not active: it was already dissolved by ' || r.prev_event_id
                        || ' at ' || strftime(r.prev_time, '%Y-%m-%d %H:%M:%S') || '.'
                      ELSE
                        'it names sharer ' || r.sharer_psn_no || ' and beneficiary ' || r.beneficiary_psn_no
                        || ', but the relationship (ESTABLISH ' || r.prev_event_id || ') links sharer '
                        || r.est_sharer || ' to beneficiary ' || r.est_beneficiary || '.'
                    END AS detail,
               {_LINEAGE}
        FROM d_relation_events r
        WHERE r.event_type = 'DISSOLVE' AND NOT r.valid
    """)


def write_relation_events(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """Replace D's rows of relation_events with the judged events of D."""
    con.execute("DELETE FROM relation_events WHERE business_date = $d", {"d": ctx.business_date})
    con.execute("""
        INSERT INTO relation_events (business_date, event_id, relation_id, event_type,
                                     sharer_psn_no, beneficiary_psn_no, event_time, valid)
        SELECT business_date, event_id, relation_id, event_type,
               sharer_psn_no, beneficiary_psn_no, event_time, valid
        FROM d_relation_events
    """)


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    _establish_persons(con, ctx)
    s01_not_near_relative(con, ctx)
    s02_kinship_implausible(con, ctx)
    s03_no_commitment(con, ctx)
    s04_self_sharing(con, ctx)
    _judge_events(con, ctx)
    s21_dissolve_inactive(con, ctx)
    write_relation_events(con, ctx)
    con.execute("DROP TABLE temp.d_establish_persons")
