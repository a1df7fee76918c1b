"""Operations (issue 11): waiting for late provinces until the deadline, dates whose
inputs changed since their run, catch-up in order, and a whole late-delivery story
driven by a fake clock. The plain path reconciles (no Prefect); alerts go to a local
HTTP endpoint on 127.0.0.1 through apprise's json:// channel.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import sleep

import pytest

from contracts import operations as ops_contract
from flows import operations as ops
from flows import warehouse as wh
from flows.alerts import LATE, MISSING, Alerter
from flows.nightly import SHANGHAI, Paths, PlainExecutor, run_date
from tests.inbox_builders import (BENEFICIARY, SHARER, balance_row, person_row, relationship_row,
                                  settlement_row, transfer_row, write_province, write_reference)
from tests.test_alerts import http_sink

D1 = date(2026, 11, 20)
D2, D3, D4 = (D1 + timedelta(days=i) for i in (1, 2, 3))
ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """Asia/Shanghai time that moves only when the code sleeps; `on_sleep` runs
    after each sleep (a province delivering while the run waits)."""

    def __init__(self, start: datetime, on_sleep=None):
        self.t, self.on_sleep, self.sleeps = start, on_sleep, []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += timedelta(seconds=seconds)
        if self.on_sleep:
            self.on_sleep(self)


def at(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), SHANGHAI)


def guangdong(root: Path, day: date, **over) -> Path:
    return write_province(root, day, "44", persons=[person_row(SHARER, day=day)],
                          relationships=[relationship_row(day=day)],
                          transfers=[transfer_row("T1", "OUT", day=day)],
                          balances=[balance_row(SHARER)], **over)


def henan(root: Path, day: date) -> Path:
    return write_province(root, day, "41",
                          persons=[person_row(BENEFICIARY, birth="20050101", male=False,
                                              insutype="390", day=day)],
                          transfers=[transfer_row("T1", "IN", day=day)],
                          settlements=[settlement_row("S1", day=day)],
                          balances=[balance_row(BENEFICIARY, "QUOTA", "0.00", "400.00", sharer=SHARER)])


def paths_of(tmp_path: Path) -> Paths:
    return Paths.of(tmp_path / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")


def plain(paths: Paths):
    return lambda d: run_date(paths, d, PlainExecutor(max_workers=2))


def status_of(paths: Paths) -> dict[date, str]:
    return {r["business_date"]: r["status"] for r in ops.recorded_runs(paths)}


@pytest.fixture
def inbox3(tmp_path):
    """D1..D3 delivered by Guangdong (44) and Henan (41), D1..D3 processed."""
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    for d in (D1, D2, D3):
        guangdong(paths.inbox, d)
        henan(paths.inbox, d)
        run_date(paths, d, PlainExecutor(max_workers=2))
    return paths


# --------------------------------------------------------------------------- look-back

def test_a_date_rerun_with_unchanged_inputs_has_no_changed_inputs(tmp_path):
    """What the look-back recomputes is exactly what the run recorded, also for an
    incomplete folder, a file listed twice and a manifest that is not JSON: else the
    nightly run would re-run such dates forever."""
    paths = paths_of(tmp_path)
    write_reference(paths.inbox, live=("44", "41", "11", "12"))
    guangdong(paths.inbox, D1, omit=("transfers.csv",))
    henan(paths.inbox, D1)
    write_province(paths.inbox, D1, "11", manifest=lambda m: b"{not json")
    write_province(paths.inbox, D1, "12", manifest=lambda m: {
        **m, "files": {**m["files"], "persons.parquet": m["files"]["persons.csv"]}})
    run_date(paths, D1, PlainExecutor(max_workers=2))
    recorded = json.loads((paths.out / "2026-11-20" / "summary.json").read_text())["input_sha256"]
    assert {k: v for k, v in recorded.items() if k.startswith("2026-11-20/")} == \
        ops.current_inputs(paths.inbox, D1)
    assert ops.changed_dates(paths, 30) == []


def test_a_province_missing_at_the_run_that_delivers_later_changes_its_date(tmp_path):
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)
    assert run_date(paths, D1, PlainExecutor(max_workers=2))["status"] == "PARTIAL"
    assert ops.changed_dates(paths, 30) == []
    guangdong(paths.inbox, D1)
    [changed] = ops.changed_dates(paths, 30)
    assert changed.business_date == D1
    assert changed.reasons == ["province 44 delivered after the run"]


def test_a_corrected_file_whose_sha256_differs_changes_its_date(inbox3):
    henan(inbox3.inbox, D2)  # same content: not a change
    assert ops.changed_dates(inbox3, 30) == []
    (inbox3.inbox / "2026-11-21" / "41" / "settlements.csv").write_bytes(b"corrected\r\n")
    [changed] = ops.changed_dates(inbox3, 30)
    assert changed.business_date == D2
    assert changed.reasons[0].startswith("2026-11-21/41/settlements.csv changed (sha256 ")


def test_only_dates_of_the_lookback_window_are_checked(inbox3):
    (inbox3.inbox / "2026-11-20" / "41" / "settlements.csv").write_bytes(b"corrected\r\n")
    assert [c.business_date for c in ops.changed_dates(inbox3, 3)] == [D1]
    assert ops.changed_dates(inbox3, 2) == []          # D2..D3 only
    assert [c.business_date for c in ops.changed_dates(inbox3, 2, until=D2)] == [D1]


def test_inbox_files_are_hashed_in_bounded_chunks(tmp_path, monkeypatch):
    folder = tmp_path / "f"
    folder.mkdir()
    data = bytes(range(256)) * 41
    (folder / "persons.csv").write_bytes(data)
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(ops_contract, "HASH_CHUNK_BYTES", 1000)
    monkeypatch.setattr("builtins.open", lambda *a, **k: Spy(real_open(*a, **k)))
    assert ops._hash_inside(folder, "persons.csv") == ("ok", hashlib.sha256(data).hexdigest())
    assert reads and all(0 < n <= 1000 for n in reads)


def test_a_file_hashed_before_is_taken_from_the_cache_until_it_is_rewritten(inbox3):
    cache_file = Path(f"{inbox3.warehouse}.sha256-cache.json")
    assert ops.changed_dates(inbox3, 30) == []
    cached = json.loads(cache_file.read_text())
    settlements = str((inbox3.inbox / "2026-11-21" / "41" / "settlements.csv").resolve())
    assert cached[settlements][5] == hashlib.sha256(Path(settlements).read_bytes()).hexdigest()
    cached[settlements][5] = "f" * 64          # proves the next look-back reads the cache
    cache_file.write_text(json.dumps(cached))
    [changed] = ops.changed_dates(inbox3, 30)
    assert changed.reasons[0].startswith("2026-11-21/41/settlements.csv changed (sha256 ")
    assert "is now ffffffffffff…" in changed.reasons[0]
    original = Path(settlements).read_bytes()
    sleep(0.05)                                # a later write: the kernel's ctime moves on
    Path(settlements).write_bytes(original.replace(b"S1", b"S2"))   # same size, new bytes
    [changed] = ops.changed_dates(inbox3, 30)
    now = hashlib.sha256(Path(settlements).read_bytes()).hexdigest()
    assert f"is now {now[:12]}…" in changed.reasons[0]


def test_catch_up_reruns_the_changed_date_then_the_stale_dates_after_it(inbox3):
    (inbox3.inbox / "2026-11-21" / "41" / "settlements.csv").write_bytes(b"corrected\r\n")
    changed, summaries = ops.catch_up(inbox3, ops.OpsConfig(), plain(inbox3))
    assert [c.business_date for c in changed] == [D2]
    assert [s["business_date"] for s in summaries] == ["2026-11-21", "2026-11-22"]
    assert wh.STALE not in status_of(inbox3).values()
    again_changed, again = ops.catch_up(inbox3, ops.OpsConfig(), plain(inbox3))
    assert again_changed == [] and again == []      # converged: nothing left to re-run


def test_catch_up_brings_stale_dates_up_to_date_even_without_changed_inputs(inbox3):
    run_date(inbox3, D1, PlainExecutor(max_workers=2))     # D2, D3 become STALE
    assert status_of(inbox3)[D3] == wh.STALE
    _, summaries = ops.catch_up(inbox3, ops.OpsConfig(), plain(inbox3))
    assert [s["business_date"] for s in summaries] == ["2026-11-21", "2026-11-22"]
    assert wh.STALE not in status_of(inbox3).values()


# --------------------------------------------------------------------------- waiting

def test_waiting_ends_when_every_live_province_delivered_a_complete_folder(tmp_path):
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)
    deliveries = {2: lambda: guangdong(paths.inbox, D1)}   # Guangdong arrives at the 2nd look

    def deliver(clock):
        step = deliveries.pop(len(clock.sleeps), None)
        if step:
            step()

    clock = FakeClock(at(D2, "02:30"), deliver)
    missing = ops.wait_for_provinces(paths.inbox, D1, ops.deadline_at(D1, time(4, 30)), clock, 60)
    assert missing == []
    assert clock.sleeps == [60, 60]
    assert clock.now() == at(D2, "02:32")


def test_waiting_stops_at_the_deadline_and_names_the_provinces_still_missing(tmp_path, caplog):
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)
    clock = FakeClock(at(D2, "04:00"))
    with caplog.at_level("INFO", logger="recon"):
        missing = ops.wait_for_provinces(paths.inbox, D1, ops.deadline_at(D1, time(4, 30)),
                                         clock, 600)
    assert missing == ["44"]
    assert clock.now() == at(D2, "04:30")
    assert sum(clock.sleeps) == 1800
    assert "waiting for provinces of 2026-11-20 until 2026-11-21T04:30:00+08:00: 44 (no folder)" \
        in caplog.text


def test_a_folder_whose_manifest_names_a_file_not_yet_there_is_still_awaited(tmp_path):
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)
    guangdong(paths.inbox, D1, omit=("balances.csv",))
    r = ops.province_readiness(paths.inbox, D1)
    assert r.live == ["41", "44"]
    assert r.waiting == {"44": "balances.csv not there yet"}
    (paths.inbox / "2026-11-21").mkdir(parents=True)
    assert set(ops.province_readiness(paths.inbox, D2).waiting) == {"41", "44"}


def test_the_deadline_is_0430_shanghai_on_the_day_after_and_configurable(monkeypatch):
    assert ops.deadline_at(D1, ops.OpsConfig().deadline) == at(D2, "04:30")
    monkeypatch.setenv("RECON_DEADLINE", "05:15")
    assert ops.OpsConfig.from_env().deadline == time(5, 15)
    with pytest.raises(Exception, match="not a time HH:MM"):
        ops.OpsConfig.from_env(deadline="half past four")


def test_a_province_delivering_at_0310_is_in_the_night_run_of_its_date(tmp_path):
    """The run starts at 02:30 and waits; Guangdong delivers at 03:10; the date is
    reconciled COMPLETE at 03:10 and nobody is alerted."""
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)

    def deliver(clock):
        if clock.now() >= at(D2, "03:10") and not (paths.inbox / "2026-11-20" / "44").exists():
            guangdong(paths.inbox, D1)

    clock = FakeClock(at(D2, "02:30"), deliver)
    with http_sink() as sink:
        [s] = ops.nightly_run(paths, ops.OpsConfig(alerts=(sink.url,)), plain(paths), clock)
    assert s["status"] == "COMPLETE" and s["provinces"]["missing"] == []
    assert clock.now() == at(D2, "03:10")
    assert sink.messages == []


# --------------------------------------------------------------------------- the story

def test_late_delivery_story_province_44_missing_then_delivered_completes_itself(tmp_path):
    """Guangdong (44) misses the night of D1; D1 is reconciled PARTIAL at 04:30 with a
    'missing at deadline' alert; D2 and D3 run as usual; Guangdong then delivers D1; the
    night of D4 re-runs D1 and the two dates after it, then D4, and alerts 'completed by
    late delivery'."""
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    for d in (D1, D2, D3, D4):
        henan(paths.inbox, d)
    for d in (D2, D3, D4):
        guangdong(paths.inbox, d)
    with http_sink() as sink:
        cfg = ops.OpsConfig(alerts=(sink.url,))

        def night(d: date) -> list[str]:
            clock = FakeClock(at(d + timedelta(days=1), "02:30"))
            done = ops.nightly_run(paths, cfg, plain(paths), clock)
            return [s["business_date"] for s in done], clock

        ran, clock = night(D1)
        assert ran == ["2026-11-20"] and clock.now() == at(D2, "04:30")
        assert status_of(paths)[D1] == "PARTIAL"
        assert [m["title"] for m in sink.messages] == [f"recon 2026-11-20: {MISSING}"]
        assert "province(s) 44 had not delivered" in sink.messages[0]["message"]
        assert str((paths.out / "2026-11-20" / "report.html").resolve()) in sink.messages[0]["message"]

        assert night(D2)[0] == ["2026-11-21"]
        assert night(D3)[0] == ["2026-11-22"]
        assert len(sink.messages) == 1                 # clean nights are silent

        guangdong(paths.inbox, D1)                     # the late delivery
        ran, clock = night(D4)
        assert ran == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
        assert clock.sleeps == []                      # D4 was complete: no waiting
        assert status_of(paths) == {D1: "COMPLETE", D2: "COMPLETE", D3: "COMPLETE", D4: "COMPLETE"}
        assert [m["title"] for m in sink.messages] == [f"recon 2026-11-20: {MISSING}",
                                                       f"recon 2026-11-20: {LATE}"]
        assert "province(s) 44 delivered late; the re-run of 2026-11-20 is COMPLETE (was PARTIAL)" \
            in sink.messages[1]["message"]
        summary = json.loads((paths.out / "2026-11-20" / "summary.json").read_text())
        assert summary["provinces"]["missing"] == []
        assert ops.changed_dates(paths, 30) == []


