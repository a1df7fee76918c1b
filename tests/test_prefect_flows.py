"""The Prefect side of the orchestration: the nightly deployment's schedule, task
retries on transient I/O only, and the task runner factory.

Tests marked `prefect` share one temporary Prefect API (tests/conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from contracts.codes import DATASETS
from contracts.errors import InputError
from flows import nightly
from flows.nightly import Paths, PlainExecutor, PrefectExecutor, Step


class Flaky:
    """Fails with `exc` the first `fails` calls, then returns 'ok'."""

    def __init__(self, exc: Exception, fails: int):
        self.exc, self.fails, self.calls = exc, fails, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.fails:
            raise self.exc
        return "ok"


def test_plain_executor_retries_oserror_with_backoff():
    f = Flaky(OSError("NFS hiccup"), fails=2)
    assert PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=3)) == "ok"
    assert f.calls == 3


def test_plain_executor_never_retries_bad_data():
    f = Flaky(ValueError("bad row"), fails=1)
    with pytest.raises(ValueError):
        PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=3))
    assert f.calls == 1


def test_plain_executor_gives_up_after_the_retries():
    f = Flaky(OSError("gone"), fails=10)
    with pytest.raises(OSError):
        PlainExecutor(backoff=0.001).call(Step("read", f, io_retries=2))
    assert f.calls == 3


def test_unknown_or_missing_task_runner_is_a_usage_error():
    with pytest.raises(InputError, match="Unknown task runner"):
        nightly.task_runner("mpi")
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="prefect-dask"):
            nightly.task_runner("dask")


def test_threads_is_the_default_task_runner(monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner
    monkeypatch.delenv("RECON_TASK_RUNNER", raising=False)
    assert isinstance(nightly.task_runner(), ThreadPoolTaskRunner)


@pytest.mark.prefect
def test_nightly_deployment_is_scheduled_at_0230_shanghai(tmp_path):
    from prefect import get_client
    paths = Paths.of(tmp_path / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    deployment_id = nightly.register_deployment(paths)
    with get_client(sync_client=True) as client:
        dep = client.read_deployment(deployment_id)
    assert dep.name == nightly.DEPLOYMENT_NAME
    assert dep.entrypoint == "flows.nightly.nightly"
    assert len(dep.schedules) == 1
    schedule = dep.schedules[0].schedule
    assert schedule.cron == "30 2 * * *"
    assert schedule.timezone == "Asia/Shanghai"
    assert dep.parameters["inbox"] == str((tmp_path / "inbox").resolve())
    assert dep.parameters["warehouse"] == str((tmp_path / "wh.duckdb").resolve())


@pytest.mark.prefect
def test_prefect_task_retries_oserror_only():
    from prefect import flow

    io_fail = Flaky(OSError("transient"), fails=1)
    data_fail = Flaky(ValueError("bad data"), fails=1)
    ex = PrefectExecutor(backoff=0.01)

    @flow
    def probe():
        first = ex.call(Step("io_step", io_fail, io_retries=2))
        try:
            ex.call(Step("data_step", data_fail, io_retries=2))
        except ValueError:
            return first, "raised"
        return first, "not raised"

    assert probe() == ("ok", "raised")
    assert io_fail.calls == 2      # retried once after the OSError
    assert data_fail.calls == 1    # bad data is not retried


def test_task_log_lines_name_their_task_and_info_stays_in_the_ui():
    import logging
    from flows.cli import RunNames

    def record(level, **extra):
        r = logging.LogRecord("prefect.task_runs", level, __file__, 1, "Finished in state %s",
                              ("Completed()",), None)
        r.__dict__.update(extra)
        return r
    done = record(logging.INFO, task_run_name="load-province-44", flow_run_name="reconcile-x")
    retry = record(logging.WARNING, task_run_name="load-province-44", flow_run_name="reconcile-x")
    flow = record(logging.INFO, flow_run_name="reconcile-2026-11-20")
    assert not RunNames.screenful(done) and RunNames.screenful(retry) and RunNames.screenful(flow)
    assert RunNames().format(retry) == "recon: load-province-44: Finished in state Completed()"
    assert RunNames().format(flow) == "recon: reconcile-2026-11-20: Finished in state Completed()"


def test_every_step_has_a_readable_task_name():
    names = [nightly.task_name(s) for s in (nightly.LOAD_PROVINCE, nightly.STAGE_REPORTS,
                                            *nightly.reconcile_steps())]
    assert names[:2] == ["load-province", "stage-reports"] and "rules-transfers" in names
    assert all(n.replace("-", "").isalpha() for n in names)


# --------------------------------------------------------------------------- flows end to end

def _tiny_inbox(root: Path) -> None:
    from tests.inbox_builders import clean_day
    from datetime import date
    clean_day(root, date(2026, 11, 20))
    clean_day(root, date(2026, 11, 21))


REPORTS = ("exceptions.csv", "settlement.csv", "positions.csv")


@pytest.mark.prefect
def test_backfill_flow_matches_the_plain_path_and_publishes_artifacts(tmp_path):
    from datetime import date
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    _tiny_inbox(tmp_path / "inbox")
    d1, d2 = date(2026, 11, 20), date(2026, 11, 21)
    paths = Paths.of(tmp_path / "inbox", tmp_path / "pf", tmp_path / "pf.duckdb")
    summaries = nightly.backfill_prefect(paths, d1, d2, "threads")
    assert [s["business_date"] for s in summaries] == ["2026-11-20", "2026-11-21"]
    nightly.backfill_plain(tmp_path / "inbox", tmp_path / "pl", tmp_path / "pl.duckdb", d1, d2)
    for d in ("2026-11-20", "2026-11-21"):
        for name in REPORTS:
            assert (tmp_path / "pf" / d / name).read_bytes() == (tmp_path / "pl" / d / name).read_bytes()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["recon-2026-11-21-summary", "recon-2026-11-21-findings"])))
    kinds = {a.key: a.type for a in arts}
    assert kinds.get("recon-2026-11-21-summary") == "markdown"
    assert kinds.get("recon-2026-11-21-findings") == "table"
    md = next(a.data for a in arts if a.key == "recon-2026-11-21-summary")
    assert "Invariants" in md and "COMPLETE" in md


@pytest.mark.prefect
def test_cli_runs_the_flow_against_a_prefect_server(tmp_path):
    """With PREFECT_API_URL set (here: the test harness' server) `recon run` uses Prefect,
    and its stderr stays empty on success."""
    import subprocess
    import sys
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, FlowRunFilter,
                                                FlowRunFilterName)
    from prefect.settings import PREFECT_API_URL
    _tiny_inbox(tmp_path / "inbox")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RECON_")}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(root),
               RECON_INBOX="inbox", RECON_OUT="out", RECON_WAREHOUSE="wh.duckdb")
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--date", "2026-11-20"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert (tmp_path / "out" / "2026-11-20" / "summary.json").exists()
    # a day's run prints a screenful, and every log line names its flow or task run
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 24, r.stdout
    assert "Finished in state Completed()" not in r.stdout.replace(
        "recon: reconcile-2026-11-20: Finished in state Completed()", "")
    for line in lines:
        if line.startswith("recon: ") and "state" in line:
            assert line.startswith("recon: reconcile-2026-11-20: "), line
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=["reconcile-2026-11-20"])))
        assert any(fr.state and fr.state.is_completed() for fr in runs)
        tasks = {t.name for t in client.read_task_runs()}
        intake = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["recon-2026-11-20-intake"])))
    assert {"read-inbox", "stage", "rules-transfers", "stage-reports"} <= tasks
    # glue steps and province loads are no task runs of their own (~30 ms of CPU each,
    # here and on the server: Prefect's overhead budget, issue 11 item 1)
    assert not tasks & {"list-date-folders", "finalize", "report-frames", "summary-parts"}
    assert not [t for t in tasks if t.startswith("load-province")]
    # the provinces load on threads inside `stage` (a task run each cost half of Prefect's
    # overhead, issue 11): the date's intake artifact lists each one with its rows
    latest = max(intake, key=lambda a: a.created)
    rows = json.loads(latest.data) if isinstance(latest.data, str) else latest.data
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        loaded = dict(con.execute(
            "SELECT file_province, count(*) FROM (" + " UNION ALL ".join(
                f"SELECT file_province FROM {ds}" for ds in DATASETS) + ") GROUP BY ALL").fetchall())
    assert {r["province"]: r["rows"] for r in rows} == loaded == {"41": loaded["41"], "44": loaded["44"]}
    assert all(r["started"] <= r["finished"] for r in rows)
    # an input error inside Prefect is still exit 2 and one sentence
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--date", "2026-11-25"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
