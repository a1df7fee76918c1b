"""Perturbation mode of `recon generate --perturb RATE` (issue 10).

After a day of the inbox is written, `perturb_day` reads its files back, moves a
share `rate` of well-formed records to the boundaries of the rules, writes the
files again in their own format (CSV encoding, BOM, line ends and column order;
Parquet native types) and fixes the manifests (rows, sha256). Nothing is
planted: the findings of a perturbed inbox are not known in advance, so only
what holds whatever the data can be checked (tests/test_perturbed.py).

The perturbations, each drawn independently per record:

* transfers: amount set to 2000.00 or 2000.01 on both sides; one side dropped;
  the IN side shifted by one second; the pair repeated (same or next second);
  a round trip (the beneficiary sends the amount back one second later); a
  DISSOLVE of its relation at the transfer's exact second;
* relationships: a DISSOLVE at an ESTABLISH's exact second, naming its persons
  or the two persons swapped; an unsigned (invalid) re-ESTABLISH one second
  later;
* settlements: wallet_pay + 0.01; a REFUND of the settlement (in full, one
  second later), of another person's settlement, or of an unknown one;
* balances: a QUOTA closing or opening balance +-0.01;
* persons: an ACTIVE person SUSPENDED.

Only files whose manifest entry matches their bytes, and that parse, are
touched (planted F02/F03 files stay as they are), and only rows that look
well-formed are perturbed. New rows go only to files that are touched anyway
or exist and match their manifest.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.codes import DATASETS, EXPENSE_TYPES, PROVINCES
from synth.rng import Rng
from synth.writer import COLUMNS, parquet_bytes, sha256

TZ = "Asia/Shanghai"
TIME_COL = {"relationships": "event_time", "transfers": "transfer_time", "settlements": "setl_time"}
NEW = 1_000_000_000          # _seq of added rows: after every delivered row of the file


@dataclass
class _File:
    province: str
    dataset: str
    name: str
    encoding: str
    columns: list[str]
    schema: pa.Schema | None = None   # Parquet: the delivered native types
    bom: bool = False
    crlf: bool = False


# ------------------------------------------------------------------ reading a day back

def _read_csv(data: bytes, encoding: str) -> tuple[pl.DataFrame, bool, bool]:
    bom = data.startswith(b"\xef\xbb\xbf")
    text = data[3:] if bom else data
    text = text.decode("gb18030" if encoding.lower() == "gb18030" else "utf-8")
    frame = pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    return frame, bom, b"\r\n" in data


def _arrow_to_text(table: pa.Table) -> pl.DataFrame:
    """Native Parquet columns -> the canonical text of the CSV files."""
    frame = pl.from_arrow(table)
    exprs = []
    for name, dtype in frame.schema.items():
        c = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            exprs.append(_fmt_time(c.dt.convert_time_zone(TZ) if dtype.time_zone else c).alias(name))
        elif dtype == pl.Boolean:
            exprs.append(pl.when(c).then(pl.lit("true")).when(~c).then(pl.lit("false")).alias(name))
        else:
            exprs.append(c.cast(pl.String).alias(name))
    return frame.select(exprs)


def _read_day(day_dir: Path) -> tuple[dict[str, pl.DataFrame], dict[tuple[str, str], _File], dict]:
    """Per dataset, the rows of every file that matches its manifest (columns _prov, _seq)."""
    parts: dict[str, list[pl.DataFrame]] = {ds: [] for ds in DATASETS}
    files: dict[tuple[str, str], _File] = {}
    manifests = {}
    for p in PROVINCES:
        mpath = day_dir / p / "manifest.json"
        try:
            man = json.loads(mpath.read_bytes().decode("utf-8"))
            entries = man["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        manifests[p] = man
        for name, entry in entries.items():
            stem, _, ext = name.partition(".")
            path = day_dir / p / name
            if stem not in DATASETS or not path.is_file():
                continue
            data = path.read_bytes()
            if not isinstance(entry, dict) or entry.get("sha256") != sha256(data):
                continue
            try:
                if ext == "parquet":
                    table = pq.read_table(io.BytesIO(data))
                    frame, f = _arrow_to_text(table), _File(p, stem, name, man.get("encoding", "utf-8"),
                                                            table.column_names, schema=table.schema)
                else:
                    frame, bom, crlf = _read_csv(data, man.get("encoding", "utf-8"))
                    f = _File(p, stem, name, man.get("encoding", "utf-8"), frame.columns, bom=bom, crlf=crlf)
            except Exception:   # noqa: BLE001 - an unreadable file is a planted F03: left alone
                continue
            if entry.get("rows") != frame.height or not set(COLUMNS[stem]) <= set(frame.columns):
                continue
            files[(p, stem)] = f
            parts[stem].append(frame.with_columns(_prov=pl.lit(p), _seq=pl.int_range(pl.len(), dtype=pl.Int64)))
    frames = {ds: (pl.concat(v, how="diagonal") if v else pl.DataFrame()) for ds, v in parts.items()}
    return frames, files, manifests


# ------------------------------------------------------------------ text helpers

def _fmt_time(e: pl.Expr) -> pl.Expr:
    return e.dt.strftime("%Y-%m-%dT%H:%M:%S+08:00")


def _parse_time(col: str) -> pl.Expr:
    """A delivered timestamp (offset or Z) as an instant in Asia/Shanghai; null if unreadable."""
    return (pl.col(col).str.replace(r"Z$", "+00:00")
            .str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_zone="UTC", strict=False)
            .dt.convert_time_zone(TZ))


def _fen(col: str) -> pl.Expr:
    """A well-formed amount text ("12", "12.3", "12.30") in integer fen; null otherwise."""
    c = pl.col(col)
    ok = c.str.contains(r"^\d{1,16}(\.\d{1,2})?$")
    whole = c.str.extract(r"^(\d+)", 1).cast(pl.Int64, strict=False)
    frac = c.str.extract(r"\.(\d{1,2})$", 1).fill_null("").str.pad_end(2, "0").cast(pl.Int64, strict=False)
    return pl.when(ok).then(whole * 100 + frac)


def _yuan(fen: pl.Expr) -> pl.Expr:
    return fen.floordiv(100).cast(pl.String) + "." + fen.mod(100).cast(pl.String).str.zfill(2)


def _on_day(col: str, D: date) -> pl.Expr:
    t = _parse_time(col)
    return t.is_not_null() & (t.dt.date() == D)


_PSN = r"^\d{20}$"


def _well_formed(ds: str, frame: pl.DataFrame, D: date) -> pl.DataFrame:
    """Rows that look well-formed (a light test: perturbing a malformed row is harmless
    but pointless)."""
    c = pl.col
    if frame.height == 0:
        return frame
    if ds == "transfers":
        ok = (c("transfer_id").fill_null("") != "") & c("side").is_in(["OUT", "IN"]) \
            & c("status").is_in(["SUCCESS", "FAILED"]) & _fen("amount").fill_null(0).gt(0) \
            & c("sharer_psn_no").str.contains(_PSN) & c("beneficiary_psn_no").str.contains(_PSN) \
            & (c("sharer_province") == c("sharer_psn_no").str.slice(0, 2)) \
            & (c("beneficiary_province") == c("beneficiary_psn_no").str.slice(0, 2)) \
            & (c("_prov") == pl.when(c("side") == "OUT").then(c("sharer_province"))
               .otherwise(c("beneficiary_province"))) \
            & _on_day("transfer_time", D)
    elif ds == "settlements":
        ok = (c("setl_id").fill_null("") != "") & c("status").is_in(["NORMAL"]) \
            & c("expense_type").is_in(list(EXPENSE_TYPES)) & c("psn_no").str.contains(_PSN) \
            & _fen("wallet_pay").fill_null(0).gt(0) & _fen("personal_burden").is_not_null() \
            & _fen("total_amount").is_not_null() & _on_day("setl_time", D)
    elif ds == "relationships":
        ok = (c("event_id").fill_null("") != "") & (c("event_type") == "ESTABLISH") \
            & (c("commitment_signed") == "true") & c("sharer_psn_no").str.contains(_PSN) \
            & c("beneficiary_psn_no").str.contains(_PSN) & _on_day("event_time", D) \
            & c("channel").is_in(["NATIONAL_APP", "PROVINCIAL_PLATFORM", "COUNTER"])
    elif ds == "balances":
        ok = (c("account") == "QUOTA") & c("psn_no").str.contains(_PSN) \
            & c("sharer_psn_no").fill_null("").str.contains(_PSN) \
            & _fen("opening_balance").is_not_null() & _fen("closing_balance").is_not_null()
    else:
        ok = (c("insu_status") == "ACTIVE") & c("psn_no").str.contains(_PSN)
    return frame.filter(ok.fill_null(False))


def _draw(frame: pl.DataFrame, rng: Rng, name: str, share: float) -> pl.DataFrame:
    """The rows drawn with probability `share`, each with a second uniform `v`."""
    if frame.height == 0 or share <= 0:
        return frame.clear().with_columns(v=pl.lit(0.0))
    u = rng.uniform(frame.height, name + ":u")
    v = rng.uniform(frame.height, name + ":v")
    return frame.with_columns(u=u, v=v).filter(pl.col("u") < share).drop("u")


# ------------------------------------------------------------------ the perturbations

class _Day:
    def __init__(self, frames, files, D: date, rng: Rng, rate: float):
        self.f, self.files, self.D, self.rng, self.rate = frames, files, D, rng, rate
        self.added = {ds: [] for ds in DATASETS}
        self.counts: dict[str, int] = {}
        self.n = 0
        self.dstr = D.strftime("%Y%m%d")

    def new_ids(self, k: int, prefix: str) -> pl.Series:
        ids = [f"{prefix}{self.dstr}{self.n + i + 1:06d}" for i in range(k)]
        self.n += k
        return pl.Series(ids, dtype=pl.String)

    def count(self, what: str, k: int) -> None:
        if k:
            self.counts[what] = self.counts.get(what, 0) + k

    def update(self, ds: str, changed: pl.DataFrame, cols: list[str]) -> None:
        """Replace `cols` of the rows (_prov, _seq) given in `changed`."""
        if changed.height == 0:
            return
        upd = changed.select("_prov", "_seq", *[pl.col(c).alias(f"{c}__new") for c in cols])
        f = self.f[ds].join(upd, on=["_prov", "_seq"], how="left")
        self.f[ds] = f.with_columns(
            [pl.coalesce(f"{c}__new", c).alias(c) for c in cols]).drop([f"{c}__new" for c in cols])

    def drop(self, ds: str, gone: pl.DataFrame) -> None:
        if gone.height:
            self.f[ds] = self.f[ds].join(gone.select("_prov", "_seq"), on=["_prov", "_seq"], how="anti")

    def add(self, ds: str, rows: pl.DataFrame) -> None:
        """New rows (with _prov); kept only for files that exist and match their manifest."""
        if rows.height == 0:
            return
        ok = [p for (p, d) in self.files if d == ds]
        rows = rows.filter(pl.col("_prov").is_in(ok))
        self.added[ds].append(rows.select([c for c in rows.columns if c in COLUMNS[ds] or c == "_prov"]))

    # -------------------------------------------------------------- transfers
    def pairs(self) -> pl.DataFrame:
        """SUCCESS transfers with exactly one well-formed OUT and one IN: the OUT row's
        columns plus in_prov / in_seq."""
        t = _well_formed("transfers", self.f["transfers"], self.D)
        if t.height == 0:
            return t
        t = t.filter((pl.col("status") == "SUCCESS")
                     & (pl.len().over("transfer_id") == 2) & (pl.col("side").n_unique().over("transfer_id") == 2))
        out = t.filter(pl.col("side") == "OUT")
        inn = t.filter(pl.col("side") == "IN").select("transfer_id", in_prov="_prov", in_seq="_seq",
                                                      in_time="transfer_time")
        return out.join(inn, on="transfer_id").filter(pl.col("transfer_time") == pl.col("in_time")).sort("transfer_id")

    def transfers(self) -> None:
        pairs = self.pairs()
        if pairs.height == 0:
            return
        at_limit = self._amount_at_limit(pairs)
        self._one_side_off(pairs.join(at_limit.select("transfer_id"), on="transfer_id", how="anti"))
        self._repeated(pairs)
        self._round_trip(pairs)
        self._dissolve_at_transfer(pairs)

    def _amount_at_limit(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """S08's boundary: 2000.00 (clean) or 2000.01 (over), on both sides."""
        a = _draw(pairs, self.rng, "amt", self.rate)
        a = a.with_columns(amount=pl.when(pl.col("v") < 0.5).then(pl.lit("2000.00")).otherwise(pl.lit("2000.01")))
        self.update("transfers", pl.concat([a.select("_prov", "_seq", "amount"),
                                            a.select(_prov="in_prov", _seq="in_seq", amount="amount")]), ["amount"])
        self.count("amount at 2000.00/2000.01", a.height)
        return a

    def _one_side_off(self, rest: pl.DataFrame) -> None:
        """X01/X02: one side dropped; X04: the IN side one second before or after."""
        g = _draw(rest, self.rng, "drop", self.rate / 2)
        self.drop("transfers", pl.concat([
            g.filter(pl.col("v") < 0.5).select("_prov", "_seq"),
            g.filter(pl.col("v") >= 0.5).select(_prov="in_prov", _seq="in_seq")]))
        self.count("one side dropped", g.height)
        rest = rest.join(g.select("transfer_id"), on="transfer_id", how="anti")
        s = _draw(rest, self.rng, "shift", self.rate / 2)
        s = s.with_columns(t=_parse_time("transfer_time")
                           + pl.when(pl.col("v") < 0.5).then(pl.duration(seconds=1)).otherwise(pl.duration(seconds=-1)))
        s = s.filter(pl.col("t").dt.date() == self.D)
        self.update("transfers", s.select(_prov="in_prov", _seq="in_seq", transfer_time=_fmt_time(pl.col("t"))),
                    ["transfer_time"])
        self.count("IN side shifted by a second", s.height)

    def _repeated(self, pairs: pl.DataFrame) -> None:
        """S09/S10: the same pair again, same or next second, under a new transfer_id."""
        rp = _draw(pairs, self.rng, "repeat", self.rate / 2)
        rp = rp.with_columns(transfer_id=self.new_ids(rp.height, "TZ"),
                             t=_parse_time("transfer_time") + pl.duration(seconds=(pl.col("v") < 0.5).cast(pl.Int64)))
        rp = rp.filter(pl.col("t").dt.date() == self.D).with_columns(transfer_time=_fmt_time(pl.col("t")))
        self.add("transfers", pl.concat([rp, rp.with_columns(side=pl.lit("IN"), _prov=pl.col("in_prov"))]))
        self.count("transfer repeated", rp.height)

    def _round_trip(self, pairs: pl.DataFrame) -> None:
        """S13 (and S05): the beneficiary sends the amount back one second later."""
        rt = _draw(pairs, self.rng, "round", self.rate / 3)
        rt = rt.with_columns(transfer_id=self.new_ids(rt.height, "TZ"),
                             t=_parse_time("transfer_time") + pl.duration(seconds=1))
        rt = rt.filter(pl.col("t").dt.date() == self.D).select(
            "transfer_id", "relation_id", "amount", "status", transfer_time=_fmt_time(pl.col("t")),
            sharer_psn_no="beneficiary_psn_no", beneficiary_psn_no="sharer_psn_no",
            sharer_province="beneficiary_province", beneficiary_province="sharer_province")
        self.add("transfers", pl.concat([rt.with_columns(side=pl.lit("OUT"), _prov=pl.col("sharer_province")),
                                         rt.with_columns(side=pl.lit("IN"), _prov=pl.col("beneficiary_province"))]))
        self.count("round trip", rt.height)

    def _dissolve_at_transfer(self, pairs: pl.DataFrame) -> None:
        """S05 / §6 ranks: a DISSOLVE of the transfer's relation at its exact second."""
        dz = _draw(pairs, self.rng, "dissolve_at_transfer", self.rate / 2)
        self.add("relationships", self._dissolves(dz.select(
            "relation_id", "sharer_psn_no", "beneficiary_psn_no", "beneficiary_province",
            event_time="transfer_time", _prov="_prov")))
        self.count("DISSOLVE at a transfer's second", dz.height)

    def _dissolves(self, x: pl.DataFrame) -> pl.DataFrame:
        return x.with_columns(event_id=self.new_ids(x.height, "EZ"), event_type=pl.lit("DISSOLVE"),
                              relation_code=pl.lit("PARENT"), commitment_signed=pl.lit(None, pl.String),
                              channel=pl.lit("NATIONAL_APP"))

    # -------------------------------------------------------------- relationships
    def relationships(self) -> None:
        r = self.rate
        est = _well_formed("relationships", self.f["relationships"], self.D)
        if est.height == 0:
            return
        dz = _draw(est, self.rng, "dissolve_at_establish", r / 2)
        swapped = dz.filter(pl.col("v") >= 0.5)
        rows = pl.concat([
            dz.filter(pl.col("v") < 0.5).select("relation_id", "sharer_psn_no", "beneficiary_psn_no",
                                                "beneficiary_province", "event_time", "_prov"),
            swapped.select("relation_id", sharer_psn_no="beneficiary_psn_no",
                           beneficiary_psn_no="sharer_psn_no",
                           beneficiary_province=pl.col("sharer_psn_no").str.slice(0, 2),
                           event_time="event_time",
                           _prov=pl.col("beneficiary_psn_no").str.slice(0, 2))])
        self.add("relationships", self._dissolves(rows))
        self.count("DISSOLVE at an ESTABLISH's second (persons swapped for half)", dz.height)
        re = _draw(est, self.rng, "reestablish", r / 3)
        re = re.with_columns(t=_parse_time("event_time") + pl.duration(seconds=1)).filter(
            pl.col("t").dt.date() == self.D)
        self.add("relationships", re.with_columns(
            event_id=self.new_ids(re.height, "EZ"), commitment_signed=pl.lit("false"),
            event_time=_fmt_time(pl.col("t"))))
        self.count("unsigned re-ESTABLISH a second later", re.height)

    # -------------------------------------------------------------- settlements
    def settlements(self) -> None:
        r = self.rate
        s = _well_formed("settlements", self.f["settlements"], self.D)
        if s.height == 0:
            return
        s = s.filter(pl.len().over("setl_id") == 1).sort("setl_id")
        w = _draw(s, self.rng, "wallet_fen", r / 3)
        self.update("settlements", w.select("_prov", "_seq", wallet_pay=_yuan(_fen("wallet_pay") + 1)),
                    ["wallet_pay"])
        self.count("wallet_pay + 0.01", w.height)
        rf = _draw(s, self.rng, "refund", r / 2).with_columns(
            t=_parse_time("setl_time") + pl.duration(seconds=1))
        rf = rf.filter(pl.col("t").dt.date() == self.D)
        if rf.height == 0:
            return
        # another person: the psn_no (and file) of the next drawn settlement
        other = rf.select(o_psn=pl.col("psn_no").shift(-1, fill_value=rf["psn_no"][0]),
                          o_prov=pl.col("_prov").shift(-1, fill_value=rf["_prov"][0]))
        rf = pl.concat([rf, other], how="horizontal").with_columns(
            kind=pl.when(pl.col("v") < 1 / 3).then(pl.lit("same")).when(pl.col("v") < 2 / 3)
            .then(pl.lit("other")).otherwise(pl.lit("unknown")))
        rf = rf.with_columns(
            orig_setl_id=pl.when(pl.col("kind") == "unknown").then(pl.col("setl_id") + "NOSUCH")
            .otherwise(pl.col("setl_id")),
            psn_no=pl.when(pl.col("kind") == "other").then(pl.col("o_psn")).otherwise(pl.col("psn_no")),
            _prov=pl.when(pl.col("kind") == "other").then(pl.col("o_prov")).otherwise(pl.col("_prov")),
            status=pl.lit("REFUND"), setl_time=_fmt_time(pl.col("t")))
        rf = rf.with_columns(setl_id=self.new_ids(rf.height, "SZ"))
        self.add("settlements", rf)
        for k in ("same", "other", "unknown"):
            self.count(f"REFUND ({k} settlement)", rf.filter(pl.col("kind") == k).height)

    # -------------------------------------------------------------- balances, persons
    def balances(self) -> None:
        b = _well_formed("balances", self.f["balances"], self.D)
        b = _draw(b, self.rng, "balance_fen", self.rate)
        col = pl.when(pl.col("v") < 0.5).then(pl.lit("closing_balance")).otherwise(pl.lit("opening_balance"))
        b = b.with_columns(which=col, step=pl.when((pl.col("v") * 4).floor() % 2 == 0).then(1).otherwise(-1))
        b = b.with_columns(
            closing_balance=pl.when(pl.col("which") == "closing_balance")
            .then(_yuan((_fen("closing_balance") + pl.col("step")).clip(0, None))).otherwise(pl.col("closing_balance")),
            opening_balance=pl.when(pl.col("which") == "opening_balance")
            .then(_yuan((_fen("opening_balance") + pl.col("step")).clip(0, None))).otherwise(pl.col("opening_balance")))
        self.update("balances", b, ["closing_balance", "opening_balance"])
        self.count("QUOTA balance +-0.01", b.height)

    def persons(self) -> None:
        p = _draw(_well_formed("persons", self.f["persons"], self.D), self.rng, "suspend", self.rate / 2)
        self.update("persons", p.with_columns(insu_status=pl.lit("SUSPENDED")), ["insu_status"])
        self.count("person SUSPENDED", p.height)


