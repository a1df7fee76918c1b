"""What the run folders allow (issue 9; outputs.md "Run guarantees"; docs/run-folders.md).

Nothing under <out> or beside the warehouse is trusted: a hostile journal or a link
planted in <out> never makes recon delete, move or overwrite anything outside it.
<out> belongs to one warehouse. `recon status` is read-only. A full disk, a denied
permission or a read-only folder is one sentence naming the path, exit 1, with the
previous reports intact, and the next run succeeds once the cause is gone.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows import nightly, publish
from flows import warehouse as wh
from flows.cli import main
from flows.nightly import RunFailed, new_run_id, run_date_plain
from tests.test_run_guarantees import (D1, D2, D3, committed_runs, env_for, recon,  # noqa: F401
                                       report_bytes, two_days_done, done, warehouse_state)

HOSTILE_RUN_ID = "../../victim"


def victim_folder(root: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder outside <out> that nothing of recon may touch, with its content."""
    v = root / "victim"
    (v / "inner").mkdir(parents=True)
    (v / "keep.txt").write_text("precious\n")
    (v / "inner" / "also.txt").write_text("also precious\n")
    return v, snapshot(v)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def visible_reports(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in report_bytes(out).items() if not k.startswith(wh.STAGING)}


def one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and lines[0].startswith("recon: ")
    return lines[0]


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size and modification time (links not followed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------- confinement

def test_status_never_deletes_outside_staging_for_hostile_journal(done):
    victim, content = victim_folder(done)
    staging = done / "reports" / wh.STAGING
    staging.mkdir()
    (staging / "evil.json").write_text(json.dumps(
        {"run_id": HOSTILE_RUN_ID, "business_date": D1.isoformat()}))
    # a journal named like a run whose content names another path
    rid = new_run_id(D1)
    (staging / f"{rid}.json").write_text(json.dumps(
        {"run_id": HOSTILE_RUN_ID, "business_date": D1.isoformat()}))
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert snapshot(victim) == content
    r = recon(done, "run", "--date", D3.isoformat())   # the run discards them, and only them
    assert r.returncode == 0, r.stderr
    assert snapshot(victim) == content
    assert not staging.exists()


def test_staging_symlink_not_followed(done):
    victim, content = victim_folder(done)
    staging = done / "reports" / wh.STAGING
    staging.symlink_to(victim, target_is_directory=True)
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert snapshot(victim) == content
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 0, r.stderr
    assert snapshot(victim) == content                  # the link went, its target stayed
    assert not os.path.lexists(staging)
    assert (done / "reports" / D3.isoformat() / "summary.json").is_file()


def test_committed_journal_with_linked_staging_moves_nothing(done):
    """A journal naming the committed run of D1 whose staging folder is a link: the
    swap never moves the link's target into <out>, nor <out>/<D1> into it."""
    victim, content = victim_folder(done)
    (victim / D1.isoformat()).mkdir()
    (victim / D1.isoformat() / "summary.json").write_text("{}")
    content = snapshot(victim)
    before = visible_reports(done / "reports")
    rid = committed_runs(done / "wh.duckdb")[D1][0]
    staging = done / "reports" / wh.STAGING
    staging.mkdir()
    (staging / rid).symlink_to(victim, target_is_directory=True)
    (staging / f"{rid}.json").write_text(json.dumps(
        {"run_id": rid, "business_date": D1.isoformat(), "staged": f"{rid}/{D1.isoformat()}"}))
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 0, r.stderr
    assert snapshot(victim) == content
    after = visible_reports(done / "reports")
    assert {k: v for k, v in after.items() if k.startswith(D1.isoformat())} == \
           {k: v for k, v in before.items() if k.startswith(D1.isoformat())}


def test_stale_marking_never_writes_through_a_planted_link(done):
    """Marking D2 STALE rewrites its summary.json aside and renames it in: a link planted
    where the old code put its temp file is never written through."""
    victim_file = done / "victim.txt"
    victim_file.write_text("precious\n")
    (done / "reports" / D2.isoformat() / ".summary.json.tmp").symlink_to(victim_file)
    r = recon(done, "run", "--date", D1.isoformat())   # re-run of D1: D2 becomes STALE
    assert r.returncode == 0, r.stderr
    assert victim_file.read_text() == "precious\n"
    assert json.loads((done / "reports" / D2.isoformat() / "summary.json").read_text())[
        "status"] == "STALE"


def test_run_ids_the_program_makes_are_the_only_ones_recovery_accepts():
    assert wh.RUN_ID.fullmatch(new_run_id(D1))
    for hostile in (HOSTILE_RUN_ID, "..", "", "/etc", f"{new_run_id(D1)}/..",
                    new_run_id(D1) + "\n"):
        assert not wh.RUN_ID.fullmatch(hostile)
        with pytest.raises(ValueError):
            wh.journal_path(Path("out"), hostile)


def test_reports_folder_that_is_a_file_is_exit_2(done):
    (done / "r").write_text("a file where the reports folder should be")
    r = recon(done, "run", "--date", D3.isoformat(), "--out", "r")
    assert r.returncode == 2
    assert "r is not a folder" in one_sentence(r.stderr)


# --------------------------------------------------------------------------- one warehouse per <out>

def test_two_warehouses_one_out_refused(done):
    before = report_bytes(done / "reports")
    r = recon(done, "run", "--date", D1.isoformat(), "--warehouse", "other.duckdb")
    assert r.returncode == 2
    line = one_sentence(r.stderr)
    assert "reports" in line and "another warehouse" in line and "other.duckdb" in line
    assert report_bytes(done / "reports") == before
    # the warehouse the folder belongs to still publishes there
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 0, r.stderr


def test_two_warehouses_racing_into_one_new_out_one_wins(done):
    """Two warehouses started at the same moment on a fresh <out>: one publishes all its
    reports, the other stops with one sentence; never two runs staging side by side."""
    out = done / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--date", D1.isoformat(),
                               "--out", str(out), "--warehouse", name], cwd=done,
                              env=env_for(done), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for name in ("a.duckdb", "b.duckdb")]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "another warehouse" in one_sentence(loser) or "publishing into" in loser
    winner = ("a.duckdb", "b.duckdb")[[rc for rc, _ in results].index(0)]
    rid = committed_runs(done / winner)[D1][0]
    assert publish.missing_reports(out / D1.isoformat(), rid) == []
    assert not (out / wh.STAGING).exists()


