"""Run guarantees of outputs.md: order, STALE, idempotence, atomicity, one run at a time.
(The run folders - confinement, binding, read-only status, faults - are in test_run_folders.py.)

Every test drives the real `recon` command in a subprocess with the plain
orchestrator (RECON_ORCHESTRATOR=plain: the same steps, without Prefect's
start-up cost) over tiny inboxes written by tests/inbox_builders.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import warehouse as wh
from flows.nightly import KILL_POINTS, run_date_plain
from transforms.context import DATE_PARTITIONED
from transforms.findings import exception_id
from tests.inbox_builders import (BENEFICIARY, balance_row, clean_day, person_row,
                                  settlement_row, transfer_row, write_province, write_reference)

D1 = date(2026, 11, 20)
D2 = D1 + timedelta(days=1)
D3 = D1 + timedelta(days=2)
REPORTS = ("exceptions.csv", "settlement.csv", "positions.csv",
           "exceptions.parquet", "settlement.parquet")
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers

def henan(root: Path, day: date, extra_settlement: dict | None = None) -> None:
    """Henan's delivery of clean_day plus one settlement with an ineligible expense (S14)."""
    settlements = [settlement_row("S1", day=day)]
    if extra_settlement:
        settlements.append(extra_settlement)
    write_province(root, day, "41",
                   persons=[person_row(BENEFICIARY, birth="20050101", male=False, insutype="390",
                                       day=day)],
                   transfers=[transfer_row("T1", "IN", day=day)],
                   settlements=settlements,
                   balances=[balance_row(BENEFICIARY, "QUOTA", "0.00", "400.00",
                                         sharer=clean_sharer())])


def clean_sharer() -> str:
    from tests.inbox_builders import SHARER
    return SHARER


def ineligible(setl_id: str, day: date, expense: str) -> dict:
    return settlement_row(setl_id, day=day, expense_type=expense, wallet_pay="10.00",
                          setl_time=f"{day.isoformat()}T15:00:00+08:00")


def make_inbox(root: Path, days: int = 3) -> Path:
    for i in range(days):
        d = D1 + timedelta(days=i)
        clean_day(root, d)
        henan(root, d, ineligible("S9", d, "CASH_WITHDRAWAL"))
    return root


def correct_henan_d1(inbox: Path) -> None:
    """A corrected re-delivery of Henan for D1: S9 withdrawn, S2 added."""
    shutil.rmtree(inbox / D1.isoformat() / "41")
    henan(inbox, D1, ineligible("S2", D1, "COMMERCIAL_INSURANCE"))


