"""The quota ledger of rules.md §6: lots, FIFO consumption, refunds, dissolutions, S18, S20.

A beneficiary's wallet is a set of lots. The events of D are applied per wallet in
the order (time, rank, id), rank IN transfer 1, NORMAL 2, REFUND 3, DISSOLVE 4.

Two engines, one result:

* **Fast path (set-based, DuckDB).** A wallet is *simple* when it has no REFUND
  and no effective DISSOLVE on D and, taking its candidate NORMAL settlements
  (those not pre-held by S07/S14-S17/F06) in event order, the running demand
  never exceeds the quota that has arrived by then (opening lots + SUCCESS IN
  lots with transfer_time <= setl_time; IN ranks before NORMAL). Then the
  sequential greedy rule accepts every candidate, lots only ever drain from the
  front in lot order, and FIFO consumption is the overlap of each settlement's
  cumulative demand interval with the lots' cumulative quota intervals: one
  window + one join, no loop.
* **Sequential engine (Python, integer fen).** Every other wallet (refunds,
  dissolutions, S18 overspends) is replayed event by event. `run(..., mode=
  "reference")` sends *every* wallet through it; tests prove both modes equal.

Writes D's rows of lots (closing state: every open lot holding quota, and every lot
that emptied on D, or was refilled on D and ended at 0), consumptions, refund_returns, settlement_outcomes,
dissolution_returns (dissolutions, and refund quota passed to the sharer because
its lot was closed: spec-readings item 12; event_id = the refund's setl_id), and
records S18 and S20. Rows of dates after D are never read, so a re-run of an
earlier date sees only its past.

Emptied lots are not carried forward (a day's cost must not grow with history): an
open lot at 0 is *dormant* from the date it emptied. It still belongs to its wallet
(rules.md §6: a refund to it refills it; a dissolution of its sharer closes it, with
a dissolution_returns row of 0.00), but only a refund or a dissolution can touch it,
so the sequential engine fetches the dormant lots of just those wallets (`_dormant`):
each lot's latest row in emptied_lots (a copy of every lots row at 0, written by the
date it emptied on) before D, unless the lot is open with quota on D-1 or was closed
since. Consumption, S18 and every total skip a lot at 0, so the result is the
one of a wallet that carries its emptied lots.

rules.md §6, and its readings in docs/spec-readings.md:
* a refund is matched only to a NORMAL settlement of the same psn_no (the wallet
  the quota came from); another person's settlement is S20 and held;
* the DISSOLVEs applied are the effective ones of relation_events (judged by
  transforms/rules_relationships.py: valid or not, naming the relationship's
  persons); a dissolution closes every lot whose sharer is the dissolving
  sharer, whatever relation_id the transfer named; every closed lot is written
  to dissolution_returns, an amount of 0.00 included, so that a later refund
  can name its sharer.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import duckdb
import pyarrow as pa

from contracts.resources import release_cached_blocks
from transforms.context import RunContext
from transforms.findings import record

HOLD_RULES = ("S07", "S14", "S15", "S16", "S17", "F06")
OUTPUT_TABLES = ("lots", "consumptions", "refund_returns", "settlement_outcomes",
                 "dissolution_returns", "emptied_lots")

# Lot order: genesis lots by sharer_psn_no, then by (transfer_time, transfer_id).
_LOT_ORDER = ("CASE WHEN genesis THEN 0 ELSE 1 END, CASE WHEN genesis THEN sharer_psn_no END, "
              "transfer_time, transfer_id, lot_id")


def _fmt(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


# --------------------------------------------------------------------------- inputs

def opening_lots_sql(ctx: RunContext) -> str:
    """SELECT of the wallet lots at 00:00 of D (w = beneficiary_psn_no, lot columns).

    Genesis: one lot per QUOTA balances row with opening_balance > 0; else the
    closing lots of D-1 that hold quota (the others are dormant, see `_dormant`). A
    lot at 0 that D-1 did not record in emptied_lots (written before emptied lots
    were, when every emptied lot was carried) is opened as before: D records it.
    """
    if ctx.genesis:
        return """
            SELECT psn_no AS w, 'G:' || psn_no || ':' || sharer_psn_no AS lot_id,
                   file_province AS beneficiary_province, sharer_psn_no,
                   sharer_province AS payer_province, TRUE AS genesis,
                   NULL::TIMESTAMP AS transfer_time, NULL::VARCHAR AS transfer_id,
                   opening_balance AS original_amount, opening_balance AS remaining
            FROM d_balances
            WHERE account = 'QUOTA' AND opening_balance > 0 AND sharer_psn_no IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY psn_no, sharer_psn_no
                                       ORDER BY file_province, source_file, source_row) = 1"""
    prev = (ctx.business_date - timedelta(days=1)).isoformat()
    return f"""
        SELECT beneficiary_psn_no AS w, lot_id, beneficiary_province, sharer_psn_no,
               payer_province, genesis, transfer_time, transfer_id, original_amount, remaining
        FROM lots l WHERE business_date = DATE '{prev}'
          AND (remaining > 0 OR NOT EXISTS (
                   SELECT 1 FROM emptied_lots e
                   WHERE e.business_date = DATE '{prev}' AND e.lot_id = l.lot_id
                     AND e.beneficiary_psn_no = l.beneficiary_psn_no))"""


_LOT_COLUMNS = ("w, lot_id, beneficiary_province, sharer_psn_no, payer_province, genesis, "
                "transfer_time, transfer_id, original_amount, remaining")


def _dormant(con: duckdb.DuckDBPyConnection, ctx: RunContext, consumed: list[str], since: str) -> None:
    """lg_dormant: the emptied, still open lots of the slow wallets that a refund or a
    dissolution touches on D (the lot columns of lg_open).

    A lot's latest row in emptied_lots before D is the date it (last) emptied; it
    is dormant unless it is open in D-1's closing lots (refilled since) or a
    dissolution closed it since. Only the lots D can touch are read: the lots
    `consumed` by the originals of D's refunds (a refund gives back to nothing else),
    from the first date `since` of those originals on, and the lots of the wallets
    a sharer dissolves from on D. A consumed lot held quota when its original was
    settled, so if it is dormant now it emptied on or after that date: an older
    emptied row of it is never its latest."""
    d = ctx.d
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_touch AS
        SELECT w FROM lg_slow
        WHERE w IN (SELECT w FROM lg_setl WHERE status = 'REFUND' UNION SELECT w FROM lg_diss)""")
    cols = ("beneficiary_psn_no AS w, lot_id, beneficiary_province, sharer_psn_no, payer_province, "
            "genesis, transfer_time, transfer_id, original_amount, remaining, business_date AS emptied_on")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_dormant AS
        WITH e AS (
            SELECT {cols} FROM emptied_lots
            WHERE business_date >= DATE '{since}' AND business_date < DATE '{d}'
              AND lot_id IN (SELECT unnest(?::VARCHAR[]))
              AND beneficiary_psn_no IN (SELECT w FROM lg_touch)
            UNION
            SELECT {cols} FROM emptied_lots
            WHERE business_date < DATE '{d}'
              AND beneficiary_psn_no IN (SELECT w FROM lg_diss WHERE w IN (SELECT w FROM lg_touch))),
        z AS (
            SELECT * FROM e
            QUALIFY row_number() OVER (PARTITION BY w, lot_id ORDER BY emptied_on DESC) = 1)
        SELECT {_LOT_COLUMNS} FROM z
        WHERE NOT EXISTS (SELECT 1 FROM lg_open o WHERE o.w = z.w AND o.lot_id = z.lot_id)
          AND NOT EXISTS (SELECT 1 FROM dissolution_returns r
                          WHERE r.business_date >= z.emptied_on AND r.business_date < DATE '{d}'
                            AND r.beneficiary_psn_no = z.w AND r.lot_id = z.lot_id)
          AND (z.lot_id IN (SELECT unnest(?::VARCHAR[]))
               OR EXISTS (SELECT 1 FROM lg_diss x
                          WHERE x.w = z.w AND x.sharer_psn_no = z.sharer_psn_no))""", [consumed, consumed])


def _prepare(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """TEMP tables of the ledger's inputs for D (amounts kept as DECIMAL(18,2))."""
    d = ctx.d
    # x * 100 of a DECIMAL(18,2) overflows DECIMAL(18) from 1e14 yuan: widen first.
    con.execute("CREATE OR REPLACE TEMP MACRO lg_fen(x) AS CAST(CAST(x AS DECIMAL(38,2)) * 100 AS BIGINT)")
    con.execute("CREATE OR REPLACE TEMP MACRO lg_yuan(f) AS "
                "CAST(CAST(f AS DECIMAL(18,0)) * 0.01 AS DECIMAL(18,2))")
    opening = opening_lots_sql(ctx)
    con.execute(f"CREATE OR REPLACE TEMP TABLE lg_open AS {opening}")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_new AS
        SELECT beneficiary_psn_no AS w, transfer_id AS lot_id, beneficiary_province, sharer_psn_no,
               sharer_province AS payer_province, FALSE AS genesis, transfer_time, transfer_id,
               amount AS original_amount, amount AS remaining
        FROM d_transfers WHERE side = 'IN' AND status = 'SUCCESS'""")
    rules = ", ".join(f"'{r}'" for r in HOLD_RULES)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_hold AS   -- by the record: setl_id is unique within a file only
        SELECT DISTINCT source_file, source_row
        FROM d_findings WHERE dataset = 'settlements' AND rule_code IN ({rules})""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_setl AS
        SELECT row_number() OVER () AS rk,   -- internal row key of this run only
               s.psn_no AS w, s.setl_id, s.status, s.orig_setl_id, s.expense_type,
               s.file_province AS province, s.wallet_pay, s.setl_time,
               s.source_file, s.source_row,
               h.source_row IS NOT NULL AND s.status = 'NORMAL' AS held_pre
        FROM d_settlements s
        LEFT JOIN lg_hold h ON h.source_file = s.source_file AND h.source_row = s.source_row""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_diss AS
        SELECT beneficiary_psn_no AS w, event_id, sharer_psn_no, event_time
        FROM relation_events
        WHERE business_date = DATE '{d}' AND event_type = 'DISSOLVE' AND valid""")


