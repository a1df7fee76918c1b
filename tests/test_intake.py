"""Intake (issue items 3 and 4): the column rules of inbox.md, F01-F05, staging.

Each F-rule fires on a crafted input and stays silent on clean input; every
column rule is tried at its boundary; every file keeps rows read = loaded +
quarantined.
"""
from __future__ import annotations

import json
import os
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pandera.polars as pa
import polars as pl
import pytest

from contracts.errors import InputError
from contracts.inbox import LOADED_SCHEMAS, Env, text_schema, typed_helpers
from flows.inbox import ProvinceDelivery, date_folders, read_inbox_date
from tests.inbox_builders import (BENEFICIARY, COLUMNS, D, SHARER, at, balance_row, clean_day,
                                  csv_bytes, manifest_for, parquet_bytes, person_row,
                                  relationship_row, settlement_row, transfer_row, write_province,
                                  write_reference)
from transforms.context import RunContext, bind_date, create_warehouse
from transforms.intake import FileRejected, load_province, parse_csv, stage, validate_rows

ROW_MAKERS = {"persons": person_row, "relationships": relationship_row,
              "transfers": transfer_row, "settlements": settlement_row, "balances": balance_row}


# ------------------------------------------------------------------ helpers

def run_intake(root, day=D, con=None):
    """read -> load every province -> stage, as the orchestration does."""
    inbox = read_inbox_date(root, day)
    intakes = [load_province(dl, day) for dl in inbox.deliveries]
    if con is None:
        con = duckdb.connect()
        create_warehouse(con)
    ctx = RunContext.for_date(day, genesis=True)
    bind_date(con, ctx)
    stage(con, ctx, inbox, intakes)
    return con, inbox, intakes


def rows(con, sql, *params):
    cur = con.execute(sql, list(params))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def findings(con, rule=None):
    return rows(con, "SELECT * FROM d_findings" + (" WHERE rule_code = ?" if rule else "")
                + " ORDER BY rule_code, province, record_id", *([rule] if rule else []))


def assert_identity(con):
    bad = rows(con, "SELECT * FROM file_loads WHERE rows_read <> rows_loaded + rows_quarantined")
    assert not bad
    # and the counts agree with what is actually in the tables
    for fl in rows(con, "SELECT * FROM file_loads WHERE NOT rejected"):
        n = con.execute(f"SELECT count(*) FROM {fl['dataset']} WHERE source_file = ?",
                        [fl["source_file"]]).fetchone()[0]
        q = con.execute("SELECT count(*) FROM quarantine WHERE source_file = ?",
                        [fl["source_file"]]).fetchone()[0]
        assert (n, q) == (fl["rows_loaded"], fl["rows_quarantined"]), fl


def load_one(dataset, file_rows, province="44", fmt="csv", encoding="utf-8", data=None):
    """Load one in-memory file of `dataset` (the other four empty); return the intake."""
    files = {}
    for ds in COLUMNS:
        r = file_rows if ds == dataset else []
        if fmt == "csv":
            files[f"{ds}.csv"] = (len(r), data if (data is not None and ds == dataset)
                                  else csv_bytes(r, COLUMNS[ds], encoding))
        else:
            files[f"{ds}.parquet"] = (len(r), parquet_bytes(ds, r, typed=fmt == "parquet_typed"))
    manifest = manifest_for(province, D, files, encoding)
    delivery = ProvinceDelivery(province, D, manifest_bytes=json.dumps(manifest).encode(),
                                files={n: b for n, (_r, b) in files.items()})
    return load_province(delivery, D)


def reasons_of(dataset, override, province="44"):
    """The F04 detail of one row = the default valid row with `override` applied ('' if valid)."""
    row = ROW_MAKERS[dataset]()
    row.update(override)
    it = load_one(dataset, [row], province)
    f4 = it.findings.filter(pl.col("rule_code") == "F04")
    st = next(s for s in it.files if s.dataset == dataset)
    assert st.rows_read == st.rows_loaded + st.rows_quarantined == 1
    return f4["detail"][0] if f4.height else ""


# ------------------------------------------------------------------ clean input

def test_clean_day_loads_everything_without_findings(tmp_path):
    clean_day(tmp_path)
    con, inbox, intakes = run_intake(tmp_path)
    assert findings(con) == []
    assert inbox.live_provinces == ["41", "44"] and inbox.missing == []
    assert_identity(con)
    t = rows(con, "SELECT * FROM transfers ORDER BY side")
    assert [(r["side"], r["file_province"], r["amount"]) for r in t] == \
        [("IN", "41", Decimal("500.00")), ("OUT", "44", Decimal("500.00"))]
    assert t[0]["transfer_time"] == datetime(2026, 11, 20, 10, 0, 0)
    assert t[0]["source_file"] == "2026-11-20/41/transfers.csv" and t[0]["source_row"] == 1
    p = rows(con, "SELECT * FROM persons WHERE psn_no = ?", BENEFICIARY)[0]
    assert (p["birth_date"], p["sex"]) == (date(2005, 1, 1), "F")
    assert con.execute("SELECT count(*) FROM regions").fetchone()[0] == 31
    assert con.execute("SELECT count(*) FROM institutions").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM file_loads").fetchone()[0] == 10
    sums = {k: v for i in intakes for k, v in i.sha256.items()}
    assert len(sums) == 10 and all(len(v) == 64 for v in sums.values())


def test_loaded_frames_satisfy_the_pandera_contract(tmp_path):
    clean_day(tmp_path)
    inbox = read_inbox_date(tmp_path, D)
    for it in (load_province(dl, D) for dl in inbox.deliveries):
        for ds, frame in it.frames.items():
            LOADED_SCHEMAS[ds].validate(frame)
    bad = pl.DataFrame({"x": [1]})
    with pytest.raises(pa.errors.SchemaError):
        LOADED_SCHEMAS["transfers"].validate(bad)


def _loaded_one(dataset, **over):
    row = ROW_MAKERS[dataset]()
    row.update(over)
    frame = load_one(dataset, [row]).frames[dataset]
    assert frame.height == 1
    return frame


