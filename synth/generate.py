"""`recon generate`: a realistic synthetic inbox for all 31 provinces.

    generate(out, start, days, persons, seed, violation_rate=0.01) -> stats

Writes <out>/reference/{regions,institutions}.csv, <out>/<D>/<PP>/manifest.json
plus the five data files, and <out>/planted_truth.csv (business_date,
rule_code, province, record_id): every finding the rules of rules.md must
produce on this inbox, consequences included. Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from contracts.certno import CHECK_CHARS, WEIGHTS
from contracts.codes import DATASETS, PROVINCES
from contracts.policy import policy_for
from synth import ledger as L
from synth.perturb import perturb_day
from synth.plants import DAY, Engine, Plants, plan_day
from synth.population import (GIVEN, N_REGIONS, SHARER_ONLY, SURNAMES, build_population,
                              build_reference)
from synth.rng import Rng
from synth.writer import (COLUMNS, STYLES, AppendingInbox, csv_bytes, manifest, parquet_bytes,
                          sha256, to_arrow, to_text)

PREMIUM = {"RESIDENT_PREMIUM": 40_000, "LTC_PREMIUM": 12_000}
# The funded share a steady nation opens with: near the share the default nation
# settles at (measured with benchmarks/history.py's row counts; see docs/performance.md).
STEADY_SHARE = 1.0
# The daily share of active relationships a steady nation dissolves: it offsets the
# late establishments and the refunding of emptied pairs, so the funded pairs (and
# the persons and balances delivered a day) stay flat.
STEADY_DISSOLVE = 0.008
# The daily share of settlements refunded, today's and earlier ones alike. The default
# nation draws the earlier refunds from every unrefunded settlement so far, a pool
# that grows by a day's settlements every day (its refunds grow 13x over 60 days); a
# steady nation draws as many earlier refunds a day as the default does on day 1
# (REFUND_RATE of a day's settlements), spread over the whole pool.
REFUND_RATE = 0.01
MEDICAL = ("OUTPATIENT", "PHARMACY", "INPATIENT", "RESIDENT_PREMIUM", "LTC_PREMIUM")
MEDICAL_W = (42, 36, 10, 8, 4)

T_SCHEMA = {"transfer_id": pl.String, "side": pl.String, "relation_id": pl.String,
            "sharer": pl.Int64, "ben": pl.Int64, "amount": pl.Int64, "status": pl.String,
            "sec": pl.Int64}
R_SCHEMA = {"event_id": pl.String, "relation_id": pl.String, "event_type": pl.String,
            "sharer": pl.Int64, "ben": pl.Int64, "code": pl.String, "signed": pl.Boolean,
            "channel": pl.String, "sec": pl.Int64}
S_SCHEMA = {"setl_id": pl.String, "psn": pl.Int64, "status": pl.String, "orig": pl.String,
            "expense": pl.String, "fixmedins": pl.String, "total": pl.Int64, "burden": pl.Int64,
            "wallet": pl.Int64, "sec": pl.Int64}


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


# ============================================================================ persons
# psn_no of chunk c of a chunked nation: c * PSN_CHUNK above chunk 0's (below the digits of
# the region, so at most MAX_CHUNKS chunks of at most PSN_CHUNK / 7 persons per province).
PSN_CHUNK = 10**9
MAX_CHUNKS = 899


def number_persons(rng: Rng, people: pl.DataFrame, chunk: int = 0) -> pl.DataFrame:
    """psn_no (20 digits, province first), certno (GB 11643), a Chinese name."""
    n = people.height
    u = rng.uniform(n, "psn:perm")
    people = people.with_columns(u=u).with_columns(
        seq=pl.col("u").rank("ordinal").over("prov").cast(pl.Int64))
    rest = (people["admdvs"] % 10000) * 10**12 + 100_000_000_000 + chunk * PSN_CHUNK + people["seq"] * 7
    seq3 = rng.integers(n, 0, 499, "psn:seq3") * 2
    people = people.with_columns(
        psn_key=pl.col("prov").cast(pl.Int64) * 10**16 + rest,
        psn_no=pl.col("prov") + pl.lit("00") + rest.cast(pl.String).str.zfill(16),
        first17=pl.col("admdvs").cast(pl.String) + pl.col("birth").cast(pl.String)
        + (seq3 + pl.col("male").cast(pl.Int64)).cast(pl.String).str.zfill(3),
    )
    wsum = sum(pl.col("first17").str.slice(i, 1).cast(pl.Int64) * w for i, w in enumerate(WEIGHTS))
    people = people.with_columns(
        certno=pl.col("first17")
        + (wsum % 11).replace_strict({i: c for i, c in enumerate(CHECK_CHARS)}, return_dtype=pl.String))
    # twins in certno (S04 plant): copy the certno of another person
    if people["certno_of"].is_not_null().any():
        src = people["certno"]
        people = people.with_columns(
            certno=pl.when(pl.col("certno_of").is_not_null())
            .then(src.gather(people["certno_of"].fill_null(0)))
            .otherwise(pl.col("certno")))
    s_i = (rng.uniform(n, "name:s") * len(SURNAMES)).floor().cast(pl.Int64)
    g1 = (rng.uniform(n, "name:g1") * len(GIVEN)).floor().cast(pl.Int64)
    g2 = (rng.uniform(n, "name:g2") * (len(GIVEN) + 8)).floor().cast(pl.Int64)
    gv = pl.Series(GIVEN + [""] * 8)
    people = people.with_columns(
        psn_name=pl.Series(SURNAMES).gather(s_i) + pl.Series(GIVEN).gather(g1) + gv.gather(g2))
    return people.drop("u", "first17").sort("idx")


# ============================================================================ main
class _Chunk:
    """One chunk of a chunked nation: its index, the tag its record ids carry, the
    reference data every chunk shares and the inbox it appends to."""

    def __init__(self, index: int, ref, sink: AppendingInbox):
        self.index, self.ref, self.sink = index, ref, sink
        self.tag = f"{index:03d}"


class _TaggedPlants(Plants):
    """Plants whose record ids carry the chunk's tag, so that ids never collide across chunks."""

    def __init__(self, tag: str, *args):
        super().__init__(*args)
        self.tag = tag

    def _id(self, kind: str, d: int) -> str:
        return super()._id(kind + self.tag, d)

    def new_rid(self) -> str:
        return "RP" + self.tag + super().new_rid()[2:]


def generate(out: Path, start: date, days: int, persons: int, seed: int,
             violation_rate: float = 0.01, perturb: float = 0.0, steady: float | None = None,
             chunk_persons: int | None = None) -> dict:
    """Write the inbox; with `perturb` > 0 every written day is then perturbed near the
    rule boundaries (synth/perturb.py) and no planted_truth.csv is written, since the
    findings of a perturbed inbox are not known in advance.

    `steady` (opt-in, for the history benchmark; None keeps the default nation byte for
    byte): a nation whose daily volume is flat. The default nation starts with few
    funded pairs and fills up (persons and balances delivered per day grow ~60 % over
    60 days); a steady one starts with the share `steady` of its established pairs
    funded (build_population) and dissolves about as many relationships a day as it
    establishes.

    `chunk_persons` (opt-in, for nations too large to hold; None keeps the default
    nation byte for byte): the nation is generated as independent chunks of at most
    that many persons, each with its own seed, its own planted violations and record
    ids tagged with the chunk's number, appended chunk after chunk to the same files
    (see _generate_chunked). Memory is bounded by the chunk, not the nation."""
    if chunk_persons:
        return _generate_chunked(Path(out), start, days, persons, seed, violation_rate, steady,
                                 chunk_persons, perturb)
    return _nation(Path(out), start, days, persons, Rng(seed), violation_rate, perturb, steady)