def _slow_wallets(con: duckdb.DuckDBPyConnection, mode: str) -> None:
    """lg_slow(w): the wallets the sequential engine replays."""
    if mode == "reference":
        con.execute("""
            CREATE OR REPLACE TEMP TABLE lg_slow AS
            SELECT DISTINCT w FROM (SELECT w FROM lg_open UNION ALL SELECT w FROM lg_new
                                    UNION ALL SELECT w FROM lg_setl UNION ALL SELECT w FROM lg_diss)""")
        return
    if mode != "hybrid":
        raise ValueError(f"unknown ledger mode {mode!r}")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_slow AS
        WITH cand_w AS (SELECT DISTINCT w FROM lg_setl WHERE status = 'NORMAL' AND NOT held_pre),
        open_tot AS (SELECT w, sum(remaining) AS tot FROM lg_open WHERE w IN (SELECT w FROM cand_w)
                     GROUP BY w),
        ev AS (
            SELECT w, transfer_time AS t, 1 AS r, lot_id AS id, remaining AS lot_amt,
                   0::DECIMAL(18,2) AS dem
            FROM lg_new WHERE w IN (SELECT w FROM cand_w)
            UNION ALL
            SELECT w, setl_time, 2, setl_id, 0::DECIMAL(18,2), wallet_pay
            FROM lg_setl WHERE status = 'NORMAL' AND NOT held_pre),
        c AS (
            SELECT w, r, sum(lot_amt) OVER win AS cl, sum(dem) OVER win AS cd FROM ev
            WINDOW win AS (PARTITION BY w ORDER BY t, r, id ROWS UNBOUNDED PRECEDING))
        SELECT w FROM c LEFT JOIN open_tot o USING (w)
        WHERE c.r = 2 AND c.cd > coalesce(o.tot, 0) + c.cl
        UNION
        SELECT w FROM lg_setl WHERE status = 'REFUND'
        UNION
        SELECT w FROM lg_diss""")


# --------------------------------------------------------------------------- fast path

def _fast(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    d = ctx.d
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_lots AS
        SELECT *, row_number() OVER win AS lot_ord, sum(remaining) OVER win AS hi
        FROM (SELECT * FROM lg_open UNION ALL SELECT * FROM lg_new)
        WHERE w NOT IN (SELECT w FROM lg_slow)
        WINDOW win AS (PARTITION BY w ORDER BY {_LOT_ORDER} ROWS UNBOUNDED PRECEDING)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_fcons AS
        WITH s AS (
            SELECT w, setl_id, province, wallet_pay,
                   sum(wallet_pay) OVER (PARTITION BY w ORDER BY setl_time, setl_id, province
                                         ROWS UNBOUNDED PRECEDING) AS shi
            FROM lg_setl
            WHERE status = 'NORMAL' AND NOT held_pre AND w NOT IN (SELECT w FROM lg_slow)),
        o AS (
            SELECT s.w, s.setl_id, s.province, l.lot_ord, l.lot_id, l.payer_province,
                   least(s.shi, l.hi) - greatest(s.shi - s.wallet_pay, l.hi - l.remaining) AS amount
            FROM s JOIN lg_lots l ON l.w = s.w
             AND l.hi > s.shi - s.wallet_pay AND l.hi - l.remaining < s.shi)
        SELECT *, row_number() OVER (PARTITION BY w, setl_id, province ORDER BY lot_ord) AS seq
        FROM o WHERE amount > 0""")
    con.execute(f"""
        INSERT INTO consumptions
        SELECT DATE '{d}', setl_id, lot_id, seq, amount, payer_province, province FROM lg_fcons""")
    con.execute(f"""
        INSERT INTO lots
        SELECT DATE '{d}', l.lot_id, l.w, l.beneficiary_province, l.sharer_psn_no,
               l.payer_province, l.genesis, l.transfer_time, l.transfer_id, l.original_amount,
               CAST(l.remaining - coalesce(c.used, 0) AS DECIMAL(18,2))
        FROM lg_lots l LEFT JOIN (SELECT w, lot_ord, sum(amount) AS used FROM lg_fcons
                                  GROUP BY w, lot_ord) c USING (w, lot_ord)""")
    con.execute(f"""
        INSERT INTO settlement_outcomes
        SELECT DATE '{d}', setl_id, w, province, status, expense_type, orig_setl_id, wallet_pay,
               CASE WHEN held_pre THEN 'HELD' ELSE 'SETTLED' END
        FROM lg_setl WHERE w NOT IN (SELECT w FROM lg_slow)""")