# Typed rows a bug in the text path could hand on: each breaks one rule of the loaded contract.
BROKEN_LOADED = [
    ("transfers", lambda f: f.with_columns(pl.lit(None, pl.String).alias("relation_id"))),
    ("transfers", lambda f: f.with_columns(pl.lit(None, pl.Datetime("us")).alias("transfer_time"))),
    ("transfers", lambda f: f.with_columns(pl.lit("out").alias("side"))),
    ("transfers", lambda f: f.with_columns(pl.lit("99").alias("beneficiary_province"))),
    ("transfers", lambda f: f.with_columns(pl.lit(0).cast(pl.Decimal(18, 2)).alias("amount"))),
    ("transfers", lambda f: f.with_columns(pl.col("amount").cast(pl.Float64))),
    ("transfers", lambda f: f.select(reversed(f.columns))),
    ("transfers", lambda f: f.with_columns(pl.lit(1).alias("extra"))),
    ("settlements", lambda f: f.with_columns(pl.lit(-1).cast(pl.Decimal(18, 2)).alias("personal_burden"))),
    ("settlements", lambda f: f.with_columns(pl.lit(1000).cast(pl.Decimal(18, 2)).alias("personal_burden"))),
    ("settlements", lambda f: f.with_columns(pl.lit("REFUND").alias("status"))),
    ("settlements", lambda f: f.with_columns(pl.lit("S0").alias("orig_setl_id"))),
    ("balances", lambda f: f.with_columns(pl.lit("QUOTA").alias("account"))),
    ("balances", lambda f: f.with_columns(pl.lit(SHARER).alias("sharer_psn_no"))),
    ("persons", lambda f: f.with_columns(pl.lit(None, pl.Date).alias("birth_date"))),
    ("relationships", lambda f: f.with_columns(pl.lit("MARRIAGE").alias("relation_code"))),
]


@pytest.mark.parametrize("dataset,breaks", BROKEN_LOADED)
def test_one_pass_loaded_contract_rejects_what_the_rule_by_rule_contract_rejects(dataset, breaks):
    from contracts.inbox import LOADED_SCHEMAS_ONE_PASS
    from transforms.intake import check_loaded

    good = _loaded_one(dataset)
    LOADED_SCHEMAS[dataset].validate(good)
    LOADED_SCHEMAS_ONE_PASS[dataset].validate(good)
    bad = breaks(good)
    with pytest.raises(pa.errors.SchemaError):
        LOADED_SCHEMAS[dataset].validate(bad)
    with pytest.raises(pa.errors.SchemaError):
        LOADED_SCHEMAS_ONE_PASS[dataset].validate(bad)
    # the intake's guard raises the rule-by-rule error, which names the broken rule
    frames = {ds: pl.DataFrame() for ds in ROW_MAKERS}
    frames[dataset] = bad
    with pytest.raises(pa.errors.SchemaError) as e:
        check_loaded(type("Intake", (), {"frames": frames})())
    assert "one pass" not in str(e.value)


# ------------------------------------------------------------------ F01

def test_f01_live_province_without_folder_or_manifest(tmp_path):
    write_reference(tmp_path, live=("44", "41", "11"))
    write_province(tmp_path, D, "44")
    (tmp_path / D.isoformat() / "41").mkdir()          # folder, no manifest
    write_province(tmp_path, D, "12")                   # not live: delivering is fine
    con, inbox, _ = run_intake(tmp_path)
    f1 = findings(con, "F01")
    assert [(f["province"], f["record_id"], f["dataset"]) for f in f1] == \
        [("11", "11", "manifest"), ("41", "41", "manifest")]
    assert "no manifest" in f1[1]["detail"]
    assert inbox.missing == ["11", "41"]


def test_f01_silent_when_every_live_province_delivers(tmp_path):
    clean_day(tmp_path)
    con, *_ = run_intake(tmp_path)
    assert findings(con, "F01") == []


# ------------------------------------------------------------------ F02

@pytest.mark.parametrize("how, expect", [
    ("absent", "absent"), ("rows", "data rows"), ("sha", "sha256"), ("unlisted", "does not list"),
])
def test_f02_rejects_the_file_and_keeps_the_others(tmp_path, how, expect):
    write_reference(tmp_path, live=("44",))
    kw = {}
    if how == "absent":
        kw["omit"] = ("transfers.csv",)
    elif how == "rows":
        kw["manifest"] = lambda m: {**m, "files": {**m["files"], "transfers.csv":
                                                   {**m["files"]["transfers.csv"], "rows": 5}}}
    elif how == "sha":
        kw["manifest"] = lambda m: {**m, "files": {**m["files"], "transfers.csv":
                                                   {**m["files"]["transfers.csv"], "sha256": "0" * 64}}}
    else:
        kw["manifest"] = lambda m: {**m, "files": {k: v for k, v in m["files"].items()
                                                   if k != "transfers.csv"}}
    write_province(tmp_path, D, "44", persons=[person_row()], transfers=[transfer_row()], **kw)
    con, *_ = run_intake(tmp_path)
    f2 = findings(con, "F02")
    assert [(f["record_id"], f["dataset"]) for f in f2] == [("transfers.csv", "transfers")]
    assert expect in f2[0]["detail"]
    assert con.execute("SELECT count(*) FROM transfers").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM persons").fetchone()[0] == 1
    fl = rows(con, "SELECT * FROM file_loads WHERE dataset = 'transfers'")[0]
    assert fl["rejected"] and fl["reject_rule"] == "F02" and fl["rows_read"] == 0
    assert_identity(con)


def test_f02_silent_on_matching_manifest(tmp_path):
    clean_day(tmp_path)
    con, *_ = run_intake(tmp_path)
    assert findings(con, "F02") == []


# ------------------------------------------------------------------ F03

def test_f03_undecodable_with_declared_encoding(tmp_path):
    write_reference(tmp_path, live=("44",))
    gb = csv_bytes([transfer_row(relation_id="共济关系一")], COLUMNS["transfers"], "gb18030")
    write_province(tmp_path, D, "44", raw={"transfers.csv": gb})     # declared utf-8
    con, *_ = run_intake(tmp_path)
    f3 = findings(con, "F03")
    assert [f["record_id"] for f in f3] == ["transfers.csv"]
    assert "utf-8" in f3[0]["detail"]
    assert_identity(con)


def test_gb18030_file_decodes(tmp_path):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", encoding="gb18030",
                   transfers=[transfer_row(relation_id="共济关系一")])
    con, *_ = run_intake(tmp_path)
    assert findings(con) == []
    assert rows(con, "SELECT relation_id FROM transfers") == [{"relation_id": "共济关系一"}]
    assert rows(con, "SELECT DISTINCT encoding FROM file_loads") == [{"encoding": "gb18030"}]


def test_utf8_bom_is_stripped(tmp_path):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", bom=True, transfers=[transfer_row()])
    con, *_ = run_intake(tmp_path)
    assert findings(con) == []
    assert con.execute("SELECT count(*) FROM transfers").fetchone()[0] == 1