def test_out_is_locked_while_a_run_publishes_into_it(done):
    """Two runs (e.g. through two paths to one warehouse) never stage into one <out> at once."""
    con = wh.open_warehouse(done / "wh.duckdb")
    identity = wh.warehouse_id(con)
    con.close()
    before = report_bytes(done / "reports")
    with wh.out_lock(done / "reports", identity, done / "wh.duckdb"):
        r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 2
    assert "Another recon run is publishing into" in one_sentence(r.stderr)
    assert report_bytes(done / "reports") == before


def test_run_that_loses_its_staging_after_the_commit_does_not_exit_0(done, monkeypatch):
    """What another run's recovery did to a run sharing <out>: the staged reports vanish
    between the commit and the swap. The run must not report success."""
    real = nightly.kill_point

    def lose_staging(point):
        if point == "after_commit":
            shutil.rmtree(done / "reports" / wh.STAGING)
        real(point)
    monkeypatch.setattr(nightly, "kill_point", lose_staging)
    with pytest.raises(RunFailed, match="incomplete after publishing"):
        run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D3)
    monkeypatch.undo()
    run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D3)
    assert publish.missing_reports(done / "reports" / D3.isoformat(),
                                   committed_runs(done / "wh.duckdb")[D3][0]) == []


def test_reports_missing_from_staging_publish_nothing(done, monkeypatch):
    before, state = visible_reports(done / "reports"), warehouse_state(done / "wh.duckdb")
    monkeypatch.setattr(publish.report_xlsx, "write", lambda *a, **k: None)  # writes no file
    with pytest.raises(RunFailed, match="exceptions.xlsx missing"):
        run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D1)
    assert visible_reports(done / "reports") == before
    assert warehouse_state(done / "wh.duckdb") == state


# --------------------------------------------------------------------------- read-only status

def test_status_while_run_in_progress(done):
    with wh.run_lock(done / "wh.duckdb"):
        con = duckdb.connect(str(done / "wh.duckdb"))   # what a run holds: DuckDB read-write
        try:
            t0 = time.monotonic()
            st = recon(done, "status")
            assert time.monotonic() - t0 < 30
        finally:
            con.close()
    assert st.returncode == 0, st.stderr
    assert "in progress" in st.stdout
    assert D1.isoformat() in st.stdout and D2.isoformat() in st.stdout


