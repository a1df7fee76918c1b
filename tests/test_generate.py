"""The synthetic nation (synth/generate.py), checked from the files it writes.

Everything here reads the inbox back from disk with its own small parsers:
manifests against bytes, certno check characters, timestamps on D in
Asia/Shanghai, and an independent replay of the quota ledger (rules.md §6) over
a clean inbox that must reproduce every delivered QUOTA closing balance.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.certno import is_valid
from contracts.codes import PROVINCES, RULES
from synth.generate import generate
from synth.writer import STYLES, Style, amount_expr, time_expr

START = date(2026, 11, 1)
DAYS = 3
PERSONS = 2000
SHANGHAI = timezone(timedelta(hours=8))


# ------------------------------------------------------------------ readers
def read_rows(folder: Path, fname: str, encoding: str) -> list[dict]:
    """Rows of one data file as dicts of canonical text (CSV text or Parquet values)."""
    data = (folder / fname).read_bytes()
    if fname.endswith(".parquet"):
        t = pq.read_table(io.BytesIO(data))
        out = []
        for row in t.to_pylist():
            out.append({k: _text(v) for k, v in row.items()})
        return out
    text = data.decode("utf-8-sig" if encoding == "utf-8" else "gb18030")
    return [dict(r) for r in csv.DictReader(io.StringIO(text, newline=""))]


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def fen(text: str) -> int:
    return int(Decimal(text) * 100)


def shanghai(ts: str) -> datetime:
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert t.tzinfo is not None, f"timestamp without offset: {ts}"
    return t.astimezone(SHANGHAI)


def truth_of(inbox: Path) -> list[dict]:
    with open(inbox / "planted_truth.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def deliveries(inbox: Path):
    """(date, province, folder, manifest) of every delivered folder with a manifest."""
    for dfold in sorted(p for p in inbox.iterdir() if p.name[:2] == "20"):
        for pfold in sorted(dfold.iterdir()):
            mf = pfold / "manifest.json"
            if mf.exists():
                yield dfold.name, pfold.name, pfold, json.loads(mf.read_text("utf-8"))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("nation")
    stats = generate(out, START, DAYS, PERSONS, seed=7, violation_rate=0.01)
    return out, stats


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, START, 4, PERSONS, seed=3, violation_rate=0.0)
    return out


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ tests
def test_same_seed_gives_byte_identical_inbox(inbox, tmp_path):
    out, _ = inbox
    again = tmp_path / "again"
    generate(again, START, DAYS, PERSONS, seed=7, violation_rate=0.01)
    assert digest_tree(out) == digest_tree(again)
    other = tmp_path / "other"
    generate(other, START, 1, PERSONS, seed=8, violation_rate=0.01)
    a, b = digest_tree(out), digest_tree(other)
    day1 = [k for k in b if k.startswith(START.isoformat()) and k.endswith("persons.csv")]
    assert any(a[k] != b[k] for k in day1), "a different seed should give a different nation"


def test_layout_and_manifests_match_the_bytes(inbox):
    out, _ = inbox
    assert (out / "reference" / "regions.csv").exists()
    assert (out / "reference" / "institutions.csv").exists()
    truth = {(t["business_date"], t["rule_code"], t["province"], t["record_id"]) for t in truth_of(out)}
    checked = 0
    for ds, p, folder, m in deliveries(out):
        assert m["province"] == p and m["business_date"] == ds
        assert m["encoding"] in ("utf-8", "gb18030")
        assert sorted(k.split(".")[0] for k in m["files"]) == sorted(
            ["persons", "relationships", "transfers", "settlements", "balances"])
        for fname, meta in m["files"].items():
            planted = {c for c in ("F02", "F03") if (ds, c, p, fname) in truth}
            path = folder / fname
            if "F02" in planted:
                assert not path.exists() or meta["rows"] != len(read_rows(folder, fname, m["encoding"])) \
                    or meta["sha256"] != hashlib.sha256(path.read_bytes()).hexdigest()
                continue
            assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), (ds, p, fname)
            if "F03" in planted:
                continue
            assert meta["rows"] == len(read_rows(folder, fname, m["encoding"])), (ds, p, fname)
            checked += 1
    assert checked > DAYS * 30 * 4


def test_every_rule_code_is_planted(inbox):
    out, stats = inbox
    codes = {t["rule_code"] for t in truth_of(out)}
    assert codes == set(RULES), f"missing: {sorted(set(RULES) - codes)}"
    rows = truth_of(out)
    assert rows == sorted(rows, key=lambda t: (t["business_date"], t["rule_code"], t["province"], t["record_id"]))
    # boundaries: 2000.00 is delivered and clean, 2000.01 is planted
    s08 = {t["record_id"] for t in rows if t["rule_code"] == "S08"}
    amounts = defaultdict(set)
    for ds, p, folder, m in deliveries(out):
        fname = next(k for k in m["files"] if k.startswith("transfers"))
        for r in read_rows(folder, fname, m["encoding"]):
            if r["side"] == "OUT" and r["status"] == "SUCCESS" and r["transfer_id"]:
                try:
                    amounts[fen(r["amount"])].add(r["transfer_id"])
                except Exception:
                    pass
    assert amounts[200_001] and amounts[200_001] <= s08
    assert amounts[200_000] and not (amounts[200_000] & s08)


def test_gb18030_parquet_bom_and_utc_deliveries_exist(inbox):
    out, _ = inbox
    seen = defaultdict(int)
    for ds, p, folder, m in deliveries(out):
        if m["encoding"] == "gb18030":
            raw = (folder / "persons.csv").read_bytes()
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")  # Chinese names in an extra column
            assert "psn_name" in raw.decode("gb18030").splitlines()[0]
            seen["gb18030"] += 1
        if "transfers.parquet" in m["files"]:
            t = pq.read_table(folder / "transfers.parquet")
            assert t.schema.field("amount").type == pa.decimal128(18, 2)
            assert t.schema.field("transfer_time").type == pa.timestamp("us", tz="Asia/Shanghai")
            seen["parquet"] += 1
        if "balances.csv" in m["files"] and (folder / "balances.csv").read_bytes().startswith(b"\xef\xbb\xbf"):
            seen["bom"] += 1
        rel = folder / "relationships.csv"
        if rel.exists() and "Z\n" in rel.read_text("utf-8-sig", errors="replace"):
            seen["utc"] += 1
    assert seen["gb18030"] and seen["parquet"] and seen["bom"] and seen["utc"], dict(seen)


def test_certno_and_timestamps_of_every_loadable_row(inbox):
    """Rows not planted as F04 have valid certno check characters and times on D."""
    out, _ = inbox
    f04 = {(t["business_date"], t["province"], t["record_id"]) for t in truth_of(out) if t["rule_code"] == "F04"}
    n_cert = n_ts = 0
    for ds, p, folder, m in deliveries(out):
        D = date.fromisoformat(ds)
        for fname in m["files"]:
            if not (folder / fname).exists():
                continue
            try:
                rows = read_rows(folder, fname, m["encoding"])
            except Exception:
                continue  # planted F03
            for i, r in enumerate(rows, start=1):
                rid = r.get("psn_no") if fname.startswith("persons") else \
                    r.get("event_id") or r.get("transfer_id") or r.get("setl_id")
                if (ds, p, rid) in f04 or (ds, p, f"row:{i}") in f04:
                    continue
                if fname.startswith("persons"):
                    assert is_valid(r["certno"]), r
                    assert r["certno"][6:14] <= D.strftime("%Y%m%d")
                    assert r["psn_no"][:2] == p and len(r["psn_no"]) == 20 and r["psn_no"].isdigit()
                    n_cert += 1
                for col in ("event_time", "transfer_time", "setl_time"):
                    if col in r:
                        assert shanghai(r[col]).date() == D, (ds, p, fname, r[col])
                        n_ts += 1
    assert n_cert > 1000 and n_ts > 1000


def test_clean_inbox_plants_nothing(clean):
    assert truth_of(clean) == []
    folders = [(ds, p) for ds, p, _, _ in deliveries(clean)]
    assert len(folders) == 4 * len(PROVINCES)


def test_clean_inbox_replays_to_the_delivered_balances(clean):
    """An independent replay of §6 over the written files reproduces balances.csv.

    Also: no clean wallet ever spends more than it holds, every refund is valid,
    every referenced person is delivered, and PERSONAL covers each sharer's day.
    """
    lots: dict[str, list[dict]] = defaultdict(list)  # beneficiary -> lots in order
    settled: dict[str, dict] = {}
    active: dict[str, tuple] = {}
    known: set[str] = set()
    days = sorted(p.name for p in clean.iterdir() if p.name[:2] == "20")
    for di, ds in enumerate(days):
        D = date.fromisoformat(ds)
        data = defaultdict(list)
        for d2, p, folder, m in deliveries(clean):
            if d2 != ds:
                continue
            for fname in m["files"]:
                for r in read_rows(folder, fname, m["encoding"]):
                    r["_prov"] = p
                    data[fname.split(".")[0]].append(r)
        known |= {r["psn_no"] for r in data["persons"]}
        for r in data["relationships"] + data["transfers"]:
            assert r["sharer_psn_no"] in known and r["beneficiary_psn_no"] in known
        for r in data["settlements"]:
            assert r["psn_no"] in known
        quota = [r for r in data["balances"] if r["account"] == "QUOTA"]
        for r in quota:
            assert r["psn_no"] in known and r["sharer_psn_no"] in known
        if di == 0:
            for r in sorted(quota, key=lambda r: r["sharer_psn_no"]):
                if fen(r["opening_balance"]):
                    lots[r["psn_no"]].append({"sharer": r["sharer_psn_no"], "rem": fen(r["opening_balance"]), "closed": False})
        opening_now = defaultdict(int)
        for b, ls in lots.items():
            for lot in ls:
                if not lot["closed"]:
                    opening_now[(b, lot["sharer"])] += lot["rem"]
        # PERSONAL opening covers the day's SUCCESS OUT transfers
        pers = {r["psn_no"]: fen(r["opening_balance"]) for r in data["balances"] if r["account"] == "PERSONAL"}
        spent = defaultdict(int)
        for r in data["transfers"]:
            if r["side"] == "OUT" and r["status"] == "SUCCESS":
                spent[r["sharer_psn_no"]] += fen(r["amount"])
        for s, amt in spent.items():
            assert amt <= pers[s]
        for r in data["relationships"]:
            t = shanghai(r["event_time"])
            if r["event_type"] == "ESTABLISH":
                active[r["relation_id"]] = (r["sharer_psn_no"], r["beneficiary_psn_no"], t, None)
        events = []
        for r in data["transfers"]:
            if r["side"] == "IN" and r["status"] == "SUCCESS":
                events.append((shanghai(r["transfer_time"]), 1, r["transfer_id"], "IN", r))
            if r["side"] == "OUT" and r["status"] == "SUCCESS":
                s, b, t_est, t_dis = active[r["relation_id"]]
                t = shanghai(r["transfer_time"])
                assert (s, b) == (r["sharer_psn_no"], r["beneficiary_psn_no"]) and t_est <= t
                assert t_dis is None or t < t_dis
        for r in data["settlements"]:
            events.append((shanghai(r["setl_time"]), 2 if r["status"] == "NORMAL" else 3, r["setl_id"], r["status"], r))
        for r in data["relationships"]:
            if r["event_type"] == "DISSOLVE":
                events.append((shanghai(r["event_time"]), 4, r["event_id"], "DISSOLVE", r))
        for t, _, rid, kind, r in sorted(events, key=lambda e: e[:3]):
            if kind == "IN":
                lots[r["beneficiary_psn_no"]].append({"sharer": r["sharer_psn_no"], "rem": fen(r["amount"]), "closed": False})
            elif kind == "NORMAL":
                w, wallet = fen(r["wallet_pay"]), lots[r["psn_no"]]
                assert w <= sum(l["rem"] for l in wallet if not l["closed"]), f"overspend {rid}"
                assert w <= fen(r["personal_burden"]) <= fen(r["total_amount"])
                cons = []
                for lot in wallet:
                    take = min(lot["rem"], w) if not lot["closed"] else 0
                    if take:
                        lot["rem"] -= take
                        w -= take
                        cons.append([lot, take])
                settled[rid] = {"w": fen(r["wallet_pay"]), "left": fen(r["wallet_pay"]), "cons": cons}
            elif kind == "REFUND":
                o, w = settled[r["orig_setl_id"]], fen(r["wallet_pay"])
                assert w <= o["left"], f"refund beyond what remains {rid}"
                o["left"] -= w
                for c in reversed(o["cons"]):
                    give = min(c[1], w)
                    c[1] -= give
                    w -= give
                    if not c[0]["closed"]:
                        c[0]["rem"] += give
            else:
                s, b, t_est, _ = active[r["relation_id"]]
                active[r["relation_id"]] = (s, b, t_est, t)
                for lot in lots[r["beneficiary_psn_no"]]:
                    if lot["sharer"] == r["sharer_psn_no"]:
                        lot["rem"], lot["closed"] = 0, True
        computed = defaultdict(int)
        for b, ls in lots.items():
            for lot in ls:
                if not lot["closed"] and lot["rem"]:
                    computed[(b, lot["sharer"])] += lot["rem"]
        delivered = {(r["psn_no"], r["sharer_psn_no"]): fen(r["closing_balance"]) for r in quota}
        opened = {(r["psn_no"], r["sharer_psn_no"]): fen(r["opening_balance"]) for r in quota}
        assert {k: v for k, v in delivered.items() if v} == dict(computed), ds
        if di:
            assert {k: v for k, v in opened.items() if v} == {k: v for k, v in opening_now.items() if v}, ds
        assert sum(computed.values()) > 0


# ------------------------------------------------------------------ properties of the formatters
@settings(max_examples=200, deadline=None)
@given(fen_=st.integers(min_value=0, max_value=10**12), style=st.sampled_from(["2", "1", "0"]))
def test_amount_text_is_exact(fen_, style):
    text = pl.DataFrame({"a": [fen_]}).select(amount_expr("a", Style(amounts=style))).item()
    assert int(Decimal(text) * 100) == fen_
    assert len(text.partition(".")[2]) <= 2


@settings(max_examples=200, deadline=None)
@given(sec=st.integers(min_value=0, max_value=86_399), ts=st.sampled_from(["+08:00", "Z", "+00:00"]),
       day=st.dates(min_value=date(2021, 1, 1), max_value=date(2030, 12, 31)))
def test_timestamps_fall_on_the_business_date_in_shanghai(sec, ts, day):
    text = pl.DataFrame({"s": [sec]}).select(time_expr("s", day, Style(ts=ts))).item()
    t = shanghai(text)
    assert t.date() == day and t.hour * 3600 + t.minute * 60 + t.second == sec


def test_province_styles_cover_every_kind():
    assert {s.encoding for s in STYLES.values()} == {"utf-8", "gb18030"}
    assert any(s.parquet for s in STYLES.values()) and any(s.bom for s in STYLES.values())


def test_planted_truth_follows_the_rulings_of_2026_12_02(inbox):
    """rules.md §2/§6 as clarified (issue 10), read from the written files and the truth:
    a DISSOLVE of an invalid relationship is effective (no S21); one naming other persons
    than its relationship's is S21; the latest ESTABLISH decides S05."""
    out, _ = inbox
    truth = {(t["rule_code"], t["record_id"]) for t in truth_of(out)}
    events, outs = defaultdict(list), []
    for _ds, _p, folder, m in deliveries(out):
        for fname in m["files"]:
            if fname.startswith("relationships"):
                for r in read_rows(folder, fname, m["encoding"]):
                    events[r["relation_id"]].append(
                        (shanghai(r["event_time"]), r["event_type"] == "DISSOLVE", r["event_id"], r))
            elif fname.startswith("transfers"):
                outs += [r for r in read_rows(folder, fname, m["encoding"])
                         if r["side"] == "OUT" and r["status"] == "SUCCESS"]
    invalid = ("S01", "S02", "S03", "S04", "S06", "S07", "F06")   # rules.md §1, §2
    is_valid = lambda r: not any((c, r["event_id"]) in truth for c in invalid)  # noqa: E731
    persons = lambda r: (r["sharer_psn_no"], r["beneficiary_psn_no"])          # noqa: E731
    seen = defaultdict(int)
    for evs in events.values():
        evs.sort(key=lambda e: e[:3])
        latest, dissolved = None, False
        for _t, is_dissolve, eid, r in evs:
            if not is_dissolve:
                latest, dissolved = r, False
                continue
            if latest is None or dissolved:
                continue
            if persons(r) != persons(latest):
                seen["other persons"] += 1
                assert ("S21", eid) in truth, eid
            else:
                dissolved = True
                if not is_valid(latest):
                    seen["invalid dissolved"] += 1
                    assert ("S21", eid) not in truth, eid
    for o in outs:
        est = [e for e in events.get(o["relation_id"], []) if not e[1] and e[0] <= shanghai(o["transfer_time"])]
        if len(est) >= 2 and persons(est[-1][3]) == (o["sharer_psn_no"], o["beneficiary_psn_no"]):
            later_invalid = not is_valid(est[-1][3]) and is_valid(est[-2][3])
            later_valid = is_valid(est[-1][3]) and not is_valid(est[-2][3])
            if later_invalid:
                seen["invalid re-ESTABLISH"] += 1
                assert ("S05", o["transfer_id"]) in truth
            elif later_valid and not any(e[1] for e in events[o["relation_id"]]):
                seen["valid after invalid"] += 1
                assert ("S05", o["transfer_id"]) not in truth
    assert all(seen[k] > 0 for k in ("other persons", "invalid dissolved", "invalid re-ESTABLISH",
                                     "valid after invalid")), dict(seen)