@pytest.mark.parametrize("bom", [False, True])
def test_header_only_file_without_a_line_end_is_a_0_row_file(tmp_path, bom):
    """inbox.md: a file may have 0 rows (header row only). The header's line end is
    not data; a last line without one is still a line (RFC 4180 §2.2)."""
    write_reference(tmp_path, live=("44",))
    header = ",".join(reversed(COLUMNS["transfers"])).encode()
    write_province(tmp_path, D, "44", persons=[person_row()],
                   raw={"transfers.csv": (b"\xef\xbb\xbf" if bom else b"") + header})
    con, *_ = run_intake(tmp_path)
    assert findings(con) == []
    fl = rows(con, "SELECT rows_read, rejected FROM file_loads WHERE dataset = 'transfers'")
    assert fl == [{"rows_read": 0, "rejected": False}]
    # still judged as a header: a missing column is F03 as before
    p = parse_csv(b"transfer_id,side", ("transfer_id", "side"))
    assert p.frame.height == 0
    with pytest.raises(FileRejected, match="lacks the required column amount"):
        parse_csv(b"transfer_id,side", ("transfer_id", "side", "amount"))


def test_f03_missing_required_column_extra_columns_and_order_free(tmp_path):
    write_reference(tmp_path, live=("44",))
    cols = list(reversed(COLUMNS["transfers"])) + ["note"]
    ok = csv_bytes([{**transfer_row(), "note": "x"}], cols)
    short = csv_bytes([person_row()], [c for c in COLUMNS["persons"] if c != "certno"])
    write_province(tmp_path, D, "44", raw={"transfers.csv": ok, "persons.csv": short})
    con, *_ = run_intake(tmp_path)
    f3 = findings(con, "F03")
    assert [(f["record_id"], f["dataset"]) for f in f3] == [("persons.csv", "persons")]
    assert "certno" in f3[0]["detail"]
    assert con.execute("SELECT count(*) FROM transfers").fetchone()[0] == 1


def test_f03_not_parquet(tmp_path):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", fmt="parquet", raw={"transfers.parquet": b"PAR1 not really"})
    con, *_ = run_intake(tmp_path)
    assert [f["record_id"] for f in findings(con, "F03")] == ["transfers.parquet"]


@pytest.mark.parametrize("manifest", [
    b"{not json", b"[1, 2]", {"province": "41"}, {"business_date": "2026-11-19"},
    {"files": ["persons.csv"]},
])
def test_f03_unreadable_or_inconsistent_manifest_delivers_nothing(tmp_path, manifest):
    write_reference(tmp_path, live=("44",))
    patch = (lambda m: manifest) if isinstance(manifest, bytes) else manifest
    write_province(tmp_path, D, "44", transfers=[transfer_row()], manifest=patch)
    con, *_ = run_intake(tmp_path)
    f = findings(con)
    assert [(x["rule_code"], x["record_id"]) for x in f] == [("F03", "manifest.json")]
    assert con.execute("SELECT count(*) FROM transfers").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM file_loads WHERE rejected").fetchone()[0] == 5
    assert_identity(con)


@pytest.mark.parametrize("key, said", [
    ("province", "manifest.json has no province; it must be the folder's 44"),
    ("business_date", f"manifest.json has no business_date; it must be {D.isoformat()}"),
])
def test_f03_a_manifest_without_its_province_or_date_says_so(tmp_path, key, said):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", transfers=[transfer_row()],
                   manifest=lambda m: {k: v for k, v in m.items() if k != key})
    con, *_ = run_intake(tmp_path)
    [f] = findings(con, "F03")
    assert f["detail"].startswith(said)


@pytest.mark.parametrize("key, value, said", [
    ("province", 44, 'manifest.json gives province as a number (44), not the text "44"'),
    ("province", None, 'manifest.json gives province as null, not the text "44"'),
    ("business_date", 20261120,
     f'manifest.json gives business_date as a number (20261120), not the text "{D.isoformat()}"'),
])
def test_f03_a_manifest_giving_its_province_or_date_not_as_text_says_so(tmp_path, key, value, said):
    """inbox.md: province and business_date are text ("44", "YYYY-MM-DD"); the finding
    says what was given instead, not that 44 differs from 44."""
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", transfers=[transfer_row()], manifest={key: value})
    con, *_ = run_intake(tmp_path)
    [f] = findings(con)
    assert (f["rule_code"], f["record_id"]) == ("F03", "manifest.json")
    assert f["detail"] == f"{said}; the province delivers nothing for {D.isoformat()}."


def test_f04_a_nul_byte_in_a_field_is_written_escaped_in_the_reason(tmp_path):
    # a raw NUL in exceptions.csv cuts the detail short in the readers auditors use
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", transfers=[transfer_row(amount="12\x00.00")])
    con, *_ = run_intake(tmp_path)
    [f] = findings(con, "F04")
    assert "amount '12\\x00.00' is not a decimal number" in f["detail"]
    assert "\x00" not in f["detail"]


def test_manifest_naming_other_paths_is_never_followed(tmp_path):
    write_reference(tmp_path, live=("44",))
    secret = tmp_path / "secret.csv"
    secret.write_text("psn_no\n1\n")
    evil = {"../../secret.csv": {"rows": 1, "sha256": "0" * 64},
            "/etc/passwd": {"rows": 1, "sha256": "0" * 64}}
    write_province(tmp_path, D, "44", transfers=[transfer_row()], manifest={"files": evil})
    con, *_ = run_intake(tmp_path)
    f3 = findings(con, "F03")
    assert sorted(f["record_id"] for f in f3) == ["../../secret.csv", "/etc/passwd"]
    assert all("not opened" in f["detail"] for f in f3)
    assert con.execute("SELECT count(*) FROM transfers").fetchone()[0] == 1


def test_null_file_list_gives_f02_for_every_stem(tmp_path):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", manifest={"files": None})
    con, *_ = run_intake(tmp_path)
    assert sorted(f["record_id"] for f in findings(con, "F02")) == [
        "balances.csv", "persons.csv", "relationships.csv", "settlements.csv", "transfers.csv"]


# ------------------------------------------------------------------ F04: every column rule at its boundary