def test_status_never_blocks_a_run(done):
    """A run that starts while a status probes the run lock is not refused."""
    lock = os.open(f"{done / 'wh.duckdb'}.lock", os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_SH)             # what status's probe holds, here for longer
    release = threading.Timer(0.3, lambda: os.close(lock))
    release.start()
    try:
        s = run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D3)
    finally:
        release.join()
    assert s["business_date"] == D3.isoformat()


def test_status_missing_warehouse_exit2_creates_nothing(done):
    before = tree_state(done)
    st = recon(done, "status", "--warehouse", "wh.dukcdb")
    assert st.returncode == 2
    assert "wh.dukcdb" in one_sentence(st.stderr)
    assert tree_state(done) == before


def test_status_creates_and_changes_no_file(done):
    before = tree_state(done), report_bytes(done)
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert (tree_state(done), report_bytes(done)) == before


def test_status_reads_a_warehouse_written_before_status_files(done):
    wh.status_file(done / "wh.duckdb").unlink()
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert D1.isoformat() in st.stdout and D2.isoformat() in st.stdout
    assert not wh.status_file(done / "wh.duckdb").exists()


def test_status_file_that_is_not_ours_falls_back_to_the_warehouse(done):
    wh.status_file(done / "wh.duckdb").write_text(json.dumps(
        {"runs": [{"business_date": "2026-11-20", "run_id": HOSTILE_RUN_ID, "status": "OK"}]}))
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert committed_runs(done / "wh.duckdb")[D1][0] in st.stdout
    assert HOSTILE_RUN_ID not in st.stdout


def test_status_snapshot_is_what_the_warehouse_committed(done):
    snap = wh.status_snapshot(nightly.Paths.of(done / "inbox", done / "reports", done / "wh.duckdb"))
    assert snap["run_in_progress"] is None and snap["interrupted"] == []
    assert {r["business_date"]: (r["run_id"], r["status"]) for r in snap["runs"]} == \
        committed_runs(done / "wh.duckdb")
    for r in snap["runs"]:
        assert r["summary"]["run_id"] == r["run_id"]


def test_status_file_holds_each_committed_summary_without_its_heavy_fields_after_a_rerun(done):
    """The status file joins the copies a run stored once (run_status_copies): after a
    re-run of D1 it still shows what the warehouse committed, D2 STALE, and the copy of
    the replaced run of D1 is gone."""
    from contracts.privacy import scrub_json
    from contracts.summary import HEAVY
    old_d1 = committed_runs(done / "wh.duckdb")[D1][0]
    run_date_plain(done / "inbox", done / "reports", done / "wh.duckdb", D1)
    shown = json.loads(wh.status_file(done / "wh.duckdb").read_text(encoding="utf-8"))
    con = duckdb.connect(str(done / "wh.duckdb"), read_only=True)
    try:
        committed = con.execute("SELECT business_date, run_id, status, summary_json FROM runs "
                                "ORDER BY business_date").fetchall()
        copies = {r for (r,) in con.execute("SELECT run_id FROM run_status_copies").fetchall()}
    finally:
        con.close()
    assert [(r["business_date"], r["run_id"], r["status"]) for r in shown["runs"]] == \
        [(d.isoformat(), run_id, status) for d, run_id, status, _ in committed]
    assert [r["status"] for r in shown["runs"]] == ["COMPLETE", "STALE"]
    for r, (_, _, _, text) in zip(shown["runs"], committed):
        full = json.loads(text)
        assert set(full) & set(HEAVY)   # the run committed them; the status copy leaves them out
        assert r["summary"] == scrub_json({k: v for k, v in full.items() if k not in HEAVY})
    assert old_d1 not in copies and copies == {run_id for _, run_id, _, _ in committed}


# --------------------------------------------------------------------------- environment faults

def run_args(w: Path, d=D1) -> list[str]:
    return ["run", "--date", d.isoformat(), "--inbox", str(w / "inbox"), "--out",
            str(w / "reports"), "--warehouse", str(w / "wh.duckdb"), "--orchestrator", "plain"]


