"""The quota ledger of rules.md §6, as the generator needs it.

State: a frame of lots (one per genesis row or SUCCESS IN transfer) with the
remaining quota. Lot order within a wallet: genesis lots by sharer_psn_no
(gen=0, skey = the psn_no's sort key), then by (transfer_time, transfer_id).

Bulk wallets (no refund, no dissolution that day) are computed set-based: all
of the day's IN transfers precede all of its settlements (06:00-12:00 vs
12:00-20:00) and the generator never lets a bulk wallet overspend, so the day's
consumption is a prefix of the wallet's ordered remaining quota; each
settlement's share of each lot is an interval overlap.

Wallets with refunds or dissolutions, and every planted wallet, are replayed
event by event (`simulate`), with S18 / S20 decided by the replay.
"""
from __future__ import annotations

from collections import defaultdict

import polars as pl

LOT_SCHEMA = {"lot_id": pl.Int64, "ben": pl.Int64, "sharer": pl.Int64, "gen": pl.Int8,
              "skey": pl.Int64, "t": pl.Int64, "tid": pl.String, "amount": pl.Int64,
              "rem": pl.Int64, "closed": pl.Boolean}
LOT_ORDER = ["ben", "gen", "skey", "t", "tid"]
CONS_SCHEMA = {"setl_id": pl.String, "lot_id": pl.Int64, "k": pl.Int64, "amt": pl.Int64,
               "returned": pl.Int64}
SETTLED_SCHEMA = {"setl_id": pl.String, "ben": pl.Int64, "w": pl.Int64, "refunded": pl.Int64,
                  "day": pl.Int64, "expense": pl.String, "fixmedins": pl.String,
                  "total": pl.Int64, "burden": pl.Int64}


def empty(schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def fifo_bulk(lots: pl.DataFrame, setl: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Consume the settlements (setl_id, ben, sec, w) of bulk wallets from their lots.

    Returns (consumption records, new rem per lot_id for the touched lots)."""
    if setl.height == 0:
        return empty(CONS_SCHEMA), pl.DataFrame(schema={"lot_id": pl.Int64, "rem": pl.Int64})
    L = (lots.filter(pl.col("ben").is_in(setl["ben"].unique().implode()) & (pl.col("rem") > 0))
         .sort(LOT_ORDER)
         .with_columns(l_end=pl.col("rem").cum_sum().over("ben"))
         .with_columns(l_start=pl.col("l_end") - pl.col("rem"))
         .with_columns(l_rank=pl.int_range(pl.len()).over("ben"))
         .select("ben", "lot_id", "rem", "l_start", "l_end", "l_rank"))
    S = (setl.sort(["ben", "sec", "setl_id"])
         .with_columns(s_end=pl.col("w").cum_sum().over("ben"))
         .with_columns(s_start=pl.col("s_end") - pl.col("w"))
         .select("ben", "setl_id", "s_start", "s_end"))
    J = (S.join(L, on="ben", how="inner")
         .with_columns(amt=pl.min_horizontal("l_end", "s_end") - pl.max_horizontal("l_start", "s_start"))
         .filter(pl.col("amt") > 0))
    short = S.join(J.group_by("setl_id").agg(got=pl.col("amt").sum()), on="setl_id", how="left")
    bad = short.filter(pl.col("got").fill_null(0) != pl.col("s_end") - pl.col("s_start"))
    if bad.height:
        raise AssertionError(f"bulk wallet overspent: {bad.head(3)}")
    cons = (J.sort(["setl_id", "l_rank"])
            .with_columns(k=pl.int_range(pl.len()).over("setl_id").cast(pl.Int64), returned=pl.lit(0, pl.Int64))
            .select(list(CONS_SCHEMA)))
    used = J.group_by("lot_id").agg(used=pl.col("amt").sum())
    newrem = (L.join(used, on="lot_id", how="inner")
              .select("lot_id", rem=pl.col("rem") - pl.col("used")))
    return cons, newrem


def simulate(lots: list[dict], events: list[tuple], origins: dict) -> dict:
    """Replay one day of some wallets exactly as §6 says.

    lots: every lot of these wallets (dicts of LOT_SCHEMA); lots with `pending`
    set are created by the IN event with the same tid. events: tuples
    (ben, sec, rank, id, kind, payload) with kind IN / NORMAL / REFUND / DISSOLVE;
    payload: NORMAL {w, held}; REFUND {w, orig}; DISSOLVE {sharer}.
    origins: setl_id -> {w, refunded, cons: [[lot_id, amt, returned], ...]} of
    settled NORMAL settlements of earlier dates that today's refunds name;
    updated in place and extended with today's settled settlements.
    """
    by_ben = defaultdict(list)
    by_id = {}
    for lot in lots:
        by_ben[lot["ben"]].append(lot)
        by_id[lot["lot_id"]] = lot
    for b in by_ben:
        by_ben[b].sort(key=lambda x: (x["gen"], x["skey"], x["t"], x["tid"] or ""))
    pending = {(lot["ben"], lot["tid"]): lot for lot in lots if lot.get("pending")}
    for lot in pending.values():
        lot["live"] = False
    for lot in lots:
        lot.setdefault("live", True)

    out = {"S18": [], "S20": [], "settled": [], "refund_ok": [], "to_sharer": 0,
           "dissolved": 0, "consumed": 0, "refunded": 0}
    for ev in sorted(events, key=lambda e: (e[0], e[1], e[2], e[3])):
        ben, sec, rank, eid, kind, pay = ev
        wallet = by_ben.get(ben, [])
        if kind == "IN":
            pending[(ben, eid)]["live"] = True
        elif kind == "NORMAL":
            if pay["held"]:
                continue
            avail = sum(l["rem"] for l in wallet if l["live"] and not l["closed"])
            if pay["w"] > avail:
                out["S18"].append(eid)
                continue
            left, cons = pay["w"], []
            for l in wallet:
                if left == 0:
                    break
                if not l["live"] or l["closed"] or l["rem"] == 0:
                    continue
                take = min(l["rem"], left)
                l["rem"] -= take
                left -= take
                cons.append([l["lot_id"], take, 0])
            origins[eid] = {"w": pay["w"], "refunded": 0, "cons": cons, "new": True}
            out["settled"].append(eid)
            out["consumed"] += pay["w"]
        elif kind == "REFUND":
            o = origins.get(pay["orig"])
            if o is None or pay["w"] > o["w"] - o["refunded"]:
                out["S20"].append(eid)
                continue
            left = pay["w"]
            for c in reversed(o["cons"]):
                if left == 0:
                    break
                give = min(c[1] - c[2], left)
                if give <= 0:
                    continue
                c[2] += give
                left -= give
                lot = by_id[c[0]]
                if lot["closed"]:
                    out["to_sharer"] += give
                else:
                    lot["rem"] += give
            o["refunded"] += pay["w"]
            o["touched"] = True
            out["refund_ok"].append(eid)
            out["refunded"] += pay["w"]
        elif kind == "DISSOLVE":
            for l in wallet:
                if l["sharer"] == pay["sharer"] and l["live"] and not l["closed"]:
                    out["dissolved"] += l["rem"]
                    l["rem"] = 0
                    l["closed"] = True
    for lot in lots:
        lot.pop("live", None)
        lot.pop("pending", None)
    return out