@pytest.mark.parametrize("dataset, override, expect", [
    # amounts
    ("transfers", {"amount": "2000.5"}, ""),
    ("transfers", {"amount": "1999"}, ""),
    ("transfers", {"amount": "0.01"}, ""),
    ("transfers", {"amount": "0.001"}, "amount '0.001' has more than 2 decimals"),
    # every broken rule of the value, though it has none (reading 7m)
    ("transfers", {"amount": "-1.234"}, "amount '-1.234' has more than 2 decimals; "
                                        "amount '-1.234' is not > 0"),
    ("transfers", {"amount": "0.000"}, "amount '0.000' has more than 2 decimals; "
                                       "amount '0.000' is not > 0"),
    ("balances", {"opening_balance": "-0.001"}, "opening_balance '-0.001' has more than 2 "
                                                "decimals; opening_balance '-0.001' is negative"),
    ("balances", {"opening_balance": "-0.000"}, "opening_balance '-0.000' has more than 2 decimals"),
    ("settlements", {"wallet_pay": "-12345678901234567.00"}, "is too large; "
                                                            "wallet_pay '-12345678901234567.00' is not > 0"),
    ("transfers", {"amount": "0"}, "amount '0' is not > 0"),
    ("transfers", {"amount": "-5.00"}, "is not > 0"),
    ("transfers", {"amount": "1e3"}, "is not a decimal number"),
    ("transfers", {"amount": "12,50"}, "is not a decimal number"),
    ("transfers", {"amount": "12345678901234567.00"}, "is too large"),
    ("transfers", {"amount": ""}, "amount is missing"),
    ("settlements", {"personal_burden": "0"}, ""),
    ("settlements", {"personal_burden": "-0.01"}, "personal_burden '-0.01' is negative"),
    ("settlements", {"wallet_pay": "0.00"}, "wallet_pay '0.00' is not > 0"),
    ("settlements", {"total_amount": "150.00"}, ""),
    ("settlements", {"total_amount": "149.99"}, "total_amount '149.99' is less than personal_burden '150.00'"),
    ("balances", {"closing_balance": "0"}, ""),
    ("balances", {"opening_balance": "-1"}, "opening_balance '-1' is negative"),
    # timestamps
    ("transfers", {"transfer_time": "2026-11-20T23:59:59+08:00"}, ""),
    ("transfers", {"transfer_time": "2026-11-20T00:00:00+08:00"}, ""),
    ("transfers", {"transfer_time": "2026-11-19T16:00:00Z"}, ""),
    ("transfers", {"transfer_time": "2026-11-20T15:59:59.999999Z"}, ""),
    ("transfers", {"transfer_time": "2026-11-20T16:00:00Z"}, "is not on 2026-11-20 in Asia/Shanghai"),
    ("transfers", {"transfer_time": "2026-11-20T09:00:00-05:30"}, ""),   # 22:30 Shanghai
    ("transfers", {"transfer_time": "2026-11-20T11:00:00-05:00"}, "is not on 2026-11-20"),
    ("transfers", {"transfer_time": "2026-11-20T09:00:00"}, "transfer_time '2026-11-20T09:00:00' has no offset"),
    ("transfers", {"transfer_time": "2026-11-20 09:00:00+08:00"}, "is not an ISO 8601 timestamp"),
    ("transfers", {"transfer_time": "2026-11-31T09:00:00+08:00"}, "is not a valid timestamp"),
    ("transfers", {"transfer_time": "2026-11-20T24:00:00+08:00"}, "is not a valid timestamp"),
    ("settlements", {"setl_time": "2026-11-21T00:00:00+08:00"}, "is not on 2026-11-20"),
    ("relationships", {"event_time": "2026-11-19T23:59:59+08:00"}, "is not on 2026-11-20"),
    # codes (case-sensitive) and patterns
    ("transfers", {"side": "out"}, "side 'out' is not a valid code"),
    ("transfers", {"status": "PENDING"}, "status 'PENDING' is not a valid code"),
    ("relationships", {"relation_code": "COUSIN"}, ""),
    ("relationships", {"relation_code": "FRIEND"}, "relation_code 'FRIEND' is not a valid code"),
    ("relationships", {"channel": "WECHAT"}, "is not a valid code"),
    ("relationships", {"event_type": "CREATE"}, "is not a valid code"),
    ("persons", {"insutype": "320"}, "insutype '320' is not a valid code"),
    ("persons", {"insu_status": "Active"}, "is not a valid code"),
    ("settlements", {"expense_type": "CASH_WITHDRAWAL"}, ""),
    ("settlements", {"expense_type": "GAMBLING"}, "is not a valid code"),
    ("balances", {"account": "SAVINGS"}, "is not a valid code"),
    ("transfers", {"sharer_psn_no": "4400000000000000001"}, "is not 20 digits"),
    ("transfers", {"beneficiary_psn_no": "4100000000000000000２"}, "is not 20 digits"),  # full-width digit
    ("transfers", {"beneficiary_province": "99"}, "beneficiary_province '99' is not a province code"),
    ("relationships", {"beneficiary_province": "4"}, "is not a province code"),
    # inbox.md gives settlements' fixmedins_code no pattern: an odd code loads and is
    # an unknown institution for S15 (reading 7l)
    ("settlements", {"fixmedins_code": "H4100000001"}, ""),
    ("settlements", {"fixmedins_code": "YB4101000001"}, ""),
    ("settlements", {"fixmedins_code": "P41000000001", "expense_type": "PHARMACY"}, ""),
    # province of the file
    ("transfers", {"sharer_province": "45", "sharer_psn_no": "45000000000000000001"},
     "sharer_province '45' is not the file's province 44 on an OUT record"),
    ("persons", {"insu_admdvs": "450100"}, "insu_admdvs '450100' is not in the file's province 44"),
    ("persons", {"insu_admdvs": "44010"}, "is not 6 digits"),
    # every broken rule: not 6 digits, and not in the file's province either
    ("persons", {"insu_admdvs": "4501"}, "insu_admdvs '4501' is not 6 digits; "
                                         "insu_admdvs '4501' is not in the file's province 44"),
    ("persons", {"as_of": "2026-11-19"}, "as_of '2026-11-19' is not 2026-11-20"),
    ("persons", {"as_of": "2026/11/20"}, "is not a date YYYY-MM-DD"),
    # conditional requirements
    ("settlements", {"status": "REFUND", "orig_setl_id": "S0"}, ""),
    ("settlements", {"status": "REFUND"}, "orig_setl_id is missing for a REFUND"),
    ("settlements", {"orig_setl_id": "S0"}, "orig_setl_id 'S0' is given for a NORMAL settlement"),
    ("settlements", {"fixmedins_code": ""}, "fixmedins_code is missing for expense_type OUTPATIENT"),
    ("settlements", {"expense_type": "NON_MEDICAL_GOODS", "fixmedins_code": ""}, "fixmedins_code is missing"),
    ("settlements", {"expense_type": "RESIDENT_PREMIUM", "fixmedins_code": ""}, ""),
    ("settlements", {"expense_type": "LTC_PREMIUM"}, "is given for expense_type LTC_PREMIUM"),
    ("balances", {"account": "QUOTA", "sharer_psn_no": SHARER, "sharer_province": "44"}, ""),
    ("balances", {"account": "QUOTA"}, "sharer_psn_no is missing for a QUOTA row; "
                                       "sharer_province is missing for a QUOTA row"),
    ("balances", {"sharer_psn_no": SHARER}, "sharer_psn_no '44000000000000000001' is given for a PERSONAL row"),
    # sharer_province is only "required for QUOTA" (not "null for PERSONAL"): reading 7d
    ("balances", {"sharer_province": "44"}, ""),
    ("balances", {"sharer_province": "99"}, "sharer_province '99' is not a province code"),
    ("relationships", {"commitment_signed": "false"}, ""),
    ("relationships", {"commitment_signed": "True"}, "commitment_signed 'True' is not true or false"),
    ("relationships", {"commitment_signed": ""}, "commitment_signed is missing for ESTABLISH"),
    ("relationships", {"commitment_signed": "", "event_type": "DISSOLVE"}, ""),
    ("relationships", {"event_id": ""}, "event_id is missing"),
])
def test_f04_column_rule_boundaries(dataset, override, expect):
    got = reasons_of(dataset, override)
    if expect:
        assert expect in got
    else:
        assert got == ""