def failing_csv_writer(monkeypatch, err: int, calls: list):
    """exceptions.csv cannot be written: write() fails with `err` half-way, and, like the
    OS, names no file."""
    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            calls.append(self.f.name)
            self.f.write(data[: len(data) // 2])
            raise OSError(err, os.strerror(err))

    def fake_open(path, mode="r", *args, **kw):
        f = open(path, mode, *args, **kw)
        return Failing(f) if Path(path).name == "exceptions.csv" and "w" in mode else f
    monkeypatch.setattr(publish, "open", fake_open, raising=False)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_disk_full_one_sentence_previous_reports_intact(done, monkeypatch, capsys, err):
    before, state = visible_reports(done / "reports"), warehouse_state(done / "wh.duckdb")
    calls: list = []
    failing_csv_writer(monkeypatch, err, calls)
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert os.strerror(err) in line and errno.errorcode[err] in line
    assert "exceptions.csv" in line and str(done / "reports") in line
    assert len(calls) == 1                              # never retried
    assert visible_reports(done / "reports") == before
    assert not (done / "reports" / wh.STAGING).exists()
    assert warehouse_state(done / "wh.duckdb") == state
    monkeypatch.undo()                                  # the cause is gone
    assert main(run_args(done)) == 0


def test_disk_full_in_the_parquet_writer_names_the_file(done, monkeypatch, capsys):
    """Polars reports a full disk as its own error, with the OS text and no path."""
    before = visible_reports(done / "reports")
    calls: list = []

    def full(self, path, **kw):
        calls.append(path)
        raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO "
                                         "error: No space left on device (os error 28)")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert "No space left on device (ENOSPC)" in line and "exceptions.parquet" in line
    assert len(calls) == 1
    assert visible_reports(done / "reports") == before


def test_environment_faults_are_never_retried_by_prefect():
    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self, raise_on_failure=False):
            return self.exc
    for err in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        assert nightly._retry_on_oserror(None, None, State(OSError(err, os.strerror(err)))) is False
    assert nightly._retry_on_oserror(None, None, State(OSError(errno.EIO, "I/O error"))) is True
    assert nightly._retry_on_oserror(None, None, State(ValueError("bad data"))) is False


@pytest.mark.prefect
def test_prefect_tasks_never_retry_environment_faults():
    from prefect import flow

    class Flaky:
        def __init__(self, exc):
            self.exc, self.calls = exc, 0

        def __call__(self):
            self.calls += 1
            if self.calls == 1:
                raise self.exc
            return "ok"
    full, hiccup = Flaky(OSError(errno.ENOSPC, "No space left on device")), \
        Flaky(OSError(errno.EIO, "Input/output error"))
    ex = nightly.PrefectExecutor(backoff=0.01)

    @flow
    def probe():
        again = ex.call(nightly.Step("io_hiccup", hiccup, io_retries=2))
        try:
            ex.call(nightly.Step("disk_full", full, io_retries=2))
        except OSError as e:
            return again, e.errno
        return again, None

    assert probe() == ("ok", errno.ENOSPC)
    assert (hiccup.calls, full.calls) == (2, 1)


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MB tmpfs (needs root and a kernel that allows the mount, else skipped)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_disk_full_on_a_real_small_filesystem(done, small_filesystem):
    """The real thing: <out> on a file system that fills up during the run."""
    out = small_filesystem / "reports"
    r = recon(done, "run", "--date", D1.isoformat(), "--out", str(out), "--warehouse", "w2.duckdb")
    assert r.returncode == 0, r.stderr
    before = visible_reports(out)
    free = os.statvfs(small_filesystem).f_bavail * os.statvfs(small_filesystem).f_frsize
    filler = small_filesystem / "filler"
    filler.write_bytes(b"\0" * max(free - 8192, 0))
    r = recon(done, "run", "--date", D2.isoformat(), "--out", str(out), "--warehouse", "w2.duckdb")
    assert r.returncode == 1
    line = one_sentence(r.stderr)
    assert "No space left on device (ENOSPC)" in line and str(out) in line
    assert visible_reports(out) == before
    filler.unlink()
    r = recon(done, "run", "--date", D2.isoformat(), "--out", str(out), "--warehouse", "w2.duckdb")
    assert r.returncode == 0, r.stderr


