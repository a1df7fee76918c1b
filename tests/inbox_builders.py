"""Tiny inboxes on disk, so intake and orchestration tests read like inbox.md.

    write_reference(root, live=("44", "41"))
    write_province(root, D, "44",
                   persons=[person_row(SHARER)],
                   transfers=[transfer_row("T1", amount="2000.5")])

Rows are dicts of CSV *text* (the delivered form); a test overrides only the
field it is about, e.g. `transfer_row("T1", amount="12.345")`, or drops a key
to leave the field empty. `write_province` writes the five files (every stem,
header only when no rows are given) and a correct manifest.json for the bytes
actually written; `manifest=` patches it afterwards to plant a mismatch.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.certno import make_certno
from contracts.codes import DATASETS, PROVINCES
from contracts.inbox import DATASET_COLUMNS

D = date(2026, 11, 20)
SHARER = "44000000000000000001"       # employee in Guangdong
BENEFICIARY = "41000000000000000002"  # resident in Henan
COLUMNS = {ds: [c.name for c in cols] for ds, cols in DATASET_COLUMNS.items()}


def at(hhmmss: str = "10:00:00", day: date = D, offset: str = "+08:00") -> str:
    """An ISO 8601 timestamp text on `day` (default D) with an offset."""
    return f"{day.isoformat()}T{hhmmss}{offset}"


def resident_id(n: int) -> str:
    """The n-th of many distinct valid resident ID numbers (GB 11643 check character)."""
    return make_certno(f"{110100 + n % 900:06d}", "19860315", n % 1000, male=n % 2 == 0)


# ------------------------------------------------------------------ rows (text)

def person_row(psn_no: str = SHARER, birth: str = "19800101", male: bool = True,
               insutype: str = "310", status: str = "ACTIVE", day: date = D, **over) -> dict:
    admdvs = psn_no[:2] + "0100"
    row = {"psn_no": psn_no, "certno": make_certno(admdvs, birth, int(psn_no[-3:]), male),
           "insutype": insutype, "insu_status": status, "insu_admdvs": admdvs,
           "as_of": day.isoformat()}
    row.update(over)
    return row


def relationship_row(event_id: str = "E1", relation_id: str = "R1", sharer: str = SHARER,
                     beneficiary: str = BENEFICIARY, day: date = D, **over) -> dict:
    row = {"event_id": event_id, "relation_id": relation_id, "event_type": "ESTABLISH",
           "sharer_psn_no": sharer, "beneficiary_psn_no": beneficiary,
           "beneficiary_province": beneficiary[:2], "relation_code": "PARENT",
           "commitment_signed": "true", "channel": "NATIONAL_APP", "event_time": at("08:00:00", day)}
    row.update(over)
    return row


def transfer_row(transfer_id: str = "T1", side: str = "OUT", amount: str = "500.00",
                 sharer: str = SHARER, beneficiary: str = BENEFICIARY, day: date = D,
                 **over) -> dict:
    row = {"transfer_id": transfer_id, "side": side, "relation_id": "R1",
           "sharer_psn_no": sharer, "beneficiary_psn_no": beneficiary,
           "sharer_province": sharer[:2], "beneficiary_province": beneficiary[:2],
           "amount": amount, "status": "SUCCESS", "transfer_time": at("10:00:00", day)}
    row.update(over)
    return row


def settlement_row(setl_id: str = "S1", psn_no: str = BENEFICIARY, wallet_pay: str = "100.00",
                   day: date = D, **over) -> dict:
    row = {"setl_id": setl_id, "psn_no": psn_no, "status": "NORMAL", "orig_setl_id": "",
           "expense_type": "OUTPATIENT", "fixmedins_code": "H41000000001",
           "total_amount": "300.00", "personal_burden": "150.00", "wallet_pay": wallet_pay,
           "setl_time": at("12:00:00", day)}
    row.update(over)
    return row


def balance_row(psn_no: str = SHARER, account: str = "PERSONAL", opening: str = "10000.00",
                closing: str = "9500.00", sharer: str = "", **over) -> dict:
    row = {"psn_no": psn_no, "account": account, "sharer_psn_no": sharer,
           "sharer_province": sharer[:2] if sharer else "",
           "opening_balance": opening, "closing_balance": closing}
    row.update(over)
    return row


# ------------------------------------------------------------------ file bytes

def csv_bytes(rows: list[dict], columns: list[str], encoding: str = "utf-8", bom: bool = False,
              line_end: str = "\r\n") -> bytes:
    """RFC 4180 CSV text of `rows` (missing keys = empty field) in `encoding`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=line_end)
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom and encoding.replace("_", "-").lower() == "utf-8" else data


def _native(kind: str, text: str | None):
    if text is None or text == "":
        return None
    if kind == "money":
        return Decimal(text)
    if kind == "timestamp":
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "bool":
        return text == "true"
    return text


_ARROW = {"money": pa.decimal128(18, 2), "timestamp": pa.timestamp("us", tz="Asia/Shanghai"),
          "date": pa.date32(), "bool": pa.bool_()}


