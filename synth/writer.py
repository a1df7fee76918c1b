"""Formatting and writing of the inbox files: CSV (utf-8, utf-8 with BOM,
GB18030), Parquet with native types, manifests with row counts and sha256.

Province delivery styles are fixed per province code so that every run shows
every kind of delivery.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.codes import PROVINCES


@dataclass(frozen=True)
class Style:
    encoding: str = "utf-8"     # utf-8 | gb18030
    bom: bool = False
    parquet: bool = False
    ts: str = "+08:00"          # +08:00 | Z | +00:00
    amounts: str = "2"          # 2 | 1 (1999.5) | 0 (2000, 1999.5)
    crlf: bool = False
    reverse: bool = False       # column order reversed (order is free)


STYLES: dict[str, Style] = {p: Style() for p in PROVINCES}
for p in ("44", "51", "35"):
    STYLES[p] = Style(encoding="gb18030", crlf=(p == "44"))
for p in ("32", "41", "53"):
    STYLES[p] = Style(parquet=True)
for p in ("33", "37", "42"):
    STYLES[p] = Style(bom=True, reverse=(p == "37"))
STYLES["31"] = Style(ts="Z")
STYLES["11"] = Style(ts="Z", amounts="1")
STYLES["12"] = Style(ts="+00:00")
STYLES["13"] = Style(amounts="1")
STYLES["45"] = Style(amounts="1", crlf=True)
STYLES["61"] = Style(amounts="0")
STYLES["50"] = Style(reverse=True)
STYLES["21"] = Style(crlf=True)

COLUMNS = {
    "persons": ["psn_no", "certno", "insutype", "insu_status", "insu_admdvs", "as_of"],
    "relationships": ["event_id", "relation_id", "event_type", "sharer_psn_no", "beneficiary_psn_no",
                      "beneficiary_province", "relation_code", "commitment_signed", "channel", "event_time"],
    "transfers": ["transfer_id", "side", "relation_id", "sharer_psn_no", "beneficiary_psn_no",
                  "sharer_province", "beneficiary_province", "amount", "status", "transfer_time"],
    "settlements": ["setl_id", "psn_no", "status", "orig_setl_id", "expense_type", "fixmedins_code",
                    "total_amount", "personal_burden", "wallet_pay", "setl_time"],
    "balances": ["psn_no", "account", "sharer_psn_no", "sharer_province", "opening_balance",
                 "closing_balance"],
}
AMOUNT_COLS = {"amount", "total_amount", "personal_burden", "wallet_pay", "opening_balance", "closing_balance"}
TIME_COLS = {"event_time", "transfer_time", "setl_time"}
SHANGHAI = timezone(timedelta(hours=8))


def amount_expr(col: str, style: Style) -> pl.Expr:
    c = pl.col(col)
    s = (c // 100).cast(pl.String) + pl.lit(".") + (c % 100).cast(pl.String).str.zfill(2)
    if style.amounts == "1":
        s = pl.when(c % 10 == 0).then((c // 100).cast(pl.String) + pl.lit(".") + ((c % 100) // 10).cast(pl.String)).otherwise(s)
    elif style.amounts == "0":
        s = (pl.when(c % 100 == 0).then((c // 100).cast(pl.String))
             .when(c % 10 == 0).then((c // 100).cast(pl.String) + pl.lit(".") + ((c % 100) // 10).cast(pl.String))
             .otherwise(s))
    return pl.when(c.is_null()).then(pl.lit(None, pl.String)).otherwise(s)


def time_expr(col: str, day: date, style: Style) -> pl.Expr:
    sec = pl.col(col)
    if style.ts == "+08:00":
        dpart, s, suffix = pl.lit(day.isoformat()), sec, "+08:00"
    else:
        s0 = sec - 8 * 3600
        dpart = pl.when(s0 < 0).then(pl.lit((day - timedelta(days=1)).isoformat())).otherwise(pl.lit(day.isoformat()))
        s = pl.when(s0 < 0).then(s0 + 86400).otherwise(s0)
        suffix = "Z" if style.ts == "Z" else "+00:00"
    two = lambda e: e.cast(pl.String).str.zfill(2)  # noqa: E731
    return pl.concat_str([dpart, pl.lit("T"), two(s // 3600), pl.lit(":"), two((s % 3600) // 60),
                          pl.lit(":"), two(s % 60), pl.lit(suffix)])


def to_text(df: pl.DataFrame, dataset: str, day: date, style: Style, extra: list[str]) -> pl.DataFrame:
    """Typed frame (amounts in fen, times in seconds of D, booleans) -> all-text frame."""
    exprs = []
    for c in COLUMNS[dataset] + extra:
        if c in AMOUNT_COLS:
            exprs.append(amount_expr(c, style).alias(c))
        elif c in TIME_COLS:
            exprs.append(time_expr(c, day, style).alias(c))
        elif c == "commitment_signed":
            exprs.append(pl.when(pl.col(c)).then(pl.lit("true")).otherwise(pl.lit("false")).alias(c))
        elif c == "as_of":
            exprs.append(pl.lit(day.isoformat()).alias(c))
        else:
            exprs.append(pl.col(c).cast(pl.String))
    return df.select(exprs)


def to_arrow(df: pl.DataFrame, dataset: str, day: date) -> pa.Table:
    """Typed frame -> Arrow with the native types of docs/spec-readings.md item 2."""
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).timestamp())
    arrays, names = [], []
    for c in COLUMNS[dataset]:
        if c in AMOUNT_COLS:
            txt = df.select(amount_expr(c, Style()).alias(c)).to_series().to_arrow()
            arrays.append(txt.cast(pa.decimal128(18, 2)))
        elif c in TIME_COLS:
            us = df.select(((pl.col(c) + midnight) * 1_000_000).cast(pl.Int64)).to_series().to_arrow()
            arrays.append(us.cast(pa.timestamp("us", tz="Asia/Shanghai")))
        elif c == "commitment_signed":
            arrays.append(df[c].cast(pl.Boolean).to_arrow())
        elif c == "as_of":
            arrays.append(pa.array([day] * df.height, type=pa.date32()))
        else:
            arrays.append(df[c].cast(pl.String).to_arrow())
        names.append(c)
    return pa.table(arrays, names=names)


def csv_bytes(text: pl.DataFrame, style: Style, header: bool = True) -> bytes:
    """`header=False`: the rows only (no header, no BOM), to append to a file begun earlier."""
    cols = list(text.columns)
    if style.reverse:
        cols = cols[::-1]
    buf = io.BytesIO()
    text.select(cols).write_csv(buf, line_terminator="\r\n" if style.crlf else "\n",
                                null_value="", quote_style="necessary", include_header=header)
    data = buf.getvalue()
    if style.encoding == "gb18030":
        data = data.decode("utf-8").encode("gb18030")
    elif style.bom and header:
        data = b"\xef\xbb\xbf" + data
    return data


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(province: str, day: date, encoding: str, files: dict) -> bytes:
    exported = datetime(day.year, day.month, day.day, 1, PROVINCES.index(province), 0,
                        tzinfo=SHANGHAI) + timedelta(days=1)
    obj = {"province": province, "business_date": day.isoformat(),
           "exported_at": exported.isoformat(), "encoding": encoding, "files": files}
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


class AppendingInbox:
    """The files of a nation generated in chunks of persons (generate(chunk_persons=...)).

    Every chunk appends its rows to the day's files: a CSV file gets its header (and
    BOM) from the first chunk only, a Parquet file is one pyarrow ParquetWriter kept
    open over the chunks (one row group per chunk), so memory is bounded by a chunk.
    Row counts and the sha256 of every CSV file are kept as the bytes go out; the
    manifests are written by close(), once every chunk is in. A file planted at the
    file level (F02, F03) is written once and `frozen`: later chunks leave it alone
    and its manifest entry is the planted one."""

    def __init__(self):
        self.rows: dict[Path, int] = {}
        self.hashes: dict[Path, "hashlib._Hash"] = {}
        self.writers: dict[Path, pq.ParquetWriter] = {}
        self.frozen: dict[tuple[Path, str], tuple[str, dict]] = {}
        self.folders: dict[Path, tuple[str, date, str, list[tuple[str, str]], bool]] = {}

    def begun(self, path: Path) -> bool:
        return path in self.rows

    def rows_before(self, path: Path) -> int:
        return self.rows.get(path, 0)

    def is_frozen(self, folder: Path, dataset: str) -> bool:
        return (folder, dataset) in self.frozen

    def folder(self, folder: Path, province: str, day: date, encoding: str, names: list[tuple[str, str]],
               with_manifest: bool = True) -> None:
        """names: (dataset, file name) in manifest order."""
        self.folders.setdefault(folder, (province, day, encoding, names, with_manifest))

    def append_csv(self, path: Path, data: bytes, nrows: int) -> None:
        with open(path, "ab") as fh:
            fh.write(data)
        self.hashes.setdefault(path, hashlib.sha256()).update(data)
        self.rows[path] = self.rows.get(path, 0) + nrows

    def append_parquet(self, path: Path, table: pa.Table) -> None:
        w = self.writers.get(path)
        if w is None:
            w = self.writers[path] = pq.ParquetWriter(path, table.schema, compression="zstd")
        if table.num_rows:
            w.write_table(table.cast(w.schema))
        self.rows[path] = self.rows.get(path, 0) + table.num_rows

    def freeze(self, folder: Path, dataset: str, fname: str, entry: dict, data: bytes | None) -> None:
        """A file-level plant: written as is (or absent when data is None), never appended to."""
        if data is not None:
            (folder / fname).write_bytes(data)
        self.frozen[(folder, dataset)] = (fname, entry)

    def close(self) -> None:
        """Finish the Parquet files and write every manifest."""
        for w in self.writers.values():
            w.close()
        for folder, (province, day, encoding, names, with_manifest) in self.folders.items():
            files = {}
            for dataset, fname in names:
                if (folder, dataset) in self.frozen:
                    fz_name, entry = self.frozen[(folder, dataset)]
                    files[fz_name] = entry
                    continue
                path = folder / fname
                if path in self.hashes:
                    digest = self.hashes[path].hexdigest()
                else:
                    digest = _file_sha256(path)
                files[fname] = {"rows": self.rows.get(path, 0), "sha256": digest}
            if with_manifest:
                (folder / "manifest.json").write_bytes(manifest(province, day, encoding, files))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