# --------------------------------------------------------------------------- sequential engine

@dataclass
class Lot:
    lot_id: str
    beneficiary_province: str
    sharer_psn_no: str
    payer_province: str
    genesis: bool
    transfer_time: object
    transfer_id: str | None
    original: int   # fen
    remaining: int  # fen
    dormant: bool = False  # emptied before D and untouched on D: no row is written for it


@dataclass
class Original:
    """A NORMAL settlement that a refund may reverse: (business_date, province, setl_id)."""
    psn_no: str
    settled: bool
    wallet_pay: int
    consumed: list  # [(lot_id, amount fen, payer_province)] in seq order
    refunded: int = 0
    province: str = ""
    business_date: object = None  # None: settled on D


@dataclass
class Result:
    lots: list = field(default_factory=list)          # (w, Lot)
    consumptions: list = field(default_factory=list)  # (setl_id, lot_id, seq, fen, payer, province)
    refund_returns: list = field(default_factory=list)  # (setl_id, orig, lot_id, fen, payer, to_sharer,
    #                                                     orig_date or None for D, orig_province)
    outcomes: list = field(default_factory=list)      # (rk, outcome)
    returns: list = field(default_factory=list)       # (event_id, lot_id, w, sharer, fen)
    findings: list = field(default_factory=list)      # (rk, rule, detail)