# ------------------------------------------------------------------ writing back

def _text_to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    arrays = []
    for field_ in schema:
        col = frame[field_.name]
        t = field_.type
        if pa.types.is_timestamp(t):
            dt = frame.select(pl.col(field_.name).str.replace(r"Z$", "+00:00")
                              .str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_zone="UTC")
                              .dt.convert_time_zone(t.tz or "UTC").dt.cast_time_unit(t.unit)).to_series()
            arrays.append(dt.to_arrow().cast(t))
        elif pa.types.is_boolean(t):
            flags = frame.select(pl.when(pl.col(field_.name) == "true").then(True)
                                 .when(pl.col(field_.name) == "false").then(False)).to_series()
            arrays.append(flags.to_arrow().cast(t))
        elif pa.types.is_date(t):
            arrays.append(col.str.to_date().to_arrow().cast(t))
        else:
            arrays.append(col.to_arrow().cast(pa.string()).cast(t))
    return pa.table(arrays, schema=schema)


def _file_bytes(f: _File, frame: pl.DataFrame) -> bytes:
    if f.schema is not None:
        return parquet_bytes(_text_to_arrow(frame, f.schema))
    buf = io.BytesIO()
    frame.select(f.columns).write_csv(buf, line_terminator="\r\n" if f.crlf else "\n",
                                      null_value="", quote_style="necessary")
    data = buf.getvalue()
    if f.encoding.lower() == "gb18030":
        return data.decode("utf-8").encode("gb18030")
    return (b"\xef\xbb\xbf" + data) if f.bom else data