def test_an_odd_institution_code_is_s15_and_held_and_a_personal_sharer_province_is_read(tmp_path):
    """inbox.md gives settlements' fixmedins_code no pattern and balances' sharer_province
    only "required for QUOTA": such rows load, and the rules judge them (readings 7d, 7l)."""
    import csv

    from flows.nightly import run_date_plain
    clean_day(tmp_path / "inbox")
    write_province(tmp_path / "inbox", D, "44", persons=[person_row(SHARER)],
                   relationships=[relationship_row(relation_code="CHILD")],
                   transfers=[transfer_row("T1", "OUT")],
                   balances=[balance_row(SHARER, sharer_province="44")])
    write_province(tmp_path / "inbox", D, "41",
                   persons=[person_row(BENEFICIARY, birth="20050101", male=False, insutype="390")],
                   transfers=[transfer_row("T1", "IN")],
                   settlements=[settlement_row("S1", fixmedins_code="YB4101000001")],
                   balances=[balance_row(BENEFICIARY, "QUOTA", "0.00", "500.00", sharer=SHARER)])
    summary = run_date_plain(tmp_path / "inbox", tmp_path / "out", tmp_path / "wh.duckdb", D)
    with open(tmp_path / "out" / D.isoformat() / "exceptions.csv", encoding="utf-8") as f:
        found = [(r["rule_code"], r["record_id"]) for r in csv.DictReader(f)]
    assert found == [("S15", "S1")]   # no F04, and no S10 (the PERSONAL opening was read)
    assert summary["amounts"]["held"] == "100.00"


def test_certno_rules_and_masking():
    good = person_row()["certno"]
    assert reasons_of("persons", {}) == ""
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    got = reasons_of("persons", {"certno": wrong})
    assert "has a wrong check character" in got
    assert good[:17] not in got and got.count("********") == 1   # masked: first 6 + last 4
    from contracts.certno import make_certno
    future = make_certno("440100", "20261121", 1, True)
    assert "has a birth date after 2026-11-20" in reasons_of("persons", {"certno": future})
    assert reasons_of("persons", {"certno": make_certno("440100", "20261120", 1, True)}) == ""
    feb30 = "44010019800230001"
    from contracts.certno import check_char
    assert "holds no real birth date" in reasons_of("persons", {"certno": feb30 + check_char(feb30)})
    year0 = "44010000000101001"      # there is no year 0000 in the Gregorian calendar
    assert "holds no real birth date" in reasons_of("persons", {"certno": year0 + check_char(year0)})
    first = "44010000010101001"      # 0001-01-01 is a real date (not after D)
    assert reasons_of("persons", {"certno": first + check_char(first)}) == ""
    assert "is not 17 digits" in reasons_of("persons", {"certno": good[:17] + "x"})


def test_one_f04_per_row_lists_every_broken_rule_and_record_ids():
    it = load_one("transfers", [
        transfer_row("T1", amount="12.345", transfer_time="2026-11-20T09:00:00"),
        transfer_row("", amount="0"),
        transfer_row("T3"),
    ])
    f4 = it.findings.filter(pl.col("rule_code") == "F04").to_dicts()
    assert [(f["record_id"], f["source_row"]) for f in f4] == [("T1", 1), ("row:2", 2)]
    assert f4[0]["detail"] == ("amount '12.345' has more than 2 decimals; "
                               "transfer_time '2026-11-20T09:00:00' has no offset")
    assert f4[1]["detail"] == "transfer_id is missing; amount '0' is not > 0"
    assert it.transfers["transfer_id"].to_list() == ["T3"]
    q = it.quarantine.to_dicts()
    assert json.loads(q[0]["raw"])["amount"] == "12.345"
    assert [r["reasons"] for r in q] == [f["detail"] for f in f4]


def test_huge_field_is_quarantined_with_a_short_reason():
    it = load_one("transfers", [transfer_row(relation_id="R1"), transfer_row("T2", side="X" * 300_000)])
    f4 = it.findings.filter(pl.col("rule_code") == "F04")
    assert f4.height == 1 and len(f4["detail"][0]) < 200
    assert f4["detail"][0].startswith("side is 300000 characters long, more than the limit of 64")
    assert it.transfers.height == 1


def test_ragged_row_is_quarantined_and_rows_keep_their_numbers():
    cols = COLUMNS["transfers"]
    good = csv_bytes([transfer_row("T1"), transfer_row("T2"), transfer_row("T3")], cols)
    lines = good.split(b"\r\n")
    lines[2] = lines[2] + b",extra"                     # data row 2 has one field too many
    data = b"\r\n".join(lines)
    files = {f"{ds}.csv": csv_bytes([], COLUMNS[ds]) for ds in COLUMNS}
    files["transfers.csv"] = data
    manifest = manifest_for("44", D, {n: (3 if n == "transfers.csv" else 0, b) for n, b in files.items()})
    it = load_province(ProvinceDelivery("44", D, manifest_bytes=json.dumps(manifest).encode(),
                                        files=files), D)
    assert it.transfers.select("transfer_id", "source_row").rows() == [("T1", 1), ("T3", 3)]
    f4 = it.findings.to_dicts()
    # F04's record_id: "the row's id column if readable (non-empty)": it is, where it stands
    assert [(f["record_id"], f["source_row"]) for f in f4] == [("T2", 2)]
    assert "11 fields" in f4[0]["detail"]
    st = next(s for s in it.files if s.dataset == "transfers")
    assert (st.rows_read, st.rows_loaded, st.rows_quarantined) == (3, 2, 1)