@dataclass
class _Wallet:
    """One beneficiary's wallet while D's events replay: its lots in FIFO order and what refunds need."""
    psn_no: str
    lots: list[Lot]
    open_ids: dict[str, Lot]
    closed_sharer: dict[str, str] = field(default_factory=dict)
    today: dict[str, Original] = field(default_factory=dict)


def replay(wallets: dict, priors: dict, sharer_of: dict, owners: dict | None = None) -> Result:
    """Apply each wallet's events in (time, rank, id) order; amounts in integer fen.

    wallets: w -> (opening lots [Lot] in lot order, events [(time, rank, id, payload)])
      rank 1 payload Lot; rank 2 (rk, wallet_pay, held_pre, province); rank 3 (rk, wallet_pay,
      orig); rank 4 sharer_psn_no (id = event_id).
    priors: (w, orig setl_id) -> the Original settled before D that a refund of wallet w
      naming orig setl_id reverses (mutated: refunded grows).
    sharer_of: lot_id -> sharer_psn_no for lots closed before D.
    owners: (w, orig setl_id) -> another person whose NORMAL settlement of D carries that
      setl_id, when w has none (only the S20 detail names them).
    """
    out = Result()
    for w in sorted(wallets):
        opening, events = wallets[w]
        lots: list[Lot] = list(opening)
        wallet = _Wallet(w, lots, {lot.lot_id: lot for lot in lots})
        for t, rank, ident, payload in sorted(events, key=lambda e: (e[0], e[1], e[2])):
            if rank == 1:
                wallet.lots.append(payload)
                wallet.open_ids[payload.lot_id] = payload
            elif rank == 2:
                _settle(wallet, t, ident, payload, out)
            elif rank == 3:
                _refund(wallet, ident, payload, priors, sharer_of, out, owners or {})
            else:
                _dissolve(wallet, ident, payload, out)
        out.lots.extend((w, lot) for lot in wallet.lots if not lot.dormant)
    return out


def _settle(wallet: _Wallet, t, ident: str, payload: tuple, out: Result) -> None:
    """A NORMAL settlement: held if pre-held or beyond the remaining quota (S18), else consumed FIFO."""
    rk, pay, held_pre, province = payload
    w = wallet.psn_no
    if held_pre:
        out.outcomes.append((rk, "HELD"))
        wallet.today.setdefault(ident, Original(w, False, pay, [], province=province))
        return
    total = sum(lot.remaining for lot in wallet.lots)
    if pay > total:
        out.outcomes.append((rk, "HELD"))
        out.findings.append((rk, "S18", (
            f"wallet_pay {_fmt(pay)} exceeds the remaining quota {_fmt(total)} "
            f"of the wallet of {w} at {t.isoformat(sep=' ')}")))
        wallet.today.setdefault(ident, Original(w, False, pay, [], province=province))
        return
    used = _consume_fifo(wallet.lots, ident, province, pay, out)
    out.outcomes.append((rk, "SETTLED"))
    wallet.today[ident] = Original(w, True, pay, used, province=province)


def _consume_fifo(lots: list[Lot], ident: str, province: str, pay: int, out: Result) -> list:
    """A settlement's consumption of the lots in FIFO order, as [(lot_id, fen, payer_province)]."""
    need, seq, used = pay, 0, []
    for lot in lots:
        if need == 0:
            break
        take = min(need, lot.remaining)
        if take > 0:
            seq += 1
            lot.remaining -= take
            need -= take
            out.consumptions.append((ident, lot.lot_id, seq, take, lot.payer_province, province))
            used.append((lot.lot_id, take, lot.payer_province))
    return used


