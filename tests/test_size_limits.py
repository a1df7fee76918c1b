"""Declared size limits (issue 9, item 6).

The contract (contracts/inbox.py) declares the longest field of every column
and the largest file. A longer field is F04 naming the column and its length;
a larger file is F03 naming the limit and is never read; a record far beyond
any field limit (a 200 MB line of commas) is a clear F03, not "Empty CSV file".
Memory stays bounded by the limits, not by what a province sends.
"""
from __future__ import annotations

import io
import json
import resource
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import transforms.intake as intake
from contracts.errors import InputError
from contracts.inbox import (DATASET_COLUMNS, MAX_DATA_FILE_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS,
                             MAX_RECORD_BYTES, ProvinceDelivery)
from flows.inbox import read_inbox_date
from tests.inbox_builders import (COLUMNS, D, balance_row, csv_bytes, manifest_for, parquet_bytes,
                                  person_row, relationship_row, settlement_row, transfer_row,
                                  write_province, write_reference)
from transforms.intake import load_province

ROW_MAKERS = {"persons": person_row, "relationships": relationship_row,
              "transfers": transfer_row, "settlements": settlement_row, "balances": balance_row}


def load(dataset: str, data: bytes, rows: int, name: str | None = None):
    """Province 44 delivering `data` as its `dataset` file (the other four empty)."""
    name = name or f"{dataset}.csv"
    files = {f"{ds}.csv": csv_bytes([], COLUMNS[ds]) for ds in COLUMNS if ds != dataset}
    files[name] = data
    manifest = manifest_for("44", D, {n: (rows if n == name else 0, b) for n, b in files.items()})
    return load_province(ProvinceDelivery("44", D, manifest_bytes=json.dumps(manifest).encode(),
                                          files=files), D)


def outcome(it, dataset: str):
    stat = next(s for s in it.files if s.dataset == dataset)
    found = it.findings.filter(pl.col("dataset") == dataset)
    return stat, found


# ------------------------------------------------------------------ fields

def test_every_column_declares_its_limit_in_the_contract():
    for cols in DATASET_COLUMNS.values():
        assert all(c.max_chars == MAX_ID_CHARS for c in cols)
    assert MAX_ID_CHARS == 64


def test_an_id_at_exactly_the_limit_loads_and_one_character_more_is_f04():
    at_limit = "T" * MAX_ID_CHARS
    over = "T" * (MAX_ID_CHARS + 1)
    rows = [transfer_row(at_limit), transfer_row(over)]
    it = load("transfers", csv_bytes(rows, COLUMNS["transfers"]), 2)
    stat, found = outcome(it, "transfers")
    assert it.transfers["transfer_id"].to_list() == [at_limit]
    assert found.select("rule_code", "source_row", "detail").rows() == [
        ("F04", 2, f"transfer_id is {MAX_ID_CHARS + 1} characters long, more than the limit of "
                   f"{MAX_ID_CHARS}")]
    assert (stat.rows_read, stat.rows_loaded, stat.rows_quarantined) == (2, 1, 1)


@pytest.mark.parametrize("dataset", sorted(DATASET_COLUMNS))
def test_an_over_long_field_in_any_column_is_f04_naming_the_column_and_its_length(dataset):
    for col in DATASET_COLUMNS[dataset]:
        row = ROW_MAKERS[dataset]()
        row[col.name] = "7" * (col.max_chars + 1)
        it = load(dataset, csv_bytes([row], COLUMNS[dataset]), 1)
        _stat, found = outcome(it, dataset)
        assert found["rule_code"].to_list() == ["F04"], col.name
        assert f"{col.name} is {col.max_chars + 1} characters long, more than the limit of " \
               f"{col.max_chars}" in found["detail"][0]
        assert len(found["detail"][0]) < 1000     # the reason quotes the field shortened


def test_an_over_long_field_in_parquet_is_f04_too():
    row = transfer_row("X" * 5000)
    it = load("transfers", parquet_bytes("transfers", [row], typed=True), 1, name="transfers.parquet")
    _stat, found = outcome(it, "transfers")
    assert found["rule_code"].to_list() == ["F04"]
    assert found["detail"][0].startswith("transfer_id is 5000 characters long")