def ragged_ids(dataset: str, header: list[str], rows: list[str]) -> list[str]:
    """The F04 record_ids of `rows` (CSV lines under `header`), each with the wrong field count."""
    data = ("\r\n".join([",".join(header), *rows]) + "\r\n").encode()
    files = {f"{ds}.csv": csv_bytes([], COLUMNS[ds]) for ds in COLUMNS}
    files[f"{dataset}.csv"] = data
    manifest = manifest_for("44", D, {n: (len(rows) if n == f"{dataset}.csv" else 0, b)
                                      for n, b in files.items()})
    it = load_province(ProvinceDelivery("44", D, manifest_bytes=json.dumps(manifest).encode(),
                                        files=files), D)
    f4 = it.findings.filter(pl.col("rule_code") == "F04")
    assert f4["detail"].str.contains("fields, the header has").all()
    return f4["record_id"].to_list()


def test_a_ragged_rows_record_id_is_its_id_field_where_the_header_puts_it_else_its_row():
    # setl_id last in the header: a short row lacks it, a long row has a field there
    header = [c for c in COLUMNS["settlements"] if c != "setl_id"] + ["setl_id"]
    assert ragged_ids("settlements", header, [
        "41000000000000000002,NORMAL",                      # too short: no setl_id
        ",".join(["x"] * (len(header) - 1)) + ',S9,"extra"',  # a field too many
        '"S,1",a',                                          # quoted comma, too short
    ]) == ["row:1", "S9", "row:3"]
    assert ragged_ids("transfers", COLUMNS["transfers"], ['"T,1",OUT']) == ["T,1"]
    # balances: psn_no:sharer_psn_no (QUOTA) or psn_no:PERSONAL, as any F04 row
    header = COLUMNS["balances"]
    short = {"psn_no": SHARER, "account": "PERSONAL"}
    assert ragged_ids("balances", header, [
        ",".join(short.get(c, "") for c in header[:3]),
        ",".join({"psn_no": SHARER, "account": "QUOTA", "sharer_psn_no": BENEFICIARY}.get(c, "1")
                 for c in header) + ",extra",
    ]) == [f"{SHARER}:PERSONAL", f"{SHARER}:{BENEFICIARY}"]


def test_quoted_newline_is_a_value_not_a_row():
    cols = COLUMNS["transfers"]
    data = csv_bytes([transfer_row("T1", relation_id="R\n1"), transfer_row("T2")], cols)
    p = parse_csv(data, tuple(cols))
    assert p.frame["relation_id"].to_list() == ["R\n1", "R1"]
    assert p.frame["source_row"].to_list() == [1, 2]


# ------------------------------------------------------------------ F05

def test_f05_later_duplicates_quarantined_first_kept():
    it = load_one("transfers", [transfer_row("T1", "OUT"), transfer_row("T1", "IN", beneficiary="44000000000000000009"),
                                transfer_row("T1", "OUT", amount="7.00"), transfer_row("T1", "OUT")])
    f5 = it.findings.filter(pl.col("rule_code") == "F05").to_dicts()
    assert [(f["record_id"], f["source_row"]) for f in f5] == [("T1:OUT", 3), ("T1:OUT", 4)]
    assert "row 1" in f5[0]["detail"]
    assert it.transfers.select("side", "source_row").rows() == [("OUT", 1), ("IN", 2)]


def test_f04_before_f05_first_valid_occurrence_is_kept():
    it = load_one("settlements", [settlement_row("S1", wallet_pay="0"), settlement_row("S1"),
                                  settlement_row("S1")])
    got = [(r["rule_code"], r["source_row"]) for r in it.findings.to_dicts()]
    assert got == [("F04", 1), ("F05", 3)]
    assert it.settlements["source_row"].to_list() == [2]


def test_f05_keys_of_balances_and_persons():
    it = load_one("balances", [
        balance_row(SHARER), balance_row(SHARER),
        balance_row(BENEFICIARY[:2].replace("41", "44") + BENEFICIARY[2:], "QUOTA", sharer=SHARER),
        balance_row("44" + BENEFICIARY[2:], "QUOTA", sharer=SHARER),
        balance_row("44" + BENEFICIARY[2:], "QUOTA", sharer="44000000000000000077"),
    ])
    f5 = it.findings.filter(pl.col("rule_code") == "F05")["record_id"].to_list()
    assert f5 == [f"{SHARER}:PERSONAL", f"44{BENEFICIARY[2:]}:{SHARER}"]
    it = load_one("persons", [person_row(), person_row(status="SUSPENDED")])
    assert it.findings["record_id"].to_list() == [SHARER]


def test_f05_silent_on_distinct_keys():
    it = load_one("transfers", [transfer_row("T1"), transfer_row("T2"),
                                transfer_row("T1", "IN", beneficiary="44000000000000000009")])
    assert it.findings.height == 0 and it.transfers.height == 3


# ------------------------------------------------------------------ Parquet

@pytest.mark.parametrize("fmt", ["parquet", "parquet_typed"])
def test_parquet_text_and_typed_load_like_csv(fmt):
    file_rows = [transfer_row("T1", amount="2000.5"), transfer_row("T2", amount="0.50"),
                 transfer_row("T3", transfer_time="2026-11-19T16:30:00Z")]
    csv_it = load_one("transfers", file_rows)
    pq_it = load_one("transfers", file_rows, fmt=fmt)
    assert pq_it.findings.height == 0 and csv_it.findings.height == 0
    drop = ["source_file"]
    assert pq_it.transfers.drop(drop).equals(csv_it.transfers.drop(drop))
    assert pq_it.transfers["amount"].to_list() == [Decimal("2000.50"), Decimal("0.50"), Decimal("500.00")]