# ------------------------------------------------------------------ a nation generated in chunks
CHUNKS, CHUNK_PERSONS, CHUNK_DAYS = 3, 2000, 2


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("chunked")
    stats = generate(out, START, CHUNK_DAYS, CHUNKS * CHUNK_PERSONS, seed=13, violation_rate=0.01,
                     chunk_persons=CHUNK_PERSONS)
    return out, stats


def _findings_of_the_product(inbox: Path, days: int) -> dict[str, set]:
    """Every date through intake and the transforms, as the plain orchestration does
    (tests/test_end_to_end.py's reconcile_days): date -> (rule_code, province, record_id)."""
    from tests.test_end_to_end import reconcile_days
    con, results = reconcile_days(inbox, days, start=START)
    con.close()
    return {d.isoformat(): r["found"] for d, r in results.items()}


def test_chunked_nation_reconciles_to_exactly_its_planted_truth(chunked):
    """Three chunks appended to one inbox: the product finds every planted violation of
    every chunk and nothing else (no F01-F05 from the appending itself)."""
    out, stats = chunked
    assert stats["chunks"] == CHUNKS and stats["persons"] == CHUNKS * CHUNK_PERSONS
    truth = defaultdict(set)
    for t in truth_of(out):
        truth[t["business_date"]].add((t["rule_code"], t["province"], t["record_id"]))
    found = _findings_of_the_product(out, CHUNK_DAYS)
    for ds, f in found.items():
        assert f == truth[ds], (ds, sorted(truth[ds] - f)[:5], sorted(f - truth[ds])[:5])
    codes = {c for f in found.values() for c, _, _ in f}
    assert {"F01", "F02", "F03", "F04", "F05", "B01", "X01", "S05"} <= codes