def _refund(wallet: _Wallet, ident: str, payload: tuple, priors: dict, sharer_of: dict,
            out: Result, owners: dict) -> None:
    """A REFUND: held with S20 when its original cannot take it back, else given back to its lots."""
    rk, pay, orig_id = payload
    orig = wallet.today.get(orig_id) if orig_id is not None else None
    if orig is None and orig_id is not None:
        orig = priors.get((wallet.psn_no, orig_id))
    reason = _s20_reason(wallet.psn_no, pay, orig_id, orig, owners.get((wallet.psn_no, orig_id)))
    if reason is not None:
        out.outcomes.append((rk, "HELD"))
        out.findings.append((rk, "S20", f"refund of {_fmt(pay)}: {reason}"))
        return
    _give_back(wallet, ident, orig_id, orig, pay, sharer_of, out)
    orig.refunded += pay
    out.outcomes.append((rk, "REFUNDED"))


def _s20_reason(w: str, pay: int, orig_id: str | None, orig: Original | None,
                owner: str | None = None) -> str | None:
    """Why a refund cannot be matched to its original (S20); None when it can."""
    if orig_id is None:
        return "names no orig_setl_id"
    if orig is None and owner is not None:   # another person's settlement of D
        return f"orig_setl_id {orig_id} belongs to {owner}, not to {w}"
    if orig is None:
        return f"orig_setl_id {orig_id} is not a settlement settled before it"
    if orig.psn_no != w:
        return f"orig_setl_id {orig_id} belongs to {orig.psn_no}, not to {w}"
    if not orig.settled:
        return f"orig_setl_id {orig_id} was held, not settled"
    if orig.refunded >= orig.wallet_pay:
        return (f"orig_setl_id {orig_id} ({_fmt(orig.wallet_pay)}) "
                f"is already fully refunded")
    if pay > orig.wallet_pay - orig.refunded:
        return (f"wallet_pay {_fmt(pay)} exceeds the {_fmt(orig.wallet_pay - orig.refunded)} "
                f"still unrefunded of orig_setl_id {orig_id} ({_fmt(orig.wallet_pay)})")
    return None


def _give_back(wallet: _Wallet, ident: str, orig_id: str, orig: Original, pay: int,
               sharer_of: dict, out: Result) -> None:
    """A refund's quota back to its original's lots: refills an open lot, else goes to its sharer (reading 12)."""
    # Give back from the tail of the original's consumption, skipping
    # what earlier refunds already gave back.
    w = wallet.psn_no
    skip, give = orig.refunded, pay
    for lot_id, amount, payer in reversed(orig.consumed):
        if give == 0:
            break
        avail = amount - min(skip, amount)
        skip -= amount - avail
        take = min(avail, give)
        if take <= 0:
            continue
        give -= take
        lot = wallet.open_ids.get(lot_id)
        of = (orig.business_date, orig.province)
        if lot is not None:
            lot.remaining += take
            lot.dormant = False
            out.refund_returns.append((ident, orig_id, lot_id, take, payer, False, *of))
        else:
            sharer = wallet.closed_sharer.get(lot_id) or sharer_of.get(lot_id) or _genesis_sharer(lot_id)
            out.refund_returns.append((ident, orig_id, lot_id, take, payer, True, *of))
            out.returns.append((ident, lot_id, w, sharer, take))


def _dissolve(wallet: _Wallet, ident: str, sharer: str, out: Result) -> None:
    """A dissolution: every lot of the sharer closes, its remaining quota returned to the sharer."""
    keep = []
    for lot in wallet.lots:
        if lot.sharer_psn_no == sharer:
            out.returns.append((ident, lot.lot_id, wallet.psn_no, sharer, lot.remaining))
            wallet.closed_sharer[lot.lot_id] = sharer
            wallet.open_ids.pop(lot.lot_id, None)
        else:
            keep.append(lot)
    wallet.lots = keep


def _genesis_sharer(lot_id: str) -> str:
    parts = lot_id.split(":")
    return parts[2] if len(parts) == 3 and parts[0] == "G" else ""


