"""`--task-runner dask` (issue 13): the provinces of a date load on Dask workers, which
write Parquet into a staging folder; the driver alone writes the warehouse; a backfill
loads later dates while earlier ones reconcile.

The rehearsals run `recon backfill` as an operator would, against one real Prefect
server (the fixture of tests/test_prefect_server.py): once on a LocalCluster of two
worker processes, once on a `dask scheduler` and two `dask worker` processes started as
separate commands on 127.0.0.1 (as on separate hosts). Both must give, byte for byte,
the reports and warehouse rows of the plain backfill of the same inbox.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import distributed
from flows.cli import _use_prefect, build_parser, main
from flows.nightly import Paths, backfill_plain
from synth.generate import generate
from tests.test_prefect_server import free_port, prefect_server, stop, wait_until  # noqa: F401
from flows import warehouse as wh

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START = date(2026, 11, 20)
DATES = [START + timedelta(days=i) for i in range(3)]
RESULTS = ("exceptions.csv", "exceptions.parquet", "settlement.csv", "settlement.parquet",
           "positions.csv", "positions.parquet")
VARYING = ("run_id", "started_at", "finished_at", "code_version")  # differ between any two runs
TIMEOUT_S = 400


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A generated inbox of three dates and its plain backfill (the reference)."""
    root = tmp_path_factory.mktemp("dask-plain")
    generate(root / "inbox", START, len(DATES), 300, 7, violation_rate=0.02)
    backfill_plain(root / "inbox", root / "reports", root / "wh.duckdb", DATES[0], DATES[-1])
    return root


def results(out: Path) -> dict[str, bytes]:
    """The reports of every date: the result files as they are, summary.json without the
    fields that differ between any two runs."""
    got = {}
    for d in DATES:
        folder = out / d.isoformat()
        for name in RESULTS:
            if (folder / name).exists():
                got[f"{d}/{name}"] = (folder / name).read_bytes()
        s = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        got[f"{d}/summary.json"] = json.dumps({k: v for k, v in s.items() if k not in VARYING},
                                              sort_keys=True).encode()
    return got