def test_a_region_name_longer_than_its_limit_is_refused_with_one_sentence(tmp_path):
    from contracts.codes import PROVINCES
    regions = [{"admdvs": f"{p}0100", "province": p, "name": "名" * (MAX_NAME_CHARS + 1 if p == "44" else 3),
                "wallet_live_from": "2024-07-01"} for p in PROVINCES]
    write_reference(tmp_path, regions=regions)
    write_province(tmp_path, D, "44")
    with pytest.raises(InputError, match="regions.csv breaks its contract: str_length"):
        read_inbox_date(tmp_path, D)


# ------------------------------------------------------------------ records and lines

def test_a_huge_line_of_commas_after_the_header_is_f03_naming_the_record_limit():
    data = csv_bytes([transfer_row("T1")], COLUMNS["transfers"]) + b"," * (3 * MAX_RECORD_BYTES) + b"\r\n"
    it = load("transfers", data, 2)
    stat, found = outcome(it, "transfers")
    assert (stat.rejected, stat.reject_rule) == (True, "F03")
    assert found["detail"].to_list() == [
        f"transfers.csv has a record longer than the limit of {MAX_RECORD_BYTES} bytes "
        "(a field far beyond its column's limit)."]


def test_a_huge_line_of_commas_as_the_header_is_f03_not_an_empty_file():
    it = load("transfers", b"," * (3 * MAX_RECORD_BYTES) + b"\r\n", 0)
    stat, found = outcome(it, "transfers")
    assert (stat.rejected, stat.reject_rule) == (True, "F03")
    assert found["detail"].to_list() == [
        f"transfers.csv has a header line longer than the limit of {MAX_RECORD_BYTES} bytes."]


def test_a_huge_quoted_field_spread_over_many_lines_is_f03():
    row = transfer_row("T1", relation_id="R\n" * (2 * MAX_RECORD_BYTES))
    it = load("transfers", csv_bytes([row], COLUMNS["transfers"]), 1)
    stat, found = outcome(it, "transfers")
    assert stat.reject_rule == "F03" and "longer than the limit" in found["detail"][0]


# ------------------------------------------------------------------ files