# --------------------------------------------------------------------------- command line

def recon(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, "RECON_ORCHESTRATOR": "plain", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_recon_status_lists_dates_whose_inputs_changed_and_catch_up_reruns_them(inbox3):
    shared = ["--inbox", str(inbox3.inbox), "--out", str(inbox3.out),
              "--warehouse", str(inbox3.warehouse)]
    (inbox3.inbox / "2026-11-21" / "41" / "settlements.csv").write_bytes(b"corrected\r\n")
    st = recon("status", *shared)
    assert st.returncode == 0, st.stderr
    assert "Inputs changed since their run" in st.stdout
    assert not Path(f"{inbox3.warehouse}.sha256-cache.json").exists()   # status writes nothing
    assert "2026-11-21" in st.stdout and "41/settlements.csv changed" in st.stdout
    cu = recon("catch-up", *shared)
    assert cu.returncode == 0, cu.stderr
    assert "2026-11-21: 2026-11-21/41/settlements.csv changed" in cu.stdout
    assert cu.stdout.count(" PARTIAL: ") + cu.stdout.count(" COMPLETE: ") == 2   # D2 and D3
    st = recon("status", *shared)
    assert "No processed date of the last 30 days has inputs that changed" in st.stdout
    cu = recon("catch-up", *shared)
    assert cu.returncode == 0 and "Nothing to catch up" in cu.stdout


def test_a_reader_that_stops_early_does_not_stop_a_backfill(inbox3):
    """`recon backfill ... | head -1`: the pipe closes after the first result line; the
    backfill still reconciles every date and exits 0 (it stopped halfway with exit 1 and
    'internal error, BrokenPipeError')."""
    import os
    env = {**os.environ, "RECON_ORCHESTRATOR": "plain"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "backfill", "--start", D1.isoformat(), "--end",
         D3.isoformat(), "--inbox", str(inbox3.inbox), "--out", str(inbox3.out),
         "--warehouse", str(inbox3.warehouse)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()                      # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert first and "Broken" not in err and "error" not in err
    finished = {r["business_date"]: r["finished_at"] for r in wh.status_snapshot(inbox3)["runs"]}
    assert all(finished[d] > finished[D1] for d in (D2, D3))   # D2 and D3 ran after D1


def test_catch_up_with_no_inbox_is_a_usage_error_not_nothing_to_catch_up(inbox3, tmp_path):
    """A mistyped --inbox must not read as "nothing changed" (exit 0) every night."""
    cu = recon("catch-up", "--inbox", str(tmp_path / "typo"), "--out", str(inbox3.out),
               "--warehouse", str(inbox3.warehouse))
    assert cu.returncode == 2 and "Nothing to catch up" not in cu.stdout
    assert cu.stderr.startswith("recon: The inbox ") and "does not exist" in cu.stderr


def test_recon_status_lists_a_date_it_could_not_check_apart_from_those_catch_up_re_runs(inbox3):
    """A date whose published summary.json cannot be read is not checked: `recon status`
    lists it under a heading of its own, never under the dates `recon catch-up` re-runs,
    and says what catch-up does with it (nothing, its inputs being unchanged) and what
    rewrites the file (`recon run --date D`)."""
    shared = ["--inbox", str(inbox3.inbox), "--out", str(inbox3.out),
              "--warehouse", str(inbox3.warehouse)]
    published = inbox3.out / "2026-11-22" / "summary.json"
    published.unlink()
    st = recon("status", *shared)
    assert st.returncode == 0, st.stderr
    lines = st.stdout.splitlines()
    assert "Inputs changed since their run" not in st.stdout
    assert "No other processed date of the last 30 days has inputs that changed since its run." \
        in lines                                                  # D1 and D2 were compared
    assert not any(x.startswith("No processed date") for x in lines)
    heading = lines.index("Inputs not checked: their summary.json cannot be read. `recon catch-up` "
                          "leaves them as they are unless their inputs differ from the warehouse's "
                          "record or an earlier date is re-run;")
    assert lines[heading + 1] == ("`recon run --date D` rewrites D's summary.json (the dates after "
                                  "D turn STALE; `recon catch-up` then re-runs them):")
    assert lines[heading + 2:] == [
        f"  2026-11-22  COMPLETE  not checked: there is no readable {published} to compare its "
        "inputs with (check --out, RECON_OUT)"]
    cu = recon("catch-up", *shared)                               # what the heading says
    assert cu.returncode == 0 and "Nothing to catch up" in cu.stdout, cu.stderr
    assert not published.exists()
    run = recon("run", "--date", "2026-11-22", *shared)
    assert run.returncode == 0, run.stderr
    assert published.is_file()
    st = recon("status", *shared)
    assert "No processed date of the last 30 days has inputs that changed since its run." \
        in st.stdout.splitlines() and "not checked" not in st.stdout


@pytest.mark.parametrize("argv, sentence", [
    (["serve", "--deadline", "25:00"], "The deadline '25:00' is not a time HH:MM (Asia/Shanghai)."),
    (["catch-up", "--alerts", "nosuch://ops:secret@host"],
     "The alert channel nosuch://… is not a URL apprise understands."),
])
def test_bad_operations_settings_are_refused_in_one_sentence_before_anything_runs(
        argv, sentence, tmp_path, capsys):
    from flows.cli import main
    assert main(argv + ["--inbox", str(tmp_path), "--warehouse", str(tmp_path / "wh.duckdb")]) == 2
    out, err = capsys.readouterr()
    assert err == f"recon: {sentence}\n"
    assert "secret" not in out + err and "Serving" not in out
    assert not (tmp_path / "wh.duckdb").exists()


# --------------------------------------------------------------------------- scorecard

def test_province_scorecard_counts_on_time_late_missing_rejected_and_quarantined_worst_first(
        tmp_path, capsys):
    """Guangdong (44) misses D1, exports D2 at 06:00 on D+1 (after the 04:30 deadline) and
    delivers a transfer with 3 decimals on D3; Henan (41) is on time every day but its D3
    settlements.csv does not match its manifest."""
    from contracts.summary import load
    from flows.cli import main
    paths = paths_of(tmp_path)
    write_reference(paths.inbox)
    henan(paths.inbox, D1)
    guangdong(paths.inbox, D2, manifest={"exported_at": "2026-11-22T06:00:00+08:00"})
    henan(paths.inbox, D2)
    write_province(paths.inbox, D3, "44", persons=[person_row(SHARER, day=D3)],
                   relationships=[relationship_row(day=D3)],
                   transfers=[transfer_row("T1", "OUT", day=D3),
                              transfer_row("T9", "OUT", amount="12.345", day=D3)],
                   balances=[balance_row(SHARER)])
    henan(paths.inbox, D3)
    (paths.inbox / "2026-11-22" / "41" / "settlements.csv").write_bytes(b"not what the manifest says\r\n")
    for d in (D1, D2, D3):
        run_date(paths, d, PlainExecutor(max_workers=2))
    runs = ops.recorded_runs(paths)
    quarantined_44 = sum(f.rows_quarantined for f in runs[2]["summary"].files if f.province == "44")
    read_44 = sum(f.rows_read for r in runs for f in r["summary"].files if f.province == "44")
    assert quarantined_44 == 1
    card = load(paths.out / D3.isoformat() / "summary.json").delivery_scorecard
    assert (card.first_date, card.last_date, card.dates, card.deadline, card.not_counted) == \
        (D1, D3, 3, "04:30", [])
    assert [(r.province, r.dates, r.on_time, r.late, r.missing, r.files_rejected)
            for r in card.provinces] == [("44", 3, 1, 1, 1, 0), ("41", 3, 3, 0, 0, 1)]
    assert [r.quarantined_per_10k for r in card.provinces] == [round(10_000 / read_44, 1), 0.0]

    assert main(["status", "--provinces", "--inbox", str(paths.inbox), "--out", str(paths.out),
                 "--warehouse", str(paths.warehouse)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Delivery scorecard of the last 3 processed date(s), "
                               "2026-11-20..2026-11-22")
    assert lines[2].split() == ["44", "3", "1", "1", "1", "0", f"{10_000 / read_44:.1f}"]
    assert lines[3].split() == ["41", "3", "3", "0", "0", "1", "0.0"]