def warehouse_rows(path: Path) -> dict[str, str]:
    """A digest of every table of the warehouse (the person registry included) but those
    that name the run and the warehouse (flows.warehouse.WAREHOUSE_OWN_TABLES)."""
    con = wh.open_warehouse(path, read_only=True)
    try:
        tables = [t for (t,) in con.execute(
                      "SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()
                  if t not in wh.WAREHOUSE_OWN_TABLES]
        digest = wh.table_digest(con, tuple(sorted(tables)))
        digest["runs"] = repr(con.execute("SELECT business_date, status, input_digest FROM runs "
                                          "ORDER BY business_date").fetchall())
        return digest
    finally:
        con.close()


def recon_dask(env: dict, plain: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """`recon backfill --task-runner dask` of the plain fixture's inbox into tmp."""
    return subprocess.run(
        [str(BIN / "recon"), "backfill", "--start", DATES[0].isoformat(), "--end",
         DATES[-1].isoformat(), "--inbox", str(plain / "inbox"), "--out", str(tmp / "reports"),
         "--warehouse", str(tmp / "wh.duckdb"), "--task-runner", "dask", *extra],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def assert_same_as_plain(plain: Path, tmp: Path, r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, (r.stderr[-3000:], r.stdout[-3000:])
    got, want = results(tmp / "reports"), results(plain / "reports")
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    assert warehouse_rows(tmp / "wh.duckdb") == warehouse_rows(plain / "wh.duckdb")
    assert not (tmp / "reports" / distributed.DEFAULT_STAGING).exists()  # staging cleaned


@contextlib.contextmanager
def started(cmd: list[str], log: Path, env: dict):
    """A process started as an operator would start it, stopped (its group) at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


# --------------------------------------------------------------------------- rehearsals

def test_staging_through_parquet_gives_the_plain_results(plain, tmp_path):
    """The driver's side of --task-runner dask without a cluster: every province written
    as Parquet and staged from it gives the reports and warehouse rows of the plain run,
    and each date's Parquet is gone once the date is staged."""
    from flows.nightly import run_date
    paths = Paths.of(plain / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    left = []
    with distributed.run_folder(paths) as run:
        for d in DATES:
            run_date(paths, d, distributed.StagingExecutor(run))
            left.append(sorted(p.name for p in run.iterdir() if p.name != distributed.LOCK))
    assert left == [[]] * len(DATES)
    assert results(tmp_path / "reports") == results(plain / "reports")
    assert warehouse_rows(tmp_path / "wh.duckdb") == warehouse_rows(plain / "wh.duckdb")


def test_a_dates_staged_provinces_reach_each_table_in_one_statement(plain, tmp_path,
                                                                   monkeypatch):
    """The workers' Parquet of a whole date is inserted with one statement per table (a
    statement has a fixed cost; 31 provinces x 7 files cost about 0.5 s a date), and
    every row of every province's files arrives."""
    from flows.inbox import read_inbox_date
    from transforms.context import RunContext, bind_date
    from transforms.intake import stage
    calls = []
    insert = distributed.StagedIntake.insert_staged

    def counted(con, intakes, table, name, columns):
        calls.append((table, len(intakes)))
        insert(con, intakes, table, name, columns)
    monkeypatch.setattr(distributed.StagedIntake, "insert_staged", staticmethod(counted))
    paths = Paths.of(plain / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    inbox_date = read_inbox_date(plain / "inbox", START)
    with distributed.run_folder(paths) as run:
        staged = [distributed.load_on_worker(x, START, str(run)) for x in inbox_date.deliveries]
        for s in staged:
            s.run_folder = run
        con = wh.open_warehouse(paths.warehouse)
        try:
            ctx = RunContext.for_date(START, True)
            bind_date(con, ctx)
            stage(con, ctx, inbox_date, staged)
            assert len(staged) > 1
            assert sorted(calls) == sorted((t, len(staged)) for t in (
                "persons", "relationships", "transfers", "settlements", "balances",
                "quarantine", "d_findings"))
            for ds in ("persons", "relationships", "transfers", "settlements", "balances"):
                want = sum(s.rows[ds] for s in staged)
                assert want > 0
                assert con.execute(f"SELECT count(*) FROM {ds}").fetchone() == (want,)
            assert con.execute("SELECT count(*) FROM file_loads").fetchone() == (
                sum(len(s.files) for s in staged),)
        finally:
            con.close()


class _HalfOnWorkers(distributed.DaskExecutor):
    """DaskExecutor without a cluster: the provinces of odd rank come as a worker's
    staged Parquet (load_on_worker, run here), the driver takes the others."""

    def _workers_keep(self, items, d):
        done = {}
        for x in items[1::2]:
            f = concurrent.futures.Future()
            f.set_result(distributed.load_on_worker(x, d, str(self.run)))
            done[x.province] = f
        return done


def test_provinces_staged_partly_by_workers_partly_by_the_driver_give_the_plain_results(
        plain, tmp_path, monkeypatch):
    """When the driver takes the provinces the workers have not begun, a date is staged
    from both, in province order: the reports and warehouse rows are still the plain
    run's, byte for byte, and the workers' Parquet is gone once the date is staged."""
    from flows import nightly
    from flows.nightly import PlainExecutor, PrefectExecutor, run_date
    monkeypatch.setattr(PrefectExecutor, "call",   # the steps as plain calls: no Prefect here
                        lambda self, step, *args: PlainExecutor().call(step, *args))
    monkeypatch.setattr(PrefectExecutor, "artifacts", PlainExecutor.artifacts)
    listed = {}
    monkeypatch.setattr(nightly, "intake_artifact",
                        lambda d, loads, where: listed.setdefault(d, (loads, where)))
    paths = Paths.of(plain / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    left = []
    with distributed.run_folder(paths) as run:
        for d in DATES:
            ex = _HalfOnWorkers(paths, run)
            try:
                run_date(paths, d, ex)
            finally:
                ex.close()
            left.append(sorted(p.name for p in run.iterdir() if p.name != distributed.LOCK))
    assert left == [[]] * len(DATES)
    assert results(tmp_path / "reports") == results(plain / "reports")
    assert warehouse_rows(tmp_path / "wh.duckdb") == warehouse_rows(plain / "wh.duckdb")
    for d in DATES:
        loads, where = listed[d]
        assert where == "Dask workers and threads of the driver"
        assert [x["province"] for x in loads] == sorted(x["province"] for x in loads)


def test_dask_backfill_on_a_local_cluster_of_two_workers_matches_the_plain_backfill(
        prefect_server, plain, tmp_path):
    r = recon_dask(prefect_server, plain, tmp_path, "--dask-workers", "2")
    assert_same_as_plain(plain, tmp_path, r)
    runs, loads = the_last_backfill(prefect_server["PREFECT_API_URL"])
    staged = sorted(t.start_time for t in runs if t.name == "stage")
    published = sorted(t.end_time for t in runs if t.name == "publish")
    assert len(staged) == len(published) == len(DATES)
    # a date's rule, ledger and clearing steps are one task run (each costs the server CPU
    # on the driver's cores): five task runs a date, not fourteen
    names = [t.name for t in runs]
    assert names.count("reconcile") == len(DATES)
    assert not {"known-persons", "rules-transfers", "ledger", "clearing"} & set(names)
    assert len(names) == 5 * len(DATES)
    for d in DATES:   # every province loaded once, by a worker or by the driver
        provinces = [x["province"] for x in loads[d]]
        assert len(provinces) >= 25 and len(set(provinces)) == len(provinces)
    # D1 loaded by the driver's own threads while the LocalCluster started (its reports
    # and rows are plain's, above); later dates by the workers unless the driver found
    # them not begun (test_provinces_staged_partly_by_workers_partly_by_the_driver_...)
    assert not {x["worker"] for x in loads[DATES[0]]} & {"0", "1"}
    # in date order on the driver: D is staged only after D-1 is published (the ledger chain)
    assert all(published[i] <= staged[i + 1] for i in range(len(DATES) - 1))


def the_last_backfill(api: str) -> tuple[list, dict[date, list[dict]]]:
    """The task runs of the last backfill flow run, and its recon-<D>-intake artifacts
    (each province's worker and start, as datetimes)."""
    from datetime import datetime

    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId,
                                                FlowRunFilter, FlowRunFilterId, FlowRunFilterName)
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings
    name = f"backfill-{DATES[0]}-{DATES[-1]}"
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        [run] = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                                 sort=FlowRunSort.START_TIME_DESC, limit=1)
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    loads = {}
    for d in DATES:
        [a] = [a for a in artifacts if a.key == f"recon-{d.isoformat()}-intake"]
        table = json.loads(a.data) if isinstance(a.data, str) else a.data
        loads[d] = [{**x, "started": datetime.fromisoformat(x["started"])} for x in table]
    return runs, loads


def test_dask_backfill_on_a_separately_started_scheduler_and_workers_matches_the_plain_backfill(
        prefect_server, plain, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**prefect_server, "DASK_LOGGING__DISTRIBUTED": "warning"}
    with started([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                  "--no-dashboard"], tmp_path / "scheduler.log", env) as scheduler, \
            started([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host",
                     "127.0.0.1", "--no-dashboard", "--name", "host-a"], tmp_path / "a.log", env), \
            started([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host",
                     "127.0.0.1", "--no-dashboard", "--name", "host-b"], tmp_path / "b.log", env):
        wait_until(lambda: workers_of(address) == 2, 120, "two dask workers joining the scheduler",
                   scheduler, tmp_path / "scheduler.log")
        r = recon_dask(prefect_server, plain, tmp_path, "--orchestrator", "prefect",
                       "--dask-address", address)
        ran_on = workers_that_ran(address)
    assert_same_as_plain(plain, tmp_path, r)
    assert ran_on == {"host-a", "host-b"}  # both "hosts" loaded provinces
    runs, loads = the_last_backfill(prefect_server["PREFECT_API_URL"])
    # workers of their own (other hosts): they load every date, the first one included
    assert all(len(loads[d]) >= 25 for d in DATES)   # one Dask task per province
    assert {x["worker"] for d in DATES for x in loads[d]} == {"host-a", "host-b"}
    staged = sorted(t.start_time for t in runs if t.name == "stage")
    published = sorted(t.end_time for t in runs if t.name == "publish")
    # pipelined: the provinces of D2 were loading on the workers before D1 was published
    assert min(x["started"] for x in loads[DATES[1]]) < published[0]
    # in date order on the driver: D is staged only after D-1 is published (the ledger chain)
    assert all(published[i] <= staged[i + 1] for i in range(len(DATES) - 1))


def workers_of(address: str) -> int:
    from distributed import Client
    with Client(address, timeout=5) as c:
        return len(c.scheduler_info()["workers"])


def workers_that_ran(address: str) -> set[str]:
    """Names of the workers that executed a task, from each worker's task log."""
    from distributed import Client

    def executed(dask_worker):
        return any(t[1] == "executing" or t[2] == "executing" for t in dask_worker.state.log
                   if isinstance(t, tuple) and len(t) > 2)

    with Client(address, timeout=5) as c:
        ran = c.run(executed)
        names = {w: info["name"] for w, info in c.scheduler_info()["workers"].items()}
    return {names[w] for w, yes in ran.items() if yes}


# --------------------------------------------------------------------------- options

def test_dask_under_auto_means_prefect_without_a_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    a = build_parser().parse_args(["backfill", "--start", "2026-11-20", "--end", "2026-11-21",
                                   "--task-runner", "dask"])
    assert _use_prefect(a)
    a = build_parser().parse_args(["backfill", "--start", "2026-11-20", "--end", "2026-11-21"])
    assert not _use_prefect(a)


@pytest.mark.parametrize("address", ["10.0.0.5:8786", "http://h:8786", "tcp://h", "tcp://:8786"])
def test_a_malformed_scheduler_address_is_a_usage_error(tmp_path, capsys, address):
    rc = main(["backfill", "--start", "2026-11-20", "--end", "2026-11-20", "--task-runner", "dask",
               "--dask-address", address, "--out", str(tmp_path / "r"),
               "--warehouse", str(tmp_path / "w.duckdb")])
    assert rc == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w.duckdb").exists()


def test_a_scheduler_that_does_not_answer_is_refused_before_anything_is_touched(tmp_path, capsys):
    rc = main(["backfill", "--start", "2026-11-20", "--end", "2026-11-20", "--task-runner", "dask",
               "--dask-address", f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path / "r"),
               "--warehouse", str(tmp_path / "w.duckdb")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be reached" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w.duckdb").exists()


def test_local_workers_yield_every_thread_of_their_process_to_the_driver(tmp_path):
    """yield_to_driver, which the LocalCluster's workers run once they are up, lowers the
    priority of every thread of the process by `nice` steps, those started before it
    included (in a fresh process, which inherits this one's priority)."""
    code = ("import os, threading, time\n"
            "from flows.distributed import yield_to_driver\n"
            "ids = []\n"
            "t = threading.Thread(target=lambda: (ids.append(threading.get_native_id()), "
            "time.sleep(2)))\n"
            "t.start(); time.sleep(0.2)\n"
            "yield_to_driver(7)\n"
            "print(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, ids[0]))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7))] * 2


def test_local_workers_run_below_the_driver_by_the_environment_or_the_default(monkeypatch):
    from contracts.errors import InputError
    monkeypatch.delenv(distributed.NICE_ENV, raising=False)
    assert distributed.local_worker_nice() == distributed.LOCAL_WORKER_NICE
    monkeypatch.setenv(distributed.NICE_ENV, "0")
    assert distributed.local_worker_nice() == 0
    for bad in ("-3", "20", "five"):
        monkeypatch.setenv(distributed.NICE_ENV, bad)
        with pytest.raises(InputError, match="whole number from 0 to 19"):
            distributed.local_worker_nice()


def test_local_workers_leave_the_driver_a_cpu_and_follow_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.WORKERS_ENV, raising=False)
    assert distributed.local_workers() == max(1, len(os.sched_getaffinity(0)) - 1)
    monkeypatch.setenv(distributed.WORKERS_ENV, "3")
    assert distributed.local_workers() == 3


# --------------------------------------------------------------------------- staging folder

def paths_of(tmp: Path) -> Paths:
    return Paths.of(tmp / "inbox", tmp / "reports", tmp / "wh.duckdb")


def test_the_run_folder_is_removed_at_the_end_even_when_the_run_fails(tmp_path, monkeypatch):
    monkeypatch.delenv(distributed.STAGING_ENV, raising=False)
    with pytest.raises(RuntimeError):
        with distributed.run_folder(paths_of(tmp_path)) as run:
            (run / "2026-11-20-44-abc").mkdir()
            (run / "2026-11-20-44-abc" / "persons.parquet").write_bytes(b"x")
            raise RuntimeError("a date failed")
    assert not run.exists()
    assert not (tmp_path / "reports" / distributed.DEFAULT_STAGING).exists()


def test_a_link_planted_as_the_staging_folder_is_removed_not_followed(tmp_path, monkeypatch):
    monkeypatch.delenv(distributed.STAGING_ENV, raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("keep")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / distributed.DEFAULT_STAGING).symlink_to(elsewhere)
    with distributed.run_folder(paths_of(tmp_path)) as run:
        assert run.parent == tmp_path / "reports" / distributed.DEFAULT_STAGING
        assert not run.parent.is_symlink()
    assert (elsewhere / "precious").read_text() == "keep" and len(list(elsewhere.iterdir())) == 1


def test_a_staged_file_replaced_by_a_link_is_refused(tmp_path, monkeypatch):
    from contracts.errors import InputError
    monkeypatch.delenv(distributed.STAGING_ENV, raising=False)
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(b"not yours")
    with distributed.run_folder(paths_of(tmp_path)) as run:
        folder = run / "2026-11-20-44-abc"
        folder.mkdir()
        (folder / "persons.parquet").symlink_to(secret)
        with pytest.raises(InputError, match="not the regular file recon wrote"):
            distributed.confined_file(run, folder.name, "persons.parquet")
        with pytest.raises(InputError, match="did not write"):
            distributed.confined_file(run, "../../x", "persons.parquet")
        with pytest.raises(InputError, match="did not write"):
            distributed.confined_file(run, folder.name, "../secret.parquet")


def test_only_the_run_folders_of_dead_runs_are_removed(tmp_path, monkeypatch):
    root = tmp_path / "staging"
    root.mkdir()
    dead = root / "recon-intake-20261120T010203-0123abcd"
    (dead / "2026-11-20-44-abc").mkdir(parents=True)
    (dead / distributed.LOCK).write_text("")   # its run died: nobody holds the lock
    foreign = root / "operators-notes"
    foreign.mkdir()
    monkeypatch.setenv(distributed.STAGING_ENV, str(root))
    with distributed.run_folder(paths_of(tmp_path)) as live:
        assert not dead.exists()
        assert distributed.remove_dead_runs(root) == []   # a live run's lock is held
        assert live.exists() and foreign.exists()
        foreign.rmdir()
    assert not live.exists()
    assert root.is_dir()   # the operator's shared folder stays, even when empty


def test_the_run_folder_is_absolute_for_workers_started_elsewhere(tmp_path, monkeypatch):
    monkeypatch.delenv(distributed.STAGING_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with distributed.run_folder(Paths.of("inbox", "reports", "wh.duckdb")) as run:
        assert run.is_absolute() and run.parent == tmp_path / "reports" / distributed.DEFAULT_STAGING


def test_serve_with_dask_needs_a_prefect_server(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    rc = main(["serve", "--task-runner", "dask", "--inbox", str(tmp_path / "inbox"),
               "--out", str(tmp_path / "r"), "--warehouse", str(tmp_path / "w.duckdb")])
    assert rc == 2
    assert "PREFECT_API_URL" in capsys.readouterr().err


def test_a_worker_that_does_not_see_the_inbox_says_so_instead_of_finding_every_file_absent(
        tmp_path):
    from contracts.errors import InputError
    from contracts.inbox import ProvinceDelivery
    unseen = ProvinceDelivery("44", START, folder=tmp_path / "not-mounted" / "44",
                              manifest_bytes=b"{}")
    with pytest.raises(InputError, match="does not see the province folder"):
        distributed.intake_to_parquet(unseen, START, str(tmp_path))
    assert list(tmp_path.iterdir()) == []   # nothing staged


@pytest.mark.parametrize("proc_fd", [True, False], ids=["read-by-duckdb", "read-in-memory"])
@pytest.mark.parametrize("change", ["one-byte-flipped", "rewritten"])
def test_a_staged_file_changed_after_its_worker_wrote_it_is_refused(
        plain, tmp_path, monkeypatch, proc_fd, change):
    """The driver trusts its workers, not the staging folder: a staged file whose bytes
    are not the ones the worker wrote is refused in one sentence before any of its rows
    reach the warehouse, whether DuckDB reads it (/proc/self/fd) or recon does."""
    import polars as pl

    from contracts.errors import InputError
    from flows.inbox import read_inbox_date
    from transforms.intake import stage_province
    monkeypatch.delenv(distributed.STAGING_ENV, raising=False)
    if not proc_fd:
        monkeypatch.setattr(distributed, "PROC_FD", tmp_path / "no-proc")
    delivery = next(x for x in read_inbox_date(plain / "inbox", START).deliveries
                    if x.manifest_bytes is not None)
    with distributed.run_folder(paths_of(tmp_path)) as run:
        staged = distributed.intake_to_parquet(delivery, START, str(run))
        staged.run_folder = run
        path = run / staged.folder / "transfers.parquet"
        assert staged.written["transfers.parquet"].rows > 0
        if change == "one-byte-flipped":   # same size, other bytes
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        else:                              # a valid Parquet of other rows
            rows = pl.read_parquet(path)
            rows.with_columns(pl.col("amount") * 2).write_parquet(path)
        con = wh.open_warehouse(tmp_path / "wh.duckdb")
        try:
            with pytest.raises(InputError, match=r"is not the file recon's worker wrote \("):
                stage_province(con, START, staged)
            assert con.execute("SELECT count(*) FROM transfers").fetchone() == (0,)
        finally:
            con.close()


def test_a_step_that_fails_inside_the_one_reconcile_task_is_named_in_the_error(monkeypatch):
    """A pipelined backfill runs a date's steps as one task run (flows.nightly.RECONCILE);
    the one-sentence error still names the step that failed, not `reconcile`."""
    from types import SimpleNamespace

    from flows import nightly

    def broken(con, ctx):
        raise ValueError("no such column")
    monkeypatch.setattr(nightly, "reconcile_steps",
                        lambda: [nightly.Step("rules_transfers", broken)])
    ex = SimpleNamespace(reconcile_in_one_task=True,
                         call=lambda step, *args: nightly.PlainExecutor().call(step, *args))
    with pytest.raises(ValueError) as e:
        nightly.run_reconcile_steps(None, None, ex)
    assert e.value.recon_step == "rules_transfers"


def test_the_one_reconcile_task_runs_the_steps_in_order_and_logs_each_steps_seconds(
        monkeypatch, caplog):
    import logging
    from types import SimpleNamespace

    from flows import nightly
    ran = []
    steps = [nightly.Step(name, lambda con, ctx, name=name: ran.append(name))
             for name in ("known_persons", "rules_files", "ledger", "clearing")]
    monkeypatch.setattr(nightly, "reconcile_steps", lambda: steps)
    monkeypatch.setattr(nightly.wh, "release_cached_blocks", lambda con: None)
    ex = SimpleNamespace(reconcile_in_one_task=True,
                         call=lambda step, *args: (ran.append(step.name), step.fn(*args)))
    with caplog.at_level(logging.INFO, logger="recon"):
        nightly.run_reconcile_steps(None, SimpleNamespace(business_date=START), ex)
    assert ran == ["reconcile", "known_persons", "rules_files", "ledger", "clearing"]
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("steps of")]
    assert line.startswith(f"steps of {START.isoformat()}: known_persons ")
    assert [part.split()[0] for part in line.split(": ", 1)[1].split(", ")] == ran[1:]