def test_chunked_manifests_count_the_rows_and_hash_the_bytes(chunked):
    """One header per CSV file, one Parquet file growing a row group per chunk, and
    manifests (written after the last chunk) that match the files."""
    out, _ = chunked
    truth = {(t["business_date"], t["rule_code"], t["province"], t["record_id"]) for t in truth_of(out)}
    checked = row_groups = 0
    for ds, p, folder, m in deliveries(out):
        assert sorted(k.split(".")[0] for k in m["files"]) == sorted(
            ["persons", "relationships", "transfers", "settlements", "balances"])
        for fname, meta in m["files"].items():
            if any((ds, c, p, fname) in truth for c in ("F02", "F03")):
                continue
            data = (folder / fname).read_bytes()
            assert meta["sha256"] == hashlib.sha256(data).hexdigest(), (ds, p, fname)
            assert meta["rows"] == len(read_rows(folder, fname, m["encoding"])), (ds, p, fname)
            if fname.endswith(".csv"):
                text = data.decode("utf-8-sig" if m["encoding"] == "utf-8" else "gb18030")
                header = text.splitlines()[0]
                assert text.count(header) == 1 and not text[1:].startswith("\ufeff"), (ds, p, fname)
            elif meta["rows"]:
                row_groups += pq.ParquetFile(folder / fname).num_row_groups > 1
            checked += 1
    assert checked > CHUNK_DAYS * 30 * 4 and row_groups