def env_for(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "PREFECT_API"))}
    env.update(RECON_INBOX=str(tmp / "inbox"), RECON_OUT=str(tmp / "reports"),
               RECON_WAREHOUSE=str(tmp / "wh.duckdb"), RECON_ORCHESTRATOR="plain",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def recon(tmp: Path, *args: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=tmp,
                          env=env_for(tmp, **extra), capture_output=True, text=True, timeout=120)


def report_bytes(out: Path) -> dict[str, bytes]:
    """Every file under <out> (the hidden staging folder included) by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def warehouse_state(path: Path, with_runs: bool = True) -> dict[str, str]:
    con = wh.open_warehouse(path, read_only=True)
    try:
        return wh.table_digest(con, DATE_PARTITIONED + (("runs",) if with_runs else ()))
    finally:
        con.close()


def committed_runs(path: Path) -> dict[date, tuple[str, str]]:
    con = wh.open_warehouse(path, read_only=True)
    try:
        return {r["business_date"]: (r["run_id"], r["status"]) for r in wh.runs(con)}
    finally:
        con.close()


def summary(tmp: Path, d: date) -> dict:
    return json.loads((tmp / "reports" / d.isoformat() / "summary.json").read_text(encoding="utf-8"))


def recover_as_the_next_run_does(w: Path) -> None:
    """What every run does first, under both locks: complete or discard an interrupted publish."""
    with wh.run_lock(w / "wh.duckdb"):
        con = wh.open_warehouse(w / "wh.duckdb")
        try:
            with wh.out_lock(w / "reports", wh.warehouse_id(con), w / "wh.duckdb"):
                wh.recover(con, w / "reports")
        finally:
            con.close()


@pytest.fixture(scope="module")
def two_days_done(tmp_path_factory) -> Path:
    """Template: an inbox of 3 days with D1 and D2 reconciled (in-process, plain path)."""
    tmp = tmp_path_factory.mktemp("template")
    make_inbox(tmp / "inbox")
    for d in (D1, D2):
        run_date_plain(tmp / "inbox", tmp / "reports", tmp / "wh.duckdb", d)
    return tmp


@pytest.fixture
def done(two_days_done, tmp_path) -> Path:
    """A private copy of the template."""
    dst = tmp_path / "w"
    shutil.copytree(two_days_done, dst)
    return dst


# --------------------------------------------------------------------------- order

def test_refuses_a_date_whose_previous_date_is_not_processed(tmp_path):
    make_inbox(tmp_path / "inbox")
    r = recon(tmp_path, "run", "--date", D2.isoformat())
    assert r.returncode == 2
    assert D1.isoformat() in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports" / D2.isoformat()).exists()


def test_genesis_is_the_first_folder_of_the_inbox(tmp_path):
    make_inbox(tmp_path / "inbox")
    r = recon(tmp_path, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    s = summary(tmp_path, D1)
    assert s["genesis"] is True and s["status"] == "COMPLETE"
    r = recon(tmp_path, "run", "--date", D2.isoformat())
    assert r.returncode == 0, r.stderr
    assert summary(tmp_path, D2)["genesis"] is False


def test_date_without_a_folder_is_exit_2(done):
    r = recon(done, "run", "--date", "2026-12-31")
    assert r.returncode == 2 and "2026-12-31" in r.stderr and "Traceback" not in r.stderr


def test_rerun_marks_later_dates_stale_and_backfill_clears_them(done):
    r = recon(done, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    runs = committed_runs(done / "wh.duckdb")
    assert runs[D1][1] == "COMPLETE" and runs[D2][1] == "STALE"
    assert summary(done, D2)["status"] == "STALE"
    st = recon(done, "status")
    assert st.returncode == 0
    assert "STALE" in st.stdout
    assert f"recon backfill --start {D2.isoformat()} --end {D2.isoformat()}" in st.stdout
    # D2 was processed (outputs.md's condition), so D3 runs, warning that D2 is STALE
    r3 = recon(done, "run", "--date", D3.isoformat())
    assert r3.returncode == 0, r3.stderr
    assert D2.isoformat() in r3.stderr and "STALE" in r3.stderr and "recon backfill" in r3.stderr
    b = recon(done, "backfill", "--start", D2.isoformat(), "--end", D3.isoformat())
    assert b.returncode == 0, b.stderr
    assert {s for _, s in committed_runs(done / "wh.duckdb").values()} == {"COMPLETE"}
    assert summary(done, D2)["status"] == "COMPLETE"
    assert "No date is stale" in recon(done, "status").stdout


def test_partial_when_a_live_province_is_missing(tmp_path):
    inbox = make_inbox(tmp_path / "inbox", days=1)
    write_reference(inbox, live=("44", "41", "11"))
    r = recon(tmp_path, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    s = summary(tmp_path, D1)
    assert s["status"] == "PARTIAL" and s["provinces"]["missing"] == ["11"]
    assert s["findings"]["per_rule"]["F01"] == 1


# --------------------------------------------------------------------------- idempotence

def test_rerunning_a_range_is_byte_identical(done):
    before = report_bytes(done / "reports")
    state = warehouse_state(done / "wh.duckdb", with_runs=False)
    r = recon(done, "backfill", "--start", D1.isoformat(), "--end", D2.isoformat())
    assert r.returncode == 0, r.stderr
    after = report_bytes(done / "reports")
    for d in (D1, D2):
        for name in REPORTS:
            key = f"{d.isoformat()}/{name}"
            assert after[key] == before[key], key
    assert warehouse_state(done / "wh.duckdb", with_runs=False) == state
    s = summary(done, D1)
    assert s["changes_since_previous_run"]["new"] == []
    assert s["changes_since_previous_run"]["disappeared"] == []


def test_summary_has_what_operations_need(done):
    s = summary(done, D1)
    for key in ("business_date", "status", "provinces", "files", "findings", "amounts",
                "invariants", "input_sha256", "policy_version", "code_version", "started_at",
                "finished_at", "run_id", "changes_since_previous_run"):
        assert key in s, key
    assert len(s["invariants"]) >= 4 and all(i["passed"] for i in s["invariants"])
    inbox = done / "inbox"
    f = f"{D1.isoformat()}/41/settlements.csv"
    assert s["input_sha256"][f] == hashlib.sha256((inbox / f).read_bytes()).hexdigest()
    m = f"{D1.isoformat()}/41/manifest.json"
    assert s["input_sha256"][m] == hashlib.sha256((inbox / m).read_bytes()).hexdigest()
    assert s["input_sha256"]["reference/regions.csv"] == hashlib.sha256(
        (inbox / "reference" / "regions.csv").read_bytes()).hexdigest()
    for row in s["files"]:
        assert row["rows_read"] == row["rows_loaded"] + row["rows_quarantined"]
    assert set(s["amounts"]) >= {"settled", "held", "refunded"}


def test_corrected_redelivery_reports_new_and_disappeared_findings(done):
    before = (done / "reports" / D1.isoformat() / "exceptions.csv").read_text().splitlines()
    correct_henan_d1(done / "inbox")
    r = recon(done, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    ch = summary(done, D1)["changes_since_previous_run"]
    assert ch["new"] == [exception_id("S14", D1.isoformat(), "41", "S2")]
    assert ch["disappeared"] == [exception_id("S14", D1.isoformat(), "41", "S9")]
    after = (done / "reports" / D1.isoformat() / "exceptions.csv").read_text().splitlines()
    assert [x for x in before if ",44," in x] == [x for x in after if ",44," in x]
    assert committed_runs(done / "wh.duckdb")[D2][1] == "STALE"


# --------------------------------------------------------------------------- atomicity

PRE_COMMIT = ("after_stage", "after_rules", "after_reports_staged")
POST_COMMIT = ("after_commit", "mid_publish", "after_swap")
assert set(PRE_COMMIT + POST_COMMIT) == set(KILL_POINTS)


def reference_run(tmp_path: Path, two_days_done: Path) -> dict[str, bytes]:
    """Reports of the corrected D1 from an uninterrupted run, for comparison."""
    ref = tmp_path / "ref"
    shutil.copytree(two_days_done, ref)
    correct_henan_d1(ref / "inbox")
    r = recon(ref, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    return {n: (ref / "reports" / D1.isoformat() / n).read_bytes() for n in REPORTS}


@pytest.mark.parametrize("point", PRE_COMMIT)
def test_kill_before_commit_leaves_everything_as_it_was(done, point):
    before, state = report_bytes(done / "reports"), warehouse_state(done / "wh.duckdb")
    correct_henan_d1(done / "inbox")
    r = recon(done, "run", "--date", D1.isoformat(), RECON_TEST_KILL_AT=point)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert warehouse_state(done / "wh.duckdb") == state
    visible = {k: v for k, v in report_bytes(done / "reports").items()
               if not k.startswith(wh.STAGING)}
    assert visible == before
    # the next run recovers and succeeds
    r = recon(done, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    assert not (done / "reports" / wh.STAGING).exists()
    assert summary(done, D1)["changes_since_previous_run"]["new"] == [
        exception_id("S14", D1.isoformat(), "41", "S2")]


@pytest.mark.parametrize("point", POST_COMMIT)
def test_kill_after_commit_is_rolled_forward(done, point, tmp_path, two_days_done):
    old = report_bytes(done / "reports")
    old_runs = committed_runs(done / "wh.duckdb")
    correct_henan_d1(done / "inbox")
    r = recon(done, "run", "--date", D1.isoformat(), RECON_TEST_KILL_AT=point)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    new_runs = committed_runs(done / "wh.duckdb")
    assert new_runs[D1][0] != old_runs[D1][0]          # the commit is the point of no return
    target = done / "reports" / D1.isoformat()
    if target.exists():                                # never a mix of old and new files
        now = {n: (target / n).read_bytes() for n in REPORTS}
        old_d1 = {n: old[f"{D1.isoformat()}/{n}"] for n in REPORTS}
        ref = reference_run(tmp_path, two_days_done)
        assert now in (old_d1, ref)
    # status is read-only: it tells of the interrupted publish and changes nothing
    seen = report_bytes(done / "reports")
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert f"The publish of {D1.isoformat()}" in st.stdout and "interrupted" in st.stdout
    assert report_bytes(done / "reports") == seen
    # the next run completes the publish first, under the locks
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 0, r.stderr
    assert not (done / "reports" / wh.STAGING).exists()
    assert summary(done, D1)["run_id"] == new_runs[D1][0]
    assert summary(done, D2)["status"] == "STALE"
    r = recon(done, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr


def test_kill_at_random_moments_never_leaves_a_mix(two_days_done, tmp_path):
    rng = random.Random(20261120)
    t0 = time.monotonic()
    ref = reference_run(tmp_path, two_days_done)
    took = time.monotonic() - t0               # an uninterrupted run, start-up included
    outcomes = []
    for i in range(3):
        w = tmp_path / f"k{i}"
        shutil.copytree(two_days_done, w)
        old = {n: (w / "reports" / D1.isoformat() / n).read_bytes() for n in REPORTS}
        old_state = warehouse_state(w / "wh.duckdb")
        correct_henan_d1(w / "inbox")
        p = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--date", D1.isoformat()],
                             cwd=w, env=env_for(w), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        delay = took * rng.uniform(0.5, 1.3)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        recover_as_the_next_run_does(w)
        now = {n: (w / "reports" / D1.isoformat() / n).read_bytes() for n in REPORTS}
        if committed_runs(w / "wh.duckdb")[D1] == committed_runs(two_days_done / "wh.duckdb")[D1]:
            assert warehouse_state(w / "wh.duckdb") == old_state and now == old
            outcomes.append(f"rolled back ({delay:.2f}s of {took:.2f}s, rc {p.returncode})")
        else:
            assert now == ref
            outcomes.append(f"rolled forward ({delay:.2f}s of {took:.2f}s, rc {p.returncode})")
        r = recon(w, "run", "--date", D1.isoformat())
        assert r.returncode == 0, r.stderr
        assert {n: (w / "reports" / D1.isoformat() / n).read_bytes() for n in REPORTS} == ref
    print("random kills:", outcomes)


# --------------------------------------------------------------------------- one run at a time

def test_second_run_on_the_same_warehouse_is_refused(done):
    before = report_bytes(done / "reports")
    with wh.run_lock(done / "wh.duckdb"):       # what a running `recon run` holds
        t0 = time.monotonic()
        r = recon(done, "run", "--date", D1.isoformat())
        assert time.monotonic() - t0 < 30
    assert r.returncode == 2
    assert "Another recon run" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert report_bytes(done / "reports") == before


def test_lock_is_released_when_the_holder_dies(done):
    r = recon(done, "run", "--date", D1.isoformat(), RECON_TEST_KILL_AT="after_rules")
    assert r.returncode == -signal.SIGKILL
    with wh.run_lock(done / "wh.duckdb"):
        pass


def test_nightly_catches_up_from_the_first_stale_or_unprocessed_date(done):
    from flows.nightly import Paths, pending_dates
    paths = Paths.of(done / "inbox", done / "reports", done / "wh.duckdb")
    assert pending_dates(paths, D3) == [D3]
    assert pending_dates(paths, D2) == []
    run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D1)  # D2 now STALE
    assert pending_dates(paths, D3) == [D2, D3]


# --------------------------------------------------------------------------- amounts at the edge

def test_an_amount_as_large_as_decimal_18_2_holds_is_reconciled(tmp_path):
    """F04 takes up to 16 integer digits; the ledger's integer fen of 1e14 yuan must not overflow."""
    big = "100000000000000.00"
    clean_day(tmp_path / "inbox", D1)
    henan(tmp_path / "inbox", D1, settlement_row("S9", day=D1, wallet_pay=big, personal_burden=big,
                                                 total_amount=big))
    r = recon(tmp_path, "run", "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    assert "S18" in summary(tmp_path, D1)["findings"]["per_rule"]   # more than the wallet holds


def test_amounts_that_add_up_beyond_decimal_18_2_are_exit_2_and_publish_nothing(tmp_path):
    v = "9999999999999999.99"   # each fits DECIMAL(18,2); the two together do not
    clean_day(tmp_path / "inbox", D1)
    write_province(tmp_path / "inbox", D1, "41",
                   persons=[person_row(BENEFICIARY, birth="20050101", male=False, insutype="390",
                                       day=D1)],
                   transfers=[transfer_row("T1", "IN", amount=v, day=D1),
                              transfer_row("T2", "IN", amount=v, day=D1)])
    r = recon(tmp_path, "run", "--date", D1.isoformat())
    assert r.returncode == 2, r.stderr
    assert "add up to 2000000000001" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports" / D1.isoformat()).exists()