def _originals(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> str:
    """lg_prior: for every (wallet w, orig_setl_id) of D's refunds (of the slow wallets),
    the NORMAL settlement before D it reverses; returns the first date any of them was
    delivered on (D when there is none), from which the refund path reads.

    rules.md §6: "REFUND: valid only if orig_setl_id is a settled NORMAL settlement
    (of D or an earlier date) of the same psn_no and wallet_pay does not exceed what
    is still unrefunded of it". setl_id is unique within a file only (inbox.md), so
    several settlements may carry it: the one of the same psn_no is taken (the
    latest date, then the refund's own province), else another person's, which the
    engine then refuses (S20). The day's refunds are taken first (lg_refd, a few
    rows), and only the key columns of settlement_outcomes are scanned over the
    earlier dates; the whole rows are then read on the originals' dates only."""
    d = ctx.d
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lg_refd AS
        SELECT DISTINCT w, orig_setl_id AS setl_id, province AS refund_province FROM lg_setl
        WHERE status = 'REFUND' AND orig_setl_id IS NOT NULL AND w IN (SELECT w FROM lg_slow)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_pkey AS
        SELECT DISTINCT setl_id, business_date
        FROM settlement_outcomes
        WHERE business_date < DATE '{d}' AND status = 'NORMAL'
          AND setl_id IN (SELECT setl_id FROM lg_refd)""")
    on_dates = _date_list(con.execute("SELECT DISTINCT business_date FROM lg_pkey").fetchall())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lg_prior AS
        SELECT r.w, s.setl_id, s.psn_no, s.outcome, s.business_date, s.province,
               lg_fen(s.wallet_pay) AS pay
        FROM settlement_outcomes s JOIN lg_pkey k USING (setl_id, business_date)
        JOIN lg_refd r ON r.setl_id = s.setl_id
        WHERE s.business_date IN ({on_dates}) AND s.status = 'NORMAL'
        QUALIFY row_number() OVER (
            PARTITION BY r.w, r.setl_id
            ORDER BY s.psn_no = r.w DESC, s.business_date DESC, s.province = r.refund_province DESC,
                     s.province, s.psn_no, s.outcome) = 1""")
    first = con.execute("SELECT min(business_date) FROM lg_prior").fetchone()[0]
    return (first or ctx.business_date).isoformat()


def _slow(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    d = ctx.d
    wallets: dict = defaultdict(lambda: ([], []))
    lot_cols = ("w, lot_id, beneficiary_province, sharer_psn_no, payer_province, genesis, "
                "transfer_time, transfer_id, lg_fen(original_amount), lg_fen(remaining)")

    def lot_of(r, dormant: bool = False) -> Lot:
        return Lot(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], dormant)

    for r in con.execute(f"SELECT {lot_cols} FROM lg_new "
                         f"WHERE w IN (SELECT w FROM lg_slow)").fetchall():
        wallets[r[0]][1].append((r[6], 1, r[1], lot_of(r)))
    for w, rk, setl_id, status, orig, t, pay, held, province in con.execute("""
            SELECT w, rk, setl_id, status, orig_setl_id, setl_time, lg_fen(wallet_pay), held_pre,
                   province
            FROM lg_setl WHERE w IN (SELECT w FROM lg_slow)""").fetchall():
        if status == "NORMAL":
            wallets[w][1].append((t, 2, setl_id, (rk, pay, held, province)))
        else:
            wallets[w][1].append((t, 3, setl_id, (rk, pay, orig)))
    for w, event_id, sharer, t in con.execute(
            "SELECT w, event_id, sharer_psn_no, event_time FROM lg_diss "
            "WHERE w IN (SELECT w FROM lg_slow)").fetchall():
        wallets[w][1].append((t, 4, event_id, sharer))

    since = _originals(con, ctx)
    priors, originals = _priors(con, d, since)
    # The engine asks for the sharer of a consumed lot only when the lot is not in the
    # wallet (open, dormant or new): a dissolution closed it before D (after its
    # original consumed from it, so from `since` on), and wrote it to
    # dissolution_returns (a compact table: one row per closed lot) with its sharer.
    consumed = sorted({lot_id for o in originals.values() for lot_id, _amount, _payer in o.consumed})
    sharer_of = dict(con.execute(f"""
        SELECT lot_id, min(sharer_psn_no) FROM dissolution_returns
        WHERE business_date >= DATE '{since}' AND business_date < DATE '{d}'
          AND lot_id IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY lot_id""", [consumed]).fetchall())
    # Those reads touched blocks of every earlier date (one at least per table and date),
    # and so do the dormant lots': let each read's blocks go before the next one.
    release_cached_blocks(con)
    _dormant(con, ctx, consumed, since)
    release_cached_blocks(con)
    for r in con.execute(f"""
            SELECT {lot_cols}, dormant FROM (
                SELECT *, FALSE AS dormant FROM lg_open WHERE w IN (SELECT w FROM lg_slow)
                UNION ALL
                SELECT *, TRUE FROM lg_dormant)
            ORDER BY w, {_LOT_ORDER}""").fetchall():
        wallets[r[0]][0].append(lot_of(r, r[10]))
    res = replay(dict(wallets), priors, sharer_of, _owners_today(con))
    _write(con, ctx, res)


def _owners_today(con: duckdb.DuckDBPyConnection) -> dict:
    """(w, orig setl_id) -> the person whose NORMAL settlement of D carries the setl_id a
    refund of wallet w names, when w has no NORMAL settlement of D of that id (S20's
    detail then says whose it is)."""
    return {(w, setl_id): owner for w, setl_id, owner in con.execute("""
        SELECT r.w, r.setl_id, min(s.w)
        FROM lg_refd r JOIN lg_setl s ON s.setl_id = r.setl_id AND s.status = 'NORMAL' AND s.w <> r.w
        WHERE NOT EXISTS (SELECT 1 FROM lg_setl x
                          WHERE x.w = r.w AND x.setl_id = r.setl_id AND x.status = 'NORMAL')
        GROUP BY ALL""").fetchall()}