def test_chunked_ids_never_collide_across_chunks(chunked):
    """psn_no, event_id, (transfer_id, side) and setl_id are unique over the whole date,
    and every chunk contributed records (ids tagged 000, 001, 002)."""
    out, _ = chunked
    keys = {"persons": ("psn_no",), "relationships": ("event_id",), "transfers": ("transfer_id", "side"),
            "settlements": ("setl_id",)}
    f0405 = {(t["business_date"], t["record_id"]) for t in truth_of(out) if t["rule_code"] in ("F04", "F05")}
    tags = set()
    for day in sorted({ds for ds, *_ in deliveries(out)}):
        seen = defaultdict(set)
        for ds, p, folder, m in deliveries(out):
            if ds != day:
                continue
            for fname in m["files"]:
                dataset = fname.split(".")[0]
                if dataset not in keys or not (folder / fname).exists():
                    continue
                try:
                    rows = read_rows(folder, fname, m["encoding"])
                except Exception:
                    continue  # planted F03
                for r in rows:
                    key = tuple(r[k] for k in keys[dataset])
                    rid = ":".join(key)
                    if (ds, rid) in f0405 or not key[0]:
                        continue  # planted duplicates and malformed rows
                    assert key not in seen[dataset], (ds, dataset, key)
                    seen[dataset].add(key)
                    if dataset == "transfers":
                        tags.add(r["transfer_id"][2:5])
        assert len(seen["persons"]) > CHUNKS * 500
    assert {"000", "001", "002"} <= tags


