"""rules.md §4 on the SUCCESS OUT transfer records of D: S05, S08-S13.

(S06 on transfers is judged with the ESTABLISH half in transforms/rules_persons.py.)

"Order a sharer's SUCCESS OUT transfers of D by (transfer_time, transfer_id)."
Every finding here: dataset 'transfers', record_id transfer_id, province the
sharer's (the OUT file's), amount the transfer amount, lineage of the OUT row.

Needs D's relation_events (rules_relationships.run) for S05, and the warehouse
rows of earlier dates (transfers, lots, relation_events) for S05, S11, S12, S13;
only dates <= D are ever read, so a re-run of an earlier date ignores later ones.
"""
from __future__ import annotations

import duckdb

from transforms.context import RunContext
from transforms.findings import record

# The SUCCESS OUT records of D, each with its place in the sharer's day.
_OUT = """
    SELECT t.*,
           row_number() OVER day_order AS day_seq,
           sum(t.amount) OVER (day_order ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_sum
    FROM d_transfers t
    WHERE t.side = 'OUT' AND t.status = 'SUCCESS'
    WINDOW day_order AS (PARTITION BY t.sharer_psn_no
                         ORDER BY t.transfer_time, t.transfer_id, t.file_province, t.source_row)
"""

_COMMON = """o.sharer_province AS province, 'transfers' AS dataset, o.transfer_id AS record_id,
             o.sharer_psn_no, o.beneficiary_psn_no, o.amount"""
_LINEAGE = "o.source_file, o.source_row"
_FMT = "'%Y-%m-%d %H:%M:%S'"


def _window_params(ctx: RunContext) -> dict:
    return {"d": ctx.business_date, "window_days": ctx.policy.forwarding_window_days}


# First day of the look-back window D-(n-1) .. D.
_WINDOW_START = "(CAST($d AS DATE) - CAST($window_days - 1 AS INTEGER))"