def _priors(con: duckdb.DuckDBPyConnection, d: str, since: str) -> tuple[dict, dict]:
    """The originals of lg_prior with what they consumed and what was refunded of them
    before D: ((w, orig setl_id) -> Original, (date, province, setl_id) -> Original).
    Two refunds naming one settlement share its Original."""
    originals: dict[tuple, Original] = {}
    priors: dict[tuple, Original] = {}
    for w, setl_id, psn, outcome, bd, province, pay in con.execute(
            "SELECT w, setl_id, psn_no, outcome, business_date, province, pay FROM lg_prior").fetchall():
        key = (bd, province, setl_id)
        if key not in originals:
            originals[key] = Original(psn, outcome == "SETTLED", pay, [], province=province,
                                      business_date=bd)
        priors[(w, setl_id)] = originals[key]
    # The dates the originals were settled on: only those dates are read below (the
    # tables are pruned on business_date).
    on_dates = _date_list(con.execute("SELECT DISTINCT business_date FROM lg_prior").fetchall())
    for bd, province, setl_id, lot_id, amount, payer in con.execute(f"""
            SELECT c.business_date, c.province, c.setl_id, c.lot_id, lg_fen(c.amount), c.payer_province
            FROM consumptions c
            JOIN (SELECT DISTINCT business_date, province, setl_id FROM lg_prior) p
              ON p.setl_id = c.setl_id AND p.business_date = c.business_date AND p.province = c.province
            WHERE c.business_date IN ({on_dates})
            ORDER BY c.business_date, c.province, c.setl_id, c.seq""").fetchall():
        originals[(bd, province, setl_id)].consumed.append((lot_id, amount, payer))
    # A refund of an original is on or after the original's date: from `since` on.
    for bd, province, orig, fen in con.execute(f"""
            SELECT r.orig_business_date, r.orig_province, r.orig_setl_id, lg_fen(sum(r.amount))
            FROM refund_returns r
            JOIN (SELECT DISTINCT business_date, province, setl_id FROM lg_prior) p
              ON p.setl_id = r.orig_setl_id AND p.business_date = r.orig_business_date
             AND p.province = r.orig_province
            WHERE r.business_date >= DATE '{since}' AND r.business_date < DATE '{d}'
            GROUP BY ALL""").fetchall():
        originals[(bd, province, orig)].refunded = fen
    return priors, originals


def _date_list(rows: list[tuple]) -> str:
    """An SQL list of DATE literals (NULL when empty: `IN (NULL)` matches nothing)."""
    return ", ".join(f"DATE '{r[0].isoformat()}'" for r in rows) or "NULL"


def _register(con, name: str, columns: dict) -> None:
    con.register(name, pa.table(columns))