def test_parquet_typed_values_judged_by_the_same_rules():
    import io
    import pyarrow as pa_
    import pyarrow.parquet as pq
    base = parquet_bytes("transfers", [transfer_row("T1")], typed=True)
    t = pq.read_table(io.BytesIO(base))
    naive = t.set_column(t.column_names.index("transfer_time"), "transfer_time",
                         pa_.array([datetime(2026, 11, 20, 9, 0)], pa_.timestamp("us")))
    three = t.set_column(t.column_names.index("amount"), "amount",
                         pa_.array([Decimal("1.234")], pa_.decimal128(18, 3)))
    floaty = t.set_column(t.column_names.index("amount"), "amount", pa_.array([1.5], pa_.float64()))

    def load(table):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        files = {f"{ds}.parquet": parquet_bytes(ds, [], False) for ds in COLUMNS}
        files["transfers.parquet"] = buf.getvalue()
        m = manifest_for("44", D, {n: (1 if n == "transfers.parquet" else 0, b) for n, b in files.items()})
        return load_province(ProvinceDelivery("44", D, manifest_bytes=json.dumps(m).encode(),
                                              files=files), D)

    assert "has no offset" in load(naive).findings["detail"][0]
    assert "more than 2 decimals" in load(three).findings["detail"][0]
    f = load(floaty).findings.to_dicts()
    assert [(x["rule_code"], x["record_id"]) for x in f] == [("F03", "transfers.parquet")]
    # a 256-bit decimal is still a decimal: loaded and judged like decimal128 (polars
    # itself cannot take it and panics, which would end the whole run)
    wide = t.set_column(t.column_names.index("amount"), "amount",
                        pa_.array([Decimal("1999.50")], pa_.decimal256(40, 2)))
    it = load(wide)
    assert it.findings.height == 0 and it.transfers["amount"].to_list() == [Decimal("1999.50")]
    wide0 = t.set_column(t.column_names.index("amount"), "amount",
                         pa_.array([Decimal("0.00")], pa_.decimal256(40, 2)))
    assert "is not > 0" in load(wide0).findings["detail"][0]
    huge = t.set_column(t.column_names.index("amount"), "amount",
                        pa_.array([Decimal("9" * 39)], pa_.decimal256(40, 0)))
    f = load(huge).findings.to_dicts()
    assert [(x["rule_code"], x["record_id"]) for x in f] == [("F03", "transfers.parquet")]
    # a timestamp with a fixed-offset zone is a timestamp with a time zone (item 2),
    # though polars knows no zone named +05:45: 02:00 UTC is 10:00 on D in Shanghai
    from datetime import timezone
    nepal = t.set_column(t.column_names.index("transfer_time"), "transfer_time", pa_.array(
        [datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)], pa_.timestamp("us", tz="+05:45")))
    it = load(nepal)
    assert it.findings.height == 0
    assert it.transfers["transfer_time"].to_list() == [datetime(2026, 11, 20, 10, 0)]
    late = t.set_column(t.column_names.index("transfer_time"), "transfer_time", pa_.array(
        [datetime(2026, 11, 20, 16, 0, tzinfo=timezone.utc)], pa_.timestamp("us", tz="-05:00")))
    assert "is not on 2026-11-20" in load(late).findings["detail"][0]
    # a date far beyond year 9999 makes polars panic: a finding, never a crash
    far = t.set_column(t.column_names.index("transfer_time"), "transfer_time",
                       pa_.array([2 ** 30], pa_.date32()))
    f = load(far).findings.to_dicts()
    assert [(x["rule_code"], x["record_id"]) for x in f] == [("F03", "transfers.parquet")]


def _one_parquet_file(tmp_path, dataset, table):
    """Province 44 delivering `table` as its `dataset` Parquet file (one row), a person besides."""
    import io
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(table, buf)
    name = f"{dataset}.parquet"
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44", persons=[person_row()] if dataset != "persons" else None,
                   raw={name: buf.getvalue()},
                   manifest=lambda m: (m["files"][name].update(rows=1), m)[1])


def _typed_table(dataset, row):
    import io
    import pyarrow.parquet as pq
    return pq.read_table(io.BytesIO(parquet_bytes(dataset, [row], typed=True)))


@pytest.mark.parametrize("stored", ["plain", "dictionary"])
@pytest.mark.parametrize("column", ["transfer_id", "relation_id"])
def test_f03_parquet_text_that_is_not_utf8_cannot_be_decoded(tmp_path, column, stored):
    """rules.md F03: a file that cannot be decoded is rejected whole. A Parquet string
    column is UTF-8 by its type; bytes that are not never reach the warehouse (which
    refused them in the middle of the run) and the province's other files still load."""
    import pyarrow as pa_
    t = _typed_table("transfers", transfer_row("T1"))
    bad = pa_.array([b"R\xff\xfe1"], pa_.binary()).view(pa_.string())
    if stored == "dictionary":
        bad = bad.dictionary_encode()
    _one_parquet_file(tmp_path, "transfers", t.set_column(t.schema.get_field_index(column), column, bad))
    con, *_ = run_intake(tmp_path)
    assert [(f["rule_code"], f["record_id"], f["detail"]) for f in findings(con)] == [
        ("F03", "transfers.parquet",
         f"transfers.parquet cannot be decoded: column {column} holds text that is not valid UTF-8.")]
    assert con.execute("SELECT count(*) FROM persons").fetchone()[0] == 1
    assert_identity(con)


def _arrow_value(kind, raw):
    import pyarrow as pa_
    if kind == "date32":
        return pa_.array([raw], pa_.int32()).cast(pa_.date32())
    unit, tz = kind.split(":")[1:]
    return pa_.array([raw], pa_.int64()).cast(pa_.timestamp(unit, tz or None))


@pytest.mark.parametrize("dataset, column, kind, raw", [
    ("persons", "as_of", "date32", 2 ** 31 - 1),
    ("persons", "as_of", "date32", -2 ** 31),
    ("transfers", "transfer_time", "ts:us:Asia/Shanghai", 2 ** 63 - 1),
    ("transfers", "transfer_time", "ts:us:UTC", -2 ** 63),
    ("transfers", "transfer_time", "ts:ms:", 2 ** 63 - 1),
    ("transfers", "transfer_time", "ts:us:", 253402300800 * 10 ** 6),   # 10000-01-01T00:00:00
])
def test_f03_parquet_dates_and_timestamps_beyond_the_years_1_to_9999_without_a_panic(
        tmp_path, capfd, dataset, column, kind, raw):
    """A date or timestamp YYYY-MM-DD cannot write is F03 on the file, judged on the
    raw values: polars panics on such a value (a Rust panic message on stderr)."""
    row = person_row() if dataset == "persons" else transfer_row("T1")
    t = _typed_table(dataset, row)
    _one_parquet_file(tmp_path, dataset,
                      t.set_column(t.schema.get_field_index(column), column, _arrow_value(kind, raw)))
    con, *_ = run_intake(tmp_path)
    assert [(f["rule_code"], f["record_id"], f["detail"]) for f in findings(con)] == [
        ("F03", f"{dataset}.parquet",
         f"{dataset}.parquet has column {column} with a value outside the years 1 to 9999.")]
    assert "panicked" not in capfd.readouterr().err


@pytest.mark.parametrize("kind, raw, reason", [
    ("date32", 2932896, "as_of '9999-12-31' is not 2026-11-20"),                   # 9999-12-31
    ("date32", -719162, "as_of '0001-01-01' is not 2026-11-20"),                   # 0001-01-01
])
def test_parquet_dates_at_the_years_1_and_9999_are_judged_by_the_row_rules(tmp_path, capfd, kind,
                                                                             raw, reason):
    t = _typed_table("persons", person_row())
    _one_parquet_file(tmp_path, "persons",
                      t.set_column(t.schema.get_field_index("as_of"), "as_of", _arrow_value(kind, raw)))
    con, *_ = run_intake(tmp_path)
    [f] = findings(con)
    assert (f["rule_code"], f["dataset"]) == ("F04", "persons") and reason in f["detail"]
    assert "panicked" not in capfd.readouterr().err