def _write_back(day_dir: Path, day: _Day, manifests: dict) -> None:
    touched: set[str] = set()
    for ds in DATASETS:
        frame = day.f[ds]
        if day.added[ds]:
            add = pl.concat(day.added[ds], how="diagonal")
            add = add.with_columns(_seq=NEW + pl.int_range(pl.len(), dtype=pl.Int64))
            frame = pl.concat([frame, add], how="diagonal")
        if frame.height == 0 and not day.added[ds]:
            continue
        for (p, d), f in day.files.items():
            if d != ds:
                continue
            rows = frame.filter(pl.col("_prov") == p).sort("_seq")
            for c in f.columns:
                if c not in rows.columns:
                    rows = rows.with_columns(pl.lit(None, pl.String).alias(c))
            data = _file_bytes(f, rows.select(f.columns))
            path = day_dir / p / f.name
            if data == path.read_bytes():
                continue
            path.write_bytes(data)
            manifests[p]["files"][f.name] = {"rows": rows.height, "sha256": sha256(data)}
            touched.add(p)
    for p in sorted(touched):
        (day_dir / p / "manifest.json").write_bytes(
            (json.dumps(manifests[p], ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def perturb_day(inbox: Path, D: date, rate: float, rng: Rng) -> dict[str, int]:
    """Perturb the written day D of `inbox` in place; return how many of each kind."""
    if rate <= 0:
        return {}
    day_dir = Path(inbox) / D.isoformat()
    frames, files, manifests = _read_day(day_dir)
    day = _Day(frames, files, D, rng, rate)
    day.transfers()
    day.relationships()
    day.settlements()
    day.balances()
    day.persons()
    _write_back(day_dir, day, manifests)
    return dict(sorted(day.counts.items()))
