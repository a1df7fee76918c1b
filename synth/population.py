"""The synthetic nation: regions, institutions, persons and sharing families.

Families follow migrant work: employees (310) insured where they work
(Guangdong, Zhejiang, Jiangsu, Shanghai, Beijing, ...) share their personal
account with parents, children and spouses insured at home (Henan, Sichuan,
Anhui, Hunan, Guizhou, ...), mostly residents (390). Three family shapes:

- T1: one sharer, one beneficiary (any near relative allowed by the policy);
- T2: a working couple (two sharers) sharing with their child (two pairs
  feeding one wallet: FIFO across pairs);
- T3: one sharer sharing with both parents (two wallets, one sharer).

Tibet (54) and Qinghai (63) hold only employees whose families live
elsewhere: their settlements files are always empty, which is where the
file-level plants (F01-F03) go without knock-on findings.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from contracts.codes import CHANNELS, PROVINCE_NAMES, PROVINCES
from synth.rng import Rng

PROV_INDEX = {p: i for i, p in enumerate(PROVINCES)}
SHARER_ONLY = ("54", "63")

WORKER_W = {
    "44": 22, "33": 12, "32": 10, "31": 8, "11": 7, "35": 5, "37": 4, "12": 3, "42": 2,
    "51": 2, "50": 2, "61": 1.5, "21": 1.5, "13": 1.5, "41": 2, "43": 1.5, "34": 1.5,
    "65": 1, "46": 0.8, "15": 0.8, "14": 0.8, "22": 0.6, "23": 0.6, "36": 0.8, "45": 1,
    "52": 0.6, "53": 0.8, "62": 0.5, "64": 0.4, "54": 0.6, "63": 0.6,
}
HOME_W = {
    "41": 12, "51": 10, "34": 8, "43": 8, "52": 5, "36": 6, "42": 6, "45": 5, "50": 4,
    "53": 4, "13": 4, "37": 4, "14": 2.5, "61": 2.5, "62": 2.5, "23": 2, "22": 1.5,
    "21": 2, "15": 1.5, "64": 1, "65": 1.5, "46": 1, "35": 2, "44": 3, "33": 2, "32": 3,
    "31": 1, "11": 1, "12": 1,
}
N_REGIONS = {p: 3 + (int(p) * 7) % 4 for p in PROVINCES}  # 3..6 regions per province

T1_CODES = ("PARENT", "CHILD", "SPOUSE", "GRANDPARENT_PATERNAL", "GRANDPARENT_MATERNAL",
            "SIBLING", "GRANDCHILD_SON", "GRANDCHILD_DAUGHTER")
T1_WEIGHTS = (40, 15, 15, 5, 4, 8, 4, 3)

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国红梅玉兰志强海燕春梅小红晓东文斌子涵梓萱浩宇欣怡俊杰雨轩家豪思远嘉怡")


def _w(d: dict, codes) -> list[float]:
    return [float(d.get(c, 0.0)) for c in codes]


@dataclass
class Reference:
    regions: pl.DataFrame        # admdvs, province, name, wallet_live_from
    institutions: pl.DataFrame   # fixmedins_code, fixmedins_type, admdvs, designated_from, designated_to, fixmedins_name, prov, k, bad
    n_h: dict                    # province -> count of designated hospitals
    n_p: dict


def build_reference(rng: Rng, start: date, days: int, persons: int) -> Reference:
    """regions.csv and institutions.csv: every province live before start."""
    from datetime import timedelta
    r = rng.py("regions")
    rows = []
    for p in PROVINCES:
        zh = PROVINCE_NAMES[p][0]
        for c in range(1, N_REGIONS[p] + 1):
            live = start - timedelta(days=r.randint(30, 400))
            rows.append((f"{p}{c:02d}00", p, f"{zh}第{c}统筹区", live))
    # one region never live, one region going live after the first day: the
    # province stays live through its other regions.
    rows[5] = (rows[5][0], rows[5][1], rows[5][2], None)
    rows[17] = (rows[17][0], rows[17][1], rows[17][2], start + timedelta(days=1))
    regions = pl.DataFrame(rows, schema={"admdvs": pl.String, "province": pl.String,
                                         "name": pl.String, "wallet_live_from": pl.Date},
                           orient="row")
    ri = rng.py("institutions")
    per = max(3, persons // 31 // 1500)
    inst = []
    n_h, n_p = {}, {}
    for p in PROVINCES:
        zh = PROVINCE_NAMES[p][0]
        nh, np_ = per, per * 2
        n_h[p], n_p[p] = nh, np_
        for kind, prefix, n, label in (("HOSPITAL", "H", nh, "人民医院"), ("PHARMACY", "P", np_, "大药房")):
            for k in range(n):
                c = 1 + k % N_REGIONS[p]
                adm = f"{p}{c:02d}00"
                code = f"{prefix}{adm}{k:05d}"
                frm = date(2015 + ri.randint(0, 6), ri.randint(1, 12), ri.randint(1, 28))
                inst.append((code, kind, adm, frm, None, f"{zh}第{k + 1}{label}", p, k, ""))
        # for S15 plants: a hospital no longer designated, a pharmacy designated only later
        inst.append((f"H{p}010099901", "HOSPITAL", f"{p}0100", date(2016, 3, 1),
                     start - timedelta(days=200), f"{zh}原定点医院", p, -1, "dedesignated"))
        inst.append((f"P{p}010099902", "PHARMACY", f"{p}0100", start + timedelta(days=days + 60),
                     None, f"{zh}新开药房", p, -1, "future"))
    institutions = pl.DataFrame(inst, schema={
        "fixmedins_code": pl.String, "fixmedins_type": pl.String, "admdvs": pl.String,
        "designated_from": pl.Date, "designated_to": pl.Date, "fixmedins_name": pl.String,
        "prov": pl.String, "k": pl.Int64, "bad": pl.String}, orient="row")
    return Reference(regions, institutions, n_h, n_p)


def _births(rng: Rng, years: pl.Series, name: str) -> pl.Series:
    n = len(years)
    m = rng.integers(n, 1, 12, name + ":m")
    d = rng.integers(n, 1, 28, name + ":d")
    return (years.cast(pl.Int64) * 10000 + m * 100 + d).alias("birth")


@dataclass
class Population:
    persons: pl.DataFrame  # idx, prov (str), admdvs (int), birth (int), male (bool), insutype, personal (fen)
    pairs: pl.DataFrame    # pair, sharer, ben, code, est_day, gen_amt, relation_id, channel


def build_population(rng: Rng, n: int, start: date, days: int, near: tuple[str, ...],
                     f01_days: set[int], steady: float | None = None) -> Population:
    """The bulk nation. `steady` (opt-in, benchmarks only; None = the default nation):
    every pair the default establishes before the start is established on day 0
    instead (so it transfers and may dissolve like the others), and the share `steady`
    of the pairs established on day 0 open with genesis quota, so the nation starts
    near the funded share it settles at and its daily volume stays flat (see
    generate(steady=...))."""
    SY = start.year
    n_units = int(n / 2.4)
    n1 = int(n_units * 0.6)
    n2 = (n_units - n1) // 2
    n3 = n_units - n1 - n2
    while 2 * n1 + 3 * (n2 + n3) > n and n1 > 0:
        n1 -= 1
    lone = n - 2 * n1 - 3 * (n2 + n3)
    worker_codes = list(WORKER_W)
    home_codes = list(HOME_W)

    def provs(k, name, weights, codes):
        idx = rng.choice(k, weights, name)
        return pl.Series(codes).gather(idx) if k else pl.Series([], dtype=pl.String)

    def family_provs(k, name):
        w = provs(k, name + ":w", _w(WORKER_W, worker_codes), worker_codes)
        h = provs(k, name + ":h", _w(HOME_W, home_codes), home_codes)
        local = rng.uniform(k, name + ":local") < 0.3
        h = pl.select(pl.when(local & ~w.is_in(SHARER_ONLY)).then(w).otherwise(h)).to_series() if k else h
        return w, h

    frames, pair_frames = [], []
    base = 0

    def add_people(prov, birth, male, insutype, sharer):
        nonlocal base
        k = len(prov)
        df = pl.DataFrame({"idx": pl.int_range(base, base + k, eager=True).cast(pl.Int64),
                           "prov": prov, "birth": birth.cast(pl.Int64), "male": male,
                           "insutype": insutype, "sharer": pl.Series([sharer] * k, dtype=pl.Boolean)})
        base += k
        frames.append(df)
        return df["idx"]

    def ins(k, name):
        return pl.select(pl.when(rng.uniform(k, name) < 0.8).then(pl.lit("390"))
                         .otherwise(pl.lit("310"))).to_series() if k else pl.Series([], dtype=pl.String)

    def cst(k, v):
        return pl.Series([v] * k, dtype=pl.String if isinstance(v, str) else pl.Boolean)

    # ---- T1: sharer + one relative
    w, h = family_provs(n1, "t1")
    code_i = rng.choice(n1, list(T1_WEIGHTS), "t1:code")
    code = pl.Series(list(T1_CODES)).gather(code_i) if n1 else pl.Series([], dtype=pl.String)
    sy = rng.integers(n1, SY - 58, SY - 23, "t1:sy")
    t1 = pl.DataFrame({"code": code, "sy": sy})
    t1 = t1.with_columns(
        code=pl.when(~pl.col("code").is_in(list(near))).then(pl.lit("PARENT"))
        .when(pl.col("code") == "CHILD").then(pl.when(pl.col("sy") <= SY - 39).then(pl.lit("CHILD")).otherwise(pl.lit("PARENT")))
        .when(pl.col("code").str.starts_with("GRANDCHILD")).then(pl.when(pl.col("sy") <= SY - 41).then(pl.col("code")).otherwise(pl.lit("PARENT")))
        .otherwise(pl.col("code")))
    g1 = rng.integers(n1, 20, 36, "t1:gp")
    g2 = rng.integers(n1, 18, 35, "t1:gc")
    g3 = rng.integers(n1, -5, 5, "t1:gs")
    g4 = rng.integers(n1, 1, 8, "t1:gsib")
    g5 = rng.integers(n1, 42, 58, "t1:ggp")
    g6 = rng.integers(n1, 40, 55, "t1:ggc")
    t1 = t1.with_columns(g1=g1, g2=g2, g3=g3, g4=g4, g5=g5, g6=g6).with_columns(
        by=pl.when(pl.col("code") == "PARENT").then(pl.col("sy") - pl.col("g1"))
        .when(pl.col("code") == "CHILD").then(pl.col("sy") + pl.col("g2"))
        .when(pl.col("code") == "SPOUSE").then((pl.col("sy") + pl.col("g3")).clip(None, SY - 23))
        .when(pl.col("code") == "SIBLING").then(pl.when(pl.col("sy") % 2 == 0).then(pl.col("sy") + pl.col("g4")).otherwise(pl.col("sy") - pl.col("g4")))
        .when(pl.col("code").str.starts_with("GRANDPARENT")).then((pl.col("sy") - pl.col("g5")).clip(1920, None))
        .otherwise((pl.col("sy") + pl.col("g6")).clip(None, SY - 1)))
    smale = rng.uniform(n1, "t1:smale") < 0.55
    bmale_r = rng.uniform(n1, "t1:bmale") < 0.5
    bmale = pl.select(pl.when(t1["code"] == "SPOUSE").then(~smale).otherwise(bmale_r)).to_series() if n1 else bmale_r
    s_idx = add_people(w, _births(rng, t1["sy"], "t1:sb"), smale, cst(n1, "310"), True)
    b_idx = add_people(h, _births(rng, t1["by"], "t1:bb"), bmale, ins(n1, "t1:ins"), False)
    pair_frames.append(pl.DataFrame({"sharer": s_idx, "ben": b_idx, "code": t1["code"]}))

    # ---- T2: working couple + child
    w, h = family_provs(n2, "t2")
    w2 = provs(n2, "t2:w2", _w(WORKER_W, worker_codes), worker_codes)
    same = rng.uniform(n2, "t2:same") < 0.8
    w2 = pl.select(pl.when(same).then(w).otherwise(w2)).to_series() if n2 else w2
    y1 = rng.integers(n2, SY - 55, SY - 40, "t2:y1")
    y2 = (y1 + rng.integers(n2, -3, 3, "t2:y2")).clip(None, SY - 38)
    yc = pl.select(pl.max_horizontal(y1, y2)).to_series() + rng.integers(n2, 18, 28, "t2:yc") if n2 else y1
    s1 = add_people(w, _births(rng, y1, "t2:b1"), cst(n2, True), cst(n2, "310"), True)
    s2 = add_people(w2, _births(rng, y2, "t2:b2"), cst(n2, False), cst(n2, "310"), True)
    cm = rng.uniform(n2, "t2:cmale") < 0.5
    c = add_people(h, _births(rng, yc, "t2:bc"), cm, ins(n2, "t2:ins"), False)
    pair_frames.append(pl.DataFrame({"sharer": s1, "ben": c, "code": cst(n2, "CHILD")}))
    pair_frames.append(pl.DataFrame({"sharer": s2, "ben": c, "code": cst(n2, "CHILD")}))

    # ---- T3: sharer + both parents
    w, h = family_provs(n3, "t3")
    ys = rng.integers(n3, SY - 50, SY - 23, "t3:ys")
    yf = ys - rng.integers(n3, 22, 35, "t3:yf")
    ym = ys - rng.integers(n3, 20, 33, "t3:ym")
    sm = rng.uniform(n3, "t3:smale") < 0.55
    s = add_people(w, _births(rng, ys, "t3:bs"), sm, cst(n3, "310"), True)
    f = add_people(h, _births(rng, yf, "t3:bf"), cst(n3, True), ins(n3, "t3:insf"), False)
    m = add_people(h, _births(rng, ym, "t3:bm"), cst(n3, False), ins(n3, "t3:insm"), False)
    pair_frames.append(pl.DataFrame({"sharer": s, "ben": f, "code": cst(n3, "PARENT")}))
    pair_frames.append(pl.DataFrame({"sharer": s, "ben": m, "code": cst(n3, "PARENT")}))

    # ---- lone insured persons (never share)
    lp, _ = family_provs(lone, "lone")
    ly = rng.integers(lone, SY - 70, SY - 1, "lone:y")
    lm = rng.uniform(lone, "lone:male") < 0.5
    li = pl.select(pl.when(rng.uniform(lone, "lone:ins") < 0.5).then(pl.lit("310")).otherwise(pl.lit("390"))).to_series() if lone else cst(0, "310")
    add_people(lp, _births(rng, ly, "lone:b"), lm, li, False)

    persons = pl.concat(frames) if frames else pl.DataFrame()
    npers = persons.height
    nreg = pl.Series([N_REGIONS[p] for p in PROVINCES])
    reg_count = persons.select(pl.col("prov").replace_strict(PROV_INDEX, return_dtype=pl.Int64)).to_series()
    creg = (rng.uniform(npers, "person:region") * nreg.gather(reg_count).cast(pl.Float64)).floor().cast(pl.Int64) + 1
    personal = rng.integers(npers, 300_000, 6_000_000, "person:personal")
    persons = persons.with_columns(
        admdvs=(pl.col("prov").cast(pl.Int64) * 10000 + creg * 100),
        personal=pl.when(pl.col("sharer")).then(personal).otherwise(0),
    )

    pairs = pl.concat(pair_frames).with_row_index("pair").with_columns(pl.col("pair").cast(pl.Int64))
    np_ = pairs.height
    u = rng.uniform(np_, "pair:est")
    late = rng.integers(np_, 1, max(1, days - 1), "pair:late")
    gen = rng.integers(np_, 500, 300_000, "pair:gen")
    ug = rng.uniform(np_, "pair:genu")
    chan = rng.choice(np_, [6, 3, 1], "pair:channel")
    sprov = persons["prov"].gather(pairs["sharer"])
    pairs = pairs.with_columns(u=u, late=late, gen=gen, ug=ug, sprov=sprov,
                               channel=pl.Series(list(CHANNELS)).gather(chan))
    pairs = pairs.with_columns(
        est_day=pl.when(pl.col("u") < (0.30 if steady is None else 0.0)).then(-1)
        .when(pl.col("u") < 0.85).then(0)
        .when(pl.col("u") < 0.95).then(pl.col("late") if days > 1 else pl.lit(0))
        .otherwise(10_000).cast(pl.Int64))
    if f01_days:
        pairs = pairs.with_columns(est_day=pl.when(pl.col("sprov").is_in(SHARER_ONLY) & pl.col("est_day").is_in(sorted(f01_days)))
                                   .then(0).otherwise(pl.col("est_day")))
    pairs = pairs.with_columns(
        gen_amt=pl.when((pl.col("est_day") == -1) & (pl.col("ug") < 0.85) if steady is None
                        else (pl.col("est_day") == 0) & (pl.col("ug") < steady)).then(pl.col("gen")).otherwise(0).cast(pl.Int64),
        relation_id=pl.lit("RL") + pl.col("pair").cast(pl.String).str.zfill(10),
    ).select("pair", "sharer", "ben", "code", "est_day", "gen_amt", "relation_id", "channel", "sprov")
    return Population(persons.drop("sharer"), pairs)
