"""The README's operations path against a real Prefect server (issue 11, item 1).

One `prefect server start` for this module: its own PREFECT_HOME and SQLite database
in a temporary folder, a free port on 127.0.0.1. `recon serve` registers the
deployment `nightly/recon-nightly`; the test triggers a run through the API
(`run_deployment`), waits for it, reads its artifacts and the log of its
`wait-for-provinces` task back (Guangdong missing D2 at the deadline), checks the
alerts a local HTTP endpoint received, then stops every process it started (each in
its own process group).

Not marked `prefect` on purpose: that marker starts Prefect's ephemeral API, which
this test replaces by a real server. CI runs it with the rest of `make test`.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from flows import nightly
from tests.test_alerts import http_sink
from tests.test_operations import guangdong, henan
from tests.inbox_builders import write_reference

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
D1 = date(2026, 11, 20)
D2 = D1 + timedelta(days=1)
START_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group the test started, SIGKILL it after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children the leader left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise AssertionError(f"{what}: the process exited with {proc.returncode}\n{tail}")
        with contextlib.suppress(Exception):
            got = check()
            if got:
                return got
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log else ""
    raise AssertionError(f"{what} did not happen within {timeout} s\n{tail}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server on 127.0.0.1; yields the environment that points at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
               PREFECT_UI_ENABLED="false")
    log = home / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env={**env, "PREFECT_LOGGING_LEVEL": "WARNING"},
                                  stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{api}/health", timeout=2).status == 200,
                   START_TIMEOUT_S, "prefect server start", server, log)
        yield {**env, "PREFECT_API_URL": api}
    finally:
        stop(server)


@contextlib.contextmanager
def served(env: dict, paths: nightly.Paths, log: Path, *extra: str):
    """`recon serve` as the README runs it, stopped (with its flow runs) at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "recon"), "serve", "--inbox", str(paths.inbox), "--out", str(paths.out),
             "--warehouse", str(paths.warehouse), *extra],
            cwd=ROOT, env={**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


def test_recon_serve_on_a_real_server_runs_the_nightly_deployment_through_the_api(
        prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, FlowRunFilter,
                                                FlowRunFilterId, LogFilter, LogFilterTaskRunId)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    paths = nightly.Paths.of(tmp_path / "inbox", tmp_path / "reports", tmp_path / "wh.duckdb")
    write_reference(paths.inbox)
    guangdong(paths.inbox, D1)          # Guangdong (44) has not delivered D2
    for d in (D1, D2):
        henan(paths.inbox, d)
    name = f"nightly/{nightly.DEPLOYMENT_NAME}"
    with http_sink() as sink, \
            served(prefect_server, paths, tmp_path / "serve.log", "--alerts", sink.url,
                   "--alert-digest", "--deadline", "04:45") as proc, \
            temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as client:
            dep = wait_until(lambda: client.read_deployment_by_name(name), 90,
                             "recon serve registering the deployment", proc, tmp_path / "serve.log")
        assert dep.global_concurrency_limit is not None
        assert dep.global_concurrency_limit.limit == 1          # one run at a time
        assert dep.schedules[0].schedule.cron == "30 2 * * *"
        assert dep.parameters["deadline"] == "04:45"
        assert "alerts" not in json.dumps(dep.parameters)       # URLs may hold passwords

        run = run_deployment(name, parameters={"until": D2.isoformat()}, timeout=240,
                             poll_interval=1, as_subflow=False)
        assert run.state is not None and run.state.is_completed(), \
            (run.state, (tmp_path / "serve.log").read_text(errors="replace")[-3000:])

        with get_client(sync_client=True) as client:
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=[f"recon-{d}-{k}" for d in (D1, D2) for k in ("summary", "findings")])))
            [card] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=["recon-delivery-scorecard"])))
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[run.id])))
            waits = [t for t in tasks if t.name.startswith("wait-for-provinces")]
            said = "still missing for 2026-11-21: 44 (no folder)"   # the deadline has passed
            logs = wait_until(lambda: [x.message for x in client.read_logs(log_filter=LogFilter(
                task_run_id=LogFilterTaskRunId(any_=[t.id for t in waits]))) if said in x.message],
                30, "the wait-for-provinces log reaching the API") if waits else []
    assert {a.key for a in arts} == {f"recon-{d}-{k}" for d in (D1, D2) for k in ("summary", "findings")}
    md = next(a.data for a in arts if a.key == f"recon-{D2}-summary")
    assert "PARTIAL" in md and "Invariants" in md
    assert [t.name for t in waits] == [f"wait-for-provinces-{D2}"]
    rows = json.loads(card.data) if isinstance(card.data, str) else card.data
    assert [(r["province"], r["on_time"], r["missing"]) for r in rows] == [("44", 1, 1), ("41", 2, 0)]
    assert logs
    statuses = [json.loads((paths.out / d.isoformat() / "summary.json").read_text())["status"]
                for d in (D1, D2)]
    assert statuses == ["COMPLETE", "PARTIAL"]
    assert [m["title"] for m in sink.messages] == [f"recon {D2}: provinces missing at deadline",
                                                   f"recon {D1}: daily digest",
                                                   f"recon {D2}: daily digest"]
    assert "deadline 2026-11-22T04:45:00+08:00" in sink.messages[0]["message"]
    assert proc.poll() is not None                              # serve was stopped