def test_a_file_larger_than_the_limit_is_f03_naming_the_limit_and_is_never_read(tmp_path):
    write_reference(tmp_path)
    folder = write_province(tmp_path, D, "44", transfers=[transfer_row("T1")])
    with open(folder / "transfers.csv", "r+b") as f:   # sparse: no disk, no memory spent
        f.truncate(MAX_DATA_FILE_BYTES + 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    inbox = read_inbox_date(tmp_path, D)
    it = load_province(next(d for d in inbox.deliveries if d.province == "44"), D)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    stat, found = outcome(it, "transfers")
    assert (stat.rejected, stat.reject_rule, stat.sha256) == (True, "F03", None)
    assert found["detail"].to_list() == [
        f"transfers.csv is larger than the limit of {MAX_DATA_FILE_BYTES} bytes "
        f"({MAX_DATA_FILE_BYTES / (1 << 20):g} MiB); it was not read."]
    assert grown_kib < 200 * 1024
    assert it.persons.height == 1 or stat.dataset == "transfers"   # the other files still load


def test_handed_over_bytes_obey_the_file_limit(monkeypatch):
    import contracts.inbox as inbox_contract
    monkeypatch.setattr(inbox_contract, "MAX_DATA_FILE_BYTES", 100)
    data = csv_bytes([transfer_row("T1")], COLUMNS["transfers"])
    assert len(data) > 100
    it = load("transfers", data, 1)
    stat, found = outcome(it, "transfers")
    assert stat.reject_rule == "F03" and "larger than the limit of 100 bytes" in found["detail"][0]


def test_a_parquet_file_that_unpacks_beyond_its_limit_is_f03(monkeypatch):
    monkeypatch.setattr(intake, "MAX_PARQUET_UNPACKED_BYTES", 1 << 20)
    buf = io.BytesIO()
    pq.write_table(pa.table({c: pa.array(["7" * 60] * 40_000) for c in COLUMNS["transfers"]}), buf,
                   compression="zstd")
    data = buf.getvalue()
    assert len(data) < (1 << 20)
    it = load("transfers", data, 40_000, name="transfers.parquet")
    stat, found = outcome(it, "transfers")
    assert stat.reject_rule == "F03"
    assert found["detail"][0].startswith("transfers.parquet unpacks to ")
    assert found["detail"][0].endswith(f"more than the limit of {1 << 20} bytes.")


def test_a_header_of_a_million_commas_is_f03_and_cheap():
    """A 1 MB header of commas used to become a million reader columns (18 GB, 2 minutes)."""
    from contracts.inbox import MAX_HEADER_FIELDS
    rows = csv_bytes([transfer_row(f"T{i}") for i in range(200)], COLUMNS["transfers"])
    data = b"," * (MAX_RECORD_BYTES - 10) + b"\r\n" + rows.split(b"\r\n", 1)[1]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    it = load("transfers", data, 200)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500 * 1024
    stat, found = outcome(it, "transfers")
    assert found["detail"].to_list() == [
        f"transfers.csv has a header line of {MAX_RECORD_BYTES - 10} commas, more than the limit of "
        f"{MAX_HEADER_FIELDS} fields."]
    assert stat.reject_rule == "F03"


@pytest.mark.parametrize("line_end", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("n", [5, 150])
def test_a_csv_loads_alike_whatever_its_line_ends_and_its_size(line_end, n):
    """A line ends at CR, LF or CRLF (the CSV parser reads all three): the header
    line, whose width is bounded, ends at the first of them, so a file of lone CRs is
    not one header line of every comma in its first 1 MiB."""
    rows = [transfer_row(f"T{i}") for i in range(n)]
    it = load("transfers", csv_bytes(rows, COLUMNS["transfers"], line_end=line_end), n)
    stat, found = outcome(it, "transfers")
    assert (stat.rejected, stat.rows_read, stat.rows_loaded, found.height) == (False, n, n, 0)


def test_a_header_at_the_field_limit_is_read():
    from contracts.inbox import MAX_HEADER_FIELDS
    cols = COLUMNS["transfers"]
    extra = [f"x{i}" for i in range(MAX_HEADER_FIELDS - len(cols))]
    data = csv_bytes([{**transfer_row("T1")}], cols + extra)
    it = load("transfers", data, 1)
    assert it.transfers["transfer_id"].to_list() == ["T1"]
    it = load("transfers", csv_bytes([transfer_row("T1")], cols + extra + ["one_more"]), 1)
    assert outcome(it, "transfers")[0].reject_rule == "F03"


def test_a_huge_field_on_an_invalid_row_does_not_swell_the_reports(tmp_path):
    """A 50 MB field on an invalid row used to make report.html 157 MB; now its file is F03
    and every report stays small."""
    from flows import cli
    from tests.inbox_builders import BENEFICIARY
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    write_reference(inbox)
    bad = transfer_row("T2", amount="-1", relation_id="R" * (3 * MAX_RECORD_BYTES))
    write_province(inbox, D, "44", persons=[person_row()], transfers=[transfer_row("T1"), bad])
    write_province(inbox, D, "41", persons=[person_row(BENEFICIARY, birth="20050101", male=False,
                                                       insutype="390")])
    code = cli.main(["run", "--date", D.isoformat(), "--inbox", str(inbox), "--out", str(out),
                     "--warehouse", str(tmp_path / "wh.duckdb"), "--orchestrator", "plain"])
    assert code == 0
    day = out / D.isoformat()
    sizes = {p.name: p.stat().st_size for p in day.iterdir()}
    assert max(sizes.values()) < MAX_RECORD_BYTES, sizes
    summary = json.loads((day / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "PARTIAL"
    assert "transfers.csv has a record longer than the limit" in (day / "exceptions.csv").read_text(
        encoding="utf-8")
