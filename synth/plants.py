"""Planted violations: small, isolated families whose records break the rules.

Every planted family uses fresh persons that take part in nothing else, so the
bulk of the nation stays clean and the consequences of a plant stay inside its
family. Consequences are not written by hand: `Engine` judges every planted
record with the rules of rules.md and the readings of docs/spec-readings.md
(independently of transforms/), and whatever it finds is the planted truth.
The quota ledger of planted wallets is run by synth.ledger like any wallet.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from synth.population import HOME_W, SHARER_ONLY, WORKER_W

DAY = 86400

OTHER_CODES = ("PARENT_IN_LAW", "COUSIN", "SIBLING_IN_LAW", "UNCLE_AUNT", "NEPHEW_NIECE",
               "CHILD_IN_LAW", "OTHER")


def yyyymmdd(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def _valid_date(v: int) -> bool:
    try:
        date(v // 10000, v // 100 % 100, v % 100)
        return True
    except ValueError:
        return False


def _next_day(v: int) -> int:
    d = date(v // 10000, v // 100 % 100, v % 100) + timedelta(days=1)
    return yyyymmdd(d)


@dataclass
class PlantPerson:
    idx: int
    prov: str
    birth: int
    male: bool
    insutype: str = "310"
    status: dict = field(default_factory=dict)  # day -> status; default ACTIVE
    personal: int = 5_000_000
    ghost: bool = False
    certno_of: int | None = None

    def status_on(self, d: int) -> str:
        return self.status.get(d, "ACTIVE")


class Plants:
    """Scheduled planted records, per day, with internal person indices."""

    def __init__(self, base_idx: int, start: date, days: int, rnd: random.Random, near_fn):
        self.base = base_idx
        self.start, self.days, self.r = start, days, rnd
        self.near_fn = near_fn
        self.persons: list[PlantPerson] = []
        self.rel = defaultdict(list)
        self.trf = defaultdict(list)
        self.setl = defaultdict(list)
        self.genesis: list[tuple[int, int, int]] = []  # (ben, sharer, amount)
        self.n = defaultdict(int)
        self.kinds = defaultdict(int)  # scenario name -> count
        wc = [p for p in WORKER_W if p not in SHARER_ONLY]
        self.workers = (wc, [WORKER_W[p] for p in wc])
        self.homes = (list(HOME_W), list(HOME_W.values()))

    # ---------------------------------------------------------------- persons
    def by_idx(self, idx: int) -> PlantPerson:
        return self.persons[idx - self.base]

    def person(self, *, home=False, prov=None, insutype="310", birth=None, male=None,
               status=None, personal=5_000_000, ghost=False, age=None) -> int:
        r = self.r
        if prov is None:
            codes, w = self.homes if home else self.workers
            prov = r.choices(codes, w)[0]
        if birth is None:
            y = self.start.year - (age if age is not None else r.randint(25, 55))
            birth = y * 10000 + r.randint(1, 12) * 100 + r.randint(1, 28)
        if male is None:
            male = r.random() < 0.5
        idx = self.base + len(self.persons)
        self.persons.append(PlantPerson(idx, prov, birth, male, insutype, dict(status or {}),
                                        personal if insutype == "310" else 0, ghost))
        return idx

    def relative(self, sharer: int, code: str, **kw) -> int:
        """A beneficiary whose birth date fits `code` comfortably (no S02)."""
        s = self.by_idx(sharer)
        y, md = s.birth // 10000, s.birth % 10000
        r = self.r
        if code in ("PARENT",):
            by = y - r.randint(22, 32)
        elif code == "CHILD":
            by = min(y + r.randint(20, 28), self.start.year - 1)
        elif code.startswith("GRANDPARENT"):
            by = y - r.randint(45, 55)
        elif code.startswith("GRANDCHILD"):
            by = min(y + r.randint(45, 50), self.start.year - 1)
        elif code == "SPOUSE":
            by = min(y + r.randint(-3, 3), self.start.year - 25)
            kw.setdefault("male", not s.male)
        else:
            by = y + r.choice((-4, -2, 2, 4))
        kw.setdefault("home", True)
        return self.person(birth=by * 10000 + md, **kw)

    # ---------------------------------------------------------------- records
    def _id(self, kind: str, d: int) -> str:
        self.n[(kind, d)] += 1
        ds = (self.start + timedelta(days=d)).strftime("%Y%m%d")
        return f"{kind}{ds}{self.n[(kind, d)]:06d}"

    def new_rid(self) -> str:
        self.n["rid"] += 1
        return f"RP{self.n['rid']:08d}"

    def rel_event(self, d, sharer, ben, code, sec, *, signed=True, etype="ESTABLISH", rid=None,
                  channel="NATIONAL_APP") -> str:
        rid = rid or self.new_rid()
        self.rel[d].append(dict(event_id=self._id("EP", d), relation_id=rid, event_type=etype,
                                sharer=sharer, ben=ben, code=code, signed=signed,
                                channel=channel, sec=sec))
        return rid

    def establish(self, d, sharer, ben, code, sec=600, **kw) -> str:
        return self.rel_event(d, sharer, ben, code, sec, **kw)

    def dissolve(self, d, sharer, ben, code, rid, sec) -> str:
        self.rel_event(d, sharer, ben, code, sec, etype="DISSOLVE", rid=rid)
        return self.rel[d][-1]["event_id"]

    def transfer(self, d, sharer, ben, rid, amount, sec, *, status="SUCCESS", sides=("OUT", "IN"),
                 in_over=None) -> str:
        tid = self._id("TP", d)
        for side in sides:
            row = dict(transfer_id=tid, side=side, relation_id=rid, sharer=sharer, ben=ben,
                       amount=amount, status=status, sec=sec)
            if side == "IN" and in_over:
                row.update(in_over)
            self.trf[d].append(row)
        return tid

    def inst(self, prov: str, kind: str) -> str:
        return f"{'H' if kind == 'H' else 'P'}{prov}010000000"

    def settle(self, d, psn, wallet, sec, *, expense="OUTPATIENT", burden=None, total=None,
               inst="auto", status="NORMAL", orig=None) -> dict:
        p = self.by_idx(psn)
        if inst == "auto":
            inst = None if expense in ("RESIDENT_PREMIUM", "LTC_PREMIUM") else \
                self.inst(p.prov, "P" if expense in ("PHARMACY", "NON_MEDICAL_GOODS", "CASH_WITHDRAWAL") else "H")
        burden = wallet if burden is None else burden
        total = (burden if expense.endswith("PREMIUM") else burden * 2) if total is None else total
        row = dict(setl_id=self._id("SP", d), psn=psn, status=status, orig=orig, expense=expense,
                   fixmedins=inst, total=total, burden=burden, wallet=wallet, sec=sec)
        self.setl[d].append(row)
        return row

    def refund(self, d, orig: dict, amount, sec, orig_id=None) -> dict:
        return self.settle(d, orig["psn"], amount, sec, expense=orig["expense"],
                           burden=orig["burden"], total=orig["total"], inst=orig["fixmedins"],
                           status="REFUND", orig=orig_id or orig["setl_id"])

    # ---------------------------------------------------------------- helpers
    def family(self, code="PARENT", *, sharer_kw=None, ben_kw=None):
        a = self.person(**(sharer_kw or {}))
        b = self.relative(a, code, **(ben_kw or {}))
        return a, b

    def funded(self, d, amount, *, code="PARENT", est_sec=600, tr_sec=25_000, ben_kw=None):
        """A valid relationship established on d with one SUCCESS transfer."""
        a, b = self.family(code, ben_kw=ben_kw)
        rid = self.establish(d, a, b, code, est_sec)
        self.transfer(d, a, b, rid, amount, tr_sec)
        return a, b, rid


# ====================================================================== catalogue
def plan_day(P: Plants, d: int, rep: int) -> None:
    """All single-day scenarios of day d, and the two-day ones starting on d.

    The order of the calls is the order of the draws from the nation's random
    generator: changing it changes every generated inbox.
    """
    D = P.start + timedelta(days=d)
    _plant_relationship_rules(P, d, rep, yyyymmdd(D))
    _plant_person_rules(P, d)
    _plant_transfer_rules(P, d, P.near_fn(D))
    _plant_settlement_rules(P, d, rep)
    _plant_relationship_activity(P, d)
    _plant_matching(P, d)
    _plant_unknown_persons(P, d)
    _plant_clean_ledger(P, d)
    if d + 1 < P.days:
        _plant_two_day(P, d, d + 1)


def _plant_relationship_rules(P: Plants, d: int, rep: int, dint: int) -> None:
    """S01-S04: relationships that break the sharing rules, boundaries to the day."""
    # --- S01: not near relatives (in-laws, cousins...)
    code = OTHER_CODES[(d + rep) % len(OTHER_CODES)]
    a = P.person()
    b = P.person(home=True, birth=P.by_idx(a).birth - 250000)
    P.establish(d, a, b, code, 1200)
    for c in ("SIBLING", "GRANDPARENT_PATERNAL", "GRANDCHILD_SON"):
        a, b = P.family(c) if c != "GRANDCHILD_SON" else (None, None)
        if c == "GRANDCHILD_SON":
            a = P.person(age=62)
            b = P.relative(a, c)
        P.establish(d, a, b, c, 1300)  # S01 only where the policy of D excludes it

    # --- S02: kinship implausible, boundaries to the day
    a = P.person(birth=(P.start.year - 40) * 10000 + 315)
    b_ok = P.person(home=True, birth=P.by_idx(a).birth + 150000)            # exactly 15 years: clean
    b_bad = P.person(home=True, birth=P.by_idx(a).birth + 150000 - 1)       # one day short: S02
    P.establish(d, a, b_ok, "CHILD", 1400)
    a2 = P.person(birth=(P.start.year - 40) * 10000 + 316)
    P.establish(d, a2, b_bad, "CHILD", 1401)
    a = P.person(age=45)
    b = P.person(home=True, age=30)                                          # 'parent' younger
    P.establish(d, a, b, "PARENT", 1402)
    a = P.person(age=50)
    b = P.person(home=True, birth=P.by_idx(a).birth - 290000)                # grandparent 29 years
    P.establish(d, a, b, "GRANDPARENT_MATERNAL", 1403)
    if _valid_date(dint - 220000) and _valid_date(dint - 200000):
        for male, years in ((True, 220000), (False, 200000)):
            exact = dint - years
            young_ok = P.person(birth=exact, male=male)                     # marriageable today: clean
            partner = P.person(home=True, age=35, male=not male)
            P.establish(d, young_ok, partner, "SPOUSE", 1410)
            young_bad = P.person(birth=_next_day(exact), male=male)         # one day too young: S02
            partner = P.person(home=True, age=35, male=not male)
            P.establish(d, young_bad, partner, "SPOUSE", 1411)

    # --- S03: no commitment letter
    a, b = P.family("PARENT")
    P.establish(d, a, b, "PARENT", 1500, signed=False)

    # --- S04: self sharing (same psn_no; same certno under two psn_no)
    a = P.person(age=40)
    P.establish(d, a, a, "SPOUSE", 1600)
    a = P.person(age=41)
    twin = P.person(home=True, birth=P.by_idx(a).birth, male=P.by_idx(a).male, insutype="390")
    P.by_idx(twin).certno_of = a
    P.establish(d, a, twin, "SPOUSE", 1601)


def _plant_person_rules(P: Plants, d: int) -> None:
    """S06, S07: sharers who are not active employees, beneficiaries who are not insured."""
    # --- S06 at establishment: resident sharer, suspended sharer
    a = P.person(insutype="390")
    b = P.relative(a, "PARENT")
    P.establish(d, a, b, "PARENT", 1700)
    a = P.person(status={d: "SUSPENDED"})
    b = P.relative(a, "PARENT")
    P.establish(d, a, b, "PARENT", 1701)

    # --- S07: terminated beneficiary; settlement by a suspended person
    a = P.person()
    b = P.relative(a, "PARENT", status={d: "TERMINATED"})
    P.establish(d, a, b, "PARENT", 1800)
    s = P.person(home=True, insutype="390", status={d: "SUSPENDED"})
    P.settle(d, s, 5_000, 46_000, expense="OUTPATIENT")
    if d == 0:  # premiums are exempt: a suspended resident paying with genesis quota is clean
        a = P.person()
        b = P.relative(a, "PARENT", insutype="390", status={0: "SUSPENDED"})
        P.genesis.append((b, a, 60_000))
        P.settle(d, b, 40_000, 47_000, expense="RESIDENT_PREMIUM")


def _plant_transfer_rules(P: Plants, d: int, near: tuple[str, ...]) -> None:
    """S05, S08-S13: transfers without a valid relationship, over the limits, re-shared or cycling."""
    # --- S05: no valid relationship
    a, b = P.family("PARENT")
    P.transfer(d, a, b, P.new_rid(), 30_000, 30_000)                         # unknown relation_id
    a = P.person()
    b = P.person(home=True, birth=P.by_idx(a).birth - 250000)
    rid = P.establish(d, a, b, "COUSIN", 2000)                               # S01 relation
    P.transfer(d, a, b, rid, 20_000, 30_100)
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 3600)                               # dissolved earlier the same day
    P.transfer(d, a, b, rid, 50_000, 7_200)
    P.dissolve(d, a, b, "PARENT", rid, 10_800)
    P.transfer(d, a, b, rid, 40_000, 14_400)
    a, b = P.family("PARENT")
    b2 = P.relative(a, "PARENT")
    rid = P.establish(d, a, b, "PARENT", 3000)                               # relation of another pair
    P.establish(d, a, b2, "PARENT", 3001)
    P.transfer(d, a, b2, rid, 10_000, 30_200)
    a, b = P.family("CHILD" if "CHILD" in near else "PARENT", sharer_kw={"age": 50})
    c = "CHILD" if "CHILD" in near else "PARENT"
    rid = P.establish(d, a, b, c, 36_000)                                    # established at 10:00:00
    P.transfer(d, a, b, rid, 10_000, 35_999)                                 # one second before: S05
    P.transfer(d, a, b, rid, 10_100, 36_000)                                 # at the same instant: clean

    # --- S08: over the amount limit (2000.01) next to 2000.00 (clean)
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 900)
    P.transfer(d, a, b, rid, 200_001, 30_300)
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 901)
    P.transfer(d, a, b, rid, 200_000, 30_301)

    # --- S09: 4th SUCCESS OUT of the day (a FAILED one does not count); tie broken by id
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 902)
    P.transfer(d, a, b, rid, 10_000, 25_000)
    P.transfer(d, a, b, rid, 10_000, 25_500, status="FAILED")
    P.transfer(d, a, b, rid, 10_000, 26_000)
    P.transfer(d, a, b, rid, 10_000, 27_000)
    P.transfer(d, a, b, rid, 10_000, 27_000)                                 # same time, larger id: S09

    # --- S10: running sum over the PERSONAL opening (1500.00 exactly is clean)
    a = P.person(personal=150_000)
    b = P.relative(a, "PARENT")
    rid = P.establish(d, a, b, "PARENT", 903)
    P.transfer(d, a, b, rid, 100_000, 25_000)
    P.transfer(d, a, b, rid, 50_000, 26_000)
    P.transfer(d, a, b, rid, 1, 27_000)

    # --- S11 / S12: a beneficiary passing received quota on
    A = P.person()
    B = P.relative(A, "SPOUSE", insutype="310", personal=10_000, home=False)
    C = P.relative(B, "PARENT")
    rid_ab = P.establish(d, A, B, "SPOUSE", 904)
    rid_bc = P.establish(d, B, C, "PARENT", 905)
    P.transfer(d, A, B, rid_ab, 30_000, 25_200)
    P.transfer(d, B, C, rid_bc, 15_000, 32_400)                              # over 100.00 personal: S11 + S12
    A = P.person()
    B = P.relative(A, "SPOUSE", insutype="310", personal=500_000, home=False)
    C = P.relative(B, "PARENT")
    rid_ab = P.establish(d, A, B, "SPOUSE", 906)
    rid_bc = P.establish(d, B, C, "PARENT", 907)
    P.transfer(d, A, B, rid_ab, 30_000, 25_200)
    P.transfer(d, B, C, rid_bc, 15_000, 32_400)                              # within personal: S12 only
    if d == 0:  # S11 alone: quota held from genesis, nothing received in the window
        A = P.person()
        B = P.relative(A, "SPOUSE", insutype="310", personal=10_000, home=False)
        C = P.relative(B, "PARENT")
        P.genesis.append((B, A, 50_000))
        rid_bc = P.establish(d, B, C, "PARENT", 908)
        P.transfer(d, B, C, rid_bc, 15_000, 32_400)

    # --- S13: round trip A->B->A, and a 3-cycle A->B->C->A
    A = P.person()
    B = P.relative(A, "SPOUSE", insutype="310", home=False)
    r1 = P.establish(d, A, B, "SPOUSE", 910)
    r2 = P.establish(d, B, A, "SPOUSE", 911)
    P.transfer(d, A, B, r1, 20_000, 28_800)
    P.transfer(d, B, A, r2, 20_000, 32_400)
    A = P.person(age=55, male=True)
    B = P.person(birth=P.by_idx(A).birth + 10000, male=False)
    C = P.person(birth=P.by_idx(A).birth + 280000)
    r1 = P.establish(d, A, B, "SPOUSE", 912)
    r2 = P.establish(d, B, C, "CHILD", 913)
    r3 = P.establish(d, C, A, "PARENT", 914)
    P.transfer(d, A, B, r1, 10_000, 28_800)
    P.transfer(d, B, C, r2, 10_000, 32_400)
    P.transfer(d, C, A, r3, 10_000, 36_100)


def _plant_settlement_rules(P: Plants, d: int, rep: int) -> None:
    """S14-S18, S20: held settlements, overspending and unmatched refunds."""
    # --- S14-S17: held settlements
    s = P.person(home=True, insutype="390")
    P.settle(d, s, 8_000, 45_000, expense="COMMERCIAL_INSURANCE", inst=P.inst(P.by_idx(s).prov, "H"))
    P.settle(d, s, 8_000, 45_100, expense=("NON_MEDICAL_GOODS", "CASH_WITHDRAWAL")[(d + rep) % 2])
    P.settle(d, s, 8_000, 45_150, expense="NON_MEDICAL_GOODS",
             inst=f"P{P.by_idx(s).prov}010099903")                           # S14 + S15 (unknown institution)
    s = P.person(home=True, insutype="390")
    pv = P.by_idx(s).prov
    P.settle(d, s, 6_000, 45_200, expense="OUTPATIENT", inst=P.inst(pv, "P"))
    P.settle(d, s, 6_000, 45_300, expense="PHARMACY", inst=P.inst(pv, "H"))
    P.settle(d, s, 6_000, 45_400, expense="INPATIENT", inst=f"H{pv}0100888{rep % 100:02d}")
    P.settle(d, s, 6_000, 45_500, expense="OUTPATIENT", inst=f"H{pv}010099901")
    P.settle(d, s, 6_000, 45_600, expense="PHARMACY", inst=f"P{pv}010099902")
    s = P.person(home=True, insutype="390")
    P.settle(d, s, 20_000, 45_700, expense="RESIDENT_PREMIUM", burden=40_000, total=40_000)
    P.settle(d, s, 12_001, 45_800, expense="LTC_PREMIUM", burden=12_000, total=12_000)
    P.settle(d, s, 10_001, 45_900, expense="OUTPATIENT", burden=10_000, total=30_000)

    # --- S18 (boundary) and S20 on a held original
    a, b, rid = P.funded(d, 50_000)
    over = P.settle(d, b, 50_001, 46_800, expense="PHARMACY")              # 500.01 > 500.00: S18
    P.settle(d, b, 50_000, 50_400, expense="PHARMACY")                      # exactly all: clean
    P.refund(d, over, 10_000, 54_000)                                        # refund of a held one: S20

    # --- S20: refunds beyond what remains, fully refunded, unknown original
    a, b, rid = P.funded(d, 80_000)
    o = P.settle(d, b, 30_000, 46_800, expense="OUTPATIENT")
    P.refund(d, o, 20_000, 50_400)                                           # valid
    P.refund(d, o, 10_001, 54_000)                                           # 100.01 > 100.00 left: S20
    P.refund(d, o, 10_000, 57_600)                                           # exactly what is left: valid
    P.refund(d, o, 1, 61_200)                                                # fully refunded: S20
    P.refund(d, o, 5_000, 64_800, orig_id=f"SPX{rep:04d}{d:03d}NOSUCH")      # unknown original: S20


def _plant_relationship_activity(P: Plants, d: int) -> None:
    """S21, and the rulings on activity: an invalid relationship is active until
    dissolved; the latest ESTABLISH at or before t defines validity."""
    # --- S21: dissolving what is not active
    a, b = P.family("PARENT")
    P.dissolve(d, a, b, "PARENT", P.new_rid(), 80_000)                       # never established
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1000)
    P.dissolve(d, a, b, "PARENT", rid, 79_000)                               # effective
    P.dissolve(d, a, b, "PARENT", rid, 80_100)                               # again: S21
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1002)
    P.transfer(d, a, b, rid, 20_000, 30_000)                                 # clean; its lot stays open
    P.dissolve(d, b, a, "PARENT", rid, 80_300)                               # persons swapped: S21, does nothing
    P.dissolve(d, a, a, "PARENT", rid, 80_400)                               # sharer written twice: S21

    # --- rulings of 2026-12-02: an invalid relationship is active until dissolved
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1001, signed=False)                 # S03: not valid
    P.transfer(d, a, b, rid, 30_000, 30_000)                                 # S05 (not valid); lot of 300.00
    P.settle(d, b, 10_000, 46_000, expense="OUTPATIENT")                     # spends 100.00 of it
    P.dissolve(d, a, b, "PARENT", rid, 80_200)                               # effective: 200.00 back, no S21
    # --- the latest ESTABLISH at or before t defines validity
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1003)                               # valid
    P.establish(d, a, b, "PARENT", 1004, signed=False, rid=rid)              # S03: from now on not valid
    P.transfer(d, a, b, rid, 10_000, 30_000)                                 # S05
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1005, signed=False)                 # S03
    P.establish(d, a, b, "PARENT", 1006, rid=rid)                            # valid again
    P.transfer(d, a, b, rid, 10_000, 30_000)                                 # clean


def _plant_matching(P: Plants, d: int) -> None:
    """X01-X04: the two sides of a transfer disagree."""
    # --- X01-X04: two-sided matching
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1100)
    P.transfer(d, a, b, rid, 12_300, 30_400, sides=("OUT",))                # X01
    P.transfer(d, a, b, rid, 12_400, 30_500, sides=("IN",))                 # X02
    P.transfer(d, a, b, rid, 50_000, 30_600, in_over={"amount": 50_010})    # X03
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1101)
    P.transfer(d, a, b, rid, 20_000, 30_700, in_over={"sec": 30_701})       # X04 time
    P.transfer(d, a, b, rid, 20_000, 30_800, in_over={"status": "FAILED"})  # X04 status
    P.transfer(d, a, b, rid, 20_000, 30_900, in_over={"relation_id": P.new_rid()})  # X04 relation


def _plant_unknown_persons(P: Plants, d: int) -> None:
    """F06: records naming persons nobody delivered."""
    # --- F06: unknown persons
    ghost = P.person(home=True, ghost=True)
    P.settle(d, ghost, 7_000, 47_000, expense="OUTPATIENT")
    a = P.person()
    ghost = P.person(home=True, ghost=True, birth=P.by_idx(a).birth - 250000)
    P.establish(d, a, ghost, "PARENT", 1900)


def _plant_clean_ledger(P: Plants, d: int) -> None:
    """A clean but demanding ledger: two sharers FIFO, a dissolution, a refund to the sharer."""
    # --- clean but demanding ledger: two sharers FIFO, dissolution, refund to the sharer
    A = P.person(age=45, male=True)
    A2 = P.person(birth=P.by_idx(A).birth + 20000, male=False)
    K = P.person(home=True, insutype="390", birth=P.by_idx(A).birth + 250000)
    r1 = P.establish(d, A, K, "CHILD", 1110)
    r2 = P.establish(d, A2, K, "CHILD", 1111)
    P.transfer(d, A2, K, r2, 30_000, 25_000)
    P.transfer(d, A, K, r1, 20_000, 25_100)
    o = P.settle(d, K, 40_000, 46_000, expense="INPATIENT", burden=60_000)  # 300 from A2, 100 from A
    P.dissolve(d, A2, K, "CHILD", r2, 50_000)                                # A2's lot closed (0 left)
    P.refund(d, o, 35_000, 54_000)                                           # 100 to A's lot, 250 to A2 (closed)
    P.settle(d, K, 12_000, 60_000, expense="PHARMACY")


def _plant_two_day(P: Plants, d: int, e: int) -> None:
    """Scenarios that start on d and end on the next day e."""
    # S06 on a transfer: the sharer is suspended the next day
    a = P.person(status={e: "SUSPENDED"})
    b = P.relative(a, "PARENT")
    rid = P.establish(d, a, b, "PARENT", 1200)
    P.transfer(d, a, b, rid, 30_000, 30_000)
    P.transfer(e, a, b, rid, 20_000, 30_000)
    # S12 across days (inside the window)
    A = P.person()
    B = P.relative(A, "SPOUSE", insutype="310", home=False)
    C = P.relative(B, "PARENT")
    r1 = P.establish(d, A, B, "SPOUSE", 1201)
    r2 = P.establish(d, B, C, "PARENT", 1202)
    P.transfer(d, A, B, r1, 25_000, 39_600)
    P.transfer(e, B, C, r2, 5_000, 28_800)
    # S13 across days
    A = P.person()
    B = P.relative(A, "SPOUSE", insutype="310", home=False)
    r1 = P.establish(d, A, B, "SPOUSE", 1203)
    r2 = P.establish(d, B, A, "SPOUSE", 1204)
    P.transfer(d, A, B, r1, 25_000, 39_600)
    P.transfer(e, B, A, r2, 5_000, 28_800)
    # S20 across days: refund in full next day (valid), then once more (S20); refund of a held one
    a, b, rid = P.funded(d, 60_000)
    o = P.settle(d, b, 40_000, 50_000, expense="PHARMACY")
    over = P.settle(d, b, 90_000, 52_000, expense="PHARMACY")             # S18
    P.refund(e, o, 40_000, 50_000)
    P.refund(e, o, 100, 51_000)
    P.refund(e, over, 100, 52_000)
    # S05 on a relationship dissolved the day before; S21 dissolving it again
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "PARENT", 1205)
    P.transfer(d, a, b, rid, 30_000, 30_000)
    P.dissolve(d, a, b, "PARENT", rid, 82_000)
    P.transfer(e, a, b, rid, 10_000, 30_000)
    P.dissolve(e, a, b, "PARENT", rid, 82_000)
    # an invalid relationship (S01) funded on d and dissolved on d+1: effective, lot closed
    a, b = P.family("PARENT")
    rid = P.establish(d, a, b, "COUSIN", 1207)
    P.transfer(d, a, b, rid, 25_000, 30_000)                                 # S05
    P.dissolve(e, a, b, "COUSIN", rid, 82_100)
    # S07 the next day; the premium is exempt and is paid from yesterday's quota
    a = P.person()
    b = P.relative(a, "PARENT", insutype="390", status={e: "SUSPENDED"})
    rid = P.establish(d, a, b, "PARENT", 1206)
    P.transfer(d, a, b, rid, 100_000, 30_000)
    P.settle(d, b, 10_000, 50_000, expense="PHARMACY")
    P.settle(e, b, 10_000, 50_000, expense="OUTPATIENT")                    # S07, held
    P.settle(e, b, 40_000, 51_000, expense="RESIDENT_PREMIUM")              # exempt: settled


# ====================================================================== engine
class Engine:
    """Judges planted records exactly as rules.md + docs/spec-readings.md say."""

    def __init__(self, P: Plants, info: dict, start: date, policy_fn, institutions: dict):
        self.P, self.info, self.start, self.policy_fn = P, info, start, policy_fn
        self.inst = institutions  # code -> (type, designated_from, designated_to)
        self.relreg: dict[str, list] = defaultdict(list)  # rid -> [(t, kind, ok, sharer, ben)]
        self.in_hist: list[tuple] = []   # (t, sharer, ben)  SUCCESS IN records
        self.out_hist: list[tuple] = []  # (t, sharer, ben)  SUCCESS OUT records

    # person facts on day d
    def known(self, i):
        return not self.info[i]["ghost"]

    def prov(self, i):
        return self.info[i]["prov"]

    def active_emp(self, i, d):
        p = self.info[i]
        return p["insutype"] == "310" and p["status"](d) == "ACTIVE"

    def s02(self, code, s, t, dint) -> bool:
        bs, bt = self.info[s]["birth"], self.info[t]["birth"]
        if code == "PARENT":
            return not (bt + 150000 <= bs)
        if code == "CHILD":
            return not (bs + 150000 <= bt)
        if code.startswith("GRANDPARENT"):
            return not (bt + 300000 <= bs)
        if code.startswith("GRANDCHILD"):
            return not (bs + 300000 <= bt)
        if code == "SPOUSE":
            def ok(i):
                b = self.info[i]["birth"]
                return b + (220000 if self.info[i]["male"] else 200000) <= dint
            return not (ok(s) and ok(t))
        return False

    def _latest_establish(self, evs: list, t: int, upto: int | None = None) -> int | None:
        """Index in evs of the latest ESTABLISH at or before t, valid or not (rules.md §2:
        "any loaded ESTABLISH event establishes its relation_id ... the latest at or
        before t defines its sharer, beneficiary and validity at t"). evs is in
        processing order: time, ESTABLISH before DISSOLVE at the same second, event_id."""
        last = None
        for k, e in enumerate(evs[:upto]):
            if e[1] == "E" and e[0] <= t:
                last = k
        return last

    def active(self, rid, sharer, ben, t) -> bool:
        """No S05: established at or before t, its latest ESTABLISH valid and naming these
        persons, and no effective DISSOLVE after that ESTABLISH at or before t."""
        evs = self.relreg.get(rid, [])
        k = self._latest_establish(evs, t)
        if k is None:
            return False
        e = evs[k]
        if not e[2] or (e[3], e[4]) != (sharer, ben):
            return False
        return not any(x[1] == "D" and x[2] and x[0] <= t for x in evs[k + 1:])

    def dissolve_effective(self, rid, sharer, ben, t) -> bool:
        """rules.md §6: a DISSOLVE of an active relationship (valid or not) naming its
        sharer and beneficiary is effective; else S21 and it does nothing."""
        evs = self.relreg.get(rid, [])
        k = self._latest_establish(evs, t)
        if k is None:
            return False
        e = evs[k]
        if (e[3], e[4]) != (sharer, ben):
            return False
        return not any(x[1] == "D" and x[2] for x in evs[k + 1:])

    def day(self, d: int, held_at_start: set, personal_open: dict) -> dict:
        P, D = self.P, self.start + timedelta(days=d)
        pol = self.policy_fn(D)
        near = set(pol.near_relatives)
        dint = yyyymmdd(D)
        ds = D.isoformat()
        base_t = d * DAY
        found = []

        def f(code, prov, rid):
            found.append((ds, code, prov, rid))

        # relationships, in (time, event_id) order
        dissolves = []
        for ev in sorted(P.rel[d], key=lambda e: (e["sec"], e["event_type"] != "ESTABLISH",
                                                  e["event_id"])):
            s, b, t = ev["sharer"], ev["ben"], base_t + ev["sec"]
            fp = self.prov(s)
            if ev["event_type"] == "ESTABLISH":
                codes = []
                if not (self.known(s) and self.known(b)):
                    codes.append("F06")
                if ev["code"] not in near:
                    codes.append("S01")
                elif self.known(s) and self.known(b) and self.s02(ev["code"], s, b, dint):
                    codes.append("S02")
                if not ev["signed"]:
                    codes.append("S03")
                if s == b or (self.known(s) and self.known(b) and self.info[s]["certno"] == self.info[b]["certno"]):
                    codes.append("S04")
                if self.known(s) and not self.active_emp(s, d):
                    codes.append("S06")
                if self.known(b) and self.info[b]["status"](d) != "ACTIVE":
                    codes.append("S07")
                for c in codes:
                    f(c, fp, ev["event_id"])
                self.relreg[ev["relation_id"]].append((t, "E", not codes, s, b))
            else:
                eff = self.dissolve_effective(ev["relation_id"], s, b, t)
                self.relreg[ev["relation_id"]].append((t, "D", eff, s, b))
                if eff:
                    dissolves.append((b, s, ev["sec"], ev["event_id"]))
                else:
                    f("S21", fp, ev["event_id"])

        # transfers: matching
        rows = P.trf[d]
        by_tid = defaultdict(dict)
        for row in rows:
            by_tid[row["transfer_id"]][row["side"]] = row
        for tid, sides in sorted(by_tid.items()):
            o, i = sides.get("OUT"), sides.get("IN")
            if o and not i:
                f("X01", self.prov(o["sharer"]), tid)
            elif i and not o:
                f("X02", self.prov(i["ben"]), tid)
            elif o["amount"] != i["amount"]:
                f("X03", self.prov(o["sharer"]), tid)
            elif any(o[k] != i[k] for k in ("relation_id", "sharer", "ben", "status", "sec")):
                f("X04", self.prov(o["sharer"]), tid)
        ins = [r for r in rows if r["side"] == "IN" and r["status"] == "SUCCESS"]
        for r in ins:
            self.in_hist.append((base_t + r["sec"], r["sharer"], r["ben"]))
        outs = sorted((r for r in rows if r["side"] == "OUT" and r["status"] == "SUCCESS"),
                      key=lambda r: (r["sharer"], r["sec"], r["transfer_id"]))
        for r in outs:
            self.out_hist.append((base_t + r["sec"], r["sharer"], r["ben"]))
        win = (d - pol.forwarding_window_days + 1) * DAY
        count, run = defaultdict(int), defaultdict(int)
        for r in outs:
            s, b, t, tid = r["sharer"], r["ben"], base_t + r["sec"], r["transfer_id"]
            fp = self.prov(s)
            count[s] += 1
            run[s] += r["amount"]
            if not self.active(r["relation_id"], s, b, t):
                f("S05", fp, tid)
            if self.known(s) and not self.active_emp(s, d):
                f("S06", fp, tid)
            if r["amount"] > int(pol.max_transfer_amount * 100):
                f("S08", fp, tid)
            if count[s] > pol.max_daily_out_transfers:
                f("S09", fp, tid)
            if run[s] > personal_open.get(s, 0):
                held = s in held_at_start or any(x[2] == s and base_t <= x[0] < t for x in self.in_hist)
                f("S11" if held else "S10", fp, tid)
            if any(x[2] == s and x[1] != b and win <= x[0] < t for x in self.in_hist):
                f("S12", fp, tid)
            if self._cycle(b, s, t, win, pol.max_cycle_length):
                f("S13", fp, tid)

        # settlements
        held = set()
        for st in P.setl[d]:
            if st["status"] != "NORMAL":
                continue
            codes = []
            p = st["psn"]
            if not self.known(p):
                codes.append("F06")
            elif st["expense"] in ("OUTPATIENT", "INPATIENT", "PHARMACY") and self.info[p]["status"](d) != "ACTIVE":
                codes.append("S07")
            if st["expense"] in ("COMMERCIAL_INSURANCE", "CASH_WITHDRAWAL", "NON_MEDICAL_GOODS"):
                codes.append("S14")
            if self._s15(st, D):
                codes.append("S15")
            if st["expense"] in ("RESIDENT_PREMIUM", "LTC_PREMIUM"):
                if st["wallet"] != st["burden"]:
                    codes.append("S16")
            elif st["wallet"] > st["burden"]:
                codes.append("S17")
            for c in codes:
                f(c, self.prov(p), st["setl_id"])
            if codes:
                held.add(st["setl_id"])
        return {"findings": found, "held": held, "dissolves": dissolves}

    def _s15(self, st: dict, D: date) -> bool:
        """S15: OUTPATIENT/INPATIENT not at a HOSPITAL, PHARMACY not at a PHARMACY, or the
        institution unknown or not designated on D (this last clause for every settlement
        that names an institution, ineligible types included)."""
        code = st["fixmedins"]
        ins_ = self.inst.get(code) if code else None
        if st["expense"] in ("OUTPATIENT", "INPATIENT", "PHARMACY"):
            want = "PHARMACY" if st["expense"] == "PHARMACY" else "HOSPITAL"
            if ins_ is None or ins_[0] != want:
                return True
        if code:
            return ins_ is None or not (ins_[1] <= D and (ins_[2] is None or D <= ins_[2]))
        return False

    def _cycle(self, start, target, t_close, win, max_len) -> bool:
        """A time-increasing path start -> ... -> target, all edges in [win, t_close)."""
        edges = defaultdict(list)
        for (t, s, b) in self.out_hist:
            if win <= t < t_close:
                edges[s].append((t, b))

        def dfs(v, t_prev, depth):
            if depth >= max_len:
                return False
            for (t, b) in edges.get(v, ()):
                if t > t_prev:
                    if b == target or dfs(b, t, depth + 1):
                        return True
            return False
        return dfs(start, -1, 1)