# ------------------------------------------------------------------ the pandera text contract agrees with the reasons

def test_text_schema_accepts_exactly_the_rows_without_reasons():
    overrides = [{}, {"amount": "0.001"}, {"side": "IN"}, {"transfer_time": "2026-11-20T16:00:00Z"},
                 {"sharer_province": "45"}, {"amount": ""}, {"relation_id": "x"}]
    file_rows = [{**transfer_row(f"T{i}"), **o} for i, o in enumerate(overrides)]
    it = load_one("transfers", file_rows)
    bad_rows = set(it.findings["source_row"].to_list())
    frame = pl.DataFrame([{c: (r.get(c) or None) for c in COLUMNS["transfers"]} for r in file_rows],
                         schema={c: pl.String for c in COLUMNS["transfers"]})
    frame = frame.with_columns(typed_helpers("transfers"))
    schema = text_schema("transfers", Env(D, "44"))
    with pytest.raises(pa.errors.SchemaErrors) as e:
        schema.validate(frame, lazy=True)
    failing = set((e.value.failure_cases["index"].drop_nulls() + 1).to_list())
    assert failing == bad_rows == {2, 3, 4, 5, 6}
    ok = frame.filter(~pl.int_range(1, pl.len() + 1).is_in(list(bad_rows)))
    schema.validate(ok)


# ------------------------------------------------------------------ staging

def test_stage_replaces_only_its_date(tmp_path):
    clean_day(tmp_path)
    other = date(2026, 11, 21)
    clean_day(tmp_path, other)
    con, *_ = run_intake(tmp_path, other)
    run_intake(tmp_path, D, con)
    before = con.execute("SELECT count(*) FROM transfers WHERE business_date = ?", [other]).fetchone()
    run_intake(tmp_path, D, con)          # re-run D: same counts, other date untouched
    assert con.execute("SELECT count(*) FROM transfers WHERE business_date = ?", [D]).fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM file_loads WHERE business_date = ?", [D]).fetchone()[0] == 10
    assert con.execute("SELECT count(*) FROM transfers WHERE business_date = ?", [other]).fetchone() == before
    assert date_folders(tmp_path) == [D, other]


def test_every_file_keeps_the_accounting_identity(tmp_path):
    write_reference(tmp_path, live=("44",))
    write_province(tmp_path, D, "44",
                   persons=[person_row(), person_row(), person_row(as_of="x")],
                   transfers=[transfer_row("T1"), transfer_row("T1"), transfer_row("T2", amount="0")],
                   settlements=[settlement_row(psn_no="44" + BENEFICIARY[2:])],
                   balances=[balance_row(), balance_row(account="QUOTA")])
    con, *_ = run_intake(tmp_path)
    assert_identity(con)
    got = rows(con, "SELECT dataset, rows_read, rows_loaded, rows_quarantined FROM file_loads "
                    "ORDER BY dataset")
    assert [(r["dataset"], r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) for r in got] == [
        ("balances", 2, 1, 1), ("persons", 3, 1, 2), ("relationships", 0, 0, 0),
        ("settlements", 1, 1, 0), ("transfers", 3, 1, 2)]
    assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 5


# ------------------------------------------------------------------ the inbox on disk

def test_missing_date_folder_and_reference_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no folder for business date 2026-11-20"):
        write_reference(tmp_path)
        read_inbox_date(tmp_path, D)
    (tmp_path / D.isoformat()).mkdir()
    (tmp_path / "reference" / "regions.csv").unlink()
    with pytest.raises(InputError, match="regions.csv"):
        read_inbox_date(tmp_path, D)
    (tmp_path / "reference" / "regions.csv").write_text("admdvs,province\n440100,45\n")
    with pytest.raises(InputError, match="regions.csv"):
        read_inbox_date(tmp_path, D)


@pytest.mark.parametrize("text", ["2024-7-1", " 2024-07-01", "+2024-07-01", "2024-07-01 ",
                                  "0000-07-01", "2024-02-30", "20240701"])
@pytest.mark.parametrize("file, column", [("regions", "wallet_live_from"),
                                          ("institutions", "designated_from"),
                                          ("institutions", "designated_to")])
def test_reference_dates_are_strict_yyyy_mm_dd(tmp_path, file, column, text):
    """Reference files are strict (docs/spec-readings.md item 7e): a date that is not
    YYYY-MM-DD stops the run with one sentence, as the data files' dates are F04."""
    from contracts.codes import PROVINCES
    regions = [{"admdvs": f"{p}0100", "province": p, "name": p,
                "wallet_live_from": text if (file, p) == ("regions", "44") else "2024-07-01"}
               for p in PROVINCES]
    institutions = [{"fixmedins_code": "H41000000001", "fixmedins_type": "HOSPITAL", "admdvs": "410100",
                     "designated_from": "2020-01-01", "designated_to": ""},
                    {"fixmedins_code": "P41000000001", "fixmedins_type": "PHARMACY", "admdvs": "410100",
                     "designated_from": "2020-01-01", "designated_to": ""}]
    if file == "institutions":
        institutions[1][column] = text
    write_reference(tmp_path, regions=regions, institutions=institutions)
    write_province(tmp_path, D, "44", persons=[person_row()])
    row = PROVINCES.index("44") + 1 if file == "regions" else 2
    with pytest.raises(InputError) as e:
        read_inbox_date(tmp_path, D)
    assert str(e.value) == (f"The reference file reference/{file}.csv row {row} has {column} "
                            "that is not a date YYYY-MM-DD.")


def test_symlinks_out_of_the_inbox_are_refused(tmp_path):
    inbox = tmp_path / "inbox"
    write_reference(inbox, live=("44", "41"))
    folder = write_province(inbox, D, "44", transfers=[transfer_row()])
    outside = tmp_path / "outside.csv"
    outside.write_bytes((folder / "transfers.csv").read_bytes())
    (folder / "transfers.csv").unlink()
    os.symlink(outside, folder / "transfers.csv")
    elsewhere = tmp_path / "elsewhere"
    write_province(elsewhere, D, "41")
    os.symlink(elsewhere / D.isoformat() / "41", inbox / D.isoformat() / "41")
    con, inbox_date, _ = run_intake(inbox)
    f2 = findings(con, "F02")
    assert [(f["record_id"], "outside" in f["detail"]) for f in f2] == [("transfers.csv", True)]
    assert [f["record_id"] for f in findings(con, "F01")] == ["41"]


def test_transforms_never_import_flows():
    """Layout rule: transforms are pure; the inbox types they read live in contracts/."""
    import ast
    from pathlib import Path
    offenders = []
    for path in sorted((Path(__file__).resolve().parent.parent / "transforms").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "flows" or n.startswith("flows.")]
    assert offenders == []