def _generate_chunked(out: Path, start: date, days: int, persons: int, seed: int,
                      violation_rate: float, steady: float | None, chunk_persons: int,
                      perturb: float) -> dict:
    """Chunks of persons, one after the other, appended to the same inbox.

    A chunk is a small nation of its own (its families, sharing and settlements stay
    inside it), so every chunk's records reference only persons that chunk delivers, and
    the union is a valid inbox: psn_no of chunk c lie c * PSN_CHUNK above chunk 0's, and
    every other record id carries the chunk's three-digit tag. The reference data is
    built once, for the whole nation. File-level plants (F02, F03) go to chunk 0 only;
    the manifests are written when the last chunk is in."""
    if perturb > 0:
        raise ValueError("a chunked nation cannot be perturbed")
    n_chunks = -(-persons // chunk_persons)
    if n_chunks > MAX_CHUNKS:
        raise ValueError(f"at most {MAX_CHUNKS} chunks: raise chunk_persons")
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    ref = build_reference(Rng(seed), start, days, persons)
    _write_reference(out, ref)
    sink = AppendingInbox()
    truth: set = set()
    rows: dict = defaultdict(int)
    done = 0
    for c in range(n_chunks):
        k = min(chunk_persons, persons - c * chunk_persons)
        st = _nation(out, start, days, k, Rng(Rng(seed).sub_seed(f"chunk:{c}")), violation_rate,
                     0.0, steady, _Chunk(c, ref, sink))
        truth |= set(st["truth"])
        for name, v in st["rows"].items():
            rows[name] += v
        done += st["persons"]
    sink.close()
    truth_rows = sorted(truth)
    with open(out / "planted_truth.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["business_date", "rule_code", "province", "record_id"])
        w.writerows(truth_rows)
    planted = defaultdict(int)
    for t in truth_rows:
        planted[t[1]] += 1
    return {"out": str(out), "persons": done, "days": days, "rows": dict(rows), "chunks": n_chunks,
            "planted": dict(sorted(planted.items())), "seconds": round(time.time() - t0, 1)}


def _nation(out: Path, start: date, days: int, persons: int, rng: Rng, violation_rate: float,
            perturb: float, steady: float | None, chunk: _Chunk | None = None) -> dict:
    """The nation (or, with `chunk`, one chunk of it): simulate day after day and write."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    tag = chunk.tag if chunk else ""
    planting = violation_rate > 0
    reps = max(1, round(violation_rate * persons / 200)) if planting else 0
    f01_days = {d for d in (1, 3) if planting and d < days}
    near_fn = lambda D: policy_for(D).near_relatives  # noqa: E731

    ref = chunk.ref if chunk else build_reference(rng, start, days, persons)
    P = _TaggedPlants(tag, 0, start, days, rng.py("plants"), near_fn) if chunk else \
        Plants(0, start, days, rng.py("plants"), near_fn)
    for d in range(days):
        for rep in range(reps):
            plan_day(P, d, rep)
    m = len(P.persons)
    n_bulk = max(0, persons - m)
    pop = build_population(rng, n_bulk, start, days, near_fn(start), f01_days, steady)
    dissolve_rate = 0.004 if steady is None else STEADY_DISSOLVE
    bulk = pop.persons.with_columns(pl.col("idx") + m, ghost=pl.lit(False),
                                    certno_of=pl.lit(None, pl.Int64))
    pairs = pop.pairs.with_columns(pl.col("sharer") + m, pl.col("ben") + m,
                                   dissolved_day=pl.lit(None, pl.Int64))
    if chunk:
        pairs = pairs.with_columns(relation_id=pl.lit("RL" + tag) + pl.col("relation_id").str.slice(2))
    plant_people = pl.DataFrame(
        [(p.idx, p.prov, int(p.prov) * 10000 + 100, p.birth, p.male, p.insutype, p.personal,
          p.ghost, p.certno_of) for p in P.persons],
        schema={"idx": pl.Int64, "prov": pl.String, "admdvs": pl.Int64, "birth": pl.Int64,
                "male": pl.Boolean, "insutype": pl.String, "personal": pl.Int64,
                "ghost": pl.Boolean, "certno_of": pl.Int64}, orient="row")
    people = pl.concat([plant_people, bulk.select(plant_people.columns)])
    people = number_persons(rng, people, chunk.index if chunk else 0)
    PSN = people["psn_no"]
    PROV = people["prov"]
    GHOST = people["ghost"]
    personal = people["personal"].clone()

    info = {}
    for p in P.persons:
        row = people.row(p.idx, named=True)
        info[p.idx] = {"prov": p.prov, "insutype": p.insutype, "birth": p.birth, "male": p.male,
                       "certno": row["certno"], "ghost": p.ghost, "status": p.status_on}
    inst_map = {r["fixmedins_code"]: (r["fixmedins_type"], r["designated_from"], r["designated_to"])
                for r in ref.institutions.iter_rows(named=True)}
    engine = Engine(P, info, start, policy_for, inst_map)

    if not chunk:
        _write_reference(out, ref)
    truth: list[tuple] = []
    rows_written = defaultdict(int)

    lots = L.empty(L.LOT_SCHEMA)
    settled = L.empty(L.SETTLED_SCHEMA)
    cons = L.empty(L.CONS_SCHEMA)
    next_lot = 0
    prev_closing = pl.DataFrame(schema={"ben": pl.Int64, "sharer": pl.Int64, "opening": pl.Int64})
    invariants = []
    known54: set = set()
    perturbed: dict[str, int] = defaultdict(int)

    for d in range(days):
        D = start + timedelta(days=d)
        ds, dstr, base_t = D.isoformat(), tag + D.strftime("%Y%m%d"), d * DAY
        f01 = d in f01_days
        pfx = f"d{d}:"

        pairs, rel_b, dis = _bulk_relationship_events(rng, pfx, pairs, d, dstr, dissolve_rate, f01)
        t_b = _bulk_transfers(rng, pfx, pairs, d, dstr, f01, personal)

        # ---------------------------------------------------------- plants of the day
        plant_t = _frame(P.trf[d], T_SCHEMA)
        plant_r = _frame(P.rel[d], R_SCHEMA | {"sec": pl.Int64})
        plant_s = _frame(P.setl[d], S_SCHEMA)

        # ---------------------------------------------------------- lots created today
        if d == 0:
            lots, opening = _genesis_lots(pairs, P.genesis, people, next_lot)
            next_lot += lots.height
        else:
            opening = prev_closing
        ins = pl.concat([t_b, plant_t]).filter((pl.col("side") == "IN") & (pl.col("status") == "SUCCESS"))
        new_lots = _lots_of_in_transfers(ins, next_lot, base_t)
        next_lot += new_lots.height
        held_at_start = set(lots.filter((pl.col("ben") < m) & (pl.col("rem") > 0) & ~pl.col("closed"))["ben"].to_list())
        lots = pl.concat([lots, new_lots])

        # ---------------------------------------------------------- settlements (bulk)
        s_b, r_b = _bulk_settlements(rng, pfx, lots, people, ref, m, settled, d, dstr,
                                     steady is not None)

        # ---------------------------------------------------------- plant engine
        sharers_today = set(plant_t.filter(pl.col("side") == "OUT")["sharer"].to_list()) | set(plant_r["sharer"].to_list())
        pers_open = {s: int(personal[s]) for s in sharers_today}
        res = engine.day(d, held_at_start, pers_open)
        truth.extend(res["findings"])

        # ---------------------------------------------------------- ledger
        special = set(r_b["psn"].to_list()) | set(dis["ben"].to_list())
        plant_bens = set(plant_s["psn"].to_list()) | set(ins.filter(pl.col("ben") < m)["ben"].to_list()) \
            | {x[0] for x in res["dissolves"]}
        sim_bens = special | plant_bens
        sim_list = pl.Series(sorted(sim_bens), dtype=pl.Int64).implode()
        lots, c_new, bulk_s = _settle_bulk(lots, s_b, sim_list)
        cons = pl.concat([cons, c_new])
        settled = pl.concat([settled, _settled_rows(bulk_s, d)])

        lot_dicts = lots.filter(pl.col("ben").is_in(sim_list)).to_dicts()
        all_s = pl.concat([s_b.filter(pl.col("psn").is_in(sim_list)), r_b, plant_s])
        events = _ledger_events(lot_dicts, all_s, dis, res, base_t)
        origin_ids = [x for x in all_s.filter(pl.col("status") == "REFUND")["orig"].to_list() if x]
        origins = _origins(settled, cons, origin_ids)
        sim = L.simulate(lot_dicts, events, origins)
        prov_of = {st["setl_id"]: PROV[st["psn"]] for st in all_s.iter_rows(named=True)}
        bulk_ids = set(s_b["setl_id"].to_list()) | set(r_b["setl_id"].to_list())
        for code in ("S18", "S20"):
            for sid in sim[code]:
                if sid in bulk_ids:
                    raise AssertionError(f"bulk settlement {sid} would get {code}")
                truth.append((ds, code, prov_of[sid], sid))
        if sim_bens:
            lots = pl.concat([lots.filter(~pl.col("ben").is_in(sim_list)),
                              _frame(lot_dicts, L.LOT_SCHEMA)])
        settled, cons = _apply_sim(settled, cons, origins, all_s, d)

        # ---------------------------------------------------------- balances
        closing, bal = _quota_balances(lots, opening)
        invariants.append(_quota_invariant(d, bal, ins, c_new, sim))
        prev_closing = closing.filter(pl.col("closing") != 0).rename({"closing": "opening"})
        bal = bal.sort(["ben", "sharer"])
        if planting:
            bal, bt = _plant_balances(rng, pfx, bal, d, m, reps, PSN, PROV, ds, f01_days)
            truth.extend(bt)
        t_all = pl.concat([t_b, plant_t])
        r_all = pl.concat([rel_b, plant_r])
        s_all = pl.concat([s_b, r_b, plant_s])
        pers = _personal_balances(t_all, r_all, personal)
        personal = personal.scatter(pers["sharer"], pers["closing"])
        b_rows = pl.concat([
            bal.select(psn="ben", account=pl.lit("QUOTA"), sharer="sharer", opening="opening", closing="closing"),
            pers.select(psn="sharer", account=pl.lit("PERSONAL"), sharer=pl.lit(None, pl.Int64),
                        opening="opening", closing="closing")])

        # ---------------------------------------------------------- persons of the day
        p_rows = _persons_of_day(P, m, d, GHOST, t_all, r_all, s_all, b_rows)
        of54 = set(p_rows.filter(PROV.gather(p_rows["psn"]) == "54")["psn"].to_list())
        if f01:
            assert of54 <= known54, "a person of the missing province is not known from earlier dates"
        else:
            known54 |= of54

        # ---------------------------------------------------------- write
        frames = {
            "persons": p_rows, "relationships": r_all, "transfers": t_all, "settlements": s_all,
            "balances": b_rows,
        }
        wt = _write_day(out, D, rng, pfx, frames, people, ref, f01, d, reps, planting, rows_written, chunk)
        truth.extend(wt)
        if perturb > 0:
            for kind, k in perturb_day(out, D, perturb, Rng(rng.sub_seed(pfx + "perturb"))).items():
                perturbed[kind] += k

    if chunk:
        return {"persons": people.height, "rows": dict(rows_written), "truth": truth}
    truth = sorted(set(truth))
    planted = defaultdict(int)
    if perturb > 0:
        truth = []
    else:
        with open(out / "planted_truth.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["business_date", "rule_code", "province", "record_id"])
            w.writerows(truth)
    for t in truth:
        planted[t[1]] += 1
    stats = {"out": str(out), "persons": people.height, "days": days, "rows": dict(rows_written),
             "planted": dict(sorted(planted.items())), "quota_invariants": invariants,
             "seconds": round(time.time() - t0, 1)}
    if perturb > 0:
        stats["perturbed"] = dict(sorted(perturbed.items()))
    return stats



# ============================================================================ one day, step by step
def _bulk_relationship_events(rng: Rng, pfx: str, pairs: pl.DataFrame, d: int, dstr: str,
                              dissolve_rate: float, f01: bool):
    """The bulk ESTABLISH and DISSOLVE events of day d: (pairs with today's dissolutions
    marked, the events, the dissolved pairs)."""
    est = pairs.filter(pl.col("est_day") == d)
    est = est.with_columns(sec=rng.integers(est.height, 300, 21_599, pfx + "est:sec"),
                           event_type=pl.lit("ESTABLISH"))
    cand = pairs.filter((pl.col("est_day") >= 0) & (pl.col("est_day") < d)
                        & pl.col("dissolved_day").is_null())
    cand = cand.with_columns(u=rng.uniform(cand.height, pfx + "dis:u"))
    dis = cand.filter((pl.col("u") < dissolve_rate) & ~(pl.lit(f01) & pl.col("sprov").is_in(SHARER_ONLY)))
    dis = dis.drop("u").with_columns(sec=rng.integers(dis.height, 79_200, 86_399, pfx + "dis:sec"),
                                     event_type=pl.lit("DISSOLVE"))
    if dis.height:
        pairs = pairs.with_columns(dissolved_day=pl.when(pl.col("pair").is_in(dis["pair"].implode()))
                                   .then(d).otherwise(pl.col("dissolved_day")))
    rel_b = (pl.concat([est.select(dis.columns), dis]) if dis.height else est.select(dis.columns))
    rel_b = rel_b.sort(["sec", "pair"]).with_row_index("n").with_columns(
        event_id=pl.lit("EV" + dstr) + (pl.col("n") + 1).cast(pl.String).str.zfill(8),
        signed=pl.lit(True)).select(
        "event_id", "relation_id", "event_type", "sharer", "ben", "code", "signed", "channel", "sec")
    return pairs, rel_b, dis


def _bulk_transfers(rng: Rng, pfx: str, pairs: pl.DataFrame, d: int, dstr: str, f01: bool,
                    personal: pl.Series) -> pl.DataFrame:
    """The bulk transfers of day d, both sides, by the active pairs; a sharer whose
    PERSONAL balance does not cover the day's SUCCESS amounts transfers nothing."""
    act = pairs.filter((pl.col("est_day") >= 0) & (pl.col("est_day") <= d)
                       & (pl.col("dissolved_day").is_null() | (pl.col("dissolved_day") == d)))
    if f01:
        act = act.filter(~pl.col("sprov").is_in(SHARER_ONLY))
    na = act.height
    act = act.with_columns(u=rng.uniform(na, pfx + "tr:u"), ua=rng.uniform(na, pfx + "tr:ua"),
                           h=rng.integers(na, 1, 20, pfx + "tr:h") * 10_000,
                           f=rng.integers(na, 1_000, 200_000, pfx + "tr:f"),
                           us=rng.uniform(na, pfx + "tr:us"),
                           sec=rng.integers(na, 21_601, 43_199, pfx + "tr:sec"))
    tr = act.filter(pl.col("u") < pl.when(pl.col("est_day") == d).then(0.3).otherwise(0.08)).with_columns(
        amount=pl.when(pl.col("ua") < 0.05).then(200_000).when(pl.col("ua") < 0.6).then(pl.col("h"))
        .otherwise(pl.col("f")).cast(pl.Int64),
        status=pl.when(pl.col("us") < 0.02).then(pl.lit("FAILED")).otherwise(pl.lit("SUCCESS")))
    need = tr.filter(pl.col("status") == "SUCCESS").group_by("sharer").agg(need=pl.col("amount").sum())
    need = need.with_columns(have=personal.gather(need["sharer"]))
    if need.height:
        short = need.filter(pl.col("need") > pl.col("have"))["sharer"]
        tr = tr.filter(~pl.col("sharer").is_in(short.implode()))
    tr = tr.sort(["sec", "pair"]).with_row_index("n").with_columns(
        transfer_id=pl.lit("TR" + dstr) + (pl.col("n") + 1).cast(pl.String).str.zfill(8))
    cols = [c for c in T_SCHEMA if c != "side"] + ["side"]
    return pl.concat([tr.with_columns(side=pl.lit("OUT")).select(cols),
                      tr.with_columns(side=pl.lit("IN")).select(cols)]).select(list(T_SCHEMA))


def _genesis_lots(pairs: pl.DataFrame, genesis: list, people: pl.DataFrame, next_lot: int):
    """Day 0's wallets: one lot per funded (beneficiary, sharer) pair, and the opening
    QUOTA balances they make."""
    gen_rows = pairs.filter(pl.col("gen_amt") > 0).select("ben", "sharer", amount="gen_amt")
    if genesis:
        gen_rows = pl.concat([gen_rows, pl.DataFrame(
            genesis, schema={"ben": pl.Int64, "sharer": pl.Int64, "amount": pl.Int64}, orient="row")])
    gen_rows = gen_rows.with_columns(skey=people["psn_key"].gather(gen_rows["sharer"]))
    lots = gen_rows.with_row_index("i").select(
        lot_id=pl.col("i").cast(pl.Int64) + next_lot, ben="ben", sharer="sharer",
        gen=pl.lit(0, pl.Int8), skey="skey", t=pl.lit(0, pl.Int64), tid=pl.lit(""),
        amount="amount", rem="amount", closed=pl.lit(False))
    opening = gen_rows.group_by(["ben", "sharer"]).agg(opening=pl.col("amount").sum())
    return lots, opening


def _lots_of_in_transfers(ins: pl.DataFrame, next_lot: int, base_t: int) -> pl.DataFrame:
    """One new lot per SUCCESS IN transfer of the day."""
    return ins.with_row_index("i").select(
        lot_id=pl.col("i").cast(pl.Int64) + next_lot, ben="ben", sharer="sharer", gen=pl.lit(1, pl.Int8),
        skey=pl.lit(0, pl.Int64), t=pl.col("sec") + base_t, tid="transfer_id", amount="amount",
        rem="amount", closed=pl.lit(False))


def _settle_bulk(lots: pl.DataFrame, s_b: pl.DataFrame, sim_list: pl.Series):
    """The bulk settlements of the wallets nothing special happens to, FIFO in one pass:
    (lots with their new remainders, the consumptions, the settlements settled)."""
    bulk_s = s_b.filter(~pl.col("psn").is_in(sim_list))
    c_new, newrem = L.fifo_bulk(lots.filter(~pl.col("ben").is_in(sim_list)),
                                bulk_s.select("setl_id", ben="psn", sec="sec", w="wallet"))
    if newrem.height:
        lots = lots.join(newrem.rename({"rem": "nrem"}), on="lot_id", how="left").with_columns(
            rem=pl.coalesce("nrem", "rem")).drop("nrem")
    return lots, c_new, bulk_s


def _ledger_events(lot_dicts: list[dict], all_s: pl.DataFrame, dis: pl.DataFrame, res: dict,
                   base_t: int) -> list[tuple]:
    """The day's events of the simulated wallets, for synth.ledger.simulate: IN transfers
    (lots created today, marked pending), NORMAL settlements, refunds, dissolutions,
    with the ranks of rules.md §6."""
    for lot in lot_dicts:
        lot["pending"] = lot["gen"] == 1 and lot["t"] >= base_t
    events = [(lot["ben"], lot["t"] - base_t, 1, lot["tid"], "IN", None) for lot in lot_dicts if lot["pending"]]
    for st in all_s.iter_rows(named=True):
        if st["status"] == "NORMAL":
            events.append((st["psn"], st["sec"], 2, st["setl_id"], "NORMAL",
                           {"w": st["wallet"], "held": st["setl_id"] in res["held"]}))
        else:
            events.append((st["psn"], st["sec"], 3, st["setl_id"], "REFUND",
                           {"w": st["wallet"], "orig": st["orig"]}))
    for row in dis.iter_rows(named=True):
        events.append((row["ben"], row["sec"], 4, "", "DISSOLVE", {"sharer": row["sharer"]}))
    for (b, s, sec, eid) in res["dissolves"]:
        events.append((b, sec, 4, eid, "DISSOLVE", {"sharer": s}))
    return events


def _quota_balances(lots: pl.DataFrame, opening: pl.DataFrame):
    """The closing quota of every pair, and the QUOTA balance rows (opening or closing not zero)."""
    closing = (lots.filter(~pl.col("closed")).group_by(["ben", "sharer"])
               .agg(closing=pl.col("rem").sum()))
    bal = (opening.join(closing, on=["ben", "sharer"], how="full", coalesce=True)
           .with_columns(pl.col("opening").fill_null(0), pl.col("closing").fill_null(0))
           .filter((pl.col("opening") != 0) | (pl.col("closing") != 0)))
    return closing, bal


def _personal_balances(t_all: pl.DataFrame, r_all: pl.DataFrame, personal: pl.Series) -> pl.DataFrame:
    """PERSONAL rows: every sharer of an OUT transfer or a relationship event of the day."""
    sh = pl.concat([t_all.filter(pl.col("side") == "OUT")["sharer"], r_all["sharer"]]).unique().sort()
    out_sum = (t_all.filter((pl.col("side") == "OUT") & (pl.col("status") == "SUCCESS"))
               .group_by("sharer").agg(o=pl.col("amount").sum()))
    return (pl.DataFrame({"sharer": sh, "opening": personal.gather(sh)}).join(out_sum, on="sharer", how="left")
            .sort("sharer").with_columns(o=pl.col("o").fill_null(0))
            .with_columns(closing=(pl.col("opening") - pl.col("o")).clip(0, None)))


def _persons_of_day(P: Plants, m: int, d: int, ghost: pl.Series, t_all: pl.DataFrame,
                    r_all: pl.DataFrame, s_all: pl.DataFrame, b_rows: pl.DataFrame) -> pl.DataFrame:
    """Every person a record of the day names (ghosts excepted), with their status on d."""
    refs = pl.concat([t_all["sharer"], t_all["ben"], r_all["sharer"], r_all["ben"], s_all["psn"],
                      b_rows["psn"], b_rows["sharer"].drop_nulls()]).unique().sort()
    refs = refs.filter(~ghost.gather(refs))
    status = pl.Series([P.by_idx(i).status_on(d) if i < m else "ACTIVE" for i in refs.filter(refs < m).to_list()],
                       dtype=pl.String)
    return pl.DataFrame({"psn": refs}).with_columns(
        insu_status=pl.concat([status, pl.Series(["ACTIVE"] * int((refs >= m).sum()), dtype=pl.String)]))


# ============================================================================ helpers
def _write_reference(out: Path, ref) -> None:
    (out / "reference").mkdir(parents=True, exist_ok=True)
    ref.regions.write_csv(out / "reference" / "regions.csv")
    ref.institutions.select("fixmedins_code", "fixmedins_type", "admdvs", "designated_from",
                            "designated_to", "fixmedins_name").write_csv(out / "reference" / "institutions.csv")


def _settled_rows(s: pl.DataFrame, d: int) -> pl.DataFrame:
    return s.select(setl_id="setl_id", ben="psn", w="wallet", refunded=pl.lit(0, pl.Int64),
                    day=pl.lit(d, pl.Int64), expense="expense", fixmedins="fixmedins",
                    total="total", burden="burden")


def _origins(settled: pl.DataFrame, cons: pl.DataFrame, ids: list[str]) -> dict:
    if not ids:
        return {}
    lst = pl.Series(ids).implode()
    o = {r["setl_id"]: {"w": r["w"], "refunded": r["refunded"], "cons": []}
         for r in settled.filter(pl.col("setl_id").is_in(lst)).iter_rows(named=True)}
    for r in cons.filter(pl.col("setl_id").is_in(lst)).sort(["setl_id", "k"]).iter_rows(named=True):
        o[r["setl_id"]]["cons"].append([r["lot_id"], r["amt"], r["returned"]])
    return o


def _apply_sim(settled, cons, origins, all_s, d):
    new_ids = [k for k, v in origins.items() if v.get("new")]
    old = {k: v for k, v in origins.items() if not v.get("new") and v.get("touched")}
    if new_ids:
        attrs = all_s.filter(pl.col("setl_id").is_in(pl.Series(new_ids).implode()))
        rows = _settled_rows(attrs, d).with_columns(
            refunded=pl.col("setl_id").replace_strict({k: origins[k]["refunded"] for k in new_ids}, return_dtype=pl.Int64))
        settled = pl.concat([settled, rows])
        crow = [(k, c[0], i, c[1], c[2]) for k in new_ids for i, c in enumerate(origins[k]["cons"])]
        if crow:
            cons = pl.concat([cons, pl.DataFrame(crow, schema=L.CONS_SCHEMA, orient="row")])
    if old:
        upd = pl.DataFrame([(k, v["refunded"]) for k, v in old.items()],
                           schema={"setl_id": pl.String, "nref": pl.Int64}, orient="row")
        settled = settled.join(upd, on="setl_id", how="left").with_columns(
            refunded=pl.coalesce("nref", "refunded")).drop("nref")
        cu = pl.DataFrame([(k, i, c[2]) for k, v in old.items() for i, c in enumerate(v["cons"])],
                          schema={"setl_id": pl.String, "k": pl.Int64, "nret": pl.Int64}, orient="row")
        cons = cons.join(cu, on=["setl_id", "k"], how="left").with_columns(
            returned=pl.coalesce("nret", "returned")).drop("nret")
    return settled, cons


def _quota_invariant(d, bal, ins, c_new, sim) -> dict:
    opening = int(bal["opening"].sum())
    closing = int(bal["closing"].sum())
    in_amt = int(ins["amount"].sum())
    consumed = int(c_new["amt"].sum()) + sim["consumed"]
    ok = opening + in_amt - consumed + sim["refunded"] - (sim["dissolved"] + sim["to_sharer"]) == closing
    if not ok:
        raise AssertionError(f"day {d}: quota invariant broken")
    return {"day": d, "opening": opening, "in": in_amt, "consumed": consumed,
            "refunded": sim["refunded"], "returned": sim["dissolved"] + sim["to_sharer"], "closing": closing}


def _bulk_settlements(rng, pfx, lots, people, ref, m, settled, d, dstr, steady=False):
    """NORMAL settlements within what each bulk wallet holds, and refunds (of earlier
    settlements at a flat expected count a day when `steady`)."""
    avail = (lots.filter((pl.col("ben") >= m) & ~pl.col("closed")).group_by("ben")
             .agg(a=pl.col("rem").sum()).filter(pl.col("a") > 0).sort("ben"))
    n = avail.height
    u = rng.uniform(n, pfx + "st:u")
    avail = avail.with_columns(u=u, two=rng.uniform(n, pfx + "st:two") < 0.25).filter(pl.col("u") < 0.15)
    n = avail.height
    prov = people["prov"].gather(avail["ben"])
    ins = people["insutype"].gather(avail["ben"])
    avail = avail.with_columns(prov=prov, ins=ins)
    slots = []
    for slot in (1, 2):
        k = f"{pfx}st{slot}:"
        x = avail.with_columns(
            whole=rng.uniform(n, k + "whole") < 0.1, frac=rng.uniform(n, k + "frac"),
            et=pl.Series(list(MEDICAL)).gather(rng.choice(n, list(MEDICAL_W), k + "et")),
            ex=rng.uniform(n, k + "ex"), ex2=rng.uniform(n, k + "ex2"), tt=rng.uniform(n, k + "tt"),
            ik=rng.uniform(n, k + "ik"),
            sec=rng.integers(n, 43_200, 57_599, k + "sec") if slot == 1 else rng.integers(n, 57_600, 71_999, k + "sec"))
        cap = pl.col("a") if slot == 1 else pl.col("a") - pl.col("w1")
        if slot == 2:
            x = x.join(slots[0].select("ben", w1="wallet"), on="ben", how="left").filter(pl.col("two"))
        lo, hi = (0.05, 0.7) if slot == 1 else (0.1, 0.9)
        x = x.with_columns(cap=cap).with_columns(
            et=pl.when(pl.col("et") == "RESIDENT_PREMIUM").then(
                pl.when(pl.col("ins") == "390").then(pl.col("et")).otherwise(pl.lit("OUTPATIENT")))
            .otherwise(pl.col("et")))
        prem = pl.col("et").replace_strict(PREMIUM, default=0, return_dtype=pl.Int64)
        x = x.with_columns(prem=prem).with_columns(
            et=pl.when((pl.col("prem") > 0) & (pl.col("cap") < pl.col("prem"))).then(pl.lit("PHARMACY")).otherwise(pl.col("et")))
        x = x.with_columns(
            wallet=pl.when(pl.col("et").is_in(list(PREMIUM))).then(pl.col("prem"))
            .when(pl.col("whole") & pl.lit(slot == 1)).then(pl.col("cap"))
            .otherwise((pl.col("cap").cast(pl.Float64) * (lo + (hi - lo) * pl.col("frac"))).floor().cast(pl.Int64)))
        x = x.filter((pl.col("wallet") >= 1) & (pl.col("wallet") <= pl.col("cap")))
        premium = pl.col("et").is_in(list(PREMIUM))
        x = x.with_columns(
            burden=pl.when(premium | (pl.col("ex") < 0.4)).then(pl.col("wallet"))
            .otherwise(pl.col("wallet") + (pl.col("ex2") * 50_000).floor().cast(pl.Int64)))
        x = x.with_columns(
            total=pl.when(premium).then(pl.col("burden"))
            .when(pl.col("et") == "PHARMACY").then(pl.col("burden") + (pl.col("tt") * pl.col("burden").cast(pl.Float64)).floor().cast(pl.Int64))
            .otherwise(pl.col("burden") + (pl.col("tt") * 3 * pl.col("burden").cast(pl.Float64)).floor().cast(pl.Int64)),
            kind=pl.when(pl.col("et") == "PHARMACY").then(pl.lit("P")).otherwise(pl.lit("H")))
        nh = {p: c for p, c in ref.n_h.items()}
        np_ = {p: c for p, c in ref.n_p.items()}
        cnt = pl.when(pl.col("kind") == "H").then(pl.col("prov").replace_strict(nh, return_dtype=pl.Int64)) \
            .otherwise(pl.col("prov").replace_strict(np_, return_dtype=pl.Int64))
        x = x.with_columns(ki=(pl.col("ik") * cnt.cast(pl.Float64)).floor().cast(pl.Int64))
        x = x.with_columns(c=1 + pl.col("ki") % pl.col("prov").replace_strict(N_REGIONS, return_dtype=pl.Int64))
        x = x.with_columns(fixmedins=pl.when(premium).then(pl.lit(None, pl.String)).otherwise(
            pl.col("kind") + pl.col("prov") + pl.col("c").cast(pl.String).str.zfill(2) + pl.lit("00")
            + pl.col("ki").cast(pl.String).str.zfill(5)))
        slots.append(x.select("ben", "sec", "wallet", "burden", "total", "fixmedins", expense="et"))
    s = pl.concat(slots).sort(["sec", "ben"]).with_row_index("n").select(
        setl_id=pl.lit("ST" + dstr) + (pl.col("n") + 1).cast(pl.String).str.zfill(8),
        psn="ben", status=pl.lit("NORMAL"), orig=pl.lit(None, pl.String), expense="expense",
        fixmedins="fixmedins", total="total", burden="burden", wallet="wallet", sec="sec")
    # refunds: of earlier settled bulk settlements (once each) and of today's
    earlier = settled.filter((pl.col("ben") >= m) & (pl.col("refunded") == 0) & (pl.col("day") < d))
    old_rate = REFUND_RATE * min(1.0, s.height / earlier.height) if steady and earlier.height else REFUND_RATE
    earlier = earlier.with_columns(u=rng.uniform(earlier.height, pfx + "rf:old")).filter(pl.col("u") < old_rate)
    today = s.with_columns(u=rng.uniform(s.height, pfx + "rf:new")).filter(pl.col("u") < REFUND_RATE)
    orig = pl.concat([
        earlier.select("setl_id", psn="ben", w="w", expense="expense", fixmedins="fixmedins", total="total", burden="burden"),
        today.select("setl_id", psn="psn", w="wallet", expense="expense", fixmedins="fixmedins", total="total", burden="burden")])
    no = orig.height
    orig = orig.with_columns(full=rng.uniform(no, pfx + "rf:full") < 0.5,
                             part=rng.integers(no, 1, orig["w"].clip(1, None) if no else 1, pfx + "rf:part"),
                             sec=rng.integers(no, 72_000, 79_199, pfx + "rf:sec"))
    r = orig.with_columns(wallet=pl.when(pl.col("full") | pl.col("expense").is_in(list(PREMIUM))).then(pl.col("w"))
                          .otherwise(pl.col("part"))).sort(["sec", "psn"]).with_row_index("n").select(
        setl_id=pl.lit("ST" + dstr) + (pl.col("n") + 1 + s.height).cast(pl.String).str.zfill(8),
        psn="psn", status=pl.lit("REFUND"), orig="setl_id", expense="expense", fixmedins="fixmedins",
        total="total", burden="burden", wallet="wallet", sec="sec")
    return s.cast(S_SCHEMA), r.cast(S_SCHEMA)


def _plant_balances(rng, pfx, bal, d, m, reps, PSN, PROV, ds, f01_days):
    """B01: a delivered closing off by 0.01; B02 (not genesis): an opening off by 0.01."""
    truth = []
    cand = bal.with_row_index("i").filter(pl.col("ben") >= m)
    if cand.height == 0:
        return bal, truth
    r = rng.py(pfx + "bal")
    k = max(1, reps // 2)
    picks = r.sample(range(cand.height), min(cand.height, 2 * k))
    b01 = set(cand["i"].gather(picks[:k]).to_list())
    b02 = set(cand["i"].gather(picks[k:]).to_list()) if d > 0 else set()
    idx = pl.int_range(pl.len())
    bal = bal.with_columns(
        closing=pl.col("closing") + idx.is_in(sorted(b01)).cast(pl.Int64),
        opening=pl.col("opening") + idx.is_in(sorted(b02)).cast(pl.Int64))
    for code, rows in (("B01", b01), ("B02", b02)):
        for i in sorted(rows):
            b, s = bal["ben"][i], bal["sharer"][i]
            truth.append((ds, code, PROV[b], f"{PSN[b]}:{PSN[s]}"))
    return bal, truth


# ============================================================================ writing a day
def _text_frame(frame, dataset, people, D):
    """Typed frame of one province -> typed-with-text-ids frame ready for to_text/to_arrow."""
    PSN, PROV = people["psn_no"], people["prov"]
    if dataset == "persons":
        f = frame.with_columns(
            psn_no=PSN.gather(frame["psn"]), certno=people["certno"].gather(frame["psn"]),
            insutype=people["insutype"].gather(frame["psn"]),
            insu_admdvs=people["admdvs"].gather(frame["psn"]).cast(pl.String),
            psn_name=people["psn_name"].gather(frame["psn"]), as_of=pl.lit(D.isoformat()))
    elif dataset == "relationships":
        f = frame.with_columns(sharer_psn_no=PSN.gather(frame["sharer"]), beneficiary_psn_no=PSN.gather(frame["ben"]),
                               beneficiary_province=PROV.gather(frame["ben"]), relation_code=pl.col("code"),
                               commitment_signed=pl.col("signed"), event_time=pl.col("sec"))
    elif dataset == "transfers":
        f = frame.with_columns(sharer_psn_no=PSN.gather(frame["sharer"]), beneficiary_psn_no=PSN.gather(frame["ben"]),
                               sharer_province=PROV.gather(frame["sharer"]), beneficiary_province=PROV.gather(frame["ben"]),
                               transfer_time=pl.col("sec"))
    elif dataset == "settlements":
        f = frame.with_columns(psn_no=PSN.gather(frame["psn"]), orig_setl_id=pl.col("orig"),
                               expense_type=pl.col("expense"), fixmedins_code=pl.col("fixmedins"),
                               total_amount=pl.col("total"), personal_burden=pl.col("burden"),
                               wallet_pay=pl.col("wallet"), setl_time=pl.col("sec"))
    else:
        f = frame.with_columns(psn_no=PSN.gather(frame["psn"]), sharer_psn_no=PSN.gather(frame["sharer"]),
                               sharer_province=PROV.gather(frame["sharer"]), opening_balance=pl.col("opening"),
                               closing_balance=pl.col("closing"))
    return f


def _record_id(dataset: str, row: dict) -> str:
    if dataset == "persons":
        return row["psn_no"]
    if dataset == "relationships":
        return row["event_id"]
    if dataset == "transfers":
        return f"{row['transfer_id']}:{row['side']}"
    if dataset == "settlements":
        return row["setl_id"]
    return f"{row['psn_no']}:{row['sharer_psn_no'] or 'PERSONAL'}"


def _f04_rows(dataset, p, D, persons_pp: list[str], other_psn: str, r, dstr, chunk_no: int = 0):
    """Malformed extra rows (fresh ids, referenced nowhere): list of (row dict, record_id or None).
    `dstr` carries the chunk's tag in a chunked nation; `chunk_no` keeps psn_no apart too."""
    tag = dstr[:-8]
    ds = D.isoformat()
    prev = (D - timedelta(days=1)).isoformat()
    a = persons_pp[0]
    b = persons_pp[-1]
    other = next(q for q in PROVINCES if q != p)
    n = r.randint(0, 999_999)
    rows = []
    if dataset == "transfers":
        base = dict(transfer_id=f"TX{dstr}{n:06d}", side="OUT", relation_id=f"RX{tag}{n:08d}", sharer_psn_no=a,
                    beneficiary_psn_no=b, sharer_province=p, beneficiary_province=p, amount="100.00",
                    status="SUCCESS", transfer_time=f"{ds}T10:00:00+08:00")
        variants = [("amount", "12.345"), ("amount", "-5"), ("amount", "0.00"), ("transfer_time", f"{ds}T09:15:02"),
                    ("transfer_time", f"{prev}T23:59:59+08:00"), ("transfer_time", f"{ds}T16:00:00Z"),
                    ("status", "SUCESS"), ("sharer_province", other), ("sharer_psn_no", a[:19]),
                    ("side", "BOTH"), ("transfer_id", "")]
    elif dataset == "settlements":
        base = dict(setl_id=f"SX{dstr}{n:06d}", psn_no=a, status="NORMAL", orig_setl_id="", expense_type="OUTPATIENT",
                    fixmedins_code=f"H{p}010000000", total_amount="200.00", personal_burden="100.00",
                    wallet_pay="50.00", setl_time=f"{ds}T13:00:00+08:00")
        variants = [("expense_type", "DENTAL"), ("wallet_pay", "abc"), ("wallet_pay", "0.00"),
                    ("setl_time", f"{ds}T13:00:00"), ("status", "PAID"), ("setl_id", "")]
    elif dataset == "relationships":
        base = dict(event_id=f"EX{dstr}{n:06d}", relation_id=f"RX{tag}{n:08d}", event_type="ESTABLISH", sharer_psn_no=a,
                    beneficiary_psn_no=b, beneficiary_province=b[:2], relation_code="PARENT",
                    commitment_signed="true", channel="NATIONAL_APP", event_time=f"{ds}T03:00:00+08:00")
        variants = [("relation_code", "FRIEND"), ("commitment_signed", "yes"), ("channel", "WECHAT"),
                    ("event_time", f"{prev}T12:00:00+08:00"), ("event_type", "SUSPEND")]
    elif dataset == "persons":
        from contracts.certno import make_certno
        psn = f"{p}00{9_000_000_000_000_000 + chunk_no * 1_000_000 + n:016d}"
        cert = make_certno(f"{p}0100", "19700101", n % 1000, True)
        bad = cert[:17] + ("0" if cert[17] != "0" else "1")
        future = make_certno(f"{p}0100", (D + timedelta(days=1)).strftime("%Y%m%d"), 1, True)
        base = dict(psn_no=psn, certno=cert, insutype="390", insu_status="ACTIVE", insu_admdvs=f"{p}0100",
                    as_of=ds, psn_name="测试")
        variants = [("certno", bad), ("insutype", "320"), ("insu_admdvs", f"{other}0100"),
                    ("certno", future), ("insu_status", "DEAD")]
    else:
        base = dict(psn_no=a, account="QUOTA", sharer_psn_no=other_psn, sharer_province=other_psn[:2],
                    opening_balance="10.00", closing_balance="10.00")
        variants = [("opening_balance", "-1.00"), ("closing_balance", "1.234")]
    field_, value = variants[r.randrange(len(variants))]
    row = dict(base)
    row[field_] = value
    key = {"transfers": "transfer_id", "settlements": "setl_id", "relationships": "event_id",
           "persons": "psn_no"}.get(dataset)
    if key and row[key] == "":
        rid = None
    elif dataset == "balances":
        rid = f"{row['psn_no']}:{row['sharer_psn_no']}"
    else:
        rid = row[key]
    return [(row, rid)]


def _write_day(out, D, rng, pfx, frames, people, ref, f01, d, reps, planting, rows_written, chunk=None):
    """Write (or, for a chunk, append) the day's files of every province; returns the
    file-level and row-level plants' truth."""
    truth = []
    sink = chunk.sink if chunk else None
    ds, dstr = D.isoformat(), (chunk.tag if chunk else "") + D.strftime("%Y%m%d")
    PROV = people["prov"]
    r = rng.py(pfx + "write")
    parts = {}
    for name, fr in frames.items():
        col = "sharer" if name == "relationships" else "psn"
        if name == "transfers":
            fp = pl.when(pl.col("side") == "OUT").then(PROV.gather(fr["sharer"])).otherwise(PROV.gather(fr["ben"]))
        else:
            fp = PROV.gather(fr[col])
        fr = fr.with_columns(fprov=fp)
        parts[name] = {k[0]: v for k, v in fr.partition_by("fprov", as_dict=True, maintain_order=True).items()}

    # file-level plants: F01 (54 missing on f01 days), F02 on 54, F03 on 63 settlements
    fileplant = {}
    if planting and not (chunk and chunk.index):
        v = d % 3
        if not f01:
            fileplant[("54", "settlements")] = ("F02", ("rows", "sha", "absent")[v])
        fileplant[("63", "settlements")] = ("F03", ("header", "undecodable", "parquet")[v])
    # F04 / F05 targets
    csv_provs = [p for p in PROVINCES if not STYLES[p].parquet and not (f01 and p == "54")]
    all_provs = [p for p in PROVINCES if not (f01 and p == "54")]
    f04, f05 = defaultdict(int), defaultdict(int)
    if planting:
        k = max(1, reps // 4)
        for ds_ in DATASETS:
            for _ in range(k):
                f04[(r.choice(csv_provs), ds_)] += 1
                f05[(r.choice(all_provs), ds_)] += 1

    no_manifest = f01 and d == 3
    for p in PROVINCES:
        if f01 and p == "54" and not no_manifest:
            truth.append((ds, "F01", p, p))
            continue
        style = STYLES[p]
        folder = out / ds / p
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        persons_pp = parts["persons"].get(p)
        if persons_pp is not None and persons_pp.height:
            psn_list = people["psn_no"].gather(persons_pp["psn"].head(1)).to_list() + \
                people["psn_no"].gather(persons_pp["psn"].tail(1)).to_list()
        else:
            psn_list = [f"{p}00{1:016d}"]
        other_psn = people["psn_no"][r.randrange(people.height)]
        if sink:
            sink.folder(folder, p, D, style.encoding,
                        [(x, f"{x}.parquet" if style.parquet else f"{x}.csv") for x in DATASETS],
                        with_manifest=not (f01 and p == "54"))
        for dataset in DATASETS:
            if sink and sink.is_frozen(folder, dataset):
                continue  # a file-level plant of an earlier chunk
            fr = parts[dataset].get(p)
            if fr is None:
                fr = frames[dataset].clear()
            extra = ["psn_name"] if dataset == "persons" and not style.parquet else []
            typed = _text_frame(fr, dataset, people, D)
            plant = fileplant.get((p, dataset))
            if plant:
                assert typed.height == 0, f"file plant on a non-empty file {p}/{dataset}"
            # F05: exact duplicates of clean rows
            n_dup = min(f05.get((p, dataset), 0), typed.height) if not plant else 0
            if n_dup:
                picks = sorted(r.sample(range(typed.height), n_dup))
                dups = typed[picks]
                txt_ids = to_text(dups, dataset, D, style, []).to_dicts()
                for row in txt_ids:
                    truth.append((ds, "F05", p, _record_id(dataset, row)))
                typed = pl.concat([typed, dups])
            fname = f"{dataset}.parquet" if style.parquet else f"{dataset}.csv"
            before = sink.rows_before(folder / fname) if sink else 0
            if style.parquet:
                table = to_arrow(typed, dataset, D)
                data = None if sink else parquet_bytes(table)
                nrows = typed.height
            else:
                text = to_text(typed, dataset, D, style, extra)
                n_bad = f04.get((p, dataset), 0) if not plant else 0
                if n_bad and dataset != "persons" and persons_pp is None:
                    n_bad = 0
                bad_rows = []
                for _ in range(n_bad):
                    for row, rid in _f04_rows(dataset, p, D, psn_list, other_psn, r, dstr,
                                              chunk.index if chunk else 0):
                        bad_rows.append(row)
                        truth.append((ds, "F04", p, rid if rid is not None
                                      else f"row:{before + text.height + len(bad_rows)}"))
                if bad_rows:
                    text = pl.concat([text, pl.DataFrame(bad_rows, schema={c: pl.String for c in text.columns})])
                nrows = text.height
                data = csv_bytes(text, style, header=not (sink and sink.begun(folder / fname)))
            if plant:
                code, variant = plant
                truth.append((ds, code, p, fname if variant != "parquet" else f"{dataset}.parquet"))
                if variant == "rows":
                    files[fname] = {"rows": 1, "sha256": sha256(data)}
                elif variant == "sha":
                    files[fname] = {"rows": 0, "sha256": sha256(data + b"x")}
                elif variant == "absent":
                    files[fname] = {"rows": 0, "sha256": sha256(data)}
                    if sink:
                        sink.freeze(folder, dataset, fname, files[fname], None)
                    continue
                elif variant == "header":
                    cols = [c for c in COLUMNS[dataset] if c != "wallet_pay"]
                    data = (",".join(cols) + "\n").encode()
                    files[fname] = {"rows": 0, "sha256": sha256(data)}
                elif variant == "undecodable":
                    data = (",".join(COLUMNS[dataset]).replace("wallet_pay", "wallet\udcff_pay") + "\n").encode("utf-8", "surrogateescape")
                    files[fname] = {"rows": 0, "sha256": sha256(data)}
                else:
                    fname = f"{dataset}.parquet"
                    data = b"PAR1 this is not a parquet file PAR1"
                    files[fname] = {"rows": 0, "sha256": sha256(data)}
                if sink:
                    sink.freeze(folder, dataset, fname, files[fname], data)
                    continue
                (folder / fname).write_bytes(data)
                continue
            rows_written[dataset] += nrows
            if sink and style.parquet:
                sink.append_parquet(folder / fname, table)
                continue
            if sink:
                sink.append_csv(folder / fname, data, nrows)
                continue
            (folder / fname).write_bytes(data)
            files[fname] = {"rows": nrows, "sha256": sha256(data)}
        if f01 and p == "54":
            truth.append((ds, "F01", p, p))  # folder delivered without its manifest
            continue
        if sink:
            continue  # manifests when every chunk is in (AppendingInbox.close)
        (folder / "manifest.json").write_bytes(manifest(p, D, STYLES[p].encoding, files))
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synth.generate", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--start", required=True, type=date.fromisoformat)
    ap.add_argument("--days", required=True, type=int)
    ap.add_argument("--persons", required=True, type=int)
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--violation-rate", type=float, default=0.01)
    ap.add_argument("--perturb", type=float, default=0.0)
    ap.add_argument("--steady", type=float, nargs="?", const=STEADY_SHARE, default=None, metavar="SHARE",
                    help="a nation whose daily volume is flat (benchmarks); SHARE of the pairs "
                         f"established before the start are funded (default {STEADY_SHARE})")
    ap.add_argument("--chunk-persons", type=int, default=None, metavar="N",
                    help="generate the nation in independent chunks of N persons appended to the "
                         "same files (memory bounded by N; for nations too large to hold)")
    a = ap.parse_args(argv)
    if a.chunk_persons is not None and (a.chunk_persons <= 0 or a.perturb > 0):
        ap.error("--chunk-persons takes a positive number and no --perturb")
    stats = generate(a.out, a.start, a.days, a.persons, a.seed, a.violation_rate, a.perturb, a.steady,
                     a.chunk_persons)
    stats.pop("quota_invariants", None)
    print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