def _write(con: duckdb.DuckDBPyConnection, ctx: RunContext, res: Result) -> None:
    d = ctx.d
    lots = res.lots
    _register(con, "lg_py_lots", {
        "w": pa.array([w for w, _ in lots], pa.string()),
        "lot_id": pa.array([l.lot_id for _, l in lots], pa.string()),
        "bp": pa.array([l.beneficiary_province for _, l in lots], pa.string()),
        "sharer": pa.array([l.sharer_psn_no for _, l in lots], pa.string()),
        "payer": pa.array([l.payer_province for _, l in lots], pa.string()),
        "genesis": pa.array([l.genesis for _, l in lots], pa.bool_()),
        "tt": pa.array([l.transfer_time for _, l in lots], pa.timestamp("us")),
        "tid": pa.array([l.transfer_id for _, l in lots], pa.string()),
        "orig": pa.array([l.original for _, l in lots], pa.int64()),
        "rem": pa.array([l.remaining for _, l in lots], pa.int64()),
    })
    con.execute(f"INSERT INTO lots SELECT DATE '{d}', lot_id, w, bp, sharer, payer, genesis, tt, "
                "tid, lg_yuan(orig), lg_yuan(rem) FROM lg_py_lots")
    c = res.consumptions
    _register(con, "lg_py_cons", {
        "setl_id": pa.array([r[0] for r in c], pa.string()),
        "lot_id": pa.array([r[1] for r in c], pa.string()),
        "seq": pa.array([r[2] for r in c], pa.int32()),
        "fen": pa.array([r[3] for r in c], pa.int64()),
        "payer": pa.array([r[4] for r in c], pa.string()),
        "province": pa.array([r[5] for r in c], pa.string()),
    })
    con.execute(f"INSERT INTO consumptions SELECT DATE '{d}', setl_id, lot_id, seq, lg_yuan(fen), "
                "payer, province FROM lg_py_cons")
    rr = res.refund_returns
    _register(con, "lg_py_rr", {
        "setl_id": pa.array([r[0] for r in rr], pa.string()),
        "orig": pa.array([r[1] for r in rr], pa.string()),
        "lot_id": pa.array([r[2] for r in rr], pa.string()),
        "fen": pa.array([r[3] for r in rr], pa.int64()),
        "payer": pa.array([r[4] for r in rr], pa.string()),
        "to_sharer": pa.array([r[5] for r in rr], pa.bool_()),
        "orig_date": pa.array([r[6] or ctx.business_date for r in rr], pa.date32()),
        "orig_province": pa.array([r[7] for r in rr], pa.string()),
    })
    con.execute(f"INSERT INTO refund_returns SELECT DATE '{d}', setl_id, orig, lot_id, lg_yuan(fen), "
                "payer, to_sharer, orig_date, orig_province FROM lg_py_rr")
    dr = res.returns
    _register(con, "lg_py_dr", {
        "event_id": pa.array([r[0] for r in dr], pa.string()),
        "lot_id": pa.array([r[1] for r in dr], pa.string()),
        "w": pa.array([r[2] for r in dr], pa.string()),
        "sharer": pa.array([r[3] for r in dr], pa.string()),
        "fen": pa.array([r[4] for r in dr], pa.int64()),
    })
    con.execute(f"INSERT INTO dissolution_returns SELECT DATE '{d}', event_id, lot_id, w, sharer, "
                "lg_yuan(fen) FROM lg_py_dr")
    _register(con, "lg_py_out", {
        "rk": pa.array([r[0] for r in res.outcomes], pa.int64()),
        "outcome": pa.array([r[1] for r in res.outcomes], pa.string()),
    })
    con.execute(f"""
        INSERT INTO settlement_outcomes
        SELECT DATE '{d}', s.setl_id, s.w, s.province, s.status, s.expense_type, s.orig_setl_id,
               s.wallet_pay, o.outcome
        FROM lg_py_out o JOIN lg_setl s USING (rk)""")
    _register(con, "lg_py_find", {
        "rk": pa.array([r[0] for r in res.findings], pa.int64()),
        "rule": pa.array([r[1] for r in res.findings], pa.string()),
        "detail": pa.array([r[2] for r in res.findings], pa.string()),
    })
    con.execute("CREATE OR REPLACE TEMP TABLE lg_find AS SELECT * FROM lg_py_find")
    for name in ("lg_py_lots", "lg_py_cons", "lg_py_rr", "lg_py_dr", "lg_py_out", "lg_py_find"):
        con.unregister(name)


def s18_quota_overspend(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S18 QUOTA_OVERSPEND: "wallet_pay exceeds the remaining quota when applied".

    Found by the ledger replay (lg_find); recorded here.
    """
    _record_ledger_finding(con, "S18")


def s20_refund_unmatched(con: duckdb.DuckDBPyConnection, ctx: RunContext) -> None:
    """S20 REFUND_UNMATCHED: "refund of an unknown, held or already fully refunded
    settlement, or for more than remains".

    Found by the ledger replay (lg_find); recorded here.
    """
    _record_ledger_finding(con, "S20")


def _record_ledger_finding(con: duckdb.DuckDBPyConnection, rule: str) -> None:
    record(con, rule, """
        SELECT l.province AS province, 'settlements' AS dataset, l.setl_id AS record_id,
               NULL::VARCHAR AS sharer_psn_no, l.w AS beneficiary_psn_no,
               l.wallet_pay AS amount, f.detail AS detail,
               l.source_file AS source_file, l.source_row AS source_row
        FROM lg_find f JOIN lg_setl l USING (rk)
        WHERE f.rule = $rule""", {"rule": rule})


# --------------------------------------------------------------------------- entry point

def run(con: duckdb.DuckDBPyConnection, ctx: RunContext, mode: str = "hybrid") -> None:
    """Replace D's ledger rows. mode 'hybrid' (fast path + sequential engine for the
    wallets that need it) or 'reference' (sequential engine for every wallet)."""
    for t in OUTPUT_TABLES:
        con.execute(f"DELETE FROM {t} WHERE business_date = DATE '{ctx.d}'")
    _prepare(con, ctx)
    _slow_wallets(con, mode)
    _fast(con, ctx)
    _slow(con, ctx)
    con.execute(f"INSERT INTO emptied_lots SELECT * FROM lots "
                f"WHERE business_date = DATE '{ctx.d}' AND remaining = 0")
    s18_quota_overspend(con, ctx)
    s20_refund_unmatched(con, ctx)
    for t in ("lg_open", "lg_new", "lg_hold", "lg_lots", "lg_fcons", "lg_prior", "lg_slow", "lg_diss",
              "lg_setl", "lg_find", "lg_touch", "lg_dormant", "lg_refd", "lg_pkey"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
