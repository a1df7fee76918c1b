"""The family view: one entry per top sharer (by the amount of their findings): the
person, relationships, transfers sent and received, the beneficiaries' spending and
remaining quota.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from contracts.policy import Policy
from contracts.resources import release_cached_blocks

from auditview.evidence import _window_start
from auditview.queries import _Gather, _S, _Transfers, _batch, _make_table, _with_keys
from auditview.text import AuditConfig, money

# --------------------------------------------------------------------------- families

# Which sharer's lot each lot_id is, for the consumptions of the window [start, D]: a
# lot is the SUCCESS IN transfer that opened it (lot_id = transfer_id, ledger §6) or a
# genesis lot 'G:<beneficiary>:<sharer>'. Read from transfers (one row per transfer),
# not from the lots of every date (one row per open lot and date), so the page does
# not read the ledger's state over the window (issue 12).
_WINDOW_LOTS = """(
    SELECT transfer_id AS lot_id, beneficiary_psn_no, sharer_psn_no FROM transfers
    WHERE business_date <= $day AND side = 'IN' AND status = 'SUCCESS'
    UNION ALL
    SELECT DISTINCT lot_id, split_part(lot_id, ':', 2), split_part(lot_id, ':', 3)
    FROM consumptions
    WHERE business_date BETWEEN $start AND $day AND starts_with(lot_id, 'G:'))"""


def _keyed(con: duckdb.DuckDBPyConnection, sql: str, params: dict, keys: list[tuple],
           types: tuple) -> list[tuple]:
    """Rows of `sql` (reading the keys as {keys}: k0, k1, ...), all of them, as fetched."""
    if not keys:
        return []
    text, used = _with_keys(sql, params, keys, types)
    rows = con.execute(text, used).fetchall()
    release_cached_blocks(con)  # the blocks of every date it read go (contracts/resources.py)
    return rows


_FAMILY_TABLES: dict[str, tuple[str, str, str, tuple, str]] = {
    "relationships": ("relationships", "共济关系事件", "Relationship events", (_S,), """
        SELECT r.sharer_psn_no AS __k0, r.business_date, r.event_id, r.relation_id, r.event_type,
               r.relation_code, r.commitment_signed, r.beneficiary_psn_no, r.event_time, e.valid,
               row_number() OVER (PARTITION BY r.sharer_psn_no
                                  ORDER BY r.event_time DESC, r.event_id) AS __n
        FROM relationships r LEFT JOIN relation_events e
          ON e.business_date = r.business_date AND e.event_id = r.event_id
        WHERE r.business_date <= $day AND r.sharer_psn_no IN (SELECT k0 FROM {keys})"""),
    "transfers": ("transfers", "转出与转入(窗口内)", "Transfers sent and received (window)", (_S,), """
        SELECT __k0, transfer_time, transfer_id,
               CASE WHEN sharer_psn_no = __k0 THEN 'OUT' ELSE 'IN' END AS direction,
               sharer_psn_no, beneficiary_psn_no, amount, status,
               row_number() OVER (PARTITION BY __k0 ORDER BY transfer_time DESC, transfer_id) AS __n
        FROM (SELECT k.k0 AS __k0, t.* FROM {transfers} t JOIN {keys} k
                ON t.sharer_psn_no = k.k0 OR t.beneficiary_psn_no = k.k0
              WHERE t.business_date BETWEEN $start AND $day
              QUALIFY row_number() OVER (PARTITION BY k.k0, t.transfer_id ORDER BY t.side DESC) = 1)"""),
    "spending": ("spending", "被共济人的结算(窗口内)", "Beneficiaries' settlements (window)",
                 (_S, _S), """
        WITH sl AS (
          SELECT k.k0 AS __k0, s.business_date, s.setl_time, s.setl_id, s.psn_no, s.status,
                 s.expense_type, s.fixmedins_code, s.wallet_pay
          FROM settlements s JOIN {keys} k ON s.psn_no = k.k1
          WHERE s.business_date BETWEEN $start AND $day),
        fs AS (
          SELECT x.__k0, c.business_date, c.setl_id, sum(c.amount) AS amount
          FROM consumptions c
          JOIN (SELECT DISTINCT sharer_psn_no AS __k0, lot_id FROM """ + _WINDOW_LOTS + """
                WHERE sharer_psn_no IN (SELECT k0 FROM {keys})) l ON l.lot_id = c.lot_id
          JOIN (SELECT DISTINCT __k0, business_date, setl_id FROM sl) x
            ON x.__k0 = l.__k0 AND x.business_date = c.business_date AND x.setl_id = c.setl_id
          GROUP BY x.__k0, c.business_date, c.setl_id)
        SELECT sl.__k0, sl.business_date, sl.setl_time, sl.setl_id, sl.psn_no, sl.status,
               sl.expense_type, sl.fixmedins_code, sl.wallet_pay, o.outcome,
               fs.amount AS from_this_sharer,
               row_number() OVER (PARTITION BY sl.__k0 ORDER BY sl.setl_time DESC, sl.setl_id) AS __n
        FROM sl LEFT JOIN settlement_outcomes o
          ON o.business_date = sl.business_date AND o.setl_id = sl.setl_id
        LEFT JOIN fs ON fs.__k0 = sl.__k0 AND fs.business_date = sl.business_date
                    AND fs.setl_id = sl.setl_id"""),
}


def _top_sharers(rows: list[dict], config: AuditConfig) -> tuple[list[str], dict, dict]:
    """The top N sharers by the total |amount| of their findings: (top, score, count)."""
    score: dict[str, Decimal] = {}
    nfind: dict[str, int] = {}
    zero = Decimal("0")
    for r in rows:
        s = r.get("sharer_psn_no")
        if not s:
            continue
        a = r.get("amount")
        if a is not None:
            a = abs(a if isinstance(a, Decimal) else Decimal(str(a)))
        score[s] = score.get(s, zero) + (zero if a is None else a)
        nfind[s] = nfind.get(s, 0) + 1
    top = sorted(score, key=lambda s: (-score[s], -nfind[s], s))[:config.families]
    return top, score, nfind


def families(con: duckdb.DuckDBPyConnection, d: date, rows: list[dict], policy: Policy | None,
             config: AuditConfig, transfers: _Transfers | None = None,
             top_sharers: tuple | None = None) -> list[dict]:
    """Family views of the top N sharers by the total |amount| of their findings (in batch).

    `transfers`: a _Transfers that already needs the top sharers (else one of its own);
    `top_sharers`: _top_sharers(rows, config) when already known.
    """
    top, score, nfind = top_sharers or _top_sharers(rows, config)
    if not top:
        return []
    start = _window_start(d, policy)
    own = transfers is None
    if own:
        transfers = _Transfers(con, d, start)
        transfers.need(persons=top)
    try:
        return _families(con, d, rows, top, score, nfind, start, config, transfers)
    finally:
        if own:
            transfers.close()


# What a sharer's family looks like in the window [start, D], one query each for all the
# sharers shown ({keys}: their psn_no as k0; each row starts with the sharer).
_BENEFICIARIES_SQL = """
    SELECT DISTINCT __k0, b FROM (
      SELECT sharer_psn_no AS __k0, beneficiary_psn_no AS b FROM relationships
      WHERE business_date <= $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
      UNION ALL
      SELECT sharer_psn_no, beneficiary_psn_no FROM {transfers}
      WHERE business_date BETWEEN $start AND $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
      UNION ALL
      SELECT sharer_psn_no, beneficiary_psn_no FROM lots
      WHERE business_date = $day AND sharer_psn_no IN (SELECT k0 FROM {keys}))
    ORDER BY 1, 2"""
_SENT_SQL = """
    SELECT __k0, beneficiary_psn_no, count(*), sum(amount) FROM (
      SELECT sharer_psn_no AS __k0, * FROM {transfers}
      WHERE business_date BETWEEN $start AND $day AND status = 'SUCCESS'
        AND sharer_psn_no IN (SELECT k0 FROM {keys})
      QUALIFY row_number() OVER (PARTITION BY sharer_psn_no, transfer_id
                                 ORDER BY side DESC) = 1)
    GROUP BY 1, 2"""
_RECEIVED_SQL = """
    SELECT __k0, sharer_psn_no, count(*), sum(amount) FROM (
      SELECT beneficiary_psn_no AS __k0, * FROM {transfers}
      WHERE business_date BETWEEN $start AND $day AND status = 'SUCCESS'
        AND beneficiary_psn_no IN (SELECT k0 FROM {keys})
      QUALIFY row_number() OVER (PARTITION BY beneficiary_psn_no, transfer_id
                                 ORDER BY side) = 1)
    GROUP BY 1, 2 ORDER BY 1, 2"""
_REMAINING_SQL = """
    SELECT sharer_psn_no, beneficiary_psn_no, sum(remaining) FROM lots
    WHERE business_date = $day AND sharer_psn_no IN (SELECT k0 FROM {keys})
    GROUP BY 1, 2"""
_SPENT_SQL = """
    WITH l AS MATERIALIZED (   -- the lots of the shown sharers: few
        SELECT DISTINCT lot_id, beneficiary_psn_no, sharer_psn_no AS __k0 FROM """ + _WINDOW_LOTS + """
        WHERE sharer_psn_no IN (SELECT k0 FROM {keys})),
    c AS MATERIALIZED (        -- their consumptions in the window, before any join
        SELECT c.business_date, c.setl_id, c.amount, l.__k0, l.beneficiary_psn_no
        FROM consumptions c JOIN l ON l.lot_id = c.lot_id
        WHERE c.business_date BETWEEN $start AND $day AND c.lot_id IN (SELECT lot_id FROM l))
    SELECT c.__k0, s.psn_no, sum(c.amount) FROM c
    JOIN settlements s ON s.business_date = c.business_date AND s.setl_id = c.setl_id
     AND s.psn_no = c.beneficiary_psn_no
    WHERE s.business_date BETWEEN $start AND $day AND s.setl_id IN (SELECT setl_id FROM c)
    GROUP BY 1, 2"""


def _involved(rows: list[dict], top: list[str]) -> dict[str, list[str]]:
    """Exception ids of D that name each top sharer (as either party)."""
    involved: dict[str, list[str]] = {s: [] for s in top}
    for r in rows:
        for p in dict.fromkeys((r.get("sharer_psn_no"), r.get("beneficiary_psn_no"))):
            if p in involved:
                involved[p].append(str(r["exception_id"]))
    return involved


def _family_sums(con, params: dict, keys: list[tuple], top: list[str]) -> dict[str, dict]:
    """Per sharer: beneficiaries, sent / received (count, amount), remaining quota, spent."""
    def query(sql):
        return _keyed(con, sql, params, keys, (_S,))
    f: dict[str, dict] = {s: {"bens": [], "sent": {}, "received": [], "remaining": {}, "spent": {}}
                          for s in top}
    for k, b in query(_BENEFICIARIES_SQL):
        f[k]["bens"].append(b)
    for k, b, n, amount in query(_SENT_SQL):
        f[k]["sent"][b] = (n, amount)
    for k, p, n, amount in query(_RECEIVED_SQL):
        f[k]["received"].append((p, n, amount))
    for k, b, v in query(_REMAINING_SQL):
        f[k]["remaining"][b] = v
    for k, b, v in query(_SPENT_SQL):
        f[k]["spent"][b] = v
    return f


def _family_tables(con, params: dict, keys: list[tuple], sums: dict, lim: int) -> dict:
    """The rows of every table of _FAMILY_TABLES for all the sharers shown."""
    fetched: dict[str, tuple | None] = {}
    for kind, (_key, _zh, _en, types, sql) in _FAMILY_TABLES.items():
        fam_keys = ([(s, b) for (s,) in keys for b in sums[s]["bens"]] if len(types) == 2
                    else keys)
        # the SQL of one family held LIMIT family_rows: at most that many rows, never "more"
        fetched[kind] = _batch(con, sql, params, fam_keys, types, lim, out_keys=1)
    return fetched


def _family_entry(s: str, f: dict, person_table, fetched: dict, involved: list[str],
                  score: dict, nfind: dict, lim: int) -> dict:
    tables = [person_table]
    for kind, (tkey, zh, en, _types, _sql) in _FAMILY_TABLES.items():
        got = fetched[kind]
        tables.append(_make_table(tkey, zh, en, got[0], got[1].get((s,), []), lim)
                      if got is not None else None)
    zero = (0, Decimal("0"))
    return {
        "sharer": s, "province": s[:2] if s else None,
        "finding_amount": money(score[s]), "finding_count": nfind[s],
        "involved": involved[:lim],
        "beneficiaries": [{"psn_no": b, "sent_count": f["sent"].get(b, zero)[0],
                           "sent": money(f["sent"].get(b, zero)[1]),
                           "spent": money(f["spent"].get(b, Decimal("0"))),
                           "remaining": money(f["remaining"].get(b, Decimal("0")))}
                          for b in f["bens"][:lim]],
        "received_from": [{"psn_no": r[0], "count": r[1], "amount": money(r[2])}
                          for r in f["received"][:lim]],
        "tables": [t for t in tables if t],
    }


def _families(con, d: date, rows: list[dict], top: list[str], score: dict, nfind: dict,
              start: date, config: AuditConfig, transfers: _Transfers) -> list[dict]:
    lim = config.family_rows
    params = {"day": d, "start": start, "__transfers": transfers.fetch()}
    keys = [(s,) for s in top]
    sums = _family_sums(con, params, keys, top)
    g = _Gather(con, d, lim)
    people = {s: g.persons([s] + sums[s]["bens"] + [r[0] for r in sums[s]["received"]])
              for s in top}
    g.run()
    fetched = _family_tables(con, params, keys, sums, lim)
    involved = _involved(rows, top)
    return [_family_entry(s, sums[s], g.table(people[s]), fetched, involved[s], score, nfind, lim)
            for s in top]
