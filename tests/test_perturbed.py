"""A perturbed synthetic nation (`recon generate --perturb RATE`, synth/perturb.py).

Hostile but well-formed records near every rule boundary, nothing planted: the
findings are not known in advance, so these tests assert only what rules.md and
outputs.md promise whatever the data: the invariants of rules.md §8 in every
run's summary.json, rows read = loaded + quarantined for every file, and the
same reports for a re-run and for a backfill as for day-by-day runs.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows.nightly import backfill_plain, run_date_plain
from synth.generate import generate

START = date(2026, 11, 1)
DAYS = 3
DATES = [START + timedelta(days=i) for i in range(DAYS)]
RESULTS = ("exceptions.csv", "settlement.csv", "positions.csv")
RATE = 0.2


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> tuple[Path, dict]:
    """A small perturbed inbox, reconciled day by day."""
    tmp = tmp_path_factory.mktemp("perturbed")
    stats = generate(tmp / "inbox", START, DAYS, 900, 77, violation_rate=0.01, perturb=RATE)
    for d in DATES:
        run_date_plain(tmp / "inbox", tmp / "daily", tmp / "daily.duckdb", d)
    return tmp, stats


def summary(out: Path, d: date) -> dict:
    return json.loads((out / d.isoformat() / "summary.json").read_text(encoding="utf-8"))


def results(out: Path) -> dict[str, str]:
    return {f"{d.isoformat()}/{name}": hashlib.sha256((out / d.isoformat() / name).read_bytes()).hexdigest()
            for d in DATES for name in RESULTS}


def test_the_generator_perturbed_every_kind_and_planted_no_truth(perturbed):
    tmp, stats = perturbed
    assert not (tmp / "inbox" / "planted_truth.csv").exists()
    kinds = stats["perturbed"]
    for kind in ("amount at 2000.00/2000.01", "one side dropped", "IN side shifted by a second",
                 "transfer repeated", "round trip", "DISSOLVE at a transfer's second",
                 "DISSOLVE at an ESTABLISH's second (persons swapped for half)",
                 "unsigned re-ESTABLISH a second later", "wallet_pay + 0.01",
                 "REFUND (same settlement)", "REFUND (other settlement)", "REFUND (unknown settlement)",
                 "QUOTA balance +-0.01", "person SUSPENDED"):
        assert kinds.get(kind, 0) > 0, kind


def test_the_perturbed_files_match_their_manifests(perturbed):
    """The perturber fixes rows and sha256 of every file it rewrites: the only F02/F03
    are the generator's own file plants (settlements of 54 and 63)."""
    tmp, _ = perturbed
    for d in DATES:
        with open(tmp / "daily" / d.isoformat() / "exceptions.csv", newline="", encoding="utf-8") as fh:
            files = {(r["province"], r["dataset"]) for r in csv.DictReader(fh)
                     if r["rule_code"] in ("F02", "F03")}
        assert files <= {("54", "settlements"), ("63", "settlements")}, (d, files)
        for folder in (tmp / "inbox" / d.isoformat()).iterdir():
            if folder.name in ("54", "63") or not (folder / "manifest.json").exists():
                continue
            entries = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]
            for name, entry in entries.items():
                assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest(), \
                    f"{d}/{folder.name}/{name}"


def test_every_invariant_of_section_8_holds_on_every_day(perturbed):
    tmp, _ = perturbed
    for d in DATES:
        s = summary(tmp / "daily", d)
        names = {i["name"] for i in s["invariants"]}
        assert {"files", "quota", "clearing", "settlements"} <= names, names
        failed = [i for i in s["invariants"] if not i["passed"]]
        assert not failed, f"{d}: {failed}"


def test_rows_read_are_loaded_or_quarantined_in_every_file(perturbed):
    tmp, _ = perturbed
    for d in DATES:
        files = summary(tmp / "daily", d)["files"]
        assert files
        for f in files:
            assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"], f


def test_a_rerun_gives_byte_identical_results(perturbed, tmp_path):
    tmp, _ = perturbed
    shutil.copytree(tmp / "daily", tmp_path / "out")
    shutil.copy(tmp / "daily.duckdb", tmp_path / "wh.duckdb")
    backfill_plain(tmp / "inbox", tmp_path / "out", tmp_path / "wh.duckdb", DATES[0], DATES[-1])
    assert results(tmp_path / "out") == results(tmp / "daily")


def test_a_backfill_gives_the_results_of_day_by_day_runs(perturbed, tmp_path):
    tmp, _ = perturbed
    backfill_plain(tmp / "inbox", tmp_path / "out", tmp_path / "wh.duckdb", DATES[0], DATES[-1])
    assert results(tmp_path / "out") == results(tmp / "daily")


def test_perturbed_records_stay_well_formed(perturbed, tmp_path):
    """The perturber moves records to the rules' boundaries, not out of the inbox
    contract: the run quarantines as many rows (F04, F05) as the unperturbed inbox of
    the same seed plants."""
    tmp, _ = perturbed
    generate(tmp_path / "plain", START, DAYS, 900, 77, violation_rate=0.01)
    with open(tmp_path / "plain" / "planted_truth.csv", newline="", encoding="utf-8") as fh:
        planted = [r for r in csv.DictReader(fh) if r["rule_code"] in ("F04", "F05")]
    for d in DATES:
        per_rule = summary(tmp / "daily", d)["findings"]["per_rule"]
        for code in ("F04", "F05"):
            want = sum(1 for r in planted if r["business_date"] == d.isoformat() and r["rule_code"] == code)
            assert per_rule.get(code, 0) == want, (d, code)