def test_same_seed_gives_byte_identical_chunked_inbox(chunked, tmp_path):
    out, _ = chunked
    again = tmp_path / "again"
    generate(again, START, CHUNK_DAYS, CHUNKS * CHUNK_PERSONS, seed=13, violation_rate=0.01,
             chunk_persons=CHUNK_PERSONS)
    assert digest_tree(out) == digest_tree(again)


# ------------------------------------------------------------------ the steady nation
STEADY_DAYS = 10
STEADY_PERSONS = 20000


@pytest.fixture(scope="module")
def steady(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("steady")
    generate(out, START, STEADY_DAYS, STEADY_PERSONS, seed=11, violation_rate=0.0, steady=1.0)
    return out


def settlements_by_day(inbox: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    for ds, _p, folder, m in deliveries(inbox):
        for fname in m["files"]:
            if fname.startswith("settlements"):
                rows[ds].extend(read_rows(folder, fname, m["encoding"]))
    return rows


def test_steady_nation_refunds_as_many_settlements_on_its_last_days_as_on_its_first(steady):
    """A steady nation's daily refunds stay flat: the refunds of the last three days
    are within 1.5x of those of days 2-4 (day 1 refunds only its own settlements).
    The default nation refunds 1 % of every settlement not yet refunded, a pool that
    grows by a day's settlements every day (about 3x over these ten days)."""
    by_day = settlements_by_day(steady)
    days = sorted(by_day)
    refunds = [sum(r["status"] == "REFUND" for r in by_day[ds]) for ds in days]
    normal = [sum(r["status"] == "NORMAL" for r in by_day[ds]) for ds in days]
    first, last = sum(refunds[1:4]), sum(refunds[-3:])
    assert first >= 60, refunds
    assert first / 1.5 <= last <= 1.5 * first, refunds
    assert sum(normal[-3:]) <= 1.5 * sum(normal[1:4]), normal


def test_steady_nation_refunds_only_earlier_settlements_of_the_same_person(steady):
    """rules.md §6: a valid refund names a settled NORMAL settlement (of D or an earlier
    date) of the same psn_no, for no more than is still unrefunded of it."""
    by_day = settlements_by_day(steady)
    normal: dict[str, tuple[str, datetime, int]] = {}
    refunded: dict[str, int] = defaultdict(int)
    n = 0
    for ds in sorted(by_day):
        rows = sorted(by_day[ds], key=lambda r: shanghai(r["setl_time"]))
        for r in rows:
            t = shanghai(r["setl_time"])
            if r["status"] == "NORMAL":
                normal[r["setl_id"]] = (r["psn_no"], t, fen(r["wallet_pay"]))
                continue
            assert r["status"] == "REFUND"
            psn, t0, paid = normal[r["orig_setl_id"]]
            assert psn == r["psn_no"] and t0 < t
            refunded[r["orig_setl_id"]] += fen(r["wallet_pay"])
            assert refunded[r["orig_setl_id"]] <= paid
            n += 1
    assert n > 0