def s05_no_valid_relationship(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S05 NO_VALID_RELATIONSHIP: "relation_id unknown, not valid, not active at
    transfer_time, or its sharer/beneficiary differ from the transfer's".

    rules.md §2: any loaded ESTABLISH establishes its relation_id, valid or not; it is
    active at t when established at or before t and not dissolved at or before t; the
    latest ESTABLISH at or before t defines its sharer, beneficiary and validity at t.
    The latest of {ESTABLISH, effective DISSOLVE} at or before t decides; at the same
    instant the DISSOLVE counts as later (spec-readings item 26), and of ESTABLISHes at
    the same instant the greatest event_id (item 30d). relation_events of dates <= D.

    Bounded memory (a ten-national-day volume under the default limit): the events are
    first reduced to one deciding event per (relation, instant) by an aggregate, and each
    transfer then finds the latest instant at or before its time by an ASOF join; no
    window ranks the pairs of a join.
    """
    record(con, "S05", f"""
        WITH o AS (SELECT * FROM d_transfers WHERE side = 'OUT' AND status = 'SUCCESS'),
        ev AS (   -- the events of the relations that today's transfers name
            SELECT * FROM relation_events
            WHERE business_date <= CAST($d AS DATE) AND (event_type = 'ESTABLISH' OR valid)
              AND relation_id IN (SELECT relation_id FROM o)
        ),
        rel AS (
            SELECT relation_id, min(event_time) AS first_est
            FROM ev WHERE event_type = 'ESTABLISH' GROUP BY relation_id
        ),
        deciding AS (   -- per (relation, instant): the event in force from that instant on
            SELECT relation_id, event_time,
                   arg_max({{'event_type': event_type, 'event_id': event_id, 'valid': valid,
                             'sharer_psn_no': sharer_psn_no, 'beneficiary_psn_no': beneficiary_psn_no}},
                           {{'dissolve': event_type = 'DISSOLVE', 'event_id': event_id,
                             'sharer_psn_no': sharer_psn_no, 'beneficiary_psn_no': beneficiary_psn_no,
                             'invalid': NOT valid}}) AS e
            FROM ev GROUP BY relation_id, event_time
        ),
        judged AS (
            SELECT o.*,
                   CASE
                     WHEN rel.relation_id IS NULL THEN
                       'relation_id ' || o.relation_id || ' is unknown: no ESTABLISH of it up to '
                       || strftime(CAST($d AS DATE), '%Y-%m-%d') || '.'
                     WHEN l.e IS NULL THEN
                       'relation ' || o.relation_id || ' is not active at '
                       || strftime(o.transfer_time, {_FMT}) || ': its first ESTABLISH is at '
                       || strftime(rel.first_est, {_FMT}) || ', after the transfer.'
                     WHEN l.e.event_type = 'DISSOLVE' THEN
                       'relation ' || o.relation_id || ' is not active at '
                       || strftime(o.transfer_time, {_FMT}) || ': dissolved by ' || l.e.event_id
                       || ' at ' || strftime(l.event_time, {_FMT}) || '.'
                     WHEN NOT l.e.valid THEN
                       'relation ' || o.relation_id || ' is not valid at '
                       || strftime(o.transfer_time, {_FMT}) || ': its latest ESTABLISH ' || l.e.event_id
                       || ' (at ' || strftime(l.event_time, {_FMT}) || ') failed the relationship rules.'
                     WHEN l.e.sharer_psn_no <> o.sharer_psn_no
                          OR l.e.beneficiary_psn_no <> o.beneficiary_psn_no THEN
                       'relation ' || o.relation_id || ' links sharer ' || l.e.sharer_psn_no
                       || ' to beneficiary ' || l.e.beneficiary_psn_no || ' (ESTABLISH ' || l.e.event_id
                       || '), not the transfer''s ' || o.sharer_psn_no || ' to ' || o.beneficiary_psn_no || '.'
                   END AS detail
            FROM o
            LEFT JOIN rel ON rel.relation_id = o.relation_id
            ASOF LEFT JOIN deciding l ON l.relation_id = o.relation_id AND o.transfer_time >= l.event_time
        )
        SELECT {_COMMON}, o.detail, {_LINEAGE}
        FROM judged o WHERE o.detail IS NOT NULL
    """, {"d": ctx.business_date})


def s08_over_amount_limit(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S08 OVER_AMOUNT_LIMIT: "amount > max amount of one transfer"."""
    record(con, "S08", f"""
        SELECT {_COMMON},
               'Amount ' || o.amount || ' exceeds the limit of ' || CAST($max_amount AS DECIMAL(18,2))
                 || ' for one transfer (policy ' || $policy_id || ').' AS detail,
               {_LINEAGE}
        FROM d_transfers o
        WHERE o.side = 'OUT' AND o.status = 'SUCCESS'
          AND o.amount > CAST($max_amount AS DECIMAL(18,2))
    """, {"max_amount": ctx.policy.max_transfer_amount, "policy_id": ctx.policy.id})


def s09_over_daily_count(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S09 OVER_DAILY_COUNT: "the 4th and every later SUCCESS OUT transfer of the sharer on D".

    The 4th = one past policy.max_daily_out_transfers.
    """
    record(con, "S09", f"""
        SELECT {_COMMON},
               'SUCCESS OUT transfer number ' || o.day_seq || ' of sharer ' || o.sharer_psn_no
                 || ' on ' || strftime(CAST($d AS DATE), '%Y-%m-%d') || ' (by time, id); at most '
                 || $max_count || ' a day.' AS detail,
               {_LINEAGE}
        FROM ({_OUT}) o
        WHERE o.day_seq > $max_count
    """, {"max_count": ctx.policy.max_daily_out_transfers, "d": ctx.business_date})


def _excess_sql(genesis: bool) -> str:
    """SUCCESS OUT records of D whose running sum exceeds the sharer's PERSONAL opening
    balance, with the evidence of received quota (opening lots, earlier IN today).

    Only the balances of the persons concerned are grouped: the PERSONAL rows of the
    day's sharers, the QUOTA rows or lots of the sharers in excess (grouping every
    balance of D spills at ten national days' volume)."""
    if genesis:   # at genesis the opening lots are the QUOTA opening balances delivered for D
        opening_lots = """
            SELECT psn_no AS holder, sum(opening_balance) AS held, count(*) AS lots
            FROM d_balances WHERE account = 'QUOTA' AND opening_balance > 0
              AND psn_no IN (SELECT sharer_psn_no FROM excess)
            GROUP BY psn_no"""
    else:         # else the closing lots of D-1
        opening_lots = """
            SELECT beneficiary_psn_no AS holder, sum(remaining) AS held, count(*) AS lots
            FROM lots WHERE business_date = CAST($d AS DATE) - 1 AND remaining > 0
              AND beneficiary_psn_no IN (SELECT sharer_psn_no FROM excess)
            GROUP BY beneficiary_psn_no"""
    return f"""
        WITH o AS MATERIALIZED ({_OUT}),
        personal AS (
            SELECT psn_no, arg_min(opening_balance, file_province || ':' || lpad(CAST(source_row AS VARCHAR), 10, '0'))
                           AS opening
            FROM d_balances WHERE account = 'PERSONAL' AND psn_no IN (SELECT sharer_psn_no FROM o)
            GROUP BY psn_no
        ),
        excess AS MATERIALIZED (
            SELECT o.*, coalesce(p.opening, CAST(0 AS DECIMAL(18,2))) AS opening
            FROM o LEFT JOIN personal p ON p.psn_no = o.sharer_psn_no
            WHERE o.running_sum > coalesce(p.opening, CAST(0 AS DECIMAL(18,2)))
        ),
        opening_lots AS ({opening_lots}),
        earlier_in AS (
            SELECT e.source_file, e.source_row,
                   string_agg(i.transfer_id || ' at ' || strftime(i.transfer_time, '%H:%M:%S'), ', '
                              ORDER BY i.transfer_time, i.transfer_id) AS ins
            FROM excess e JOIN d_transfers i
              ON i.side = 'IN' AND i.status = 'SUCCESS' AND i.beneficiary_psn_no = e.sharer_psn_no
             AND i.transfer_time < e.transfer_time
            GROUP BY e.source_file, e.source_row
        )
        SELECT e.*, l.held, l.lots, ei.ins,
               (l.holder IS NOT NULL OR ei.ins IS NOT NULL) AS held_quota,
               'Running sum of sharer ' || e.sharer_psn_no || '''s SUCCESS OUT amounts on '
                 || strftime(CAST($d AS DATE), '%Y-%m-%d') || ' is ' || e.running_sum
                 || ' with this transfer, over the PERSONAL opening balance ' || e.opening
                 || ' by ' || (e.running_sum - e.opening) AS base_detail
        FROM excess e
        LEFT JOIN opening_lots l ON l.holder = e.sharer_psn_no
        LEFT JOIN earlier_in ei ON ei.source_file = e.source_file AND ei.source_row = e.source_row
    """


def stage_excess(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """TEMP table d_excess (_excess_sql), which S10 and S11 both read: built once, not
    once for each (each grouped the balances of D again)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE d_excess AS {_excess_sql(ctx.genesis)}",
                {"d": ctx.business_date})


def s10_insufficient_balance(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S10 INSUFFICIENT_BALANCE: "running sum of the sharer's SUCCESS OUT amounts on D
    (this one included) exceeds the sharer's PERSONAL opening balance, and the sharer
    held no received quota (see S11)".

    An absent PERSONAL row is a balance of 0 (inbox.md balances). Needs d_excess
    (stage_excess, called by `run`).
    """
    record(con, "S10", f"""
        SELECT {_COMMON}, o.base_detail || '; the sharer held no received quota.' AS detail, {_LINEAGE}
        FROM d_excess o
        WHERE NOT o.held_quota
    """)


def s11_resharing(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S11 RESHARING: "same excess as S10, but the sharer held received quota: a lot with
    remaining quota at 00:00 of D, or a SUCCESS IN transfer to the sharer earlier on D
    (transfer_time strictly before). The excess can only have come from quota received
    from someone else (再共济)".

    Lots at 00:00 of D: the closing lots of D-1 with remaining > 0, or at genesis the
    QUOTA rows of balances.csv with opening_balance > 0. Needs d_excess (stage_excess,
    called by `run`).
    """
    record(con, "S11", f"""
        SELECT {_COMMON},
               o.base_detail || '; the excess can only be received quota ('
                 || concat_ws('; ',
                      CASE WHEN o.held IS NOT NULL THEN
                        o.held || ' in ' || o.lots || ' lot(s) at 00:00' END,
                      CASE WHEN o.ins IS NOT NULL THEN 'received earlier today: ' || o.ins END)
                 || ').' AS detail,
               {_LINEAGE}
        FROM d_excess o
        WHERE o.held_quota
    """)


def s12_forwarding(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S12 FORWARDING: "the sharer received a SUCCESS IN transfer from a different person
    within the window before this transfer's time (D-29 .. D, strictly earlier); detail
    names the upstream sharers".

    Readings 8 and 9: IN-side records; the upstream sharer differs from this
    transfer's beneficiary (a straight return is S13's concern) and from the sharer
    himself. Window length: policy.forwarding_window_days.
    """
    record(con, "S12", f"""
        WITH o AS (SELECT * FROM d_transfers WHERE side = 'OUT' AND status = 'SUCCESS'),
        ins AS (
            SELECT transfer_id, sharer_psn_no, beneficiary_psn_no, transfer_time
            FROM transfers
            WHERE side = 'IN' AND status = 'SUCCESS'
              AND business_date BETWEEN {_WINDOW_START} AND CAST($d AS DATE)
        ),
        upstream AS (   -- per (transfer, upstream sharer): how many received, the latest
            SELECT o.source_file, o.source_row, i.sharer_psn_no AS upstream,
                   count(*) AS n, max(i.transfer_time) AS latest,
                   arg_max(i.transfer_id, i.transfer_time) AS latest_id
            FROM o JOIN ins i
              ON i.beneficiary_psn_no = o.sharer_psn_no
             AND i.transfer_time < o.transfer_time
             AND i.sharer_psn_no <> o.beneficiary_psn_no
             AND i.sharer_psn_no <> o.sharer_psn_no
            GROUP BY ALL
        ),
        per_transfer AS (
            SELECT source_file, source_row,
                   string_agg(upstream || ' (' || n || ' transfer(s), latest ' || latest_id || ' at '
                              || strftime(latest, {_FMT}) || ')', ', ' ORDER BY upstream) AS names
            FROM upstream GROUP BY source_file, source_row
        )
        SELECT {_COMMON},
               'Sharer ' || o.sharer_psn_no || ' passes quota to ' || o.beneficiary_psn_no
                 || ' after receiving quota within ' || strftime({_WINDOW_START}, '%Y-%m-%d') || '..'
                 || strftime(CAST($d AS DATE), '%Y-%m-%d') || ' from upstream sharer(s) ' || p.names || '.'
                 AS detail,
               {_LINEAGE}
        FROM o JOIN per_transfer p ON p.source_file = o.source_file AND p.source_row = o.source_row
    """, _window_params(ctx))


def s13_cycle(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S13 CYCLE: "this transfer closes a directed cycle of SUCCESS transfers of at most the
    longest cycle length, all within the window and in time order (A→B→…→A, each later
    than the previous); detail lists the cycle".

    Reading 9: edges are SUCCESS OUT-side records over D-29..D (a transfer_id
    delivered twice only repeats an edge, which changes no cycle);
    one finding per closing transfer of D, naming the shortest cycle, then the one
    whose first transfer is earliest. A walk is keyed by its closing OUT record (its
    lineage), not its transfer_id: an id repeated by another province's OUT record
    is another edge and must not inherit or disturb this one's cycle.

    Set-based: the edges are first pruned to those whose sender also receives and
    whose receiver sends again later (or that close on D); a recursive CTE then walks backwards from each
    closing transfer, one level per transfer, each step strictly earlier. At each
    level only the latest-possible edge into each (closing transfer, node) survives:
    it dominates every other walk to that node (anything that continues an earlier
    walk continues it too), so the frontier stays small. A walk stops when it is back
    at the closing transfer's beneficiary; there it keeps the earliest edge instead.
    """
    record(con, "S13", f"""
        WITH RECURSIVE
        edges AS MATERIALIZED (
            SELECT transfer_id, sharer_psn_no AS src, beneficiary_psn_no AS dst,
                   transfer_time AS t, business_date, source_file, source_row
            FROM transfers
            WHERE side = 'OUT' AND status = 'SUCCESS' AND sharer_psn_no <> beneficiary_psn_no
              AND business_date BETWEEN {_WINDOW_START} AND CAST($d AS DATE)
        ),
        last_send AS MATERIALIZED (SELECT src AS node, max(t) AS last_t FROM edges GROUP BY src),
        receivers AS MATERIALIZED (SELECT DISTINCT dst AS node FROM edges),
        core AS MATERIALIZED (   -- edges that can lie on a time-ordered cycle closed on D
            SELECT e.* FROM edges e
            JOIN last_send ls ON ls.node = e.dst                  -- the receiver sends again later
            WHERE (e.t < ls.last_t OR e.business_date = CAST($d AS DATE))   -- (or this edge closes)
              AND e.src IN (SELECT node FROM receivers)            -- and the sender receives
        ),
        walk(closing_file, closing_row, target, head, bound, depth, path) AS (
            SELECT source_file, source_row, dst, src, t, 1,
                   [{{'id': transfer_id, 'src': src, 'dst': dst, 't': t}}]
            FROM core WHERE business_date = CAST($d AS DATE)
            UNION ALL
            SELECT w.closing_file, w.closing_row, w.target, e.src, e.t, w.depth + 1,
                   list_prepend({{'id': e.transfer_id, 'src': e.src, 'dst': e.dst, 't': e.t}}, w.path)
            FROM walk w JOIN core e ON e.dst = w.head AND e.t < w.bound
            WHERE w.head <> w.target AND w.depth < $max_len
            QUALIFY row_number() OVER (
                PARTITION BY w.closing_file, w.closing_row, e.src
                ORDER BY CASE WHEN e.src = w.target THEN epoch_us(e.t) ELSE -epoch_us(e.t) END,
                         e.transfer_id, e.source_file, e.source_row) = 1
        ),
        cycle AS (
            SELECT closing_file, closing_row, depth, path,
                   path[1].src || '→' || array_to_string(list_transform(path, lambda x:
                       x.dst || ' (' || x.id || ' ' || strftime(x.t, {_FMT}) || ')'), ' → ') AS chain
            FROM walk WHERE head = target
            QUALIFY row_number() OVER (PARTITION BY closing_file, closing_row
                                       ORDER BY depth, path[1].t, path[1].id) = 1
        )
        SELECT {_COMMON},
               'Transfer ' || o.transfer_id || ' closes a cycle of ' || c.depth
                 || ' SUCCESS transfers within ' || strftime({_WINDOW_START}, '%Y-%m-%d') || '..'
                 || strftime(CAST($d AS DATE), '%Y-%m-%d') || ' (at most ' || $max_len || '): '
                 || c.chain || '.' AS detail,
               {_LINEAGE}
        FROM d_transfers o
        JOIN cycle c ON c.closing_file = o.source_file AND c.closing_row = o.source_row
    """, {**_window_params(ctx), "max_len": ctx.policy.max_cycle_length})


def run(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    s05_no_valid_relationship(con, ctx)
    s08_over_amount_limit(con, ctx)
    s09_over_daily_count(con, ctx)
    stage_excess(con, ctx)
    s10_insufficient_balance(con, ctx)
    s11_resharing(con, ctx)
    con.execute("DROP TABLE temp.d_excess")
    s12_forwarding(con, ctx)
    s13_cycle(con, ctx)
