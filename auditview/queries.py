"""Batched evidence queries: one query per kind of table for all the findings shown, the
rows keyed back to each finding (`_Gather`).
"""
from __future__ import annotations

import re
import warnings
from datetime import date, timedelta
from typing import Iterable

import duckdb
import polars as pl

from auditview.text import _cell
from contracts.resources import release_cached_blocks

# --------------------------------------------------------------------------- batched queries
#
# Evidence and family views are gathered in batch: every kind of evidence table is one
# query for all the findings (or sharers) that want it, joined against their keys
# (passed as list parameters and unnested); the rows are then grouped by key in Python,
# and the transfers of the window are read once (_Transfers). A national day evidences
# hundreds of findings: a few queries each cost tens of seconds.

_PSN_RE = re.compile(r"(?<!\d)\d{20}(?!\d)")
_PARAM_RE = re.compile(r"\$([a-z_0-9]+)")


def _make_table(key: str, zh: str, en: str, columns: list[str], rows: list[tuple],
                limit: int) -> dict | None:
    """{key, zh, en, columns, rows, more} of at most `limit` rows (cells formatted), or None."""
    if not rows:
        return None
    return {"key": key, "zh": zh, "en": en, "columns": columns,
            "rows": [[_cell(c, v) for c, v in zip(columns, r)] for r in rows[:limit]],
            "more": len(rows) > limit}


_SQL_TYPES = {pl.String: "VARCHAR", pl.Int64: "BIGINT"}


def _with_keys(sql: str, params: dict, keys: list[tuple], types: tuple) -> tuple[str, dict]:
    """`sql` with {keys} as a relation (k0, k1, ...) of `keys`, passed as list parameters."""
    cols = ", ".join(f"unnest($__k{i}::{_SQL_TYPES[t]}[]) AS k{i}" for i, t in enumerate(types))
    text = sql.replace("{keys}", f"(SELECT {cols})").replace(
        "{transfers}", params.get("__transfers") or "transfers")
    used = {p: params[p] for p in dict.fromkeys(_PARAM_RE.findall(text)) if not p.startswith("__k")}
    for i in range(len(types)):
        used[f"__k{i}"] = [k[i] for k in keys]
    return text, used


def _batch(con: duckdb.DuckDBPyConnection, sql: str, params: dict, keys: Iterable[tuple],
           types: tuple, cap: int, out_keys: int | None = None
           ) -> tuple[list[str], dict[tuple, list[tuple]]] | None:
    """Run `sql` once for many keys; return (columns, rows by key), None when a table is missing.

    `sql` reads the keys as the relation {keys} (columns k0, k1, ... of polars `types`)
    and yields __k0, __k1, ... first and __n (the 1-based rank of the row within its
    key, in the table's order) last; at most `cap` rows per key are fetched, in order.
    Keys holding None are skipped (they match nothing, as `= NULL` would). `out_keys`:
    how many __k columns the SQL yields (default: one per key column).
    """
    keys = [k for k in dict.fromkeys(keys) if all(x is not None for x in k)]
    if not keys:
        return [], {}
    arity = len(types)
    nk = arity if out_keys is None else out_keys
    text, used = _with_keys(sql, params, keys, types)
    try:
        order = ", ".join(f"__k{i}" for i in range(nk))
        cur = con.execute(f"SELECT * FROM ({text}) WHERE __n <= {int(cap)} ORDER BY {order}, __n",
                          used)
        cols = [c[0] for c in cur.description][nk:-1]
        grouped: dict[tuple, list[tuple]] = {}
        for r in cur.fetchall():
            grouped.setdefault(r[:nk], []).append(r[nk:-1])
        release_cached_blocks(con)  # many of these read every date: their blocks go
        return cols, grouped
    except duckdb.CatalogException:
        return None