def parquet_bytes(dataset: str, rows: list[dict], typed: bool) -> bytes:
    """Parquet of `rows`: all text (typed=False) or native types as the generator
    writes them (docs/spec-readings.md item 2)."""
    cols = {}
    for c in DATASET_COLUMNS[dataset]:
        vals = [r.get(c.name) for r in rows]
        if typed and c.kind in _ARROW:
            cols[c.name] = pa.array([_native(c.kind, x) for x in vals], type=_ARROW[c.kind])
        else:
            cols[c.name] = pa.array([None if x in ("", None) else x for x in vals], type=pa.string())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def manifest_for(province: str, day: date, files: dict[str, tuple[int, bytes]],
                 encoding: str = "utf-8") -> dict:
    return {"province": province, "business_date": day.isoformat(),
            "exported_at": f"{day.isoformat()}T23:50:00+08:00", "encoding": encoding,
            "files": {n: {"rows": rows, "sha256": hashlib.sha256(b).hexdigest()}
                      for n, (rows, b) in files.items()}}


# ------------------------------------------------------------------ folders

def write_reference(root: Path, live: tuple[str, ...] = ("44", "41"),
                    since: date = date(2024, 7, 1), institutions: list[dict] | None = None,
                    regions: list[dict] | None = None) -> Path:
    """reference/ with one region per province (live ones from `since`) and a
    hospital and a pharmacy in Henan, unless given."""
    ref = Path(root) / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    if regions is None:
        regions = [{"admdvs": f"{p}0100", "province": p, "name": f"{p} 省会",
                    "wallet_live_from": since.isoformat() if p in live else ""} for p in PROVINCES]
    if institutions is None:
        institutions = [
            {"fixmedins_code": "H41000000001", "fixmedins_type": "HOSPITAL", "admdvs": "410100",
             "designated_from": "2020-01-01", "designated_to": ""},
            {"fixmedins_code": "P41000000001", "fixmedins_type": "PHARMACY", "admdvs": "410100",
             "designated_from": "2020-01-01", "designated_to": ""},
        ]
    (ref / "regions.csv").write_bytes(
        csv_bytes(regions, ["admdvs", "province", "name", "wallet_live_from"]))
    (ref / "institutions.csv").write_bytes(csv_bytes(
        institutions, ["fixmedins_code", "fixmedins_type", "admdvs", "designated_from", "designated_to"]))
    return ref


def write_province(root: Path, day: date, province: str, *,
                   persons: list[dict] | None = None, relationships: list[dict] | None = None,
                   transfers: list[dict] | None = None, settlements: list[dict] | None = None,
                   balances: list[dict] | None = None, encoding: str = "utf-8", bom: bool = False,
                   fmt: str = "csv", raw: dict[str, bytes] | None = None,
                   manifest: dict | Callable[[dict], dict | bytes] | None = None,
                   omit: tuple[str, ...] = ()) -> Path:
    """<root>/<day>/<province>/ with all five files and a matching manifest.json.

    fmt: 'csv', 'parquet' (all text) or 'parquet_typed' (native types).
    raw: file name -> bytes written instead of (or besides) the generated files;
         the manifest describes them with rows = the number of lines minus one
         unless `manifest` says otherwise.
    manifest: a dict merged into the manifest (key 'files' merged per file), or a
         function of the manifest returning a new one (or raw bytes).
    omit: file names not written to disk (still listed in the manifest)."""
    folder = Path(root) / day.isoformat() / province
    folder.mkdir(parents=True, exist_ok=True)
    given = {"persons": persons, "relationships": relationships, "transfers": transfers,
             "settlements": settlements, "balances": balances}
    files: dict[str, tuple[int, bytes]] = {}
    for ds in DATASETS:
        rows = given[ds] or []
        if fmt == "csv":
            files[f"{ds}.csv"] = (len(rows), csv_bytes(rows, COLUMNS[ds], encoding, bom))
        else:
            files[f"{ds}.parquet"] = (len(rows), parquet_bytes(ds, rows, typed=fmt == "parquet_typed"))
    for name, data in (raw or {}).items():
        stem = name.rsplit(".", 1)[0]
        for other in (f"{stem}.csv", f"{stem}.parquet"):
            files.pop(other, None)
        files[name] = (max(len([ln for ln in data.splitlines() if ln.strip()]) - 1, 0), data)
    for name, (_rows, data) in files.items():
        if name not in omit:
            (folder / name).write_bytes(data)
    doc: dict | bytes = manifest_for(province, day, files, encoding)
    if callable(manifest):
        doc = manifest(doc)
    elif manifest:
        doc = dict(doc)
        for k, val in manifest.items():
            if k == "files" and isinstance(val, dict):
                doc["files"] = {**doc["files"], **val}
            else:
                doc[k] = val
    (folder / "manifest.json").write_bytes(doc if isinstance(doc, bytes)
                                           else json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    return folder


def clean_day(root: Path, day: date = D) -> None:
    """A small clean delivery of Guangdong (44) and Henan (41): one parent relationship,
    one two-sided transfer, one settlement, balances. No finding of F01-F05."""
    write_reference(root)
    write_province(root, day, "44",
                   persons=[person_row(SHARER, day=day)],
                   relationships=[relationship_row(day=day)],
                   transfers=[transfer_row("T1", "OUT", day=day)],
                   balances=[balance_row(SHARER)])
    write_province(root, day, "41",
                   persons=[person_row(BENEFICIARY, birth="20050101", male=False, insutype="390",
                                       day=day)],
                   transfers=[transfer_row("T1", "IN", day=day)],
                   settlements=[settlement_row("S1", day=day)],
                   balances=[balance_row(BENEFICIARY, "QUOTA", "0.00", "400.00", sharer=SHARER)])