def test_read_only_folder_on_a_real_filesystem(done, small_filesystem):
    """The real thing: <out> on a file system mounted read-only after its first run."""
    out = small_filesystem / "reports"
    run = ("run", "--out", str(out), "--warehouse", "w2.duckdb")
    r = recon(done, *run, "--date", D1.isoformat())
    assert r.returncode == 0, r.stderr
    before = visible_reports(out)
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    try:
        r = recon(done, *run, "--date", D2.isoformat())
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    assert r.returncode == 1
    line = one_sentence(r.stderr)
    assert "Read-only file system (EROFS)" in line and str(out) in line
    assert visible_reports(out) == before
    r = recon(done, *run, "--date", D2.isoformat())
    assert r.returncode == 0, r.stderr


def test_status_never_hangs_on_a_planted_fifo(done):
    wh.status_file(done / "wh.duckdb").unlink()
    os.mkfifo(wh.status_file(done / "wh.duckdb"))
    st = recon(done, "status")
    assert st.returncode == 0, st.stderr
    assert D1.isoformat() in st.stdout and D2.isoformat() in st.stdout


def test_environment_faults_are_told_apart_from_other_errors():
    import duckdb as ddb
    assert wh.environment_fault(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert wh.environment_fault(pl.exceptions.ComputeError(
        "underlying IO error: No space left on device (os error 28)")) == errno.ENOSPC
    assert wh.environment_fault(ddb.IOException(
        'IO Error: Could not write file "w.duckdb": Read-only file system')) == errno.EROFS
    assert wh.environment_fault(RuntimeError("a field said: Permission denied")) is None
    assert wh.transient_oserror(OSError(errno.EIO, "I/O error"))
    for not_transient in (OSError(errno.ENOSPC, "full"), FileExistsError(errno.EEXIST, "exists"),
                          ValueError("bad data")):
        assert not wh.transient_oserror(not_transient)


# --------------------------------------------------------------------------- folders that overlap

@pytest.mark.parametrize("out", ["inbox", "inbox/reports", "."])
def test_reports_folder_overlapping_the_inbox_is_exit_2_and_deletes_nothing(done, out):
    """A run replaces <out>/<D> as a whole: with --out the inbox it swapped the day's
    deliveries out and deleted them."""
    before = snapshot(done / "inbox")
    r = recon(done, "run", "--date", D3.isoformat(), "--out", out)
    assert r.returncode == 2
    assert "overlap" in one_sentence(r.stderr)
    assert snapshot(done / "inbox") == before


@pytest.mark.parametrize("warehouse", ["reports/w.duckdb", f"reports/{D1.isoformat()}/w.duckdb",
                                       f"reports/{wh.STAGING}/w.duckdb"])
def test_a_warehouse_inside_the_reports_folder_is_exit_2(done, warehouse):
    before = report_bytes(done / "reports")
    r = recon(done, "run", "--date", D1.isoformat(), "--warehouse", warehouse)
    assert r.returncode == 2
    assert "inside --out" in one_sentence(r.stderr)
    assert report_bytes(done / "reports") == before


# --------------------------------------------------------------------------- planted beside the warehouse

def test_a_linked_write_ahead_log_is_refused_and_not_written_through(done):
    victim, content = victim_folder(done)
    (done / "wh.duckdb.wal").symlink_to(victim / "keep.txt")
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 2
    assert "write-ahead log" in one_sentence(r.stderr)
    assert snapshot(victim) == content


def test_the_error_log_replaces_a_planted_link_instead_of_writing_through_it(done, monkeypatch,
                                                                              capsys):
    victim, content = victim_folder(done)
    (done / "recon-last-error.log").symlink_to(victim / "keep.txt")

    def broken(*args, **kw):
        raise RuntimeError("a bug")
    monkeypatch.setattr(nightly, "_run_locked", broken)
    assert main(run_args(done)) == 1
    assert "details in" in one_sentence(capsys.readouterr().err)
    assert snapshot(victim) == content
    log = done / "recon-last-error.log"
    assert not log.is_symlink() and "a bug" in log.read_text()


def test_a_lock_file_that_is_a_fifo_is_exit_2(done):
    (done / "wh.duckdb.lock").unlink()
    os.mkfifo(done / "wh.duckdb.lock")
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 2
    assert "not a regular file" in one_sentence(r.stderr)


@pytest.mark.parametrize("ddl", ["CREATE TABLE runs (x INTEGER)",
                                 "CREATE TABLE warehouse_identity (a INTEGER, b INTEGER, c INTEGER)",
                                 "CREATE TABLE orders (id INTEGER); CREATE VIEW persons AS SELECT 1 AS x"])
def test_a_duckdb_database_that_is_not_a_warehouse_is_exit_2_and_left_as_it_was(done, ddl):
    path = done / "foreign.duckdb"
    con = duckdb.connect(str(path))
    con.execute(ddl)
    con.close()
    before = path.read_bytes()
    r = recon(done, "run", "--date", D1.isoformat(), "--warehouse", "foreign.duckdb",
              "--out", "reports2")
    assert r.returncode == 2
    assert "not a recon warehouse" in one_sentence(r.stderr)
    assert path.read_bytes() == before
    assert not (done / "foreign.duckdb.lock").exists()   # a refused run writes nothing


def test_an_empty_duckdb_database_becomes_a_warehouse(done):
    duckdb.connect(str(done / "empty.duckdb")).close()
    r = recon(done, "run", "--date", D1.isoformat(), "--warehouse", "empty.duckdb", "--out", "reports2")
    assert r.returncode == 0, r.stderr


def test_a_warehouse_of_an_earlier_version_is_still_a_warehouse(done):
    con = duckdb.connect(str(done / "wh.duckdb"))
    con.execute("ALTER TABLE consumptions DROP COLUMN province")
    con.close()
    r = recon(done, "run", "--date", D3.isoformat())
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- refusals create nothing

def test_a_refused_backfill_on_a_new_warehouse_creates_no_lock(done):
    r = recon(done, "backfill", "--start", D2.isoformat(), "--end", D3.isoformat(),
              "--warehouse", "new.duckdb", "--out", "reports2")
    assert r.returncode == 2
    assert D1.isoformat() in one_sentence(r.stderr)
    assert not [p.name for p in done.iterdir() if p.name.startswith("new.duckdb")]
    assert not (done / "reports2").exists()


def test_a_new_warehouse_refused_an_out_of_another_warehouse_is_never_created(done):
    """<out> (reports, bound to wh.duckdb) with --warehouse of a new file: refused, and the
    new warehouse, its lock and the binding stay as they were (it used to leave an empty
    warehouse that `recon status` then took for the real one)."""
    binding = (done / "reports" / ".recon-warehouse").read_bytes()
    r = recon(done, "run", "--date", D1.isoformat(), "--warehouse", "wh3.duckdb", "--out", "reports")
    assert r.returncode == 2
    assert "holds the reports of another warehouse" in one_sentence(r.stderr)
    assert not [p.name for p in done.iterdir() if p.name.startswith("wh3.duckdb")]
    assert (done / "reports" / ".recon-warehouse").read_bytes() == binding


def test_a_date_after_a_gap_in_the_inbox_says_the_folder_is_missing(done):
    shutil.rmtree(done / "inbox" / D3.isoformat())
    shutil.copytree(done / "inbox" / D2.isoformat(), done / "inbox" / "2026-11-23")
    r = recon(done, "run", "--date", "2026-11-23")
    assert r.returncode == 2
    line = one_sentence(r.stderr)
    assert "no folder for it" in line and D3.isoformat() in line


# --------------------------------------------------------------------------- interrupts tell the truth

def interrupt_at(monkeypatch, point: str, how=None):
    real = nightly.kill_point

    def kill_point(name):
        real(name)
        if name == point:
            if how is None:
                raise KeyboardInterrupt
            how()
    monkeypatch.setattr(nightly, "kill_point", kill_point)


def test_an_interrupt_before_the_commit_leaves_everything_as_it_was(done, monkeypatch, capsys):
    before, state = visible_reports(done / "reports"), warehouse_state(done / "wh.duckdb")
    interrupt_at(monkeypatch, "after_rules")
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert f"the run of {D1.isoformat()} left the previous reports and warehouse as they were" in line
    assert visible_reports(done / "reports") == before
    assert warehouse_state(done / "wh.duckdb") == state


def test_an_interrupt_after_the_commit_says_the_date_was_committed(done, monkeypatch, capsys):
    """It used to say the run left everything as it was, while the warehouse held the new run."""
    before = committed_runs(done / "wh.duckdb")
    interrupt_at(monkeypatch, "after_commit")
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert f"after {D1.isoformat()} was committed" in line and "next recon run" in line
    assert committed_runs(done / "wh.duckdb") != before
    monkeypatch.undo()
    assert main(run_args(done, D3)) == 0          # ... and the next run puts them in place


def test_sigterm_stops_a_run_like_ctrl_c(done, monkeypatch, capsys):
    state = warehouse_state(done / "wh.duckdb")
    interrupt_at(monkeypatch, "after_rules", lambda: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    assert main(run_args(done)) == 1
    assert "left the previous reports and warehouse as they were" in one_sentence(capsys.readouterr().err)
    assert warehouse_state(done / "wh.duckdb") == state
    assert signal.getsignal(signal.SIGTERM) is previous   # handed back when recon returns


def test_a_sigterm_after_the_command_finished_exits_with_its_own_code_not_143(tmp_path):
    """The process entry (`recon`): once the result is printed, a SIGTERM (a service manager
    stopping the job) ends the process with the command's exit code; before, it was 143."""
    code = ("import os, signal, sys, time\n"
            "from flows.cli import main\n"
            f"sys.argv = ['recon', 'status', '--inbox', {str(tmp_path / 'inbox')!r}, "
            f"'--out', {str(tmp_path / 'out')!r}, '--warehouse', {str(tmp_path / 'wh.duckdb')!r}]\n"
            "rc = main()\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(10)\n"
            "sys.exit(99)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    # status of a warehouse that does not exist: exit 2, its own code, not 143 (killed) or 99
    assert done.returncode == 2 and "There is no warehouse" in done.stderr


def test_reports_that_could_not_be_put_in_place_stop_the_run_before_its_commit(done, monkeypatch,
                                                                               capsys):
    """<out>/<D> that cannot be moved aside (no write permission on it) had failed the publish
    after the warehouse committed: the warehouse held a run whose reports never appeared."""
    before, state = visible_reports(done / "reports"), warehouse_state(done / "wh.duckdb")
    locked = str(done / "reports" / D1.isoformat())
    real = os.access
    monkeypatch.setattr(wh.os, "access", lambda p, mode, **kw: False if str(p) == locked
                        else real(p, mode, **kw))
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert "EACCES" in line and locked in line
    assert warehouse_state(done / "wh.duckdb") == state
    assert visible_reports(done / "reports") == before
    monkeypatch.undo()
    assert main(run_args(done)) == 0


def test_a_refused_first_run_creates_no_warehouse(tmp_path):
    """--out a file, or a fault in reference/, on a warehouse not made yet: exit 2 and
    nothing created (the warehouse would bind a wrong <out>, or none at all)."""
    from tests.test_run_guarantees import make_inbox
    make_inbox(tmp_path / "inbox", days=1)
    (tmp_path / "afile").write_text("not a folder")
    r = recon(tmp_path, "run", "--date", D1.isoformat(), "--out", "afile")
    assert r.returncode == 2 and "afile" in one_sentence(r.stderr)
    (tmp_path / "inbox" / "reference" / "regions.csv").write_text("admdvs,province\n", encoding="utf-8")
    for _ in range(4):   # it used to end in SIGABRT one time in three (pyarrow's pool, at exit)
        r = recon(tmp_path, "run", "--date", D1.isoformat())
        assert r.returncode == 2 and "regions.csv" in one_sentence(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "inbox"]


def test_an_interrupt_inside_a_query_is_told_as_an_interrupt(done, monkeypatch, capsys):
    """DuckDB 2.0 stops an interrupted query with RuntimeError('Query interrupted')."""
    def interrupted(*args, **kw):
        raise RuntimeError("Query interrupted")
    monkeypatch.setattr(nightly, "_reconcile_and_commit", interrupted)
    assert main(run_args(done)) == 1
    line = one_sentence(capsys.readouterr().err)
    assert "interrupted; the run of" in line and "Internal error" not in line


def test_a_link_loop_given_as_a_folder_is_exit_2(done):
    (done / "loop").symlink_to("loop")
    for args in (("status", "--out", "loop"), ("run", "--date", D3.isoformat(), "--out", "loop"),
                 ("run", "--date", D3.isoformat(), "--inbox", "loop", "--out", "r9")):
        r = recon(done, *args)
        assert r.returncode == 2, (args, r.stderr)
        one_sentence(r.stderr)