# Evidence tables: kind -> (key, zh, en, key types, SQL over {keys}).
_S = pl.String
_EVIDENCE_KINDS: dict[str, tuple[str, str, str, tuple, str]] = {
    "transfer": ("transfer", "转账记录(双边)", "Transfer records (both sides)", (_S,), """
        SELECT k.k0 AS __k0, t.transfer_id, t.side, t.status, t.relation_id, t.sharer_psn_no,
               t.beneficiary_psn_no, t.sharer_province, t.beneficiary_province, t.amount,
               t.transfer_time, t.source_file, t.source_row,
               row_number() OVER (PARTITION BY k.k0 ORDER BY t.side DESC, t.source_file,
                                  t.source_row) AS __n
        FROM {transfers} t JOIN {keys} k ON t.transfer_id = k.k0 WHERE t.business_date = $day"""),
    "relation": ("relation", "共济关系事件", "Relationship events", (_S,), """
        SELECT t.k0 AS __k0, r.business_date, r.event_id, r.event_type, r.relation_code,
               r.commitment_signed, r.sharer_psn_no, r.beneficiary_psn_no, r.event_time, e.valid,
               row_number() OVER (PARTITION BY t.k0 ORDER BY r.event_time, r.event_id) AS __n
        FROM relationships r
        JOIN (SELECT DISTINCT k.k0, x.relation_id FROM {transfers} x JOIN {keys} k
                ON x.transfer_id = k.k0 WHERE x.business_date = $day) t
          ON t.relation_id = r.relation_id
        LEFT JOIN relation_events e ON e.event_id = r.event_id AND e.business_date = r.business_date
        WHERE r.business_date <= $day"""),
    "sharer_out": ("sharer_out", "共济人当日成功转出(按时间)",
                   "Sharer's SUCCESS OUT transfers of the day, in order", (_S,), """
        SELECT sharer_psn_no AS __k0,
               row_number() OVER w AS n, transfer_id, beneficiary_psn_no, amount,
               sum(amount) OVER w AS running_sum, transfer_time,
               row_number() OVER w AS __n
        FROM {transfers} WHERE business_date = $day AND side = 'OUT' AND status = 'SUCCESS'
          AND sharer_psn_no IN (SELECT k0 FROM {keys})
        WINDOW w AS (PARTITION BY sharer_psn_no ORDER BY transfer_time, transfer_id)"""),
    "personal": ("personal", "共济人个人账户余额", "Sharer's personal account", (_S,), """
        SELECT psn_no AS __k0, psn_no, account, opening_balance, closing_balance, source_file,
               source_row,
               row_number() OVER (PARTITION BY psn_no ORDER BY source_file, source_row) AS __n
        FROM balances WHERE business_date = $day AND account = 'PERSONAL'
          AND psn_no IN (SELECT k0 FROM {keys})"""),
    "held_quota": ("held_quota", "共济人期初持有的受让额度",
                   "Quota the sharer held at 00:00 (lots received)", (_S,), """
        SELECT beneficiary_psn_no AS __k0, lot_id, sharer_psn_no AS from_sharer, payer_province,
               original_amount, remaining,
               row_number() OVER (PARTITION BY beneficiary_psn_no ORDER BY lot_id) AS __n
        FROM lots WHERE business_date = $lots_before AND remaining > 0
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    "received_today": ("received_today", "共济人当日收到的转账",
                       "SUCCESS IN transfers to the sharer on D", (_S,), """
        SELECT beneficiary_psn_no AS __k0, transfer_id, sharer_psn_no AS from_sharer, amount,
               transfer_time,
               row_number() OVER (PARTITION BY beneficiary_psn_no
                                  ORDER BY transfer_time, transfer_id) AS __n
        FROM {transfers} WHERE business_date = $day AND side = 'IN' AND status = 'SUCCESS'
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    # A settlement is (date, province, setl_id) (spec-readings 49): keyed by both.
    "settlement": ("settlement", "结算记录", "Settlement record", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, s.setl_id, s.status, s.orig_setl_id, s.psn_no,
               s.expense_type, s.fixmedins_code, s.total_amount, s.personal_burden, s.wallet_pay,
               s.setl_time, s.source_file, s.source_row,
               row_number() OVER (PARTITION BY k.k0, k.k1 ORDER BY s.source_file, s.source_row) AS __n
        FROM settlements s JOIN {keys} k ON s.setl_id = k.k0 AND s.file_province = k.k1
        WHERE s.business_date = $day"""),
    "outcome": ("outcome", "结算结果", "Outcome", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, o.setl_id, o.status, o.wallet_pay, o.outcome,
               row_number() OVER (PARTITION BY k.k0, k.k1 ORDER BY o.status, o.outcome) AS __n
        FROM settlement_outcomes o JOIN {keys} k ON o.setl_id = k.k0 AND o.province = k.k1
        WHERE o.business_date = $day"""),
    "original": ("original", "被退费的原结算", "The settlement refunded", (_S, _S), """
        SELECT q.k0 AS __k0, q.k1 AS __k1, s.business_date, s.setl_id, s.status, s.expense_type,
               s.wallet_pay, o.outcome,
               row_number() OVER (PARTITION BY q.k0, q.k1 ORDER BY s.business_date, s.file_province) AS __n
        FROM settlements s
        LEFT JOIN settlement_outcomes o
          ON o.business_date = s.business_date AND o.setl_id = s.setl_id AND o.province = s.file_province
        JOIN (SELECT DISTINCT x.setl_id AS k0, x.file_province AS k1, x.orig_setl_id
              FROM settlements x JOIN {keys} k ON x.setl_id = k.k0 AND x.file_province = k.k1
              WHERE x.business_date = $day) q
          ON s.setl_id = q.orig_setl_id
        WHERE s.business_date <= $day"""),
    "earlier_refunds": ("earlier_refunds", "原结算已有的退费", "Refunds of that settlement", (_S, _S), """
        SELECT q.k0 AS __k0, q.k1 AS __k1, s.business_date, s.setl_id, s.wallet_pay, s.setl_time,
               row_number() OVER (PARTITION BY q.k0, q.k1
                                  ORDER BY s.business_date, s.setl_time, s.setl_id) AS __n
        FROM settlements s
        JOIN (SELECT DISTINCT x.setl_id AS k0, x.file_province AS k1, x.orig_setl_id, x.psn_no
              FROM settlements x JOIN {keys} k ON x.setl_id = k.k0 AND x.file_province = k.k1
              WHERE x.business_date = $day) q
          ON s.orig_setl_id = q.orig_setl_id AND s.psn_no = q.psn_no
        WHERE s.business_date <= $day AND s.status = 'REFUND'"""),
    "institution": ("institution", "定点机构", "Institution", (_S, _S), """
        SELECT q.k0 AS __k0, q.k1 AS __k1, i.fixmedins_code, i.fixmedins_type, i.admdvs,
               i.designated_from, i.designated_to,
               row_number() OVER (PARTITION BY q.k0, q.k1 ORDER BY i.fixmedins_code) AS __n
        FROM institutions i
        JOIN (SELECT DISTINCT x.setl_id AS k0, x.file_province AS k1, x.fixmedins_code
              FROM settlements x JOIN {keys} k ON x.setl_id = k.k0 AND x.file_province = k.k1
              WHERE x.business_date = $day) q
          ON i.fixmedins_code = q.fixmedins_code
        WHERE i.business_date = $day"""),
    "opening_lots": ("opening_lots", "被共济人期初额度(按扣款顺序)",
                     "Beneficiary's quota lots at 00:00, in consumption order", (_S,), """
        SELECT beneficiary_psn_no AS __k0, lot_id, sharer_psn_no, payer_province,
               original_amount, remaining,
               row_number() OVER (PARTITION BY beneficiary_psn_no
                                  ORDER BY genesis DESC, CASE WHEN genesis THEN sharer_psn_no END,
                                           transfer_time, transfer_id) AS __n
        FROM lots WHERE business_date = $lots_before
          AND beneficiary_psn_no IN (SELECT k0 FROM {keys})"""),
    "day_events": ("day_events", "被共济人当日额度变动", "Beneficiary's quota movements on D",
                   (_S,), """
        SELECT __k0, "at", event, quota_in, wallet_pay, outcome,
               row_number() OVER (PARTITION BY __k0 ORDER BY "at", event) AS __n
        FROM (
          SELECT beneficiary_psn_no AS __k0, transfer_time AS "at", 'IN ' || transfer_id AS event,
                 amount AS quota_in, NULL::DECIMAL(18,2) AS wallet_pay, NULL AS outcome
          FROM {transfers} WHERE business_date = $day AND side = 'IN' AND status = 'SUCCESS'
            AND beneficiary_psn_no IN (SELECT k0 FROM {keys})
          UNION ALL
          SELECT s.psn_no, s.setl_time, s.status || ' ' || s.setl_id, NULL, s.wallet_pay, o.outcome
          FROM settlements s LEFT JOIN settlement_outcomes o
            ON o.business_date = s.business_date AND o.setl_id = s.setl_id AND o.province = s.file_province
          WHERE s.business_date = $day AND s.psn_no IN (SELECT k0 FROM {keys}))"""),
    "consumed": ("consumed", "扣减的额度批次", "Lots consumed", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, c.seq, c.lot_id, c.payer_province, c.amount,
               row_number() OVER (PARTITION BY k.k0, k.k1 ORDER BY c.seq) AS __n
        FROM consumptions c JOIN {keys} k ON c.setl_id = k.k0 AND c.province = k.k1
        WHERE c.business_date = $day"""),
    "event": ("event", "共济关系事件", "Relationship event", (_S,), """
        SELECT event_id AS __k0, event_id, relation_id, event_type, relation_code,
               commitment_signed, channel, sharer_psn_no, beneficiary_psn_no, beneficiary_province,
               event_time, source_file, source_row,
               row_number() OVER (PARTITION BY event_id ORDER BY source_file, source_row) AS __n
        FROM relationships WHERE business_date = $day AND event_id IN (SELECT k0 FROM {keys})"""),
    "history": ("history", "该关系的历史事件", "History of the relationship", (_S,), """
        SELECT q.k0 AS __k0, e.business_date, e.event_id, e.event_type, e.event_time, e.valid,
               row_number() OVER (PARTITION BY q.k0 ORDER BY e.event_time, e.event_id) AS __n
        FROM relation_events e
        JOIN (SELECT DISTINCT event_id AS k0, relation_id FROM relationships
              WHERE business_date = $day AND event_id IN (SELECT k0 FROM {keys})) q
          ON e.relation_id = q.relation_id
        WHERE e.business_date <= $day"""),
    "balance": ("balance", "报送的额度余额", "Delivered quota balance", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, b.business_date, b.psn_no, b.account, b.sharer_psn_no,
               b.opening_balance, b.closing_balance, b.source_file, b.source_row,
               row_number() OVER (PARTITION BY k.k0, k.k1
                                  ORDER BY b.business_date DESC, b.source_file, b.source_row) AS __n
        FROM balances b JOIN {keys} k ON b.psn_no = k.k0 AND b.sharer_psn_no = k.k1
        WHERE b.business_date BETWEEN $day_before AND $day AND b.account = 'QUOTA'"""),
    "computed": ("computed", "计算的额度批次(日终)", "Computed lots (closing)", (_S, _S), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, l.business_date, l.lot_id, l.original_amount,
               l.remaining,
               row_number() OVER (PARTITION BY k.k0, k.k1
                                  ORDER BY l.business_date DESC, l.lot_id) AS __n
        FROM lots l JOIN {keys} k ON l.beneficiary_psn_no = k.k0 AND l.sharer_psn_no = k.k1
        WHERE l.business_date IN ($day, $lots_before)"""),
    "computed_total": ("computed_total", "计算的期末额度合计", "Computed closing quota", (_S, _S), """
        SELECT __k0, __k1, business_date, remaining,
               row_number() OVER (PARTITION BY __k0, __k1 ORDER BY business_date DESC) AS __n
        FROM (SELECT k.k0 AS __k0, k.k1 AS __k1, l.business_date, sum(l.remaining) AS remaining
              FROM lots l JOIN {keys} k ON l.beneficiary_psn_no = k.k0 AND l.sharer_psn_no = k.k1
              WHERE l.business_date IN ($day, $lots_before)
              GROUP BY k.k0, k.k1, l.business_date)"""),
    "quarantine": ("quarantine", "隔离的记录", "Quarantined row", (_S, pl.Int64), """
        SELECT k.k0 AS __k0, k.k1 AS __k1, q.source_file, q.source_row, q.record_id, q.rule_code,
               q.reasons, q.raw,
               row_number() OVER (PARTITION BY k.k0, k.k1 ORDER BY q.rule_code, q.record_id) AS __n
        FROM quarantine q JOIN {keys} k ON q.source_file = k.k0 AND q.source_row = k.k1
        WHERE q.business_date = $day"""),
    "file": ("file", "文件装载", "File load", (_S,), """
        SELECT source_file AS __k0, source_file, dataset, encoding, rows_read, rows_loaded,
               rows_quarantined, rejected, reject_rule, reject_reason,
               row_number() OVER (PARTITION BY source_file ORDER BY dataset) AS __n
        FROM file_loads WHERE business_date = $day AND source_file IN (SELECT k0 FROM {keys})"""),
    "files": ("files", "该省文件装载", "File loads of the province", (_S,), """
        SELECT province AS __k0, source_file, dataset, rows_read, rows_loaded, rows_quarantined,
               rejected, reject_rule, reject_reason,
               row_number() OVER (PARTITION BY province ORDER BY source_file) AS __n
        FROM file_loads WHERE business_date = $day AND province IN (SELECT k0 FROM {keys})"""),
}

_PERSONS_SQL = """
    SELECT psn_no AS __k0, psn_no, certno, insutype, insu_status, insu_admdvs, birth_date, sex,
           business_date AS delivered_on, 1 AS __n
    FROM persons WHERE business_date <= $day AND psn_no IN (SELECT k0 FROM {keys})
    QUALIFY row_number() OVER (PARTITION BY psn_no
                               ORDER BY business_date DESC, file_province, source_row) = 1"""




def _persons_sql(con: duckdb.DuckDBPyConnection, d: date, psn_nos: Iterable[str]) -> str:
    """_PERSONS_SQL reading only the dates that hold the persons' latest records.

    The person registry (person_latest, transforms/context.py) holds the date of every
    person's latest record over the processed dates: when it covers every date of
    persons up to D and no asked person's entry lies after D, the latest record up to
    D is on that date, so only those dates are read and the page's cost does not grow
    with the persons history (issue 12). Else (a warehouse without the registry, a
    re-run of an earlier date) the whole history up to D is read, as before."""
    try:
        unfolded = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT business_date FROM persons "
            "WHERE business_date <= ?) ANTI JOIN person_latest_dates USING (business_date)",
            [d]).fetchone()[0]
        dates = con.execute(
            "SELECT DISTINCT business_date FROM person_latest "
            "WHERE psn_no IN (SELECT unnest(?::VARCHAR[]))", [sorted(psn_nos)]).fetchall()
    except duckdb.CatalogException:
        return _PERSONS_SQL
    if unfolded or any(r[0] > d for r in dates):
        return _PERSONS_SQL
    listed = ", ".join(f"DATE '{r[0].isoformat()}'" for r in dates) or "NULL"
    return _PERSONS_SQL.replace("business_date <= $day", f"business_date IN ({listed})")


# kinds that read transfers: by transfer id (of D) and by person
_TRANSFER_KINDS = {"transfer", "relation", "sharer_out", "received_today", "day_events"}


class _Gather:
    """Requests for evidence tables, answered in batch: one query per kind of table.

    want(kind, *key) and persons(psn_nos) return a reference; run() queries; table(ref)
    gives the table dict (or None when there is no row), shared by equal references.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, lim: int,
                 transfers: _Transfers | None = None):
        self.con, self.d, self.lim = con, d, lim
        self.transfers = transfers
        self.wanted: dict[str, set[tuple]] = {}
        self.psn_nos: set[str] = set()
        self.results: dict[str, tuple | None] = {}
        self.people: dict[str, tuple] | None = None
        self.cache: dict[tuple, dict | None] = {}

    def want(self, kind: str, *key) -> tuple | None:
        if any(k is None for k in key):
            return None
        self.wanted.setdefault(kind, set()).add(key)
        return ("t", kind, key)

    def persons(self, psn_nos: Iterable[str | None]) -> tuple | None:
        ps = tuple(p for p in dict.fromkeys(psn_nos) if p)
        if not ps:
            return None
        self.psn_nos.update(ps)
        return ("p", ps)

    def run(self) -> None:
        con, d = self.con, self.d
        if not self.wanted and not self.psn_nos:
            return
        lots_before = None
        if {"held_quota", "opening_lots", "computed", "computed_total"} & set(self.wanted):
            try:
                lots_before = con.execute("SELECT max(business_date) FROM lots WHERE business_date < ?",
                                          [d]).fetchall()[0][0]
            except duckdb.CatalogException:
                lots_before = None
        params = {"day": d, "day_before": d - timedelta(days=1), "lots_before": lots_before}
        if self.transfers is not None and _TRANSFER_KINDS & set(self.wanted):
            params["__transfers"] = self.transfers.fetch()
        for kind, keys in self.wanted.items():
            _k, _zh, _en, types, sql = _EVIDENCE_KINDS[kind]
            self.results[kind] = _batch(con, sql, params, keys, types, self.lim + 1)
        if self.psn_nos:
            got = _batch(con, _persons_sql(con, d, self.psn_nos), params,
                         [(p,) for p in self.psn_nos], (_S,), 1)
            if got is None:
                self.people = None
            else:
                cols, by = got
                self.people_cols = cols
                self.people = {k[0]: [_cell(c, v) for c, v in zip(cols, rows[0])]
                               for k, rows in by.items()}

    def table(self, ref: tuple | None) -> dict | None:
        if ref is None:
            return None
        if ref in self.cache:
            return self.cache[ref]
        if ref[0] == "p":
            out = None
            if self.people:
                rows = [self.people[p] for p in sorted(set(ref[1])) if p in self.people]
                if rows:
                    out = {"key": "persons", "zh": "人员", "en": "Persons",
                           "columns": list(self.people_cols), "rows": rows[:self.lim],
                           "more": len(rows) > self.lim}
        else:
            _t, kind, key = ref
            tkey, zh, en, _types, _sql = _EVIDENCE_KINDS[kind]
            got = self.results.get(kind)
            out = None
            if got is not None:
                cols, by = got
                out = _make_table(tkey, zh, en, cols, by.get(key, []), self.lim)
        self.cache[ref] = out
        return out


class _Transfers:
    """The transfers of the window [start, D] that touch given persons (as either party)
    or are among D's given transfer ids: one scan of the warehouse for every evidence
    and family query about transfers, which then read it as {transfers}.

    need() what is wanted, fetch() once (registers the rows on the connection), close().
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, d: date, start: date):
        self.con, self.d, self.start = con, d, start
        self.persons: set[str] = set()
        self.ids: set[str] = set()
        self.name: str | None = None
        self._registered = False

    def need(self, persons: Iterable[str | None] = (), ids: Iterable[str | None] = ()) -> None:
        if self.name is not None:
            raise RuntimeError("transfers already fetched")
        self.persons.update(p for p in persons if p)
        self.ids.update(str(i) for i in ids if i is not None)

    def fetch(self) -> str:
        if self.name is None:
            text, used = _with_keys("""
                SELECT * FROM transfers
                WHERE business_date BETWEEN $start AND $day
                  AND (sharer_psn_no IN (SELECT k0 FROM {keys})
                       OR beneficiary_psn_no IN (SELECT k0 FROM {keys})
                       OR (business_date = $day AND transfer_id IN (SELECT unnest($ids::VARCHAR[]))))""",
                                    {"start": self.start, "day": self.d, "ids": sorted(self.ids)},
                                    [(p,) for p in sorted(self.persons)], (pl.String,))
            try:
                with warnings.catch_warnings():   # a small result: its extra copy is nothing
                    warnings.simplefilter("ignore", UserWarning)
                    # execute(), not sql(): it also ends a caller's unfinished result
                    table = self.con.execute(text, used).to_arrow_table()
            except duckdb.CatalogException:
                self.name = "transfers"      # no such table: every query about it finds none
                return self.name
            self.name = f"__audit_transfers_{id(self):x}"
            self.con.register(self.name, table)
            self._registered = True
        return self.name

    def window(self) -> list[tuple]:
        """SUCCESS rows (sharer, beneficiary, transfer_id, amount, transfer_time, side), every side."""
        try:
            return self.con.execute(f"""
                SELECT sharer_psn_no, beneficiary_psn_no, transfer_id, amount, transfer_time, side
                FROM {self.fetch()} WHERE status = 'SUCCESS'""").fetchall()
        except duckdb.CatalogException:
            return []

    def close(self) -> None:
        if self._registered:
            self.con.unregister(self.name)
            self._registered = False
